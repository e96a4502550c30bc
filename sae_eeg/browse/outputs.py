"""The feature browser of a pipeline output folder: one site per layer, and a page that lists them.

It reads what the pipeline stages wrote (``features/<stimulus>/layer_<n>.npz``,
``sae/layer_<n>/``, ``alignment/layer_<n>/``, ``evals/``) and passes it to
:func:`~sae_eeg.browse.write_feature_browser`; anything missing (no EEG analyses
yet, no evaluations) is left out of the pages rather than failing.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .._check import _validate_type
from .._io import write_text_atomic
from .._io import read_table
from ..audio import load_audio
from ..errors import InputError
from ..evals import decoder_consistency, decoder_directions, feature_tsne
from ..sae import load_sae
from ..trajectories import FeatureTrajectory
from .site import write_feature_browser
from .tables import FeatureTable

logger = logging.getLogger(__name__)

#: The protocol's columns in the index, with their headers.
PROTOCOL_COLUMNS = {"t": "EEG effect (t)", "pval_corrected": "protocol p (Holm)",
                    "significant": "protocol significant", "channel": "channel", "lag": "lag (s)"}


def _plain_name(name, what):
    """``name`` if it can be a file name (no separator, not '.' or '..'), else an error."""
    text = str(name)
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text:
        raise InputError(f"{what} {name!r} cannot name a file (it holds a path separator or is empty); "
                         "rename it in the config or manifest.")
    return text


def _concat(paths):
    paths = [p for p in paths if p.is_file()]
    return pd.concat([read_table(p) for p in paths], ignore_index=True) if paths else None


def protocol_table(table):
    """The paper protocol's results (``protocol_features``) as a browser table."""
    return FeatureTable("protocol", table, columns={c: h for c, h in PROTOCOL_COLUMNS.items() if c in table},
                        best="pval", title="Paper protocol",
                        description="Per channel and sign: the extremum of the development TRF, its test-run value "
                                    "across subjects (t, one-sided p, Holm-corrected over features, channels and "
                                    "signs).")


def class_table(table):
    """The speech / sounds / music labels (``feature_classes``) as a browser table."""
    return FeatureTable("class", table, columns={"label": "label", "purity": "label purity"},
                        title="Speech, sounds or music",
                        description="Firing rate of the feature in each category of clips; the label is the "
                                    "category where it fires most.")


def seed_table(sae, other):
    """Decoder consistency of each feature with a second-seed SAE (Hungarian matching) as a browser table."""
    matches = decoder_consistency(decoder_directions(sae), decoder_directions(other)).matches
    table = matches.rename(columns={"feature_a": "feature", "feature_b": "match"})
    return FeatureTable("seed", table, columns={"cosine": "seed cosine"}, title="Consistency across seeds",
                        description="The feature of the SAE trained from another seed matched to this one "
                                    "(one-to-one, Hungarian on decoder cosine) and their cosine.")


def layer_inputs(output_dir, layer, stimuli, *, audio=None, sae_dir=None, compute_tsne=True):
    """Everything the browser of one layer reads from a pipeline output folder.

    Parameters
    ----------
    output_dir : path-like
        The pipeline's output folder.
    layer : int
        Layer number (from 1).
    stimuli : dict of str -> path-like
        Stimulus name -> audio file (the config's or manifest's stimuli).
    audio : dict of str -> Audio | None
        The stimuli already loaded (read from ``stimuli`` when None).
    sae_dir : path-like | None
        Folder of the SAEs (``layer_<n>/``); default ``output_dir/sae``.
    compute_tsne : bool
        Compute the t-SNE map when the evaluations have none for this layer. Default True.

    Returns
    -------
    inputs : dict
        Keyword arguments of :func:`~sae_eeg.browse.write_feature_browser`
        (``trajectories``, ``audio``, ``sae``, ``tables``, ``trf``, ``all_channel_trf``,
        ``tsne``, ``layer``).
    """
    out = Path(output_dir)
    names = {name: _plain_name(name, "stimulus") for name in stimuli}
    paths = {name: out / "features" / names[name] / f"layer_{layer}.npz" for name in stimuli}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(f"No SAE trajectories of layer {layer} for {len(missing)} stimuli (e.g. {missing[0]}); "
                         "run `sae-eeg extract` first.")
    trajectories = {name: FeatureTrajectory.load(path) for name, path in paths.items()}
    if audio is None:
        audio = {name: load_audio(path) for name, path in stimuli.items()}
    sae = load_sae(Path(sae_dir) if sae_dir is not None else out / "sae", layer=layer)
    alignment = out / "alignment" / f"layer_{layer}"
    tables = []
    protocol = _concat([alignment / "group" / "protocol_features.parquet"])
    if protocol is not None:
        tables.append(protocol_table(protocol))
    classes = _concat([out / "evals" / "feature_classes.parquet"])
    if classes is not None and ("layer" not in classes or (classes["layer"] == layer).any()):
        tables.append(class_table(classes))
    second = out / "sae_second_seed" / f"layer_{layer}"
    if second.is_dir():
        tables.append(seed_table(sae, load_sae(second.parent, layer=layer)))
    subjects = sorted((alignment / "subjects").glob("*/")) if (alignment / "subjects").is_dir() else []
    trf = _concat([s / "protocol_trf.parquet" for s in subjects])
    all_channel_trf = _concat([s / "cluster_trf.parquet" for s in subjects])
    tsne = _concat([out / "evals" / "tsne.parquet"])
    if tsne is not None:
        tsne = tsne[tsne["layer"] == layer] if "layer" in tsne else tsne
    if (tsne is None or tsne.empty) and compute_tsne:
        counts = sum(np.bincount(t.data.indices, minlength=t.data.shape[1]) for t in trajectories.values())
        alive = np.flatnonzero(counts > 0)
        tsne = (feature_tsne(sae.encoder.weight.detach().cpu().numpy(), features=alive, random_state=0)
                if alive.size >= 3 else None)
    return {"trajectories": trajectories, "audio": audio, "sae": sae, "tables": tables, "trf": trf,
            "all_channel_trf": all_channel_trf, "tsne": tsne, "layer": layer}


def build_browser(output_dir, *, layers, stimuli, sae_dir=None, out_dir=None, tables=(), montage="colin27_1005",
                  channel=None, compute_tsne=True, verbose=False, **options):
    """Write the feature browser of every layer of a pipeline output folder.

    Parameters
    ----------
    output_dir : path-like
        The pipeline's output folder.
    layers : sequence of int
        Layers (from 1).
    stimuli : dict of str -> path-like
        Stimulus name -> audio file.
    sae_dir : path-like | None
        Folder of the SAEs; default ``output_dir/sae``.
    out_dir : path-like | None
        Where the sites go: ``<out_dir>/layer_<n>/`` and ``<out_dir>/index.html``;
        default ``output_dir/browser``.
    tables : sequence of FeatureTable
        More per-feature tables for every layer (rows filtered by their ``layer``
        column), e.g. an attribution analysis.
    montage : str | mne.channels.DigMontage
        Electrode positions of the topographies.
    channel : str | None
        Channel the TRFs open on (default: each feature's clearest).
    compute_tsne : bool
        Compute the t-SNE map of layers the evaluations did not map. Default True.
    verbose : bool
        Show progress.
    **options
        More arguments of :func:`~sae_eeg.browse.write_feature_browser`
        (``clip_length``, ``n_clips``, ``block_size``...).

    Returns
    -------
    sites : dict of int -> BrowserSite
    """
    _validate_type(stimuli, dict, "stimuli")
    out = Path(output_dir)
    target = Path(out_dir) if out_dir is not None else out / "browser"
    record = out / "provenance.json"
    prov = json.loads(record.read_text()) if record.is_file() else None
    audio = {name: load_audio(path) for name, path in stimuli.items()}  # once for every layer
    sites = {}
    for layer in layers:
        inputs = layer_inputs(out, layer, stimuli, audio=audio, sae_dir=sae_dir, compute_tsne=compute_tsne)
        inputs["tables"] = inputs["tables"] + list(tables)
        sites[layer] = write_feature_browser(target / f"layer_{layer}", montage=montage, channel=channel,
                                             provenance=prov, verbose=verbose, **inputs, **options)
    write_layer_list(target, sites)
    return sites


def write_layer_list(folder, sites):
    """Write ``folder/index.html``: a link to the site of each layer with its size."""
    items = "".join(
        f"<li><a href='layer_{layer}/index.html'>Layer {layer}</a>: {site.n_features} features, "
        f"{site.n_excerpts} audio excerpts, {site.total_bytes / 1e6:.1f} MB</li>"
        for layer, site in sorted(sites.items()))
    write_text_atomic(Path(folder) / "index.html",
                      "<!doctype html><html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
                      f"<title>SAE feature browser</title></head><body><h1>SAE feature browser</h1><ul>{items}</ul>"
                      f"<p>{html.escape('Each layer is a self-contained site; open its index.html.')}</p>"
                      "</body></html>\n")

"""The feature browser of a pipeline output folder: one site per layer, and a page that lists them.

The ``browse`` stage (:func:`browse_task`) writes ``output_dir/browser/``; it reads
what the other stages wrote, each path from the layout of
:mod:`~sae_eeg.pipeline.resources`:

* the SAE feature trajectories of every stimulus (``features/<stimulus>/layer_n.npz``),
  the stimuli's audio and each layer's SAE;
* every subject's TRFs (``protocol_trf``, ``cluster_trf``) for the pages' TRF and
  topography;
* the per-feature result tables of :data:`FEATURE_TABLES` (the paper protocol, the
  attribution beyond the acoustics, the speech/sounds/music labels, the seed matches of
  the evaluations), and every other ``*_features`` table of ``alignment/layer_n/group/``
  with a ``feature`` column (a new analysis joins this way without code);
* each layer's t-SNE map of the evaluations (computed here when they have none).

Whatever is absent (no EEG yet, no evaluations) is left out of the pages. The sites
themselves are written from plain data by :func:`sae_eeg.browse.write_feature_browser`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._io import provenance, read_table
from ..audio import load_audio
from ..browse import FeatureTable, write_feature_browser, write_layer_list
from ..errors import InputError
from ..evals import feature_tsne
from ..sae import load_sae
from ..trajectories import FeatureTrajectory
from .config import load_pipeline_config
from .outputs import PROVENANCE_FILE, output_path
from .resources import (
    audio_files, browser_dir, evals_dir, feature_file, group_dir, manifest_of, sae_dir, subjects_dir,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JoinedTable:
    """A per-feature result table of the pipeline and how the browser shows it.

    Attributes
    ----------
    name : str
        Its name in the browser (index columns are keyed ``<name>.<column>``).
    folder : {"group", "evals"}
        Where it lies: ``alignment/layer_n/group/`` (one file per layer) or
        ``evals/`` (a ``layer`` column).
    stem : str
        File name without ``.parquet``.
    columns : dict | None
        Columns shown in the index -> header (those present; None: the
        :data:`DEFAULT_INDEX_COLUMNS` present). Every column is on the feature pages.
    best : str | None
        Column whose smallest value picks the row that stands for a feature in the
        index (e.g. a corrected p-value).
    title, description : str
        Heading and one sentence on the feature pages.
    """

    name: str
    folder: str
    stem: str
    columns: dict | None = None
    best: str | None = None
    title: str = ""
    description: str = ""

    def feature_table(self, table):
        """The :class:`~sae_eeg.browse.FeatureTable` of this table's rows (columns it lacks left out)."""
        columns = self.columns if self.columns is not None else {
            c: f"{self.name} {c}" for c in DEFAULT_INDEX_COLUMNS}
        return FeatureTable(self.name, table, columns={c: h for c, h in columns.items() if c in table},
                            best=self.best if self.best in table else None, title=self.title or self.name,
                            description=self.description)


#: Index columns of a group table that :data:`FEATURE_TABLES` does not describe, when present.
DEFAULT_INDEX_COLUMNS = ("effect", "t", "lag", "pval_corrected", "significant", "tracked")

#: The per-feature tables the browser knows. A new analysis joins with one entry here (its title, index
#: columns and best row); a ``*_features`` table of the group folder joins even without one.
FEATURE_TABLES = (
    JoinedTable("protocol", "group", "protocol_features",
                columns={"t": "EEG effect (t)", "pval_corrected": "protocol p (Holm)",
                         "significant": "protocol significant", "channel": "channel", "lag": "lag (s)"},
                best="pval", title="Paper protocol",
                description="Per channel and sign: the extremum of the development TRF, its test-run value across "
                            "subjects (t, one-sided p, corrected over features, channels and signs)."),
    JoinedTable("attribution", "group", "attribution_features",
                columns={"effect_size": "attribution effect (d_z)", "pval_corrected": "attribution p (Holm)",
                         "significant": "tracked beyond acoustics", "peak_lag": "attribution lag (s)",
                         "peak_channels": "attribution channels"},
                best="pval_corrected", title="Tracked beyond the acoustics and the other features",
                description="Candidate features (or groups of features that the data cannot tell apart) screened "
                            "on development runs, then the drop in held-out prediction r when each is left out of "
                            "a joint TRF with the acoustic baseline, tested across subjects (corrected)."),
    JoinedTable("class", "evals", "feature_classes", columns={"label": "label", "purity": "label purity"},
                title="Speech, sounds or music",
                description="Firing rate of the feature in each category of clips; the label is the category "
                            "where it fires most."),
    JoinedTable("seed", "evals", "seed_matches", columns={"cosine": "seed cosine", "shared": "shared across seeds"},
                title="Consistency across seeds",
                description="The feature of the SAE trained from another seed matched to this one (one-to-one, "
                            "Hungarian on decoder cosine), their cosine, and whether it counts as shared."),
)


def _table_path(cfg, layer, spec):
    folder = group_dir(cfg, layer) if spec.folder == "group" else evals_dir(cfg)
    return output_path(folder, f"{spec.stem}.parquet")


def feature_tables(cfg, layer):
    """The per-feature tables of one layer that exist, as browser tables.

    The tables of :data:`FEATURE_TABLES`, then every other ``*_features`` table of
    ``alignment/layer_n/group/`` with a ``feature`` column (named after its file,
    index columns among :data:`DEFAULT_INDEX_COLUMNS`, best row by
    ``pval_corrected``).

    Returns
    -------
    tables : list of FeatureTable
    """
    specs = list(FEATURE_TABLES)
    known = {spec.stem for spec in specs if spec.folder == "group"}
    group = group_dir(cfg, layer)
    for path in sorted(group.glob("*_features.parquet")) if group.is_dir() else ():
        if path.stem not in known:
            name = path.stem.removesuffix("_features")
            specs.append(JoinedTable(name, "group", path.stem, best="pval_corrected", title=name.replace("_", " "),
                                     description=f"From alignment/layer_{layer}/group/{path.name}."))
    tables = []
    for spec in specs:
        path = _table_path(cfg, layer, spec)
        if not path.is_file():
            continue
        table = read_table(path)
        if "feature" not in table:
            logger.info("%s has no 'feature' column; the browser leaves it out", path)
            continue
        if "layer" in table and not (table["layer"] == layer).any():
            continue
        tables.append(spec.feature_table(table))
    return tables


def _concat(paths):
    paths = [p for p in paths if p.is_file()]
    return pd.concat([read_table(p) for p in paths], ignore_index=True) if paths else None


def _tsne(cfg, layer, trajectories, sae, compute):
    """The layer's t-SNE map of the evaluations; computed from the SAE when they have none and ``compute``."""
    tsne = _concat([evals_dir(cfg) / "tsne.parquet"])
    if tsne is not None and "layer" in tsne:
        tsne = tsne[tsne["layer"] == layer]
    if (tsne is None or tsne.empty) and compute:
        counts = sum(np.bincount(t.data.indices, minlength=t.data.shape[1]) for t in trajectories.values())
        alive = np.flatnonzero(counts > 0)
        tsne = (feature_tsne(sae.encoder.weight.detach().cpu().numpy(), features=alive, random_state=0)
                if alive.size >= 3 else None)
    return tsne


def layer_inputs(cfg, layer, audio, *, compute_tsne=True):
    """Everything the browser of one layer reads from the output folder.

    Parameters
    ----------
    cfg : PipelineConfig
    layer : int
        Layer number (from 1).
    audio : dict of str -> Audio
        The stimuli (name -> loaded audio).
    compute_tsne : bool
        Compute the t-SNE map when the evaluations have none for this layer. Default True.

    Returns
    -------
    inputs : dict
        Keyword arguments of :func:`~sae_eeg.browse.write_feature_browser`
        (``trajectories``, ``audio``, ``sae``, ``tables``, ``trf``, ``all_channel_trf``,
        ``tsne``, ``layer``).

    Raises
    ------
    InputError
        The trajectories of a stimulus are missing (``sae-eeg extract`` makes them).
    """
    paths = {name: feature_file(cfg, name, f"layer_{layer}") for name in audio}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(f"No SAE trajectories of layer {layer} for {len(missing)} stimuli (e.g. {missing[0]}); "
                         "run `sae-eeg extract` first.")
    trajectories = {name: FeatureTrajectory.load(path) for name, path in paths.items()}
    sae = load_sae(sae_dir(cfg), layer=layer)
    subjects = subjects_dir(cfg, layer)
    folders = sorted(p for p in subjects.iterdir() if p.is_dir()) if subjects.is_dir() else []
    return {"trajectories": trajectories, "audio": audio, "sae": sae, "tables": feature_tables(cfg, layer),
            "trf": _concat([s / "protocol_trf.parquet" for s in folders]),
            "all_channel_trf": _concat([s / "cluster_trf.parquet" for s in folders]),
            "tsne": _tsne(cfg, layer, trajectories, sae, compute_tsne), "layer": layer}


def browser_montage(cfg):
    """Electrode positions of the topographies: the cluster test's montage, else the manifest's, else colin27."""
    manifest = manifest_of(cfg).montage if cfg.manifest is not None else None
    return cfg.alignment.clusters.montage or manifest or "colin27_1005"


def build_browser(config, *, layers=None, out_dir=None, tables=(), channel=None, compute_tsne=True, prov=None,
                  verbose=False, **options):
    """Write the feature browser of every layer of a pipeline output folder, from the results present.

    Parameters
    ----------
    config : path-like | dict | PipelineConfig
        The pipeline config.
    layers : sequence of int | None
        Layers (from 1); default every layer of the config.
    out_dir : path-like | None
        Where the sites go: ``<out_dir>/layer_<n>/`` and ``<out_dir>/index.html``;
        default ``output_dir/browser`` (the ``browse`` stage's folder).
    tables : sequence of FeatureTable
        More per-feature tables for every layer (rows filtered by their ``layer``
        column), beside those of :func:`feature_tables`.
    channel : str | None
        Channel the TRFs open on (default: each feature's best protocol channel).
    compute_tsne : bool
        Compute the t-SNE map of layers the evaluations did not map. Default True.
    prov : dict | None
        Provenance stored in each ``site.json``; default the output folder's
        ``provenance.json``.
    verbose : bool
        Show progress.
    **options
        More arguments of :func:`~sae_eeg.browse.write_feature_browser`
        (``clip_length``, ``n_clips``, ``block_size``...).

    Returns
    -------
    sites : dict of int -> BrowserSite
    """
    cfg = load_pipeline_config(config, check_files=False)
    layers = list(cfg.layers) if layers is None else list(layers)
    target = Path(out_dir) if out_dir is not None else browser_dir(cfg)
    if prov is None:
        record = output_path(cfg.output_dir, PROVENANCE_FILE)
        prov = json.loads(record.read_text()) if record.is_file() else None
    audio = {name: load_audio(path) for name, path in audio_files(cfg).items()}  # once for every layer
    montage = browser_montage(cfg)
    sites = {}
    for layer in layers:
        inputs = layer_inputs(cfg, layer, audio, compute_tsne=compute_tsne)
        inputs["tables"] = inputs["tables"] + list(tables)
        sites[layer] = write_feature_browser(target / f"layer_{layer}", montage=montage, channel=channel,
                                             provenance=prov, verbose=verbose, **inputs, **options)
    write_layer_list(target, sites)
    return sites


def browse_task(cfg, inputs):
    """The ``browse`` stage: the feature browser of every layer in ``output_dir/browser``.

    ``inputs`` (the keys of the tasks whose outputs are read) go into each site's provenance.
    """
    sites = build_browser(cfg, prov=provenance(cfg.results_config(), inputs=inputs))
    return {layer: site.total_bytes for layer, site in sites.items()}

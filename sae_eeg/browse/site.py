"""Write the static feature browser of one SAE layer: an index page, a feature page, data files.

Layout of a site (it opens from disk, with no server and no network)::

    index.html           sortable, filterable table of every feature + t-SNE map
    feature.html         one page for every feature: feature.html#<id>
    assets/              the pages' script and style, and the vendored uPlot
    data/index.js        one row per feature (what the index shows)
    data/features_<k>.js the details of features k*block_size ... (loaded when a page needs them)
    audio/*.ogg          the excerpts the top clips play (shared between features)
    topo/feature_<id>.png  topographies of the features with all-channel TRFs
    site.json            provenance, settings and sizes

Data files are scripts that hand a JSON object to the page (``SAE_BROWSER.block(k, {...})``):
a page opened from ``file://`` may load scripts but not fetch JSON.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .._check import _check_range, _ensure_int, _validate_type
from .._io import provenance as make_provenance
from .._io import write_json_atomic, write_text_atomic
from ..errors import InputError
from ..sae import SparseAutoencoder
from ._encode import data_script, plain, quantized
from .clips import (
    activation_traces,
    excerpt_records,
    plan_excerpts,
    stack_codes,
    stimulus_durations,
    top_clip_table,
    write_excerpt_audio,
)
from .features import firing_table, nearest_features, receptive_fields
from .responses import topographies, trf_summaries
from .tables import FeatureTable, index_columns, page_rows

logger = logging.getLogger(__name__)

#: Files of ``static/`` copied next to the data: pages at the top, the rest in ``assets/``.
PAGES = ("index.html", "feature.html")
ASSETS = ("browser.js", "browser.css", "uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE")

#: What each top-level entry of a site holds, for the size report.
SIZE_GROUPS = {"audio": "audio", "data": "data", "topo": "images", "screenshots": "images", "assets": "pages"}


@dataclass(frozen=True)
class BrowserSite:
    """A feature browser written to disk.

    Attributes
    ----------
    folder : pathlib.Path
        The site (open ``index.html`` in a browser).
    n_features : int
        Features listed.
    n_excerpts : int
        Audio excerpts written.
    n_files : int
        Files in the site.
    sizes : dict of str -> int
        Bytes per part: ``audio``, ``data``, ``images``, ``pages``.
    total_bytes : int
    seconds : float
        Time taken to build it.
    """

    folder: Path
    n_features: int
    n_excerpts: int
    n_files: int
    sizes: dict
    total_bytes: int
    seconds: float

    @property
    def index(self):
        """The index page."""
        return self.folder / "index.html"

    @classmethod
    def read(cls, folder):
        """The site written in ``folder`` (from its ``site.json`` and the files present).

        Raises
        ------
        InputError
            If ``folder`` holds no site (no readable ``site.json``).
        """
        folder = Path(folder)
        try:
            record = json.loads((folder / "site.json").read_text())
        except (OSError, ValueError) as err:
            raise InputError(f"{str(folder)!r} holds no feature browser ({type(err).__name__}: {err}); "
                             "write one with sae_eeg.browse.write_feature_browser.") from None
        sizes, n_files = _folder_sizes(folder)
        return cls(folder=folder, n_features=int(record["n_features"]), n_excerpts=int(record["n_excerpts"]),
                   n_files=n_files, sizes=sizes, total_bytes=sum(sizes.values()), seconds=float(record["seconds"]))


def _block_name(block):
    return f"features_{block:05d}.js"


def _folder_sizes(folder):
    """Bytes per part of a site (``audio``, ``data``, ``images``, ``pages``) and its number of files."""
    sizes = dict.fromkeys(("audio", "data", "images", "pages"), 0)
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        parts = path.relative_to(folder).parts
        sizes[SIZE_GROUPS.get(parts[0], "pages") if len(parts) > 1 else "pages"] += path.stat().st_size
    return sizes, len(files)


def _check_tables(tables):
    _validate_type(tables, (list, tuple), "tables")
    names = set()
    for spec in tables:
        _validate_type(spec, FeatureTable, "tables[...]")
        if spec.name in names:
            raise InputError(f"Two tables are named {spec.name!r}; give each FeatureTable its own name.")
        names.add(spec.name)
    return list(tables)


def _tsne_xy(tsne, layer, n_features):
    """Coordinates per feature (None where missing) from a (feature, x, y[, layer]) table."""
    if tsne is None:
        return None
    _validate_type(tsne, pd.DataFrame, "tsne")
    missing = {"feature", "x", "y"} - set(tsne.columns)
    if missing:
        raise InputError(f"tsne lacks the columns {sorted(missing)}; pass sae_eeg.evals.feature_tsne output.")
    if layer is not None and "layer" in tsne.columns:
        tsne = tsne[tsne["layer"] == layer]
    xy = [None] * n_features
    for feature, x, y in zip(tsne["feature"].to_numpy(), tsne["x"].to_numpy(), tsne["y"].to_numpy()):
        if 0 <= feature < n_features:
            xy[int(feature)] = [plain(x), plain(y)]
    return xy


def _index_payload(firing, specs, layer, n_features, *, title, colour_by, xy):
    """What the index page shows: one row per feature, its columns, the map."""
    columns = [{"key": "feature", "header": "feature", "type": "number", "values": list(range(n_features))}]
    for key, header in (("rate", "firing rate (Hz)"), ("active", "active frames"),
                        ("max_activation", "max activation")):
        columns.append({"key": key, "header": header, "type": "number", "values": plain(firing[key].to_numpy())})
    for spec in specs:
        columns.extend(index_columns(spec, layer, n_features))
    keys = [c["key"] for c in columns]
    if colour_by is not None and colour_by not in keys:
        raise InputError(f"colour_by={colour_by!r} is not an index column; columns: {keys}.")
    if colour_by is None:
        colour_by = next((c["key"] for c in columns if c["key"].endswith(".label")), None)
    return {
        "title": title, "layer": layer, "n_features": n_features,
        "columns": [{k: c[k] for k in ("key", "header", "type")} for c in columns],
        "rows": [list(r) for r in zip(*(c["values"] for c in columns))], "tsne": xy, "colour": colour_by,
        "tables": [{"name": s.name, "title": s.title or s.name, "description": s.description} for s in specs],
    }


def write_feature_browser(folder, trajectories, audio, *, sae=None, tables=(), trf=None, all_channel_trf=None,
                          tsne=None, layer=None, title=None, montage="colin27_1005", channel=None,
                          colour_by=None, clip_length=2.0, n_clips=8, n_neighbours=10, block_size=64,
                          audio_sfreq=16000.0, provenance=None, verbose=False):
    """Write a static, self-contained browser of every feature of one SAE layer.

    Parameters
    ----------
    folder : path-like
        The site's folder; replaced as a whole when the new site is complete (a
        failed build leaves the old one, or nothing, behind).
    trajectories : dict of str -> FeatureTrajectory
        SAE codes of each stimulus at the backbone's frame rate, every feature
        (as the pipeline writes them: ``features/<stimulus>/layer_<n>.npz``).
    audio : dict of str -> Audio
        The audio of each stimulus (:func:`sae_eeg.audio.load_audio`).
    sae : SparseAutoencoder | None
        The layer's SAE, for the nearest features by decoder cosine (left out when None).
    tables : sequence of FeatureTable
        Per-feature tables joined into the index and the feature pages (protocol
        results, feature classes, seed consistency, attribution...).
    trf : pandas.DataFrame | None
        Tidy TRF weights (``subject``, ``feature``, ``channel``, ``lag``,
        ``weight`` [, ``split``]; the alignment's ``protocol_trf``): each page
        shows the subject mean with its 95 % confidence interval.
    all_channel_trf : pandas.DataFrame | None
        The same over all channels (``cluster_trf``): a topography at the peak lag
        for each of its features.
    tsne : pandas.DataFrame | None
        ``feature``, ``x``, ``y`` (:func:`sae_eeg.evals.feature_tsne`): the map on
        the index page, each point a link; no map when None.
    layer : int | None
        Layer number (from 1): rows of other layers are dropped from tables that
        have a ``layer`` column; shown in the title.
    title : str | None
        Page title. Default "SAE features, layer <n>".
    montage : str | mne.channels.DigMontage
        Electrode positions of the topographies. Default ``"colin27_1005"``.
    channel : str | None
        Channel a TRF opens on when the feature has it; default the channel of the
        clearest response.
    colour_by : str | None
        Index column (key ``<table>.<column>``) colouring the map; default the
        first ``*.label`` column.
    clip_length : float
        Length of the clips the stimuli are cut into and of the excerpts played, s.
        Default 2.
    n_clips : int
        Top clips per feature. Default 8.
    n_neighbours : int
        Nearest features listed. Default 10.
    block_size : int
        Features per data file (a page loads one file). Default 64.
    audio_sfreq : float
        Sampling rate of the excerpts, Hz. Default 16 kHz.
    provenance : dict | None
        Provenance of the inputs, stored in ``site.json``.
    verbose : bool
        Show progress bars.

    Returns
    -------
    site : BrowserSite
        Where it is, its size and how long it took.

    Raises
    ------
    InputError
        Inconsistent or missing inputs (each message names the argument).
    """
    start = time.perf_counter()
    _validate_type(folder, "path-like", "folder")
    folder = Path(folder)
    _check_range("clip_length", clip_length, 0.1, 30)
    _check_range("audio_sfreq", audio_sfreq, 8000, 48000)
    for value, name in ((n_clips, "n_clips"), (n_neighbours, "n_neighbours"), (block_size, "block_size")):
        _check_range(name, _ensure_int(value, name), 1)
    _validate_type(sae, (SparseAutoencoder, None), "sae")
    _validate_type(audio, dict, "audio")
    _validate_type(channel, (str, None), "channel")
    specs = _check_tables(tables)
    stacked = stack_codes(trajectories)
    n_features = stacked.n_features
    if sae is not None and sae.n_features != n_features:
        raise InputError(f"sae has {sae.n_features} features but the trajectories {n_features}; give the SAE "
                         f"that encoded them.")
    durations = stimulus_durations(audio, stacked.names)
    clips_audio = [audio[name] for name in stacked.names]
    progress = (lambda it, **kw: tqdm(it, **kw)) if verbose else (lambda it, **kw: it)
    # every check of the tables runs before the slow work (audio, receptive fields)
    summaries = trf_summaries(trf, channel=channel) if trf is not None else {}
    page_tables = {spec.name: page_rows(spec, layer) for spec in specs}
    index = _index_payload(firing_table(stacked), specs, layer, n_features, colour_by=colour_by,
                           xy=_tsne_xy(tsne, layer, n_features),
                           title=title or ("SAE features" if layer is None else f"SAE features, layer {layer}"))

    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        topo = topographies(all_channel_trf, work / "topo", montage=montage) if all_channel_trf is not None else {}
        top = top_clip_table(stacked, clip_length=clip_length, n_clips=n_clips)
        excerpts, excerpt_of_row = plan_excerpts(top, stacked, durations, clip_length=clip_length)
        files = write_excerpt_audio(excerpts, clips_audio, work / "audio", audio_sfreq=audio_sfreq)
        records = excerpt_records(excerpts, files, clips_audio, stacked)
        clips_of = {}
        for feature, trace in zip(top["feature"].to_numpy(), activation_traces(stacked, top, excerpts,
                                                                              excerpt_of_row)):
            clips_of.setdefault(int(feature), []).append(trace)
        fields, lags, mel_freqs = receptive_fields(stacked, clips_audio)
        neighbours = nearest_features(sae, n_neighbours) if sae is not None else None
        n_blocks = -(-n_features // block_size)
        for block in progress(range(n_blocks), desc="feature files"):
            ids = range(block * block_size, min((block + 1) * block_size, n_features))
            features = {str(f): {
                "clips": clips_of.get(f, []),
                "rf": quantized(fields[f]) if f in fields else None,
                "neighbours": (None if neighbours is None else
                               [[int(i), plain(c)] for i, c in zip(neighbours[0][f], neighbours[1][f])]),
                "trf": summaries.get(f),
                "topo": topo.get(f),
                "tables": {name: rows.get(f, []) for name, (_, rows) in page_tables.items()},
            } for f in ids}
            used = sorted({c["excerpt"] for f in ids for c in clips_of.get(f, [])})
            payload = {"features": features, "excerpts": {str(e): records[e] for e in used},
                       "columns": {name: cols for name, (cols, _) in page_tables.items()}}
            write_text_atomic(work / "data" / _block_name(block), data_script("block", block, payload))
        _copy_static(work)
        settings = {"block_size": block_size, "n_blocks": n_blocks, "clip_length": clip_length, "n_clips": n_clips,
                    "stimuli": stacked.names, "frame_rate": stacked.sfreq}
        index.update(settings, rf_axes={"lags": plain(lags), "mel_freqs": plain(mel_freqs)})
        write_text_atomic(work / "data" / "index.js", data_script("index", index))
        sizes, _ = _folder_sizes(work)
        write_json_atomic(work / "site.json", {
            "provenance": provenance or make_provenance(), "layer": layer, "n_features": n_features,
            "n_excerpts": len(excerpts), "sizes": sizes, "seconds": round(time.perf_counter() - start, 2),
            "settings": settings})
        _replace_folder(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    sizes, n_files = _folder_sizes(folder)
    site = BrowserSite(folder=folder, n_features=n_features, n_excerpts=len(excerpts), n_files=n_files,
                       sizes=sizes, total_bytes=sum(sizes.values()), seconds=time.perf_counter() - start)
    logger.info("feature browser %s: %d features, %d files, %.1f MB, %.1f s", folder, n_features, n_files,
                site.total_bytes / 1e6, site.seconds)
    return site


def write_layer_list(folder, sites):
    """Write ``folder/index.html``: a link to the site of each layer, with its size.

    Parameters
    ----------
    folder : path-like
        The folder holding the sites as ``layer_<n>/``.
    sites : dict of int -> BrowserSite
        Layer -> its site.

    Returns
    -------
    path : pathlib.Path
        The page written.
    """
    items = "".join(
        f"<li><a href='layer_{layer}/index.html'>Layer {layer}</a>: {site.n_features} features, "
        f"{site.n_excerpts} audio excerpts, {site.total_bytes / 1e6:.1f} MB</li>"
        for layer, site in sorted(sites.items()))
    path = Path(folder) / "index.html"
    write_text_atomic(path, "<!doctype html><html lang='en'><head><meta charset='utf-8'><link rel='icon' "
                            "href='data:,'><title>SAE feature browser</title></head><body>"
                            f"<h1>SAE feature browser</h1><ul>{items}</ul>"
                            "<p>Each layer is a self-contained site; open its index.html.</p></body></html>\n")
    return path


def _copy_static(site):
    static = resources.files(__package__) / "static"
    (site / "assets").mkdir(parents=True, exist_ok=True)
    for name in PAGES:
        (site / name).write_bytes((static / name).read_bytes())
    for name in ASSETS:
        (site / "assets" / name).write_bytes((static / name).read_bytes())


def _replace_folder(new, folder):
    """Put the finished site ``new`` at ``folder``, replacing what was there."""
    os.chmod(new, 0o755)  # mkdtemp makes 0700 folders
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        folder.rename(old)
        new.rename(folder)
        shutil.rmtree(old)
    else:
        new.rename(folder)


__all__ = ["BrowserSite", "write_feature_browser", "write_layer_list"]


"""Figures from the result tables, and the HTML report that gathers them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..viz import (
    ReportSection,
    plot_consistency,
    plot_erasure_curves,
    plot_layer_r,
    plot_mel_receptive_fields,
    plot_reconstruction_tradeoff,
    plot_significant_fraction,
    plot_steering,
    plot_topomaps,
    plot_trf_weights,
    plot_tsne_by_label,
    write_report,
)
from .config import load_pipeline_config
from .evaluate import evaluation_layer
from .._io import read_table
from .outputs import PROVENANCE_FILE, output_path
from .resources import browser_dir, evals_dir, group_dir, manifest_of, subjects_dir


def _sae_space_text(cfg):
    """How the "sae" encoding space was formed, from the alignment config."""
    enc = cfg.alignment.encoding
    if enc.max_sae_dims is None:
        return "The SAE space holds every selected feature."
    if enc.sae_reduce == "pca":
        return (f"The SAE space is the first {enc.max_sae_dims} principal components of all selected "
                "features (z-scored); the dense space has as many components.")
    return (f"The SAE space holds the {enc.max_sae_dims} most active selected features; the dense space "
            "has as many principal components.")


def _concat(paths):
    paths = [p for p in paths if p.is_file()]
    return pd.concat([read_table(p) for p in paths], ignore_index=True) if paths else None


def _group_table(cfg, name):
    return _concat([group_dir(cfg, n) / f"{name}.parquet" for n in cfg.layers])


def _subject_tables(cfg, name, layers=None):
    return _concat(sorted(p for n in (layers or cfg.layers)
                          for p in subjects_dir(cfg, n).glob(f"*/{name}.parquet")))


def _eval_table(cfg, name):
    path = evals_dir(cfg) / f"{name}.parquet"
    return read_table(path) if path.is_file() else None


def figure_layer(cfg):
    """The layer whose TRFs are drawn: the one with the largest fraction of significant features."""
    summary = _group_table(cfg, "protocol_summary")
    if summary is None or summary.empty:
        return cfg.layers[-1]
    return int(summary.sort_values("fraction_significant", ascending=False).iloc[0]["layer"])


def make_figures(config):
    """Draw every figure whose tables exist; return figure name -> PNG path.

    Written to ``output_dir/figures/<name>.png`` and ``.svg``.
    """
    cfg = load_pipeline_config(config, check_files=False)
    out = output_path(cfg.output_dir, "figures")
    figures = {}
    summary = _group_table(cfg, "protocol_summary")
    if summary is not None:
        figures["significant_fraction"] = plot_significant_fraction(summary, out / "significant_fraction").png
    layer = figure_layer(cfg)
    trf = _subject_tables(cfg, "cluster_trf", [layer])
    features = _group_table(cfg, "protocol_features")
    if trf is not None:
        feature = _top_feature(features, layer, trf)
        channel = _best_channel(trf, feature)
        figures["trf_weights"] = plot_trf_weights(trf, out / "trf_weights", channel=channel, feature=feature).png
        montage = manifest_of(cfg).montage or "colin27_1005"
        figures["topomaps"] = plot_topomaps(trf, out / "topomaps", feature=feature, montage=montage).png
    scores = _subject_tables(cfg, "encoding")
    if scores is not None:
        figures["layer_r"] = plot_layer_r(scores, out / "layer_r").png
    for name, table_name, draw in (
        ("reconstruction", "reconstruction", lambda t, p: plot_reconstruction_tradeoff(t, p)),
        ("consistency", "consistency", lambda t, p: plot_consistency(t, p)),
        ("erasure", "erasure_curves", lambda t, p: plot_erasure_curves(t, p)),
        ("steering", "steering", lambda t, p: plot_steering(t, p)),
    ):
        table = _eval_table(cfg, table_name)
        if table is not None:
            figures[name] = draw(table, out / name).png
    tsne, classes = _eval_table(cfg, "tsne"), _eval_table(cfg, "feature_classes")
    if tsne is not None and classes is not None and cfg.evaluate is not None:
        layer = evaluation_layer(cfg)  # the table maps every layer; the figure shows this one
        tsne = tsne[tsne.layer == layer]
        if len(tsne):
            labels = classes[classes.layer == layer][["feature", "label"]]
            figures["tsne"] = plot_tsne_by_label(tsne, out / "tsne", labels=labels).png
    fields_path = evals_dir(cfg) / "receptive_fields.npz"
    if fields_path.is_file():
        with np.load(fields_path) as z:
            if len(z["features"]):
                figures["receptive_fields"] = plot_mel_receptive_fields(
                    z["fields"], out / "receptive_fields", feature_ids=z["features"], lags=z["lags"],
                    mel_freqs=z["mel_freqs"]).png
    return figures


def _top_feature(features, layer, trf):
    """The most significant feature of ``layer`` that has all-channel TRFs."""
    available = set(trf.feature.unique())
    if features is not None and "p_corrected" in features:
        rows = features[(features.layer == layer) & features.feature.isin(available)]
        if len(rows):
            return int(rows.sort_values("p_corrected").iloc[0]["feature"])
    return int(trf.groupby("feature").weight.apply(lambda w: w.abs().mean()).idxmax())


def _best_channel(trf, feature):
    rows = trf[trf.feature == feature]
    return str(rows.groupby("channel").weight.apply(lambda w: w.abs().mean()).idxmax())


def _browser_section(cfg):
    """A section linking the feature browser (``browse`` stage) of each layer, when it was built."""
    folder = browser_dir(cfg)
    if not (folder / "index.html").is_file():
        return None
    pages = {"Every layer": folder / "index.html"}
    pages.update({f"Layer {n}": folder / f"layer_{n}" / "index.html" for n in cfg.layers
                  if (folder / f"layer_{n}" / "index.html").is_file()})
    links = {label: page.relative_to(Path(cfg.output_dir).resolve()).as_posix() for label, page in pages.items()}
    return ReportSection(
        "Feature browser: look at and listen to every feature",
        "A page per SAE feature with its top clips (playable, activation drawn over the waveform), mel receptive "
        "field, nearest features, label, and its TRF and topography; an index that sorts and filters them by every "
        "result. It opens from disk, with no server and no network.", links=links)


def make_report(config, *, extra_sections=()):
    """Write ``output_dir/report.html`` with every figure, the key numbers and the provenance.

    Parameters
    ----------
    config : path-like | dict | PipelineConfig
        The pipeline config.
    extra_sections : sequence of ReportSection
        Sections put first (the demo adds its ground-truth check).

    Returns
    -------
    path : pathlib.Path
    """
    cfg = load_pipeline_config(config, check_files=False)
    figures = make_figures(cfg)
    fig = lambda *names: [figures[n] for n in names if n in figures]  # noqa: E731
    sections = list(extra_sections)
    browser = _browser_section(cfg)
    if browser is not None:
        sections.append(browser)
    summary = _group_table(cfg, "protocol_summary")
    sections.append(ReportSection(
        "Which SAE features does the EEG track? (AudioSAE protocol)",
        "Per feature, a forward TRF on the protocol channels; lags of the TRF minimum and maximum chosen "
        "on development runs, one-sided t-tests across subjects on test runs, Holm-corrected over "
        "features and both signs.",
        figures=fig("significant_fraction", "trf_weights", "topomaps"),
        table=None if summary is None else summary[[c for c in ("model", "layer", "n_features", "n_significant",
                                                              "fraction_significant", "median_lag_significant")
                                                    if c in summary]],
    ))
    scores = _group_table(cfg, "encoding_tests")
    sections.append(ReportSection(
        "Multivariate encoding: SAE features vs acoustics vs dense activations",
        "Leave-one-run-out prediction r of each feature space per layer, with circular-shift nulls. "
        + _sae_space_text(cfg),
        figures=fig("layer_r"), table=None if scores is None else scores.head(20),
    ))
    split = _group_table(cfg, "variance_partition_group")
    if split is not None:
        sections.append(ReportSection(
            "Variance partitioning: what the SAE features explain beyond the acoustics",
            "Banded ridge over the bands (penalties by hyper-gradient), leave-one-run-out split r^2 of each "
            "band per channel, one-sided t-tests across subjects, Holm-corrected over channels and bands.",
            table=split.groupby(["model", "layer", "band"], as_index=False).agg(
                r2_split_mean=("r2_split_mean", "mean"), r2_split_best_channel=("r2_split_mean", "max"),
                channels_significant=("pval_holm", lambda p: int((p < 0.05).sum()))),
        ))
    recon = _eval_table(cfg, "reconstruction")
    numbers = {}
    if recon is not None:
        for row in recon.itertuples():
            numbers[f"layer {row.layer}: FVU / L0 / WER change"] = (
                f"{row.fvu:.3f} / {row.l0:.1f} / {row.wer_change:+.3f}")
    sections.append(ReportSection(
        "SAE evaluations", "Reconstruction on held-out speech, consistency across seeds, concept erasure, "
        "steering of false speech detections, feature classes and mel receptive fields.",
        figures=fig("reconstruction", "consistency", "erasure", "steering", "tsne", "receptive_fields"),
        numbers=numbers, table=_eval_table(cfg, "steering"),
    ))
    record = output_path(cfg.output_dir, PROVENANCE_FILE)
    provenance = json.loads(record.read_text()) if record.is_file() else {"config": cfg.results_config()}
    return write_report(output_path(cfg.output_dir, "report.html"), title=f"sae-eeg report: {cfg.name}",
                        sections=sections, provenance=provenance)

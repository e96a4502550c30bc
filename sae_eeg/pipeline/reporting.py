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
from .resources import acoustic_dir, attribution_dir, browser_dir, evals_dir, group_dir, manifest_of, subjects_dir


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


def _table_in(folder, name):
    path = folder / f"{name}.parquet"
    return read_table(path) if path.is_file() else None


def _acoustic_figures(cfg, out):
    """Per acoustic space: the subjects' TRFs with the peak channel highlighted, and the topography at the peak."""
    peaks = _table_in(acoustic_dir(cfg), "acoustic_peaks")
    trfs = _concat(sorted(acoustic_dir(cfg).parent.glob("subjects/*/acoustic_trfs.parquet")))
    if peaks is None or trfs is None:
        return {}
    level = trfs.groupby(["space", "subject", "channel", "lag"], as_index=False, sort=False).weight.mean()
    montage = manifest_of(cfg).montage or "colin27_1005"
    figures = {}
    for row in peaks[peaks.subject == "group"].itertuples():
        figures[f"acoustic_trf_{row.space}"] = plot_trf_weights(
            level, out / f"acoustic_trf_{row.space}", channel=row.channel, feature=row.space, feature_col="space").png
        figures[f"acoustic_topomap_{row.space}"] = plot_topomaps(
            level, out / f"acoustic_topomap_{row.space}", feature=row.space, feature_col="space",
            times=[row.latency], montage=montage).png
    return figures


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
    figures.update(_acoustic_figures(cfg, out))
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


#: Columns of the report's table of tracked features.
TRACKED_COLUMNS = ("layer", "feature", "members", "effect_size", "delta_r", "peak_lag", "peak_channels",
                   "pval_corrected", "baseline", "protocol_pval_corrected", "protocol_significant")


def tracked_table(cfg):
    """The tracked features (significant attribution groups) with their paper-protocol row, or None.

    ``protocol_pval_corrected`` is the smallest corrected p of the feature in the
    protocol's table (over channels and signs), ``protocol_significant`` whether it
    passed there.
    """
    features = _table_in(attribution_dir(cfg), "attribution_features")
    if features is None:
        return None
    tracked = features[features.significant.to_numpy(dtype=bool)]
    protocol = _group_table(cfg, "protocol_features")
    if protocol is not None and len(protocol):
        best = protocol.groupby(["layer", "feature"], as_index=False).agg(
            protocol_pval_corrected=("pval_corrected", "min"), protocol_significant=("significant", "any"))
        tracked = tracked.merge(best, on=["layer", "feature"], how="left")
    return tracked[[c for c in TRACKED_COLUMNS if c in tracked]].reset_index(drop=True)


def _attribution_section(cfg):
    summary = _table_in(attribution_dir(cfg), "attribution_summary")
    tracked = tracked_table(cfg)
    if summary is None or tracked is None:
        return None
    a = cfg.alignment.attribution
    numbers = {f"layer {int(r.layer)}": f"{int(r.n_tracked)} tracked of {int(r.n_candidates)} candidate groups "
               f"({int(r.n_features)} features in the pool)" for r in summary.itertuples()}
    links = {"every candidate (CSV)": "alignment/attribution/attribution_features.csv",
             "their members (CSV)": "alignment/attribution/attribution_members.csv"}
    links.update({f"paper protocol rows, layer {n} (CSV)": f"alignment/layer_{n}/group/protocol_features.csv"
                  for n in cfg.layers if (group_dir(cfg, n) / "protocol_features.csv").is_file()})
    return ReportSection(
        "Which SAE features does the EEG track beyond the acoustics?",
        f"Features of layers {list(summary.layer)} screened together on the first {a.n_dev_runs} runs (greedy "
        "conditional selection after the acoustic baseline, in spatial components shared by the subjects); "
        "each candidate's unique contribution is the drop in held-out prediction r when it is left out of a "
        "joint TRF with the acoustic baseline and the other candidates, tested across subjects on the other "
        f"runs ({a.correction}-corrected over candidates, level {a.level}). A row is a feature, or a group of "
        f"features whose trajectories correlate at |r| >= {a.group_threshold} and that the data cannot tell "
        "apart (members). The protocol columns give the same feature's row of the paper protocol below.",
        numbers=numbers, table=tracked, links=links)


def _acoustic_section(cfg, fig):
    peaks = _table_in(acoustic_dir(cfg), "acoustic_peaks")
    if peaks is None:
        return None
    beyond = _table_in(attribution_dir(cfg), "attribution_acoustic")
    numbers = {} if beyond is None else {
        f"{r.space}: held-out r lost without it": f"{r.delta_r:.4f} (t = {r.t:.2f})" for r in beyond.itertuples()}
    return ReportSection(
        "Acoustic TRFs: what the envelope and the mel bands alone evoke",
        "Per subject a TRF over all channels (penalty by leave-one-run-out cross-validation), the group mean "
        "with the latency and amplitude of its peak at the peak channel and bootstrap intervals over subjects, "
        "and the topography at the peak (mel: the mean over bands).",
        figures=[fig for name, fig in sorted(fig.items()) if name.startswith("acoustic_")],
        numbers=numbers, table=peaks[peaks.subject == "group"].drop(columns=["subject"]))


def make_report(config, *, extra_sections=()):
    """Write ``output_dir/report.html`` with every figure, the key numbers and the provenance.

    It leads with the features the attribution found tracked (with their paper-protocol rows),
    then the acoustic TRFs, the feature browser and the paper protocol's counts in their own
    section, the encoding analyses and the SAE evaluations.

    Parameters
    ----------
    config : path-like | dict | PipelineConfig
        The pipeline config.
    extra_sections : sequence of ReportSection
        Sections put right after the tracked features, which lead the report (the demo adds its
        ground-truth check).

    Returns
    -------
    path : pathlib.Path
    """
    cfg = load_pipeline_config(config, check_files=False)
    figures = make_figures(cfg)
    fig = lambda *names: [figures[n] for n in names if n in figures]  # noqa: E731
    sections = [s for s in (_attribution_section(cfg),) if s is not None]
    sections += list(extra_sections)
    sections += [s for s in (_acoustic_section(cfg, figures), _browser_section(cfg)) if s is not None]
    summary = _group_table(cfg, "protocol_summary")
    sections.append(ReportSection(
        "The AudioSAE paper protocol: counts of features that predict the EEG on their own",
        "Per feature, a forward TRF on the protocol channels; lags of the TRF minimum and maximum chosen "
        "on development runs, one-sided t-tests across subjects on test runs, Holm-corrected over "
        "features and both signs. What the counts mean: features whose own TRF, fitted alone, predicts "
        "every subject's test runs. What they do not mean: the number of features the brain tracks; a "
        "feature that fires with a tracked one, encodes the same sounds in another layer or follows the "
        "envelope passes too (every subject heard the same stimuli), so most of a layer can pass. The "
        "first section answers which features carry information of their own.",
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

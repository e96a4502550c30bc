"""Figures of the SAE evaluations: reconstruction, consistency, erasure, steering, t-SNE, mel fields.

Inputs are the tidy tables of :mod:`sae_eeg.evals` and of
:func:`sae_eeg.sae.reconstruction_metrics` (default column names are theirs; every
one can be mapped with a ``*_col`` argument).
"""

from __future__ import annotations

import numpy as np
import seaborn as sns
from matplotlib.ticker import FuncFormatter, MaxNLocator

from .._check import _check_range, _ensure_int
from .._docs import fill_doc
from ._common import (
    as_percent,
    category_palette,
    check_array,
    check_table,
    new_figure,
    paper_style,
    save_figure,
)

_UNLABELLED = "unlabelled"


@fill_doc
def plot_reconstruction_tradeoff(table, path, *, l0_col="l0", l2_col="normalized_l2", layer_col="layer",
                                 sae_col=None):
    """Reconstruction error against sparsity (L0): one colour per layer, points joined by L0.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per SAE: the :func:`~sae_eeg.sae.reconstruction_metrics` dicts with a
        layer column (and optionally an SAE name column).
    %(figure_path)s
    l0_col, l2_col, layer_col : str
        Column names. Defaults ``"l0"``, ``"normalized_l2"``, ``"layer"``.
    sae_col : str | None
        Column naming the SAE (marker style per SAE), or None. Default None.

    Returns
    -------
    %(figure_files)s

    Raises
    ------
    InputError
        Missing columns, an empty table or non-numeric L0/L2.
    """
    check_table(table, "table", [l0_col, l2_col, layer_col, sae_col], numeric=[l0_col, l2_col])
    data = table.assign(Layer=table[layer_col].astype(str)).sort_values([layer_col, l0_col])
    layers, palette = category_palette(data["Layer"])
    with paper_style():
        fig, (ax,) = new_figure(width=4.6, height=3.6)
        for layer in layers:
            rows = data[data["Layer"] == layer]
            ax.plot(rows[l0_col], rows[l2_col], color=palette[layer], lw=1, alpha=0.7)
        sns.scatterplot(data=data, x=l0_col, y=l2_col, hue="Layer", hue_order=layers, palette=palette,
                        style=sae_col, s=45, ax=ax)
        l0 = data[l0_col].to_numpy(dtype=float)
        if l0.min() > 0 and l0.max() / l0.min() > 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.set(xlabel="L0 (active features per frame)", ylabel="Normalised L2 error",
               title="Reconstruction vs sparsity")
        ax.legend(fontsize="small")
        return save_figure(fig, path)


@fill_doc
def plot_consistency(table, path, *, sae_col="sae", iou_col="coverage", cosine_col="shared_fraction",
                     iou_floor_col=None, cosine_floor_col="floor_shared_fraction"):
    """Bars of seed consistency per SAE: IoU coverage and decoder-cosine shared fraction, with floors.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per SAE compared with the reference (:func:`sae_eeg.evals.compare_saes`):
        columns ``sae_col``, ``iou_col`` and ``cosine_col`` (fractions in [0, 1]).
    %(figure_path)s
    sae_col, iou_col, cosine_col : str
        Column names. Defaults ``"sae"``, ``"coverage"``, ``"shared_fraction"``.
    iou_floor_col, cosine_floor_col : str | None
        Columns of the random-init floor of each metric, drawn as a black mark over
        its bar; None for no floor. Defaults None and ``"floor_shared_fraction"``.

    Returns
    -------
    %(figure_files)s

    Raises
    ------
    InputError
        Missing columns, an empty table or non-numeric metrics.
    """
    metrics = [(iou_col, iou_floor_col, "activation IoU > 0.5 (coverage)"),
               (cosine_col, cosine_floor_col, "decoder cosine ≥ 0.7 (Hungarian)")]
    value_cols = [c for m in metrics for c in m[:2] if c is not None]
    check_table(table, "table", [sae_col, *value_cols], numeric=value_cols)
    x = np.arange(len(table))
    width = 0.38
    with paper_style():
        fig, (ax,) = new_figure(width=max(3.6, 1.1 * len(table) + 1.5), height=3.4)
        floor_label = "random-init floor"
        for k, (col, floor_col, label) in enumerate(metrics):
            pos = x + (k - 0.5) * width
            bars = ax.bar(pos, table[col], width, color=f"C{k}", label=label)
            ax.bar_label(bars, labels=[f"{100 * v:.0f}" for v in table[col]], fontsize="x-small")
            if floor_col is not None:
                ax.hlines(table[floor_col], pos - width / 2, pos + width / 2, colors="k", lw=2,
                          label=floor_label)
                floor_label = None
        ax.set_xticks(x, table[sae_col].astype(str), rotation=30 if len(table) > 4 else 0)
        ax.set_ylim(0, 1.1)
        as_percent(ax)
        ax.set(ylabel="Features shared", title="Consistency across seeds")
        ax.legend(fontsize="x-small", loc="upper right")
        return save_figure(fig, path)


@fill_doc
def plot_erasure_curves(curves, path, *, concept_col="concept", n_removed_col="n_removed", mcc_col="mcc",
                        level=None):
    """Held-out MCC of a concept classifier as its top Fisher features are removed, per concept.

    Parameters
    ----------
    curves : pandas.DataFrame
        :attr:`sae_eeg.evals.ErasureResult.curves`: one row per (concept, number of
        features removed).
    %(figure_path)s
    concept_col, n_removed_col, mcc_col : str
        Column names. Defaults ``"concept"``, ``"n_removed"``, ``"mcc"``.
    level : float | None
        MCC level drawn as a dashed line (the erasure summary's ``level``). Default None.

    Returns
    -------
    %(figure_files)s

    Raises
    ------
    InputError
        Missing columns, an empty table, non-numeric values or ``level`` outside [-1, 1].
    """
    check_table(curves, "curves", [concept_col, n_removed_col, mcc_col], numeric=[n_removed_col, mcc_col])
    if level is not None:
        _check_range("level", level, -1, 1)
    concepts, palette = category_palette(curves[concept_col])
    with paper_style():
        fig, (ax,) = new_figure(width=4.8, height=3.4)
        sns.lineplot(data=curves, x=n_removed_col, y=mcc_col, hue=concept_col, hue_order=concepts,
                     palette=palette, errorbar=None, ax=ax)
        if level is not None:
            ax.axhline(level, color="k", ls="--", lw=0.8, label=f"MCC = {level:g}")
        ax.set_ylim(min(-0.05, float(curves[mcc_col].min()) - 0.05), 1.05)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="Features removed (by Fisher score)", ylabel="Held-out MCC", title="Concept erasure")
        ax.legend(fontsize="small", ncol=1 + len(concepts) // 8)
        return save_figure(fig, path)


@fill_doc
def plot_steering(summary, path, *, alpha_col="alpha", fpr_col="fpr", wer_col="wer"):
    """False-speech rate on non-speech clips and WER on speech against the steering strength alpha.

    Parameters
    ----------
    summary : pandas.DataFrame
        :attr:`sae_eeg.evals.SteeringReport.summary`: one row per alpha, rates in [0, 1].
    %(figure_path)s
    alpha_col, fpr_col, wer_col : str
        Column names. Defaults ``"alpha"``, ``"fpr"``, ``"wer"``.

    Returns
    -------
    %(figure_files)s

    Raises
    ------
    InputError
        Missing columns, an empty table or non-numeric values.
    """
    check_table(summary, "summary", [alpha_col, fpr_col, wer_col], numeric=[alpha_col, fpr_col, wer_col])
    data = summary.sort_values(alpha_col)
    panels = [(fpr_col, "False speech detections", "Non-speech clips"), (wer_col, "WER", "Speech clips")]
    with paper_style():
        fig, axes = new_figure(2, width=3.4, height=3.2, sharex=True)
        for k, (ax, (col, ylabel, title)) in enumerate(zip(axes, panels)):
            ax.plot(data[alpha_col], data[col], marker="o", color=f"C{k}")
            ax.axvline(0, color="0.6", lw=0.6)
            as_percent(ax)
            ax.set(xlabel="Steering strength α", ylabel=ylabel, title=title)
            ax.set_ylim(bottom=0)
        return save_figure(fig, path)


@fill_doc
def plot_tsne_by_label(embedding, path, *, labels=None, x_col="x", y_col="y", label_col="label",
                       feature_col="feature"):
    """2-D map of the features (e.g. t-SNE of encoder rows) coloured by label (speech/sound/music).

    Parameters
    ----------
    embedding : pandas.DataFrame
        One row per feature with coordinates ``x_col``, ``y_col``
        (:func:`sae_eeg.evals.feature_tsne`), and ``label_col`` unless ``labels`` is given.
    %(figure_path)s
    labels : pandas.DataFrame | None
        Labels joined on ``feature_col`` (:func:`sae_eeg.evals.classify_features`);
        features without one are ``"unlabelled"``. Default None (labels in ``embedding``).
    x_col, y_col, label_col, feature_col : str
        Column names. Defaults ``"x"``, ``"y"``, ``"label"``, ``"feature"``.

    Returns
    -------
    %(figure_files)s

    Raises
    ------
    InputError
        Missing columns, empty tables or non-numeric coordinates.
    """
    if labels is None:
        data = check_table(embedding, "embedding", [x_col, y_col, label_col], numeric=[x_col, y_col])
    else:
        check_table(embedding, "embedding", [feature_col, x_col, y_col], numeric=[x_col, y_col])
        check_table(labels, "labels", [feature_col, label_col])
        data = embedding.drop(columns=label_col, errors="ignore").merge(
            labels[[feature_col, label_col]], on=feature_col, how="left")
    data = data.assign(**{label_col: data[label_col].fillna(_UNLABELLED).astype(str)})
    names, palette = category_palette(sorted(data[label_col]))
    if _UNLABELLED in palette:
        palette[_UNLABELLED] = (0.75, 0.75, 0.75)
    with paper_style():
        fig, (ax,) = new_figure(width=4.4, height=4.2)
        sns.scatterplot(data=data, x=x_col, y=y_col, hue=label_col, hue_order=names, palette=palette,
                        s=10, linewidth=0, alpha=0.8, ax=ax)
        ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2", xticks=[], yticks=[], title="SAE features by label")
        ax.legend(title=None, markerscale=1.5, fontsize="small")
        return save_figure(fig, path)


@fill_doc
def plot_mel_receptive_fields(fields, path, *, feature_ids=None, lags=None, mel_freqs=None, n_cols=4):
    """Mel-spectrogram receptive fields of features, one image per feature.

    Each image is the mean log-mel window around a feature's strongest activations
    (:meth:`sae_eeg.evals.ActivationWindows.receptive_field`, transposed), on its own
    colour scale.

    Parameters
    ----------
    fields : ndarray, shape (n_features, n_mels, n_window_frames)
        Receptive fields (log-mel values, low bands first).
    %(figure_path)s
    feature_ids : array-like of int, shape (n_features,) | None
        Titles of the panels. Default ``0..n_features-1``.
    lags : array-like, shape (n_window_frames,) | None
        Time of each window frame relative to the activation, s. Default frame index.
    mel_freqs : array-like, shape (n_mels,) | None
        Centre frequency of each band, Hz (labels of the y axis). Default band index.
    n_cols : int
        Panels per row. Default 4.

    Returns
    -------
    %(figure_files)s

    Raises
    ------
    InputError
        ``fields`` not 3-D, empty or non-finite; ``feature_ids``, ``lags`` or
        ``mel_freqs`` of the wrong length; ``n_cols`` < 1.
    """
    fields_FMW = check_array(fields, "fields", ndim=3)
    n_features, n_mels, n_frames = fields_FMW.shape
    ids = np.arange(n_features) if feature_ids is None else np.asarray(feature_ids)
    check_array(ids, "feature_ids", ndim=1, size=n_features)
    lags_ms = (np.arange(n_frames, dtype=float) if lags is None
               else check_array(lags, "lags", ndim=1, size=n_frames) * 1e3)
    freqs = None if mel_freqs is None else check_array(mel_freqs, "mel_freqs", ndim=1, size=n_mels)
    n_cols = _ensure_int(n_cols, "n_cols")
    _check_range("n_cols", n_cols, 1)
    half = (lags_ms[1] - lags_ms[0]) / 2 if n_frames > 1 else 0.5
    extent = (lags_ms[0] - half, lags_ms[-1] + half, -0.5, n_mels - 0.5)
    with paper_style():
        fig, axes = new_figure(n_features, ncols=n_cols, width=2.0, height=1.9, sharey=True)
        for ax, field_MW, fid in zip(axes, fields_FMW, ids):
            ax.imshow(field_MW, origin="lower", aspect="auto", extent=extent, cmap="magma",
                      interpolation="nearest")
            ax.axvline(0 if lags is not None else (n_frames - 1) / 2, color="w", lw=0.6, ls=":")
            ax.set_title(f"feature {fid}", fontsize="small")
        _mel_axis_labels(axes[:n_features], n_cols, freqs, n_mels=n_mels,
                         time_label="Window frame" if lags is None else "Lag (ms)")
        return save_figure(fig, path)


def _mel_axis_labels(axes, n_cols, freqs, *, n_mels, time_label):
    """Frequency ticks (kHz at a few bands) on the first column, time labels on the bottom row."""
    ticks = np.unique(np.linspace(0, n_mels - 1, min(n_mels, 4)).round().astype(int))
    if freqs is None:
        tick_labels, freq_label = [str(t) for t in ticks], "Mel band"
    else:
        tick_labels, freq_label = [f"{freqs[t] / 1e3:.1f}" for t in ticks], "Frequency (kHz)"
    for k, ax in enumerate(axes):
        if k % n_cols == 0:
            ax.set_yticks(ticks, tick_labels)
            ax.set_ylabel(freq_label)
        if k >= len(axes) - n_cols:
            ax.set_xlabel(time_label)

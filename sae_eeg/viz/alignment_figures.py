"""Figures of the feature-to-EEG analyses: TRF weights, topographies, significance, layer curves.

Inputs are the tidy tables of :mod:`sae_eeg.alignment` (default column names are
theirs; every one can be mapped with a ``*_col`` argument):

- TRF weights (``protocol_trf`` / ``cluster_trf`` tables, :meth:`ProtocolResult.trf_frame`):
  ``subject``, ``feature``, ``channel``, ``split``, ``lag`` (s), ``weight``.
- Protocol summary (``protocol_summary``): ``model``, ``layer``, ``fraction_significant``.
- Encoding scores (``encoding``, :func:`encoding_scores`): ``subject``, ``model``,
  ``layer``, ``feature_space``, ``r`` (one row per channel).
"""

from __future__ import annotations

import warnings

import mne
import numpy as np
import seaborn as sns
from scipy.signal import find_peaks

from .._check import _check_option, _validate_type
from .._docs import fill_doc
from ..errors import InputError
from ._common import (
    as_percent,
    category_palette,
    check_table,
    new_figure,
    paper_style,
    save_figure,
    select_rows,
)

_TRF_CMAP = "RdBu_r"


def _trf_rows(table, *, feature, split, feature_col, channel_col, lag_col, weight_col, split_col):
    """Rows of one feature (the strongest when ``feature`` is None) and split; and that feature."""
    check_table(table, "table", [feature_col, channel_col, lag_col, weight_col],
                numeric=[lag_col, weight_col])
    if split is not None:
        check_table(table, "table", [split_col])
        table = select_rows(table, split_col, split, "split")
    if feature is None:
        peak = table.groupby([feature_col, channel_col, lag_col])[weight_col].mean().abs()
        feature = peak.groupby(level=0).max().idxmax()
    return select_rows(table, feature_col, feature, "feature"), feature


def _trf_map(rows, *, channel_col, lag_col, weight_col):
    """Weights averaged over subjects: DataFrame (lags x channels), channels in table order."""
    channels = list(dict.fromkeys(rows[channel_col]))
    wide = rows.pivot_table(index=lag_col, columns=channel_col, values=weight_col, aggfunc="mean")
    return wide[channels].sort_index()


def _split_label(split):
    return "" if split is None else f", {split} runs"


@fill_doc
def plot_trf_weights(table, path, *, channel="Pz", feature=None, split=None, feature_col="feature",
                     channel_col="channel", lag_col="lag", weight_col="weight", split_col="split"):
    """TRF weights over lags: a butterfly over channels with one channel highlighted.

    Grey lines are the subject-mean weights of every channel; the selected channel
    is drawn in colour with its mean +/- s.e.m. across subjects (rows of the same
    channel and lag are the subjects).

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy TRF weights, one row per (subject, feature, channel, lag[, split]):
        columns ``feature_col``, ``channel_col``, ``lag_col`` (s), ``weight_col``.
    %(figure_path)s
    channel : str
        Channel highlighted. Default ``"Pz"``.
    feature : int | None
        Feature shown; default the feature with the largest subject-mean |weight|.
    split : str | None
        Keep only rows whose ``split_col`` equals this (e.g. ``"test"``); default all rows.
    feature_col, channel_col, lag_col, weight_col, split_col : str
        Column names. Defaults ``"feature"``, ``"channel"``, ``"lag"``, ``"weight"``, ``"split"``.

    Returns
    -------
    %(figure_files)s

    Raises
    ------
    InputError
        Missing columns, an empty table, or a channel/feature/split not in the table.
    """
    rows, feature = _trf_rows(table, feature=feature, split=split, feature_col=feature_col,
                              channel_col=channel_col, lag_col=lag_col, weight_col=weight_col,
                              split_col=split_col)
    highlight = select_rows(rows, channel_col, channel, "channel")
    wide = _trf_map(rows, channel_col=channel_col, lag_col=lag_col, weight_col=weight_col)
    with paper_style():
        fig, (ax,) = new_figure(width=5.0, height=3.4)
        ax.plot(wide.index * 1e3, wide.to_numpy(), color="0.65", lw=0.7, alpha=0.8)
        sns.lineplot(x=highlight[lag_col] * 1e3, y=highlight[weight_col], errorbar="se", ax=ax,
                     color="C3", lw=2, label=f"{channel} (mean ± s.e.m.)")
        ax.plot([], [], color="0.65", lw=0.7, label=f"all channels (n = {wide.shape[1]})")
        ax.axhline(0, color="k", lw=0.6)
        ax.set(xlabel="Lag (ms)", ylabel="TRF weight (a.u.)", title=f"Feature {feature}{_split_label(split)}")
        ax.legend(loc="best", fontsize="small")
        return save_figure(fig, path)


def peak_lags(gfp, times, n_peaks, *, min_ratio=0.2):
    """The ``n_peaks`` highest local maxima of a global field power curve, in time order.

    Parameters
    ----------
    gfp : ndarray, shape (n_lags,)
        Spread of the weights over channels at each lag.
    times : ndarray, shape (n_lags,)
        Lags, s.
    n_peaks : int
        Number of peaks wanted (fewer when the curve has fewer maxima).
    min_ratio : float
        Maxima lower than ``min_ratio`` times the highest one are ignored (noise
        between components). Default 0.2.

    Returns
    -------
    peaks : ndarray, shape (<= n_peaks,)
        Lags of the peaks, s (the global maximum when there is no interior peak).
    """
    padded = np.concatenate([[-np.inf], gfp, [-np.inf]])
    idx = find_peaks(padded, height=min_ratio * np.max(gfp))[0] - 1
    best = idx[np.argsort(-gfp[idx], kind="stable")[:n_peaks]] if idx.size else [int(np.argmax(gfp))]
    return np.sort(times[np.asarray(best)])


def _eeg_info(ch_names, montage):
    """An Info of the channels the montage knows (case-insensitive), with their positions."""
    if isinstance(montage, str):
        _check_option("montage", montage, mne.channels.get_builtin_montages())
        montage = mne.channels.make_standard_montage(montage)
    _validate_type(montage, (str, mne.channels.DigMontage), "montage")
    known = {name.lower() for name in montage.ch_names}
    keep = [c for c in ch_names if str(c).lower() in known]
    dropped = [c for c in ch_names if str(c).lower() not in known]
    if len(keep) < 3:
        raise InputError(f"Topographies need positions of at least 3 channels; the montage knows "
                         f"{keep} of the table's channels {list(ch_names)}. Give another montage.")
    if dropped:
        warnings.warn(f"Channels {dropped} have no position in the montage and are left out of the "
                      "topographies; drop them from the table or give a montage that has them to "
                      "silence this.", stacklevel=3)
    info = mne.create_info([str(c) for c in keep], sfreq=1.0, ch_types="eeg")
    info.set_montage(montage, match_case=False, verbose=False)
    return info, keep


@fill_doc
def plot_topomaps(table, path, *, feature=None, split=None, times=None, n_peaks=3, montage="colin27_1005",
                  feature_col="feature", channel_col="channel", lag_col="lag", weight_col="weight",
                  split_col="split"):
    """Scalp topographies of subject-mean TRF weights at peak lags (MNE).

    Parameters
    ----------
    table : pandas.DataFrame
        Tidy TRF weights over several channels (see :func:`plot_trf_weights`).
    %(figure_path)s
    feature : int | None
        Feature shown; default the feature with the largest subject-mean |weight|.
    split : str | None
        Keep only rows whose ``split_col`` equals this; default all rows.
    times : sequence of float | None
        Lags to show, s (the nearest lag of the table is used). Default: the
        ``n_peaks`` highest peaks of the global field power (std over channels).
    n_peaks : int
        Number of peak lags when ``times`` is None. Default 3.
    montage : str | mne.channels.DigMontage
        Electrode positions: an MNE built-in montage name or a montage. Channels
        it does not know are left out with a warning. Default ``"colin27_1005"``
        (MNE 1.13's name of the former ``"standard_1005"``).
    feature_col, channel_col, lag_col, weight_col, split_col : str
        Column names (defaults as in :func:`plot_trf_weights`).

    Returns
    -------
    %(figure_files)s

    Raises
    ------
    InputError
        Missing columns, an empty table, an unknown feature/split/montage, fewer than 3
        channels with positions, or ``times`` outside the lags of the table.
    """
    rows, feature = _trf_rows(table, feature=feature, split=split, feature_col=feature_col,
                              channel_col=channel_col, lag_col=lag_col, weight_col=weight_col,
                              split_col=split_col)
    wide = _trf_map(rows, channel_col=channel_col, lag_col=lag_col, weight_col=weight_col)
    info, keep = _eeg_info(list(wide.columns), montage)
    data_LC = wide[keep].to_numpy()
    lags = wide.index.to_numpy(dtype=float)
    if times is None:
        times = peak_lags(data_LC.std(axis=1), lags, n_peaks)
    times = np.atleast_1d(np.asarray(times, dtype=float))
    step = np.median(np.diff(lags)) if lags.size > 1 else 0.0
    if times.size == 0 or times.min() < lags[0] - step or times.max() > lags[-1] + step:
        raise InputError(f"times must be lags within [{lags[0]}, {lags[-1]}] s, got {times.tolist()}.")
    idx = np.abs(lags[None, :] - times[:, None]).argmin(axis=1)
    vmax = float(np.abs(data_LC[idx]).max()) or 1.0
    with paper_style():
        fig, axes = new_figure(idx.size, width=2.3, height=2.5)
        for ax, i in zip(axes, idx):
            im, _ = mne.viz.plot_topomap(data_LC[i], info, axes=ax, show=False, cmap=_TRF_CMAP,
                                         vlim=(-vmax, vmax), contours=4)
            ax.set_title(f"{lags[i] * 1e3:.0f} ms")
        fig.colorbar(im, ax=list(axes), shrink=0.7, label="TRF weight (a.u.)")
        fig.suptitle(f"Feature {feature}{_split_label(split)}")
        return save_figure(fig, path)


@fill_doc
def plot_significant_fraction(summary, path, *, layer_col="layer", fraction_col="fraction_significant",
                              model_col="model"):
    """Bars of the fraction of significant features per layer, one colour per model.

    Parameters
    ----------
    summary : pandas.DataFrame
        One row per (model, layer) (``protocol_summary``, :func:`sae_eeg.alignment.summarize`):
        columns ``model_col``, ``layer_col``, ``fraction_col`` (in [0, 1]); repeated
        rows are averaged.
    %(figure_path)s
    layer_col, fraction_col, model_col : str
        Column names. Defaults ``"layer"``, ``"fraction_significant"``, ``"model"``.

    Returns
    -------
    %(figure_files)s

    Raises
    ------
    InputError
        Missing columns, an empty table or a non-numeric fraction.
    """
    check_table(summary, "summary", [layer_col, fraction_col, model_col], numeric=[fraction_col])
    models, palette = category_palette(summary[model_col])
    with paper_style():
        fig, (ax,) = new_figure(width=max(3.5, 0.6 * summary[layer_col].nunique() * len(models) + 1.5))
        sns.barplot(data=summary, x=layer_col, y=fraction_col, hue=model_col, hue_order=models,
                    palette=palette, errorbar=None, ax=ax)
        for bars in ax.containers:
            ax.bar_label(bars, labels=[f"{100 * b.get_height():.1f}" for b in bars], fontsize="x-small")
        as_percent(ax)
        ax.set(xlabel="Layer", ylabel="Significant features", title="Features tracked by the EEG")
        ax.legend(title=None, fontsize="small")
        return save_figure(fig, path)


@fill_doc
def plot_layer_r(scores, path, *, layer_col="layer", r_col="r", space_col="feature_space",
                 subject_col="subject", model_col="model"):
    """Held-out prediction r per layer for each feature space, one panel per model.

    r is averaged over channels within subject; lines show the mean over subjects
    with a +/- s.e.m. band. A space with one layer value only (an acoustic baseline
    such as the envelope) is drawn as a dashed horizontal line across the panel.

    Parameters
    ----------
    scores : pandas.DataFrame
        Concatenated encoding tables (:func:`sae_eeg.alignment.encoding_scores`), one row
        per (subject, model, layer, feature space[, channel]).
    %(figure_path)s
    layer_col, r_col, space_col, subject_col, model_col : str
        Column names. Defaults ``"layer"``, ``"r"``, ``"feature_space"``,
        ``"subject"``, ``"model"``.

    Returns
    -------
    %(figure_files)s

    Raises
    ------
    InputError
        Missing columns, an empty table or non-numeric layers/r.
    """
    check_table(scores, "scores", [layer_col, r_col, space_col, subject_col, model_col],
                numeric=[layer_col, r_col])
    keys = [model_col, space_col, layer_col, subject_col]
    per_subject = scores.groupby(keys, as_index=False, sort=False)[r_col].mean()
    models = list(dict.fromkeys(per_subject[model_col]))
    spaces, palette = category_palette(per_subject[space_col])
    with paper_style():
        fig, axes = new_figure(len(models), width=4.2, height=3.4, sharey=True)
        for ax, model in zip(axes, models):
            rows = per_subject[per_subject[model_col] == model]
            layers = _layer_axis(rows, space_col, layer_col)
            for space in spaces:
                _layer_line(ax, rows[rows[space_col] == space], layers, layer_col, r_col,
                            color=palette[space], label=str(space))
            ax.axhline(0, color="k", lw=0.6)
            ax.set(xlabel="Layer", ylabel="Prediction r", title=str(model), xticks=layers)
            ax.legend(fontsize="small")
        return save_figure(fig, path)


def _layer_axis(rows, space_col, layer_col):
    """Layers of the spaces that vary over layers (a baseline's single layer label is left out)."""
    n_layers = rows.groupby(space_col)[layer_col].transform("nunique")
    layered = rows[n_layers > 1]
    return np.sort((rows if layered.empty else layered)[layer_col].unique())


def _layer_line(ax, rows, layers, layer_col, r_col, *, color, label):
    """One space: a line over layers, or a flat dashed band when it has a single layer value."""
    if rows.empty:
        return
    if rows[layer_col].nunique() == 1 and layers.size > 1:
        mean, sem = rows[r_col].mean(), rows[r_col].sem() if len(rows) > 1 else 0.0
        ax.axhline(mean, color=color, ls="--", lw=1.5, label=label)
        ax.axhspan(mean - sem, mean + sem, color=color, alpha=0.15, lw=0)
        return
    sns.lineplot(data=rows, x=layer_col, y=r_col, errorbar="se", marker="o", color=color, label=label,
                 ax=ax)

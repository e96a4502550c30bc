"""The EEG side of a feature page: its TRF over lags with a confidence interval, and a topography.

Inputs are the alignment's tidy TRF tables (one row per subject, feature,
channel, lag and split: ``protocol_trf`` for the protocol channels,
``cluster_trf`` for all channels); the topography is drawn by
:func:`sae_eeg.viz.plot_topomaps` at the lag where the spread of the
subject-mean weights over channels (global field power) peaks.
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from .._check import _check_range
from ..errors import InputError
from ..viz import plot_topomaps
from ..viz._common import check_table
from ._encode import plain, quantized

TRF_COLUMNS = ("subject", "feature", "channel", "lag", "weight")


def lag_axis(lags):
    """Lags (s) for the page: ``{start, step, n}`` when they form a regular grid, else a list."""
    lags = np.asarray(lags, dtype=float)
    if lags.size > 2:
        step = (lags[-1] - lags[0]) / (lags.size - 1)
        if step > 0 and np.allclose(np.diff(lags), step, rtol=1e-6, atol=1e-12):
            return {"start": float(lags[0]), "step": float(step), "n": int(lags.size)}
    return plain(lags)


def trf_summaries(trf, *, confidence=0.95, channel=None):
    """Subject mean and confidence interval of every feature's TRF at each channel and split.

    Parameters
    ----------
    trf : pandas.DataFrame
        Tidy TRF weights: ``subject``, ``feature``, ``channel``, ``lag`` (s),
        ``weight`` and optionally ``split`` (e.g. "dev", "test").
    confidence : float
        Level of the t-based interval of the mean across subjects. Default 0.95.
    channel : str | None
        Channel every page opens on when the feature has it (``chosen``). Default
        None: the page opens on the channel of the feature's best row in its
        tables, else on its ``strongest`` channel.

    Returns
    -------
    summaries : dict of int -> dict
        Feature id -> ``lags`` (s, see :func:`lag_axis`), ``channels`` (channel ->
        split -> ``n`` subjects and ``values``: mean, lower and upper bound over
        the lags, concatenated and quantised on one scale, see
        :func:`~sae_eeg.browse._encode.quantized`), ``chosen`` (``channel`` when
        the feature has it, else None) and ``strongest`` (the channel where the
        TRF departs most from zero: largest |mean| / s.e.m.).
    """
    check_table(trf, "trf", TRF_COLUMNS, numeric=["lag", "weight"])
    _check_range("confidence", confidence, 0, 1, low_inclusive=False, high_inclusive=False)
    keys = ["feature", "channel", "split", "lag"]
    data = trf if "split" in trf.columns else trf.assign(split="all")
    stats = data.groupby(keys, sort=True)["weight"].agg(["mean", "std", "count"]).reset_index()
    n = stats["count"].to_numpy()
    sem = stats["std"].fillna(0.0).to_numpy() / np.sqrt(n)
    half = scipy.stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)) * sem  # 0 (no band) for one subject
    stats["lo"], stats["hi"] = stats["mean"] - half, stats["mean"] + half
    stats["z"] = np.abs(stats["mean"]) / np.where(sem > 0, sem, np.inf)
    # one pass over plain arrays: the rows of a (feature, channel, split) are contiguous, lags ascending
    feature_R = stats["feature"].to_numpy()
    channel_R = stats["channel"].astype(str).to_numpy()
    split_R = stats["split"].astype(str).to_numpy()
    group = np.flatnonzero(np.r_[True, (feature_R[1:] != feature_R[:-1]) | (channel_R[1:] != channel_R[:-1])
                                 | (split_R[1:] != split_R[:-1])])
    ends = np.r_[group[1:], feature_R.size]
    lag_R, z_R, count_R = stats["lag"].to_numpy(), stats["z"].to_numpy(), stats["count"].to_numpy()
    values_R = stats[["mean", "lo", "hi"]].to_numpy()
    summaries, strength, n_lags = {}, {}, {}
    for start, end in zip(group, ends):
        feature, chan, split = int(feature_R[start]), channel_R[start], split_R[start]
        entry = summaries.setdefault(feature, {"lags": lag_axis(lag_R[start:end]), "channels": {}})
        n_lags.setdefault(feature, end - start)
        if end - start != n_lags[feature]:
            raise InputError(f"trf: feature {feature}, channel {chan!r}, split {split!r} has {end - start} lags, "
                             f"another of its channels or splits {n_lags[feature]}; give each the same lags.")
        entry["channels"].setdefault(chan, {})[split] = {"n": int(count_R[start:end].max()),
                                                         "values": quantized(values_R[start:end].T)}
        best = strength.setdefault(feature, {})
        best[chan] = max(best.get(chan, 0.0), float(z_R[start:end].max()))
    for feature, entry in summaries.items():
        entry["chosen"] = channel if channel in entry["channels"] else None
        entry["strongest"] = max(strength[feature], key=strength[feature].get)
    return summaries


def topographies(trf, folder, *, montage):
    """One topography PNG per feature of an all-channel TRF table, at its peak lag.

    Parameters
    ----------
    trf : pandas.DataFrame
        Tidy all-channel TRF weights (see :func:`trf_summaries`), e.g. ``cluster_trf``.
    folder : pathlib.Path
        Where ``feature_<id>.png`` files go.
    montage : str | mne.channels.DigMontage
        Electrode positions (see :func:`sae_eeg.viz.plot_topomaps`).

    Returns
    -------
    files : dict of int -> str
        Feature id -> ``<folder name>/feature_<id>.png``.
    """
    check_table(trf, "all_channel_trf", TRF_COLUMNS, numeric=["lag", "weight"])
    files = {}
    for feature, rows in trf.groupby("feature", sort=True):
        drawn = plot_topomaps(rows, folder / f"feature_{int(feature)}", feature=feature, n_peaks=1,
                              montage=montage)
        drawn.svg.unlink()  # the page shows the PNG; the vector copy would double the folder's size
        files[int(feature)] = f"{folder.name}/{drawn.png.name}"
    return files

"""Acoustic TRFs as results in their own right: envelope, onsets, mel bands.

The first thing a reviewer asks of an SAE-feature TRF is what the acoustics alone
do. :func:`acoustic_trfs` fits, per acoustic space, a forward TRF over all channels
for every subject (the ridge penalty by leave-one-stimulus-out cross-validation), and
reports the group TRF with the latency and amplitude of its peak at a chosen channel,
bootstrap confidence intervals over subjects (seeded), each subject's peak, the
topography at the group peak and each subject's held-out prediction accuracy.

Predictors are prepared as in :func:`~sae_eeg.alignment.attribution.attribute_features`:
scaled to unit root mean square over the stimuli, band-passed like the EEG (``band``),
zero outside their stimulus, with ``'valid'`` edges. For a space of several columns
(mel bands), the peak is taken on the mean TRF over its columns (the response to the
overall level); the tables keep every column.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .._check import _check_option, _check_range, _ensure_int
from .._docs import fill_doc
from ..errors import InputError
from ..trf import times_to_lags
from ..trf.lags import coef_from_weights
from ._lagged_ridge import ALPHAS, check_alphas, cv_alpha, heldout_pearson, ridge_weights, stimulus_stats, subject_stats
from ._stimuli import band_filter, check_acoustic, check_band, check_runs, rms_scale

#: Columns of :attr:`AcousticTRFs.peaks`.
PEAK_COLUMNS = {
    "space": "acoustic space (e.g. 'envelope')",
    "subject": "subject id, or 'group' for the mean over subjects",
    "channel": "channel of the peak",
    "latency": "lag of the largest absolute weight within peak_window, s",
    "latency_low": "lower confidence bound of the latency (group row; bootstrap over subjects)",
    "latency_high": "upper confidence bound of the latency",
    "amplitude": "weight at that lag (EEG units per unit RMS of the predictor)",
    "amplitude_low": "lower confidence bound of the amplitude (group row)",
    "amplitude_high": "upper confidence bound of the amplitude",
    "n_boot": "bootstrap resamples (group row)",
    "ci": "confidence level of the bounds",
}


@dataclasses.dataclass(frozen=True)
class AcousticTRFs:
    """Outcome of :func:`acoustic_trfs`.

    Attributes
    ----------
    trfs : pandas.DataFrame
        Tidy weights: ``space``, ``column`` (index within the space), ``subject``
        (``"group"`` for the mean), ``channel``, ``lag`` (s), ``weight``.
    peaks : pandas.DataFrame
        One group row and one row per subject for each space; columns in
        :data:`PEAK_COLUMNS`.
    topographies : pandas.DataFrame
        ``space``, ``channel``, ``weight``: the group TRF (mean over the space's
        columns) at the group peak latency.
    scores : pandas.DataFrame
        ``space``, ``subject``, ``r``: held-out Pearson r (leave one stimulus out),
        mean over channels; NaN with a single stimulus.
    coef : dict of str -> ndarray, shape (n_subjects, n_channels, n_columns, n_lags)
        Weights of each space.
    alphas : dict of str -> float
        Per-sample ridge penalty of each space.
    subjects : list of str
    ch_names : list of str
    times : ndarray, shape (n_lags,)
        Lags, s.
    """

    trfs: pd.DataFrame
    peaks: pd.DataFrame
    topographies: pd.DataFrame
    scores: pd.DataFrame
    coef: dict
    alphas: dict
    subjects: list
    ch_names: list
    times: np.ndarray


@fill_doc
def acoustic_trfs(runs, acoustic, *, sfreq, ch_names=None, spaces=None, channel=None, band=(1.0, 8.0),
                  tmin=-0.1, tmax=0.5, peak_window=(0.03, 0.3), alphas=ALPHAS, n_boot=1000, ci=0.95,
                  random_state=0):
    """TRFs of the acoustic baselines per subject and group, with peak latencies and amplitudes.

    Parameters
    ----------
    runs : dict of str -> list of (str, ndarray)
        Per subject its runs: (stimulus name, preprocessed EEG (n_times, n_channels)).
    acoustic : dict of str -> dict of str -> array
        Per stimulus the acoustic series by space, ``(n_times[, n_columns])``, zero in
        silence (e.g. envelope, envelope onsets, log-mel minus its floor).
    %(sfreq)s
    ch_names : list of str | None
        EEG channel names (needed to give ``channel`` by name).
    spaces : list of str | None
        Spaces to fit (default all).
    channel : str | None
        Channel of the peaks; None takes, per space, the channel of the largest
        absolute group weight within ``peak_window``.
    band : (float | None, float | None) | None
        The EEG's band-pass, applied to the predictors (see the module notes).
    tmin, tmax : float
        Lag window, s. Default -0.1 to 0.5 s.
    peak_window : (float, float)
        Lags searched for the peak, s. Default 30-300 ms (P1-N1-P2).
    alphas : sequence of float
        Per-sample ridge penalties compared by leave-one-stimulus-out cross-validation.
    n_boot : int
        Bootstrap resamples of subjects. Default 1000.
    ci : float
        Confidence level. Default 0.95.
    %(random_state)s Default 0.

    Returns
    -------
    result : AcousticTRFs

    Raises
    ------
    InputError
        Malformed inputs, an unknown channel or space, a peak window outside the lags.
    """
    sfreq = float(_check_range("sfreq", sfreq, 0, None, low_inclusive=False))
    band = check_band(band, sfreq)
    _check_range("n_boot", _ensure_int(n_boot, "n_boot"), 1)    # checked before the fits (acoustic_group again)
    _check_range("ci", ci, 0, 1, low_inclusive=False, high_inclusive=False)
    alphas = check_alphas(alphas)
    data = check_runs(runs, ch_names=ch_names)
    design, columns = check_acoustic(acoustic, data, spaces=spaces)
    if channel is not None:
        _check_option("channel", channel, data.ch_names)
    lags = times_to_lags(tmin, tmax, sfreq)
    _window_mask(lags / sfreq, peak_window, tmin, tmax)
    coefs, chosen, scores = {}, {}, {}
    for space in dict.fromkeys(sp for sp, _ in columns):
        idx = [k for k, (sp, _) in enumerate(columns) if sp == space]
        scaled = rms_scale({s: d[:, idx] for s, d in design.items()})
        with threadpool_limits(limits=1, user_api="blas"):   # identical results for any thread count
            coefs[space], chosen[space], scores[space] = _fit_space(
                data, {s: band_filter(d, sfreq, band) for s, d in scaled.items()}, lags, alphas)
    return acoustic_group(coefs, scores, subjects=data.subjects, ch_names=data.ch_names, times=lags / sfreq,
                          alphas=chosen, channel=channel, peak_window=peak_window, n_boot=n_boot, ci=ci,
                          random_state=random_state)


def _window_mask(times, peak_window, tmin, tmax):
    in_window = (times >= peak_window[0]) & (times <= peak_window[1])
    if not in_window.any():
        raise InputError(f"peak_window {tuple(peak_window)!r} s holds no lag of the window {tmin}..{tmax} s.")
    return in_window


@fill_doc
def acoustic_group(coef, scores, *, subjects, ch_names, times, alphas, channel=None, peak_window=(0.03, 0.3),
                   n_boot=1000, ci=0.95, random_state=0):
    """Group TRFs, peaks with bootstrap intervals and topographies from the subjects' acoustic TRFs.

    The second half of :func:`acoustic_trfs`, for TRFs fitted apart (e.g. one subject
    per task in the pipeline).

    Parameters
    ----------
    coef : dict of str -> ndarray, shape (n_subjects, n_channels, n_columns, n_lags)
        Weights of each space, subjects in the order of ``subjects``.
    scores : dict of str -> dict of str -> float
        Per space, each subject's held-out r.
    subjects : list of str
    ch_names : list of str
    times : ndarray, shape (n_lags,)
        Lags, s.
    alphas : dict of str -> float | ndarray
        Ridge penalty of each space (one, or one per subject), kept in the result.
    channel : str | None
        Channel of the peaks; None: per space, the channel of the largest absolute
        group weight within ``peak_window``.
    peak_window : (float, float)
        Lags searched for the peak, s.
    n_boot : int
        Bootstrap resamples of subjects.
    ci : float
        Confidence level.
    %(random_state)s

    Returns
    -------
    result : AcousticTRFs

    Raises
    ------
    InputError
        An unknown channel, a peak window outside the lags, bad ``n_boot`` or ``ci``.
    """
    n_boot = _check_range("n_boot", _ensure_int(n_boot, "n_boot"), 1)
    _check_range("ci", ci, 0, 1, low_inclusive=False, high_inclusive=False)
    if channel is not None:
        _check_option("channel", channel, list(ch_names))
    times = np.asarray(times, dtype=float)
    in_window = _window_mask(times, peak_window, times[0], times[-1])
    rng = np.random.default_rng(random_state)
    out = {"trfs": [], "peaks": [], "topographies": [], "scores": []}
    for space, c in coef.items():
        _space_tables(out, space, c, scores[space], list(subjects), list(ch_names), times, in_window, channel,
                      n_boot, ci, rng)
    return AcousticTRFs(
        trfs=pd.concat(out["trfs"], ignore_index=True), peaks=pd.DataFrame(out["peaks"], columns=list(PEAK_COLUMNS)),
        topographies=pd.concat(out["topographies"], ignore_index=True),
        scores=pd.DataFrame(out["scores"], columns=["space", "subject", "r"]),
        coef=dict(coef), alphas=dict(alphas), subjects=list(subjects), ch_names=list(ch_names), times=times,
    )


def _fit_space(data, design, lags, alphas):
    """Weights (S, C, K, L), the chosen per-sample alpha and each subject's held-out r (mean over channels)."""
    n_pred, n_ch, n_lags = design[data.stimuli[0]].shape[1], len(data.ch_names), len(lags)
    stats_ = {stim: stimulus_stats(design[stim], {s: data.eeg[s][stim] for s in data.heard(stim)}, lags)
              for stim in data.stimuli}
    groups = data.by_training_set(data.subjects, set())
    common = max(groups, key=lambda train: (len(groups[train]), len(train)))   # the usual stimulus set
    alpha = cv_alpha(stats_, list(common), groups[common], alphas)
    coef = np.empty((len(data.subjects), n_ch, n_pred, n_lags))
    for train, subjects in groups.items():
        W, _ = ridge_weights(subject_stats(stats_, list(train), subjects).total(), [alpha])
        fitted = coef_from_weights(W[0, 0], n_lags).reshape(len(subjects), n_ch, n_pred, n_lags)
        for i, s in enumerate(subjects):
            coef[data.subjects.index(s)] = fitted[i]
    total = {s: [0.0, 0.0] for s in data.subjects}
    for stim in data.stimuli:
        for train, subjects in data.by_training_set(data.heard(stim), {stim}).items():
            if not train:
                continue
            held = subject_stats(stats_, [stim], subjects)
            W, b = ridge_weights(subject_stats(stats_, list(train), subjects).total(), [alpha])
            r = heldout_pearson(W, b, held)[0].reshape(len(subjects), n_ch)
            for i, s in enumerate(subjects):
                total[s][0] += float(held.n[0]) * np.nanmean(r[i])
                total[s][1] += float(held.n[0])
    scores = {s: (t / n if n else np.nan) for s, (t, n) in total.items()}
    return coef, alpha, scores


def _peak(trf_L, in_window):
    """Index of the largest absolute value of ``trf_L`` among the lags ``in_window``."""
    window = np.flatnonzero(in_window)
    return window[np.argmax(np.abs(trf_L[window]))]


def _space_tables(out, space, coef, scores, subjects, ch_names, times, in_window, channel, n_boot, ci, rng):
    """Append the rows of one space to the tables in ``out``."""
    n_sub, n_ch, n_col, n_lags = coef.shape
    level = coef.mean(axis=2)                                     # (S, C, L): mean over the space's columns
    group = level.mean(axis=0)                                    # (C, L)
    ch = (ch_names.index(channel) if channel is not None
          else int(np.argmax(np.abs(group[:, in_window]).max(axis=1))))
    peak = _peak(group[ch], in_window)
    boot = level[:, ch][rng.integers(0, n_sub, size=(n_boot, n_sub))].mean(axis=1)     # (n_boot, L)
    boot_peaks = np.array([_peak(b, in_window) for b in boot])
    tails = [50 * (1 - ci), 100 - 50 * (1 - ci)]
    lat_low, lat_high = np.percentile(times[boot_peaks], tails)
    amp_low, amp_high = np.percentile(boot[np.arange(n_boot), boot_peaks], tails)
    out["peaks"].append({"space": space, "subject": "group", "channel": ch_names[ch],
                         "latency": float(times[peak]), "latency_low": float(lat_low),
                         "latency_high": float(lat_high), "amplitude": float(group[ch, peak]),
                         "amplitude_low": float(amp_low), "amplitude_high": float(amp_high),
                         "n_boot": n_boot, "ci": ci})
    for i, s in enumerate(subjects):
        p = _peak(level[i, ch], in_window)
        out["peaks"].append({"space": space, "subject": s, "channel": ch_names[ch],
                             "latency": float(times[p]), "latency_low": np.nan, "latency_high": np.nan,
                             "amplitude": float(level[i, ch, p]), "amplitude_low": np.nan,
                             "amplitude_high": np.nan, "n_boot": 0, "ci": ci})
        out["scores"].append({"space": space, "subject": s, "r": float(scores[s])})
    out["topographies"].append(pd.DataFrame({"space": space, "channel": ch_names,
                                             "weight": group[:, peak]}))
    everyone = np.concatenate([coef, coef.mean(axis=0, keepdims=True)])           # (S + 1, C, K, L)
    s_, c_, k_, l_ = np.meshgrid(np.arange(n_sub + 1), np.arange(n_ch), np.arange(n_col), np.arange(n_lags),
                                 indexing="ij")
    out["trfs"].append(pd.DataFrame({
        "space": space, "column": k_.ravel(), "subject": np.asarray(subjects + ["group"])[s_.ravel()],
        "channel": np.asarray(ch_names)[c_.ravel()], "lag": times[l_.ravel()], "weight": everyone.ravel(),
    }))

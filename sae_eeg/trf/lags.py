"""Lags, the rows of a trial that enter a fit, and the lagged design matrix.

A lag ``l`` (samples) pairs output sample ``t`` with input sample ``t - l`` (positive: the output
follows). Columns of a lagged design are lag-major (column ``j * n_features + f`` is feature ``f`` at
``lags[j]``); rows are a trial's output samples: all of them with ``edge='zero'`` (inputs outside the
trial count as zeros: mTRF ``zeropad``, MNE), or with ``edge='valid'`` those whose every lagged input
lies inside it, ``t = max(0, max(lags)) .. n + min(0, min(lags)) - 1``.
"""

from __future__ import annotations

import math

import numpy as np

from ._backend import get_ops
from ._check import _check_number, _check_option

EDGES = ("zero", "valid")


def times_to_lags(tmin, tmax, sfreq):
    """Integer lags (samples) ``floor(tmin * sfreq) .. ceil(tmax * sfreq)`` covering ``[tmin, tmax]`` seconds.

    As mTRF-Toolbox/mTRFpy; values within 1e-9 of an integer are rounded to it first (``-0.1 * 100``
    is -10). ``tmin <= tmax`` in seconds (negative: the output precedes the input), ``sfreq`` in Hz.
    Returns an int array (n_lags,).
    """
    tmin, tmax = _check_number("tmin", tmin), _check_number("tmax", tmax)
    sfreq = _check_number("sfreq", sfreq, low=0, inclusive=False)
    if tmin > tmax:
        raise ValueError(f"tmin must be <= tmax; got tmin={tmin!r}, tmax={tmax!r}.")

    lo, hi = (round(v) if abs(v - round(v)) < 1e-9 else v for v in (tmin * sfreq, tmax * sfreq))
    return np.arange(math.floor(lo), math.ceil(hi) + 1, dtype=np.int64)


def direction_lags(tmin, tmax, sfreq, direction):
    """Regression lags (samples) of a forward (``direction=1``) or backward (-1) model.

    ``tmin``/``tmax`` are the stimulus-to-response window in seconds either way: a backward model
    reconstructs the stimulus at ``t`` from the response at ``t + tmin .. t + tmax``, so its lags
    are ``-tmax .. -tmin`` (mTRF-Toolbox). Returns an int array (n_lags,).
    """
    _check_option("direction", direction, (1, -1))
    lags = times_to_lags(tmin, tmax, sfreq)
    return lags if direction == 1 else times_to_lags(-tmax, -tmin, sfreq)


def row_range(n_samples, lags, edge):
    """First and one-past-last output sample of a trial of ``n_samples`` that enter fit and score
    (ValueError for an unknown ``edge`` or a trial too short for ``edge='valid'``)."""
    _check_option("edge", edge, EDGES)
    if edge == "zero":
        return 0, int(n_samples)
    start, stop = max(0, int(lags[-1])), int(n_samples) + min(0, int(lags[0]))
    if stop <= start:
        raise ValueError(
            f"A trial of {n_samples} samples is too short for edge='valid' with lags "
            f"{int(lags[0])}..{int(lags[-1])}: no sample has all its lagged inputs inside the "
            "trial. Use longer trials, fewer lags or edge='zero'.")
    return start, stop


def valid_slice(lags, edge):
    """Rows of every trial used for fitting and scoring, as a slice (see :func:`row_range`)."""
    if edge == "zero":
        return slice(None, None)
    return slice(max(0, int(lags[-1])), min(0, int(lags[0])) or None)


def design_rows(x, lags, rows, xp):
    """Rows ``rows`` ([B, ]len(rows), n_lags * F) of the lagged design of ``x`` ([B, ]n_times, F), zero
    outside the trial: row ``r`` holds ``x(rows[r] - lags[j])`` in columns ``j * F .. j * F + F - 1``."""
    n_times = x.shape[-2]
    source = np.asarray(rows)[:, None] - np.asarray(lags)[None, :]          # (R, L) input samples
    inside = xp.asarray(((source >= 0) & (source < n_times))[..., None])
    out = x[..., xp.index(np.clip(source, 0, max(n_times - 1, 0))), :] * inside
    return out.reshape(*x.shape[:-2], len(source), len(lags) * x.shape[-1])


def lag_matrix(x, lags, *, edge="zero", backend="numpy", device=None):
    """The explicit lagged design (n_rows, n_lags * n_features) of one trial ``x`` (n_times[, n_features]), for
    checks and small data: column ``j * n_features + f`` is feature ``f`` delayed by ``lags[j]`` (samples,
    any order); ``edge`` as the module notes, ``backend``/``device`` as :class:`~sae_eeg.trf.TRF`."""
    xp = get_ops(backend, device)
    x = xp.asarray(np.asarray(x).reshape(len(x), -1) if not hasattr(x, "detach") else x)
    lags = np.asarray(lags, dtype=np.int64)
    return design_rows(x, lags, np.arange(*row_range(x.shape[0], np.sort(lags), edge)), xp)


def coef_from_weights(W, n_lags):
    """Lag-major design weights (P, C) as TRF coefficients (C, n_features, n_lags)."""
    W = np.asarray(W)
    return W.reshape(n_lags, -1, W.shape[-1]).transpose(2, 1, 0).copy()


def weights_from_coef(coef):
    """TRF coefficients (C, n_features, n_lags) as lag-major design weights (P, C)."""
    return np.asarray(coef).transpose(2, 1, 0).reshape(-1, coef.shape[0])

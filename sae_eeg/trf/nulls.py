"""Null distributions and bootstrap intervals that reuse the fold decompositions.

Under a circular shift of the outputs or a mismatch of input and output trials only
``X^T Y`` (and the output sums) change; ``X^T X`` and its eigendecomposition per fold
do not, so each null sample costs projections, not factorisations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._backend import get_ops
from ._check import _check_alphas, _check_number, _check_option, _check_pair
from .crossval import SCORERS, make_folds
from .lags import (
    LagStats,
    coef_from_weights,
    lagged_stats,
    lagged_xty,
    row_range,
)
from .model import direction_lags
from .solvers import centered_system, ridge_path

NULL_KINDS = ("shift", "mismatch")


@dataclass(frozen=True)
class NullResult:
    """Observed cross-validated scores and their null distribution.

    Attributes
    ----------
    observed : ndarray, shape (n_outputs,)
        Cross-validated score of the real pairing.
    null : ndarray, shape (n_permutations, n_outputs)
        Scores under the null.
    pvalues : ndarray, shape (n_outputs,)
        ``(1 + #{null >= observed}) / (1 + n_permutations)`` (``<=`` for 'mse').
    permutations : ndarray of int, shape (n_permutations, n_trials)
        For 'shift', the shift (samples) applied to each trial's outputs
        (``numpy.roll(y, -shift, axis=0)``); for 'mismatch', the trial whose outputs
        were paired with each trial's inputs.
    """

    observed: np.ndarray
    null: np.ndarray
    pvalues: np.ndarray
    permutations: np.ndarray


class _FoldEigs:
    """Per-fold eigendecompositions of the centred training ``X^T X`` (y-independent)."""

    def __init__(self, xtx_stats, folds, fit_intercept, xp):
        self.folds, self.fit_intercept, self.xp = folds, fit_intercept, xp
        total = xtx_stats.total()
        self.cache = []
        for test in folds:
            train = total.minus(xtx_stats.total(xp.index(test)))
            C, _ = centered_system(train, fit_intercept)
            self.cache.append((xp.eigh(C), train.sx[0], train.n[0]))

    def scores(self, stats, alpha, scorer):
        """Scores (n_folds, n_outputs) for per-trial stats sharing the cached X^T X."""
        xp = self.xp
        total_xty, total_sy = stats.xty.sum(axis=0), stats.sy.sum(axis=0)
        out = []
        for test, ((evals, evecs), sx, n) in zip(self.folds, self.cache):
            idx = xp.index(test)
            xty = total_xty - stats.xty[idx].sum(axis=0)
            sy = total_sy - stats.sy[idx].sum(axis=0)
            c = xty - sx[:, None] * sy[None, :] / n if self.fit_intercept else xty
            inverse = (evecs / (evals + alpha)) @ evecs.mT      # (C + alpha I)^-1: one product per output
            W = (inverse @ c)[None]
            b = ((sy - sx @ W[0]) / n)[None] if self.fit_intercept else xp.zeros((1, c.shape[1]))
            per = [xp.to_numpy(scorer.from_stats(W, b, stats.trial(int(i)), xp))[0] for i in test]
            out.append(np.mean(per, axis=0))
        return np.stack(out)

    def null_scores(self, stats, samples, alpha, scorer):
        """Mean fold scores (n_samples, n_outputs) of null samples sharing the cached X^T X.

        ``samples`` holds per null sample a list over trials of ``(xty, sy, yty)``. The
        samples are solved together as extra output columns, in chunks of bounded memory.
        """
        xp = self.xp
        n_trials, n_cols = stats.xty.shape[0], stats.xty.shape[1] * stats.xty.shape[2]
        chunk = max(1, 2**24 // (n_trials * n_cols))
        out = []
        for k0 in range(0, len(samples), chunk):
            batch = samples[k0:k0 + chunk]
            xty, sy, yty = (xp.concat([xp.stack([xp.asarray(p[m]) for p in parts]) for parts in batch], axis=-1)
                            for m in range(3))
            st = LagStats(stats.xtx, xty, stats.sx, sy, yty, stats.n, stats.autocov, stats.edge_rows)
            out.append(self.scores(st, alpha, scorer).mean(axis=0).reshape(len(batch), -1))
        return np.concatenate(out)


def _output_stats(x_TF, y_TC, lags, edge, xp):
    """The y-dependent statistics of one (input, output) pairing: X^T Y, sum y, sum y^2."""
    start, stop = row_range(x_TF.shape[0], lags, edge)
    y_used = y_TC[start:stop]
    return lagged_xty(x_TF, y_TC, lags, edge, xp), y_used.sum(axis=0), (y_used * y_used).sum(axis=0)


def _circular_xty(x_TF, y_TC, lags, edge, xp, shifts):
    """For each circular shift s of y in ``shifts``: X^T roll(y, -s), sum and sum of squares of the used rows.

    Returns a dict s -> (xty (P, C), sy (C,), yty (C,)) as NumPy arrays. ``X^T roll(y, -s)``
    at lag l is the circular cross-correlation of x and y at ``l + s`` (by FFT, for all
    shifts at once) minus the few products of input rows outside the lag window.
    """
    x, y = xp.to_numpy(x_TF), xp.to_numpy(y_TC)
    n_T, n_F = x.shape
    start, stop = row_range(n_T, lags, edge)
    shifts = np.unique(np.asarray(shifts, dtype=np.int64))
    at = (lags[None, :] + shifts[:, None]) % n_T                    # (S, L) correlation lags
    x_f, y_f = np.fft.rfft(x, axis=0), np.fft.rfft(y, axis=0)
    xcorr = np.empty((len(shifts), len(lags), n_F, y.shape[1]))
    step = max(1, 2**25 // (n_T * y.shape[1]))                       # bound the (n, F, C) temporary
    for f0 in range(0, n_F, step):
        f1 = min(f0 + step, n_F)
        full = np.fft.irfft(np.conj(x_f[:, f0:f1, None]) * y_f[:, None, :], n=n_T, axis=0)
        xcorr[:, :, f0:f1] = full[at]
    for j, lag in enumerate(lags):  # input rows u whose output row u + lag is not used
        outside = np.r_[0:max(0, start - lag), min(n_T, stop - lag):n_T]
        if outside.size:
            y_rows = y[(outside[None, :] + lag + shifts[:, None]) % n_T]   # (S, m, C)
            xcorr[:, j] -= np.einsum("uf,suc->sfc", x[outside], y_rows)
    out = {}
    for i, s in enumerate(shifts):
        y_s = y[(np.arange(start, stop) + s) % n_T]  # row t of X meets row (t + s) mod n of y
        out[int(s)] = (xcorr[i].reshape(-1, y.shape[1]), y_s.sum(axis=0), (y_s * y_s).sum(axis=0))
    return out


def permutation_null(X, y, tmin, tmax, sfreq, *, alpha=1.0, kind="shift", n_permutations=100,
                     min_shift=None, direction=1, fit_intercept=True, edge="zero", cv=None,
                     scoring="pearson", random_state=None, backend="numpy", device=None):
    """Cross-validated scores under circular shifts or trial mismatches of the outputs.

    Parameters
    ----------
    X, y : list of array
        At least two trials, each (n_times_i, n_features) and (n_times_i, n_outputs).
    tmin, tmax : float
        Lag window in seconds.
    sfreq : float
        Sampling rate in Hz.
    alpha : float
        One penalty (engine scale).
    kind : 'shift' | 'mismatch'
        ``'shift'``: each trial's outputs are rolled by a random shift of at least
        ``min_shift`` seconds (the same shift for every trial of a sample).
        ``'mismatch'``: outputs are paired with the inputs of a different trial (a
        random derangement; trials are cropped to the shortest).
    n_permutations : int
        Null samples.
    min_shift : float | None
        Smallest shift in seconds (default: the lag window length ``tmax - tmin``
        plus one sample).
    direction, fit_intercept, edge, cv, scoring, backend, device
        As in :class:`~sae_eeg.trf.TRF` (``scoring`` must not be 'spearman').
    random_state : int | numpy.random.Generator | None
        Source of randomness.

    Returns
    -------
    result : NullResult
        Observed scores, null scores and p-values per output.
    """
    _check_option("kind", kind, NULL_KINDS)
    _check_option("scoring", scoring, tuple(k for k, v in SCORERS.items() if v.from_stats))
    n_permutations = _check_number("n_permutations", n_permutations, low=1, integer=True)
    sfreq = _check_number("sfreq", sfreq, low=0, inclusive=False)
    alpha = float(_check_alphas(alpha)[0])
    rng = np.random.default_rng(random_state)
    xp = get_ops(backend, device)
    lags = direction_lags(tmin, tmax, sfreq, direction)
    X_list, y_list = _check_pair(X, y)
    if kind == "mismatch":
        n_min = min(len(x) for x in X_list)
        X_list, y_list = [x[:n_min] for x in X_list], [v[:n_min] for v in y_list]
        if len(X_list) < 3:
            raise ValueError(f"kind='mismatch' needs at least 3 trials; got {len(X_list)}.")
    X_b, y_b = [xp.asarray(a) for a in X_list], [xp.asarray(a) for a in y_list]
    stats = lagged_stats(X_b, y_b, lags, edge=edge, xp=xp)
    folds = make_folds(len(X_b), cv)
    eigs = _FoldEigs(stats, folds, fit_intercept, xp)
    scorer = SCORERS[scoring]
    observed = eigs.scores(stats, alpha, scorer).mean(axis=0)
    perms = np.empty((n_permutations, len(X_b)), dtype=np.int64)
    if kind == "shift":
        n_short = min(len(x) for x in X_list)
        lo = int(np.ceil((tmax - tmin) * sfreq)) + 1 if min_shift is None else int(np.ceil(min_shift * sfreq))
        if n_short - 2 * lo < 1:
            raise ValueError(f"Trials of {n_short} samples are too short for shifts of at least "
                             f"{lo} samples; lower min_shift or use kind='mismatch'.")
        fracs = rng.uniform(size=n_permutations)
        for i, x in enumerate(X_list):  # the same relative shift in every trial
            perms[:, i] = lo + (fracs * (len(x) - 2 * lo + 1)).astype(np.int64)
        circ = [_circular_xty(x, v, lags, edge, xp, perms[:, i]) for i, (x, v) in enumerate(zip(X_b, y_b))]
        samples = [[circ[i][int(perms[k, i])] for i in range(len(X_b))] for k in range(n_permutations)]
    else:
        n = len(X_b)
        cache = {}
        for k in range(n_permutations):
            perm = rng.permutation(n)
            while np.any(perm == np.arange(n)):
                perm = rng.permutation(n)
            perms[k] = perm
            for i, j in enumerate(perm):
                if (i, int(j)) not in cache:
                    cache[i, int(j)] = _output_stats(X_b[i], y_b[j], lags, edge, xp)
        samples = [[cache[i, int(j)] for i, j in enumerate(perm)] for perm in perms]
    null = eigs.null_scores(stats, samples, alpha, scorer)
    if scorer.greater_is_better:
        pvalues = (1 + (null >= observed).sum(axis=0)) / (1 + n_permutations)
    else:
        pvalues = (1 + (null <= observed).sum(axis=0)) / (1 + n_permutations)
    return NullResult(observed, null, pvalues, perms)


def bootstrap_coef(X, y, tmin, tmax, sfreq, *, alpha=1.0, n_boot=200, ci=0.95, direction=1,
                   fit_intercept=True, edge="zero", random_state=None, backend="numpy", device=None):
    """Percentile bootstrap confidence intervals of TRF weights, resampling trials.

    Trials are drawn with replacement; each resample's statistics are a weighted sum
    of the per-trial statistics, so each costs one solve and no covariance.

    Parameters
    ----------
    X, y : list of array
        At least two trials.
    tmin, tmax : float
        Lag window in seconds.
    sfreq : float
        Sampling rate in Hz.
    alpha : float
        One penalty (engine scale).
    n_boot : int
        Bootstrap resamples.
    ci : float
        Coverage of the interval, in (0, 1).
    direction, fit_intercept, edge, backend, device
        As in :class:`~sae_eeg.trf.TRF`.
    random_state : int | numpy.random.Generator | None
        Source of randomness.

    Returns
    -------
    lower, upper : ndarray, shape (n_outputs, n_features, n_lags)
        Interval bounds for ``coef_``.
    """
    n_boot = _check_number("n_boot", n_boot, low=1, integer=True)
    ci = _check_number("ci", ci, low=0, high=1, inclusive=False)
    sfreq = _check_number("sfreq", sfreq, low=0, inclusive=False)
    alphas = _check_alphas(alpha)[:1]
    rng = np.random.default_rng(random_state)
    xp = get_ops(backend, device)
    lags = direction_lags(tmin, tmax, sfreq, direction)
    X_list, y_list = _check_pair(X, y)
    if len(X_list) < 2:
        raise ValueError(f"Bootstrapping over trials needs at least 2 trials; got {len(X_list)}.")
    stats = lagged_stats([xp.asarray(a) for a in X_list], [xp.asarray(a) for a in y_list], lags,
                         edge=edge, xp=xp)
    n_feat, n_out = X_list[0].shape[1], y_list[0].shape[1]
    coefs = np.empty((n_boot, n_out, n_feat, len(lags)))
    for k in range(n_boot):
        pick = rng.integers(0, len(X_list), len(X_list))
        W, _ = ridge_path(stats.total(xp.index(pick)), alphas, fit_intercept=fit_intercept,
                          solver="cholesky", xp=xp)
        coefs[k] = coef_from_weights(xp.to_numpy(W[0]), len(lags))
    q = (1 - ci) / 2
    return np.quantile(coefs, q, axis=0), np.quantile(coefs, 1 - q, axis=0)

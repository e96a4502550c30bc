"""Null distributions and bootstrap intervals that reuse each fold's decomposition.

Under a circular shift of the outputs or a mismatch of input and output trials only the
response part of the statistics changes: each fold's training system is decomposed once
(:func:`~sae_eeg.trf.crossval.fold_paths`) and the null samples are solved together as extra
output columns, in chunks of bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fast
from ._backend import get_ops
from ._check import _check_alphas, _check_number, _check_option, _check_pair
from .crossval import SCORERS, STATS_SCORERS, fold_paths, fold_scores, make_folds
from .lags import coef_from_weights, direction_lags, row_range
from .ridge import CENTERINGS, ridge_path
from .stats import lagged_stats, response_stats

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
        For 'shift', the shift (samples) of each trial's outputs (``numpy.roll(y, -shift)``);
        for 'mismatch', the trial whose outputs were paired with each trial's inputs.
    """

    observed: np.ndarray
    null: np.ndarray
    pvalues: np.ndarray
    permutations: np.ndarray


def _shifted_responses(x, y, lags, edge, ones, shifts):
    """Response parts (xty (S, 1, P, C), sy (S, C), yty (S, C)) of one trial for its outputs rolled by ``shifts``."""
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1) if ones else x
    start, stop = row_range(len(x), lags, edge)
    used = y[(np.arange(start, stop)[None, :] + shifts[:, None]) % len(y)]     # row t meets y((t + s) mod n)
    return fast.circular_xty(x, y, lags, start, stop, shifts)[:, None], used.sum(1), (used * used).sum(1)


def permutation_null(X, y, tmin, tmax, sfreq, *, alpha=1.0, kind="shift", n_permutations=100, min_shift=None,
                     direction=1, fit_intercept=True, centering="lagged", edge="zero", cv=None, scoring="pearson",
                     random_state=None, backend="numpy", device=None):
    """Cross-validated scores under circular shifts or trial mismatches of the outputs.

    Parameters
    ----------
    X, y : list of array
        At least two trials, each (n_times_i, n_features) and (n_times_i, n_outputs).
    tmin, tmax, sfreq
        Lag window (s) and sampling rate (Hz).
    alpha : float
        One penalty (engine scale).
    kind : 'shift' | 'mismatch'
        ``'shift'``: each trial's outputs are rolled by a random shift of at least ``min_shift``
        seconds (the same relative shift in every trial of a sample). ``'mismatch'``: outputs
        are paired with the inputs of another trial (a random derangement; trials cropped to
        the shortest).
    n_permutations : int
        Null samples.
    min_shift : float | None
        Smallest shift in seconds (default: the lag window plus one sample).
    direction, fit_intercept, centering, edge, cv, scoring, backend, device
        As in :class:`~sae_eeg.trf.TRF` (``scoring`` not 'spearman').
    random_state : int | numpy.random.Generator | None
        Source of randomness.

    Returns
    -------
    result : NullResult
    """
    _check_option("kind", kind, NULL_KINDS)
    _check_option("scoring", scoring, STATS_SCORERS)
    _check_option("centering", centering, CENTERINGS)
    n_permutations = _check_number("n_permutations", n_permutations, low=1, integer=True)
    sfreq, alphas = _check_number("sfreq", sfreq, low=0, inclusive=False), _check_alphas(alpha)[:1]
    rng, xp = np.random.default_rng(random_state), get_ops(backend, device)
    lags, center = direction_lags(tmin, tmax, sfreq, direction), centering if fit_intercept else None
    X_list, y_list = _check_pair(X, y)
    if kind == "mismatch":
        n_min = min(len(x) for x in X_list)
        X_list, y_list = [x[:n_min] for x in X_list], [v[:n_min] for v in y_list]
        if len(X_list) < 3:
            raise ValueError(f"kind='mismatch' needs at least 3 trials; got {len(X_list)}.")
    ones, n, n_C = center == "signal", len(X_list), y_list[0].shape[1]
    stats, folds = lagged_stats(X_list, y_list, lags, edge=edge, ones=ones, xp=xp), make_folds(n, cv)
    common = {"centering": center, "scoring": scoring, "solver": "auto", "xp": xp}
    paths = fold_paths(stats, alphas, folds, centering=center, solver="auto", xp=xp)
    observed = fold_scores(stats, alphas, folds, paths=paths, **common)[:, 0, 0].mean(axis=0)
    perms = np.empty((n_permutations, n), dtype=np.int64)
    if kind == "shift":
        lo = int(np.ceil((tmax - tmin) * sfreq)) + 1 if min_shift is None else int(np.ceil(min_shift * sfreq))
        if min(len(x) for x in X_list) - 2 * lo < 1:
            raise ValueError(f"Trials of {min(len(x) for x in X_list)} samples are too short for shifts of at "
                             f"least {lo} samples; lower min_shift or use kind='mismatch'.")
        fracs = rng.uniform(size=n_permutations)
        for i, x in enumerate(X_list):                               # the same relative shift in every trial
            perms[:, i] = lo + (fracs * (len(x) - 2 * lo + 1)).astype(np.int64)
    else:
        for k in range(n_permutations):
            perm = rng.permutation(n)
            while np.any(perm == np.arange(n)):
                perm = rng.permutation(n)
            perms[k] = perm
        pairs = {(i, j): [xp.to_numpy(a) for a in response_stats(xp.asarray(X_list[i]), xp.asarray(y_list[j]), lags,
                                                                  edge, "joint", ones, xp)]
                 for i, j in {(i, int(j)) for p in perms for i, j in enumerate(p)}}
    null, chunk = [], max(1, 2**24 // (n * stats.xty.shape[2] * n_C))        # samples solved together
    for k0 in range(0, n_permutations, chunk):
        ks = np.arange(k0, min(k0 + chunk, n_permutations))
        parts = [_shifted_responses(x, v, lags, edge, ones, perms[ks, i]) for i, (x, v) in enumerate(
            zip(X_list, y_list))] if kind == "shift" else \
            [[np.stack([pairs[i, perms[k, i]][m] for k in ks]) for m in range(3)] for i in range(n)]
        xty = np.stack([np.moveaxis(p[0], 0, -2).reshape(1, -1, len(ks) * n_C) for p in parts])   # samples as columns
        sy, yty = (np.stack([p[m].reshape(-1) for p in parts]) for m in (1, 2))
        scores = fold_scores(stats.with_response(*map(xp.asarray, (xty, sy, yty))), alphas, folds, paths=paths,
                             **common)
        null.append(scores[:, 0, 0].mean(axis=0).reshape(len(ks), n_C))
    null = np.concatenate(null)
    extreme = null >= observed if SCORERS[scoring].greater_is_better else null <= observed
    return NullResult(observed, null, (1 + extreme.sum(axis=0)) / (1 + n_permutations), perms)


def bootstrap_coef(X, y, tmin, tmax, sfreq, *, alpha=1.0, n_boot=200, ci=0.95, direction=1, fit_intercept=True,
                   centering="lagged", edge="zero", random_state=None, backend="numpy", device=None):
    """Percentile bootstrap confidence intervals of TRF weights, resampling trials.

    Trials are drawn with replacement; a resample's statistics are a sum of the per-trial ones,
    so each costs one solve and no covariance.

    Parameters
    ----------
    X, y : list of array
        At least two trials.
    tmin, tmax, sfreq, alpha, direction, fit_intercept, centering, edge, random_state, backend, device
        As :func:`permutation_null`.
    n_boot : int
        Bootstrap resamples.
    ci : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    lower, upper : ndarray, shape (n_outputs, n_features, n_lags)
        Interval bounds for ``coef_``.
    """
    n_boot = _check_number("n_boot", n_boot, low=1, integer=True)
    ci, sfreq = _check_number("ci", ci, low=0, high=1, inclusive=False), _check_number("sfreq", sfreq, low=0,
                                                                                     inclusive=False)
    _check_option("centering", centering, CENTERINGS)
    alphas, rng, xp = _check_alphas(alpha)[:1], np.random.default_rng(random_state), get_ops(backend, device)
    lags, center = direction_lags(tmin, tmax, sfreq, direction), centering if fit_intercept else None
    X_list, y_list = _check_pair(X, y)
    if len(X_list) < 2:
        raise ValueError(f"Bootstrapping over trials needs at least 2 trials; got {len(X_list)}.")
    stats, coefs = lagged_stats(X_list, y_list, lags, edge=edge, ones=center == "signal", xp=xp), []
    for _ in range(n_boot):
        pick = rng.integers(0, len(X_list), len(X_list))
        W, _ = ridge_path(stats.total(xp.index(pick)), alphas, centering=center, solver="cholesky", xp=xp)
        coefs.append(coef_from_weights(xp.to_numpy(W[0, 0]), len(lags))[:, :X_list[0].shape[1]])
    return np.quantile(coefs, (1 - ci) / 2, axis=0), np.quantile(coefs, (1 + ci) / 2, axis=0)

"""Null distributions and bootstrap intervals that reuse each fold's decomposition.

Shifted or mismatched outputs change only the response part: each fold's system is decomposed once
and the null samples are solved together as output columns, in chunks of bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fast
from ._check import _check_alphas, _check_number, _check_option, _check_pair
from .crossval import SCORERS, fold_paths, fold_scores, make_folds, setup
from .lags import coef_from_weights, row_range
from .ridge import ridge_path
from .stats import lagged_stats, response_stats

NULL_KINDS = ("shift", "mismatch")


@dataclass(frozen=True)
class NullResult:
    """Cross-validated scores of the real pairing (``observed``, n_outputs) and under the null (``null``,
    n_permutations x n_outputs), ``pvalues`` ``(1 + #{null >= observed}) / (1 + n_permutations)`` (``<=``
    for 'mse') and ``permutations`` (n_permutations, n_trials): the shift (samples) of each trial's
    outputs (``numpy.roll(y, -shift)``), or the trial whose outputs were paired with each trial's inputs."""

    observed: np.ndarray
    null: np.ndarray
    pvalues: np.ndarray
    permutations: np.ndarray


def _shifted_responses(x, y, lags, edge, ones, shifts):
    """Response parts (xty (S, 1, P, C), sy (S, C), yty (S, C)) of one trial for its outputs rolled by ``shifts``."""
    x, (start, stop) = np.concatenate([x, np.ones((len(x), 1))], axis=1) if ones else x, row_range(len(x), lags, edge)
    used = y[(np.arange(start, stop)[None, :] + shifts[:, None]) % len(y)]     # row t meets y((t + s) mod n)
    return fast.circular_xty(x, y, lags, start, stop, shifts)[:, None], used.sum(1), (used * used).sum(1)


def permutation_null(X, y, tmin, tmax, sfreq, *, alpha=1.0, kind="shift", n_permutations=100, min_shift=None,
                     direction=1, fit_intercept=True, centering="lagged", edge="zero", cv=None, scoring="pearson",
                     random_state=None, backend="numpy", device=None):
    """Cross-validated scores under circular shifts or trial mismatches of the outputs.

    ``X``, ``y``: at least two trials; ``alpha``: one penalty; ``kind='shift'``: each trial's outputs
    rolled by a random shift of at least ``min_shift`` seconds (default: the lag window plus one
    sample), the same relative shift in every trial of a sample; ``'mismatch'``: outputs paired with
    another trial's inputs (a random derangement; trials cropped to the shortest).
    ``n_permutations`` samples drawn from ``random_state``; the rest as :class:`~sae_eeg.trf.TRF`
    (``scoring`` not 'spearman'). Returns a :class:`NullResult`.
    """
    _check_option("kind", kind, NULL_KINDS)
    sfreq, lags, center, xp = setup(tmin, tmax, sfreq, direction, fit_intercept, centering, edge, backend, device,
                                    scoring)
    n_permutations = _check_number("n_permutations", n_permutations, low=1, integer=True)
    alphas, rng = _check_alphas(alpha)[:1], np.random.default_rng(random_state)
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
    """Percentile bootstrap intervals ``(lower, upper)`` (n_outputs, n_features, n_lags) of ``coef_`` with
    coverage ``ci`` from ``n_boot`` resamples of the trials (with replacement: a resample's
    statistics are a sum of the per-trial ones, one solve each); the other parameters as
    :func:`permutation_null`."""
    sfreq, lags, center, xp = setup(tmin, tmax, sfreq, direction, fit_intercept, centering, edge, backend, device)
    n_boot, ci = _check_number("n_boot", n_boot, low=1, integer=True), _check_number("ci", ci, low=0, high=1,
                                                                                    inclusive=False)
    alphas, rng = _check_alphas(alpha)[:1], np.random.default_rng(random_state)
    X_list, y_list = _check_pair(X, y)
    if len(X_list) < 2:
        raise ValueError(f"Bootstrapping over trials needs at least 2 trials; got {len(X_list)}.")
    stats, coefs = lagged_stats(X_list, y_list, lags, edge=edge, ones=center == "signal", xp=xp), []
    for _ in range(n_boot):
        pick = rng.integers(0, len(X_list), len(X_list))
        W, _ = ridge_path(stats.total(xp.index(pick)), alphas, centering=center, solver="cholesky", xp=xp)
        coefs.append(coef_from_weights(xp.to_numpy(W[0, 0]), len(lags))[:, :X_list[0].shape[1]])
    return np.quantile(coefs, (1 - ci) / 2, axis=0), np.quantile(coefs, (1 + ci) / 2, axis=0)

"""Many independent single-feature TRFs in one batched call.

Each input feature gets its own forward TRF (that feature alone, lagged, against every
output channel), as in the AudioSAE EEG analysis (one TRF per SAE feature). The
per-feature lag covariances are (n_lags x n_lags) blocks; their decompositions (one
tridiagonal reduction per feature and fold for all alphas, :mod:`~sae_eeg.trf.solvers`)
and solves are batched over features, chunk by chunk, so a sparse (T x F) feature matrix is
densified only one chunk of features at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import sparse

from ._backend import get_ops
from ._check import _as_trials, _check_alphas, _check_number, _check_option
from .crossval import SCORERS, best_alpha_index, fold_scores, make_folds
from .lags import EDGES, FIELDS, LagStats, _lag_rows, row_range, times_to_lags
from .solvers import ridge_path

STATS_SCORERS = tuple(k for k, v in SCORERS.items() if v.from_stats is not None)


@dataclass(frozen=True)
class UnivariateTRFs:
    """Result of :func:`univariate_trfs`.

    Attributes
    ----------
    coef : ndarray, shape (n_features, n_outputs, n_lags)
        Weights of each single-feature TRF (engine scale).
    intercept : ndarray, shape (n_features, n_outputs)
        Intercepts.
    alpha : ndarray, shape (n_features, n_outputs)
        Penalty chosen for each model.
    cv_scores : ndarray, shape (n_features, n_alphas, n_outputs)
        Cross-validated score of every alpha (NaN with a single alpha and no CV).
    scores : ndarray, shape (n_features, n_outputs)
        Cross-validated score at the chosen alpha.
    lags : ndarray of int, shape (n_lags,)
        Lags in samples.
    times : ndarray, shape (n_lags,)
        Lags in seconds.
    """

    coef: np.ndarray
    intercept: np.ndarray
    alpha: np.ndarray
    cv_scores: np.ndarray
    scores: np.ndarray
    lags: np.ndarray
    times: np.ndarray


def _dense_features_by_time(block):
    """A (n_times, F) block as a C-ordered (F, n_times) float64 array (FFTs run along rows)."""
    if sparse.issparse(block):
        return block.T.toarray()                                    # no dense transpose copy
    return np.ascontiguousarray(np.asarray(block, dtype=np.float64).T)


def _autocorr(x_FT, n_L):
    """Full-overlap autocorrelations ``R_f(d) = sum_s x_f(s) x_f(s + d)``, d < n_L: (F, L), by FFT."""
    n_fft = scipy.fft.next_fast_len(x_FT.shape[1] + n_L - 1, real=True)   # no wrap-around
    spec = scipy.fft.rfft(x_FT, n=n_fft, axis=1)
    return scipy.fft.irfft(spec.real ** 2 + spec.imag ** 2, n=n_fft, axis=1)[:, :n_L]


def _lagged_xty(x_FT, y_TC, lags, start, stop):
    """``X^T Y`` (F, L, C) of each feature's lagged design over rows ``[start, stop)``.

    ``sum_t x_f(t - l) y(t) = sum_s x_f(s) y~(s + l)`` with ``y~`` zero outside the rows
    used: one product of ``x`` with the windows of ``y~`` per output (cheaper than FFTs:
    their inverse transforms would be as long as the trial for every feature and output).
    """
    n_T, n_L = x_FT.shape[1], len(lags)
    lo = int(lags[0])
    y_pad = np.zeros((n_T + n_L - 1, y_TC.shape[1]))            # y~(lo + k) at row k
    a, b = max(start - lo, 0), min(stop - lo, len(y_pad))
    y_pad[a:b] = y_TC[a + lo:b + lo]
    out = np.empty((x_FT.shape[0], n_L, y_TC.shape[1]))
    for c in range(y_TC.shape[1]):
        out[:, :, c] = x_FT @ np.lib.stride_tricks.sliding_window_view(y_pad[:, c], n_L)[:n_T]
    return out


def _edge_row_blocks(x_TF, lags, start, stop):
    """Lagged rows (r, L, F) of the zero-padded design outside ``[start, stop)``, with their t0."""
    n_T, n_L, n_F = x_TF.shape[0], len(lags), x_TF.shape[1]
    lo, hi = int(lags[0]), int(lags[-1])
    out = []
    if start > lo:                                   # inputs x[0 : start - lo]
        head = np.ascontiguousarray(x_TF[: min(n_T, start - lo)])
        out.append((_lag_rows(head, lags, lo, start, _NP).reshape(-1, n_L, n_F), lo))
    if n_T + hi > stop:                              # inputs x[stop - hi : n]
        off = max(0, stop - hi)
        tail = np.ascontiguousarray(x_TF[off:])
        out.append((_lag_rows(tail, lags, stop - off, n_T + hi - off, _NP).reshape(-1, n_L, n_F), stop))
    return out


def _edge_gram(x_TF, lags, start, stop):
    """Lagged products of the rows outside ``[start, stop)``, per feature: (F, L, L).

    Along a diagonal, one lag further shifts the rows by one sample: the entry gains the
    product of row ``stop - 1`` and loses that of row ``start - 1``. So the first row
    (from the edge rows) and those two rows give every entry.
    """
    n_T, n_L = x_TF.shape[0], len(lags)
    E = np.zeros((n_L, n_L, x_TF.shape[1]))                         # (L, L, F): rows contiguous
    for rows, _ in _edge_row_blocks(x_TF, lags, start, stop):      # (r, L, F)
        E[0] += (rows[:, :1] * rows).sum(axis=0)

    def row(t):                                                     # lagged row t: (L, F)
        idx = t - lags
        inside = ((idx >= 0) & (idx < n_T))[:, None]
        return np.where(inside, x_TF[np.clip(idx, 0, n_T - 1)], 0.0)

    head, tail = row(start - 1), row(stop - 1)
    E[1:, 0] = E[0, 1:]
    for i in range(1, n_L):                     # E[i, j] = E[i-1, j-1] + tail tail - head head
        E[i, i:] = (E[i - 1, i - 1:-1] + tail[i - 1] * tail[i - 1:-1]
                    - head[i - 1] * head[i - 1:-1])
        E[i + 1:, i] = E[i, i + 1:]                                 # symmetric
    return E.transpose(2, 0, 1)


def _range_sums(x_TF, lags, start, stop):
    """Lagged column sums (F, L): total minus the few samples near the edges each lag drops."""
    n_T = x_TF.shape[0]
    t0 = np.maximum(start, lags)
    t1 = np.minimum(stop, n_T + lags)
    a, b = t0 - lags, np.maximum(t1 - lags, t0 - lags)           # input ranges [a, b)
    k_head, k_tail = int(a.max()), int(n_T - b.min())
    total = x_TF.sum(axis=0)
    head = np.concatenate([np.zeros((1, x_TF.shape[1])), np.cumsum(x_TF[:k_head], axis=0)])
    tail = np.concatenate([np.zeros((1, x_TF.shape[1])),
                           np.cumsum(x_TF[n_T - k_tail:][::-1], axis=0)])
    return np.ascontiguousarray((total[None] - head[a] - tail[n_T - b]).T)


def _chunk_stats(x_FT, y_TC, lags, edge):
    """Per-feature statistics of one trial for a chunk of features, given as (F, n_times)."""
    x_TF = x_FT.T
    n_T, n_L = x_TF.shape[0], len(lags)
    start, stop = row_range(n_T, lags, edge)
    R_FL = _autocorr(x_FT, n_L)
    d = np.abs(np.arange(n_L)[:, None] - np.arange(n_L)[None, :])
    xtx = np.take(R_FL, d, axis=1)                                   # Toeplitz part (C-ordered) ...
    xtx -= _edge_gram(x_TF, lags, start, stop)                       # ... minus the edge rows
    y_used = y_TC[start:stop]
    return (xtx, _lagged_xty(x_FT, y_TC, lags, start, stop), _range_sums(x_TF, lags, start, stop),
            y_used.sum(0), (y_used ** 2).sum(0), stop - start)


_NP = get_ops("numpy")


def univariate_stats(X, Y, lags, *, edge="zero", features=None):
    """Per-trial, per-feature lagged statistics of single-feature models (numpy).

    Parameters
    ----------
    X : list of array or scipy.sparse matrix, each (n_times_i, n_features)
        Input trials; sparse trials are densified only for the selected ``features``
        (sparse row-slice products were measured slower than FFTs down to 0.1 % density).
    Y : list of array, each (n_times_i, n_outputs)
        Output trials.
    lags : ndarray of int, shape (n_lags,)
        Contiguous lags in samples.
    edge : 'zero' | 'valid'
        Edge handling.
    features : array of int | None
        Columns of ``X`` to use (default all).

    Returns
    -------
    stats : LagStats
        With a feature axis: xtx (N, B, L, L), xty (N, B, L, C), sx (N, B, L),
        sy (N, C), yty (N, C), n (N,).
    """
    parts = []
    for x, y in zip(X, Y):
        x_FT = _dense_features_by_time(x[:, features] if features is not None else x)  # one chunk
        parts.append(_chunk_stats(x_FT, np.asarray(y, dtype=np.float64), lags, edge))
    return LagStats(*(np.stack([p[k] for p in parts]) for k in range(5)),
                    np.array([p[5] for p in parts], dtype=np.float64))


def univariate_trfs(X, y, tmin, tmax, sfreq, *, alpha=1.0, fit_intercept=True, edge="zero",
                    cv=None, scoring="pearson", alpha_per_output=False, chunk_size=128,
                    backend="numpy", device=None):
    """Fit one forward TRF per input feature (each feature alone), batched over features.

    Parameters
    ----------
    X : array | scipy.sparse matrix | list of them, each (n_times_i, n_features)
        Input trials; sparse inputs are densified one chunk of features at a time.
    y : array | list of array, each (n_times_i[, n_outputs])
        Output trials (e.g. EEG channels).
    tmin, tmax : float
        Lag window in seconds.
    sfreq : float
        Sampling rate in Hz.
    alpha : float | sequence of float
        Penalties (engine scale, see :class:`~sae_eeg.trf.TRF`); several are compared
        by cross-validation, chosen per feature.
    fit_intercept : bool
        Unpenalised intercept per model. Default True.
    edge : 'zero' | 'valid'
        Edge handling. Default 'zero'.
    cv : int | None
        Folds (``None``: leave one trial out). Cross-validation runs whenever there
        are at least two trials.
    scoring : 'pearson' | 'mse' | 'r2'
        Metric (computed from statistics; 'spearman' is not available here).
    alpha_per_output : bool
        Choose alpha per (feature, output) instead of per feature. Default False.
    chunk_size : int
        Features processed together (memory ~ n_trials * chunk * n_lags^2 * 8 bytes).
    backend, device : str
        Array backend of the solves ('numpy' or 'torch').

    Returns
    -------
    result : UnivariateTRFs
        Weights, intercepts, alphas and cross-validated scores of every feature.
    """
    _check_option("edge", edge, EDGES)
    _check_option("scoring", scoring, STATS_SCORERS)
    chunk_size = _check_number("chunk_size", chunk_size, low=1, integer=True)
    sfreq = _check_number("sfreq", sfreq, low=0, inclusive=False)
    lags = times_to_lags(tmin, tmax, sfreq)
    alphas = _check_alphas(alpha)
    X_list = _as_trials(X, "X", allow_sparse=True)
    y_list = _as_trials(y, "y")
    if len(X_list) != len(y_list) or any(a.shape[0] != b.shape[0] for a, b in zip(X_list, y_list)):
        raise ValueError(f"X and y must hold the same trials with equal lengths; got "
                         f"{[a.shape[0] for a in X_list]} and {[b.shape[0] for b in y_list]} samples.")
    for x in X_list:
        row_range(x.shape[0], lags, edge)
    xp = get_ops(backend, device)
    n_feat, n_out, n_lags = X_list[0].shape[1], y_list[0].shape[1], len(lags)
    do_cv = len(X_list) > 1
    folds = make_folds(len(X_list), cv) if do_cv else None
    coef = np.empty((n_feat, n_out, n_lags))
    intercept = np.empty((n_feat, n_out))
    alpha_FC = np.empty((n_feat, n_out))
    cv_scores = np.full((n_feat, len(alphas), n_out), np.nan)
    a_best = np.zeros((n_feat, n_out), dtype=int)
    for f0 in range(0, n_feat, chunk_size):
        feats = np.arange(f0, min(f0 + chunk_size, n_feat))
        st = univariate_stats(X_list, y_list, lags, edge=edge, features=feats)
        st = LagStats(*(xp.asarray(getattr(st, k)) for k in FIELDS))
        if do_cv:
            sc = fold_scores(st, alphas, folds, fit_intercept=fit_intercept, scoring=scoring,
                             solver="auto", xp=xp).mean(axis=0)      # (A, B, C)
            cv_scores[feats] = sc.transpose(1, 0, 2)
            a_idx = np.stack([best_alpha_index(s, scoring, alpha_per_output)
                              for s in cv_scores[feats]])         # (B, C)
        else:
            a_idx = np.zeros((len(feats), n_out), dtype=int)
        W, b = ridge_path(st.total(), alphas, fit_intercept=fit_intercept, solver="auto", xp=xp)
        W, b = xp.to_numpy(W), xp.to_numpy(b)                   # (A, B, L, C), (A, B, C)
        B_idx = np.arange(len(feats))[:, None]
        C_idx = np.arange(n_out)[None, :]
        coef[feats] = W[a_idx, B_idx, :, C_idx]                  # (B, C, L)
        intercept[feats] = b[a_idx, B_idx, C_idx]
        alpha_FC[feats] = alphas[a_idx]
        a_best[feats] = a_idx
    if do_cv:
        scores = np.take_along_axis(cv_scores, a_best[:, None, :], axis=1)[:, 0]
    else:
        scores = np.full((n_feat, n_out), np.nan)
    return UnivariateTRFs(coef, intercept, alpha_FC, cv_scores, scores, lags, lags / sfreq)

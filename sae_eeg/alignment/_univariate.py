"""Many single-feature forward TRFs on runs that share their stimuli across subjects.

The lagged statistics of one single-feature ridge TRF split into a stimulus part
(``X^T X`` per feature, an (L x L) Toeplitz block with exact edge corrections, and
the lagged column sums) and a subject part (``X^T y``). In an EEG listening study
every subject hears the same stimuli, so the stimulus part is computed once per
distinct run (FFT autocorrelations, feature chunk by feature chunk) and cached by
content hash; per subject only ``X^T y`` is computed, as one sparse product with the
(T x L) matrix of shifted EEG samples. The solve is the engine's convention
(:mod:`sae_eeg.trf`): ``(C + alpha I) w = c`` on the lagged design centred on its
own means (unpenalised intercept), zero-padded edges (``edge="zero"``), so the
weights equal :func:`sae_eeg.trf.univariate.univariate_trfs` with a single alpha
(tested to 1e-10).
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from ._data import as_csr


def content_key(x_csr, lags):
    """Fingerprint of a sparse matrix and the lags (cache key of stimulus statistics).

    Hashes the shape, the row pointers, the lags and about 8000 sampled stored
    values and column indices: cheap on large matrices. Matrices with equal keys
    must still be compared with :func:`same_content` before sharing results.
    """
    h = hashlib.blake2b(digest_size=20)
    step = max(1, x_csr.nnz // 8192)
    for part in (np.asarray(x_csr.shape), np.asarray(lags), x_csr.indptr, x_csr.data[::step],
                 x_csr.indices[::step]):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def same_content(a, b):
    """True if two CSR matrices hold exactly the same values in the same places."""
    return a is b or (a.shape == b.shape and a.nnz == b.nnz and np.array_equal(a.indptr, b.indptr)
                      and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data))


@dataclasses.dataclass(frozen=True)
class StimulusStats:
    """Stimulus part of the single-feature lagged statistics of one run.

    Attributes
    ----------
    xtx : ndarray, shape (F, L, L)
        ``X_f^T X_f`` of each feature's lagged design (zero-padded edges).
    sx : ndarray, shape (F, L)
        Column sums of each lagged design.
    n : int
        Rows (samples) of the run.
    """

    xtx: np.ndarray
    sx: np.ndarray
    n: int


def _edge_rows(x_TF, lags, lo, hi):
    """Rows ``lo..hi-1`` (outside the run) of the infinitely zero-padded lagged design, (R, L, F)."""
    n_T = x_TF.shape[0]
    rows = np.zeros((hi - lo, len(lags), x_TF.shape[1]))
    for j, lag in enumerate(lags):
        t = np.arange(lo, hi) - int(lag)
        ok = (t >= 0) & (t < n_T)
        rows[ok, j] = x_TF[t[ok]]
    return rows


def _dense_chunks(x_csc, chunk_size):
    """Feature chunks of a CSC matrix as dense (F_chunk, T) arrays, contiguous along time."""
    n_F = x_csc.shape[1]
    for f0 in range(0, n_F, chunk_size):
        cols = slice(f0, min(f0 + chunk_size, n_F))
        yield cols, np.ascontiguousarray(x_csc[:, cols].toarray().T)


def _chunk_xtx(dense_FT, lags, n_fft, d):
    """``X_f^T X_f`` (F_chunk, L, L) of a dense chunk: FFT autocorrelation minus edge rows."""
    n_T = dense_FT.shape[1]
    spec = scipy.fft.rfft(dense_FT, n=n_fft, axis=1)
    xtx = scipy.fft.irfft(spec.real**2 + spec.imag**2, n=n_fft, axis=1)[:, : len(lags)][:, d]
    dense_TF = dense_FT.T
    # remove rows t < 0 and t >= n_T that the infinite zero padding would add
    for lo, hi in ((int(lags[0]), 0), (n_T, n_T + int(lags[-1]))):
        if hi > lo:
            rows_FRL = _edge_rows(dense_TF, lags, lo, hi).transpose(2, 0, 1)
            xtx -= rows_FRL.transpose(0, 2, 1) @ rows_FRL
    return xtx


def _chunk_sums(dense_FT, lags):
    """Column sums of each feature's lagged design, (F_chunk, L), from cumulative sums."""
    n_T = dense_FT.shape[1]
    cum = np.concatenate([np.zeros((dense_FT.shape[0], 1)), np.cumsum(dense_FT, axis=1)], axis=1)
    lo = np.clip(-lags, 0, n_T)                     # samples s with 0 <= s + lag < n_T
    hi = np.clip(n_T - lags, 0, n_T)
    return cum[:, hi] - cum[:, lo]


def stimulus_pass(x, lags, outputs=(), *, need_stats=True, chunk_size=256, max_block=1 << 23):
    """One pass over a stimulus: its statistics and ``X_f^T y_c`` for several outputs.

    The feature matrix is densified one chunk of features at a time; each chunk
    gives its FFT autocorrelations (``X_f^T X_f``) and, for the shifted outputs of
    all subjects that heard the stimulus stacked as columns, ``X_f^T y`` in one
    BLAS product (far faster than a sparse product per subject).

    Parameters
    ----------
    x : array | scipy.sparse array, shape (T, F)
        Features of one run.
    lags : ndarray of int, shape (L,)
        Contiguous increasing lags in samples.
    outputs : list of ndarray, each (T, C_i)
        EEG of the subjects that heard this stimulus.
    need_stats : bool
        Compute the stimulus statistics (False when they are cached).
    chunk_size : int
        Features densified at once.
    max_block : int
        Largest number of elements of a block of stacked shifted outputs.

    Returns
    -------
    stats : StimulusStats | None
    xty : list of ndarray, each (F, L, C_i)
    """
    x = as_csr(x, "features")
    lags = np.asarray(lags, dtype=np.int64)
    n_T, n_F = x.shape
    n_L = len(lags)
    n_fft = scipy.fft.next_fast_len(n_T + n_L)
    d = np.abs(np.arange(n_L)[:, None] - np.arange(n_L)[None, :])
    xtx = np.empty((n_F, n_L, n_L)) if need_stats else None
    sx = np.empty((n_F, n_L)) if need_stats else None
    columns = [(i, c) for i, y in enumerate(outputs) for c in range(y.shape[1])]
    xty = [np.empty((n_F, n_L, y.shape[1])) for y in outputs]
    per_block = max(1, max_block // (n_T * n_L))
    blocks = [columns[k:k + per_block] for k in range(0, len(columns), per_block)]

    def stacked(block):
        return np.concatenate([shifted_outputs(outputs[i][:, c], lags) for i, c in block], axis=1)

    kept = [stacked(blocks[0])] if len(blocks) == 1 else None
    for cols, dense_FT in _dense_chunks(x.tocsc(), chunk_size):
        if need_stats:
            xtx[cols] = _chunk_xtx(dense_FT, lags, n_fft, d)
            sx[cols] = _chunk_sums(dense_FT, lags)
        for b, block in enumerate(blocks):
            prod = dense_FT @ (kept[0] if kept else stacked(block))  # (F_chunk, len(block) * L)
            for k, (i, c) in enumerate(block):
                xty[i][cols, :, c] = prod[:, k * n_L:(k + 1) * n_L]
    stats = StimulusStats(xtx=xtx, sx=sx, n=int(n_T)) if need_stats else None
    return stats, xty


def stimulus_stats(x, lags, *, chunk_size=256):
    """Per-feature ``X^T X`` and lagged column sums of one run (zero-padded edges).

    Parameters
    ----------
    x : array | scipy.sparse array, shape (n_times, n_features)
        Features of one run.
    lags : ndarray of int, shape (n_lags,)
        Contiguous increasing lags in samples.
    chunk_size : int
        Features densified at once (memory ~ n_fft * chunk_size * 16 bytes).

    Returns
    -------
    stats : StimulusStats
    """
    return stimulus_pass(x, lags, chunk_size=chunk_size)[0]


def shifted_outputs(y_T, lags):
    """Matrix ``Y[s, j] = y[s + lags[j]]`` (zero outside the run), shape (T, L)."""
    n_T = y_T.shape[0]
    lo, hi = int(lags[0]), int(lags[-1])
    pad = np.zeros(n_T + (hi - lo))
    a, b = max(0, lo), min(n_T, n_T + hi)
    # padded index i holds y[i + lo]
    pad[a - lo: b - lo] = y_T[a:b]
    return sliding_window_view(pad, hi - lo + 1)[:n_T]


class StimulusCache:
    """Stimulus statistics keyed by content, shared by all subjects of an analysis."""

    def __init__(self):
        self._store = {}

    def key(self, x_csr, lags):
        """Cache key of ``x_csr`` at ``lags``: its fingerprint, made unique by content."""
        base = content_key(x_csr, lags)
        k = 0
        while (base, k) in self._store and not same_content(self._store[(base, k)][0], x_csr):
            k += 1
        return (base, k)

    def get(self, x_csr, lags, key=None):
        """Statistics of ``x_csr`` at ``lags`` (computed on first request)."""
        key = self.key(x_csr, lags) if key is None else key
        if key not in self._store:
            self._store[key] = (x_csr, stimulus_stats(x_csr, lags))
        return self._store[key][1]

    def __contains__(self, key):
        return key in self._store

    def put(self, key, x_csr, stats):
        """Store the statistics of stimulus ``x_csr`` under ``key``."""
        self._store[key] = (x_csr, stats)

    def __len__(self):
        return len(self._store)


def fit_univariate(runs, lags, alpha, *, cache=None):
    """Single-feature forward TRF weights of every feature, summed over runs.

    Parameters
    ----------
    runs : list of (features, eeg)
        ``features`` (n_times, F) sparse or dense, ``eeg`` (n_times, C).
    lags : ndarray of int, shape (L,)
        Lags in samples.
    alpha : float
        Ridge penalty (engine scale: ``alpha = lambda_mTRF * sfreq``).
    cache : StimulusCache | None
        Shared stimulus statistics (a fresh one if None).

    Returns
    -------
    coef : ndarray, shape (F, C, L)
        Weights (engine scale, ``w_mTRF / sfreq``).
    intercept : ndarray, shape (F, C)
    """
    return fit_univariate_many({0: runs}, lags, alpha, cache=cache)[0]


def fit_univariate_many(groups, lags, alpha, *, cache=None):
    """:func:`fit_univariate` for several independent sets of runs (e.g. subjects) at once.

    Runs of different groups with the same feature matrix (the same stimulus) share
    their stimulus statistics and one stacked ``X^T y`` product.

    Parameters
    ----------
    groups : dict of key -> list of (features, eeg)
        Runs of each group (subject).
    lags, alpha, cache
        As in :func:`fit_univariate`.

    Returns
    -------
    fits : dict of key -> (coef (F, C, L), intercept (F, C))
    """
    cache = StimulusCache() if cache is None else cache
    by_object, by_key = {}, {}
    for g, runs in groups.items():
        for feats, eeg in runs:
            if id(feats) not in by_object:                 # fingerprint each distinct object once
                x = as_csr(feats, "features")
                key = cache.key(x, lags)
                taken = {k: other for other, k in by_object.values()}
                while key in taken and not same_content(taken[key], x):
                    key = (key[0], key[1] + 1)
                by_object[id(feats)] = (taken.get(key, x), key)
            x, key = by_object[id(feats)]
            by_key.setdefault(key, (x, []))[1].append((g, np.asarray(eeg, dtype=np.float64)))
    stims = {g: [] for g in groups}
    xty = {g: 0.0 for g in groups}
    sy = {g: 0.0 for g in groups}
    for key, (x, items) in by_key.items():
        st, parts = stimulus_pass(x, lags, [eeg for _, eeg in items], need_stats=key not in cache)
        if st is not None:
            cache.put(key, x, st)
        for (g, eeg), part in zip(items, parts):
            stims[g].append(key)
            xty[g] = xty[g] + part
            sy[g] = sy[g] + eeg.sum(axis=0)
    return {g: _solve([cache.get(None, lags, k) for k in stims[g]], xty[g], sy[g], alpha) for g in groups}


def _solve(stim_stats, xty, sy, alpha):
    """Ridge weights with an unpenalised intercept from summed statistics."""
    xtx = sum(st.xtx for st in stim_stats)
    sx = sum(st.sx for st in stim_stats)
    n = float(sum(st.n for st in stim_stats))
    n_lags = xtx.shape[-1]
    sy = np.asarray(sy)
    C = xtx - sx[:, :, None] * sx[:, None, :] / n                      # (F, L, L)
    c = xty - sx[:, :, None] * sy[None, None, :] / n                   # (F, L, C)
    C[:, np.arange(n_lags), np.arange(n_lags)] += alpha
    W = np.linalg.solve(C, c)                                           # (F, L, C)
    intercept = (sy[None, :] - np.einsum("fl,flc->fc", sx, W)) / n
    return W.transpose(0, 2, 1), intercept

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
from scipy import sparse

from ._data import as_csr


def content_key(x_csr, lags):
    """Hash of a sparse matrix's content and the lags (cache key of stimulus statistics)."""
    h = hashlib.sha1()
    for part in (x_csr.data, x_csr.indices, x_csr.indptr, np.asarray(x_csr.shape), np.asarray(lags)):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


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
    x = as_csr(x, "features")
    lags = np.asarray(lags, dtype=np.int64)
    n_T, n_F = x.shape
    n_L = len(lags)
    n_fft = scipy.fft.next_fast_len(n_T + n_L)
    d = np.abs(np.arange(n_L)[:, None] - np.arange(n_L)[None, :])
    xtx = np.empty((n_F, n_L, n_L))
    sx = np.empty((n_F, n_L))
    xt = x.T.tocsr()
    total = np.asarray(x.sum(axis=0)).ravel()
    for f0 in range(0, n_F, chunk_size):
        cols = slice(f0, min(f0 + chunk_size, n_F))
        dense_FT = xt[cols].toarray()          # contiguous along time: fast FFTs
        spec = scipy.fft.rfft(dense_FT, n=n_fft, axis=1)
        r_FL = scipy.fft.irfft(spec.real**2 + spec.imag**2, n=n_fft, axis=1)[:, :n_L]
        xtx[cols] = r_FL[:, d]
        dense_TF = dense_FT.T
        # remove rows t < 0 and t >= n_T that the infinite zero padding would add
        for lo, hi in ((int(lags[0]), 0), (n_T, n_T + int(lags[-1]))):
            if hi > lo:
                rows_FRL = _edge_rows(dense_TF, lags, lo, hi).transpose(2, 0, 1)
                xtx[cols] -= rows_FRL.transpose(0, 2, 1) @ rows_FRL
        del dense_FT, dense_TF, spec
    # lagged column sums: total minus the samples shifted out of [0, n_T)
    for j, lag in enumerate(int(v) for v in lags):
        outside = x[n_T - lag:] if lag > 0 else x[: -lag] if lag < 0 else None
        sx[:, j] = total if outside is None else total - np.asarray(outside.sum(axis=0)).ravel()
    return StimulusStats(xtx=xtx, sx=sx, n=int(n_T))


def shifted_outputs(y_T, lags):
    """Matrix ``Y[s, j] = y[s + lags[j]]`` (zero outside the run), shape (T, L)."""
    n_T = y_T.shape[0]
    lo, hi = int(lags[0]), int(lags[-1])
    pad = np.zeros(n_T + (hi - lo))
    a, b = max(0, lo), min(n_T, n_T + hi)
    # padded index i holds y[i + lo]
    pad[a - lo: b - lo] = y_T[a:b]
    return sliding_window_view(pad, hi - lo + 1)[:n_T]


def response_xty(x_csr, outputs, lags, *, chunk_size=256, max_block=1 << 23):
    """``X_f^T y_c`` of every feature's lagged design for several outputs of one stimulus.

    The shifted outputs of all subjects that heard the stimulus are stacked as
    columns and multiplied by the densified features (a chunk of features at a
    time) in one BLAS product per block, which is far faster than one sparse
    product per subject.

    Parameters
    ----------
    x_csr : scipy.sparse.csr_array, shape (T, F)
    outputs : list of ndarray, each (T, C_i)
    lags : ndarray of int, shape (L,)
    chunk_size : int
        Features densified at once.
    max_block : int
        Largest number of elements of a block of stacked shifted outputs.

    Returns
    -------
    xty : list of ndarray, each (F, L, C_i)
    """
    n_T, n_F = x_csr.shape
    n_L = len(lags)
    columns = [(i, c) for i, y in enumerate(outputs) for c in range(y.shape[1])]
    out = [np.empty((n_F, n_L, y.shape[1])) for y in outputs]
    per_block = max(1, max_block // (n_T * n_L))
    xt = x_csr.T.tocsr()
    blocks = [columns[k:k + per_block] for k in range(0, len(columns), per_block)]
    shifted = [np.concatenate([shifted_outputs(outputs[i][:, c], lags) for i, c in block], axis=1)
               for block in blocks] if len(blocks) == 1 else None
    for f0 in range(0, n_F, chunk_size):
        rows = slice(f0, min(f0 + chunk_size, n_F))
        dense_FT = xt[rows].toarray()
        for b, block in enumerate(blocks):
            y_TK = shifted[b] if shifted is not None else np.concatenate(
                [shifted_outputs(outputs[i][:, c], lags) for i, c in block], axis=1)
            prod = dense_FT @ y_TK                                    # (F_chunk, len(block) * L)
            for k, (i, c) in enumerate(block):
                out[i][rows, :, c] = prod[:, k * n_L:(k + 1) * n_L]
    return out


class StimulusCache:
    """Stimulus statistics keyed by content hash, shared by all subjects of an analysis."""

    def __init__(self):
        self._store = {}

    def get(self, x_csr, lags, key=None):
        """Statistics of ``x_csr`` at ``lags`` (computed on first request)."""
        key = content_key(x_csr, lags) if key is None else key
        if key not in self._store:
            self._store[key] = stimulus_stats(x_csr, lags)
        return self._store[key]

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
            if id(feats) not in by_object:                 # hash each distinct object once
                x = as_csr(feats, "features")
                by_object[id(feats)] = (x, content_key(x, lags))
            x, key = by_object[id(feats)]
            by_key.setdefault(key, (x, []))[1].append((g, np.asarray(eeg, dtype=np.float64)))
    stims = {g: [] for g in groups}
    xty = {g: 0.0 for g in groups}
    sy = {g: 0.0 for g in groups}
    for key, (x, items) in by_key.items():
        cache.get(x, lags, key)
        parts = response_xty(x, [eeg for _, eeg in items], lags)
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

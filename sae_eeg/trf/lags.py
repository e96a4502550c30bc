"""Time lags and lagged sufficient statistics, computed without the lagged design matrix.

Conventions
-----------
A lag ``l`` (in samples) pairs output sample ``t`` with input sample ``t - l``: positive
lags mean the output follows the input (a forward TRF's response latency). Columns of
the lagged design are ordered lag-major: column ``p = j * n_features + f`` holds input
feature ``f`` at lag ``lags[j]``. Rows are output samples ``t``:

- ``edge='zero'``: every sample ``t = 0..n-1`` of a trial; inputs before the start or
  after the end of the trial count as zeros (mTRF-Toolbox ``zeropad``, MNE).
- ``edge='valid'``: only samples whose every lagged input lies inside the trial,
  ``t = max(0, max(lags)) .. n + min(0, min(lags)) - 1``.

Per trial the engine keeps ``X^T X``, ``X^T Y``, the column sums of ``X`` and ``Y``,
``sum(Y**2)`` and the row count, so that the statistics of any training set are the
total minus the held-out trials and scores follow without predicting.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft

from ._backend import get_ops
from ._check import _check_number, _check_option

EDGES = ("zero", "valid")


def times_to_lags(tmin, tmax, sfreq):
    """Integer lags (samples) covering the window ``[tmin, tmax]`` seconds.

    Parameters
    ----------
    tmin, tmax : float
        First and last lag, in seconds (``tmin <= tmax``); negative means the output
        precedes the input.
    sfreq : float
        Sampling rate in Hz.

    Returns
    -------
    lags : ndarray of int, shape (n_lags,)
        ``floor(tmin * sfreq) .. ceil(tmax * sfreq)`` (as mTRF-Toolbox/mTRFpy; values
        within 1e-9 of an integer are rounded to it first, so ``-0.1 * 100`` is -10).

    Raises
    ------
    ValueError
        If ``tmin > tmax`` or ``sfreq <= 0``.
    """
    tmin = _check_number("tmin", tmin)
    tmax = _check_number("tmax", tmax)
    sfreq = _check_number("sfreq", sfreq, low=0, inclusive=False)
    if tmin > tmax:
        raise ValueError(f"tmin must be <= tmax; got tmin={tmin!r}, tmax={tmax!r}.")

    def _snap(v):
        r = round(v)
        return r if abs(v - r) < 1e-9 else v

    lo, hi = math.floor(_snap(tmin * sfreq)), math.ceil(_snap(tmax * sfreq))
    return np.arange(lo, hi + 1, dtype=np.int64)


def row_range(n_samples, lags, edge):
    """First and one-past-last output sample used for a trial of ``n_samples``.

    Parameters
    ----------
    n_samples : int
        Length of the trial.
    lags : ndarray of int, shape (n_lags,)
        Lags in samples (increasing).
    edge : 'zero' | 'valid'
        Edge handling (see module notes).

    Returns
    -------
    start, stop : int
        Rows ``start <= t < stop`` of the trial enter the fit and the score.
    """
    _check_option("edge", edge, EDGES)
    if edge == "zero":
        return 0, int(n_samples)
    start, stop = max(0, int(lags[-1])), int(n_samples) + min(0, int(lags[0]))
    if stop <= start:
        raise ValueError(
            f"A trial of {n_samples} samples is too short for edge='valid' with lags "
            f"{int(lags[0])}..{int(lags[-1])}: no sample has all its lagged inputs inside the "
            "trial. Use longer trials, fewer lags or edge='zero'."
        )
    return start, stop


def valid_slice(lags, edge):
    """Rows of every trial used for fitting and scoring, as a slice (see :func:`row_range`)."""
    if edge == "zero":
        return slice(None, None)
    return slice(max(0, int(lags[-1])), min(0, int(lags[0])) or None)


def coef_from_weights(W, n_lags):
    """Lag-major design weights (P, C) as TRF coefficients (C, n_features, n_lags)."""
    W = np.asarray(W)
    return W.reshape(n_lags, -1, W.shape[-1]).transpose(2, 1, 0).copy()


def weights_from_coef(coef):
    """TRF coefficients (C, n_features, n_lags) as lag-major design weights (P, C)."""
    return np.asarray(coef).transpose(2, 1, 0).reshape(-1, coef.shape[0])


def _lag_rows(x_TF, lags, start, stop, xp):
    """Rows ``start..stop-1`` of the zero-padded lagged design, shape (n_rows, n_lags * F)."""
    n_T, n_F = x_TF.shape
    s_lo, s_hi = start - int(lags[-1]), stop - int(lags[0])  # input samples needed
    n_rows = stop - start
    if n_rows <= 0:
        return xp.zeros((0, len(lags) * n_F))
    seg = xp.zeros((s_hi - s_lo, n_F))
    a, b = max(s_lo, 0), min(s_hi, n_T)
    if b > a:
        seg[a - s_lo:b - s_lo] = x_TF[a:b]
    cols = [seg[start - int(lag) - s_lo: stop - int(lag) - s_lo] for lag in lags]
    return xp.stack(cols, axis=1).reshape(n_rows, len(lags) * n_F)


def lag_matrix(x, lags, *, edge="zero", backend="numpy", device=None):
    """The explicit lagged design matrix of one trial (for checks and small data).

    Parameters
    ----------
    x : array, shape (n_times, n_features)
        One trial of inputs.
    lags : array of int, shape (n_lags,)
        Lags in samples (increasing, contiguous or not).
    edge : 'zero' | 'valid'
        Edge handling; ``'valid'`` drops rows with any lagged input outside the trial.
    backend, device : str
        See :func:`sae_eeg.trf.TRF`.

    Returns
    -------
    design : array, shape (n_rows, n_lags * n_features)
        Column ``j * n_features + f`` is feature ``f`` delayed by ``lags[j]``.
    """
    xp = get_ops(backend, device)
    x_TF = xp.asarray(np.asarray(x).reshape(len(x), -1) if not hasattr(x, "detach") else x)
    lags = np.asarray(lags, dtype=np.int64)
    start, stop = row_range(x_TF.shape[0], lags, edge)
    return _lag_rows(x_TF, lags, start, stop, xp)


def _check_contiguous(lags):
    if len(lags) > 1 and not np.all(np.diff(lags) == 1):
        raise ValueError(f"lags must be contiguous increasing integers; got {lags!r}.")


def _autocov_lags(x_TF, n_L, xp):
    """``R[d] = sum_s x(s)^T x(s + d)`` over the full overlap, d = 0..n_L-1: (n_L, F, F)."""
    n_T, n_F = x_TF.shape
    zero_FF = xp.zeros((n_F, n_F))
    return xp.stack([x_TF[: n_T - d].mT @ x_TF[d:] if d < n_T else zero_FF for d in range(n_L)])


def _block_xcorr(x_cat, y_cat, n_L, xp):
    """``sum_s x(s)^T y(s + d)`` for d = 0..n_L-1 by short FFTs: (n_L, F, C).

    ``x_cat`` (n_blocks * B + n_L - 1, F) and ``y_cat`` (same length, C), with
    ``B = 8 n_L``. Block ``b`` of x (rows ``b B .. b B + B - 1``) is correlated with the
    same rows of y extended by ``n_L - 1``; the blocks' correlations add up to the whole
    one. Zero-padded to ``N >= B + n_L - 1``, the FFT's circular correlation is the
    linear one. The cross-spectra of all blocks are summed (complex products), then
    transformed back at the ``n_L`` lags only. Cost ~4.5 F C flops per sample for the
    products, instead of the direct products' 2 n_L F C.
    """
    n_F, n_C = x_cat.shape[1], y_cat.shape[1]
    B = 8 * n_L
    W = B + n_L - 1                                                         # block plus extension
    N = scipy.fft.next_fast_len(W, real=True)
    n_blocks = (x_cat.shape[0] - (n_L - 1)) // B
    x_blocks, y_blocks = xp.windows(x_cat, n_blocks, B, B), xp.windows(y_cat, n_blocks, W, B)
    per_chunk = max(1, 2**26 // (8 * N * max(n_F, n_C)))                    # bounded buffers, reused
    buf_x, buf_y = (xp.zeros((min(per_chunk, n_blocks), N, n)) for n in (n_F, n_C))
    cross = 0
    for b0 in range(0, n_blocks, per_chunk):
        n = min(per_chunk, n_blocks - b0)
        buf_x[:n, :B] = x_blocks[b0:b0 + n]
        buf_y[:n, :W] = y_blocks[b0:b0 + n]
        spec_x, spec_y = xp.rfft(buf_x[:n], axis=1), xp.rfft(buf_y[:n], axis=1)   # (n, K = N // 2 + 1, F | C)
        cross = cross + spec_x.conj().swapaxes(0, 1).mT @ spec_y.swapaxes(0, 1)    # sum over blocks: (K, F, C)
    # back at lags 0..n_L-1 only: R[d] = sum_k Re(cross[k] e^{2 pi i k d / N}) (weighted; cross is Hermitian)
    cos, sin, weight = _half_spectrum_dft(n_L, N, xp)
    R = (cos * weight[:, None]).mT @ cross.real.reshape(-1, n_F * n_C) \
        - (sin * weight[:, None]).mT @ cross.imag.reshape(-1, n_F * n_C)
    return R.reshape(n_L, n_F, n_C)


def _half_spectrum_dft(n_L, N, xp):
    """``cos``, ``sin`` (N // 2 + 1, n_L) of ``2 pi k d / N`` and the weights of the half spectrum.

    A real sequence's transform at ``k`` and ``N - k`` are conjugate: sums over all
    ``N`` frequencies are those over ``k = 0..N//2`` weighted 1 (``k = 0``, ``2k = N``)
    or 2 (the others); the weights include the 1/N of the inverse transform.
    """
    return tuple(xp.asarray(a) for a in _half_spectrum_dft_numpy(n_L, N))


@functools.lru_cache(maxsize=16)
def _half_spectrum_dft_numpy(n_L, N):
    """:func:`_half_spectrum_dft` in numpy, computed once per (n_L, N) (shared: never written)."""
    k = np.arange(N // 2 + 1)
    angle = 2 * np.pi * np.outer(k, np.arange(n_L)) / N
    return np.cos(angle), np.sin(angle), np.where((k == 0) | (2 * k == N), 1.0, 2.0) / N


def _fft_segment(n_T, n_L):
    """Padded length of a trial of ``n_T`` samples in :func:`_block_xcorr`.

    Whole blocks of ``8 n_L`` holding the trial and ``n_L - 1`` zeros, so that no block
    reaches into the next trial laid after it.
    """
    return -(-(n_T + n_L - 1) // (8 * n_L)) * (8 * n_L)


def _summed_autocov_lags(X, n_L, xp):
    """``sum_i R_i[d]`` over trials (see :func:`_autocov_lags`), d = 0..n_L-1: (n_L, F, F).

    The trials are laid end to end, each in its :func:`_fft_segment`, for one
    :func:`_block_xcorr`.
    """
    seg = [_fft_segment(x.shape[0], n_L) for x in X]
    x_cat = xp.zeros((sum(seg) + n_L - 1, X[0].shape[1]))
    for x, offset in zip(X, np.cumsum([0] + seg[:-1])):
        x_cat[int(offset):int(offset) + x.shape[0]] = x
    return _block_xcorr(x_cat, x_cat, n_L, xp)


def _fft_is_cheaper(X, n_L, n_C=None):
    """Whether the block FFTs of :func:`_block_xcorr` cost less than n_L direct products.

    Flops per sample: ~4.5 F C for the complex products plus ~2.8 (F + C) log2(N) for
    the FFTs over the padded samples, and ~2.5 N log2(N) F C per call for the transform
    back (a product at the n_L lags: more flops, as fast in time; all weighted 2x: smaller,
    slower operations), against 2 n_L F C over the
    trials' samples for the direct products. ``n_C=None``: autocovariance (C = F, one
    set of FFTs, one call for all trials).
    """
    n_F = X[0].shape[1]
    n_C, n_sets, n_calls = (n_F, 1, 1) if n_C is None else (n_C, 2, len(X))
    N = scipy.fft.next_fast_len(9 * n_L - 1, real=True)
    padded = sum(_fft_segment(x.shape[0], n_L) for x in X)
    fft = padded * (4.5 * n_F * n_C + 2.8 * n_sets * max(n_F, n_C) * np.log2(N))
    fft += n_calls * 2.5 * N * np.log2(N) * n_F * n_C
    return 2 * fft < 2.0 * n_L * n_F * n_C * sum(x.shape[0] for x in X)


def _summed_autocov(X, n_L, xp):
    """``sum_i R_i[d]`` (n_L, F, F) by block FFTs or direct products, whichever is cheaper."""
    if _fft_is_cheaper(X, n_L):
        return _summed_autocov_lags(X, n_L, xp)
    return sum(_autocov_lags(x_TF, n_L, xp) for x_TF in X)


def _edge_rows(x_TF, lags, edge, xp):
    """Rows of the infinitely zero-padded lagged design that the trial's design lacks."""
    n_T = x_TF.shape[0]
    start, stop = row_range(n_T, lags, edge)
    return [_lag_rows(x_TF, lags, lo, hi, xp)
            for lo, hi in ((int(lags[0]), start), (stop, n_T + int(lags[-1]))) if hi > lo]


def _boundary_rows(x_TF, lags, edge, xp):
    """Rows ``start - 1`` and ``stop - 1`` of the zero-padded design (see :func:`_assemble_xtx`)."""
    start, stop = row_range(x_TF.shape[0], lags, edge)
    return _lag_rows(x_TF, lags, start - 1, start, xp), _lag_rows(x_TF, lags, stop - 1, stop, xp)


def _assemble_xtx(R, edge_rows, boundaries, xp, out=None):
    """``X^T X`` (P, P) from ``R`` (L, F, F), the missing rows and the boundary rows of the trials.

    Block ``(i, j)`` sums ``x(t - l_i)^T x(t - l_j)`` over the design rows ``start <= t <
    stop``: ``R(j - i)^T`` (block Toeplitz) minus the Gram of the rows the design lacks.
    With fewer missing rows than lags (one trial) that Gram is one product. Summed over
    many trials, a recursion is cheaper: the first block row is computed from the
    missing rows, and along each block diagonal one step shifts the rows by one sample,
    which adds the product of row ``start - 1`` and removes that of row ``stop - 1``
    (a cumulative sum of outer products: P^2 per trial, not P^2 per missing row).
    ``out`` (P, P, C-ordered) receives the result.
    """
    n_L, n_F = R.shape[0], R.shape[1]
    rows = xp.concat(edge_rows, axis=0) if edge_rows else xp.zeros((0, n_L * n_F))
    if rows.shape[0] < n_L:
        # all_R[k] = R(k - (L-1)), with R(-d) = R(d)^T; block (i, j) is R(i - j)
        all_R = xp.concat([xp.flip(R[1:], 0).swapaxes(1, 2), R], axis=0)
        xtx = xp.zeros((n_L, n_F, n_L, n_F)) if out is None else out.reshape(n_L, n_F, n_L, n_F)
        for i in range(n_L):                                    # every block is written
            xtx[i] = xp.flip(all_R[i: i + n_L], 0).swapaxes(0, 1)
        return xp.subtract_product(xtx.reshape(n_L * n_F, n_L * n_F), rows.mT, rows)
    first = R.mT - (rows[:, :n_F].mT @ rows).reshape(n_F, n_L, n_F).swapaxes(0, 1)   # blocks (0, d)
    starts = xp.concat([s for s, _ in boundaries], axis=0).reshape(-1, n_L, n_F).swapaxes(0, 1)
    stops = xp.concat([s for _, s in boundaries], axis=0).reshape(-1, n_L, n_F).swapaxes(0, 1)
    blocks = xp.zeros((n_L * n_L, n_F, n_F))                   # block (i, j) at i * n_L + j
    for d in range(n_L):
        n = n_L - d
        step = starts[:n - 1].mT @ starts[d:n_L - 1] - stops[:n - 1].mT @ stops[d:n_L - 1]  # (n - 1, F, F)
        diagonal = xp.concat([first[d:d + 1], first[d] + step.cumsum(0)], axis=0)
        blocks[d::n_L + 1][:n] = diagonal                       # blocks (i, i + d)
        if d:
            blocks[d * n_L::n_L + 1][:n] = diagonal.mT          # blocks (i + d, i)
    xtx = blocks.reshape(n_L, n_L, n_F, n_F).swapaxes(1, 2).reshape(n_L * n_F, n_L * n_F)
    if out is None:
        return xtx
    out[...] = xtx
    return out


def lagged_xtx(x_TF, lags, edge, xp):
    """``X^T X`` of the lagged design of one trial, shape (n_lags * F, n_lags * F).

    The block-Toeplitz part comes from ``n_lags`` cross-products of shifted copies of
    the trial (no design matrix); the rows the design does not contain (zero padding
    beyond the trial, or the dropped edges for ``'valid'``) are subtracted exactly.
    """
    return _xtx_and_generators(x_TF, lags, edge, xp)[0]


def _xtx_and_generators(x_TF, lags, edge, xp, out=None):
    """``X^T X`` of one trial (into ``out`` if given) with its generators: the
    autocovariance ``R`` (L, F, F) and the missing rows (E, P), ``X^T X = Toeplitz(R) - rows^T rows``."""
    lags = np.asarray(lags, dtype=np.int64)
    _check_contiguous(lags)
    R = _summed_autocov([x_TF], len(lags), xp)
    rows = _edge_rows(x_TF, lags, edge, xp)
    xtx = _assemble_xtx(R, rows, [_boundary_rows(x_TF, lags, edge, xp)], xp, out)
    rows = xp.concat(rows, axis=0) if rows else xp.zeros((0, xtx.shape[0]))
    return xtx, R, rows


def lagged_quadratic_forms(autocov, edge_rows, W, xp):
    """``w^T X^T X w`` for every column ``w`` of ``W`` (P, K), from the generators of ``X^T X``.

    ``X^T X = Toeplitz(R) - rows^T rows`` (see :class:`LagStats`). The block-Toeplitz
    form is evaluated in the frequency domain: with ``N >= 2 L - 1`` points there is no
    wrap-around, and ``w^T Toeplitz(R) w`` is the sum over frequencies of
    ``W(k)^H S(k) W(k)``, ``S(k)`` the (Hermitian, F x F) transform of ``R`` at
    lags ``-(L-1)..L-1``. In real arithmetic, per frequency: ``v^T G v`` with
    ``v = [Re W(k); -Im W(k)]`` and ``G = [[Re S, -Im S], [Im S, Re S]]`` (symmetric).
    Cost ``~8 L F^2 K`` flops instead of the ``2 L^2 F^2 K`` of a product with ``X^T X``.

    Parameters
    ----------
    autocov : array, shape (L, F, F)
        ``R[d] = sum_s x(s)^T x(s + d)``.
    edge_rows : array, shape (E, L * F)
        Rows of the infinitely zero-padded design that the trial's design lacks.
    W : array, shape (L * F, K)
        Lag-major weights.
    xp : ops
        Backend namespace.

    Returns
    -------
    q : array, shape (K,)
    """
    n_L, n_F = autocov.shape[0], autocov.shape[1]
    cos, sin, weight = _half_spectrum_dft(n_L, scipy.fft.next_fast_len(2 * n_L - 1, real=True), xp)
    sym, anti = autocov + autocov.mT, autocov - autocov.mT                       # R(d) + R(-d), R(d) - R(-d)
    S_re = autocov[0] + (cos[:, 1:] @ sym[1:].reshape(n_L - 1, n_F * n_F)).reshape(-1, n_F, n_F)
    S_im = (sin[:, 1:] @ anti[1:].reshape(n_L - 1, n_F * n_F)).reshape(-1, n_F, n_F)
    G = xp.concat([xp.concat([S_re, -S_im], axis=2), xp.concat([S_im, S_re], axis=2)], axis=1)
    G = G * weight[:, None, None]
    n_K = W.shape[1]
    dft = xp.stack([cos, sin], axis=1).reshape(-1, n_L)         # rows (k, cos | sin): v comes out (k, 2F, K)
    W_L = W.reshape(n_L, n_F * n_K)
    q = 0
    for k0 in range(0, G.shape[0], _FREQUENCIES_PER_PRODUCT):    # a few frequencies at a time: v stays in cache
        k1 = min(k0 + _FREQUENCIES_PER_PRODUCT, G.shape[0])
        v = (dft[2 * k0:2 * k1] @ W_L).reshape(k1 - k0, 2 * n_F, n_K)
        q = q + xp.einsum("kin,kin->n", G[k0:k1] @ v, v)
    if edge_rows.shape[0]:
        BW = edge_rows @ W
        q = q - xp.einsum("en,en->n", BW, BW)
    return q


_FREQUENCIES_PER_PRODUCT = 16


def lagged_xty(x_TF, y_TC, lags, edge, xp):
    """``X^T Y`` of the lagged design of one trial, shape (n_lags * F, C).

    Block ``j`` is ``sum_s x(s)^T y(s + l_j)``, with y zero outside the rows used: by
    block FFTs (:func:`_block_xcorr`) when contiguous lags make them cheaper, else by
    products of x with copies of y shifted by each lag (a few lags per product).
    """
    lags = np.asarray(lags, dtype=np.int64)
    (n_T, n_F), n_C, n_L = x_TF.shape, y_TC.shape[1], len(lags)
    l0, span = int(lags[0]), int(lags[-1] - lags[0]) + 1
    start, stop = row_range(n_T, lags, edge)
    use_fft = span == n_L and _fft_is_cheaper([x_TF], n_L, n_C)
    # y advanced by l_0 on the rows used: y_adv[u] = y(u + l_0); rows that meet no x sample are left out
    y_adv = xp.zeros(((_fft_segment(n_T, n_L) + n_L - 1) if use_fft else n_T + span - 1, n_C))
    u0, u1 = max(start - l0, 0), min(stop - l0, n_T + span - 1)
    if u1 > u0:
        y_adv[u0:u1] = y_TC[u0 + l0:u1 + l0]
    if use_fft:
        x_pad = xp.zeros((y_adv.shape[0], n_F))
        x_pad[:n_T] = x_TF
        return _block_xcorr(x_pad, y_adv, n_L, xp).reshape(n_L * n_F, n_C)
    per_product = max(1, 2**23 // (n_T * n_C))                 # lags per product: bounded memory
    parts = []
    for j0 in range(0, n_L, per_product):
        shifted = y_adv[xp.index(np.arange(n_T)[:, None] + (lags[j0:j0 + per_product] - l0))]  # (T, lags, C)
        parts.append(x_TF.mT @ shifted.reshape(n_T, -1))
    return xp.concat(parts, axis=1).reshape(n_F, n_L, n_C).swapaxes(0, 1).reshape(n_L * n_F, n_C)


def lagged_sums(x_TF, lags, edge, xp):
    """Column sums of the lagged design of one trial, shape (n_lags * F,).

    Each lag's column sums are the trial's total minus the few rows outside its window.
    """
    lags = np.asarray(lags, dtype=np.int64)
    n_T, n_F = x_TF.shape
    start, stop = row_range(n_T, lags, edge)
    total = x_TF.sum(axis=0)
    sums = []
    for lag in lags:
        t0, t1 = max(start, int(lag)) - int(lag), min(stop, n_T + int(lag)) - int(lag)  # input rows used
        if t1 <= t0:
            sums.append(xp.zeros((n_F,)))
        elif t1 - t0 < n_T // 2:
            sums.append(x_TF[t0:t1].sum(axis=0))
        else:
            sums.append(total - x_TF[:t0].sum(axis=0) - x_TF[t1:].sum(axis=0))
    return xp.concat(sums, axis=0)


FIELDS = ("xtx", "xty", "sx", "sy", "yty", "n")


@dataclass(frozen=True)
class LagStats:
    """Sufficient statistics of lagged ridge regression, per trial (leading axis N).

    Attributes
    ----------
    xtx : array, shape (N, P, P)
        ``X^T X`` of each trial's lagged design (P = n_lags * n_features).
    xty : array, shape (N, P, C)
        ``X^T Y``.
    sx : array, shape (N, P)
        Column sums of the lagged design.
    sy : array, shape (N, C)
        Column sums of the outputs (rows used).
    yty : array, shape (N, C)
        Sums of squared outputs.
    n : array, shape (N,)
        Rows used per trial.
    autocov : array, shape (N, n_lags, F, F) | None
        Generators of each trial's ``X^T X``: ``R[d] = sum_s x(s)^T x(s + d)``, and
    edge_rows : array, shape (N, E, P) | None
        the rows of the infinitely zero-padded design that the trial's design lacks, so
        that ``X^T X = Toeplitz(R) - edge_rows^T edge_rows``. They give held-out scores
        without products with ``X^T X`` (:func:`lagged_quadratic_forms`). Only per-trial
        statistics carry them; sums and differences do not.
    """

    xtx: object
    xty: object
    sx: object
    sy: object
    yty: object
    n: object
    autocov: object = None
    edge_rows: object = None

    def total(self, keep=None):
        """Sum over trials (all, or the index array ``keep``); a LagStats with N = 1."""
        if keep is None and self.n_trials == 1:
            return self                                       # already a sum: no copy
        if keep is not None and len(keep) == 1:
            return self.trial(int(keep[0]))                   # one trial: a view, no copy
        def s(a):
            a = a if keep is None else a[keep]
            return a.sum(axis=0)[None]
        return LagStats(*(s(getattr(self, k)) for k in FIELDS))

    def minus(self, other):
        """Element-wise difference (training set = total minus held-out trials)."""
        return LagStats(*(getattr(self, k) - getattr(other, k) for k in FIELDS))

    def trial(self, i):
        """Statistics of trial ``i`` (N = 1)."""
        return self.subset(slice(i, i + 1))

    def subset(self, keep):
        """Per-trial statistics of the trials ``keep`` (index array or slice)."""
        return LagStats(*(None if a is None else a[keep] for a in
                          (getattr(self, k) for k in FIELDS + ("autocov", "edge_rows"))))

    @property
    def n_trials(self):
        """Number of trials N."""
        return self.xtx.shape[0]


def _non_xtx_parts(x_TF, y_TC, lags, edge, xp):
    """X^T Y (P, C), lagged column sums (P,), sum y (C,), sum y^2 (C,) and the row count."""
    start, stop = row_range(x_TF.shape[0], lags, edge)
    y_used = y_TC[start:stop]
    return (lagged_xty(x_TF, y_TC, lags, edge, xp), lagged_sums(x_TF, lags, edge, xp),
            y_used.sum(axis=0), (y_used * y_used).sum(axis=0), float(stop - start))


def _stats_from_parts(xtx, parts, xp, generators=(None, None)):
    xty, sx, sy, yty, n = parts
    return LagStats(xtx[None], xty[None], sx[None], sy[None], yty[None],
                    xp.asarray(np.array([n], dtype=np.float64)),
                    *(None if g is None else g[None] for g in generators))


def trial_stats(x_TF, y_TC, lags, edge, xp, out=None):
    """LagStats (N = 1) of one trial, with its generators; ``x_TF``/``y_TC`` are backend arrays.

    ``out`` (P, P) receives ``X^T X``.
    """
    xtx, R, rows = _xtx_and_generators(x_TF, lags, edge, xp, out)
    return _stats_from_parts(xtx, _non_xtx_parts(x_TF, y_TC, lags, edge, xp), xp, (R, rows))


def lagged_stats(X, Y, lags, *, edge="zero", per_trial=True, backend="numpy", device=None, xp=None):
    """Lagged covariances of trials without building the design matrices.

    Parameters
    ----------
    X : list of array, each shape (n_times_i, n_features)
        Input trials (lengths may differ).
    Y : list of array, each shape (n_times_i, n_outputs)
        Output trials.
    lags : array of int, shape (n_lags,)
        Contiguous lags in samples (from :func:`times_to_lags`).
    edge : 'zero' | 'valid'
        Edge handling (module notes).
    per_trial : bool
        Keep each trial's statistics (N = n_trials, needed for cross-validation) or
        only their sum (N = 1, less memory).
    backend, device : str
        Array backend; ignored when ``xp`` (an ops object) is given.

    Returns
    -------
    stats : LagStats
        See :class:`LagStats`.
    """
    xp = get_ops(backend, device) if xp is None else xp
    lags = np.asarray(lags, dtype=np.int64)
    if per_trial:
        P = len(lags) * X[0].shape[1]
        xtx = xp.zeros((len(X), P, P))                            # filled trial by trial, no concatenation
        parts = [trial_stats(xp.asarray(x), xp.asarray(y), lags, edge, xp, out=xtx[i])
                 for i, (x, y) in enumerate(zip(X, Y))]
        # every trial has as many edge rows (they depend on the lags and the edge mode only)
        return LagStats(xtx, *(xp.concat([getattr(p, k) for p in parts], axis=0)
                               for k in FIELDS[1:] + ("autocov", "edge_rows")))
    # summed: the Toeplitz parts of all trials at once, X^T X assembled once
    _check_contiguous(lags)
    X, Y = [xp.asarray(x) for x in X], [xp.asarray(y) for y in Y]
    R = _summed_autocov(X, len(lags), xp)
    rows, boundaries, acc = [], [], None
    for x_TF, y_TC in zip(X, Y):
        rows.extend(_edge_rows(x_TF, lags, edge, xp))
        boundaries.append(_boundary_rows(x_TF, lags, edge, xp))
        part = _non_xtx_parts(x_TF, y_TC, lags, edge, xp)
        acc = list(part) if acc is None else [a + p for a, p in zip(acc, part)]
    return _stats_from_parts(_assemble_xtx(R, rows, boundaries, xp), acc, xp)

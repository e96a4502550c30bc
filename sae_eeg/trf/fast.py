"""Opt-in speed: every fast path of the TRF engine, what it replaces and what it earned.

Each function computes what a readable function of the core computes (tests compare the
two); the core calls it where the rule beside it says it pays. Gains are CPU times on one
core (OpenBLAS), measured with ``benchmarks/trf_vs_peers.py``: (a) 20 trials x 7680
samples, 16 features x 78 lags = 1248 columns, 64 outputs, 10 alphas, leave-one-trial-out;
(b) 1000 single-feature models; (c) 128 channels x 33 lags = 4224 columns, one alpha.

1. :func:`block_xcorr`: lagged cross-correlations by short FFTs of blocks of ``8 n_lags``
   samples (the X^T X generators and X^T Y). (c)'s covariance 3.3 -> 1.1 s (with 4.);
   X^T Y of (a) ~15 ms per trial.
2. :func:`xtx_by_recursion`: X^T X with the edge corrections by a recursion along block
   diagonals, for many trials ((c): 0.6 -> 0.3 s) or many single-feature designs; and
   :func:`autocorrelation_rows`, one FFT per single-feature design.
3. :func:`quadratic_forms`: held-out ``w^T X^T X w`` in the frequency domain, without
   the P x P product ((a): in-fit moments 1.9-2.8 -> 0.5 s).
4. :func:`circular_xty`: X^T of circularly shifted outputs for many shifts from one FFT
   per trial (shift nulls of the demo's encoding: 8.0 -> 4.8 s per subject and layer).
5. :func:`tridiagonal_inverse`: every ridge penalty from one orthogonal reduction: block
   tridiagonal for one large system (the first stage of LAPACK's two-stage eigensolver,
   with BLAS ``symm``/``syr2k`` on blocks in place through SciPy's ``cython_blas``
   capsules), LAPACK ``dsytrd`` for a batch of small ones. (a): the reduction costs
   about five Cholesky factorisations, against ten for ten alphas (13.4-18.2x -> 20.3-23.5x
   vs mtrf; the capsule calls 12-30 % of the reduction); (b): 67 vs 132 ms (eigh) per
   128 systems of 78 lags and 10 alphas.
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np
import scipy.fft
from scipy.linalg import cython_blas, lapack

from ._backend import NumpyOps

_NP = NumpyOps()


# ---- 1. block-FFT cross-correlations ---------------------------------------------------------

def segment(n_times, n_lags):
    """Padded length of a trial in :func:`block_xcorr`: whole blocks of ``8 n_lags`` holding the
    trial and ``n_lags - 1`` zeros, so that no block reaches into the next trial."""
    return -(-(n_times + n_lags - 1) // (8 * n_lags)) * (8 * n_lags)


def fft_pays(lengths, n_lags, n_x, n_y=None):
    """Whether :func:`block_xcorr` beats direct products for lags ``0..n_lags-1`` of these trials.

    Autocovariance (``n_y=None``): when it costs fewer flops than ``n_lags`` products, counting
    ~4.5 n_x^2 per sample for the complex products, ~2.8 n_x log2(N) for the FFTs of the padded
    samples and ~2.5 N log2(N) n_x^2 to transform back (all weighted 2x: smaller, slower
    operations). Cross-correlation of ``n_x`` inputs with ``n_y`` outputs: against one product
    with the outputs' windows (a copy of ``n_lags * n_y`` columns), when ``n_lags >= 8`` and
    ``n_x <= n_y * n_lags / 2`` (measured at 7680 samples, 33 and 78 lags: 128 inputs and one
    output 17 ms direct vs 31 ms FFT; 16 inputs and 64 outputs 363 vs 30 ms).
    """
    if n_y is not None:
        return n_lags >= 8 and n_x <= n_y * n_lags / 2
    N = scipy.fft.next_fast_len(9 * n_lags - 1, real=True)
    fft = sum(segment(n, n_lags) for n in lengths) * (4.5 * n_x * n_x + 2.8 * n_x * np.log2(N))
    return 2 * (fft + 2.5 * N * np.log2(N) * n_x * n_x) < 2.0 * n_lags * n_x * n_x * sum(lengths)


@functools.lru_cache(maxsize=16)
def _half_spectrum_dft(n_lags, N):
    """``cos``, ``sin`` (N // 2 + 1, n_lags) of ``2 pi k d / N`` and the half spectrum's weights.

    A real sequence's transform at ``k`` and ``N - k`` are conjugate: sums over all ``N``
    frequencies are those over ``k = 0..N//2`` weighted 1 (``k = 0``, ``2k = N``) or 2 (the
    others); the weights include the 1/N of the inverse transform. Computed once per size.
    """
    k = np.arange(N // 2 + 1)
    angle = 2 * np.pi * np.outer(k, np.arange(n_lags)) / N
    return np.cos(angle), np.sin(angle), np.where((k == 0) | (2 * k == N), 1.0, 2.0) / N


def block_xcorr(pairs, n_lags, xp):
    """``sum_i sum_s x_i(s)^T y_i(s + d)`` over trials, ``d = 0..n_lags-1``: (n_lags, F, C).

    ``pairs`` holds per trial ``x`` (T_i, F) and ``y`` (at most T_i + n_lags - 1 rows, C), or
    ``None`` for ``y = x``. The trials are laid end to end, each in its :func:`segment`; block
    ``b`` of x (``B = 8 n_lags`` rows) is correlated with the same rows of y extended by
    ``n_lags - 1``, zero-padded to ``N >= B + n_lags - 1`` so that the FFT's circular
    correlation is the linear one. The cross-spectra of all blocks are summed, then transformed
    back at the ``n_lags`` lags only.
    """
    n_F = pairs[0][0].shape[1]
    offsets = np.cumsum([0] + [segment(x.shape[0], n_lags) for x, _ in pairs])

    def laid_out(arrays, width):
        out = xp.zeros((int(offsets[-1]) + n_lags - 1, width))
        for a, o in zip(arrays, offsets):
            out[int(o):int(o) + a.shape[0]] = a
        return out

    x_cat = laid_out([x for x, _ in pairs], n_F)
    y_cat = x_cat if pairs[0][1] is None else laid_out([y for _, y in pairs], pairs[0][1].shape[1])
    n_C, B = y_cat.shape[1], 8 * n_lags
    W = B + n_lags - 1                                                        # block plus extension
    N = scipy.fft.next_fast_len(W, real=True)
    n_blocks = (x_cat.shape[0] - (n_lags - 1)) // B
    x_blocks, y_blocks = xp.windows(x_cat, n_blocks, B, B), xp.windows(y_cat, n_blocks, W, B)
    per_chunk = max(1, 2**26 // (8 * N * max(n_F, n_C)))                     # bounded buffers, reused
    buf_x, buf_y = (xp.zeros((min(per_chunk, n_blocks), N, n)) for n in (n_F, n_C))
    cross = 0
    for b0 in range(0, n_blocks, per_chunk):
        n = min(per_chunk, n_blocks - b0)
        buf_x[:n, :B], buf_y[:n, :W] = x_blocks[b0:b0 + n], y_blocks[b0:b0 + n]
        spec_x, spec_y = xp.rfft(buf_x[:n], axis=1), xp.rfft(buf_y[:n], axis=1)   # (n, K, F | C)
        cross = cross + spec_x.conj().swapaxes(0, 1).mT @ spec_y.swapaxes(0, 1)    # sum over blocks: (K, F, C)
    cos, sin, weight = (xp.asarray(a) for a in _half_spectrum_dft(n_lags, N))
    # R[d] = sum_k w_k Re(cross[k] e^{2 pi i k d / N}): cross is Hermitian in k
    R = (cos * weight[:, None]).mT @ cross.real.reshape(-1, n_F * n_C) \
        - (sin * weight[:, None]).mT @ cross.imag.reshape(-1, n_F * n_C)
    return R.reshape(n_lags, n_F, n_C)


def autocorrelation_rows(x, n_lags, xp):
    """``sum_s x_b(s) x_b(s + d)``, ``d < n_lags``, of every row of ``x`` (B, T): (B, n_lags), by one
    FFT per row (single-feature designs: 35 ms per 128 features of 7680 samples, against 77 ms by
    blocks and 1.3 s by products)."""
    n = scipy.fft.next_fast_len(x.shape[1] + n_lags - 1, real=True)          # no wrap-around
    spec = xp.rfft(x, axis=1, n=n)
    return xp.irfft(spec.real ** 2 + spec.imag ** 2, axis=1, n=n)[:, :n_lags]


# ---- 2. X^T X with the edge corrections by a recursion ----------------------------------------

def xtx_by_recursion(R, rows, starts, stops, xp):
    """``X^T X`` (B, P, P) of one design (B = 1) or of B single-feature designs, from their summed
    autocovariance ``R`` (B, L, F, F) and the rows their trials lack.

    Block ``(i, j)`` is ``R(i - j)`` minus the Gram of the missing rows (``rows`` (B, E, P), all
    trials). Along a block diagonal one step shifts the rows by one sample, which adds the product
    of each trial's row ``start - 1`` and removes that of row ``stop - 1`` (``starts``, ``stops``:
    (B, n_trials, P)): the first block row comes from the missing rows, every other block from a
    cumulative sum (P^2 per trial, not per missing row). Many trials of one design ((c): 0.6 ->
    0.3 s); 128 single-feature designs of 78 lags (blocks are numbers, the designs along the last,
    contiguous axis): 34 ms by batched products -> 5 ms.
    """
    n_B, n_L, n_F = R.shape[:3]
    if n_F == 1:                                   # blocks (i, j): (B,) vectors
        first = (R[:, :, 0, 0] - (rows[:, :, :1] * rows).sum(1)).mT             # (L, B)
        starts, stops = (xp.permute(s, (2, 1, 0)) for s in (starts, stops))      # (L, n, B)

        def products(a, d):
            return (a[:n_L - 1 - d] * a[d:n_L - 1]).sum(1)
    else:                                          # one design: blocks (F, F)
        first = R[0].mT - (rows[0][:, :n_F].mT @ rows[0]).reshape(n_F, n_L, n_F).swapaxes(0, 1)   # blocks (0, d)
        starts, stops = (s[0].reshape(-1, n_L, n_F).swapaxes(0, 1) for s in (starts, stops))   # (L, n, F)

        def products(a, d):        # sum over trials of a(lag k)^T a(lag k + d), k < L - 1 - d
            return a[:n_L - 1 - d].mT @ a[d:n_L - 1]
    blocks = xp.zeros((n_L * n_L,) + tuple(first.shape[1:]))                  # block (i, j) at i * n_L + j
    for d in range(n_L):
        n = n_L - d
        step = products(starts, d) - products(stops, d)
        diagonal = xp.concat([first[d:d + 1], first[d] + step.cumsum(0)], axis=0)
        blocks[d::n_L + 1][:n] = diagonal                                     # blocks (i, i + d)
        if d:
            blocks[d * n_L::n_L + 1][:n] = diagonal if n_F == 1 else diagonal.mT   # blocks (i + d, i)
    if n_F == 1:
        return xp.permute(blocks.reshape(n_L, n_L, n_B), (2, 0, 1))
    return blocks.reshape(n_L, n_L, n_F, n_F).swapaxes(1, 2).reshape(1, n_L * n_F, n_L * n_F)


# ---- 3. held-out quadratic forms in the frequency domain -------------------------------------

_FREQUENCIES_PER_PRODUCT = 16


def quadratic_forms(autocov, edge_rows, W, xp):
    """``w^T X^T X w`` for every column ``w`` of ``W`` (P, K), from the generators of ``X^T X``.

    ``X^T X = Toeplitz(R) - rows^T rows``. With ``N >= 2 L - 1`` points there is no
    wrap-around: ``w^T Toeplitz(R) w`` is the sum over frequencies of ``W(k)^H S(k) W(k)``,
    ``S(k)`` the (Hermitian, F x F) transform of ``R`` at lags ``-(L-1)..L-1``; in real
    arithmetic ``v^T G v`` with ``v = [Re W(k); -Im W(k)]`` and ``G = [[Re S, -Im S], [Im S,
    Re S]]``. ``~8 L F^2 K`` flops instead of ``2 L^2 F^2 K``; 16 frequencies per product keep
    the temporaries in cache (38 -> 23 ms per fold of (a)).

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
    cos, sin, weight = (xp.asarray(a) for a in
                        _half_spectrum_dft(n_L, scipy.fft.next_fast_len(2 * n_L - 1, real=True)))
    sym, anti = autocov + autocov.mT, autocov - autocov.mT                   # R(d) + R(-d), R(d) - R(-d)
    S_re = autocov[0] + (cos[:, 1:] @ sym[1:].reshape(n_L - 1, n_F * n_F)).reshape(-1, n_F, n_F)
    S_im = (sin[:, 1:] @ anti[1:].reshape(n_L - 1, n_F * n_F)).reshape(-1, n_F, n_F)
    G = xp.concat([xp.concat([S_re, -S_im], axis=2), xp.concat([S_im, S_re], axis=2)], axis=1)
    G = G * weight[:, None, None]
    n_K = W.shape[1]
    dft = xp.stack([cos, sin], axis=1).reshape(-1, n_L)         # rows (k, cos | sin): v comes out (k, 2F, K)
    W_L = W.reshape(n_L, n_F * n_K)
    q = 0
    for k0 in range(0, G.shape[0], _FREQUENCIES_PER_PRODUCT):
        k1 = min(k0 + _FREQUENCIES_PER_PRODUCT, G.shape[0])
        v = (dft[2 * k0:2 * k1] @ W_L).reshape(k1 - k0, 2 * n_F, n_K)
        q = q + xp.einsum("kin,kin->n", G[k0:k1] @ v, v)
    BW = edge_rows @ W
    return q - xp.einsum("en,en->n", BW, BW)


# ---- 4. X^T of circularly shifted outputs, many shifts at once --------------------------------

def circular_xty(x, y, lags, start, stop, shifts):
    """``X^T roll(y, -s)`` (len(shifts), L * F, C) of one trial (numpy) over rows ``start..stop-1``.

    At lag ``l`` it is the circular cross-correlation of x and y at ``l + s`` (one FFT per
    trial for all shifts) minus the few products of input rows whose output row is not used.
    """
    n_T, n_F = x.shape
    at = (lags[None, :] + shifts[:, None]) % n_T                            # (S, L) correlation lags
    x_f, y_f = np.fft.rfft(x, axis=0), np.fft.rfft(y, axis=0)
    out = np.empty((len(shifts), len(lags), n_F, y.shape[1]))
    step = max(1, 2**25 // (n_T * y.shape[1]))                               # bound the (n, F, C) temporary
    for f0 in range(0, n_F, step):
        f1 = min(f0 + step, n_F)
        out[:, :, f0:f1] = np.fft.irfft(np.conj(x_f[:, f0:f1, None]) * y_f[:, None, :], n=n_T, axis=0)[at]
    for j, lag in enumerate(lags):                      # input rows u whose output row u + lag is not used
        outside = np.r_[0:max(0, start - lag), min(n_T, stop - lag):n_T]
        if outside.size:
            out[:, j] -= np.einsum("uf,suc->sfc", x[outside], y[(outside[None, :] + lag + shifts[:, None]) % n_T])
    return out.reshape(len(shifts), -1, y.shape[1])


# ---- 5. every ridge penalty from one orthogonal reduction ------------------------------------

# Block width of J: wider blocks make the reduction's products more efficient and the
# per-penalty block solves dearer; 48 was fastest for P = 300..2000 (OpenBLAS, one thread).
WIDTH = 48

# dsymm and dsyr2k from SciPy's cython_blas: (char, char, int, int, alpha, a, lda, b, ldb,
# beta, c, ldc), all by reference. Unlike scipy.linalg.blas (f2py, which copies an array that
# is not contiguous) they take a leading dimension: a trailing block is updated where it lies.
_INT, _PTR = ctypes.POINTER(ctypes.c_int), ctypes.c_void_p
_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, _INT, _INT, _PTR, _PTR, _INT,
                              _PTR, _INT, _PTR, _PTR, _INT)


def _blas_routine(name):
    capsule = cython_blas.__pyx_capi__[name]
    get_name, get_pointer = ctypes.pythonapi.PyCapsule_GetName, ctypes.pythonapi.PyCapsule_GetPointer
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return _SIGNATURE(get_pointer(capsule, get_name(capsule)))


_DSYMM, _DSYR2K = _blas_routine("dsymm"), _blas_routine("dsyr2k")


def _column_major(a):
    """Pointer and leading dimension of a float64 array with unit row stride (a Fortran block)."""
    if a.dtype != np.float64 or a.strides[0] != 8 or a.strides[1] % 8 or a.strides[1] < 8 * a.shape[0]:
        raise ValueError("expected a float64 Fortran-ordered array or block of one")
    return _PTR(a.ctypes.data), ctypes.byref(ctypes.c_int(max(1, a.strides[1] // 8)))


def _ints(*values):
    return [ctypes.byref(ctypes.c_int(v)) for v in values]


def _scalar(value):
    return ctypes.byref(ctypes.c_double(value))


def symm_lower(a, b):
    """``a @ b`` for symmetric ``a`` (n, n) known by its lower triangle; ``a`` may be a block."""
    b = np.asfortranarray(b, dtype=np.float64)
    out = np.zeros(b.shape, order="F")
    _DSYMM(b"L", b"L", *_ints(*b.shape), _scalar(1.0), *_column_major(a), *_column_major(b),
           _scalar(0.0), *_column_major(out))
    return out


def syr2k_lower(c, a, b, alpha):
    """``c += alpha (a b^T + b a^T)`` on the lower triangle of ``c`` (n, n), in place; returns ``c``."""
    a, b = np.asfortranarray(a, dtype=np.float64), np.asfortranarray(b, dtype=np.float64)
    _DSYR2K(b"L", b"N", *_ints(*a.shape), _scalar(alpha), *_column_major(a), *_column_major(b),
            _scalar(1.0), *_column_major(c))
    return c


def block_tridiagonalize(C, width=None, overwrite=False):
    """``C = Q J Q^T`` (numpy, symmetric ``C`` known by its lower triangle): ``(diag, sub, reflectors)``.

    ``J`` is block tridiagonal (``diag[i]`` (b, b) symmetric, ``sub[i] = J[i + 1, i]`` upper
    trapezoidal); ``Q = prod_k (I - V_k T_k V_k^T)`` from ``reflectors`` ``(start, V, T)``
    acting on rows ``start:``. Each step is the QR decomposition (LAPACK ``dgeqrt``, compact WY)
    of the panel below the current diagonal block, applied to the trailing matrix from both
    sides by ``symm`` + ``syr2k``. ``overwrite``: work in ``C``'s memory.
    """
    width = WIDTH if width is None else width
    A = np.asfortranarray(C.T) if overwrite else np.array(C, order="F")     # C.T: the same matrix
    diag, sub, reflectors, start = [], [], [], 0
    while A.shape[0] > width:
        diag.append(np.tril(A[:width, :width]) + np.tril(A[:width, :width], -1).T)
        r = min(A.shape[0] - width, width)
        qr, T, _ = lapack.dgeqrt(r, A[width:, :width])
        V = np.tril(qr[:, :r], -1)
        V[np.diag_indices(r)] = 1.0
        sub.append(np.triu(qr[:r]))
        A = A[width:, width:]                                  # Q^T A Q = A - V Z^T - Z V^T, in place:
        X = symm_lower(A, V @ T)
        A = syr2k_lower(A, V, X - 0.5 * (V @ (T.T @ (V.T @ X))), -1.0)
        start += width
        reflectors.append((start, V, T))
    diag.append(np.tril(A) + np.tril(A, -1).T)
    return diag, sub, reflectors


def apply_q(reflectors, U, transpose=False):
    """``Q U`` (or ``Q^T U``) in place on C-ordered ``U`` (P, K); returns ``U``."""
    for start, V, T in (reflectors if transpose else reversed(reflectors)):
        rows = U[start:]
        _NP.subtract_product(rows, V, (T.T if transpose else T) @ (V.T @ rows))
    return U


def solve_shifts(diag, sub, z, shifts):
    """Solve ``(J + s I) u = z`` for every shift ``s``: (P, S, K) from ``z`` (P, K).

    Block Cholesky ``J + s I = L L^T`` (``L`` block lower bidiagonal) batched over the shifts,
    then substitution block by block with the inverses of the diagonal blocks of ``L``. The
    solutions are written shift by shift along the second axis, so that ``u.reshape(P, S * K)``
    holds all of them as columns.
    """
    shifts = np.asarray(shifts, dtype=np.float64)[:, None, None]
    inv, S = [], []            # inverses of the blocks L[i, i]; sub-diagonal blocks L[i + 1, i]
    for i, D in enumerate(diag):
        D = D + shifts * np.eye(D.shape[0])
        if i:
            S.append(sub[i - 1] @ inv[-1].mT)                  # L[i, i-1] = J[i, i-1] L[i-1, i-1]^{-T}
            D = D - S[-1] @ S[-1].mT
        inv.append(_triangular_inverse(np.linalg.cholesky(D), lower=1))
    y, start = [], 0
    for i, Li_inv in enumerate(inv):                            # L y = z
        zi = z[start:start + Li_inv.shape[-1]]
        start += Li_inv.shape[-1]
        y.append(Li_inv @ (zi if i == 0 else zi - S[i - 1] @ y[-1]))
    u, u_next = np.zeros((z.shape[0], len(shifts), z.shape[1])), None
    for i in reversed(range(len(inv))):                         # L^T u = y
        start -= inv[i].shape[-1]
        u_next = inv[i].mT @ (y[i] if u_next is None else y[i] - S[i].mT @ u_next)
        u[start:start + u_next.shape[1]] = u_next.swapaxes(0, 1)
    return u


def _compact_wy(V, tau):
    """``T`` with ``H_1 ... H_r = I - V T V^T`` for reflectors ``I - tau_k v_k v_k^T`` (batched).

    ``T^{-1} = diag(1 / tau) + strict upper part of V^T V`` (Joffrain et al. 2006); a reflector
    with ``tau = 0`` is the identity: its ``v`` is set to zero.
    """
    tau = tau[..., None, :]
    identity = tau == 0
    V = V * ~identity
    return V, _triangular_inverse(np.triu(V.mT @ V, 1) + np.eye(V.shape[-1]) / (tau + identity), lower=0)


def _triangular_inverse(a, lower):
    """Inverses of triangular matrices ``a`` (B, n, n) by LAPACK ``dtrtri`` (9 ms for 128 of 77 x 77;
    numpy's batched ``inv`` 19 ms, SciPy's batched ``solve_triangular`` 12 ms)."""
    return np.stack([lapack.dtrtri(m, lower=lower)[0] for m in a])


def tridiagonal_shifts_solve(d, e, z, shifts):
    """Solve ``(T + s I) u = z`` for symmetric tridiagonal ``T`` (diagonal ``d`` (..., P), off-diagonal
    ``e`` (..., P - 1)) and every shift: (S, ..., P, K), by ``T + s I = L D L^T`` batched over shifts
    and leading axes (stable without pivoting: ``T + s I`` is positive definite)."""
    n = d.shape[-1]
    dd = d[None] + np.asarray(shifts, dtype=np.float64).reshape((-1,) + (1,) * d.ndim)
    D, ell = np.empty(dd.shape), np.empty(dd.shape[:-1] + (n - 1,))
    D[..., 0] = dd[..., 0]
    for i in range(1, n):
        ell[..., i - 1] = e[..., i - 1] / D[..., i - 1]
        D[..., i] = dd[..., i] - ell[..., i - 1] * e[..., i - 1]
    u = np.empty(D.shape + z.shape[-1:])
    u[..., 0, :] = z[..., 0, :]
    for i in range(1, n):                                       # L y = z
        u[..., i, :] = z[..., i, :] - ell[..., i - 1, None] * u[..., i - 1, :]
    u /= D[..., None]
    for i in range(n - 2, -1, -1):                              # L^T u = D^{-1} y
        u[..., i, :] -= ell[..., i, None] * u[..., i + 1, :]
    return u


def tridiagonal_inverse(C, alphas, xp, overwrite=False):
    """``rhs -> (C + alpha I)^{-1} rhs`` for every alpha, (B, P, K) -> (A, B, P, K), from one reduction.

    One system (B = 1): ``C = Q J Q^T`` block tridiagonal, ``(C + a I)^{-1} = Q (J + a I)^{-1}
    Q^T``; each alpha costs a block Cholesky of ``J + a I`` and ``Q`` is applied once to the
    solutions of all alphas. A batch of small systems: ``C_b = Q_b T_b Q_b^T`` tridiagonal
    (LAPACK ``dsytrd`` each), then one LDL^T recursion for every alpha and system. The result
    of one system is a view of a (P, A, K) array: ``W[:, 0].swapaxes(0, 1).reshape(P, A * K)``
    is free. Computed in numpy (a torch ``C`` goes through the CPU).
    """
    C, n_A = xp.to_numpy(C), len(alphas)
    if C.shape[0] == 1:
        diag, sub, reflectors = block_tridiagonalize(C[0], overwrite=overwrite and xp.name == "numpy")

        def inverse(rhs):
            z = apply_q(reflectors, np.array(xp.to_numpy(rhs)[0]), transpose=True)
            U = solve_shifts(diag, sub, z, alphas)                                # (P, A, K)
            n_P, _, n_K = U.shape
            W = xp.asarray(apply_q(reflectors, U.reshape(n_P, n_A * n_K)).reshape(1, n_P, n_A, n_K))
            return xp.permute(W, (2, 0, 1, 3))
        return inverse
    n = C.shape[-1]
    parts = [lapack.dsytrd(c, lower=1) for c in C]                 # (a, d, e, tau, info) per system
    a, d, e, tau = (np.stack([p[k] for p in parts]) for k in range(4))
    V, T = _compact_wy(np.tril(a[..., :n - 1], -2) + np.eye(n, n - 1, k=-1), tau)   # Q = I - V T V^T

    def inverse(rhs):
        rhs = xp.to_numpy(rhs)
        U = tridiagonal_shifts_solve(d, e, rhs - V @ (T.mT @ (V.mT @ rhs)), alphas)   # (A, B, P, K)
        n_B, n_K = U.shape[1], U.shape[-1]
        U = U.transpose(1, 2, 0, 3).reshape(n_B, n, n_A * n_K)                      # all alphas as columns
        return xp.permute(xp.asarray((U - V @ (T @ (V.mT @ U))).reshape(n_B, n, n_A, n_K)), (2, 0, 1, 3))
    return inverse

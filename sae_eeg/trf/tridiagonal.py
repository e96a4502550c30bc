"""Block-tridiagonal reduction of a symmetric matrix: every ridge penalty from one reduction.

``C = Q J Q^T`` with ``Q`` orthogonal (a product of block Householder reflectors) and
``J`` block tridiagonal (blocks of ``width`` rows). Then
``(C + a I)^{-1} = Q (J + a I)^{-1} Q^T`` for every ``a``: the reduction (all matrix
products, about five Cholesky factorisations of ``C`` in time) is done once, and each
penalty costs only a block-tridiagonal Cholesky factorisation (``O(n width^2)``). It is
the first stage of LAPACK's two-stage symmetric eigensolver (``dsytrd_sy2sb``), stopped
where the penalties no longer need more: cheaper than an eigendecomposition and, from
about five penalties on, than one Cholesky factorisation of ``C`` per penalty.

The same code runs on both backends; the backend supplies the QR of a panel in compact WY form (``geqrt``), the
symmetric two-sided update and the (batched) Cholesky and triangular solves. Batches of
small systems (single-feature models) take a plain tridiagonal reduction per system by
LAPACK (:func:`householder_tridiagonal`, numpy) and one LDL^T recursion for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack

from ._backend import NumpyOps

_NUMPY = NumpyOps()

# Block width of J. Wider blocks make the reduction's products more efficient and the
# per-penalty block solves dearer; 48 was fastest for P = 300..2000 (OpenBLAS, one thread).
WIDTH = 48


@dataclass(frozen=True)
class BlockTridiagonal:
    """``C = Q J Q^T``: the blocks of ``J`` and the reflectors of ``Q``.

    Attributes
    ----------
    diag : list of array
        Diagonal blocks ``J[i, i]``, shape (b_i, b_i), symmetric.
    sub : list of array
        Sub-diagonal blocks ``J[i + 1, i]``, shape (b_{i+1}, b_i) (upper trapezoidal).
    reflectors : list of (int, array, array)
        ``(start, V, T)``: ``Q = prod_k (I - V_k T_k V_k^T)`` acting on rows ``start:``.
    """

    diag: list
    sub: list
    reflectors: list


def block_tridiagonalize(C, xp, width=None, overwrite=False):
    """Reduce symmetric ``C`` (P, P) to block-tridiagonal form, ``C = Q J Q^T``.

    Each step takes the QR decomposition of the panel below the current diagonal block
    and applies its block reflector to the trailing matrix from both sides. ``width``
    (default :data:`WIDTH`) is the block size of ``J``. With ``overwrite`` the reduction
    may work in ``C``'s memory.
    """
    width = WIDTH if width is None else width
    A = xp.reduction_work(C, overwrite)    # numpy: only a lower triangle is read
    diag, sub, reflectors = [], [], []
    start = 0
    while A.shape[0] > width:
        diag.append(_symmetric(A[:width, :width], xp))
        V, T, R = xp.geqrt(A[width:, :width])
        sub.append(R)
        A = xp.two_sided_update(A[width:, width:], V, T)
        start += width
        reflectors.append((start, V, T))
    diag.append(_symmetric(A, xp))
    return BlockTridiagonal(diag, sub, reflectors)


def _symmetric(a, xp):
    """The symmetric matrix whose lower triangle is that of ``a``."""
    return xp.tril(a) + xp.tril(a, -1).mT


def apply_q(J, U, xp, transpose=False):
    """``Q U`` (or ``Q^T U``) in place on ``U`` (P, K); returns ``U``."""
    steps = J.reflectors if transpose else reversed(J.reflectors)
    for start, V, T in steps:
        rows = U[start:]
        xp.subtract_product(rows, V, (T.mT if transpose else T) @ (V.mT @ rows))
    return U


def solve_shifts(J, z, shifts, xp):
    """Solve ``(J + s I) u = z`` for every shift ``s``; ``z`` (P, K) gives (P, S, K).

    Block Cholesky factorisation ``J + s I = L L^T`` (``L`` block lower bidiagonal),
    batched over the shifts, then forward and back substitution block by block with
    the inverses of the (small, triangular) diagonal blocks of ``L``. The solutions
    are written shift by shift along the second axis, so that ``u.reshape(P, S * K)``
    holds all of them as columns (a view).
    """
    s_I = xp.asarray(np.asarray(shifts, dtype=np.float64))[:, None, None] * xp.eye(J.diag[0].shape[0])
    inv, S = [], []            # inverses of the blocks L[i, i]; sub-diagonal blocks L[i + 1, i]
    for i, D in enumerate(J.diag):
        D = D + s_I[:, :D.shape[0], :D.shape[0]]
        if i:
            S.append(J.sub[i - 1] @ inv[-1].mT)            # L[i, i-1] = J[i, i-1] L[i-1, i-1]^{-T}
            D = D - S[-1] @ S[-1].mT
        inv.append(xp.solve_triangular(xp.cholesky(D), xp.eye(D.shape[-1]), lower=True))
    y, start = [], 0
    for i, Li_inv in enumerate(inv):                        # L y = z
        zi = z[start:start + Li_inv.shape[-1]]
        start += Li_inv.shape[-1]
        y.append(Li_inv @ (zi if i == 0 else zi - S[i - 1] @ y[-1]))
    u = xp.zeros((z.shape[0], len(shifts), z.shape[1]))
    u_next = None
    for i in reversed(range(len(inv))):                     # L^T u = y
        start -= inv[i].shape[-1]
        u_i = inv[i].mT @ (y[i] if u_next is None else y[i] - S[i].mT @ u_next)
        u[start:start + u_i.shape[1]] = u_i.swapaxes(0, 1)
        u_next = u_i
    return u


def compact_wy(qr, tau, xp):
    """``(V, T, R)`` from ``geqrf`` output (torch): ``H_1 ... H_r = I - V T V^T``, ``R`` upper."""
    r = min(qr.shape)
    top = xp.tril(qr[:r, :r], -1) + xp.eye(r)                    # unit lower triangle; the rest is V
    V, T = _wy(xp.concat([top, qr[r:, :r]], axis=0), tau, xp)
    return V, T, xp.triu(qr[:r])


def _wy(V, tau, xp):
    """``(V, T)`` with ``H_1 ... H_r = I - V T V^T`` for reflectors ``H_k = I - tau_k v_k v_k^T``.

    ``T^{-1} = diag(1 / tau) + (strictly upper part of V^T V)`` (Joffrain et al. 2006,
    "Accumulating Householder transformations, revisited"). A reflector with ``tau = 0``
    is the identity: its ``v`` is set to zero. ``V`` and ``tau`` may carry a batch axis.
    """
    tau = tau[..., None, :]                                   # scales columns
    identity = tau == 0
    if identity.any():
        V = V * ~identity
    r = V.shape[-1]
    T_inv = xp.triu(V.mT @ V, 1) + xp.eye(r) / (tau + identity)
    return V, xp.solve_triangular(T_inv, xp.eye(r), lower=False)


def householder_tridiagonal(C, xp):
    """Batched symmetric ``C`` (B, P, P) as ``Q T Q^T``, ``T`` tridiagonal (LAPACK ``dsytrd``).

    Returns the diagonal (B, P) and off-diagonal (B, P - 1) of ``T`` and ``(V, W)`` with
    ``Q = I - V W V^T``. For the many small systems of single-feature models, whose
    eigendecompositions cost about twice as much (with the solves for 10 alphas).
    """
    n = C.shape[-1]
    parts = [lapack.dsytrd(c, lower=1) for c in xp.to_numpy(C)]   # (a, d, e, tau, info)
    a, d, e, tau = (np.stack([p[k] for p in parts]) for k in range(4))
    V = np.tril(a[..., :n - 1], -2) + np.eye(n, n - 1, k=-1)    # v_k: 1 at row k + 1
    V, W = _wy(V, tau, _NUMPY)
    return tuple(xp.asarray(v) for v in (d, e, V, W))


def solve_tridiagonal_shifts(d, e, z, shifts):
    """Solve ``(T + s I) u = z`` for symmetric tridiagonal ``T`` and every shift ``s``.

    ``d`` (..., P) and ``e`` (..., P - 1) are the diagonal and off-diagonal of ``T``,
    ``z`` (..., P, K). Returns (S, ..., P, K). ``T + s I = L D L^T`` (``L`` unit lower
    bidiagonal), batched over the shifts and leading axes (stable without pivoting:
    ``T + s I`` is positive definite).
    """
    n = d.shape[-1]
    dd = d[None] + np.asarray(shifts, dtype=np.float64).reshape((-1,) + (1,) * d.ndim)
    D, ell = np.empty(dd.shape), np.empty(dd.shape[:-1] + (n - 1,))
    D[..., 0] = dd[..., 0]
    for i in range(1, n):
        ell[..., i - 1] = e[..., i - 1] / D[..., i - 1]
        D[..., i] = dd[..., i] - ell[..., i - 1] * e[..., i - 1]
    y = np.empty(D.shape + z.shape[-1:])
    y[..., 0, :] = z[..., 0, :]
    for i in range(1, n):                                       # L y = z
        y[..., i, :] = z[..., i, :] - ell[..., i - 1, None] * y[..., i - 1, :]
    u = y / D[..., None]
    for i in range(n - 2, -1, -1):                              # L^T u = D^{-1} y
        u[..., i, :] -= ell[..., i, None] * u[..., i + 1, :]
    return u

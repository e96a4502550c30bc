"""The one ridge path of the engine: centre the system, decompose it once, solve every penalty.

Every fit goes through :class:`RidgePath`: the system ``(C + alpha S) W = c`` of summed statistics
is centred by one rule (:func:`centered_gram`, :func:`centered_cross`), ``C`` decomposed once (a
Cholesky factorisation per penalty, one eigendecomposition ``W = V (V^T c) / (e + alpha)``, or one
orthogonal reduction), and every penalty's weights follow, for any outputs. ``(X^T X + alpha I)
w = X^T y``, as scikit-learn ``Ridge`` and MNE ``TimeDelayingRidge``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import fast
from ._backend import ops_of
from ._check import _check_option

CENTERINGS = ("lagged", "signal")


def _signal_means(stats):
    """Means (B, F_d) of each design's inputs over the whole trials; the constant feature is last (mean 1)."""
    R0 = stats.autocov[0][:, 0]                        # sum_s x(s)^T x(s); x_const(s) = 1 inside the trials
    return R0[..., -1] / R0[..., -1:, -1]


def centered_gram(stats, centering, xp, overwrite=False):
    """The covariance ``C`` (B, P, P) of the ridge system of summed statistics (N = 1).

    ``centering``: None (no intercept, ``C = X^T X``); ``'lagged'`` (mTRF, scikit-learn on the
    design): the lagged columns centred on their means over the rows used, which is ridge with an
    unpenalised column of ones; ``'signal'`` (MNE ``TimeDelayingRidge``, ``fit_intercept=True``):
    the inputs centred on their means over the whole trials before lagging (statistics with
    ``ones``: ``X_c = X - x_const m^T`` at every lag), the constant feature's block made the
    identity (its weights are 0). ``overwrite``: centre in the memory of ``stats.xtx``.
    """
    xtx, sx = stats.xtx[0], stats.sx[0]
    if centering is None:
        return xtx
    if centering == "lagged":
        u = sx / stats.n[0]
        if not overwrite:
            return xtx - sx[..., :, None] * u[..., None, :]
        for b in range(xtx.shape[0]):                     # in place, without a temporary of the matrices' size
            xp.subtract_product(xtx[b], sx[b][:, None], u[b][None, :])
        return xtx
    if not stats.ones:
        raise ValueError("centering='signal' needs statistics with the constant feature (lagged_stats(ones=True)).")
    n_B, n_L, n_F = stats.autocov.shape[1:4]
    m = _signal_means(stats)
    m_f, m_g = m[:, None, :, None, None], m[:, None, None, None, :]
    A = xtx.reshape(n_B, n_L, n_F, n_L, n_F)
    C = A - A[..., -1:] * m_g - m_f * A[:, :, -1:] + m_f * A[:, :, -1:, :, -1:] * m_g
    C = C.reshape(n_B, n_L * n_F, n_L * n_F)
    const = xp.index(np.arange(n_L) * n_F + n_F - 1)
    C[:, const, const] += 1.0                          # the constant feature: decoupled, weight 0
    return C


def centered_cross(stats, centering, xp):
    """``(c (B, P, C), b0 (C,), u (B, P))`` by :func:`centered_gram`'s rules: intercepts ``b = b0 - u^T w``."""
    xty, sx, n = stats.xty[0], stats.sx[0], stats.n[0]
    if centering is None:
        return xty, 0 * stats.sy[0], 0 * xty[..., 0]
    b0 = stats.sy[0] / n
    if centering == "lagged":
        return xty - sx[..., :, None] * b0, b0, sx / n
    n_B, n_L, n_F = stats.autocov.shape[1:4]
    m = _signal_means(stats)[:, None, :]                                    # (B, 1, F)
    sx = (sx.reshape(n_B, n_L, n_F) - m * sx.reshape(n_B, n_L, n_F)[..., -1:]).reshape(n_B, -1)
    xty = xty.reshape(n_B, n_L, n_F, -1)
    xty = (xty - m[..., None] * xty[:, :, -1:]).reshape(n_B, n_L * n_F, -1)
    u = xp.concat([m * xp.asarray(np.r_[np.ones(n_F - 1), 0.0])] * n_L, axis=1).reshape(n_B, -1)
    return xty - sx[..., :, None] * b0, b0, u


def _eigh(C, alphas, xp, overwrite=False):
    evals, evecs = xp.eigh(C)
    alphas = xp.asarray(np.asarray(alphas, dtype=np.float64)).reshape(-1, 1, 1, 1)
    return lambda rhs: evecs[None] @ ((evecs.mT @ rhs)[None] / (evals[None, ..., None] + alphas))


def _cholesky(C, alphas, xp, overwrite=False):
    diagonal, factors = np.arange(C.shape[-1]), []
    for a in alphas:                                   # one alpha and a temporary C: factorised in its memory
        M = C if overwrite and len(alphas) == 1 else C * 1.0
        M[..., diagonal, diagonal] += float(a)
        factors.append(xp.cho_factor(M))
    return lambda rhs: xp.stack([xp.cho_solve(f, rhs) for f in factors])


SOLVERS = {"eigh": _eigh, "cholesky": _cholesky, "tridiagonal": fast.tridiagonal_inverse}

# Costs in Cholesky factorisations of the same matrices (OpenBLAS, one thread): an eigendecomposition
# (dsyevd) 12; the block-tridiagonal reduction with its products with Q 5 above 10 blocks of 48 (Cholesky
# / reduction time 0.6-1.1 at P = 150-300, 1.4-1.7 at P = 600-1249, 8 alphas); for a batch of small
# systems the tridiagonal reductions 4.
EIGH_COST_IN_CHOLESKY, TRIDIAGONAL_COST_IN_CHOLESKY, BATCH_TRIDIAGONAL_COST_IN_CHOLESKY = 12, 5, 4
TRIDIAGONAL_MIN_BLOCKS = 10


def resolve_solver(solver, n_alphas, n_columns, n_systems=1, backend="numpy"):
    """The solver's name; ``'auto'``: per-alpha Cholesky up to the alphas a decomposition for all costs
    (the constants above), that decomposition beyond (tridiagonal on numpy batches and systems of
    more than :data:`TRIDIAGONAL_MIN_BLOCKS` blocks, else eigh)."""
    _check_option("solver", solver, ("auto", *SOLVERS))
    if solver != "auto":
        return solver
    if n_systems > 1 and backend == "numpy":
        return "cholesky" if n_alphas <= BATCH_TRIDIAGONAL_COST_IN_CHOLESKY else "tridiagonal"
    if n_systems == 1 and n_columns > TRIDIAGONAL_MIN_BLOCKS * fast.WIDTH:
        return "cholesky" if n_alphas <= TRIDIAGONAL_COST_IN_CHOLESKY else "tridiagonal"
    return "cholesky" if n_alphas <= EIGH_COST_IN_CHOLESKY else "eigh"


class RidgePath:
    """Ridge weights of one lagged system for every penalty, from one decomposition.

    ``stats``: summed statistics (N = 1) whose stimulus part is the system; ``alphas``: penalties
    (engine scale); ``centering``: the intercept rule (:func:`centered_gram`); ``solver``: 'auto',
    'eigh', 'cholesky' or 'tridiagonal' (:func:`resolve_solver`); ``penalty_scale`` (P,): relative
    penalty of each column (banded ridge: ``alpha * diag(scale)``); ``xp``: the backend (default:
    the one holding ``stats``);
    ``overwrite``: ``stats.xtx`` is a temporary (a fold's training set). Attributes: ``solver``, and
    ``stats``, the system's sums without ``X^T X`` (:meth:`solve` takes them with any response part).
    """

    def __init__(self, stats, alphas, *, centering="lagged", solver="auto", penalty_scale=None, xp=None,
                 overwrite=False):
        xp = ops_of(stats.sx) if xp is None else xp
        self.alphas, self.centering, self.xp = np.asarray(alphas, dtype=np.float64), centering, xp
        self.stats = dataclasses.replace(stats, xtx=None, edge_rows=None)  # the sums that centre outputs
        C = centered_gram(stats, centering, xp, overwrite)
        self._scale = None if penalty_scale is None else 1.0 / penalty_scale ** 0.5
        if self._scale is not None:
            C = C * self._scale[:, None] * self._scale[None, :]
        self.solver = resolve_solver(solver, len(self.alphas), C.shape[-1], C.shape[0], xp.name)
        new = overwrite or centering is not None or self._scale is not None   # C is ours to overwrite
        self._inverse = SOLVERS[self.solver](C, self.alphas, xp, overwrite=new)

    def inverse(self, rhs):
        """``(C + alpha S)^{-1} rhs`` for every alpha: (B, P, K) -> (n_alphas, B, P, K)."""
        if self._scale is None:
            return self._inverse(rhs)
        s = self._scale[:, None]
        return self._inverse(rhs * s) * s

    def solve(self, stats):
        """Weights (n_alphas, B, P, C) and intercepts (n_alphas, B, C) for the response part of summed
        statistics with this system's stimulus part (:meth:`~sae_eeg.trf.stats.LagStats.with_response`)."""
        c, b0, u = centered_cross(stats, self.centering, self.xp)
        W = self.inverse(c)
        return W, b0 - self.xp.einsum("bp,abpc->abc", u, W)


def ridge_path(stats, alphas, *, centering="lagged", solver="auto", penalty_scale=None, xp=None, overwrite=False):
    """Ridge weights (n_alphas, B, P, n_outputs) and intercepts (n_alphas, B, n_outputs) of summed
    statistics for every alpha: ``RidgePath(stats, alphas, ...).solve(stats)``."""
    return RidgePath(stats, alphas, centering=centering, solver=solver, penalty_scale=penalty_scale, xp=xp,
                     overwrite=overwrite).solve(stats)


def ridge_per_output(stats, alpha_C, *, centering="lagged", solver="auto", xp, penalty_scale=None):
    """Weights (B, P, C) and intercepts (B, C) with one alpha per output column."""
    uniq, inverse = np.unique(np.asarray(alpha_C, dtype=np.float64), return_inverse=True)
    W, b = ridge_path(stats, uniq, centering=centering, solver=solver, xp=xp, penalty_scale=penalty_scale)
    cols = xp.index(np.arange(len(inverse)))
    inverse = xp.index(inverse)
    return W[inverse, :, :, cols].swapaxes(0, 1).swapaxes(1, 2), b[inverse, :, cols].mT

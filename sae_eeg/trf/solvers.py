"""Ridge solvers on lagged sufficient statistics (one code path for numpy and torch).

All solvers take the (centred) system ``C w = c`` and a vector of penalties and return
the weights for every penalty at once, shape (n_alphas, P, n_outputs). The intercept is
never penalised: with ``fit_intercept`` the system is centred on the lagged design's
own column means, which is exactly ridge with an unpenalised column of ones (mTRF).

Three ways to many penalties: one Cholesky factorisation per penalty (fewest flops for
a few), one eigendecomposition for all (batches of small systems), and one reduction
to block-tridiagonal form for all (large systems, many penalties).
"""

from __future__ import annotations

import numpy as np

from . import tridiagonal
from ._check import _check_option


def centered_system(stats, fit_intercept, xp=None):
    """Return ``C`` ([B, ]P, P) and ``c`` ([B, ]P, C) of a summed LagStats (N = 1).

    A leading batch axis B (independent models, e.g. one per feature) is allowed.

    With ``fit_intercept`` the lagged columns and the outputs are centred on their
    means over all rows used (``C = X^T X - n m m^T``). Given the backend ``xp``,
    ``stats`` is a temporary: ``C`` is centred in the memory of ``stats.xtx``.
    """
    xtx, xty = stats.xtx[0], stats.xty[0]
    if not fit_intercept:
        return xtx, xty
    n = stats.n[0]
    sx, sy = stats.sx[0], stats.sy[0]
    mean_x = sx / n
    if xp is not None:
        C = xp.subtract_product(xtx, sx[..., :, None], mean_x[..., None, :])
    else:
        C = sx[..., :, None] * -mean_x[..., None, :]           # one P x P array: the result
        C += xtx
    return C, xty - mean_x[..., :, None] * sy[..., None, :]


def _scaled(C, c, penalty_scale):
    """Rescale the system so a per-column penalty ``alpha * scale_p`` becomes ``alpha * I``."""
    if penalty_scale is None:
        return C, c, None
    s = 1.0 / penalty_scale ** 0.5
    return C * s[:, None] * s[None, :], c * s[:, None], s[:, None]


def solve_eigh(C, c, alphas, xp, penalty_scale=None, overwrite=False):
    """Weights for every alpha from one eigendecomposition of ``C``.

    Parameters
    ----------
    C : array, shape ([B, ]P, P)
        Symmetric (centred) lagged covariance (optionally a batch of B systems).
    c : array, shape ([B, ]P, n_outputs)
        Cross-covariance with the outputs.
    alphas : ndarray, shape (n_alphas,)
        Penalties (the engine's alpha: sklearn/MNE scale).
    xp : ops
        Backend namespace.
    penalty_scale : array, shape (P,) | None
        Relative penalty per column (banded ridge); ``None`` is all ones.
    overwrite : bool
        ``C`` is a temporary the solver may overwrite (the tridiagonal reduction does).

    Returns
    -------
    W : array, shape (n_alphas, [B, ]P, n_outputs)
    """
    Cs, cs, s = _scaled(C, c, penalty_scale)
    evals, evecs = xp.eigh(Cs)
    proj = evecs.mT @ cs
    alphas_A = xp.asarray(np.asarray(alphas, dtype=np.float64).reshape(-1, *[1] * proj.ndim))
    W = evecs[None] @ (proj[None] / (evals[None, ..., None] + alphas_A))
    return W if s is None else W * s


def solve_cholesky(C, c, alphas, xp, penalty_scale=None, overwrite=False):
    """Weights for every alpha, one Cholesky factorisation per alpha (best for one alpha)."""
    Cs, cs, s = _scaled(C, c, penalty_scale)
    W = xp.cho_solve_shifts(Cs, [float(a) for a in np.asarray(alphas)], cs)
    return W if s is None else W * s


def solve_tridiagonal(C, c, alphas, xp, penalty_scale=None, overwrite=False):
    """Weights for every alpha from one block-tridiagonal reduction ``C = Q J Q^T``.

    ``W(alpha) = Q (J + alpha I)^{-1} Q^T c``: after the reduction each alpha costs a
    block-tridiagonal Cholesky factorisation and two products with ``Q``
    (:mod:`sae_eeg.trf.tridiagonal`). A batch of small systems (numpy) is reduced to
    tridiagonal form matrix by matrix; on torch, a batch is reduced one by one.
    """
    if C.ndim > 2 and xp.name != "numpy":
        return xp.stack([solve_tridiagonal(Cb, cb, alphas, xp, penalty_scale)
                         for Cb, cb in zip(C, c)], axis=1)
    Cs, cs, s = _scaled(C, c, penalty_scale)
    if C.ndim > 2:                          # many small systems: tridiagonal, by LAPACK each
        d, e, V, T = tridiagonal.householder_tridiagonal(Cs, xp)
        z = cs - V @ (T.mT @ (V.mT @ cs))                                 # Q^T c
        U = tridiagonal.solve_tridiagonal_shifts(d, e, z, alphas)         # (A, B, P, C)
        n_A, n_B, n_P, n_C = U.shape
        U = U.transpose(1, 2, 0, 3).reshape(n_B, n_P, n_A * n_C)          # all alphas as columns
        W = (U - V @ (T @ (V.mT @ U))).reshape(n_B, n_P, n_A, n_C).transpose(2, 0, 1, 3)   # Q U
        return W if s is None else W * s
    J = tridiagonal.block_tridiagonalize(Cs, xp, overwrite=overwrite or s is not None)   # s: Cs is a copy
    z = tridiagonal.apply_q(J, cs * 1.0, xp, transpose=True)             # cs * 1.0: apply_q works in place
    U = tridiagonal.solve_shifts(J, z, alphas, xp)                       # (P, A, C)
    n_P, n_A, n_C = U.shape
    W = tridiagonal.apply_q(J, U.reshape(n_P, n_A * n_C), xp)          # all alphas in one product
    W = W.reshape(n_P, n_A, n_C).swapaxes(0, 1)
    return W if s is None else W * s


SOLVERS = {"eigh": solve_eigh, "cholesky": solve_cholesky, "tridiagonal": solve_tridiagonal}


# A dense symmetric eigendecomposition costs about as much as this many Cholesky
# factorisations of the same matrix (LAPACK dsyevd vs dpotrf, measured on OpenBLAS).
EIGH_COST_IN_CHOLESKY = 12
# The block-tridiagonal reduction (with its products with Q) costs about as much as
# this many Cholesky solves for matrices of more than 10 blocks (measured likewise; on
# smaller ones, Python overhead makes Cholesky or eigh cheaper).
TRIDIAGONAL_COST_IN_CHOLESKY = 5
TRIDIAGONAL_MIN_BLOCKS = 10
# For a batch of small systems (numpy), Cholesky per alpha is cheaper up to this many alphas.
BATCH_TRIDIAGONAL_COST_IN_CHOLESKY = 4


def resolve_solver(solver, n_alphas, n_columns=None, backend="numpy"):
    """Concrete solver name: ``'auto'`` takes the cheapest for ``n_alphas`` penalties.

    For one system of ``n_columns`` > :data:`TRIDIAGONAL_MIN_BLOCKS` blocks: one Cholesky
    factorisation per alpha up to :data:`TRIDIAGONAL_COST_IN_CHOLESKY` alphas, one
    block-tridiagonal reduction for all alphas beyond. For a batch of small systems
    (``n_columns=None``) on numpy: Cholesky up to :data:`BATCH_TRIDIAGONAL_COST_IN_CHOLESKY`
    alphas, one tridiagonal reduction per system beyond (half the cost of an eigendecomposition). Otherwise: Cholesky up to
    :data:`EIGH_COST_IN_CHOLESKY` alphas, one eigendecomposition beyond.
    """
    _check_option("solver", solver, ("auto", *SOLVERS))
    if solver != "auto":
        return solver
    if n_columns is None and backend == "numpy":
        return "cholesky" if n_alphas <= BATCH_TRIDIAGONAL_COST_IN_CHOLESKY else "tridiagonal"
    if n_columns is not None and n_columns > TRIDIAGONAL_MIN_BLOCKS * tridiagonal.WIDTH:
        return "cholesky" if n_alphas <= TRIDIAGONAL_COST_IN_CHOLESKY else "tridiagonal"
    return "cholesky" if n_alphas <= EIGH_COST_IN_CHOLESKY else "eigh"


def ridge_path(stats, alphas, *, fit_intercept, solver, xp, penalty_scale=None, overwrite=False):
    """Ridge weights and intercepts for every alpha from summed statistics.

    Parameters
    ----------
    stats : LagStats
        Summed statistics (N = 1) of the training trials.
    alphas : ndarray, shape (n_alphas,)
        Penalties.
    fit_intercept : bool
        Fit an unpenalised intercept.
    solver : 'auto' | 'tridiagonal' | 'eigh' | 'cholesky'
        See :data:`SOLVERS` and :func:`resolve_solver`.
    xp : ops
        Backend namespace.
    penalty_scale : array, shape (P,) | None
        Relative penalty of each column (banded ridge).
    overwrite : bool
        ``stats`` is a temporary (a fold's training set): its ``X^T X`` may be overwritten.

    Returns
    -------
    W : array, shape (n_alphas, [B, ]P, n_outputs)
    b : array, shape (n_alphas, [B, ]n_outputs)
    """
    C, c = centered_system(stats, fit_intercept, xp if overwrite else None)
    n_columns = C.shape[-1] if C.ndim == 2 else None            # None: a batch of systems
    W = SOLVERS[resolve_solver(solver, len(alphas), n_columns, xp.name)](
        C, c, alphas, xp, penalty_scale, overwrite=overwrite or fit_intercept)   # C: a temporary or new (centred)
    if fit_intercept:
        b = (stats.sy[0] - (stats.sx[0][None, ..., None, :] @ W)[..., 0, :]) / stats.n[0]
    else:
        b = xp.zeros(W.shape[:-2] + W.shape[-1:])
    return W, b


def ridge_per_output(stats, alpha_C, *, fit_intercept, solver, xp, penalty_scale=None):
    """Weights (P, C) and intercept (C,) with one alpha per output column."""
    alpha_C = np.asarray(alpha_C, dtype=np.float64)
    uniq, inverse = np.unique(alpha_C, return_inverse=True)
    W_all, b_all = ridge_path(stats, uniq, fit_intercept=fit_intercept, solver=solver, xp=xp,
                              penalty_scale=penalty_scale)
    inv, cols = xp.index(inverse), xp.index(np.arange(alpha_C.size))
    return W_all[inv, :, cols].mT, b_all[inv, cols]

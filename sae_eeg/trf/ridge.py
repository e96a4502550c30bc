"""The one ridge path of the engine: centre the system, decompose it once, solve every penalty.

Every fit goes through :class:`RidgePath` (:func:`ridge_path` for one call): the system
``(C + alpha S) W = c`` of summed :class:`~sae_eeg.trf.stats.LagStats` is centred by one
rule (:func:`centered_gram`, :func:`centered_cross`), its covariance decomposed once, and
the weights of every penalty ``alpha`` (``S``: per-column penalty scales, for banded ridge)
and any number of outputs follow from that decomposition:

- ``'cholesky'``: one Cholesky factorisation per penalty (fewest flops for a few);
- ``'eigh'``: one eigendecomposition for all penalties (``W = V (V^T c) / (e + alpha)``);
- ``'tridiagonal'``: one orthogonal reduction for all penalties
  (:func:`~sae_eeg.trf.fast.tridiagonal_inverse`; large systems or many small ones).

Convention: ``(X^T X + alpha I) w = X^T y`` on the lagged design summed over trials, as
scikit-learn ``Ridge`` and MNE ``TimeDelayingRidge`` (``alpha = lambda_mTRF * sfreq``,
:mod:`~sae_eeg.trf.conventions`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import fast
from ._check import _check_option

CENTERINGS = ("lagged", "signal")


def _signal_means(stats):
    """Means (B, F_d) of each design's inputs over the whole trials; the constant feature is last (mean 1)."""
    R0 = stats.autocov[0][:, 0]                        # sum_s x(s)^T x(s); x_const(s) = 1 inside the trials
    return R0[..., -1] / R0[..., -1:, -1]


def centered_gram(stats, centering, xp, overwrite=False):
    """The covariance ``C`` (B, P, P) of the ridge system of summed statistics under a centring rule.

    Parameters
    ----------
    stats : LagStats
        Summed statistics (N = 1).
    centering : None | 'lagged' | 'signal'
        None: no intercept, ``C = X^T X``. ``'lagged'`` (mTRF, scikit-learn on the lagged
        design): the lagged columns centred on their means over the rows used, which is
        ridge with an unpenalised column of ones. ``'signal'`` (MNE ``TimeDelayingRidge``
        with ``fit_intercept=True``): the inputs centred on their means over the whole
        trials before lagging (statistics with ``ones``: ``X_c = X - x_const m^T`` per lag);
        the constant feature's block becomes the identity, so its weights are zero.
    xp : ops
        Backend namespace.
    overwrite : bool
        ``stats`` is a temporary: ``'lagged'`` centres in the memory of its ``X^T X``.
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
    """``c`` (B, P, C) of the ridge system and the intercept's map ``b = b0 - u^T w``: ``(c, b0, u)``.

    ``b0`` (C,) and ``u`` (B, P); see :func:`centered_gram` for the rules. The outputs are
    centred on their mean over the rows used (with ``edge='zero'``: the whole trials).
    """
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


def _add_to_diagonal(C, value):
    idx = np.arange(C.shape[-1])
    C[..., idx, idx] += value
    return C


def _eigh(C, alphas, xp, overwrite=False):
    evals, evecs = xp.eigh(C)
    alphas = xp.asarray(np.asarray(alphas, dtype=np.float64)).reshape(-1, 1, 1, 1)
    return lambda rhs: evecs[None] @ ((evecs.mT @ rhs)[None] / (evals[None, ..., None] + alphas))


def _cholesky(C, alphas, xp, overwrite=False):
    if overwrite and len(alphas) == 1:                 # factorise in C's memory
        factors = [xp.cho_factor(_add_to_diagonal(C, float(alphas[0])))]
    else:
        factors = [xp.cho_factor(_add_to_diagonal(C * 1.0, float(a))) for a in alphas]
    return lambda rhs: xp.stack([xp.cho_solve(f, rhs) for f in factors])


SOLVERS = {"eigh": _eigh, "cholesky": _cholesky, "tridiagonal": fast.tridiagonal_inverse}

# A dense symmetric eigendecomposition costs about as much as this many Cholesky factorisations
# of the same matrix (LAPACK dsyevd vs dpotrf, measured on OpenBLAS).
EIGH_COST_IN_CHOLESKY = 12
# The block-tridiagonal reduction (with its products with Q) costs about as much as this many
# Cholesky solves for matrices of more than 10 blocks (measured likewise: Cholesky / reduction
# time 0.6-1.1 at P = 150-300, 1.4-1.7 at P = 600-1249 for 8 alphas); smaller ones keep Cholesky or eigh.
TRIDIAGONAL_COST_IN_CHOLESKY = 5
TRIDIAGONAL_MIN_BLOCKS = 10
# For a batch of small systems (numpy), Cholesky per alpha is cheaper up to this many alphas.
BATCH_TRIDIAGONAL_COST_IN_CHOLESKY = 4


def resolve_solver(solver, n_alphas, n_columns, n_systems=1, backend="numpy"):
    """Concrete solver name: ``'auto'`` takes the cheapest for ``n_alphas`` penalties.

    One system of more than :data:`TRIDIAGONAL_MIN_BLOCKS` blocks: Cholesky per alpha up to
    :data:`TRIDIAGONAL_COST_IN_CHOLESKY` alphas, the reduction beyond. A batch of small
    systems on numpy: Cholesky up to :data:`BATCH_TRIDIAGONAL_COST_IN_CHOLESKY` alphas, one
    tridiagonal reduction per system beyond (half the cost of an eigendecomposition).
    Otherwise Cholesky up to :data:`EIGH_COST_IN_CHOLESKY` alphas, one eigh beyond.
    """
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

    Parameters
    ----------
    stats : LagStats
        Summed statistics (N = 1) of the training trials; their stimulus part is the system.
    alphas : ndarray, shape (n_alphas,)
        Penalties (engine scale).
    centering : None | 'lagged' | 'signal'
        Intercept rule (:func:`centered_gram`); None fits no intercept.
    solver : 'auto' | 'eigh' | 'cholesky' | 'tridiagonal'
        See :data:`SOLVERS` and :func:`resolve_solver`.
    penalty_scale : array, shape (P,) | None
        Relative penalty of each lagged column (banded ridge): ``alpha * S`` with ``S = diag(scale)``.
    xp : ops
        Backend namespace.
    overwrite : bool
        ``stats`` is a temporary (a fold's training set): its ``X^T X`` may be overwritten.

    Attributes
    ----------
    solver : str
        The solver used.
    stats : LagStats
        The system's sums (without ``X^T X``): :meth:`solve` takes them with any response part.
    """

    def __init__(self, stats, alphas, *, centering="lagged", solver="auto", penalty_scale=None, xp,
                 overwrite=False):
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
        """Weights (n_alphas, B, P, C) and intercepts (n_alphas, B, C) for the response part of ``stats``.

        ``stats`` are summed statistics with this system's stimulus part (the training set
        itself, or it with other outputs: :meth:`~sae_eeg.trf.stats.LagStats.with_response`).
        """
        c, b0, u = centered_cross(stats, self.centering, self.xp)
        W = self.inverse(c)
        return W, b0 - self.xp.einsum("bp,abpc->abc", u, W)


def ridge_path(stats, alphas, *, centering="lagged", solver="auto", penalty_scale=None, xp, overwrite=False):
    """Ridge weights and intercepts for every alpha from summed statistics (see :class:`RidgePath`).

    Returns
    -------
    W : array, shape (n_alphas, B, P, n_outputs)
    b : array, shape (n_alphas, B, n_outputs)
    """
    return RidgePath(stats, alphas, centering=centering, solver=solver, penalty_scale=penalty_scale, xp=xp,
                     overwrite=overwrite).solve(stats)


def ridge_per_output(stats, alpha_C, *, centering="lagged", solver="auto", xp, penalty_scale=None):
    """Weights (B, P, C) and intercepts (B, C) with one alpha per output column."""
    uniq, inverse = np.unique(np.asarray(alpha_C, dtype=np.float64), return_inverse=True)
    W, b = ridge_path(stats, uniq, centering=centering, solver=solver, xp=xp, penalty_scale=penalty_scale)
    cols = xp.index(np.arange(len(inverse)))
    inverse = xp.index(inverse)
    return W[inverse, :, :, cols].swapaxes(0, 1).swapaxes(1, 2), b[inverse, :, cols].mT

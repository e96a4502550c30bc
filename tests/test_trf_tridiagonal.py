"""Block-tridiagonal reduction: exact reconstruction and ridge solves for every penalty."""

import numpy as np
import pytest
from scipy.linalg import lapack

from sae_eeg.trf import TRF, lag_matrix, lagged_stats, tridiagonal
from sae_eeg.trf._backend import get_ops
from sae_eeg.trf.lags import FIELDS, LagStats
from sae_eeg.trf.solvers import resolve_solver, ridge_path, solve_tridiagonal

BACKENDS = ["numpy", "torch"]


def _spd(rng, n, n_rows=None, zero_column=None):
    X = rng.standard_normal((n_rows or 3 * n, n))
    if zero_column is not None:
        X[:, zero_column] = 0.0            # a column already zero below the diagonal: tau = 0
    return X.T @ X


def _dense(J, xp):
    """J as a dense (P, P) numpy matrix."""
    sizes = [d.shape[0] for d in J.diag]
    edges = np.concatenate([[0], np.cumsum(sizes)])
    out = np.zeros((edges[-1], edges[-1]))
    for i, d in enumerate(J.diag):
        out[edges[i]:edges[i + 1], edges[i]:edges[i + 1]] = xp.to_numpy(d)
    for i, r in enumerate(J.sub):
        block = xp.to_numpy(r)
        out[edges[i + 1]:edges[i + 2], edges[i]:edges[i + 1]] = block
        out[edges[i]:edges[i + 1], edges[i + 1]:edges[i + 2]] = block.T
    return out, edges


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("n", "width"), [(1, 4), (4, 4), (5, 4), (23, 4), (24, 8), (61, 8)])
def test_reduction_reconstructs_matrix(rng, backend, n, width):
    xp = get_ops(backend)
    C = _spd(rng, n, zero_column=n // 2 if n > 4 else None)
    if backend == "numpy":                         # BLAS symm/syr2k: the upper triangle is never read
        C_in = np.tril(C) + np.triu(np.full_like(C, np.nan), 1)
    else:
        C_in = C.copy()
    passed = xp.asarray(C_in.copy())
    J = tridiagonal.block_tridiagonalize(passed, xp, width=width)
    np.testing.assert_array_equal(xp.to_numpy(passed), C_in)                         # nor the input written
    dense, edges = _dense(J, xp)
    Q = xp.to_numpy(tridiagonal.apply_q(J, xp.eye(n), xp))
    np.testing.assert_allclose(Q.T @ Q, np.eye(n), atol=1e-12)
    np.testing.assert_allclose(Q @ dense @ Q.T, C, atol=1e-10 * np.abs(C).max())
    # J is block tridiagonal and each sub-diagonal block is upper trapezoidal
    for i, r in enumerate(J.sub):
        np.testing.assert_array_equal(np.tril(xp.to_numpy(r), -1), 0)
        assert dense[edges[i + 2]:, edges[i]:edges[i + 1]].size == 0 or \
            not dense[edges[i + 2]:, edges[i]:edges[i + 1]].any()
    # Q^T applied by the transpose route inverts Q
    U = rng.standard_normal((n, 3))
    back = tridiagonal.apply_q(J, tridiagonal.apply_q(J, xp.asarray(U), xp, transpose=True), xp)
    np.testing.assert_allclose(xp.to_numpy(back), U, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scaled", [False, True])
def test_solver_equals_direct_solve_for_every_alpha(rng, backend, scaled, monkeypatch):
    monkeypatch.setattr(tridiagonal, "WIDTH", 7)        # several blocks on a small system
    xp = get_ops(backend)
    n = 40
    C, c = _spd(rng, n, zero_column=5), rng.standard_normal((n, 4))
    alphas = np.array([1e-3, 0.1, 10.0, 1e4])
    scale = rng.uniform(0.2, 3.0, n) if scaled else None
    W = xp.to_numpy(solve_tridiagonal(xp.asarray(C), xp.asarray(c), alphas, xp,
                                      None if scale is None else xp.asarray(scale)))
    assert W.shape == (4, n, 4)
    for a, w in zip(alphas, W):
        pen = np.diag(a * (np.ones(n) if scale is None else scale))
        np.testing.assert_allclose(w, np.linalg.solve(C + pen, c), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [1, 2, 17])
def test_solver_on_a_batch_of_systems(rng, monkeypatch, backend, n):
    # numpy: one LAPACK tridiagonal reduction per system; torch: block reduction one by one
    monkeypatch.setattr(tridiagonal, "WIDTH", 5)
    xp = get_ops(backend)
    C = np.stack([_spd(rng, n, zero_column=0 if k == 1 else None) for k in range(3)])
    c = rng.standard_normal((3, n, 2))
    alphas = np.array([1e-3, 0.5, 5.0])
    W = xp.to_numpy(solve_tridiagonal(xp.asarray(C), xp.asarray(c), alphas, xp))
    assert W.shape == (3, 3, n, 2)
    for j, a in enumerate(alphas):
        for k in range(3):
            np.testing.assert_allclose(W[j, k], np.linalg.solve(C[k] + a * np.eye(n), c[k]),
                                       rtol=1e-9, atol=1e-12)


def test_subtract_product_in_place(rng):
    xp = get_ops("numpy")
    a, b = rng.standard_normal((6, 3)), rng.standard_normal((3, 4))
    for c in (rng.standard_normal((6, 4)), rng.standard_normal((4, 6)).T):   # C- and F-ordered
        expected = c - a @ b
        assert xp.subtract_product(c, a, b) is c
        np.testing.assert_allclose(c, expected, atol=1e-14)
    big = rng.standard_normal((9, 4))
    rows = big[3:]                                                            # a view into big
    expected = big[3:] - a @ b
    xp.subtract_product(rows, a, b)
    np.testing.assert_allclose(big[3:], expected, atol=1e-14)


def test_auto_picks_reduction_for_large_systems_with_many_alphas():
    big = 10 * tridiagonal.WIDTH + 1
    assert resolve_solver("auto", 10, big) == "tridiagonal"
    assert resolve_solver("auto", 5, big) == "cholesky"
    assert resolve_solver("auto", 10, big - 1) == "cholesky"
    assert resolve_solver("auto", 5, None) == "tridiagonal"      # batches of small systems
    assert resolve_solver("auto", 4, None) == "cholesky"
    assert resolve_solver("auto", 13, None, "torch") == "eigh"


def test_estimator_with_reduction_equals_cholesky(rng, monkeypatch):
    monkeypatch.setattr(tridiagonal, "WIDTH", 4)                   # auto takes the reduction
    lags = np.arange(-3, 12)
    X = [rng.standard_normal((150, 3)) for _ in range(4)]
    kernel = rng.standard_normal((3 * len(lags), 2))
    Y = [lag_matrix(x, lags) @ kernel + 3 * rng.standard_normal((150, 2)) for x in X]
    alphas = np.logspace(-1, 4, 7)
    auto = TRF(-0.03, 0.11, 100.0, alpha=alphas, alpha_per_output=True).fit(X, Y)
    chol = TRF(-0.03, 0.11, 100.0, alpha=alphas, alpha_per_output=True, solver="cholesky").fit(X, Y)
    assert resolve_solver("auto", len(alphas), 3 * len(lags)) == "tridiagonal"
    np.testing.assert_allclose(auto.cv_scores_, chol.cv_scores_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(auto.coef_, chol.coef_, rtol=1e-10, atol=1e-12)


def test_blas_on_a_block_in_place(rng):
    from sae_eeg.trf import _blas

    big = np.asfortranarray(rng.standard_normal((9, 9)))
    before = big.copy()
    block = big[3:, 3:]                                    # Fortran-strided, leading dimension 9
    sym = np.tril(block) + np.tril(block, -1).T
    b = rng.standard_normal((6, 2))
    np.testing.assert_allclose(_blas.symm_lower(block, b), sym @ b, atol=1e-12)
    v, z = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    assert _blas.syr2k_lower(block, v, z, -1.0) is block
    expected = before[3:, 3:] - np.tril(v @ z.T + z @ v.T)
    np.testing.assert_allclose(np.tril(big[3:, 3:]), np.tril(expected), atol=1e-12)
    untouched = np.ones((9, 9), bool)
    untouched[3:, 3:] = np.tri(6, dtype=bool) == 0           # the block's strict upper triangle ...
    np.testing.assert_array_equal(big[untouched], before[untouched])   # ... and the rest: not written
    with pytest.raises(ValueError, match="Fortran-ordered"):
        _blas.symm_lower(np.ascontiguousarray(block), b)


@pytest.mark.parametrize("shape", [(9, 4), (4, 4), (2, 4)])
def test_lapack_compact_wy_equals_ours(rng, shape):
    xp = get_ops("numpy")
    panel = rng.standard_normal(shape)
    V, T, R = xp.geqrt(panel)
    V2, T2, R2 = tridiagonal.compact_wy(*lapack.dgeqrf(panel)[:2], xp)
    Q = np.eye(shape[0]) - V @ T @ V.T          # (a square panel's last reflector is the identity:
    np.testing.assert_allclose(Q, np.eye(shape[0]) - V2 @ T2 @ V2.T, atol=1e-12)   # V, T may differ)
    np.testing.assert_allclose(R, R2, atol=1e-12)
    np.testing.assert_allclose(Q[:, :len(R)] @ R, panel, atol=1e-12)


def test_reduction_in_the_input_memory_and_statistics_untouched(rng):
    xp = get_ops("numpy")
    C = _spd(rng, 61)
    J = tridiagonal.block_tridiagonalize(C.copy(), xp, width=8)
    work = C.copy()
    J2 = tridiagonal.block_tridiagonalize(work, xp, width=8, overwrite=True)
    assert not np.array_equal(work, C)                                     # worked in place ...
    for a, b in zip(J.diag + J.sub, J2.diag + J2.sub):                     # ... to the same result
        np.testing.assert_allclose(a, b, atol=1e-10 * np.abs(C).max())
    # ridge_path centres into a new array before the solver overwrites it
    X = [rng.standard_normal((200, 2)) for _ in range(3)]
    Y = [rng.standard_normal((200, 1)) for _ in range(3)]
    stats = lagged_stats(X, Y, np.arange(-3, 40), per_trial=False)
    before = stats.xtx.copy()
    alphas = np.array([1.0, 10.0])
    W, b = ridge_path(stats, alphas, fit_intercept=True, solver="tridiagonal", xp=xp)
    np.testing.assert_array_equal(stats.xtx, before)
    # a temporary (a fold's training set) is centred and reduced in its own memory, to the same weights
    for fit_intercept in (True, False):
        W, b = ridge_path(stats, alphas, fit_intercept=fit_intercept, solver="tridiagonal", xp=xp)
        temporary = LagStats(*(getattr(stats, k).copy() for k in FIELDS))
        W2, b2 = ridge_path(temporary, alphas, fit_intercept=fit_intercept, solver="tridiagonal", xp=xp,
                            overwrite=True)
        assert not np.array_equal(temporary.xtx, before)
        np.testing.assert_allclose(W2, W, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b2, b, rtol=1e-10, atol=1e-12)

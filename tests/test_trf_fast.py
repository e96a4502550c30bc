"""The opt-in fast paths (sae_eeg.trf.fast) equal the readable computations they replace."""

import dataclasses

import numpy as np
import pytest
from scipy.linalg import lapack

from sae_eeg.trf import TRF, fast, lag_matrix, lagged_stats
from sae_eeg.trf._backend import get_ops
from sae_eeg.trf.ridge import RidgePath, resolve_solver, ridge_path
from sae_eeg.trf.stats import autocovariance

XP = get_ops("numpy")


def _spd(rng, n, n_rows=None, zero_column=None):
    X = rng.standard_normal((n_rows or 3 * n, n))
    if zero_column is not None:
        X[:, zero_column] = 0.0            # a column already zero below the diagonal: tau = 0
    return X.T @ X


def _dense(diag, sub):
    """J as a dense (P, P) matrix."""
    edges = np.concatenate([[0], np.cumsum([d.shape[0] for d in diag])])
    out = np.zeros((edges[-1], edges[-1]))
    for i, d in enumerate(diag):
        out[edges[i]:edges[i + 1], edges[i]:edges[i + 1]] = d
    for i, r in enumerate(sub):
        out[edges[i + 1]:edges[i + 2], edges[i]:edges[i + 1]] = r
        out[edges[i]:edges[i + 1], edges[i + 1]:edges[i + 2]] = r.T
    return out, edges


@pytest.mark.parametrize(("n", "width"), [(1, 4), (4, 4), (5, 4), (23, 4), (24, 8), (61, 8)])
def test_reduction_reconstructs_matrix(rng, n, width):
    C = _spd(rng, n, zero_column=n // 2 if n > 4 else None)
    C_in = np.tril(C) + np.triu(np.full_like(C, np.nan), 1)        # BLAS symm/syr2k: the upper triangle is never read
    passed = C_in.copy()
    diag, sub, reflectors = fast.block_tridiagonalize(passed, width=width)
    np.testing.assert_array_equal(passed, C_in)                   # nor the input written
    dense, edges = _dense(diag, sub)
    Q = fast.apply_q(reflectors, np.eye(n))
    np.testing.assert_allclose(Q.T @ Q, np.eye(n), atol=1e-12)
    np.testing.assert_allclose(Q @ dense @ Q.T, C, atol=1e-10 * np.abs(C).max())
    for i, r in enumerate(sub):                                   # sub-diagonal blocks are upper trapezoidal
        np.testing.assert_array_equal(np.tril(r, -1), 0)
        assert not dense[edges[i + 2]:, edges[i]:edges[i + 1]].any()
    U = rng.standard_normal((n, 3))
    back = fast.apply_q(reflectors, fast.apply_q(reflectors, U.copy(), transpose=True))
    np.testing.assert_allclose(back, U, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("scaled", [False, True])
def test_reduction_equals_direct_solve_for_every_alpha(rng, monkeypatch, backend, batch, scaled):
    monkeypatch.setattr(fast, "WIDTH", 7)                        # several blocks on a small system
    xp = get_ops(backend)
    n = 40 if batch == 1 else 17
    C = np.stack([_spd(rng, n, zero_column=5 if k == 1 else None) for k in range(batch)])
    c = rng.standard_normal((batch, n, 4))
    alphas = np.array([1e-3, 0.1, 10.0, 1e4])
    scale = rng.uniform(0.2, 3.0, n) if scaled else None
    stats = lagged_stats([np.zeros((3, 1))], [np.zeros((3, 4))], [0], backend=backend)   # holds C and c
    stats = dataclasses.replace(stats, xtx=xp.asarray(C[None]), xty=xp.asarray(c[None]))
    path = RidgePath(stats, alphas, centering=None, solver="tridiagonal", xp=xp,
                     penalty_scale=None if scale is None else xp.asarray(scale))
    W = xp.to_numpy(path.solve(stats)[0])
    assert W.shape == (4, batch, n, 4)
    for a, w in zip(alphas, W):
        for k in range(batch):
            pen = np.diag(a * (np.ones(n) if scale is None else scale))
            np.testing.assert_allclose(w[k], np.linalg.solve(C[k] + pen, c[k]), rtol=1e-9, atol=1e-12)


def test_subtract_product_in_place(rng):
    a, b = rng.standard_normal((6, 3)), rng.standard_normal((3, 4))
    for c in (rng.standard_normal((6, 4)), rng.standard_normal((4, 6)).T):   # C- and F-ordered
        expected = c - a @ b
        assert XP.subtract_product(c, a, b) is c
        np.testing.assert_allclose(c, expected, atol=1e-14)
    big = rng.standard_normal((9, 4))
    expected = big[3:] - a @ b
    XP.subtract_product(big[3:], a, b)                                       # a view into big
    np.testing.assert_allclose(big[3:], expected, atol=1e-14)


def test_auto_picks_reduction_for_large_systems_with_many_alphas():
    big = 10 * fast.WIDTH + 1
    assert resolve_solver("auto", 10, big) == "tridiagonal"
    assert resolve_solver("auto", 5, big) == "cholesky"
    assert resolve_solver("auto", 10, big - 1) == "cholesky"
    assert resolve_solver("auto", 5, 78, n_systems=128) == "tridiagonal"     # batches of small systems
    assert resolve_solver("auto", 4, 78, n_systems=128) == "cholesky"
    assert resolve_solver("auto", 13, 78, n_systems=128, backend="torch") == "eigh"


def test_estimator_with_reduction_equals_cholesky(rng, monkeypatch):
    monkeypatch.setattr(fast, "WIDTH", 4)                                   # auto takes the reduction
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
    big = np.asfortranarray(rng.standard_normal((9, 9)))
    before = big.copy()
    block = big[3:, 3:]                                    # Fortran-strided, leading dimension 9
    sym = np.tril(block) + np.tril(block, -1).T
    b, out = np.asfortranarray(rng.standard_normal((6, 2))), np.zeros((6, 2), order="F")
    fast._DSYMM(b"L", b"L", 6, 2, 1.0, block, b, 0.0, out)
    np.testing.assert_allclose(out, sym @ b, atol=1e-12)
    v, z = np.asfortranarray(rng.standard_normal((6, 2))), np.asfortranarray(rng.standard_normal((6, 2)))
    fast._DSYR2K(b"L", b"N", 6, 2, -1.0, v, z, 1.0, block)
    expected = before[3:, 3:] - np.tril(v @ z.T + z @ v.T)
    np.testing.assert_allclose(np.tril(big[3:, 3:]), np.tril(expected), atol=1e-12)
    untouched = np.ones((9, 9), bool)
    untouched[3:, 3:] = np.tri(6, dtype=bool) == 0           # the block's strict upper triangle ...
    np.testing.assert_array_equal(big[untouched], before[untouched])   # ... and the rest: not written
    with pytest.raises(ValueError, match="Fortran-ordered"):
        fast._DSYMM(b"L", b"L", 6, 2, 1.0, np.ascontiguousarray(block), b, 0.0, out)


@pytest.mark.parametrize("shape", [(9, 4), (4, 4), (2, 4)])
def test_compact_wy_of_lapack_reflectors(rng, shape):
    panel = rng.standard_normal(shape)
    qr, tau = lapack.dgeqrf(panel)[:2]
    r = min(shape)
    V, T = fast._compact_wy((np.tril(qr[:, :r], -1) + np.eye(*qr[:, :r].shape))[None], tau[None])
    V, T = V[0], T[0]
    Q = np.eye(shape[0]) - V @ T @ V.T
    np.testing.assert_allclose(Q.T @ Q, np.eye(shape[0]), atol=1e-12)
    np.testing.assert_allclose((Q @ np.vstack([np.triu(qr[:r]), np.zeros((shape[0] - r, shape[1]))])), panel,
                               atol=1e-12)


def test_reduction_in_the_input_memory_and_statistics_untouched(rng):
    C = _spd(rng, 61)
    diag, sub, _ = fast.block_tridiagonalize(C.copy(), width=8)
    work = C.copy()
    diag2, sub2, _ = fast.block_tridiagonalize(work, width=8, overwrite=True)
    assert not np.array_equal(work, C)                                     # worked in place ...
    for a, b in zip(diag + sub, diag2 + sub2):                             # ... to the same result
        np.testing.assert_allclose(a, b, atol=1e-10 * np.abs(C).max())
    # ridge_path centres into a new array before the solver overwrites it
    X = [rng.standard_normal((200, 2)) for _ in range(3)]
    Y = [rng.standard_normal((200, 1)) for _ in range(3)]
    stats = lagged_stats(X, Y, np.arange(-3, 40), per_trial=False)
    before = stats.xtx.copy()
    alphas = np.array([1.0, 10.0])
    ridge_path(stats, alphas, centering="lagged", solver="tridiagonal", xp=XP)
    np.testing.assert_array_equal(stats.xtx, before)
    # a temporary (a fold's training set) is centred and reduced in its own memory, to the same weights
    for centering in ("lagged", None):
        W, b = ridge_path(stats, alphas, centering=centering, solver="tridiagonal", xp=XP)
        temporary = dataclasses.replace(stats, xtx=stats.xtx.copy())
        W2, b2 = ridge_path(temporary, alphas, centering=centering, solver="tridiagonal", xp=XP, overwrite=True)
        assert not np.array_equal(temporary.xtx, before)
        np.testing.assert_allclose(W2, W, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b2, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_fft_autocovariances_equal_direct_products(rng, backend):
    xp = get_ops(backend)
    x = xp.asarray(rng.standard_normal((900, 5)) + 0.2)
    direct = np.stack([xp.to_numpy(x[:900 - d].mT @ x[d:]) for d in range(70)])
    assert fast.fft_pays([900], 70, 5)                                          # the block FFT is tested
    np.testing.assert_allclose(xp.to_numpy(autocovariance(x[None], 70, xp))[0], direct, atol=1e-10)
    separate = xp.to_numpy(autocovariance(xp.asarray(x.mT)[:, :, None], 70, xp))[:, :, 0, 0]   # a design per feature
    np.testing.assert_allclose(separate, np.diagonal(direct, axis1=1, axis2=2).T, atol=1e-10)


@pytest.mark.parametrize("edge", ["zero", "valid"])
def test_recursion_equals_toeplitz_minus_gram(rng, edge):
    lags = np.arange(-4, 9)
    X = [rng.standard_normal((n, 6)) + 0.5 for n in (60, 47, 80)]
    explicit = sum(lag_matrix(x, lags, edge=edge).T @ lag_matrix(x, lags, edge=edge) for x in X)
    for x in X:                             # many single-feature designs: X^T X of each feature
        got = lagged_stats([x], None, lags, edge=edge, designs="separate").xtx[0]
        design = lag_matrix(x, lags, edge=edge)
        for f in range(6):
            np.testing.assert_allclose(got[f], design[:, f::6].T @ design[:, f::6], atol=1e-10)
    rows = [stats_parts(x, lags, edge) for x in X]               # many trials of one design
    R = sum(autocovariance(x[None], len(lags), XP) for x in X)
    got = fast.xtx_by_recursion(R, np.concatenate([r[0] for r in rows], 1), np.concatenate([r[1] for r in rows], 1),
                                np.concatenate([r[2] for r in rows], 1), XP)[0]
    np.testing.assert_allclose(got, explicit, atol=1e-10)


def stats_parts(x, lags, edge):
    from sae_eeg.trf.lags import design_rows, row_range
    from sae_eeg.trf.stats import missing_rows

    start, stop = row_range(len(x), lags, edge)
    bounds = design_rows(x[None], lags, np.array([start - 1, stop - 1]), XP)
    return design_rows(x[None], lags, missing_rows(len(x), lags, edge), XP), bounds[:, :1], bounds[:, 1:]

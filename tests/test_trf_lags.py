"""Lags and lagged sufficient statistics equal the explicit design-matrix products."""

import numpy as np
import pytest

from sae_eeg.trf import lag_matrix, lagged_stats, times_to_lags
from sae_eeg.trf._backend import get_ops
from sae_eeg.trf.fast import fft_pays
from sae_eeg.trf.lags import row_range

LAG_SETS = [(-3, 5), (2, 6), (-6, -2), (0, 0), (-4, 0), (0, 7)]


@pytest.mark.parametrize(("tmin", "tmax", "sfreq", "expected"), [
    (-0.1, 0.5, 128.0, (-13, 64)),
    (-0.1, 0.4, 100.0, (-10, 40)),
    (0.0, 0.25, 64.0, (0, 16)),
    (-0.3, -0.1, 10.0, (-3, -1)),
])
def test_times_to_lags(tmin, tmax, sfreq, expected):
    lags = times_to_lags(tmin, tmax, sfreq)
    assert (lags[0], lags[-1]) == expected
    assert np.all(np.diff(lags) == 1)


def test_times_to_lags_errors():
    with pytest.raises(ValueError, match=r"tmin must be <= tmax; got tmin=0.5, tmax=0.1"):
        times_to_lags(0.5, 0.1, 100.0)
    with pytest.raises(ValueError, match=r"'sfreq' must be in \(0, inf\); got -1.0"):
        times_to_lags(0, 0.1, -1.0)
    with pytest.raises(TypeError, match=r"'sfreq' must be a real number; got True"):
        times_to_lags(0, 0.1, True)


def _explicit(x, y, lags, edge):
    design = lag_matrix(x, lags, edge=edge)
    start, stop = row_range(len(x), lags, edge)
    y_used = y[start:stop]
    return design.T @ design, design.T @ y_used, design.sum(0), y_used.sum(0), (y_used ** 2).sum(0)


@pytest.mark.parametrize("edge", ["zero", "valid"])
@pytest.mark.parametrize("lag_range", LAG_SETS)
def test_stats_equal_explicit_products(rng, edge, lag_range):
    lags = np.arange(lag_range[0], lag_range[1] + 1)
    X = [rng.standard_normal((n, 3)) + 0.5 for n in (40, 57, 23)]   # ragged, non-zero mean
    Y = [rng.standard_normal((len(x), 2)) for x in X]
    stats = lagged_stats(X, Y, lags, edge=edge)
    for i, (x, y) in enumerate(zip(X, Y)):
        xtx, xty, sx, sy, yty = _explicit(x, y, lags, edge)
        np.testing.assert_allclose(stats.xtx[i, 0], xtx, rtol=0, atol=1e-10)
        np.testing.assert_allclose(stats.xty[i, 0], xty, rtol=0, atol=1e-10)
        np.testing.assert_allclose(stats.sx[i, 0], sx, rtol=0, atol=1e-10)
        np.testing.assert_allclose(stats.sy[i], sy, rtol=0, atol=1e-10)
        np.testing.assert_allclose(stats.yty[i], yty, rtol=0, atol=1e-10)
        assert stats.n[i] == len(lag_matrix(x, lags, edge=edge))


def test_lag_matrix_layout():
    x = np.arange(1.0, 6.0)[:, None] * np.array([1.0, 10.0])      # two features
    design = lag_matrix(x, np.array([-1, 0, 2]))
    # column j * F + f is feature f delayed by lags[j]; zeros outside the trial
    np.testing.assert_array_equal(design[:, 0], [2, 3, 4, 5, 0])
    np.testing.assert_array_equal(design[:, 3], [10, 20, 30, 40, 50])
    np.testing.assert_array_equal(design[:, 4], [0, 0, 1, 2, 3])
    assert lag_matrix(x, np.array([-1, 0, 2]), edge="valid").shape == (2, 6)


def test_totals_are_sums_and_differences(rng):
    lags = np.arange(-2, 4)
    X = [rng.standard_normal((30, 2)) for _ in range(4)]
    Y = [rng.standard_normal((30, 3)) for _ in range(4)]
    stats = lagged_stats(X, Y, lags)
    summed = lagged_stats(X, Y, lags, per_trial=False)
    np.testing.assert_allclose(stats.total().xtx, summed.xtx, atol=1e-12)
    train = stats.total().minus(stats.total(np.array([1])))
    direct = lagged_stats([X[0], X[2], X[3]], [Y[0], Y[2], Y[3]], lags, per_trial=False)
    for k in ("xtx", "xty", "sx", "sy", "yty", "n"):
        np.testing.assert_allclose(getattr(train, k), getattr(direct, k), atol=1e-10)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("edge", ["zero", "valid"])
def test_summed_covariance_by_fft_equals_explicit(rng, edge, backend):
    lags = np.arange(-5, 61)
    lengths = [300, 250, 320, 280, 310, 260, 300, 290, 270, 330] + ([30] if edge == "zero" else [])
    X = [rng.standard_normal((n, 3)) for n in lengths]  # ragged, one shorter than the lags for 'zero'
    Y = [rng.standard_normal((len(x), 2)) for x in X]
    assert fft_pays([len(x) for x in X], len(lags), 3)  # the FFT path is the one tested
    summed = lagged_stats(X, Y, lags, edge=edge, per_trial=False, backend=backend)
    xp = get_ops(backend)
    designs = [lag_matrix(x, lags, edge=edge) for x in X]
    explicit = sum(d.T @ d for d in designs)
    np.testing.assert_allclose(xp.to_numpy(summed.xtx[0, 0]), explicit, rtol=0, atol=1e-10 * np.abs(explicit).max())
    assert not fft_pays([len(x) for x in X], 4, 3)  # few lags: direct products


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("edge", ["zero", "valid"])
@pytest.mark.parametrize("lag_range", [(-5, 60), (3, 70), (-70, -3)])
def test_per_trial_stats_by_fft_equal_explicit(rng, edge, lag_range, backend):
    lags = np.arange(lag_range[0], lag_range[1] + 1)
    lengths = [1000, 833, 917] + ([40] if edge == "zero" else [])   # ragged, one shorter than the lags
    X = [rng.standard_normal((n, 4)) + 0.3 for n in lengths]
    Y = [rng.standard_normal((n, 5)) for n in lengths]
    assert fft_pays([len(X[0])], len(lags), 4) and fft_pays([len(X[0])], len(lags), 4, 5)  # FFT paths tested
    stats = lagged_stats(X, Y, lags, edge=edge, backend=backend)
    xp = get_ops(backend)
    for i, (x, y) in enumerate(zip(X, Y)):
        xtx, xty, *_ = _explicit(x, y, lags, edge)
        np.testing.assert_allclose(xp.to_numpy(stats.xtx[i, 0]), xtx, rtol=0, atol=1e-10 * np.abs(xtx).max())
        np.testing.assert_allclose(xp.to_numpy(stats.xty[i, 0]), xty, rtol=0, atol=1e-10 * np.abs(xty).max())


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("edge", ["zero", "valid"])
@pytest.mark.parametrize("lag_range", LAG_SETS + [(-5, 40)])
def test_quadratic_forms_from_generators_equal_explicit(rng, edge, lag_range, backend):
    from sae_eeg.trf.fast import quadratic_forms

    lags = np.arange(lag_range[0], lag_range[1] + 1)
    lengths = [120, 97] + ([20] if edge == "zero" else [])          # ragged, one shorter than the lags
    X = [rng.standard_normal((n, 3)) + 0.5 for n in lengths]
    Y = [rng.standard_normal((n, 2)) for n in lengths]
    stats = lagged_stats(X, Y, lags, edge=edge, backend=backend)
    xp = get_ops(backend)
    W = rng.standard_normal((3 * len(lags), 7))
    for i, x in enumerate(X):
        expected = ((lag_matrix(x, lags, edge=edge) @ W) ** 2).sum(0)
        got = xp.to_numpy(quadratic_forms(stats.autocov[i, 0], stats.edge_rows[i, 0], xp.asarray(W), xp))
        np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_generators_kept_per_trial_only(rng):
    lags = np.arange(-2, 4)
    X = [rng.standard_normal((30, 2)) for _ in range(4)]
    Y = [rng.standard_normal((30, 3)) for _ in range(4)]
    stats = lagged_stats(X, Y, lags)
    assert stats.autocov.shape == (4, 1, 6, 2, 2) and stats.edge_rows.shape == (4, 1, 5, 12)
    np.testing.assert_array_equal(stats.trial(2).autocov[0], stats.autocov[2])
    np.testing.assert_array_equal(stats.subset(np.array([3, 1])).edge_rows, stats.edge_rows[[3, 1]])
    summed = stats.total()     # the autocovariance adds over trials; the missing rows do not
    np.testing.assert_allclose(summed.autocov[0], stats.autocov.sum(0), atol=1e-12)
    assert summed.edge_rows is None and summed.minus(stats.trial(0)).edge_rows is None
    np.testing.assert_allclose(lagged_stats(X, Y, lags, per_trial=False).autocov, summed.autocov, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("edge", ["zero", "valid"])
def test_lagged_xty_direct_products(rng, edge, backend):
    from sae_eeg.trf.stats import lagged_xty

    lags = np.arange(-3, 4)
    x, y = rng.standard_normal((60, 3)), rng.standard_normal((60, 2))
    xp = get_ops(backend)
    assert not fft_pays([60], len(lags), 3, 2)                                   # the direct path is tested
    design = lag_matrix(x, lags, edge=edge)
    start, stop = row_range(len(x), lags, edge)
    got = xp.to_numpy(lagged_xty(xp.asarray(x), xp.asarray(y), lags, edge, xp)).reshape(-1, 2)
    np.testing.assert_allclose(got, design.T @ y[start:stop], rtol=0, atol=1e-12)


@pytest.mark.parametrize("edge", ["zero", "valid"])
def test_stats_torch_parity(rng, edge):
    lags = np.arange(-3, 5)
    X = [rng.standard_normal((50, 2))]
    Y = [rng.standard_normal((50, 2))]
    a = lagged_stats(X, Y, lags, edge=edge)
    b = lagged_stats(X, Y, lags, edge=edge, backend="torch")
    xp = get_ops("torch")
    for k in ("xtx", "xty", "sx", "sy", "yty", "n"):
        np.testing.assert_allclose(xp.to_numpy(getattr(b, k)), getattr(a, k), atol=1e-12)


def test_valid_edge_too_short():
    with pytest.raises(ValueError, match=r"A trial of 5 samples is too short for edge='valid' with lags -3..4"):
        row_range(5, np.arange(-3, 5), "valid")
    with pytest.raises(ValueError, match=r"Invalid value for 'edge': got 'vallid'.*Did you mean 'valid'"):
        row_range(5, np.arange(2), "vallid")


def test_non_contiguous_lags_rejected(rng):
    with pytest.raises(ValueError, match=r"lags must be contiguous increasing integers"):
        lagged_stats([rng.standard_normal((20, 1))], [rng.standard_normal((20, 1))], np.array([0, 2]))

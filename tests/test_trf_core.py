"""The one core: intercept conventions (mTRF vs MNE), submodels from one statistics, shared stimuli,
the alpha-at-the-edge warning."""

import warnings

import numpy as np
import pytest

from sae_eeg.trf import (
    TRF,
    AlphaAtGridEdgeWarning,
    LagStats,
    RidgePath,
    fold_scores,
    lag_matrix,
    lagged_stats,
    moments,
    multisubject_trf,
    ridge_path,
    times_to_lags,
    univariate_trfs,
)


@pytest.mark.parametrize("n_epochs", [1, 3])
def test_signal_centering_equals_mne_with_intercept(rng, n_epochs):
    from mne.decoding import ReceptiveField, TimeDelayingRidge

    X = rng.standard_normal((300, n_epochs, 2)) * [1.0, 3.0] + [2.0, -1.0]     # MNE layout, non-zero means
    Y = rng.standard_normal((300, n_epochs, 3)) + 0.7
    trials = (list(X.transpose(1, 0, 2)), list(Y.transpose(1, 0, 2)))
    tdr = TimeDelayingRidge(-0.03, 0.05, 100.0, alpha=3.0, fit_intercept=True)
    rf = ReceptiveField(-0.03, 0.05, 100.0, estimator=3.0, fit_intercept=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tdr.fit(X if n_epochs > 1 else X[:, 0], Y if n_epochs > 1 else Y[:, 0])
        rf.fit(X if n_epochs > 1 else X[:, 0], Y if n_epochs > 1 else Y[:, 0])
    ours = TRF(-0.03, 0.05, 100.0, alpha=3.0, centering="signal").fit(*trials)
    scale = np.abs(tdr.coef_).max()
    np.testing.assert_allclose(ours.coef_, tdr.coef_, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(ours.coef_, rf.coef_, rtol=0, atol=1e-8 * scale)
    np.testing.assert_allclose(ours.intercept_, tdr.intercept_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.predict(X[:, 0]), tdr.predict(X[:, 0]), rtol=0, atol=1e-8)
    # the default, mTRF's intercept (a column of ones in the lagged design), is another problem
    lagged = TRF(-0.03, 0.05, 100.0, alpha=3.0).fit(*trials)
    assert np.abs(lagged.coef_ - tdr.coef_).max() > 1e-4 * scale


def test_signal_centering_in_cross_validation_equals_explicit_refits(rng):
    X = [rng.standard_normal((n, 2)) + 1.0 for n in (120, 150, 130)]
    Y = [rng.standard_normal((len(x), 2)) - 2.0 for x in X]
    model = TRF(-0.02, 0.03, 100.0, alpha=[0.5, 20.0], centering="signal").fit(X, Y)
    for j, a in enumerate((0.5, 20.0)):
        per_fold = [TRF(-0.02, 0.03, 100.0, alpha=a, centering="signal").fit(
            [X[i] for i in range(3) if i != k], [Y[i] for i in range(3) if i != k]).score_outputs(X[k], Y[k])
            for k in range(3)]
        np.testing.assert_allclose(model.cv_scores_[j], np.mean(per_fold, axis=0), atol=1e-10)
    # single-feature designs with the same convention equal one TRF per feature
    res = univariate_trfs(X, Y, -0.02, 0.03, 100.0, alpha=[0.5, 20.0], centering="signal")
    for f in range(2):
        ref = TRF(-0.02, 0.03, 100.0, alpha=[0.5, 20.0], centering="signal").fit([x[:, [f]] for x in X], Y)
        np.testing.assert_allclose(res.coef_[:, f], ref.coef_[:, 0], atol=1e-10)
        np.testing.assert_allclose(res.intercept_[:, f], ref.intercept_, atol=1e-10)


@pytest.mark.parametrize("ones", [False, True])
def test_submodel_statistics_from_the_full_ones(rng, ones):
    """Issue 17's entry point: the statistics (and the ridge fits) of any subset of features, from one computation."""
    lags = times_to_lags(-0.02, 0.05, 100.0)
    X = [rng.standard_normal((n, 4)) for n in (200, 170)]
    Y = [rng.standard_normal((len(x), 3)) for x in X]
    full = lagged_stats(X, Y, lags, ones=ones)
    sub = full.features([0, 2])
    direct = lagged_stats([x[:, [0, 2]] for x in X], Y, lags, ones=ones)
    for k in ("xtx", "xty", "sx", "autocov", "edge_rows"):
        np.testing.assert_allclose(getattr(sub, k), getattr(direct, k), atol=1e-10)
    W, b = ridge_path(sub.total(), [5.0], centering="signal" if ones else "lagged")
    ref = TRF(-0.02, 0.05, 100.0, alpha=5.0, centering="signal" if ones else "lagged").fit(
        [x[:, [0, 2]] for x in X], Y)
    np.testing.assert_allclose(W[0, 0].reshape(len(lags), -1, 3)[:, :2].transpose(2, 1, 0), ref.coef_, atol=1e-10)
    np.testing.assert_allclose(b[0, 0], ref.intercept_, atol=1e-10)


def test_one_decomposition_for_many_outputs(rng):
    lags = np.arange(0, 5)
    X = [rng.standard_normal((150, 2)) for _ in range(2)]
    Y = [rng.standard_normal((150, 3)) for _ in range(2)]
    Z = [rng.standard_normal((150, 2)) for _ in range(2)]
    stats = lagged_stats(X, Y, lags).total()
    other = lagged_stats(X, Z, lags).total()
    path = RidgePath(stats, [0.1, 10.0])
    W, b = path.solve(other)                        # other outputs, the same stimulus part: no new decomposition
    W2, b2 = ridge_path(other, [0.1, 10.0])
    np.testing.assert_allclose(W, W2, atol=1e-12)
    np.testing.assert_allclose(b, b2, atol=1e-12)


def test_the_backend_is_the_one_holding_the_statistics(rng):
    """No ``xp`` to pass: the core's public functions compute where the statistics are (numpy or torch)."""
    torch = pytest.importorskip("torch")
    lags = np.arange(-1, 4)
    X = [rng.standard_normal((120, 2)) for _ in range(3)]
    Y = [rng.standard_normal((120, 2)) for _ in range(3)]
    ref = lagged_stats(X, Y, lags)
    on_torch = lagged_stats(X, Y, lags, backend="torch")
    assert isinstance(on_torch.sx, torch.Tensor)
    for stats in (ref, on_torch):
        W, b = ridge_path(stats.total(), [0.5, 50.0])
        assert isinstance(W, type(stats.sx))
        np.testing.assert_allclose(np.asarray(W), ridge_path(ref.total(), [0.5, 50.0])[0], atol=1e-10)
        m = moments(W, b, stats.trial(0))
        assert isinstance(m.ss_y, type(stats.sx))
        scores = fold_scores(stats, [0.5, 50.0], [[0], [1], [2]], centering="lagged", scoring="pearson",
                             solver="auto")
        assert np.asarray(scores).shape == (3, 2, 1, 2)
        both = LagStats.concat([stats.trial(0), stats.trial(1)])
        assert isinstance(both.sx, type(stats.sx)) and both.sx.shape[0] == 2


def test_stimulus_given_twice_is_computed_once_and_equal(rng):
    lags = np.arange(-2, 4)
    x = rng.standard_normal((100, 2))
    Y = [rng.standard_normal((100, 1)) for _ in range(2)]
    shared = lagged_stats([x, x], Y, lags)
    copies = lagged_stats([x, x.copy()], Y, lags)
    np.testing.assert_array_equal(shared.xtx, copies.xtx)
    np.testing.assert_array_equal(shared.xty, copies.xty)


def _planted(rng, n_trials=4, n=300):
    lags = np.arange(0, 4)
    X = [rng.standard_normal((n, 1)) for _ in range(n_trials)]
    Y = [lag_matrix(x, lags) @ [1.0, 0.5, -0.3, 0.2] + 0.01 * rng.standard_normal(n) for x in X]
    return X, Y


def test_alpha_at_the_edge_of_the_grid_warns_with_a_wider_grid(rng):
    X, Y = _planted(rng)
    with pytest.warns(AlphaAtGridEdgeWarning, match=r"smallest alpha of the grid \(1000\) for 1 of 1 models.*"
                                                     r"np\.logspace\(0, 5, 6\)"):
        TRF(0, 0.03, 100.0, alpha=[1e3, 1e4, 1e5]).fit(X, Y)
    noise = [rng.standard_normal(300) for _ in X]
    with pytest.warns(AlphaAtGridEdgeWarning, match=r"largest alpha of the grid \(0\.01\).*np\.logspace\(-3, 1, 5\)"):
        TRF(0, 0.03, 100.0, alpha=[1e-3, 1e-2], scoring="mse").fit(X, noise)
    with pytest.warns(AlphaAtGridEdgeWarning, match="smallest alpha"):
        univariate_trfs(X, Y, 0, 0.03, 100.0, alpha=[1e3, 1e4])
    with pytest.warns(AlphaAtGridEdgeWarning, match="smallest alpha"):
        multisubject_trf([(X[:2], Y[:2]), (X[2:], Y[2:])], 0, 0.03, 100.0, alpha=[1e3, 1e4])
    with warnings.catch_warnings():                       # an interior choice, or one alpha: silent
        warnings.simplefilter("error", AlphaAtGridEdgeWarning)
        TRF(0, 0.03, 100.0, alpha=[1e-8, 1e-4, 1e8]).fit(X, Y)
        TRF(0, 0.03, 100.0, alpha=1e3).fit(X, Y)


def test_centering_is_validated(rng):
    with pytest.raises(ValueError, match=r"Invalid value for 'centering': got 'signals'; allowed values are "
                                         r"'lagged', 'signal'.*Did you mean 'signal'"):
        TRF(0, 0.02, 100.0, centering="signals").fit(rng.standard_normal((50, 1)), rng.standard_normal(50))
    with pytest.raises(ValueError, match=r"centering='signal' needs statistics with the constant feature"):
        ridge_path(lagged_stats([np.ones((20, 1))], [np.ones((20, 1))], [0, 1]), [1.0], centering="signal")


def test_univariate_backward_lags_equal_trf_per_feature(rng):
    X = [rng.standard_normal((200, 3)) for _ in range(3)]
    Y = [rng.standard_normal((200, 2)) for _ in range(3)]
    res = univariate_trfs(X, Y, 0.0, 0.05, 100.0, direction=-1, alpha=[1.0, 100.0])
    np.testing.assert_array_equal(res.lags_, np.arange(-5, 1))
    for f in range(3):
        ref = TRF(0.0, 0.05, 100.0, direction=-1, alpha=[1.0, 100.0]).fit([x[:, [f]] for x in X], Y)
        np.testing.assert_allclose(res.coef_[:, f], ref.coef_[:, 0], atol=1e-10)

"""Batched single-feature TRFs equal one TRF per feature; sparse inputs stay exact."""

import numpy as np
import pytest
from scipy import sparse

from sae_eeg.trf import TRF, lag_matrix, times_to_lags, univariate_trfs


@pytest.fixture
def data(rng):
    lags = times_to_lags(-0.03, 0.06, 100.0)
    X = [rng.standard_normal((n, 6)) * (rng.uniform(size=(n, 6)) < 0.3) for n in (300, 260, 340)]
    kernel = rng.standard_normal(len(lags))
    Y = [np.column_stack([lag_matrix(x[:, [2]], lags) @ kernel, np.zeros(len(x))])
         + rng.standard_normal((len(x), 2)) for x in X]
    return X, Y, kernel


@pytest.mark.parametrize("edge", ["zero", "valid"])
@pytest.mark.parametrize(("scoring", "window", "as_sparse"), [
    ("pearson", (-0.03, 0.06), False),
    ("mse", (-0.03, 0.06), True),
    ("r2", (0.02, 0.08), True),          # positive lags only
    ("pearson", (-0.08, -0.02), True),   # negative lags only
    ("pearson", (0.02, 0.08), False),
])
def test_univariate_equals_one_trf_per_feature(data, edge, scoring, window, as_sparse):
    X, Y, _ = data
    alphas = [0.1, 10.0, 1000.0]
    tmin, tmax = window
    inputs = [sparse.csr_array(x) for x in X] if as_sparse else X
    res = univariate_trfs(inputs, Y, tmin, tmax, 100.0, alpha=alphas, edge=edge, scoring=scoring,
                          chunk_size=4)
    assert res.coef_.shape == (2, 6, 7 if tmin > 0 or tmax < 0 else 10)
    for f in range(6):
        ref = TRF(tmin, tmax, 100.0, alpha=alphas, edge=edge, scoring=scoring).fit(
            [x[:, [f]] for x in X], Y)
        np.testing.assert_allclose(res.coef_[:, f], ref.coef_[:, 0], atol=1e-10)
        np.testing.assert_allclose(res.intercept_[:, f], ref.intercept_, atol=1e-10)
        np.testing.assert_allclose(res.cv_scores_[:, :, f], ref.cv_scores_, atol=1e-10)
        np.testing.assert_array_equal(res.alpha_[:, f], ref.alpha_)


def test_univariate_sparse_torch_and_chunks(data):
    X, Y, kernel = data
    dense = univariate_trfs(X, Y, -0.03, 0.06, 100.0, alpha=[1.0, 100.0], alpha_per_output=True)
    sp = univariate_trfs([sparse.csr_array(x) for x in X], Y, -0.03, 0.06, 100.0,
                         alpha=[1.0, 100.0], alpha_per_output=True, chunk_size=1, backend="torch")
    for name in ("coef_", "intercept_", "alpha_", "cv_scores_", "scores_"):
        np.testing.assert_allclose(getattr(sp, name), getattr(dense, name), atol=1e-10)
    # the planted feature is the best one on the first channel and its kernel is recovered
    assert np.argmax(dense.scores_[0]) == 2
    np.testing.assert_allclose(dense.coef_[0, 2], kernel, atol=0.15)


def test_univariate_single_trial_no_cv(rng):
    x = rng.standard_normal((200, 3))
    y = rng.standard_normal(200)
    res = univariate_trfs(x, y, 0.0, 0.02, 100.0, alpha=5.0)
    ref = TRF(0.0, 0.02, 100.0, alpha=5.0).fit(x[:, [1]], y)
    np.testing.assert_allclose(res.coef_[:, 1], ref.coef_[:, 0], atol=1e-10)
    assert np.isnan(res.scores_).all()


def test_univariate_errors(rng):
    x = rng.standard_normal((50, 2))
    with pytest.raises(ValueError, match=r"Invalid value for 'scoring': got 'spearman'; allowed values are 'pearson', 'mse', 'r2'"):
        univariate_trfs(x, x[:, 0], 0, 0.02, 100.0, scoring="spearman")
    with pytest.raises(ValueError, match=r"X and y must hold the same trials with equal lengths; got \[50\] and \[49\]"):
        univariate_trfs(x, x[:-1, 0], 0, 0.02, 100.0)
    with pytest.raises(ValueError, match=r"'chunk_size' must be in \[1, inf\]; got 0"):
        univariate_trfs(x, x[:, 0], 0, 0.02, 100.0, chunk_size=0)

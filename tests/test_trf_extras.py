"""Nulls, bootstrap, Haufe patterns, multi-subject models and banded ridge."""

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone

from sae_eeg.trf import (
    TRF,
    BandedTRF,
    bootstrap_coef,
    haufe_patterns,
    lag_matrix,
    multisubject_trf,
    permutation_null,
)


def _noise_trials(rng, n_trials=4, n_times=160, n_feat=1, n_out=1):
    X = [rng.standard_normal((n_times, n_feat)) for _ in range(n_trials)]
    Y = [rng.standard_normal((n_times, n_out)) for _ in range(n_trials)]
    return X, Y


def test_shift_null_samples_equal_explicit_refits(rng):
    X, Y = _noise_trials(rng, n_feat=2, n_out=2)
    res = permutation_null(X, Y, -0.02, 0.03, 100.0, alpha=5.0, kind="shift", n_permutations=3,
                           random_state=0)
    ref = TRF(-0.02, 0.03, 100.0, alpha=[5.0, 1e9]).fit(X, Y)
    np.testing.assert_allclose(res.observed, ref.cv_scores_[0], atol=1e-12)
    for k in range(3):
        rolled = [np.roll(y, -s, axis=0) for y, s in zip(Y, res.permutations[k])]
        m = TRF(-0.02, 0.03, 100.0, alpha=[5.0, 1e9]).fit(X, rolled)
        np.testing.assert_allclose(res.null[k], m.cv_scores_[0], atol=1e-10)


def test_mismatch_null_samples_equal_explicit_refits(rng):
    X, Y = _noise_trials(rng, n_trials=4)
    res = permutation_null(X, Y, 0.0, 0.03, 100.0, alpha=5.0, kind="mismatch", n_permutations=2,
                           scoring="mse", random_state=1)
    for k in range(2):
        perm = res.permutations[k]
        assert not np.any(perm == np.arange(4))
        m = TRF(0.0, 0.03, 100.0, alpha=[5.0, 1e9], scoring="mse").fit(X, [Y[j] for j in perm])
        np.testing.assert_allclose(res.null[k], m.cv_scores_[0], atol=1e-10)


def _null_pvalues(rng, n_datasets):
    p = []
    for _ in range(n_datasets):
        X, Y = _noise_trials(rng, n_trials=3, n_times=120)
        p.append(permutation_null(X, Y, 0.0, 0.03, 100.0, alpha=1.0, n_permutations=99,
                                  random_state=rng).pvalues[0])
    return np.array(p)


def test_null_pvalues_uniform_fast(rng):
    p = _null_pvalues(rng, 60)
    assert stats.kstest(p, "uniform").pvalue > 0.01


@pytest.mark.slow
def test_null_pvalues_uniform_200_datasets(rng):
    p = _null_pvalues(rng, 200)
    assert stats.kstest(p, "uniform").pvalue > 0.01


def test_null_detects_a_real_relation(rng):
    X, _ = _noise_trials(rng, n_trials=4, n_times=300)
    Y = [np.roll(x, 2, axis=0) + 0.5 * rng.standard_normal(x.shape) for x in X]
    res = permutation_null(X, Y, 0.0, 0.03, 100.0, alpha=1.0, n_permutations=49, random_state=0)
    assert res.pvalues[0] == pytest.approx(1 / 50)


def test_null_errors(rng):
    X, Y = _noise_trials(rng, n_trials=2)
    with pytest.raises(ValueError, match=r"Invalid value for 'kind': got 'roll'; allowed values are 'shift', 'mismatch'"):
        permutation_null(X, Y, 0, 0.02, 100.0, kind="roll")
    with pytest.raises(ValueError, match=r"kind='mismatch' needs at least 3 trials; got 2"):
        permutation_null(X, Y, 0, 0.02, 100.0, kind="mismatch")
    with pytest.raises(ValueError, match=r"too short for shifts of at least 200 samples"):
        permutation_null(X, Y, 0, 0.02, 100.0, min_shift=2.0)


def test_bootstrap_interval_matches_sampling_error(rng):
    lags = np.arange(0, 4)
    kernel = np.array([0.0, 1.0, -0.5, 0.25])
    X = [rng.standard_normal((200, 1)) for _ in range(40)]
    Y = [lag_matrix(x, lags) @ kernel + rng.standard_normal(200) for x in X]
    lo, hi = bootstrap_coef(X, Y, 0.0, 0.03, 100.0, alpha=1.0, n_boot=300, random_state=0)
    fit = TRF(0.0, 0.03, 100.0, alpha=1.0).fit(X, Y).coef_
    assert lo.shape == (1, 1, 4) and np.all(lo <= fit) and np.all(fit <= hi)
    se = 1 / np.sqrt(40 * 200)                   # OLS standard error: unit noise, unit-variance input
    ratio = (hi - lo) / (2 * 1.96 * se)
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio


def test_haufe_equals_explicit_formula(rng):
    R = [rng.standard_normal((200, 3)) for _ in range(2)]
    R = [r @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 1]]) + 0.7 for r in R]
    S = [rng.standard_normal((200, 2)) for _ in range(2)]
    model = TRF(0.0, 0.03, 100.0, direction=-1, alpha=10.0).fit(R, S)
    design = np.vstack([lag_matrix(r, model.lags_) for r in R])
    design -= design.mean(0)
    W = model.coef_.transpose(2, 1, 0).reshape(-1, 2)
    cov = design.T @ design
    A = cov @ W @ np.linalg.inv(W.T @ cov @ W)
    expected = A.reshape(len(model.lags_), 3, 2).transpose(2, 1, 0)
    np.testing.assert_allclose(haufe_patterns(model, R), expected, atol=1e-10)
    with pytest.raises(ValueError, match=r"X has 2 features but the model was fitted with 3"):
        haufe_patterns(model, [r[:, :2] for r in R])


def test_haufe_recovers_forward_pattern(rng):
    """A source s mixed into channels with pattern a: the decoder's pattern is a at lag 0."""
    a = np.array([1.0, -2.0, 0.5, 0.0])
    s = [rng.standard_normal(2000) for _ in range(2)]
    R = [np.outer(v, a) + 0.3 * rng.standard_normal((2000, 4)) for v in s]
    model = TRF(0.0, 0.0, 100.0, direction=-1, alpha=1.0).fit(R, s)
    pattern = haufe_patterns(model, R)[0, :, 0]
    np.testing.assert_allclose(pattern / np.linalg.norm(pattern), a / np.linalg.norm(a), atol=0.02)


def test_multisubject_equals_pooled_trials_and_loso(rng):
    subjects = [_noise_trials(rng, n_trials=2, n_times=150, n_feat=2, n_out=2) for _ in range(3)]
    res = multisubject_trf(subjects, -0.02, 0.03, 100.0, alpha=[1.0, 100.0])
    pooled_X = [x for X, _ in subjects for x in X]
    pooled_Y = [y for _, Y in subjects for y in Y]
    ref = TRF(-0.02, 0.03, 100.0, alpha=res.alpha_).fit(pooled_X, pooled_Y)
    np.testing.assert_allclose(res.coef_, ref.coef_, atol=1e-10)
    np.testing.assert_allclose(res.intercept_, ref.intercept_, atol=1e-10)
    for s in range(3):
        train = [subjects[j] for j in range(3) if j != s]
        m = TRF(-0.02, 0.03, 100.0, alpha=100.0).fit([x for X, _ in train for x in X],
                                                      [y for _, Y in train for y in Y])
        expected = np.mean([m.score_outputs(x, y) for x, y in zip(*subjects[s])], axis=0)
        np.testing.assert_allclose(res.loso_scores_[s, 1], expected, atol=1e-10)
    with pytest.raises(ValueError, match=r"subjects must be a list of at least 2 \(X, y\) pairs"):
        multisubject_trf(subjects[:1], 0, 0.02, 100.0)


def test_banded_uniform_gamma_is_ridge_and_penalises_noise_band(rng):
    lags = np.arange(0, 4)
    X = [rng.standard_normal((300, 5)) for _ in range(4)]
    kernel = rng.standard_normal((4, 2))
    Y = [lag_matrix(x[:, :2], lags) @ kernel.reshape(-1, 1)[:, 0] + 0.5 * rng.standard_normal(300)
         for x in X]
    banded = BandedTRF(0.0, 0.03, 100.0, bands=[2, 3], search="random", n_iter=15, random_state=0).fit(X, Y)
    assert banded.band_alphas_[1] > banded.band_alphas_[0]
    assert banded.cv_scores_.shape == (15, 7, 1)
    np.testing.assert_allclose(banded.gammas_[0], [0.5, 0.5])
    # the uniform candidate reproduces plain ridge scores
    ridge = TRF(0.0, 0.03, 100.0, alpha=list(banded.alpha)).fit(X, Y)
    np.testing.assert_allclose(banded.cv_scores_[0], ridge.cv_scores_, atol=1e-10)
    split = banded.score_split(X, Y)
    assert split.shape == (2, 1) and split[0, 0] > 0.5 and abs(split[1, 0]) < 0.02
    full_pred = banded.predict(X)
    r2_total = np.mean([1 - ((y - p[:, 0] - (y - p[:, 0]).mean()) ** 2).sum() / ((y - y.mean()) ** 2).sum()
                        for y, p in zip(Y, full_pred)])
    assert split.sum() == pytest.approx(r2_total, abs=1e-10)
    assert clone(banded).get_params()["bands"] == [2, 3]


def _two_band_data(rng, n_trials=5, n_times=400):
    """Band 0 (2 features) drives 3 outputs through a lagged kernel; band 1 (4 features) is noise."""
    lags = np.arange(0, 4)
    X = [rng.standard_normal((n_times, 6)) for _ in range(n_trials)]
    kernel = rng.standard_normal((8, 3))
    Y = [lag_matrix(x[:, :2], lags) @ kernel + 2.0 * rng.standard_normal((n_times, 3)) + 1.5 for x in X]
    return X, Y


@pytest.mark.parametrize("scoring", ["pearson", "r2", "mse"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_banded_hypergradient_equals_finite_differences(rng, scoring, fit_intercept):
    from sae_eeg.trf._backend import get_ops
    from sae_eeg.trf.banded import _FoldProblems
    from sae_eeg.trf.crossval import fold_scores, make_folds
    from sae_eeg.trf.stats import lagged_stats

    X, Y = _two_band_data(rng)
    lags = np.arange(0, 4)
    xp = get_ops()
    stats = lagged_stats(X, Y, lags, edge="zero", xp=xp)
    folds = make_folds(len(X))
    centering = "lagged" if fit_intercept else None
    problem = _FoldProblems(stats, folds, centering, scoring, xp)
    d = np.exp(rng.uniform(-1, 4, size=24))
    value, grad = problem.loss_and_grad(d)
    # the loss is minus the engine's own cross-validated score (its MSE for 'mse')
    ref = fold_scores(stats, np.array([1.0]), folds, centering=centering, scoring=scoring,
                      solver="cholesky", xp=xp, penalty_scale=d).mean()
    assert value == pytest.approx(ref if scoring == "mse" else -ref, rel=1e-10)
    for p in (0, 5, 13, 23):
        step = np.zeros_like(d)
        step[p] = 1e-4 * d[p]
        numeric = (problem.loss_and_grad(d + step)[0] - problem.loss_and_grad(d - step)[0]) / (2 * step[p])
        assert grad[p] == pytest.approx(numeric, rel=1e-4, abs=1e-12)


def test_banded_gradient_search_penalises_the_noise_band(rng):
    X, Y = _two_band_data(rng)
    grad = BandedTRF(0.0, 0.03, 100.0, bands=[2, 4], search="gradient", scoring="r2").fit(X, Y)
    rand = BandedTRF(0.0, 0.03, 100.0, bands=[2, 4], search="random", n_iter=20, scoring="r2",
                     random_state=0).fit(X, Y)
    ridge = TRF(0.0, 0.03, 100.0, alpha=list(grad.alpha), scoring="r2").fit(X, Y)
    assert grad.band_alphas_[1] > 30 * grad.band_alphas_[0]
    # starts from plain ridge and only improves; at least as good as 20 random candidates
    assert grad.cv_scores_[0] == pytest.approx(ridge.cv_scores_.mean(axis=1).max(), rel=1e-10)
    assert grad.cv_score_ >= ridge.cv_scores_.mean(axis=1).max()
    assert grad.cv_score_ >= rand.cv_score_ - 1e-4
    np.testing.assert_allclose(grad.alpha_, grad.band_alphas_.mean())
    split = grad.score_split(X, Y)
    assert np.all(split[0] > 0.3) and np.all(np.abs(split[1]) < 0.01)


def test_banded_errors(rng):
    X, Y = _noise_trials(rng, n_feat=3)
    with pytest.raises(ValueError, match=r"bands must be positive ints summing to n_features=3; got \[1, 1\]"):
        BandedTRF(0, 0.02, 100.0, bands=[1, 1]).fit(X, Y)
    with pytest.raises(ValueError, match="search"):
        BandedTRF(0, 0.02, 100.0, bands=[1, 2], search="grid").fit(X, Y)


@pytest.mark.parametrize("edge", ["zero", "valid"])
@pytest.mark.parametrize("lags", [np.arange(-3, 5), np.array([-6, -2, 0, 7])])
def test_circular_xty_equals_explicit_products(rng, edge, lags):
    from sae_eeg.trf.fast import circular_xty
    from sae_eeg.trf.lags import row_range

    x, y = rng.standard_normal((57, 3)), rng.standard_normal((57, 2))
    shifts = np.array([0, 5, 56, 23, 5])
    start, stop = row_range(len(x), np.sort(lags), edge)
    got = circular_xty(x, y, lags, start, stop, shifts)
    design = lag_matrix(x, lags, edge=edge)
    for s, xty in zip(shifts, got):
        y_s = np.roll(y, -s, axis=0)[start:stop]
        np.testing.assert_allclose(xty, design.T @ y_s, atol=1e-12)

"""Differential tests against mTRFpy (``mtrf`` 2.x), MNE and scikit-learn."""

import warnings

import numpy as np
import pytest

from sae_eeg.trf import (
    TRF, alpha_from_mtrf, alpha_from_mtrfpy, lag_matrix, mtrf_from_alpha, mtrfpy_from_alpha,
    trf_crossval, trf_predict, trf_train, weights_from_mtrf, weights_to_mtrf,
)

mtrf_model = pytest.importorskip("mtrf.model")
mtrf_stats = pytest.importorskip("mtrf.stats")

FS = 64.0


@pytest.fixture
def trials(rng):
    """Ragged stimulus (3 features) and response (4 channels) trials with offsets."""
    S = [rng.standard_normal((300 + 25 * i, 3)) + 0.2 for i in range(5)]
    kernel = rng.standard_normal((4, 3, 17))
    lags = np.arange(-3, 14)
    R = [lag_matrix(s, lags) @ kernel.transpose(2, 1, 0).reshape(-1, 4) + 2 * rng.standard_normal((len(s), 4)) + 1
         for s in S]
    return S, R


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("lambda_", [0.01, 1.0, 100.0])
def test_train_predict_matches_mtrf(trials, direction, lambda_):
    S, R = trials
    ref = mtrf_model.TRF(direction=direction)
    ref.train([s.copy() for s in S], [r.copy() for r in R], FS, -0.05, 0.2, lambda_, verbose=False)
    X, Y = (S, R) if direction == 1 else (R, S)
    ours = TRF(-0.05, 0.2, FS, direction=direction,
               alpha=float(alpha_from_mtrfpy(lambda_, FS, len(S)))).fit(X, Y)
    np.testing.assert_allclose(ours.times_, ref.times, atol=1e-12)
    np.testing.assert_allclose(weights_to_mtrf(ours.coef_, FS), ref.weights, rtol=0,
                               atol=1e-8 * max(1.0, np.abs(ref.weights).max()))
    np.testing.assert_allclose(ours.intercept_ * FS, ref.bias[0], rtol=0, atol=1e-8 * max(1.0, np.abs(ref.bias).max()))
    pred_ref, r_ref = ref.predict([s.copy() for s in S], [r.copy() for r in R])
    pred = ours.predict(X)
    for a, b in zip(pred, pred_ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)
    assert ours.score(X, Y) == pytest.approx(float(r_ref), abs=1e-8)


@pytest.mark.parametrize("direction", [1, -1])
def test_crossval_matches_mtrf(trials, direction):
    S, R = trials
    lambda_ = 0.5
    r_ref = mtrf_stats.crossval(mtrf_model.TRF(direction=direction), [s.copy() for s in S],
                                [r.copy() for r in R], FS, -0.05, 0.2, lambda_, k=-1, verbose=False)
    # mtrf averages the covariances of the N - 1 training trials of each fold
    X, Y = (S, R) if direction == 1 else (R, S)
    ours = TRF(-0.05, 0.2, FS, direction=direction,
               alpha=[float(alpha_from_mtrfpy(lambda_, FS, len(S) - 1)), 1e12]).fit(X, Y)
    assert ours.cv_scores_[0].mean() == pytest.approx(float(r_ref), abs=1e-8)
    # the functional API takes MATLAB lambdas (summed covariances)
    lam_matlab = float(mtrf_from_alpha(alpha_from_mtrfpy(lambda_, FS, len(S) - 1), FS))
    scores = trf_crossval(S, R, FS, direction, -0.05, 0.2, [lam_matlab])
    assert scores.mean() == pytest.approx(float(r_ref), abs=1e-8)


def test_functional_api_matches_mtrf(trials):
    S, R = trials
    ref = mtrf_model.TRF(direction=1)
    ref.train([s.copy() for s in S], [r.copy() for r in R], FS, 0.0, 0.1, 2.0, verbose=False)
    # mTRFpy's lambda averages over 5 trials: MATLAB's summed-covariance lambda is 5x
    model = trf_train(S, R, FS, 1, 0.0, 0.1, 2.0 * len(S))
    np.testing.assert_allclose(weights_to_mtrf(model.coef_, FS), ref.weights, atol=1e-8)
    pred = trf_predict(model, stimulus=S)
    np.testing.assert_allclose(pred[0], ref.predict(stimulus=[S[0].copy()])[0], atol=1e-8)
    with pytest.raises(ValueError, match=r"A model with direction=1 predicts from 'stimulus'; got None"):
        trf_predict(model, response=R)


def test_convention_converters_round_trip(rng):
    a = rng.uniform(0.1, 100, 5)
    np.testing.assert_allclose(alpha_from_mtrf(mtrf_from_alpha(a, 128.0), 128.0), a)
    np.testing.assert_allclose(alpha_from_mtrfpy(mtrfpy_from_alpha(a, 100.0, 7), 100.0, 7), a)
    np.testing.assert_allclose(alpha_from_mtrfpy(1.0, 100.0, 4), 400.0)
    w = rng.standard_normal((2, 3, 5))
    np.testing.assert_allclose(weights_from_mtrf(weights_to_mtrf(w, 64.0), 64.0), w)
    with pytest.raises(ValueError, match=r"'n_trials' must be in \[1, inf\]; got 0"):
        alpha_from_mtrfpy(1.0, 100.0, 0)


def test_matches_mne_time_delaying_ridge(rng):
    from mne.decoding import TimeDelayingRidge

    X = rng.standard_normal((500, 3, 2))          # MNE layout (n_times, n_epochs, n_features)
    Y = rng.standard_normal((500, 3, 2))
    tdr = TimeDelayingRidge(-0.05, 0.1, 100.0, alpha=3.0, fit_intercept=False, edge_correction=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tdr.fit(X, Y)
    ours = TRF(-0.05, 0.1, 100.0, alpha=3.0, fit_intercept=False).fit(
        list(X.transpose(1, 0, 2)), list(Y.transpose(1, 0, 2)))
    np.testing.assert_allclose(ours.coef_, tdr.coef_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.predict(X[:, 0]), tdr.predict(X[:, 0]), atol=1e-10)


def test_matches_mne_receptive_field_with_sklearn_ridge(rng):
    from mne.decoding import ReceptiveField
    from sklearn.linear_model import Ridge

    x = rng.standard_normal((400, 2))
    y = rng.standard_normal((400, 3)) + 0.5
    rf = ReceptiveField(-0.03, 0.05, 100.0, estimator=Ridge(alpha=2.0, fit_intercept=False),
                        fit_intercept=False)
    rf.fit(x, y)
    ours = TRF(-0.03, 0.05, 100.0, alpha=2.0, fit_intercept=False).fit(x, y)
    np.testing.assert_allclose(ours.coef_, rf.coef_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.predict(x)[rf.valid_samples_], rf.predict(x)[rf.valid_samples_], atol=1e-10)


@pytest.mark.parametrize("edge", ["zero", "valid"])
def test_matches_sklearn_ridge_on_the_design(rng, edge):
    from sklearn.linear_model import Ridge

    X = [rng.standard_normal((n, 2)) + 1 for n in (150, 210)]
    Y = [rng.standard_normal((len(x), 2)) - 2 for x in X]
    lags = np.arange(-2, 6)
    design = np.vstack([lag_matrix(x, lags, edge=edge) for x in X])
    rows = [slice(None)] * 2 if edge == "zero" else [slice(5, -2)] * 2
    target = np.vstack([y[r] for y, r in zip(Y, rows)])
    ref = Ridge(alpha=7.0).fit(design, target)
    ours = TRF(-0.02, 0.05, 100.0, alpha=7.0, edge=edge).fit(X, Y)
    np.testing.assert_allclose(ours.coef_.transpose(0, 2, 1).reshape(2, -1), ref.coef_, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, atol=1e-10)

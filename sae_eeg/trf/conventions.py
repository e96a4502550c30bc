"""Ridge conventions of mTRF-Toolbox, mTRFpy, scikit-learn and MNE, and an mTRF-like API.

=====================  =====================================  ======================
package                normal equations                       reported weights
=====================  =====================================  ======================
engine / sklearn/MNE   (sum_i X_i^T X_i + alpha I) b           b
mTRF-Toolbox (MATLAB)  (sum_i X_i^T X_i + lambda fs I') w      w * fs
mTRFpy (``mtrf``)      (mean_i X_i^T X_i + lambda fs I') w     w * fs
=====================  =====================================  ======================

so ``alpha = lambda_MATLAB * fs = lambda_mTRFpy * fs * n_trials`` (the trials of the *training
set*, which mTRFpy averages over in each fold) and ``b = w_mTRF / fs``. Below, ``lambda_`` and
``alpha`` are numbers or arrays, ``sfreq`` in Hz; results have the input's shape.
"""

from __future__ import annotations

import numpy as np

from ._backend import get_ops
from ._check import _as_trials, _check_alphas, _check_number, _check_pair, _is_trial_list
from .crossval import fold_scores, make_folds, nested_fold_scores
from .lags import direction_lags
from .model import TRF
from .stats import lagged_stats


def _sfreq(sfreq):
    return _check_number("sfreq", sfreq, low=0, inclusive=False)


def alpha_from_mtrf(lambda_, sfreq):
    """Engine alpha from an mTRF-Toolbox (MATLAB) lambda: ``lambda * sfreq``."""
    return np.asarray(lambda_, dtype=np.float64) * _sfreq(sfreq)


def mtrf_from_alpha(alpha, sfreq):
    """mTRF-Toolbox lambda from an engine alpha: ``alpha / sfreq``."""
    return np.asarray(alpha, dtype=np.float64) / _sfreq(sfreq)


def alpha_from_mtrfpy(lambda_, sfreq, n_trials):
    """Engine alpha from an mTRFpy lambda: ``lambda * sfreq * n_trials``."""
    return alpha_from_mtrf(lambda_, sfreq) * _check_number("n_trials", n_trials, low=1, integer=True)


def mtrfpy_from_alpha(alpha, sfreq, n_trials):
    """mTRFpy lambda from an engine alpha: ``alpha / (sfreq * n_trials)``."""
    return mtrf_from_alpha(alpha, sfreq) / _check_number("n_trials", n_trials, low=1, integer=True)


def weights_to_mtrf(coef, sfreq):
    """mTRF-Toolbox / mTRFpy ``weights`` (n_features, n_lags, n_outputs) from ``TRF.coef_`` (``coef * sfreq``)."""
    return np.asarray(coef).transpose(1, 2, 0) * _sfreq(sfreq)


def weights_from_mtrf(weights, sfreq):
    """Engine coefficients (n_outputs, n_features, n_lags) from mTRF weights (n_features, n_lags, n_outputs)."""
    return np.asarray(weights).transpose(2, 0, 1) / _sfreq(sfreq)


def trf_train(stimulus, response, sfreq, direction, tmin, tmax, lambda_, *, edge="zero", backend="numpy",
              device=None):
    """A :class:`~sae_eeg.trf.TRF` fitted with mTRF-Toolbox arguments (``mTRFtrain``): ``stimulus`` and
    ``response`` trials (n_times_i, n_columns), ``lambda_`` a MATLAB (summed-covariance) value, so
    ``alpha = lambda_ * sfreq``; the rest as :class:`~sae_eeg.trf.TRF` (``weights_to_mtrf`` gives
    mTRF units)."""
    x, y = _check_pair(*((stimulus, response) if direction == 1 else (response, stimulus)))
    return TRF(tmin, tmax, sfreq, direction=direction, alpha=float(alpha_from_mtrf(lambda_, sfreq)),
               edge=edge, backend=backend, device=device).fit(x, y)


def trf_predict(model, stimulus=None, response=None):
    """Predictions of a :func:`trf_train` model (``mTRFpredict``) from ``stimulus`` (forward) or
    ``response`` (backward); a list for a list of trials."""
    name = "stimulus" if model.direction == 1 else "response"
    inputs = stimulus if model.direction == 1 else response
    if inputs is None:
        raise ValueError(f"A model with direction={model.direction} predicts from {name!r}; got None.")
    preds = model.predict(_as_trials(inputs, name))
    return preds if _is_trial_list(inputs) else preds[0]


def _mtrf_stats(stimulus, response, sfreq, direction, tmin, tmax, lambdas, edge, backend, device):
    """Per-trial statistics, engine alphas, lags, backend trials and ops for mTRF arguments."""
    X, y = _check_pair(*((stimulus, response) if direction == 1 else (response, stimulus)))
    xp, lags = get_ops(backend, device), direction_lags(tmin, tmax, sfreq, direction)
    alphas = alpha_from_mtrf(_check_alphas(lambdas, "lambdas"), sfreq)
    return lagged_stats(X, y, lags, edge=edge, xp=xp), alphas, lags, ([xp.asarray(a) for a in X],
                                                                       [xp.asarray(a) for a in y]), xp


def trf_crossval(stimulus, response, sfreq, direction, tmin, tmax, lambdas, *, cv=None, scoring="pearson",
                 edge="zero", backend="numpy", device=None):
    """Cross-validated scores (n_folds, n_lambdas, n_outputs) for mTRF-Toolbox ``lambdas`` (``mTRFcrossval``):
    each fold's mean over its held-out trials; arguments as :func:`trf_train` (at least two trials),
    ``cv`` folds (``None``: leave one trial out)."""
    stats, alphas, lags, trials, xp = _mtrf_stats(stimulus, response, sfreq, direction, tmin, tmax, lambdas,
                                                  edge, backend, device)
    return fold_scores(stats, alphas, make_folds(len(trials[0]), cv), centering="lagged", scoring=scoring,
                       solver="auto", xp=xp, trials=trials, lags=lags, edge=edge)[:, :, 0]


def trf_nested_crossval(stimulus, response, sfreq, direction, tmin, tmax, lambdas, *, cv_outer=None,
                        cv_inner=None, scoring="pearson", edge="zero", backend="numpy", device=None):
    """Nested cross-validation for mTRF-Toolbox lambdas (mTRFpy ``nested_crossval``), arguments as
    :func:`trf_crossval` (at least three trials): a :class:`~sae_eeg.trf.crossval.NestedCV` with the
    chosen values as engine alphas (``mtrf_from_alpha(result.alphas, sfreq)``: MATLAB lambdas)."""
    stats, alphas, _, _, xp = _mtrf_stats(stimulus, response, sfreq, direction, tmin, tmax, lambdas, edge,
                                          backend, device)
    return nested_fold_scores(stats, alphas, cv_outer=cv_outer, cv_inner=cv_inner, scoring=scoring, xp=xp)

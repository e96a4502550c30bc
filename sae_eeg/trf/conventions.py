"""Ridge conventions of mTRF-Toolbox, mTRFpy, scikit-learn and MNE, and an mTRF-like API.

The engine solves ``(X^T X + alpha I) b = X^T y`` on the lagged design summed over
trials (centred when an intercept is fitted, so the intercept is unpenalised), like
scikit-learn ``Ridge`` and MNE ``TimeDelayingRidge``/``ReceptiveField``.

=====================  =====================================  ======================
package                normal equations                       reported weights
=====================  =====================================  ======================
engine / sklearn/MNE   (sum_i X_i^T X_i + alpha I) b           b
mTRF-Toolbox (MATLAB)  (sum_i X_i^T X_i + lambda fs I') w      w * fs
mTRFpy (``mtrf``)      (mean_i X_i^T X_i + lambda fs I') w     w * fs
=====================  =====================================  ======================

so ``alpha = lambda_MATLAB * fs = lambda_mTRFpy * fs * n_trials`` (``n_trials`` being
the trials of the *training set*: mTRFpy's cross-validation averages over the training
trials of each fold), and ``b = w_mTRF / fs``.
"""

from __future__ import annotations

import numpy as np

from ._backend import get_ops
from ._check import (
    _as_trials,
    _check_alphas,
    _check_number,
    _check_pair,
    _is_trial_list,
)
from .crossval import fold_scores, make_folds, nested_fold_scores
from .lags import direction_lags
from .model import TRF
from .stats import lagged_stats


def alpha_from_mtrf(lambda_, sfreq):
    """Engine alpha from an mTRF-Toolbox (MATLAB) lambda: ``lambda * sfreq``.

    Parameters
    ----------
    lambda_ : float | array
        mTRF-Toolbox regularisation value(s).
    sfreq : float
        Sampling rate in Hz.

    Returns
    -------
    alpha : float | ndarray
    """
    return np.asarray(lambda_, dtype=np.float64) * _check_number("sfreq", sfreq, low=0, inclusive=False)


def mtrf_from_alpha(alpha, sfreq):
    """mTRF-Toolbox lambda from an engine alpha: ``alpha / sfreq``."""
    return np.asarray(alpha, dtype=np.float64) / _check_number("sfreq", sfreq, low=0, inclusive=False)


def alpha_from_mtrfpy(lambda_, sfreq, n_trials):
    """Engine alpha from an mTRFpy lambda: ``lambda * sfreq * n_trials``.

    Parameters
    ----------
    lambda_ : float | array
        mTRFpy regularisation value(s).
    sfreq : float
        Sampling rate in Hz.
    n_trials : int
        Trials whose covariances mTRFpy averaged (the training trials).

    Returns
    -------
    alpha : float | ndarray
    """
    n_trials = _check_number("n_trials", n_trials, low=1, integer=True)
    return alpha_from_mtrf(lambda_, sfreq) * n_trials


def mtrfpy_from_alpha(alpha, sfreq, n_trials):
    """mTRFpy lambda from an engine alpha: ``alpha / (sfreq * n_trials)``."""
    n_trials = _check_number("n_trials", n_trials, low=1, integer=True)
    return mtrf_from_alpha(alpha, sfreq) / n_trials


def weights_to_mtrf(coef, sfreq):
    """mTRF weights from engine coefficients.

    Parameters
    ----------
    coef : ndarray, shape (n_outputs, n_features, n_lags)
        ``TRF.coef_``.
    sfreq : float
        Sampling rate in Hz.

    Returns
    -------
    weights : ndarray, shape (n_features, n_lags, n_outputs)
        mTRF-Toolbox / mTRFpy ``weights`` (``coef * sfreq``, axes as mTRFpy).
    """
    return np.asarray(coef).transpose(1, 2, 0) * _check_number("sfreq", sfreq, low=0, inclusive=False)


def weights_from_mtrf(weights, sfreq):
    """Engine coefficients (n_outputs, n_features, n_lags) from mTRF weights (n_features, n_lags, n_outputs)."""
    return np.asarray(weights).transpose(2, 0, 1) / _check_number("sfreq", sfreq, low=0, inclusive=False)


def trf_train(stimulus, response, sfreq, direction, tmin, tmax, lambda_, *, edge="zero",
              backend="numpy", device=None):
    """Fit a TRF with mTRF-Toolbox arguments (``mTRFtrain``).

    Parameters
    ----------
    stimulus, response : array | list of array
        Trials, each (n_times_i, n_columns).
    sfreq : float
        Sampling rate in Hz.
    direction : 1 | -1
        Forward (stimulus to response) or backward model.
    tmin, tmax : float
        Lag window in seconds (stimulus-to-response sense, also for direction -1).
    lambda_ : float
        mTRF-Toolbox (MATLAB, summed covariances) regularisation value.
    edge, backend, device : str
        See :class:`~sae_eeg.trf.TRF`.

    Returns
    -------
    model : TRF
        Fitted with ``alpha = lambda_ * sfreq``; its weights in mTRF units are
        ``weights_to_mtrf(model.coef_, sfreq)``.
    """
    x, y = (stimulus, response) if direction == 1 else (response, stimulus)
    x, y = _check_pair(x, y)                                    # 1-D trials are one column
    return TRF(tmin, tmax, sfreq, direction=direction, alpha=float(alpha_from_mtrf(lambda_, sfreq)),
               edge=edge, backend=backend, device=device).fit(x, y)


def trf_predict(model, stimulus=None, response=None):
    """Predict with a model from :func:`trf_train` (``mTRFpredict``).

    Parameters
    ----------
    model : TRF
        A fitted model.
    stimulus, response : array | list of array | None
        The model's input: ``stimulus`` for a forward model, ``response`` for a backward one.

    Returns
    -------
    prediction : ndarray, shape (n_times, n_outputs) | list of ndarray
        A list for a list of trials, else one array.
    """
    inputs = stimulus if model.direction == 1 else response
    if inputs is None:
        need = "stimulus" if model.direction == 1 else "response"
        raise ValueError(f"A model with direction={model.direction} predicts from {need!r}; got None.")
    trials = _as_trials(inputs, "stimulus" if model.direction == 1 else "response")
    preds = model.predict(trials)
    return preds if _is_trial_list(inputs) else preds[0]


def _mtrf_stats(stimulus, response, sfreq, direction, tmin, tmax, lambdas, edge, backend, device):
    """Per-trial statistics, engine alphas, lags, backend trials and ops for mTRF arguments."""
    x, y = (stimulus, response) if direction == 1 else (response, stimulus)
    X_list, y_list = _check_pair(x, y)
    xp = get_ops(backend, device)
    lags = direction_lags(tmin, tmax, sfreq, direction)
    alphas = alpha_from_mtrf(_check_alphas(lambdas, "lambdas"), sfreq)
    X_b, y_b = [xp.asarray(a) for a in X_list], [xp.asarray(a) for a in y_list]
    return lagged_stats(X_list, y_list, lags, edge=edge, xp=xp), alphas, lags, (X_b, y_b), xp


def trf_crossval(stimulus, response, sfreq, direction, tmin, tmax, lambdas, *, cv=None,
                 scoring="pearson", edge="zero", backend="numpy", device=None):
    """Cross-validated scores for mTRF-Toolbox lambdas (``mTRFcrossval``).

    Parameters
    ----------
    stimulus, response : list of array
        At least two trials.
    sfreq : float
        Sampling rate in Hz.
    direction : 1 | -1
        Forward or backward model.
    tmin, tmax : float
        Lag window in seconds.
    lambdas : float | sequence of float
        mTRF-Toolbox (MATLAB) regularisation values.
    cv : int | None
        Folds (``None``: leave one trial out).
    scoring, edge, backend, device : str
        See :class:`~sae_eeg.trf.TRF`.

    Returns
    -------
    scores : ndarray, shape (n_folds, n_lambdas, n_outputs)
        Score of each fold (mean over its held-out trials), lambda and output.
    """
    stats, alphas, lags, (X_b, y_b), xp = _mtrf_stats(stimulus, response, sfreq, direction, tmin,
                                                      tmax, lambdas, edge, backend, device)
    return fold_scores(stats, alphas, make_folds(len(X_b), cv), centering="lagged", scoring=scoring,
                       solver="auto", xp=xp, trials=(X_b, y_b), lags=lags, edge=edge)[:, :, 0]


def trf_nested_crossval(stimulus, response, sfreq, direction, tmin, tmax, lambdas, *, cv_outer=None,
                        cv_inner=None, scoring="pearson", edge="zero", backend="numpy", device=None):
    """Nested cross-validation for mTRF-Toolbox lambdas (mTRFpy ``nested_crossval``).

    Parameters
    ----------
    stimulus, response : list of array
        At least three trials.
    sfreq : float
        Sampling rate in Hz.
    direction : 1 | -1
        Forward or backward model.
    tmin, tmax : float
        Lag window in seconds.
    lambdas : sequence of float
        mTRF-Toolbox (MATLAB) regularisation values searched by the inner loop.
    cv_outer, cv_inner : int | None
        Folds (``None``: leave one trial out).
    scoring : 'pearson' | 'mse' | 'r2'
        Metric.
    edge, backend, device : str
        See :class:`~sae_eeg.trf.TRF`.

    Returns
    -------
    result : NestedCV
        Outer-fold scores (n_outer, n_outputs) and the chosen values as engine alphas
        (``mtrf_from_alpha(result.alphas, sfreq)`` gives the MATLAB lambdas).
    """
    stats, alphas, _, _, xp = _mtrf_stats(stimulus, response, sfreq, direction, tmin, tmax, lambdas,
                                          edge, backend, device)
    return nested_fold_scores(stats, alphas, cv_outer=cv_outer, cv_inner=cv_inner, scoring=scoring,
                              xp=xp)

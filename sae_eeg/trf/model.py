"""The TRF estimator (lagged ridge regression with the scikit-learn contract) and its Haufe patterns."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin  # the estimator contract (only non-numeric import)
from sklearn.utils.validation import check_is_fitted

from ._backend import get_ops
from ._check import _as_trials, _check_alphas, _check_option, _check_pair, _is_trial_list
from .crossval import SCORERS, best_alpha_index, fold_scores, make_folds, predict_rows, setup, warn_at_grid_edge
from .lags import coef_from_weights, row_range, valid_slice, weights_from_coef
from .ridge import SOLVERS, centered_gram, ridge_per_output
from .stats import lagged_stats


class TRF(RegressorMixin, BaseEstimator):
    """Temporal response function: ridge regression on time-lagged inputs.

    Parameters
    ----------
    tmin, tmax : float
        Stimulus-to-response lag window in seconds (``tmin <= tmax``; positive: the response
        follows). A backward model regresses on lags ``-tmax .. -tmin`` (mTRF-Toolbox).
    sfreq : float
        Sampling rate of inputs and outputs, in Hz.
    direction : 1 | -1
        Forward (encoding) or backward (decoding) model; ``X`` is always the input (the EEG for -1).
    alpha : float | sequence of float
        Ridge penalty (engine scale, Notes). Several are compared by cross-validation over trials
        and the best is refit on all (a warning says when it is an end of the grid). Default 1.0.
    fit_intercept : bool
        Fit an unpenalised intercept. Default True.
    centering : 'lagged' | 'signal'
        The intercept's convention (Notes). ``'lagged'`` (default): the lagged design's columns
        centred on their means = ridge with an unpenalised column of ones (mTRF-Toolbox, mTRFpy,
        scikit-learn ``Ridge`` on the design). ``'signal'``: inputs and outputs centred before
        lagging (MNE ``ReceptiveField``/``TimeDelayingRidge`` with ``fit_intercept=True``).
    edge : 'zero' | 'valid'
        Zero-pad lagged inputs beyond the trial (mTRF ``zeropad``, MNE) or use only the samples
        whose lagged inputs all lie inside it. Default 'zero'.
    solver : 'auto' | 'tridiagonal' | 'eigh' | 'cholesky'
        Every alpha from one orthogonal reduction per fold, from one eigendecomposition, or a
        Cholesky factorisation per alpha; 'auto': the cheapest (:func:`~sae_eeg.trf.ridge.resolve_solver`).
    backend, device : str
        'numpy' (float64, the reference) or 'torch' on ``device`` ('cuda': float32, with a warning).
    scoring, cv, alpha_per_output
        Metric of :meth:`score` and the cross-validation ('pearson', 'spearman', 'mse' or 'r2'),
        its folds (``None``: leave one trial out), an alpha per output column (default False).

    Attributes
    ----------
    coef_ : ndarray, shape (n_outputs, n_features, n_lags)
        Weights (engine scale: ``w_mTRF / sfreq``).
    intercept_, alpha_ : ndarray, shape (n_outputs,)
        Unpenalised intercepts and the penalty of each output.
    lags_, times_ : ndarray, shape (n_lags,)
        Regression lags in samples (negative for a backward model) and seconds.
    cv_scores_ : ndarray, shape (n_alphas, n_outputs)
        Mean cross-validated score of each alpha (NaN for a single alpha).
    valid_samples_ : slice
        Rows of each trial that enter the fit and :meth:`score`.
    n_features_in_, n_outputs_ : int

    Notes
    -----
    ``(X^T X + alpha I) b = X^T y`` on the lagged design summed over trials, as scikit-learn Ridge
    and MNE TimeDelayingRidge: ``alpha = lambda_MATLAB * sfreq = lambda_mTRFpy * sfreq * n_trials``
    and ``coef_ = w_mTRF / sfreq`` (:mod:`~sae_eeg.trf.conventions`). The two intercepts are
    different problems: with zero-padded edges the signals' and the lagged columns' means differ,
    and so do the weights (a few percent on short trials); ``'lagged'``, the exact least-squares
    intercept and mTRF's, is the default.

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal((1000, 1))
    >>> np.round(TRF(0, 0.02, 100.0, alpha=1e-6).fit(x, np.convolve(x[:, 0], [0, 1, 0.5])[:1000]).coef_, 3).tolist()
    [[[0.0, 1.0, 0.5]]]
    """

    def __init__(self, tmin, tmax, sfreq, *, direction=1, alpha=1.0, fit_intercept=True, centering="lagged",
                 edge="zero", solver="auto", backend="numpy", device=None, scoring="pearson",
                 cv=None, alpha_per_output=False):
        self.tmin, self.tmax, self.sfreq, self.direction, self.alpha = tmin, tmax, sfreq, direction, alpha
        self.fit_intercept, self.centering, self.edge, self.solver = fit_intercept, centering, edge, solver
        self.backend, self.device, self.scoring, self.cv = backend, device, scoring, cv
        self.alpha_per_output = alpha_per_output

    def _validate(self):
        _check_option("solver", self.solver, ("auto", *SOLVERS))
        _check_option("scoring", self.scoring, SCORERS)
        _check_option("alpha_per_output", self.alpha_per_output, (True, False))
        sfreq, lags, self._center, xp = setup(self.tmin, self.tmax, self.sfreq, self.direction, self.fit_intercept,
                                              self.centering, self.edge, self.backend, self.device, None)
        return sfreq, lags, _check_alphas(self.alpha), xp

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.sparse = False
        return tags

    def fit(self, X, y):
        """Fit the model to inputs ``X`` ([n_trials, ]n_times, n_features) and outputs ``y`` ([n_trials,
        ]n_times[, n_outputs]), or lists of trials of any lengths. Returns ``self``."""
        sfreq, lags, alphas, xp = self._validate()
        X_list, y_list = _check_pair(X, y, x_1d=False)
        self._y_is_1d_ = not _is_trial_list(y) and np.asarray(y).ndim == 1
        X_b, y_b = [xp.asarray(a) for a in X_list], [xp.asarray(a) for a in y_list]
        for x in X_b:
            row_range(x.shape[0], lags, self.edge)
        stats = lagged_stats(X_b, y_b, lags, edge=self.edge, per_trial=len(alphas) > 1,
                             ones=self._center == "signal", xp=xp)
        n_out = y_list[0].shape[1]
        if len(alphas) > 1:
            scores = fold_scores(stats, alphas, make_folds(len(X_b), self.cv), centering=self._center,
                                 scoring=self.scoring, solver=self.solver, xp=xp, trials=(X_b, y_b), lags=lags,
                                 edge=self.edge)
            self.cv_scores_ = scores[:, :, 0].mean(axis=0)
            best = best_alpha_index(self.cv_scores_, self.scoring, self.alpha_per_output)
            warn_at_grid_edge(alphas, best)
            alpha_C = alphas[best]
        else:
            self.cv_scores_ = np.full((1, n_out), np.nan)
            alpha_C = np.full(n_out, alphas[0])
        W, b = ridge_per_output(stats.total(), alpha_C, centering=self._center, solver=self.solver, xp=xp)
        return self._set_fitted(xp.to_numpy(W[0]), xp.to_numpy(b[0]), alpha_C, lags, sfreq)

    def _set_fitted(self, W, b, alpha_C, lags, sfreq):
        """Store the fitted attributes from lag-major weights W (P, C) and intercepts b (C,)."""
        coef = coef_from_weights(W, len(lags))              # the constant feature of 'signal' is no input
        self.coef_ = np.ascontiguousarray(coef[:, :-1]) if self._center == "signal" else coef
        self.intercept_, self.alpha_, self.lags_, self.times_ = b, alpha_C, lags, lags / sfreq
        self.valid_samples_ = valid_slice(lags, self.edge)
        self.n_outputs_, self.n_features_in_ = self.coef_.shape[:2]
        return self

    def _predict_trials(self, X):
        check_is_fitted(self)
        X_list = _as_trials(X, "X", allow_1d=False)
        if X_list[0].shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X_list[0].shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input.")
        xp = get_ops(self.backend, self.device)
        W, b = xp.asarray(weights_from_coef(self.coef_))[None, None], xp.asarray(self.intercept_)[None, None]
        return [xp.to_numpy(predict_rows(xp.asarray(x), W, b, self.lags_, 0, x.shape[0], xp)[0])
                for x in X_list]

    def predict(self, X):
        """Predictions ([n_trials, ]n_times, n_outputs) of every sample of ``X`` (as :meth:`fit`), in the
        same container (a list for a list); rows outside ``valid_samples_`` depend on the zero padding."""
        preds = self._predict_trials(X)
        if _is_trial_list(X):
            return preds
        if np.asarray(X).ndim == 3:
            return np.stack(preds)
        return preds[0][:, 0] if self._y_is_1d_ else preds[0]

    def score(self, X, y, sample_weight=None):
        """Mean over outputs of the ``scoring`` metric (trial-averaged) on ``valid_samples_`` (a float);
        ``X``, ``y`` as :meth:`fit`; ``sample_weight`` is not supported."""
        if sample_weight is not None:
            raise ValueError("TRF.score does not support sample_weight; got an array.")
        return float(np.mean(self.score_outputs(X, y)))

    def score_outputs(self, X, y):
        """The ``scoring`` metric per output, averaged over trials, shape (n_outputs,)."""
        check_is_fitted(self)
        X_list, y_list = _check_pair(X, y, x_1d=False)
        preds = self._predict_trials(X_list)
        metric = SCORERS[self.scoring].from_predictions
        return np.mean([metric(yt[self.valid_samples_], yp[self.valid_samples_])
                        for yt, yp in zip(y_list, preds)], axis=0)


def haufe_patterns(model, X):
    """Activation patterns ``A = Cov(X_lagged) W Cov(y_hat)^-1`` (Haufe 2014) of a fitted ``model``
    (typically backward: X is the EEG) on its training inputs ``X``, centred like the fit, from
    lagged statistics: (n_outputs, n_features, n_lags), laid out as ``model.coef_`` (a backward
    model's patterns at regression lag ``model.lags_``, i.e. latency ``-model.times_``)."""
    X_list = _as_trials(X, "X")
    if X_list[0].shape[1] != model.coef_.shape[1]:
        raise ValueError(f"X has {X_list[0].shape[1]} features but the model was fitted with "
                         f"{model.coef_.shape[1]}.")
    center, xp = model.centering if model.fit_intercept else None, get_ops("numpy")
    ones = center == "signal"
    stats = lagged_stats(X_list, None, model.lags_, edge=model.edge, per_trial=False, ones=ones, xp=xp)
    C = centered_gram(stats, center, xp)[0]
    coef = np.concatenate([model.coef_, np.zeros(model.coef_.shape[:1] + (int(ones),) + model.coef_.shape[2:])], axis=1)
    W = weights_from_coef(coef)                                              # (P, n_out)
    cov_x_W = C @ W
    A = np.linalg.solve(W.T @ cov_x_W, cov_x_W.T).T                         # (P, n_out)
    return coef_from_weights(A, len(model.lags_))[:, :model.coef_.shape[1]]

"""Haufe transform: forward activation patterns from backward (decoding) models."""

from __future__ import annotations

import numpy as np

from ._backend import get_ops
from ._check import _as_trials
from .lags import coef_from_weights, weights_from_coef
from .ridge import centered_gram
from .stats import lagged_stats


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

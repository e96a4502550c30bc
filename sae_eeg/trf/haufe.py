"""Haufe transform: forward activation patterns from backward (decoding) models."""

from __future__ import annotations

import numpy as np

from ._backend import get_ops
from ._check import _as_trials
from .lags import lagged_stats
from .solvers import centered_system


def haufe_patterns(model, X):
    """Activation patterns ``A = Cov(X_lagged) W Cov(y_hat)^-1`` of a fitted model (Haufe 2014).

    The covariance of the lagged inputs is computed from lagged statistics (no design
    matrix) over the same rows and edges as the fit, centred like the fit.

    Parameters
    ----------
    model : TRF
        A fitted model (typically ``direction=-1``: X is the EEG).
    X : array | list of array
        The inputs the model was trained on (trials of shape (n_times_i, n_features)).

    Returns
    -------
    patterns : ndarray, shape (n_outputs, n_features, n_lags)
        Same layout and lags as ``model.coef_``; for a backward model, the forward
        pattern of each EEG channel at regression lag ``model.lags_`` (read as
        response latency ``-model.times_``).
    """
    X_list = _as_trials(X, "X")
    if X_list[0].shape[1] != model.coef_.shape[1]:
        raise ValueError(f"X has {X_list[0].shape[1]} features but the model was fitted with "
                         f"{model.coef_.shape[1]}.")
    xp = get_ops("numpy")
    zeros = [np.zeros((x.shape[0], 1)) for x in X_list]
    stats = lagged_stats(X_list, zeros, model.lags_, edge=model.edge, per_trial=False, xp=xp)
    C, _ = centered_system(stats, model.fit_intercept)
    n_out, n_feat, n_lags = model.coef_.shape
    W = model.coef_.transpose(2, 1, 0).reshape(n_lags * n_feat, n_out)  # lag-major
    cov_x_W = C @ W
    cov_yhat = W.T @ cov_x_W
    A = np.linalg.solve(cov_yhat, cov_x_W.T).T                             # (P, n_out)
    return A.reshape(n_lags, n_feat, n_out).transpose(2, 1, 0)

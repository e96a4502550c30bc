"""Generic multi-subject TRFs: one model on the pooled statistics, scored leaving subjects out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._backend import get_ops
from ._check import _check_alphas, _check_number, _check_option, _check_pair
from .crossval import STATS_SCORERS, best_alpha_index, fold_scores, warn_at_grid_edge
from .lags import EDGES, coef_from_weights, direction_lags
from .ridge import CENTERINGS, ridge_path
from .stats import lagged_stats


@dataclass(frozen=True)
class MultiSubjectTRF:
    """Result of :func:`multisubject_trf`.

    Attributes
    ----------
    coef_ : ndarray, shape (n_outputs, n_features, n_lags)
        Group model fitted on the summed statistics of every subject.
    intercept_ : ndarray, shape (n_outputs,)
        Its intercepts.
    alpha_ : float
        Penalty used (best mean leave-one-subject-out score when several were given).
    loso_scores_ : ndarray, shape (n_subjects, n_alphas, n_outputs)
        Score on each left-out subject (mean over its trials) of the model trained on all
        other subjects, for every alpha.
    lags_ : ndarray of int, shape (n_lags,)
        Lags in samples.
    times_ : ndarray, shape (n_lags,)
        Lags in seconds.
    """

    coef_: np.ndarray
    intercept_: np.ndarray
    alpha_: float
    loso_scores_: np.ndarray
    lags_: np.ndarray
    times_: np.ndarray


def multisubject_trf(subjects, tmin, tmax, sfreq, *, alpha=1.0, direction=1, fit_intercept=True,
                     centering="lagged", edge="zero", scoring="pearson", backend="numpy", device=None):
    """Fit one TRF on several subjects (summed statistics) and score it leaving subjects out.

    Parameters
    ----------
    subjects : list of (X, y)
        Per subject, its trials: ``X`` and ``y`` as in :meth:`TRF.fit` (lists of arrays). All
        subjects share the input features and the output channels; a stimulus array shared by
        several subjects (the same object) has its statistics computed once.
    tmin, tmax : float
        Lag window in seconds.
    sfreq : float
        Sampling rate in Hz.
    alpha : float | sequence of float
        Penalties; several are compared by the mean leave-one-subject-out score.
    direction, fit_intercept, centering, edge, scoring, backend, device
        As in :class:`~sae_eeg.trf.TRF` (``scoring`` not 'spearman').

    Returns
    -------
    result : MultiSubjectTRF
    """
    if not isinstance(subjects, (list, tuple)) or len(subjects) < 2:
        raise ValueError(f"subjects must be a list of at least 2 (X, y) pairs; got {type(subjects).__name__}"
                         f" of length {len(subjects) if hasattr(subjects, '__len__') else 'n/a'}.")
    _check_option("edge", edge, EDGES)
    _check_option("scoring", scoring, STATS_SCORERS)
    _check_option("centering", centering, CENTERINGS)
    sfreq = _check_number("sfreq", sfreq, low=0, inclusive=False)
    alphas, xp = _check_alphas(alpha), get_ops(backend, device)
    lags, center = direction_lags(tmin, tmax, sfreq, direction), centering if fit_intercept else None
    X, Y, folds = [], [], []
    for s, pair in enumerate(subjects):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"subjects[{s}] must be an (X, y) pair; got {type(pair).__name__}.")
        X_s, y_s = _check_pair(*pair, x_name=f"subjects[{s}] X", y_name=f"subjects[{s}] y")
        folds.append(np.arange(len(X), len(X) + len(X_s)))
        X, Y = X + X_s, Y + y_s
    shapes = {(x.shape[1], v.shape[1]) for x, v in zip(X, Y)}
    if len(shapes) > 1:
        raise ValueError(f"All subjects must share features and outputs; got (n_features, n_outputs) {sorted(shapes)}.")
    stats = lagged_stats(X, Y, lags, edge=edge, ones=center == "signal", xp=xp)
    loso = fold_scores(stats, alphas, folds, centering=center, scoring=scoring, solver="auto", xp=xp)[:, :, 0]
    index = best_alpha_index(loso.mean(axis=0), scoring, per_output=False)[0]
    warn_at_grid_edge(alphas, [index])
    W, b = ridge_path(stats.total(), alphas[[index]], centering=center, solver="cholesky", xp=xp)
    coef = coef_from_weights(xp.to_numpy(W[0, 0]), len(lags))[:, :X[0].shape[1]]
    return MultiSubjectTRF(coef, xp.to_numpy(b[0, 0]), float(alphas[index]), loso, lags, lags / sfreq)

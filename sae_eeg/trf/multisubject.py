"""Generic multi-subject TRFs: summed covariances and leave-one-subject-out scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._backend import get_ops
from ._check import _check_alphas, _check_number, _check_option, _check_pair
from .crossval import SCORERS, best_alpha_index, fold_scores
from .lags import EDGES, FIELDS, LagStats, coef_from_weights, lagged_stats
from .model import direction_lags
from .solvers import ridge_path


@dataclass(frozen=True)
class MultiSubjectTRF:
    """Result of :func:`multisubject_trf`.

    Attributes
    ----------
    coef : ndarray, shape (n_outputs, n_features, n_lags)
        Group model fitted on the summed statistics of every subject.
    intercept : ndarray, shape (n_outputs,)
        Its intercepts.
    alpha : float
        Penalty used (best mean leave-one-subject-out score when several were given).
    loso_scores : ndarray, shape (n_subjects, n_alphas, n_outputs)
        Score on each left-out subject (mean over its trials) of the model trained on
        all other subjects, for every alpha.
    lags : ndarray of int, shape (n_lags,)
        Lags in samples.
    """

    coef: np.ndarray
    intercept: np.ndarray
    alpha: float
    loso_scores: np.ndarray
    lags: np.ndarray


def multisubject_trf(subjects, tmin, tmax, sfreq, *, alpha=1.0, direction=1, fit_intercept=True,
                     edge="zero", scoring="pearson", backend="numpy", device=None):
    """Fit one TRF on several subjects (summed covariances) and score it leaving subjects out.

    Parameters
    ----------
    subjects : list of (X, y)
        Per subject, its trials: ``X`` and ``y`` as in :meth:`TRF.fit` (lists of arrays).
        All subjects share the input features and the output channels.
    tmin, tmax : float
        Lag window in seconds.
    sfreq : float
        Sampling rate in Hz.
    alpha : float | sequence of float
        Penalties; several are compared by the mean leave-one-subject-out score.
    direction, fit_intercept, edge, scoring, backend, device
        As in :class:`~sae_eeg.trf.TRF` (``scoring`` not 'spearman').

    Returns
    -------
    result : MultiSubjectTRF
        The group model and the leave-one-subject-out scores.
    """
    if not isinstance(subjects, (list, tuple)) or len(subjects) < 2:
        raise ValueError(f"subjects must be a list of at least 2 (X, y) pairs; got {type(subjects).__name__}"
                         f" of length {len(subjects) if hasattr(subjects, '__len__') else 'n/a'}.")
    _check_option("edge", edge, EDGES)
    _check_option("scoring", scoring, tuple(k for k, v in SCORERS.items() if v.from_stats))
    sfreq = _check_number("sfreq", sfreq, low=0, inclusive=False)
    alphas = _check_alphas(alpha)
    xp = get_ops(backend, device)
    lags = direction_lags(tmin, tmax, sfreq, direction)
    parts, folds, n0 = [], [], 0
    for s, pair in enumerate(subjects):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"subjects[{s}] must be an (X, y) pair; got {type(pair).__name__}.")
        X_list, y_list = _check_pair(*pair, x_name=f"subjects[{s}] X", y_name=f"subjects[{s}] y")
        parts.append(lagged_stats([xp.asarray(a) for a in X_list], [xp.asarray(a) for a in y_list],
                                  lags, edge=edge, xp=xp))
        folds.append(np.arange(n0, n0 + len(X_list)))
        n0 += len(X_list)
    shapes = {(p.xty.shape[1], p.xty.shape[2]) for p in parts}
    if len(shapes) > 1:
        raise ValueError(f"All subjects must share features and outputs; got (P, n_outputs) {sorted(shapes)}.")
    stats = LagStats(*(xp.concat([getattr(p, k) for p in parts]) for k in FIELDS + ("autocov", "edge_rows")))
    loso = fold_scores(stats, alphas, folds, fit_intercept=fit_intercept, scoring=scoring,
                       solver="auto", xp=xp)
    best = alphas[best_alpha_index(loso.mean(axis=0), scoring, per_output=False)[0]]
    W, b = ridge_path(stats.total(), np.array([best]), fit_intercept=fit_intercept, solver="cholesky", xp=xp)
    coef = coef_from_weights(xp.to_numpy(W[0]), len(lags))
    return MultiSubjectTRF(coef, xp.to_numpy(b[0]), float(best), loso, lags)

"""Generic multi-subject TRFs: one model on the pooled statistics, scored leaving subjects out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._check import _check_alphas, _check_pair
from .crossval import best_alpha_index, fold_scores, setup, warn_at_grid_edge
from .lags import coef_from_weights
from .ridge import ridge_path
from .stats import lagged_stats


@dataclass(frozen=True)
class MultiSubjectTRF:
    """Result of :func:`multisubject_trf`.

    ``coef_`` (n_outputs, n_features, n_lags) and ``intercept_`` (n_outputs,) of the group model on the summed
    statistics of every subject, with ``alpha_`` (the best mean leave-one-subject-out score);
    ``loso_scores_`` (n_subjects, n_alphas, n_outputs): each left-out subject's score (mean over its
    trials) of the model trained on the others; ``lags_``, ``times_`` in samples and seconds.
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

    ``subjects``: per subject ``(X, y)``, lists of trials with the same features and outputs (a stimulus
    array heard by several subjects, one object, is computed once); ``alpha``: penalties, compared by
    the mean leave-one-subject-out score; the rest as :class:`~sae_eeg.trf.TRF` (``scoring`` not
    'spearman'). Returns :class:`MultiSubjectTRF`.
    """
    if not isinstance(subjects, (list, tuple)) or len(subjects) < 2:
        raise ValueError(f"subjects must be a list of at least 2 (X, y) pairs; got {type(subjects).__name__}"
                         f" of length {len(subjects) if hasattr(subjects, '__len__') else 'n/a'}.")
    sfreq, lags, center, xp = setup(tmin, tmax, sfreq, direction, fit_intercept, centering, edge, backend, device,
                                    scoring)
    alphas = _check_alphas(alpha)
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

"""Concept erasure: how many SAE features carry a concept (AudioSAE appendix).

For each concept (a binary label per clip: a vowel, "speech", a speaker's sex,
...) features are ranked by their Fisher score on the training clips and removed
in that order. After each removal an unregularised logistic regression is refit
on the remaining features and scored by the Matthews correlation coefficient
(MCC) on held-out clips. A concept carried by few features loses its MCC after
few removals; the report gives the MCC curve and the fraction of features whose
removal brings the MCC below a set level.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import matthews_corrcoef
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from .._check import _check_range, _ensure_int
from .._docs import fill_doc
from ..errors import InputError
from ._codes import _check_dense_2d, _check_labels, _random_state_int

logger = logging.getLogger(__name__)


def fisher_scores(X, y):
    """Fisher score of each feature for class labels ``y``.

    The ratio of between-class to within-class variance,
    ``sum_c n_c (mu_c - mu)^2 / sum_c n_c var_c``. A feature that is constant
    within classes but differs between them scores ``inf``; a constant feature
    scores 0.

    Parameters
    ----------
    X : ndarray | scipy.sparse array, shape (n_samples, n_features)
        Features (e.g. clip-level SAE codes).
    y : array-like, shape (n_samples,)
        Class label of each sample (at least two classes).

    Returns
    -------
    scores : ndarray, shape (n_features,)
        Fisher score of each feature (float64).
    """
    X = _check_dense_2d(X, "X")
    y = _check_labels(y, X.shape[0], "y")
    classes = np.unique(y)
    if classes.shape[0] < 2:
        raise InputError(f"y must hold at least two classes, got only {classes.tolist()!r}.")
    mu = X.mean(axis=0)
    between = np.zeros(X.shape[1])
    within = np.zeros(X.shape[1])
    for c in classes:
        Xc = X[y == c]
        between += Xc.shape[0] * (Xc.mean(axis=0) - mu) ** 2
        within += Xc.shape[0] * Xc.var(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(within > 0, between / np.where(within > 0, within, 1.0), np.where(between > 0, np.inf, 0.0))
    return scores


def _concept_table(labels, n_samples):
    """Binary concept columns (n_samples, n_concepts) from labels or a table."""
    if isinstance(labels, pd.DataFrame):
        table = labels
    else:
        arr = _check_labels(labels, n_samples, "labels")
        table = pd.get_dummies(pd.Series(arr), prefix="", prefix_sep="")
    if table.shape[0] != n_samples:
        raise InputError(f"labels must have one row per sample ({n_samples}), got {table.shape[0]}.")
    out = {}
    for name in table.columns:
        col = table[name].to_numpy()
        values = set(np.unique(col).tolist())
        if not values <= {0, 1}:  # True == 1 and False == 0
            raise InputError(f"Concept column {name!r} must be binary (0/1 or bool), got values {sorted(values)!r}.")
        if len(values) < 2:
            raise InputError(f"Concept {name!r} has a single class; it needs positive and negative samples.")
        out[str(name)] = col.astype(bool)
    return out


def _fit_mcc(X_train, y_train, X_test, y_test, max_iter):
    """MCC on the test set of an unregularised logistic regression."""
    if X_train.shape[1] == 0:
        return 0.0
    scaler = StandardScaler().fit(X_train)
    model = LogisticRegression(C=np.inf, max_iter=max_iter)
    with warnings.catch_warnings():
        # Separable data make an unregularised fit diverge; its predictions are still valid.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(X_train), y_train)
    return float(matthews_corrcoef(y_test, model.predict(scaler.transform(X_test))))


@dataclass(frozen=True)
class ErasureResult:
    """Concept-erasure curves, rankings and summary.

    Attributes
    ----------
    curves : pandas.DataFrame
        ``concept``, ``n_removed``, ``last_removed`` (feature id removed at this
        step, -1 at 0), ``mcc`` (held-out).
    ranking : pandas.DataFrame
        ``concept``, ``rank`` (0 = removed first), ``feature``, ``fisher_score``.
    summary : pandas.DataFrame
        ``concept``, ``mcc_full`` (no feature removed), ``level``,
        ``n_to_erase`` (fewest removals with MCC < level; NaN if not reached
        within the evaluated removals), ``fraction_to_erase`` (``n_to_erase`` /
        number of features), ``n_features``.
    """

    curves: pd.DataFrame
    ranking: pd.DataFrame
    summary: pd.DataFrame


def _removal_grid(n_removed, n_features):
    if n_removed is None:
        return np.arange(0, min(n_features, 100) + 1)
    grid = np.unique(np.asarray(n_removed, dtype=np.int64))
    if grid.size == 0 or grid.min() < 0 or grid.max() > n_features:
        raise InputError(
            f"n_removed must hold integers in [0, {n_features}] (number of features), got {np.asarray(n_removed)!r}."
        )
    return grid


@fill_doc
def concept_erasure(
    X, labels, *, n_removed=None, level=0.2, test_size=0.3, stop_below=False, max_iter=1000,
    random_state=None, verbose=False,
):
    """Rank features by Fisher score, remove them in order, refit and score MCC.

    Parameters
    ----------
    X : ndarray | scipy.sparse array, shape (n_clips, n_features)
        Clip-level features, e.g. mean SAE codes per clip
        (:func:`~sae_eeg.evals.clip_features`).
    labels : array-like, shape (n_clips,) | pandas.DataFrame
        Concept labels: a 1-D array (each distinct value is a concept, one versus
        rest) or a table with one binary column per concept.
    n_removed : sequence of int | None
        Numbers of removed features at which the classifier is refit. Default:
        0, 1, ..., min(F, 100).
    level : float
        MCC level for the summary's ``n_to_erase``. Default 0.2.
    test_size : float
        Share of clips held out (stratified) for the MCC. Default 0.3.
    stop_below : bool
        Stop a concept's curve at the first MCC below ``level``. Default False.
    max_iter : int
        Iterations of the logistic regression solver. Default 1000.
    %(random_state)s
    %(verbose)s

    Returns
    -------
    result : ErasureResult
        Tidy tables joinable on ``concept`` and ``feature``.

    Notes
    -----
    The Fisher ranking uses the training clips only. Features are standardised on
    the training clips before each unregularised (``C=inf``) fit; convergence
    warnings of separable data are silenced.
    """
    X = _check_dense_2d(X, "X")
    concepts = _concept_table(labels, X.shape[0])
    _check_range("level", level, -1, 1)
    _check_range("test_size", test_size, 0, 1, low_inclusive=False, high_inclusive=False)
    max_iter = _ensure_int(max_iter, "max_iter")
    grid = _removal_grid(n_removed, X.shape[1])
    seed = _random_state_int(random_state)
    curves, rankings, summary = [], [], []
    for concept, y in concepts.items():
        train, test = train_test_split(np.arange(X.shape[0]), test_size=test_size, stratify=y, random_state=seed)
        scores = fisher_scores(X[train], y[train])
        order = np.argsort(-scores, kind="stable")
        rankings.append(pd.DataFrame(
            {"concept": concept, "rank": np.arange(order.size), "feature": order, "fisher_score": scores[order]}
        ))
        mccs = []
        for n in grid:
            keep = np.sort(order[n:])
            mcc = _fit_mcc(X[np.ix_(train, keep)], y[train], X[np.ix_(test, keep)], y[test], max_iter)
            mccs.append(mcc)
            if verbose:
                logger.info("concept %s: %d removed, MCC %.3f", concept, n, mcc)
            if stop_below and mcc < level:
                break
        steps = grid[: len(mccs)]
        curves.append(pd.DataFrame({
            "concept": concept, "n_removed": steps,
            "last_removed": np.where(steps > 0, order[np.maximum(steps - 1, 0)], -1), "mcc": mccs,
        }))
        below = steps[np.asarray(mccs) < level]
        n_to_erase = float(below.min()) if below.size else np.nan
        summary.append({
            "concept": concept, "mcc_full": mccs[0] if steps[0] == 0 else np.nan, "level": float(level),
            "n_to_erase": n_to_erase, "fraction_to_erase": n_to_erase / X.shape[1], "n_features": X.shape[1],
        })
    return ErasureResult(
        curves=pd.concat(curves, ignore_index=True),
        ranking=pd.concat(rankings, ignore_index=True),
        summary=pd.DataFrame(summary),
    )

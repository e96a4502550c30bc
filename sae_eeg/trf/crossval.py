"""Cross-validation on per-trial statistics: folds, scorers and the held-out score of every alpha.

A training set's statistics are the total minus its held-out trials; Pearson r, MSE and r^2 of a
held-out trial follow from its statistics (Spearman predicts), averaged over a fold's trials (mTRFpy).
"""

from __future__ import annotations

import warnings
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
from scipy import stats as sp_stats

from . import fast
from ._backend import get_ops, ops_of
from ._check import _check_number, _check_option
from .lags import EDGES, design_rows, direction_lags, row_range
from .ridge import CENTERINGS, RidgePath, ridge_per_output


class AlphaAtGridEdgeWarning(UserWarning):
    """Cross-validation chose the smallest or the largest penalty of the grid."""


Moments = namedtuple("Moments", "ss_y ss_hat cross d_mean n CW c_h", defaults=(None, None))
Moments.__doc__ = "Centred held-out sums of squares, cross product, mean difference, rows (dense: C_h W, c_h)."


def moments(W, b, held, xp=None, dense=False):
    """:class:`Moments` (each (A, B, C)) of a held-out trial from its statistics, for weights ``W`` (A, B,
    P, C) and intercepts ``b`` (A, B, C). Of centred predictions: the intercept never enters a
    difference of large sums. One design with its generators: ``w^T X^T X w`` without the P x P
    product (:func:`~sae_eeg.trf.fast.quadratic_forms`), unless ``dense``. ``xp``: default, the
    backend holding ``W``."""
    xp = ops_of(W) if xp is None else xp
    xtx, xty, sx, sy, yty, n = held.xtx[0], held.xty[0], held.sx[0], held.sy[0], held.yty[0], held.n[0]
    (n_A, n_B, n_P, n_C), CW = W.shape, None
    W_B = xp.permute(W, (1, 2, 0, 3)).reshape(n_B, n_P, n_A * n_C)     # all alphas as columns (a free view of
                                                                       # the solvers' output): one product per design
    def per_alpha(a):                                                  # (B, A * C) -> (A, B, C)
        return xp.permute(a.reshape(n_B, n_A, n_C), (1, 0, 2))

    sx_W = per_alpha((sx[:, None] @ W_B)[:, 0])                        # column sums of the predictions
    if n_B == 1 and held.edge_rows is not None and not dense:
        ss_hat = per_alpha(fast.quadratic_forms(held.autocov[0, 0], held.edge_rows[0, 0], W_B[0], xp)[None]) \
            - sx_W * sx_W / n
    else:
        CW = (xtx - sx[..., :, None] * sx[..., None, :] / n) @ W_B        # centred held-out covariance
        ss_hat, CW = per_alpha((CW * W_B).sum(1)), xp.permute(CW.reshape(n_B, n_P, n_A, n_C), (2, 0, 1, 3))
    c_h = xty - sx[..., :, None] * sy / n                               # centred held-out cross-covariance
    cross = xp.einsum("bpc,abpc->abc", c_h, W)
    return Moments(yty - sy * sy / n, ss_hat, cross, sy / n - (sx_W / n + b), n, CW, c_h)


def _pearson_moments(m):
    with np.errstate(divide="ignore", invalid="ignore"):         # constant prediction: NaN
        return m.cross / (m.ss_y * m.ss_hat) ** 0.5


def _sse(m):
    return m.ss_y - 2 * m.cross + m.ss_hat + m.n * m.d_mean * m.d_mean


def pearson(y_true, y_pred):
    """Pearson r per column of (n_times, n_outputs) arrays, shape (n_outputs,)."""
    yc, pc = y_true - y_true.mean(0), y_pred - y_pred.mean(0)
    return (yc * pc).sum(0) / np.sqrt((yc * yc).sum(0) * (pc * pc).sum(0))


Scorer = namedtuple("Scorer", "from_predictions from_moments greater_is_better")
Scorer.__doc__ = "A metric: from predictions (numpy) and, where possible, from held-out :class:`Moments`."


SCORERS = {
    "pearson": Scorer(pearson, _pearson_moments, True),
    "spearman": Scorer(lambda y, p: pearson(sp_stats.rankdata(y, axis=0), sp_stats.rankdata(p, axis=0)), None, True),
    "mse": Scorer(lambda y, p: ((y - p) ** 2).mean(0), lambda m: _sse(m) / m.n, False),
    "r2": Scorer(lambda y, p: 1 - ((y - p) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0),
                 lambda m: 1 - _sse(m) / m.ss_y, True),
}
STATS_SCORERS = tuple(k for k, v in SCORERS.items() if v.from_moments is not None)


def setup(tmin, tmax, sfreq, direction, fit_intercept, centering, edge, backend, device, scoring="pearson"):
    """``(sfreq, lags, intercept rule or None, ops)`` from the arguments every analysis shares, checked."""
    sfreq = _check_number("sfreq", sfreq, low=0, inclusive=False)
    for name, value, allowed in (("edge", edge, EDGES), ("centering", centering, CENTERINGS),
                                 ("fit_intercept", fit_intercept, (True, False))) + (
            (("scoring", scoring, STATS_SCORERS),) if scoring else ()):
        _check_option(name, value, allowed)
    return sfreq, direction_lags(tmin, tmax, sfreq, direction), centering if fit_intercept else None, \
        get_ops(backend, device)


def make_folds(n_trials, cv=None, *, shuffle=False, random_state=None):
    """Held-out trials of each fold: ``cv`` groups (``numpy.array_split``; ``None``, -1: one trial each)."""
    n_trials = _check_number("n_trials", n_trials, integer=True)
    if n_trials < 2:
        raise ValueError(f"Cross-validation needs at least 2 trials; got {n_trials}. Pass the "
                         "data as a list of trials (or split a long recording into segments).")
    k = n_trials if cv in (None, -1) else _check_number("cv", cv, low=2, high=n_trials, integer=True)
    order = np.arange(n_trials)
    if shuffle:
        np.random.default_rng(random_state).shuffle(order)
    return [np.sort(f) for f in np.array_split(order, k)]


def predict_rows(x, W, b, lags, start, stop, xp):
    """Predictions (A, n_rows, C) of rows ``start..stop-1`` of a trial by one design for every alpha."""
    return design_rows(x, lags, np.arange(start, stop), xp)[None] @ W[:, 0] + b[:, 0, None, :]


def fold_paths(stats, alphas, folds, *, centering, solver, xp, penalty_scale=None):
    """The decomposed training system of every fold (kept: for many response parts, e.g. null samples)."""
    total = stats.total()
    return [RidgePath(total.minus(stats.total(xp.index(test))), alphas, centering=centering, solver=solver,
                      penalty_scale=penalty_scale, xp=xp, overwrite=True) for test in folds]


def fold_scores(stats, alphas, folds, *, centering, scoring, solver, xp=None, trials=None, lags=None, edge="zero",
                penalty_scale=None, paths=None):
    """Held-out scores of every fold, alpha, design and output.

    ``stats``: per-trial statistics; ``folds``: the held-out trials of each fold (:func:`make_folds`);
    ``scoring``: a key of :data:`SCORERS`; ``alphas``, ``centering``, ``solver``, ``penalty_scale``, ``xp``
    as :class:`~sae_eeg.trf.ridge.RidgePath` (``xp``: default, the backend holding ``stats``); ``trials``
    ``(X, Y)``, ``lags``, ``edge``: only for Spearman;
    ``paths``: the folds' systems from :func:`fold_paths` (``stats`` then share their stimulus part).
    Returns (n_folds, n_alphas, B, n_outputs): means over each fold's held-out trials.
    """
    _check_option("scoring", scoring, SCORERS)
    xp = ops_of(stats.sx) if xp is None else xp
    scorer, total, out = SCORERS[scoring], stats.total(), []
    for k, test in enumerate(folds):
        held = stats.total(xp.index(test))
        if paths is None:
            train = total.minus(held)
            path = RidgePath(train, alphas, centering=centering, solver=solver, penalty_scale=penalty_scale,
                             xp=xp, overwrite=True)                              # train: a new array
        else:
            path = paths[k]
            train = path.stats.with_response(*(getattr(total, f) - getattr(held, f) for f in ("xty", "sy", "yty")))
        W, b = path.solve(train)
        per_trial = []
        for i in test:
            if scorer.from_moments is not None:
                per_trial.append(xp.to_numpy(scorer.from_moments(moments(W, b, stats.trial(int(i)), xp))))
                continue
            x, y = trials[0][i], trials[1][i]
            start, stop = row_range(x.shape[0], lags, edge)
            pred = xp.to_numpy(predict_rows(x, W, b, lags, start, stop, xp))
            per_trial.append(np.stack([scorer.from_predictions(xp.to_numpy(y[start:stop]), p) for p in pred])[:, None])
        out.append(np.mean(per_trial, axis=0))
    return np.stack(out)


def best_alpha_index(mean_scores, scoring, per_output):
    """Index (n_outputs,) of the best alpha per output (or of the best mean for all) of scores (n_alphas,
    n_outputs); ties go to the first (mTRFpy's argmax)."""
    sign = 1.0 if SCORERS[scoring].greater_is_better else -1.0
    s = sign * np.nan_to_num(mean_scores, nan=-np.inf)
    if per_output:
        return np.argmax(s, axis=0)
    return np.full(s.shape[1], np.argmax(s.mean(axis=1)))


def warn_at_grid_edge(alphas, index):
    """Warn when cross-validation chose the smallest or the largest of ``alphas`` (index: the alpha
    chosen for each model, any shape), with a wider grid to try."""
    if len(alphas) < 2:
        return
    chosen, decades = alphas[np.asarray(index).ravel()], np.log10(alphas[alphas > 0] if any(alphas > 0) else [1.0])
    lo, hi = np.floor(decades.min()), np.ceil(decades.max())
    for side, hit, (a, b) in (("largest", chosen == alphas.max(), (lo, hi + 3)),
                              ("smallest", chosen == alphas.min(), (lo - 3, hi))):
        if hit.any():
            warnings.warn(
                f"Cross-validation chose the {side} alpha of the grid ({chosen[hit][0]:g}) for {hit.sum()} of "
                f"{hit.size} models: the best penalty may lie beyond the grid. Try a wider one, e.g. "
                f"alpha=np.logspace({a:g}, {b:g}, {int(b - a) + 1}). Silence with "
                "warnings.filterwarnings('ignore', category=AlphaAtGridEdgeWarning).", AlphaAtGridEdgeWarning,
                stacklevel=3)


@dataclass(frozen=True)
class NestedCV:
    """Result of :func:`nested_fold_scores`.

    Attributes
    ----------
    scores, alphas : ndarray, shape (n_outer, n_outputs)
        Score on each outer test fold of the model refit on its training trials with the alpha
        chosen by the inner cross-validation (an unbiased estimate), and that alpha.
    """

    scores: np.ndarray
    alphas: np.ndarray


def nested_fold_scores(stats, alphas, *, cv_outer=None, cv_inner=None, centering="lagged",
                       scoring="pearson", solver="auto", per_output=False, xp):
    """Nested cross-validation (:class:`NestedCV`) on per-trial statistics of one design (N >= 3), no
    covariance recomputed: ``alphas`` searched by ``cv_inner`` folds inside each of ``cv_outer`` (``None``:
    leave one trial out); ``centering``, ``scoring`` (from statistics), ``solver``, ``xp`` as
    :func:`fold_scores`; ``per_output``: an alpha per output."""
    _check_option("scoring", scoring, STATS_SCORERS)
    n = len(stats.n)
    if n < 3:
        raise ValueError(f"Nested cross-validation needs at least 3 trials; got {n}.")
    alphas = np.asarray(alphas, dtype=np.float64)
    scores, chosen = [], []
    for test in make_folds(n, cv_outer):
        train_idx = np.setdiff1d(np.arange(n), test)
        inner_stats = stats.subset(xp.index(train_idx))
        inner_cv = None if cv_inner is None else min(cv_inner, len(train_idx))
        inner = fold_scores(inner_stats, alphas, make_folds(len(train_idx), inner_cv), centering=centering,
                            scoring=scoring, solver=solver, xp=xp)[:, :, 0]
        a_C = alphas[best_alpha_index(inner.mean(axis=0), scoring, per_output)]
        W, b = ridge_per_output(inner_stats.total(), a_C, centering=centering, solver=solver, xp=xp)
        per = [xp.to_numpy(SCORERS[scoring].from_moments(moments(W[None], b[None], stats.trial(int(i)), xp)))[0, 0]
               for i in test]
        scores.append(np.mean(per, axis=0))
        chosen.append(a_C)
    return NestedCV(np.stack(scores), np.stack(chosen))

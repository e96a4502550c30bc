"""Cross-validation of lagged ridge models on per-trial sufficient statistics.

A training set's statistics are the total minus its held-out trials; each fold needs
one matrix decomposition for every alpha (:mod:`~sae_eeg.trf.solvers`); Pearson r, MSE
and r^2 of each held-out trial follow from its statistics without predicting (Spearman
needs predictions). Scores are computed per held-out trial and averaged over the
trials of a fold (mTRFpy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sp_stats

from ._check import _check_number, _check_option
from .lags import _lag_rows, lagged_quadratic_forms, row_range
from .solvers import ridge_path, ridge_per_output


def _moments_from_stats(W, b, held, xp):
    """Centred second moments of a held-out trial from its statistics, no predictions.

    ``W`` is (A, [B, ]P, C) and ``b`` (A, [B, ]C). Returns ``(ss_y, ss_hat, cross, d_mean,
    n)``: the sums of squares of ``y - mean(y)`` and ``y_hat - mean(y_hat)``, their cross
    product, and ``mean(y) - mean(y_hat)``, each broadcast to (A, [B, ]C). The moments
    are of the centred predictions, so the intercept (which can be large next to the
    prediction's variance) never enters a difference of large sums. A trial with the
    generators of its ``X^T X`` (:class:`~sae_eeg.trf.lags.LagStats`) gives
    ``w^T X^T X w`` without the P x P product (:func:`lagged_quadratic_forms`).
    """
    xtx, xty, sx, sy, yty, n = held.xtx[0], held.xty[0], held.sx[0], held.sy[0], held.yty[0], held.n[0]
    sx_W = (sx[None, ..., None, :] @ W)[..., 0, :]             # column sums of the predictions
    if W.ndim == 3 and held.autocov is not None:                 # (A, P, C): all alphas as columns
        n_A, n_P, n_C = W.shape
        q = lagged_quadratic_forms(held.autocov[0], held.edge_rows[0],
                                   W.swapaxes(0, 1).reshape(n_P, n_A * n_C), xp)
        ss_hat = q.reshape(n_A, n_C) - sx_W * sx_W / n
    else:
        C_h = xtx - (sx[..., :, None] * sx[..., None, :]) / n    # centred lagged covariance
        ss_hat = ((C_h[None] @ W) * W).sum(axis=-2)
    c_h = xty - (sx[..., :, None] * sy[..., None, :]) / n       # centred cross-covariance
    cross = xp.einsum("...pc,a...pc->a...c", c_h, W)
    ss_y = yty - sy * sy / n
    d_mean = sy / n - (sx_W / n + b)
    return ss_y, ss_hat, cross, d_mean, n


def _pearson_stats(W, b, held, xp):
    ss_y, ss_hat, cross, _, _ = _moments_from_stats(W, b, held, xp)
    with np.errstate(divide="ignore", invalid="ignore"):     # constant prediction: NaN
        return cross / xp.sqrt(ss_y * ss_hat)


def _sse(W, b, held, xp):
    ss_y, ss_hat, cross, d_mean, n = _moments_from_stats(W, b, held, xp)
    return ss_y - 2 * cross + ss_hat + n * d_mean * d_mean, ss_y, n


def _mse_stats(W, b, held, xp):
    sse, _, n = _sse(W, b, held, xp)
    return sse / n


def _r2_stats(W, b, held, xp):
    sse, ss_y, _ = _sse(W, b, held, xp)
    return 1 - sse / ss_y


def pearson(y_true, y_pred):
    """Pearson r per column, shape (n_outputs,) (inputs (n_times, n_outputs))."""
    yc, pc = y_true - y_true.mean(0), y_pred - y_pred.mean(0)
    return (yc * pc).sum(0) / np.sqrt((yc * yc).sum(0) * (pc * pc).sum(0))


def spearman(y_true, y_pred):
    """Spearman rank correlation per column, shape (n_outputs,)."""
    return pearson(sp_stats.rankdata(y_true, axis=0), sp_stats.rankdata(y_pred, axis=0))


def mse(y_true, y_pred):
    """Mean squared error per column, shape (n_outputs,)."""
    return ((y_true - y_pred) ** 2).mean(0)


def r2(y_true, y_pred):
    """Coefficient of determination per column, shape (n_outputs,)."""
    return 1 - ((y_true - y_pred) ** 2).sum(0) / ((y_true - y_true.mean(0)) ** 2).sum(0)


@dataclass(frozen=True)
class Scorer:
    """A metric: from predictions (numpy) and, where possible, from sufficient statistics."""

    from_predictions: object
    from_stats: object
    greater_is_better: bool


SCORERS = {
    "pearson": Scorer(pearson, _pearson_stats, True),
    "spearman": Scorer(spearman, None, True),
    "mse": Scorer(mse, _mse_stats, False),
    "r2": Scorer(r2, _r2_stats, True),
}


def make_folds(n_trials, cv=None, *, shuffle=False, random_state=None):
    """Test-trial indices of each fold.

    Parameters
    ----------
    n_trials : int
        Number of trials (at least 2).
    cv : int | None
        Number of folds (contiguous groups of trials, as ``numpy.array_split``);
        ``None`` or ``-1`` is leave-one-trial-out.
    shuffle : bool
        Shuffle the trials before splitting.
    random_state : int | numpy.random.Generator | None
        Seed or generator for the shuffle.

    Returns
    -------
    folds : list of ndarray of int
        The held-out trials of each fold.
    """
    n_trials = _check_number("n_trials", n_trials, integer=True)
    if n_trials < 2:
        raise ValueError(f"Cross-validation needs at least 2 trials; got {n_trials}. Pass the "
                         "data as a list of trials (or split a long recording into segments).")
    k = n_trials if cv in (None, -1) else _check_number("cv", cv, low=2, high=n_trials, integer=True)
    order = np.arange(n_trials)
    if shuffle:
        np.random.default_rng(random_state).shuffle(order)
    return [np.sort(f) for f in np.array_split(order, k)]


def predict_rows(x_TF, W, b, lags, start, stop, xp):
    """Predictions of rows ``start..stop-1`` of a trial for every alpha: (A, n_rows, C)."""
    rows = _lag_rows(x_TF, lags, start, stop, xp)
    return rows[None] @ W + b[:, None, :]


def fold_scores(stats, alphas, folds, *, fit_intercept, scoring, solver, xp, trials=None,
                lags=None, edge="zero", penalty_scale=None):
    """Scores of every fold, alpha and output.

    Parameters
    ----------
    stats : LagStats
        Per-trial statistics (N = n_trials).
    alphas : ndarray, shape (n_alphas,)
        Penalties.
    folds : list of ndarray of int
        Held-out trials per fold (:func:`make_folds`).
    fit_intercept : bool
        Unpenalised intercept.
    scoring : str
        Key of :data:`SCORERS`.
    solver : str
        Key of :data:`~sae_eeg.trf.solvers.SOLVERS` or 'auto'.
    xp : ops
        Backend namespace.
    trials : tuple (list of X, list of Y) | None
        Backend arrays of the trials; needed only for scorers without a statistics form.
    lags : ndarray of int | None
        Lags, with ``trials``.
    edge : str
        Edge mode, with ``trials``.
    penalty_scale : array, shape (P,) | None
        Relative penalty per column (banded ridge).

    Returns
    -------
    scores : ndarray, shape (n_folds, n_alphas, [B, ]n_outputs)
        Mean over the held-out trials of each fold (B: batch of independent models).
    """
    _check_option("scoring", scoring, SCORERS)
    scorer = SCORERS[scoring]
    total = stats.total()
    out = []
    for test in folds:
        train = total.minus(stats.total(xp.index(test)))
        W, b = ridge_path(train, alphas, fit_intercept=fit_intercept, solver=solver, xp=xp,
                          penalty_scale=penalty_scale, overwrite=True)     # train: a new array
        per_trial = []
        for i in test:
            if scorer.from_stats is not None:
                per_trial.append(xp.to_numpy(scorer.from_stats(W, b, stats.trial(int(i)), xp)))
            else:
                x_TF, y_TC = trials[0][i], trials[1][i]
                start, stop = row_range(x_TF.shape[0], lags, edge)
                pred = xp.to_numpy(predict_rows(x_TF, W, b, lags, start, stop, xp))
                y_true = xp.to_numpy(y_TC[start:stop])
                per_trial.append(np.stack([scorer.from_predictions(y_true, p) for p in pred]))
        out.append(np.mean(per_trial, axis=0))
    return np.stack(out)


def best_alpha_index(mean_scores, scoring, per_output):
    """Index of the best alpha per output, shape (n_outputs,), from scores (n_alphas, n_outputs).

    With ``per_output=False`` the alpha with the best score averaged over outputs is
    used for every output. Ties go to the first alpha (as mTRFpy's argmax).
    """
    sign = 1.0 if SCORERS[scoring].greater_is_better else -1.0
    s = sign * np.nan_to_num(mean_scores, nan=-np.inf)
    if per_output:
        return np.argmax(s, axis=0)
    return np.full(s.shape[1], np.argmax(s.mean(axis=1)))


@dataclass(frozen=True)
class NestedCV:
    """Result of :func:`nested_fold_scores`.

    Attributes
    ----------
    scores : ndarray, shape (n_outer, n_outputs)
        Score on each outer test fold of the model refit on its training trials with
        the alpha chosen by the inner cross-validation (an unbiased accuracy estimate).
    alphas : ndarray, shape (n_outer, n_outputs)
        The alpha chosen in each outer fold.
    """

    scores: np.ndarray
    alphas: np.ndarray


def nested_fold_scores(stats, alphas, *, cv_outer=None, cv_inner=None, fit_intercept=True,
                       scoring="pearson", solver="auto", per_output=False, xp):
    """Nested cross-validation on per-trial statistics (no covariance is recomputed).

    Parameters
    ----------
    stats : LagStats
        Per-trial statistics (N = n_trials >= 3).
    alphas : ndarray, shape (n_alphas,)
        Penalties searched by the inner loop.
    cv_outer, cv_inner : int | None
        Folds of the outer and inner loops (``None``: leave one trial out).
    fit_intercept : bool
        Unpenalised intercept.
    scoring : 'pearson' | 'mse' | 'r2'
        Metric (from statistics).
    solver : str
        See :data:`~sae_eeg.trf.solvers.SOLVERS`.
    per_output : bool
        Choose alpha per output.
    xp : ops
        Backend namespace.

    Returns
    -------
    result : NestedCV
        Outer-fold scores and the alphas chosen.
    """
    _check_option("scoring", scoring, tuple(k for k, v in SCORERS.items() if v.from_stats))
    n = stats.n_trials
    if n < 3:
        raise ValueError(f"Nested cross-validation needs at least 3 trials; got {n}.")
    alphas = np.asarray(alphas, dtype=np.float64)
    scores, chosen = [], []
    for test in make_folds(n, cv_outer):
        train_idx = np.setdiff1d(np.arange(n), test)
        inner_stats = stats.subset(xp.index(train_idx))
        inner_cv = None if cv_inner is None else min(cv_inner, len(train_idx))
        inner = fold_scores(inner_stats, alphas, make_folds(len(train_idx), inner_cv),
                            fit_intercept=fit_intercept, scoring=scoring, solver=solver, xp=xp)
        a_C = alphas[best_alpha_index(inner.mean(axis=0), scoring, per_output)]
        W, b = ridge_per_output(inner_stats.total(), a_C, fit_intercept=fit_intercept,
                                solver=solver, xp=xp)
        per = [xp.to_numpy(SCORERS[scoring].from_stats(W[None], b[None], stats.trial(int(i)), xp))[0]
               for i in test]
        scores.append(np.mean(per, axis=0))
        chosen.append(a_C)
    return NestedCV(np.stack(scores), np.stack(chosen))

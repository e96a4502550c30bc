"""Ridge TRFs of many subjects from per-stimulus lagged statistics.

Every subject of a listening study hears the same stimuli, so the lagged design of a
stimulus (and its ``X^T X``) is shared: the statistics of one stimulus are computed
once, with the outputs of every subject who heard it stacked as columns
(:func:`stimulus_stats`), and a ridge solve for a set of training stimuli factorises
``X^T X`` once for all subjects who trained on that set.

This module holds all the linear algebra of the feature attribution and of the
acoustic TRFs (centred ridge solves on column subsets, held-out Pearson r from
statistics), so that it can move onto the TRF core's statistics type and ridge path
in one place. Conventions are the engine's (:mod:`sae_eeg.trf`): lag-major columns
(column ``j * n_predictors + k`` is predictor ``k`` at ``lags[j]``), an unpenalised
intercept, ``(C + alpha I) w = c`` on the centred system. Edges are ``'valid'``: only
samples whose every lagged input lies inside the run enter a fit or a score, because
band-passed predictors are not zero just outside their stimulus (the filter spreads
them), so zero padding would misstate them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.linalg

from ..errors import InputError
from ..trf import lagged_stats

#: Per-sample ridge penalties compared by default (predictors scaled to unit root mean square).
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def check_alphas(alphas):
    """``alphas`` as a 1-D float array of positive penalties."""
    values = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if values.ndim != 1 or values.size == 0 or not np.all(values > 0):
        raise InputError(f"alphas must be a non-empty sequence of positive penalties, got {alphas!r}.")
    return values


@dataclasses.dataclass(frozen=True)
class StackedStats:
    """Lagged statistics of one stimulus with the outputs of several subjects as columns.

    Attributes
    ----------
    xtx : ndarray, shape (P, P)
        ``X^T X`` of the lagged design (P = n_lags * n_predictors).
    xty : ndarray, shape (P, O)
        ``X^T Y`` for all stacked outputs.
    sx : ndarray, shape (P,)
        Column sums of the design.
    sy, yty : ndarray, shape (O,)
        Sums and sums of squares of the outputs.
    n : float
        Samples.
    columns : dict of str -> slice
        Output columns of each subject.
    """

    xtx: np.ndarray
    xty: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    yty: np.ndarray
    n: float
    columns: dict


def stimulus_stats(design, outputs, lags, *, edge="valid"):
    """Statistics of one stimulus for every subject who heard it.

    Parameters
    ----------
    design : ndarray, shape (T, K)
        Predictors of the stimulus.
    outputs : dict of str -> ndarray, shape (T, O_s)
        Each subject's outputs (EEG channels or components).
    lags : ndarray of int
        Contiguous lags in samples.
    edge : 'valid' | 'zero'
        Edge handling (:mod:`sae_eeg.trf.lags`).

    Returns
    -------
    stats : StackedStats
    """
    names = list(outputs)
    widths = [outputs[s].shape[1] for s in names]
    edges = np.concatenate([[0], np.cumsum(widths)])
    stacked = np.hstack([outputs[s] for s in names]) if names else np.zeros((len(design), 0))
    st = lagged_stats([np.asarray(design, dtype=np.float64)], [stacked], lags, edge=edge, per_trial=False)
    return StackedStats(st.xtx[0, 0], st.xty[0, 0], st.sx[0, 0], st.sy[0], st.yty[0], float(st.n[0]),
                        {s: slice(int(a), int(b)) for s, a, b in zip(names, edges[:-1], edges[1:])})


def lag_major_columns(predictors, n_predictors, n_lags):
    """Design columns of ``predictors`` (indices) at every lag, in lag-major order."""
    predictors = np.asarray(predictors, dtype=int)
    return (np.arange(n_lags)[:, None] * n_predictors + predictors[None, :]).ravel()


class TrainingSet:
    """Summed statistics of some stimuli, for the subjects who heard all of them.

    ``X^T X`` is summed once; each subject's ``X^T y`` comes from its own columns.
    """

    def __init__(self, stats, subjects):
        self.subjects = list(subjects)
        self.xtx = sum(st.xtx for st in stats)
        self.sx = sum(st.sx for st in stats)
        self.n = float(sum(st.n for st in stats))
        self.xty = np.hstack([sum(st.xty[:, st.columns[s]] for st in stats) for s in self.subjects])
        self.sy = np.concatenate([sum(st.sy[st.columns[s]] for st in stats) for s in self.subjects])

    def solve(self, alpha, keep=None):
        """Ridge weights (P_keep, O) of the design columns ``keep`` (default all) for every output.

        ``alpha`` is per sample: the penalty is ``alpha * n`` on centred statistics
        (predictors are standardised, so the diagonal of the centred ``X^T X`` is about ``n``).
        """
        keep = np.arange(len(self.sx)) if keep is None else keep
        sx = self.sx[keep]
        C = self.xtx[np.ix_(keep, keep)] - np.outer(sx, sx) / self.n
        C[np.diag_indices_from(C)] += alpha * self.n
        c = self.xty[keep] - np.outer(sx, self.sy) / self.n
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(C, overwrite_a=True), c)

    def output_columns(self, subject, width):
        """Columns of ``subject`` in the solved weights."""
        i = self.subjects.index(subject)
        return slice(i * width, (i + 1) * width)


def heldout_pearson(W, keep, stats, subjects):
    """Pearson r of each output on a held-out stimulus, from its statistics.

    Parameters
    ----------
    W : ndarray, shape (P_keep, len(subjects) * O_s)
        Weights (from :meth:`TrainingSet.solve`) of the subjects, stacked in order.
    keep : ndarray of int
        Design columns the weights belong to.
    stats : StackedStats
        Statistics of the held-out stimulus.
    subjects : list of str
        Subjects of the columns of ``W``.

    Returns
    -------
    r : ndarray, shape (len(subjects) * O_s,)
        0 where the prediction is constant (a model without predictors), NaN where
        the output is.
    """
    cols = np.concatenate([np.arange(stats.columns[s].start, stats.columns[s].stop) for s in subjects])
    xty, sy, yty = stats.xty[np.ix_(keep, cols)], stats.sy[cols], stats.yty[cols]
    sx, n = stats.sx[keep], stats.n
    sw = sx @ W
    cov = np.einsum("pc,pc->c", W, xty) - sw * sy / n
    var_pred = np.einsum("pc,pc->c", W, stats.xtx[np.ix_(keep, keep)] @ W) - sw**2 / n
    var_y = yty - sy**2 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(np.maximum(var_pred, 0.0) * np.maximum(var_y, 0.0))
    return np.where(var_pred > 0, r, 0.0 * var_y / var_y)     # a constant prediction (no predictor) has r = 0


def cv_alpha(stats, train, subjects, alphas):
    """Per-sample penalty of best mean held-out r, leaving out one of the ``train`` stimuli at a time.

    Parameters
    ----------
    stats : dict of str -> StackedStats
        Statistics of every stimulus.
    train : list of str
        Stimuli to cross-validate over (the middle penalty is returned for fewer than 2).
    subjects : list of str
        Subjects who heard all of them (their mean r is maximised).
    alphas : ndarray
        Per-sample penalties.

    Returns
    -------
    alpha : float
    """
    if len(train) < 2:
        return float(alphas[len(alphas) // 2])
    everything = np.arange(len(stats[train[0]].sx))
    score = np.zeros(len(alphas))
    for held in train:
        ts = TrainingSet([stats[s] for s in train if s != held], subjects)
        for a, alpha in enumerate(alphas):
            score[a] += np.nanmean(heldout_pearson(ts.solve(alpha), everything, stats[held], subjects))
    return float(alphas[int(np.argmax(score))])


def coef_from_weights(W, n_predictors, n_lags):
    """Lag-major weights (P, O) as TRF coefficients (O, n_predictors, n_lags)."""
    return W.reshape(n_lags, n_predictors, -1).transpose(2, 1, 0)

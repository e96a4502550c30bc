"""Ridge TRFs of many subjects on the TRF core's lagged statistics and ridge path.

Every subject of a listening study hears the same stimuli, so the lagged design of a
stimulus (and its ``X^T X``) is shared: the statistics of one stimulus are computed
once by :func:`sae_eeg.trf.lagged_stats`, with the outputs of every subject who heard it
stacked as columns (:func:`stimulus_stats`); a training set is the sum of its stimuli's
statistics for the subjects who heard them all (:func:`subject_stats`), solved by one
:class:`~sae_eeg.trf.RidgePath` for all of them. Conventions are the engine's: lag-major
columns, an unpenalised intercept (``centering='lagged'``). Penalties here are per
sample (``alpha * n`` in the engine's scale): predictors are scaled to unit root mean
square, so the diagonal of the centred ``X^T X`` is about ``n``. Edges are ``'valid'``:
band-passed predictors are not zero just outside their stimulus (the filter spreads
them), so zero padding would misstate them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputError
from ..trf import SCORERS, LagStats, RidgePath, lagged_stats, make_folds, moments
from ..trf.crossval import best_alpha_index

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
    """Lagged statistics (:class:`~sae_eeg.trf.LagStats`, one trial) of one stimulus with the outputs
    of several subjects as columns; ``columns``: the output columns (slice) of each subject."""

    stats: LagStats
    columns: dict


def stimulus_stats(design, outputs, lags):
    """Statistics of one stimulus for every subject who heard it.

    Parameters
    ----------
    design : ndarray, shape (T, K)
        Predictors of the stimulus.
    outputs : dict of str -> ndarray, shape (T, O_s)
        Each subject's outputs (EEG channels or components).
    lags : ndarray of int
        Contiguous lags in samples.

    Returns
    -------
    stats : StackedStats
    """
    names = list(outputs)
    edges = np.concatenate([[0], np.cumsum([outputs[s].shape[1] for s in names])]).astype(int)
    stacked = np.hstack([outputs[s] for s in names]) if names else np.zeros((len(design), 0))
    st = lagged_stats([np.asarray(design, dtype=np.float64)], [stacked], lags, edge="valid")
    return StackedStats(st, {s: slice(a, b) for s, a, b in zip(names, edges[:-1], edges[1:])})


def subject_stats(stats, stimuli, subjects):
    """Per-trial statistics (one trial per stimulus) of the outputs of ``subjects``, stacked in order.

    Parameters
    ----------
    stats : dict of str -> StackedStats
    stimuli : list of str
        Stimuli every one of ``subjects`` heard.
    subjects : list of str

    Returns
    -------
    stats : LagStats
    """
    parts = []
    for stim in stimuli:
        st, columns = stats[stim].stats, stats[stim].columns
        cols = np.concatenate([np.arange(columns[s].start, columns[s].stop) for s in subjects])
        parts.append(st.with_response(st.xty[..., cols], st.sy[..., cols], st.yty[..., cols]))
    return LagStats.concat(parts)


def ridge_weights(train, alphas):
    """Weights (A, 1, P, O) and intercepts (A, 1, O) of summed statistics for per-sample ``alphas``."""
    alphas = np.asarray(alphas, dtype=np.float64) * float(train.n[0])
    return RidgePath(train, alphas, centering="lagged").solve(train)


def heldout_pearson(W, b, held):
    """Pearson r (A, O) of each output on held-out statistics ``held`` (one trial, the weights'
    predictors): 0 where the prediction is constant, NaN where the output is."""
    m = moments(W, b, held)
    r = SCORERS["pearson"].from_moments(m)[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(m.ss_hat[:, 0] > 0, r, 0.0 * m.ss_y / m.ss_y)


def no_predictor_pearson(held):
    """Held-out r (O,) of the model without predictors (a constant prediction): 0, NaN where the output is constant."""
    ss_y = held.yty[0] - held.sy[0] ** 2 / held.n[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return 0.0 * ss_y / ss_y


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
        Per-sample penalties (each fold scales them by its own samples).

    Returns
    -------
    alpha : float
    """
    if len(train) < 2:
        return float(alphas[len(alphas) // 2])
    per_stimulus = subject_stats(stats, train, subjects)
    total, score = per_stimulus.total(), np.zeros(len(alphas))
    for held in make_folds(len(train)):
        fold = total.minus(per_stimulus.total(held))
        score += np.nanmean(heldout_pearson(*ridge_weights(fold, alphas), per_stimulus.trial(int(held[0]))), axis=1)
    return float(alphas[best_alpha_index(score[:, None], "pearson", per_output=False)[0]])


"""Many single-feature TRFs at once, and fits that share each stimulus's statistics across subjects.

Each feature gets its own TRF against every output: separate designs solved as one batch, chunk
by chunk of features (a sparse matrix densified a chunk at a time); :func:`shared_stimulus_trfs`
does it for subjects who heard the same stimuli with each stimulus's statistics computed once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._check import _as_trials, _check_alphas, _check_number
from .crossval import best_alpha_index, fold_scores, make_folds, setup, warn_at_grid_edge
from .lags import row_range
from .ridge import ridge_path
from .stats import LagStats, lagged_stats


@dataclass(frozen=True)
class UnivariateTRFs:
    """Single-feature TRFs of every input feature: weights ``coef_`` (n_outputs, n_features, n_lags) laid out
    as ``TRF.coef_``; ``intercept_``, ``alpha_`` and the cross-validated ``scores_`` at it (n_outputs,
    n_features); ``cv_scores_`` of every alpha (n_alphas, n_outputs, n_features; NaN without
    cross-validation); ``lags_`` and ``times_`` (n_lags,) in samples and seconds."""

    coef_: np.ndarray
    intercept_: np.ndarray
    alpha_: np.ndarray
    cv_scores_: np.ndarray
    scores_: np.ndarray
    lags_: np.ndarray
    times_: np.ndarray


def _own_weights(W, n_lags, ones):
    """Weights (..., B, P, C) of single-feature designs as (..., C, B, n_lags) (the constant feature dropped)."""
    W = W.reshape(*W.shape[:-2], n_lags, 1 + ones, W.shape[-1])[..., 0, :]
    return np.moveaxis(W, -1, -3)


def univariate_trfs(X, y, tmin, tmax, sfreq, *, direction=1, alpha=1.0, fit_intercept=True, centering="lagged",
                    edge="zero", cv=None, scoring="pearson", alpha_per_output=False, chunk_size=128,
                    backend="numpy", device=None):
    """Fit one TRF per input feature (each feature alone), batched over features.

    ``X``: trials (n_times_i, n_features), dense or scipy sparse (densified ``chunk_size`` features at a
    time: memory ~ n_trials * chunk * n_lags^2 * 8 bytes); ``y``: output trials (n_times_i[,
    n_outputs]); ``alpha``: penalties, compared by ``cv``-fold cross-validation (``None``: leave one
    trial out; with two trials or more) per feature, or per feature and output with
    ``alpha_per_output``; ``scoring``: 'pearson', 'mse' or 'r2'; the rest as :class:`~sae_eeg.trf.TRF`.
    Returns :class:`UnivariateTRFs`.
    """
    sfreq, lags, center, xp = setup(tmin, tmax, sfreq, direction, fit_intercept, centering, edge, backend, device,
                                    scoring)
    chunk_size, alphas = _check_number("chunk_size", chunk_size, low=1, integer=True), _check_alphas(alpha)
    X_list, y_list = _as_trials(X, "X", allow_sparse=True), _as_trials(y, "y")
    if len(X_list) != len(y_list) or any(a.shape[0] != b.shape[0] for a, b in zip(X_list, y_list)):
        raise ValueError(f"X and y must hold the same trials with equal lengths; got "
                         f"{[a.shape[0] for a in X_list]} and {[b.shape[0] for b in y_list]} samples.")
    for x in X_list:
        row_range(x.shape[0], lags, edge)
    (n_feat, n_out), n_A = (X_list[0].shape[1], y_list[0].shape[1]), len(alphas)
    folds = make_folds(len(X_list), cv) if len(X_list) > 1 else None
    coef, intercept = np.empty((n_out, n_feat, len(lags))), np.empty((n_out, n_feat))
    cv_scores, best = np.full((n_A, n_out, n_feat), np.nan), np.zeros((n_out, n_feat), dtype=int)
    for f0 in range(0, n_feat, chunk_size):
        feats, st = np.arange(f0, min(f0 + chunk_size, n_feat)), None    # the last chunk's statistics freed
        st = lagged_stats([x[:, f0:f0 + len(feats)] for x in X_list], y_list, lags, edge=edge,
                          designs="separate", ones=center == "signal", xp=xp)
        if folds is not None:
            scores = fold_scores(st, alphas, folds, centering=center, scoring=scoring, solver="auto",
                                 xp=xp).mean(axis=0)                        # (A, B, C)
            cv_scores[:, :, feats] = scores.swapaxes(1, 2)
            best[:, feats] = np.stack([best_alpha_index(s, scoring, alpha_per_output) for s in
                                       scores.transpose(1, 0, 2)], axis=1)
        W, b = ridge_path(st.total(), alphas, centering=center, solver="auto", xp=xp)
        W, b = _own_weights(xp.to_numpy(W), len(lags), center == "signal"), xp.to_numpy(b)   # (A, C, B, L), (A, B, C)
        out_idx, feat_idx = np.arange(n_out)[:, None], np.arange(len(feats))[None, :]
        coef[:, feats] = W[best[:, feats], out_idx, feat_idx]
        intercept[:, feats] = b[best[:, feats], feat_idx, out_idx]
    if folds is not None:
        warn_at_grid_edge(alphas, best)
    scores = np.take_along_axis(cv_scores, best[None], axis=0)[0]
    return UnivariateTRFs(coef, intercept, alphas[best], cv_scores, scores, lags, lags / sfreq)


def shared_stimulus_trfs(groups, tmin, tmax, sfreq, *, alpha=1.0, direction=1, fit_intercept=True,
                         centering="lagged", edge="zero", chunk_size=256, backend="numpy", device=None):
    """Single-feature TRFs of many groups of runs (e.g. subjects) that share stimuli, one penalty.

    ``groups`` maps a key (a subject) to its runs ``(features, outputs)``: ``features`` (n_times,
    n_features) dense or scipy sparse, one object per stimulus, ``outputs`` (n_times, n_outputs). A
    stimulus's statistics are computed once, the outputs of all its runs as columns of one product;
    groups with the same multiset of stimuli are solved together, their outputs as columns of one
    system. Other arguments as :func:`univariate_trfs`. Returns ``{key: UnivariateTRFs}`` (no
    cross-validation: ``cv_scores_`` and ``scores_`` NaN).
    """
    sfreq, lags, center, xp = setup(tmin, tmax, sfreq, direction, fit_intercept, centering, edge, backend, device)
    alpha = _check_alphas(alpha)[:1]
    stimuli, uses, systems = {}, {}, {}
    for g, runs in groups.items():
        for r, (x, y) in enumerate(runs):
            stimuli[id(x)] = x
            uses.setdefault(id(x), []).append((g, r, np.asarray(y, dtype=np.float64)))
        systems.setdefault(tuple(sorted(id(x) for x, _ in runs)), []).append(g)
    n_feat, n_out = next(iter(stimuli.values())).shape[1], uses[next(iter(uses))][0][2].shape[1]
    coef = {g: np.empty((n_out, n_feat, len(lags))) for g in groups}
    intercept = {g: np.empty((n_out, n_feat)) for g in groups}
    for f0 in range(0, n_feat, chunk_size):
        feats = np.arange(f0, min(f0 + chunk_size, n_feat))
        parts = {}                                          # (group, run) -> statistics of that run
        for key, x in stimuli.items():                     # each stimulus once, its listeners as columns
            st = lagged_stats([x[:, f0:f0 + len(feats)]], [np.concatenate([y for *_, y in uses[key]], axis=1)],
                              lags, edge=edge, designs="separate", ones=center == "signal", xp=xp)
            for k, (g, r, _) in enumerate(uses[key]):
                cols = slice(k * n_out, (k + 1) * n_out)
                parts[g, r] = st.with_response(st.xty[..., cols], st.sy[..., cols], st.yty[..., cols])
        for members in systems.values():                  # one system per multiset of stimuli
            summed = [LagStats.concat([parts[g, r] for r in range(len(groups[g]))], xp).total() for g in members]
            stats = summed[0].with_response(*(xp.concat([getattr(s, k) for s in summed], axis=-1)
                                              for k in ("xty", "sy", "yty")))
            W, b = ridge_path(stats, alpha, centering=center, solver="auto", xp=xp)
            W, b = _own_weights(xp.to_numpy(W[0]), len(lags), center == "signal"), xp.to_numpy(b[0])
            for k, g in enumerate(members):
                cols = slice(k * n_out, (k + 1) * n_out)
                coef[g][:, feats], intercept[g][:, feats] = W[cols], b[:, cols].T
    nan = np.full((1, n_out, n_feat), np.nan)
    return {g: UnivariateTRFs(coef[g], intercept[g], np.full((n_out, n_feat), alpha[0]), nan, nan[0], lags,
                              lags / sfreq) for g in groups}

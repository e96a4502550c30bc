"""Banded ridge TRF: one penalty per feature band, found by random search on the simplex."""

from __future__ import annotations

import itertools

import numpy as np

from ._check import _check_number, _check_option, _check_pair, _is_trial_list
from .crossval import best_alpha_index, fold_scores, make_folds
from .lags import lagged_stats
from .model import TRF
from .solvers import ridge_path


class BandedTRF(TRF):
    """TRF with a separate ridge penalty for each band (group) of input features.

    The penalty of band ``b`` is ``alpha * n_bands * gamma_b`` with ``gamma`` on the
    simplex. Candidates ``gamma`` are the uniform point (plain ridge) and ``n_iter - 1``
    Dirichlet draws; for each one, every global ``alpha`` comes from one
    eigendecomposition per fold of the rescaled problem. The best (gamma, alpha) by
    mean cross-validated score is refit on all trials.

    Parameters
    ----------
    tmin, tmax, sfreq, direction, fit_intercept, edge, backend, device, scoring, cv
        As in :class:`~sae_eeg.trf.TRF`.
    bands : sequence of int
        Number of consecutive input features in each band (sums to n_features).
    alpha : sequence of float
        Global penalties searched for every gamma. Default ``(0.1, 1, ..., 1e5)``.
    n_iter : int
        Number of gamma candidates (including the uniform one). Default 20.
    concentration : float
        Dirichlet concentration of the random gammas. Default 1.0.
    random_state : int | None
        Seed of the random search.

    Attributes
    ----------
    coef_, intercept_, lags_, times_, valid_samples_, n_features_in_, n_outputs_
        As in :class:`~sae_eeg.trf.TRF`.
    band_alphas_ : ndarray, shape (n_bands,)
        Penalty of each band.
    gammas_ : ndarray, shape (n_iter, n_bands)
        Candidates tried.
    cv_scores_ : ndarray, shape (n_iter, n_alphas, n_outputs)
        Mean cross-validated score of each candidate and global alpha.
    alpha_ : ndarray, shape (n_outputs,)
        The chosen global alpha.

    Notes
    -----
    Hyper-gradient search is not implemented; the random search follows himalaya's
    ``solve_banded_ridge_random_search``.
    """

    def __init__(self, tmin, tmax, sfreq, *, bands, alpha=(0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5),
                 n_iter=20, concentration=1.0, random_state=None, direction=1, fit_intercept=True,
                 edge="zero", solver="eigh", backend="numpy", device=None, scoring="pearson", cv=None):
        super().__init__(tmin, tmax, sfreq, direction=direction, alpha=alpha,
                         fit_intercept=fit_intercept, edge=edge, solver=solver, backend=backend,
                         device=device, scoring=scoring, cv=cv)
        self.bands = bands
        self.n_iter = n_iter
        self.concentration = concentration
        self.random_state = random_state

    def fit(self, X, y):
        """Fit by random search over band penalties (needs at least two trials).

        Parameters
        ----------
        X, y : list of array
            Trials as in :meth:`TRF.fit`.

        Returns
        -------
        self : BandedTRF
        """
        sfreq, lags, alphas, xp = self._validate()
        _check_option("scoring", self.scoring, ("pearson", "mse", "r2"))
        n_iter = _check_number("n_iter", self.n_iter, low=1, integer=True)
        conc = _check_number("concentration", self.concentration, low=0, inclusive=False)
        X_list, y_list = _check_pair(X, y, x_1d=False)
        bands = np.asarray(self.bands)
        n_feat = X_list[0].shape[1]
        if bands.ndim != 1 or bands.size == 0 or not np.issubdtype(bands.dtype, np.integer) \
                or np.any(bands < 1) or bands.sum() != n_feat:
            raise ValueError(f"bands must be positive ints summing to n_features={n_feat}; got {self.bands!r}.")
        self._y_is_1d_ = not _is_trial_list(y) and np.asarray(y).ndim == 1
        X_b, y_b = [xp.asarray(a) for a in X_list], [xp.asarray(a) for a in y_list]
        stats = lagged_stats(X_b, y_b, lags, edge=self.edge, xp=xp)
        folds = make_folds(len(X_b), self.cv)
        rng = np.random.default_rng(self.random_state)
        n_bands = bands.size
        gammas = np.vstack([np.full(n_bands, 1.0 / n_bands),
                            rng.dirichlet(np.full(n_bands, conc), size=n_iter - 1)])
        gammas = np.maximum(gammas, 1e-9)
        band_of_feature = np.repeat(np.arange(n_bands), bands)
        scores = []
        for g in gammas:
            scale = xp.asarray(np.tile(g[band_of_feature] * n_bands, len(lags)))
            scores.append(fold_scores(stats, alphas, folds, fit_intercept=self.fit_intercept,
                                      scoring=self.scoring, solver=self.solver, xp=xp,
                                      penalty_scale=scale).mean(axis=0))
        self.cv_scores_ = np.stack(scores)                    # (n_iter, A, C)
        flat = self.cv_scores_.reshape(-1, self.cv_scores_.shape[-1])
        best = best_alpha_index(flat, self.scoring, per_output=False)[0]
        g_best, a_best = gammas[best // len(alphas)], alphas[best % len(alphas)]
        scale = xp.asarray(np.tile(g_best[band_of_feature] * n_bands, len(lags)))
        W, b = ridge_path(stats.total(), np.array([a_best]), fit_intercept=self.fit_intercept,
                          solver=self.solver, xp=xp, penalty_scale=scale)
        self.gammas_ = gammas
        self.band_alphas_ = a_best * n_bands * g_best
        self._set_fitted(xp.to_numpy(W[0]), xp.to_numpy(b[0]), np.full(y_list[0].shape[1], a_best),
                         lags, sfreq)
        return self

    def score_split(self, X, y):
        """Split r^2: the share of explained variance of each band (variance partitioning).

        ``r2_b = sum_t (2 (y - mean y) - y_hat_c) * y_hat_b,c / sum_t (y - mean y)^2`` with
        ``y_hat_b,c`` band b's centred contribution; the bands sum to the r^2 of the full
        model with centred predictions (himalaya's ``r2_score_split``).

        Parameters
        ----------
        X, y : array | list of array
            Trials as in :meth:`fit`.

        Returns
        -------
        r2_split : ndarray, shape (n_bands, n_outputs)
            Averaged over trials.
        """
        X_list, y_list = _check_pair(X, y, x_1d=False)
        bands = np.cumsum(np.concatenate([[0], np.asarray(self.bands)]))
        sl = self.valid_samples_
        out = []
        for x, yt in zip(X_list, y_list):
            contrib = []
            for b0, b1 in itertools.pairwise(bands):
                xb = np.zeros_like(x)
                xb[:, b0:b1] = x[:, b0:b1]
                pred = self._predict_trials([xb])[0][sl] - self.intercept_
                contrib.append(pred - pred.mean(0))
            contrib = np.stack(contrib)
            total = contrib.sum(0)
            yc = yt[sl] - yt[sl].mean(0)
            out.append(((2 * yc - total)[None] * contrib).sum(1) / (yc * yc).sum(0))
        return np.mean(out, axis=0)

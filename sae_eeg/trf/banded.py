"""Banded ridge TRF: one penalty per feature band, found by hyper-gradient descent or by
random search on the simplex."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.optimize

from ._check import _check_number, _check_option, _check_pair, _is_trial_list
from .crossval import SCORERS, best_alpha_index, fold_scores, make_folds, moments
from .model import TRF
from .ridge import RidgePath, centered_cross, ridge_path
from .stats import lagged_stats

SEARCHES = ("gradient", "random")


class BandedTRF(TRF):
    """TRF with a separate ridge penalty for each band (group) of input features.

    Band penalties are chosen by cross-validation on the training trials, then refit on all:
    ``search='gradient'`` (default) runs L-BFGS-B (at most ``n_iter`` steps) on the log penalties
    from plain ridge at the best of ``alpha``, with the loss's exact gradient (implicit
    differentiation: one Cholesky factorisation per fold and step); ``'random'`` tries band
    penalties ``alpha * n_bands * gamma``, ``gamma`` uniform or one of ``n_iter - 1`` Dirichlet
    draws, each with every ``alpha`` (himalaya's ``solve_banded_ridge_random_search``).

    Parameters: ``bands``, the number of consecutive input features in each band (summing to
    n_features); ``alpha``, the gradient search's starting grid or the random search's global
    penalties; ``search`` ('gradient' or 'random'); ``n_iter``, gradient steps at most or random
    candidates (with the uniform one); ``concentration`` and ``random_state`` of the random search; the
    rest as :class:`~sae_eeg.trf.TRF` (``scoring``: 'pearson', 'mse' or 'r2').

    Attributes: those of :class:`~sae_eeg.trf.TRF`, and ``band_alphas_`` (n_bands,), each band's penalty
    (per lagged column); ``alpha_``, their mean (``band_alphas_ = alpha_ * n_bands * gamma``); ``gammas_``
    (n_candidates, n_bands), the penalties tried, summing to one; ``cv_scores_``, each random candidate's
    and alpha's mean score (n_iter, n_alphas, n_outputs) or each gradient point's, averaged over outputs;
    ``cv_score_``, the chosen penalties' mean score.
    """

    def __init__(self, tmin, tmax, sfreq, *, bands, alpha=(0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5),
                 search="gradient", n_iter=20, concentration=1.0, random_state=None, direction=1,
                 fit_intercept=True, centering="lagged", edge="zero", solver="eigh", backend="numpy",
                 device=None, scoring="pearson", cv=None):
        super().__init__(tmin, tmax, sfreq, direction=direction, alpha=alpha, fit_intercept=fit_intercept,
                         centering=centering, edge=edge, solver=solver, backend=backend, device=device,
                         scoring=scoring, cv=cv)
        self.bands, self.search, self.n_iter = bands, search, n_iter
        self.concentration, self.random_state = concentration, random_state

    def fit(self, X, y):
        """Fit the band penalties by cross-validation on at least two trials (as :meth:`TRF.fit`), then
        refit on all; returns ``self``."""
        sfreq, lags, alphas, xp = self._validate()
        _check_option("scoring", self.scoring, ("pearson", "mse", "r2"))
        _check_option("search", self.search, SEARCHES)
        n_iter = _check_number("n_iter", self.n_iter, low=1, integer=True)
        conc = _check_number("concentration", self.concentration, low=0, inclusive=False)
        X_list, y_list = _check_pair(X, y, x_1d=False)
        bands, n_feat = np.asarray(self.bands), X_list[0].shape[1]
        if bands.ndim != 1 or bands.size == 0 or not np.issubdtype(bands.dtype, np.integer) \
                or np.any(bands < 1) or bands.sum() != n_feat:
            raise ValueError(f"bands must be positive ints summing to n_features={n_feat}; got {self.bands!r}.")
        self._y_is_1d_ = not _is_trial_list(y) and np.asarray(y).ndim == 1
        ones = self._center == "signal"
        stats = lagged_stats(X_list, y_list, lags, edge=self.edge, ones=ones, xp=xp)
        folds = make_folds(len(X_list), self.cv)
        # column p of the lagged design (lag-major) belongs to band column_band[p]; the constant
        # feature of centering='signal' to an extra band of fixed penalty 1 (its weights are 0 anyway)
        column_band = np.tile(np.r_[np.repeat(np.arange(bands.size), bands), np.full(int(ones), bands.size)], len(lags))
        common = {"centering": self._center, "scoring": self.scoring, "solver": self.solver, "xp": xp}
        if self.search == "random":
            band_alphas = self._random_search(stats, folds, alphas, column_band, bands.size, n_iter, conc, common)
        else:
            band_alphas = self._gradient_search(stats, folds, alphas, column_band, n_iter, common)
        W, b = ridge_path(stats.total(), np.array([1.0]), centering=self._center, solver=self.solver, xp=xp,
                          penalty_scale=xp.asarray(np.r_[band_alphas, 1.0][column_band]))
        self.band_alphas_ = band_alphas
        self._set_fitted(xp.to_numpy(W[0, 0]), xp.to_numpy(b[0, 0]),
                         np.full(y_list[0].shape[1], band_alphas.mean()), lags, sfreq)
        return self

    def _random_search(self, stats, folds, alphas, column_band, n_bands, n_iter, conc, common):
        rng = np.random.default_rng(self.random_state)
        gammas = np.maximum(np.vstack([np.full(n_bands, 1.0 / n_bands),
                                       rng.dirichlet(np.full(n_bands, conc), size=n_iter - 1)]), 1e-9)
        xp = common["xp"]
        scores = [fold_scores(stats, alphas, folds, penalty_scale=xp.asarray(np.r_[g * n_bands, 1.0][column_band]),
                              **common).mean(axis=0)[:, 0] for g in gammas]
        self.cv_scores_ = np.stack(scores)                    # (n_iter, A, C)
        flat = self.cv_scores_.reshape(-1, self.cv_scores_.shape[-1])
        best = best_alpha_index(flat, self.scoring, per_output=False)[0]
        self.gammas_, self.cv_score_ = gammas, float(flat[best].mean())
        return alphas[best % len(alphas)] * n_bands * gammas[best // len(alphas)]

    def _gradient_search(self, stats, folds, alphas, column_band, n_iter, common):
        ridge = fold_scores(stats, alphas, folds, **common).mean(axis=(0, 2, 3))   # plain ridge, (A,)
        sign = 1.0 if SCORERS[self.scoring].greater_is_better else -1.0
        start = alphas[int(np.argmax(sign * np.nan_to_num(ridge, nan=-np.inf)))]
        n_bands = len(self.bands)
        problem = _FoldProblems(stats, folds, self._center, self.scoring, common["xp"])
        trace = []

        def loss(theta):
            d = np.r_[np.exp(theta), 1.0][column_band]
            value, grad_d = problem.loss_and_grad(d)
            trace.append((-sign * value, theta.copy()))
            return value, np.bincount(column_band, weights=grad_d * d, minlength=n_bands + 1)[:n_bands]

        lo, hi = np.log(alphas.min() / 1e3), np.log(alphas.max() * 1e3)
        scipy.optimize.minimize(loss, np.full(n_bands, np.log(start)), jac=True, method="L-BFGS-B",
                                bounds=[(lo, hi)] * n_bands, options={"maxiter": n_iter})
        scores = np.array([t[0] for t in trace])
        best = int(np.argmax(sign * np.nan_to_num(scores, nan=-np.inf)))
        penalties = np.exp(np.stack([t[1] for t in trace]))
        self.cv_scores_, self.gammas_ = scores, penalties / penalties.sum(axis=1, keepdims=True)
        self.cv_score_ = float(scores[best])
        return penalties[best]

    def score_split(self, X, y):
        """Split r^2 (n_bands, n_outputs), averaged over the trials ``X``, ``y`` (as :meth:`fit`): each
        band's share of the explained variance, ``sum_t (2 (y - mean y) - y_hat_c) y_hat_b,c / sum_t
        (y - mean y)^2`` with ``y_hat_b,c`` band b's centred contribution; the bands sum to the
        r^2 of the model with centred predictions (himalaya's ``r2_score_split``)."""
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


class _FoldProblems:
    """Cross-validated loss of ridge with per-column penalties ``d`` and its exact gradient: each fold's
    ``(C + diag(d)) W = c`` by the ridge path (Cholesky), scored by the held-out moments; with ``G =
    dL/dW``, implicit differentiation gives ``dL/dd_p = -sum_c [(C + diag(d))^-1 G]_pc W_pc``."""

    def __init__(self, stats, folds, centering, scoring, xp):
        self.centering, self.scoring, self.xp = centering, scoring, xp
        self.sign = 1.0 if SCORERS[scoring].greater_is_better else -1.0
        total = stats.total()
        self.folds = [(total.minus(stats.total(xp.index(test))), [stats.trial(int(i)) for i in test])
                      for test in folds]

    def loss_and_grad(self, d):
        """Loss (minus the mean score; the mean MSE) and its gradient in the column penalties ``d``."""
        xp, loss, grad = self.xp, 0.0, np.zeros_like(d)
        for train, held in self.folds:
            path = RidgePath(train, [1.0], centering=self.centering, solver="cholesky", penalty_scale=xp.asarray(d),
                             xp=xp)
            W, b = path.solve(train)                                             # (1, 1, P, C)
            u = centered_cross(train, self.centering, xp)[2][0]                  # intercept: b0 - u^T W
            scale = -self.sign / (len(self.folds) * len(held) * W.shape[-1])    # mean over trials, folds, outputs
            G = 0
            for h in held:
                score, dscore = self._score_and_grad(moments(W, b, h, xp, dense=True), W[0, 0], u, h)
                loss += scale * float(score.sum())
                G = G + scale * dscore
            grad -= xp.to_numpy((path.inverse(G[None]) * W).sum(-1))[0, 0]
        return loss, grad

    def _score_and_grad(self, m, W, u_train, held):
        """Score of one held-out trial per output, and its gradient in ``W`` (P, C)."""
        CW, c_h, ss_y, ss_hat, cross, n = m.CW[0, 0], m.c_h[0], m.ss_y, m.ss_hat[0, 0], m.cross[0, 0], m.n
        if self.scoring == "pearson":
            denom = (ss_y * ss_hat) ** 0.5
            r = cross / denom
            return r, c_h / denom - r * CW / ss_hat
        d_mean, u = m.d_mean[0, 0], held.sx[0, 0] / n - u_train    # the prediction's mean error, its slope in W
        sse = ss_y - 2 * cross + ss_hat + n * d_mean ** 2
        dsse = 2 * (CW - c_h - n * u[:, None] * d_mean[None, :])
        if self.scoring == "mse":
            return sse / n, dsse / n
        return 1 - sse / ss_y, -dsse / ss_y

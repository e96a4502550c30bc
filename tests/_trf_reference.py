"""A naive TRF reference for tests: the dense lagged design, written out, and numpy solves.

Everything here is the textbook computation the engine must reproduce: build the lagged
design matrix row by row, centre it (an unpenalised intercept), solve the ridge normal
equations with ``numpy.linalg.solve``, predict held-out trials and score them. It is
slow and obviously right; the pinned tests compare the engine's analyses with it.
"""

import numpy as np
import scipy.optimize

SIGN = {"pearson": 1.0, "r2": 1.0, "mse": -1.0}


def used_rows(n_times, lags, edge):
    """Output samples that enter fit and score: all ('zero') or those with every lagged input inside."""
    if edge == "zero":
        return np.arange(n_times)
    return np.arange(max(0, lags[-1]), n_times + min(0, lags[0]))


def design(x, lags, edge="zero"):
    """Lagged design of one trial: row per used sample t, column j * F + f = x_f(t - lags[j]) (0 outside)."""
    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    n_times, n_feat = x.shape
    rows = used_rows(n_times, lags, edge)
    D = np.zeros((len(rows), len(lags) * n_feat))
    for j, lag in enumerate(lags):
        src = rows - lag                                   # input sample of each row at this lag
        inside = (src >= 0) & (src < n_times)
        D[inside, j * n_feat:(j + 1) * n_feat] = x[src[inside]]
    return D


def ridge(X, Y, lags, penalty, edge="zero", intercept=True):
    """Weights (P, C) and intercept (C,) of ridge on the stacked designs of the trials.

    ``penalty`` is a number or one value per lagged column; the intercept is unpenalised
    (the design and the outputs are centred on their means over all used rows).
    """
    D = np.vstack([design(x, lags, edge) for x in X])
    y = np.vstack([np.asarray(v, dtype=float).reshape(len(v), -1)[used_rows(len(v), lags, edge)] for v in Y])
    d_mean, y_mean = (D.mean(0), y.mean(0)) if intercept else (np.zeros(D.shape[1]), np.zeros(y.shape[1]))
    Dc, yc = D - d_mean, y - y_mean
    W = np.linalg.solve(Dc.T @ Dc + np.diag(np.broadcast_to(penalty, D.shape[1])), Dc.T @ yc)
    return W, y_mean - d_mean @ W


def score(y_true, y_pred, scoring):
    """Per-column Pearson r, MSE or r^2."""
    if scoring == "pearson":
        a, b = y_true - y_true.mean(0), y_pred - y_pred.mean(0)
        return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
    sse = ((y_true - y_pred) ** 2).sum(0)
    return sse / len(y_true) if scoring == "mse" else 1 - sse / ((y_true - y_true.mean(0)) ** 2).sum(0)


def cv_scores(X, Y, lags, penalty, folds, edge="zero", scoring="pearson", intercept=True):
    """Scores (n_folds, C): each fold refit on the other trials, scored per held-out trial, averaged."""
    out = []
    for test in folds:
        train = [i for i in range(len(X)) if i not in test]
        W, b = ridge([X[i] for i in train], [Y[i] for i in train], lags, penalty, edge, intercept)
        per = []
        for i in test:
            y = np.asarray(Y[i], dtype=float).reshape(len(Y[i]), -1)[used_rows(len(Y[i]), lags, edge)]
            per.append(score(y, design(X[i], lags, edge) @ W + b, scoring))
        out.append(np.mean(per, axis=0))
    return np.array(out)


def loo(n):
    """Leave-one-trial-out folds."""
    return [[i] for i in range(n)]


def banded_gradient_search(X, Y, lags, bands, alphas, n_iter, scoring, intercept=True):
    """The documented hyper-gradient search of band penalties, on the naive loss with torch autograd.

    Start: plain ridge at the best alpha of the grid (leave-one-trial-out). Then L-BFGS-B
    on the log band penalties (bounds: the grid widened 1000x each way, ``maxiter=n_iter``)
    of minus the mean held-out score (the mean MSE for 'mse'). Returns the penalties of
    the best point evaluated and its score.
    """
    import torch

    folds = loo(len(X))
    grid = [cv_scores(X, Y, lags, a, folds, scoring=scoring, intercept=intercept).mean() for a in alphas]
    start = alphas[int(np.argmax(SIGN[scoring] * np.asarray(grid)))]
    column_band = np.tile(np.repeat(np.arange(len(bands)), bands), len(lags))
    D = [torch.as_tensor(design(x, lags)) for x in X]
    Yt = [torch.as_tensor(np.asarray(y, dtype=float).reshape(len(y), -1)) for y in Y]
    trace = []

    def loss(theta):
        t = torch.tensor(theta, requires_grad=True)
        pen = torch.exp(t)[torch.as_tensor(column_band)]
        total = 0.0
        for test in folds:
            train = [i for i in range(len(X)) if i not in test]
            Dtr, ytr = torch.cat([D[i] for i in train]), torch.cat([Yt[i] for i in train])
            dm, ym = (Dtr.mean(0), ytr.mean(0)) if intercept else (0 * Dtr[0], 0 * ytr[0])
            Dc, yc = Dtr - dm, ytr - ym
            W = torch.linalg.solve(Dc.T @ Dc + torch.diag(pen), Dc.T @ yc)
            for i in test:
                pred = D[i] @ W + (ym - dm @ W)
                y = Yt[i]
                if scoring == "pearson":
                    a, b = y - y.mean(0), pred - pred.mean(0)
                    s = (a * b).sum(0) / torch.sqrt((a * a).sum(0) * (b * b).sum(0))
                else:
                    sse = ((y - pred) ** 2).sum(0)
                    s = sse / len(y) if scoring == "mse" else 1 - sse / ((y - y.mean(0)) ** 2).sum(0)
                total = total + s.mean() / (len(folds) * len(test))
        value = -SIGN[scoring] * total
        value.backward()
        trace.append((float(total.detach()), theta.copy()))
        return float(value.detach()), t.grad.numpy().copy()

    lo, hi = np.log(min(alphas) / 1e3), np.log(max(alphas) * 1e3)
    scipy.optimize.minimize(loss, np.full(len(bands), np.log(start)), jac=True, method="L-BFGS-B",
                            bounds=[(lo, hi)] * len(bands), options={"maxiter": n_iter})
    scores = np.array([s for s, _ in trace])
    best = int(np.argmax(SIGN[scoring] * scores))
    return np.exp(trace[best][1]), scores[best]

"""Lagged sufficient statistics: the one statistics type under every fit of the engine.

Ridge on a lagged design ``X`` needs ``X^T X``, ``X^T Y``, column sums and output moments, per
trial without building ``X``: a **stimulus part** (``X^T X``, its generators, column sums, row
count: computed once per stimulus, shared by its listeners) and a **response part** (``X^T Y``,
output sums and squares). A trial holds ``B`` designs, one of all features (``'joint'``) or one
per feature (``'separate'``), of ``P = n_lags * F_d`` lag-major columns; trials' statistics add.
``X^T X = Toeplitz(R) - E^T E``: ``R[d] = sum_s x(s)^T x(s + d)`` gives every block of the
infinitely zero-padded design, ``E`` its rows the trial's design lacks (padding or dropped edges).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from . import fast
from ._backend import get_ops, ops_of
from ._check import _check_option
from .lags import design_rows, row_range

DESIGNS = ("joint", "separate")
SUMMED = ("xtx", "sx", "n", "autocov", "xty", "sy", "yty")   # the fields that add over trials


@dataclass(frozen=True)
class LagStats:
    """Sufficient statistics of lagged ridge regression, per trial (leading axis N).

    Attributes
    ----------
    xtx, sx, n, autocov : arrays, shapes (N, B, P, P), (N, B, P), (N,), (N, B, n_lags, F_d, F_d)
        Stimulus part: ``X^T X``, column sums, rows used and ``R`` of each design.
    edge_rows : array, shape (N, B, E, P) | None
        The rows ``E`` of one design (per-trial statistics only).
    xty, sy, yty : arrays, shapes (N, B, P, C), (N, C), (N, C) | None
        Response part: ``X^T Y``, sums and sums of squares of the outputs over the rows used.
    ones : bool
        Every design's last feature is the constant 1 inside the trial (``centering='signal'``).
    """

    xtx: object
    sx: object
    n: object
    autocov: object
    edge_rows: object = None
    xty: object = None
    sy: object = None
    yty: object = None
    ones: bool = False

    def _map(self, fn, fields, **changes):
        return dataclasses.replace(self, **{k: fn(getattr(self, k)) for k in fields
                                            if getattr(self, k) is not None}, **changes)

    def total(self, keep=None):
        """Sum over the trials (all, or the index array ``keep``): a LagStats with N = 1."""
        if keep is None and len(self.n) == 1:
            return self
        if keep is not None and len(keep) == 1:
            return self.trial(int(keep[0]))                    # one trial: a view, no copy
        return self._map(lambda a: (a if keep is None else a[keep]).sum(0)[None], SUMMED, edge_rows=None)

    def minus(self, other):
        """Field-wise difference: a training set is the total minus its held-out trials."""
        return dataclasses.replace(self, edge_rows=None, **{k: getattr(self, k) - getattr(other, k)
                                                            for k in SUMMED if getattr(self, k) is not None})

    def subset(self, keep):
        """Per-trial statistics of the trials ``keep`` (index array or slice)."""
        return self._map(lambda a: a[keep], SUMMED + ("edge_rows",))

    def trial(self, i):
        """Statistics of trial ``i`` (N = 1)."""
        return self.subset(slice(i, i + 1))

    def with_response(self, xty, sy, yty):
        """The same stimulus part with another response part (other outputs: subjects, null samples)."""
        return dataclasses.replace(self, xty=xty, sy=sy, yty=yty)

    def features(self, keep):
        """Statistics of the joint design of the input features ``keep`` alone (the constant one stays):
        every submodel of a screening or drop-one comparison from one computation."""
        n_L, n_F = self.autocov.shape[2:4]
        keep = np.r_[np.asarray(keep, dtype=np.int64), [n_F - 1] * self.ones].astype(np.int64)
        cols = (np.arange(n_L)[:, None] * n_F + keep).ravel()
        return dataclasses.replace(self, xtx=self.xtx[:, :, cols][:, :, :, cols], sx=self.sx[:, :, cols],
                                   autocov=self.autocov[:, :, :, keep][..., keep],
                                   edge_rows=None if self.edge_rows is None else self.edge_rows[..., cols],
                                   xty=None if self.xty is None else self.xty[:, :, cols])

    @classmethod
    def concat(cls, parts, xp=None):
        """Per-trial statistics of several LagStats, trial after trial (``xp``: default, their backend)."""
        xp = ops_of(parts[0].sx) if xp is None else xp
        return dataclasses.replace(parts[0], **{k: xp.concat([getattr(p, k) for p in parts])
                                                for k in SUMMED + ("edge_rows",) if getattr(parts[0], k) is not None})


def _designs(x, separate, ones, xp):
    """Inputs (T, F) as the stack of designs (B, T, F_d), with the constant feature if ``ones``."""
    d = xp.contiguous(x.mT)[:, :, None] if separate else x[None]              # each feature contiguous in time
    return xp.concat([d, d[..., :1] * 0 + 1], axis=2) if ones else d


def _dense(x, xp):
    """A trial as an array; scipy sparse densified with each feature contiguous along time."""
    return xp.asarray(sparse.csc_array(x).T.toarray().T if sparse.issparse(x) else x)


def autocovariance(d, n_lags, xp):
    """``R[d] = sum_s x(s)^T x(s + d)``, ``d < n_lags``, of designs (B, T, F_d): (B, n_lags, F_d, F_d), by
    products of each trial with itself shifted (by FFTs when they pay)."""
    n_B, n_T, n_F = d.shape
    if n_B > 1 and n_F == 1:                                                  # single-feature designs
        return fast.autocorrelation_rows(d[:, :, 0], n_lags, xp)[:, :, None, None]
    if n_B == 1 and fast.fft_pays([n_T], n_lags, n_F):
        return fast.block_xcorr([(d[0], None)], n_lags, xp)[None]
    return xp.stack([d[:, :n_T - k].mT @ d[:, k:] if k < n_T else xp.zeros((n_B, n_F, n_F))
                     for k in range(n_lags)], axis=1)


def missing_rows(n_times, lags, edge):
    """Rows of the infinitely zero-padded design a trial's design lacks (as many for every trial)."""
    start, stop = row_range(n_times, lags, edge)
    return np.r_[int(lags[0]):start, stop:n_times + int(lags[-1])]


def toeplitz(R, xp, out=None):
    """Block-Toeplitz (B, P, P) of ``R`` (B, L, F, F): block ``(i, j)`` is ``R(i - j)``, ``R(-d) = R(d)^T``."""
    n_B, n_L, n_F = R.shape[:3]
    out = xp.zeros((n_B, n_L * n_F, n_L * n_F)) if out is None else out
    all_R = xp.concat([xp.flip(R[:, 1:], 1).mT, R], axis=1)                  # all_R[:, k] = R(k - (L - 1))
    for i in range(n_L):                                                      # block row i: R(i - j), j < L
        out.reshape(n_B, n_L, n_F, n_L, n_F)[:, i] = xp.flip(all_R[:, i:i + n_L], 1).swapaxes(1, 2)
    return out


def lagged_sums(d, lags, edge, xp):
    """Column sums (B, P) of the lagged designs of ``d`` (B, T, F_d): the trial's sum minus the samples each
    lag's window leaves out at either end (no cumulative sum over the whole trial)."""
    n_B, n_T, n_F = d.shape
    start, stop = row_range(n_T, lags, edge)
    lo = np.clip(start - lags, 0, n_T)                                        # input window [lo, hi) per lag
    hi = np.maximum(np.clip(stop - lags, 0, n_T), lo)
    zero = xp.zeros((n_B, 1, n_F))
    head = xp.concat([zero, d[:, :int(lo.max())].cumsum(1)], axis=1)           # head[:, k]: first k samples
    tail = xp.concat([zero, xp.flip(d[:, int(hi.min()):], 1).cumsum(1)], axis=1)   # tail[:, k]: last k
    return xp.contiguous((d.sum(1)[:, None] - head[:, xp.index(lo)] - tail[:, xp.index(n_T - hi)]).reshape(n_B, -1))


def stimulus_stats(x, lags, edge, designs, ones, xp, out=None):
    """The stimulus part of one trial ``x`` (T, F): ``(xtx, sx, n, autocov, edge_rows)`` (``edge_rows`` of one
    design only; ``out``: for ``xtx``)."""
    d = _designs(x, designs == "separate", ones, xp)
    R = autocovariance(d, len(lags), xp)
    rows = design_rows(d, lags, missing_rows(d.shape[1], lags, edge), xp)     # (B, E, P)
    start, stop = row_range(x.shape[0], lags, edge)
    if d.shape[0] > 1 and d.shape[2] == 1:               # many single-feature designs: by the recursion
        bounds = design_rows(d, lags, np.array([start, stop]) - 1, xp)
        xtx = fast.xtx_by_recursion(R, rows, bounds[:, :1], bounds[:, 1:], xp)
        if out is not None:
            out[...], xtx = xtx, out
    else:                                                # Toeplitz minus the missing rows' Gram, in place
        xtx = toeplitz(R, xp, out)
        for b in range(len(xtx)):
            xp.subtract_product(xtx[b], rows[b].mT, rows[b])
    return xtx, lagged_sums(d, lags, edge, xp), float(stop - start), R, rows if len(d) == 1 else None


def lagged_xty(x, y, lags, edge, xp):
    """``X^T Y`` (n_lags, F, C) of one trial: block ``j`` ``sum_t x(t - lags[j])^T y(t)`` = ``sum_s x(s)^T y_adv(s +
    j)``, ``y`` advanced by ``lags[0]``: products with the outputs shifted a few lags at a time (or block FFTs)."""
    (n_T, n_F), n_C, n_L, l0 = x.shape, y.shape[1], len(lags), int(lags[0])
    start, stop = row_range(n_T, lags, edge)
    y_adv = xp.zeros((n_T + n_L - 1, n_C))
    u0, u1 = max(start - l0, 0), min(stop - l0, n_T + n_L - 1)
    if u1 > u0:
        y_adv[u0:u1] = y[u0 + l0:u1 + l0]
    if fast.fft_pays([n_T], n_L, n_F, n_C):
        return fast.block_xcorr([(x, y_adv)], n_L, xp)
    per_product, parts = max(1, 2**23 // (n_T * n_C)), []                    # lags per product: bounded memory
    for j0 in range(0, n_L, per_product):
        shifted = xp.windows(y_adv[j0:], n_T, min(per_product, n_L - j0), 1)     # a strided copy: 2x a gather
        parts.append((x.mT @ shifted.reshape(n_T, -1)).reshape(n_F, -1, n_C))
    return xp.concat(parts, axis=1).swapaxes(0, 1)


def response_stats(x, y, lags, edge, designs, ones, xp):
    """The response part of one trial: ``(xty (B, P, C), sy (C,), yty (C,))``."""
    n_T, n_F = x.shape
    xty = lagged_xty(xp.concat([x, x[:, :1] * 0 + 1], axis=1) if ones else x, y, lags, edge, xp)   # (L, F', C)
    if designs == "joint":
        xty = xty.reshape(1, -1, y.shape[1])
    elif ones:                                            # design f: features (f, constant), the latter broadcast
        xty = xp.stack([xty[:, :n_F], xty[:, n_F:] + 0 * xty[:, :n_F]], axis=2).swapaxes(0, 1)
        xty = xty.reshape(n_F, -1, y.shape[1])
    else:
        xty = xty.swapaxes(0, 1)
    start, stop = row_range(n_T, lags, edge)
    return xp.contiguous(xty), y[start:stop].sum(0), (y[start:stop] ** 2).sum(0)   # contiguous: 3x faster moments


def lagged_stats(X, Y, lags, *, edge="zero", per_trial=True, designs="joint", ones=False, backend="numpy",
                 device=None, xp=None):
    """Lagged statistics of trials; a stimulus given several times (one object) is computed once.

    Parameters
    ----------
    X, Y : list of array, each (n_times_i, n_features), (n_times_i, n_outputs)
        Trials of any lengths (``X`` may be scipy sparse: densified a trial at a time); ``Y=None``: the
        stimulus part alone.
    lags : array of int, shape (n_lags,)
        Contiguous lags in samples; ``edge`` as :mod:`~sae_eeg.trf.lags`.
    per_trial : bool
        Keep each trial's statistics (cross-validation) or only their sum (N = 1).
    designs : 'joint' | 'separate'
        One design of all features or one per feature.
    ones : bool
        Add the constant feature ``centering='signal'`` needs.
    backend, device, xp
        Array backend, or an ops object.

    Returns
    -------
    stats : LagStats
    """
    _check_option("designs", designs, DESIGNS)
    xp, lags = get_ops(backend, device) if xp is None else xp, np.asarray(lags, dtype=np.int64)
    if len(lags) > 1 and not np.all(np.diff(lags) == 1):
        raise ValueError(f"lags must be contiguous increasing integers; got {lags!r}.")
    keys, Y = [id(x) for x in X], Y and [xp.asarray(y) for y in Y]
    n_B, n_Fd = (X[0].shape[1], 1 + ones) if designs == "separate" else (1, X[0].shape[1] + ones)
    P, lengths, resp = len(lags) * n_Fd, [x.shape[0] for x in X], []
    n = xp.asarray([float(stop - start) for start, stop in (row_range(t, lags, edge) for t in lengths)])
    if not per_trial and designs == "joint" and len(X) > 1 and fast.fft_pays(lengths, len(lags), n_Fd):
        X = [_dense(x, xp) for x in X]
        D = [_designs(x, False, ones, xp)[0] for x in X]    # all trials in one block FFT, edges by the recursion
        rows = [design_rows(d, lags, missing_rows(len(d), lags, edge), xp) for d in D]
        bounds = [design_rows(d, lags, np.array(row_range(len(d), lags, edge)) - 1, xp) for d in D]
        R = fast.block_xcorr([(d, None) for d in D], len(lags), xp)[None, None]
        xtx = fast.xtx_by_recursion(R[0], xp.concat(rows)[None], xp.stack([b[0] for b in bounds])[None],
                                    xp.stack([b[1] for b in bounds])[None], xp)
        stim = LagStats(xtx[None], sum(lagged_sums(d[None], lags, edge, xp) for d in D)[None], n.sum(0)[None], R,
                        ones=ones)
        resp = [response_stats(x, y, lags, edge, designs, ones, xp) for x, y in zip(X, Y or [])]
    else:
        xtx, parts, first = xp.zeros((len(X) if per_trial else 1, n_B, P, P)), [], {}
        for i, x in enumerate(X):
            j, x = first.setdefault(keys[i], i), _dense(x, xp)   # one trial dense at a time (sparse inputs)
            if j < i and per_trial:                               # the same stimulus object: computed once
                xtx[i] = xtx[j]
            part = parts[j] if j < i else stimulus_stats(x, lags, edge, designs, ones, xp,
                                                         xtx[i] if per_trial else None)
            if not per_trial:
                xtx[0] += part[0]
            parts.append(part)
            resp += [response_stats(x, Y[i], lags, edge, designs, ones, xp)] if Y else []
        sx, R = (xp.stack([p[k] for p in parts]) for k in (1, 3))
        rows = xp.stack([p[4] for p in parts]) if n_B == 1 else None   # for held-out scores of one design
        stim = LagStats(xtx, sx, n, R, rows, ones=ones) if per_trial else \
            LagStats(xtx, sx.sum(0)[None], n.sum(0)[None], R.sum(0)[None], ones=ones)
    if Y is None:
        return stim
    xty, sy, yty = (xp.stack(r) for r in zip(*resp))
    return stim.with_response(*((a if per_trial else a.sum(0)[None]) for a in (xty, sy, yty)))

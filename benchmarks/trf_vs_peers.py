"""Side-by-side timings of the sae-eeg TRF engine against mTRFpy (``mtrf``) and MNE.

Run from the repository root::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/trf_vs_peers.py [--quick]

Every case runs the engine and its peers in this one process on the same data and
prints time ratios (peer / engine; the engine's time is the median of ``--repeats``
runs, all printed, the peers' one run), peak traced memory (``tracemalloc``, from a second,
untimed run: NumPy buffers and Python objects) and, for case (a), the largest weight
difference to mtrf.

(a) forward model, 64 channels, 16 features, lags -100..500 ms at 128 Hz, 20 trials x
    60 s, 10 regularisation values, leave-one-trial-out CV then refit.
(b) 1000 single-feature TRFs (sparse features, 5 % non-zero) on one channel, same
    trials and CV; mtrf loops over features.
(c) backward decoder from 128 channels (lags 0..250 ms) to the envelope, trained on
    all trials at one regularisation value.

Peers can be timed on a subset (``--peer-fits`` CV fits for MNE, ``--peer-features``
features for looped mtrf, ``--peer-trials`` trials for (c)); the printout then says
how the full-size time was extrapolated (only where the cost is linear in that count).
"""

from __future__ import annotations

import argparse
import warnings
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's sae_eeg

import sae_eeg.trf as trf_engine
from sae_eeg.trf.conventions import alpha_from_mtrfpy, weights_to_mtrf
from sae_eeg.trf.fast import block_tridiagonalize
from sae_eeg.trf.univariate import univariate_trfs

_WALL = {}
warnings.filterwarnings("ignore", category=trf_engine.AlphaAtGridEdgeWarning)   # the timings are the point here


def _measure(fn, memory=True, repeats=1):
    """(CPU seconds, peak traced MiB, result) of ``fn()``; wall seconds go to ``_WALL``.

    CPU time of this process is the measure (single-threaded BLAS): it is robust to
    other work on a shared machine, which inflates wall-clock times. Time and memory
    come from separate calls of ``fn``: tracing allocations slows the traced code (the
    more, the more arrays it allocates), so timed calls run untraced. With ``repeats``
    the time is the median of that many calls (all kept in ``_WALL["runs"]``): the
    engine's runs take seconds, and a burst of load on a shared machine moves one of
    them by 10-20 %, while a peer's run of minutes averages such bursts out.
    """
    times, walls = [], []
    for _ in range(repeats):
        t0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        times.append(time.process_time() - t0)
        walls.append(time.perf_counter() - w0)
    dt = float(np.median(times))
    _WALL["last"], _WALL["runs"] = float(np.median(walls)), times
    peak = float("nan")
    if memory:
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return dt, peak, out


def _simulate(rng, n_trials, n_times, n_feat, n_chan, lags):
    kernel = rng.standard_normal((n_chan, n_feat, len(lags))) * np.hanning(len(lags) + 2)[1:-1]
    X, Y = [], []
    for _ in range(n_trials):
        x = rng.standard_normal((n_times, n_feat))
        design = trf_engine.lag_matrix(x, lags)
        y = design @ kernel.transpose(2, 1, 0).reshape(-1, n_chan)
        X.append(x)
        Y.append(y + 3 * y.std() * rng.standard_normal(y.shape))
    return X, Y


def _runs_note():
    """Which calls the engine's time is the median of."""
    runs = _WALL["runs"]
    return f"median of {len(runs)} runs: " + ", ".join(f"{t:.2f}" for t in runs) if len(runs) > 1 else ""


def _row(label, t, mem, ref_t=None, note="", scale=1.0):
    """One line: CPU time, wall time of the last measurement (times ``scale``), memory, ratio."""
    ratio = f"{t / ref_t:8.1f}x" if ref_t else "        "
    wall = _WALL.get("last", float("nan")) * scale
    print(f"  {label:<34s} {t:9.2f} s cpu ({wall:7.1f} s wall)  {mem:9.1f} MiB  {ratio}  {note}",
          flush=True)


def case_a(rng, args):
    fs, tmin, tmax = 128.0, -0.1, 0.5
    n_trials, n_times = args.trials, int(args.seconds * fs)
    lags = trf_engine.times_to_lags(tmin, tmax, fs)
    X, Y = _simulate(rng, n_trials, n_times, 16, 64, lags)
    lambdas = np.logspace(-3, 3, args.n_alphas)               # mTRFpy lambdas
    alphas = alpha_from_mtrfpy(lambdas, fs, n_trials)           # same grid, engine scale
    print(f"(a) forward: {n_trials} trials x {args.seconds:g} s, 16 features -> 64 channels, "
          f"{len(lags)} lags, {len(alphas)} alphas, leave-one-trial-out")
    t_ours, m_ours, _ = _measure(lambda: trf_engine.TRF(tmin, tmax, fs, alpha=alphas).fit(X, Y),
                                 repeats=args.repeats)
    _row("sae-eeg TRF (numpy float64)", t_ours, m_ours, note=_runs_note())

    from mtrf.model import TRF as MTRF

    def run_mtrf():
        m = MTRF(direction=1)
        m.train([x.copy() for x in X], [y.copy() for y in Y], fs, tmin, tmax, list(lambdas),
                 k=-1, verbose=False)
        return m

    t_m, m_m, mt = _measure(run_mtrf)
    _row("mtrf 2.x TRF.train (full size)", t_m, m_m, t_ours, "ratio = peer / sae-eeg")
    lam = float(mt.regularization)
    ours_same = trf_engine.TRF(tmin, tmax, fs, alpha=float(alpha_from_mtrfpy(lam, fs, n_trials))).fit(X, Y)
    diff = np.abs(weights_to_mtrf(ours_same.coef_, fs) - mt.weights).max()
    print(f"  largest |weight difference| vs mtrf at its chosen lambda={lam:g}: {diff:.2e} "
          f"(max |weight| {np.abs(mt.weights).max():.2e})")

    # the floor of exact CV for every alpha: per fold, one reduction of the training X^T X
    # (the engine's block-tridiagonal one) and one product of a P x P matrix with the
    # P x (alphas * channels) weights in the reduced basis (the weights), the dense work
    # that no exact method avoids (the held-out moments W^T X_h^T X_h W come from the
    # block-Toeplitz generators of X_h^T X_h, without a P x P product)
    P = 16 * len(lags) + 1
    A = np.random.default_rng(1).standard_normal((4 * P, P))
    C = A.T @ A
    W = np.random.default_rng(2).standard_normal((P, len(alphas) * 64))

    def one_fold():
        block_tridiagonalize(C)
        return C @ W

    t_fold = min(_measure(one_fold, memory=False)[0] for _ in range(3))
    t_floor = t_fold * n_trials
    print(f"  floor: {n_trials} folds x (one reduction of {P}x{P} + one {P}x{P} by {P}x{W.shape[1]} "
          f"product) take {t_floor:.2f} s cpu: at most {t_m / t_floor:.1f}x vs mtrf for exact CV "
          "of every alpha")

    from mne.decoding import ReceptiveField
    from mne.utils import use_log_level

    X3, Y3 = np.stack(X, axis=1), np.stack(Y, axis=1)        # (n_times, n_epochs, n_ch)
    fits = [(a, k) for a in alphas for k in range(n_trials)]
    n_sub = min(args.peer_fits, len(fits)) if args.peer_fits else len(fits)

    def run_mne():
        with use_log_level("error"):                          # no progress bars
            for a, k in fits[:n_sub]:
                train = np.delete(np.arange(n_trials), k)
                rf = ReceptiveField(tmin, tmax, fs, estimator=float(a), scoring="corrcoef")
                rf.fit(X3[:, train], Y3[:, train])
                rf.score(X3[:, [k]], Y3[:, [k]])

    t_mne, m_mne, _ = _measure(run_mne)
    t_mne_full = t_mne * len(fits) / n_sub
    note = ("" if n_sub == len(fits) else
            f"timed {n_sub} of {len(fits)} CV fits, scaled linearly (cost per fit is constant)")
    _row("MNE ReceptiveField grid search", t_mne_full, m_mne, t_ours, note, len(fits) / n_sub)
    return t_ours, t_m, t_mne_full


def case_b(rng, args):
    fs, tmin, tmax = 128.0, -0.1, 0.5
    n_trials, n_times, n_feat = args.trials, int(args.seconds * fs), args.features
    lags = trf_engine.times_to_lags(tmin, tmax, fs)
    X = [sparse.random_array((n_times, n_feat), density=0.05, rng=rng, format="csr")
         for _ in range(n_trials)]
    Y = [np.asarray(x[:, :5].sum(axis=1)).reshape(-1, 1) + rng.standard_normal((n_times, 1))
         for x in X]
    lambdas = np.logspace(-3, 3, args.n_alphas)
    alphas = alpha_from_mtrfpy(lambdas, fs, n_trials)
    print(f"(b) {n_feat} univariate TRFs (sparse features) -> 1 channel, {n_trials} trials x "
          f"{args.seconds:g} s, {len(lags)} lags, {len(alphas)} alphas, leave-one-trial-out")
    t_ours, m_ours, res = _measure(lambda: univariate_trfs(X, Y, tmin, tmax, fs, alpha=alphas),
                                   repeats=args.repeats)
    _row("sae-eeg univariate_trfs (batched)", t_ours, m_ours, note=_runs_note())

    from mtrf.model import TRF as MTRF

    n_sub = min(args.peer_features, n_feat)

    def run_mtrf():
        out = []
        for f in range(n_sub):
            m = MTRF(direction=1)
            m.train([x[:, [f]].toarray() for x in X], [y.copy() for y in Y], fs, tmin, tmax,
                    list(lambdas), k=-1, verbose=False)
            out.append(m)
        return out

    t_m, m_m, models = _measure(run_mtrf)
    t_m_full = t_m * n_feat / n_sub
    note = ("" if n_sub == n_feat else
            f"timed {n_sub} of {n_feat} features, scaled linearly (one fit per feature)")
    _row("mtrf 2.x looped over features", t_m_full, m_m, t_ours, note, n_feat / n_sub)
    same = [f for f in range(n_sub) if np.isclose(
        res.alpha_[0, f], alpha_from_mtrfpy(float(models[f].regularization), fs, n_trials))]
    diff = max((np.abs(res.coef_[0, f] * fs - models[f].weights[0, :, 0]).max() for f in same),
               default=float("nan"))
    print(f"  largest |weight difference| vs mtrf over the {len(same)} of {n_sub} timed features "
          f"where both chose the same lambda: {diff:.2e}")
    return t_ours, t_m_full


def case_c(rng, args):
    fs, tmin, tmax = 128.0, 0.0, 0.25
    n_trials, n_times = args.trials, int(args.seconds * fs)
    lags = trf_engine.times_to_lags(tmin, tmax, fs)
    S, R = _simulate(rng, n_trials, n_times, 1, 128, lags)
    lam = 10.0
    print(f"(c) backward decoder: 128 channels -> envelope, {n_trials} trials x {args.seconds:g} s, "
          f"{len(lags)} lags, one lambda")
    alpha = float(alpha_from_mtrfpy(lam, fs, n_trials))
    t_ours, m_ours, model = _measure(
        lambda: trf_engine.TRF(tmin, tmax, fs, direction=-1, alpha=alpha).fit(R, S), repeats=args.repeats)
    _row("sae-eeg TRF direction=-1", t_ours, m_ours, note=_runs_note())

    from mtrf.model import TRF as MTRF

    def run_mtrf(n):
        m = MTRF(direction=-1)
        m.train([s.copy() for s in S[:n]], [r.copy() for r in R[:n]], fs, tmin, tmax, lam,
                verbose=False)
        return m

    n_sub = min(args.peer_trials, n_trials) if args.peer_trials else n_trials
    if n_sub == n_trials:
        t_m, m_m, mt = _measure(lambda: run_mtrf(n_trials))
        note = ""
        diff = np.abs(weights_to_mtrf(model.coef_, fs) - mt.weights).max()
        print(f"  largest |weight difference| vs mtrf: {diff:.2e}")
    else:  # time = setup + per-trial cost: two sizes give both terms
        half = max(1, n_sub // 2)
        t_1, _, _ = _measure(lambda: run_mtrf(half), memory=False)
        t_2, m_m, _ = _measure(lambda: run_mtrf(n_sub))
        per_trial = (t_2 - t_1) / (n_sub - half) if n_sub > half else t_2 / n_sub
        t_m = t_2 + per_trial * (n_trials - n_sub)
        _WALL["last"] *= t_m / t_2
        note = (f"timed {half} and {n_sub} of {n_trials} trials, extrapolated linearly "
                "(covariance cost is linear in trials)")
    _row("mtrf 2.x TRF.train", t_m, m_m, t_ours, note)
    return t_ours, t_m


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    parser.add_argument("--cases", default="abc", help="which cases to run, e.g. 'ab'")
    parser.add_argument("--peer-fits", type=int, default=None,
                        help="MNE CV fits to time in (a) (default all; --quick: 4)")
    parser.add_argument("--peer-features", type=int, default=None,
                        help="features to loop mtrf over in (b) (default 20; --quick: 3)")
    parser.add_argument("--peer-trials", type=int, default=None,
                        help="trials to time mtrf on in (c) (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of the engine per case; its time is their median (peers run once)")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.seconds, args.features, args.n_alphas = 6, 20.0, 100, 5
        args.peer_fits = 4 if args.peer_fits is None else args.peer_fits
        args.peer_features = 3 if args.peer_features is None else args.peer_features
    else:
        args.trials, args.seconds, args.features, args.n_alphas = 20, 60.0, 1000, 10
        args.peer_features = 20 if args.peer_features is None else args.peer_features
    rng = np.random.default_rng(args.seed)
    trf_dir = Path(trf_engine.__file__).parent
    n_lines = sum(len(p.read_text().splitlines()) for p in trf_dir.glob("*.py"))
    print(f"sae_eeg/trf/: {n_lines} lines of code in {len(list(trf_dir.glob('*.py')))} modules "
          "(wc -l sae_eeg/trf/*.py)")
    print(f"{'case':<36s} {'CPU time (wall)':>28s} {'peak mem':>13s} {'peer/ours':>9s}")
    summary = {}
    if "a" in args.cases:
        t, t_m, t_mne = case_a(rng, args)
        summary["a"] = f"(a) vs mtrf {t_m / t:.1f}x (target 20x), vs MNE {t_mne / t:.1f}x (target 10x)"
    if "b" in args.cases:
        t, t_m = case_b(rng, args)
        summary["b"] = f"(b) vs looped mtrf {t_m / t:.1f}x (target 50x)"
    if "c" in args.cases:
        t, t_m = case_c(rng, args)
        summary["c"] = f"(c) vs mtrf {t_m / t:.1f}x (target 20x)"
    print("summary:", "; ".join(summary.values()))


if __name__ == "__main__":
    main()

"""Time the AudioSAE EEG protocol at the paper's scale and compare with looped peers.

Scale: 1000 SAE features x 19 subjects x 15 min of EEG at 128 Hz (5 runs of 3 min:
2 development + 3 test), one channel (Pz), lags 0-500 ms. Features are sparse
bursty trajectories (as SAE features resampled to 128 Hz, ~10 % non-zero).

Peers, measured in the same process on a part of the work and extrapolated:
- the TRF engine's generic batched path (``sae_eeg.trf.univariate.univariate_trfs``,
  one call per subject and split; it cross-validates over runs and does not share
  stimulus statistics across subjects): one subject, times 19;
- mTRFpy (``mtrf.TRF``) looped over features: 10 features of one subject, times
  1000 x 19 / 10.

Run: ``OMP_NUM_THREADS=2 python benchmarks/paper_protocol.py [--subjects 19] [--features 1000]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy import sparse

from sae_eeg.alignment import paper_protocol
from sae_eeg.trf.univariate import univariate_trfs

SFREQ = 128.0


def bursty(rng, n_times, n_features):
    """Sparse (T, F) bursts: 1-5 onsets per second, 5-25 samples long, gamma amplitudes."""
    rates = rng.uniform(1.0, 5.0, n_features)
    n_on = rng.poisson(rates * n_times / SFREQ)
    feat = np.repeat(np.arange(n_features), n_on)
    start = rng.integers(0, n_times, feat.size)
    length = rng.integers(5, 26, feat.size)
    amp = rng.gamma(2.0, 0.5, feat.size)
    rows = np.repeat(start, length) + np.concatenate([np.arange(n) for n in length])
    cols, vals = np.repeat(feat, length), np.repeat(amp, length)
    keep = rows < n_times
    x = sparse.coo_array((vals[keep], (rows[keep], cols[keep])), shape=(n_times, n_features)).tocsr()
    x.sum_duplicates()
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=19)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--channels", type=int, default=8)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n_times = int(args.minutes * 60 * SFREQ / 5)
    stimuli = [bursty(rng, n_times, args.features) for _ in range(5)]
    density = np.mean([s.nnz / np.prod(s.shape) for s in stimuli])
    data = {f"sub-{s + 1:02d}": [(rng.standard_normal((n_times, args.channels)), x) for x in stimuli]
            for s in range(args.subjects)}
    ch_names = ["Pz"] + [f"E{i}" for i in range(1, args.channels)]
    print(f"{args.features} features x {args.subjects} subjects x {args.minutes:g} min at {SFREQ:g} Hz "
          f"(5 runs of {n_times / SFREQ:.0f} s, feature density {density:.1%}), channel Pz, lags 0-500 ms")

    t0, c0 = time.perf_counter(), time.process_time()
    res = paper_protocol(data, sfreq=SFREQ, ch_names=ch_names, channels="Pz", min_rate=0.0,
                         n_features=None, random_state=0)
    t_project, cpu = time.perf_counter() - t0, time.process_time() - c0
    load = os.getloadavg()[0]
    print(f"paper protocol (sae_eeg.alignment.paper_protocol): {t_project:.1f} s wall, {cpu:.1f} s CPU "
          f"(load average {load:.1f}; {len(res.features)} tests, "
          f"{int(res.features.significant.sum())} significant on noise)")

    runs = [(x.tocsr(), data["sub-01"][i][0][:, :1]) for i, x in enumerate(stimuli)]
    t0 = time.perf_counter()
    for part in (runs[:2], runs[2:]):
        univariate_trfs([x for x, _ in part], [y for _, y in part], 0.0, 0.5, SFREQ, alpha=1.0)
    t_engine = (time.perf_counter() - t0) * args.subjects
    print(f"engine univariate_trfs per subject, extrapolated to {args.subjects} subjects: {t_engine:.1f} s "
          f"-> project is {t_engine / t_project:.1f}x faster")

    mtrf = __import__("mtrf")
    n_loop = 10
    t0 = time.perf_counter()
    for f in range(n_loop):
        for part in (runs[:2], runs[2:]):
            trf = mtrf.TRF(direction=1)
            trf.train([x[:, [f]].toarray() for x, _ in part], [y for _, y in part], int(SFREQ), 0.0, 0.5,
                      1.0 / SFREQ, verbose=False)
    t_mtrf = (time.perf_counter() - t0) * args.features / n_loop * args.subjects
    print(f"mTRFpy looped over features, extrapolated from {n_loop} features of one subject: "
          f"{t_mtrf:.0f} s -> project is {t_mtrf / t_project:.0f}x faster")


if __name__ == "__main__":
    main()

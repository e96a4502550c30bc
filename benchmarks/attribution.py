"""Time the feature attribution beside the paper protocol at the paper's scale.

Scale: 1000 SAE features x 19 subjects x 15 min of EEG at 128 Hz (5 runs of 3 min:
2 development + 3 test), 32 channels, envelope + onsets + 8 mel bands as the acoustic
baseline. Features are sparse bursty trajectories (``paper_protocol.bursty``, ~10 %
non-zero); the EEG responds to 3 of them and to the envelope (band-passed 1-8 Hz,
independent noise per subject). The attribution must stay under 5 minutes on 2 cores.

Both analyses run in this process on the same data, one after the other: the
attribution (:func:`sae_eeg.alignment.attribute_features`, all channels, lags -0.1 to
0.5 s) and the paper protocol (:func:`sae_eeg.alignment.paper_protocol`, Pz, lags
0-0.5 s). The ratio is printed with the load average (the machine is shared).

Run: ``OMP_NUM_THREADS=2 python benchmarks/attribution.py [--subjects 19] [--features 1000]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from paper_protocol import SFREQ, bursty
from scipy import signal

from sae_eeg.alignment import attribute_features, paper_protocol


def response(x_T, kernel):
    return np.convolve(x_T, kernel)[: len(x_T)]


def make_study(rng, *, n_subjects, n_features, minutes, n_channels):
    """Runs, features and acoustic baselines of a 5-run study (see the module notes)."""
    n_times = int(minutes * 60 * SFREQ / 5)
    names = [f"run{i + 1}" for i in range(5)]
    features = {n: bursty(rng, n_times, n_features) for n in names}
    b, a = signal.butter(2, [0.5, 10.0], btype="band", fs=SFREQ)
    acoustic = {}
    for n in names:
        env = np.abs(signal.lfilter(b, a, rng.standard_normal(n_times)))
        mel = np.abs(signal.lfilter(b, a, rng.standard_normal((n_times, 8)), axis=0)) + 0.3 * env[:, None]
        acoustic[n] = {"envelope": env, "onsets": np.maximum(np.diff(env, prepend=0.0), 0.0), "mel": mel}
    lags = np.arange(int(0.4 * SFREQ)) / SFREQ
    kernel = -np.exp(-((lags - 0.1) ** 2) / (2 * 0.02**2)) + 0.7 * np.exp(-((lags - 0.18) ** 2) / (2 * 0.03**2))
    topo = rng.standard_normal((4, n_channels))
    drive = {n: np.outer(response(acoustic[n]["envelope"], kernel), topo[3])
             + sum(np.outer(response(features[n][:, [j]].toarray()[:, 0], kernel), topo[j]) for j in range(3))
             for n in names}
    sos = signal.butter(4, [1.0, 8.0], btype="band", fs=SFREQ, output="sos")
    runs = {}
    for s in range(n_subjects):
        runs[f"sub-{s + 1:02d}"] = [
            (n, signal.sosfiltfilt(sos, 0.3 * drive[n] / drive[n].std()
                                   + rng.standard_normal((n_times, n_channels)), axis=0))
            for n in names]
    return runs, features, acoustic


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=19)
    parser.add_argument("--features", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--channels", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    runs, features, acoustic = make_study(rng, n_subjects=args.subjects, n_features=args.features,
                                          minutes=args.minutes, n_channels=args.channels)
    ch_names = ["Pz"] + [f"E{i}" for i in range(1, args.channels)]
    print(f"{args.features} features x {args.subjects} subjects x {args.minutes:g} min at {SFREQ:g} Hz, "
          f"{args.channels} channels, 5 runs (2 development); OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")

    t0, c0 = time.perf_counter(), time.process_time()
    res = attribute_features(runs, features, acoustic, sfreq=SFREQ, ch_names=ch_names)
    t_attr, cpu_attr = time.perf_counter() - t0, time.process_time() - c0
    load_attr = os.getloadavg()[0]
    tracked = sorted(int(f) for f in res.tracked.feature)
    print(f"attribution (attribute_features): {t_attr:.1f} s wall, {cpu_attr:.1f} s CPU (load average "
          f"{load_attr:.1f}); {len(res.features)} candidates, tracked {tracked} (planted [0, 1, 2])")

    data = {s: [(eeg, features[n]) for n, eeg in items] for s, items in runs.items()}
    t0, c0 = time.perf_counter(), time.process_time()
    proto = paper_protocol(data, sfreq=SFREQ, ch_names=ch_names, channels="Pz", min_rate=0.0, n_features=None,
                           random_state=0)
    t_proto, cpu_proto = time.perf_counter() - t0, time.process_time() - c0
    print(f"paper protocol (paper_protocol, Pz): {t_proto:.1f} s wall, {cpu_proto:.1f} s CPU (load average "
          f"{os.getloadavg()[0]:.1f}); {int(proto.summary.n_significant.iloc[0])} features significant")
    print(f"attribution / protocol wall time: {t_attr / t_proto:.2f}; attribution "
          f"{'within' if t_attr < 300 else 'OVER'} the 5-minute budget")


if __name__ == "__main__":
    main()

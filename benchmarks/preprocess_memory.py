"""Peak memory of preprocessing a 64-channel, 60-minute, 512 Hz recording.

The recording alone is 64 x 1 843 200 float64 samples = 944 MB. The budget is 4 GB.
Each configuration runs in a fresh subprocess so its peak resident memory
(``ru_maxrss``) is its own; the peak of traced numpy/Python allocations during
``preprocess`` (``tracemalloc``) is printed too, as a multiple of the data size.

Run: ``OMP_NUM_THREADS=1 python benchmarks/preprocess_memory.py [--minutes 60]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's sae_eeg

N_CHANNELS, SFREQ = 64, 512.0
BUDGET_GB = 4.0


def _worker(minutes, copy):
    import mne
    import numpy as np

    from sae_eeg.eeg import preprocess

    rng = np.random.default_rng(0)
    n_times = int(minutes * 60 * SFREQ)
    data = np.empty((N_CHANNELS, n_times))
    for row in data:  # fill channel by channel: no temporary of the full size
        row[:] = rng.standard_normal(n_times) * 1e-5
    montage = mne.channels.make_standard_montage("biosemi64")
    info = mne.create_info(montage.ch_names, SFREQ, "eeg")
    raw = mne.io.RawArray(data, info, copy="auto", verbose=False)
    raw.set_montage(montage, verbose=False)
    raw._data[7] *= 50  # one noisy channel, so detection and interpolation run
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    tracemalloc.start()
    start = time.perf_counter()
    out, steps = preprocess(raw, {"notch": [50.0, 100.0]}, copy=copy)
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(json.dumps({
        "copy": copy, "data_gb": data.nbytes / 1e9, "rss_before_gb": before,
        "rss_peak_gb": peak, "traced_peak_gb": traced_peak / 1e9, "seconds": seconds,
        "out_shape": list(out._data.shape), "bads": steps[3]["detected"],
    }))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--worker", choices=["copy", "inplace"])
    args = parser.parse_args()
    if args.worker:
        _worker(args.minutes, args.worker == "copy")
        return
    print(f"preprocess {N_CHANNELS} ch x {args.minutes:g} min x {SFREQ:g} Hz "
          "(notch 50/100, bads, 1-8 Hz FIR, 128 Hz, interpolation, average ref, median/IQR)")
    for mode in ("inplace", "copy"):
        result = subprocess.run(
            [sys.executable, __file__, "--minutes", str(args.minutes), "--worker", mode],
            capture_output=True, text=True,
        )
        if result.returncode:
            raise SystemExit(f"worker {mode} failed:\n{result.stderr}")
        r = json.loads(result.stdout.strip().splitlines()[-1])
        verdict = "OK" if r["rss_peak_gb"] < BUDGET_GB else "OVER BUDGET"
        print(f"  copy={r['copy']!s:5}  data {r['data_gb']:.3f} GB | peak RSS {r['rss_peak_gb']:.2f} GB "
              f"(before preprocess {r['rss_before_gb']:.2f} GB) | traced peak during preprocess "
              f"{r['traced_peak_gb']:.2f} GB = {r['traced_peak_gb'] / r['data_gb']:.2f} x data | "
              f"{r['seconds']:.1f} s | out {r['out_shape']} | bads {r['bads']} -> {verdict} "
              f"(budget {BUDGET_GB:g} GB)")


if __name__ == "__main__":
    main()

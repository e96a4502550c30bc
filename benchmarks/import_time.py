"""Time ``import sae_eeg`` (lazy facade) against importing what its names need, in fresh processes.

Each measurement is a new interpreter that times one import statement from the
inside (interpreter start-up excluded). The statements are run in alternation,
``--repeats`` times each, so load on a shared machine hits all of them alike;
the median and the range are printed, with the ratio of each to ``import sae_eeg``.

Run: ``python benchmarks/import_time.py [--repeats 7]``
"""

import argparse
import statistics
import subprocess
import sys

STATEMENTS = {
    "import sae_eeg": "import sae_eeg",
    "sae_eeg.BatchTopKSAE (torch)": "import sae_eeg; sae_eeg.BatchTopKSAE",
    "sae_eeg.classify_features (evals)": "import sae_eeg; sae_eeg.classify_features",
    "every facade name (eager)": "import sae_eeg; [getattr(sae_eeg, n) for n in sae_eeg.__all__]",
    "import torch": "import torch",
}


def time_once(statement):
    code = f"import time; t0 = time.perf_counter(); {statement}; print(time.perf_counter() - t0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times = {name: [] for name in STATEMENTS}
    for _ in range(args.repeats):
        for name, statement in STATEMENTS.items():
            times[name].append(time_once(statement))
    base = statistics.median(times["import sae_eeg"])
    print(f"{'statement':38s} {'median ms':>10s} {'range ms':>17s} {'x import sae_eeg':>17s}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:38s} {1e3 * med:10.1f} {1e3 * min(values):8.1f}-{1e3 * max(values):<8.1f} {med / base:17.0f}")


if __name__ == "__main__":
    main()

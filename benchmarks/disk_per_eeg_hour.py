"""Disk per hour of EEG and per layer: the run files and stimulus features the pipeline writes,
next to the layout before (one run file per subject, run and layer holding the EEG in float64,
the SAE features resampled to the EEG rate, and the acoustic and dense spaces on the EEG grid).

One stimulus of ``--minutes`` (default 10) heard in one run is written both ways with the
pipeline's own writers (:func:`sae_eeg.pipeline.io.save_run`,
:meth:`~sae_eeg.trajectories.FeatureTrajectory.save`, :func:`~sae_eeg.pipeline.io.save_series`)
and the sizes are scaled to an hour (every file grows linearly with the length). Defaults follow
the shipped Broderick 2018 configs: 128 EEG channels at 128 Hz, whisper-small (d_model 768, 50
frames/s), SAEs of 8 x 768 features with k = 50, 16 mel bands. The SAE codes are synthetic: k
active features per frame drawn with a Zipf popularity, each staying on for a geometric number of
frames (mean ``--persistence``, default 4 = 80 ms), which sets how many features a sample at the
EEG rate mixes after resampling (the old layout's cost).

Also printed: the time and peak memory of aligning one run's SAE features to its EEG on the fly
(what the analyses now do per run and layer) next to reading the old run file.

Usage::

    python benchmarks/disk_per_eeg_hour.py
    python benchmarks/disk_per_eeg_hour.py --channels 64 --d-model 384 --minutes 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import sparse

from sae_eeg.pipeline.io import load_run, load_series, save_run, save_series
from sae_eeg.trajectories import FeatureTrajectory, TimeSeries, resample_dense

FRAME_RATE = 50.0


def _codes(n_frames, n_features, k, persistence, rng):
    """Synthetic SAE codes: about k active features per frame, each active for ~persistence frames."""
    popularity = 1.0 / np.arange(1, n_features + 1) ** 0.8
    popularity /= popularity.sum()
    starts_per_frame = k / persistence
    n_runs = rng.poisson(starts_per_frame * n_frames)
    feats = rng.choice(n_features, size=n_runs, p=popularity)
    starts = rng.integers(0, n_frames, size=n_runs)
    lengths = rng.geometric(1.0 / persistence, size=n_runs)
    rows = np.concatenate([np.arange(s, min(s + n, n_frames)) for s, n in zip(starts, lengths)])
    cols = np.repeat(feats, np.minimum(lengths, n_frames - starts))
    values = rng.gamma(2.0, 0.5, size=len(rows)).astype(np.float32)
    codes = sparse.coo_array((values, (rows, cols)), shape=(n_frames, n_features)).tocsr()
    codes.sum_duplicates()
    return codes


def _old_save_run(path, *, eeg, features, sfreq, ch_names, spaces):
    """The run file of the layout before (kept here to measure it): EEG float64, features, spaces."""
    feats = sparse.csr_array(features, dtype=np.float32)
    feats.indices, feats.indptr = feats.indices.astype(np.int32), feats.indptr.astype(np.int32)
    arrays = {"eeg": np.asarray(eeg, np.float64), "sfreq": np.float64(sfreq),
              "ch_names": np.asarray(ch_names, dtype=str), "feature_ids": np.arange(feats.shape[1]),
              "feat_data": feats.data, "feat_indices": feats.indices, "feat_indptr": feats.indptr,
              "feat_shape": np.asarray(feats.shape)}
    for name, x in spaces.items():
        arrays["space__" + name] = np.asarray(x, np.float32)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _status_mb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak():
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--sfreq", type=float, default=128.0, help="EEG rate after preprocessing (Hz)")
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--n-mels", type=int, default=16)
    parser.add_argument("--persistence", type=float, default=4.0, help="mean frames a feature stays active")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    seconds = args.minutes * 60.0
    scale = 3600.0 / seconds
    n_eeg, n_frames = int(seconds * args.sfreq), int(seconds * FRAME_RATE)
    n_features = args.expansion * args.d_model
    eeg = rng.standard_normal((n_eeg, args.channels))
    ch_names = [f"E{i}" for i in range(args.channels)]
    codes = _codes(n_frames, n_features, args.k, args.persistence, rng)
    traj = FeatureTrajectory(codes, FRAME_RATE, 0.01, np.arange(n_features))
    dense = TimeSeries(rng.standard_normal((n_frames, args.d_model)).astype(np.float32), FRAME_RATE, 0.01,
                       tuple(f"d{i}" for i in range(args.d_model)))
    envelope = TimeSeries(rng.random((n_eeg, 1)), args.sfreq, 0.0, ("envelope",))
    mel = TimeSeries(rng.random((n_eeg, args.n_mels)), args.sfreq, 0.0, tuple(f"m{i}" for i in range(args.n_mels)))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_run(tmp / "run.npz", eeg=eeg, sfreq=args.sfreq, ch_names=ch_names, stimulus="story")
        traj.save(tmp / "layer.npz")
        save_series(dense, tmp / "dense.npz")
        save_series(envelope, tmp / "envelope.npz")
        save_series(mel, tmp / "mel.npz")
        new_run = (tmp / "run.npz").stat().st_size * scale / 1e6
        new_layer = sum((tmp / f).stat().st_size for f in ("layer.npz", "dense.npz")) * scale / 1e6
        new_acoustic = sum((tmp / f).stat().st_size for f in ("envelope.npz", "mel.npz")) * scale / 1e6
        _reset_peak()
        before, start = _status_mb("VmRSS"), time.perf_counter()
        at_eeg = FeatureTrajectory.load(tmp / "layer.npz").resample(args.sfreq, tmin=0.0, n_times=n_eeg)
        stored = load_series(tmp / "dense.npz")
        dense_eeg = resample_dense(stored.data, sfreq=stored.sfreq, new_sfreq=args.sfreq, tmin=stored.tmin,
                                   new_tmin=0.0, n_times=n_eeg, dtype=np.float32)   # as the analyses align it
        align_s, align_mb = time.perf_counter() - start, _status_mb("VmHWM") - before
        held_mb = (sum(a.nbytes for a in (at_eeg.data.data, at_eeg.data.indices, at_eeg.data.indptr))
                   + dense_eeg.nbytes) / 2**20
        _old_save_run(tmp / "old.npz", eeg=eeg, features=at_eeg.data, sfreq=args.sfreq, ch_names=ch_names,
                      spaces={"envelope": envelope.data, "mel": mel.data, "dense": dense_eeg})
        old_run = (tmp / "old.npz").stat().st_size * scale / 1e6
        nnz_per_sample = at_eeg.data.nnz / n_eeg
        del at_eeg, dense_eeg
        _reset_peak()
        before, start = _status_mb("VmRSS"), time.perf_counter()
        with np.load(tmp / "old.npz") as z:
            old = {k: z[k] for k in z.files}
        old_read_s = time.perf_counter() - start
        old_held_mb = sum(a.nbytes for a in old.values()) / 2**20
        del old
        start = time.perf_counter()
        load_run(tmp / "run.npz")
        new_read_s = time.perf_counter() - start
    print(f"EEG: {args.channels} channels at {args.sfreq:g} Hz; SAE: {n_features} features, k={args.k}, "
          f"{FRAME_RATE:g} frames/s, d_model {args.d_model}; measured on {args.minutes:g} min, scaled to 1 h "
          f"({codes.nnz / n_frames:.0f} active features per frame, {nnz_per_sample:.0f} per EEG sample after "
          "resampling)")
    print(f"{'per hour':<44} {'now MB':>9} {'before MB':>10} {'ratio':>7}")
    print(f"{'runs/ per EEG hour per layer (1 layer)':<44} {new_run:>9.0f} {old_run:>10.0f} "
          f"{old_run / new_run:>7.1f}")
    for n_layers in (4, 12):
        print(f"{f'runs/ per EEG hour per layer ({n_layers} layers)':<44} {new_run / n_layers:>9.0f} "
              f"{old_run:>10.0f} {old_run * n_layers / new_run:>7.1f}")
    print(f"{'features/ per stimulus hour per layer':<44} {new_layer:>9.0f} {new_layer:>10.0f} {1.0:>7.1f}")
    print(f"{'features/ acoustic baselines per stimulus hour':<44} {new_acoustic:>9.0f} {new_acoustic:>10.0f} "
          f"{1.0:>7.1f}")
    print("  (features/ is written once per stimulus, whatever the number of subjects; runs/ once per subject "
          "and run, and before once per layer too)")
    print(f"per EEG hour and layer: aligning the SAE features and activations to the runs takes "
          f"{align_s * scale:.0f} s (once per subject and layer in 'preprocess' before, in each run of 'subject' now) and they hold "
          f"{held_mb * scale:.0f} MB in memory (the old run files' arrays {old_held_mb * scale:.0f} MB, read in "
          f"{old_read_s * scale:.1f} s; the new ones are read in {new_read_s * scale:.1f} s); aligning one "
          f"{args.minutes:g}-min run peaks at +{align_mb:.0f} MB")


if __name__ == "__main__":
    main()

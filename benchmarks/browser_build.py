"""Build time and size of the feature browser for an SAE of real size (6144 features), on synthetic data.

The data has the shape of a real study: ``--minutes`` of stimuli in 30 s parts
(noise and tone audio at 16 kHz), SAE codes at 50 frames/s with ``--k`` active
features per frame whose firing rates follow a power law, a random BatchTopK SAE
for the decoder neighbours, protocol results and TRFs of 1000 features at 3
channels for 20 subjects (dev and test), all-channel TRFs (64 channels) of 20
features, and a t-SNE map. It prints the time of each part of the build, the
size of each part of the site, and what one feature page loads.

Run: ``OMP_NUM_THREADS=1 python benchmarks/browser_build.py [--features 6144] [--minutes 30]``
(writes to a temporary folder, removed at the end unless ``--keep DIR``).
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sae_eeg.audio import Audio
from sae_eeg.browse import FeatureTable, write_feature_browser
from sae_eeg.browse import site
from sae_eeg.sae import BatchTopKSAE
from sae_eeg.trajectories import FeatureTrajectory

FRAME_RATE = 50.0
SFREQ = 16000.0
PROTOCOL_CHANNELS = ("C3", "Pz", "T8")


def synthetic_study(n_features, minutes, k, rng):
    """Stimuli (audio + codes), SAE, tables and TRFs shaped like the pipeline's outputs."""
    n_parts = max(1, int(round(minutes * 2)))
    rates = 1.0 / np.arange(1, n_features + 1) ** 0.8   # power-law firing: a few frequent, many rare features
    rates = rng.permutation(rates / rates.sum())
    audio, trajectories = {}, {}
    for i in range(n_parts):
        t = np.arange(int(30 * SFREQ)) / SFREQ
        tone = np.sin(2 * np.pi * (200 + 100 * i % 7) * t) * (np.sin(2 * np.pi * 3 * t) > 0)
        audio[f"part{i:02d}"] = Audio((0.1 * rng.standard_normal(t.size) + 0.2 * tone).astype(np.float32), SFREQ)
        n_frames = int(30 * FRAME_RATE)
        cols = rng.choice(n_features, size=(n_frames, k), p=rates)
        rows = np.repeat(np.arange(n_frames), k)
        codes = sp.csr_array((rng.gamma(2.0, 0.5, n_frames * k).astype(np.float32), (rows, cols.ravel())),
                             shape=(n_frames, n_features))
        codes.sum_duplicates()
        trajectories[f"part{i:02d}"] = FeatureTrajectory(codes, FRAME_RATE, 0.01, np.arange(n_features))
    sae = BatchTopKSAE(384, n_features, k, random_state=0)
    tested = np.sort(rng.choice(n_features, size=min(1000, n_features), replace=False))
    lags = np.arange(65) / 128.0
    subjects = [f"sub-{s:02d}" for s in range(20)]
    grid = pd.MultiIndex.from_product([subjects, tested, PROTOCOL_CHANNELS, ("dev", "test"), lags],
                                      names=["subject", "feature", "channel", "split", "lag"]).to_frame(index=False)
    grid["weight"] = rng.standard_normal(len(grid))
    protocol = pd.DataFrame([{"layer": 6, "feature": f, "channel": c, "sign": s, "t": rng.normal(0, 3),
                              "pval": rng.uniform(), "pval_corrected": 1.0, "significant": False}
                             for f in tested for c in PROTOCOL_CHANNELS for s in ("negative", "positive")])
    all_channels = pd.MultiIndex.from_product(
        [subjects, tested[:20], _biosemi64(), ["all"], lags],
        names=["subject", "feature", "channel", "split", "lag"]).to_frame(index=False)
    all_channels["weight"] = rng.standard_normal(len(all_channels))
    tsne = pd.DataFrame({"feature": np.arange(n_features), "x": rng.normal(size=n_features),
                         "y": rng.normal(size=n_features)})
    labels = pd.DataFrame({"feature": np.arange(n_features),
                           "label": rng.choice(["speech", "sounds", "music"], n_features)})
    return {"trajectories": trajectories, "audio": audio, "sae": sae, "trf": grid, "all_channel_trf": all_channels,
            "tsne": tsne, "layer": 6,
            "tables": [FeatureTable("protocol", protocol, columns={"t": "EEG effect (t)", "pval": "p"}, best="pval"),
                       FeatureTable("class", labels)]}


def _biosemi64():
    import mne

    return mne.channels.make_standard_montage("biosemi64").ch_names


class Timer:
    """Wraps the stage functions the browser's site module calls and adds up their time."""

    def __init__(self):
        self.seconds = {}

    def wrap(self, name):
        original = getattr(site, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

        setattr(site, name, timed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=6144)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--keep", type=Path, default=None, help="write the site here and keep it")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    study = synthetic_study(args.features, args.minutes, args.k, rng)
    print(f"synthetic study: {args.features} features, {args.minutes:g} min of stimuli, "
          f"{sum(t.data.nnz for t in study['trajectories'].values())} nonzero codes, "
          f"{len(study['trf'])} TRF rows ({time.perf_counter() - t0:.0f} s to make)")
    timer = Timer()
    for name in ("top_clip_table", "write_excerpt_audio", "receptive_fields", "nearest_features", "trf_summaries",
                 "topographies"):
        timer.wrap(name)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="sae-eeg-browser-bench-"))
    try:
        built = write_feature_browser(folder / "layer_6", montage="biosemi64", **study)
        print(f"build: {built.seconds:.1f} s in all; " + ", ".join(f"{k} {v:.1f} s" for k, v in timer.seconds.items()))
        print(f"site: {built.n_files} files, {built.total_bytes / 1e6:.1f} MB: "
              + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in built.sizes.items())
              + f"; {built.n_excerpts} audio excerpts")
        data = sorted((built.folder / "data").glob("features_*.js"), key=lambda p: p.stat().st_size)
        index = (built.folder / "data" / "index.js").stat().st_size
        print(f"a feature page loads index.js ({index / 1e6:.2f} MB) and one of {len(data)} feature files "
              f"({data[0].stat().st_size / 1e3:.0f}-{data[-1].stat().st_size / 1e3:.0f} kB)")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

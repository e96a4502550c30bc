"""Whisper tiny.en check: BatchTopK SAEs on its encoder layers, FVU on held-out speech, spliced WER.

Speech is spoken offline by eSpeak NG from generated sentences; the activations of all
layers stream from one backbone pass per stimulus (:class:`ActivationStore`, cached on
disk), one SAE per layer is trained in one run (:func:`train_saes`), then every SAE is
evaluated on held-out sentences never used in training: FVU, L0, and the WER / decoder
cross-entropy / KL change when the layer is replaced by its reconstruction.

Run: ``OMP_NUM_THREADS=2 python benchmarks/sae_whisper_check.py`` (full: 4 layers,
F = 3072, k = 50); ``--help`` lists the options. The slow test
``tests/test_sae_whisper.py::test_whisper_tiny_all_layers`` runs the same function.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch

from sae_eeg.audio import Audio, resample
from sae_eeg.backbones import bundled_whisper_path, load_backbone
from sae_eeg.sae import ActivationStore, TrainingConfig, reconstruction_metrics, train_saes
from sae_eeg.sae.splice import spliced_evaluation
from sae_eeg.speech import speak

_ADJ = ("old", "young", "quiet", "busy", "small", "bright", "tired", "happy", "careful", "famous", "gentle",
        "clever", "brave", "lonely", "friendly", "curious")
_NOUN = ("farmer", "teacher", "doctor", "child", "painter", "sailor", "baker", "student", "driver", "neighbor",
         "musician", "soldier", "gardener", "writer", "captain", "nurse")
_VERB = ("carried", "found", "painted", "opened", "cleaned", "bought", "watched", "repaired", "borrowed",
         "described", "followed", "ignored", "discovered", "delivered", "remembered", "lost")
_THING = ("a heavy basket", "the wooden door", "an old letter", "the broken window", "a yellow umbrella",
          "the silver key", "a small boat", "the morning newspaper", "a warm blanket", "the empty bottle",
          "a green bicycle", "the kitchen table", "a strange map", "the red apple", "a long ladder", "the paper bag")
_PLACE = ("near the river", "in the garden", "behind the station", "at the market", "across the bridge",
          "inside the library", "along the beach", "under the old tree", "before the storm", "after dinner",
          "on the hill", "in the busy street", "by the lake", "during the winter", "at the school", "in the forest")
_VOICES = ("en-us", "en", "en-gb-x-rp", "en-us-nyc")


def sentences(n, *, seed):
    """``n`` distinct generated sentences (no numbers), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    out = set()
    while len(out) < n:
        out.add(f"The {rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.choice(_VERB)} {rng.choice(_THING)} "
                f"{rng.choice(_PLACE)}.")
    return sorted(out)


def spoken(texts, *, seed):
    """Each text spoken with a voice and speed drawn from ``seed``, as 16 kHz :class:`Audio`."""
    rng = np.random.default_rng(seed)
    out = []
    for text in texts:
        audio = speak(text, voice=str(rng.choice(_VOICES)), words_per_minute=int(rng.integers(140, 190)))
        out.append(Audio(resample(audio.waveform, sfreq=audio.sfreq, new_sfreq=16000).astype(np.float32), 16000.0))
    return out


def concatenate(audios, *, seconds=60.0, gap=0.3):
    """Join utterances (with ``gap`` s of silence) into stimuli of about ``seconds`` s."""
    stimuli, current, length = [], [], 0
    silence = np.zeros(int(gap * 16000), np.float32)
    for audio in audios:
        current += [audio.waveform, silence]
        length += len(audio.waveform) + len(silence)
        if length >= seconds * 16000:
            stimuli.append(Audio(np.concatenate(current), 16000.0))
            current, length = [], 0
    if current:
        stimuli.append(Audio(np.concatenate(current), 16000.0))
    return stimuli


def run_check(*, layers=(1, 2, 3, 4), n_train=120, n_test=16, n_wer=8, expansion=8, k=50, n_steps=600,
              batch_size=1024, lr=2e-3, threshold_beta=0.99, seed=0, backbone=None):
    """Train and evaluate; returns a dict of measured figures (per layer under ``"layers"``)."""
    timings = {}
    t0 = time.perf_counter()
    backbone = backbone or load_backbone(bundled_whisper_path())
    train_texts = sentences(n_train, seed=seed)
    test_texts = [t for t in sentences(n_train + 4 * n_test, seed=seed + 1) if t not in set(train_texts)][:n_test]
    train_audio, test_audio = spoken(train_texts, seed=seed), spoken(test_texts, seed=seed + 1)
    timings["speech_s"] = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        store = ActivationStore(backbone, concatenate(train_audio), list(layers), buffer_size=8192,
                                cache_dir=f"{tmp}/cache", seed=seed)
        config = TrainingConfig(layers=tuple(layers), expansion=expansion, k=k, n_steps=n_steps,
                                batch_size=batch_size, lr=lr, warmup_steps=min(100, n_steps // 10),
                                threshold_start=n_steps // 2, threshold_beta=threshold_beta, seed=seed, checkpoint_every=max(1, n_steps // 4))
        t0 = time.perf_counter()
        saes = train_saes(store, config, out_dir=f"{tmp}/run")
        timings["train_s"] = time.perf_counter() - t0
    n_train_frames = sum(backbone.n_frames(len(a.waveform)) for a in concatenate(train_audio))
    held_out = concatenate(test_audio)
    t0 = time.perf_counter()
    results = {}
    for layer, sae in saes.items():
        acts = np.concatenate([backbone.activations(a.waveform, a.sfreq, [layer])[layer].values for a in held_out])
        metrics = reconstruction_metrics(sae, acts)
        metrics.update(spliced_evaluation(backbone, sae, layer, test_audio[:n_wer], test_texts[:n_wer]))
        results[layer] = metrics
    timings["eval_s"] = time.perf_counter() - t0
    return {"layers": results, "n_train_frames": n_train_frames, "n_test_frames": int(len(acts)),
            "train_seconds_of_speech": n_train_frames / 50.0, "timings": timings,
            "config": config.to_config()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--n-train", type=int, default=120)
    parser.add_argument("--n-test", type=int, default=16)
    parser.add_argument("--n-wer", type=int, default=8)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--n-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threshold-beta", type=float, default=0.99)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = run_check(layers=tuple(args.layers), n_train=args.n_train, n_test=args.n_test, n_wer=args.n_wer,
                    expansion=args.expansion, k=args.k, n_steps=args.n_steps, batch_size=args.batch_size, lr=args.lr,
                    threshold_beta=args.threshold_beta)
    print(f"train: {out['train_seconds_of_speech']:.0f} s of speech ({out['n_train_frames']} frames); "
          f"held out: {out['n_test_frames'] / 50:.0f} s; timings {out['timings']}")
    print("layer    FVU     L0   cos   WER plain  WER spliced  dWER   CE plain  dCE    KL")
    for layer, m in out["layers"].items():
        print(f"{layer:5d} {m['fvu']:6.3f} {m['l0']:6.1f} {m['cosine']:5.3f} {m['wer_plain']:9.3f} "
              f"{m['wer_spliced']:11.3f} {m['wer_change']:+6.3f} {m['ce_plain']:9.3f} {m['ce_change']:+6.3f} "
              f"{m['kl']:6.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2, default=float)


if __name__ == "__main__":
    main()

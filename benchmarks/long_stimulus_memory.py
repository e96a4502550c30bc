"""Peak memory of a long stimulus (default 2 hours at 16 kHz) through the acoustic
features and a Whisper encoder: the block-wise code next to the old one-pass code.

Every stage runs in a fresh Python process. Each prints the process's peak resident
memory (VmHWM) over the call, the resident memory before the call (interpreter,
libraries and the float32 input), and the wall time. The old one-pass code (the whole
waveform through one FFT / STFT; the window plan as a (windows x frames) table) is run on
``--old-minutes`` of audio (default 30: its 2-hour peak is ~10 GB on a shared machine) and
its increase over the input is scaled linearly to the full length (it is linear: the
arrays are proportional to the length); ``--old-minutes 0`` skips it, ``--old-minutes
120`` measures it in full. The old window plan is quadratic in the length and is always
measured in full (~2 GB for 2 hours).

The activations use a random-weight Whisper with tiny.en's dimensions (4 blocks, d_model
384), built offline with ``WhisperConfig`` and loaded through ``load_backbone``; their
output alone is frames x 384 float32 (0.55 GB for 2 hours).

The disk each hour of data takes is printed by ``benchmarks/disk_per_eeg_hour.py``.

Usage::

    python benchmarks/long_stimulus_memory.py                 # 2 h, all stages
    python benchmarks/long_stimulus_memory.py --hours 0.25 --old-minutes 15
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SFREQ = 16000


def _rss_mb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak():
    try:  # Linux >= 4.0: writing 5 resets VmHWM to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _stimulus(seconds, sfreq):
    """Amplitude-modulated noise, float32, generated in chunks (no float64 copy)."""
    rng = np.random.default_rng(0)
    n = int(seconds * sfreq)
    out = np.empty(n, dtype=np.float32)
    for a in range(0, n, 1 << 22):
        b = min(a + (1 << 22), n)
        t = np.arange(a, b, dtype=np.float64) / sfreq
        out[a:b] = rng.standard_normal(b - a, dtype=np.float32) * (0.15 * (1 + np.sin(2 * np.pi * 3 * t)))
    return out


def _old_envelope(waveform, sfreq):
    from scipy.signal import hilbert

    from sae_eeg.audio import resample

    return resample(np.abs(hilbert(waveform.astype(np.float64))), sfreq=sfreq, new_sfreq=128.0)


def _old_mel(waveform, sfreq):
    from scipy.signal import stft

    from sae_eeg.trajectories import _mel_filterbank, resample_dense

    hop, n_fft = int(round(sfreq / 100.0)), int(2 ** np.ceil(np.log2(0.025 * sfreq)))
    _, _, spec = stft(waveform, fs=sfreq, nperseg=n_fft, noverlap=n_fft - hop, boundary="even",
                      padded=True)
    power = (np.abs(spec) ** 2).T
    fbank, _ = _mel_filterbank(16, n_fft, sfreq, 50.0, sfreq / 2.0)
    mel = power @ fbank.T
    log_mel = 10.0 * np.log10(np.maximum(mel, mel.max() * 1e-8))
    return resample_dense(log_mel, sfreq=sfreq / hop, new_sfreq=128.0)


def _old_plan(n_frames, window_frames=1500, hop_frames=1000):
    starts = np.array(sorted(set(list(range(0, n_frames - window_frames, hop_frames))
                                 + [n_frames - window_frames])))
    frames = np.arange(n_frames)
    context = np.full((len(starts), n_frames), -1.0)
    for w, start in enumerate(starts):
        inside = (frames >= start) & (frames < start + window_frames)
        left = np.where(start == 0, np.inf, frames - start)
        right = np.where(start + window_frames >= n_frames, np.inf, start + window_frames - 1 - frames)
        context[w, inside] = np.minimum(left, right)[inside]
    return starts, np.argmax(context, axis=0)


def _whisper_folder(folder):
    import torch
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig(vocab_size=51864, num_mel_bins=80, d_model=384, encoder_layers=4,
                           decoder_layers=1, encoder_attention_heads=6, decoder_attention_heads=6,
                           encoder_ffn_dim=1536, decoder_ffn_dim=1536)
    torch.manual_seed(0)
    WhisperModel(config).eval().save_pretrained(folder)
    return folder


def _run_stage(stage, seconds, sfreq, folder):
    """In the child: build the input, reset the peak, run the stage, report."""
    from sae_eeg.backbones import load_backbone, plan_windows
    from sae_eeg.trajectories import envelope, mel_envelopes

    backbone = None
    if stage == "activations":
        import torch

        torch.set_num_threads(2)
        backbone = load_backbone(folder)
    waveform = _stimulus(seconds, sfreq) if stage != "plan" and stage != "plan_old" else None
    n_frames = -(-int(seconds * SFREQ) // 320)
    calls = {
        "envelope": lambda: envelope(waveform, sfreq, new_sfreq=128.0),
        "envelope_old": lambda: _old_envelope(waveform, sfreq),
        "mel": lambda: mel_envelopes(waveform, sfreq, new_sfreq=128.0),
        "mel_old": lambda: _old_mel(waveform, sfreq),
        "plan": lambda: plan_windows(n_frames, 1500, 1000),
        "plan_old": lambda: _old_plan(n_frames),
        "activations": lambda: backbone.activations(waveform, sfreq, [4], batch_size=4),
    }
    before = _rss_mb("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    result = calls[stage]()
    wall = time.perf_counter() - start
    peak = _rss_mb("VmHWM")
    del result
    print(json.dumps({"stage": stage, "before_mb": before, "peak_mb": peak, "seconds": wall}))


def _child(stage, seconds, sfreq, folder):
    out = subprocess.run(
        [sys.executable, __file__, "--stage", stage, "--seconds", str(seconds), "--sfreq", str(sfreq),
         "--model", str(folder)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--old-minutes", type=float, default=30.0)
    parser.add_argument("--sfreq", type=int, default=SFREQ, help="audio rate of the stimulus (Hz)")
    parser.add_argument("--skip-activations", action="store_true")
    parser.add_argument("--stages", nargs="*", help="run only these (envelope, mel, plan, activations)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        _run_stage(args.stage, args.seconds, args.sfreq, args.model)
        return
    seconds, old_seconds = args.hours * 3600.0, args.old_minutes * 60.0
    print(f"stimulus: {args.hours:g} h at {args.sfreq} Hz, float32 "
          f"({seconds * args.sfreq * 4 / 2**20:.0f} MB); old code on {args.old_minutes:g} min, "
          "its increase scaled to the full length")
    print(f"{'stage':<12} {'peak MB':>9} {'call MB':>9} {'s':>7}   {'old peak MB':>12} {'old call MB':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = _whisper_folder(Path(tmp) / "whisper") if not args.skip_activations else tmp
        stages = ["envelope", "mel", "plan"] + ([] if args.skip_activations else ["activations"])
        stages = [st for st in stages if not args.stages or st in args.stages]
        for stage in stages:
            new = _child(stage, seconds, args.sfreq, folder)
            line = (f"{stage:<12} {new['peak_mb']:>9.0f} {new['peak_mb'] - new['before_mb']:>9.0f} "
                    f"{new['seconds']:>7.1f}")
            old_stage = {"envelope": "envelope_old", "mel": "mel_old", "plan": "plan_old"}.get(stage)
            if old_stage and old_seconds > 0:
                # the old plan is (windows x frames), quadratic in the length: measured in full
                measured = seconds if stage == "plan" else old_seconds
                old = _child(old_stage, measured, args.sfreq, folder)
                scale = seconds / measured
                call = (old["peak_mb"] - old["before_mb"]) * scale
                base = new["before_mb"]
                line += f"   {base + call:>12.0f} {call:>12.0f}"
                if scale != 1:
                    line += f"  (x{scale:g} of {old['peak_mb'] - old['before_mb']:.0f} MB)"
            print(line, flush=True)
    print("peak MB: the process's peak resident memory over the call (input included); "
          "call MB: its increase over the memory before the call")


if __name__ == "__main__":
    main()

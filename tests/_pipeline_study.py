"""A small study for the pipeline tests: stimuli, a tiny random Whisper, SAE checkpoints, simulated EEG.

Everything is generated (nothing downloaded) in a few seconds; one pipeline run over it
takes well under a minute on 2 cores.
"""

from pathlib import Path

import soundfile
import torch
from transformers import WhisperConfig, WhisperModel

from sae_eeg.audio import load_audio
from sae_eeg.eeg import simulate_dataset
from sae_eeg.sae import BatchTopKSAE
from sae_eeg.speech import synth_music_like

D_MODEL = 32
LAYERS = (1, 2)


def write_backbone(folder):
    """A random 2-layer Whisper of width 32, saved like a downloaded model."""
    config = WhisperConfig(vocab_size=51865, num_mel_bins=80, d_model=D_MODEL, encoder_layers=len(LAYERS),
                           decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                           encoder_ffn_dim=64, decoder_ffn_dim=64)
    torch.manual_seed(0)
    WhisperModel(config).eval().save_pretrained(folder)
    return Path(folder)


def write_saes(folder, *, seed=0, d_model=D_MODEL):
    """One random BatchTopK SAE (64 features, k=8) per layer, in the ``layer_n/ae.pt`` layout."""
    for layer in LAYERS:
        BatchTopKSAE(d_model, 64, 8, random_state=seed + layer).eval().save(folder, layer=layer)
    return Path(folder)


def make_study(root, *, n_subjects=3, n_stimuli=3, duration=8.0, seed=0):
    """Write the study under ``root``; return the pipeline config (a dict) that analyses it.

    ``seed`` draws the EEG; the stimuli are the same for every seed.
    """
    root = Path(root)
    audio = {}
    for i in range(1, n_stimuli + 1):
        path = root / "audio" / f"story{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        clip = synth_music_like(duration, random_state=i)
        soundfile.write(path, clip.waveform, int(clip.sfreq))
        audio[f"story{i}"] = load_audio(path)
    dataset = simulate_dataset(root / "eeg", list(audio.items()), n_subjects=n_subjects, sfreq=128.0,
                               snr_db=0.0, gap=(1.0, 1.5), random_state=seed)
    return {
        "name": "study", "output_dir": str(root / "out"), "manifest": str(dataset.manifest_path),
        "backbone": str(write_backbone(root / "whisper")), "layers": list(LAYERS),
        "sae": {"checkpoint": str(write_saes(root / "sae"))},
        "preprocess": {"sfreq": 64.0},
        "alignment": {
            "protocol": {"channels": ["Pz"], "n_dev_runs": 2, "n_features": 16, "min_rate": 0.0, "tmax": 0.3},
            "clusters": {"enabled": False},
            "encoding": {"spaces": ["sae", "envelope"], "max_sae_dims": 4, "n_null": 5, "tmax": 0.3,
                         "alphas": [1.0, 100.0]},
        },
    }

"""What every stage needs: the config's backbone, SAEs, stimuli and saved time series."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._io import atomic_path
from ..backbones import bundled_whisper_path, load_backbone
from ..eeg import PreprocessConfig
from ..errors import ConfigError
from ..manifests import load_manifest
from ..sae import TrainingConfig, load_sae
from ..trajectories import TimeSeries

BUNDLED_WHISPER = "bundled-whisper-tiny.en"

def open_backbone(cfg):
    """The backbone named in the config (``bundled-whisper-tiny.en`` is the offline one)."""
    name = bundled_whisper_path() if cfg.backbone == BUNDLED_WHISPER else cfg.backbone
    return load_backbone(name, device=cfg.device)


def sae_dir(cfg):
    """Folder of the SAEs: the configured checkpoint, or ``output_dir/sae``."""
    return cfg.sae.checkpoint or str(Path(cfg.output_dir) / "sae")


def open_saes(cfg):
    """The SAE of every configured layer, in eval mode."""
    return {layer: load_sae(sae_dir(cfg), layer=layer, device=cfg.device) for layer in cfg.layers}


def stimulus_files(cfg):
    """Stimulus name -> audio file, for every stimulus of the manifest."""
    if cfg.stimuli:
        return dict(cfg.stimuli)
    manifest = manifest_of(cfg)
    return {name: manifest.resolve(stim.path) for name, stim in manifest.stimuli.items()}


def manifest_of(cfg):
    if cfg.manifest is None:
        raise ConfigError("This stage needs the EEG dataset: set 'manifest' in the config.")
    return load_manifest(cfg.manifest)


def training_config(cfg):
    """The :class:`TrainingConfig` of the pipeline (its layers are the pipeline's)."""
    return TrainingConfig.from_config({**cfg.sae.training, "layers": list(cfg.layers)})

def analysis_sfreq(cfg):
    """The rate of the EEG analyses (the preprocessing's target rate)."""
    return float(PreprocessConfig.from_dict(cfg.preprocess).sfreq or 128.0)


def save_series(series, path):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, data=series.data.astype(np.float32), sfreq=series.sfreq, tmin=series.tmin,
                 names=np.asarray(series.names, dtype=str))


def load_series(path):
    with np.load(path) as z:
        return TimeSeries(z["data"], float(z["sfreq"]), float(z["tmin"]), tuple(str(n) for n in z["names"]))

def fingerprints(paths):
    """Cheap identity of input files (size and modification time)."""
    return [[str(p), Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for p in paths]

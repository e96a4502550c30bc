"""What the stages share: where each output goes, and the config's backbone, SAEs, stimuli and inputs.

Every path a stage writes comes from the layout functions here (built with
:func:`~sae_eeg.pipeline.outputs.output_path`, so an id can never lead outside
the output folder):

* ``features/<stimulus>/``: ``dense_layer_n.npz`` (activations), ``envelope.npz``,
  ``mel.npz`` (acoustic baselines), ``layer_n.npz`` (SAE feature trajectories);
* ``sae/layer_n/ae.pt``: the SAEs trained by the pipeline;
* ``runs/layer_n/<subject>/<run>.npz``: aligned EEG and features (:func:`~sae_eeg.pipeline.io.save_run`);
* ``alignment/layer_n/subjects/<subject>/`` and ``alignment/layer_n/group/``: tables;
* ``evals/``: the SAE evaluations;
* ``browser/``: the feature browser (``layer_n/`` sites and an ``index.html``).
"""

from __future__ import annotations

from pathlib import Path

from ..backbones import load_backbone
from ..eeg import recording_files
from ..errors import ConfigError
from ..manifests import load_manifest
from ..sae import TrainingConfig, load_sae, locate_checkpoint
from .config import backbone_source
from .outputs import output_path

#: Acoustic baselines computed from each stimulus's audio.
BASELINES = ("envelope", "mel")


def feature_file(cfg, stimulus, name):
    """``features/<stimulus>/<name>.npz``."""
    return output_path(cfg.output_dir, "features", stimulus, f"{name}.npz")


def sae_dir(cfg):
    """Folder of the SAEs: the configured checkpoint, or ``output_dir/sae``."""
    return cfg.sae.checkpoint or output_path(cfg.output_dir, "sae")


def runs_dir(cfg, layer, subject):
    """``runs/layer_n/<subject>/``: the subject's run files of one layer."""
    return output_path(cfg.output_dir, "runs", f"layer_{layer}", subject)


def run_file(cfg, layer, subject, run):
    """``runs/layer_n/<subject>/<run>.npz``."""
    return output_path(cfg.output_dir, "runs", f"layer_{layer}", subject, f"{run}.npz")


def subjects_dir(cfg, layer):
    """``alignment/layer_n/subjects/``: the folders of the per-subject tables of one layer."""
    return output_path(cfg.output_dir, "alignment", f"layer_{layer}", "subjects")


def subject_dir(cfg, layer, subject):
    """``alignment/layer_n/subjects/<subject>/``: the per-subject tables of one layer."""
    return output_path(subjects_dir(cfg, layer), subject)


def group_dir(cfg, layer):
    """``alignment/layer_n/group/``: the group tables of one layer."""
    return output_path(cfg.output_dir, "alignment", f"layer_{layer}", "group")


def evals_dir(cfg):
    """``evals/``: the SAE evaluation tables."""
    return output_path(cfg.output_dir, "evals")


def browser_dir(cfg):
    """``browser/``: the feature browser, a site per layer (``layer_n/``) and ``index.html``."""
    return output_path(cfg.output_dir, "browser")


def open_backbone(cfg):
    """The backbone named in the config (``bundled-whisper-tiny.en`` is the offline one)."""
    return load_backbone(backbone_source(cfg.backbone), device=cfg.device)


def open_saes(cfg):
    """The SAE of every configured layer, in eval mode."""
    return {layer: load_sae(sae_dir(cfg), layer=layer, device=cfg.device) for layer in cfg.layers}


def manifest_of(cfg):
    """The config's manifest (files not checked again: the config's load did)."""
    if cfg.manifest is None:
        raise ConfigError("This stage needs the EEG dataset: set 'manifest' in the config.")
    return load_manifest(cfg.manifest, check_files=False)


def stimulus_files(cfg, manifest=None):
    """Stimulus name -> audio file: the config's ``stimuli``, else every stimulus of the manifest."""
    if cfg.stimuli:
        return dict(cfg.stimuli)
    manifest = manifest or manifest_of(cfg)
    return {name: manifest.resolve(stim.path) for name, stim in manifest.stimuli.items() if stim.path is not None}


def training_config(cfg):
    """The :class:`TrainingConfig` of the pipeline (its layers are the pipeline's)."""
    return TrainingConfig(**cfg.sae.training.model_dump(), layers=tuple(cfg.layers))


def analysis_sfreq(cfg):
    """The rate of the acoustic baselines (the preprocessing's target rate, else 128 Hz)."""
    return float(cfg.preprocess.sfreq or 128.0)


def _folder_files(folder, label):
    folder = Path(folder)
    return {f"{label}/{p.relative_to(folder)}": p for p in sorted(folder.rglob("*")) if p.is_file()}


def backbone_files(cfg):
    """Label -> file of the backbone's weights and configs (none for a hub id: its name is its identity)."""
    source = Path(backbone_source(cfg.backbone)).expanduser()
    return _folder_files(source, "backbone") if source.is_dir() else {}


def checkpoint_files(cfg):
    """Label -> file of each layer's SAE checkpoint and its config (none when the pipeline trains them)."""
    if cfg.sae.checkpoint is None:
        return {}
    files = {}
    for layer in cfg.layers:
        file = locate_checkpoint(cfg.sae.checkpoint, layer=layer)
        files[f"sae layer {layer}"] = file
        for name in ("config.json", "cfg.json"):
            if (file.parent / name).is_file():
                files[f"sae layer {layer} {name}"] = file.parent / name
    return files


def eeg_files(manifest, subject):
    """Label -> file of every file read for a subject's runs (recordings and their companions)."""
    files = {}
    for run in manifest.subject(subject).runs:
        for path in recording_files(manifest.resolve(run.eeg.path), run.eeg.format):
            files[f"run {run.id}: {path.name}"] = path
    return files

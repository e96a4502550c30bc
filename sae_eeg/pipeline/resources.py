"""What the stages share: where each output goes, and the config's backbone, SAEs, stimuli and inputs.

Every path a stage writes comes from the layout functions here (built with
:func:`~sae_eeg.pipeline.outputs.output_path`, so an id can never lead outside
the output folder):

* ``features/<stimulus>/``: each stimulus's features, stored once: ``dense_layer_n.npz``
  (activations) and ``layer_n.npz`` (SAE feature trajectories, sparse) at the
  backbone's frame rate, ``envelope.npz`` and ``mel.npz`` (acoustic baselines, from
  the audio or the release's precomputed features);
* ``sae/layer_n/ae.pt``: the SAEs trained by the pipeline;
* ``runs/<subject>/<run>.npz``: the preprocessed EEG of one run cut to its stimulus,
  and the stimulus's name (:func:`~sae_eeg.pipeline.io.save_run`); the features are
  aligned to it when the analyses read it, so they are stored once per stimulus,
  not once per subject and layer;
* ``alignment/layer_n/subjects/<subject>/`` and ``alignment/layer_n/group/``: tables;
* ``alignment/acoustic/subjects/<subject>/`` and ``alignment/acoustic/group/``: the acoustic TRFs;
* ``alignment/attribution/``: the feature attribution of all layers (its per-feature table
  also as ``alignment/layer_n/group/attribution_features``, for the browser);
* ``evals/``: the SAE evaluations;
* ``browser/``: the feature browser (``layer_n/`` sites and an ``index.html``).
"""

from __future__ import annotations

from pathlib import Path

from ..backbones import load_backbone
from ..eeg import recording_files
from ..errors import ConfigError
from ..manifests import RELEASE_FEATURES, load_manifest
from ..sae import TrainingConfig, load_sae, locate_checkpoint
from .config import backbone_source
from .outputs import output_path

#: Acoustic baselines computed from each stimulus's audio (or taken from the release's features).
BASELINES = RELEASE_FEATURES


def features_dir(cfg, stimulus):
    """``features/<stimulus>/``: every stored feature of one stimulus."""
    return output_path(cfg.output_dir, "features", stimulus)


def feature_file(cfg, stimulus, name):
    """``features/<stimulus>/<name>.npz``."""
    return output_path(features_dir(cfg, stimulus), f"{name}.npz")


def sae_dir(cfg):
    """Folder of the SAEs: the configured checkpoint, or ``output_dir/sae``."""
    return cfg.sae.checkpoint or output_path(cfg.output_dir, "sae")


def runs_dir(cfg, subject):
    """``runs/<subject>/``: the subject's run files."""
    return output_path(cfg.output_dir, "runs", subject)


def run_file(cfg, subject, run):
    """``runs/<subject>/<run>.npz``."""
    return output_path(cfg.output_dir, "runs", subject, f"{run}.npz")


def subjects_dir(cfg, layer):
    """``alignment/layer_n/subjects/``: the folders of the per-subject tables of one layer."""
    return output_path(cfg.output_dir, "alignment", f"layer_{layer}", "subjects")


def subject_dir(cfg, layer, subject):
    """``alignment/layer_n/subjects/<subject>/``: the per-subject tables of one layer."""
    return output_path(subjects_dir(cfg, layer), subject)


def group_dir(cfg, layer):
    """``alignment/layer_n/group/``: the group tables of one layer."""
    return output_path(cfg.output_dir, "alignment", f"layer_{layer}", "group")


def acoustic_dir(cfg, subject=None):
    """``alignment/acoustic/group/``, or ``alignment/acoustic/subjects/<subject>/``: the acoustic TRFs."""
    folder = output_path(cfg.output_dir, "alignment", "acoustic")
    return output_path(folder, "group") if subject is None else output_path(folder, "subjects", subject)


def attribution_dir(cfg):
    """``alignment/attribution/``: the feature attribution's tables (all layers)."""
    return output_path(cfg.output_dir, "alignment", "attribution")


def attribution_layers(cfg):
    """The layers analysed together by the attribution (``alignment.attribution.layers``, default all)."""
    return list(cfg.alignment.attribution.layers or cfg.layers)


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


def audio_files(cfg, manifest=None):
    """Stimulus name -> audio file: the config's ``stimuli``, else the manifest's stimuli whose audio is present."""
    if cfg.stimuli:
        return dict(cfg.stimuli)
    manifest = manifest or manifest_of(cfg)
    return {name: manifest.audio_file(name) for name in manifest.stimuli if manifest.audio_file(name) is not None}


def release_feature_kinds(manifest, stimuli):
    """The release features every one of ``stimuli`` has (a feature space must exist in every run)."""
    kinds = [set(manifest.stimuli[name].features) for name in stimuli]
    return tuple(k for k in RELEASE_FEATURES if kinds and all(k in have for have in kinds))


def preprocess_settings(cfg, manifest):
    """The preprocessing of a config's runs: ``reference: mastoids`` without ``reference_channels``
    takes the manifest's ``channels.reference`` (so one config serves manifests that name them
    differently, e.g. CND's ``mastoids1`` and Dryad's ``M1``)."""
    pre = cfg.preprocess
    if pre.reference == "mastoids" and not pre.reference_channels and manifest is not None:
        return pre.model_copy(update={"reference_channels": list(manifest.channels.reference)})
    return pre


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
    """Label -> file of every file read for a subject's runs (recordings, their companions, trigger templates)."""
    files = {}
    for run in manifest.subject(subject).runs:
        for path in recording_files(manifest.resolve(run.eeg.path), run.eeg.format):
            files[f"run {run.id}: {path.name}"] = path
        template = manifest.trigger_template_file(run)
        if template is not None:
            files[f"run {run.id}: trigger template"] = template
    return files


def duration_files(cfg, manifest, stimuli):
    """Label -> file each stimulus's duration is read from (none when the manifest declares it).

    The duration decides how much EEG a run keeps: its audio (the config's or the
    manifest's), else its first release feature.
    """
    files = {}
    audio = audio_files(cfg, manifest)
    for name in stimuli:
        stim = manifest.stimuli[name]
        if stim.duration is not None:
            continue
        if name in audio:
            files[f"stimulus {name}: audio"] = audio[name]
        elif stim.features:
            kind, entry = next(iter(stim.features.items()))
            files[f"stimulus {name}: {kind}"] = manifest.resolve(entry.path)
    return files


def release_feature_files(manifest, stimulus):
    """Label -> file of each release feature a stimulus names."""
    return {f"{kind}": manifest.resolve(entry.path) for kind, entry in manifest.stimuli[stimulus].features.items()}

"""The stages of the analysis, each a list of resumable tasks.

``train_sae`` -> ``extract`` (per stimulus) -> ``preprocess`` (per subject) ->
``subject`` (per subject) -> ``group``. Every stage reads what the previous one
wrote under ``output_dir``:

* ``sae/layer_n/ae.pt``: the SAEs (unless the config names a checkpoint);
* ``features/<stimulus>/``: SAE trajectories per layer at the frame rate,
  dense activations per layer, acoustic baselines;
* ``runs/layer_n/<subject>/<run>.npz``: preprocessed EEG aligned with the
  features of that layer (:func:`sae_eeg.alignment.save_run`);
* ``alignment/layer_n/``: per-subject and group tables of :mod:`sae_eeg.alignment`.

Task functions take the config as a plain dict so they can run on Dask workers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .._io import atomic_path
from ..alignment.io import save_run
from ..alignment.run import run_group, run_subject
from ..audio import load_audio
from ..backbones import bundled_whisper_path, load_backbone
from ..eeg import PreprocessConfig, load_aligned_run
from ..errors import ConfigError
from ..manifests import load_manifest
from ..sae import ActivationStore, TrainingConfig, load_sae, train_saes
from ..trajectories import FeatureTrajectory, TimeSeries, envelope, mel_envelopes
from .config import load_pipeline_config
from .tasks import Task, run_tasks

logger = logging.getLogger(__name__)

BUNDLED_WHISPER = "bundled-whisper-tiny.en"


def _config_dict(cfg):
    return cfg.model_dump(mode="json")


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
    manifest = _manifest(cfg)
    return {name: manifest.resolve(stim.path) for name, stim in manifest.stimuli.items()}


def _manifest(cfg):
    if cfg.manifest is None:
        raise ConfigError("This stage needs the EEG dataset: set 'manifest' in the config.")
    return load_manifest(cfg.manifest)


def training_config(cfg):
    """The :class:`TrainingConfig` of the pipeline (its layers are the pipeline's)."""
    return TrainingConfig.from_config({**cfg.sae.training, "layers": list(cfg.layers)})


# --- tasks -------------------------------------------------------------------------------


def train_sae_task(config, verbose=False):
    """Train one SAE per layer on the stimulus audio (resumes an interrupted run)."""
    cfg = load_pipeline_config(config)
    backbone = open_backbone(cfg)
    files = [str(p) for p in stimulus_files(cfg).values()] + [str(p) for p in cfg.sae.extra_audio]
    training = training_config(cfg)
    store = ActivationStore(backbone, {"stimuli": files}, list(cfg.layers), seed=training.seed,
                            buffer_size=max(4 * training.batch_size, 8192))
    train_saes(store, training, out_dir=sae_dir(cfg), device=cfg.device, verbose=verbose)


def extract_task(config, stimulus, out_dir):
    """SAE trajectories, dense activations and acoustic baselines of one stimulus."""
    cfg = load_pipeline_config(config)
    backbone, saes = open_backbone(cfg), open_saes(cfg)
    audio = load_audio(stimulus_files(cfg)[stimulus])
    acts = backbone.activations(audio.waveform, audio.sfreq, list(cfg.layers))
    out_dir = Path(out_dir)
    for layer, act in acts.items():
        codes = saes[layer].encode_sparse(act.values)
        traj = FeatureTrajectory(codes, act.frame_rate, float(act.times[0]), np.arange(codes.shape[1]))
        traj.save(out_dir / f"layer_{layer}.npz")
        dense = TimeSeries(act.values, act.frame_rate, float(act.times[0]),
                           tuple(f"d{i}" for i in range(act.values.shape[1])))
        _save_series(dense, out_dir / f"dense_layer_{layer}.npz")
    rate = float(PreprocessConfig.from_dict(cfg.preprocess).sfreq or 128.0)
    _save_series(envelope(audio.waveform, audio.sfreq, new_sfreq=rate), out_dir / "envelope.npz")
    _save_series(mel_envelopes(audio.waveform, audio.sfreq, new_sfreq=rate), out_dir / "mel.npz")


def _save_series(series, path):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, data=series.data.astype(np.float32), sfreq=series.sfreq, tmin=series.tmin,
                 names=np.asarray(series.names, dtype=str))


def _load_series(path):
    with np.load(path) as z:
        return TimeSeries(z["data"], float(z["sfreq"]), float(z["tmin"]), tuple(str(n) for n in z["names"]))


def preprocess_task(config, subject, out_dir):
    """Preprocess and align every run of one subject; write one run file per layer and run."""
    cfg = load_pipeline_config(config)
    manifest = _manifest(cfg)
    preprocess = PreprocessConfig.from_dict(cfg.preprocess)
    features_root = Path(cfg.output_dir) / "features"
    for run in manifest.subject(subject).runs:
        stim_dir = features_root / run.stimulus
        trajs = {layer: FeatureTrajectory.load(stim_dir / f"layer_{layer}.npz") for layer in cfg.layers}
        first = cfg.layers[0]
        aligned, _steps = load_aligned_run(manifest, subject, run.id, trajs[first], config=preprocess)
        grid = {"tmin": 0.0, "n_times": aligned.n_times}
        baselines = {name: _load_series(stim_dir / f"{name}.npz").resample(aligned.sfreq, **grid).data
                     for name in ("envelope", "mel")}
        for layer in cfg.layers:
            feats = aligned.features if layer == first else trajs[layer].resample(aligned.sfreq, **grid)
            dense = _load_series(stim_dir / f"dense_layer_{layer}.npz").resample(aligned.sfreq, **grid).data
            save_run(Path(out_dir) / f"layer_{layer}" / subject / f"{run.id}.npz", eeg=aligned.eeg,
                     features=feats.data, sfreq=aligned.sfreq, ch_names=aligned.ch_names,
                     feature_ids=feats.feature_ids, spaces={**baselines, "dense": dense})


def alignment_config(cfg, layer):
    """The :mod:`sae_eeg.alignment` config of one layer: run files of every subject."""
    manifest = _manifest(cfg)
    runs_root = Path(cfg.output_dir) / "runs" / f"layer_{layer}"
    runs = {s.id: [str(runs_root / s.id / f"{r.id}.npz") for r in s.runs] for s in manifest.all_subjects()}
    return {**cfg.alignment, "output_dir": str(Path(cfg.output_dir) / "alignment" / f"layer_{layer}"),
            "model": cfg.backbone, "layer": layer, "runs": runs,
            "sfreq": float(PreprocessConfig.from_dict(cfg.preprocess).sfreq or 128.0)}


def subject_task(config, subject):
    """Every per-subject alignment analysis of one subject, for every layer."""
    cfg = load_pipeline_config(config)
    for layer in cfg.layers:
        run_subject(alignment_config(cfg, layer), subject)


def group_task(config):
    """Group statistics of every layer."""
    cfg = load_pipeline_config(config)
    for layer in cfg.layers:
        run_group(alignment_config(cfg, layer))


def _fingerprints(paths):
    """Cheap identity of input files (size and modification time)."""
    return [[str(p), Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for p in paths]


# --- stages ------------------------------------------------------------------------------


def stage_tasks(config, stage, *, verbose=False):
    """The tasks of one stage ("train_sae", "extract", "preprocess", "subject", "group")."""
    cfg = load_pipeline_config(config)
    conf = _config_dict(cfg)
    out = Path(cfg.output_dir)
    subjects = [] if stage in ("train_sae", "extract") else [s.id for s in _manifest(cfg).all_subjects()]
    first = f"layer_{cfg.layers[0]}"
    upstream = {"sae": cfg.sae.model_dump(mode="json"), "layers": cfg.layers, "backbone": cfg.backbone}
    if stage == "train_sae":
        if cfg.sae.checkpoint:
            return []
        return [Task("train-sae", train_sae_task, out / "sae", args=(conf,), kwargs={"verbose": verbose},
                     config={**upstream, "audio": _fingerprints(stimulus_files(cfg).values())})]
    if stage == "extract":
        return [Task(f"extract-{name}", extract_task, out / "features" / name,
                     args=(conf, name, str(out / "features" / name)),
                     config={**upstream, "preprocess": cfg.preprocess, "audio": _fingerprints([path])})
                for name, path in stimulus_files(cfg).items()]
    if stage == "preprocess":
        return [Task(f"preprocess-{s}", preprocess_task, out / "runs" / first / s,
                     args=(conf, s, str(out / "runs")), config={**upstream, "preprocess": cfg.preprocess})
                for s in subjects]
    if stage == "subject":
        return [Task(f"subject-{s}", subject_task, out / "alignment" / first / "subjects" / s,
                     args=(conf, s), config={**upstream, "preprocess": cfg.preprocess,
                                             "alignment": cfg.alignment})
                for s in subjects]
    if stage == "group":
        return [Task("group", group_task, out / "alignment" / first / "group", args=(conf,),
                     config={**upstream, "preprocess": cfg.preprocess, "alignment": cfg.alignment,
                             "subjects": subjects})]
    raise ValueError(f"unknown stage {stage!r}")


STAGES = ("train_sae", "extract", "preprocess", "subject", "group")


def run_stages(config, stages=STAGES, *, verbose=False):
    """Run the given stages in order; stop at the first stage with failed tasks.

    Returns
    -------
    reports : dict
        Stage name -> :class:`~sae_eeg.pipeline.TaskReport`.
    """
    cfg = load_pipeline_config(config)
    reports = {}
    for stage in stages:
        parallel = stage in ("extract", "preprocess", "subject")
        report = run_tasks(stage_tasks(cfg, stage, verbose=verbose), scheduler=cfg.scheduler if parallel else None,
                           n_workers=cfg.n_workers, verbose=verbose)
        reports[stage] = report
        report.raise_for_failures()
    return reports

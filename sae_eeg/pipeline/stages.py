"""The stages of the analysis, each a list of resumable tasks.

``activations`` (per stimulus) -> ``train_sae`` -> ``encode`` (per stimulus) ->
``preprocess`` (per subject) -> ``subject`` (per subject) -> ``group``. Every stage reads what the previous one
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

from ..alignment.io import save_run
from ..alignment.run import run_group, run_subject
from ..audio import load_audio
from ..eeg import PreprocessConfig, load_aligned_run
from ..sae import ArrayActivationStore, train_saes
from ..trajectories import FeatureTrajectory, TimeSeries, envelope, mel_envelopes
from .config import load_pipeline_config
from .evaluate import evaluate_task
from .resources import (
    analysis_sfreq, fingerprints, load_series, manifest_of, open_backbone, open_saes, sae_dir, save_series,
    stimulus_files, training_config,
)
from .tasks import Task, run_tasks

logger = logging.getLogger(__name__)

def _config_dict(cfg):
    return cfg.model_dump(mode="json")


# --- tasks -------------------------------------------------------------------------------


def activations_task(config, stimulus, out_dir):
    """Layer activations (all layers, one pass) and acoustic baselines of one stimulus."""
    cfg = load_pipeline_config(config)
    audio = load_audio(stimulus_files(cfg)[stimulus])
    acts = open_backbone(cfg).activations(audio.waveform, audio.sfreq, list(cfg.layers))
    out_dir = Path(out_dir)
    for layer, act in acts.items():
        dense = TimeSeries(act.values, act.frame_rate, float(act.times[0]),
                           tuple(f"d{i}" for i in range(act.values.shape[1])))
        save_series(dense, out_dir / f"dense_layer_{layer}.npz")
    rate = analysis_sfreq(cfg)
    save_series(envelope(audio.waveform, audio.sfreq, new_sfreq=rate), out_dir / "envelope.npz")
    save_series(mel_envelopes(audio.waveform, audio.sfreq, new_sfreq=rate), out_dir / "mel.npz")


def train_sae_task(config, verbose=False):
    """Train one SAE per layer on the activations of every stimulus (resumes if interrupted)."""
    cfg = load_pipeline_config(config)
    features = Path(cfg.output_dir) / "features"
    acts = {layer: np.concatenate([load_series(features / name / f"dense_layer_{layer}.npz").data
                                   for name in stimulus_files(cfg)]) for layer in cfg.layers}
    training = training_config(cfg)
    store = ArrayActivationStore(acts, seed=training.seed)
    train_saes(store, training, out_dir=sae_dir(cfg), device=cfg.device, verbose=verbose)


def encode_task(config, stimulus, out_dir):
    """SAE feature trajectories of one stimulus, every layer, at the backbone's frame rate."""
    cfg = load_pipeline_config(config)
    saes = open_saes(cfg)
    out_dir = Path(out_dir)
    for layer, sae in saes.items():
        dense = load_series(out_dir / f"dense_layer_{layer}.npz")
        codes = sae.encode_sparse(dense.data)
        FeatureTrajectory(codes, dense.sfreq, dense.tmin, np.arange(codes.shape[1])).save(
            out_dir / f"layer_{layer}.npz")


def preprocess_task(config, subject, out_dir):
    """Preprocess and align every run of one subject; write one run file per layer and run."""
    cfg = load_pipeline_config(config)
    manifest = manifest_of(cfg)
    preprocess = PreprocessConfig.from_dict(cfg.preprocess)
    features_root = Path(cfg.output_dir) / "features"
    for run in manifest.subject(subject).runs:
        stim_dir = features_root / run.stimulus
        trajs = {layer: FeatureTrajectory.load(stim_dir / f"layer_{layer}.npz") for layer in cfg.layers}
        first = cfg.layers[0]
        aligned, _steps = load_aligned_run(manifest, subject, run.id, trajs[first], config=preprocess)
        grid = {"tmin": 0.0, "n_times": aligned.n_times}
        baselines = {name: load_series(stim_dir / f"{name}.npz").resample(aligned.sfreq, **grid).data
                     for name in ("envelope", "mel")}
        for layer in cfg.layers:
            feats = aligned.features if layer == first else trajs[layer].resample(aligned.sfreq, **grid)
            dense = load_series(stim_dir / f"dense_layer_{layer}.npz").resample(aligned.sfreq, **grid).data
            save_run(Path(out_dir) / f"layer_{layer}" / subject / f"{run.id}.npz", eeg=aligned.eeg,
                     features=feats.data, sfreq=aligned.sfreq, ch_names=aligned.ch_names,
                     feature_ids=feats.feature_ids, spaces={**baselines, "dense": dense})


def alignment_config(cfg, layer):
    """The :mod:`sae_eeg.alignment` config of one layer: run files of every subject."""
    manifest = manifest_of(cfg)
    runs_root = Path(cfg.output_dir) / "runs" / f"layer_{layer}"
    runs = {s.id: [str(runs_root / s.id / f"{r.id}.npz") for r in s.runs] for s in manifest.all_subjects()}
    return {**cfg.alignment, "output_dir": str(Path(cfg.output_dir) / "alignment" / f"layer_{layer}"),
            "model": cfg.backbone, "layer": layer, "runs": runs,
            "sfreq": analysis_sfreq(cfg)}


def subject_task(config, subject):
    """Every per-subject alignment analysis of one subject, for every layer."""
    cfg = load_pipeline_config(config)
    memo = {}                                  # acoustic encodings: fitted once for all layers
    for layer in cfg.layers:
        run_subject(alignment_config(cfg, layer), subject, memo=memo)


def group_task(config):
    """Group statistics of every layer."""
    cfg = load_pipeline_config(config)
    for layer in cfg.layers:
        run_group(alignment_config(cfg, layer))


# --- stages ------------------------------------------------------------------------------


def stage_tasks(config, stage, *, verbose=False):
    """The tasks of one stage (one of :data:`STAGES`)."""
    cfg = load_pipeline_config(config)
    conf = _config_dict(cfg)
    out = Path(cfg.output_dir)
    subjects = [] if stage in EXTRACT else [s.id for s in manifest_of(cfg).all_subjects()]
    first = f"layer_{cfg.layers[0]}"
    upstream = {"sae": cfg.sae.model_dump(mode="json"), "layers": cfg.layers, "backbone": cfg.backbone}
    features = out / "features"
    if stage == "activations":
        return [Task(f"activations-{name}", activations_task, features / name / "mel.npz",
                     args=(conf, name, str(features / name)),
                     config={**upstream, "preprocess": cfg.preprocess, "audio": fingerprints([path])})
                for name, path in stimulus_files(cfg).items()]
    if stage == "train_sae":
        if cfg.sae.checkpoint:
            return []
        return [Task("train-sae", train_sae_task, out / "sae", args=(conf,), kwargs={"verbose": verbose},
                     config={**upstream, "audio": fingerprints(stimulus_files(cfg).values())})]
    if stage == "encode":
        return [Task(f"encode-{name}", encode_task, features / name / f"layer_{cfg.layers[-1]}.npz",
                     args=(conf, name, str(features / name)),
                     config={**upstream, "audio": fingerprints([path])})
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
    if stage == "evaluate":
        if cfg.evaluate is None:
            return []
        clips = list(cfg.evaluate.speech) + list(cfg.evaluate.music) + list(cfg.evaluate.noise)
        return [Task("evaluate", evaluate_task, out / "evals" / "receptive_fields.npz", args=(conf,),
                     config={**upstream, "evaluate": cfg.evaluate.model_dump(mode="json"),
                             "clips": fingerprints(clips)})]
    raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")


STAGES = ("activations", "train_sae", "encode", "preprocess", "subject", "group", "evaluate")
EXTRACT = ("activations", "train_sae", "encode")


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
        parallel = stage in ("activations", "encode", "preprocess", "subject")
        report = run_tasks(stage_tasks(cfg, stage, verbose=verbose), scheduler=cfg.scheduler if parallel else None,
                           n_workers=cfg.n_workers, verbose=verbose, desc=stage)
        reports[stage] = report
        report.raise_for_failures()
    return reports

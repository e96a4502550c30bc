"""The task functions of the stages: each reads the outputs of the tasks it needs and writes its own.

They take the validated :class:`~sae_eeg.pipeline.config.PipelineConfig` and plain
names, so they run on Dask workers as well as here. Errors are labelled with the
run, stimulus or file being processed (:func:`~sae_eeg.pipeline.graph.failing_in`),
which the one-line report of a failed task shows.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from .._io import provenance, write_json_atomic
from ..audio import load_audio
from ..eeg import load_aligned_run
from ..errors import CheckpointError, InputError
from ..sae import ArrayActivationStore, train_saes
from ..trajectories import FeatureTrajectory, TimeSeries, envelope, mel_envelopes
from .analyses import SUBJECT_TABLES, check_runs, group_tables, subject_tables
from .config import model_name
from .graph import failing_in
from .._io import read_table, write_table
from .io import load_run, load_series, save_run, save_series
from .resources import (
    BASELINES, analysis_sfreq, feature_file, group_dir, manifest_of, open_backbone, open_saes, run_file, sae_dir,
    subject_dir, training_config,
)

logger = logging.getLogger(__name__)


def activations_task(cfg, stimulus, audio_path):
    """Layer activations (all layers, one pass) and acoustic baselines of one stimulus."""
    with failing_in(stimulus=stimulus, file=audio_path):
        audio = load_audio(audio_path)
    acts = open_backbone(cfg).activations(audio.waveform, audio.sfreq, list(cfg.layers))
    for layer, act in acts.items():
        dense = TimeSeries(act.values, act.frame_rate, float(act.times[0]),
                           tuple(f"d{i}" for i in range(act.values.shape[1])))
        save_series(dense, feature_file(cfg, stimulus, f"dense_layer_{layer}"))
    rate = analysis_sfreq(cfg)
    save_series(envelope(audio.waveform, audio.sfreq, new_sfreq=rate), feature_file(cfg, stimulus, "envelope"))
    save_series(mel_envelopes(audio.waveform, audio.sfreq, new_sfreq=rate), feature_file(cfg, stimulus, "mel"))


def train_sae_task(cfg, stimuli, verbose=False):
    """Train one SAE per layer on the activations of every stimulus (resumes if interrupted)."""
    acts = {layer: np.concatenate([load_series(feature_file(cfg, name, f"dense_layer_{layer}")).data
                                   for name in stimuli]) for layer in cfg.layers}
    training = training_config(cfg)
    store = ArrayActivationStore(acts, seed=training.seed)
    train_saes(store, training, out_dir=sae_dir(cfg), device=cfg.device, verbose=verbose)


def encode_task(cfg, stimulus):
    """SAE feature trajectories of one stimulus, every layer, at the backbone's frame rate."""
    for layer, sae in open_saes(cfg).items():
        dense = load_series(feature_file(cfg, stimulus, f"dense_layer_{layer}"))
        if sae.d_model != dense.data.shape[1]:
            raise CheckpointError(f"the SAE of layer {layer} in {str(sae_dir(cfg))!r} reads activations of width "
                                  f"{sae.d_model}, but layer {layer} of {cfg.backbone!r} has width "
                                  f"{dense.data.shape[1]}.")
        codes = sae.encode_sparse(dense.data)
        FeatureTrajectory(codes, dense.sfreq, dense.tmin, np.arange(codes.shape[1])).save(
            feature_file(cfg, stimulus, f"layer_{layer}"))


def preprocess_task(cfg, subject):
    """Preprocess and align every run of one subject; write one run file per layer and run."""
    manifest = manifest_of(cfg)
    first = cfg.layers[0]
    for run in manifest.subject(subject).runs:
        with failing_in(run=run.id, stimulus=run.stimulus, file=manifest.resolve(run.eeg.path)):
            trajs = {n: FeatureTrajectory.load(feature_file(cfg, run.stimulus, f"layer_{n}")) for n in cfg.layers}
            aligned, _steps = load_aligned_run(manifest, subject, run.id, trajs[first], config=cfg.preprocess)
        grid = {"tmin": 0.0, "n_times": aligned.n_times}
        baselines = {name: load_series(feature_file(cfg, run.stimulus, name)).resample(aligned.sfreq, **grid).data
                     for name in BASELINES}
        for layer in cfg.layers:
            feats = aligned.features if layer == first else trajs[layer].resample(aligned.sfreq, **grid)
            dense = load_series(feature_file(cfg, run.stimulus, f"dense_layer_{layer}"))
            save_run(run_file(cfg, layer, subject, run.id), eeg=aligned.eeg, features=feats.data,
                     sfreq=aligned.sfreq, ch_names=aligned.ch_names, feature_ids=feats.feature_ids,
                     spaces={**baselines, "dense": dense.resample(aligned.sfreq, **grid).data})


def subject_task(cfg, subject, inputs):
    """Every per-subject alignment analysis of one subject, for every layer.

    ``inputs`` (the keys of the tasks whose outputs are read) go into the tables' provenance.
    """
    run_ids = [run.id for run in manifest_of(cfg).subject(subject).runs]
    memo = {}                                  # acoustic encodings: fitted once for all layers
    for layer in cfg.layers:
        paths = [run_file(cfg, layer, subject, run) for run in run_ids]
        with failing_in(file=subject_dir(cfg, layer, subject)):
            runs = [load_run(p) for p in paths]
            check_runs(runs, subject=subject, paths=paths)
        tables = subject_tables(runs, cfg.alignment, subject=subject, model=model_name(cfg), layer=layer, memo=memo)
        prov = {**provenance(cfg.results_config(), inputs=inputs), "subject": subject, "sfreq": runs[0].sfreq}
        folder = subject_dir(cfg, layer, subject)
        for name, table in tables.items():
            write_table(table, folder / name, prov, csv=SUBJECT_TABLES[name])
        write_json_atomic(folder / "provenance.json", prov)


def _subject_tables(cfg, layer, subjects):
    """Every subject's tables of one layer, concatenated per table name (None where one is missing)."""
    tables = {}
    for name in SUBJECT_TABLES:
        paths = [subject_dir(cfg, layer, s) / f"{name}.parquet" for s in subjects]
        tables[name] = pd.concat([read_table(p) for p in paths], ignore_index=True) if all(
            p.is_file() for p in paths) else None
    if tables["protocol_trf"] is None:
        missing = [s for s in subjects if not (subject_dir(cfg, layer, s) / "protocol_trf.parquet").is_file()]
        raise InputError(f"No per-subject results of layer {layer} for subjects {missing}.")
    return tables


def group_task(cfg, subjects, inputs, montage):
    """Group statistics of every layer over ``subjects`` (sorted)."""
    prov = provenance(cfg.results_config(), inputs=inputs)
    for layer in cfg.layers:
        record = subject_dir(cfg, layer, subjects[0]) / "provenance.json"
        sfreq = float(json.loads(record.read_text())["sfreq"])
        tables = group_tables(_subject_tables(cfg, layer, subjects), cfg.alignment, subjects=subjects, sfreq=sfreq,
                              model=model_name(cfg), layer=layer, montage=montage)
        for name, table in tables.items():
            write_table(table, group_dir(cfg, layer) / name, prov)

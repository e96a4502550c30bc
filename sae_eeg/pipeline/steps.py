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

from .._io import provenance, read_table, write_json_atomic, write_table
from ..audio import load_audio
from ..eeg import load_aligned_run, read_manifest_feature, stimulus_duration
from ..errors import CheckpointError, InputError
from ..sae import ArrayActivationStore, train_saes
from ..trajectories import FeatureTrajectory, TimeSeries, envelope, mel_envelopes, resample_dense
from .analyses import (
    ACOUSTIC_SUBJECT_TABLES, AUDIO_SPACES, SUBJECT_TABLES, acoustic_group_tables, acoustic_subject_tables,
    attribution_tables, check_runs, group_tables, subject_tables,
)
from .config import model_name
from .graph import failing_in
from .io import RunData, load_run, load_series, save_run, save_series
from .resources import (
    acoustic_dir, analysis_sfreq, attribution_dir, attribution_layers, feature_file, features_dir, group_dir,
    manifest_of, open_backbone, open_saes, preprocess_settings, run_file, sae_dir, subject_dir, training_config,
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


def release_features_task(cfg, stimulus):
    """The release's precomputed features of a stimulus without audio, stored as its acoustic baselines.

    They keep their own rate and grid (time 0 = the stimulus start); the analyses
    align them to each run's EEG as they do the baselines computed from audio.
    """
    manifest = manifest_of(cfg)
    for kind, entry in manifest.stimuli[stimulus].features.items():
        with failing_in(stimulus=stimulus, file=manifest.resolve(entry.path)):
            series = read_manifest_feature(manifest, stimulus, kind)
        save_series(series, feature_file(cfg, stimulus, kind))


def preprocess_task(cfg, subject):
    """Preprocess every run of one subject and cut it to its stimulus; one run file each.

    A run keeps ``floor(duration * sfreq)`` samples from its onset, the duration of
    its stimulus (:func:`stimulus_durations`). The features are not read here: the
    analyses align them to the runs.
    """
    manifest = manifest_of(cfg)
    runs = manifest.subject(subject).runs
    durations = stimulus_durations(cfg, manifest, dict.fromkeys(run.stimulus for run in runs))
    for run in runs:
        with failing_in(run=run.id, stimulus=run.stimulus, file=manifest.resolve(run.eeg.path)):
            aligned, _steps = load_aligned_run(manifest, subject, run.id, config=preprocess_settings(cfg, manifest),
                                               duration=durations[run.stimulus])
        save_run(run_file(cfg, subject, run.id), eeg=aligned.eeg, sfreq=aligned.sfreq, ch_names=aligned.ch_names,
                 stimulus=run.stimulus, record={"onset_sample": aligned.onset_sample,
                                                "clock_ratio": aligned.clock_ratio,
                                                "samples_after": aligned.samples_after})


def stimulus_durations(cfg, manifest, stimuli):
    """Stimulus -> duration (s) as :func:`~sae_eeg.eeg.stimulus_duration` finds it (the config's audio first)."""
    durations = {}
    for name in stimuli:
        with failing_in(stimulus=name):
            durations[name] = stimulus_duration(manifest, name, audio=cfg.stimuli.get(name))
    return durations


class StimulusFeatures:
    """Each stimulus's stored features, aligned on demand to a run's grid (and remembered for the next run).

    The grid of a run is ``n_times`` samples at ``sfreq`` from the stimulus start;
    every run of a stimulus at one rate has the same grid, so each is computed once
    per task.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self._memo = {}

    def _get(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def sae(self, stimulus, layer, sfreq, n_times):
        """The SAE features of ``layer`` on the grid, a FeatureTrajectory (sparse)."""
        def make():
            traj = FeatureTrajectory.load(feature_file(self.cfg, stimulus, f"layer_{layer}"))
            return traj.resample(sfreq, tmin=0.0, n_times=n_times)
        return self._get(("sae", stimulus, layer, sfreq, n_times), make)

    def series(self, stimulus, name, sfreq, n_times):
        """A stored time series (``envelope``, ``mel``, ``dense_layer_n``) on the grid, float32."""
        def make():
            series = load_series(feature_file(self.cfg, stimulus, name))
            return resample_dense(series.data, sfreq=series.sfreq, new_sfreq=sfreq, tmin=series.tmin, new_tmin=0.0,
                                  n_times=n_times, dtype=np.float32)
        return self._get((name, stimulus, sfreq, n_times), make)

    def forget_layer(self, layer):
        """Drop what was aligned for ``layer`` (its SAE features and activations)."""
        dense = f"dense_layer_{layer}"
        self._memo = {k: v for k, v in self._memo.items() if not ((k[0] == "sae" and k[2] == layer) or k[0] == dense)}


def _run_data(run, feats, *, layer, spaces, sae):
    """The :class:`RunData` of a run file at ``layer``: its EEG and the features it needs, on its grid."""
    out = {}
    for name in spaces:
        if name in ("dense", "dense_pca"):
            out["dense"] = feats.series(run.stimulus, f"dense_layer_{layer}", run.sfreq, run.n_times)
        elif name not in AUDIO_SPACES:
            out[name] = feats.series(run.stimulus, name, run.sfreq, run.n_times)
    if not sae:
        return RunData(run.eeg, None, run.sfreq, run.ch_names, np.zeros(0, dtype=np.int64), out)
    traj = feats.sae(run.stimulus, layer, run.sfreq, run.n_times)
    return RunData(run.eeg, traj.data, run.sfreq, run.ch_names, traj.feature_ids, out)


def subject_task(cfg, subject, inputs, settings, audio):
    """Every per-subject alignment analysis of one subject, for every layer.

    The run files hold the EEG; each run's stimulus features (SAE features of the
    layer, acoustic baselines, activations when a space needs them) are aligned to
    it here. ``settings`` are the alignment settings that run (all of them with
    ``audio``; without, see :func:`~sae_eeg.pipeline.analyses.without_audio`).
    ``inputs`` (the keys of the tasks whose outputs are read) go into the tables'
    provenance.
    """
    run_ids = [run.id for run in manifest_of(cfg).subject(subject).runs]
    paths = [run_file(cfg, subject, run) for run in run_ids]
    with failing_in(file=paths[0].parent):
        runs = [load_run(p) for p in paths]
        check_runs(runs, subject=subject, paths=paths)
    e = settings.encoding
    spaces = list(dict.fromkeys(e.spaces + (e.bands or []))) if e.enabled else []
    feats = StimulusFeatures(cfg)
    memo = {}                                  # acoustic encodings: fitted once for all layers
    for layer in cfg.layers:
        data = []
        for run_id, run in zip(run_ids, runs):
            with failing_in(run=run_id, stimulus=run.stimulus, file=features_dir(cfg, run.stimulus)):
                data.append(_run_data(run, feats, layer=layer, spaces=spaces, sae=audio))
        tables = subject_tables(data, settings, subject=subject, model=model_name(cfg), layer=layer, memo=memo)
        feats.forget_layer(layer)
        prov = {**provenance(cfg.results_config(), inputs=inputs), "subject": subject, "sfreq": runs[0].sfreq,
                "audio": audio}
        folder = subject_dir(cfg, layer, subject)
        for name, table in tables.items():
            write_table(table, folder / name, prov, csv=SUBJECT_TABLES[name])
        write_json_atomic(folder / "provenance.json", prov)


def _subject_tables(cfg, layer, subjects, required):
    """Every subject's tables of one layer, concatenated per table name (None where one is missing)."""
    tables = {}
    for name in SUBJECT_TABLES:
        paths = [subject_dir(cfg, layer, s) / f"{name}.parquet" for s in subjects]
        tables[name] = pd.concat([read_table(p) for p in paths], ignore_index=True) if all(
            p.is_file() for p in paths) else None
    if tables[required] is None:
        missing = [s for s in subjects if not (subject_dir(cfg, layer, s) / f"{required}.parquet").is_file()]
        raise InputError(f"No per-subject results of layer {layer} for subjects {missing}.")
    return tables


def group_task(cfg, subjects, inputs, montage, settings, audio):
    """Group statistics of every layer over ``subjects`` (sorted), of the analyses ``settings`` ran."""
    prov = provenance(cfg.results_config(), inputs=inputs)
    required = "protocol_trf" if audio else "encoding"
    for layer in cfg.layers:
        record = subject_dir(cfg, layer, subjects[0]) / "provenance.json"
        sfreq = float(json.loads(record.read_text())["sfreq"])
        tables = group_tables(_subject_tables(cfg, layer, subjects, required), settings, subjects=subjects,
                              sfreq=sfreq, model=model_name(cfg), layer=layer, montage=montage)
        for name, table in tables.items():
            write_table(table, group_dir(cfg, layer) / name, prov)


def preprocess_band(cfg):
    """The band-pass (l_freq, h_freq) the EEG went through, given to the predictors of the TRFs."""
    return (cfg.preprocess.l_freq, cfg.preprocess.h_freq)


def _acoustic_runs(cfg, subject, feats, spaces):
    """A subject's runs in playing order, each with the acoustic ``spaces`` on its grid."""
    runs = manifest_of(cfg).subject(subject).runs
    paths = [run_file(cfg, subject, run.id) for run in runs]
    with failing_in(file=paths[0].parent):
        loaded = [load_run(p) for p in paths]
        check_runs(loaded, subject=subject, paths=paths)
    data = []
    for run_id, run in zip([run.id for run in runs], loaded):
        with failing_in(run=run_id, stimulus=run.stimulus, file=features_dir(cfg, run.stimulus)):
            data.append((run, _run_data(run, feats, layer=None, spaces=spaces, sae=False)))
    return data


def acoustic_task(cfg, subject, inputs, settings):
    """The acoustic TRFs of one subject (``settings``: the config's, cut to the spaces there are)."""
    runs = _acoustic_runs(cfg, subject, StimulusFeatures(cfg), settings.spaces)
    tables = acoustic_subject_tables([data for _, data in runs], [run.stimulus for run, _ in runs],
                                     settings, subject=subject, band=preprocess_band(cfg))
    prov = {**provenance(cfg.results_config(), inputs=inputs), "subject": subject, "sfreq": runs[0][1].sfreq}
    for name, table in tables.items():
        write_table(table, acoustic_dir(cfg, subject) / name, prov, csv=name != "acoustic_trfs")


def acoustic_group_task(cfg, subjects, inputs, settings):
    """Group acoustic TRFs, peaks with bootstrap intervals and topographies over ``subjects`` (sorted)."""
    tables = {name: pd.concat([read_table(acoustic_dir(cfg, s) / f"{name}.parquet") for s in subjects],
                              ignore_index=True) for name in ACOUSTIC_SUBJECT_TABLES}
    prov = provenance(cfg.results_config(), inputs=inputs)
    for name, table in acoustic_group_tables(tables, settings, subjects=subjects).items():
        write_table(table, acoustic_dir(cfg) / name, prov, csv=name != "acoustic_trfs")


def attribution_task(cfg, subjects, inputs):
    """The feature attribution of every subject and the attribution's layers at once.

    Writes the tables of :data:`~sae_eeg.pipeline.analyses.ATTRIBUTION_TABLES` to ``alignment/attribution/``.
    """
    layers = attribution_layers(cfg)
    feats = StimulusFeatures(cfg)
    runs, features = {}, {layer: {} for layer in layers}
    for s in subjects:
        subject_runs = _acoustic_runs(cfg, s, feats, cfg.alignment.acoustic.spaces)
        runs[s] = [(run.stimulus, data) for run, data in subject_runs]
        for layer in layers:                   # a stimulus's features are aligned once, for its first run
            for run, _ in subject_runs:
                if run.stimulus not in features[layer]:
                    with failing_in(stimulus=run.stimulus, file=features_dir(cfg, run.stimulus)):
                        traj = feats.sae(run.stimulus, layer, run.sfreq, run.n_times)
                    features[layer][run.stimulus] = (traj.data, traj.feature_ids)
    tables = attribution_tables(runs, features, cfg.alignment.attribution, spaces=cfg.alignment.acoustic.spaces,
                                band=preprocess_band(cfg), model=model_name(cfg))
    prov = provenance(cfg.results_config(), inputs=inputs)
    for name, table in tables.items():
        write_table(table, attribution_dir(cfg) / name, prov, csv=name != "attribution_trfs")


def attribution_features_task(cfg, inputs):
    """Each layer's rows of the attribution to ``alignment/layer_n/group/attribution_features`` (for the browser)."""
    found = read_table(attribution_dir(cfg) / "attribution_features.parquet")
    prov = provenance(cfg.results_config(), inputs=inputs)
    for layer in attribution_layers(cfg):
        write_table(found[found.layer == layer].reset_index(drop=True), group_dir(cfg, layer) / "attribution_features",
                    prov)

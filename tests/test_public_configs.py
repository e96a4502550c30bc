"""The shipped Broderick 2018 configs, end to end on a CND fixture tree of two subjects and two runs.

With the audio (synthesised) the SAE path runs on a small random Whisper with a short SAE
training (the shipped configs name whisper-small/hubert-base, which the tests cannot
download: backbone, layers and SAE training are overridden, nothing else); without it the
encoding and the acoustic TRFs run on the release's envelopes and the analyses that need
audio are skipped, each with a warning.
"""

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from _pipeline_study import write_backbone
from _release_fixtures import build_broderick_cnd, build_broderick_dryad, savemat

from sae_eeg.eeg import read_stimulus_feature
from sae_eeg.errors import ConfigError
from sae_eeg.pipeline import EXTRACT, load_pipeline_config, make_report, run_pipeline
from sae_eeg.pipeline.io import load_run, load_series

CONFIGS = Path(__file__).parents[1] / "analyses" / "configs"
SHIPPED = Path(__file__).parents[1] / "data_manifests"
SUBJECTS, RUNS = ("1", "2"), ("1", "2")
#: What two runs and a test's time allow: one development and one test run, no variance partitioning
#: (it needs three runs), 5 circular shifts for the encoding's null instead of 100 and SAE spaces of 4
#: dimensions instead of 32 (on 128 channels the shipped values take ~80 s per subject: they set the
#: p-values' resolution and the spaces' size, not what runs).
SMALL_STUDY = {"alignment": {"protocol": {"n_dev_runs": 1, "n_test_runs": 1},
                             "encoding": {"bands": None, "n_null": 5, "max_sae_dims": 4}}}


def _manifest(folder, release="cnd"):
    """A shipped manifest with its grid cut to the tree's subjects and runs (root from its variable)."""
    data = yaml.safe_load((SHIPPED / f"broderick2018_{release}.yaml").read_text())
    data["grid"]["subjects"], data["grid"]["runs"] = list(SUBJECTS), list(RUNS)
    data["stimuli"] = {f"audio{r}": data["stimuli"][f"audio{r}"] for r in RUNS}
    path = folder / f"broderick2018_{release}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _tree(tmp_path, rng, monkeypatch, *, with_audio):
    root = tmp_path / "LalorNatSpeech"
    features = build_broderick_cnd(root, rng, subjects=SUBJECTS, runs=RUNS, seconds=12.0, with_audio=with_audio)
    monkeypatch.setenv("SAE_EEG_BRODERICK2018_CND", str(root))
    return root, features, {"output_dir": str(tmp_path / "out"), "manifest": str(_manifest(tmp_path)),
                            "scheduler": None}


def _run(config, overrides):
    ran = dict(run_pipeline(config, ("preprocess",), overrides=overrides).ran)
    for s in SUBJECTS:                                   # as `sae-eeg subject --subject s` does
        ran.update(run_pipeline(config, ("subject",), subjects=[s], overrides=overrides).ran)
    return ran


@pytest.mark.parametrize("config", ["broderick2018_whisper_small.yaml", "broderick2018_hubert_base.yaml"])
def test_shipped_config_with_audio_runs_the_sae_path(tmp_path, rng, monkeypatch, config):
    root, _, paths = _tree(tmp_path, rng, monkeypatch, with_audio=True)
    small = {**paths, "backbone": str(write_backbone(tmp_path / "whisper")), "layers": [2],
             "sae": {"training": {"expansion": 2, "k": 8, "n_steps": 40, "batch_size": 64, "warmup_steps": 4,
                                  "threshold_start": 20, "checkpoint_every": 20}}}
    overrides = {**small, **SMALL_STUDY}
    ran = _run(CONFIGS / config, overrides)
    assert set(ran) == {"activations/audio1", "activations/audio2", "train_sae", "encode/audio1", "encode/audio2",
                        "preprocess/1", "preprocess/2", "subject/1", "subject/2"}
    out = Path(paths["output_dir"])
    run = load_run(out / "runs" / "2" / "1.npz")          # EEG only: 128 channels (mastoids referenced, dropped)
    assert run.eeg.shape == (int(11.5 * 128), 128) and run.stimulus == "audio1"
    assert run.ch_names[18] == "A19"                      # the protocol's channel (Pz)
    tables = out / "alignment" / "layer_2" / "subjects" / "2"
    assert {p.name for p in tables.glob("*.parquet")} == {"protocol_trf.parquet", "cluster_trf.parquet",
                                                          "encoding.parquet"}
    import pandas as pd
    encoding = pd.read_parquet(tables / "encoding.parquet")
    assert set(encoding.feature_space) == {"sae", "envelope", "mel", "dense_pca"}
    assert set(pd.read_parquet(tables / "protocol_trf.parquet").channel) == {"A19"}
    assert run_pipeline(CONFIGS / config, ("subject",), overrides=overrides).ran == {}


def test_shipped_config_without_audio_runs_the_envelope_path(tmp_path, rng, monkeypatch, caplog):
    root, features, paths = _tree(tmp_path, rng, monkeypatch, with_audio=False)
    config = CONFIGS / "broderick2018_whisper_small.yaml"       # as shipped: whisper-small, layer 12
    paths = {**paths, "alignment": {"encoding": {"n_null": 5}}}
    with caplog.at_level(logging.WARNING, logger="sae_eeg.pipeline"):
        ran = _run(config, paths)
    assert set(ran) == {"release_features/audio1", "release_features/audio2", "preprocess/1", "preprocess/2",
                        "subject/1", "subject/2"}
    warnings = sorted({r.getMessage() for r in caplog.records})
    assert warnings == [
        "no audio: alignment.acoustic space 'mel' skipped: it needs the stimuli's audio or a release feature 'mel' "
        "for every stimulus.",
        "no audio: alignment.attribution skipped: it attributes the EEG to SAE features, which need the stimuli's "
        "audio.",
        "no audio: alignment.clusters skipped: the cluster TRFs are of SAE features, which need the stimuli's audio.",
        "no audio: alignment.encoding space 'dense_pca' skipped: it needs the stimuli's audio (through the "
        "backbone).",
        "no audio: alignment.encoding space 'mel' skipped: it needs the stimuli's audio or a release feature 'mel' "
        "for every stimulus.",
        "no audio: alignment.encoding space 'sae' skipped: it needs the stimuli's audio (through the backbone).",
        "no audio: alignment.encoding.bands skipped: variance partitioning needs two bands, ['envelope'] are left.",
        "no audio: alignment.protocol skipped: the paper protocol fits TRFs of SAE features, which need the "
        "stimuli's audio.",
    ]
    out = Path(paths["output_dir"])
    np.testing.assert_array_equal(load_series(out / "features" / "audio2" / "envelope.npz").data,
                                  features["envelope"][1].astype(np.float32))      # stored as float32
    run = load_run(out / "runs" / "1" / "2.npz")          # the duration is the envelope's: 12 s
    assert run.eeg.shape == (12 * 128, 128)
    import pandas as pd
    tables = out / "alignment" / "layer_12" / "subjects" / "1"
    assert {p.name for p in tables.glob("*.parquet")} == {"encoding.parquet"}
    assert set(pd.read_parquet(tables / "encoding.parquet").feature_space) == {"envelope"}
    # the acoustic TRFs run on the release's envelopes (the spaces it provides), per subject and group
    ran = run_pipeline(config, ("acoustic_group",), overrides=paths).ran
    assert set(ran) == {"acoustic/1", "acoustic/2", "acoustic_group"}
    peaks = pd.read_parquet(out / "alignment" / "acoustic" / "group" / "acoustic_peaks.parquet")
    assert set(peaks.space) == {"envelope"} and peaks.channel.notna().all()
    assert set(pd.read_parquet(out / "alignment" / "acoustic" / "subjects" / "2" / "acoustic_trfs.parquet").space) \
        == {"envelope"}
    report = make_report(load_pipeline_config(config, overrides=paths)).read_text()
    assert "acoustic_trf_envelope" in report
    # the release's envelope file is an input: a change reruns what reads it
    stim = root / "dataCND" / "dataStim.mat"
    before = read_stimulus_feature(stim, feature="Speech Envelope Vectors", trial=1)
    from scipy.io import loadmat
    mat = loadmat(stim)
    mat["stim"]["data"][0, 0][0, 0] = before.data[::-1].copy()
    savemat(stim, {"stim": mat["stim"]}, version="v7")
    rerun = set(run_pipeline(config, overrides=paths).ran)
    assert {"release_features/audio1", "release_features/audio2", "subject/1", "subject/2", "group",
            "acoustic/1", "acoustic/2", "acoustic_group"} <= rerun
    with pytest.raises(ConfigError, match=r"stage\(s\) \['activations', 'train_sae', 'encode'\] need the stimuli's "
                                          r"audio, and the stimuli have none: put each stimulus's audio file"):
        run_pipeline(config, EXTRACT, overrides=paths)
    with pytest.raises(ConfigError, match=r"stage\(s\) \['browse'\] need the stimuli's audio"):
        run_pipeline(config, ("browse",), overrides=paths)      # the browser shows SAE features


def test_shipped_config_on_the_dryad_release_without_audio(tmp_path, rng, monkeypatch):
    """The same config on the Dryad layout: only the manifest changes (mastoids M1/M2 from its channels)."""
    root = tmp_path / "Natural Speech"
    envelopes = build_broderick_dryad(root, rng, subjects=SUBJECTS, runs=RUNS, seconds=12.0, with_audio=False)
    monkeypatch.setenv("SAE_EEG_BRODERICK2018", str(root))
    overrides = {"output_dir": str(tmp_path / "out"), "manifest": str(_manifest(tmp_path, "dryad")),
                 "scheduler": None, "alignment": {"encoding": {"n_null": 5}}}
    ran = _run(CONFIGS / "broderick2018_hubert_base.yaml", overrides)
    assert {"release_features/audio1", "preprocess/2", "subject/2"} <= set(ran)
    run = load_run(tmp_path / "out" / "runs" / "2" / "1.npz")
    assert run.eeg.shape == (len(envelopes["1"]), 128)        # the envelope's length: 3 samples short of the file
    assert "M1" not in run.ch_names and run.record["samples_after"] == 3
    import pandas as pd
    encoding = pd.read_parquet(tmp_path / "out" / "alignment" / "layer_12" / "subjects" / "2" / "encoding.parquet")
    assert set(encoding.feature_space) == {"envelope"} and len(encoding) == 128
    report = make_report(load_pipeline_config(CONFIGS / "broderick2018_hubert_base.yaml", overrides=overrides))
    assert "Multivariate encoding" in report.read_text()       # what ran is reported; the rest is absent


def test_some_stimuli_with_audio_and_others_without_is_refused_at_load(tmp_path, rng, monkeypatch):
    root, _, paths = _tree(tmp_path, rng, monkeypatch, with_audio=True)
    (root / "Stimuli" / "Audio" / "audio2.wav").unlink()
    with pytest.raises(ConfigError, match=r"stimuli \['audio2'\] have no audio file but the other 1 presented "
                                          r"stimuli have: the SAE analyses need every stimulus's audio"):
        run_pipeline(CONFIGS / "broderick2018_whisper_small.yaml", ("preprocess",), overrides=paths)


def test_without_audio_a_config_must_analyse_some_release_feature(tmp_path, rng, monkeypatch):
    """The encoding or the acoustic TRFs must use a feature the release gives (here only the envelope)."""
    _, _, paths = _tree(tmp_path, rng, monkeypatch, with_audio=False)
    config = CONFIGS / "broderick2018_whisper_small.yaml"
    neither = {**paths, "alignment": {"encoding": {"enabled": False}, "acoustic": {"spaces": ["mel"]}}}
    with pytest.raises(ConfigError, match=r"alignment: without the stimuli's audio only the encoding and the "
                                          r"acoustic TRFs of the release's features \['envelope'\] can run"):
        run_pipeline(config, ("preprocess",), overrides=neither)
    acoustic_only = {**paths, "alignment": {"encoding": {"enabled": False}}}
    assert set(run_pipeline(config, ("acoustic_group",), overrides=acoustic_only).ran) == {
        "release_features/audio1", "release_features/audio2", "preprocess/1", "preprocess/2", "acoustic/1",
        "acoustic/2", "acoustic_group"}

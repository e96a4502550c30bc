"""subject_tables / group_tables (the alignment analyses of the pipeline) and the run-file format."""

import numpy as np
import pandas as pd
import pytest
from _alignment_sim import SFREQ, make_study

from sae_eeg._config import validate_model
from sae_eeg.errors import ConfigError, InputError
from sae_eeg.pipeline.analyses import check_lags, check_runs, group_tables, sae_space, subject_tables
from sae_eeg.pipeline.config import AlignmentSettings
from scipy import sparse

from sae_eeg._io import read_table, write_table
from sae_eeg.pipeline.io import RunData, load_run, save_run

CH_NAMES = ["Fz", "Cz", "Pz", "Oz", "C3", "C4"]


def _settings(**sections):
    return validate_model(AlignmentSettings, sections, source="alignment")


@pytest.fixture(scope="module")
def study():
    data, truth = make_study(n_subjects=5, n_runs=3, n_features=6, planted=(0, 1), planted_channels=(1, 2),
                             run_s=30.0, seed=21)
    runs = {}
    for s, subject_runs in data.items():
        runs[s] = [RunData(eeg, sparse.csr_array(feats, dtype=np.float32), SFREQ, CH_NAMES, np.arange(100, 106),
                           {"envelope": np.asarray(truth["envelope"][r], np.float32).reshape(len(eeg), -1)})
                   for r, (eeg, feats) in enumerate(subject_runs)]
    sections = {
        "protocol": {"channels": ["Pz", "Oz"], "n_dev_runs": 2, "min_rate": 0.5, "tmax": 0.4},
        "clusters": {"montage": "biosemi64", "n_features": 3, "n_permutations": 64, "tmax": 0.3},
        "encoding": {"spaces": ["sae", "envelope"], "channels": ["Pz", "Oz"], "n_null": 20, "tmax": 0.3,
                     "bands": ["sae", "envelope"], "n_iter": 2, "alphas": [1.0, 100.0, 1e4],
                     "max_sae_dims": None},
    }
    return runs, sections


def test_run_file_round_trip(tmp_path, rng):
    """A run file holds the EEG (float32) and the name of its stimulus; no features."""
    eeg = rng.standard_normal((50, 3))
    save_run(tmp_path / "r.npz", eeg=eeg, sfreq=64.0, ch_names=["a", "b", "c"], stimulus="story1",
             record={"onset_sample": 12, "clock_ratio": 1.0})
    run = load_run(tmp_path / "r.npz")
    np.testing.assert_array_equal(run.eeg, eeg.astype(np.float32))
    assert run.eeg.dtype == np.float64 and np.abs(run.eeg - eeg).max() <= 1e-6 * np.abs(eeg).max()
    assert (run.sfreq, run.ch_names, run.stimulus, run.n_times) == (64.0, ["a", "b", "c"], "story1", 50)
    assert run.record == {"onset_sample": 12, "clock_ratio": 1.0}
    with np.load(tmp_path / "r.npz") as z:
        assert sorted(z.files) == ["ch_names", "eeg", "record", "sfreq", "stimulus"]
    np.savez(tmp_path / "bad.npz", eeg=eeg)
    with pytest.raises(InputError, match=r"bad.npz' lacks \['sfreq', 'ch_names', 'stimulus', 'record'\]; .*"
                                         r"rerun 'preprocess'"):
        load_run(tmp_path / "bad.npz")
    with pytest.raises(InputError, match=r"eeg must have shape \(n_times, 2\) for 2 channels, got \(50, 3\)"):
        save_run(tmp_path / "x.npz", eeg=eeg, sfreq=64.0, ch_names=["a", "b"], stimulus="s")


def test_subject_and_group_tables(study, tmp_path):
    runs, sections = study
    settings = _settings(**sections)
    per_subject = {s: subject_tables(r, settings, subject=s, model="sim", layer=4) for s, r in runs.items()}
    first = per_subject["s01"]
    assert set(first) == {"protocol_trf", "cluster_trf", "encoding", "variance_partition"}
    table = first["protocol_trf"]
    assert set(table.split) == {"dev", "test"} and set(table.channel) == {"Pz", "Oz"}
    # max_sae_dims: null -> the SAE space holds every selected feature
    enc = first["encoding"]
    assert set(enc[enc.feature_space == "sae"].n_dims) == {table.feature.nunique()}
    parquet = write_table(enc, tmp_path / "encoding", {"config_hash": "abc"})
    back = read_table(parquet)
    assert back.attrs["provenance"] == {"config_hash": "abc"} and (tmp_path / "encoding.csv").is_file()
    pd.testing.assert_frame_equal(back, enc.reset_index(drop=True), check_like=True)
    subjects = sorted(runs)
    concat = {name: pd.concat([per_subject[s][name] for s in subjects], ignore_index=True) for name in first}
    tables = group_tables(concat, settings, subjects=subjects, sfreq=SFREQ, model="sim", layer=4)
    assert set(tables) == {"protocol_features", "protocol_subjects", "protocol_summary", "clusters",
                           "encoding_tests", "encoding_mixed", "layer_curves", "variance_partition_group"}
    feats = tables["protocol_features"]
    sig = feats[feats.significant]
    assert set(sig.feature) == {100, 101} and set(sig.channel) == {"Pz"}
    assert (feats.model == "sim").all() and (feats.layer == 4).all()
    tests = tables["encoding_tests"].set_index("feature_space")
    assert tests.loc["sae", "significant"] and not tests.loc["envelope", "significant"]
    clusters = tables["clusters"]
    assert set(clusters[clusters.significant].feature) <= {100, 101}


@pytest.mark.parametrize("reduce", ["pca", "top"])
def test_sae_space_reduced_from_all_selected_features(study, reduce):
    runs, sections = study
    feats = [r.features for r in runs["s01"]]
    space = sae_space(feats, 3, reduce)
    assert [s.shape for s in space] == [(f.shape[0], 3) for f in feats]
    if reduce == "top":  # the 3 most active features, unchanged
        activity = sum(np.asarray(abs(f).sum(axis=0)).ravel() for f in feats)
        cols = np.sort(np.argsort(-activity)[:3])
        np.testing.assert_array_equal(space[0], feats[0][:, cols].toarray())
    else:  # linear in every feature: the scores span the same space as a least-squares fit from all
        X = np.concatenate([f.toarray() for f in feats])
        S = np.concatenate(space)
        coef, *_ = np.linalg.lstsq(np.c_[X, np.ones(len(X))], S, rcond=None)
        np.testing.assert_allclose(np.c_[X, np.ones(len(X))] @ coef, S, atol=1e-9)
        assert (np.abs(coef[:-1]) > 1e-6).all()                      # every feature contributes
    assert [s.shape[1] for s in sae_space(feats, None, reduce)] == [feats[0].shape[1]] * len(feats)
    settings = _settings(**{**sections, "clusters": {"enabled": False},
                            "encoding": {**sections["encoding"], "max_sae_dims": 3, "sae_reduce": reduce,
                                         "bands": None}})
    table = subject_tables(runs["s01"], settings, subject="s01", model="sim", layer=4)["encoding"]
    assert set(table[table.feature_space == "sae"].n_dims) == {3}


def test_memo_fits_acoustic_spaces_once_for_all_layers(study):
    runs, sections = study
    settings = _settings(**{**sections, "clusters": {"enabled": False},
                            "encoding": {**sections["encoding"], "bands": None}})
    memo = {}
    subject_tables(runs["s01"], settings, subject="s01", model="sim", layer=4, memo=memo)
    assert len(memo) == 1                                      # the envelope; "sae" depends on the layer
    with_memo = subject_tables(runs["s01"], settings, subject="s01", model="sim", layer=5, memo=memo)["encoding"]
    assert len(memo) == 1                                      # reused, not refitted
    plain = subject_tables(runs["s01"], settings, subject="s01", model="sim", layer=5)["encoding"]
    pd.testing.assert_frame_equal(with_memo, plain)            # same tables, same null draws per space
    assert (with_memo.layer == 5).all()


def test_settings_and_run_errors(study):
    runs, sections = study
    with pytest.raises(ConfigError, match=r"protocol.lag_selection: Input should be 'group' or 'subject' "
                                          r"\(got 'both'\)"):
        _settings(protocol={"lag_selection": "both"})
    with pytest.raises(ConfigError, match=r"2 problem\(s\)") as err:
        _settings(encoding={"n_nul": 3, "spaces": ["envelop"]})
    assert "encoding.n_nul: Extra inputs are not permitted" in str(err.value)
    assert ("encoding.spaces.0: Input should be 'sae', 'dense_pca', 'envelope', 'mel' or 'dense' (got 'envelop')"
            in str(err.value))
    with pytest.raises(InputError, match=r"Feature space 'mel' is missing from runs \[0, 1, 2\]"):
        subject_tables(runs["s01"], _settings(clusters={"enabled": False}, encoding={"spaces": ["mel"]}),
                       subject="s01", model="sim", layer=4)
    with pytest.raises(InputError, match=r"other channels or feature ids"):
        odd = runs["s02"][1]
        check_runs([runs["s01"][0], type(odd)(odd.eeg, odd.features, odd.sfreq, ["x"] * 6, odd.feature_ids,
                                               odd.spaces)], subject="s01", paths=["a.npz", "b.npz"])


def test_lags_longer_than_a_run_are_an_error(study):
    runs, _ = study
    n_times = runs["s01"][0].eeg.shape[0]
    too_long = n_times / SFREQ + 1.0
    settings = _settings(clusters={"enabled": False}, encoding={"tmax": too_long})
    with pytest.raises(InputError, match=r"alignment.encoding: the lags 0.0 to .* s \(\d+ samples at 64 Hz\) are "
                                         r"longer than the shortest run of subject 's01' \(1920 samples, 30.00 s\)"):
        check_lags(settings, runs["s01"], subject="s01")
    with pytest.raises(InputError, match=r"longer than the shortest run"):
        subject_tables(runs["s01"], settings, subject="s01", model="sim", layer=4)

"""run_subject / run_group: tables with provenance, reruns skipped, clear config errors."""

import json

import numpy as np
import pandas as pd
import pytest
from _alignment_sim import SFREQ, make_study

from sae_eeg.alignment.io import load_run, read_table, save_run
from sae_eeg.alignment.run import AlignmentConfig, run_group, run_subject
from sae_eeg.errors import ConfigError, InputError

CH_NAMES = ["Fz", "Cz", "Pz", "Oz", "C3", "C4"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("align_run")
    data, truth = make_study(n_subjects=5, n_runs=3, n_features=6, planted=(0, 1), planted_channels=(1, 2),
                             run_s=30.0, seed=21)
    runs = {}
    for s, subject_runs in data.items():
        runs[s] = []
        for r, (eeg, feats) in enumerate(subject_runs):
            path = root / "runs" / f"{s}_run{r}.npz"
            save_run(path, eeg=eeg, features=feats, sfreq=SFREQ, ch_names=CH_NAMES,
                     feature_ids=np.arange(100, 106), spaces={"envelope": truth["envelope"][r]})
            runs[s].append(str(path))
    config = {
        "output_dir": str(root / "out"), "sfreq": SFREQ, "model": "sim", "layer": 4, "runs": runs,
        "protocol": {"channels": ["Pz", "Oz"], "n_dev_runs": 2, "min_rate": 0.5, "tmax": 0.4},
        "clusters": {"montage": "biosemi64", "n_features": 3, "n_permutations": 64, "tmax": 0.3},
        "encoding": {"spaces": ["sae", "envelope"], "channels": ["Pz", "Oz"], "n_null": 20, "tmax": 0.3,
                     "bands": ["sae", "envelope"], "n_iter": 2, "alphas": [1.0, 100.0, 1e4],
                     "max_sae_dims": None},
    }
    return config, truth


def test_run_file_round_trip(tmp_path, rng):
    eeg = rng.standard_normal((50, 3))
    feats = np.zeros((50, 4), np.float32)
    feats[::7, 2] = 1.5
    save_run(tmp_path / "r.npz", eeg=eeg, features=feats, sfreq=64.0, ch_names=["a", "b", "c"],
             spaces={"envelope": np.arange(50.0)})
    run = load_run(tmp_path / "r.npz")
    np.testing.assert_array_equal(run.eeg, eeg)
    np.testing.assert_array_equal(run.features.toarray(), feats)
    assert run.sfreq == 64.0 and run.ch_names == ["a", "b", "c"] and run.spaces["envelope"].shape == (50, 1)
    np.savez(tmp_path / "bad.npz", eeg=eeg)
    with pytest.raises(InputError, match=r"bad.npz' lacks \['sfreq'"):
        load_run(tmp_path / "bad.npz")


def test_run_subject_and_group(study):
    config, _ = study
    folders = [run_subject(config, s) for s in config["runs"]]
    first = folders[0]
    for name in ("protocol_trf", "cluster_trf", "encoding", "variance_partition"):
        assert (first / f"{name}.parquet").is_file()
        # per-subject TRF weights are large: parquet only; the other tables also as CSV
        assert (first / f"{name}.csv").is_file() == (not name.endswith("_trf"))
    table = read_table(first / "protocol_trf.parquet")
    assert table.attrs["provenance"]["config"]["model"] == "sim"
    assert set(table.split) == {"dev", "test"} and set(table.channel) == {"Pz", "Oz"}
    csv = pd.read_csv(first / "encoding.csv")
    assert len(csv) == len(read_table(first / "encoding.parquet"))
    # max_sae_dims: null -> the SAE space holds every selected feature
    assert set(csv[csv.feature_space == "sae"].n_dims) == {table.feature.nunique()}
    # rerun with the same config and inputs: skipped (files untouched)
    stamp = (first / "protocol_trf.parquet").stat().st_mtime_ns
    run_subject(config, "s01")
    assert (first / "protocol_trf.parquet").stat().st_mtime_ns == stamp
    paths = run_group(config)
    assert set(paths) == {"protocol_features", "protocol_subjects", "protocol_summary", "clusters",
                          "encoding_tests", "encoding_mixed", "layer_curves", "variance_partition_group"}
    feats = read_table(paths["protocol_features"])
    sig = feats[feats.significant]
    assert set(sig.feature) == {100, 101} and set(sig.channel) == {"Pz"}
    assert (feats.model == "sim").all() and (feats.layer == 4).all()
    tests = read_table(paths["encoding_tests"]).set_index("feature_space")
    assert tests.loc["sae", "significant"] and not tests.loc["envelope", "significant"]
    clusters = read_table(paths["clusters"])
    assert set(clusters[clusters.significant].feature) <= {100, 101}
    prov = json.loads((paths["protocol_summary"].with_suffix(".provenance.json")).read_text())
    assert set(prov["inputs"]) == set(config["runs"])


@pytest.mark.parametrize("reduce", ["pca", "top"])
def test_sae_space_reduced_from_all_selected_features(study, tmp_path, reduce):
    from sae_eeg.alignment.run import _sae_space

    config, _ = study
    runs = [load_run(p) for p in config["runs"]["s01"]]
    feats = [r.features for r in runs]
    space = _sae_space(feats, 3, reduce)
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
    assert [s.shape[1] for s in _sae_space(feats, None, reduce)] == [feats[0].shape[1]] * len(feats)
    cfg = {**config, "output_dir": str(tmp_path / reduce),
           "encoding": {**config["encoding"], "max_sae_dims": 3, "sae_reduce": reduce, "bands": None}}
    table = read_table(run_subject(cfg, "s01") / "encoding.parquet")
    assert set(table[table.feature_space == "sae"].n_dims) == {3}


def test_memo_fits_acoustic_spaces_once_for_all_layers(study, tmp_path):
    config, _ = study
    base = {**config, "clusters": {"enabled": False}, "encoding": {**config["encoding"], "bands": None}}
    layer = {k: {**base, "layer": k, "output_dir": str(tmp_path / f"memo{k}")} for k in (4, 5)}
    memo = {}
    run_subject(layer[4], "s01", memo=memo)
    assert len(memo) == 1                                      # the envelope; "sae" depends on the layer
    with_memo = read_table(run_subject(layer[5], "s01", memo=memo) / "encoding.parquet")
    assert len(memo) == 1                                      # reused, not refitted
    plain = read_table(run_subject({**layer[5], "output_dir": str(tmp_path / "plain")}, "s01") / "encoding.parquet")
    pd.testing.assert_frame_equal(with_memo, plain)            # same tables, same null draws per space
    assert (with_memo.layer == 5).all()


def test_run_errors(study, tmp_path):
    config, _ = study
    with pytest.raises(ConfigError, match=r"protocol.lag_selection.*'group' or 'subject'"):
        run_subject({**config, "protocol": {"lag_selection": "both"}}, "s01")
    with pytest.raises(ConfigError, match=r"encoding.n_nul: Extra inputs"):
        run_subject({**config, "encoding": {"n_nul": 3}}, "s01")
    with pytest.raises(InputError, match=r"Subject 's99' is not in the config"):
        run_subject(config, "s99")
    with pytest.raises(InputError, match=r"No per-subject results for \['s01'"):
        run_group({**config, "output_dir": str(tmp_path / "empty")})
    bad = {**config, "output_dir": str(tmp_path / "o"), "encoding": {"spaces": ["mel"]}}
    with pytest.raises(InputError, match=r"Feature space 'mel' is missing from runs \[0, 1, 2\]"):
        run_subject(bad, "s01")


def test_config_relative_paths(tmp_path):
    cfg = AlignmentConfig.model_validate({"output_dir": "out", "runs": {"a": ["r0.npz"]}},
                                         context={"base_dir": tmp_path})
    assert cfg.output_dir == tmp_path / "out" and cfg.runs["a"] == [tmp_path / "r0.npz"]
    assert AlignmentConfig.model_validate({"output_dir": "out", "runs": {}}).output_dir.is_absolute() is False

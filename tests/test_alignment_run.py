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

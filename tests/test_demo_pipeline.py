"""The demo pipeline end to end at reduced size (issue 8's must-show checks)."""

import shutil

import pandas as pd
import pytest

from sae_eeg.pipeline import run_stages
from sae_eeg.pipeline.config import load_pipeline_config
from sae_eeg.pipeline.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    return run_demo(out, size="small", echo=lambda line: None)


def test_demo_finds_planted_features(demo):
    check = demo["recovery"]
    assert check["n_planted"] == 3
    assert check["n_found"] == check["n_planted"], check["table"]


def test_demo_writes_every_figure_and_the_report(demo):
    figures = demo["output_dir"] / "figures"
    expected = ["significant_fraction", "trf_weights", "topomaps", "layer_r", "reconstruction",
                "consistency", "erasure", "steering", "tsne", "receptive_fields"]
    for name in expected:
        for suffix in (".png", ".svg"):
            path = figures / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 1000, path
    report = demo["report"].read_text()
    assert report.count("data:image/png;base64,") >= len(expected)
    assert "config_hash" in report and "Ground truth of the simulation" in report


def test_rerun_reuses_everything(demo, monkeypatch):
    import sae_eeg.pipeline.tasks as tasks

    ran = []
    monkeypatch.setattr(tasks, "_run_one", lambda task: ran.append(task.key) or ("ok", None))
    run_demo(demo["output_dir"], size="small", echo=lambda line: None)
    assert ran == []


def test_dask_subject_tasks_equal_serial(demo, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(demo["output_dir"], copy, ignore=shutil.ignore_patterns("alignment", "figures"))
    serial = load_pipeline_config(demo["config"])
    on_dask = serial.model_copy(update={"output_dir": copy, "scheduler": "local"})
    run_stages(on_dask, ("subject",))
    tables = sorted((demo["output_dir"] / "alignment").glob("layer_*/subjects/*/*.parquet"))
    assert tables
    for path in tables:
        other = copy / path.relative_to(demo["output_dir"])
        pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(other))

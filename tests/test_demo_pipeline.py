"""The demo pipeline end to end at reduced size (issue 8's must-show checks)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sae_eeg.pipeline.demo import run_demo


@pytest.fixture(scope="module")
def demo(small_demo):
    return small_demo  # conftest.py: one run per session, shared with the feature browser's test


def test_demo_finds_planted_features(demo):
    check = demo["recovery"]
    assert check["n_planted"] == 3
    assert check["n_found"] == check["n_planted"], check["table"]


def test_demo_attribution_reports_the_planted_features(demo):
    """Every planted feature, and (nearly) nothing else: a report counts as correct when it is planted or its
    trajectory correlates with a planted one at |r| >= 0.8 (``score_reports``)."""
    tracked = demo["recovery"]["attribution"]
    assert tracked["recall"] == 1.0 and tracked["precision"] >= 0.9, tracked["table"]


def test_demo_envelope_trf_peaks_at_the_planted_auditory_response(demo):
    """The simulated EEG also responds to the envelope: beside the tracked features its TRF peaks within one
    sample of the planted response (as the EEG's band-pass shows it); alone it also carries the features'."""
    heard = demo["recovery"]["acoustic"]
    assert heard["joint_error_samples"] <= 1, heard
    assert heard["latency_ci"][0] <= heard["latency"] <= heard["latency_ci"][1]


def test_demo_writes_every_figure_and_the_report(demo):
    figures = demo["output_dir"] / "figures"
    expected = ["significant_fraction", "trf_weights", "topomaps", "layer_r", "reconstruction",
                "consistency", "erasure", "steering", "tsne", "receptive_fields", "acoustic_trf_envelope",
                "acoustic_topomap_envelope", "acoustic_trf_mel", "acoustic_topomap_mel"]
    for name in expected:
        for suffix in (".png", ".svg"):
            path = figures / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 1000, path
    report = demo["report"].read_text()
    assert report.count("data:image/png;base64,") >= len(expected)
    assert "config_hash" in report and "Ground truth of the simulation" in report
    assert "href='browser/index.html'" in report and demo["browser"].is_file()  # the demo's browse stage
    for layer in demo["config"]["layers"]:
        assert f"href='browser/layer_{layer}/index.html'" in report
        assert (demo["browser"].parent / f"layer_{layer}" / "feature.html").is_file()


def test_rerun_reuses_everything(demo):
    again = run_demo(demo["output_dir"], size="small", scheduler="local", echo=lambda line: None)
    assert [report.ran for report in again["reports"]] == [{}, {}]
    assert all(report.skipped for report in again["reports"])


def test_killed_cli_run_resumes_on_dask_with_identical_tables(demo, tmp_path):
    """``sae-eeg group`` is killed (SIGKILL) after two subjects, then rerun on Dask.

    The copy holds the demo's extraction and preprocessing, not its analyses: only
    the per-subject and group tasks run. The subjects done before the kill ran
    serially, the others on a 2-worker Dask LocalCluster; every per-subject and group
    table equals the demo's own run.
    """
    copy = tmp_path / "copy"
    layer = demo["config"]["layers"][-1]
    shutil.copytree(demo["output_dir"], copy, ignore=shutil.ignore_patterns("alignment", "figures", "subject",
                                                                             "group.json"))
    config = {**demo["config"], "output_dir": str(copy)}
    serial = tmp_path / "serial.yaml"
    serial.write_text(yaml.safe_dump({**config, "scheduler": None}))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    cli = [sys.executable, "-m", "sae_eeg.cli", "group"]
    subjects = copy / "alignment" / f"layer_{layer}" / "subjects"
    proc = subprocess.Popen([*cli, str(serial), "--force"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    stamps = copy / ".sae-eeg" / "tasks" / "subject"

    def n_done():
        return sum('"done"' in p.read_text() for p in stamps.glob("*.json")) if stamps.is_dir() else 0

    deadline = time.time() + 600
    while n_done() < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_subjects = len(list((copy / "runs").iterdir()))
    assert 2 <= n_done() < n_subjects                                    # killed mid-way
    for path in copy.glob("alignment/**/*.parquet"):                     # what is there is whole
        pd.read_parquet(path)
    done = subprocess.run([*cli, str(serial), "--scheduler", "local"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Group tables in" in done.stdout
    tables = sorted(p for p in (demo["output_dir"] / "alignment" / f"layer_{layer}").glob("*/**/*.parquet")
                    if not p.name.startswith("attribution"))       # the attribution stage's: not run here
    assert any("subjects" in p.parts for p in tables) and any("group" in p.parts for p in tables)
    for path in tables:
        other = copy / path.relative_to(demo["output_dir"])
        pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(other))
    # the figure script of analyses/ on the resumed run's tables
    script = Path(__file__).parents[1] / "analyses" / "make_figures.py"
    (copy / "report.html").unlink()
    drawn = subprocess.run([sys.executable, str(script), "--config", str(serial)], env=env, capture_output=True,
                           text=True)
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    assert (copy / "report.html").stat().st_size > 10_000
    assert (copy / "figures" / "trf_weights.png").stat().st_size > 1000

"""Output folders: one run at a time, one configuration, paths kept inside, clear errors."""

import json
import multiprocessing
import os

import pytest

from sae_eeg._io import write_json_atomic
from sae_eeg.errors import ConfigError, OutputBusyError, OutputExistsError
from sae_eeg.pipeline import claim_output_dir, output_path
from sae_eeg.pipeline.outputs import STATE_DIR


def _finish_a_task(out):
    write_json_atomic(out / STATE_DIR / "tasks" / "t.json", {"key": "k", "state": "done"})


def test_one_configuration_per_folder(tmp_path):
    out = tmp_path / "out"
    with claim_output_dir(out, {"a": 1}):
        _finish_a_task(out)
    with claim_output_dir(out, {"a": 1}):  # same config: fine
        pass
    with pytest.raises(OutputExistsError, match=r"holds results of another configuration .*--force"):
        with claim_output_dir(out, {"a": 2}):
            pass
    with claim_output_dir(out, {"a": 2}, force=True):
        pass
    record = json.loads((out / "provenance.json").read_text())
    assert record["config"] == {"a": 2} and "numpy" in record["versions"]


def test_a_run_that_produced_nothing_does_not_block_its_fix(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="bad manifest path"):
        with claim_output_dir(out, {"manifest": "typo.yaml"}):
            raise RuntimeError("bad manifest path")
    with claim_output_dir(out, {"manifest": "fixed.yaml"}):  # nothing finished under the first config
        _finish_a_task(out)
    assert json.loads((out / "provenance.json").read_text())["config"] == {"manifest": "fixed.yaml"}


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"config": {}}', '{"config_hash": 3}'])
def test_damaged_provenance_says_how_to_recover(tmp_path, text):
    out = tmp_path / "out"
    out.mkdir()
    (out / "provenance.json").write_text(text)
    with pytest.raises(OutputExistsError, match=r"provenance.json' is damaged \(\w+Error: .*\); it records which "
                                                r"configuration owns .* delete that file \(or pass --force\)"):
        with claim_output_dir(out, {"a": 1}):
            pass
    with claim_output_dir(out, {"a": 1}, force=True):
        pass
    assert json.loads((out / "provenance.json").read_text())["config"] == {"a": 1}


def test_a_folder_in_use_is_refused(tmp_path):
    out = tmp_path / "out"
    with claim_output_dir(out, {"a": 1}):
        with pytest.raises(OutputBusyError, match=r"in use by another sae-eeg run"):
            with claim_output_dir(out, {"a": 1}):
                pass
    with claim_output_dir(out, {"a": 1}):  # released when the run ends
        pass


def _claim(out, config, barrier, results):
    barrier.wait()
    try:
        with claim_output_dir(out, config):
            _finish_a_task(out)
        results.put(("won", config["run"]))
    except OutputExistsError as err:
        results.put((type(err).__name__, config["run"]))


def test_two_processes_racing_for_one_folder_exactly_one_wins(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for attempt in range(20):
        out = tmp_path / f"race{attempt}"
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_claim, args=(out, {"run": i}, barrier, results)) for i in range(2)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        winners = [run for status, run in outcomes if status == "won"]
        assert len(winners) == 1, outcomes
        losers = [status for status, _ in outcomes if status != "won"]
        assert losers[0] in ("OutputBusyError", "OutputExistsError")
        assert json.loads((out / "provenance.json").read_text())["config"] == {"run": winners[0]}


def test_output_paths_stay_inside(tmp_path):
    out = tmp_path / "out"
    assert output_path(out, "runs", "layer_1", "01") == out.resolve() / "runs" / "layer_1" / "01"
    for parts in (("..", "x"), ("/etc",), ("runs", "../../x")):
        with pytest.raises(ConfigError, match=r"refusing to write .* outside the output folder"):
            output_path(out, *parts)
    out.mkdir()
    os.symlink(tmp_path, out / "link")
    with pytest.raises(ConfigError, match=r"outside the output folder"):
        output_path(out, "link", "x")

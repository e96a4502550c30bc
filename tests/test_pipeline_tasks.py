import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from sae_eeg.errors import OutputExistsError
from sae_eeg.pipeline import Task, prepare_output_dir, run_tasks

# Dask workers cannot import this test module by name: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _write_result(out, seed, fail=False):
    if fail:
        raise RuntimeError(f"planted failure for seed {seed}")
    values = np.random.default_rng(seed).normal(size=5)
    Path(out).write_text(json.dumps(values.tolist()))
    return float(values.sum())


def _tasks(tmp_path, fail_seed=None):
    return [
        Task(key=f"subject-{s:02d}", func=_write_result, output=tmp_path / f"s{s}.json",
             args=(str(tmp_path / f"s{s}.json"), s), kwargs={"fail": s == fail_seed}, config={"seed": s})
        for s in range(4)
    ]


def test_serial_resume_and_failure_isolation(tmp_path):
    report = run_tasks(_tasks(tmp_path, fail_seed=2))
    assert sorted(report.results) == ["subject-00", "subject-01", "subject-03"]
    assert list(report.failed) == ["subject-02"]
    assert "planted failure for seed 2" in report.failed["subject-02"]
    with pytest.raises(RuntimeError, match="subject-02"):
        report.raise_for_failures()
    rerun = run_tasks(_tasks(tmp_path))
    assert list(rerun.results) == ["subject-02"]
    assert sorted(rerun.skipped) == ["subject-00", "subject-01", "subject-03"]


def test_changed_arguments_rerun(tmp_path):
    run_tasks(_tasks(tmp_path))
    changed = [Task(key=t.key, func=t.func, output=t.output, args=t.args, config={**t.config, "v": 2})
               for t in _tasks(tmp_path)]
    assert len(run_tasks(changed).results) == 4


def test_dask_local_cluster_matches_serial(tmp_path):
    serial_dir, dask_dir = tmp_path / "serial", tmp_path / "dask"
    serial_dir.mkdir(), dask_dir.mkdir()
    serial = run_tasks(_tasks(serial_dir))
    on_dask = run_tasks(_tasks(dask_dir, fail_seed=1), scheduler="local", n_workers=2)
    assert list(on_dask.failed) == ["subject-01"]
    for key in on_dask.results:
        assert on_dask.results[key] == serial.results[key]
    for s in (0, 2, 3):
        assert (serial_dir / f"s{s}.json").read_text() == (dask_dir / f"s{s}.json").read_text()


def test_duplicate_keys_rejected(tmp_path):
    t = _tasks(tmp_path)[0]
    with pytest.raises(ValueError, match="repeated: \\['subject-00'\\]"):
        run_tasks([t, t])


def test_output_dir_refuses_other_config(tmp_path):
    prepare_output_dir(tmp_path / "out", {"a": 1})
    prepare_output_dir(tmp_path / "out", {"a": 1})  # same config: fine
    with pytest.raises(OutputExistsError, match="another configuration.*--force"):
        prepare_output_dir(tmp_path / "out", {"a": 2})
    prepare_output_dir(tmp_path / "out", {"a": 2}, force=True)
    record = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert record["config"] == {"a": 2} and "numpy" in record["versions"]


KILLABLE = textwrap.dedent(
    """
    import sys, time, json
    from pathlib import Path
    import numpy as np
    from sae_eeg.pipeline import Task, run_tasks
    from sae_eeg._io import atomic_path

    def work(out, seed, delay):
        with atomic_path(out) as tmp:
            Path(tmp).write_text(json.dumps(np.random.default_rng(seed).normal(size=3).tolist()))
            time.sleep(delay)  # the kill lands here for some tasks: no half-written file
        return seed

    out = Path(sys.argv[1]); delay = float(sys.argv[2])
    tasks = [Task(key=f"t{s}", func=work, output=out / f"t{s}.json",
                  args=(str(out / f"t{s}.json"), s, delay), config={"seed": s}) for s in range(6)]
    run_tasks(tasks).raise_for_failures()
    """
)


def test_killed_run_resumes_with_identical_results(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(KILLABLE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "0.5"], env=env)
    deadline = time.time() + 60
    while not list(killed.glob("t1.json.done.json")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in killed.glob("t?.json"))
    assert 0 < len(finished) < 6  # killed mid-way
    for name in finished:  # what is there is whole: writes are atomic
        assert len(json.loads((killed / name).read_text())) == 3
    subprocess.run([sys.executable, str(script), str(killed), "0"], env=env, check=True)
    subprocess.run([sys.executable, str(script), str(clean), "0"], env=env, check=True)
    for s in range(6):
        assert (killed / f"t{s}.json").read_text() == (clean / f"t{s}.json").read_text()

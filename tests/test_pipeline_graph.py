"""The task graph: content keys, resume, failure isolation, stale outputs, serial == Dask, kill and resume."""

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

from sae_eeg.errors import TaskFailedError
from sae_eeg.pipeline import Task, TaskGraph, run_graph, task_key
from sae_eeg.pipeline.graph import failing_in

# Dask workers cannot import this test module by name: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _write_result(out, seed, fail=False):
    if fail:
        with failing_in(run="r2", file="/data/s2.vhdr"):
            raise ValueError(f"planted failure for seed {seed}\nsecond line")
    values = np.random.default_rng(seed).normal(size=5)
    Path(out).write_text(json.dumps(values.tolist()))
    return float(values.sum())


def _sum_inputs(out, *inputs):
    total = sum(sum(json.loads(Path(p).read_text())) for p in inputs)
    Path(out).write_text(json.dumps([total]))
    return total


def _graph(tmp_path, fail_seed=None, seeds=range(4), extra=None):
    """Four independent subject tasks and a group task that reads them all."""
    tasks = []
    for s in seeds:
        out = tmp_path / f"s{s}.json"
        config = {"seed": s, **(extra or {})}
        tasks.append(Task(f"subject/{s:02d}", _write_result, (str(out), s, s == fail_seed), (out,),
                          task_key(_write_result, config=config), where={"subject": f"{s:02d}"}))
    group_out = tmp_path / "group.json"
    tasks.append(Task("group", _sum_inputs, (str(group_out), *(str(t.outputs[0]) for t in tasks)), (group_out,),
                      task_key(_sum_inputs, upstream={t.name: t.key for t in tasks}),
                      needs=tuple(t.name for t in tasks)))
    return TaskGraph(tasks, tmp_path)


def test_keys_come_from_content():
    base = task_key(_write_result, config={"a": 1}, files={"eeg": "ab"}, upstream={"x": "k"})
    assert base == task_key(_write_result, config={"a": 1}, files={"eeg": "ab"}, upstream={"x": "k"})
    for change in ({"config": {"a": 2}}, {"files": {"eeg": "ac"}}, {"upstream": {"x": "k2"}}):
        args = {"config": {"a": 1}, "files": {"eeg": "ab"}, "upstream": {"x": "k"}, **change}
        assert task_key(_write_result, **args) != base
    assert task_key(_sum_inputs, config={"a": 1}, files={"eeg": "ab"}, upstream={"x": "k"}) != base


def test_resume_failure_isolation_and_one_line_errors(tmp_path):
    report = run_graph(_graph(tmp_path, fail_seed=2))
    assert sorted(report.ran) == ["subject/00", "subject/01", "subject/03"]
    assert list(report.failed) == ["subject/02"] and report.blocked == {"group": "subject/02"}
    line = report.failed["subject/02"]
    assert line == ("subject/02 (subject 02, run r2) [/data/s2.vhdr]: ValueError: planted failure for seed 2 "
                    "second line")
    assert "Traceback" in report.log_file.read_text() and report.log_file.parent == tmp_path / "logs"
    with pytest.raises(TaskFailedError, match=r"1 task\(s\) failed \(tracebacks in .*logs/failed-.*\.log\):\n"
                                              r"  subject/02 \(subject 02, run r2\)") as err:
        report.raise_for_failures()
    assert "1 task(s) that need them were not run" in str(err.value)
    rerun = run_graph(_graph(tmp_path))                     # fixed: only the failed task and its dependant
    assert sorted(rerun.ran) == ["group", "subject/02"]
    assert sorted(rerun.skipped) == ["subject/00", "subject/01", "subject/03"]
    assert run_graph(_graph(tmp_path)).ran == {}


def test_changed_key_reruns_it_and_what_needs_it(tmp_path):
    run_graph(_graph(tmp_path))
    changed = _graph(tmp_path)
    tasks = [Task(t.name, t.func, t.args, t.outputs, task_key(t.func, config={"seed": 1, "v": 2}), t.needs, t.where)
             if t.name == "subject/01" else t for t in changed.tasks]
    group = tasks[-1]
    tasks[-1] = Task(group.name, group.func, group.args, group.outputs,
                     task_key(_sum_inputs, upstream={t.name: t.key for t in tasks[:-1]}), group.needs)
    assert sorted(run_graph(TaskGraph(tasks, tmp_path)).ran) == ["group", "subject/01"]


def test_missing_output_reruns_and_stale_outputs_are_removed(tmp_path):
    run_graph(_graph(tmp_path))
    (tmp_path / "s3.json").unlink()
    assert sorted(run_graph(_graph(tmp_path)).ran) == ["subject/03"]     # same key: group is still current
    # a task that now fails with a new key does not leave its old result to be served
    graph = _graph(tmp_path, fail_seed=1, extra={"v": 2})
    report = run_graph(graph)
    assert "subject/01" in report.failed and not (tmp_path / "s1.json").exists()


def test_graph_checks_names_and_order(tmp_path):
    t = _graph(tmp_path).tasks
    with pytest.raises(ValueError, match=r"repeated: \['subject/00'\]"):
        TaskGraph([t[0], t[0]], tmp_path)
    with pytest.raises(ValueError, match=r"task 'group' needs \['subject/00'.*earlier stages listed before it"):
        TaskGraph([t[-1], *t[:-1]], tmp_path)
    assert [x.name for x in _graph(tmp_path).select(["subject/01"]).tasks] == ["subject/01"]
    assert len(_graph(tmp_path).select(["group"]).tasks) == 5


def test_dask_local_cluster_matches_serial(tmp_path):
    serial_dir, dask_dir = tmp_path / "serial", tmp_path / "dask"
    serial_dir.mkdir(), dask_dir.mkdir()
    serial = run_graph(_graph(serial_dir))
    on_dask = run_graph(_graph(dask_dir, fail_seed=1), scheduler="local", n_workers=2)
    assert list(on_dask.failed) == ["subject/01"] and "planted failure for seed 1" in on_dask.failed["subject/01"]
    for key in on_dask.ran:
        assert on_dask.ran[key] == serial.ran[key]
    for s in (0, 2, 3):
        assert (serial_dir / f"s{s}.json").read_text() == (dask_dir / f"s{s}.json").read_text()
    fixed = run_graph(_graph(dask_dir))  # the fix reruns the failed task and what needs it, here
    assert sorted(fixed.ran) == ["group", "subject/01"]
    assert (serial_dir / "group.json").read_text() == (dask_dir / "group.json").read_text()


KILLABLE = textwrap.dedent(
    """
    import sys, time, json
    from pathlib import Path
    import numpy as np
    from sae_eeg.pipeline import Task, TaskGraph, run_graph, task_key
    from sae_eeg._io import atomic_path

    def work(out, seed, delay):
        with atomic_path(out) as tmp:
            Path(tmp).write_text(json.dumps(np.random.default_rng(seed).normal(size=3).tolist()))
            time.sleep(delay)  # the kill lands here for some tasks: no half-written file
        return seed

    out = Path(sys.argv[1]); delay = float(sys.argv[2])
    tasks = [Task(f"t/{s}", work, (str(out / f"t{s}.json"), s, delay), (out / f"t{s}.json",),
                  task_key(work, config={"seed": s})) for s in range(6)]
    run_graph(TaskGraph(tasks, out)).raise_for_failures()
    """
)


def test_killed_run_resumes_with_identical_results(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(KILLABLE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "0.5"], env=env)
    stamp = killed / ".sae-eeg" / "tasks" / "t" / "1.json"
    deadline = time.time() + 60
    while not (stamp.is_file() and '"done"' in stamp.read_text()) and time.time() < deadline:
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


def test_a_deleted_file_inside_an_output_folder_reruns_its_task(tmp_path):
    def write_folder(folder):
        for name in ("a.txt", "b.txt"):
            (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_text(name)

    task = Task("subject/01", write_folder, (str(tmp_path / "folder"),), (tmp_path / "folder",),
                task_key(write_folder))
    assert list(run_graph(TaskGraph([task], tmp_path)).ran) == ["subject/01"]
    assert run_graph(TaskGraph([task], tmp_path)).ran == {}
    (tmp_path / "folder" / "b.txt").unlink()
    assert list(run_graph(TaskGraph([task], tmp_path)).ran) == ["subject/01"]
    (tmp_path / "folder" / "a.txt").write_text("truncated")          # another size: not what the task wrote
    assert list(run_graph(TaskGraph([task], tmp_path)).ran) == ["subject/01"]


def _record_threads(out):
    import threadpoolctl
    import torch

    blas = [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
    Path(out).write_text(json.dumps({"blas": blas, "torch": torch.get_num_threads()}))


def test_tasks_run_their_blas_and_torch_on_one_thread(tmp_path):
    """A product split over more threads sums in another order: every task runs on one, whatever the
    machine's setting, and the setting is restored after it."""
    import threadpoolctl
    import torch

    out = tmp_path / "threads.json"
    graph = TaskGraph([Task("subject/01", _record_threads, (str(out),), (out,), task_key(_record_threads))], tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threadpoolctl.threadpool_limits(limits=2):
            run_graph(graph).raise_for_failures()
            blas_after = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    seen = json.loads(out.read_text())
    assert seen["blas"] and set(seen["blas"]) == {1} and seen["torch"] == 1, seen
    assert set(blas_after) == {2}

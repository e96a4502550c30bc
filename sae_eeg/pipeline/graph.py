"""The task graph: content-addressed tasks, run serially or on Dask, resumed by their keys.

A :class:`Task` writes its outputs (files or folders inside the output folder). Its
``key`` is the hash of everything that decides those outputs: the function, the
slice of the config it reads, the content fingerprints of the files it reads and
the keys of the tasks whose outputs it reads (:func:`task_key`) - the recipe of
MNE-BIDS-Pipeline, which keys each step's ``joblib.Memory`` call on a step-specific
slice of the config and the hashes of its input files, completed by the upstream keys
so that a change propagates without rereading every intermediate file. A stamp
``.sae-eeg/tasks/<task>.json`` records the key of the last run and whether it
finished. A task runs when its stamp does not hold its current key as finished or
an output is missing; a change anywhere upstream changes the keys of everything
downstream, so exactly what is stale reruns. Before a task runs with a new key its
old outputs are removed, so a stale result is never served; a task killed mid-way
keeps its partial outputs for the rerun with the same key (SAE training resumes).

A failing task does not stop the others: tasks that need its outputs are not run,
every other task runs, and :meth:`TaskReport.raise_for_failures` raises one
:class:`~sae_eeg.errors.TaskFailedError` with one line per failed task (naming its
subject, run, stimulus and file) and the log file holding the tracebacks.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import logging
import os
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from .._check import _soft_import, _validate_type
from .._io import config_hash, write_json_atomic, write_text_atomic
from ..errors import SaeEegError, TaskFailedError
from .outputs import STATE_DIR, output_path

logger = logging.getLogger(__name__)

#: Longest message of one failed task shown to the user (the log file has all of it).
MAX_MESSAGE = 400


def task_key(func, *, config=None, files=None, upstream=None):
    """The content key of a task.

    Parameters
    ----------
    func : callable
        The task function (its qualified name enters the key).
    config : dict | None
        The slice of the validated config the task reads (JSON-serialisable).
    files : dict | None
        Label -> content fingerprint of every file the task reads (labels, not
        paths: moving a dataset does not make it stale).
    upstream : dict | None
        Name -> key of every task whose outputs this task reads.

    Returns
    -------
    key : str
        sha256 hex.
    """
    return config_hash({"func": f"{func.__module__}.{func.__qualname__}", "config": config or {},
                        "files": files or {}, "upstream": upstream or {}})


@dataclass(frozen=True)
class Task:
    """One unit of work of the graph.

    Attributes
    ----------
    name : str
        ``"<stage>/<id>"`` or ``"<stage>"``, unique (e.g. ``"preprocess/03"``).
    func : callable
        Called as ``func(*args)``; writes ``outputs``. Importable at module level
        (it runs on Dask workers).
    args : tuple
        Its arguments (they do not enter the key: what decides the result does).
    outputs : tuple of pathlib.Path
        What it writes, inside the output folder.
    key : str
        Content key (:func:`task_key`).
    needs : tuple of str
        Names of the tasks whose outputs it reads.
    where : dict
        Labels for messages: ``subject``, ``run``, ``stimulus``, ``file``.
    local : bool
        Run in this process even with a Dask scheduler (SAE training, group statistics).
    """

    name: str
    func: Callable
    args: tuple
    outputs: tuple
    key: str
    needs: tuple = ()
    where: dict = field(default_factory=dict)
    local: bool = False

    @property
    def stage(self):
        """The stage this task belongs to."""
        return self.name.split("/", 1)[0]


@contextlib.contextmanager
def failing_in(**where):
    """Label an error raised in the block with the run, stimulus or file being processed.

    The innermost label wins. The task's one-line error message shows the labels,
    e.g. ``with failing_in(run=run.id, file=path): ...`` inside a subject's task.
    """
    try:
        yield
    except Exception as err:
        if not hasattr(err, "_sae_eeg_where"):
            err._sae_eeg_where = {k: str(v) for k, v in where.items()}
        raise


def _summary(task, err):
    """One line naming the task, its subject/run/stimulus and file, and what went wrong."""
    where = {**task.where, **getattr(err, "_sae_eeg_where", {})}
    labels = ", ".join(f"{k} {v}" for k, v in where.items() if k != "file")
    message = str(err) if isinstance(err, SaeEegError) else f"{type(err).__name__}: {err}"
    message = " ".join(message.split())
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE - 3] + "..."
    head = task.name + (f" ({labels})" if labels else "") + (f" [{where['file']}]" if "file" in where else "")
    return f"{head}: {message}"


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    result: object = None
    summary: str = ""
    traceback: str = ""


class TaskGraph:
    """Tasks in dependency order, with their stamps under ``output_dir/.sae-eeg/tasks``.

    Parameters
    ----------
    tasks : sequence of Task
        Every task after the tasks it needs, stage by stage.
    output_dir : path-like
        The output folder.
    """

    def __init__(self, tasks, output_dir):
        self.tasks = list(tasks)
        self.output_dir = Path(output_dir)
        names = [t.name for t in self.tasks]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"task names must be unique; repeated: {repeated}")
        seen = {}
        for task in self.tasks:
            late = [n for n in task.needs if n not in seen or seen[n].stage == task.stage]
            if late:
                raise ValueError(f"task {task.name!r} needs {late}, which must be tasks of earlier stages "
                                 "listed before it")
            seen[task.name] = task

    def stamp_path(self, task):
        """Where the stamp of ``task`` is kept."""
        *folders, name = task.name.split("/")
        return output_path(self.output_dir, STATE_DIR, "tasks", *folders, f"{name}.json")

    def _stamp(self, task):
        try:
            return json.loads(self.stamp_path(task).read_text())
        except (OSError, ValueError):
            return None

    def is_done(self, task):
        """True when the task finished with its current key and every file it wrote is still there."""
        stamp = self._stamp(task)
        if not (isinstance(stamp, dict) and stamp.get("key") == task.key and stamp.get("state") == "done"):
            return False
        if not all(Path(p).exists() for p in task.outputs):
            return False
        files = stamp.get("files", {})
        return all(_size(self.output_dir / rel) == size for rel, size in files.items())

    def select(self, names):
        """The subgraph of the tasks ``names`` and every task they need, in order."""
        by_name = {t.name: t for t in self.tasks}
        keep, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name not in keep:
                keep.add(name)
                todo.extend(by_name[name].needs)
        return TaskGraph([t for t in self.tasks if t.name in keep], self.output_dir)


def _size(path):
    try:
        return path.stat().st_size
    except OSError:
        return None


def _written(outputs, root):
    """Relative path -> size of every file under ``outputs`` (recorded in the stamp of a finished task)."""
    files = {}
    for out in map(Path, outputs):
        for path in ([out] if out.is_file() else sorted(p for p in out.rglob("*") if p.is_file())):
            files[os.path.relpath(path, root)] = path.stat().st_size
    return files


@contextlib.contextmanager
def one_thread():
    """BLAS and torch on one thread while a task runs: its results are the same on any machine.

    A product split over another number of threads sums in another order, which
    changes the last bits of a table (up to 1e-7 relative in the demo's TRF weights,
    2 and 1 threads). Tasks run in parallel on the scheduler's workers instead; an
    SAE's training uses ``sae.training.cpu_threads``.
    """
    from threadpoolctl import threadpool_limits

    from ..sae._common import torch_threads

    with threadpool_limits(limits=1), torch_threads(1):
        yield


def _run_one(task, stamp_path, root):
    """Run a task: clear stale outputs, stamp it running, call it (on one thread), stamp it done with its files."""
    try:
        old = json.loads(Path(stamp_path).read_text()) if Path(stamp_path).is_file() else None
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict) or old.get("key") != task.key:  # outputs of other inputs: never serve them
        for path in map(Path, task.outputs):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    record = {"task": task.name, "key": task.key, "state": "running"}
    write_json_atomic(stamp_path, record)
    try:
        with one_thread():
            result = task.func(*task.args)
    except Exception as err:  # reported as one line; the traceback goes to the log file
        return _Outcome(False, summary=_summary(task, err), traceback=traceback.format_exc())
    finished = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_json_atomic(stamp_path, {**record, "state": "done", "finished": finished,
                                   "files": _written(task.outputs, Path(root).resolve())})
    return _Outcome(True, result=result)


@dataclass(frozen=True)
class TaskReport:
    """What a call of :func:`run_graph` did.

    Attributes
    ----------
    ran : dict
        Task name -> return value, for tasks run now.
    skipped : list of str
        Tasks already done with their current key.
    failed : dict
        Task name -> one-line message.
    blocked : dict
        Task name -> the failed task it needs (not run).
    log_file : pathlib.Path | None
        The tracebacks of the failed tasks.
    """

    ran: dict
    skipped: list
    failed: dict
    blocked: dict
    log_file: Path | None = None

    def raise_for_failures(self):
        """Raise :class:`~sae_eeg.errors.TaskFailedError` listing the failed tasks, if any."""
        if not self.failed:
            return
        lines = [f"{len(self.failed)} task(s) failed (tracebacks in {self.log_file}):"]
        lines += [f"  {message}" for message in self.failed.values()]
        if self.blocked:
            lines.append(f"  ({len(self.blocked)} task(s) that need them were not run.)")
        lines.append("The results of the other tasks are kept; fix the cause and rerun: only the failed tasks "
                     "and what needs them run.")
        raise TaskFailedError("\n".join(lines))


def _local_cluster(distributed, n_workers):
    """A LocalCluster of single-threaded worker processes, started without side effects.

    Dask's default ``MALLOC_TRIM_THRESHOLD_`` for workers turns off glibc's adaptive
    mmap threshold, so every large temporary array is page-faulted afresh: the
    per-subject analyses ran ~1.6x slower. It is left unset. Dask also writes its
    worker variables (``OMP_NUM_THREADS=1``, ...) into this process's environment:
    they are restored after the workers have started.
    """
    import dask

    saved = dict(os.environ)
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None)
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _Dask:
    """A Dask client started on first use (no cluster when every task is done)."""

    def __init__(self, scheduler, n_workers):
        self.scheduler, self.n_workers = scheduler, n_workers
        self.distributed = self.cluster = self.client = None

    def run(self, tasks, stamps, root):
        if self.client is None:
            self.distributed = _soft_import("distributed", "running tasks on Dask", pip_name="dask[distributed]")
            if self.scheduler == "local":
                self.cluster = _local_cluster(self.distributed, self.n_workers)
                self.client = self.distributed.Client(self.cluster)
            else:
                self.client = self.distributed.Client(self.scheduler)
        futures = {self.client.submit(_run_one, t, stamps[t.name], root, key=f"{t.name}-{t.key[:12]}",
                                      pure=False): t for t in tasks}
        for future in self.distributed.as_completed(futures):
            task = futures[future]
            try:
                outcome = future.result()
            except Exception as err:  # the worker died or could not unpickle the task
                outcome = _Outcome(False, summary=_summary(task, err), traceback=traceback.format_exc())
            yield task, outcome

    def close(self):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _write_log(log_dir, failures):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = Path(log_dir) / f"failed-{stamp}-{os.getpid()}.log"
    text = "\n\n".join(f"=== {name}\n{outcome.summary}\n\n{outcome.traceback}" for name, outcome in failures.items())
    write_text_atomic(path, text + "\n")
    return path


def run_graph(graph, *, scheduler=None, n_workers=2, verbose=False, log_dir=None):
    """Run the tasks of ``graph`` that are not done, stage by stage, serially or on Dask.

    Parameters
    ----------
    graph : TaskGraph
    scheduler : None | "local" | str
        ``None`` runs every task in this process; ``"local"`` starts a Dask
        LocalCluster of ``n_workers`` single-threaded processes; an address such
        as ``"tcp://host:8786"`` uses an existing cluster (e.g. dask-jobqueue on
        SLURM). Tasks marked ``local`` always run in this process. Results are the
        same either way.
    n_workers : int
        Workers of the LocalCluster.
    verbose : bool
        Show a progress bar per stage.
    log_dir : path-like | None
        Folder of the log file with the tracebacks of failed tasks (default
        ``output_dir/logs``).

    Returns
    -------
    report : TaskReport
    """
    _validate_type(scheduler, (None, str), "scheduler")
    stages = list(dict.fromkeys(t.stage for t in graph.tasks))
    ran, skipped, failures, blocked = {}, [], {}, {}
    dask = _Dask(scheduler, n_workers) if scheduler is not None else None
    try:
        for stage in stages:
            todo = []
            for task in (t for t in graph.tasks if t.stage == stage):
                stopped = [n for n in task.needs if n in failures or n in blocked]
                if stopped:
                    blocked[task.name] = stopped[0]
                elif graph.is_done(task):
                    skipped.append(task.name)
                else:
                    todo.append(task)
            stamps = {t.name: graph.stamp_path(t) for t in todo}
            remote = [t for t in todo if dask is not None and not t.local]
            root = graph.output_dir.resolve()
            here = ((t, _run_one(t, stamps[t.name], root)) for t in todo if t not in remote)
            with tqdm(total=len(todo), disable=not verbose or not todo, desc=stage) as bar:
                for task, outcome in itertools.chain(here, dask.run(remote, stamps, root) if remote else ()):
                    if outcome.ok:
                        ran[task.name] = outcome.result
                    else:
                        failures[task.name] = outcome
                    bar.update()
    finally:
        if dask is not None:
            dask.close()
    log_file = _write_log(log_dir or graph.output_dir / "logs", failures) if failures else None
    return TaskReport(ran=ran, skipped=skipped, failed={n: o.summary for n, o in failures.items()},
                      blocked=blocked, log_file=log_file)

"""Run independent tasks serially or on Dask, resuming what is done.

A task is a function that writes one output (file or folder). When it returns,
a small stamp ``<output>.done.json`` records the task's hash; a rerun skips every
task whose stamp carries the same hash. Stamps are written atomically after the
output, so a run killed mid-way leaves either a finished task or none.
A failing task is reported with its key and traceback and does not stop the others.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from .._check import _soft_import, _validate_type
from .._io import config_hash, write_json_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One unit of work.

    Attributes
    ----------
    key : str
        Unique, human-readable name (e.g. ``"subject-03"``), used in reports.
    func : callable
        Called as ``func(*args, **kwargs)``; must write ``output`` itself. Must be
        importable at module level to run on Dask workers.
    output : pathlib.Path
        What the task writes; its stamp is ``output`` + ``.done.json``.
    args, kwargs : tuple, dict
        Arguments. They do not enter the task's hash: put what decides the
        result in ``config``.
    config : dict
        Everything that decides the result (the relevant part of the analysis
        config, input hashes); with ``key`` and the function it makes the hash.
    """

    key: str
    func: Callable
    output: Path
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @property
    def stamp(self):
        """Path of the completion stamp."""
        return Path(f"{self.output}.done.json")

    @property
    def hash(self):
        """Hash of everything that decides this task's output."""
        name = f"{self.func.__module__}.{self.func.__qualname__}"
        return config_hash({"func": name, "key": self.key, "config": self.config})

    def is_done(self):
        """True when the output exists and its stamp holds this task's hash."""
        if not (self.stamp.is_file() and Path(self.output).exists()):
            return False
        try:
            return json.loads(self.stamp.read_text()).get("hash") == self.hash
        except ValueError:
            return False


@dataclass(frozen=True)
class TaskReport:
    """What a call of :func:`run_tasks` did.

    Attributes
    ----------
    results : dict
        Task key -> return value, for tasks run now.
    skipped : list of str
        Keys of tasks already done (stamp with the same hash).
    failed : dict
        Task key -> formatted traceback, for tasks that raised.
    """

    results: dict
    skipped: list
    failed: dict

    def raise_for_failures(self):
        """Raise ``RuntimeError`` listing the failed tasks, if any."""
        if self.failed:
            details = "\n\n".join(f"[{key}]\n{tb}" for key, tb in self.failed.items())
            raise RuntimeError(
                f"{len(self.failed)} task(s) failed: {', '.join(self.failed)}. "
                f"Results of the other tasks are kept; rerun to retry only these.\n\n{details}"
            )


def _run_one(task):
    """Run a task and stamp it; return ("ok", result) or ("error", traceback)."""
    try:
        result = task.func(*task.args, **task.kwargs)
    except Exception:  # report the task, keep the others going
        return "error", traceback.format_exc()
    write_json_atomic(task.stamp, {"key": task.key, "hash": task.hash})
    return "ok", result


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


def run_tasks(tasks, *, scheduler=None, n_workers=2, verbose=False, desc="tasks"):
    """Run tasks that are not done yet, serially or on a Dask cluster.

    Parameters
    ----------
    tasks : list of Task
        Independent tasks with unique keys.
    scheduler : None | "local" | str
        ``None`` runs serially in this process; ``"local"`` starts a Dask
        LocalCluster of ``n_workers`` single-threaded processes; an address such
        as ``"tcp://host:8786"`` uses an existing cluster (e.g. one started by
        dask-jobqueue on SLURM).
    n_workers : int
        Workers of the LocalCluster.
    verbose : bool
        Show a progress bar.
    desc : str
        Label of the progress bar.

    Returns
    -------
    report : TaskReport
    """
    _validate_type(scheduler, (None, str), "scheduler")
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"task keys must be unique; repeated: {dup}")
    todo = [t for t in tasks if not t.is_done()]
    skipped = [t.key for t in tasks if t not in todo]
    results, failed = {}, {}
    bar = tqdm(total=len(todo), disable=not verbose, desc=desc)
    if scheduler is None or not todo:  # nothing to run: no cluster to start
        outcomes = ((t, _run_one(t)) for t in todo)
        for task, (status, value) in outcomes:
            (results if status == "ok" else failed)[task.key] = value
            bar.update()
    else:
        distributed = _soft_import("distributed", "running tasks on Dask", pip_name="dask[distributed]")
        if scheduler == "local":
            cluster = _local_cluster(distributed, n_workers)
            client = distributed.Client(cluster)
        else:
            cluster, client = None, distributed.Client(scheduler)
        try:
            futures = {client.submit(_run_one, t, key=f"{t.key}-{t.hash[:12]}", pure=False): t for t in todo}
            for future in distributed.as_completed(futures):
                task = futures[future]
                try:
                    status, value = future.result()
                except Exception:  # the worker died or could not unpickle the task
                    status, value = "error", traceback.format_exc()
                (results if status == "ok" else failed)[task.key] = value
                bar.update()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    bar.close()
    for key in failed:
        logger.error("task %s failed", key)
    return TaskReport(results=results, skipped=skipped, failed=failed)

"""Output folders: claimed by one run at a time, owned by one configuration, written only inside.

:func:`claim_output_dir` takes an exclusive lock on the folder for the whole run
(``filelock``: the operating system releases it when the process ends, so a killed
run leaves no stale lock), then checks and writes ``provenance.json``, the record
of the configuration that owns the folder. Every path a task writes is built with
:func:`output_path`, which refuses any path outside the folder.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import filelock

from .._io import config_hash, provenance, write_json_atomic
from ..errors import ConfigError, OutputBusyError, OutputExistsError

PROVENANCE_FILE = "provenance.json"
LOCK_FILE = ".sae-eeg.lock"
#: Hidden folder of the pipeline's own records (task stamps, file fingerprints).
STATE_DIR = ".sae-eeg"


def output_path(out_dir, *parts):
    """``out_dir / part / ...``, checked to lie inside ``out_dir``.

    Parameters
    ----------
    out_dir : path-like
        The output folder.
    *parts : str
        Path components (ids from manifests and configs among them).

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ConfigError
        If the joined path leaves ``out_dir`` (an absolute part, ``..``, a link out).
    """
    root = Path(out_dir).resolve()
    path = root.joinpath(*map(str, parts))
    if not path.resolve().is_relative_to(root):
        raise ConfigError(f"refusing to write {str(path)!r}: it is outside the output folder {str(root)!r} "
                          f"(from the path components {[str(p) for p in parts]}).")
    return path


def _recorded_hash(record_path, out_dir):
    """The config hash recorded in ``provenance.json``, with a clear error when the file is damaged."""
    try:
        record = json.loads(record_path.read_text())
        digest = record["config_hash"]
        if not isinstance(digest, str):
            raise TypeError(f"config_hash is {type(digest).__name__}")
        return digest
    except (ValueError, KeyError, TypeError) as err:
        raise OutputExistsError(
            f"{str(record_path)!r} is damaged ({type(err).__name__}: {err}); it records which configuration "
            f"owns {str(out_dir)!r}. If the results there are yours, delete that file (or pass --force): every "
            "result is checked against its inputs again and only what is stale is recomputed. Otherwise choose "
            "another output folder."
        ) from None


def produced_anything(out_dir):
    """True when a task of a run in ``out_dir`` has finished (its stamp says done)."""
    stamps = Path(out_dir) / STATE_DIR / "tasks"
    for stamp in stamps.rglob("*.json") if stamps.is_dir() else ():
        with contextlib.suppress(OSError, ValueError):
            if json.loads(stamp.read_text()).get("state") == "done":
                return True
    return False


@contextlib.contextmanager
def claim_output_dir(out_dir, config, *, inputs=None, force=False):
    """Hold ``out_dir`` for one run of ``config``, refusing to mix results of two configs.

    The folder is locked for the whole ``with`` block; another run that tries to
    claim it meanwhile fails at once. Inside the lock, ``provenance.json`` is read:
    a folder of another configuration is refused unless ``force``, or unless no
    task of that configuration ever finished (a failed first run does not block
    its fix). The provenance of ``config`` is written only then.

    Parameters
    ----------
    out_dir : path-like
        The output folder (created with its parents).
    config : dict
        The settings that decide the results (JSON-serialisable).
    inputs : dict | None
        Input names mapped to content hashes, recorded in the provenance.
    force : bool
        Take over a folder written with another configuration: its provenance is
        replaced (results whose inputs changed are recomputed, by their task keys).

    Yields
    ------
    out_dir : pathlib.Path

    Raises
    ------
    OutputBusyError
        Another run holds the folder.
    OutputExistsError
        The folder holds results of another configuration (and not ``force``), or its
        ``provenance.json`` is damaged.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(out_dir / LOCK_FILE, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise OutputBusyError(f"Output folder {str(out_dir)!r} is in use by another sae-eeg run (it holds "
                              f"{LOCK_FILE}); wait for it to finish, or choose another output folder.") from None
    try:
        record_path = out_dir / PROVENANCE_FILE
        new_hash = config_hash(config)
        if record_path.exists() and not force:
            old_hash = _recorded_hash(record_path, out_dir)
            if old_hash != new_hash and produced_anything(out_dir):
                raise OutputExistsError(
                    f"Output folder {str(out_dir)!r} holds results of another configuration (config hash "
                    f"{old_hash[:12]} there, {new_hash[:12]} now). Choose another output folder, or pass "
                    f"force=True (--force) to take it over."
                )
        write_json_atomic(record_path, provenance(config, inputs=inputs))
        yield out_dir
    finally:
        lock.release()

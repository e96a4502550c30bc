"""Atomic writes and provenance records for every file the package writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: umask can only be read by setting it

_PROVENANCE_PACKAGES = (
    "sae-eeg", "numpy", "scipy", "torch", "transformers", "mne", "mne-bids", "pandas",
    "statsmodels", "nilearn", "scikit-learn",
)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    If the block raises, the temporary file is removed and ``path`` is untouched,
    so an interrupted or failed write never leaves a half-written output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):  # mkstemp makes 0600 files: give the usual permissions
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json_atomic(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def config_hash(config):
    """sha256 (hex) of a JSON-serialisable config, independent of key order."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def package_versions(packages=_PROVENANCE_PACKAGES):
    """Installed versions of the packages that shape results (missing ones omitted)."""
    versions = {"python": platform.python_version()}
    for name in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def provenance(config=None, *, inputs=None):
    """Provenance record of a result: config and its hash, package versions, input hashes.

    Parameters
    ----------
    config : dict | None
        The configuration that produced the result (JSON-serialisable).
    inputs : dict | None
        Input names mapped to content hashes (see :func:`sae_eeg.audio.file_hash`).

    Returns
    -------
    record : dict
    """
    config = {} if config is None else config
    return {
        "config": config,
        "config_hash": config_hash(config),
        "inputs": dict(inputs or {}),
        "versions": package_versions(),
    }

"""Atomic writes and provenance records for every file the package writes, and result tables."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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


def write_table(table, stem, prov, *, csv=True):
    """Write ``table`` as ``stem.parquet`` and ``stem.csv`` (atomic) with provenance.

    The provenance record is stored in the parquet schema metadata (key
    ``sae_eeg_provenance``) and beside the tables as ``stem.provenance.json``.
    ``csv=False`` writes the parquet file only (for tables of many rows, such as
    per-subject TRF weights, whose CSV copy would cost more time and disk than the fit).

    Returns
    -------
    path : pathlib.Path
        The parquet file.
    """
    parquet = stem.with_suffix(".parquet")
    table = table.copy()
    table.attrs = {}
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[b"sae_eeg_provenance"] = json.dumps(prov, default=str).encode()
    with atomic_path(parquet) as tmp:
        pq.write_table(arrow.replace_schema_metadata(meta), tmp)
    if csv:
        with atomic_path(stem.with_suffix(".csv")) as tmp:
            table.to_csv(tmp, index=False)
    write_json_atomic(stem.with_suffix(".provenance.json"), prov)
    return parquet


def read_table(path):
    """Read a parquet table written by :func:`write_table` (provenance in ``attrs``)."""
    arrow = pq.read_table(path)
    table = arrow.to_pandas()
    raw = (arrow.schema.metadata or {}).get(b"sae_eeg_provenance")
    table.attrs["provenance"] = json.loads(raw) if raw else {}
    return table

"""Output folders: one configuration per folder, with its provenance."""

from __future__ import annotations

import json
from pathlib import Path

from .._io import config_hash, provenance, write_json_atomic
from ..errors import OutputExistsError

PROVENANCE_FILE = "provenance.json"


def prepare_output_dir(out_dir, config, *, inputs=None, force=False):
    """Create ``out_dir`` for ``config``, refusing to mix results of two configs.

    Parameters
    ----------
    out_dir : path-like
        The output folder.
    config : dict
        The full configuration of the run (JSON-serialisable).
    inputs : dict | None
        Input names mapped to content hashes, recorded in the provenance.
    force : bool
        Accept a folder written with another configuration: its provenance is
        replaced (stale task outputs are recomputed because their hashes differ).

    Returns
    -------
    out_dir : pathlib.Path

    Raises
    ------
    OutputExistsError
        If the folder holds results of a different configuration and not ``force``.
    """
    out_dir = Path(out_dir)
    record_path = out_dir / PROVENANCE_FILE
    new_hash = config_hash(config)
    if record_path.is_file() and not force:
        old_hash = json.loads(record_path.read_text()).get("config_hash")
        if old_hash != new_hash:
            raise OutputExistsError(
                f"Output folder {str(out_dir)!r} holds results of another configuration "
                f"(config hash {old_hash[:12]} there, {new_hash[:12]} now). Choose another "
                f"output folder, or pass force=True (--force) to overwrite."
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record_path, provenance(config, inputs=inputs))
    return out_dir

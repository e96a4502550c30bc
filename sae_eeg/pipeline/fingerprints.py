"""Content fingerprints of the files tasks read: sha256, with size and mtime as a fast path.

Hashing every EEG file on every run would cost minutes on a large dataset. A
fingerprint is the sha256 of a file's bytes; it is recomputed only when the file's
size or modification time differs from the last time it was hashed (the pairs are
kept in ``output_dir/.sae-eeg/fingerprints.json``). A file touched but unchanged is
hashed again and keeps its fingerprint, so nothing downstream reruns; a file
replaced by other bytes gets a new fingerprint, and everything that reads it reruns.
This is the ``mtime`` method of MNE-BIDS-Pipeline confirmed by its ``hash`` method.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .._io import write_json_atomic
from ..audio import file_hash
from ..errors import InputError

logger = logging.getLogger(__name__)


class Fingerprints:
    """Content digests of input files, remembered by (size, mtime) in a cache file.

    Parameters
    ----------
    cache_file : path-like | None
        JSON file of ``{path: [size, mtime_ns, sha256]}``; None keeps nothing
        between runs.
    """

    def __init__(self, cache_file=None):
        self.cache_file = None if cache_file is None else Path(cache_file)
        self._known = {}
        if self.cache_file is not None and self.cache_file.is_file():
            try:
                self._known = {k: tuple(v) for k, v in json.loads(self.cache_file.read_text()).items()}
            except (ValueError, TypeError, AttributeError):
                logger.warning("ignoring damaged fingerprint cache %s", self.cache_file)
        self._changed = False

    def digest(self, path):
        """sha256 (hex) of the file's bytes.

        Raises
        ------
        InputError
            If the file does not exist.
        """
        path = Path(path).resolve()
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise InputError(f"input file not found: {str(path)!r}.") from None
        known = self._known.get(str(path))
        if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
            return known[2]
        digest = file_hash(path)
        self._known[str(path)] = (stat.st_size, stat.st_mtime_ns, digest)
        self._changed = True
        return digest

    def digests(self, files):
        """``{label: digest}`` of a ``{label: path}`` mapping (labels, not paths, enter keys)."""
        return {label: self.digest(path) for label, path in files.items()}

    def save(self):
        """Write the cache (when something was hashed)."""
        if self.cache_file is not None and self._changed:
            write_json_atomic(self.cache_file, {k: list(v) for k, v in sorted(self._known.items())})
            self._changed = False

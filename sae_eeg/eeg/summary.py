"""``sae-eeg manifest check FILE``: validate a manifest and summarise the dataset."""

from __future__ import annotations

import dataclasses

import mne

from ..manifests import load_manifest
from .readers import infer_format, read_raw


@dataclasses.dataclass(frozen=True)
class ManifestSummary:
    """What a manifest describes.

    Attributes
    ----------
    name : str
    n_subjects, n_runs : int
    subjects : list of str
    total_hours : float
        Summed duration of the distinct EEG recordings (headers read when the files are
        present, else the declared ``eeg.duration`` or, failing that, the stimulus
        durations).
    n_unknown_durations : int
        Recordings whose duration is unknown (files not checked, nothing declared);
        they are left out of ``total_hours``.
    sampling_rates : list of float
        Distinct EEG sampling rates, Hz (read or declared).
    duration_source : str
        ``"files"``, ``"declared"`` or ``"stimuli"`` (the least exact source used).
    """

    name: str
    n_subjects: int
    n_runs: int
    subjects: list
    total_hours: float
    sampling_rates: list
    duration_source: str
    n_unknown_durations: int = 0

    def to_text(self):
        """A few human-readable lines (what the CLI prints)."""
        unknown = (f"; {self.n_unknown_durations} recordings of unknown duration left out"
                   if self.n_unknown_durations else "")
        rates = ", ".join(f"{r:g} Hz" for r in self.sampling_rates) or "unknown"
        subjects = ", ".join(self.subjects[:12]) + (" ..." if len(self.subjects) > 12 else "")
        return (
            f"manifest {self.name!r}: valid\n"
            f"  subjects: {self.n_subjects} ({subjects})\n"
            f"  runs: {self.n_runs}\n"
            f"  total EEG: {self.total_hours:.3f} h (from {self.duration_source}"
            f"{unknown})\n"
            f"  sampling rates: {rates}"
        )


def _header(path, fmt, trial):
    """(sfreq, duration s) of a recording, reading only its header where MNE can."""
    fmt = infer_format(path) if fmt in ("auto", "bids") else fmt  # a BIDS file is a plain file
    lazy = {"fif": mne.io.read_raw_fif, "brainvision": mne.io.read_raw_brainvision,
            "edf": mne.io.read_raw_edf, "bdf": mne.io.read_raw_bdf,
            "eeglab": mne.io.read_raw_eeglab}
    if fmt in lazy:
        raw = lazy[fmt](path, preload=False, verbose=False)
    else:
        raw = read_raw(path, format=fmt, trial=trial)
    return raw.info["sfreq"], raw.n_times / raw.info["sfreq"]


def check_manifest(path, *, root=None, check_files=True):
    """Validate a manifest file and summarise it (the ``manifest check`` command).

    Parameters
    ----------
    path : path-like
        The YAML manifest.
    root : path-like | None
        Dataset folder overriding the manifest's ``root``.
    check_files : bool
        Check files and checksums, and read the EEG headers for durations and rates.
        With False only the schema is checked and declared values are summarised.

    Returns
    -------
    summary : ManifestSummary

    Raises
    ------
    ManifestError
        Listing every problem of the manifest.
    """
    manifest = load_manifest(path, root=root, check_files=check_files)
    recordings, rates, sources = {}, set(), set()
    for _, run in manifest.runs():
        key = (run.eeg.path, run.eeg.trial)
        if key in recordings:
            continue
        if check_files:
            sfreq, duration = _header(manifest.resolve(run.eeg.path), run.eeg.format, run.eeg.trial)
            sources.add("files")
        elif run.eeg.duration is not None:
            sfreq, duration = run.eeg.sfreq, run.eeg.duration
            sources.add("declared")
        else:
            sfreq, duration = run.eeg.sfreq, manifest.stimulus_duration(run.stimulus)
            sources.add("stimuli")
        if sfreq is not None:
            rates.add(float(sfreq))
        recordings[key] = duration
    order = ("stimuli", "declared", "files")
    source = next((s for s in order if s in sources), "files")
    subjects = [s.id for s in manifest.all_subjects()]
    return ManifestSummary(
        name=manifest.name, n_subjects=len(subjects), n_runs=len(manifest.runs()),
        subjects=subjects,
        total_hours=sum(d for d in recordings.values() if d is not None) / 3600.0,
        sampling_rates=sorted(rates), duration_source=source,
        n_unknown_durations=sum(d is None for d in recordings.values()),
    )

"""``sae-eeg manifest check FILE``: validate a manifest and its recordings, and summarise the dataset."""

from __future__ import annotations

import dataclasses

from ..errors import AlignmentError, InputError, ManifestError
from ..manifests import load_manifest, manifest_warnings
from .align import find_run_markers
from .readers import (
    apply_montage, check_finite, describe_channels, match_channel_names, read_raw, stimulus_feature_problems,
)


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
    n_unknown_durations : int
        Recordings of unknown duration.
    warnings : list of str
        What the manifest leaves open: each ``verify`` entry (values not checked
        against the release) and stimuli whose audio is absent.
    """

    name: str
    n_subjects: int
    n_runs: int
    subjects: list
    total_hours: float
    sampling_rates: list
    duration_source: str
    n_unknown_durations: int = 0
    warnings: list = dataclasses.field(default_factory=list)

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
        ) + "".join(f"\nwarning: {line}" for line in self.warnings)


def _recording_problems(manifest, raw, path, uses):
    """Problems of one opened recording: rate, samples, channels named by the manifest, run markers."""
    problems = []
    runs = ", ".join(f"subject {sub!r} run {run.id!r}" for sub, run in uses)
    where = f"{runs} ({str(path)!r})"
    declared = {run.eeg.sfreq for _, run in uses if run.eeg.sfreq is not None}
    for sfreq in sorted(declared):
        if abs(raw.info["sfreq"] - sfreq) > 1e-6:
            problems.append(f"{where}: sampling rate is {raw.info['sfreq']:g} Hz in the file, the manifest "
                            f"declares eeg.sfreq = {sfreq:g} Hz")
    try:
        check_finite(raw, name=where)
    except InputError as err:
        problems.append(str(err))
    named = [(f"channels.{kind}", ch) for kind in ("reference", "misc", "eog")
             for ch in getattr(manifest.channels, kind)]
    named += [(f"bad_channels of subject {sub!r}", ch) for sub in dict.fromkeys(sub for sub, _ in uses)
              for ch in manifest.subject_bad_channels(sub)]
    # channels.* are matched case-insensitively, as read_run matches them; bad channels exactly
    present = set(raw.ch_names) | {ch.lower() for ch in raw.ch_names}
    missing = [f"{field} {ch!r}" for field, ch in named
               if (ch.lower() if field.startswith("channels.") else ch) not in present]
    if missing:
        problems.append(f"{where}: {', '.join(missing)} not in the recording; {describe_channels(raw)}")
    else:
        match_channel_names(raw, manifest.channels, name=where)
    present = set(raw.ch_names)
    if manifest.montage is not None:
        types = {ch: "eog" for ch in manifest.channels.eog if ch in present}
        types.update({ch: "misc" for ch in manifest.channels.misc if ch in present})
        if types:
            raw.set_channel_types(types, verbose=False)
        try:
            apply_montage(raw, manifest.montage, name=where)
        except InputError as err:
            problems.append(str(err))
    for sub, run in uses:
        try:
            find_run_markers(raw, run, where=f"subject {sub!r} run {run.id!r} ({str(path)!r})", manifest=manifest)
        except AlignmentError as err:
            problems.append(str(err))
    return problems


def _open_recordings(manifest):
    """Open every recording once; return (problems, {recording: (sfreq, duration)})."""
    uses = {}
    for sub, run in manifest.runs():
        uses.setdefault((run.eeg.path, run.eeg.trial, run.eeg.format), []).append((sub, run))
    problems, headers = [], {}
    for (rel_path, trial, fmt), runs in uses.items():
        path = manifest.resolve(rel_path)
        try:
            raw = read_raw(path, format=fmt, trial=trial, unit_scale=manifest.channels.unit_scale)
        except InputError as err:
            names = ", ".join(f"subject {sub!r} run {run.id!r}" for sub, run in runs)
            problems.append(f"{names}: {err}")
            continue
        headers[(rel_path, trial)] = (raw.info["sfreq"], raw.n_times / raw.info["sfreq"])
        problems += _recording_problems(manifest, raw, path, runs)
    return problems, headers


def check_manifest(path, *, root=None, check_files=True):
    """Validate a manifest file and its recordings, and summarise it (the ``manifest check`` command).

    With ``check_files`` every recording is opened (fully read) and checked: it
    reads, its sampling rate matches the manifest's ``eeg.sfreq``, it holds no NaN,
    the channels the manifest names (``channels.reference``/``misc``/``eog``, the
    subjects' bad channels) exist, its EEG channels are in the montage, and the onset
    (and end) marker of every run using it is present; every release feature the
    stimuli name is read (feature or variable present, trial in range). Every problem
    is listed at once. What the manifest leaves open (its ``verify`` entries, stimuli
    without their audio) comes back as warnings.

    Parameters
    ----------
    path : path-like
        The YAML manifest.
    root : path-like | None
        Dataset folder overriding the manifest's ``root``.
    check_files : bool
        Check files, checksums and recordings as above. With False only the schema
        is checked and declared values are summarised.

    Returns
    -------
    summary : ManifestSummary

    Raises
    ------
    ManifestError
        Listing every problem of the manifest and its recordings.
    """
    manifest = load_manifest(path, root=root, check_files=check_files)
    headers = {}
    if check_files:
        problems, headers = _open_recordings(manifest)
        problems += stimulus_feature_problems(manifest)
        if problems:
            listing = "\n".join(f"  - {p}" for p in problems)
            raise ManifestError(f"manifest {str(path)!r} has {len(problems)} problem(s) with its recordings:\n"
                                f"{listing}")
    recordings, rates, sources = {}, set(), set()
    for _, run in manifest.runs():
        key = (run.eeg.path, run.eeg.trial)
        if key in recordings:
            continue
        if check_files:
            sfreq, duration = headers[key]
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
        warnings=manifest_warnings(manifest, check_files=check_files),
    )

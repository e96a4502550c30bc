"""Dataset manifests: a YAML description of an EEG listening dataset, validated.

A manifest names the dataset (licence, source URL), its root folder, the stimuli
(audio file, optional sha256 and duration, and the precomputed features a release
ships, such as envelopes) and, per subject, the runs: the EEG file (any MNE-readable
format, a file inside a BIDS tree, or a CND / Lalor-lab ``.mat``), the stimulus it
presents, how the stimulus onset is found in the recording (trigger code, annotation
description, sample index, or the periodic pulses of a trigger template; an optional
end marker enables clock-drift correction), optional sha256 of every file and channel
information. ``verify`` lists what was not checked against the release (``manifest
check`` prints each entry as a warning).

:func:`load_manifest` validates everything and raises one :class:`ManifestError`
listing every problem (schema errors, unknown stimuli or subjects, duplicate runs,
missing files, checksum mismatches) instead of stopping at the first.

Example
-------
.. code-block:: yaml

    name: demo
    licence: CC0-1.0
    source_url: https://example.org/demo
    root: .                      # relative to this file; ${VAR} and ${VAR:-default} expand
    montage: standard_1020
    stimuli:
      story1: {path: stimuli/story1.wav, duration: 60.0}
      story2:                    # no audio: the release's envelope stands in for it
        features:
          envelope: {path: Stimuli/Envelopes/audio2_128Hz.mat, feature: env}
    subjects:
      - id: "01"
        runs:
          - id: "1"
            eeg: {path: sub-01/eeg/sub-01_task-listen_run-1_eeg.vhdr, format: bids}
            stimulus: story1
            onset: {trigger: 1}
            end: {trigger: 101}
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from ._check import _check_id, _validate_type
from ._config import Id, read_yaml_mapping, validation_problems
from ._io import write_text_atomic
from .errors import ManifestError

#: EEG file formats a manifest may name; ``auto`` infers from the file extension.
EEG_FORMATS = (
    "auto", "fif", "brainvision", "edf", "bdf", "eeglab", "bids", "cnd", "lalor_mat",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Marker rules, exactly one of which a :class:`Marker` gives.
MARKER_KINDS = ("trigger", "annotation", "sample", "trigger_template")


class Marker(_Strict):
    """How a time point is found in a recording: exactly one of four rules.

    Attributes
    ----------
    trigger : int | None
        Event code on the stim channel (or an annotation whose description ends in
        this number, e.g. BrainVision ``Stimulus/S  1``).
    annotation : str | None
        Exact annotation description (e.g. BIDS ``trial_type``).
    sample : int | None
        Sample index from the start of the file, at the file's sampling rate.
    trigger_template : str | None
        A file of the stimulus's own trigger track (``.npz[.gz]`` with ``audio`` and
        ``fs``, or any audio file), relative to the manifest root; ``{stimulus}`` is
        replaced by the run's stimulus. For periodic block triggers (SparrKULee): the
        onset is the first pulse of the recording's trigger channel minus the first
        pulse of the template, and the first and last pulses of both correct clock
        drift (so a run with this onset takes no ``end``).
    occurrence : int
        Which occurrence of the trigger/annotation to take, from 1. Default 1.
    """

    trigger: Optional[int] = None
    annotation: Optional[str] = None
    sample: Optional[int] = Field(default=None, ge=0)
    trigger_template: Optional[str] = None
    occurrence: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in MARKER_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(map(repr, MARKER_KINDS))}; got {given or 'none'}"
            )
        return self

    @property
    def kind(self):
        """One of :data:`MARKER_KINDS`."""
        for key in MARKER_KINDS:
            if getattr(self, key) is not None:
                return key
        raise AssertionError("unreachable: validated to hold one rule")


class EegFile(_Strict):
    """The EEG file of a run.

    Attributes
    ----------
    path : str
        Relative to the manifest root (or absolute).
    format : str
        One of :data:`EEG_FORMATS`.
    sha256 : str | None
        Expected sha256 of the file's bytes (hex).
    trial : int | None
        1-based trial index inside a CND file (``format: cnd`` only).
    sfreq : float | None
        Declared sampling rate, Hz (checked against the file when it is read).
    duration : float | None
        Declared duration, s (used by the summary when files are absent).
    """

    path: str
    format: Literal[EEG_FORMATS] = "auto"
    sha256: Optional[str] = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    trial: Optional[int] = Field(default=None, ge=1)
    sfreq: Optional[float] = Field(default=None, gt=0)
    duration: Optional[float] = Field(default=None, gt=0)


#: Precomputed stimulus features a manifest may name (the acoustic baselines they stand in for).
RELEASE_FEATURES = ("envelope", "mel")


class StimulusFeature(_Strict):
    """A precomputed feature of a stimulus, in a file shipped with the release.

    Read by :func:`sae_eeg.eeg.read_stimulus_feature`: a CND ``dataStim.mat`` entry
    (``feature`` one of ``stim.names``, ``trial`` the stimulus's trial) or a ``.mat``
    file with one matrix per variable (``feature`` the variable, such as the Dryad
    envelopes' ``env``).

    Attributes
    ----------
    path : str
        The file, relative to the manifest root (or absolute).
    feature : str | None
        CND feature name (matched case-insensitively) or variable name; default the
        file's only feature.
    trial : int | None
        1-based trial of a CND stimulus file.
    sfreq : float | None
        Sampling rate, Hz, for files without ``fs`` (checked against it otherwise).
    sha256 : str | None
        Expected sha256 of the file's bytes.
    """

    path: str
    feature: Optional[str] = None
    trial: Optional[int] = Field(default=None, ge=1)
    sfreq: Optional[float] = Field(default=None, gt=0)
    sha256: Optional[str] = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")


class Stimulus(_Strict):
    """A stimulus: its audio file, duration and the release's precomputed features (any of them).

    Attributes
    ----------
    path : str | None
        The audio file. Without ``features`` it must exist; with them it may be
        absent (the release ships no audio): the analyses that need audio are then
        skipped, and ``manifest check`` warns.
    sha256 : str | None
        Expected sha256 of the audio file.
    duration : float | None
        Duration, s (default: that of the audio, else of the first feature).
    features : dict of str -> StimulusFeature
        Keys among :data:`RELEASE_FEATURES`; used for the acoustic analyses when the
        stimulus has no audio.
    """

    path: Optional[str] = None
    sha256: Optional[str] = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    duration: Optional[float] = Field(default=None, gt=0)
    features: dict[Literal[RELEASE_FEATURES], StimulusFeature] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _something_to_use(self):
        if self.path is None and self.duration is None and not self.features:
            raise ValueError("give 'path' (audio file), 'features' (precomputed) or 'duration' (s)")
        return self


class Run(_Strict):
    """One presentation of one stimulus within a recording (ids are names, never paths)."""

    id: Id
    eeg: EegFile
    stimulus: Id
    onset: Marker
    end: Optional[Marker] = None

    @model_validator(mode="after")
    def _drift_from_one_rule(self):
        if self.end is not None and self.end.kind == "trigger_template":
            raise ValueError("'end' cannot be a trigger_template: give it as the onset (its last pulses "
                             "correct the drift)")
        if self.end is not None and self.onset.kind == "trigger_template":
            raise ValueError("an onset from a trigger_template corrects drift with its last pulses; remove 'end'")
        if self.onset.kind == "trigger_template":
            try:
                self.onset.trigger_template.format(stimulus=self.stimulus)
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(f"trigger_template {self.onset.trigger_template!r} may hold the placeholder "
                                 f"{{stimulus}} only (in a grid also {{subject}} and {{run}}); got {err!r}") from None
        return self


class Subject(_Strict):
    """A subject and its runs (the id is a name, never a path)."""

    id: Id
    runs: list[Run] = Field(min_length=1)
    bad_channels: list[str] = Field(default_factory=list)


class Grid(_Strict):
    """Runs generated for every (subject, run) pair of two id lists.

    ``eeg.path``, ``stimulus`` and the values of the ``onset``/``end`` markers may hold
    ``{subject}`` and ``{run}`` placeholders (e.g. ``onset: {trigger: "{run}"}``), the
    markers also ``{stimulus}`` (the run's stimulus). With
    ``format: cnd`` and no ``trial``, the trial is the run id (an integer).
    """

    subjects: list[Id] = Field(min_length=1)
    runs: list[Id] = Field(min_length=1)
    eeg: EegFile
    stimulus: str
    onset: dict[str, int | str]
    end: Optional[dict[str, int | str]] = None

    @model_validator(mode="after")
    def _expandable(self):
        problems = []
        for sub in self.subjects:
            for run in self.runs:
                fill = {"subject": sub, "run": run}
                try:
                    fill["stimulus"] = self.stimulus.format(**fill)
                    _fill_marker(self.onset, fill)
                    _fill_marker(self.end, fill)
                    self.eeg.path.format(**fill)
                    _check_id(self.stimulus.format(**fill), "stimulus")
                except (ValueError, KeyError, IndexError) as err:
                    problems.append(f"subject {sub!r} run {run!r}: {err}")
        if self.eeg.format == "cnd" and self.eeg.trial is None:
            bad = [r for r in self.runs if not r.isdigit()]
            if bad:
                problems.append(
                    f"with format 'cnd' and no eeg.trial, run ids are trial numbers; got {bad[:5]}"
                )
        if problems:
            raise ValueError("; ".join(problems[:10]))
        return self


class Channels(_Strict):
    """Channel information shared by all recordings.

    Attributes
    ----------
    eog, misc : list of str
        Channels to type as EOG / misc when reading.
    reference : list of str
        Reference channels (e.g. mastoids), for ``reference: mastoids`` preprocessing.
    unit_scale : float
        Factor to volts for formats without units (CND / Lalor ``.mat``). Default 1e-6.
    """

    eog: list[str] = Field(default_factory=list)
    misc: list[str] = Field(default_factory=list)
    reference: list[str] = Field(default_factory=list)
    unit_scale: float = Field(default=1e-6, gt=0)


class Manifest(_Strict):
    """A validated dataset manifest (see the module docstring for the YAML layout)."""

    name: str
    description: str = ""
    licence: str
    source_url: str
    citation: str = ""
    root: str = "."
    montage: Optional[str] = None
    channels: Channels = Field(default_factory=Channels)
    stimuli: dict[Id, Stimulus] = Field(min_length=1)
    subjects: list[Subject] = Field(default_factory=list)
    grid: Optional[Grid] = None
    bad_channels: dict[str, list[str]] = Field(default_factory=dict)
    exclude: list[str] = Field(default_factory=list)
    verify: list[str] = Field(default_factory=list)
    _source: Optional[Path] = PrivateAttr(default=None)
    _root_override: Optional[Path] = PrivateAttr(default=None)
    _expanded: Optional[list] = PrivateAttr(default=None)

    @property
    def root_path(self):
        """The dataset root as an absolute path (variables and ``~`` expanded)."""
        if self._root_override is not None:
            return self._root_override
        root = Path(_expand_vars(self.root)).expanduser()
        if not root.is_absolute() and self._source is not None:
            root = self._source.parent / root
        return root.resolve()

    def declared_subjects(self):
        """Subjects listed explicitly followed by those generated by ``grid``."""
        if self._expanded is None:
            self._expanded = list(self.subjects) + _expand_grid(self.grid)
        return list(self._expanded)

    def all_subjects(self):
        """The subjects to analyse: :meth:`declared_subjects` minus ``exclude``."""
        return [s for s in self.declared_subjects() if s.id not in self.exclude]

    def subject_bad_channels(self, subject):
        """Bad channels of ``subject``: its own list and the top-level ``bad_channels``."""
        own = self.subject(subject).bad_channels
        return sorted(set(own) | set(self.bad_channels.get(str(subject), [])))

    def runs(self):
        """Every ``(subject_id, Run)`` pair, in manifest order."""
        return [(s.id, r) for s in self.all_subjects() for r in s.runs]

    def presented_stimuli(self):
        """The stimuli the runs present, in order of first use."""
        return list(dict.fromkeys(run.stimulus for _, run in self.runs()))

    def subject(self, subject):
        """The :class:`Subject` of id ``subject`` (a str), or :class:`ManifestError`."""
        for entry in self.all_subjects():
            if entry.id == str(subject):
                return entry
        ids = [s.id for s in self.all_subjects()]
        raise ManifestError(
            f"manifest {self.name!r} has no subject {subject!r}; subjects are {ids[:20]}."
        )

    def run(self, subject, run):
        """The :class:`Run` of id ``run`` of ``subject`` (strs), or :class:`ManifestError`."""
        entry = self.subject(subject)
        for candidate in entry.runs:
            if candidate.id == str(run):
                return candidate
        raise ManifestError(
            f"subject {subject!r} of manifest {self.name!r} has no run {run!r}; runs are "
            f"{[r.id for r in entry.runs]}."
        )

    def resolve(self, path):
        """Absolute path of a manifest path (relative ones are under :attr:`root_path`)."""
        path = Path(_expand_vars(path)).expanduser()
        return path if path.is_absolute() else self.root_path / path

    def stimulus_duration(self, name):
        """Declared duration (s) of stimulus ``name``, or None."""
        return self.stimuli[name].duration

    def audio_file(self, name):
        """The audio file of stimulus ``name``, or None when it names none or the file is absent.

        An absent file is allowed only for stimuli with ``features`` (see
        :class:`Stimulus`); :func:`load_manifest` reports it for the others.
        """
        stim = self.stimuli[name]
        if stim.path is None:
            return None
        path = self.resolve(stim.path)
        return path if path.is_file() else None

    def trigger_template_file(self, run):
        """The trigger template file of a :class:`Run`'s onset (``{stimulus}`` filled), or None."""
        template = run.onset.trigger_template
        return None if template is None else self.resolve(template.format(stimulus=run.stimulus))

    def to_yaml(self, path):
        """Write the manifest as YAML, atomically."""
        data = self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        data = {"name": self.name, "licence": self.licence, "source_url": self.source_url, **data}
        write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _expand_vars(text):
    """Expand ``${VAR}`` and ``${VAR:-default}``; unset variables without default stay."""
    def sub(match):
        name, default = match.group(1), match.group(2)
        return os.environ.get(name, default if default is not None else match.group(0))

    return _VAR.sub(sub, str(text))


def _fill_marker(template, fill):
    """A :class:`Marker` from a grid template whose values may hold placeholders."""
    if template is None:
        return None
    values = {}
    unknown = sorted(set(template) - {*MARKER_KINDS, "occurrence"})
    if unknown:
        raise ValueError(f"unknown marker field(s) {unknown}; allowed: {', '.join(MARKER_KINDS)}, "
                         "occurrence")
    for key, value in template.items():
        if isinstance(value, str):
            value = value.format(**fill)
            if key not in ("annotation", "trigger_template"):
                try:
                    value = int(value)
                except ValueError:
                    raise ValueError(
                        f"marker field {key!r} must be an integer, got {value!r}"
                    ) from None
        values[key] = value
    try:
        return Marker(**values)
    except ValidationError as err:
        raise ValueError("; ".join(e["msg"] for e in err.errors())) from None


def _expand_grid(grid):
    if grid is None:
        return []
    subjects = []
    for sub in grid.subjects:
        runs = []
        for run in grid.runs:
            fill = {"subject": sub, "run": run}
            fill["stimulus"] = grid.stimulus.format(**fill)
            eeg = {"path": grid.eeg.path.format(**fill)}
            if grid.eeg.format == "cnd" and grid.eeg.trial is None:
                eeg["trial"] = int(run)
            runs.append(Run(
                id=run, eeg=grid.eeg.model_copy(update=eeg), stimulus=grid.stimulus.format(**fill),
                onset=_fill_marker(grid.onset, fill), end=_fill_marker(grid.end, fill),
            ))
        subjects.append(Subject(id=sub, runs=runs))
    return subjects


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_structure(manifest):
    problems = []
    subjects = manifest.declared_subjects()
    if not subjects:
        problems.append("subjects: no subjects (give 'subjects' or 'grid')")
    known = [s.id for s in subjects]
    for field, ids in (("bad_channels", list(manifest.bad_channels)), ("exclude", manifest.exclude)):
        problems += [f"{field}: unknown subject {sid!r}; subjects are {known[:20]}"
                     for sid in ids if sid not in known]
    seen = set()
    for sub in subjects:
        if sub.id in seen:
            problems.append(f"subjects: duplicate subject id {sub.id!r}")
        seen.add(sub.id)
        run_ids = set()
        for run in sub.runs:
            where = f"subject {sub.id!r} run {run.id!r}"
            if run.id in run_ids:
                problems.append(f"{where}: duplicate run id")
            run_ids.add(run.id)
            if run.stimulus not in manifest.stimuli:
                problems.append(
                    f"{where}: unknown stimulus {run.stimulus!r}; stimuli are "
                    f"{sorted(manifest.stimuli)[:10]}"
                )
            if run.eeg.trial is not None and run.eeg.format != "cnd":
                problems.append(
                    f"{where}: eeg.trial is only valid with format 'cnd', got format "
                    f"{run.eeg.format!r}"
                )
    return problems


def _check_montage(manifest):
    if manifest.montage is None:
        return []
    import mne  # third-party; manifests import nothing of ours below errors

    builtin = mne.channels.get_builtin_montages()
    if manifest.montage in builtin:
        return []
    try:  # names deprecated by newer MNE (standard_1020, ...) still load
        mne.channels.make_standard_montage(manifest.montage)
        return []
    except ValueError:
        return [f"montage: unknown montage {manifest.montage!r}; MNE's built-in montages are "
                f"{builtin}"]


def _check_one_file(manifest, where, rel_path, sha256, checksums):
    path = manifest.resolve(rel_path)
    if not path.is_file():
        return [f"{where}: file not found: {str(path)!r}"]
    if sha256 is not None:
        if path not in checksums:
            checksums[path] = _sha256(path)
        if checksums[path] != sha256.lower():
            return [
                f"{where}: checksum mismatch for {str(path)!r}: expected sha256 {sha256}, "
                f"file has {checksums[path]}"
            ]
    return []


def _check_files(manifest):
    root = manifest.root_path
    if not root.is_dir():
        return [f"root: dataset folder not found: {str(root)!r} (from root {manifest.root!r})"]
    problems, checksums = [], {}
    for name, stim in manifest.stimuli.items():
        where = f"stimulus {name!r}"
        if stim.path is not None and (not stim.features or manifest.resolve(stim.path).is_file()):
            problems += _check_one_file(manifest, where, stim.path, stim.sha256, checksums)
        for kind, feature in stim.features.items():
            problems += _check_one_file(manifest, f"{where} features.{kind}", feature.path, feature.sha256,
                                        checksums)
    templates = set()
    for sub_id, run in [(s.id, r) for s in manifest.declared_subjects() for r in s.runs]:
        where = f"subject {sub_id!r} run {run.id!r}"
        problems += _check_one_file(manifest, f"{where} eeg", run.eeg.path, run.eeg.sha256, checksums)
        template = manifest.trigger_template_file(run)
        if template is not None and template not in templates:
            templates.add(template)
            problems += _check_one_file(manifest, f"{where} onset.trigger_template", str(template), None, checksums)
    return problems


def manifest_warnings(manifest, *, check_files=True):
    """What a valid manifest leaves open: its ``verify`` entries and the stimuli without their audio.

    Parameters
    ----------
    manifest : Manifest
    check_files : bool
        Also look for the stimuli's audio files.

    Returns
    -------
    warnings : list of str
        One line each (``manifest check`` prints them).
    """
    lines = [f"VERIFY: {' '.join(entry.split())}" for entry in manifest.verify]
    absent = {name: str(manifest.resolve(stim.path)) for name, stim in manifest.stimuli.items()
              if check_files and stim.path is not None and manifest.audio_file(name) is None}
    if absent:
        shown = ", ".join(f"{n} ({p})" for n, p in list(absent.items())[:3]) + (" ..." if len(absent) > 3 else "")
        lines.append(f"{len(absent)} stimuli have no audio file: {shown}; their release features are used for "
                     "the acoustic analyses, and the analyses that need audio (SAE features, dense "
                     "activations) are skipped. Put the audio there to run them.")
    return lines


def validate_manifest(data, *, source=None, root=None, check_files=True):
    """Validate a manifest dictionary; return ``(manifest or None, problems)``.

    Parameters
    ----------
    data : dict
        The parsed YAML.
    source : path-like | None
        The manifest file (relative roots are resolved against its folder).
    root : path-like | None
        Override the manifest's ``root``.
    check_files : bool
        Check that every file exists and matches its sha256.

    Returns
    -------
    manifest : Manifest | None
        None when the schema itself is invalid.
    problems : list of str
        Every problem found; empty when the manifest is valid.
    """
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        return None, validation_problems(err)
    manifest._source = None if source is None else Path(source).resolve()
    if root is not None:
        manifest._root_override = Path(root).expanduser().resolve()
    problems = _check_structure(manifest) + _check_montage(manifest)
    if check_files:
        problems += _check_files(manifest)
    return manifest, problems


def load_manifest(path, *, root=None, check_files=True):
    """Read and validate a YAML manifest.

    Parameters
    ----------
    path : path-like
        The ``.yaml`` file.
    root : path-like | None
        Use this dataset folder instead of the manifest's ``root``.
    check_files : bool
        Check that every EEG and stimulus file exists and matches its sha256.
        Default True.

    Returns
    -------
    manifest : Manifest

    Raises
    ------
    ManifestError
        Listing every problem found (schema, unknown stimuli, duplicate subjects or
        runs, missing files, checksum mismatches), one per line.
    """
    _validate_type(path, "path-like", "path")
    data, path = read_yaml_mapping(path, what="manifest", error=ManifestError)
    manifest, problems = validate_manifest(data, source=path, root=root, check_files=check_files)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ManifestError(f"manifest {str(path)!r} has {len(problems)} problem(s):\n{listing}")
    return manifest

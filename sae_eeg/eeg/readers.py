"""Read EEG recordings as :class:`mne.io.Raw`: MNE formats, BIDS, CND and Lalor ``.mat``.

Readers sit in the :data:`READERS` registry keyed by the manifest's ``format`` string;
the same dict validates the option. :func:`read_run` reads one manifest run and checks
it (file present, checksum, declared sampling rate, NaNs, channels the manifest names,
montage coverage).

MATLAB files (CND, Lalor) are read with ``pymatreader`` (MNE's reader for EEGLAB and
FieldTrip files), which reads ``-v5``/``-v7`` and ``-v7.3`` (HDF5) files alike and
squeezes as MATLAB users expect: a cell of one element is the element itself, a column
or row vector is 1-D. The CND helpers below undo that squeezing with what the CND layout
fixes (trials along cells, time along rows). Gzipped BioSemi/EDF files (``.bdf.gz``, as
SparrKULee ships them) are decompressed to a temporary file for MNE.
"""

from __future__ import annotations

import configparser
import contextlib
import dataclasses
import functools
import gzip
import logging
import shutil
import tempfile
from pathlib import Path

import mne
import numpy as np
import pymatreader

from .._check import _check_file, _check_option, _soft_import
from ..errors import InputError
from ..audio import file_hash
from ..trajectories import TimeSeries

logger = logging.getLogger(__name__)

_EXTENSIONS = {
    ".fif": "fif", ".fif.gz": "fif", ".vhdr": "brainvision", ".edf": "edf", ".edf.gz": "edf",
    ".bdf": "bdf", ".bdf.gz": "bdf", ".set": "eeglab", ".mat": "mat",
}

#: Annotation the CND reader sets at the first stimulus-locked sample of each trial
#: (``eeg.paddingStartSample``, 0 without padding): ``onset: {annotation: stimulus_onset}``.
CND_ONSET_ANNOTATION = "stimulus_onset"


def infer_format(path):
    """The reader format of ``path`` from its extension (``.mat`` is inspected).

    Parameters
    ----------
    path : path-like
        An EEG file.

    Returns
    -------
    format : str
        A key of :data:`READERS`.
    """
    name = Path(path).name.lower()
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            if fmt == "mat":
                return _mat_flavour(path)
            return fmt
    raise InputError(
        f"cannot infer the EEG format of {str(path)!r} from its extension; allowed "
        f"extensions are {sorted(_EXTENSIONS)}. Give 'format' in the manifest."
    )


def _whosmat(path):
    """(name, shape, class) of each variable of a .mat file (v5 or v7.3)."""
    try:
        return pymatreader.whosmat(str(path))
    except (ValueError, TypeError, KeyError, NotImplementedError, OSError) as err:
        raise InputError(f".mat file {str(path)!r} cannot be read: {err}") from err


def _mat_flavour(path):
    variables = _whosmat(path)
    names = {name for name, _, _ in variables}
    if "eeg" in names:
        return "cnd"
    if "eegData" in names:
        return "lalor_mat"
    if "stim" not in names and _cnd_neural_name(variables) is not None:
        return "cnd"
    hint = (" It is a CND stimulus file (dataStim.mat): read it with read_cnd_stim or "
            "read_stimulus_feature.") if "stim" in names else ""
    raise InputError(
        f".mat file {str(path)!r} holds {sorted(names)}; expected a CND 'eeg' struct or a "
        f"Lalor-lab 'eegData' matrix.{hint}"
    )


def _cnd_neural_name(variables):
    """The CND neural struct when it is not called ``eeg``: the file's only struct.

    CNSP's own scripts read a ``dataSub*.mat`` with MATLAB's ``importdata`` (its one
    variable: ``eeg``, ``meg``, ...), so any single struct other than ``stim`` qualifies.
    """
    structs = [name for name, _, cls in variables if cls == "struct" and name != "stim"]
    return structs[0] if len(structs) == 1 else None


def _read_fif(path, **_):
    return mne.io.read_raw_fif(path, preload=True, verbose=False)


def _read_brainvision(path, **_):
    return mne.io.read_raw_brainvision(path, preload=True, verbose=False)


@contextlib.contextmanager
def _gunzipped(path, suffix):
    """``path`` itself, or for ``*.gz`` a decompressed temporary copy (removed on exit).

    MNE's EDF/BDF readers need a seekable file with the right extension. The copy goes
    to the system temporary folder (``TMPDIR``): a 15-min SparrKULee run is ~1.5 GB.
    """
    path = Path(path)
    if not path.name.lower().endswith(".gz"):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="sae_eeg_") as tmp:
        plain = Path(tmp) / f"{path.name[:-3].rsplit('.', 1)[0]}{suffix}"
        try:
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 24)
        except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
            raise InputError(f"gzipped EEG file {str(path)!r} cannot be decompressed: {err}") from err
        yield plain


def _read_edf(path, **_):
    with _gunzipped(path, ".edf") as plain:
        return mne.io.read_raw_edf(plain, preload=True, verbose=False)


def _read_bdf(path, **_):
    with _gunzipped(path, ".bdf") as plain:
        return mne.io.read_raw_bdf(plain, preload=True, verbose=False)


def _read_eeglab(path, **_):
    return mne.io.read_raw_eeglab(path, preload=True, verbose=False)


def _read_bids(path, **_):
    mne_bids = _soft_import("mne_bids", "reading BIDS datasets", pip_name="mne-bids")
    try:
        bids_path = mne_bids.get_bids_path_from_fname(path)
        raw = mne_bids.read_raw_bids(bids_path, verbose=False)
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        raise InputError(f"BIDS file {str(path)!r} could not be read: {err}") from err
    return raw.load_data(verbose=False)


def _read_mat(path):
    """The variables of a MATLAB file (v5, v7 or v7.3/HDF5) as pymatreader returns them."""
    try:
        return pymatreader.read_mat(str(path))
    except (ValueError, TypeError, KeyError, NotImplementedError, OSError) as err:
        raise InputError(f".mat file {str(path)!r} cannot be read (MATLAB v5 or v7.3): {err}") from err


def _cells(value):
    """A MATLAB cell vector as a list: pymatreader returns a 1 x 1 cell as its element."""
    return list(value) if isinstance(value, list) else [value]


def _cell_grid(value, n_rows, *, where):
    """A MATLAB ``n_rows`` x N cell as a list of rows (each a list of N entries).

    pymatreader returns a 2-D cell as nested lists (rows) from v5 files and as one
    column-major list from v7.3 files; a cell with one row or one column is a flat list
    and a 1 x 1 cell the element itself. Column-major order covers every flat case.
    """
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        if len(value) != n_rows or len({len(v) for v in value}) != 1:
            raise InputError(f"{where} is a cell of shape {[len(v) for v in value]} rows; "
                             f"expected {n_rows} equal rows.")
        return [list(row) for row in value]
    flat = _cells(value)
    if len(flat) % n_rows:
        raise InputError(f"{where} holds {len(flat)} entries, not a multiple of {n_rows} rows.")
    n_cols = len(flat) // n_rows
    return [[flat[i + k * n_rows] for k in range(n_cols)] for i in range(n_rows)]


def _as_time_by(values, n_times, *, where):
    """A (T, k) float array from a squeezed MATLAB matrix known to have ``n_times`` rows.

    A T x 1 (or 1 x T) vector loads 1-D; a k x T block (CNSP's Python converter writes
    each external channel as a row) is transposed.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise InputError(f"{where} has shape {array.shape}; expected (time, channels).")
    if array.shape[0] != n_times and array.shape[1] == n_times:
        array = array.T
    if array.shape[0] != n_times:
        raise InputError(f"{where} has shape {array.shape}; expected {n_times} samples "
                         "(the length of the EEG trial) along one axis.")
    return array


def _raw_from_array(data_TC, sfreq, ch_names, ch_types, unit_scale):
    info = mne.create_info(list(ch_names), float(sfreq), ch_types)
    data_CT = np.ascontiguousarray(np.asarray(data_TC, dtype=np.float64).T) * unit_scale
    return mne.io.RawArray(data_CT, info, verbose=False)


def _chan_labels(chanlocs, n_channels, *, where):
    """Channel names from an EEGLAB-style ``chanlocs`` (``labels``; ``name`` from CNSP's Python converter).

    Without ``chanlocs`` the ``n_channels`` channels are named EEG001, EEG002, ...
    """
    if chanlocs is None:
        return [f"EEG{i + 1:03d}" for i in range(n_channels)]
    if isinstance(chanlocs, dict):  # struct array: one list per field (a scalar for one channel)
        labels = _cells(chanlocs.get("labels", chanlocs.get("name")))
    else:  # a cell of structs
        labels = [c.get("labels", c.get("name")) for c in _cells(chanlocs)]
    if any(not isinstance(label, str) for label in labels):
        raise InputError(f"{where}: chanlocs has no 'labels' text for every channel.")
    return [label.strip() for label in labels]


def _padding(eeg, n_trials, *, where):
    """``eeg.paddingStartSample`` per trial (0 when absent): samples before the stimulus."""
    value = eeg.get("paddingStartSample")
    if value is None or np.size(value) == 0:
        return [0] * n_trials
    values = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
    if len(values) not in (1, n_trials) or np.any(values < 0) or np.any(values % 1):
        raise InputError(f"{where}: paddingStartSample = {value!r}; expected one non-negative "
                         f"integer (or one per trial, {n_trials}).")
    return [int(v) for v in np.broadcast_to(values, (n_trials,))]


@dataclasses.dataclass(frozen=True)
class CNDRecording:
    """The trials of one CND ``eeg`` struct, and the stimulus features if given.

    Attributes
    ----------
    raws : list of mne.io.RawArray
        One Raw per trial: EEG channels, then the external channels (such as mastoids,
        typed ``misc``), with the annotation :data:`CND_ONSET_ANNOTATION` at the first
        stimulus-locked sample (``eeg.paddingStartSample``).
    stim : list of dict of str -> TimeSeries, or None
        Per trial, the features of the CND ``stim`` struct by name.
    """

    raws: list
    stim: list | None


def read_cnd(path, *, stim_path=None, unit_scale=1e-6):
    """Read a CND (Continuous-event Neural Data, CNSP) ``dataSub*.mat`` file.

    Parameters
    ----------
    path : path-like
        MATLAB v5/v7 or v7.3 file holding the struct ``eeg`` (or, as CNSP's
        ``importdata`` reads it, the file's only struct) with ``data`` (cell of trials,
        each time x channels), ``fs``, optional ``chanlocs`` (``labels``), optional
        ``extChan`` (cell of structs with ``data``, a cell of trials, and
        ``description``, e.g. ``'Mastoids'``) and optional ``paddingStartSample``
        (samples recorded before the stimulus in each trial).
    stim_path : path-like | None
        ``dataStim.mat`` (see :func:`read_cnd_stim`).
    unit_scale : float
        Factor to volts (CND EEG data are in microvolts: 1e-6).

    Returns
    -------
    recording : CNDRecording
        External channels are named ``<description><j>`` (``Mastoids1``, ``Mastoids2``),
        or ``<description>`` alone for a one-channel entry.
    """
    path = _check_file(path, "CND file")
    mat = _read_mat(path)
    name = "eeg" if "eeg" in mat else _cnd_neural_name(_whosmat(path))
    if name is None or not isinstance(mat.get(name), dict):
        raise InputError(f"CND file {str(path)!r} has no 'eeg' struct (has "
                         f"{sorted(k for k in mat if not k.startswith('__'))}).")
    eeg = mat[name]
    where = f"CND file {str(path)!r}"
    for field in ("data", "fs"):
        if field not in eeg:
            raise InputError(f"{where}: struct {name!r} has no field {field!r} (has {sorted(eeg)}).")
    trials = [np.asarray(t, dtype=np.float64) for t in _cells(eeg["data"])]
    trials = [t[:, None] if t.ndim == 1 else t for t in trials]
    labels = _chan_labels(eeg.get("chanlocs"), trials[0].shape[1], where=where)
    for k, trial in enumerate(trials):
        if trial.ndim != 2 or trial.shape[1] != len(labels):
            raise InputError(f"{where}: {name}.data{{{k + 1}}} has shape {trial.shape}; CND "
                             f"stores time x channels with {len(labels)} channels.")
    ext = [(str(e.get("description", f"ext{i + 1}")), _cells(e["data"]))
           for i, e in enumerate(_cells(eeg.get("extChan", [])))]
    for desc, data in ext:
        if len(data) != len(trials):
            raise InputError(f"{where}: extChan {desc!r} has {len(data)} trials, "
                             f"{name}.data {len(trials)}.")
    padding = _padding(eeg, len(trials), where=where)
    raws = []
    for k, trial in enumerate(trials):
        blocks, names, types = [trial], list(labels), ["eeg"] * len(labels)
        for desc, data in ext:
            block = _as_time_by(data[k], len(trial), where=f"{where}: extChan {desc!r} trial {k + 1}")
            blocks.append(block)
            names += [desc] if block.shape[1] == 1 else [f"{desc}{j + 1}" for j in range(block.shape[1])]
            types += ["misc"] * block.shape[1]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise InputError(f"{where}: channel names {duplicated} occur twice (chanlocs and "
                             "extChan descriptions must be distinct).")
        if padding[k] >= len(trial):
            raise InputError(f"{where}: paddingStartSample {padding[k]} is beyond trial {k + 1} "
                             f"({len(trial)} samples).")
        raw = _raw_from_array(np.hstack(blocks), float(eeg["fs"]), names, types, unit_scale)
        raw.set_annotations(mne.Annotations([padding[k] / raw.info["sfreq"]], [0.0],
                                            [CND_ONSET_ANNOTATION]))
        raws.append(raw)
    stim = None if stim_path is None else read_cnd_stim(stim_path)
    if stim is not None and len(stim) != len(raws):
        raise InputError(f"{str(stim_path)!r} has {len(stim)} trials, {str(path)!r} {len(raws)}.")
    return CNDRecording(raws, stim)


def read_cnd_stim(path):
    """Read the ``stim`` struct of a CND ``dataStim.mat``.

    Parameters
    ----------
    path : path-like
        MATLAB v5/v7 or v7.3 file with the struct ``stim``: ``data`` (cell, features x
        trials, each time x dims), ``names`` (cell of feature names) and ``fs``.

    Returns
    -------
    trials : list of dict of str -> TimeSeries
        Per trial, each feature as a (T, n_dims) series starting at 0 s (CND: the
        first stimulus sample), columns ``<name>_<j>``.
    """
    path = _check_file(path, "CND stimulus file")
    return _cnd_stim_trials(_read_mat(path), path)


def _cnd_stim_trials(mat, path):
    """:func:`read_cnd_stim` of the variables ``mat`` of the file ``path``."""
    where = f"CND stimulus file {str(path)!r}"
    stim = mat.get("stim")
    if not isinstance(stim, dict):
        raise InputError(f"{where} has no 'stim' struct (has "
                         f"{sorted(k for k in mat if not k.startswith('__'))}).")
    missing = [f for f in ("data", "names", "fs") if f not in stim]
    if missing:
        raise InputError(f"{where}: struct 'stim' lacks {missing} (has {sorted(stim)}).")
    names = [str(n) for n in _cells(stim["names"])]
    grid = _cell_grid(stim["data"], len(names), where=f"{where}: stim.data")
    trials = []
    for k in range(len(grid[0])):
        feats = {}
        for i, name in enumerate(names):
            values = np.asarray(grid[i][k], dtype=np.float64)
            values = values.reshape(len(np.atleast_1d(values)), -1)
            cols = tuple(f"{name}_{j}" for j in range(values.shape[1]))
            feats[name] = TimeSeries(values, float(stim["fs"]), 0.0, cols)
        trials.append(feats)
    return trials


def read_stimulus_feature(path, *, feature=None, trial=None, sfreq=None):
    """Read one precomputed stimulus feature shipped with a release, as a time series.

    Two layouts are understood:

    * a CND ``dataStim.mat`` (struct ``stim``): ``feature`` is one of ``stim.names``
      (matched case-insensitively) and ``trial`` the 1-based trial;
    * a ``.mat`` file with one matrix per variable, such as the Dryad Broderick 2018
      envelopes ``Stimuli/Envelopes/audio<k>_128Hz.mat`` (``env``, time x 1, and
      ``fs`` when present): ``feature`` is the variable (default: the only variable
      other than ``fs``).

    Parameters
    ----------
    path : path-like
        The feature file.
    feature : str | None
        Feature name (CND) or variable name.
    trial : int | None
        1-based trial of a CND stimulus file.
    sfreq : float | None
        Sampling rate in Hz when the file has no ``fs``; must agree with it otherwise.

    Returns
    -------
    series : TimeSeries
        Shape (T, n_dims), first sample at 0 s.
    """
    path = _check_file(path, "stimulus feature file")
    stat = path.stat()
    mat = _feature_file(str(path), stat.st_mtime_ns, stat.st_size)
    variables = {k: v for k, v in mat.items() if not k.startswith("__")}
    if isinstance(variables.get("stim"), dict):
        trials = _cnd_stim_trials(mat, path)
        names = list(trials[0])
        if feature is None and len(names) == 1:
            feature = names[0]
        by_lower = {n.lower(): n for n in names}
        if feature is None or str(feature).lower() not in by_lower:
            raise InputError(f"{str(path)!r}: give 'feature', one of the CND stim.names "
                             f"{names}; got {feature!r}.")
        if trial is None or not 1 <= int(trial) <= len(trials):
            raise InputError(f"{str(path)!r} holds {len(trials)} trials; give trial in "
                             f"1..{len(trials)}, got {trial!r}.")
        series = trials[int(trial) - 1][by_lower[str(feature).lower()]]
        return _check_feature_rate(dataclasses.replace(series, data=series.data.copy()), sfreq, path)
    if trial is not None:
        raise InputError(f"{str(path)!r} is no CND stimulus file (no 'stim' struct); 'trial' applies to "
                         f"those only, got trial={trial!r}.")
    candidates = sorted(k for k, v in variables.items() if k != "fs" and isinstance(v, np.ndarray))
    if feature is None and len(candidates) == 1:
        feature = candidates[0]
    if feature not in candidates:
        raise InputError(f"{str(path)!r}: give 'feature', one of its matrices {candidates}; "
                         f"got {feature!r}.")
    file_rate = variables.get("fs")
    if file_rate is None and sfreq is None:
        raise InputError(f"{str(path)!r} has no 'fs' variable; give sfreq (Hz) for its "
                         f"feature {feature!r}.")
    values = np.array(variables[feature], dtype=np.float64)  # a copy: the parsed file is cached
    values = values[:, None] if values.ndim == 1 else values
    cols = (feature,) if values.shape[1] == 1 else tuple(f"{feature}_{j}" for j in range(values.shape[1]))
    series = TimeSeries(values, float(sfreq if file_rate is None else file_rate), 0.0, cols)
    return _check_feature_rate(series, sfreq, path)


@functools.lru_cache(maxsize=2)
def _feature_file(path, mtime_ns, size):
    """The variables of a feature file, parsed once while its entries are read in a row.

    A CND ``dataStim.mat`` holds the features of every stimulus; a manifest names one
    entry of it per stimulus.
    """
    return _read_mat(path)


def read_manifest_feature(manifest, stimulus, kind):
    """The release feature ``kind`` of a manifest's stimulus (its ``features`` entry).

    Parameters
    ----------
    manifest : Manifest
    stimulus : str
        Stimulus name.
    kind : str
        A key of the stimulus's ``features`` (see :data:`sae_eeg.manifests.RELEASE_FEATURES`).

    Returns
    -------
    series : TimeSeries
        Shape (T, n_dims), first sample at 0 s (the stimulus start).
    """
    entry = manifest.stimuli[stimulus].features[kind]
    return read_stimulus_feature(manifest.resolve(entry.path), feature=entry.feature, trial=entry.trial,
                                 sfreq=entry.sfreq)


def stimulus_feature_problems(manifest):
    """Every problem of the release features a manifest names: each is read and checked.

    A file that does not open, a feature or variable it lacks, a trial out of range or
    a sampling rate that disagrees with the file are each one line.

    Parameters
    ----------
    manifest : Manifest

    Returns
    -------
    problems : list of str
    """
    problems = []
    for name, stim in manifest.stimuli.items():
        for kind, entry in stim.features.items():
            if not manifest.resolve(entry.path).is_file():
                continue  # reported by load_manifest
            try:
                read_manifest_feature(manifest, name, kind)
            except InputError as err:
                problems.append(f"stimulus {name!r} features.{kind}: {err}")
    return problems


def _check_feature_rate(series, sfreq, path):
    if sfreq is not None and abs(float(sfreq) - series.sfreq) > 1e-9:
        raise InputError(f"{str(path)!r} is at {series.sfreq} Hz; sfreq = {sfreq} Hz was given.")
    return series


@functools.lru_cache(maxsize=1)
def _cnd_cached(path, mtime_ns, unit_scale):
    """The last CND file read: its runs are the trials of one file, read in a row."""
    return read_cnd(path, unit_scale=unit_scale).raws


def _read_cnd_trial(path, *, trial=None, unit_scale=1e-6, **_):
    path = Path(path).resolve()
    raws = _cnd_cached(str(path), path.stat().st_mtime_ns, float(unit_scale))
    if trial is None:
        raise InputError(f"CND file {str(path)!r} holds {len(raws)} trials; give eeg.trial.")
    if not 1 <= trial <= len(raws):
        raise InputError(f"eeg.trial {trial} is out of range for {str(path)!r} (1..{len(raws)}).")
    return raws[trial - 1].copy()  # callers may modify it in place


def read_lalor_mat(path, *, unit_scale=1e-6, **_):
    """Read a Lalor-lab (Broderick et al. 2018, Dryad) run ``.mat`` file.

    The file holds ``eegData`` (T, 128) on the BioSemi 128 layout, ``mastoids`` (T, 2)
    and ``fs``. Channels are named after MNE's ``biosemi128`` montage (A1..D32); the
    mastoids become ``M1``/``M2`` (type misc).

    Parameters
    ----------
    path : path-like
        ``Subject<N>_Run<M>.mat`` (MATLAB v5/v7 or v7.3).
    unit_scale : float
        Factor to volts (the data are in microvolts: 1e-6).

    Returns
    -------
    raw : mne.io.RawArray
    """
    path = _check_file(path, "Lalor .mat file")
    mat = _read_mat(path)
    missing = [k for k in ("eegData", "fs") if k not in mat]
    if missing:
        raise InputError(f"{str(path)!r} lacks {missing}; has {sorted(k for k in mat if k[0] != '_')}.")
    data = np.asarray(mat["eegData"], dtype=np.float64)
    data = data[:, None] if data.ndim == 1 else data
    n_channels = data.shape[1]
    names = (mne.channels.make_standard_montage("biosemi128").ch_names
             if n_channels == 128 else [f"EEG{i + 1:03d}" for i in range(n_channels)])
    types = ["eeg"] * n_channels
    if "mastoids" in mat:
        mastoids = _as_time_by(mat["mastoids"], len(data), where=f"{str(path)!r}: mastoids")
        data = np.hstack([data, mastoids])
        names = list(names) + [f"M{j + 1}" for j in range(mastoids.shape[1])]
        types += ["misc"] * mastoids.shape[1]
    return _raw_from_array(data, float(mat["fs"]), names, types, unit_scale)


#: Reader of each manifest ``format`` (``auto`` resolves through :func:`infer_format`).
READERS = {
    "fif": _read_fif, "brainvision": _read_brainvision, "edf": _read_edf, "bdf": _read_bdf,
    "eeglab": _read_eeglab, "bids": _read_bids, "cnd": _read_cnd_trial,
    "lalor_mat": read_lalor_mat,
}


def read_raw(path, *, format="auto", trial=None, unit_scale=1e-6):
    """Read one EEG file through the reader registry (data preloaded).

    Parameters
    ----------
    path : path-like
        The EEG file (for BIDS: the data file inside the BIDS tree).
    format : str
        A key of :data:`READERS` or ``"auto"`` (from the extension).
    trial : int | None
        1-based trial of a CND file.
    unit_scale : float
        Factor to volts for ``.mat`` formats.

    Returns
    -------
    raw : mne.io.Raw
    """
    path = _check_file(path, "EEG file")
    fmt = infer_format(path) if format == "auto" else format
    _check_option("format", fmt, READERS)
    try:
        return READERS[fmt](path, trial=trial, unit_scale=unit_scale)
    except InputError:
        raise
    except _PARSE_ERRORS as err:  # MNE's readers fail on damaged files with many types
        raise InputError(f"EEG file {str(path)!r} could not be read as {fmt!r} (damaged, truncated or "
                         f"incomplete?): {type(err).__name__}: {err}") from err


#: What MNE's readers raise on truncated or damaged files (numpy buffer errors, configparser
#: errors of a BrainVision header, a missing data file, ...).
_PARSE_ERRORS = (ValueError, OSError, RuntimeError, KeyError, IndexError, TypeError, EOFError,
                 UnicodeDecodeError, configparser.Error)


def recording_files(path, format="auto"):
    """Every file a reader reads for one recording: the file and its companions.

    Companions are the files of the same name with another extension (BrainVision
    ``.eeg``/``.vmrk``, EEGLAB ``.fdt``) and, for BIDS, the sidecars of the
    recording (``*_channels.tsv``, ``*_events.tsv``, ``*_eeg.json``, ...: the files
    beside it that share its entities). A change to any of them changes what is read.

    Parameters
    ----------
    path : path-like
        The recording (as named in a manifest).
    format : str
        Its format (a key of :data:`READERS`, ``"auto"`` or ``"bids"``).

    Returns
    -------
    files : list of pathlib.Path
        Sorted, the recording first.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return [path]
    prefix = path.name.rsplit("_", 1)[0] + "_" if format == "bids" and "_" in path.name else None
    stem = path.name.split(".", 1)[0]
    companions = sorted(p for p in path.parent.iterdir() if p.is_file() and p != path and (
        p.name.split(".", 1)[0] == stem or (prefix is not None and p.name.startswith(prefix))))
    return [path, *companions]


def check_finite(raw, *, name="EEG"):
    """Raise :class:`InputError` naming the channels that hold NaN or Inf samples.

    Parameters
    ----------
    raw : mne.io.Raw
        Preloaded recording (checked channel by channel, without a copy).
    name : str
        Names the recording in the message.
    """
    bad = [ch for ch, row in zip(raw.ch_names, raw._data) if not np.isfinite(row).all()]
    if bad:
        raise InputError(
            f"{name} holds NaN or Inf samples in {len(bad)} channel(s): {bad[:10]}. Repair "
            "or exclude them before analysis."
        )


def apply_montage(raw, montage, *, name="EEG"):
    """Set an MNE built-in montage; raise if an EEG channel has no position in it.

    Parameters
    ----------
    raw : mne.io.Raw
        Modified in place.
    montage : str
        Name of an MNE built-in montage.
    name : str
        Names the recording in the message.

    Returns
    -------
    raw : mne.io.Raw
    """
    montage_obj = mne.channels.make_standard_montage(montage)
    eeg_names = [raw.ch_names[i] for i in mne.pick_types(raw.info, eeg=True, exclude=[])]
    known = set(montage_obj.ch_names)
    missing = [ch for ch in eeg_names if ch not in known]
    if missing:
        raise InputError(
            f"{name}: channel(s) {missing[:10]} are missing from montage {montage!r} "
            f"(which has {montage_obj.ch_names[:8]}...). Type them as misc/eog in the "
            "manifest's 'channels' or pick another montage."
        )
    raw.set_montage(montage_obj, verbose=False)
    return raw


def describe_channels(raw):
    """One sentence naming a recording's non-EEG channels and its first channels (for errors)."""
    eeg = set(mne.pick_types(raw.info, eeg=True, exclude=[]))
    others = [ch for i, ch in enumerate(raw.ch_names) if i not in eeg]
    more = "..." if len(raw.ch_names) > 8 else ""
    return (f"its non-EEG channels are {others}; its channels {raw.ch_names[:8]}{more} "
            f"({len(raw.ch_names)} in all).")


def match_channel_names(raw, channels, *, name="EEG"):
    """Give the channels a manifest names (eog, misc, reference) the manifest's spelling.

    Names are matched case-insensitively (CND names external channels after
    ``extChan.description``: ``Mastoids1`` for a manifest's ``mastoids1``); a matching
    channel is renamed to the manifest's spelling, so configs that use that spelling
    (``reference_channels``) find it.

    Parameters
    ----------
    raw : mne.io.Raw
        Modified in place.
    channels : Channels
        The manifest's ``channels`` section.
    name : str
        Names the recording in the message.

    Raises
    ------
    InputError
        A named channel is absent; the message lists the channels present.
    """
    wanted = list(dict.fromkeys([*channels.eog, *channels.misc, *channels.reference]))
    by_lower = {}
    for ch in raw.ch_names:
        by_lower.setdefault(ch.lower(), []).append(ch)
    rename, missing = {}, []
    for ch in wanted:
        if ch in raw.ch_names:
            continue
        found = by_lower.get(ch.lower(), [])
        if len(found) == 1:
            rename[found[0]] = ch
        else:
            missing.append(ch)
    if missing:
        raise InputError(
            f"{name}: channel(s) {missing} named in the manifest's 'channels' (eog, misc, "
            f"reference) are not in the recording; {describe_channels(raw)} Fix the names in "
            "the manifest."
        )
    if rename:
        raw.rename_channels(rename, verbose=False)
    return raw


def read_run(manifest, subject, run):
    """Read one run of a manifest as a preloaded :class:`mne.io.Raw`, checked.

    The channels the manifest names are given its spelling (matched
    case-insensitively, see :func:`match_channel_names`), then channel types
    (``channels.eog``/``misc``), the montage and the subject's bad channels from the
    manifest are applied.

    Parameters
    ----------
    manifest : Manifest
        From :func:`sae_eeg.manifests.load_manifest`.
    subject, run : str
        Subject and run ids.

    Returns
    -------
    raw : mne.io.Raw

    Raises
    ------
    InputError
        Missing file, checksum mismatch, sampling rate differing from the manifest's
        ``eeg.sfreq``, NaN/Inf samples, a channel the manifest names absent, an EEG
        channel missing from the montage.
    """
    entry = manifest.run(subject, run)
    where = f"subject {subject!r} run {run!r}"
    path = manifest.resolve(entry.eeg.path)
    if not path.is_file():
        raise InputError(f"{where}: EEG file not found: {str(path)!r}.")
    if entry.eeg.sha256 is not None:
        digest = file_hash(path)
        if digest != entry.eeg.sha256.lower():
            raise InputError(
                f"{where}: checksum mismatch for {str(path)!r}: expected sha256 "
                f"{entry.eeg.sha256}, file has {digest}."
            )
    raw = read_raw(path, format=entry.eeg.format, trial=entry.eeg.trial,
                   unit_scale=manifest.channels.unit_scale)
    name = f"{where} ({str(path)!r})"
    if entry.eeg.sfreq is not None and abs(raw.info["sfreq"] - entry.eeg.sfreq) > 1e-6:
        raise InputError(
            f"{name}: sampling-rate mismatch: file is at {raw.info['sfreq']} Hz, the manifest "
            f"declares eeg.sfreq = {entry.eeg.sfreq} Hz."
        )
    check_finite(raw, name=name)
    match_channel_names(raw, manifest.channels, name=name)
    types = {ch: "eog" for ch in manifest.channels.eog}
    types.update({ch: "misc" for ch in manifest.channels.misc})
    if types:
        raw.set_channel_types(types, verbose=False)
    if manifest.montage is not None:
        apply_montage(raw, manifest.montage, name=name)
    bads = manifest.subject_bad_channels(subject)
    raw.info["bads"] = sorted(set(raw.info["bads"]) | {b for b in bads if b in raw.ch_names})
    return raw

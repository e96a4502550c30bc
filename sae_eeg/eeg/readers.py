"""Read EEG recordings as :class:`mne.io.Raw`: MNE formats, BIDS, CND and Lalor ``.mat``.

Readers sit in the :data:`READERS` registry keyed by the manifest's ``format`` string;
the same dict validates the option. :func:`read_run` reads one manifest run and checks
it (file present, checksum, declared sampling rate, NaNs, montage coverage).
"""

from __future__ import annotations

import configparser
import dataclasses
import functools
import logging
from pathlib import Path

import mne
import numpy as np
import scipy.io

from .._check import _check_file, _check_option, _soft_import
from ..errors import InputError
from ..audio import file_hash
from ..trajectories import TimeSeries

logger = logging.getLogger(__name__)

_EXTENSIONS = {
    ".fif": "fif", ".fif.gz": "fif", ".vhdr": "brainvision", ".edf": "edf", ".bdf": "bdf",
    ".set": "eeglab", ".mat": "mat",
}


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


def _mat_flavour(path):
    try:
        names = {name for name, _, _ in scipy.io.whosmat(str(path))}
    except (ValueError, NotImplementedError, OSError) as err:
        raise InputError(f".mat file {str(path)!r} cannot be read: {err}") from err
    if "eeg" in names:
        return "cnd"
    if "eegData" in names:
        return "lalor_mat"
    raise InputError(
        f".mat file {str(path)!r} holds {sorted(names)}; expected a CND 'eeg' struct or a "
        "Lalor-lab 'eegData' matrix."
    )


def _read_fif(path, **_):
    return mne.io.read_raw_fif(path, preload=True, verbose=False)


def _read_brainvision(path, **_):
    return mne.io.read_raw_brainvision(path, preload=True, verbose=False)


def _read_edf(path, **_):
    return mne.io.read_raw_edf(path, preload=True, verbose=False)


def _read_bdf(path, **_):
    return mne.io.read_raw_bdf(path, preload=True, verbose=False)


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


def _loadmat(path):
    try:
        return scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except NotImplementedError as err:  # MATLAB v7.3 is HDF5
        raise InputError(
            f".mat file {str(path)!r} is MATLAB v7.3 (HDF5), which scipy cannot read; re-save "
            "it with save(..., '-v7') or convert it."
        ) from err
    except (ValueError, OSError) as err:
        raise InputError(f".mat file {str(path)!r} cannot be read: {err}") from err


def _as_list(cell):
    """A MATLAB cell array (squeezed to a scalar or ndarray of objects) as a list."""
    if isinstance(cell, np.ndarray) and cell.dtype == object:
        return list(cell.ravel())
    return [cell]


def _raw_from_array(data_TC, sfreq, ch_names, ch_types, unit_scale):
    info = mne.create_info(list(ch_names), float(sfreq), ch_types)
    data_CT = np.ascontiguousarray(np.asarray(data_TC, dtype=np.float64).T) * unit_scale
    return mne.io.RawArray(data_CT, info, verbose=False)


def _chan_labels(chanlocs, n_channels):
    if chanlocs is None:
        return [f"EEG{i + 1:03d}" for i in range(n_channels)]
    labels = [str(getattr(c, "labels", f"EEG{i + 1:03d}")) for i, c in enumerate(_as_list(chanlocs))]
    if len(labels) != n_channels:
        raise InputError(f"chanlocs has {len(labels)} labels for {n_channels} channels.")
    return labels


@dataclasses.dataclass(frozen=True)
class CNDRecording:
    """The trials of one CND ``eeg`` struct, and the stimulus features if given.

    Attributes
    ----------
    raws : list of mne.io.RawArray
        One Raw per trial (EEG channels, plus the external channels such as mastoids
        typed ``misc``).
    stim : list of dict of str -> TimeSeries, or None
        Per trial, the features of the CND ``stim`` struct by name.
    """

    raws: list
    stim: list | None


def read_cnd(path, *, stim_path=None, unit_scale=1e-6):
    """Read a CND (Continuous-event Neural Data, CNSP) file.

    Parameters
    ----------
    path : path-like
        ``dataSubN.mat`` holding the struct ``eeg`` with ``data`` (cell of trials, each
        (T, C)), ``fs``, optional ``chanlocs`` (struct array with ``labels``) and
        optional ``extChan`` (cell of structs with ``data`` (cell of trials) and
        ``description``, e.g. the mastoids).
    stim_path : path-like | None
        ``dataStim.mat`` holding the struct ``stim`` with ``data`` (cell, features x
        trials, each (T, n_dims)), ``names`` and ``fs``.
    unit_scale : float
        Factor to volts (CND data are in microvolts: 1e-6).

    Returns
    -------
    recording : CNDRecording
    """
    path = _check_file(path, "CND file")
    mat = _loadmat(path)
    if "eeg" not in mat:
        raise InputError(f"CND file {str(path)!r} has no 'eeg' struct (has {sorted(mat)}).")
    eeg = mat["eeg"]
    for field in ("data", "fs"):
        if not hasattr(eeg, field):
            raise InputError(f"CND file {str(path)!r}: struct 'eeg' has no field {field!r}.")
    trials = [np.atleast_2d(t) for t in _as_list(eeg.data)]
    labels = _chan_labels(getattr(eeg, "chanlocs", None), trials[0].shape[1])
    ext = [(str(getattr(e, "description", f"ext{i}")), _as_list(e.data))
           for i, e in enumerate(_as_list(getattr(eeg, "extChan", [])))]
    raws = []
    for k, trial in enumerate(trials):
        blocks, names, types = [trial], list(labels), ["eeg"] * len(labels)
        for desc, data in ext:
            block = np.atleast_2d(data[k]).reshape(len(trial), -1)
            blocks.append(block)
            names += [f"{desc}{j + 1}" for j in range(block.shape[1])]
            types += ["misc"] * block.shape[1]
        raws.append(_raw_from_array(np.hstack(blocks), float(eeg.fs), names, types, unit_scale))
    stim = None if stim_path is None else read_cnd_stim(stim_path)
    if stim is not None and len(stim) != len(raws):
        raise InputError(f"{str(stim_path)!r} has {len(stim)} trials, {str(path)!r} {len(raws)}.")
    return CNDRecording(raws, stim)


def read_cnd_stim(path):
    """Read the ``stim`` struct of a CND ``dataStim.mat``.

    Parameters
    ----------
    path : path-like
        ``dataStim.mat`` with the struct ``stim`` (``data`` features x trials,
        ``names``, ``fs``).

    Returns
    -------
    trials : list of dict of str -> TimeSeries
        Per trial, each feature as a (T, n_dims) series starting at 0 s.
    """
    path = _check_file(path, "CND stimulus file")
    mat = _loadmat(path)
    if "stim" not in mat:
        raise InputError(f"CND file {str(path)!r} has no 'stim' struct (has {sorted(mat)}).")
    stim = mat["stim"]
    names = [str(n) for n in _as_list(stim.names)]
    cells = np.asarray(stim.data, dtype=object).reshape(len(names), -1)
    trials = []
    for k in range(cells.shape[1]):
        feats = {}
        for i, name in enumerate(names):
            values = np.asarray(cells[i, k], dtype=np.float64)
            values = values.reshape(len(values), -1)
            cols = tuple(f"{name}_{j}" for j in range(values.shape[1]))
            feats[name] = TimeSeries(values, float(stim.fs), 0.0, cols)
        trials.append(feats)
    return trials


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
        ``Subject<N>_Run<M>.mat``.
    unit_scale : float
        Factor to volts (the data are in microvolts: 1e-6).

    Returns
    -------
    raw : mne.io.RawArray
    """
    path = _check_file(path, "Lalor .mat file")
    mat = _loadmat(path)
    missing = [k for k in ("eegData", "fs") if k not in mat]
    if missing:
        raise InputError(f"{str(path)!r} lacks {missing}; has {sorted(k for k in mat if k[0] != '_')}.")
    data = np.atleast_2d(mat["eegData"])
    n_channels = data.shape[1]
    names = (mne.channels.make_standard_montage("biosemi128").ch_names
             if n_channels == 128 else [f"EEG{i + 1:03d}" for i in range(n_channels)])
    types = ["eeg"] * n_channels
    if "mastoids" in mat:
        mastoids = np.atleast_2d(mat["mastoids"]).reshape(len(data), -1)
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


def read_run(manifest, subject, run):
    """Read one run of a manifest as a preloaded :class:`mne.io.Raw`, checked.

    Channel types (``channels.eog``/``misc``), the montage and the subject's bad
    channels from the manifest are applied.

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
        ``eeg.sfreq``, NaN/Inf samples, an EEG channel missing from the montage.
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
    types = {ch: "eog" for ch in manifest.channels.eog if ch in raw.ch_names}
    types.update({ch: "misc" for ch in manifest.channels.misc if ch in raw.ch_names})
    if types:
        raw.set_channel_types(types, verbose=False)
    if manifest.montage is not None:
        apply_montage(raw, manifest.montage, name=name)
    bads = manifest.subject_bad_channels(subject)
    raw.info["bads"] = sorted(set(raw.info["bads"]) | {b for b in bads if b in raw.ch_names})
    return raw

"""What the stages write and read: run files, time series and result tables with provenance.

* run files (:func:`save_run` / :func:`load_run`): the preprocessed EEG of one run,
  cut to its stimulus, and the stimulus's name (the features are aligned to it when
  the analyses run: :class:`RunData` is what they read);
* time series (:func:`save_series` / :func:`load_series`): dense activations and
  acoustic baselines of a stimulus;
* tables: :func:`sae_eeg._io.write_table` / :func:`sae_eeg._io.read_table`.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from scipy import sparse

from .._check import _check_file
from .._io import atomic_path
from ..errors import InputError
from ..trajectories import TimeSeries

_RUN_ARRAYS = ("eeg", "sfreq", "ch_names", "stimulus", "record")


@dataclasses.dataclass(frozen=True)
class RunFile:
    """A run file as read by :func:`load_run`: one run's EEG and what it refers to.

    Attributes
    ----------
    eeg : ndarray, shape (n_times, n_channels), float64
        Preprocessed EEG from the stimulus onset (stored as float32).
    sfreq : float
        Sampling rate, Hz.
    ch_names : list of str
    stimulus : str
        The stimulus presented (its features are under ``features/<stimulus>/``).
    record : dict
        How the run was cut: ``onset_sample``, ``clock_ratio``, ``samples_after``.
    """

    eeg: np.ndarray
    sfreq: float
    ch_names: list
    stimulus: str
    record: dict

    @property
    def n_times(self):
        """Number of samples."""
        return self.eeg.shape[0]


@dataclasses.dataclass(frozen=True)
class RunData:
    """One aligned run with its features on the EEG grid: the input of the analyses.

    Attributes
    ----------
    eeg : ndarray, shape (n_times, n_channels)
        Preprocessed EEG.
    features : scipy.sparse.csr_array, shape (n_times, n_features) | None
        SAE feature trajectories on the EEG grid (None without audio).
    sfreq : float
        Sampling rate, Hz.
    ch_names : list of str
    feature_ids : ndarray of int, shape (n_features,)
    spaces : dict of str -> ndarray, each (n_times, n_dims)
        Other feature spaces of the run (e.g. ``envelope``, ``mel``, ``dense``).
    """

    eeg: np.ndarray
    features: sparse.csr_array | None
    sfreq: float
    ch_names: list
    feature_ids: np.ndarray
    spaces: dict


def save_run(path, *, eeg, sfreq, ch_names, stimulus, record=None):
    """Write one run's EEG and the name of its stimulus to ``path`` (.npz, atomic).

    Parameters
    ----------
    path : path-like
        Output file.
    eeg : array, shape (n_times, n_channels)
        Stored as float32: its rounding (~6e-8 of each value) lies far below EEG
        noise, and a 128-channel hour at 128 Hz takes 236 MB instead of 472 MB.
    sfreq : float
        Sampling rate, Hz.
    ch_names : list of str
    stimulus : str
        The stimulus presented.
    record : dict | None
        How the run was cut (JSON-able), e.g. ``onset_sample``, ``clock_ratio``.
    """
    eeg = np.asarray(eeg, dtype=np.float32)
    if eeg.ndim != 2 or eeg.shape[1] != len(ch_names):
        raise InputError(f"eeg must have shape (n_times, {len(ch_names)}) for {len(ch_names)} channels, "
                         f"got {eeg.shape}.")
    arrays = {"eeg": eeg, "sfreq": np.float64(sfreq), "ch_names": np.asarray(ch_names, dtype=str),
              "stimulus": np.asarray(stimulus, dtype=str), "record": np.asarray(json.dumps(record or {}))}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_run(path):
    """Read a run written by :func:`save_run`.

    Returns
    -------
    run : RunFile

    Raises
    ------
    InputError
        Missing file or a file that lacks a required array (e.g. one written by an
        older version, which stored features too: rerun ``preprocess``).
    """
    path = _check_file(path, "run file")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in _RUN_ARRAYS if k not in z.files]
        if missing:
            raise InputError(f"run file {str(path)!r} lacks {missing}; write it with save_run() (rerun "
                             "'preprocess').")
        return RunFile(z["eeg"].astype(np.float64), float(z["sfreq"]), [str(c) for c in z["ch_names"]],
                       str(z["stimulus"]), json.loads(str(z["record"])))


def save_series(series, path):
    """Write a :class:`~sae_eeg.trajectories.TimeSeries` as ``.npz`` (float32 data, atomic)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, data=series.data.astype(np.float32), sfreq=series.sfreq, tmin=series.tmin,
                 names=np.asarray(series.names, dtype=str))


def load_series(path):
    """Read a time series written by :func:`save_series`."""
    path = _check_file(path, "time-series file")
    with np.load(path) as z:
        return TimeSeries(z["data"], float(z["sfreq"]), float(z["tmin"]), tuple(str(n) for n in z["names"]))

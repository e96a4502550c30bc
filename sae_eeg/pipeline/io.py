"""What the stages write and read: run files, time series and result tables with provenance.

* run files (:func:`save_run` / :func:`load_run`): the aligned EEG of one run with
  the SAE features of one layer and the other feature spaces on the same grid;
* time series (:func:`save_series` / :func:`load_series`): dense activations and
  acoustic baselines of a stimulus;
* tables: :func:`sae_eeg._io.write_table` / :func:`sae_eeg._io.read_table`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import sparse

from .._check import _check_file
from .._io import atomic_path
from ..errors import InputError
from ..trajectories import TimeSeries

_SPACE_PREFIX = "space__"


@dataclasses.dataclass(frozen=True)
class RunData:
    """One aligned run, as read by :func:`load_run`.

    Attributes
    ----------
    eeg : ndarray, shape (n_times, n_channels)
        Preprocessed EEG.
    features : scipy.sparse.csr_array, shape (n_times, n_features)
        SAE feature trajectories on the EEG grid.
    sfreq : float
        Sampling rate, Hz.
    ch_names : list of str
    feature_ids : ndarray of int, shape (n_features,)
    spaces : dict of str -> ndarray, each (n_times, n_dims)
        Other feature spaces of the run (e.g. ``envelope``, ``mel``, ``dense``).
    """

    eeg: np.ndarray
    features: sparse.csr_array
    sfreq: float
    ch_names: list
    feature_ids: np.ndarray
    spaces: dict


def save_run(path, *, eeg, features, sfreq, ch_names, feature_ids=None, spaces=None):
    """Write one aligned run to ``path`` (.npz, atomic).

    Parameters
    ----------
    path : path-like
        Output file.
    eeg : array, shape (n_times, n_channels)
    features : array | scipy.sparse array, shape (n_times, n_features)
        Stored sparse.
    sfreq : float
        Sampling rate of both, Hz.
    ch_names : list of str
    feature_ids : array of int | None
        Default ``0..n_features-1``.
    spaces : dict of str -> array | None
        Other feature spaces, each (n_times, n_dims) or (n_times,).
    """
    eeg = np.asarray(eeg, dtype=np.float64)
    feats = sparse.csr_array(features, dtype=np.float32)
    if feats.shape[0] != eeg.shape[0]:
        raise InputError(f"features have {feats.shape[0]} samples, eeg {eeg.shape[0]}.")
    if max(feats.nnz, feats.shape[1]) < np.iinfo(np.int32).max:   # int32 indices: a fifth less disk
        feats.indices, feats.indptr = feats.indices.astype(np.int32), feats.indptr.astype(np.int32)
    ids = np.arange(feats.shape[1]) if feature_ids is None else np.asarray(feature_ids, dtype=np.int64)
    arrays = {
        "eeg": eeg, "sfreq": np.float64(sfreq), "ch_names": np.asarray(ch_names, dtype=str),
        "feature_ids": ids, "feat_data": feats.data, "feat_indices": feats.indices,
        "feat_indptr": feats.indptr, "feat_shape": np.asarray(feats.shape),
    }
    for name, x in (spaces or {}).items():
        x = np.asarray(x, dtype=np.float32)
        arrays[_SPACE_PREFIX + name] = x[:, None] if x.ndim == 1 else x
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_run(path):
    """Read a run written by :func:`save_run`.

    Returns
    -------
    run : RunData

    Raises
    ------
    InputError
        Missing file or a file that lacks a required array.
    """
    path = _check_file(path, "run file")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("eeg", "sfreq", "ch_names", "feat_data", "feat_indices", "feat_indptr",
                               "feat_shape") if k not in z.files]
        if missing:
            raise InputError(f"run file {str(path)!r} lacks {missing}; write it with save_run().")
        feats = sparse.csr_array((z["feat_data"], z["feat_indices"], z["feat_indptr"]),
                                 shape=tuple(z["feat_shape"]))
        ids = z["feature_ids"] if "feature_ids" in z.files else np.arange(feats.shape[1])
        spaces = {k[len(_SPACE_PREFIX):]: z[k] for k in z.files if k.startswith(_SPACE_PREFIX)}
        return RunData(z["eeg"], feats, float(z["sfreq"]), [str(c) for c in z["ch_names"]], ids, spaces)


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

"""Validation of the plain-array inputs of the alignment analyses.

An analysis takes ``data``: a mapping ``subject -> list of runs``, each run a :class:`Run`
(or a plain pair in that order) ``(eeg, features)`` with ``eeg`` (n_times, n_channels) and
``features`` (n_times, n_features), dense or scipy sparse, on the same time grid (the EEG
rate). Runs of different subjects that played the same stimulus share one feature matrix
(the same object): its statistics are then computed once (:func:`sae_eeg.trf.shared_stimulus_trfs`).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
from scipy import sparse

from .._check import _check_option, _validate_type
from ..errors import InputError


class Run(NamedTuple):
    """One run of a subject: its EEG (n_times, n_channels) and the stimulus features (n_times, n_features)."""

    eeg: object
    features: object


def content_key(x_csr, extra=()):
    """Fingerprint of a sparse matrix (and ``extra``): shape, row pointers and ~8000 sampled values
    and column indices (cheap on large matrices). Equal keys must still be checked with :func:`same_content`."""
    h = hashlib.blake2b(digest_size=20)
    step = max(1, x_csr.nnz // 8192)
    for part in (np.asarray(x_csr.shape), np.asarray(extra), x_csr.indptr, x_csr.data[::step], x_csr.indices[::step]):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def same_content(a, b):
    """True if two CSR matrices hold exactly the same values in the same places."""
    return a is b or (a.shape == b.shape and a.nnz == b.nnz and np.array_equal(a.indptr, b.indptr)
                      and np.array_equal(a.indices, b.indices) and np.array_equal(a.data, b.data))


def as_csr(x, name):
    """``x`` as a float64 CSR array (sparse stays sparse)."""
    if sparse.issparse(x):
        return sparse.csr_array(x, dtype=np.float64)
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D (n_times, n_features), got shape {arr.shape}.")
    return sparse.csr_array(arr)


def check_data(data, *, min_runs=1):
    """Validate ``data`` and return ``{subject: [Run(eeg_TC float64, features csr), ...]}``.

    Raises
    ------
    InputError
        Not a mapping, a run that is not a pair, non-2-D arrays, lengths that differ
        within a run, or feature/channel counts that differ between runs.
    """
    _validate_type(data, dict, "data")
    if not data:
        raise InputError("data holds no subjects; expected {subject: [(eeg, features), ...]}.")
    out, n_feat, n_ch = {}, None, None
    converted = {}  # one CSR per distinct input object: subjects keep sharing stimuli
    for subject, runs in data.items():
        _validate_type(runs, (list, tuple), f"data[{subject!r}]")
        if len(runs) < min_runs:
            raise InputError(f"Subject {subject!r} has {len(runs)} runs; this analysis needs at "
                             f"least {min_runs}.")
        checked = []
        for i, run in enumerate(runs):
            where = f"data[{subject!r}][{i}]"
            if not isinstance(run, (tuple, list)) or len(run) != 2:
                raise InputError(f"{where} must be a pair (eeg, features), got {type(run).__name__}.")
            eeg = np.asarray(run[0], dtype=np.float64)
            if eeg.ndim != 2:
                raise InputError(f"{where}: eeg must be 2-D (n_times, n_channels), got shape {eeg.shape}.")
            if id(run[1]) not in converted:
                converted[id(run[1])] = as_csr(run[1], f"{where}: features")
            feats = converted[id(run[1])]
            if feats.shape[0] != eeg.shape[0]:
                raise InputError(f"{where}: eeg has {eeg.shape[0]} samples but features have "
                                 f"{feats.shape[0]}; align them to the same grid first.")
            if not np.all(np.isfinite(eeg)):
                raise InputError(f"{where}: eeg holds NaN or infinite values.")
            n_feat = feats.shape[1] if n_feat is None else n_feat
            n_ch = eeg.shape[1] if n_ch is None else n_ch
            if feats.shape[1] != n_feat or eeg.shape[1] != n_ch:
                raise InputError(f"{where}: {eeg.shape[1]} channels x {feats.shape[1]} features; "
                                 f"other runs have {n_ch} x {n_feat}.")
            checked.append(Run(eeg, feats))
        out[str(subject)] = checked
    return out


def resolve_channels(channels, ch_names, n_channels):
    """Channel indices and names from names or indices.

    Parameters
    ----------
    channels : str | int | list of str or int | None
        Channels to use; None means all.
    ch_names : list of str | None
        Names of the EEG columns (needed to pick by name).
    n_channels : int
        Number of EEG columns.

    Returns
    -------
    idx : ndarray of int
    names : list of str
    """
    names_all = [str(c) for c in ch_names] if ch_names is not None else [str(i) for i in range(n_channels)]
    if len(names_all) != n_channels:
        raise InputError(f"ch_names has {len(names_all)} names but the EEG has {n_channels} channels.")
    if channels is None:
        return np.arange(n_channels), names_all
    items = [channels] if isinstance(channels, (str, int, np.integer)) else list(channels)
    idx = []
    for c in items:
        if isinstance(c, str):
            if ch_names is None:
                raise InputError(f"Channel {c!r} given by name but ch_names is None; pass ch_names "
                                 f"or channel indices.")
            _check_option("channels", c, names_all)
            idx.append(names_all.index(c))
        else:
            c = int(c)
            if not 0 <= c < n_channels:
                raise InputError(f"Channel index {c} out of range for {n_channels} channels.")
            idx.append(c)
    idx = np.asarray(idx, dtype=int)
    return idx, [names_all[i] for i in idx]


def data_from_aligned(aligned):
    """Analysis ``data`` from aligned runs of the EEG layer.

    Parameters
    ----------
    aligned : dict of str -> list of AlignedRun
        Per subject its runs in order (:func:`sae_eeg.eeg.load_aligned_run`); each has
        ``eeg`` (T, C) and ``features`` with ``data`` (T, F), sparse or dense.

    Returns
    -------
    data : dict of str -> list of Run
        Runs of different subjects with the same stimulus share one feature matrix
        (so its statistics are computed once).
    ch_names : list of str
        Channel names (identical in every run).

    Raises
    ------
    InputError
        Runs with different channel names.
    """
    shared, data, ch_names = {}, {}, None
    for subject, runs in aligned.items():
        data[str(subject)] = []
        for run in runs:
            ch_names = list(run.ch_names) if ch_names is None else ch_names
            if list(run.ch_names) != ch_names:
                raise InputError(f"Subject {subject!r} run {getattr(run, 'run', '?')!r} has channels "
                                 f"{list(run.ch_names)[:5]}...; other runs have {ch_names[:5]}...")
            key = (getattr(run, "stimulus", None) or id(run.features), run.eeg.shape[0])
            if key not in shared:
                shared[key] = as_csr(run.features.data, f"features of {subject!r}")
            data[str(subject)].append(Run(run.eeg, shared[key]))
    return data, ch_names

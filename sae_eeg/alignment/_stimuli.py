"""Stimulus-keyed inputs of the feature attribution and the acoustic TRFs.

In a listening study every subject hears the same stimuli, so what belongs to a
stimulus (its SAE features, its acoustic baselines) is given once per stimulus, and
each subject's runs name the stimulus they played:

- ``runs``: ``{subject: [(stimulus, eeg), ...]}``, ``eeg`` (n_times, n_channels);
- ``features``: ``{stimulus: (n_times, n_features)}``, sparse or dense;
- ``acoustic``: ``{stimulus: {space: (n_times[, n_columns])}}``, e.g. ``"envelope"``.

All on the same grid (the EEG rate); a run's EEG and its stimulus' series have the
same number of samples.
"""

from __future__ import annotations

import dataclasses

import mne
import numpy as np
import pandas as pd
import scipy.signal
from scipy import sparse

from .._check import _check_range, _validate_type
from ..errors import InputError
from ._data import as_csr


@dataclasses.dataclass(frozen=True)
class StimulusRuns:
    """Validated runs.

    Attributes
    ----------
    stimuli : list of str
        Stimuli in the order they first appear (subjects in order, runs in order).
    eeg : dict of str -> dict of str -> ndarray
        ``eeg[subject][stimulus]``, (n_times, n_channels) float64.
    n_times : dict of str -> int
        Samples of each stimulus.
    ch_names : list of str
    """

    stimuli: list
    eeg: dict
    n_times: dict
    ch_names: list

    @property
    def subjects(self):
        """Subject ids in order."""
        return list(self.eeg)

    def heard(self, stimulus):
        """Subjects who heard ``stimulus``, in order."""
        return [s for s, runs in self.eeg.items() if stimulus in runs]

    def by_training_set(self, subjects, exclude):
        """``subjects`` grouped by the stimuli they heard besides ``exclude``: {stimuli: subjects}.

        Subjects of one group share a training set, so one factorisation serves them all.
        """
        groups = {}
        for s in subjects:
            train = tuple(stim for stim in self.stimuli if stim in self.eeg[s] and stim not in exclude)
            groups.setdefault(train, []).append(s)
        return groups


def check_runs(runs, *, ch_names=None):
    """Validate ``runs`` (see the module notes).

    Raises
    ------
    InputError
        Not a mapping of lists of (stimulus, eeg) pairs, non-2-D or non-finite EEG,
        channel counts that differ, a stimulus played twice to one subject, runs of
        one stimulus with different lengths, or ``ch_names`` of the wrong length.
    """
    _validate_type(runs, dict, "runs")
    if not runs:
        raise InputError("runs holds no subjects; expected {subject: [(stimulus, eeg), ...]}.")
    eeg, n_times, order, n_ch = {}, {}, [], None
    for subject, items in runs.items():
        _validate_type(items, (list, tuple), f"runs[{subject!r}]")
        eeg[str(subject)] = {}
        for i, item in enumerate(items):
            where = f"runs[{subject!r}][{i}]"
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise InputError(f"{where} must be a pair (stimulus, eeg), got {type(item).__name__}.")
            stim, data = item
            _validate_type(stim, str, f"{where}: stimulus")
            data = np.asarray(data, dtype=np.float64)
            if data.ndim != 2:
                raise InputError(f"{where}: eeg must be 2-D (n_times, n_channels), got shape {data.shape}.")
            if not np.all(np.isfinite(data)):
                raise InputError(f"{where}: eeg holds NaN or infinite values.")
            n_ch = data.shape[1] if n_ch is None else n_ch
            if data.shape[1] != n_ch:
                raise InputError(f"{where}: eeg has {data.shape[1]} channels; other runs have {n_ch}.")
            if stim in eeg[str(subject)]:
                raise InputError(f"{where}: subject {subject!r} has two runs of stimulus {stim!r}; "
                                 f"average them or give them different stimulus names.")
            if n_times.setdefault(stim, data.shape[0]) != data.shape[0]:
                raise InputError(f"{where}: {data.shape[0]} samples of stimulus {stim!r}; another run of "
                                 f"it has {n_times[stim]}. Align every run to the stimulus grid.")
            if stim not in order:
                order.append(stim)
            eeg[str(subject)][stim] = data
    names = [str(c) for c in ch_names] if ch_names is not None else [str(i) for i in range(n_ch)]
    if len(names) != n_ch:
        raise InputError(f"ch_names has {len(names)} names but the EEG has {n_ch} channels.")
    return StimulusRuns(order, eeg, n_times, names)


def check_features(features, runs):
    """Feature matrices of the stimuli of ``runs`` as float64 CSR, (n_times, n_features) each."""
    _validate_type(features, dict, "features")
    missing = [s for s in runs.stimuli if s not in features]
    if missing:
        raise InputError(f"features has no entry for stimuli {missing}; it has {sorted(features)[:10]}.")
    out, n_feat = {}, None
    for stim in runs.stimuli:
        x = as_csr(features[stim], f"features[{stim!r}]")
        if x.shape[0] != runs.n_times[stim]:
            raise InputError(f"features[{stim!r}] has {x.shape[0]} samples but its runs have "
                             f"{runs.n_times[stim]}; resample the features to the EEG grid.")
        n_feat = x.shape[1] if n_feat is None else n_feat
        if x.shape[1] != n_feat:
            raise InputError(f"features[{stim!r}] has {x.shape[1]} columns; other stimuli have {n_feat}.")
        out[stim] = x
    return out


def check_feature_info(feature_info, n_features):
    """``feature_info`` as a DataFrame with integer ``layer`` and ``feature`` columns, one row per column."""
    if feature_info is None:
        return pd.DataFrame({"layer": np.full(n_features, -1), "feature": np.arange(n_features)})
    _validate_type(feature_info, pd.DataFrame, "feature_info")
    missing = {"layer", "feature"} - set(feature_info.columns)
    if missing:
        raise InputError(f"feature_info lacks column(s) {sorted(missing)}; it has {list(feature_info.columns)}.")
    if len(feature_info) != n_features:
        raise InputError(f"feature_info has {len(feature_info)} rows for {n_features} feature columns.")
    info = feature_info[["layer", "feature"]].reset_index(drop=True).astype(int)
    if info.duplicated().any():
        dup = info[info.duplicated()].iloc[0]
        raise InputError(f"feature_info lists layer {dup.layer} feature {dup.feature} twice.")
    return info


def check_acoustic(acoustic, runs, *, spaces=None):
    """Acoustic baselines of the stimuli as dense (n_times, K) arrays and the name of each column.

    Parameters
    ----------
    acoustic : dict of str -> dict of str -> array
        ``acoustic[stimulus][space]``, shape (n_times[, n_columns]).
    runs : StimulusRuns
    spaces : list of str | None
        Spaces to use (default all, in the order of the first stimulus).

    Returns
    -------
    design : dict of str -> ndarray, shape (n_times, K)
    columns : list of (str, int)
        Space and column index of each of the K columns.
    """
    _validate_type(acoustic, dict, "acoustic")
    missing = [s for s in runs.stimuli if s not in acoustic]
    if missing:
        raise InputError(f"acoustic has no entry for stimuli {missing}; it has {sorted(acoustic)[:10]}.")
    first = acoustic[runs.stimuli[0]]
    _validate_type(first, dict, f"acoustic[{runs.stimuli[0]!r}]")
    spaces = list(first) if spaces is None else list(spaces)
    design, widths = {}, {}
    for stim in runs.stimuli:
        parts = []
        for space in spaces:
            if space not in acoustic[stim]:
                raise InputError(f"acoustic[{stim!r}] has no space {space!r}; it has {sorted(acoustic[stim])}.")
            a = np.asarray(acoustic[stim][space], dtype=np.float64)
            a = a[:, None] if a.ndim == 1 else a
            where = f"acoustic[{stim!r}][{space!r}]"
            if a.ndim != 2 or a.shape[0] != runs.n_times[stim]:
                raise InputError(f"{where} must have shape ({runs.n_times[stim]}, n_columns) like its runs; "
                                 f"got {a.shape}.")
            if not np.all(np.isfinite(a)):
                raise InputError(f"{where} holds NaN or infinite values.")
            if widths.setdefault(space, a.shape[1]) != a.shape[1]:
                raise InputError(f"{where} has {a.shape[1]} columns; other stimuli have {widths[space]}.")
            parts.append(a)
        design[stim] = np.hstack(parts) if parts else np.zeros((runs.n_times[stim], 0))
    columns = [(space, k) for space in spaces for k in range(widths.get(space, 0))]
    return design, columns


def rms_scale(design):
    """Divide every column by its root mean square over all stimuli (all-zero columns are left as they are).

    Not centred: a predictor is zero outside its stimulus (silence), and after the
    band-pass a centred one would carry the filtered step of its mean at every onset
    and offset, which the EEG does not (the intercept takes the mean).
    """
    square = sum((v**2).sum(axis=0) for v in design.values())
    rms = np.sqrt(square / sum(len(v) for v in design.values()))
    rms = np.where(rms > 0, rms, 1.0)
    return {k: v / rms for k, v in design.items()}


def feature_scale(features):
    """Root mean square of every feature column over all stimuli (1 where a feature never fires)."""
    total = sum(np.asarray(x.multiply(x).sum(axis=0)).ravel() for x in features.values())
    rms = np.sqrt(total / sum(x.shape[0] for x in features.values()))
    return np.where(rms > 0, rms, 1.0)


def scale_columns(x, factors):
    """Sparse ``x`` with each column multiplied by ``factors``."""
    return sparse.csr_array(x @ sparse.diags_array(np.asarray(factors, dtype=np.float64)))


def check_band(band, sfreq):
    """``band`` as (l_freq or None, h_freq or None), or None; h_freq must be below Nyquist."""
    if band is None:
        return None
    _validate_type(band, (tuple, list), "band")
    if len(band) != 2:
        raise InputError(f"band must be (l_freq, h_freq) in Hz (either may be None), got {band!r}.")
    l_freq, h_freq = (None if f is None else float(_check_range(name, f, 0, None, low_inclusive=False))
                      for name, f in zip(("band[0]", "band[1]"), band))
    if h_freq is not None and h_freq >= sfreq / 2:
        raise InputError(f"band[1] = {h_freq} Hz is not below the Nyquist rate {sfreq / 2} Hz.")
    if l_freq is not None and h_freq is not None and l_freq >= h_freq:
        raise InputError(f"band must have l_freq < h_freq, got {band!r}.")
    return (l_freq, h_freq) if (l_freq, h_freq) != (None, None) else None


def decimation(sfreq, band):
    """Sample step that keeps a rate of at least four times the upper band edge (1 without one)."""
    if band is None or band[1] is None:
        return 1
    return max(1, int(sfreq // (4 * band[1])))


def band_filter(x_TK, sfreq, band):
    """``x`` (T, K) through the zero-phase FIR band-pass that MNE designs for ``band`` (zero outside)."""
    if band is None or x_TK.shape[1] == 0:
        return np.asarray(x_TK, dtype=np.float64)
    h = mne.filter.create_filter(None, sfreq, band[0], band[1], method="fir", phase="zero",
                                 fir_design="firwin", verbose=False)
    return scipy.signal.fftconvolve(np.asarray(x_TK, dtype=np.float64), h[:, None], mode="same", axes=0)


def filtered_dense(x, sfreq, band, step=1, *, chunk=256):
    """Sparse features (T, F) band-filtered and taken every ``step`` samples, dense, a chunk at a time."""
    out = np.empty((len(range(0, x.shape[0], step)), x.shape[1]))
    for f0 in range(0, x.shape[1], chunk):
        cols = slice(f0, min(f0 + chunk, x.shape[1]))
        out[:, cols] = band_filter(x[:, cols].toarray(), sfreq, band)[::step]
    return out

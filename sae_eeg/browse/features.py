"""What the browser shows of each feature itself: firing, mel receptive field, nearest features.

Each piece is computed by the package's own evaluation functions
(:func:`~sae_eeg.alignment.features.firing_rates`,
:func:`~sae_eeg.evals.feature_frequencies`,
:func:`~sae_eeg.evals.mel_receptive_fields`,
:func:`~sae_eeg.evals.decoder_directions`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._check import _check_range, _ensure_int
from ..alignment.features import firing_rates
from ..evals import decoder_directions, feature_frequencies, log_mel_spectrogram, mel_receptive_fields

#: Rows of the decoder cosine matrix computed at once (memory: this many x F floats).
_COSINE_BLOCK = 1024


def firing_table(stacked):
    """Firing statistics of every feature over all stimuli.

    Parameters
    ----------
    stacked : StackedCodes

    Returns
    -------
    table : pandas.DataFrame
        ``feature``, ``rate`` (onsets of activity per second of stimulus, at the
        frame rate), ``active`` (share of frames with a positive code),
        ``max_activation``.
    """
    rates = firing_rates(stacked.per_stimulus, sfreq=stacked.sfreq)
    frequencies = feature_frequencies(stacked.codes)
    peak = np.asarray(stacked.codes.max(axis=0).toarray()).ravel() if stacked.codes.nnz else np.zeros(
        stacked.n_features)
    return pd.DataFrame({"feature": frequencies["feature"], "rate": rates, "active": frequencies["frequency"],
                         "max_activation": np.maximum(peak, 0.0)})


def receptive_fields(stacked, audio, *, tmin=-0.1, tmax=0.1, n_windows=50):
    """Mean log-mel window around the strongest activations of every feature that fires.

    Parameters
    ----------
    stacked : StackedCodes
    audio : list of Audio
        The stimuli, in stimulus index order.
    tmin, tmax : float
        Window around each activation, s. Defaults -0.1 and 0.1.
    n_windows : int
        Activations averaged per feature (the largest). Default 50.

    Returns
    -------
    fields : dict of int -> ndarray, shape (n_lags, n_mels)
        Receptive field of each feature that fires (log10 mel power).
    lags : ndarray, shape (n_lags,)
        Lag of each window row, s.
    mel_freqs : ndarray, shape (n_mels,)
        Centre frequency of each band, Hz.
    """
    log_mels = {i: log_mel_spectrogram(clip.waveform, clip.sfreq) for i, clip in enumerate(audio)}
    result = mel_receptive_fields(stacked.codes, stacked.stimulus, stacked.times, log_mels, tmin=tmin, tmax=tmax,
                                  n_windows=n_windows)
    return dict(zip(result.features.tolist(), result.fields)), result.lags, result.mel_freqs


def nearest_features(sae, n_neighbours):
    """The features whose decoder directions are closest (cosine) to each feature's.

    Parameters
    ----------
    sae : SparseAutoencoder
        The SAE (decoder weight (D, F)).
    n_neighbours : int
        Neighbours per feature.

    Returns
    -------
    ids : ndarray of int, shape (n_features, n)
        Nearest features, closest first (the feature itself excluded);
        n = min(n_neighbours, n_features - 1).
    cosines : ndarray, shape (n_features, n)
        Their decoder cosines.
    """
    n_neighbours = _ensure_int(n_neighbours, "n_neighbours")
    _check_range("n_neighbours", n_neighbours, 1)
    W = decoder_directions(sae)
    unit = W / np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)
    n_features = unit.shape[0]
    n = min(n_neighbours, n_features - 1)
    ids = np.zeros((n_features, n), dtype=np.int64)
    cosines = np.zeros((n_features, n))
    for start in range(0, n_features, _COSINE_BLOCK):
        rows = np.arange(start, min(start + _COSINE_BLOCK, n_features))
        cos = unit[rows] @ unit.T
        cos[np.arange(rows.size), rows] = -np.inf
        part = np.argpartition(-cos, n - 1, axis=1)[:, :n] if n else np.zeros((rows.size, 0), np.int64)
        part_cos = np.take_along_axis(cos, part, axis=1)
        order = np.lexsort((part, -part_cos), axis=1)  # closest first, ties by id: machine-independent
        ids[rows] = np.take_along_axis(part, order, axis=1)
        cosines[rows] = np.take_along_axis(part_cos, order, axis=1)
    return ids, cosines

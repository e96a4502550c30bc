"""Feature selection and scaling of the AudioSAE EEG protocol."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .._check import _check_option, _check_range, _ensure_int
from .._docs import fill_doc
from ..errors import InputError
from ._data import as_csr, content_key, same_content

#: How firings are counted by :func:`firing_rates`.
COUNTS = ("onsets", "samples")


@fill_doc
def firing_rates(features, *, sfreq, threshold=0.0, count="onsets"):
    """Firing rate (per second) of every feature over a set of stimuli.

    Parameters
    ----------
    features : list of array or scipy.sparse array, each (n_times_i, n_features)
        Feature matrices of the distinct stimuli (duplicates, e.g. the same stimulus
        heard by several subjects, are counted once).
    %(sfreq)s
    threshold : float
        A feature is active at a sample where its value exceeds ``threshold``. Default 0.
    count : str
        ``"onsets"`` (default): a firing is an onset of activity (a sample above
        ``threshold`` whose predecessor is not), so the rate does not depend on the
        sampling rate or on how long each activation lasts. ``"samples"``: every
        active sample counts (the SAE frame count when ``features`` is at the frame rate).

    Returns
    -------
    rates : ndarray, shape (n_features,)
        Firings per second of stimulus, over all distinct stimuli.
    """
    _check_option("count", count, COUNTS)
    _check_range("sfreq", sfreq, 0, None, low_inclusive=False)
    seen, fires, n_times = {}, None, 0
    distinct = {id(x): (i, x) for i, x in enumerate(features)}   # hash each object once
    for i, x in distinct.values():
        x = as_csr(x, f"features[{i}]")
        key = content_key(x)
        if any(same_content(x, other) for other in seen.get(key, [])):
            continue
        seen.setdefault(key, []).append(x)
        active = sparse.csr_array(x > threshold, dtype=np.float64)
        n_fire = np.asarray(active.sum(axis=0)).ravel()
        if count == "onsets":
            # active samples whose predecessor is also active are continuations
            both = active[1:].multiply(active[:-1])
            n_fire = n_fire - np.asarray(both.sum(axis=0)).ravel()
        fires = n_fire if fires is None else fires + n_fire
        n_times += x.shape[0]
    if fires is None:
        raise InputError("features is empty; give at least one (n_times, n_features) matrix.")
    return fires / (n_times / float(sfreq))


@fill_doc
def select_features(features, *, sfreq, min_rate=1.0, n_features=1000, threshold=0.0,
                    count="onsets", random_state=None):
    """The paper's feature choice: features firing at least ``min_rate`` per second, sampled.

    Parameters
    ----------
    features : list of array or scipy.sparse array, each (n_times_i, n_features)
        Feature matrices of the stimuli (see :func:`firing_rates`).
    %(sfreq)s
    min_rate : float
        Minimum firing rate in firings per second. Default 1.0 (the paper).
    n_features : int | None
        Size of the random sample drawn from the frequent features (default 1000, the
        paper); all of them when fewer qualify or when None.
    threshold, count
        See :func:`firing_rates`.
    %(random_state)s

    Returns
    -------
    columns : ndarray of int, shape (n_selected,)
        Sorted column indices of the selected features.
    """
    _check_range("min_rate", min_rate, 0)
    rates = firing_rates(features, sfreq=sfreq, threshold=threshold, count=count)
    frequent = np.flatnonzero(rates >= min_rate)
    if n_features is None or len(frequent) <= _ensure_int(n_features, "n_features"):
        return frequent
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(frequent, size=int(n_features), replace=False))


def feature_max(features):
    """Maximum of each feature over a set of matrices, shape (n_features,)."""
    maxima = [np.asarray(as_csr(x, "features").max(axis=0).toarray()).ravel() for x in features]
    return np.max(maxima, axis=0)


def select_scale(x, columns, maxima=None):
    """Columns ``columns`` of ``x``, each divided by its maximum, in one sparse product.

    Parameters
    ----------
    x : array | scipy.sparse array, shape (n_times, n_features)
    columns : ndarray of int, shape (n_selected,)
    maxima : ndarray, shape (n_selected,) | None
        Maxima of the selected columns (columns whose maximum is <= 0 are not
        scaled); None selects without scaling.

    Returns
    -------
    selected : scipy.sparse.csr_array, shape (n_times, n_selected)
    """
    x = as_csr(x, "features")
    scale = np.ones(len(columns)) if maxima is None else 1.0 / np.where(maxima > 0, maxima, 1.0)
    pick = sparse.csr_array((scale, (np.asarray(columns), np.arange(len(columns)))),
                            shape=(x.shape[1], len(columns)))
    return sparse.csr_array(x @ pick)


def scale_max(x, maxima):
    """Divide each column of ``x`` by its maximum (columns whose maximum is <= 0 are left as they are).

    Parameters
    ----------
    x : array | scipy.sparse array, shape (n_times, n_features)
    maxima : ndarray, shape (n_features,)
        Per-feature maxima (see :func:`feature_max`), the same for every subject.

    Returns
    -------
    scaled : scipy.sparse.csr_array, shape (n_times, n_features)
    """
    safe = np.where(maxima > 0, maxima, 1.0)
    return sparse.csr_array(as_csr(x, "features") @ sparse.diags_array(1.0 / safe))

"""All-channel feature TRFs with a cluster-based permutation test over channels x lags."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .. import stats
from .._check import _check_range
from .._docs import fill_doc
from ..errors import InputError
from ..trf import shared_stimulus_trfs
from ._data import check_data, resolve_channels

#: Columns of :attr:`ClusterTable.clusters`.
CLUSTER_COLUMNS = {
    "model": "model label", "layer": "layer label", "feature": "feature id",
    "cluster": "cluster number within the feature", "sign": "+1 or -1 (sign of the summed t)",
    "mass": "sum of t over the cluster", "n_points": "channel x lag points in the cluster",
    "tmin": "first lag, s", "tmax": "last lag, s", "channels": "';'-joined channel names",
    "pval": "cluster p-value (max-mass permutation null, within the feature)",
    "pval_corrected": "Bonferroni over the features tested: min(1, pval * n_features)",
    "significant": "pval_corrected < level",
}


@dataclasses.dataclass(frozen=True)
class ClusterTable:
    """Outcome of :func:`feature_cluster_test`.

    Attributes
    ----------
    clusters : pandas.DataFrame
        One row per (feature, cluster); columns in :data:`CLUSTER_COLUMNS`.
    coef : ndarray, shape (n_subjects, n_channels, n_features, n_lags)
        Per-subject all-channel TRF weights (engine scale; each subject's laid out as ``TRF.coef_``).
    t_obs : ndarray, shape (n_features, n_lags, n_channels)
        Group t statistics.
    times : ndarray, shape (n_lags,)
    ch_names : list of str
    feature_ids : ndarray of int
    """

    clusters: pd.DataFrame
    coef: np.ndarray
    t_obs: np.ndarray
    times: np.ndarray
    ch_names: list
    feature_ids: np.ndarray

    def significant_channels(self, feature):
        """Channels in the significant clusters of ``feature`` (a set of names)."""
        rows = self.clusters[(self.clusters.feature == feature) & self.clusters.significant]
        return {c for chans in rows.channels for c in chans.split(";") if c}


@fill_doc
def feature_cluster_test(data, *, sfreq, ch_names, adjacency, columns=None, feature_ids=None,
                         tmin=0.0, tmax=0.5, alpha=1.0, n_permutations=1024, threshold=None,
                         level=0.05, model="", layer=-1, random_state=None, n_jobs=None):
    """Per-feature TRFs on every channel, then a cluster permutation test per feature.

    Each subject's TRF weights of a feature (all runs together) form a
    (lags x channels) map; the group test is MNE's one-sample spatio-temporal cluster
    test (two-sided, sign flips, channel neighbours from ``adjacency``). Within a
    feature the cluster p-values are family-wise; across features they are
    Bonferroni corrected.

    Parameters
    ----------
    data : dict of str -> list of (eeg, features)
        As in :func:`~sae_eeg.alignment.paper_protocol` (features already scaled).
    %(sfreq)s
    ch_names : list of str
        Names of the EEG columns (used in the table and for the adjacency).
    adjacency : scipy.sparse array, shape (n_channels, n_channels)
        Channel neighbours (:func:`sae_eeg.stats.channel_adjacency`).
    columns : array of int | None
        Feature columns to test (default all; keep it small: one test per feature).
    feature_ids : array of int | None
        Ids of all feature columns (default their indices).
    tmin, tmax : float
        Lag window, s.
    alpha : float
        Ridge penalty (engine scale).
    n_permutations : int
        Sign flips per feature. Default 1024.
    threshold : float | None
        Cluster-forming t threshold (default: two-sided p = 0.05).
    level : float
        Significance level. Default 0.05.
    model : str
    layer : int
        Labels in the table.
    %(random_state)s
    n_jobs : int | None
        MNE workers.

    Returns
    -------
    result : ClusterTable
    """
    _check_range("level", level, 0, 1, low_inclusive=False, high_inclusive=False)
    data = check_data(data)
    if len(data) < 2:
        raise InputError(f"The cluster test runs across subjects; got {len(data)} subject(s).")
    first = next(iter(data.values()))[0]
    _, names = resolve_channels(None, ch_names, first[0].shape[1])
    n_total = first[1].shape[1]
    ids_all = np.arange(n_total) if feature_ids is None else np.asarray(feature_ids)
    columns = np.arange(n_total) if columns is None else np.asarray(columns, dtype=int)
    picked = {id(run.features): run.features[:, columns] for runs in data.values() for run in runs}
    fits = shared_stimulus_trfs({s: [(picked[id(run.features)], run.eeg) for run in runs] for s, runs in data.items()},
                                tmin, tmax, sfreq, alpha=alpha)
    coef = np.stack([fits[s].coef_ for s in data])                    # (S, C, F, L)
    return clusters_from_coef(coef, adjacency, times=fits[next(iter(data))].times_, ch_names=names,
                              feature_ids=ids_all[columns], n_permutations=n_permutations,
                              threshold=threshold, level=level, model=model, layer=layer,
                              random_state=random_state, n_jobs=n_jobs)


@fill_doc
def clusters_from_coef(coef, adjacency, *, times, ch_names, feature_ids, n_permutations=1024,
                       threshold=None, level=0.05, model="", layer=-1, random_state=None, n_jobs=None):
    """Group stage of :func:`feature_cluster_test` from per-subject all-channel TRF weights.

    Parameters
    ----------
    coef : ndarray, shape (n_subjects, n_channels, n_features, n_lags)
        Per-subject TRF weights.
    adjacency : scipy.sparse array, shape (n_channels, n_channels)
    times : ndarray, shape (n_lags,)
        Lags in seconds.
    ch_names : list of str
    feature_ids : array of int, shape (n_features,)
    n_permutations, threshold, level, model, layer, n_jobs
        As in :func:`feature_cluster_test`.
    %(random_state)s

    Returns
    -------
    result : ClusterTable
    """
    coef = np.asarray(coef, dtype=float)
    if coef.ndim != 4 or coef.shape[0] < 2:
        raise InputError(f"coef must have shape (n_subjects >= 2, n_channels, n_features, n_lags), "
                         f"got {coef.shape}.")
    feature_ids = np.asarray(feature_ids)
    rng = np.random.default_rng(random_state)
    frames, t_obs = [], []
    for j, fid in enumerate(feature_ids):
        res = stats.cluster_test(coef[:, :, j].transpose(0, 2, 1), adjacency, threshold=threshold,
                                 n_permutations=n_permutations, random_state=rng, n_jobs=n_jobs)
        t_obs.append(res.t_obs)
        table = res.to_frame(times=times, ch_names=ch_names)
        table.insert(0, "feature", int(fid))
        frames.append(table)
    clusters = pd.concat(frames, ignore_index=True)
    clusters.insert(0, "layer", layer)
    clusters.insert(0, "model", model)
    clusters["pval_corrected"] = np.minimum(1.0, clusters["pval"].to_numpy() * len(feature_ids))
    clusters["significant"] = clusters["pval_corrected"] < level
    return ClusterTable(clusters[list(CLUSTER_COLUMNS)], coef, np.stack(t_obs), np.asarray(times),
                        list(ch_names), feature_ids)

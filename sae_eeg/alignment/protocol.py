"""The AudioSAE EEG protocol (Aparin et al., 2026), as a named analysis on plain arrays.

Steps (defaults are the paper's):

1. **Features**: keep the features that fire at least once per second on average over
   the stimuli (:func:`~sae_eeg.alignment.features.select_features`), draw a seeded
   random sample of 1000, scale each to a maximum of 1 over the stimuli.
2. **TRFs**: per subject and feature, a forward univariate TRF (that feature alone,
   lags ``tmin..tmax``, ridge ``alpha`` in the engine's convention) on one channel
   (Pz; any channel or list) — fitted separately on the development runs (the first
   ``n_dev_runs``, default 2) and on the test runs (the rest, or ``n_test_runs``).
3. **Lags** (development data only): for every feature and channel, the lag of the
   minimum and the lag of the maximum of the development TRF. With
   ``lag_selection="group"`` (default) the TRF is first averaged over subjects (one
   pair of lags per feature, shared by all subjects: the natural reading of the paper
   and the one that makes the test a group test of one latency); with ``"subject"``
   each subject's own development TRF gives that subject's lags.
4. **Test**: each subject's test-run TRF value at those lags; one-sided one-sample
   t-tests across subjects — negative at the minimum lag, positive at the maximum lag.
5. **Correction**: Holm-Bonferroni at 0.05 over all features, channels and both signs.

Development and test runs are disjoint, so choosing lags on development data does
not bias the test (no double dipping).
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd

from .. import stats
from .._check import _check_option, _check_range, _ensure_int
from .._docs import fill_doc
from ..errors import InputError
from ..trf import shared_stimulus_trfs, times_to_lags
from ._data import Run, check_data, resolve_channels
from .features import feature_max, select_features, select_scale

logger = logging.getLogger(__name__)

LAG_SELECTIONS = ("group", "subject")
SIGNS = {"negative": ("less", np.argmin), "positive": ("greater", np.argmax)}

#: Columns of :attr:`ProtocolResult.features`.
FEATURE_COLUMNS = {
    "model": "backbone / SAE label given to the analysis",
    "layer": "layer of the SAE (numbered from 1)",
    "feature": "SAE feature id (join key with the interpretability tables)",
    "channel": "EEG channel name",
    "sign": "'negative' (minimum of the TRF) or 'positive' (maximum)",
    "lag": "lag of the extremum on development data, s (NaN with lag_selection='subject')",
    "lag_samples": "the same lag in samples at sfreq",
    "dev_value": "group-mean development TRF value at that lag (engine scale)",
    "mean": "mean over subjects of the test-run TRF value at the lag",
    "t": "one-sample t statistic across subjects",
    "df": "degrees of freedom (subjects - 1)",
    "pval": "one-sided p-value (less for negative, greater for positive)",
    "pval_corrected": "Holm-Bonferroni adjusted p-value over all features, channels and signs",
    "significant": "pval_corrected < level",
}


@dataclasses.dataclass(frozen=True)
class ProtocolResult:
    """Outcome of :func:`paper_protocol`.

    Attributes
    ----------
    features : pandas.DataFrame
        One row per (model, layer, feature, channel, sign); columns in
        :data:`FEATURE_COLUMNS`.
    subjects : pandas.DataFrame
        One row per (subject, model, layer, feature, channel, sign): ``lag`` (s) and
        ``lag_samples`` used for that subject and its test-run TRF ``value``.
    summary : pandas.DataFrame
        One row per (model, layer): ``n_features`` tested, ``n_significant`` (features
        with at least one significant sign on any channel), ``fraction_significant``,
        ``n_negative``, ``n_positive`` (significant tests of each sign),
        ``median_lag_significant`` (s), ``n_subjects``, ``level``.
    coef_dev, coef_test : ndarray, shape (n_subjects, n_channels, n_features, n_lags)
        Development and test TRF weights (engine scale; each subject's laid out as ``TRF.coef_``).
    times : ndarray, shape (n_lags,)
        Lags in seconds.
    subject_ids : list of str
    feature_ids : ndarray of int, shape (n_features,)
    ch_names : list of str
    """

    features: pd.DataFrame
    subjects: pd.DataFrame
    summary: pd.DataFrame
    coef_dev: np.ndarray
    coef_test: np.ndarray
    times: np.ndarray
    subject_ids: list
    feature_ids: np.ndarray
    ch_names: list

    def trf_frame(self, split="dev"):
        """Tidy TRF weights: one row per (subject, feature, channel, lag) of ``split`` ('dev' or 'test')."""
        _check_option("split", split, ("dev", "test"))
        coef = (self.coef_dev if split == "dev" else self.coef_test).transpose(0, 2, 1, 3)   # (S, F, C, L)
        s, f, c, l_ = np.meshgrid(np.arange(coef.shape[0]), np.arange(coef.shape[1]),
                                  np.arange(coef.shape[2]), np.arange(coef.shape[3]), indexing="ij")
        return pd.DataFrame({
            "subject": np.asarray(self.subject_ids)[s.ravel()],
            "feature": self.feature_ids[f.ravel()],
            "channel": np.asarray(self.ch_names)[c.ravel()],
            "lag": self.times[l_.ravel()], "split": split, "weight": coef.ravel(),
        })


def prepare_features(data, *, sfreq, feature_ids=None, columns=None, min_rate=1.0, n_features=1000,
                     count="onsets", scale=True, random_state=None):
    """Select and scale the protocol's features in every run (step 1).

    Parameters
    ----------
    data : dict
        Validated data (see :func:`paper_protocol`).
    sfreq : float
        Sampling rate, Hz.
    feature_ids : array of int | None
        Ids of the feature columns (default ``0..F-1``).
    columns : array of int | None
        Columns to use; None selects by firing rate and samples ``n_features``.
    min_rate, n_features, count, random_state
        See :func:`~sae_eeg.alignment.features.select_features`.
    scale : bool
        Scale each feature to a maximum of 1 over all stimuli.

    Returns
    -------
    data : dict
        ``{subject: [Run(eeg, features restricted to the columns), ...]}``.
    ids : ndarray of int
        Feature ids of the kept columns.
    """
    all_feats = [Run(*r).features for runs in data.values() for r in runs]
    n_total = all_feats[0].shape[1]
    ids_all = np.arange(n_total) if feature_ids is None else np.asarray(feature_ids)
    if len(ids_all) != n_total:
        raise InputError(f"feature_ids has {len(ids_all)} ids for {n_total} feature columns.")
    if columns is None:
        columns = select_features(all_feats, sfreq=sfreq, min_rate=min_rate, n_features=n_features,
                                  count=count, random_state=random_state)
    columns = np.asarray(columns, dtype=int)
    if columns.size == 0:
        raise InputError(f"No feature fires at least {min_rate} times per second; lower min_rate.")
    # each distinct stimulus matrix is restricted and scaled once; subjects keep sharing it
    distinct = {id(f): f for f in all_feats}
    maxima = feature_max(list(distinct.values()))[columns] if scale else None
    picked = {k: select_scale(f, columns, maxima) for k, f in distinct.items()}
    picked = {s: [Run(eeg, picked[id(f)]) for eeg, f in runs] for s, runs in data.items()}
    return picked, ids_all[columns]


def split_runs(runs, n_dev_runs, n_test_runs, subject):
    """Development and test runs of one subject (the first ``n_dev_runs`` are development)."""
    n_test = len(runs) - n_dev_runs if n_test_runs is None else n_test_runs
    if n_dev_runs + n_test > len(runs) or n_test < 1:
        raise InputError(f"Subject {subject!r} has {len(runs)} runs; the protocol needs "
                         f"n_dev_runs={n_dev_runs} + n_test_runs={n_test} (at least 1 test run).")
    return runs[:n_dev_runs], runs[n_dev_runs:n_dev_runs + n_test]


@fill_doc
def paper_protocol(data, *, sfreq, ch_names=None, channels="Pz", tmin=0.0, tmax=0.5, alpha=1.0,
                   n_dev_runs=2, n_test_runs=None, feature_ids=None, columns=None, min_rate=1.0,
                   n_features=1000, count="onsets", scale=True, lag_selection="group",
                   correction="holm", level=0.05, model="", layer=-1, random_state=None,
                   verbose=False):
    """Run the AudioSAE EEG protocol (see the module notes for every step).

    Parameters
    ----------
    data : dict of str -> list of (eeg, features)
        Per subject its runs in order, each ``eeg`` (n_times, n_channels) already
        preprocessed (paper: 1-8 Hz, median/IQR scaled) and ``features``
        (n_times, n_features) sparse or dense, both at ``sfreq``.
    %(sfreq)s
    ch_names : list of str | None
        Names of the EEG columns (needed to pick channels by name).
    channels : str | int | list
        Channel(s) analysed. Default ``"Pz"``.
    tmin, tmax : float
        Lag window, s. Default 0-0.5 s.
    alpha : float
        Ridge penalty of every TRF (engine scale: ``alpha = lambda_mTRF * sfreq``).
    n_dev_runs : int
        Development runs (the first ones). Default 2.
    n_test_runs : int | None
        Test runs following them (default: all the rest).
    feature_ids : array of int | None
        Ids of the feature columns (default their indices).
    columns : array of int | None
        Feature columns to analyse; None applies the paper's selection.
    min_rate, n_features, count : see :func:`~sae_eeg.alignment.features.select_features`
    scale : bool
        Scale each feature to a maximum of 1. Default True.
    lag_selection : str
        ``"group"`` (default) or ``"subject"`` (module notes, step 3).
    correction : str
        ``"holm"`` (default), ``"fdr_bh"``, ``"bonferroni"`` or ``"none"``.
    level : float
        Significance level. Default 0.05.
    model : str
        Label of the model in the tables (e.g. ``"whisper-tiny.en"``).
    layer : int
        Layer label in the tables (-1 when unknown).
    %(random_state)s
    %(verbose)s

    Returns
    -------
    result : ProtocolResult

    Raises
    ------
    InputError
        Malformed data, too few runs or subjects, unknown channels or options.
    """
    _check_option("lag_selection", lag_selection, LAG_SELECTIONS)
    _check_option("correction", correction, stats.CORRECTIONS)
    n_dev_runs = _ensure_int(n_dev_runs, "n_dev_runs")
    _check_range("n_dev_runs", n_dev_runs, 1)
    _check_range("alpha", alpha, 0, low_inclusive=False)
    data = check_data(data, min_runs=n_dev_runs + 1)
    if len(data) < 2:
        raise InputError(f"The protocol tests across subjects; got {len(data)} subject(s), need >= 2.")
    n_ch_total = next(iter(data.values()))[0][0].shape[1]
    ch_idx, ch_used = resolve_channels(channels, ch_names, n_ch_total)
    data, ids = prepare_features(data, sfreq=sfreq, feature_ids=feature_ids, columns=columns,
                                 min_rate=min_rate, n_features=n_features, count=count, scale=scale,
                                 random_state=random_state)
    lags = times_to_lags(tmin, tmax, sfreq)
    coef_dev, coef_test = univariate_dev_test(data, tmin, tmax, sfreq, alpha, ch_idx, n_dev_runs, n_test_runs,
                                              verbose=verbose)
    return protocol_group(coef_dev, coef_test, lags=lags, sfreq=sfreq, subject_ids=list(data),
                          feature_ids=ids, ch_names=ch_used, lag_selection=lag_selection,
                          correction=correction, level=level, model=model, layer=layer)


def protocol_group(coef_dev, coef_test, *, lags, sfreq, subject_ids, feature_ids, ch_names,
                   lag_selection="group", correction="holm", level=0.05, model="", layer=-1):
    """Group stage of the protocol (steps 3-5) from per-subject TRF weights.

    Parameters
    ----------
    coef_dev, coef_test : ndarray, shape (n_subjects, n_channels, n_features, n_lags)
        Development and test TRF weights of every subject.
    lags : ndarray of int, shape (n_lags,)
        Lags in samples.
    sfreq : float
        Sampling rate, Hz.
    subject_ids : list of str
    feature_ids : ndarray of int, shape (n_features,)
    ch_names : list of str, length n_channels
    lag_selection, correction, level, model, layer
        As in :func:`paper_protocol`.

    Returns
    -------
    result : ProtocolResult
    """
    _check_option("lag_selection", lag_selection, LAG_SELECTIONS)
    coef_dev, coef_test = np.asarray(coef_dev, dtype=float), np.asarray(coef_test, dtype=float)
    if coef_dev.shape != coef_test.shape or coef_dev.ndim != 4:
        raise InputError(f"coef_dev and coef_test must both have shape (n_subjects, n_channels, "
                         f"n_features, n_lags); got {coef_dev.shape} and {coef_test.shape}.")
    lags = np.asarray(lags)
    ids = np.asarray(feature_ids)
    features, per_subject = _test_extrema(coef_dev.transpose(0, 2, 1, 3), coef_test.transpose(0, 2, 1, 3),
                                          lags, sfreq, lag_selection)
    pcorr = stats.correct_pvalues(np.stack([features[s]["pval"] for s in SIGNS]),
                                  method=correction, alpha=level)
    rows = _feature_rows(features, pcorr, ids, list(ch_names), model, layer, level)
    subj_rows = _subject_rows(per_subject, list(subject_ids), ids, list(ch_names), lags, sfreq, model,
                              layer)
    table = rows[list(FEATURE_COLUMNS)]
    summary = summarize(table, n_subjects=len(subject_ids), level=level)
    return ProtocolResult(table, subj_rows, summary, coef_dev, coef_test, lags / sfreq,
                          list(subject_ids), ids, list(ch_names))


def univariate_dev_test(data, tmin, tmax, sfreq, alpha, ch_idx, n_dev_runs, n_test_runs, *, verbose=False):
    """Development and test single-feature TRF weights of every subject, (S, C, F, L) each.

    Each split is one :func:`sae_eeg.trf.shared_stimulus_trfs` call: a stimulus's statistics are
    computed once for all its listeners, and subjects who heard the same runs share one solve.
    """
    splits = {"dev": {}, "test": {}}
    for subject, runs in data.items():
        runs = [(run.features, run.eeg[:, ch_idx]) for run in (Run(*r) for r in runs)]
        splits["dev"][subject], splits["test"][subject] = split_runs(runs, n_dev_runs, n_test_runs, subject)
    out = []
    for name, groups in splits.items():
        fits = shared_stimulus_trfs(groups, tmin, tmax, sfreq, alpha=alpha)
        out.append(np.stack([fits[s].coef_ for s in data]))
        if verbose:
            logger.info("protocol: %s TRFs of %d subjects fitted", name, len(data))
    return out[0], out[1]


def _test_extrema(coef_dev, coef_test, lags, sfreq, lag_selection):
    """t-tests at the development extrema; per sign a dict of (F, C) arrays and subject values."""
    out, per_subject = {}, {}
    group_dev = coef_dev.mean(axis=0)                                 # (F, C, L)
    for sign, (alternative, arg) in SIGNS.items():
        if lag_selection == "group":
            idx_FC = arg(group_dev, axis=-1)
            idx_SFC = np.broadcast_to(idx_FC, coef_test.shape[:-1])
        else:
            idx_SFC = arg(coef_dev, axis=-1)
            idx_FC = None
        values = np.take_along_axis(coef_test, idx_SFC[..., None], axis=-1)[..., 0]  # (S, F, C)
        res = stats.one_sample_ttest(values, alternative=alternative)
        dev_value = (np.take_along_axis(group_dev, idx_FC[..., None], axis=-1)[..., 0]
                     if idx_FC is not None else np.full(res.t.shape, np.nan))
        lag_FC = lags[idx_FC] if idx_FC is not None else np.full(res.t.shape, np.nan)
        out[sign] = {"t": res.t, "pval": res.pvals, "mean": res.mean, "df": res.df,
                     "lag_samples": lag_FC, "lag": lag_FC / sfreq, "dev_value": dev_value}
        per_subject[sign] = (idx_SFC, values)
    return out, per_subject


def _feature_rows(features, pcorr, ids, ch_names, model, layer, level):
    frames = []
    for k, (sign, res) in enumerate(features.items()):
        f, c = np.meshgrid(np.arange(res["t"].shape[0]), np.arange(res["t"].shape[1]), indexing="ij")
        frames.append(pd.DataFrame({
            "model": model, "layer": layer, "feature": ids[f.ravel()],
            "channel": np.asarray(ch_names)[c.ravel()], "sign": sign,
            **{key: np.ravel(res[key]).astype(float)
               for key in ("lag", "lag_samples", "dev_value", "mean", "t", "pval")},
            "df": int(res["df"]), "pval_corrected": pcorr.pvals[k].ravel(),
            "significant": pcorr.pvals[k].ravel() < level,
        }))
    return pd.concat(frames, ignore_index=True)


def _subject_rows(per_subject, subjects, ids, ch_names, lags, sfreq, model, layer):
    frames = []
    for sign, (idx_SFC, values) in per_subject.items():
        s, f, c = np.meshgrid(np.arange(values.shape[0]), np.arange(values.shape[1]),
                              np.arange(values.shape[2]), indexing="ij")
        lag_samples = lags[idx_SFC]
        frames.append(pd.DataFrame({
            "subject": np.asarray(subjects)[s.ravel()], "model": model, "layer": layer,
            "feature": ids[f.ravel()], "channel": np.asarray(ch_names)[c.ravel()], "sign": sign,
            "lag": lag_samples.ravel() / sfreq, "lag_samples": lag_samples.ravel(),
            "value": values.ravel(),
        }))
    return pd.concat(frames, ignore_index=True)


def summarize(table, *, n_subjects, level):
    """Per (model, layer): number and fraction of significant features, signs and lags.

    Parameters
    ----------
    table : pandas.DataFrame
        :attr:`ProtocolResult.features` (possibly several models/layers concatenated).
    n_subjects : int
    level : float

    Returns
    -------
    summary : pandas.DataFrame
    """
    rows = []
    for (model, layer), g in table.groupby(["model", "layer"], sort=True):
        sig = g[g["significant"]]
        rows.append({
            "model": model, "layer": layer, "n_features": g["feature"].nunique(),
            "n_significant": sig["feature"].nunique(),
            "fraction_significant": sig["feature"].nunique() / g["feature"].nunique(),
            "n_negative": int((sig["sign"] == "negative").sum()),
            "n_positive": int((sig["sign"] == "positive").sum()),
            "median_lag_significant": float(sig["lag"].median()) if len(sig) else np.nan,
            "n_subjects": n_subjects, "level": level,
        })
    return pd.DataFrame(rows)

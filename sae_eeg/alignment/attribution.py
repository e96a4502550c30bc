"""Which SAE features the brain tracks beyond the acoustics and beyond each other.

The paper protocol (:mod:`~sae_eeg.alignment.protocol`) tests each feature alone: a
feature that fires with a tracked one, a feature of another layer that encodes the
same sounds, or one that follows the envelope, predicts every subject's EEG too
(every subject hears the same stimuli, so replication across subjects does not
remove them), and 30-40 % of a layer passes. The question a lab asks is
*conditional*: does a feature carry EEG-predictive information that neither the
acoustic baselines nor the other candidate features explain? Only conditioning on
those answers it, and the answer must come with error control that holds among
correlated features. :func:`attribute_features` answers it in three steps, with
sample splitting between selection and test (Wasserman & Roeder 2009, *Ann. Stat.*
37:2178; Meinshausen, Meier & Bühlmann 2009, *JASA* 104:1671): the selection sees
only the development stimuli, the test only the held-out responses to the others.

1. **Spatial filters (development stimuli).** Denoising source separation (Särelä &
   Valpola 2005, *JMLR* 6:233) with the subject average as bias (de Cheveigné &
   Simon 2008, *J. Neurosci. Methods* 171:331; de Cheveigné & Parra 2014,
   *NeuroImage* 98:487; ``eelbrain.dss`` does the same over trials): the components whose
   subject-average power is largest relative to the single-subject power, i.e. the
   stimulus-locked activity that all subjects share. They concentrate the responses
   on a few outputs (blinks, alpha and bad channels drop out) for both later steps.

2. **Screening (development stimuli): greedy conditional selection.** On the
   grand-average development EEG (the subjects' average response to the same stimuli,
   sqrt(n_subjects) less noise than one subject) in the components, the acoustic
   baselines are fitted first (ridge TRF); then, as in orthogonal matching pursuit
   with groups of lags (boosting in Eelbrain, Brodbeck et al. 2023, *eLife*
   12:e85012, also adds one predictor's lags at a time), the feature whose
   single-feature TRF best predicts the *residual* in cross-validation over
   development stimuli is added, all predictors are refitted, and so on, while the
   best score beats zero and the best score any feature reaches on time-reversed
   copies of the residual (a null that keeps the residual's spectrum), up to
   ``max_candidates``. Conditioning at
   every step makes a feature that co-fires with a selected one, or encodes the same
   sounds in another layer, or follows the envelope, lose its score once the feature
   or baseline it borrows from is in the model. Features whose trajectories
   correlate at ``|r| >= group_threshold`` with a selected one are not told apart by
   the data: they join its group and are not selected separately. Give all the
   analysed layers together: a layer-2 feature that encodes the same sounds as a
   tracked layer-3 feature is only explained away if that feature is a candidate.

3. **Test (held-out stimuli): unique contribution, across subjects.** For every
   subject, a joint TRF of the acoustic baselines and all candidates is fitted on all
   other stimuli and scored (Pearson r, each component) on one held-out test stimulus
   at a time; the ridge penalty is chosen by an inner cross-validation on the
   training stimuli only. Each candidate group's unique contribution is the drop in
   held-out r when its lags are removed from the model (the drop-one comparison of
   nested TRF models of Di Liberto et al. 2015, *Curr. Biol.* 25:2457; Broderick et
   al. 2018, *Curr. Biol.* 28:803; Brodbeck et al. 2018, *Curr. Biol.* 28:3976), one
   value per subject; a one-sided one-sample t-test across subjects and Holm's
   correction over the candidate groups decide (family-wise error rate at
   ``level``). Under the null hypothesis that a group adds nothing given the other
   predictors, its weights are fitted to noise independent of the held-out response,
   so the expected drop is at most zero whatever the selection did.

The EEG was band-passed (zero-phase) in preprocessing; a TRF of unfiltered
predictors cannot reproduce the filter's long high-pass tail inside its lag window,
and the part it misses is the same in every subject (shared stimuli), so any feature
that correlates with it would gain held-out r in all of them. The predictors are
therefore filtered with the same band-pass (``band``), which makes the TRF model of
a filtered response exact (filtering commutes with convolution), and, because
nothing above the band remains, the selection and the test run at a rate of about
four times the upper band edge (``decimate``; 32 Hz for 1-8 Hz EEG at 128 Hz), with
the same lag window. The TRFs reported for the final model are fitted at the full
rate. Filtered predictors are not zero just outside their stimulus, so every fit and
score uses only the samples whose lagged inputs all lie inside the run (``'valid'``
edges: the first ``tmax`` and last ``-tmin`` seconds of a run are not scored).

Why not the alternatives of the issue: stability selection (Meinshausen & Bühlmann
2010, *JRSS-B* 72:417; Shah & Samworth 2013, *JRSS-B* 75:55) bounds the expected
number of false selections under exchangeability assumptions that co-firing features
violate, and needs ~100 subsampled sparse fits; model-X knockoffs (Candès et al.
2018, *JRSS-B* 80:551) need a model of the joint distribution of sparse, bursty,
autocorrelated feature trajectories to build knockoffs from, which the SAE does not
give. Both would also treat the stimulus samples as exchangeable observations, while
the replication unit that carries the evidence is the subject.

Every step is deterministic (no random draw), and the linear algebra runs on one
BLAS thread (threaded LAPACK factorisations round differently with the number of
threads), so the tables are identical on any machine setting.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import numpy as np
import pandas as pd
import scipy.linalg
from threadpoolctl import threadpool_limits

from .. import stats
from .._check import _check_option, _check_range, _ensure_int, _validate_type
from .._docs import fill_doc
from ..errors import InputError
from ..trf import TRF, AlphaAtGridEdgeWarning, times_to_lags, univariate_trfs
from ..trf.lags import coef_from_weights
from ._lagged_ridge import (
    ALPHAS,
    check_alphas,
    cv_alpha,
    heldout_pearson,
    no_predictor_pearson,
    ridge_weights,
    stimulus_stats,
    subject_stats,
)
from ._stimuli import (
    band_filter,
    check_acoustic,
    check_band,
    check_feature_info,
    check_features,
    check_runs,
    decimation,
    feature_scale,
    filtered_dense,
    scale_columns,
    rms_scale,
)

logger = logging.getLogger(__name__)

#: Columns of :attr:`AttributionResult.features` (one row per candidate group).
ATTRIBUTION_COLUMNS = {
    "model": "backbone / SAE label given to the analysis",
    "layer": "layer of the representative feature",
    "feature": "representative feature id (join key with the protocol and interpretability tables)",
    "group": "candidate group number (0 = selected first)",
    "n_members": "features in the group (the representative and those correlating with it at "
                 ">= group_threshold)",
    "dev_score": "screening score: cross-validated r^2 gain on the development stimuli when selected",
    "delta_r": "mean over subjects of the drop in held-out r when the group is removed",
    "delta_r_sd": "standard deviation of that drop over subjects",
    "effect_size": "delta_r / delta_r_sd (Cohen's d_z)",
    "t": "one-sample t statistic across subjects",
    "df": "degrees of freedom (subjects - 1)",
    "pval": "one-sided p-value (drop > 0)",
    "pval_corrected": "p-value corrected over all candidate groups (Holm by default)",
    "significant": "pval_corrected < level: the group is tracked beyond the baseline and the other candidates",
    "peak_lag": "lag of the largest absolute group-mean TRF weight (all stimuli, all channels), s",
    "peak_channel": "channel of that weight",
    "peak_weight": "that weight (EEG units per unit RMS of the feature)",
    "peak_channels": "channel cluster: channels whose weight at the peak lag has the peak's sign and at least "
                     "half its size, joined with ','",
    "members": "the other features of the group ('L<layer>:<feature>', joined with ','; empty: none)",
    "baseline": "acoustic spaces in every model, joined with '+'",
    "n_subjects": "subjects with held-out stimuli",
}

#: Columns of :attr:`AttributionResult.members`.
MEMBER_COLUMNS = {
    "model": "backbone / SAE label",
    "group": "candidate group number",
    "layer": "layer of the feature",
    "feature": "feature id",
    "representative": "whether the feature is the one selected (and in the model)",
    "r": "|r| of the feature's trajectory with the representative's, over all stimuli",
}


@dataclasses.dataclass(frozen=True)
class AttributionResult:
    """Outcome of :func:`attribute_features`.

    Attributes
    ----------
    features : pandas.DataFrame
        One row per candidate group, in screening order; columns in
        :data:`ATTRIBUTION_COLUMNS`.
    members : pandas.DataFrame
        Every feature of every group; columns in :data:`MEMBER_COLUMNS`.
    subjects : pandas.DataFrame
        One row per (subject, group): ``delta_r``, ``r_full`` and ``r_reduced``
        (held-out r, mean over components and test stimuli).
    acoustic : pandas.DataFrame
        Unique contribution of each acoustic space (drop in held-out r when the space
        is removed, beyond every candidate): ``space``, ``delta_r``, ``t``, ``pval``
        (uncorrected, descriptive).
    trfs : pandas.DataFrame
        Group-mean TRF of every predictor of the final model over all channels:
        ``predictor`` ("L<layer>:<feature>" or "<space>[<column>]"), ``layer``,
        ``feature`` (-1 for acoustic columns), ``channel``, ``lag`` (s), ``weight``
        (EEG units per unit of the standardised predictor).
    summary : pandas.DataFrame
        Per layer: ``n_features`` in the pool, ``n_candidates`` (groups tested),
        ``n_tracked`` (significant groups), ``level``.
    spatial_filters : ndarray, shape (n_channels, n_components)
        The DSS filters (development stimuli).
    component_power : ndarray, shape (n_components,)
        Subject-average over single-subject power of each component (1 for a
        response identical in all subjects, about 1 / n_subjects for noise).
    alphas : ndarray, shape (n_test_stimuli,)
        Per-sample ridge penalty chosen in each test fold.
    trf_alpha : float
        Per-sample ridge penalty of the full-rate TRFs in :attr:`trfs`.
    dev_stimuli, test_stimuli : list of str
    times : ndarray, shape (n_lags,)
        Lags of the TRFs, s.
    """

    features: pd.DataFrame
    members: pd.DataFrame
    subjects: pd.DataFrame
    acoustic: pd.DataFrame
    trfs: pd.DataFrame
    summary: pd.DataFrame
    spatial_filters: np.ndarray
    component_power: np.ndarray
    alphas: np.ndarray
    trf_alpha: float
    dev_stimuli: list
    test_stimuli: list
    times: np.ndarray

    @property
    def tracked(self):
        """The significant groups (rows of :attr:`features`)."""
        return self.features.loc[self.features.significant.to_numpy(dtype=bool)].reset_index(drop=True)


@fill_doc
def attribute_features(runs, features, acoustic=None, *, sfreq, ch_names=None, feature_info=None,
                       dev_stimuli=None, n_dev_stimuli=2, band=(1.0, 8.0), decimate=True, tmin=-0.1,
                       tmax=0.5, n_components=4, max_candidates=20, group_threshold=0.8,
                       alphas=ALPHAS, level=0.05, correction="holm", model="", verbose=False):
    """Attribute EEG responses to SAE features beyond the acoustics and beyond each other.

    See the module notes for the method and why it was chosen.

    Parameters
    ----------
    runs : dict of str -> list of (str, ndarray)
        Per subject its runs: (stimulus name, preprocessed EEG (n_times, n_channels)).
    features : dict of str -> array or scipy.sparse array, shape (n_times, n_features)
        Per stimulus the candidate features, e.g. the selected SAE features of one layer
        or of several layers side by side (``feature_info`` says which); any scale.
    acoustic : dict of str -> dict of str -> array | None
        Per stimulus the acoustic baselines, ``{space: (n_times[, n_columns])}``
        (e.g. ``"envelope"``, ``"onsets"``, ``"mel"``); in every model.
    %(sfreq)s
    ch_names : list of str | None
        EEG channel names (for the TRF table).
    feature_info : pandas.DataFrame | None
        ``layer`` and ``feature`` of each feature column (default layer -1 and the
        column index).
    dev_stimuli : list of str | None
        Development stimuli (spatial filters and screening); default the first
        ``n_dev_stimuli`` stimuli in playing order. The others are the test stimuli.
    n_dev_stimuli : int
        Default 2 (the protocol's development runs).
    band : (float | None, float | None) | None
        The band-pass (l_freq, h_freq) in Hz the EEG went through in preprocessing
        (default 1-8 Hz, the package's preprocessing); the predictors get the same
        zero-phase FIR (MNE's default design). None: the EEG was not filtered.
    decimate : bool
        Run the selection and the test at about four times ``h_freq`` (module notes).
        Default True; no effect without a low-pass.
    tmin, tmax : float
        Lag window of every TRF, s. Default -0.1 to 0.5 s.
    n_components : int
        DSS components analysed. Default 4.
    max_candidates : int
        Most candidate groups selected. Default 20.
    group_threshold : float
        ``|r|`` of trajectories above which features are one group. Default 0.8.
    alphas : sequence of float
        Per-sample ridge penalties compared by cross-validation (see Notes).
    level : float
        Family-wise error level over the candidate groups. Default 0.05.
    correction : str
        ``"holm"`` (default), ``"bonferroni"``, ``"fdr_bh"`` or ``"none"``.
    model : str
        Label of the model in the tables.
    %(verbose)s

    Returns
    -------
    result : AttributionResult

    Raises
    ------
    InputError
        Malformed inputs, fewer than 2 development stimuli, no test stimulus, fewer
        than 2 subjects with test stimuli, or bad options.

    Notes
    -----
    Every predictor is zero outside its stimulus (as for zero-padded TRFs): give
    acoustic series whose silence is zero (e.g. a log-mel spectrogram minus its
    floor). Predictors are scaled to unit root mean square over all stimuli (not
    centred, see :func:`~sae_eeg.alignment._stimuli.rms_scale`), so a per-sample penalty
    ``alpha`` is ``alpha * n_samples`` in the engine's convention
    (:class:`sae_eeg.trf.TRF`). Runs of the same stimulus must have equal lengths
    (subjects share the stimulus' statistics). A subject may miss stimuli.
    """
    _check_range("level", level, 0, 1, low_inclusive=False, high_inclusive=False)
    _check_option("correction", correction, stats.CORRECTIONS)
    _check_range("group_threshold", group_threshold, 0, 1, low_inclusive=False)
    n_components = _check_range("n_components", _ensure_int(n_components, "n_components"), 1)
    max_candidates = _check_range("max_candidates", _ensure_int(max_candidates, "max_candidates"), 1)
    _validate_type(decimate, bool, "decimate")
    alphas = check_alphas(alphas)
    sfreq = float(_check_range("sfreq", sfreq, 0, None, low_inclusive=False))
    band = check_band(band, sfreq)
    data = check_runs(runs, ch_names=ch_names)
    feats = check_features(features, data)
    info = check_feature_info(feature_info, next(iter(feats.values())).shape[1])
    acoustic_design, acoustic_columns = check_acoustic(acoustic if acoustic is not None else
                                                       {s: {} for s in data.stimuli}, data)
    dev, test = _split_stimuli(data, dev_stimuli, n_dev_stimuli)
    if n_components > len(data.ch_names):
        raise InputError(f"n_components={n_components} exceeds the {len(data.ch_names)} EEG channels.")
    # the screening's penalties are chosen per feature and null copy: many sit at an edge of the grid by design
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():   # one BLAS thread: identical
        warnings.simplefilter("ignore", AlphaAtGridEdgeWarning)                     # results for any thread count
        return _attribute(data, feats, info, acoustic_design, acoustic_columns, dev, test, sfreq=sfreq, band=band,
                          decimate=decimate, tmin=tmin, tmax=tmax, n_components=n_components,
                          max_candidates=max_candidates, group_threshold=group_threshold, alphas=alphas,
                          level=level, correction=correction, model=model, verbose=verbose)


def _attribute(data, feats, info, acoustic_design, acoustic_columns, dev, test, *, sfreq, band, decimate, tmin,
               tmax, n_components, max_candidates, group_threshold, alphas, level, correction, model, verbose):
    """The three steps of the module notes on validated inputs."""
    step = decimation(sfreq, band) if decimate else 1
    acoustic_std = {s: band_filter(a, sfreq, band) for s, a in rms_scale(acoustic_design).items()}
    feats_std = {s: scale_columns(x, 1.0 / feature_scale(feats)) for s, x in feats.items()}
    filters, power = dss_filters(data, dev, n_components)
    comps = {sub: {stim: (eeg @ filters)[::step] for stim, eeg in runs_.items()} for sub, runs_ in data.eeg.items()}
    if verbose:
        logger.info("attribution: %d DSS components (subject-average power %s), rate %.4g Hz",
                    n_components, np.round(power, 3), sfreq / step)
    pool_dev = [filtered_dense(feats_std[stim], sfreq, band, step) for stim in dev]
    selection = _screen(data, comps, dev, pool_dev, feats_std, {s: a[::step] for s, a in acoustic_std.items()},
                        sfreq=sfreq / step, tmin=tmin, tmax=tmax, alphas=alphas, max_candidates=max_candidates,
                        group_threshold=group_threshold, verbose=verbose)
    del pool_dev
    spaces = list(dict.fromkeys(space for space, _ in acoustic_columns))
    models = _nested_models(len(acoustic_columns), len(selection.selected), acoustic_columns, spaces)
    design = {s: np.hstack([acoustic_std[s], filtered_dense(feats_std[s][:, selection.selected], sfreq, band)])
              for s in data.stimuli}
    held_out, fold_alphas = _test_stage(data, comps, {s: d[::step] for s, d in design.items()}, test,
                                        times_to_lags(tmin, tmax, sfreq / step), alphas, models, verbose=verbose)
    return _tables(data, info, selection, held_out, fold_alphas, models, design, times_to_lags(tmin, tmax, sfreq),
                   alphas, sfreq, spaces, acoustic_columns, filters, power, dev, test, level=level,
                   correction=correction, model=model)


def _split_stimuli(data, dev_stimuli, n_dev_stimuli):
    if dev_stimuli is None:
        n_dev = _ensure_int(n_dev_stimuli, "n_dev_stimuli")
        dev = data.stimuli[:n_dev]
    else:
        _validate_type(dev_stimuli, (list, tuple), "dev_stimuli")
        for s in dev_stimuli:
            _check_option("dev_stimuli", s, data.stimuli)
        dev = list(dict.fromkeys(dev_stimuli))
    test = [s for s in data.stimuli if s not in dev]
    if len(dev) < 2 or not test:
        raise InputError(f"The attribution needs at least 2 development stimuli (screening is "
                         f"cross-validated over them) and 1 test stimulus; got {len(dev)} development "
                         f"stimuli {dev} and {len(test)} test stimuli out of {data.stimuli}.")
    return dev, test


def dss_filters(data, stimuli, n_components, *, shrink=1e-3):
    """Spatial filters that maximise the subject-average power relative to single-subject power.

    Denoising source separation with the average over subjects as bias (de Cheveigné
    & Simon 2008): the generalised eigenvectors of ``C_avg v = lambda C_ind v``, where
    ``C_avg`` is the covariance of the subject-average EEG of each stimulus and
    ``C_ind`` the mean single-subject covariance (shrunk by ``shrink`` times its mean
    variance, for the rank lost to the average reference and interpolated channels).

    Parameters
    ----------
    data : StimulusRuns
    stimuli : list of str
        Stimuli whose runs are used.
    n_components : int
    shrink : float

    Returns
    -------
    filters : ndarray, shape (n_channels, n_components)
        Columns scaled to unit single-subject variance; sign such that the largest
        loading is positive.
    power : ndarray, shape (n_components,)
        ``lambda`` of each filter, in decreasing order.

    Raises
    ------
    InputError
        Fewer than 2 subjects on every stimulus.
    """
    n_ch = len(data.ch_names)
    c_ind, c_avg, n_ind, n_avg = np.zeros((n_ch, n_ch)), np.zeros((n_ch, n_ch)), 0, 0
    for stim in stimuli:
        subjects = data.heard(stim)
        if len(subjects) < 2:
            continue
        runs = [data.eeg[s][stim] - data.eeg[s][stim].mean(axis=0) for s in subjects]
        for eeg in runs:
            c_ind += eeg.T @ eeg
            n_ind += len(eeg)
        avg = np.mean(runs, axis=0)
        c_avg += avg.T @ avg
        n_avg += len(avg)
    if n_avg == 0:
        raise InputError(f"Spatial filters need at least 2 subjects who heard the same development "
                         f"stimulus; stimuli {stimuli} have fewer.")
    c_ind, c_avg = c_ind / n_ind, c_avg / n_avg
    c_ind[np.diag_indices(n_ch)] += shrink * np.trace(c_ind) / n_ch
    power, vectors = scipy.linalg.eigh(c_avg, c_ind)
    order = np.argsort(power)[::-1][:n_components]
    filters = vectors[:, order]
    filters *= np.sign(filters[np.argmax(np.abs(filters), axis=0), np.arange(filters.shape[1])])
    return filters, power[order]


@dataclasses.dataclass(frozen=True)
class _Selection:
    selected: list        # pool columns of the representatives, in selection order
    scores: list          # their screening scores
    members: list         # per group: (columns, |r| with the representative)


def _residuals(designs, outputs, *, sfreq, tmin, tmax, alphas, n_train):
    """Outputs minus a ridge TRF of the designs (alpha by cross-validation over stimuli, 'valid' edges)."""
    if designs[0].shape[1] == 0:
        return [y - np.mean(np.vstack(outputs), axis=0) for y in outputs]
    trf = TRF(tmin, tmax, sfreq, alpha=list(alphas * n_train), edge="valid").fit(designs, outputs)
    return [y - p for y, p in zip(outputs, trf.predict(designs))]   # edge rows: ignored by 'valid' fits


def abs_correlations(feats, columns):
    """|Pearson r| over all stimuli between feature columns ``columns`` and every column, (len, F)."""
    n = sum(x.shape[0] for x in feats.values())
    total = sum(np.asarray(x.sum(axis=0)).ravel() for x in feats.values())
    square = sum(np.asarray(x.multiply(x).sum(axis=0)).ravel() for x in feats.values())
    cross = sum((x.T @ x[:, columns].toarray()).T for x in feats.values())        # (len, F)
    mean = total / n
    sd = np.sqrt(np.maximum(square / n - mean**2, 0.0))
    cov = cross / n - np.outer(mean[columns], mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.abs(cov / np.outer(sd[columns], sd))
    return np.nan_to_num(r)


def _null_copies(residual, lags, n_null):
    """Residuals (each stimulus, its valid rows) time-reversed and circularly shifted: a null for the scores.

    Reversal keeps a residual's spectrum but breaks its alignment with every feature;
    copy ``k`` is also shifted by ``k / n_null`` of the stimulus. Rows outside the
    valid range (not used by the fits) are zero.
    """
    out = []
    for y in residual:
        start, stop = max(0, int(lags[-1])), len(y) + min(0, int(lags[0]))
        valid = y[start:stop][::-1]
        copies = [np.roll(valid, k * len(valid) // n_null, axis=0) for k in range(n_null)]
        full = np.zeros((len(y), y.shape[1] * (n_null + 1)))
        full[start:stop] = np.hstack([y[start:stop]] + copies)
        out.append(full)
    return out


def _screen(data, comps, dev, pool_dev, feats_std, acoustic_dev, *, sfreq, tmin, tmax, alphas,
            max_candidates, group_threshold, n_null=3, verbose=False):
    """Greedy conditional selection on the grand-average development EEG (module notes, step 2).

    ``pool_dev`` holds the filtered (and decimated) features of each development
    stimulus, at ``sfreq``; groups are formed on the unfiltered ``feats_std``. A step
    adds the feature of best cross-validated score on the current residual if that
    score is positive and above the best score of any feature on each of ``n_null``
    time-reversed copies of the residual (a pure-noise step goes on with probability
    about ``1 / (n_null + 1)``).
    """
    grand = [np.mean([comps[s][stim] for s in data.heard(stim)], axis=0) for stim in dev]
    n_comp = grand[0].shape[1]
    n_train = np.mean([len(g) for g in grand]) * (len(dev) - 1)
    cv = min(len(dev), 5)
    lags = times_to_lags(tmin, tmax, sfreq)
    base = [acoustic_dev[stim] for stim in dev]
    selected, selected_scores, members = [], [], []
    open_ = np.arange(pool_dev[0].shape[1])
    while len(selected) < max_candidates and len(open_):
        designs = [np.hstack([b, x[:, selected]]) for b, x in zip(base, pool_dev)]
        residual = _residuals(designs, grand, sfreq=sfreq, tmin=tmin, tmax=tmax, alphas=alphas,
                              n_train=n_train)
        fit = univariate_trfs([x[:, open_] for x in pool_dev], _null_copies(residual, lags, n_null), tmin,
                              tmax, sfreq, alpha=list(alphas * n_train), cv=cv, scoring="r2", edge="valid",
                              alpha_per_output=True)
        scores = fit.scores_.T.reshape(len(open_), n_null + 1, n_comp).mean(axis=2)    # (F, 1 + n_null)
        best = int(np.argmax(scores[:, 0]))
        null_best = scores[:, 1:].max()
        if not scores[best, 0] > max(null_best, 0.0):
            break
        column = int(open_[best])
        r = abs_correlations(feats_std, [column])[0]
        group = np.flatnonzero(r >= group_threshold)
        group = np.concatenate([[column], group[group != column]])
        selected.append(column)
        selected_scores.append(float(scores[best, 0]))
        members.append((group, r[group]))
        open_ = np.setdiff1d(open_, group)
        if verbose:
            logger.info("attribution: candidate %d = column %d (score %.4g, null %.4g, %d in its group)",
                        len(selected), column, scores[best, 0], null_best, len(group))
    return _Selection(selected, selected_scores, members)


@dataclasses.dataclass(frozen=True)
class _Model:
    name: tuple          # ("full",), ("group", g) or ("space", name)
    predictors: np.ndarray


def _nested_models(n_acoustic, n_groups, acoustic_columns, spaces):
    everything = np.arange(n_acoustic + n_groups)
    models = [_Model(("full",), everything)]
    models += [_Model(("group", g), np.delete(everything, n_acoustic + g)) for g in range(n_groups)]
    for space in spaces:
        drop = [k for k, (sp, _) in enumerate(acoustic_columns) if sp == space]
        models.append(_Model(("space", space), np.delete(everything, drop)))
    return models


def _test_stage(data, comps, design, test, lags, alphas, models, *, verbose):
    """Held-out r of every nested model, per subject: {subject: {model name: (weighted sum, weight)}}."""
    stats_ = {stim: stimulus_stats(design[stim], {s: comps[s][stim] for s in data.heard(stim)}, lags)
              for stim in data.stimuli}
    n_comp = next(iter(next(iter(comps.values())).values())).shape[1]
    held_out = {}
    fold_alphas = []
    for stim in test:
        for train, subjects in data.by_training_set(data.heard(stim), {stim}).items():
            if not train:
                continue
            alpha = cv_alpha(stats_, list(train), subjects, alphas)
            fold_alphas.append(alpha)
            training = subject_stats(stats_, list(train), subjects).total()
            held = subject_stats(stats_, [stim], subjects)
            n = float(held.n[0])
            for m in models:
                if len(m.predictors) == 0:
                    r = no_predictor_pearson(held)
                else:
                    W, b = ridge_weights(training.features(m.predictors), [alpha])
                    r = heldout_pearson(W, b, held.features(m.predictors))[0]
                for i, s in enumerate(subjects):
                    acc = held_out.setdefault(s, {}).setdefault(m.name, [0.0, 0.0])
                    acc[0] = acc[0] + n * r[i * n_comp:(i + 1) * n_comp]
                    acc[1] += n
        if verbose:
            logger.info("attribution: test stimulus %r done", stim)
    return held_out, np.asarray(fold_alphas)


def _group_trfs(data, design, lags, alphas):
    """Group-mean TRF (C, K + M, L) of the full model on all stimuli and channels, and its per-sample alpha.

    The penalty is chosen again at this rate (leave one stimulus out, mean r over
    subjects and channels): lags closer in time are more collinear.
    """
    n_pred = design[data.stimuli[0]].shape[1]
    stats_ = {stim: stimulus_stats(design[stim], {s: data.eeg[s][stim] for s in data.heard(stim)}, lags)
              for stim in data.stimuli}
    groups = data.by_training_set(data.subjects, set())
    common = max(groups, key=lambda train: (len(groups[train]), len(train)))
    alpha = cv_alpha(stats_, list(common), groups[common], alphas)
    coefs = []
    for train, subjects in groups.items():
        W, _ = ridge_weights(subject_stats(stats_, list(train), subjects).total(), [alpha])
        coefs.append(coef_from_weights(W[0, 0], len(lags)).reshape(len(subjects), -1, n_pred, len(lags)))
    return np.concatenate(coefs).mean(axis=0), alpha


def _tables(data, info, selection, held_out, fold_alphas, models, design, lags, alphas, sfreq, spaces,
            acoustic_columns, filters, power, dev, test, *, level, correction, model):
    subjects = [s for s in data.subjects if s in held_out]
    if len(subjects) < 2:
        raise InputError(f"The test across subjects needs at least 2 subjects with test stimuli; got "
                         f"{subjects}.")
    mean_r = {m.name: np.array([(held_out[s][m.name][0] / held_out[s][m.name][1]).mean() for s in subjects])
              for m in models}
    n_ac = len(acoustic_columns)
    rows, subject_rows, member_rows = [], [], []
    deltas = np.array([mean_r[("full",)] - mean_r[("group", g)] for g in range(len(selection.selected))])
    tt = stats.one_sample_ttest(deltas.T, alternative="greater") if len(deltas) else None
    pcorr = stats.correct_pvalues(tt.pvals, method=correction, alpha=level).pvals if len(deltas) else []
    coef, trf_alpha = _group_trfs(data, design, lags, alphas)          # (C, K + M, L)
    times = lags / sfreq
    positive = times >= 0
    baseline = "+".join(spaces)
    for g, column in enumerate(selection.selected):
        layer, feature = int(info.layer[column]), int(info.feature[column])
        w = coef[:, n_ac + g][:, positive]
        c_idx, l_idx = np.unravel_index(np.argmax(np.abs(w)), w.shape)
        sd = float(deltas[g].std(ddof=1))
        at_peak = w[:, l_idx] * np.sign(w[c_idx, l_idx])
        cluster = [data.ch_names[k] for k in np.flatnonzero(at_peak >= 0.5 * abs(w[c_idx, l_idx]))]
        group_cols = selection.members[g][0]
        rows.append({
            "model": model, "layer": layer, "feature": feature, "group": g,
            "n_members": len(selection.members[g][0]), "dev_score": selection.scores[g],
            "delta_r": float(deltas[g].mean()), "delta_r_sd": sd,
            "effect_size": float(deltas[g].mean() / sd) if sd > 0 else np.nan,
            "t": float(tt.t[g]), "df": int(tt.df), "pval": float(tt.pvals[g]),
            "pval_corrected": float(pcorr[g]), "significant": bool(pcorr[g] < level),
            "peak_lag": float(times[positive][l_idx]), "peak_channel": data.ch_names[c_idx],
            "peak_weight": float(w[c_idx, l_idx]),
            "peak_channels": ",".join(cluster),
            "members": ",".join(f"L{int(info.layer[c])}:{int(info.feature[c])}" for c in group_cols[1:]),
            "baseline": baseline, "n_subjects": len(subjects),
        })
        for i, s in enumerate(subjects):
            subject_rows.append({"subject": s, "model": model, "group": g, "layer": layer, "feature": feature,
                                 "delta_r": float(deltas[g][i]), "r_full": float(mean_r[("full",)][i]),
                                 "r_reduced": float(mean_r[("group", g)][i])})
        for k, (col, r) in enumerate(zip(*selection.members[g])):
            member_rows.append({"model": model, "group": g, "layer": int(info.layer[col]),
                                "feature": int(info.feature[col]), "representative": k == 0, "r": float(r)})
    acoustic_rows = []
    for space in spaces:
        d = mean_r[("full",)] - mean_r[("space", space)]
        res = stats.one_sample_ttest(d, alternative="greater")
        acoustic_rows.append({"model": model, "space": space, "delta_r": float(d.mean()), "t": float(res.t),
                              "pval": float(res.pvals)})
    features_table = pd.DataFrame(rows, columns=list(ATTRIBUTION_COLUMNS))
    names = [f"{sp}[{k}]" for sp, k in acoustic_columns] + [
        f"L{int(info.layer[c])}:{int(info.feature[c])}" for c in selection.selected]
    layers = [-1] * n_ac + [int(info.layer[c]) for c in selection.selected]
    ids = [-1] * n_ac + [int(info.feature[c]) for c in selection.selected]
    c, p, l_ = np.meshgrid(np.arange(coef.shape[0]), np.arange(coef.shape[1]), np.arange(coef.shape[2]),
                           indexing="ij")
    trfs = pd.DataFrame({"model": model, "predictor": np.asarray(names)[p.ravel()],
                         "layer": np.asarray(layers)[p.ravel()], "feature": np.asarray(ids)[p.ravel()],
                         "channel": np.asarray(data.ch_names)[c.ravel()], "lag": times[l_.ravel()],
                         "weight": coef.ravel()})
    summary = []
    for layer in sorted(info.layer.unique()):
        in_layer = features_table[features_table.layer == layer]
        summary.append({"model": model, "layer": int(layer), "n_features": int((info.layer == layer).sum()),
                        "n_candidates": len(in_layer), "n_tracked": int(in_layer.significant.sum()),
                        "level": level})
    return AttributionResult(
        features=features_table,
        members=pd.DataFrame(member_rows, columns=list(MEMBER_COLUMNS)),
        subjects=pd.DataFrame(subject_rows, columns=["subject", "model", "group", "layer", "feature", "delta_r",
                                                     "r_full", "r_reduced"]),
        acoustic=pd.DataFrame(acoustic_rows, columns=["model", "space", "delta_r", "t", "pval"]),
        trfs=trfs, summary=pd.DataFrame(summary), spatial_filters=filters, component_power=power,
        alphas=fold_alphas, trf_alpha=trf_alpha, dev_stimuli=list(dev), test_stimuli=list(test), times=times,
    )

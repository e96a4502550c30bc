"""The alignment analyses of one subject and of the group, on loaded runs and tables.

Moved from ``sae_eeg.alignment.run`` (whose config, paths, provenance and skip
logic became the pipeline's): :func:`subject_tables` fits every per-subject model
on a subject's aligned runs of one layer and returns tidy tables;
:func:`group_tables` computes the group statistics from every subject's tables.
Neither reads nor writes files: :mod:`sae_eeg.pipeline.steps` does, and the task
graph decides when they run.

Per-subject tables: ``protocol_trf`` (development/test TRF weights of the selected
features on the protocol channels), ``cluster_trf`` (all-channel TRFs of the
cluster features), ``encoding`` (prediction r of each feature space with its
circular-shift p-value), ``variance_partition`` (split r^2 of each band).
Group tables: ``protocol_features``, ``protocol_subjects``, ``protocol_summary``,
``clusters``, ``encoding_tests``, ``encoding_mixed``, ``layer_curves``,
``variance_partition_group``.

Without the stimuli's audio there are no SAE features: :func:`without_audio` says
which analyses still run (the encoding of the acoustic spaces the release provides)
and which are skipped (the protocol, the clusters, the spaces made from the audio).

The acoustic TRFs (:func:`acoustic_subject_tables`, :func:`acoustic_group_tables`)
and the feature attribution (:func:`attribution_tables`) do not depend on a layer's
per-subject tables: the attribution analyses every subject and the chosen layers at once.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pandas as pd
from scipy import sparse

from .. import stats
from ..alignment._data import resolve_channels
from ..alignment.acoustic import acoustic_group, acoustic_trfs
from ..alignment.attribution import attribute_features
from ..alignment.channels import clusters_from_coef
from ..alignment.encoding import (
    encoding_scores,
    feature_pca,
    group_encoding_stats,
    layer_curves,
    pca_reduce,
    variance_partition,
)
from ..alignment.features import select_features
from ..alignment.protocol import prepare_features, protocol_group, univariate_dev_test
from ..errors import InputError
from ..trf import shared_stimulus_trfs, times_to_lags
from .config import LAYER_SPACES

#: Encoding spaces made from the stimulus audio through the backbone (absent without audio).
AUDIO_SPACES = ("sae", "dense", "dense_pca")

logger = logging.getLogger(__name__)

#: Tables of one subject, and whether each is also written as CSV (TRF weights: parquet only).
SUBJECT_TABLES = {"protocol_trf": False, "cluster_trf": False, "encoding": True, "variance_partition": True}


def check_runs(runs, *, subject, paths):
    """Raise :class:`InputError` unless a subject's runs share rate and channels (and feature ids, if any)."""
    if not runs:
        raise InputError(f"subject {subject!r} has no runs.")
    for path, run in zip(paths, runs):
        if abs(run.sfreq - runs[0].sfreq) > 1e-9:
            raise InputError(f"run file {str(path)!r} is sampled at {run.sfreq} Hz, {str(paths[0])!r} at "
                             f"{runs[0].sfreq} Hz.")
        ids, first = getattr(run, "feature_ids", None), getattr(runs[0], "feature_ids", None)
        if run.ch_names != runs[0].ch_names or not np.array_equal(ids, first):
            raise InputError(f"run file {str(path)!r} has other channels or feature ids than {str(paths[0])!r}.")


def without_audio(settings, acoustic):
    """The analyses of ``settings`` that run without the stimuli's audio, and one line per one skipped.

    Without audio there are no backbone activations, so no SAE features: the paper
    protocol, the cluster TRFs and the attribution (of SAE features) are skipped, and
    so are the encoding spaces made from the audio (:data:`AUDIO_SPACES`) and the
    acoustic spaces (of the encoding and of the acoustic TRFs) the release does not
    provide. Variance partitioning needs two bands left.

    Parameters
    ----------
    settings : AlignmentSettings
    acoustic : sequence of str
        The acoustic spaces the release provides for every stimulus (e.g. ``["envelope"]``).

    Returns
    -------
    settings : AlignmentSettings
        With the clusters and the attribution disabled, the encoding and the acoustic
        TRFs cut to what runs.
    skipped : list of str
        One line per analysis skipped, saying what it needs.
    """
    e = settings.encoding
    skipped = ["alignment.protocol skipped: the paper protocol fits TRFs of SAE features, which need the "
               "stimuli's audio"]
    if settings.clusters.enabled:
        skipped.append("alignment.clusters skipped: the cluster TRFs are of SAE features, which need the "
                       "stimuli's audio")
    spaces = [k for k in e.spaces if k in acoustic]
    bands = [k for k in (e.bands or []) if k in acoustic]
    if e.enabled:
        for k in dict.fromkeys(e.spaces + (e.bands or [])):
            if k not in acoustic:
                need = ("the stimuli's audio (through the backbone)" if k in AUDIO_SPACES else
                        f"the stimuli's audio or a release feature {k!r} for every stimulus")
                skipped.append(f"alignment.encoding space {k!r} skipped: it needs {need}")
        if e.bands and len(bands) < 2:
            skipped.append(f"alignment.encoding.bands skipped: variance partitioning needs two bands, {bands} "
                           "are left")
    encoding = e.model_copy(update={"spaces": spaces, "bands": bands if len(bands) >= 2 else None,
                                    "enabled": e.enabled and bool(spaces)})
    clusters = settings.clusters.model_copy(update={"enabled": False})
    a = settings.acoustic
    acoustic_spaces = [k for k in a.spaces if k in acoustic]
    if a.enabled:
        skipped += [f"alignment.acoustic space {k!r} skipped: it needs the stimuli's audio or a release feature "
                    f"{k!r} for every stimulus" for k in a.spaces if k not in acoustic]
    acoustic_settings = a.model_copy(update={"spaces": acoustic_spaces or a.spaces,
                                             "enabled": a.enabled and bool(acoustic_spaces)})
    if settings.attribution.enabled:
        skipped.append("alignment.attribution skipped: it attributes the EEG to SAE features, which need the "
                       "stimuli's audio")
    attribution = settings.attribution.model_copy(update={"enabled": False})
    return settings.model_copy(update={"encoding": encoding, "clusters": clusters, "acoustic": acoustic_settings,
                                       "attribution": attribution}), skipped


def check_lags(settings, runs, *, subject):
    """Raise :class:`InputError` when a TRF lag window is longer than a run (a trial)."""
    sfreq = runs[0].sfreq
    shortest = min(r.eeg.shape[0] for r in runs)
    windows = {"protocol": settings.protocol, "encoding": settings.encoding}
    if settings.clusters.enabled:
        windows["clusters"] = settings.clusters
    for name, w in windows.items():
        n_lags = len(times_to_lags(w.tmin, w.tmax, sfreq))
        if n_lags >= shortest:
            raise InputError(
                f"alignment.{name}: the lags {w.tmin} to {w.tmax} s ({n_lags} samples at {sfreq:g} Hz) are longer "
                f"than the shortest run of subject {subject!r} ({shortest} samples, {shortest / sfreq:.2f} s): "
                "shorten the lag window or check the runs."
            )


def _tidy_trf(coef_CFL, *, subject, model, layer, ids, ch_names, times, split):
    coef_FCL = coef_CFL.transpose(1, 0, 2)
    f, c, l_ = np.meshgrid(np.arange(coef_FCL.shape[0]), np.arange(coef_FCL.shape[1]),
                           np.arange(coef_FCL.shape[2]), indexing="ij")
    return pd.DataFrame({
        "subject": subject, "model": model, "layer": layer, "feature": ids[f.ravel()],
        "channel": np.asarray(ch_names)[c.ravel()], "split": split, "lag": times[l_.ravel()],
        "weight": coef_FCL.ravel(),
    })


def sae_space(sae_runs, n_dims, reduce):
    """The "sae" encoding space from all selected features (see :class:`~sae_eeg.pipeline.config.EncodingSettings`).

    Parameters
    ----------
    sae_runs : list of scipy.sparse array, each (n_times, n_features)
        The selected, scaled features of each run.
    n_dims : int | None
        Dimensions kept; None keeps every feature.
    reduce : "pca" | "top"
        First principal components of all features, or the most active features.

    Returns
    -------
    space : list of ndarray, each (n_times, n_dims)
    """
    if n_dims is None or n_dims >= sae_runs[0].shape[1]:
        return [f.toarray() for f in sae_runs]
    if reduce == "pca":
        return feature_pca(sae_runs, n_dims)
    activity = sum(np.asarray(abs(f).sum(axis=0)).ravel() for f in sae_runs)
    cols = np.sort(np.argsort(-activity, kind="stable")[:n_dims])
    return [f[:, cols].toarray() for f in sae_runs]


def _spaces(encoding, runs, sae_runs):
    needed = dict.fromkeys(encoding.spaces + (encoding.bands or []))
    if sae_runs is None and any(k in needed for k in LAYER_SPACES):
        raise InputError(f"Feature spaces {[k for k in LAYER_SPACES if k in needed]} need SAE features; the runs "
                         "have none (no audio).")
    sae = None if sae_runs is None else sae_space(sae_runs, encoding.max_sae_dims, encoding.sae_reduce)
    out = {}
    for name in needed:
        if name == "sae":
            out[name] = sae
        elif name == "dense_pca":
            if any("dense" not in r.spaces for r in runs):
                raise InputError("Feature space 'dense_pca' needs a 'dense' space in every run file.")
            n_dims = min(sae[0].shape[1], runs[0].spaces["dense"].shape[1])
            out[name] = pca_reduce([r.spaces["dense"] for r in runs], n_dims, random_state=0)
        else:
            missing = [i for i, r in enumerate(runs) if name not in r.spaces]
            if missing:
                raise InputError(f"Feature space {name!r} is missing from runs {missing}; run files hold "
                                 f"{sorted(runs[0].spaces)} (plus 'sae' and 'dense_pca').")
            out[name] = [r.spaces[name] for r in runs]
    return out


def _memo_key(name, space_runs, eeg_runs, settings):
    """Hash of everything one space's encoding result depends on (see :func:`subject_tables`' ``memo``)."""
    digest = hashlib.sha256(json.dumps([name, settings], sort_keys=True, default=str).encode())
    for a in (*eeg_runs, *space_runs):
        a = np.ascontiguousarray(a)
        digest.update(repr((a.shape, a.dtype.str)).encode())
        digest.update(a.data)
    return digest.hexdigest()


def _encoding_table(eeg_runs, spaces, *, n_null, seed, common, memo):
    """:func:`encoding_scores` of every space; layer-independent spaces are taken from and put in ``memo``."""
    settings = {**{k: v for k, v in common.items() if k != "layer"}, "n_null": n_null, "seed": seed}
    keys = {k: None if memo is None or k in LAYER_SPACES else _memo_key(k, x, eeg_runs, settings)
            for k, x in spaces.items()}
    parts = {k: memo[key].assign(layer=common["layer"]) for k, key in keys.items() if key is not None and key in memo}
    todo = {k: x for k, x in spaces.items() if k not in parts}
    if todo:
        fresh = encoding_scores(eeg_runs, todo, n_null=n_null, random_state=seed, **common)
        for k in todo:
            parts[k] = fresh[fresh.feature_space == k]
            if keys[k] is not None:
                memo[keys[k]] = parts[k]
    return pd.concat([parts[k] for k in spaces], ignore_index=True)


def subject_tables(runs, settings, *, subject, model, layer, memo=None):
    """Fit every per-subject model of one subject at one layer.

    Parameters
    ----------
    runs : list of RunData
        The subject's aligned runs of this layer, in order (the first
        ``settings.protocol.n_dev_runs`` are development runs). Runs without SAE
        features (``features`` None: no audio) get the encoding analyses only
        (see :func:`without_audio`).
    settings : AlignmentSettings
        The ``alignment`` section of the pipeline config.
    subject : str
    model : str
        Model name for the tables.
    layer : int
        Layer for the tables.
    memo : dict | None
        Encoding results of the spaces that do not depend on the layer (acoustic
        baselines), shared by the calls of one subject for several layers: a space is
        reused only when its EEG, design and settings hash the same. ``None``: compute all.

    Returns
    -------
    tables : dict of str -> pandas.DataFrame
        Keys among :data:`SUBJECT_TABLES`.

    Raises
    ------
    InputError
        A lag window longer than a run, missing feature spaces, unknown channels.
    """
    check_lags(settings, runs, subject=subject)
    sfreq = runs[0].sfreq
    p = settings.protocol
    ch_names = runs[0].ch_names
    tables = {}
    labels = {"subject": subject, "model": model, "layer": layer}
    sae_runs = None
    if runs[0].features is not None:
        data = {subject: [(r.eeg, r.features) for r in runs]}
        data, ids = prepare_features(data, sfreq=sfreq, feature_ids=runs[0].feature_ids,
                                     min_rate=p.min_rate, n_features=p.n_features, count=p.count,
                                     scale=p.scale, random_state=p.seed)
        sae_runs = [f for _, f in data[subject]]
        ch_idx, ch_used = resolve_channels(p.channels, ch_names, runs[0].eeg.shape[1])
        lags = times_to_lags(p.tmin, p.tmax, sfreq)
        dev, test = univariate_dev_test(data, p.tmin, p.tmax, sfreq, p.alpha, ch_idx, p.n_dev_runs,
                                        p.n_test_runs)
        tables["protocol_trf"] = pd.concat([
            _tidy_trf(coef[0], **labels, ids=ids, ch_names=ch_used, times=lags / sfreq, split=split)
            for coef, split in ((dev, "dev"), (test, "test"))], ignore_index=True)
        if settings.clusters.enabled:
            c = settings.clusters
            cols = (np.arange(min(c.n_features, len(ids))) if c.features is None
                    else np.flatnonzero(np.isin(ids, c.features)))
            c_lags = times_to_lags(c.tmin, c.tmax, sfreq)
            fits = shared_stimulus_trfs({0: [(f[:, cols], eeg) for eeg, f in data[subject]]}, c.tmin, c.tmax,
                                        sfreq, alpha=c.alpha)
            tables["cluster_trf"] = _tidy_trf(fits[0].coef_, **labels, ids=ids[cols], ch_names=ch_names,
                                              times=c_lags / sfreq, split="all")
    if settings.encoding.enabled:
        e = settings.encoding
        spaces = _spaces(e, runs, sae_runs)
        eeg_runs = [r.eeg for r in runs]
        common = {"sfreq": sfreq, "subject": subject, "ch_names": ch_names, "channels": e.channels,
                  "tmin": e.tmin, "tmax": e.tmax, "alphas": e.alphas, "model": model, "layer": layer}
        tables["encoding"] = _encoding_table(eeg_runs, {k: spaces[k] for k in e.spaces}, n_null=e.n_null,
                                             seed=p.seed, common=common, memo=memo)
        if e.bands:
            tables["variance_partition"] = variance_partition(
                eeg_runs, {k: spaces[k] for k in e.bands}, search=e.band_search, n_iter=e.n_iter,
                random_state=p.seed, **common)
    return tables


def _coef_from_tidy(table, split, subjects):
    """(S, C, F, L) weights and their axes from a tidy TRF table."""
    t = table[table.split == split]
    ids = np.sort(t.feature.unique())
    chans = list(dict.fromkeys(t.channel))
    times = np.sort(t.lag.unique())
    idx = pd.MultiIndex.from_product([subjects, ids, chans, times], names=["subject", "feature", "channel", "lag"])
    w = t.set_index(["subject", "feature", "channel", "lag"])["weight"].reindex(idx)
    if w.isna().any():
        missing = w[w.isna()].index[0]
        raise InputError(f"Subject tables disagree: no '{split}' weight for {missing} (did every subject "
                         f"use the same features and channels?).")
    return (w.to_numpy().reshape(len(subjects), len(ids), len(chans), len(times)).transpose(0, 2, 1, 3), ids, chans,
            times)


def group_tables(tables, settings, *, subjects, sfreq, model, layer, montage=None):
    """Group statistics over every subject's tables at one layer.

    Parameters
    ----------
    tables : dict of str -> pandas.DataFrame | None
        Each per-subject table (:data:`SUBJECT_TABLES`) of all subjects concatenated;
        None when a subject lacks it (no ``protocol_trf``: the protocol's statistics
        are left out, as without audio).
    settings : AlignmentSettings
    subjects : list of str
        The subjects, sorted.
    sfreq : float
        Rate of the analyses, Hz.
    model : str
    layer : int
    montage : str | None
        Montage of the cluster test's channel adjacency (``settings.clusters.montage``
        wins when given).

    Returns
    -------
    tables : dict of str -> pandas.DataFrame

    Raises
    ------
    InputError
        The subjects' tables disagree.
    """
    p = settings.protocol
    out = {}
    if tables.get("protocol_trf") is not None:
        dev, ids, chans, times = _coef_from_tidy(tables["protocol_trf"], "dev", subjects)
        test = _coef_from_tidy(tables["protocol_trf"], "test", subjects)[0]
        lags = np.rint(times * sfreq).astype(int)
        res = protocol_group(dev, test, lags=lags, sfreq=sfreq, subject_ids=subjects, feature_ids=ids,
                             ch_names=chans, lag_selection=p.lag_selection, correction=p.correction,
                             level=p.level, model=model, layer=layer)
        out.update(protocol_features=res.features, protocol_subjects=res.subjects, protocol_summary=res.summary)
    ctrf = tables.get("cluster_trf") if settings.clusters.enabled else None
    if ctrf is not None:
        coef, cids, cchans, ctimes = _coef_from_tidy(ctrf, "all", subjects)
        adjacency = stats.channel_adjacency(settings.clusters.montage or montage, cchans)
        out["clusters"] = clusters_from_coef(
            coef, adjacency, times=ctimes, ch_names=cchans, feature_ids=cids,
            n_permutations=settings.clusters.n_permutations, level=settings.clusters.level, model=model,
            layer=layer, random_state=p.seed).clusters
    enc = tables.get("encoding") if settings.encoding.enabled else None
    if enc is not None:
        group = group_encoding_stats(enc, random_state=p.seed)
        out.update(encoding_tests=group.tests, encoding_mixed=group.mixed, layer_curves=layer_curves(enc))
    vp = tables.get("variance_partition") if settings.encoding.enabled and settings.encoding.bands else None
    if vp is not None:
        out["variance_partition_group"] = _split_group(vp)
    return out


def _split_group(vp):
    """Per (model, layer, band, channel): mean split r^2 and a one-sided t-test (> 0) across subjects."""
    rows = []
    for (model, layer, band, channel), g in vp.groupby(["model", "layer", "band", "channel"], sort=False):
        res = stats.one_sample_ttest(g.r2_split.to_numpy(), alternative="greater") if len(g) > 1 else None
        rows.append({"model": model, "layer": layer, "band": band, "channel": channel,
                     "r2_split_mean": g.r2_split.mean(), "n_subjects": len(g),
                     "t": float(res.t) if res else np.nan, "pval": float(res.pvals) if res else np.nan})
    table = pd.DataFrame(rows)
    table["pval_holm"] = stats.correct_pvalues(table.pval.to_numpy(), method="holm").pvals
    return table


#: Tables of the acoustic TRFs of one subject (``alignment/acoustic/subjects/<subject>/``).
ACOUSTIC_SUBJECT_TABLES = ("acoustic_trfs", "acoustic_scores")


def acoustic_series(run, spaces):
    """The acoustic baselines of a run, zero in silence: the envelope as it is, log-mel bands minus their floor.

    Parameters
    ----------
    run : RunData
    spaces : sequence of str
        Spaces of the run file (``"envelope"``, ``"mel"``).

    Returns
    -------
    acoustic : dict of str -> ndarray, each (n_times, n_columns)
    """
    missing = [name for name in spaces if name not in run.spaces]
    if missing:
        raise InputError(f"The run file has no acoustic space {missing}; it has {sorted(run.spaces)}.")
    out = {}
    for name in spaces:
        x = np.asarray(run.spaces[name], dtype=np.float64)
        out[name] = x - x.min() if name == "mel" else x       # log-mel: its floor (-80 dB) is the silence
    return out


def acoustic_subject_tables(runs, stimuli, settings, *, subject, band):
    """One subject's acoustic TRFs over all channels (its own cross-validated penalty per space).

    Parameters
    ----------
    runs : list of RunData
        The subject's aligned runs (any layer: the EEG and acoustic spaces are the same).
    stimuli : list of str
        The stimulus of each run.
    settings : AcousticSettings
    subject : str
    band : (float | None, float | None)
        The preprocessing's band-pass (given to the predictors).

    Returns
    -------
    tables : dict of str -> pandas.DataFrame
        ``acoustic_trfs`` (``space``, ``column``, ``subject``, ``channel``, ``lag``,
        ``weight``) and ``acoustic_scores`` (``space``, ``subject``, ``r``, ``alpha``).
    """
    res = acoustic_trfs({subject: [(stim, run.eeg) for stim, run in zip(stimuli, runs)]},
                        {stim: acoustic_series(run, settings.spaces) for stim, run in zip(stimuli, runs)},
                        sfreq=runs[0].sfreq, ch_names=runs[0].ch_names, channel=settings.channel, band=band,
                        tmin=settings.tmin, tmax=settings.tmax, peak_window=settings.peak_window,
                        alphas=settings.alphas, n_boot=1, random_state=settings.seed)
    scores = res.scores.assign(alpha=[float(res.alphas[space]) for space in res.scores.space])
    return {"acoustic_trfs": res.trfs[res.trfs.subject == subject].reset_index(drop=True),
            "acoustic_scores": scores}


def acoustic_group_tables(tables, settings, *, subjects):
    """Group TRFs, peaks with bootstrap intervals and topographies from every subject's acoustic tables.

    Parameters
    ----------
    tables : dict of str -> pandas.DataFrame
        :data:`ACOUSTIC_SUBJECT_TABLES` of all subjects, concatenated.
    settings : AcousticSettings
    subjects : list of str
        Sorted.

    Returns
    -------
    tables : dict of str -> pandas.DataFrame
        ``acoustic_trfs`` (the group rows), ``acoustic_peaks``, ``acoustic_topographies``,
        ``acoustic_scores`` (see :class:`~sae_eeg.alignment.AcousticTRFs`).
    """
    trfs, scores = tables["acoustic_trfs"], tables["acoustic_scores"]
    chans = list(dict.fromkeys(trfs.channel))
    times = np.sort(trfs.lag.unique())
    coef, r, alphas = {}, {}, {}
    for space in dict.fromkeys(trfs.space):
        t = trfs[trfs.space == space]
        columns = np.sort(t.column.unique())
        idx = pd.MultiIndex.from_product([subjects, chans, columns, times], names=["subject", "channel", "column",
                                                                                    "lag"])
        w = t.set_index(["subject", "channel", "column", "lag"])["weight"].reindex(idx)
        if w.isna().any():
            raise InputError(f"The subjects' acoustic TRFs disagree: no weight for {w[w.isna()].index[0]} "
                             "(did every subject use the same channels and lags?).")
        coef[space] = w.to_numpy().reshape(len(subjects), len(chans), len(columns), len(times))
        rows = scores[scores.space == space].set_index("subject")
        r[space] = {s: float(rows.r[s]) for s in subjects}
        alphas[space] = rows.alpha.reindex(subjects).to_numpy()
    res = acoustic_group(coef, r, subjects=subjects, ch_names=chans, times=times, alphas=alphas,
                         channel=settings.channel, peak_window=settings.peak_window, n_boot=settings.n_boot,
                         ci=settings.ci, random_state=settings.seed)
    return {"acoustic_trfs": res.trfs[res.trfs.subject == "group"].reset_index(drop=True),
            "acoustic_peaks": res.peaks, "acoustic_topographies": res.topographies,
            "acoustic_scores": scores.sort_values(["space", "subject"], ignore_index=True)}


def attribution_pool(features, settings, *, sfreq):
    """The candidate features of every layer, side by side per stimulus.

    Parameters
    ----------
    features : dict of int -> dict of str -> (scipy.sparse array, ndarray)
        Per layer, per stimulus the layer's features (n_times, n_features) and their ids.
    settings : AttributionSettings
    sfreq : float

    Returns
    -------
    pool : dict of str -> scipy.sparse.csr_array, each (n_times, n_pool)
    info : pandas.DataFrame
        ``layer`` and ``feature`` of each pool column.
    """
    blocks, info = {}, []
    for layer, by_stimulus in features.items():
        matrices = [x for x, _ in by_stimulus.values()]
        cols = select_features(matrices, sfreq=sfreq, min_rate=settings.min_rate, n_features=settings.n_features,
                               random_state=settings.seed)
        if cols.size == 0:
            raise InputError(f"No feature of layer {layer} fires at least {settings.min_rate} times per second; "
                             "lower alignment.attribution.min_rate.")
        info.append(pd.DataFrame({"layer": layer, "feature": next(iter(by_stimulus.values()))[1][cols]}))
        for stim, (x, _) in by_stimulus.items():
            blocks.setdefault(stim, []).append(sparse.csr_array(x)[:, cols])
    pool = {stim: sparse.csr_array(sparse.hstack(b, format="csr")) for stim, b in blocks.items()}
    return pool, pd.concat(info, ignore_index=True)


#: Tables of the attribution (``alignment/attribution/``); see :class:`~sae_eeg.alignment.AttributionResult`.
ATTRIBUTION_TABLES = ("attribution_features", "attribution_members", "attribution_subjects",
                      "attribution_acoustic", "attribution_trfs", "attribution_summary", "attribution_filters")


def attribution_tables(runs, features, settings, *, spaces, band, model):
    """The feature attribution over every subject and the chosen layers at once.

    Parameters
    ----------
    runs : dict of str -> list of (str, RunData)
        Per subject its runs in playing order: (stimulus, aligned run of any layer).
    features : dict of int -> dict of str -> (scipy.sparse array, ndarray)
        Per layer, per stimulus the layer's features and their ids (:func:`attribution_pool`).
    settings : AttributionSettings
    spaces : list of str
        The acoustic baseline (spaces of the run files).
    band : (float | None, float | None)
        The preprocessing's band-pass.
    model : str

    Returns
    -------
    tables : dict of str -> pandas.DataFrame
        Keys :data:`ATTRIBUTION_TABLES`.
    """
    first = next(iter(runs.values()))[0][1]
    pool, info = attribution_pool(features, settings, sfreq=first.sfreq)
    acoustic = {}
    for subject_runs in runs.values():
        for stim, run in subject_runs:
            if stim not in acoustic:
                acoustic[stim] = acoustic_series(run, spaces)
    res = attribute_features({s: [(stim, run.eeg) for stim, run in rs] for s, rs in runs.items()}, pool, acoustic,
                             sfreq=first.sfreq, ch_names=first.ch_names, feature_info=info,
                             n_dev_stimuli=settings.n_dev_runs, band=band, tmin=settings.tmin, tmax=settings.tmax,
                             n_components=settings.n_components, max_candidates=settings.max_candidates,
                             group_threshold=settings.group_threshold, alphas=settings.alphas, level=settings.level,
                             correction=settings.correction, model=model)
    n_comp = res.spatial_filters.shape[1]
    filters = pd.DataFrame({"channel": np.repeat(first.ch_names, n_comp), "component": np.tile(np.arange(n_comp),
                            len(first.ch_names)), "weight": res.spatial_filters.ravel(),
                            "power": np.tile(res.component_power, len(first.ch_names))})
    return {"attribution_features": res.features, "attribution_members": res.members,
            "attribution_subjects": res.subjects, "attribution_acoustic": res.acoustic,
            "attribution_trfs": res.trfs, "attribution_summary": res.summary, "attribution_filters": filters}

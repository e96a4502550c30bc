"""Per-subject and group entry points of the alignment analyses (called by the CLI and analyses/).

``run_subject(config, subject)`` reads the subject's aligned runs (files written by
:func:`~sae_eeg.alignment.io.save_run`), fits every per-subject model and writes
tidy tables to ``<output_dir>/subjects/<subject>/``; ``run_group(config)`` reads
those tables for all subjects and writes the group tables to
``<output_dir>/group/``. Every table is written as parquet and CSV (the per-subject TRF
weight tables, hundreds of thousands of rows, as parquet only) with a provenance
record (config hash, package versions, input file hashes); a rerun whose config and
inputs are unchanged is skipped.

Per-subject tables: ``protocol_trf`` (development/test TRF weights of the selected
features on the protocol channels), ``cluster_trf`` (all-channel TRFs of the
cluster features), ``encoding`` (prediction r of each feature space with its
circular-shift p-value), ``variance_partition`` (split r^2 of each band).
Group tables: ``protocol_features``, ``protocol_subjects``, ``protocol_summary``,
``clusters``, ``encoding_tests``, ``encoding_mixed``, ``layer_curves``,
``variance_partition_group``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pydantic

from .. import stats
from .._io import provenance, write_json_atomic
from ..audio import file_hash
from ..errors import ConfigError, InputError
from ..trf import shared_stimulus_trfs, times_to_lags
from ._data import resolve_channels
from .channels import clusters_from_coef
from .encoding import (
    DEFAULT_ALPHAS,
    encoding_scores,
    feature_pca,
    group_encoding_stats,
    layer_curves,
    pca_reduce,
    variance_partition,
)
from .io import load_run, read_table, write_table
from .protocol import prepare_features, protocol_group, univariate_dev_test

logger = logging.getLogger(__name__)


class _Settings(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class ProtocolSettings(_Settings):
    """The paper protocol (see :func:`~sae_eeg.alignment.paper_protocol`)."""

    channels: list[str] = ["Pz"]
    tmin: float = 0.0
    tmax: float = 0.5
    alpha: float = pydantic.Field(1.0, gt=0)
    n_dev_runs: int = pydantic.Field(2, ge=1)
    n_test_runs: int | None = None
    n_features: int | None = 1000
    min_rate: float = pydantic.Field(1.0, ge=0)
    count: Literal["onsets", "samples"] = "onsets"
    scale: bool = True
    lag_selection: Literal["group", "subject"] = "group"
    correction: Literal["holm", "fdr_bh", "bonferroni", "none"] = "holm"
    level: float = pydantic.Field(0.05, gt=0, lt=1)
    seed: int = 0


class ClusterSettings(_Settings):
    """All-channel TRFs + cluster test of a few features."""

    enabled: bool = True
    montage: str | None = None
    features: list[int] | None = None
    n_features: int = pydantic.Field(10, ge=1)
    tmin: float = 0.0
    tmax: float = 0.5
    alpha: float = pydantic.Field(1.0, gt=0)
    n_permutations: int = pydantic.Field(1024, ge=1)
    level: float = pydantic.Field(0.05, gt=0, lt=1)


class EncodingSettings(_Settings):
    """Multivariate encoding of feature spaces and variance partitioning.

    The "sae" space is built from every feature the protocol selected, reduced to
    ``max_sae_dims`` dimensions: ``sae_reduce: pca`` (default) takes the first principal
    components of all of them (each z-scored first, see
    :func:`~sae_eeg.alignment.encoding.feature_pca`); ``sae_reduce: top`` keeps the
    ``max_sae_dims`` most active features (one dimension per feature id).
    ``max_sae_dims: null`` keeps every selected feature unreduced (memory grows as
    (features x lags)^2: 1000 features x 65 lags would need a 65k x 65k covariance).
    "dense_pca" has as many dimensions as "sae" (at most the layer width).
    """

    enabled: bool = True
    spaces: list[str] = ["sae"]
    channels: list[str] | None = None
    tmin: float = 0.0
    tmax: float = 0.5
    alphas: list[float] = list(DEFAULT_ALPHAS)
    n_null: int = pydantic.Field(100, ge=1)
    bands: list[str] | None = None
    band_search: Literal["gradient", "random"] = "gradient"
    n_iter: int = pydantic.Field(20, ge=1)
    max_sae_dims: int | None = pydantic.Field(32, ge=1)
    sae_reduce: Literal["pca", "top"] = "pca"


class AlignmentConfig(_Settings):
    """Configuration of :func:`run_subject` / :func:`run_group`.

    ``runs`` maps each subject to its run files (:func:`~sae_eeg.alignment.io.save_run`)
    in order (the first ``protocol.n_dev_runs`` are development runs). Feature space
    names in ``encoding.spaces``/``bands``: ``"sae"`` (the protocol's selected, scaled
    SAE features), ``"dense_pca"`` (the run's ``dense`` space reduced by PCA to as many
    dimensions as ``"sae"``), or any space stored in the run files (``"envelope"``,
    ``"mel"``, ...). Relative paths are resolved against ``base_dir`` of the validation
    context (``AlignmentConfig.model_validate(data, context={"base_dir": folder})``, as
    the pipeline's YAML loader does).
    """

    output_dir: Path
    sfreq: float = pydantic.Field(128.0, gt=0)
    model: str = ""
    layer: int = -1
    runs: dict[str, list[Path]]
    protocol: ProtocolSettings = ProtocolSettings()
    clusters: ClusterSettings = ClusterSettings()
    encoding: EncodingSettings = EncodingSettings()

    @pydantic.field_validator("output_dir", mode="after")
    @classmethod
    def _resolve_output(cls, value, info):
        return _resolve(value, info)

    @pydantic.field_validator("runs", mode="after")
    @classmethod
    def _resolve_runs(cls, value, info):
        return {s: [_resolve(p, info) for p in paths] for s, paths in value.items()}


def _resolve(path, info):
    """Relative paths are resolved against ``context["base_dir"]`` (the YAML file's folder) if given."""
    base = (info.context or {}).get("base_dir")
    path = Path(path).expanduser()
    return path if path.is_absolute() or base is None else Path(base) / path


def _config(config):
    if isinstance(config, AlignmentConfig):
        return config
    try:
        return AlignmentConfig.model_validate(config)
    except pydantic.ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"Invalid alignment config: {problems}") from err


def _subject_dir(cfg, subject):
    return Path(cfg.output_dir) / "subjects" / subject


def _is_current(folder, prov):
    path = folder / "provenance.json"
    if not path.is_file():
        return False
    old = json.loads(path.read_text())
    return old.get("config_hash") == prov["config_hash"] and old.get("inputs") == prov["inputs"]


def _load_subject(cfg, subject):
    if subject not in cfg.runs:
        raise InputError(f"Subject {subject!r} is not in the config; subjects are {sorted(cfg.runs)}.")
    runs = [load_run(p) for p in cfg.runs[subject]]
    for p, run in zip(cfg.runs[subject], runs):
        if abs(run.sfreq - cfg.sfreq) > 1e-9:
            raise InputError(f"run file {str(p)!r} is sampled at {run.sfreq} Hz; the config says "
                             f"sfreq={cfg.sfreq}.")
        if run.ch_names != runs[0].ch_names or not np.array_equal(run.feature_ids, runs[0].feature_ids):
            raise InputError(f"run file {str(p)!r} has other channels or feature ids than "
                             f"{str(cfg.runs[subject][0])!r}.")
    return runs


def _tidy_trf(coef_CFL, *, subject, cfg, ids, ch_names, times, split):
    coef_FCL = coef_CFL.transpose(1, 0, 2)
    f, c, l_ = np.meshgrid(np.arange(coef_FCL.shape[0]), np.arange(coef_FCL.shape[1]),
                           np.arange(coef_FCL.shape[2]), indexing="ij")
    return pd.DataFrame({
        "subject": subject, "model": cfg.model, "layer": cfg.layer, "feature": ids[f.ravel()],
        "channel": np.asarray(ch_names)[c.ravel()], "split": split, "lag": times[l_.ravel()],
        "weight": coef_FCL.ravel(),
    })


def _sae_space(sae_runs, n_dims, reduce):
    """The "sae" encoding space from all selected features (see :class:`EncodingSettings`)."""
    if n_dims is None or n_dims >= sae_runs[0].shape[1]:
        return [f.toarray() for f in sae_runs]
    if reduce == "pca":
        return feature_pca(sae_runs, n_dims)
    activity = sum(np.asarray(abs(f).sum(axis=0)).ravel() for f in sae_runs)
    cols = np.sort(np.argsort(-activity, kind="stable")[:n_dims])
    return [f[:, cols].toarray() for f in sae_runs]


def _spaces(cfg, runs, sae_runs):
    sae = _sae_space(sae_runs, cfg.encoding.max_sae_dims, cfg.encoding.sae_reduce)
    out = {}
    for name in dict.fromkeys(cfg.encoding.spaces + (cfg.encoding.bands or [])):
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


#: Encoding spaces built from the layer; every other space (acoustic baselines) is the same for all layers.
LAYER_SPACES = ("sae", "dense_pca")


def _memo_key(name, space_runs, eeg_runs, settings):
    """Hash of everything one space's encoding result depends on (see :func:`run_subject`'s ``memo``)."""
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


def run_subject(config, subject, *, force=False, memo=None):
    """Fit every per-subject model of one subject and write its tables.

    Parameters
    ----------
    config : dict | AlignmentConfig
        See :class:`AlignmentConfig`.
    subject : str
        A key of ``config["runs"]``.
    force : bool
        Recompute even if the tables exist for the same config and inputs.
    memo : dict | None
        Encoding results of the spaces that do not depend on the layer (acoustic
        baselines), shared by the calls of one subject for several layers: a space is
        reused only when its EEG, design and settings hash the same. ``None``: compute all.

    Returns
    -------
    folder : pathlib.Path
        ``<output_dir>/subjects/<subject>``.

    Raises
    ------
    ConfigError
        Invalid config.
    InputError
        Unknown subject, unreadable or inconsistent run files, missing feature spaces.
    """
    cfg = _config(config)
    folder = _subject_dir(cfg, subject)
    if subject not in cfg.runs:
        raise InputError(f"Subject {subject!r} is not in the config; subjects are {sorted(cfg.runs)}.")
    prov = provenance(json.loads(cfg.model_dump_json()),
                      inputs={str(p): file_hash(p) for p in cfg.runs[subject]})
    prov["subject"] = subject
    if not force and _is_current(folder, prov):
        logger.info("run_subject %s: up to date, skipped", subject)
        return folder
    runs = _load_subject(cfg, subject)
    p = cfg.protocol
    ch_names = runs[0].ch_names
    data = {subject: [(r.eeg, r.features) for r in runs]}
    data, ids = prepare_features(data, sfreq=cfg.sfreq, feature_ids=runs[0].feature_ids,
                                 min_rate=p.min_rate, n_features=p.n_features, count=p.count,
                                 scale=p.scale, random_state=p.seed)
    sae_runs = [f for _, f in data[subject]]
    tables = {}
    ch_idx, ch_used = resolve_channels(p.channels, ch_names, runs[0].eeg.shape[1])
    lags = times_to_lags(p.tmin, p.tmax, cfg.sfreq)
    dev, test = univariate_dev_test(data, p.tmin, p.tmax, cfg.sfreq, p.alpha, ch_idx, p.n_dev_runs, p.n_test_runs)
    tables["protocol_trf"] = pd.concat([
        _tidy_trf(coef[0], subject=subject, cfg=cfg, ids=ids, ch_names=ch_used, times=lags / cfg.sfreq,
                  split=split) for coef, split in ((dev, "dev"), (test, "test"))], ignore_index=True)
    if cfg.clusters.enabled:
        c = cfg.clusters
        cols = (np.arange(min(c.n_features, len(ids))) if c.features is None
                else np.flatnonzero(np.isin(ids, c.features)))
        c_lags = times_to_lags(c.tmin, c.tmax, cfg.sfreq)
        fits = shared_stimulus_trfs({0: [(f[:, cols], eeg) for eeg, f in data[subject]]}, c.tmin, c.tmax, cfg.sfreq,
                                    alpha=c.alpha)
        tables["cluster_trf"] = _tidy_trf(fits[0].coef_, subject=subject, cfg=cfg, ids=ids[cols],
                                          ch_names=ch_names, times=c_lags / cfg.sfreq, split="all")
    if cfg.encoding.enabled:
        e = cfg.encoding
        spaces = _spaces(cfg, runs, sae_runs)
        eeg_runs = [r.eeg for r in runs]
        common = {"sfreq": cfg.sfreq, "subject": subject, "ch_names": ch_names, "channels": e.channels,
                  "tmin": e.tmin, "tmax": e.tmax, "alphas": e.alphas, "model": cfg.model, "layer": cfg.layer}
        tables["encoding"] = _encoding_table(eeg_runs, {k: spaces[k] for k in e.spaces}, n_null=e.n_null,
                                             seed=p.seed, common=common, memo=memo)
        if e.bands:
            tables["variance_partition"] = variance_partition(
                eeg_runs, {k: spaces[k] for k in e.bands}, search=e.band_search, n_iter=e.n_iter,
                random_state=p.seed, **common)
    for name, table in tables.items():
        write_table(table, folder / name, prov, csv=not name.endswith("_trf"))  # TRF weights: parquet only
    write_json_atomic(folder / "provenance.json", prov)  # written last: marks the subject complete
    return folder


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


def run_group(config):
    """Group statistics over all subjects' tables (run :func:`run_subject` for each first).

    Parameters
    ----------
    config : dict | AlignmentConfig

    Returns
    -------
    paths : dict of str -> pathlib.Path
        Table name to its parquet file in ``<output_dir>/group``.

    Raises
    ------
    InputError
        A subject's tables are missing or disagree with the others.
    """
    cfg = _config(config)
    subjects = sorted(cfg.runs)
    missing = [s for s in subjects if not (_subject_dir(cfg, s) / "provenance.json").is_file()]
    if missing:
        raise InputError(f"No per-subject results for {missing}; run run_subject() for them first.")

    def load(name):
        paths = [_subject_dir(cfg, s) / f"{name}.parquet" for s in subjects]
        return pd.concat([read_table(p) for p in paths], ignore_index=True) if all(
            p.is_file() for p in paths) else None

    inputs = {s: json.loads((_subject_dir(cfg, s) / "provenance.json").read_text())["config_hash"]
              for s in subjects}
    prov = provenance(json.loads(cfg.model_dump_json()), inputs=inputs)
    out_dir = Path(cfg.output_dir) / "group"
    p = cfg.protocol
    tables = {}
    trf = load("protocol_trf")
    dev, ids, chans, times = _coef_from_tidy(trf, "dev", subjects)
    test = _coef_from_tidy(trf, "test", subjects)[0]
    lags = np.rint(times * cfg.sfreq).astype(int)
    res = protocol_group(dev, test, lags=lags, sfreq=cfg.sfreq, subject_ids=subjects, feature_ids=ids,
                         ch_names=chans, lag_selection=p.lag_selection, correction=p.correction,
                         level=p.level, model=cfg.model, layer=cfg.layer)
    tables.update(protocol_features=res.features, protocol_subjects=res.subjects,
                  protocol_summary=res.summary)
    ctrf = load("cluster_trf") if cfg.clusters.enabled else None
    if ctrf is not None:
        if cfg.clusters.montage is None:
            raise ConfigError("clusters.montage is needed for the channel adjacency (e.g. 'biosemi64').")
        coef, cids, cchans, ctimes = _coef_from_tidy(ctrf, "all", subjects)
        adjacency = stats.channel_adjacency(cfg.clusters.montage, cchans)
        tables["clusters"] = clusters_from_coef(
            coef, adjacency, times=ctimes, ch_names=cchans, feature_ids=cids,
            n_permutations=cfg.clusters.n_permutations, level=cfg.clusters.level, model=cfg.model,
            layer=cfg.layer, random_state=p.seed).clusters
    enc = load("encoding") if cfg.encoding.enabled else None
    if enc is not None:
        group = group_encoding_stats(enc, random_state=p.seed)
        tables.update(encoding_tests=group.tests, encoding_mixed=group.mixed, layer_curves=layer_curves(enc))
    vp = load("variance_partition") if cfg.encoding.enabled and cfg.encoding.bands else None
    if vp is not None:
        tables["variance_partition_group"] = _split_group(vp)
    return {name: write_table(t, out_dir / name, prov) for name, t in tables.items()}


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

"""Multivariate encoding models: feature spaces compared on held-out prediction r.

A *feature space* is one design per run, e.g. all active SAE features of a layer,
the broadband envelope, mel-band envelopes, or the dense layer activations reduced
by PCA to as many dimensions as the SAE space. Per subject each space gets a forward
TRF whose ridge penalty is chosen by leave-one-run-out cross-validation; its
cross-validated prediction r per channel is compared with a null from circular
shifts of the EEG (the engine's :func:`~sae_eeg.trf.nulls.permutation_null`), giving
an empirical p-value. Banded ridge over several spaces at once gives the split r^2
of each band (variance partitioning: the unique share of the SAE features beyond
the acoustics). Group statistics run on the resulting tidy tables.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pandas as pd
import scipy.linalg
from sklearn.decomposition import PCA

from .. import stats
from .._check import _check_option, _ensure_int, _validate_type
from .._docs import fill_doc
from ..errors import InputError
from ..trf import TRF
from ..trf.banded import BandedTRF
from ..trf.nulls import permutation_null
from ._data import resolve_channels

DEFAULT_ALPHAS = (1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5)

#: Columns of the table of :func:`encoding_scores`.
SCORE_COLUMNS = {
    "subject": "subject id", "model": "model label", "layer": "layer label",
    "feature_space": "name of the feature space", "n_dims": "columns of the space",
    "channel": "EEG channel", "r": "leave-one-run-out prediction r (Pearson)",
    "alpha": "ridge penalty chosen by cross-validation (engine scale)",
    "null_mean": "mean r under circular shifts", "pval": "empirical p-value (+1 corrected)",
    "n_null": "number of circular shifts",
}
#: Columns of the table of :func:`variance_partition`.
SPLIT_COLUMNS = {
    "subject": "subject id", "model": "model label", "layer": "layer label",
    "band": "feature space (band) name", "channel": "EEG channel",
    "r2_split": "held-out split r^2 of the band (bands sum to the joint model's r^2)",
    "r2_joint": "held-out r^2 of the joint banded model", "band_alpha": "penalty of the band",
}


def _check_spaces(spaces, eeg_runs):
    _validate_type(spaces, dict, "spaces")
    if not spaces:
        raise InputError("spaces is empty; give {name: [design of each run, ...]}.")
    out = {}
    for name, runs in spaces.items():
        if len(runs) != len(eeg_runs):
            raise InputError(f"Feature space {name!r} has {len(runs)} runs, the EEG has {len(eeg_runs)}.")
        arrs = []
        for i, (x, y) in enumerate(zip(runs, eeg_runs)):
            x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)
            x = x[:, None] if x.ndim == 1 else x
            if x.shape[0] != y.shape[0]:
                raise InputError(f"Feature space {name!r}, run {i}: {x.shape[0]} samples, the EEG has "
                                 f"{y.shape[0]}.")
            arrs.append(x)
        out[name] = arrs
    return out


@fill_doc
def pca_reduce(runs, n_components, *, random_state=None):
    """Project dense activations of every run on their first principal components.

    Parameters
    ----------
    runs : list of array, each (n_times_i, n_dims)
        Dense layer activations (e.g. resampled to the EEG rate).
    n_components : int
        Dimensions kept (e.g. the number of SAE features in the SAE space).
    %(random_state)s

    Returns
    -------
    reduced : list of ndarray, each (n_times_i, n_components)
        Scores of a PCA fitted on all runs together.
    """
    n_components = _ensure_int(n_components, "n_components")
    stacked = np.concatenate([np.asarray(r, dtype=np.float64) for r in runs])
    if not 1 <= n_components <= min(stacked.shape):
        raise InputError(f"n_components must be in [1, {min(stacked.shape)}], got {n_components}.")
    pca = PCA(n_components=n_components, random_state=random_state).fit(stacked)
    return [pca.transform(np.asarray(r, dtype=np.float64)) for r in runs]


def feature_pca(runs, n_components):
    """Project features (dense or sparse) of every run on principal components of all of them.

    Each feature is z-scored over all runs first (a PCA of the correlation matrix), so
    that rarely firing SAE features weigh as much as frequent ones; the components are
    the leading eigenvectors of that matrix, computed from the summed cross-products
    (dense products over chunks of rows: SAE features at the EEG rate are too dense for
    sparse products to pay, and a whole run is never densified at once).

    Parameters
    ----------
    runs : list of array or sparse matrix, each (n_times_i, n_features)
        Features of each run (e.g. all selected SAE features).
    n_components : int
        Components kept, ``1 <= n_components <= n_features``.

    Returns
    -------
    scores : list of ndarray, each (n_times_i, n_components)
        Scores on the components (zero mean and variance equal to the component's
        eigenvalue over all runs), components by decreasing variance; each
        component's sign makes its largest loading positive.
    """
    n_components = _ensure_int(n_components, "n_components")
    n_features = runs[0].shape[1]
    if not 1 <= n_components <= n_features:
        raise InputError(f"n_components must be in [1, {n_features}], got {n_components}.")
    n = sum(r.shape[0] for r in runs)
    mean = sum(np.asarray(r.sum(axis=0), dtype=np.float64).ravel() for r in runs) / n
    cross = np.zeros((n_features, n_features))
    for r in runs:
        for i in range(0, r.shape[0], 4096):
            rows = r[i:i + 4096]
            rows = np.asarray(rows.toarray() if hasattr(rows, "toarray") else rows, dtype=np.float64)
            cross += rows.T @ rows
    cov = cross / n - np.outer(mean, mean)
    std = np.sqrt(np.clip(np.diag(cov), 0, None))
    std = np.where(std > 0, std, 1.0)
    _, evecs = scipy.linalg.eigh(cov / np.outer(std, std),
                                 subset_by_index=[n_features - n_components, n_features - 1])
    comps = evecs[:, ::-1]
    comps = comps * np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(n_components)])
    proj = comps / std[:, None]                       # raw features -> scores of z-scored features
    offset = mean @ proj
    return [np.asarray(r @ proj) - offset for r in runs]


def _standardize(runs):
    """z-score every column over all runs together (spaces on one scale for ridge)."""
    stacked = np.concatenate(runs)
    mean, std = stacked.mean(0), stacked.std(0)
    std = np.where(std > 0, std, 1.0)
    return [(r - mean) / std for r in runs]


def _space_rng(random_state, name):
    """Random generator of one space's null: an int seed gives every space its own stream, so
    a space's result does not depend on the other spaces of the call."""
    if isinstance(random_state, (int, np.integer)):
        return np.random.default_rng([int(random_state), zlib.crc32(name.encode())])
    return np.random.default_rng(random_state)            # a Generator is shared; None: fresh entropy


@fill_doc
def encoding_scores(eeg_runs, spaces, *, sfreq, subject="", ch_names=None, channels=None, tmin=0.0,
                    tmax=0.5, alphas=DEFAULT_ALPHAS, n_null=100, model="", layer=-1, random_state=None):
    """Cross-validated prediction r of each feature space, with a circular-shift null.

    Parameters
    ----------
    eeg_runs : list of array, each (n_times_i, n_channels)
        EEG of one subject, run by run (at least 2 runs).
    spaces : dict of str -> list of array
        Per feature space its design of each run, (n_times_i, n_dims) (1-D allowed);
        columns are z-scored over the runs.
    %(sfreq)s
    subject : str
        Subject label in the table.
    ch_names : list of str | None
        Names of the EEG columns.
    channels : str | int | list | None
        Channels modelled (default all).
    tmin, tmax : float
        Lag window, s.
    alphas : sequence of float
        Candidate penalties (engine scale), chosen by leave-one-run-out CV per space.
    n_null : int
        Circular shifts of the EEG for the null. Default 100.
    model : str
    layer : int
        Labels in the table.
    %(random_state)s
        An int seeds each space's null on its own (from the seed and the space's name).

    Returns
    -------
    scores : pandas.DataFrame
        One row per (subject, feature space, channel); columns :data:`SCORE_COLUMNS`.
    """
    eeg_runs = [np.asarray(y, dtype=np.float64) for y in eeg_runs]
    if len(eeg_runs) < 2:
        raise InputError(f"Cross-validation needs at least 2 runs, got {len(eeg_runs)}.")
    ch_idx, names = resolve_channels(channels, ch_names, eeg_runs[0].shape[1])
    eeg_runs = [y[:, ch_idx] for y in eeg_runs]
    spaces = _check_spaces(spaces, eeg_runs)
    frames = []
    for name, runs in spaces.items():
        runs = _standardize(runs)
        trf = TRF(tmin, tmax, sfreq, alpha=list(alphas)).fit(runs, eeg_runs)
        best = float(trf.alpha_[0])
        null = permutation_null(runs, eeg_runs, tmin, tmax, sfreq, alpha=best, kind="shift",
                                n_permutations=n_null, random_state=_space_rng(random_state, name))
        frames.append(pd.DataFrame({
            "subject": subject, "model": model, "layer": layer, "feature_space": name,
            "n_dims": runs[0].shape[1], "channel": names, "r": null.observed, "alpha": best,
            "null_mean": null.null.mean(axis=0),
            "pval": stats.empirical_pvalue(null.observed, null.null), "n_null": null.null.shape[0],
        }))
    return pd.concat(frames, ignore_index=True)[list(SCORE_COLUMNS)]


@fill_doc
def variance_partition(eeg_runs, spaces, *, sfreq, subject="", ch_names=None, channels=None, tmin=0.0,
                       tmax=0.5, alphas=DEFAULT_ALPHAS, search="gradient", n_iter=20, model="", layer=-1,
                       random_state=None):
    """Banded ridge over several feature spaces; held-out split r^2 of each band.

    Leave-one-run-out: a :class:`~sae_eeg.trf.banded.BandedTRF` (one penalty per
    band, found by inner cross-validation) is fitted on the
    other runs, and the held-out run's r^2 is split over the bands (himalaya's
    ``r2_score_split``); the splits are averaged over held-out runs. A band's split is
    its share of the explained variance: a space that adds nothing beyond the others
    gets about zero.

    Parameters
    ----------
    eeg_runs : list of array, each (n_times_i, n_channels)
        EEG of one subject (at least 3 runs: inner CV needs 2 training runs).
    spaces : dict of str -> list of array
        Feature spaces (bands), in band order.
    %(sfreq)s
    subject, ch_names, channels, tmin, tmax, alphas, model, layer
        As in :func:`encoding_scores`.
    search : 'gradient' | 'random'
        Search of the band penalties (:class:`~sae_eeg.trf.banded.BandedTRF`).
    n_iter : int
        Gradient steps at most, or candidates of the random search. Default 20.
    %(random_state)s

    Returns
    -------
    split : pandas.DataFrame
        One row per (subject, band, channel); columns :data:`SPLIT_COLUMNS`.
    """
    eeg_runs = [np.asarray(y, dtype=np.float64) for y in eeg_runs]
    if len(eeg_runs) < 3:
        raise InputError(f"variance_partition needs at least 3 runs, got {len(eeg_runs)}.")
    ch_idx, names = resolve_channels(channels, ch_names, eeg_runs[0].shape[1])
    eeg_runs = [y[:, ch_idx] for y in eeg_runs]
    spaces = {k: _standardize(v) for k, v in _check_spaces(spaces, eeg_runs).items()}
    bands = [v[0].shape[1] for v in spaces.values()]
    joint = [np.concatenate([spaces[k][i] for k in spaces], axis=1) for i in range(len(eeg_runs))]
    seed = np.random.default_rng(random_state).integers(2**31 - 1)
    splits, band_alphas = [], []
    for held in range(len(eeg_runs)):
        train = [i for i in range(len(eeg_runs)) if i != held]
        model_b = BandedTRF(tmin, tmax, sfreq, bands=bands, alpha=list(alphas), search=search, n_iter=n_iter,
                            random_state=int(seed) + held, scoring="r2")
        model_b.fit([joint[i] for i in train], [eeg_runs[i] for i in train])
        splits.append(model_b.score_split([joint[held]], [eeg_runs[held]]))
        band_alphas.append(model_b.band_alphas_)
    split_BC = np.mean(splits, axis=0)
    band_alpha = np.exp(np.mean(np.log(band_alphas), axis=0))
    rows = [{"subject": subject, "model": model, "layer": layer, "band": band, "channel": ch,
             "r2_split": float(split_BC[b, c]), "r2_joint": float(split_BC[:, c].sum()),
             "band_alpha": float(band_alpha[b])}
            for b, band in enumerate(spaces) for c, ch in enumerate(names)]
    return pd.DataFrame(rows)[list(SPLIT_COLUMNS)]


def layer_curves(scores):
    """Layer-wise prediction curves: mean, s.e.m. and n of r over subjects.

    Parameters
    ----------
    scores : pandas.DataFrame
        Concatenated :func:`encoding_scores` tables (several layers / spaces).

    Returns
    -------
    curves : pandas.DataFrame
        One row per (model, feature_space, layer): ``r_mean``, ``r_sem``,
        ``n_subjects`` (r first averaged over channels within subject).
    """
    per_subject = scores.groupby(["model", "feature_space", "layer", "subject"], as_index=False)["r"].mean()
    g = per_subject.groupby(["model", "feature_space", "layer"])["r"]
    out = g.agg(r_mean="mean", r_sem="sem", n_subjects="count").reset_index()
    return out


@dataclasses.dataclass(frozen=True)
class GroupEncodingStats:
    """Outcome of :func:`group_encoding_stats`.

    Attributes
    ----------
    tests : pandas.DataFrame
        One row per (model, feature_space, layer): ``n_subjects``, ``r_mean``, ``t``,
        ``pval`` (one-sided r > 0 across subjects, r averaged over channels),
        ``pval_holm``, ``pval_fdr_bh``, ``significant``, ``n_channels_maxt``
        (channels with max-T corrected p < 0.05), ``min_pval_maxt``.
    mixed : pandas.DataFrame
        :func:`sae_eeg.stats.mixed_model` of ``r ~ feature_space * layer + (1 | subject)``
        on channel-averaged r; a factor with a single level is dropped from the
        formula. Empty with fewer than 2 subjects or with one space and one layer
        (one row per subject: the random intercept is not identifiable, and the
        t-test in ``tests`` is the whole answer).
    """

    tests: pd.DataFrame
    mixed: pd.DataFrame


@fill_doc
def group_encoding_stats(scores, *, correction="holm", n_perm=5000, random_state=None):
    """Group tests of prediction r: t-tests with Holm/FDR, max-T over channels, mixed model.

    Parameters
    ----------
    scores : pandas.DataFrame
        Concatenated :func:`encoding_scores` tables of several subjects (and layers).
    correction : str
        Correction of the per-(space, layer) t-tests: ``"holm"`` or ``"fdr_bh"``
        (both are reported; this one decides ``significant``). Default ``"holm"``.
    n_perm : int
        Sign flips of nilearn's ``permuted_ols`` (max-T over channels).
    %(random_state)s

    Returns
    -------
    result : GroupEncodingStats
    """
    _check_option("correction", correction, ("holm", "fdr_bh"))
    rng = np.random.default_rng(random_state)
    rows = []
    for (model, space, layer), g in scores.groupby(["model", "feature_space", "layer"], sort=True):
        wide = g.pivot_table(index="subject", columns="channel", values="r")
        res = stats.one_sample_ttest(wide.mean(axis=1).to_numpy(), alternative="greater") \
            if len(wide) >= 2 else None
        maxt = stats.permuted_ols_maxt(wide.to_numpy(), n_perm=n_perm, random_state=rng) \
            if len(wide) >= 3 else None
        rows.append({
            "model": model, "feature_space": space, "layer": layer, "n_subjects": len(wide),
            "r_mean": float(wide.to_numpy().mean()),
            "t": float(res.t) if res else np.nan, "pval": float(res.pvals) if res else np.nan,
            "n_channels_maxt": int((maxt.pvals < 0.05).sum()) if maxt else 0,
            "min_pval_maxt": float(maxt.pvals.min()) if maxt else np.nan,
        })
    tests = pd.DataFrame(rows)
    for method in ("holm", "fdr_bh"):
        tests[f"pval_{method}"] = stats.correct_pvalues(tests["pval"].to_numpy(), method=method).pvals
    tests["significant"] = tests[f"pval_{correction}"] < 0.05
    per_subject = scores.groupby(["subject", "feature_space", "layer"], as_index=False)["r"].mean()
    terms = [t for t in ("feature_space", "layer") if per_subject[t].nunique() > 1]
    mixed = pd.DataFrame()
    if terms and per_subject["subject"].nunique() >= 2:    # one row per subject: the t-test above says it all
        mixed = stats.mixed_model(per_subject, formula="r ~ " + " * ".join(terms), groups="subject")
    return GroupEncodingStats(tests, mixed)

"""Group statistics: multiple comparisons, t-tests, permutation and cluster tests, mixed models.

Everything here works on plain arrays and pandas tables; nothing knows about TRFs,
SAEs or EEG files. The module wraps the reference implementations of the field:
``statsmodels`` (``multipletests``, ``MixedLM``), ``scipy.stats`` (t-tests),
``nilearn`` (``permuted_ols``, max-T over many targets) and MNE-Python
(spatio-temporal cluster permutation test with a channel adjacency).

Conventions
-----------
- Subjects are on the first axis of every group array (``values_S...``).
- One-sided tests take ``alternative="greater"`` (effect > 0) or ``"less"``
  (effect < 0); ``"two-sided"`` tests both.
- Empirical p-values use the ``+1`` correction, ``(1 + #{null >= obs}) / (1 + n_null)``,
  so they are never 0 and are valid (Phipson & Smyth 2010).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings

import mne
import numpy as np
import pandas as pd
import scipy.stats
import statsmodels.formula.api as smf
from nilearn.mass_univariate import permuted_ols
from scipy import sparse
from statsmodels.stats.multitest import multipletests
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from ._check import _check_option, _check_range, _ensure_int, _validate_type
from ._docs import fill_doc
from .errors import InputError

logger = logging.getLogger(__name__)

#: Multiple-comparison methods: public name -> statsmodels ``multipletests`` name.
CORRECTIONS = {"holm": "holm", "fdr_bh": "fdr_bh", "bonferroni": "bonferroni", "none": None}
ALTERNATIVES = ("greater", "less", "two-sided")


def _as_float_array(values, name, *, min_ndim=1):
    arr = np.asarray(values, dtype=float)
    if arr.ndim < min_ndim:
        raise InputError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}.")
    return arr


@dataclasses.dataclass(frozen=True)
class CorrectedPValues:
    """Result of :func:`correct_pvalues`.

    Attributes
    ----------
    reject : ndarray of bool, shape like the input
        True where the null hypothesis is rejected at ``alpha`` (False for NaN p-values).
    pvals : ndarray of float, shape like the input
        Adjusted p-values (NaN where the input was NaN).
    method : str
        The correction used.
    alpha : float
        The family-wise error rate (Holm, Bonferroni) or false discovery rate (FDR-BH).
    """

    reject: np.ndarray
    pvals: np.ndarray
    method: str
    alpha: float


def correct_pvalues(pvals, *, method="holm", alpha=0.05):
    """Correct p-values for multiple comparisons over the whole array.

    Parameters
    ----------
    pvals : array-like, any shape
        Uncorrected p-values in [0, 1]. NaN entries (tests that were not run) are
        left out of the family and never rejected.
    method : str
        ``"holm"`` (Holm-Bonferroni step-down, family-wise error), ``"fdr_bh"``
        (Benjamini-Hochberg false discovery rate), ``"bonferroni"`` or ``"none"``.
        Default ``"holm"``.
    alpha : float
        Error rate to control, in (0, 1). Default 0.05.

    Returns
    -------
    result : CorrectedPValues
        ``reject`` and adjusted ``pvals`` in the input's shape.

    Raises
    ------
    InputError
        Unknown ``method``, ``alpha`` out of range, or p-values outside [0, 1].
    """
    _check_option("method", method, CORRECTIONS)
    _check_range("alpha", alpha, 0, 1, low_inclusive=False, high_inclusive=False)
    p = np.asarray(pvals, dtype=float)
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        bad = float(p[finite][(p[finite] < 0) | (p[finite] > 1)][0])
        raise InputError(f"pvals must lie in [0, 1], got {bad!r}.")
    reject = np.zeros(p.shape, dtype=bool)
    adjusted = np.full(p.shape, np.nan)
    if finite.any():
        if method == "none":
            rej, adj = p[finite] <= alpha, p[finite]
        else:
            rej, adj, _, _ = multipletests(p[finite], alpha=alpha, method=CORRECTIONS[method])
        reject[finite], adjusted[finite] = rej, adj
    return CorrectedPValues(reject=reject, pvals=adjusted, method=method, alpha=float(alpha))


@dataclasses.dataclass(frozen=True)
class TTestResult:
    """Result of :func:`one_sample_ttest`; arrays have the input's shape without the subject axis.

    Attributes
    ----------
    t : ndarray
        t statistics.
    pvals : ndarray
        Uncorrected p-values for ``alternative``.
    mean : ndarray
        Mean over subjects.
    df : int
        Degrees of freedom (subjects - 1).
    alternative : str
    """

    t: np.ndarray
    pvals: np.ndarray
    mean: np.ndarray
    df: int
    alternative: str


def one_sample_ttest(values, *, popmean=0.0, alternative="greater"):
    """One-sample t-test across subjects (axis 0), for every other entry at once.

    Parameters
    ----------
    values : array-like, shape (n_subjects, ...)
        One value per subject (e.g. a TRF weight or a prediction r) for each test.
    popmean : float
        Mean under the null hypothesis. Default 0.
    alternative : str
        ``"greater"`` (one-sided, mean > popmean; default), ``"less"`` or ``"two-sided"``.

    Returns
    -------
    result : TTestResult

    Raises
    ------
    InputError
        Fewer than 2 subjects or an unknown ``alternative``.
    """
    _check_option("alternative", alternative, ALTERNATIVES)
    x = _as_float_array(values, "values")
    if x.shape[0] < 2:
        raise InputError(f"values needs at least 2 subjects on axis 0, got shape {x.shape}.")
    res = scipy.stats.ttest_1samp(x, popmean, axis=0, alternative=alternative)
    return TTestResult(
        t=np.asarray(res.statistic, dtype=float), pvals=np.asarray(res.pvalue, dtype=float),
        mean=x.mean(axis=0), df=x.shape[0] - 1, alternative=alternative,
    )


def empirical_pvalue(observed, null, *, alternative="greater"):
    """Empirical p-value of observed statistics against a null distribution.

    Parameters
    ----------
    observed : array-like, shape (...)
        Observed statistics.
    null : array-like, shape (n_null, ...)
        Null statistics (e.g. from circular shifts), the first axis indexing draws;
        the other axes broadcast against ``observed``.
    alternative : str
        ``"greater"`` (default): large values are extreme; ``"less"``; ``"two-sided"``:
        absolute values are compared.

    Returns
    -------
    pvals : ndarray, shape of ``observed``
        ``(1 + #{null as or more extreme}) / (1 + n_null)``, in (0, 1].

    Raises
    ------
    InputError
        Empty null, or an unknown ``alternative``.
    """
    _check_option("alternative", alternative, ALTERNATIVES)
    obs = np.asarray(observed, dtype=float)
    null = _as_float_array(null, "null")
    if null.shape[0] == 0:
        raise InputError("null must hold at least one draw on axis 0, got shape (0, ...).")
    if alternative == "less":
        obs, null = -obs, -null
    elif alternative == "two-sided":
        obs, null = np.abs(obs), np.abs(null)
    count = np.sum(null >= obs[None], axis=0)
    return (1.0 + count) / (1.0 + null.shape[0])


def mixed_model(table, *, formula="r ~ feature_space * layer", groups="subject", reml=True):
    """Linear mixed model with a random intercept per group (statsmodels ``MixedLM``).

    The default is the group model of prediction accuracies,
    ``r ~ feature_space * layer + (1 | subject)``. Categorical columns
    (object/category dtype) enter as treatment contrasts; wrap a numeric column in
    ``C(...)`` in the formula to treat it as categorical.

    Parameters
    ----------
    table : pandas.DataFrame
        Long table with the columns used in ``formula`` and ``groups``.
    formula : str
        Fixed-effects formula (patsy syntax). Default ``"r ~ feature_space * layer"``.
    groups : str
        Column of the random-intercept grouping. Default ``"subject"``.
    reml : bool
        Restricted maximum likelihood (default True).

    Returns
    -------
    coefficients : pandas.DataFrame
        One row per fixed effect, columns ``term``, ``estimate``, ``se``, ``z``,
        ``pval``, ``ci_low``, ``ci_high`` (95 %), plus a row ``term="Group Var"``
        with the random-intercept variance (NaN test columns). ``attrs`` holds
        ``formula``, ``groups``, ``n_obs``, ``n_groups``, ``converged``,
        ``loglike`` and ``warnings`` (statsmodels convergence messages, also logged).

    Raises
    ------
    InputError
        ``table`` is not a DataFrame, ``groups`` is missing, or fewer than 2 groups.
    """
    _validate_type(table, pd.DataFrame, "table")
    _validate_type(formula, str, "formula")
    if groups not in table.columns:
        raise InputError(f"groups column {groups!r} not in table; columns are {list(table.columns)}.")
    n_groups = table[groups].nunique()
    if n_groups < 2:
        raise InputError(f"mixed_model needs at least 2 groups in {groups!r}, got {n_groups}.")
    model = smf.mixedlm(formula, table, groups=table[groups])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        fit = model.fit(reml=reml)
    for w in caught:
        logger.info("mixed_model (%s): %s", formula, w.message)
    ci = fit.conf_int()
    names = list(fit.params.index)
    out = pd.DataFrame({
        "term": names,
        "estimate": fit.params.to_numpy(),
        "se": fit.bse.reindex(names).to_numpy(),
        "z": fit.tvalues.reindex(names).to_numpy(),
        "pval": fit.pvalues.reindex(names).to_numpy(),
        "ci_low": ci.iloc[:, 0].reindex(names).to_numpy(),
        "ci_high": ci.iloc[:, 1].reindex(names).to_numpy(),
    })
    is_var = out["term"].eq("Group Var")
    out.loc[is_var, ["se", "z", "pval", "ci_low", "ci_high"]] = np.nan
    out.attrs.update(formula=formula, groups=groups, n_obs=int(fit.nobs), n_groups=int(n_groups),
                     converged=bool(fit.converged), loglike=float(fit.llf),
                     warnings=[str(w.message) for w in caught])
    return out


@dataclasses.dataclass(frozen=True)
class MaxTResult:
    """Result of :func:`permuted_ols_maxt`; arrays have the input's shape without the subject axis.

    Attributes
    ----------
    t : ndarray
        t statistics of the tested effect.
    pvals : ndarray
        Family-wise corrected p-values (max-T over all targets).
    h0_max_t : ndarray, shape (n_perm,)
        Null distribution of the maximum t statistic.
    """

    t: np.ndarray
    pvals: np.ndarray
    h0_max_t: np.ndarray


@fill_doc
def permuted_ols_maxt(values, *, regressor=None, n_perm=10000, alternative="greater",
                      random_state=None, n_jobs=1):
    """Mass-univariate group test with max-T family-wise correction (nilearn ``permuted_ols``).

    Without ``regressor`` this is a one-sample test of the mean across subjects
    by sign flipping; with one it tests that regressor's slope (permuting rows, the
    Freedman-Lane scheme, with an intercept as confound).

    Parameters
    ----------
    values : array-like, shape (n_subjects, ...)
        One value per subject for each target (features, channels, lags: any shape).
    regressor : array-like, shape (n_subjects,) | None
        Subject-level regressor to test; None (default) tests the mean.
    n_perm : int
        Number of permutations / sign flips. Default 10000.
    alternative : str
        ``"greater"`` (default) or ``"two-sided"``. For ``"less"``, negate ``values``.
    %(random_state)s
    n_jobs : int
        Workers of nilearn (CPU processes). Default 1.

    Returns
    -------
    result : MaxTResult

    Raises
    ------
    InputError
        Fewer than 3 subjects, a regressor of the wrong length, or ``alternative="less"``.
    """
    _check_option("alternative", alternative, ("greater", "two-sided"),
                  extra=" (negate the values to test for negative effects)")
    n_perm = _ensure_int(n_perm, "n_perm")
    _check_range("n_perm", n_perm, 1)
    x = _as_float_array(values, "values")
    if x.shape[0] < 3:
        raise InputError(f"values needs at least 3 subjects on axis 0, got shape {x.shape}.")
    target_SN = x.reshape(x.shape[0], -1)
    if regressor is None:
        tested = np.ones((x.shape[0], 1))
        intercept = False
    else:
        tested = np.asarray(regressor, dtype=float).reshape(-1, 1)
        if tested.shape[0] != x.shape[0]:
            raise InputError(f"regressor must have {x.shape[0]} values (one per subject), "
                             f"got {tested.shape[0]}.")
        intercept = True
    seed = random_state
    if isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(2**31 - 1))
    out = permuted_ols(
        tested, np.ascontiguousarray(target_SN), model_intercept=intercept, n_perm=n_perm,
        two_sided_test=alternative == "two-sided", random_state=seed, n_jobs=n_jobs,
        verbose=0, output_type="dict",
    )
    return MaxTResult(t=out["t"][0].reshape(x.shape[1:]),
                      pvals=(10.0 ** -out["logp_max_t"][0]).reshape(x.shape[1:]),
                      h0_max_t=np.asarray(out["h0_max_t"][0]))


def channel_adjacency(info_or_montage, ch_names=None):
    """Channel adjacency (sparse, C x C) of an EEG montage, from its sensor positions.

    Parameters
    ----------
    info_or_montage : mne.Info | mne.channels.DigMontage | str
        Measurement info with positions, a montage, or the name of a built-in MNE
        montage (e.g. ``"standard_1020"``, ``"biosemi64"``).
    ch_names : list of str | None
        Channels, in the order of the data. Required for a montage (the montage's
        own channel order otherwise); for an Info, a subset picked in this order.

    Returns
    -------
    adjacency : scipy.sparse.csr_array, shape (n_channels, n_channels)
        True where two channels are neighbours (MNE ``find_ch_adjacency``: Delaunay
        triangulation of the 2-D sensor layout, or the built-in neighbour template
        when MNE has one for the montage).

    Raises
    ------
    InputError
        A channel missing from the montage/Info, or a wrong type.
    """
    _validate_type(info_or_montage, (mne.Info, mne.channels.DigMontage, str), "info_or_montage")
    if isinstance(info_or_montage, mne.Info):
        info = info_or_montage
    else:
        montage = info_or_montage
        if isinstance(montage, str):
            montage = mne.channels.make_standard_montage(montage)
        names = list(montage.ch_names) if ch_names is None else list(ch_names)
        missing = [c for c in names if c not in montage.ch_names]
        if missing:
            raise InputError(f"Channels {missing} are not in the montage (it has {len(montage.ch_names)} "
                             f"channels, e.g. {montage.ch_names[:5]}).")
        info = mne.create_info(names, 100.0, "eeg")
        info.set_montage(montage, verbose="error")
    if ch_names is not None:
        missing = [c for c in ch_names if c not in info.ch_names]
        if missing:
            raise InputError(f"Channels {missing} are not in the Info (channels: {info.ch_names[:5]}...).")
        info = mne.pick_info(info, [info.ch_names.index(c) for c in ch_names])
    with mne.utils.use_log_level("error"):
        adjacency, _ = mne.channels.find_ch_adjacency(info, ch_type="eeg")
    return sparse.csr_array(adjacency)


@dataclasses.dataclass(frozen=True)
class ClusterResult:
    """Result of :func:`cluster_test`.

    Attributes
    ----------
    t_obs : ndarray, shape (n_lags, n_channels)
        Observed t statistics.
    clusters : list of ndarray of bool, shape (n_lags, n_channels)
        Mask of each cluster.
    pvals : ndarray, shape (n_clusters,)
        Family-wise corrected cluster p-values.
    h0 : ndarray, shape (n_permutations,)
        Null distribution of the maximum cluster mass.
    threshold : float
        Cluster-forming t threshold.
    """

    t_obs: np.ndarray
    clusters: list
    pvals: np.ndarray
    h0: np.ndarray
    threshold: float

    def significant_mask(self, alpha=0.05):
        """Union of the clusters with p < ``alpha``, shape (n_lags, n_channels)."""
        mask = np.zeros(self.t_obs.shape, dtype=bool)
        for cluster, p in zip(self.clusters, self.pvals):
            if p < alpha:
                mask |= cluster
        return mask

    def to_frame(self, *, times=None, ch_names=None):
        """Tidy table: one row per cluster (``cluster``, ``pval``, ``sign``, ``mass``,
        ``n_points``, ``tmin``, ``tmax`` in seconds if ``times`` given else lag
        indices, ``channels`` as a ``;``-joined string)."""
        n_lags, n_ch = self.t_obs.shape
        times = np.arange(n_lags) if times is None else np.asarray(times)
        ch_names = [str(c) for c in range(n_ch)] if ch_names is None else list(ch_names)
        rows = []
        for i, (cluster, p) in enumerate(zip(self.clusters, self.pvals)):
            lag_idx, ch_idx = np.nonzero(cluster)
            mass = float(self.t_obs[cluster].sum())
            rows.append({
                "cluster": i, "pval": float(p), "sign": int(np.sign(mass)), "mass": mass,
                "n_points": int(cluster.sum()), "tmin": float(times[lag_idx.min()]),
                "tmax": float(times[lag_idx.max()]),
                "channels": ";".join(ch_names[c] for c in sorted(set(ch_idx))),
            })
        cols = ["cluster", "pval", "sign", "mass", "n_points", "tmin", "tmax", "channels"]
        return pd.DataFrame(rows, columns=cols)


@fill_doc
def cluster_test(values, adjacency, *, threshold=None, n_permutations=1024, alternative="two-sided",
                 random_state=None, n_jobs=None):
    """Cluster-based permutation test over lags x channels (MNE spatio-temporal, one sample).

    Tests the mean across subjects of e.g. TRF weights against 0, with clusters
    formed over adjacent lags and neighbouring channels and the maximum cluster
    mass as family-wise statistic (sign flipping of subjects).

    Parameters
    ----------
    values : array-like, shape (n_subjects, n_lags, n_channels)
        One value per subject, lag and channel.
    adjacency : scipy.sparse array, shape (n_channels, n_channels)
        Channel neighbours (see :func:`channel_adjacency`).
    threshold : float | None
        Cluster-forming t threshold; None (default) takes the t quantile at p = 0.05
        (two-sided: 0.025 per tail) for n_subjects - 1 degrees of freedom.
    n_permutations : int
        Sign-flip permutations. Default 1024 (all of them when 2**n_subjects is smaller).
    alternative : str
        ``"two-sided"`` (default), ``"greater"`` or ``"less"``.
    %(random_state)s
    n_jobs : int | None
        MNE's parallel workers.

    Returns
    -------
    result : ClusterResult

    Raises
    ------
    InputError
        Wrong shape, or an adjacency that does not match the number of channels.
    """
    _check_option("alternative", alternative, ALTERNATIVES)
    n_permutations = _ensure_int(n_permutations, "n_permutations")
    x = _as_float_array(values, "values", min_ndim=3)
    if x.ndim != 3 or x.shape[0] < 2:
        raise InputError(f"values must have shape (n_subjects >= 2, n_lags, n_channels), got {x.shape}.")
    if adjacency.shape != (x.shape[2], x.shape[2]):
        raise InputError(f"adjacency has shape {adjacency.shape}; it must be "
                         f"({x.shape[2]}, {x.shape[2]}) for {x.shape[2]} channels.")
    tail = {"two-sided": 0, "greater": 1, "less": -1}[alternative]
    df = x.shape[0] - 1
    if threshold is None:
        q = 0.975 if tail == 0 else 0.95
        threshold = float(scipy.stats.t.ppf(q, df)) * (-1 if tail == -1 else 1)
    t_obs, clusters, pvals, h0 = mne.stats.spatio_temporal_cluster_1samp_test(
        x, threshold=threshold, n_permutations=n_permutations, tail=tail, adjacency=adjacency,
        n_jobs=n_jobs, out_type="mask", rng=np.random.default_rng(random_state), verbose="error",
    )
    return ClusterResult(t_obs=np.asarray(t_obs), clusters=[np.asarray(c, dtype=bool) for c in clusters],
                         pvals=np.asarray(pvals, dtype=float), h0=np.asarray(h0), threshold=float(threshold))

"""The analyses built on the TRF engine equal a naive reference (dense design, numpy solves) on fixed data.

Written before the engine's statistics and ridge paths were unified (issue 16) and passing
on the code before it: the protocol, the cluster TRFs, the shift and mismatch nulls, the
bootstrap, the encoding scores and banded ridge give the reference's numbers to 1e-10
(the band penalties found by L-BFGS-B to 1e-6: an optimiser's path), before and after.
"""

import zlib

import numpy as np
import pytest
import scipy.stats
from _alignment_sim import SFREQ, make_study
from _trf_reference import banded_gradient_search, cv_scores, design, loo, ridge, used_rows

from sae_eeg import stats
from sae_eeg.alignment import paper_protocol
from sae_eeg.alignment.channels import feature_cluster_test
from sae_eeg.alignment.encoding import encoding_scores, variance_partition
from sae_eeg.trf import BandedTRF, bootstrap_coef, permutation_null, times_to_lags

ATOL = 1e-10


def _holm(p):
    """Holm-Bonferroni adjusted p-values of a flat array."""
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


@pytest.fixture(scope="module")
def study():
    return make_study(n_subjects=4, n_runs=4, run_s=20.0, n_features=5, planted=(0,), n_channels=3, seed=7)


def test_protocol_equals_naive_reference(study):
    data, _ = study
    lags = times_to_lags(0.0, 0.5, SFREQ)
    channels, alpha, n_dev = [0, 2], 3.0, 2
    res = paper_protocol(data, sfreq=SFREQ, channels=channels, alpha=alpha, min_rate=0.0,
                         n_features=None, n_dev_runs=n_dev)
    subjects = list(data)
    stimuli = {id(f): f for runs in data.values() for _, f in runs}
    maxima = np.max([f.toarray().max(0) for f in stimuli.values()], axis=0)
    n_feat = len(maxima)
    W = {}
    for split, runs_of in (("dev", lambda r: r[:n_dev]), ("test", lambda r: r[n_dev:])):
        W[split] = np.zeros((len(subjects), n_feat, len(channels), len(lags)))     # (S, F, C, L)
        for s, subject in enumerate(subjects):
            runs = runs_of(data[subject])
            for f in range(n_feat):
                w, _ = ridge([feats[:, [f]].toarray() / maxima[f] for _, feats in runs],
                             [eeg[:, channels] for eeg, _ in runs], lags, alpha)
                W[split][s, f] = w.T
    tidy = res.trf_frame("dev").set_index(["subject", "feature", "channel", "lag"]).weight
    s, f, c, l_ = np.meshgrid(*(np.arange(n) for n in W["dev"].shape), indexing="ij")
    keys = list(zip(np.asarray(subjects)[s.ravel()], f.ravel(), np.asarray(channels).astype(str)[c.ravel()],
                    (lags / SFREQ)[l_.ravel()]))
    np.testing.assert_allclose(tidy.loc[keys].to_numpy(), W["dev"].ravel(), rtol=0, atol=ATOL)
    # the group stage on the reference weights: lags of the group-mean development extrema, t-tests, Holm
    group_dev = W["dev"].mean(axis=0)
    expected, pvals = [], []
    for sign, arg, alternative in (("negative", np.argmin, "less"), ("positive", np.argmax, "greater")):
        idx = arg(group_dev, axis=-1)
        values = np.take_along_axis(W["test"], np.broadcast_to(idx, W["test"].shape[:-1])[..., None], -1)[..., 0]
        t = scipy.stats.ttest_1samp(values, 0.0, axis=0, alternative=alternative)
        for f in range(n_feat):
            for c, ch in enumerate(channels):
                expected.append({"feature": f, "channel": str(ch), "sign": sign, "lag": lags[idx[f, c]] / SFREQ,
                                 "dev_value": group_dev[f, c, idx[f, c]], "mean": values[:, f, c].mean(),
                                 "t": t.statistic[f, c], "pval": t.pvalue[f, c]})
                pvals.append(t.pvalue[f, c])
    got = res.features.set_index(["feature", "channel", "sign"])
    for row, p_holm in zip(expected, _holm(np.array(pvals))):
        have = got.loc[(row["feature"], row["channel"], row["sign"])]
        assert have.lag == row["lag"]
        np.testing.assert_allclose([have.dev_value, have["mean"]], [row["dev_value"], row["mean"]], atol=ATOL)
        np.testing.assert_allclose([have.t, have.pval, have.pval_corrected], [row["t"], row["pval"], p_holm],
                                   rtol=1e-8)


def test_cluster_trfs_equal_naive_reference(study):
    data, _ = study
    names = [str(i) for i in range(3)]
    adjacency = np.ones((3, 3)) - np.eye(3)
    from scipy import sparse

    res = feature_cluster_test(data, sfreq=SFREQ, ch_names=names, adjacency=sparse.csr_array(adjacency),
                               columns=[0, 3], tmax=0.3, alpha=2.0, n_permutations=16, random_state=0)
    lags = times_to_lags(0.0, 0.3, SFREQ)
    for j, f in enumerate([0, 3]):
        W = np.stack([ridge([feats[:, [f]].toarray() for _, feats in runs], [eeg for eeg, _ in runs], lags, 2.0)[0]
                      for runs in data.values()])                             # (S, L, C)
        t = scipy.stats.ttest_1samp(W, 0.0, axis=0).statistic
        np.testing.assert_allclose(res.t_obs[j], t, rtol=1e-8, atol=1e-8)


def _noise_trials(rng, n_trials, n_times=150, n_feat=2, n_out=2):
    X = [rng.standard_normal((n_times, n_feat)) + 0.3 for _ in range(n_trials)]
    Y = [rng.standard_normal((n_times, n_out)) + 1.0 for _ in range(n_trials)]
    return X, Y


@pytest.mark.parametrize("edge", ["zero", "valid"])
def test_shift_null_equals_naive_reference(rng, edge):
    X, Y = _noise_trials(rng, 4)
    lags = times_to_lags(-0.02, 0.03, 100.0)
    res = permutation_null(X, Y, -0.02, 0.03, 100.0, alpha=4.0, kind="shift", n_permutations=5, edge=edge,
                           random_state=3)
    # the documented draw: one uniform fraction per sample, the same relative shift in every trial
    lo = int(np.ceil(0.05 * 100.0)) + 1
    fracs = np.random.default_rng(3).uniform(size=5)
    shifts = np.stack([lo + (fracs * (len(x) - 2 * lo + 1)).astype(np.int64) for x in X], axis=1)
    np.testing.assert_array_equal(res.permutations, shifts)
    folds = loo(4)
    observed = cv_scores(X, Y, lags, 4.0, folds, edge).mean(0)
    np.testing.assert_allclose(res.observed, observed, rtol=0, atol=ATOL)
    for k in range(5):
        rolled = [np.roll(y, -s, axis=0) for y, s in zip(Y, shifts[k])]
        np.testing.assert_allclose(res.null[k], cv_scores(X, rolled, lags, 4.0, folds, edge).mean(0),
                                   rtol=0, atol=ATOL)
    np.testing.assert_allclose(res.pvalues, (1 + (res.null >= observed).sum(0)) / 6)


def test_mismatch_null_equals_naive_reference(rng):
    X, Y = _noise_trials(rng, 4)
    lags = times_to_lags(0.0, 0.04, 100.0)
    res = permutation_null(X, Y, 0.0, 0.04, 100.0, alpha=2.0, kind="mismatch", n_permutations=3, scoring="r2",
                           cv=2, random_state=5)
    draw = np.random.default_rng(5)
    folds = [[0, 1], [2, 3]]
    for k in range(3):
        perm = draw.permutation(4)
        while np.any(perm == np.arange(4)):
            perm = draw.permutation(4)
        np.testing.assert_array_equal(res.permutations[k], perm)
        expected = cv_scores(X, [Y[j] for j in perm], lags, 2.0, folds, scoring="r2").mean(0)
        np.testing.assert_allclose(res.null[k], expected, rtol=0, atol=ATOL)


def test_bootstrap_equals_naive_reference(rng):
    X, Y = _noise_trials(rng, 5, n_times=80)
    lo, hi = bootstrap_coef(X, Y, -0.01, 0.02, 100.0, alpha=3.0, n_boot=12, ci=0.8, random_state=2)
    lags = times_to_lags(-0.01, 0.02, 100.0)
    draw = np.random.default_rng(2)
    coefs = []
    for _ in range(12):
        pick = draw.integers(0, 5, 5)
        W, _ = ridge([X[i] for i in pick], [Y[i] for i in pick], lags, 3.0)
        coefs.append(W.reshape(len(lags), 2, 2).transpose(2, 1, 0))          # (outputs, features, lags)
    np.testing.assert_allclose(lo, np.quantile(coefs, 0.1, axis=0), rtol=0, atol=ATOL)
    np.testing.assert_allclose(hi, np.quantile(coefs, 0.9, axis=0), rtol=0, atol=ATOL)


def test_encoding_scores_equal_naive_reference(study):
    data, truth = study
    runs = data["s02"]
    eeg = [e[:, :2] for e, _ in runs]
    spaces = {"sae": [f[:, :3].toarray() for _, f in runs], "envelope": truth["envelope"]}
    alphas = (1.0, 100.0, 1e4)
    table = encoding_scores([e for e, _ in runs], spaces, sfreq=SFREQ, channels=[0, 1], tmax=0.25,
                            alphas=alphas, n_null=4, random_state=9).set_index(["feature_space", "channel"])
    lags = times_to_lags(0.0, 0.25, SFREQ)
    for name, space in spaces.items():
        x = [np.asarray(a, dtype=float).reshape(len(a), -1) for a in space]
        stacked = np.concatenate(x)
        sd = np.where(stacked.std(0) > 0, stacked.std(0), 1.0)
        x = [(a - stacked.mean(0)) / sd for a in x]
        folds = loo(len(x))
        grid = [cv_scores(x, eeg, lags, a, folds).mean(0) for a in alphas]
        best = alphas[int(np.argmax([g.mean() for g in grid]))]
        draw = np.random.default_rng([9, zlib.crc32(name.encode())])
        lo = int(np.ceil(0.25 * SFREQ)) + 1
        fracs = draw.uniform(size=4)
        null = [cv_scores(x, [np.roll(e, -int(lo + f * (len(e) - 2 * lo + 1)), axis=0) for e in eeg], lags, best,
                          folds).mean(0) for f in fracs]
        observed = cv_scores(x, eeg, lags, best, folds).mean(0)
        got = table.loc[name].loc[["0", "1"]]
        np.testing.assert_allclose(got.r, observed, rtol=0, atol=ATOL)
        np.testing.assert_allclose(got.alpha, best)
        np.testing.assert_allclose(got.null_mean, np.mean(null, axis=0), rtol=0, atol=ATOL)
        np.testing.assert_allclose(got.pval, stats.empirical_pvalue(observed, np.array(null)))


def _band_data(rng, n_trials=4, n_times=200):
    lags = np.arange(0, 4)
    X = [rng.standard_normal((n_times, 5)) for _ in range(n_trials)]
    kernel = rng.standard_normal((8, 2))
    Y = [design(x[:, :2], lags) @ kernel + 1.5 * rng.standard_normal((n_times, 2)) + 0.5 for x in X]
    return X, Y, lags


def test_banded_random_search_equals_naive_reference(rng):
    X, Y, lags = _band_data(rng)
    alphas = [0.1, 10.0, 1e3]
    model = BandedTRF(0.0, 0.03, 100.0, bands=[2, 3], alpha=alphas, search="random", n_iter=4,
                      random_state=1).fit(X, Y)
    draw = np.random.default_rng(1)
    gammas = np.maximum(np.vstack([[0.5, 0.5], draw.dirichlet([1.0, 1.0], size=3)]), 1e-9)
    column_band = np.tile(np.repeat([0, 1], [2, 3]), len(lags))
    scores = np.array([[cv_scores(X, Y, lags, a * 2 * g[column_band], loo(4)).mean(0) for a in alphas]
                       for g in gammas])                                        # (candidates, alphas, outputs)
    np.testing.assert_allclose(model.cv_scores_, scores, rtol=0, atol=ATOL)
    best = int(np.argmax(scores.mean(-1).ravel()))
    band_alphas = alphas[best % 3] * 2 * gammas[best // 3]
    np.testing.assert_allclose(model.band_alphas_, band_alphas, rtol=1e-12)
    W, b = ridge(X, Y, lags, band_alphas[column_band])
    np.testing.assert_allclose(model.coef_, W.reshape(len(lags), 5, 2).transpose(2, 1, 0), rtol=0, atol=ATOL)
    np.testing.assert_allclose(model.intercept_, b, rtol=0, atol=ATOL)


@pytest.mark.parametrize("scoring", ["pearson", "mse"])
def test_banded_gradient_search_equals_naive_reference(rng, scoring):
    X, Y, lags = _band_data(rng)
    alphas = [1.0, 100.0]
    model = BandedTRF(0.0, 0.03, 100.0, bands=[2, 3], alpha=alphas, n_iter=6, scoring=scoring).fit(X, Y)
    band_alphas, best_score = banded_gradient_search(X, Y, lags, [2, 3], alphas, 6, scoring)
    np.testing.assert_allclose(model.band_alphas_, band_alphas, rtol=1e-6)
    assert model.cv_score_ == pytest.approx(best_score, rel=1e-8)
    column_band = np.tile(np.repeat([0, 1], [2, 3]), len(lags))
    expected = cv_scores(X, Y, lags, model.band_alphas_[column_band], loo(4), scoring=scoring).mean()
    assert model.cv_score_ == pytest.approx(expected, rel=1e-10, abs=ATOL)
    W, b = ridge(X, Y, lags, model.band_alphas_[column_band])
    np.testing.assert_allclose(model.coef_, W.reshape(len(lags), 5, 2).transpose(2, 1, 0), rtol=0, atol=ATOL)


def test_variance_partition_equals_naive_reference(study):
    data, truth = study
    runs = data["s01"]
    eeg = [e[:, [0]] for e, _ in runs]
    spaces = {"sae": [f[:, :2].toarray() for _, f in runs], "envelope": truth["envelope"]}
    table = variance_partition([e for e, _ in runs], spaces, sfreq=SFREQ, channels=[0], tmax=0.1,
                               alphas=(1.0, 100.0), n_iter=3).set_index("band")
    lags = times_to_lags(0.0, 0.1, SFREQ)
    joint = []
    for name, space in spaces.items():
        x = [np.asarray(a, dtype=float).reshape(len(a), -1) for a in space]
        stacked = np.concatenate(x)
        joint.append([(a - stacked.mean(0)) / stacked.std(0) for a in x])
    joint = [np.concatenate(parts, axis=1) for parts in zip(*joint)]
    splits = []
    for held in range(len(joint)):
        train = [i for i in range(len(joint)) if i != held]
        pen, _ = banded_gradient_search([joint[i] for i in train], [eeg[i] for i in train], lags, [2, 1],
                                        [1.0, 100.0], 3, "r2")
        W, b = ridge([joint[i] for i in train], [eeg[i] for i in train], lags, np.tile(pen[[0, 0, 1]], len(lags)))
        D, y = design(joint[held], lags), eeg[held][used_rows(len(eeg[held]), lags, "zero")]
        parts = []
        for cols in ([0, 1], [2]):
            mask = np.zeros(3, bool)
            mask[cols] = True
            pred = D[:, np.tile(mask, len(lags))] @ W[np.tile(mask, len(lags))]
            parts.append(pred - pred.mean(0))
        yc = y - y.mean(0)
        total = parts[0] + parts[1]
        splits.append([((2 * yc - total) * p).sum(0) / (yc * yc).sum(0) for p in parts])
    expected = np.mean(splits, axis=0)[:, 0]
    np.testing.assert_allclose(table.loc[["sae", "envelope"], "r2_split"], expected, rtol=1e-6, atol=1e-9)

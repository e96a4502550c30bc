"""Group statistics: planted effects are found, null data keep the family-wise error rate."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests

from sae_eeg import stats
from sae_eeg.errors import InputError


def test_correct_pvalues_matches_statsmodels_and_keeps_shape(rng):
    p = rng.uniform(size=(4, 5)) ** 3
    for method in ("holm", "fdr_bh", "bonferroni"):
        res = stats.correct_pvalues(p, method=method, alpha=0.05)
        rej, adj, _, _ = multipletests(p.ravel(), alpha=0.05, method=method)
        assert res.reject.shape == p.shape
        np.testing.assert_array_equal(res.reject.ravel(), rej)
        np.testing.assert_allclose(res.pvals.ravel(), adj)


def test_correct_pvalues_nan_left_out():
    p = np.array([0.001, np.nan, 0.02, 0.5])
    res = stats.correct_pvalues(p, method="holm")
    ref = multipletests([0.001, 0.02, 0.5], method="holm")[1]
    np.testing.assert_allclose(res.pvals[[0, 2, 3]], ref)
    assert np.isnan(res.pvals[1]) and not res.reject[1]


def test_holm_hand_example():
    # sorted p: 0.01*3=0.03 <= .05 reject; 0.02*2=0.04 reject; 0.04*1=0.04 reject
    res = stats.correct_pvalues([0.04, 0.01, 0.02], method="holm")
    assert res.reject.tolist() == [True, True, True]
    res = stats.correct_pvalues([0.04, 0.01, 0.03], method="holm")
    assert res.reject.tolist() == [False, True, False]  # 0.03*2 = 0.06 stops the step-down


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "hom"}, r"'method'.*'hom'.*'holm'.*Did you mean 'holm'"),
    ({"alpha": 1.5}, r"alpha must be in \(0, 1\), got 1.5"),
])
def test_correct_pvalues_bad_args(kwargs, match):
    with pytest.raises(InputError, match=match):
        stats.correct_pvalues([0.1], **kwargs)


def test_correct_pvalues_out_of_range():
    with pytest.raises(InputError, match=r"pvals must lie in \[0, 1\], got 1.2"):
        stats.correct_pvalues([0.1, 1.2])


def test_one_sample_ttest_one_sided(rng):
    x = rng.standard_normal((19, 6))
    x[:, 0] += 1.5
    x[:, 1] -= 1.5
    up = stats.one_sample_ttest(x, alternative="greater")
    down = stats.one_sample_ttest(x, alternative="less")
    ref = scipy.stats.ttest_1samp(x, 0, axis=0)
    np.testing.assert_allclose(up.t, ref.statistic)
    assert up.pvals[0] < 1e-4 and up.pvals[1] > 0.99
    assert down.pvals[1] < 1e-4 and down.pvals[0] > 0.99
    np.testing.assert_allclose(up.pvals + down.pvals, 1.0)
    assert up.df == 18


def test_one_sample_ttest_bad_input(rng):
    with pytest.raises(InputError, match=r"at least 2 subjects.*\(1, 3\)"):
        stats.one_sample_ttest(rng.standard_normal((1, 3)))
    with pytest.raises(InputError, match=r"'alternative'.*'larger'"):
        stats.one_sample_ttest(rng.standard_normal((5, 3)), alternative="larger")


def test_empirical_pvalue_plus_one_and_uniform(rng):
    null = np.arange(99.0)
    assert stats.empirical_pvalue(1000.0, null) == pytest.approx(1 / 100)
    assert stats.empirical_pvalue(-1.0, null) == pytest.approx(1.0)
    assert stats.empirical_pvalue(-1000.0, null, alternative="less") == pytest.approx(1 / 100)
    assert stats.empirical_pvalue(-1000.0, null - 49, alternative="two-sided") == pytest.approx(1 / 100)
    # under the null the p-values are uniform: P(p <= 0.05) ~= 0.05
    obs = rng.standard_normal(4000)
    nulls = rng.standard_normal((199, 4000))
    p = stats.empirical_pvalue(obs, nulls)
    assert abs(np.mean(p <= 0.05) - 0.05) < 0.015
    with pytest.raises(InputError, match=r"at least one draw"):
        stats.empirical_pvalue(1.0, np.zeros((0, 1)))


def test_mixed_model_recovers_fixed_effects(rng):
    rows = []
    for s in range(12):
        offset = rng.normal(0, 0.05)
        for layer in range(1, 7):
            for space, gain in (("sae", 0.03), ("envelope", 0.0)):
                r = 0.05 + offset + gain + 0.01 * layer + rng.normal(0, 0.005)
                rows.append({"subject": f"s{s}", "layer": layer, "feature_space": space, "r": r})
    table = pd.DataFrame(rows)
    out = stats.mixed_model(table)
    est = out.set_index("term")["estimate"]
    assert est["feature_space[T.sae]"] == pytest.approx(0.03, abs=0.006)
    assert est["layer"] == pytest.approx(0.01, abs=0.002)
    assert abs(est["feature_space[T.sae]:layer"]) < 0.003
    assert out.set_index("term").loc["feature_space[T.sae]", "pval"] < 1e-6
    assert est["Group Var"] > 0
    assert out.attrs["n_groups"] == 12 and out.attrs["n_obs"] == len(table)
    with pytest.raises(InputError, match=r"groups column 'subj' not in table"):
        stats.mixed_model(table, groups="subj")


def test_permuted_ols_maxt_planted_and_null(rng):
    x = rng.standard_normal((19, 40))
    x[:, 3] += 1.2
    res = stats.permuted_ols_maxt(x, n_perm=2000, random_state=0)
    assert res.pvals[3] < 0.01
    assert np.sum(res.pvals < 0.05) <= 2
    np.testing.assert_allclose(res.t, scipy.stats.ttest_1samp(x, 0).statistic, rtol=1e-6)
    # max-T: corrected p-values are never below the uncorrected ones' rank order
    assert res.pvals.shape == (40,) and res.h0_max_t.shape == (2000,)


def test_permuted_ols_regressor(rng):
    reg = rng.standard_normal(20)
    x = rng.standard_normal((20, 5))
    x[:, 0] += 1.5 * reg
    res = stats.permuted_ols_maxt(x, regressor=reg, n_perm=1000, random_state=1)
    assert res.pvals[0] < 0.01 and res.pvals[1:].min() > 0.01
    with pytest.raises(InputError, match=r"regressor must have 20 values.*got 3"):
        stats.permuted_ols_maxt(x, regressor=[1, 2, 3])
    with pytest.raises(InputError, match=r"'alternative'.*negate.*got 'less'"):
        stats.permuted_ols_maxt(x, alternative="less")


def test_channel_adjacency_montage_and_info():
    names = ["Fz", "Cz", "Pz", "Oz", "C3", "C4"]
    adj = stats.channel_adjacency("spherical_1020", names)
    assert adj.shape == (6, 6)
    dense = adj.toarray()
    assert dense[names.index("Cz"), names.index("C3")] and not dense[names.index("Fz"), names.index("Oz")]
    with pytest.raises(InputError, match=r"\['XX'\] are not in the montage"):
        stats.channel_adjacency("spherical_1020", ["Cz", "XX"])


def _cluster_data(rng, n_subjects=15, n_lags=20, n_ch=32, effect=0.0):
    x = rng.standard_normal((n_subjects, n_lags, n_ch))
    x[:, 8:12, :4] += effect
    return x


def test_cluster_test_finds_planted_cluster(rng):
    adj = stats.channel_adjacency("biosemi32")
    names = stats.mne.channels.make_standard_montage("biosemi32").ch_names
    # plant on 4 neighbouring channels: Cz and its neighbours
    cz = names.index("Cz")
    neigh = np.nonzero(adj.toarray()[cz])[0][:4]
    x = rng.standard_normal((15, 20, 32))
    x[:, 8:12, neigh] += 1.5
    res = stats.cluster_test(x, adj, n_permutations=500, random_state=0)
    sig = res.significant_mask(0.05)
    assert sig[8:12][:, neigh].mean() > 0.8
    assert sig.sum() <= sig[8:12][:, neigh].sum() + 8  # little spill-over
    table = res.to_frame(ch_names=names)
    best = table.sort_values("pval").iloc[0]
    assert best["pval"] < 0.05 and best["sign"] == 1
    assert set(best["channels"].split(";")) == {names[c] for c in neigh}


def test_cluster_test_bad_shapes(rng):
    adj = stats.channel_adjacency("biosemi32")
    with pytest.raises(InputError, match=r"adjacency has shape \(32, 32\).*\(16, 16\)"):
        stats.cluster_test(rng.standard_normal((5, 4, 16)), adj)
    with pytest.raises(InputError, match=r"at least 3 dimension.*\(5, 4\)"):
        stats.cluster_test(rng.standard_normal((5, 4)), adj)


def _fwer(n_datasets, seed, n_perm):
    """Family-wise false-positive rate of the three corrections on pure-noise group data."""
    rng = np.random.default_rng(seed)
    adj = stats.channel_adjacency("biosemi32")
    hits = {"holm": 0, "maxt": 0, "cluster": 0}
    for _ in range(n_datasets):
        x = rng.standard_normal((12, 10, 32))
        p = stats.one_sample_ttest(x, alternative="greater").pvals
        hits["holm"] += stats.correct_pvalues(p, method="holm").reject.any()
        hits["maxt"] += (stats.permuted_ols_maxt(x, n_perm=n_perm, random_state=rng).pvals < 0.05).any()
        hits["cluster"] += (stats.cluster_test(x, adj, n_permutations=n_perm, random_state=rng).pvals
                            < 0.05).any()
    return {k: v / n_datasets for k, v in hits.items()}


def test_fwer_null_fast():
    rates = _fwer(8, seed=3, n_perm=200)
    # 8 datasets: more than 2 false positives for a 5% procedure has probability < 0.006
    assert all(r <= 2 / 8 for r in rates.values()), rates


@pytest.mark.slow
def test_fwer_null_full():
    rates = _fwer(200, seed=4, n_perm=500)
    # binomial(200, 0.05): P(count > 17) < 0.03
    assert all(r <= 17 / 200 for r in rates.values()), rates

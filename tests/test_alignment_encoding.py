"""Multivariate encoding: prediction r with shift nulls, variance partitioning, group stats."""

import numpy as np
import pandas as pd
import pytest
from _alignment_sim import SFREQ, make_study

from sae_eeg.alignment.encoding import (
    SCORE_COLUMNS,
    SPLIT_COLUMNS,
    encoding_scores,
    feature_pca,
    group_encoding_stats,
    layer_curves,
    pca_reduce,
    variance_partition,
)
from sae_eeg.errors import InputError


def _spaces(runs, truth):
    return {"sae": [f for _, f in runs], "envelope": truth["envelope"]}


@pytest.fixture(scope="module")
def sae_study():
    return make_study(n_subjects=6, n_runs=3, n_features=6, planted=(0, 1), run_s=40.0, seed=11)


def test_encoding_scores_planted_space_beats_null(sae_study):
    data, truth = sae_study
    tables = [encoding_scores([e for e, _ in runs], _spaces(runs, truth), sfreq=SFREQ, subject=s,
                              channels=[0, 4], tmax=0.4, n_null=40, random_state=0, layer=3)
              for s, runs in data.items()]
    scores = pd.concat(tables, ignore_index=True)
    assert list(scores.columns) == list(SCORE_COLUMNS)
    sae_ch0 = scores.query("feature_space == 'sae' and channel == '0'")
    assert (sae_ch0.pval <= 1 / 41 + 1e-12).all() and (sae_ch0.r > 0.1).all()
    # channel 4 and the envelope carry no planted signal
    assert scores.query("feature_space == 'envelope' or channel == '4'").r.abs().max() < 0.1
    assert (scores.null_mean.abs() < 0.03).all()
    group = group_encoding_stats(scores, n_perm=200, random_state=0)
    tests = group.tests.set_index("feature_space")
    assert tests.loc["sae", "significant"] and not tests.loc["envelope", "significant"]
    assert tests.loc["sae", "n_channels_maxt"] == 1
    mixed = group.mixed.set_index("term")
    assert mixed.loc["feature_space[T.sae]", "estimate"] > 0.05
    assert mixed.loc["feature_space[T.sae]", "pval"] < 0.01
    curves = layer_curves(scores)
    assert set(curves.feature_space) == {"sae", "envelope"} and (curves.n_subjects == 6).all()


def test_group_encoding_stats_one_space_two_subjects_has_no_mixed_model():
    # one row per subject: the random intercept is not identifiable (statsmodels: singular matrix)
    scores = pd.DataFrame({"subject": ["1", "1", "2", "2"], "model": "m", "layer": 12,
                           "feature_space": "envelope", "channel": ["A1", "A2"] * 2,
                           "r": [0.03, 0.01, 0.02, 0.05]})
    group = group_encoding_stats(scores, n_perm=20, random_state=0)
    assert group.mixed.empty
    assert group.tests.loc[0, "n_subjects"] == 2 and np.isfinite(group.tests.loc[0, "t"])


def _split(data, truth, subject):
    runs = data[subject]
    return variance_partition([e for e, _ in runs], _spaces(runs, truth), sfreq=SFREQ, channels=[0],
                              tmax=0.4, n_iter=5, random_state=0, subject=subject)


def test_variance_partition_attributes_bands():
    # SAE-only effect: the split goes to the SAE band
    data, truth = make_study(n_subjects=1, n_runs=4, n_features=6, planted=(0, 1), run_s=40.0, seed=12)
    split = _split(data, truth, "s01")
    assert list(split.columns) == list(SPLIT_COLUMNS)
    split = split.set_index("band")
    assert split.loc["sae", "r2_split"] > 0.01
    assert abs(split.loc["envelope", "r2_split"]) < 0.2 * split.loc["sae", "r2_split"]
    # envelope-only effect: the split goes to the envelope band
    data, truth = make_study(n_subjects=1, n_runs=4, n_features=6, planted=(), envelope_gain=0.5,
                             run_s=40.0, seed=13)
    split = _split(data, truth, "s01").set_index("band")
    assert split.loc["envelope", "r2_split"] > 0.01
    assert abs(split.loc["sae", "r2_split"]) < 0.2 * split.loc["envelope", "r2_split"]
    np.testing.assert_allclose(split.r2_joint.iloc[0], split.r2_split.sum())


def test_pca_reduce(rng):
    runs = [rng.standard_normal((200, 10)) @ np.diag(np.r_[10.0, 5.0, np.ones(8) * 0.1]) for _ in range(3)]
    red = pca_reduce(runs, 2, random_state=0)
    assert [r.shape for r in red] == [(200, 2)] * 3
    explained = np.var(np.concatenate(red), axis=0).sum() / np.var(np.concatenate(runs), axis=0).sum()
    assert explained > 0.99
    with pytest.raises(InputError, match=r"n_components must be in \[1, 10\], got 11"):
        pca_reduce(runs, 11)


def test_feature_pca_equals_sklearn_on_zscored_features(rng):
    from scipy import sparse
    from sklearn.decomposition import PCA

    # sparse SAE-like features with very different firing rates and correlated pairs
    dense = [(rng.random((300, 12)) < np.linspace(0.01, 0.5, 12)) * rng.random((300, 12)) for _ in range(3)]
    for d in dense:
        d[:, 1] += 0.5 * d[:, 0]
    stacked = np.concatenate(dense)
    z = (stacked - stacked.mean(0)) / stacked.std(0)
    ref = PCA(n_components=4).fit(z)
    for runs in (dense, [sparse.csr_array(d) for d in dense]):
        scores = np.concatenate(feature_pca(runs, 4))
        np.testing.assert_allclose(np.abs(scores), np.abs(ref.transform(z)), atol=1e-9)
        np.testing.assert_allclose(scores.var(0), ref.explained_variance_ * (len(z) - 1) / len(z), rtol=1e-9)
    with pytest.raises(InputError, match=r"n_components must be in \[1, 12\], got 13"):
        feature_pca(dense, 13)


def test_encoding_bad_input(sae_study):
    data, truth = sae_study
    runs = data["s01"]
    eeg = [e for e, _ in runs]
    with pytest.raises(InputError, match=r"Feature space 'sae' has 2 runs, the EEG has 3"):
        encoding_scores(eeg, {"sae": [f for _, f in runs][:2]}, sfreq=SFREQ)
    with pytest.raises(InputError, match=r"at least 2 runs, got 1"):
        encoding_scores(eeg[:1], {"sae": [runs[0][1]]}, sfreq=SFREQ)
    with pytest.raises(InputError, match=r"'envelope', run 0: 2559 samples, the EEG has 2560"):
        encoding_scores(eeg, {"envelope": [e[:-1] for e in truth["envelope"]]}, sfreq=SFREQ)
    with pytest.raises(InputError, match=r"at least 3 runs, got 2"):
        variance_partition(eeg[:2], {"sae": [f for _, f in runs][:2]}, sfreq=SFREQ)

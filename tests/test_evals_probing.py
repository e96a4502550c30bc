"""Probes, LASSO to descriptors and DCI on planted data."""

import numpy as np
import pandas as pd
import pytest

from sae_eeg.errors import InputError
from sae_eeg.evals import (
    dci_scores,
    lasso_descriptors,
    linear_probes,
    probe_sparsity_levels,
)


def test_linear_probes_informative_vs_noise(rng):
    y = rng.integers(0, 2, 200)
    informative = rng.standard_normal((200, 10)) + 2.0 * y[:, None] * (np.arange(10) == 3)
    noise = rng.standard_normal((200, 10))
    scores = linear_probes({"good": informative, "noise": noise}, y, random_state=0)
    acc = scores.groupby("representation").accuracy.mean()
    assert acc["good"] > 0.8 and abs(acc["noise"] - 0.5) < 0.15
    assert len(scores) == 10 and set(scores.n_dims) == {10}


def test_probe_sparsity_levels(rng):
    n_clips, frames = 60, 10
    y = pd.Series(rng.integers(0, 2, n_clips), index=[f"c{i}" for i in range(n_clips)])
    clip_ids = np.repeat(y.index.to_numpy(), frames)
    dense = rng.standard_normal((n_clips * frames, 8)) + 1.5 * np.repeat(y.to_numpy(), frames)[:, None] * (np.arange(8) == 0)
    codes = np.maximum(np.c_[dense, -dense] @ rng.standard_normal((16, 32)), 0)
    scores = probe_sparsity_levels(codes, dense, clip_ids, y, ks=(2, 8), n_splits=3, random_state=0)
    assert set(scores.representation) == {"dense", "sae_k2", "sae_k8"}
    assert scores.groupby("representation").k.first().isna().tolist() == [True, False, False]
    assert scores[scores.representation == "dense"].accuracy.mean() > 0.85
    with pytest.raises(InputError, match="y has no class for the clips"):
        probe_sparsity_levels(codes, dense, clip_ids, y.iloc[:5], ks=(2,))


def test_lasso_held_out_and_dci(rng):
    n, F = 300, 20
    X = rng.exponential(1.0, (n, F))
    desc = pd.DataFrame({
        "loudness": 2 * X[:, 2] + 0.1 * rng.standard_normal(n),
        "brightness": X[:, 5] - X[:, 7] + 0.1 * rng.standard_normal(n),
        "noise": rng.standard_normal(n),
    })
    probe = lasso_descriptors(X, desc, random_state=0)
    s = probe.scores.set_index("descriptor")
    assert s.loc["loudness", "r2_test"] > 0.95 and s.loc["brightness", "r2_test"] > 0.9
    assert s.loc["noise", "r2_test"] < 0.1  # held out: no in-sample optimism
    top = probe.coefficients.loc[probe.coefficients.groupby("descriptor").coef.apply(lambda c: c.abs().idxmax())]
    assert dict(zip(top.descriptor, top.feature))["loudness"] == 2
    assert probe.importance.shape == (F, 3)
    dci = dci_scores(probe.importance[:, :2], factor_names=["loudness", "brightness"])
    assert dci.disentanglement > 0.8 and dci.completeness > 0.6


def test_dci_reference_values():
    perfect = dci_scores(np.eye(3))
    assert perfect.disentanglement == pytest.approx(1.0) and perfect.completeness == pytest.approx(1.0)
    uniform = dci_scores(np.ones((4, 2)))
    assert uniform.disentanglement == pytest.approx(0.0) and uniform.completeness == pytest.approx(0.0)
    # one code explains both factors equally, the rest are dead
    R = np.zeros((4, 2))
    R[0] = 1.0
    mixed = dci_scores(R)
    assert mixed.disentanglement == pytest.approx(0.0) and mixed.completeness == pytest.approx(1.0)
    assert mixed.codes.feature.tolist() == [0]
    R = np.array([[0.9, 0.1], [0.0, 1.0]])
    p = np.array([0.9, 0.1])
    d0 = 1 + (p * np.log(p)).sum() / np.log(2)
    w = np.array([1.0, 1.0]) / 2.0
    assert dci_scores(R).disentanglement == pytest.approx(w[0] * d0 + w[1] * 1.0)


def test_probing_bad_inputs(rng):
    with pytest.raises(InputError, match="importance must be non-negative"):
        dci_scores(-np.ones((2, 2)))
    with pytest.raises(InputError, match=r"at least 2 codes and 2 factors, got shape \(3, 1\)"):
        dci_scores(np.ones((3, 1)))
    with pytest.raises(InputError, match=r"representations\['b'\] has 4 rows; the first has 5"):
        linear_probes({"a": np.ones((5, 2)), "b": np.ones((4, 2))}, np.arange(5) % 2)
    with pytest.raises(InputError, match="descriptors has 3 rows; X has 5 clips"):
        lasso_descriptors(np.ones((5, 2)), pd.DataFrame({"d": [1.0, 2.0, 3.0]}))

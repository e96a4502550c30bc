"""Concept erasure ranks the planted carriers of a concept first."""

import numpy as np
import pandas as pd
import pytest

from sae_eeg.errors import InputError
from sae_eeg.evals import concept_erasure, fisher_scores


def _planted(rng, n=400, n_features=30, carriers=(3, 7, 11)):
    y = rng.integers(0, 2, n).astype(bool)
    X = rng.exponential(1.0, (n, n_features))
    for j, f in enumerate(carriers):
        X[:, f] += (2.0 + j) * y
    return X, y


def test_fisher_score_matches_hand_computation(rng):
    X = rng.standard_normal((50, 3))
    y = rng.integers(0, 2, 50)
    mu = X.mean(0)
    num = sum((y == c).sum() * (X[y == c].mean(0) - mu) ** 2 for c in (0, 1))
    den = sum((y == c).sum() * X[y == c].var(0) for c in (0, 1))
    np.testing.assert_allclose(fisher_scores(X, y), num / den)
    const = np.c_[np.ones(4), [0, 0, 1, 1]]
    np.testing.assert_array_equal(fisher_scores(const, [0, 0, 1, 1]), [0.0, np.inf])


def test_erasure_ranks_planted_features_first(rng):
    X, y = _planted(rng)
    res = concept_erasure(X, pd.DataFrame({"concept": y}), n_removed=range(8), level=0.2, random_state=0)
    ranking = res.ranking[res.ranking.concept == "concept"].sort_values("rank")
    assert set(ranking.feature[:3]) == {3, 7, 11}
    curve = res.curves.set_index("n_removed").mcc
    assert curve[0] > 0.8 and curve[2] > 0.2 and curve[3] < 0.2
    summary = res.summary.iloc[0]
    assert summary.n_to_erase == 3 and summary.fraction_to_erase == pytest.approx(3 / 30)
    assert res.curves.last_removed.tolist()[:4] == [-1] + ranking.feature[:3].tolist()


def test_one_vs_rest_concepts_and_stop(rng):
    n = 300
    labels = rng.choice(["a", "e", "i"], n)
    X = rng.exponential(1.0, (n, 12))
    X[:, 0] += 3 * (labels == "a")
    X[:, 5] += 3 * (labels == "i")
    res = concept_erasure(X, labels, n_removed=[0, 1, 2, 12], stop_below=True, random_state=1)
    assert sorted(res.summary.concept) == ["a", "e", "i"]
    first = res.ranking[res.ranking["rank"] == 0].set_index("concept").feature
    assert first["a"] == 0 and first["i"] == 5
    a_curve = res.curves[res.curves.concept == "a"].mcc.to_numpy()
    # stopped at the first MCC below the level
    assert a_curve[-1] < 0.2 and np.all(a_curve[:-1] >= 0.2) and len(a_curve) < 4
    full = concept_erasure(X, labels, n_removed=[0, 12], random_state=1)
    assert full.curves[full.curves.n_removed == 12].mcc.eq(0).all()


def test_erasure_bad_inputs(rng):
    X = rng.standard_normal((20, 4))
    with pytest.raises(InputError, match="single class"):
        concept_erasure(X, np.zeros(20))
    with pytest.raises(InputError, match=r"must be binary .* got values \[0, 1, 2\]"):
        concept_erasure(X, pd.DataFrame({"c": np.arange(20) % 3}))
    with pytest.raises(InputError, match=r"n_removed must hold integers in \[0, 4\]"):
        concept_erasure(X, np.arange(20) % 2, n_removed=[0, 9])
    with pytest.raises(InputError, match="y must hold at least two classes"):
        fisher_scores(X, np.ones(20))

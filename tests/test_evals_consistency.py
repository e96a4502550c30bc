"""Consistency across SAEs on planted sparse dictionaries."""

import numpy as np
import pytest
import scipy.sparse as sp

from sae_eeg.errors import InputError
from sae_eeg.evals import (
    activation_consistency,
    activation_patterns,
    clip_features,
    consistency_table,
    decoder_consistency,
    match_features,
    topk_per_frame,
)


def _planted(rng, n_frames=600, n_atoms=48, d=24, k=3, n_clips=6):
    """Frames made of k atoms each; returns activations, dictionary, clip ids."""
    W_FD = rng.standard_normal((n_atoms, d))
    W_FD /= np.linalg.norm(W_FD, axis=1, keepdims=True)
    codes = np.zeros((n_frames, n_atoms))
    for t in range(n_frames):
        codes[t, rng.choice(n_atoms, k, replace=False)] = rng.uniform(1, 2, k)
    clip_ids = np.repeat(np.arange(n_clips), n_frames // n_clips)
    return codes @ W_FD, W_FD, clip_ids


def _encode(acts_TD, W_FD, k):
    """A toy SAE encoder: per-frame top-k of ReLU(x W^T)."""
    return topk_per_frame(np.maximum(acts_TD @ W_FD.T, 0), k)


def _reference_patterns(codes, clip_ids, k_per_frame):
    out = np.zeros(codes.shape, dtype=bool)
    for c in np.unique(clip_ids):
        idx = np.flatnonzero(clip_ids == c)
        block = codes[idx]
        flat = np.argsort(-block, axis=None, kind="stable")[: k_per_frame * idx.size]
        r, f = np.unravel_index(flat, block.shape)
        keep = block[r, f] > 0
        out[idx[r[keep]], f[keep]] = True
    return out


def test_activation_patterns_match_brute_force(rng):
    codes = np.maximum(rng.standard_normal((90, 12)), 0)
    codes[rng.random(codes.shape) < 0.5] = 0
    clip_ids = rng.integers(0, 4, 90)  # frames of a clip need not be contiguous
    for k in (1, 2, 5):
        got = activation_patterns(sp.csr_array(codes), clip_ids, k_per_frame=k).toarray()
        np.testing.assert_array_equal(got, _reference_patterns(codes, clip_ids, k))
    # a budget larger than the positive entries keeps them all
    got = activation_patterns(codes, clip_ids, k_per_frame=12).toarray()
    np.testing.assert_array_equal(got, codes > 0)


def test_self_coverage_is_complete_and_random_is_low(rng):
    acts, W_FD, clip_ids = _planted(rng)
    codes = _encode(acts, W_FD, 3)
    res = activation_consistency(codes, codes, clip_ids, k_per_frame=3)
    assert res.coverage_ab == 1.0 and res.coverage_ba == 1.0
    assert res.duplicates_a == 0.0
    a = res.features[res.features.sae == "a"]
    np.testing.assert_array_equal(a.best_match.to_numpy(), np.arange(W_FD.shape[0]))
    np.testing.assert_allclose(a.best_iou.to_numpy(), 1.0)

    W_random = rng.standard_normal(W_FD.shape)
    rand = activation_consistency(codes, _encode(acts, W_random, 3), clip_ids, k_per_frame=3)
    assert rand.coverage_ab < 0.2


def test_permuted_noisy_copy_is_matched(rng):
    acts, W_FD, clip_ids = _planted(rng)
    perm = rng.permutation(W_FD.shape[0])
    W_other = W_FD[perm] + 0.05 * rng.standard_normal(W_FD.shape)
    codes_a, codes_b = _encode(acts, W_FD, 3), _encode(acts, W_other, 3)
    res = activation_consistency(codes_a, codes_b, clip_ids, k_per_frame=3)
    assert res.coverage_ab > 0.95 and res.coverage_ba > 0.95
    best = res.matches.drop_duplicates("feature_a").set_index("feature_a")["feature_b"]
    np.testing.assert_array_equal(perm[best.to_numpy()], best.index.to_numpy())
    pairs = match_features(activation_patterns(codes_a, clip_ids, k_per_frame=3),
                           activation_patterns(codes_b, clip_ids, k_per_frame=3))
    assert len(pairs) == len(res.matches)

    dec = decoder_consistency(W_FD, W_other, random_state=123)
    assert dec.shared_fraction == 1.0 and dec.mean_cosine > 0.95
    np.testing.assert_array_equal(perm[dec.matches.feature_b], dec.matches.feature_a)
    assert dec.floor_mean_cosine < 0.5
    floor = decoder_consistency(W_FD, rng.standard_normal(W_FD.shape), random_state=123)
    assert abs(floor.mean_cosine - floor.floor_mean_cosine) < 0.1
    assert floor.shared_fraction < 0.1


def test_duplicates_and_dead_features(rng):
    acts, W_FD, clip_ids = _planted(rng)
    codes = _encode(acts, W_FD, 3).toarray()
    # feature 0 duplicated into an extra column, plus one dead column
    extended = np.c_[codes, codes[:, 0], np.zeros(len(codes))]
    res = activation_consistency(extended, codes, clip_ids, k_per_frame=4)
    a = res.features[res.features.sae == "a"].set_index("feature")
    assert a.loc[0, "is_duplicate"] and a.loc[W_FD.shape[0], "duplicate_of"] == 0
    assert a.loc[W_FD.shape[0] + 1, "n_active"] == 0
    # coverage counts live features only: all live features of A match B
    assert res.coverage_ab == 1.0
    assert res.duplicates_a == pytest.approx(2 / (W_FD.shape[0] + 1))
    table = consistency_table({"x": extended, "y": codes}, clip_ids, k_per_frame=4)
    row = table[(table.sae_a == "x") & (table.sae_b == "y")].iloc[0]
    assert row.coverage == res.coverage_ab and row.n_live_a == W_FD.shape[0] + 1
    assert set(zip(table.sae_a, table.sae_b)) == {("x", "x"), ("x", "y"), ("y", "x"), ("y", "y")}


def test_clip_features_mean_and_max(rng):
    codes = np.maximum(rng.standard_normal((30, 5)), 0)
    clip_ids = np.repeat(["b", "a", "c"], 10)
    for how, fn in (("mean", np.mean), ("max", np.max)):
        for given in (codes, sp.csr_array(codes)):
            pooled, clips = clip_features(given, clip_ids, how=how)
            assert clips.tolist() == ["a", "b", "c"]
            np.testing.assert_allclose(pooled[0], fn(codes[10:20], axis=0), rtol=1e-6)


def test_bad_inputs(rng):
    codes = np.ones((4, 3))
    with pytest.raises(InputError, match=r"clip_ids must be 1-D with one entry per row \(4\), got shape \(3,\)"):
        activation_patterns(codes, [0, 0, 1])
    with pytest.raises(InputError, match=r"k_per_frame must be in \[1, inf\], got 0"):
        activation_patterns(codes, [0, 0, 1, 1], k_per_frame=0)
    with pytest.raises(InputError, match="codes must be 2-D"):
        activation_patterns(np.ones(4), [0, 0, 1, 1])
    with pytest.raises(InputError, match="same frames: got 4 and 5 rows"):
        match_features(sp.csr_array(codes > 0), sp.csr_array(np.ones((5, 3)) > 0))
    with pytest.raises(InputError, match="same width D: got 3 and 4"):
        decoder_consistency(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(InputError, match="threshold must be in"):
        activation_consistency(codes, codes, [0, 0, 1, 1], threshold=1.5)
    with pytest.raises(InputError, match="Invalid value for 'how': got 'median'"):
        clip_features(codes, [0, 0, 1, 1], how="median")

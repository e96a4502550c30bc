"""Interpretability primitives on planted codes and synthetic audio."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from matplotlib.figure import Figure

from sae_eeg.errors import InputError
from sae_eeg.evals import (
    acoustic_descriptors,
    aggregate_max_activations,
    classify_features,
    collect_dataset_stats,
    dead_features,
    feature_activation_windows,
    feature_frequencies,
    feature_tsne,
    log_mel_spectrogram,
    mel_receptive_fields,
    plot_feature_tsne,
    top_clips_for_feature,
)

CATS = ("music", "sounds", "speech")


def _category_codes(rng, frames_per_clip=20, clips_per_cat=4):
    """Feature 0 fires on speech only, 1 on music only, 2 on sounds only,
    3 everywhere, 4 never, 5 mostly speech (rarely music)."""
    cats = np.repeat(CATS, clips_per_cat * frames_per_clip)
    clip_ids = np.repeat(np.arange(3 * clips_per_cat), frames_per_clip)
    n = cats.size
    codes = np.zeros((n, 6))
    on = rng.random(n) < 0.5
    codes[:, 0] = on * (cats == "speech") * rng.uniform(1, 2, n)
    codes[:, 1] = on * (cats == "music") * rng.uniform(1, 2, n)
    codes[:, 2] = on * (cats == "sounds") * rng.uniform(1, 2, n)
    codes[:, 3] = on * rng.uniform(1, 2, n)
    codes[:, 5] = (rng.random(n) < np.where(cats == "speech", 0.6, np.where(cats == "music", 0.1, 0))) * 1.0
    return codes, clip_ids, cats


def test_aggregate_max_and_top_clips(rng):
    codes, clip_ids, _ = _category_codes(rng)
    times = np.tile(np.arange(20) * 0.02 + 0.01, 12)
    table = aggregate_max_activations(sp.csr_array(codes), clip_ids, times=times)
    for row in table.itertuples():
        clip, feature = row.clip, row.feature
        block = codes[clip_ids == clip, feature]
        assert row.max_activation == pytest.approx(block.max())
        assert codes[row.frame, feature] == pytest.approx(block.max()) and clip_ids[row.frame] == clip
        assert row.time == times[row.frame]
    expected_pairs = {(c, f) for c in range(12) for f in range(6) if codes[clip_ids == c, f].max() > 0}
    assert set(zip(table["clip"], table["feature"])) == expected_pairs
    top = top_clips_for_feature(table, 0, n=3)
    assert len(top) == 3 and top.max_activation.is_monotonic_decreasing
    assert set(top["clip"]) <= set(range(8, 12))  # speech clips
    assert top_clips_for_feature(table, 4).empty


def test_dead_features_and_frequencies(rng):
    codes, _, _ = _category_codes(rng)
    np.testing.assert_array_equal(dead_features(codes), [4])
    freq = feature_frequencies(sp.csr_array(codes))
    np.testing.assert_allclose(freq.frequency, (codes > 0).mean(0))


def test_collect_stats_and_classify(rng):
    codes, clip_ids, cats = _category_codes(rng)
    stats = collect_dataset_stats(codes, clip_ids, cats)
    row = stats.set_index(["feature", "category"]).loc[(3, "music")]
    music = cats == "music"
    assert row.n_active == (codes[music, 3] > 0).sum() and row.n_frames == music.sum()
    assert row.mean_activation == pytest.approx(codes[music, 3][codes[music, 3] > 0].mean())
    assert row.max_activation == pytest.approx(codes[music, 3].max()) and row.n_clips == 4
    assert row.n_clips_active == 4
    labels = classify_features(stats, min_purity=0.5).set_index("feature")
    assert labels.loc[0, "label"] == "speech" and labels.loc[0, "purity"] == 1.0
    assert labels.loc[1, "label"] == "music" and labels.loc[2, "label"] == "sounds"
    assert labels.loc[3, "label"] == "mixed" and labels.loc[4, "label"] == "dead"
    assert labels.loc[5, "label"] == "speech" and 0.5 < labels.loc[5, "purity"] < 1
    assert {"rate_music", "rate_sounds", "rate_speech"} <= set(labels.columns)
    assert classify_features(stats).set_index("feature").loc[3, "label"] in CATS


def test_log_mel_and_activation_windows(rng):
    sfreq = 16000
    t = np.arange(int(3.0 * sfreq)) / sfreq
    burst_times = np.array([0.5, 1.2, 2.0, 2.6])
    wave = 0.01 * rng.standard_normal(t.size)
    for b in burst_times:
        inside = np.abs(t - b) < 0.03
        wave[inside] += np.sin(2 * np.pi * 1000 * t[inside])
    mel = log_mel_spectrogram(wave, sfreq)
    assert mel.sfreq == 100 and mel.values.shape[1] == 80
    band_1k = int(np.argmin(np.abs(mel.mel_freqs - 1000)))
    assert abs(int(np.argmax(mel.values[50])) - band_1k) <= 1  # the burst at 0.5 s

    frame_times = np.arange(150) * 0.02 + 0.01
    codes = np.zeros((150, 2))
    for b in burst_times:
        codes[np.argmin(np.abs(frame_times - b)), 1] = 1 + b  # later bursts fire more
    wins = feature_activation_windows(sp.csr_array(codes), 1, np.zeros(150, int), frame_times, {0: mel},
                                      tmin=-0.1, tmax=0.1, n_windows=3)
    assert wins.windows.shape == (3, 21, 80) and wins.lags[0] == pytest.approx(-0.1)
    fired = np.flatnonzero(codes[:, 1])
    np.testing.assert_allclose(wins.events.time, frame_times[fired[::-1][:3]])
    rf = wins.receptive_field()
    assert abs(int(np.argmax(rf[10])) - band_1k) <= 1
    assert rf[10, band_1k] > rf[0, band_1k] + 2  # energy at lag 0, not 100 ms before
    empty = feature_activation_windows(codes, 0, np.zeros(150, int), frame_times, {0: mel})
    assert empty.windows.shape[0] == 0
    with pytest.raises(InputError, match="never fires"):
        empty.receptive_field()
    with pytest.raises(InputError, match="log_mels has no entry for clip 0"):
        feature_activation_windows(codes, 1, np.zeros(150, int), frame_times, {7: mel})


def test_activation_windows_across_clips_are_padded_with_each_clips_minimum(rng):
    """Windows past a clip's edges hold that clip's minimum; the rest are its own log-mel rows."""
    mels = {c: log_mel_spectrogram(rng.standard_normal(8000) * (k + 1), 16000) for k, c in enumerate("ab")}
    clip_ids = np.repeat(["a", "b"], 25)
    times = np.tile(np.arange(25) * 0.02 + 0.01, 2)
    codes = np.zeros((50, 1))
    codes[[24, 25, 10, 37], 0] = [4.0, 3.0, 2.0, 1.0]  # end of a, start of b, inside a, inside b
    wins = feature_activation_windows(codes, 0, clip_ids, times, mels, tmin=-0.1, tmax=0.1)
    assert list(wins.events["clip"]) == ["a", "b", "a", "b"] and list(wins.events["activation"]) == [4, 3, 2, 1]
    lag_idx = np.arange(-10, 11)
    for window, frame in zip(wins.windows, [24, 25, 10, 37]):
        mel = mels[clip_ids[frame]]
        idx = int(np.round((times[frame] - mel.tmin) * mel.sfreq)) + lag_idx
        inside = (idx >= 0) & (idx < mel.values.shape[0])
        expected = np.where(inside[:, None], mel.values[np.clip(idx, 0, mel.values.shape[0] - 1)],
                            mel.values.min())
        np.testing.assert_array_equal(window, expected)
    assert wins.windows[1, 0, 0] == mels["b"].values.min() != mels["a"].values.min()


def test_mel_receptive_fields_are_the_mean_windows_of_each_feature(rng):
    """Many features at once equal one feature at a time (ties, clip edges, more activations than windows)."""
    mels = {c: log_mel_spectrogram(rng.standard_normal(16000) * (k + 1), 16000) for k, c in enumerate((3, 8))}
    clip_ids = np.repeat([3, 8], 50)
    times = np.tile(np.arange(50) * 0.02 + 0.01, 2)
    codes = sp.random_array((100, 12), density=0.3, random_state=1, format="csr", dtype=np.float32)
    codes.data = np.round(codes.data * 4) / 4 + 0.25          # few distinct values: many ties
    codes = sp.csr_array(codes.toarray() * (np.arange(12) != 5))  # feature 5 never fires
    fields = mel_receptive_fields(codes, clip_ids, times, mels, features=[7, 5, 0, 11], n_windows=6)
    assert fields.features.tolist() == [7, 0, 11] and fields.fields.shape == (3, 21, 80)
    for feature, field in zip(fields.features, fields.fields):
        one = feature_activation_windows(codes, feature, clip_ids, times, mels, n_windows=6)
        np.testing.assert_array_equal(field, one.receptive_field())
        np.testing.assert_array_equal(fields.lags, one.lags)
    assert mel_receptive_fields(codes, clip_ids, times, mels).features.tolist() == [f for f in range(12) if f != 5]
    with pytest.raises(InputError, match=r"features must be ids in \[0, 11\], got \[12, -1\]"):
        mel_receptive_fields(codes, clip_ids, times, mels, features=[0, 12, -1])


def test_acoustic_descriptors(rng):
    sfreq = 16000
    t = np.arange(sfreq) / sfreq
    tone = acoustic_descriptors(0.5 * np.sin(2 * np.pi * 1000 * t), sfreq)
    noise = acoustic_descriptors(0.5 * rng.standard_normal(sfreq), sfreq)
    assert abs(tone["spectral_centroid"] - 1000) < 100
    assert noise["spectral_flatness"] > 10 * tone["spectral_flatness"]
    assert noise["zero_crossing_rate"] > tone["zero_crossing_rate"]
    assert tone["rms_db"] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.5)


def test_tsne_separates_clusters(rng):
    centres = rng.standard_normal((3, 16)) * 3
    W = np.repeat(centres, 20, axis=0) + 0.1 * rng.standard_normal((60, 16))
    labels = pd.DataFrame({"feature": np.arange(60), "label": np.repeat(["music", "sounds", "speech"], 20)})
    emb = feature_tsne(W, perplexity=10, random_state=0).merge(labels, on="feature")
    centroids = emb.groupby("label")[["x", "y"]].mean()
    spread = emb.groupby("label")[["x", "y"]].std().to_numpy().max()
    gaps = [np.linalg.norm(centroids.iloc[i] - centroids.iloc[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert min(gaps) > 3 * spread
    fig = plot_feature_tsne(W, labels.iloc[:50], perplexity=10, random_state=0)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [c.get_offsets().shape[0] for c in ax.collections] == [20, 20, 10, 10]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["music", "sounds", "speech", "unlabelled"]


def test_interpret_bad_inputs(rng):
    codes, clip_ids, cats = _category_codes(rng)
    bad_cats = cats.copy()
    bad_cats[0] = "speech"
    with pytest.raises(InputError, match="constant within a clip"):
        collect_dataset_stats(codes, clip_ids, bad_cats)
    with pytest.raises(InputError, match=r"lacks the columns \['firing_rate'\]"):
        classify_features(pd.DataFrame({"feature": [0], "category": ["x"]}))
    with pytest.raises(InputError, match=r"feature must be in \[0, 5\], got 9"):
        feature_activation_windows(codes, 9, clip_ids, np.zeros(len(codes)), {})
    with pytest.raises(InputError, match=r"tmin <= 0 <= tmax is required, got tmin=0.1"):
        feature_activation_windows(codes, 0, clip_ids, np.zeros(len(codes)), {}, tmin=0.1)
    with pytest.raises(InputError, match="features must hold at least 3 ids"):
        feature_tsne(np.ones((5, 3)), features=[0, 9, 1])
    with pytest.raises(InputError, match="n must be in"):
        top_clips_for_feature(aggregate_max_activations(codes, clip_ids), 0, n=0)

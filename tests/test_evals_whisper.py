"""Every evaluation primitive on real Whisper tiny.en activations (offline).

Speech comes from eSpeak NG, music-like and noise-like clips are synthesised;
a small BatchTopK SAE is trained on layer 3 in a module fixture (seconds).
"""

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from sae_eeg import backbones
from sae_eeg import sae as sae_mod
from sae_eeg.audio import Audio, resample
from sae_eeg.errors import CheckpointError, InputError
from sae_eeg.evals import (
    acoustic_descriptors,
    activation_consistency,
    aggregate_max_activations,
    classify_features,
    clip_features,
    collect_dataset_stats,
    compare_saes,
    concept_erasure,
    consistency_table,
    dci_scores,
    dead_features,
    decoder_consistency,
    decoder_directions,
    false_speech_experiment,
    feature_activation_windows,
    lasso_descriptors,
    log_mel_spectrogram,
    no_speech_probability,
    plot_feature_tsne,
    probe_sparsity_levels,
    reconstruction_metrics,
    steer,
    steering_vector,
    top_clips_for_feature,
)
from sae_eeg.speech import NOISE_KINDS, speak, synth_music_like, synth_noise_like

LAYER = 3
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back after lunch tomorrow.",
    "The weather is cold and windy today.",
    "We will meet at the station at seven o'clock.",
    "The children played football in the park.",
]
SR = 16000.0


@pytest.fixture(scope="module")
def whisper():
    torch.set_num_threads(1)
    return backbones.load_backbone(backbones.bundled_whisper_path())


@pytest.fixture(scope="module")
def clips():
    speech = [speak(s) for s in SENTENCES]
    speech = [Audio(resample(a.waveform, sfreq=a.sfreq, new_sfreq=SR), SR) for a in speech]
    music = [synth_music_like(3.0, random_state=i) for i in range(4)]
    sounds = [synth_noise_like(3.0, kind=k, random_state=10 + i) for i, k in enumerate(sorted(NOISE_KINDS)[:4])]
    return {"speech": speech, "music": music, "sounds": sounds}


@pytest.fixture(scope="module")
def dataset(whisper, clips):
    """Layer activations of every clip (one encoder pass per category), frame clip ids and times."""
    acts, clip_ids, times, categories = [], [], [], []
    clip = 0
    for category, items in clips.items():
        waveform = np.concatenate([a.waveform for a in items])
        values = whisper.activations(waveform, SR, [LAYER])[LAYER].values
        start = 0
        for a in items:
            n = int(np.ceil(a.waveform.shape[0] / 320))
            acts.append(values[start:start + n])
            clip_ids.append(np.full(len(acts[-1]), clip))
            times.append(0.01 + 0.02 * np.arange(len(acts[-1])))
            categories += [category] * len(acts[-1])
            start += n
            clip += 1
    return {"acts": np.concatenate(acts), "clip_ids": np.concatenate(clip_ids), "times": np.concatenate(times),
            "categories": np.array(categories)}


def _train(acts, seed, *, n_features=768, k=16, n_steps=200):
    sae = sae_mod.BatchTopKSAE(acts.shape[1], n_features, k, random_state=seed)
    trainer = sae_mod.BatchTopKTrainer(sae, n_steps=n_steps, warmup_steps=20, threshold_start=50, lr=1e-3)
    rng = np.random.default_rng(seed)
    X = torch.from_numpy(acts)
    for _ in range(n_steps):
        trainer.update(X[rng.integers(0, len(X), 256)])
    return sae.eval()


@pytest.fixture(scope="module")
def saes(dataset):
    torch.set_num_threads(1)
    return {"seed1": _train(dataset["acts"], 1), "seed2": _train(dataset["acts"], 2),
            "untrained": sae_mod.BatchTopKSAE(dataset["acts"].shape[1], 768, 16, random_state=3).eval()}


@pytest.fixture(scope="module")
def codes(dataset, saes):
    return {name: sae.encode_sparse(dataset["acts"]) for name, sae in saes.items()}


def test_consistency_self_seeds_and_untrained(dataset, saes, codes):
    ids = dataset["clip_ids"]
    self_ = activation_consistency(codes["seed1"], codes["seed1"], ids, k_per_frame=16)
    assert self_.coverage_ab == 1.0
    seeds = activation_consistency(codes["seed1"], codes["seed2"], ids, k_per_frame=16)
    untrained = activation_consistency(codes["seed1"], codes["untrained"], ids, k_per_frame=16)
    assert 0 <= untrained.coverage_ab <= seeds.coverage_ab + 0.05
    dec_self = decoder_consistency(decoder_directions(saes["seed1"]), decoder_directions(saes["seed1"]), random_state=7)
    assert dec_self.shared_fraction == 1.0 and dec_self.mean_cosine == pytest.approx(1.0)
    dec_seeds = decoder_consistency(decoder_directions(saes["seed1"]), decoder_directions(saes["seed2"]), random_state=7)
    dec_untrained = decoder_consistency(decoder_directions(saes["seed1"]), decoder_directions(saes["untrained"]), random_state=7)
    # an independent untrained SAE sits at the random floor; another seed lies above it
    assert abs(dec_untrained.mean_cosine - dec_untrained.floor_mean_cosine) < 0.02
    assert dec_seeds.mean_cosine > dec_untrained.floor_mean_cosine + 0.05
    table = compare_saes(saes, dataset["acts"], ids, k_per_frame=16, random_state=7).set_index("sae")
    assert table.loc["seed1", "coverage"] == 1.0 and table.loc["seed1", "mean_cosine"] == pytest.approx(1.0)
    assert table.loc["seed2", "coverage"] == pytest.approx(seeds.coverage_ab)
    assert table.loc["seed2", "mean_cosine"] == pytest.approx(dec_seeds.mean_cosine)


def test_consistency_table_and_reconstruction(dataset, saes, codes):
    table = consistency_table(codes, dataset["clip_ids"], k_per_frame=16).set_index(["sae_a", "sae_b"])
    assert table.loc[("seed2", "seed2"), "coverage"] == 1.0
    assert table.loc[("seed1", "untrained"), "coverage"] < table.loc[("seed1", "seed1"), "coverage"]
    metrics = reconstruction_metrics(saes["seed1"], dataset["acts"])
    untrained = reconstruction_metrics(saes["untrained"], dataset["acts"])
    dead = dead_features(codes["seed1"])
    assert metrics["dead_fraction"] == pytest.approx(dead.size / saes["seed1"].n_features)
    assert metrics["fvu"] < untrained["fvu"]


def test_stats_classify_and_top_clips(dataset, codes):
    stats = collect_dataset_stats(codes["seed1"], dataset["clip_ids"], dataset["categories"])
    labels = classify_features(stats)
    rates = labels.set_index("feature")
    speech_only = rates[(rates.rate_speech > 0.05) & (rates.rate_music == 0) & (rates.rate_sounds == 0)]
    assert len(speech_only) > 0 and (speech_only.label == "speech").all()
    music_only = rates[(rates.rate_music > 0.05) & (rates.rate_speech == 0) & (rates.rate_sounds == 0)]
    assert (music_only.label == "music").all()
    table = aggregate_max_activations(codes["seed1"], dataset["clip_ids"], times=dataset["times"])
    feature = int(speech_only.rate_speech.idxmax())
    top = top_clips_for_feature(table, feature, n=3)
    assert set(top["clip"]) <= set(range(len(SENTENCES)))  # speech clips come first
    dead = dead_features(codes["seed1"])
    assert set(dead) == set(rates.index[rates.label == "dead"])


def test_erasure_and_probes_on_whisper(dataset, codes):
    # half-second segments as samples; concept: speech vs not
    seg = dataset["clip_ids"] * 100 + (dataset["times"] // 0.5).astype(int)
    X, segs = clip_features(codes["seed1"], seg, how="mean")
    is_speech = pd.Series(dataset["categories"] == "speech").groupby(seg).first().loc[segs].to_numpy()
    res = concept_erasure(X, pd.DataFrame({"speech": is_speech}), n_removed=[0, 1, 5, 50], random_state=0)
    curve = res.curves.set_index("n_removed").mcc
    assert curve[0] > 0.8
    ranking = res.ranking.set_index("rank").feature
    pooled = X[:, ranking.iloc[0]]
    assert abs(pooled[is_speech].mean() - pooled[~is_speech].mean()) > 0  # top feature separates the concept
    probes = probe_sparsity_levels(codes["seed1"], dataset["acts"], seg, pd.Series(is_speech, index=segs),
                                   ks=(4, 16), n_splits=3, random_state=0)
    acc = probes.groupby("representation").accuracy.mean()
    assert acc["dense"] > 0.9 and acc["sae_k16"] > 0.9


def test_lasso_dci_and_windows_on_whisper(dataset, codes, clips):
    every = [a for items in clips.values() for a in items]
    mels = {i: log_mel_spectrogram(a.waveform, a.sfreq) for i, a in enumerate(every)}
    # acoustic descriptors of quarter-second segments; silent segments left out
    seg = dataset["clip_ids"] * 1000 + (dataset["times"] // 0.25).astype(int)
    X, segs = clip_features(codes["seed1"], seg, how="mean")
    rows = []
    for s in segs:
        clip, part = divmod(int(s), 1000)
        chunk = every[clip].waveform[int(part * 0.25 * SR): int((part + 1) * 0.25 * SR)]
        rows.append(acoustic_descriptors(chunk if chunk.size > 800 else every[clip].waveform[-4000:], SR))
    desc = pd.DataFrame(rows)
    loud = (desc.rms_db > -50).to_numpy()
    desc = pd.DataFrame({"log_centroid": np.log(desc.spectral_centroid), "log_flatness": np.log(desc.spectral_flatness),
                         "zero_crossing_rate": desc.zero_crossing_rate})[loud]
    probe = lasso_descriptors(X[loud], desc.reset_index(drop=True), random_state=0)
    scores = probe.scores.set_index("descriptor")
    assert scores.loc["log_centroid", "r2_test"] > 0.4  # held out, well below the in-sample fit
    assert (scores.r2_train > scores.r2_test).all()
    dci = dci_scores(probe.importance, factor_names=list(desc.columns))
    assert 0 < dci.disentanglement < 1 and 0 < dci.completeness < 1

    freq = np.asarray((codes["seed1"] > 0).sum(axis=0)).ravel()
    feature = int(np.argmax(freq))
    wins = feature_activation_windows(codes["seed1"], feature, dataset["clip_ids"], dataset["times"], mels,
                                      n_windows=20)
    assert wins.windows.shape == (20, 21, 80)
    assert np.isfinite(wins.receptive_field()).all()


def test_tsne_plot_on_encoder_rows(dataset, saes, codes):
    labels = classify_features(collect_dataset_stats(codes["seed1"], dataset["clip_ids"], dataset["categories"]))
    W_enc = saes["seed1"].encoder.weight.detach().numpy()
    live = labels.feature[labels.label != "dead"].to_numpy()[:200]
    fig = plot_feature_tsne(W_enc, labels, features=live, random_state=0)
    assert sum(c.get_offsets().shape[0] for c in fig.axes[0].collections) == live.size


def test_steer_alpha_zero_is_bit_identical(whisper, saes, clips):
    clip = [clips["speech"][0]]
    plain = no_speech_probability(whisper, clip)
    features = {0: 1.0, 5: -1.0}
    with steer(whisper, saes["seed1"], LAYER, features, 0.0):
        zero = no_speech_probability(whisper, clip)
    np.testing.assert_array_equal(zero, plain)
    with steer(whisper, saes["seed1"], LAYER, features, 1.0):
        steered = no_speech_probability(whisper, clip)
    assert not np.array_equal(steered, plain)
    np.testing.assert_array_equal(no_speech_probability(whisper, clip), plain)  # hook removed on exit


def test_steer_residual_adds_decoder_direction(whisper, saes, clips):
    sae = saes["seed1"]
    a = clips["music"][0]
    s = steering_vector({3: 1.0, 7: -2.0}, sae.n_features)
    with steer(whisper, sae, LAYER, {3: 1.0, 7: -2.0}, 0.5):
        steered = whisper.activations(a.waveform, a.sfreq, [LAYER])[LAYER].values
    plain = whisper.activations(a.waveform, a.sfreq, [LAYER])[LAYER].values
    z = sae.encode(torch.from_numpy(plain))
    s_1F = torch.from_numpy(s)[None]
    with torch.no_grad():
        expected = plain + (sae.decode(z + 0.5 * s_1F) - sae.decode(z)).numpy()
    np.testing.assert_allclose(steered, expected, atol=1e-4)
    with steer(whisper, sae, LAYER, [3], 0.0, mode="reconstruction"):
        spliced = whisper.activations(a.waveform, a.sfreq, [LAYER])[LAYER].values
    with torch.no_grad():
        np.testing.assert_allclose(spliced, sae(torch.from_numpy(plain)).numpy(), atol=1e-4)


def test_false_speech_report_small(whisper, saes, clips):
    reversed_speech = [Audio(a.waveform[::-1].copy(), a.sfreq) for a in clips["speech"][:2]]
    nonspeech = clips["music"][:1] + clips["sounds"][:1] + reversed_speech
    report = false_speech_experiment(whisper, saes["seed1"], LAYER, nonspeech, clips["speech"][:1], SENTENCES[:1],
                                     alphas=(0.0, 0.5), n_features=20, test_size=0.0, random_state=0)
    summary = report.summary.set_index("alpha")
    assert summary.loc[0.0, "fpr"] == 0.5  # reversed speech is heard as speech, music and noise are not
    assert summary.loc[0.0, "wer"] <= 0.5
    assert list(summary.columns) == ["fpr", "mean_no_speech_prob", "wer", "n_nonspeech", "n_speech"]
    assert len(report.features) == 20 and set(report.features.weight) <= {-1.0, 1.0}
    assert len(report.clips) == 2 * (len(nonspeech) + 1)


def test_steering_bad_inputs(whisper, saes):
    sae = saes["seed1"]
    with (pytest.raises(InputError, match=r"features holds ids outside \[0, 767\]: \[900\]"),
          steer(whisper, sae, LAYER, [900], 1.0)):
        pass
    with (pytest.raises(InputError, match="Invalid value for 'mode': got 'replace'"),
          steer(whisper, sae, LAYER, [1], 1.0, mode="replace")):
        pass
    with pytest.raises(InputError, match="lasts 31.0 s"):
        no_speech_probability(whisper, [Audio(np.zeros(31 * 16000, np.float32), SR)])
    with pytest.raises(InputError, match="references has 2 texts for 1 speech clips"):
        false_speech_experiment(whisper, sae, LAYER, [Audio(np.ones(1600, np.float32), SR)],
                                [Audio(np.ones(1600, np.float32), SR)], ["a", "b"])
    other = sae_mod.BatchTopKSAE(64, 128, 4, random_state=0)
    with (pytest.raises(CheckpointError, match="reads activations of width 64 .* layer 3 of .* has width 384"),
          steer(whisper, other, LAYER, [1], 1.0)):
        pass


@pytest.mark.slow
def test_false_speech_report_full(whisper, saes, clips):
    """The steering report of the issue: FPR on held-out non-speech and WER on speech per alpha."""
    rng = np.random.default_rng(0)

    def shuffled(a, piece=0.2):
        n = int(piece * a.sfreq)
        pieces = [a.waveform[i:i + n] for i in range(0, len(a.waveform) - n, n)]
        return Audio(np.concatenate([pieces[i] for i in rng.permutation(len(pieces))]), a.sfreq)

    speech = clips["speech"]
    nonspeech = (clips["music"] + clips["sounds"] + [Audio(a.waveform[::-1].copy(), a.sfreq) for a in speech[:4]]
                 + [shuffled(a) for a in speech[1:5]])
    report = false_speech_experiment(whisper, saes["seed1"], LAYER, nonspeech, speech, SENTENCES,
                                     alphas=(0.0, 0.1, 0.2, 0.3, 0.5, 1.0), n_features=100, test_size=0.5,
                                     random_state=0)
    summary = report.summary.set_index("alpha")
    logging.getLogger(__name__).info("steering report:\n%s", report.summary.to_string())
    assert summary.loc[0.0, "fpr"] > 0  # reversed/shuffled speech is heard as speech
    assert summary.fpr.min() < summary.loc[0.0, "fpr"]  # steering removes false detections
    assert summary.loc[0.0, "wer"] < summary.wer.max()  # ... at a price in WER

"""Activation stores: one backbone pass for all layers, sampling, augmentation, cache, state."""

import io

import numpy as np
import pytest
import soundfile
import torch

from sae_eeg.audio import Audio
from sae_eeg.errors import InputError
from sae_eeg.sae import ActivationStore, ArrayActivationStore, Augmentation, audio_files, mix_at_snr

from _sae_helpers import FakeBackbone


@pytest.fixture
def corpus(tmp_path, rng):
    """Two datasets of WAV files whose every sample is distinct (frames are traceable)."""
    out = {}
    offset = 0.0
    for name, n_files in (("speech", 4), ("other", 2)):
        files = []
        for i in range(n_files):
            n = 16000 // 2 * (i + 1)
            wave = (offset + np.arange(n)) / 1e6
            offset += n
            path = tmp_path / name / f"{i}.wav"
            path.parent.mkdir(exist_ok=True)
            soundfile.write(path, wave.astype(np.float32), 16000, subtype="FLOAT")
            files.append(path)
        out[name] = files
    return out


def _frames_of(files, d_model=16):
    backbone = FakeBackbone(d_model)
    rows = [backbone.activations(soundfile.read(f, dtype="float32")[0], 16000, [1])[1].values for f in files]
    return np.concatenate(rows)


def test_layers_come_from_one_pass_and_every_frame_is_served(corpus):
    backbone = FakeBackbone()
    store = ActivationStore(backbone, corpus["speech"], [3, 1], buffer_size=64, seed=0)
    assert store.layers == (1, 3)
    n_total = len(_frames_of(corpus["speech"]))
    batches = [store.next_batch(50) for _ in range(n_total // 50)]
    layer1 = torch.cat([b[1] for b in batches]).numpy()
    layer3 = torch.cat([b[3] for b in batches]).numpy()
    np.testing.assert_allclose(layer3, (layer1 - 1) * 3 + 3, rtol=1e-5)  # same frames in both layers
    assert backbone.n_calls == store.n_files_read  # one pass per file for both layers
    served = {tuple(r) for r in np.round(layer1, 6)}
    expected = {tuple(r) for r in np.round(_frames_of(corpus["speech"]), 6)}
    assert len(served) == len(layer1) and served <= expected and len(served) > 0.8 * len(expected)
    assert not np.allclose(layer1[:50], _frames_of(corpus["speech"])[:50])  # shuffled


def test_dataset_weights(corpus):
    store = ActivationStore(FakeBackbone(), corpus, [1], weights={"speech": 3, "other": 1}, buffer_size=8, seed=1)
    picks = [store._next_source() for _ in range(2000)]
    share = np.mean([p.parent.name == "speech" for p in picks])
    assert share == pytest.approx(0.75, abs=0.04)
    with pytest.raises(InputError, match=r"weights must have one entry per dataset \['speech', 'other'\], got keys \['speech'\]"):
        ActivationStore(FakeBackbone(), corpus, [1], weights={"speech": 1})


def test_state_restores_the_stream_exactly(corpus):
    def make():
        return ActivationStore(FakeBackbone(), corpus, [1, 2], buffer_size=100, seed=5)

    store = make()
    for _ in range(7):
        store.next_batch(40)
    state = store.state_dict()
    state = torch.load(_roundtrip(state), weights_only=True)
    expected = [store.next_batch(40) for _ in range(10)]
    restored = make()
    restored.load_state_dict(state)
    for want in expected:
        got = restored.next_batch(40)
        assert all(torch.equal(got[n], want[n]) for n in (1, 2))


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_cache_is_reused_across_runs(corpus, tmp_path):
    first = FakeBackbone()
    store = ActivationStore(first, corpus["speech"], [1, 2], buffer_size=32, cache_dir=tmp_path / "cache", seed=2)
    a = [store.next_batch(16) for _ in range(20)]
    assert first.n_calls > 0 and len(list((tmp_path / "cache").rglob("layer_1.npy"))) == first.n_calls
    second = FakeBackbone()
    store = ActivationStore(second, corpus["speech"], [1, 2], buffer_size=32, cache_dir=tmp_path / "cache", seed=2)
    b = [store.next_batch(16) for _ in range(20)]
    assert second.n_calls == 0
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_mix_at_snr(rng):
    signal = rng.standard_normal(8000)
    noise = rng.standard_normal(3000) * 5
    mixed = mix_at_snr(signal, noise, 6.0, offset=100)
    added = mixed - signal
    snr = 10 * np.log10(np.mean(signal**2) / np.mean(added**2))
    assert snr == pytest.approx(6.0, abs=1e-3)
    np.testing.assert_allclose(added[:10] / added[3000:3010], 1.0, rtol=1e-4)  # tiled


def test_augmentation_changes_audio_and_skips_cache(corpus, tmp_path, rng):
    noise = Audio(rng.standard_normal(8000).astype(np.float32), 8000.0)  # resampled to 16 kHz inside
    aug = Augmentation(noise=(noise,), music=(), p_noise=1.0, p_music=0.0, snr_db=(0.0, 20.0))
    backbone = FakeBackbone()
    store = ActivationStore(backbone, corpus["speech"][:1], [1], buffer_size=8, augmentation=aug,
                            cache_dir=tmp_path / "c", seed=0)
    batch = store.next_batch(8)[1].numpy()
    clean = _frames_of(corpus["speech"][:1])
    assert not any(np.allclose(row, clean, atol=1e-4) for row in batch)
    assert not list((tmp_path / "c").rglob("*.npy"))
    with pytest.raises(InputError, match=r"p_music=0.3 > 0 needs at least one music clip"):
        Augmentation(noise=(noise,))
    with pytest.raises(InputError, match=r"p_noise must be in \[0, 1\], got 1.5"):
        Augmentation(noise=(noise,), p_noise=1.5, p_music=0)


def test_array_store_epochs_and_state(rng):
    acts = {2: rng.standard_normal((100, 4)).astype(np.float32)}
    store = ArrayActivationStore(acts, seed=3)
    epoch = torch.cat([store.next_batch(30)[2] for _ in range(3)] + [store.next_batch(10)[2]])
    np.testing.assert_array_equal(np.sort(epoch.numpy(), axis=0), np.sort(acts[2], axis=0))
    state = store.state_dict()
    want = store.next_batch(25)[2]
    other = ArrayActivationStore(acts, seed=3)
    other.load_state_dict(state)
    assert torch.equal(other.next_batch(25)[2], want)
    with pytest.raises(InputError, match=r"one shape; got \{1: \(10, 4\), 2: \(10, 5\)\}"):
        ArrayActivationStore({1: np.zeros((10, 4)), 2: np.zeros((10, 5))})


def test_store_input_errors(corpus, tmp_path):
    with pytest.raises(InputError, match=r"backbone must have an activations\(waveform, sfreq, layers\) method, got str"):
        ActivationStore("whisper", corpus["speech"], [1])
    with pytest.raises(InputError, match=r"numbered from 1, got \[0\]"):
        ActivationStore(FakeBackbone(), corpus["speech"], [0])
    with pytest.raises(InputError, match=r"sources\['a'\] is empty"):
        ActivationStore(FakeBackbone(), {"a": []}, [1])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"holds no audio files with suffix in \['.wav'"):
        audio_files(tmp_path / "empty")
    assert audio_files(corpus["speech"][0].parent) == sorted(corpus["speech"])

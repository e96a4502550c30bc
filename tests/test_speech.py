"""Offline stimuli: eSpeak NG speech and the synthetic music-like / noise-like clips."""

import threading

import numpy as np
import pytest
from scipy.signal import welch

from sae_eeg.audio import Audio
from sae_eeg.errors import InputError
from sae_eeg.speech import NOISE_KINDS, speak, synth_music_like, synth_noise_like


def _flatness(x, sfreq):
    """Spectral flatness (geometric / arithmetic mean of the PSD): ~1 for noise, ~0 for tones."""
    _, psd = welch(x, fs=sfreq, nperseg=2048)
    psd = psd[1:] + 1e-20
    return float(np.exp(np.mean(np.log(psd))) / np.mean(psd))


def test_speak_returns_speech_at_22050_hz():
    audio = speak("The quick brown fox jumps over the lazy dog.")
    assert isinstance(audio, Audio) and audio.sfreq == 22050.0
    assert audio.waveform.dtype == np.float32 and audio.waveform.ndim == 1
    assert 1.5 < audio.duration < 6.0  # nine words at 160 words per minute
    assert 0.05 < np.abs(audio.waveform).max() <= 1.0
    assert np.isfinite(audio.waveform).all()


def test_speak_rate_changes_duration():
    text = "A journey of a thousand miles begins with a single step."
    slow = speak(text, words_per_minute=100)
    fast = speak(text, words_per_minute=300)
    assert slow.duration > 1.8 * fast.duration


def test_speak_repeatedly_and_from_threads():
    text = "Hello world, this is a test."
    first = speak(text)
    results = [None] * 4

    def run(i):
        results[i] = speak(text)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for audio in results:  # eSpeak NG varies a few samples of trailing silence between calls
        assert abs(len(audio.waveform) - len(first.waveform)) < 0.01 * len(first.waveform)
        n = min(len(audio.waveform), len(first.waveform)) // 1100 * 1100
        envelopes = [np.sqrt(np.mean(w[:n].reshape(-1, 1100) ** 2, axis=1)) for w in (audio.waveform, first.waveform)]
        assert np.corrcoef(*envelopes)[0, 1] > 0.9  # the same words at the same times


def test_speak_other_voice():
    assert speak("Guten Tag, wie geht es Ihnen?", voice="de").duration > 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"text": "   "}, "text must contain something to speak, got '   '"),
        ({"text": "hi", "voice": "xx-nonexistent"}, "no voice 'xx-nonexistent'"),
        ({"text": "hi", "words_per_minute": 20}, r"words_per_minute must be in \[80, 450\], got 20"),
        ({"text": 3}, "text must be an instance of str, got int"),
    ],
)
def test_speak_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        speak(**kwargs)


def test_music_like_is_seeded_tonal_and_rhythmic():
    a = synth_music_like(8.0, random_state=0)
    b = synth_music_like(8.0, random_state=0)
    c = synth_music_like(8.0, random_state=1)
    assert a.sfreq == 16000.0 and a.waveform.shape == (128000,) and a.waveform.dtype == np.float32
    np.testing.assert_array_equal(a.waveform, b.waveform)
    assert not np.array_equal(a.waveform, c.waveform)
    assert np.abs(a.waveform).max() == pytest.approx(0.5)
    noise = synth_noise_like(8.0, kind="white", random_state=0)
    assert _flatness(a.waveform, a.sfreq) < 0.1 * _flatness(noise.waveform, noise.sfreq)
    # notes start on beats: the 50 ms energy envelope fluctuates strongly
    energy = np.sqrt(np.mean(a.waveform[: 8 * 16000].reshape(-1, 800) ** 2, axis=1))
    assert energy.std() / energy.mean() > 0.3


@pytest.mark.parametrize("kind", sorted(NOISE_KINDS))
def test_noise_like_kinds(kind):
    a = synth_noise_like(3.0, kind=kind, sfreq=22050, random_state=3)
    b = synth_noise_like(3.0, kind=kind, sfreq=22050, random_state=3)
    assert a.sfreq == 22050.0 and a.waveform.shape == (66150,)
    np.testing.assert_array_equal(a.waveform, b.waveform)
    assert np.abs(a.waveform).max() == pytest.approx(0.5)


def test_noise_like_spectra():
    sfreq = 16000
    freqs, hum = welch(synth_noise_like(4.0, kind="hum", random_state=0).waveform, fs=sfreq, nperseg=8192)
    assert freqs[np.argmax(hum)] == pytest.approx(50.0, abs=2) or freqs[np.argmax(hum)] == pytest.approx(60.0, abs=2)
    freqs, rain = welch(synth_noise_like(4.0, kind="rain", random_state=0).waveform, fs=sfreq)
    assert rain[freqs > 2000].sum() > rain[freqs < 1000].sum()
    freqs, wind = welch(synth_noise_like(4.0, kind="wind", random_state=0).waveform, fs=sfreq)
    assert wind[freqs < 800].sum() > 0.8 * wind.sum()
    env = synth_noise_like(4.0, random_state=0).waveform
    assert _flatness(env, sfreq) < 0.9 and np.isfinite(env).all()


@pytest.mark.parametrize(
    ("func", "kwargs", "match"),
    [
        (synth_noise_like, {"duration": 1.0, "kind": "rian"}, "Invalid value for 'kind'.*'rian'.*Did you mean 'rain'"),
        (synth_noise_like, {"duration": 0.0}, "duration must be > 0 s, got 0.0"),
        (synth_music_like, {"duration": -1}, "duration must be > 0 s, got -1"),
        (synth_music_like, {"duration": 1.0, "sfreq": 100}, "sfreq must be >= 8000 Hz for these clips, got 100"),
    ],
)
def test_clips_bad_input(func, kwargs, match):
    with pytest.raises(InputError, match=match):
        func(**kwargs)

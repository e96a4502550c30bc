"""Fixtures of the backbone tests: the bundled Whisper tiny.en, converted once into a temporary cache."""

import numpy as np
import pytest

from sae_eeg.backbones import bundled_whisper_path, load_backbone
from sae_eeg.speech import speak

#: Sentences spoken by eSpeak NG for the transcription test (no numbers, US spelling).
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "The weather today is cold and windy with a chance of rain.",
    "Please remember to close the window before you leave the house.",
    "My favorite color is green and I like to walk in the park.",
    "We went to the market to buy fresh bread and cheese.",
)


@pytest.fixture(scope="session")
def sae_eeg_cache(tmp_path_factory):
    """A fresh cache root, so the tests exercise the conversion and never touch ~/.cache."""
    return tmp_path_factory.mktemp("sae_eeg_cache")


@pytest.fixture(scope="session")
def tiny_en_path(sae_eeg_cache):
    return bundled_whisper_path(sae_eeg_cache)


@pytest.fixture(scope="session")
def tiny_en(tiny_en_path):
    return load_backbone(tiny_en_path)


@pytest.fixture(scope="session")
def spoken():
    """(text, Audio at 22050 Hz) for every sentence of SENTENCES."""
    return [(text, speak(text)) for text in SENTENCES]


@pytest.fixture(scope="session")
def long_stimulus(spoken):
    """70 s at 16 kHz: speech separated by silences, filled with a quiet tone; peak about 0.8."""
    from sae_eeg.audio import resample

    rng = np.random.default_rng(7)
    sfreq, duration = 16000, 70.0
    out = 0.01 * np.sin(2 * np.pi * 220 * np.arange(int(sfreq * duration)) / sfreq)
    pos = int(0.5 * sfreq)
    while pos < len(out):
        _, audio = spoken[int(rng.integers(len(spoken)))]
        speech = resample(audio.waveform, sfreq=audio.sfreq, new_sfreq=sfreq)[: len(out) - pos]
        out[pos:pos + len(speech)] += speech
        pos += len(speech) + int(rng.uniform(0.2, 1.5) * sfreq)
    return out.astype(np.float32), float(sfreq)

"""Offline test stimuli: speech from eSpeak NG, and synthetic music-like and noise-like clips.

Nothing here downloads anything. :func:`speak` drives the eSpeak NG library
shipped by the PyPI package ``espeakng-loader`` through :mod:`ctypes`
(synchronous mode: samples arrive through a callback while ``espeak_Synth``
runs). :func:`synth_music_like` and :func:`synth_noise_like` build seeded
non-speech clips (notes and chords with harmonics over a beat; filtered noise
bursts, rain, hum and wind) for the evaluations and the demo.
"""

from __future__ import annotations

import ctypes
import threading
from typing import ClassVar

import numpy as np
from scipy.signal import butter, sosfilt

from ._check import _check_option, _soft_import, _validate_type
from ._docs import fill_doc
from .audio import Audio
from .errors import InputError, SpeechError

#: Sampling rate of eSpeak NG output, in Hz.
ESPEAK_SFREQ = 22050.0

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_PARAM_RATE = 1
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _ESpeak:
    """The eSpeak NG library, initialised once per process; every call holds the lock."""

    lock = threading.Lock()
    lib = None
    callback = None  # the ctypes callback must outlive every synthesis
    chunks: ClassVar[list] = []

    @classmethod
    def _on_samples(cls, samples, n_samples, _events):
        if n_samples > 0 and samples:
            cls.chunks.append(np.ctypeslib.as_array(samples, shape=(n_samples,)).copy())
        return 0  # 0: continue synthesis

    @classmethod
    def _load(cls):
        loader = _soft_import("espeakng_loader", "Offline speech synthesis", pip_name="espeakng-loader")
        try:
            lib = ctypes.CDLL(loader.get_library_path())
        except OSError as err:
            raise SpeechError(f"Could not load eSpeak NG from {loader.get_library_path()!r}: {err}") from err
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synchronize.argtypes = []
        data_path = loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 500, data_path, _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise SpeechError(f"espeak_Initialize failed (returned {rate}) with data path {data_path!r}.")
        cls.callback = _SYNTH_CALLBACK(cls._on_samples)
        lib.espeak_SetSynthCallback(cls.callback)
        cls.lib = lib

    @classmethod
    def synth(cls, text, voice, words_per_minute):
        with cls.lock:
            if cls.lib is None:
                cls._load()
            lib = cls.lib
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise InputError(
                    f"eSpeak NG has no voice {voice!r}; use a language code such as 'en-us', "
                    "'en-gb', 'de' or 'fr'."
                )
            lib.espeak_SetParameter(_PARAM_RATE, int(words_per_minute), 0)
            data = text.encode("utf-8") + b"\0"
            cls.chunks = []
            status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            lib.espeak_Synchronize()
            chunks, cls.chunks = cls.chunks, []
        if status != 0:
            raise SpeechError(f"espeak_Synth failed with status {status} for text {text[:60]!r}.")
        if not chunks:
            raise SpeechError(f"eSpeak NG produced no audio for text {text[:60]!r}.")
        return np.concatenate(chunks)


def speak(text, *, voice="en-us", words_per_minute=160):
    """Speak ``text`` with eSpeak NG, offline.

    Safe to call repeatedly and from several threads: the library is
    initialised once per process and calls are serialised by a lock.

    Parameters
    ----------
    text : str
        The text to speak (UTF-8; punctuation shapes the prosody).
    voice : str
        eSpeak NG voice name, e.g. ``"en-us"`` (default), ``"en-gb"``, ``"de"``.
    words_per_minute : int
        Speaking rate, 80 to 450 words per minute. Default 160.

    Returns
    -------
    audio : Audio
        ``(waveform, sfreq)`` with ``sfreq`` = 22050 Hz and the waveform float32
        in [-1, 1], shape (n_samples,).

    Raises
    ------
    InputError
        Empty text, an unknown voice or a rate outside [80, 450].
    SpeechError
        If the eSpeak NG library cannot be loaded or synthesis fails.
    ImportError
        If ``espeakng-loader`` is not installed.

    Examples
    --------
    >>> waveform, sfreq = speak("The quick brown fox.")  # doctest: +SKIP
    """
    _validate_type(text, str, "text")
    _validate_type(voice, str, "voice")
    if not text.strip():
        raise InputError(f"text must contain something to speak, got {text!r}.")
    rate = words_per_minute
    _validate_type(rate, "int-like", "words_per_minute")
    if not 80 <= rate <= 450:
        raise InputError(f"words_per_minute must be in [80, 450], got {rate!r}.")
    samples = _ESpeak.synth(text, voice, rate)
    return Audio((samples.astype(np.float32) / 32768.0), ESPEAK_SFREQ)


def _check_clip(duration, sfreq):
    _validate_type(duration, "numeric", "duration")
    _validate_type(sfreq, "numeric", "sfreq")
    if not duration > 0:
        raise InputError(f"duration must be > 0 s, got {duration!r}.")
    if not sfreq >= 8000:
        raise InputError(f"sfreq must be >= 8000 Hz for these clips, got {sfreq!r}.")
    return round(duration * sfreq), float(sfreq)


def _normalise(x, peak=0.5):
    top = np.max(np.abs(x))
    return (x * (peak / top) if top > 0 else x).astype(np.float32)


def _envelope(n, sfreq, attack, release):
    """Attack-decay envelope of ``n`` samples: linear attack, exponential decay."""
    t = np.arange(n) / sfreq
    return np.minimum(t / attack, 1.0) * np.exp(-t / release)


def _note(f0, n, sfreq, rng):
    """A harmonic tone: ``f0`` plus up to 8 harmonics with decaying, jittered amplitudes."""
    t = np.arange(n) / sfreq
    tone = np.zeros(n)
    brightness = rng.uniform(0.8, 2.0)
    for k in range(1, 9):
        if k * f0 >= sfreq / 2:
            break
        tone += k ** -brightness * rng.uniform(0.7, 1.0) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    return tone * _envelope(n, sfreq, attack=0.01, release=rng.uniform(0.15, 0.6))


def _drum(kind, n, sfreq, rng):
    t = np.arange(n) / sfreq
    if kind == "kick":  # a falling sine sweep
        freq = 50 + 100 * np.exp(-t / 0.03)
        return np.sin(2 * np.pi * np.cumsum(freq) / sfreq) * np.exp(-t / 0.12)
    noise = rng.standard_normal(n)  # hi-hat: high-passed noise tick
    return sosfilt(butter(4, min(6000, 0.4 * sfreq), "highpass", fs=sfreq, output="sos"), noise) * np.exp(-t / 0.02)


@fill_doc
def synth_music_like(duration, *, sfreq=16000, random_state=None):
    """A music-like clip: a melody and chords of harmonic notes over a drum beat.

    Notes are drawn from a major or minor scale, each a fundamental with up to
    eight harmonics and a plucked envelope; every beat carries a chord or a
    melody note, with a kick on strong beats and hi-hats on off-beats. The tempo
    (80-150 beats per minute), key and timbre are drawn from ``random_state``.

    Parameters
    ----------
    %(duration_clip)s
    %(sfreq_clip)s
    %(random_state)s

    Returns
    -------
    music : Audio
        The clip, ``round(duration * sfreq)`` float32 samples scaled to a peak of 0.5.
    """
    n, sfreq = _check_clip(duration, sfreq)
    rng = np.random.default_rng(random_state)
    beat = int(sfreq * 60.0 / rng.uniform(80, 150))
    scale = np.array([0, 2, 4, 5, 7, 9, 11] if rng.random() < 0.5 else [0, 2, 3, 5, 7, 8, 10])
    root = rng.integers(45, 57)  # MIDI A2..G#3
    midi_to_hz = lambda m: 440.0 * 2.0 ** ((m - 69) / 12.0)
    out = np.zeros(n + 4 * beat)
    for i, start in enumerate(range(0, n, beat)):
        length = beat * int(rng.choice([1, 1, 2]))
        if i % 4 == 0:  # chord on the bar: root, third, fifth of a scale degree
            degree = rng.integers(0, 7)
            for step in (0, 2, 4):
                octave, pos = divmod(degree + step, 7)
                out[start:start + 2 * beat] += 0.5 * _note(midi_to_hz(root + scale[pos] + 12 * octave), 2 * beat, sfreq, rng)
        if rng.random() < 0.85:  # melody an octave up
            octave, pos = divmod(int(rng.integers(0, 10)), 7)
            out[start:start + length] += _note(midi_to_hz(root + 12 + scale[pos] + 12 * octave), length, sfreq, rng)
        drum = "kick" if i % 2 == 0 else "hihat"
        out[start:start + beat] += 0.6 * _drum(drum, beat, sfreq, rng)
    return Audio(_normalise(out[:n]), sfreq)


def _band_noise(n, sfreq, rng, low, high, order=4):
    high = min(high, 0.45 * sfreq)
    sos = butter(order, [low, high], "bandpass", fs=sfreq, output="sos")
    return sosfilt(sos, rng.standard_normal(n))


def _bursts(n, sfreq, rng):
    """Band-passed noise bursts (doors, steps, rustling) at random times."""
    out = np.zeros(n)
    for _ in range(max(1, int(rng.poisson(1.5 * n / sfreq)))):
        length = int(sfreq * rng.uniform(0.05, 0.6))
        start = int(rng.integers(0, max(1, n - length)))
        low = rng.uniform(100, 2000)
        burst = _band_noise(length, sfreq, rng, low, low * rng.uniform(1.5, 4))
        out[start:start + length] += rng.uniform(0.3, 1.0) * burst[: n - start] * np.hanning(length)[: n - start]
    return out


def _rain(n, sfreq, rng):
    """Rain: a dense stream of short high-passed droplets over soft broadband noise."""
    drops = np.zeros(n)
    idx = rng.integers(0, n, size=int(400 * n / sfreq))
    np.add.at(drops, idx, rng.uniform(0.2, 1.0, size=idx.size))
    sos = butter(2, min(3000, 0.4 * sfreq), "highpass", fs=sfreq, output="sos")
    decay = np.exp(-np.arange(int(0.004 * sfreq)) / (0.001 * sfreq))
    return sosfilt(sos, np.convolve(drops, decay)[:n]) + 0.05 * _band_noise(n, sfreq, rng, 500, 8000)


def _hum(n, sfreq, rng):
    """Mains or machine hum: 50 or 60 Hz with odd and even harmonics and slow wobble."""
    t = np.arange(n) / sfreq
    f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.99, 1.01)
    wobble = 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
    return wobble * sum(k ** -1.0 * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in range(1, 7))


def _wind(n, sfreq, rng):
    """Wind: low-passed noise with a slowly varying gain."""
    t = np.arange(n) / sfreq
    gain = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 6.3))
    return gain * _band_noise(n, sfreq, rng, 40, 600, order=2)


def _environmental(n, sfreq, rng):
    weights = rng.dirichlet(np.ones(4)) + 0.1
    parts = [_bursts, _rain, _hum, _wind]
    return sum(w * _normalise(p(n, sfreq, rng), 1.0) for w, p in zip(weights, parts))


def _white(n, sfreq, rng):
    return rng.standard_normal(n)


def _pink(n, sfreq, rng):
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sfreq)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


#: Noise kinds of :func:`synth_noise_like` (the registry drives validation and dispatch).
NOISE_KINDS = {
    "environmental": _environmental, "bursts": _bursts, "rain": _rain, "hum": _hum,
    "wind": _wind, "white": _white, "pink": _pink,
}


@fill_doc
def synth_noise_like(duration, *, kind="environmental", sfreq=16000, random_state=None):
    """A non-speech, non-music noise clip.

    Parameters
    ----------
    %(duration_clip)s
    kind : str
        ``"environmental"`` (default) mixes, with random weights, band-passed
        noise bursts (``"bursts"``), rain (``"rain"``: dense droplets), mains
        hum (``"hum"``: 50/60 Hz and harmonics) and wind (``"wind"``:
        slowly modulated low-passed noise); each also exists alone. ``"white"``
        and ``"pink"`` give stationary noise.
    %(sfreq_clip)s
    %(random_state)s

    Returns
    -------
    audio : Audio
        float32 waveform of ``round(duration * sfreq)`` samples, peak 0.5.
    """
    _check_option("kind", kind, NOISE_KINDS)
    n, sfreq = _check_clip(duration, sfreq)
    rng = np.random.default_rng(random_state)
    return Audio(_normalise(NOISE_KINDS[kind](n, sfreq, rng)), sfreq)

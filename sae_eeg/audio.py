"""Stimulus audio: loading, down-mixing, resampling and content hashing."""

from __future__ import annotations

import gzip
import hashlib
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import soundfile
from scipy.signal import resample_poly

from ._check import _check_file, _validate_type
from ._docs import fill_doc
from .errors import InputError


class Audio(NamedTuple):
    """A mono waveform and its sampling rate.

    Attributes
    ----------
    waveform : ndarray, shape (n_samples,), float32
        The samples, nominally in [-1, 1].
    sfreq : float
        Sampling rate in Hz.
    """

    waveform: np.ndarray
    sfreq: float

    @property
    def duration(self):
        """Duration in seconds."""
        return len(self.waveform) / self.sfreq


def check_waveform(waveform, sfreq, *, name="waveform"):
    """Validate a waveform and its sampling rate; return ``(float32 1-D array, float)``.

    Multi-channel input of shape (n_samples, n_channels) is averaged to mono.

    Raises
    ------
    InputError
        If ``sfreq <= 0``, the waveform is empty, not 1-D/2-D, or holds NaN/Inf.
    """
    _validate_type(sfreq, "numeric", "sfreq")
    if not sfreq > 0:
        raise InputError(f"sfreq must be > 0 Hz, got {sfreq!r}.")
    waveform = np.asarray(waveform)
    if waveform.ndim == 2:
        waveform = waveform.mean(axis=1)
    if waveform.ndim != 1:
        raise InputError(
            f"{name} must have shape (n_samples,) or (n_samples, n_channels), got {waveform.shape}."
        )
    if waveform.size == 0:
        raise InputError(f"{name} is empty (0 samples).")
    if not np.all(np.isfinite(waveform)):
        n_bad = int(np.size(waveform) - np.isfinite(waveform).sum())
        raise InputError(f"{name} holds {n_bad} NaN or Inf samples.")
    return waveform.astype(np.float32, copy=False), float(sfreq)


def load_audio(path, *, new_sfreq=None, mono=True):
    """Read a WAV/FLAC/OGG file (anything libsndfile reads), or a NumPy ``.npz[.gz]``.

    A ``.npz`` (or gzipped ``.npz.gz``, as SparrKULee ships its stimuli) holds the
    samples in ``audio`` and the rate in ``fs``.

    Parameters
    ----------
    path : path-like
        The audio file.
    new_sfreq : float | None
        Resample to this rate (Hz) with an anti-aliasing polyphase filter.
        ``None`` keeps the file's rate.
    mono : bool
        Average the channels to one. If False a multi-channel file raises.

    Returns
    -------
    audio : Audio
        ``(waveform, sfreq)``, the waveform float32 of shape (n_samples,).

    Raises
    ------
    InputError
        Missing, unreadable or corrupt file, empty audio, NaN/Inf samples.
    """
    path = _check_file(path, "audio file")
    if path.name.lower().endswith((".npz", ".npz.gz")):
        data, sfreq = _read_npz_audio(path)
    else:
        try:
            data, sfreq = soundfile.read(str(path), dtype="float32", always_2d=True)
        except Exception as err:  # libsndfile raises its own error type for corrupt files
            raise InputError(f"audio file {str(path)!r} could not be read: {err}") from err
    if data.shape[1] > 1 and not mono:
        raise InputError(
            f"audio file {str(path)!r} has {data.shape[1]} channels; pass mono=True to average them."
        )
    waveform, sfreq = check_waveform(data, sfreq, name=f"audio file {str(path)!r}")
    if new_sfreq is not None:
        waveform = resample(waveform, sfreq=sfreq, new_sfreq=new_sfreq)
        sfreq = float(new_sfreq)
    return Audio(waveform, sfreq)


def audio_duration(path):
    """Duration in seconds of an audio file :func:`load_audio` reads, from its header when it has one.

    Parameters
    ----------
    path : path-like
        The audio file (``.npz[.gz]`` files are read whole).

    Returns
    -------
    duration : float

    Raises
    ------
    InputError
        Missing or unreadable file.
    """
    path = _check_file(path, "audio file")
    if path.name.lower().endswith((".npz", ".npz.gz")):
        data, sfreq = _read_npz_audio(path)
        return len(data) / sfreq
    try:
        return float(soundfile.info(str(path)).duration)
    except Exception as err:  # libsndfile raises its own error type for corrupt files
        raise InputError(f"audio file {str(path)!r} could not be read: {err}") from err


def _read_npz_audio(path):
    """(samples (n, channels) float32, rate) of an ``.npz[.gz]`` with ``audio`` and ``fs``."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            missing = [k for k in ("audio", "fs") if k not in z.files]
            if missing:
                raise InputError(f"audio file {str(path)!r} lacks {missing}; it holds {z.files} "
                                 "(expected 'audio' samples and their rate 'fs').")
            audio, sfreq = np.asarray(z["audio"], dtype=np.float32), float(z["fs"])
    except (OSError, EOFError, ValueError) as err:
        raise InputError(f"audio file {str(path)!r} could not be read: {err}") from err
    if audio.ndim == 1:
        audio = audio[:, None]
    return audio, sfreq


@fill_doc
def resample(x, *, sfreq, new_sfreq, axis=0):
    """Resample with a polyphase anti-aliasing (Kaiser-window FIR) filter.

    Parameters
    ----------
    x : ndarray
        Signal; ``axis`` is time.
    %(sfreq)s
    new_sfreq : float
        Target rate in Hz.
    axis : int
        The time axis.

    Returns
    -------
    y : ndarray
        The resampled signal, ``ceil(n * new_sfreq / sfreq)`` samples long.
    """
    _check_rates(sfreq, new_sfreq)
    up, down = _poly_ratio(sfreq, new_sfreq)
    if up == down:
        return np.asarray(x)
    y = resample_poly(np.asarray(x), up, down, axis=axis)
    return y.astype(np.result_type(x, np.float32), copy=False)


def _check_rates(sfreq, new_sfreq):
    for name, value in (("sfreq", sfreq), ("new_sfreq", new_sfreq)):
        _validate_type(value, "numeric", name)
        if not value > 0:
            raise InputError(f"{name} must be > 0 Hz, got {value!r}.")


def _poly_ratio(sfreq, new_sfreq):
    """(up, down) of :func:`resample`'s polyphase filter."""
    ratio = Fraction(new_sfreq / sfreq).limit_denominator(1000)
    return ratio.numerator, ratio.denominator


@fill_doc
def resample_blocks(read, n_samples, *, sfreq, new_sfreq, block_samples=2**20):
    """:func:`resample` of a long 1-D signal read block by block, in bounded memory.

    The output equals ``resample(x, sfreq=sfreq, new_sfreq=new_sfreq)`` of the whole
    signal ``x`` up to float rounding: each block is resampled with a margin of input
    samples on both sides at least as long as the polyphase filter's half-length, and
    blocks start on the filter's output grid (a multiple of its decimation factor), so
    every kept output sample sees exactly the input it sees in one whole pass (zeros
    beyond the signal's ends, as there).

    Parameters
    ----------
    read : callable
        ``read(start, stop)`` returns samples ``start:stop`` of the signal as a 1-D array
        (computed on the fly or sliced from an array or a memory map).
    n_samples : int
        Length of the signal.
    %(sfreq)s
    new_sfreq : float
        Target rate in Hz.
    block_samples : int
        Input samples per block (plus the margins), default 2**20.

    Returns
    -------
    y : ndarray, shape (ceil(n_samples * new_sfreq / sfreq),)
        float64 for float64 blocks, else float32.
    """
    _check_rates(sfreq, new_sfreq)
    up, down = _poly_ratio(sfreq, new_sfreq)
    if up == down:
        return np.concatenate([read(a, min(a + block_samples, n_samples))
                               for a in range(0, n_samples, block_samples)])
    # resample_poly's filter: 2 * 10 * max(up, down) + 1 taps at the upsampled rate
    margin = -(-(10 * max(up, down) // up + 2) // down) * down
    step = max(down, block_samples // down * down)
    n_out = -(-n_samples * up // down)
    out = None
    for a in range(0, n_samples, step):
        b = min(a + step, n_samples)
        lo, hi = max(0, a - margin), min(n_samples, b + margin)
        y = resample_poly(np.asarray(read(lo, hi)), up, down)
        if out is None:
            out = np.empty(n_out, dtype=np.result_type(y, np.float32))
        j0, j1 = a * up // down, (n_out if b == n_samples else b * up // down)
        out[j0:j1] = y[j0 - lo * up // down:j1 - lo * up // down]
    return out


def stimulus_hash(waveform, sfreq):
    """Content hash of a stimulus: sha256 over its float32 samples and sampling rate.

    Two files with the same audio (e.g. WAV and FLAC) hash the same, so caches and
    provenance key on the content, not the file name.
    """
    waveform, sfreq = check_waveform(waveform, sfreq)
    digest = hashlib.sha256(np.ascontiguousarray(waveform).tobytes())
    digest.update(repr(float(sfreq)).encode())
    return digest.hexdigest()


def file_hash(path, *, chunk_size=1 << 20):
    """sha256 of a file's bytes (hex), read in chunks."""
    path = _check_file(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()

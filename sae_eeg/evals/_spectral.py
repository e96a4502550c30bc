"""Log-mel spectrograms and clip-level acoustic descriptors (numpy/scipy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import stft

from .._check import _check_range, _ensure_int
from .._docs import fill_doc
from ..audio import check_waveform


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_fft, sfreq, n_mels, *, fmin=0.0, fmax=None):
    """Triangular mel filters (HTK mel scale), area-normalised (Slaney).

    Returns
    -------
    filters : ndarray, shape (n_mels, n_fft // 2 + 1)
    """
    fmax = sfreq / 2 if fmax is None else fmax
    freqs = np.linspace(0, sfreq / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lower) / (centre - lower)
    down = (upper - freqs) / (upper - centre)
    filters = np.maximum(0, np.minimum(up, down))
    return filters * (2.0 / (upper - lower))


@dataclass(frozen=True)
class LogMel:
    """A log-mel spectrogram with its time axis.

    Attributes
    ----------
    values : ndarray, shape (n_frames, n_mels)
        log10 of mel power (floored at 1e-10).
    sfreq : float
        Frame rate in Hz.
    tmin : float
        Time of the first frame centre, in s.
    mel_freqs : ndarray, shape (n_mels,)
        Centre frequency of each mel band, in Hz.
    """

    values: np.ndarray
    sfreq: float
    tmin: float
    mel_freqs: np.ndarray

    @property
    def times(self):
        """Frame centre times (n_frames,), in s."""
        return self.tmin + np.arange(self.values.shape[0]) / self.sfreq


@fill_doc
def log_mel_spectrogram(waveform, sfreq, *, n_mels=80, hop=0.01, win=0.025, fmax=8000.0):
    """Log-mel spectrogram of a mono waveform (Whisper's 80 bands, 10 ms hop by default).

    Parameters
    ----------
    waveform : ndarray, shape (n_samples,)
        Mono audio.
    %(sfreq)s
    n_mels : int
        Number of mel bands. Default 80.
    hop : float
        Hop between frames, in s. Default 0.01.
    win : float
        Window length, in s. Default 0.025.
    fmax : float
        Highest mel edge in Hz (clipped to the Nyquist frequency). Default 8000.

    Returns
    -------
    log_mel : LogMel
        Frame centres at ``k * hop`` s.
    """
    waveform, sfreq = check_waveform(waveform, sfreq)
    n_mels = _ensure_int(n_mels, "n_mels")
    _check_range("n_mels", n_mels, 1)
    _check_range("hop", hop, 0, low_inclusive=False)
    _check_range("win", win, 0, low_inclusive=False)
    hop_n = max(1, round(hop * sfreq))
    win_n = max(2, round(win * sfreq))
    n_fft = int(2 ** np.ceil(np.log2(win_n)))
    _, times, Z = stft(np.asarray(waveform, dtype=np.float64), fs=sfreq, window="hann", nperseg=win_n,
                       noverlap=win_n - hop_n, nfft=n_fft, boundary="zeros", padded=True)
    power = np.abs(Z) ** 2
    fmax = min(float(fmax), sfreq / 2)
    filters = mel_filterbank(n_fft, sfreq, n_mels, fmax=fmax)
    mel = filters @ power
    centres = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(fmax), n_mels + 2))[1:-1]
    values = np.log10(np.maximum(mel, 1e-10)).T.astype(np.float32)
    return LogMel(values=values, sfreq=sfreq / hop_n, tmin=float(times[0]), mel_freqs=centres)


@fill_doc
def acoustic_descriptors(waveform, sfreq):
    """Clip-level acoustic descriptors (means over 25 ms frames).

    Parameters
    ----------
    waveform : ndarray, shape (n_samples,)
        Mono audio.
    %(sfreq)s

    Returns
    -------
    descriptors : dict of str to float
        ``rms_db`` (RMS of the whole clip in dB re 1, floored at -100 dB), ``spectral_centroid`` and
        ``spectral_bandwidth`` (Hz), ``spectral_flatness`` (0-1),
        ``spectral_rolloff`` (Hz below which 85%% of the power lies),
        ``zero_crossing_rate`` (crossings per sample).
    """
    waveform, sfreq = check_waveform(waveform, sfreq)
    x = np.asarray(waveform, dtype=np.float64)
    win_n = max(2, round(0.025 * sfreq))
    hop_n = max(1, round(0.01 * sfreq))
    freqs, _, Z = stft(x, fs=sfreq, window="hann", nperseg=win_n, noverlap=win_n - hop_n)
    power = np.abs(Z) ** 2 + 1e-20
    total = power.sum(axis=0)
    centroid = (freqs[:, None] * power).sum(axis=0) / total
    bandwidth = np.sqrt(((freqs[:, None] - centroid) ** 2 * power).sum(axis=0) / total)
    flatness = np.exp(np.log(power).mean(axis=0)) / power.mean(axis=0)
    cumulative = np.cumsum(power, axis=0) / total
    rolloff = freqs[np.argmax(cumulative >= 0.85, axis=0)]
    n_frames = max(1, (x.size - win_n) // hop_n + 1)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (0, max(0, win_n - x.size))), win_n)[::hop_n][:n_frames]
    zcr = np.mean(np.abs(np.diff(np.signbit(frames), axis=1)), axis=1)
    return {
        "rms_db": float(20 * np.log10(max(np.sqrt(np.mean(x**2)), 1e-5))),
        "spectral_centroid": float(centroid.mean()),
        "spectral_bandwidth": float(bandwidth.mean()),
        "spectral_flatness": float(flatness.mean()),
        "spectral_rolloff": float(rolloff.mean()),
        "zero_crossing_rate": float(zcr.mean()),
    }

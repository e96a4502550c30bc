"""Stimulus features as time series on the EEG grid.

SAE features of a stimulus are a sparse time series (:class:`FeatureTrajectory`,
``scipy.sparse.csr_array`` of shape (T, F) at the backbone's frame rate). They are
resampled to the EEG rate by a sparse banded linear operator (a Kaiser-windowed sinc
anti-aliasing filter evaluated at the new sample times), so a whole-stimulus T x F
array is never densified. Acoustic baselines (broadband envelope, log-mel band
envelopes, envelope onsets) come as dense :class:`TimeSeries` on the same grid. A
disk cache keys trajectories by stimulus hash, backbone, layer, SAE hash and rate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import numpy as np
from scipy import sparse
from scipy.special import i0
from scipy.signal import hilbert, stft

from ._check import _check_option, _check_range, _validate_type
from ._docs import fill_doc
from ._io import atomic_path, config_hash
from .audio import check_waveform, resample_blocks, stimulus_hash
from .errors import InputError

logger = logging.getLogger(__name__)

#: Stop-band attenuation of the resampling filter, in dB.
STOPBAND_DB = 60.0
#: Pass band ends at this fraction of the lower Nyquist rate; the stop band starts at it.
PASSBAND_FRACTION = 0.8
#: Output samples resampled at a time by :func:`resample_dense`.
_ROWS_PER_CHUNK = 1 << 14
#: Input samples per block of the streaming acoustic features (plus margins).
BLOCK_SAMPLES = 1 << 20
#: Audio on each side of a block for the analytic signal, s: the Hilbert kernel's tail
#: beyond it changes a speech envelope by ~1e-5 of its RMS (tests/test_long_stimuli.py).
HILBERT_MARGIN_S = 5.0


def _check_rate(value, name):
    _validate_type(value, "numeric", name)
    _check_range(name, value, 0, None, low_inclusive=False)
    return float(value)


def _grid(tmin, sfreq, n_times):
    return tmin + np.arange(n_times) / sfreq


def _default_n_times(n_in, sfreq, tmin, new_sfreq, new_tmin):
    t_last = tmin + (n_in - 1) / sfreq
    return max(int(np.floor((t_last - new_tmin) * new_sfreq + 1e-9)) + 1, 0)


class _Kernel:
    """Kaiser-windowed sinc low-pass for resampling from ``sfreq`` to ``new_sfreq``."""

    def __init__(self, sfreq, new_sfreq):
        nyq = min(sfreq, new_sfreq) / 2.0
        width_hz = (1.0 - PASSBAND_FRACTION) * nyq
        self.cutoff = nyq - width_hz / 2.0  # -6 dB point, middle of the transition band
        self.sfreq = sfreq
        # Kaiser's formulas: taps N ~ (A - 7.95) / (14.36 df/fs); beta for A > 50 dB
        n_taps = (STOPBAND_DB - 7.95) / (14.36 * width_hz / sfreq) + 1
        self.half_width = n_taps / (2.0 * sfreq)  # seconds
        self.beta = 0.1102 * (STOPBAND_DB - 8.7)
        self.half_taps = int(np.ceil(self.half_width * sfreq)) + 1

    def __call__(self, dt):
        """Weights of input samples lying ``dt`` seconds from an output time."""
        inside = np.abs(dt) < self.half_width
        ratio = np.clip(dt / self.half_width, -1.0, 1.0)
        window = i0(self.beta * np.sqrt(1.0 - ratio**2)) / i0(self.beta)
        h = (2.0 * self.cutoff / self.sfreq) * np.sinc(2.0 * self.cutoff * dt) * window
        return np.where(inside, h, 0.0)


def _same_grid(sfreq, new_sfreq, tmin, new_tmin):
    """True when the output samples are input samples: same rate, offset a whole number of samples."""
    offset = (new_tmin - tmin) * sfreq
    return abs(new_sfreq - sfreq) <= 1e-9 * sfreq and abs(offset - round(offset)) < 1e-6


def _resampling_weights(n_in, sfreq, new_sfreq, tmin, new_tmin, n_times, rows=None):
    """Input indices (n_rows, W) and normalised weights of output samples ``rows``.

    ``rows`` is a ``slice`` of the ``n_times`` output samples (default all); a row's
    weights depend only on its own time, so slices tile the whole exactly. On the
    input's own grid (same rate, whole-sample offset) each output sample is its input
    sample (W = 1): nothing is filtered, and samples beyond the input are 0.
    """
    sfreq, new_sfreq = _check_rate(sfreq, "sfreq"), _check_rate(new_sfreq, "new_sfreq")
    tmin = float(tmin)
    new_tmin = tmin if new_tmin is None else float(new_tmin)
    if n_times is None:
        n_times = _default_n_times(n_in, sfreq, tmin, new_sfreq, new_tmin)
    t_out = _grid(new_tmin, new_sfreq, n_times)[rows if rows is not None else slice(None)]
    centre = np.round((t_out - tmin) * sfreq).astype(np.int64)
    if _same_grid(sfreq, new_sfreq, tmin, new_tmin):
        inside = (centre >= 0) & (centre < n_in)
        return np.clip(centre, 0, max(n_in - 1, 0))[:, None], inside.astype(np.float64)[:, None]
    kernel = _Kernel(sfreq, new_sfreq)
    offsets = np.arange(-kernel.half_taps, kernel.half_taps + 1)
    idx = centre[:, None] + offsets[None, :]
    weights = kernel(t_out[:, None] - (tmin + idx / sfreq))
    # unit DC gain on the infinite grid (zero padding beyond the edges)
    weights /= weights.sum(axis=1, keepdims=True)
    weights[(idx < 0) | (idx >= n_in)] = 0.0
    return np.clip(idx, 0, max(n_in - 1, 0)), weights


def _operator(n_in, sfreq, new_sfreq, tmin, new_tmin, n_times, rows=None):
    """The resampling operator's rows ``rows`` (a slice; default all), CSR (n_rows, n_in)."""
    idx, weights = _resampling_weights(n_in, sfreq, new_sfreq, tmin, new_tmin, n_times, rows=rows)
    n_rows = len(idx)
    matrix = sparse.coo_array(
        (weights.ravel(), (np.repeat(np.arange(n_rows), idx.shape[1]), idx.ravel())), shape=(n_rows, n_in)
    ).tocsr()  # duplicate clipped indices carry zero weight; summing them is harmless
    matrix.eliminate_zeros()
    return matrix


def _row_chunks(n_times):
    """Slices of :data:`_ROWS_PER_CHUNK` output rows: the operator of hours at once would hold (rows x
    taps) indices and weights, ~0.5 GB an hour at 128 Hz."""
    return [slice(a, min(a + _ROWS_PER_CHUNK, n_times)) for a in range(0, n_times, _ROWS_PER_CHUNK)]


def _output_length(n_in, sfreq, new_sfreq, tmin, new_tmin, n_times):
    if n_times is not None:
        return int(n_times)
    new_tmin = float(tmin) if new_tmin is None else float(new_tmin)
    return _default_n_times(n_in, _check_rate(sfreq, "sfreq"), float(tmin), _check_rate(new_sfreq, "new_sfreq"),
                            new_tmin)


@fill_doc
def resample_matrix(n_in, *, sfreq, new_sfreq, tmin=0.0, new_tmin=None, n_times=None):
    """Sparse banded resampling operator R, shape (n_times, n_in): ``y = R @ x``.

    Each row holds a Kaiser-windowed sinc low-pass (cut-off between 0.8 and 1.0 of the
    lower of the two Nyquist rates, 60 dB stop band) evaluated at the input times
    around one output time, so any rate ratio (rational or not) is exact in time. On
    the input's own grid (same rate, whole-sample offset) R selects samples.

    Parameters
    ----------
    n_in : int
        Number of input samples.
    %(resample_grid)s

    Returns
    -------
    R : scipy.sparse.csr_array, shape (n_times, n_in), float64
    """
    return _operator(n_in, sfreq, new_sfreq, tmin, new_tmin, n_times)


@fill_doc
def resample_dense(x, *, sfreq, new_sfreq, tmin=0.0, new_tmin=None, n_times=None, dtype=np.float64):
    """Resample a dense (T, F) array with the operator of :func:`resample_matrix`.

    The operator is built and applied a chunk of output rows at a time, so memory stays
    bounded for hours of signal; each output row is the same sum whatever the chunks.

    Parameters
    ----------
    x : ndarray, shape (T[, F])
        The signal; axis 0 is time (float32 input is not copied to float64).
    %(resample_grid)s
    dtype : numpy dtype
        Of the output (each row is summed in float64 whatever it is). float32 halves
        the memory of many columns, such as an hour of activations. Default float64.

    Returns
    -------
    y : ndarray, shape (n_times, F)
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float64, copy=False)
    x2 = x.reshape(len(x), -1)
    n_times = _output_length(len(x2), sfreq, new_sfreq, tmin, new_tmin, n_times)
    out = np.zeros((n_times, x2.shape[1]), dtype=dtype)
    for rows in _row_chunks(n_times):
        out[rows] = _operator(len(x2), sfreq, new_sfreq, tmin, new_tmin, n_times, rows=rows) @ x2
    return out.reshape((n_times,) + x.shape[1:])


@dataclasses.dataclass(frozen=True)
class TimeSeries:
    """A dense multichannel time series with explicit time (acoustic baselines).

    Attributes
    ----------
    data : ndarray, shape (T, F)
    sfreq : float
        Sampling rate, Hz.
    tmin : float
        Time of the first sample, s.
    names : tuple of str, length F
    """

    data: np.ndarray
    sfreq: float
    tmin: float
    names: tuple

    def __post_init__(self):
        data = np.asarray(self.data)
        if data.ndim != 2:
            raise InputError(f"TimeSeries.data must have shape (T, F), got {data.shape}.")
        if len(self.names) != data.shape[1]:
            raise InputError(
                f"TimeSeries has {data.shape[1]} columns but {len(self.names)} names."
            )
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "sfreq", _check_rate(self.sfreq, "sfreq"))
        object.__setattr__(self, "names", tuple(self.names))

    @property
    def times(self):
        """Sample times in seconds, shape (T,)."""
        return _grid(self.tmin, self.sfreq, len(self.data))

    def resample(self, new_sfreq, *, tmin=None, n_times=None):
        """Resample with the anti-aliasing filter of :func:`resample_matrix`."""
        new_tmin = self.tmin if tmin is None else tmin
        data = resample_dense(
            self.data, sfreq=self.sfreq, new_sfreq=new_sfreq, tmin=self.tmin,
            new_tmin=new_tmin, n_times=n_times,
        )
        return TimeSeries(data, new_sfreq, float(new_tmin), self.names)

    def crop(self, n_times):
        """The first ``n_times`` samples."""
        return dataclasses.replace(self, data=self.data[:n_times])


@dataclasses.dataclass(frozen=True)
class FeatureTrajectory:
    """SAE features of one stimulus as a sparse time series.

    Attributes
    ----------
    data : scipy.sparse.csr_array, shape (T, F)
        Feature activations (float32 or float64).
    sfreq : float
        Sampling rate, Hz (the backbone's frame rate, or the EEG rate after resampling).
    tmin : float
        Time of the first sample (frame centre), s.
    feature_ids : ndarray, shape (F,), int
        SAE feature index of each column.
    """

    data: sparse.csr_array
    sfreq: float
    tmin: float
    feature_ids: np.ndarray

    def __post_init__(self):
        data = self.data
        if not sparse.issparse(data):
            raise InputError(
                f"FeatureTrajectory.data must be a scipy sparse array, got {type(data).__name__};"
                " use FeatureTrajectory.from_dense for dense arrays."
            )
        data = sparse.csr_array(data)
        ids = np.asarray(self.feature_ids, dtype=np.int64)
        if ids.shape != (data.shape[1],):
            raise InputError(
                f"feature_ids must have shape ({data.shape[1]},) to match data {data.shape},"
                f" got {ids.shape}."
            )
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "feature_ids", ids)
        object.__setattr__(self, "sfreq", _check_rate(self.sfreq, "sfreq"))
        object.__setattr__(self, "tmin", float(self.tmin))

    @classmethod
    def from_dense(cls, data, *, sfreq, tmin=0.0, feature_ids=None):
        """Build from a dense array (zeros are dropped).

        Parameters
        ----------
        data : ndarray, shape (T, F)
        sfreq : float
            Sampling rate, Hz.
        tmin : float
            Time of the first sample, s. Default 0.
        feature_ids : array-like of int, shape (F,) | None
            Default 0..F-1.
        """
        data = np.asarray(data)
        ids = np.arange(data.shape[1]) if feature_ids is None else feature_ids
        return cls(sparse.csr_array(data), sfreq, tmin, ids)

    @property
    def times(self):
        """Sample times in seconds, shape (T,)."""
        return _grid(self.tmin, self.sfreq, self.data.shape[0])

    @property
    def n_times(self):
        """Number of samples T."""
        return self.data.shape[0]

    def resample(self, new_sfreq, *, tmin=None, n_times=None):
        """Resample to ``new_sfreq`` without densifying (sparse R @ X).

        Parameters
        ----------
        new_sfreq : float
            Target rate in Hz.
        tmin : float | None
            Time of the first output sample (default: this trajectory's ``tmin``).
        n_times : int | None
            Number of output samples (default: up to the last input time).

        Returns
        -------
        trajectory : FeatureTrajectory
        """
        new_tmin = self.tmin if tmin is None else float(tmin)
        new_sfreq = _check_rate(new_sfreq, "new_sfreq")
        n_times = _output_length(self.n_times, self.sfreq, new_sfreq, self.tmin, new_tmin, n_times)
        data = self.data.astype(np.float64)
        blocks = []
        for rows in _row_chunks(n_times):  # each block summed in float64, kept in the input's dtype
            block = (_operator(self.n_times, self.sfreq, new_sfreq, self.tmin, new_tmin, n_times, rows=rows)
                     @ data).astype(self.data.dtype)
            block.eliminate_zeros()
            blocks.append(block)
        if not blocks:
            out = sparse.csr_array((0, self.data.shape[1]), dtype=self.data.dtype)
        else:
            out = sparse.csr_array(blocks[0] if len(blocks) == 1 else sparse.vstack(blocks, format="csr"))
        if max(out.nnz, out.shape[1]) < np.iinfo(np.int32).max:  # the product's int64 indices: a third of its size
            out.indices, out.indptr = out.indices.astype(np.int32, copy=False), out.indptr.astype(np.int32, copy=False)
        return FeatureTrajectory(out, new_sfreq, new_tmin, self.feature_ids)

    def select(self, feature_ids):
        """Keep the columns of the given SAE feature ids, in that order.

        Parameters
        ----------
        feature_ids : array-like of int
            SAE feature ids (not column positions).

        Returns
        -------
        trajectory : FeatureTrajectory
        """
        wanted = np.asarray(feature_ids, dtype=np.int64).ravel()
        position = {int(f): i for i, f in enumerate(self.feature_ids)}
        missing = [int(f) for f in wanted if int(f) not in position]
        if missing:
            raise InputError(
                f"feature ids {missing[:10]} are not in this trajectory "
                f"({len(self.feature_ids)} features, ids {self.feature_ids[:5].tolist()}...)."
            )
        cols = [position[int(f)] for f in wanted]
        return dataclasses.replace(self, data=self.data[:, cols], feature_ids=wanted)

    def crop(self, n_times):
        """The first ``n_times`` samples."""
        return dataclasses.replace(self, data=self.data[:n_times])

    def feature_max(self):
        """Maximum absolute activation of each feature, shape (F,)."""
        return np.asarray(abs(self.data).max(axis=0).toarray()).ravel()

    def scale_max(self, feature_max=None):
        """Divide each feature by its maximum absolute value (the paper's scaling).

        Parameters
        ----------
        feature_max : ndarray, shape (F,) | None
            Maxima to divide by (e.g. over all stimuli); default this trajectory's own.
            Features whose maximum is 0 are left at 0.
        """
        fmax = self.feature_max() if feature_max is None else np.asarray(feature_max, float)
        if fmax.shape != (self.data.shape[1],):
            raise InputError(
                f"feature_max must have shape ({self.data.shape[1]},), got {fmax.shape}."
            )
        inv = np.divide(1.0, fmax, out=np.zeros_like(fmax), where=fmax > 0)
        data = sparse.csr_array(self.data @ sparse.diags_array(inv)).astype(self.data.dtype)
        return dataclasses.replace(self, data=data)

    def save(self, path):
        """Write to a ``.npz`` file atomically (sparse components, sfreq, tmin, ids).

        Parameters
        ----------
        path : path-like
            The file to write.
        """
        data = self.data
        index = np.int32 if max(data.nnz, data.shape[1]) < np.iinfo(np.int32).max else np.int64  # a third less disk
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f, indptr=data.indptr.astype(index), indices=data.indices.astype(index), values=data.data,
                    shape=np.asarray(data.shape), sfreq=self.sfreq, tmin=self.tmin,
                    feature_ids=self.feature_ids,
                )

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`.

        Parameters
        ----------
        path : path-like
            A ``.npz`` file from :meth:`save`.
        """
        try:
            with np.load(path) as z:
                data = sparse.csr_array(
                    (z["values"], z["indices"], z["indptr"]), shape=tuple(z["shape"])
                )
                return cls(data, float(z["sfreq"]), float(z["tmin"]), z["feature_ids"])
        except (OSError, KeyError, ValueError) as err:
            raise InputError(f"{str(path)!r} is not a FeatureTrajectory .npz file: {err}") from err


def sae_trajectory(backbone, sae, layer, waveform, sfreq):
    """SAE features of a stimulus at the backbone's frame rate.

    Parameters
    ----------
    backbone : Backbone
        Gives ``activations(waveform, sfreq, [layer])[layer]`` with ``values`` (T, D),
        ``times`` (T,) frame centres in s and ``frame_rate``.
    sae : BatchTopKSAE
        Gives ``encode_sparse(acts_TD) -> csr_array (T, F)``.
    layer : int
        Transformer block, numbered from 1.
    waveform : ndarray, shape (n_samples,)
        Stimulus audio.
    sfreq : float
        Audio sampling rate in Hz.

    Returns
    -------
    trajectory : FeatureTrajectory
        ``tmin`` is the centre of the first frame; ``feature_ids`` are 0..F-1.
    """
    waveform, sfreq = check_waveform(waveform, sfreq)
    acts = backbone.activations(waveform, sfreq, [layer])[layer]
    codes_TF = sparse.csr_array(sae.encode_sparse(acts.values))
    if codes_TF.shape[0] != len(acts.times):
        raise InputError(
            f"SAE returned {codes_TF.shape[0]} frames for {len(acts.times)} activation frames."
        )
    return FeatureTrajectory(
        codes_TF, float(acts.frame_rate), float(acts.times[0]), np.arange(codes_TF.shape[1])
    )


def module_hash(module):
    """sha256 over a torch module's state dict (names, shapes and float32 values).

    Parameters
    ----------
    module : torch.nn.Module
        E.g. the SAE.

    Returns
    -------
    digest : str
        Hex sha256.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        array = np.ascontiguousarray(tensor.detach().cpu().float().numpy())
        digest.update(f"{name}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class TrajectoryCache:
    """On-disk cache of SAE trajectories keyed by stimulus, backbone, layer, SAE and rate.

    Parameters
    ----------
    root : path-like
        Folder of the ``.npz`` files (created when first written).
    """

    def __init__(self, root):
        _validate_type(root, "path-like", "root")
        self.root = Path(root)

    def path(self, *, stimulus_hash, backbone, layer, sae_hash, sfreq):
        """File of one cache entry (exists or not).

        Parameters
        ----------
        stimulus_hash : str
            :func:`sae_eeg.audio.stimulus_hash` of the audio.
        backbone : str
            Backbone name.
        layer : int
            Layer, from 1.
        sae_hash : str
            :func:`module_hash` of the SAE.
        sfreq : float | None
            Rate of the stored trajectory (None: the frame rate).
        """
        key = config_hash({
            "stimulus": stimulus_hash, "backbone": str(backbone), "layer": int(layer),
            "sae": sae_hash, "sfreq": None if sfreq is None else float(sfreq),
        })
        return self.root / f"{key[:32]}.npz"

    def trajectory(self, backbone, sae, layer, waveform, sfreq, *, new_sfreq=None):
        """:func:`sae_trajectory`, resampled to ``new_sfreq`` if given, read from the cache.

        Parameters
        ----------
        backbone, sae, layer, waveform, sfreq
            As in :func:`sae_trajectory`.
        new_sfreq : float | None
            Resample to this rate (Hz); ``None`` keeps the frame rate.

        Returns
        -------
        trajectory : FeatureTrajectory
        """
        path = self.path(
            stimulus_hash=stimulus_hash(waveform, sfreq), backbone=backbone.name,
            layer=layer, sae_hash=module_hash(sae), sfreq=new_sfreq,
        )
        if path.is_file():
            logger.info("trajectory cache hit: %s", path)
            return FeatureTrajectory.load(path)
        traj = sae_trajectory(backbone, sae, layer, waveform, sfreq)
        if new_sfreq is not None:
            traj = traj.resample(new_sfreq, tmin=0.0)
        traj.save(path)
        return traj


def _target_grid(duration, new_sfreq):
    return int(np.floor(duration * new_sfreq + 1e-9))


@fill_doc
def envelope(waveform, sfreq, *, new_sfreq, method="hilbert"):
    """Broadband amplitude envelope on a grid starting at 0 s.

    Parameters
    ----------
    %(waveform)s
    %(sfreq)s
    %(new_sfreq_grid)s
    method : "hilbert" | "rectify"
        Magnitude of the analytic signal, or the rectified waveform; both are then
        low-passed by the anti-aliasing filter of the resampling.

    Returns
    -------
    envelope : TimeSeries, shape (T, 1), T = floor(duration * new_sfreq)

    Notes
    -----
    The audio is processed in blocks of :data:`BLOCK_SAMPLES` samples, so memory stays
    bounded for stimuli of hours. The analytic signal of a block is computed with
    :data:`HILBERT_MARGIN_S` of audio on each side; the resampling of the blocks equals
    one pass over the whole signal (:func:`sae_eeg.audio.resample_blocks`).
    """
    waveform, sfreq = check_waveform(waveform, sfreq)
    _check_option("method", method, ("hilbert", "rectify"))
    new_sfreq = _check_rate(new_sfreq, "new_sfreq")
    n_samples = len(waveform)
    margin = int(np.ceil(HILBERT_MARGIN_S * sfreq)) if method == "hilbert" else 0

    def magnitude(start, stop):
        lo, hi = max(0, start - margin), min(n_samples, stop + margin)
        if method == "rectify":
            return np.abs(waveform[start:stop].astype(np.float64))
        # one FFT over the whole signal treats it as periodic: a block at either end
        # gets the samples that wrap around from the other end, so the ends match too
        head = waveform[max(hi, n_samples - margin):n_samples] if lo == 0 < n_samples - hi else []
        tail = waveform[:min(margin, lo)] if hi == n_samples and lo > 0 else []
        block = np.concatenate([head, waveform[lo:hi], tail]).astype(np.float64)
        env = np.abs(hilbert(block))
        return env[len(head) + start - lo:len(head) + stop - lo]

    env = resample_blocks(magnitude, n_samples, sfreq=sfreq, new_sfreq=new_sfreq,
                          block_samples=BLOCK_SAMPLES)
    n_times = _target_grid(n_samples / sfreq, new_sfreq)
    env = np.pad(env, (0, max(0, n_times - len(env))))[:n_times]
    return TimeSeries(env[:, None], new_sfreq, 0.0, ("envelope",))


def _mel_filterbank(n_mels, n_fft, sfreq, fmin, fmax):
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sfreq)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / (centre - lower)
    falling = (upper - freqs[None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)), edges[1:-1]


@fill_doc
def mel_envelopes(waveform, sfreq, *, new_sfreq, n_mels=16, fmin=50.0, fmax=None,
                  frame_rate=100.0, floor_db=-80.0):
    """Log-mel band envelopes on a grid starting at 0 s.

    Parameters
    ----------
    %(waveform)s
    %(sfreq)s
    %(new_sfreq_grid)s
    n_mels : int
        Number of mel bands (HTK mel scale, triangular filters). Default 16.
    fmin, fmax : float
        Band edges in Hz (default 50 Hz to Nyquist).
    frame_rate : float
        Rate of the STFT frames (25 ms Hann windows), Hz, before resampling.
    floor_db : float
        Power floor relative to the maximum, dB, before the log.

    Returns
    -------
    bands : TimeSeries, shape (T, n_mels), names ``mel_<centre Hz>``

    Notes
    -----
    The STFT is computed a block of frames at a time (:data:`BLOCK_SAMPLES` samples of
    audio), so memory stays bounded for stimuli of hours; the frames are those of one
    ``scipy.signal.stft(..., boundary="even", padded=True)`` over the whole waveform.
    """
    waveform, sfreq = check_waveform(waveform, sfreq)
    new_sfreq = _check_rate(new_sfreq, "new_sfreq")
    fmax = sfreq / 2.0 if fmax is None else float(fmax)
    hop = max(1, int(round(sfreq / frame_rate)))
    n_fft = int(2 ** np.ceil(np.log2(0.025 * sfreq)))
    fbank, centres = _mel_filterbank(n_mels, n_fft, sfreq, fmin, fmax)
    mel = _mel_power(waveform, sfreq, n_fft, hop, fbank)  # (frames, n_mels), frame k at k * hop
    floor = mel.max() * 10 ** (floor_db / 10.0) if mel.max() > 0 else 1e-12
    log_mel = np.log10(np.maximum(mel, floor, out=mel), out=mel)  # in place: no copies
    log_mel *= 10.0
    n_times = _target_grid(len(waveform) / sfreq, new_sfreq)
    data = resample_dense(log_mel, sfreq=sfreq / hop, new_sfreq=new_sfreq, tmin=0.0,
                          new_tmin=0.0, n_times=n_times)
    names = tuple(f"mel_{c:.0f}" for c in centres)
    return TimeSeries(data, new_sfreq, 0.0, names)


def _even_extended(x, start, stop, n_ext, n_total):
    """Samples ``start:stop`` of ``x`` even-extended by ``n_ext`` on both sides (as
    scipy's ``stft(boundary="even")``) and zero-padded to ``n_total`` (``padded=True``)."""
    n = len(x)
    idx = np.arange(start, stop) - n_ext  # index into x
    idx = np.where(idx < 0, -idx, idx)  # even_ext: x[n_ext:0:-1] before x
    idx = np.where(idx > n - 1, 2 * (n - 1) - idx, idx)  # and x[-2:-(n_ext + 2):-1] after
    out = x[np.clip(idx, 0, n - 1)]
    out[np.arange(start, stop) >= n + 2 * n_ext] = 0.0  # the zero padding of padded=True
    return out


def _mel_power(waveform, sfreq, n_fft, hop, fbank, frames_per_block=None):
    """Mel-band power of every STFT frame, computed a block of frames at a time.

    Equals ``|stft(waveform, boundary="even", padded=True)|**2 @ fbank.T`` of the whole
    waveform (the same frames, window and scaling), without its (freqs, frames) array.
    """
    n_ext = n_fft // 2
    if len(waveform) <= n_ext:  # scipy's even extension needs more samples than it adds
        raise InputError(f"waveform of {len(waveform)} samples is too short for mel bands at "
                         f"{sfreq} Hz: give more than {n_ext} samples ({n_fft}-sample frames).")
    n_extended = len(waveform) + 2 * n_ext
    n_total = n_extended + (-(n_extended - n_fft) % hop) % n_fft
    n_frames = (n_total - n_fft) // hop + 1
    if frames_per_block is None:
        frames_per_block = max(1, BLOCK_SAMPLES // hop)
    mel = np.empty((n_frames, fbank.shape[0]))
    for k0 in range(0, n_frames, frames_per_block):
        k1 = min(k0 + frames_per_block, n_frames)
        segment = _even_extended(waveform, k0 * hop, (k1 - 1) * hop + n_fft, n_ext, n_total)
        _, _, spec = stft(segment, fs=sfreq, nperseg=n_fft, noverlap=n_fft - hop,
                          boundary=None, padded=False)
        mel[k0:k1] = (np.abs(spec) ** 2).T @ fbank.T
    return mel


@fill_doc
def envelope_onsets(waveform, sfreq, *, new_sfreq, method="hilbert"):
    """Envelope onsets: the half-wave rectified time derivative of :func:`envelope`.

    Parameters
    ----------
    %(waveform)s
    %(sfreq)s
    %(new_sfreq_grid)s
    method : "hilbert" | "rectify"
        Envelope method, see :func:`envelope`.

    Returns
    -------
    onsets : TimeSeries, shape (T, 1), in envelope units per second
    """
    env = envelope(waveform, sfreq, new_sfreq=new_sfreq, method=method)
    deriv = np.diff(env.data, axis=0, prepend=env.data[:1]) * env.sfreq
    return TimeSeries(np.maximum(deriv, 0.0), env.sfreq, env.tmin, ("envelope_onsets",))

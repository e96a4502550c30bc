"""Activation stores: shuffled batches of backbone activations for SAE training.

:class:`ActivationStore` streams the activations of several layers from one backbone
pass per audio file (with per-dataset sampling weights, optional noise/music
augmentation and an on-disk cache of activation shards). :class:`ArrayActivationStore`
serves precomputed activations. Both are deterministic given their seed and can save
and restore their state, so training resumes exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch

from .._check import _check_range, _ensure_int, _validate_type
from .._io import atomic_path
from ..audio import Audio, check_waveform, file_hash, load_audio, resample, stimulus_hash
from ..errors import InputError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

__all__ = ["ActivationStore", "ArrayActivationStore", "Augmentation", "audio_files", "mix_at_snr"]


def audio_files(folder, *, extensions=AUDIO_EXTENSIONS):
    """Sorted list of the audio files under ``folder`` (recursively).

    Parameters
    ----------
    folder : path-like
    extensions : tuple of str
        File suffixes to keep (case-insensitive). Default: wav, flac, ogg, mp3.

    Returns
    -------
    files : list of pathlib.Path
    """
    _validate_type(folder, "path-like", "folder")
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"folder {str(folder)!r} is not a folder.")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in extensions and p.is_file())
    if not files:
        raise InputError(f"folder {str(folder)!r} holds no audio files with suffix in {list(extensions)}.")
    return files


def mix_at_snr(signal, noise, snr_db, *, offset=0):
    """Add ``noise`` to ``signal`` at a signal-to-noise ratio of ``snr_db`` dB.

    The noise is read from ``offset`` on and tiled when shorter than the signal.

    Parameters
    ----------
    signal : ndarray, shape (n_samples,)
    noise : ndarray, shape (n_noise,)
    snr_db : float
        10 log10 of the ratio of signal to noise power.
    offset : int
        First noise sample used. Default 0.

    Returns
    -------
    mixed : ndarray, shape (n_samples,), float32
    """
    n = len(signal)
    idx = (offset + np.arange(n)) % len(noise)
    segment = noise[idx].astype(np.float64)
    p_signal = np.mean(np.square(signal, dtype=np.float64))
    p_noise = np.mean(np.square(segment))
    if p_noise == 0 or p_signal == 0:
        return signal.astype(np.float32)
    gain = np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10)))
    return (signal + gain * segment).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Additive noise/music augmentation of the training audio.

    Each file independently gets a noise clip with probability ``p_noise`` and a
    music clip with probability ``p_music``, each at an SNR drawn uniformly from
    ``snr_db`` and a random offset into the clip.

    Attributes
    ----------
    noise : tuple of (path-like | Audio)
        Noise clips. Default empty.
    music : tuple of (path-like | Audio)
        Music clips. Default empty.
    p_noise, p_music : float
        Probabilities in [0, 1]. Default 0.5 and 0.3.
    snr_db : tuple of float
        (low, high) of the uniform SNR distribution, in dB. Default (0, 20).
    """

    noise: tuple = ()
    music: tuple = ()
    p_noise: float = 0.5
    p_music: float = 0.3
    snr_db: tuple = (0.0, 20.0)

    def __post_init__(self):
        _check_range("p_noise", self.p_noise, 0, 1)
        _check_range("p_music", self.p_music, 0, 1)
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise InputError(f"snr_db must be (low, high) with low <= high, got {self.snr_db!r}.")
        if self.p_noise > 0 and not self.noise:
            raise InputError(f"p_noise={self.p_noise!r} > 0 needs at least one noise clip (noise=()).")
        if self.p_music > 0 and not self.music:
            raise InputError(f"p_music={self.p_music!r} > 0 needs at least one music clip (music=()).")


def _read_source(source, sfreq):
    """(waveform at ``sfreq``, content hash) of a path or :class:`Audio`."""
    if isinstance(source, Audio):
        waveform, rate = check_waveform(source.waveform, source.sfreq)
        digest = stimulus_hash(waveform, rate)
        if rate != sfreq:
            waveform = resample(waveform, sfreq=rate, new_sfreq=sfreq).astype(np.float32)
        return waveform, digest
    _validate_type(source, "path-like", "audio source")
    return load_audio(source, new_sfreq=sfreq).waveform, file_hash(source)


class _StoreBase:
    """Shared ``next_batch`` plumbing: a buffer of frames, drawn without replacement."""

    layers: tuple
    d_model: int

    def _batch_from_rows(self, arrays, rows):
        return {layer: torch.from_numpy(np.ascontiguousarray(arrays[layer][rows])) for layer in self.layers}


class ArrayActivationStore(_StoreBase):
    """Shuffled batches from precomputed activations (in memory or memory-mapped).

    Every epoch visits each frame once in an order drawn from ``(seed, epoch)``, so the
    stream at step s depends only on the seed and s.

    Parameters
    ----------
    acts : dict of int to ndarray, shape (n_frames, d_model)
        Activations per layer (numbered from 1); same frames in every layer.
    seed : int
        Seed of the frame order. Default 0.

    Attributes
    ----------
    layers : tuple of int
    d_model : int
    n_frames : int
    """

    def __init__(self, acts, *, seed=0):
        _validate_type(acts, dict, "acts")
        if not acts:
            raise InputError("acts is empty; give at least one layer.")
        self.layers = tuple(sorted(acts))
        shapes = {layer: np.shape(acts[layer]) for layer in self.layers}
        first = shapes[self.layers[0]]
        if len(first) != 2 or any(shape != first for shape in shapes.values()):
            raise InputError(f"acts must hold 2-D arrays (n_frames, d_model) of one shape; got {shapes}.")
        self.acts = acts
        self.n_frames, self.d_model = int(first[0]), int(first[1])
        self.seed = _ensure_int(seed, "seed")
        self._epoch, self._pos = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch):
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_frames)

    def next_batch(self, batch_size):
        """The next ``batch_size`` frames of every layer.

        Returns
        -------
        batch : dict of int to torch.Tensor, shape (batch_size, d_model), float32
        """
        rows = []
        need = batch_size
        while need > 0:
            take = self._order[self._pos:self._pos + need]
            rows.append(take)
            need -= len(take)
            self._pos += len(take)
            if self._pos >= self.n_frames:
                self._epoch += 1
                self._pos = 0
                self._order = self._permutation(self._epoch)
        rows = np.concatenate(rows)
        return {layer: torch.as_tensor(np.asarray(self.acts[layer][rows], dtype=np.float32)) for layer in self.layers}

    def state_dict(self):
        """Position in the stream (epoch, position)."""
        return {"epoch": self._epoch, "pos": self._pos}

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict`."""
        self._epoch, self._pos = int(state["epoch"]), int(state["pos"])
        self._order = self._permutation(self._epoch)


class ActivationStore(_StoreBase):
    """Stream activations of several layers from one backbone pass per audio file.

    Files are drawn dataset by dataset (dataset chosen with probability proportional
    to its weight; each dataset's files in a fresh random order every epoch), passed
    once through the backbone for all layers, and their frames pushed into a shuffling
    buffer from which batches are drawn uniformly without replacement.

    Parameters
    ----------
    backbone : object
        Has ``activations(waveform, sfreq, layers) -> {layer: LayerActivations}``
        (``.values`` (T, D)), ``sampling_rate`` and ``name`` (see
        :mod:`sae_eeg.backbones`).
    sources : list of (path-like | Audio) | dict of str to list
        Audio files or waveforms; a dict names datasets.
    layers : list of int
        Layers to stream, numbered from 1.
    weights : dict of str to float | None
        Sampling weight of each dataset (default equal).
    buffer_size : int
        Frames held for shuffling. Default 65536.
    refill_fraction : float
        Refill to ``buffer_size`` when fewer than this fraction remain. Default 0.5.
    augmentation : Augmentation | None
        Noise/music augmentation; None (default) for clean audio.
    cache_dir : path-like | None
        Folder of memory-mapped ``.npy`` activation shards of clean audio, keyed by
        the content hashes of backbone name, file and layer; reused across runs.
    seed : int
        Seed of all sampling. Default 0.

    Attributes
    ----------
    d_model : int
        Width of the activations (known after the first file).
    n_files_read : int
    """

    def __init__(self, backbone, sources, layers, *, weights=None, buffer_size=65536, refill_fraction=0.5,
                 augmentation=None, cache_dir=None, seed=0):
        if not callable(getattr(backbone, "activations", None)):
            raise InputError(f"backbone must have an activations(waveform, sfreq, layers) method, got "
                             f"{type(backbone).__name__}.")
        self.backbone = backbone
        self.datasets = self._check_sources(sources)
        self.weights = self._check_weights(weights)
        _validate_type(layers, (list, tuple), "layers")
        self.layers = tuple(sorted({_ensure_int(layer, "layers[i]") for layer in layers}))
        if not self.layers or self.layers[0] < 1:
            raise InputError(f"layers must be non-empty and numbered from 1, got {list(layers)!r}.")
        self.buffer_size = _ensure_int(buffer_size, "buffer_size")
        _check_range("buffer_size", self.buffer_size, 1)
        _check_range("refill_fraction", refill_fraction, 0, 1)
        self.refill_fraction = float(refill_fraction)
        _validate_type(augmentation, (Augmentation, None), "augmentation")
        self.augmentation = augmentation
        _validate_type(cache_dir, ("path-like", None), "cache_dir")
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.seed = _ensure_int(seed, "seed")
        self.sfreq = float(getattr(backbone, "sampling_rate", 16000))
        self.d_model = getattr(backbone, "d_model", None)
        self._rng = np.random.default_rng(self.seed)
        self._cursors = {name: [0, 0] for name in self.datasets}  # (epoch, position)
        self._buffer = None
        self._n = 0
        self.n_files_read = 0
        self._clips = {}

    # ----------------------------------------------------------------- checks
    @staticmethod
    def _check_sources(sources):
        if isinstance(sources, (list, tuple)):
            sources = {"default": sources}
        _validate_type(sources, dict, "sources")
        for name, items in sources.items():
            _validate_type(items, (list, tuple), f"sources[{name!r}]")
            if not items:
                raise InputError(f"sources[{name!r}] is empty; give at least one audio file.")
        if not sources:
            raise InputError("sources is empty; give at least one dataset of audio files.")
        return {name: list(items) for name, items in sources.items()}

    def _check_weights(self, weights):
        names = list(self.datasets)
        if weights is None:
            return np.full(len(names), 1.0 / len(names))
        _validate_type(weights, dict, "weights")
        if set(weights) != set(names):
            raise InputError(f"weights must have one entry per dataset {names}, got keys {sorted(weights)}.")
        values = np.array([float(_check_range(f"weights[{n!r}]", weights[n], 0)) for n in names])
        if values.sum() <= 0:
            raise InputError(f"weights must not all be 0, got {weights!r}.")
        return values / values.sum()

    # -------------------------------------------------------------- streaming
    def _next_source(self):
        names = list(self.datasets)
        name = names[int(self._rng.choice(len(names), p=self.weights))]
        files = self.datasets[name]
        cursor = self._cursors[name]
        order = np.random.default_rng([self.seed, names.index(name), cursor[0]]).permutation(len(files))
        source = files[order[cursor[1]]]
        cursor[1] += 1
        if cursor[1] == len(files):
            cursor[0], cursor[1] = cursor[0] + 1, 0
        return source

    def _clip(self, kind, index):
        key = (kind, index)
        if key not in self._clips:
            self._clips[key] = _read_source(getattr(self.augmentation, kind)[index], self.sfreq)[0]
        return self._clips[key]

    def _augment(self, waveform):
        aug, augmented = self.augmentation, False
        for kind, prob in (("noise", aug.p_noise if aug else 0), ("music", aug.p_music if aug else 0)):
            if prob > 0 and self._rng.random() < prob:
                clip = self._clip(kind, int(self._rng.integers(len(getattr(aug, kind)))))
                snr = float(self._rng.uniform(*aug.snr_db))
                offset = int(self._rng.integers(len(clip)))
                waveform, augmented = mix_at_snr(waveform, clip, snr, offset=offset), True
        return waveform, augmented

    def _cache_folder(self, digest):
        key = hashlib.sha256(f"{getattr(self.backbone, 'name', type(self.backbone).__name__)}|{digest}".encode())
        return self.cache_dir / key.hexdigest()[:32]

    def _activations(self, waveform, digest, augmented):
        folder = None if (self.cache_dir is None or augmented) else self._cache_folder(digest)
        if folder is not None and all((folder / f"layer_{n}.npy").is_file() for n in self.layers):
            return {n: np.load(folder / f"layer_{n}.npy", mmap_mode="r") for n in self.layers}
        acts = self.backbone.activations(waveform, self.sfreq, list(self.layers))
        values = {n: np.asarray(acts[n].values, dtype=np.float32) for n in self.layers}
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            for n, array in values.items():
                with atomic_path(folder / f"layer_{n}.npy") as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, array)
        return values

    def _push(self, values):
        n_new = len(values[self.layers[0]])
        if self._buffer is None:
            self.d_model = values[self.layers[0]].shape[1]
            self._buffer = {n: np.empty((max(self.buffer_size, n_new), self.d_model), np.float32) for n in self.layers}
        capacity = len(self._buffer[self.layers[0]])
        if self._n + n_new > capacity:
            new_cap = max(2 * capacity, self._n + n_new)
            for n in self.layers:
                grown = np.empty((new_cap, self.d_model), np.float32)
                grown[:self._n] = self._buffer[n][:self._n]
                self._buffer[n] = grown
        for n in self.layers:
            self._buffer[n][self._n:self._n + n_new] = values[n]
        self._n += n_new

    def _read_one(self):
        source = self._next_source()
        waveform, digest = _read_source(source, self.sfreq)
        waveform, augmented = self._augment(waveform)
        self._push(self._activations(waveform, digest, augmented))
        self.n_files_read += 1

    def next_batch(self, batch_size):
        """The next ``batch_size`` shuffled frames of every layer.

        Parameters
        ----------
        batch_size : int

        Returns
        -------
        batch : dict of int to torch.Tensor, shape (batch_size, d_model), float32
            The same frames in every layer.
        """
        batch_size = _ensure_int(batch_size, "batch_size")
        _check_range("batch_size", batch_size, 1)
        if self._n < max(batch_size, int(self.refill_fraction * self.buffer_size)):
            while self._n < max(batch_size, self.buffer_size):
                self._read_one()
        picked = self._rng.choice(self._n, size=batch_size, replace=False)
        batch = self._batch_from_rows(self._buffer, picked)
        # swap-remove: fill the holes below the new end with unpicked frames from the tail
        new_n = self._n - batch_size
        holes = picked[picked < new_n]
        tail = np.arange(new_n, self._n)
        movers = tail[~np.isin(tail, picked)]
        for n in self.layers:
            self._buffer[n][holes] = self._buffer[n][movers]
        self._n = new_n
        return batch

    def state_dict(self):
        """Everything needed to continue the stream identically (buffer included)."""
        buffer = {} if self._buffer is None else {n: torch.from_numpy(self._buffer[n][:self._n].copy())
                                                  for n in self.layers}
        return {"rng": self._rng.bit_generator.state,
                "cursors": {name: list(c) for name, c in self._cursors.items()},
                "buffer": buffer, "n_files_read": self.n_files_read}

    def load_state_dict(self, state):
        """Restore a :meth:`state_dict`."""
        self._rng.bit_generator.state = state["rng"]
        self._cursors = {name: list(c) for name, c in state["cursors"].items()}
        self.n_files_read = int(state["n_files_read"])
        self._buffer, self._n = None, 0
        if state["buffer"]:
            self._push({int(n): array.numpy() for n, array in state["buffer"].items()})

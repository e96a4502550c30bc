"""What every backbone shares: layer numbering, frame times, long-audio windows, hooks.

Layer numbering
---------------
Layers are numbered from 1 to ``n_layers``: **layer n is the output of the
n-th transformer block** of the audio encoder (the AudioSAE ``layer_n/ae.pt``
convention), taken directly at the block's output (a forward hook on the
block), before anything that follows the block. ``hidden_states[0]`` of
``transformers`` (the embeddings fed to block 1) is not a layer.

Where the final LayerNorm sits: Whisper's encoder (and HuBERT-large, which
has ``do_stable_layer_norm``) applies a LayerNorm after the last block.
**Layer ``n_layers`` is before that LayerNorm**, like every other layer (the
raw block output, as the AudioSAE SAEs are trained on). In ``transformers``
(5.x) layer n equals ``hidden_states[n]`` of ``output_hidden_states=True``
for every n < ``n_layers``; for n = ``n_layers`` Whisper's
``hidden_states[n_layers]`` is the *normalised* ``last_hidden_state``, i.e.
``encoder.layer_norm(layer n_layers)``. (For HuBERT-large transformers 5.x
reports the last block before the LayerNorm, transformers 4.x after it; the
hook-based definition here does not depend on the version. HuBERT-base has
no final LayerNorm.) :meth:`Backbone.hook` replaces exactly what
:meth:`Backbone.activations` returns, so an SAE trained on layer n can be
spliced back at layer n.

Frame times
-----------
Both encoders emit 50 frames per second (a 20 ms hop at 16 kHz), and
``LayerActivations.times`` holds the time of each frame in seconds from the
start of the stimulus:

* Whisper: frame n summarises the 20 ms interval [0.02 n, 0.02 n + 0.02) and
  its time is the interval's centre, ``0.01 + 0.02 n``. (The convolutional
  front-end reads the log-mel frames 2n-2 ... 2n+2, centred on 0.02 n; the
  10 ms convention gap is far below the EEG's resolution.) A stimulus of
  ``d`` seconds gives ``ceil(50 d)`` frames: Whisper pads each input to a
  30 s window and the frames past the end of the audio are dropped.
* HuBERT: the convolutional front-end has a receptive field of 400 samples
  (25 ms) and a hop of 320 samples (20 ms), so frame n covers samples
  [320 n, 320 n + 400) and its time is the centre ``(320 n + 200) / 16000``
  = ``0.0125 + 0.02 n``. A stimulus of ``N`` samples at 16 kHz gives
  ``floor((N - 400) / 320) + 1`` frames.

Long audio
----------
Audio longer than one window (30 s, 1500 frames) is cut into windows that
start every 20 s (1000 frames); the last window is moved back to end with the
audio. Windows are run in batches and stitched: every frame is taken exactly
once, from the window in which it lies farthest from a window edge that is not
also an edge of the stimulus (so it has the most context on both sides; with a
20 s hop every kept frame has at least 5 s of context inside its window).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import threading
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .._check import _ensure_int, _soft_import, _validate_type
from .._docs import fill_doc
from ..audio import check_waveform, resample_blocks
from ..errors import BackboneError, InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LayerActivations:
    """Activations of one layer over a stimulus, with the time of every frame.

    Attributes
    ----------
    values : ndarray, shape (n_frames, d_model), float32
        One row per frame.
    times : ndarray, shape (n_frames,), float64
        Frame times in seconds from the start of the stimulus (the centre of
        each frame; see :mod:`sae_eeg.backbones._base` for each backbone's
        convention). Evenly spaced at ``1 / frame_rate``.
    frame_rate : float
        Frames per second (50.0 for Whisper and HuBERT).
    layer : int
        The layer, numbered from 1 (output of the ``layer``-th block).
    """

    values: np.ndarray
    times: np.ndarray
    frame_rate: float
    layer: int

    @property
    def tmin(self):
        """Time of the first frame in seconds."""
        return float(self.times[0])


class _StopForward(Exception):
    """Raised by a capture hook once the deepest requested layer is computed."""


def plan_windows(n_frames, window_frames, hop_frames):
    """Windows over ``n_frames`` frames and, per frame, the window it is taken from.

    Parameters
    ----------
    n_frames : int
        Number of frames of the whole stimulus.
    window_frames : int
        Frames per window.
    hop_frames : int
        Distance between window starts (the last window ends with the stimulus).

    Returns
    -------
    starts : ndarray, shape (n_windows,), int
        First frame of each window.
    owner : ndarray, shape (n_frames,), int
        Index of the window each frame is taken from: the one where the frame's
        distance to the nearest window edge (edges at the stimulus start or end
        do not count) is largest; ties go to the earlier window.
    """
    if n_frames <= window_frames:
        return np.zeros(1, dtype=int), np.zeros(n_frames, dtype=int)
    starts = list(range(0, n_frames - window_frames, hop_frames)) + [n_frames - window_frames]
    starts = np.array(sorted(set(starts)))
    # one window at a time: memory O(n_frames), not O(n_windows * n_frames)
    best = np.full(n_frames, -1.0)
    owner = np.zeros(n_frames, dtype=int)
    offsets = np.arange(window_frames)
    for w, start in enumerate(starts):
        left = np.inf if start == 0 else offsets.astype(float)
        right = np.inf if start + window_frames >= n_frames else (window_frames - 1 - offsets).astype(float)
        context = np.minimum(left, right)
        span = slice(start, start + window_frames)
        better = context > best[span]  # ties stay with the earlier window
        best[span] = np.where(better, context, best[span])
        owner[span] = np.where(better, w, owner[span])
    return starts, owner


def resolve_device(device):
    """Return a torch device; ``"auto"`` takes CUDA when available."""
    torch = _soft_import("torch", "Audio backbones")
    _validate_type(device, (str, torch.device), "device")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise InputError(f"Invalid device {device!r}: {err}. Use 'cpu', 'cuda', 'cuda:N' or 'auto'.") from err


def _block_output(output):
    return output[0] if isinstance(output, tuple) else output


class Backbone(abc.ABC):
    """An audio encoder whose block outputs are read and edited per layer.

    Create one with :func:`sae_eeg.backbones.load_backbone`. Layers are numbered
    from 1 (layer n = output of the n-th encoder block, before any final
    LayerNorm); frame times are frame centres in seconds. See
    :mod:`sae_eeg.backbones._base` for the exact conventions.

    Attributes
    ----------
    kind : str
        ``"whisper"`` or ``"hubert"``.
    name : str
        The name or path the model was loaded from.
    n_layers : int
        Number of encoder blocks (valid layers are 1 ... n_layers).
    d_model : int
        Width of the block outputs.
    sampling_rate : int
        Input rate of the model, 16000 Hz; other rates are resampled.
    frame_rate : float
        Output frames per second, 50.0.
    device : torch.device
        Where the model runs.
    model : torch.nn.Module
        The ``transformers`` model (in eval mode).
    tokenizer : transformers tokenizer | None
        Whisper's tokenizer (None for HuBERT or a folder without one).
    feature_extractor : transformers feature extractor
        Turns waveforms into model inputs.
    """

    kind = None
    sampling_rate = 16000
    frame_rate = 50.0
    hop_samples = 320
    #: Time of frame 0 in seconds (see the module docstring).
    first_frame_time = None
    #: Frames per window for long audio (30 s) and distance between window starts (20 s).
    window_frames = 1500
    hop_frames = 1000

    def __init__(self, model, *, name, device, feature_extractor, tokenizer=None):
        self.name = str(name)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self._lock = threading.Lock()

    def __repr__(self):
        return (f"<{type(self).__name__} {self.name!r}: {self.n_layers} layers, d_model={self.d_model}, "
                f"device={self.device}>")

    # -- what each model defines -------------------------------------------------------
    @property
    @abc.abstractmethod
    def blocks(self):
        """The encoder blocks (``torch.nn.ModuleList``); layer n is ``blocks[n - 1]``."""

    @property
    def n_layers(self):
        return len(self.blocks)

    @property
    @abc.abstractmethod
    def d_model(self):
        """Width of the block outputs."""

    @abc.abstractmethod
    def n_frames(self, n_samples):
        """Number of frames for ``n_samples`` samples at 16 kHz."""

    @abc.abstractmethod
    def _window_samples(self, n_frames):
        """Samples fed to the model for a window of ``n_frames`` frames."""

    @abc.abstractmethod
    def _encode(self, chunks):
        """Run the encoder on a list of equal-length 16 kHz chunks (NumPy float32)."""

    # -- shared machinery ----------------------------------------------------------------
    def frame_times(self, n_frames):
        """Times in seconds of frames 0 ... n_frames - 1 (frame centres).

        Parameters
        ----------
        n_frames : int
            Number of frames.

        Returns
        -------
        times : ndarray, shape (n_frames,), float64
        """
        return self.first_frame_time + np.arange(_ensure_int(n_frames, "n_frames")) / self.frame_rate

    def check_layer(self, layer):
        """Return ``layer`` as an int, or raise :class:`InputError` unless 1 <= layer <= n_layers."""
        layer = _ensure_int(layer, "layer")
        if not 1 <= layer <= self.n_layers:
            raise InputError(
                f"layer must be in 1 ... {self.n_layers} for {self.name!r} (layers are numbered from 1: "
                f"layer n is the output of block n), got {layer!r}."
            )
        return layer

    def _model_inputs(self, chunks, field):
        """Run the feature extractor on 16 kHz chunks; return ``field`` as a tensor on the device."""
        torch = _soft_import("torch", "Audio backbones")
        values = self.feature_extractor(
            [np.asarray(c, dtype=np.float32) for c in chunks], sampling_rate=self.sampling_rate,
            return_tensors="np",
        )[field]
        return torch.from_numpy(values).to(self.device, dtype=self.model.dtype)

    def _prepare(self, waveform, sfreq):
        waveform, sfreq = check_waveform(waveform, sfreq)
        if sfreq != self.sampling_rate:  # in blocks: bounded temporaries for hours of audio
            source = waveform
            waveform = resample_blocks(lambda a, b: source[a:b], len(source), sfreq=sfreq,
                                       new_sfreq=self.sampling_rate).astype(np.float32, copy=False)
        return waveform

    def _chunk(self, waveform, start_frame, n_samples):
        start = start_frame * self.hop_samples
        chunk = waveform[start:start + n_samples]
        return np.pad(chunk, (0, n_samples - len(chunk)))

    @fill_doc
    def activations(self, waveform, sfreq, layers, *, batch_size=8, verbose=False):
        """Block outputs of the requested layers over a whole stimulus, with frame times.

        All layers come from one forward pass per batch of windows; the pass
        stops after the deepest requested block. Audio longer than 30 s is cut
        into overlapping windows and stitched (see the module docstring).

        Parameters
        ----------
        waveform : array-like, shape (n_samples,) or (n_samples, n_channels)
            The stimulus; several channels are averaged.
        sfreq : float
            Sampling rate of ``waveform`` in Hz; any rate (resampled to 16 kHz).
        layers : int | sequence of int
            Layers, numbered from 1 (layer n = output of block n).
        batch_size : int
            Windows per forward pass. Default 8.
        %(verbose)s

        Returns
        -------
        activations : dict of int to LayerActivations
            One entry per requested layer, keyed by layer number.

        Raises
        ------
        InputError
            Bad waveform or sampling rate, a layer outside 1 ... n_layers, a
            stimulus too short for one frame.
        """
        torch = _soft_import("torch", "Audio backbones")
        layers = [layers] if isinstance(layers, (int, np.integer)) else list(layers)
        if not layers:
            raise InputError("layers is empty; give at least one layer number (1 ... n_layers).")
        layers = sorted({self.check_layer(layer) for layer in layers})
        batch_size = _ensure_int(batch_size, "batch_size")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}.")
        waveform = self._prepare(waveform, sfreq)
        n_frames = self.n_frames(len(waveform))
        if n_frames < 1:
            raise InputError(
                f"waveform is too short for {self.name!r}: {len(waveform)} samples at 16 kHz give no frame."
            )
        starts, owner = plan_windows(n_frames, self.window_frames, self.hop_frames)
        if len(starts) == 1:  # the whole stimulus at once (normalisations see every sample)
            window_samples = max(len(waveform), self._window_samples(n_frames))
        else:
            window_samples = self._window_samples(self.window_frames)
        out = {layer: np.empty((n_frames, self.d_model), dtype=np.float32) for layer in layers}
        batches = range(0, len(starts), batch_size)
        for b0 in tqdm(batches, desc=f"{self.kind} windows", unit="batch", disable=not verbose):
            batch = starts[b0:b0 + batch_size]
            chunks = [self._chunk(waveform, int(s), window_samples) for s in batch]
            captured = self._capture(chunks, layers, torch)
            for i, start in enumerate(batch):
                span = owner[start:start + self.window_frames]
                frames = start + np.flatnonzero(span == b0 + i)
                for layer in layers:
                    out[layer][frames] = captured[layer][i, frames - start]
        times = self.frame_times(n_frames)
        return {layer: LayerActivations(out[layer], times, self.frame_rate, layer) for layer in layers}

    def _capture(self, chunks, layers, torch):
        """Run one batch and return ``{layer: ndarray (B, T, D)}`` from forward hooks.

        Calls from several threads on one backbone are serialised (the capture
        hooks are attached to the shared model).
        """
        captured, handles, deepest = {}, [], max(layers)

        def make_hook(layer):
            def capture(module, args, output):
                captured[layer] = _block_output(output).detach().float().cpu().numpy()
                if layer == deepest:
                    raise _StopForward
            return capture

        with self._lock:
            for layer in layers:
                handles.append(self.blocks[layer - 1].register_forward_hook(make_hook(layer)))
            try:
                with torch.inference_mode():
                    self._encode(chunks)
            except _StopForward:
                pass
            finally:
                for handle in handles:
                    handle.remove()
        return captured

    @contextlib.contextmanager
    def hook(self, layer, fn):
        """Replace the output of block ``layer`` with ``fn(h)`` during every forward pass inside.

        Parameters
        ----------
        layer : int
            Layer number (1 ... n_layers); the output of block ``layer`` is
            replaced, i.e. exactly what :meth:`activations` returns for it.
        fn : callable
            Takes the block output ``h`` (torch tensor, shape (B, T, D)) and
            returns a tensor of the same shape (e.g. an SAE reconstruction, or
            ``h`` plus a steering vector). ``lambda h: h`` leaves every output
            bit-identical.

        Yields
        ------
        backbone : Backbone
            ``self``. The hook is removed on exit, also when the block raises.

        Raises
        ------
        InputError
            A layer outside 1 ... n_layers or a non-callable ``fn``.
        BackboneError
            (during a forward pass) if ``fn`` returns a tensor of another shape.

        Examples
        --------
        >>> with backbone.hook(2, lambda h: torch.zeros_like(h)):  # doctest: +SKIP
        ...     text = transcribe(backbone, waveform, sfreq)
        """
        layer = self.check_layer(layer)
        _validate_type(fn, "callable", "fn")

        def replace(module, args, output):
            h = _block_output(output)
            new = fn(h)
            if getattr(new, "shape", None) != h.shape:
                raise BackboneError(
                    f"The hook function on layer {layer} must return a tensor of shape {tuple(h.shape)}, "
                    f"got {getattr(new, 'shape', type(new).__name__)}."
                )
            return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

        # prepend: runs before transformers' own output-recording hooks, so they see fn(h)
        handle = self.blocks[layer - 1].register_forward_hook(replace, prepend=True)
        try:
            yield self
        finally:
            handle.remove()

"""Audio-model backbones: Whisper and HuBERT layer activations with frame times, and hooks.

Start with :func:`load_backbone`; :func:`bundled_whisper_path` gives an offline
Whisper tiny.en. :meth:`Backbone.activations` returns, per layer, the block
outputs over a whole stimulus with the time of every frame;
:meth:`Backbone.hook` replaces a block's output during forward passes (SAE
splicing, steering); :func:`transcribe` and :func:`wer` check the model still
understands speech.

Conventions (details in :mod:`sae_eeg.backbones._base`):

* Layers are numbered from 1: layer n is the output of the n-th encoder block
  (1 ... n_layers), always taken before the encoder's final LayerNorm. It
  equals ``hidden_states[n]`` of transformers' ``output_hidden_states=True``
  for n < n_layers; for Whisper, transformers' ``hidden_states[n_layers]`` is
  after the final LayerNorm while layer ``n_layers`` here is before it.
* Frames come at 50 per second. ``times`` are frame centres in seconds:
  ``0.01 + 0.02 n`` for Whisper (frame n = the interval [0.02 n, 0.02 n + 0.02)),
  ``(320 n + 200) / 16000`` for HuBERT (centre of its 400-sample receptive field).
* Long audio is run in overlapping 30 s windows and stitched so every frame
  appears once, from the window where it has the most context.
"""

from ._base import Backbone, LayerActivations, plan_windows
from ._loading import KNOWN_DIMS, KNOWN_MODELS, load_backbone, model_dims
from .ctranslate2 import (
    bundled_whisper_path,
    cache_root,
    convert_ctranslate2_whisper,
    ctranslate2_whisper_path,
    read_ctranslate2_model,
)
from .hubert import HubertBackbone
from .transcribe import normalize_text, transcribe, wer
from .whisper import WhisperBackbone

__all__ = [
    "KNOWN_DIMS",
    "KNOWN_MODELS",
    "Backbone",
    "HubertBackbone",
    "LayerActivations",
    "WhisperBackbone",
    "bundled_whisper_path",
    "cache_root",
    "convert_ctranslate2_whisper",
    "ctranslate2_whisper_path",
    "load_backbone",
    "model_dims",
    "normalize_text",
    "plan_windows",
    "read_ctranslate2_model",
    "transcribe",
    "wer",
]

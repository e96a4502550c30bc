"""Whisper's audio encoder as a :class:`~sae_eeg.backbones.Backbone`.

Whisper reads 30 s windows of 80 (or 128) log-mel bands at 100 frames per
second; two convolutions (the second with stride 2) turn them into 1500
encoder frames of 20 ms. Layer n is the output of encoder block n, before the
encoder's final LayerNorm (which ``transformers`` applies after the last
block and reports as ``hidden_states[n_layers]``). Frame n is given the time
``0.01 + 0.02 n`` s, the centre of its 20 ms interval; frames past the end of
the audio are dropped. See :mod:`sae_eeg.backbones._base`.
"""

from __future__ import annotations

from ._base import Backbone

#: Samples in one Whisper window (30 s at 16 kHz).
WINDOW_SAMPLES = 480000


class WhisperBackbone(Backbone):
    """Whisper (any size: tiny.en ... large-v3-turbo); blocks are the encoder's layers.

    ``model`` is a ``WhisperForConditionalGeneration`` (or ``WhisperModel``);
    :func:`sae_eeg.backbones.transcribe` needs the former and a tokenizer.
    See :class:`~sae_eeg.backbones.Backbone` for the attributes.
    """

    kind = "whisper"
    first_frame_time = 0.01

    @property
    def encoder(self):
        """The Whisper encoder module."""
        return self.model.get_encoder()

    @property
    def blocks(self):
        return self.encoder.layers

    @property
    def d_model(self):
        return int(self.model.config.d_model)

    def n_frames(self, n_samples):
        return -(-int(n_samples) // self.hop_samples)  # ceil: a frame per started 20 ms

    def _window_samples(self, n_frames):
        return WINDOW_SAMPLES

    def input_features(self, chunks):
        """Log-mel features of 30 s chunks: torch tensor (B, n_mels, 3000) on the device."""
        return self._model_inputs(chunks, "input_features")

    def _encode(self, chunks):
        return self.encoder(self.input_features(chunks))

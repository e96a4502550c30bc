"""HuBERT as a :class:`~sae_eeg.backbones.Backbone`.

A convolutional front-end (with the standard configuration: receptive field
400 samples = 25 ms, hop 320 samples = 20 ms at 16 kHz) feeds a transformer
encoder. Layer n is the output of encoder block n (HuBERT-large applies a
final LayerNorm after the last block; layer ``n_layers`` here is before it,
``last_hidden_state`` after it). Frame n
covers samples [320 n, 320 n + 400) and is given the time of its centre,
``(320 n + 200) / 16000`` s. Long audio is cut into 30 s windows that overlap
and are stitched like Whisper's. See :mod:`sae_eeg.backbones._base`.
"""

from __future__ import annotations

import numpy as np

from ._base import Backbone


class HubertBackbone(Backbone):
    """HuBERT (base, large, or any ``HubertConfig``); blocks are the encoder's layers.

    ``model`` is a ``HubertModel``. The hop and receptive field of the
    front-end are read from ``config.conv_kernel`` / ``config.conv_stride``
    (320 and 400 samples for every released HuBERT). See
    :class:`~sae_eeg.backbones.Backbone` for the attributes.
    """

    kind = "hubert"

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        kernels, strides = model.config.conv_kernel, model.config.conv_stride
        self._convs = list(zip(kernels, strides))
        self.hop_samples = int(np.prod(strides))
        self.receptive_field = 1 + sum((k - 1) * int(np.prod(strides[:i])) for i, k in enumerate(kernels))
        self.frame_rate = self.sampling_rate / self.hop_samples
        self.first_frame_time = (self.receptive_field / 2) / self.sampling_rate

    @property
    def blocks(self):
        return self.model.encoder.layers

    @property
    def d_model(self):
        return int(self.model.config.hidden_size)

    def n_frames(self, n_samples):
        length = int(n_samples)
        for kernel, stride in self._convs:  # each convolution: floor((L - k) / s) + 1
            if length < kernel:
                return 0
            length = (length - kernel) // stride + 1
        return length

    def _window_samples(self, n_frames):
        return (n_frames - 1) * self.hop_samples + self.receptive_field

    def _encode(self, chunks):
        return self.model(self._model_inputs(chunks, "input_values"))

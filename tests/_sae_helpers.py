"""Synthetic data and a fake backbone for the SAE tests (nothing downloaded)."""

from dataclasses import dataclass

import numpy as np


def planted_data(rng, *, d_model=64, n_atoms=128, k=4, n_frames=40000):
    """Frames that are sums of ``k`` of ``n_atoms`` unit atoms with coefficients in [0.5, 1.5]."""
    atoms_AD = rng.standard_normal((n_atoms, d_model))
    atoms_AD /= np.linalg.norm(atoms_AD, axis=1, keepdims=True)
    active = np.argsort(rng.random((n_frames, n_atoms)), axis=1)[:, :k]
    coef = rng.uniform(0.5, 1.5, (n_frames, k))
    x_TD = np.einsum("tk,tkd->td", coef, atoms_AD[active]).astype(np.float32)
    return atoms_AD, x_TD


@dataclass(frozen=True)
class FakeLayerActivations:
    values: np.ndarray
    times: np.ndarray
    frame_rate: float
    layer: int


class FakeBackbone:
    """Deterministic stand-in with the ``Backbone.activations`` interface.

    Frame t of layer n holds the first ``d_model`` samples of the t-th 20 ms hop
    scaled by n, plus n, so every layer of a frame can be traced back to the audio.
    """

    kind = "fake"
    name = "fake-backbone"
    sampling_rate = 16000
    frame_rate = 50.0
    n_layers = 4

    def __init__(self, d_model=16):
        self.d_model = d_model
        self.n_calls = 0

    def activations(self, waveform, sfreq, layers, *, batch_size=8):
        assert sfreq == self.sampling_rate
        self.n_calls += 1
        hop = int(self.sampling_rate / self.frame_rate)
        n_frames = len(waveform) // hop
        frames = np.asarray(waveform[: n_frames * hop], np.float32).reshape(n_frames, hop)[:, : self.d_model]
        times = (np.arange(n_frames) + 0.5) / self.frame_rate
        return {n: FakeLayerActivations(frames * n + n, times, self.frame_rate, n) for n in layers}

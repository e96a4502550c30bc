"""The abstract interface every sparse autoencoder of the package implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse
import torch
from torch import nn

from .._check import _ensure_int, _check_range
from ._common import check_activations


class SparseAutoencoder(ABC, nn.Module):
    """Abstract sparse autoencoder: ``encode``, ``decode``, ``forward``, ``from_pretrained``.

    Subclasses hold one architecture each (one file per architecture in
    ``sae_eeg/sae/``). State needed at inference is stored in registered buffers so
    that it travels with the weights.

    Attributes
    ----------
    d_model : int
        Width D of the activations the SAE reads.
    n_features : int
        Number F of dictionary features.
    """

    d_model: int
    n_features: int

    @abstractmethod
    def encode(self, x_BD):
        """Feature activations, shape (B, F), of activations ``x_BD`` (B, D)."""

    @abstractmethod
    def decode(self, z_BF):
        """Reconstruction, shape (B, D), from feature activations ``z_BF`` (B, F)."""

    @abstractmethod
    def forward(self, x_BD):
        """Reconstruction ``decode(encode(x))`` of ``x_BD`` (B, D) in the input's scale."""

    @classmethod
    @abstractmethod
    def from_pretrained(cls, path_or_repo, *, layer=None, device="cpu"):
        """Load a checkpoint from a local folder/file or a Hugging Face Hub repository."""

    def _encode_chunk_sparse(self, x_BD):
        """(rows, features, values) of the non-zero entries of ``encode(x_BD)``."""
        z_BF = self.encode(x_BD)
        rows_N, feats_N = torch.nonzero(z_BF, as_tuple=True)
        return rows_N, feats_N, z_BF[rows_N, feats_N]

    @torch.no_grad()
    def encode_sparse(self, acts_TD, *, batch_size=4096):
        """Encode a long sequence of frames into a sparse matrix, chunk by chunk.

        Only one chunk of ``batch_size`` x F dense values exists at a time; the result
        never holds a dense T x F matrix.

        Parameters
        ----------
        acts_TD : ndarray | torch.Tensor, shape (n_frames, d_model)
            Activations of one layer, one row per frame.
        batch_size : int
            Frames encoded per chunk. Default 4096.

        Returns
        -------
        codes : scipy.sparse.csr_array, shape (n_frames, n_features), float32
            Feature activations; zeros are not stored.
        """
        batch_size = _ensure_int(batch_size, "batch_size")
        _check_range("batch_size", batch_size, 1)
        acts_TD = check_activations(acts_TD, self.d_model, name="acts_TD")
        device = next(self.parameters()).device
        n_frames = acts_TD.shape[0]
        counts_T = np.zeros(n_frames, dtype=np.int64)
        indices, values = [], []
        for start in range(0, n_frames, batch_size):
            chunk_BD = acts_TD[start:start + batch_size].to(device)
            rows_N, feats_N, values_N = self._encode_chunk_sparse(chunk_BD)
            values.append(values_N.float().cpu().numpy())
            indices.append(feats_N.to(torch.int32).cpu().numpy())
            counts_T[start:start + len(chunk_BD)] = np.bincount(rows_N.cpu().numpy(), minlength=len(chunk_BD))
        indptr = np.zeros(n_frames + 1, dtype=np.int64)
        np.cumsum(counts_T, out=indptr[1:])
        if indptr[-1] < np.iinfo(np.int32).max:
            indptr = indptr.astype(np.int32)
        data = np.concatenate(values) if values else np.zeros(0, np.float32)
        cols = np.concatenate(indices) if indices else np.zeros(0, np.int32)
        return scipy.sparse.csr_array((data, cols, indptr), shape=(n_frames, self.n_features))

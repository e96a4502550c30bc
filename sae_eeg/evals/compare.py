"""Consistency of two SAE models on the same activations (both metrics in one table)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .._check import _validate_type
from ..errors import InputError
from ..sae import SparseAutoencoder
from .consistency import activation_consistency, decoder_consistency


def decoder_directions(sae):
    """Decoder directions of an SAE, one row per feature.

    Parameters
    ----------
    sae : SparseAutoencoder
        An SAE with a ``decoder`` linear layer (weight (D, F), the
        dictionary_learning layout).

    Returns
    -------
    W_dec : ndarray, shape (n_features, d_model), float64
    """
    _validate_type(sae, SparseAutoencoder, "sae")
    with torch.no_grad():
        weight = sae.decoder.weight.detach().to("cpu", torch.float64).numpy()
    if weight.shape != (sae.d_model, sae.n_features):
        raise InputError(
            f"sae.decoder.weight has shape {weight.shape}; expected (d_model, n_features) = "
            f"({sae.d_model}, {sae.n_features})."
        )
    return weight.T.copy()


def compare_saes(saes, acts, clip_ids, *, reference=None, k_per_frame=50, iou_threshold=0.5, cos_threshold=0.7,
                 random_state=None):
    """Activation and decoder consistency of several SAEs against a reference SAE.

    Parameters
    ----------
    saes : dict of str to SparseAutoencoder
        SAEs of the same layer (seeds, checkpoints), keyed by name.
    acts : ndarray, shape (n_frames, d_model)
        Activations all SAEs encode (e.g. held-out clips concatenated).
    clip_ids : array-like, shape (n_frames,)
        Clip of each frame.
    reference : str | None
        Name of the reference SAE (A in c(A, B)); default the first.
    k_per_frame : int
        Per-clip batch top-k budget of the activation rule. Default 50.
    iou_threshold : float
        IoU above which two features match. Default 0.5.
    cos_threshold : float
        Decoder cosine at or above which a matched pair is shared. Default 0.7.
    random_state : int | numpy.random.Generator | None
        Seed of the random-init floor.

    Returns
    -------
    table : pandas.DataFrame
        One row per SAE: ``reference``, ``sae``, ``coverage`` (c(ref, sae)),
        ``coverage_reverse`` (c(sae, ref)), ``duplicates`` (share of the SAE's
        live features duplicated inside it), ``mean_cosine``, ``shared_fraction``,
        ``floor_mean_cosine``, ``floor_shared_fraction``.
    """
    _validate_type(saes, dict, "saes")
    if not saes:
        raise InputError("saes is empty; give name -> SAE.")
    reference = next(iter(saes)) if reference is None else reference
    if reference not in saes:
        raise InputError(f"reference {reference!r} is not one of the SAEs {list(saes)!r}.")
    codes = {name: sae.encode_sparse(np.asarray(acts, dtype=np.float32)) for name, sae in saes.items()}
    W_ref = decoder_directions(saes[reference])
    rows = []
    for name, sae in saes.items():
        act = activation_consistency(codes[reference], codes[name], clip_ids, k_per_frame=k_per_frame,
                                     threshold=iou_threshold)
        dec = decoder_consistency(W_ref, decoder_directions(sae), threshold=cos_threshold, random_state=random_state)
        rows.append({
            "reference": reference, "sae": name, "coverage": act.coverage_ab, "coverage_reverse": act.coverage_ba,
            "duplicates": act.duplicates_b, "mean_cosine": dec.mean_cosine, "shared_fraction": dec.shared_fraction,
            "floor_mean_cosine": dec.floor_mean_cosine, "floor_shared_fraction": dec.floor_shared_fraction,
        })
    return pd.DataFrame(rows)

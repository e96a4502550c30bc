"""Load and save SAE checkpoints in the AudioSAE, SAELens and sparsify layouts.

``layer_n/ae.pt`` (+ ``config.json``) is the AudioSAE / dictionary_learning layout,
with layers numbered from 1; ``cfg.json`` + ``sae_weights.safetensors`` is SAELens;
``cfg.json`` + ``sae.safetensors`` is EleutherAI's sparsify (read only).
"""

from __future__ import annotations

from .._check import _check_option, _ensure_int
from ..errors import CheckpointError
from ._formats import STATE_KEYS, WRITE_FORMATS, locate_checkpoint, read_checkpoint, write_checkpoint
from .batch_topk import BatchTopKSAE

#: SAE architectures by the name stored in checkpoints (all formats map to BatchTopK).
ARCHITECTURES = {"batch_topk": BatchTopKSAE}

__all__ = ["ARCHITECTURES", "STATE_KEYS", "WRITE_FORMATS", "check_sae_for_backbone", "load_sae", "save_sae",
           "locate_checkpoint", "read_checkpoint", "write_checkpoint"]


def load_sae(path_or_repo, *, layer=None, device="cpu", architecture="batch_topk"):
    """Load an SAE checkpoint of any supported layout.

    Parameters
    ----------
    path_or_repo : path-like | str
        A folder (with ``layer_n/`` sub-folders or one checkpoint), a checkpoint file
        (``ae.pt``, ``sae_weights.safetensors``, ``sae.safetensors``), or a Hugging Face
        Hub repository id (``owner/name``; downloaded with
        ``huggingface_hub.snapshot_download`` when online, read from the cache offline).
    layer : int | None
        Layer n, numbered from 1. None when the path holds one SAE.
    device : str | torch.device
        Default "cpu".
    architecture : str
        Key of :data:`ARCHITECTURES`. Default "batch_topk".

    Returns
    -------
    sae : BatchTopKSAE
        In eval mode.

    Raises
    ------
    CheckpointError
        Nothing found, not a checkpoint, or inconsistent shapes (the message names the
        file and the shapes).
    """
    _check_option("architecture", architecture, ARCHITECTURES)
    return ARCHITECTURES[architecture].from_pretrained(path_or_repo, layer=layer, device=device).eval()


def save_sae(sae, path, *, format="audiosae", layer=None, extra_config=None):
    """Write ``sae`` to ``path`` (``path/layer_n/`` with ``layer``); see :meth:`BatchTopKSAE.save`.

    Returns
    -------
    folder : pathlib.Path
    """
    _check_option("format", format, WRITE_FORMATS)
    return sae.save(path, format=format, layer=layer, extra_config=extra_config)


def check_sae_for_backbone(sae, backbone, layer, *, source="SAE"):
    """Raise :class:`CheckpointError` unless ``sae`` reads layer ``layer`` of ``backbone``.

    Parameters
    ----------
    sae : SparseAutoencoder
    backbone : object
        Has ``d_model``, ``n_layers`` and ``name``.
    layer : int
        Layer n, from 1.
    source : str
        Name of the checkpoint for the message.
    """
    layer = _ensure_int(layer, "layer")
    n_layers = int(backbone.n_layers)
    if not 1 <= layer <= n_layers:
        raise CheckpointError(f"{source}: layer {layer} does not exist in {backbone.name!r} (layers 1..{n_layers}).")
    if sae.d_model != int(backbone.d_model):
        raise CheckpointError(f"{source}: the SAE reads activations of width {sae.d_model} (encoder.weight "
                              f"{tuple(sae.encoder.weight.shape)}), but layer {layer} of {backbone.name!r} has width "
                              f"{backbone.d_model}.")

"""Reading and writing SAE checkpoint files at the tensor level.

Three layouts are understood, all mapped onto one canonical state dict (the AudioSAE /
dictionary_learning BatchTopK layout: ``encoder.weight`` (F, D), ``encoder.bias`` (F,),
``decoder.weight`` (D, F), ``b_dec`` (D,), ``k``, ``threshold``) plus a config dict:

- ``audiosae``: ``[layer_n/]ae.pt`` (+ ``config.json``), read and written;
- ``saelens``: ``cfg.json`` + ``sae_weights.safetensors`` (``W_enc`` (D, F),
  ``W_dec`` (F, D), ``b_enc``, ``b_dec``, ``threshold`` for JumpReLU), read and written;
- ``sparsify``: ``cfg.json`` + ``sae.safetensors`` (``encoder.weight``,
  ``encoder.bias``, ``W_dec`` (F, D), ``b_dec``), read.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from .._check import _check_option, _ensure_int, _soft_import, _validate_type
from .._io import atomic_path, provenance, write_json_atomic
from ..errors import CheckpointError

STATE_KEYS = ("encoder.weight", "encoder.bias", "decoder.weight", "b_dec", "k", "threshold")
WRITE_FORMATS = ("audiosae", "saelens")
_FILES = {"ae.pt": "audiosae", "sae_weights.safetensors": "saelens", "sae.safetensors": "sparsify"}
_SAELENS_ARCHITECTURES = ("topk", "batchtopk", "jumprelu")
_SAELENS_NORMALIZATIONS = ("none", "constant_norm_rescale")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

__all__ = ["CheckpointError", "STATE_KEYS", "check_state", "read_checkpoint", "write_checkpoint"]


def _shapes(state):
    return ", ".join(f"{name} {tuple(t.shape)}" for name, t in state.items())


def check_state(state, source):
    """Check a canonical state dict; return ``(n_features, d_model)``.

    Raises
    ------
    CheckpointError
        If keys are missing or unexpected, or the shapes disagree; the message names
        ``source`` and every shape.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: not an SAE checkpoint (expected a dict of tensors, got "
                              f"{type(state).__name__}).")
    missing = [key for key in STATE_KEYS if key not in state]
    unexpected = [key for key in state if key not in STATE_KEYS]
    if missing or unexpected:
        raise CheckpointError(f"{source}: not a BatchTopK SAE checkpoint: missing keys {missing}, unexpected keys "
                              f"{unexpected}; expected exactly {list(STATE_KEYS)}.")
    W_enc = state["encoder.weight"]
    if W_enc.ndim != 2:
        raise CheckpointError(f"{source}: encoder.weight must be 2-D (F, D), got {tuple(W_enc.shape)}.")
    n_features, d_model = W_enc.shape
    expected = {"encoder.bias": (n_features,), "decoder.weight": (d_model, n_features), "b_dec": (d_model,),
                "k": ()}
    bad = [name for name, shape in expected.items() if tuple(state[name].shape) != shape]
    if tuple(state["threshold"].shape) not in ((), (n_features,)):
        bad.append("threshold")
    if bad:
        raise CheckpointError(f"{source}: inconsistent shapes for {bad} with F={n_features}, D={d_model}: "
                              f"{_shapes(state)}.")
    return int(n_features), int(d_model)


# ------------------------------------------------------------------- locating
def _layer_folder_names(layer):
    return (f"layer_{layer}", f"layers.{layer - 1}")


def _checkpoint_file(folder):
    for name in _FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def _matches_layer(folder, layer):
    name = folder.name
    if name == f"layer_{layer}" or name.endswith(f"layers.{layer - 1}"):
        return True
    cfg = folder / "cfg.json"
    if cfg.is_file():
        hook = str(_read_json(cfg).get("hook_name", ""))
        return re.search(rf"layers\.{layer - 1}(\D|$)", hook) is not None
    return False


def _find_in_folder(folder, layer):
    here = _checkpoint_file(folder)
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and _checkpoint_file(p) is not None)
    if layer is None:
        if here is not None:
            return here
        if len(subs) == 1:
            return _checkpoint_file(subs[0])
        found = [p.name for p in subs]
        raise CheckpointError(f"{str(folder)!r} holds {len(subs)} SAE checkpoints {found}; pass layer=n "
                              "(numbered from 1)." if subs else
                              f"{str(folder)!r} holds no SAE checkpoint (looked for {list(_FILES)}).")
    for sub in subs:
        if _matches_layer(sub, layer):
            return _checkpoint_file(sub)
    if here is not None and _matches_layer(folder, layer):
        return here
    raise CheckpointError(f"No checkpoint for layer {layer} in {str(folder)!r}: expected a sub-folder "
                          f"{_layer_folder_names(layer)[0]!r} (or '...{_layer_folder_names(layer)[1]}'); found "
                          f"{[p.name for p in subs]}.")


def _hub_folder(repo_id, layer):
    hub = _soft_import("huggingface_hub", "Loading SAE checkpoints from the Hugging Face Hub")
    patterns = None
    if layer is not None:
        patterns = ["*.json", *(f"{name}/*" for name in _layer_folder_names(layer)),
                    f"*layers.{layer - 1}/*"]
    try:
        return Path(hub.snapshot_download(repo_id=repo_id, allow_patterns=patterns))
    except Exception as err:  # huggingface_hub raises many types (offline, 404, auth)
        raise CheckpointError(f"{repo_id!r} is not a local path and could not be fetched from the Hugging Face "
                              f"Hub or its local cache ({type(err).__name__}: {err}).") from err


def locate_checkpoint(path_or_repo, *, layer=None):
    """Path of the checkpoint file (``ae.pt``, ``sae_weights.safetensors``, ``sae.safetensors``).

    Parameters
    ----------
    path_or_repo : path-like | str
        Folder, checkpoint file, or Hub repository id ``owner/name``.
    layer : int | None
        Layer n (from 1) to pick among ``layer_n`` (or ``*layers.{n-1}``) sub-folders.

    Returns
    -------
    file : pathlib.Path
    """
    _validate_type(path_or_repo, "path-like", "path_or_repo")
    if layer is not None:
        layer = _ensure_int(layer, "layer")
        if layer < 1:
            raise CheckpointError(f"layer is numbered from 1 (layer_n/ae.pt), got {layer!r}.")
    path = Path(path_or_repo)
    if path.is_file():
        if path.name not in _FILES:
            raise CheckpointError(f"{str(path)!r} is not a checkpoint file: expected one of {list(_FILES)}.")
        return path
    if path.is_dir():
        return _find_in_folder(path, layer)
    if isinstance(path_or_repo, str) and _REPO_ID.match(path_or_repo):
        return _find_in_folder(_hub_folder(path_or_repo, layer), layer)
    raise CheckpointError(f"{str(path_or_repo)!r}: no such file or folder, and not a Hub repository id "
                          "of the form 'owner/name'.")


# -------------------------------------------------------------------- reading
def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{str(path)!r} is not valid JSON ({err}).") from err


def _load_safetensors(path):
    st = _soft_import("safetensors.torch", "Reading SAELens/sparsify checkpoints", pip_name="safetensors")
    try:
        return st.load_file(str(path), device="cpu")
    except Exception as err:  # SafetensorError is not exported under a stable name
        raise CheckpointError(f"{str(path)!r} is not a safetensors file ({type(err).__name__}: {err}).") from err


def _require(mapping, keys, source):
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise CheckpointError(f"{source}: missing {missing}; found {sorted(mapping)}.")


def _read_audiosae(file):
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # junk bytes surface as many types (UnpicklingError, IndexError, ...)
        raise CheckpointError(f"{str(file)!r} is not a PyTorch checkpoint ({type(err).__name__}: {err}).") from err
    config_file = file.parent / "config.json"
    config = _read_json(config_file) if config_file.is_file() else {}
    trainer = config.get("trainer", {}) if isinstance(config.get("trainer"), dict) else {}
    normalize = trainer.get("normalize_input", config.get("normalize_input", False))
    if isinstance(state, dict) and "threshold" not in state and "k" in state:
        state = {**state, "threshold": torch.tensor(-1.0)}  # TopK checkpoints: per-frame top-k
    check_state(state, str(file))
    return state, {"normalize_input": bool(normalize)}


def _saelens_k(cfg):
    k = cfg.get("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    return None if k is None else int(k)


def _read_saelens(file):
    source = str(file)
    cfg = _read_json(file.parent / "cfg.json")
    weights = _load_safetensors(file)
    arch = cfg.get("architecture", "standard")
    _check_arch = _SAELENS_ARCHITECTURES
    if arch not in _check_arch:
        raise CheckpointError(f"{source}: SAELens architecture {arch!r} is not supported; supported "
                              f"architectures are {list(_check_arch)}.")
    norm = cfg.get("normalize_activations", "none") or "none"
    if norm not in _SAELENS_NORMALIZATIONS:
        raise CheckpointError(f"{source}: normalize_activations={norm!r} is not supported; supported values are "
                              f"{list(_SAELENS_NORMALIZATIONS)}.")
    _require(weights, ("W_enc", "W_dec", "b_enc", "b_dec"), source)
    k = _saelens_k(cfg)
    if k is None:
        raise CheckpointError(f"{source}: cfg.json has no 'k' (needed by a BatchTopK SAE).")
    W_enc, W_dec = weights["W_enc"].float(), weights["W_dec"].float()
    if W_enc.ndim != 2 or W_dec.ndim != 2 or W_enc.shape != W_dec.T.shape:
        raise CheckpointError(f"{source}: W_enc must be (D, F) and W_dec (F, D); got {_shapes(weights)}.")
    b_enc, b_dec = weights["b_enc"].float(), weights["b_dec"].float()
    threshold = weights.get("threshold", weights.get("topk_threshold", torch.tensor(-1.0))).float()
    if not cfg.get("apply_b_dec_to_input", True):
        b_enc = b_enc + b_dec @ W_enc  # x W + b_enc == (x - b_dec) W + (b_enc + b_dec W)
    if norm == "constant_norm_rescale":  # features there are sqrt(D) times ours
        scale = math.sqrt(W_enc.shape[0])
        b_enc, b_dec = b_enc / scale, b_dec / scale
        threshold = torch.where(threshold >= 0, threshold / scale, threshold)
    if threshold.ndim == 1 and threshold.numel() and bool((threshold == threshold[0]).all()):
        threshold = threshold[0].clone()
    state = {"encoder.weight": W_enc.T.contiguous(), "encoder.bias": b_enc, "decoder.weight": W_dec.T.contiguous(),
             "b_dec": b_dec, "k": torch.tensor(k, dtype=torch.int32), "threshold": threshold}
    check_state(state, source)
    return state, {"normalize_input": norm == "constant_norm_rescale"}


def _read_sparsify(file):
    source = str(file)
    cfg = _read_json(file.parent / "cfg.json")
    weights = _load_safetensors(file)
    if "W_skip" in weights:
        raise CheckpointError(f"{source}: sparsify SAEs with a skip connection (W_skip) are not supported.")
    _require(weights, ("encoder.weight", "encoder.bias", "W_dec", "b_dec"), source)
    if "k" not in cfg:
        raise CheckpointError(f"{source}: cfg.json has no 'k'.")
    state = {"encoder.weight": weights["encoder.weight"].float(), "encoder.bias": weights["encoder.bias"].float(),
             "decoder.weight": weights["W_dec"].float().T.contiguous(), "b_dec": weights["b_dec"].float(),
             "k": torch.tensor(int(cfg["k"]), dtype=torch.int32), "threshold": torch.tensor(-1.0)}
    check_state(state, source)
    return state, {"normalize_input": False}


_READERS = {"audiosae": _read_audiosae, "saelens": _read_saelens, "sparsify": _read_sparsify}


def read_checkpoint(path_or_repo, *, layer=None):
    """Read a checkpoint of any supported layout into the canonical state dict.

    Parameters
    ----------
    path_or_repo : path-like | str
        Folder, checkpoint file or Hub repository id.
    layer : int | None
        Layer n, from 1.

    Returns
    -------
    state : dict of str to torch.Tensor
        Keys :data:`STATE_KEYS`, float32 on CPU.
    config : dict
        ``normalize_input`` (bool).
    source : str
        The file read (for messages).
    """
    file = locate_checkpoint(path_or_repo, layer=layer)
    state, config = _READERS[_FILES[file.name]](file)
    return state, config, str(file)


# -------------------------------------------------------------------- writing
def _write_audiosae(folder, state, config, extra_config):
    with atomic_path(folder / "ae.pt") as tmp:
        torch.save(state, tmp)
    trainer = {"dict_class": "BatchTopKSAE", "trainer_class": "BatchTopKTrainer",
               "activation_dim": config["d_model"], "dict_size": config["n_features"], "k": config["k"],
               "normalize_input": config["normalize_input"], **extra_config}
    write_json_atomic(folder / "config.json", {"trainer": trainer, "provenance": provenance(trainer)})


def _write_saelens(folder, state, config, extra_config):
    st = _soft_import("safetensors.torch", "Writing SAELens checkpoints", pip_name="safetensors")
    n_features, d_model = config["n_features"], config["d_model"]
    scale = math.sqrt(d_model) if config["normalize_input"] else 1.0
    threshold = state["threshold"].float().expand(n_features).clone()
    has_threshold = bool((threshold >= 0).all())
    weights = {"W_enc": state["encoder.weight"].T.contiguous(), "W_dec": state["decoder.weight"].T.contiguous(),
               "b_enc": state["encoder.bias"] * scale, "b_dec": state["b_dec"] * scale}
    if has_threshold:
        weights["threshold"] = threshold * scale
    cfg = {"architecture": "jumprelu" if has_threshold else "topk", "d_in": d_model, "d_sae": n_features,
           "k": config["k"], "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": True,
           "normalize_activations": "constant_norm_rescale" if config["normalize_input"] else "none",
           **extra_config}
    with atomic_path(folder / "sae_weights.safetensors") as tmp:
        st.save_file(weights, str(tmp))
    write_json_atomic(folder / "cfg.json", cfg)


_WRITERS = {"audiosae": _write_audiosae, "saelens": _write_saelens}


def write_checkpoint(path, state, config, *, format="audiosae", layer=None, extra_config=None):
    """Write a canonical state dict and config to ``path[/layer_n]`` in ``format``.

    Parameters
    ----------
    path : path-like
        Output folder.
    state : dict of str to torch.Tensor
        Canonical state dict (:data:`STATE_KEYS`).
    config : dict
        ``d_model``, ``n_features``, ``k``, ``normalize_input``.
    format : str
        One of :data:`WRITE_FORMATS`.
    layer : int | None
        Write into the sub-folder ``layer_n`` (and record the layer). Default None.
    extra_config : dict | None
        More config entries.

    Returns
    -------
    folder : pathlib.Path
    """
    _validate_type(path, "path-like", "path")
    _check_option("format", format, _WRITERS)
    extra_config = dict(extra_config or {})
    folder = Path(path)
    if layer is not None:
        layer = _ensure_int(layer, "layer")
        if layer < 1:
            raise CheckpointError(f"layer is numbered from 1 (layer_n/ae.pt), got {layer!r}.")
        folder = folder / f"layer_{layer}"
        extra_config.setdefault("layer", layer)
        if format == "saelens":
            extra_config.setdefault("hook_name", f"encoder.layers.{layer - 1}")
    folder.mkdir(parents=True, exist_ok=True)
    check_state(state, "state to write")
    _WRITERS[format](folder, state, config, extra_config)
    return folder

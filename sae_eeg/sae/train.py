"""Train one BatchTopK SAE per layer from one activation stream, with checkpoint/resume."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from .._check import _check_file, _check_range, _ensure_int, _validate_type
from .._io import atomic_path, config_hash, write_json_atomic
from ..errors import ConfigError, OutputExistsError
from .batch_topk import BatchTopKSAE, BatchTopKTrainer
from ._common import resolve_device
from .store import ActivationStore, Augmentation, audio_files

logger = logging.getLogger(__name__)

__all__ = ["TrainingConfig", "read_training_config", "store_from_config", "train_saes"]


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of a multi-layer BatchTopK training run.

    Attributes
    ----------
    layers : tuple of int
        Layers to train an SAE on, numbered from 1.
    expansion : int
        n_features = expansion * d_model. Default 8.
    k : int
        Active features per frame. Default 50.
    n_steps : int
        Optimisation steps. Default 10000.
    batch_size : int
        Frames per step. Default 2048.
    lr : float
        Adam learning rate. Default 2e-4.
    warmup_steps : int
        Linear warm-up steps. Default 1000.
    decay_fraction : float
        Linear decay over the final fraction of the steps. Default 0.2.
    threshold_start : int
        First step of the inference-threshold EMA. Default 1000.
    threshold_beta : float
        EMA factor. Default 0.999.
    auxk_coef : float
        AuxK loss weight (0 = off, the default; 1/32 in dictionary_learning).
    dead_window : int
        Frames without firing after which a feature is dead. Default 10_000_000.
    grad_clip : float
        Default 1.0.
    normalize_input : bool
        Unit-normalise each frame (AudioSAE setting). Default False.
    seed : int
        Seed of the weight initialisation (per layer). Default 0.
    checkpoint_every : int
        Save the resumable training state every this many steps. Default 1000.
    """

    layers: tuple = (1,)
    expansion: int = 8
    k: int = 50
    n_steps: int = 10000
    batch_size: int = 2048
    lr: float = 2e-4
    warmup_steps: int = 1000
    decay_fraction: float = 0.2
    threshold_start: int = 1000
    threshold_beta: float = 0.999
    auxk_coef: float = 0.0
    dead_window: int = 10_000_000
    grad_clip: float = 1.0
    normalize_input: bool = False
    seed: int = 0
    checkpoint_every: int = 1000

    def __post_init__(self):
        _validate_type(self.layers, (tuple, list), "layers")
        object.__setattr__(self, "layers", tuple(_ensure_int(n, "layers[i]") for n in self.layers))
        if not self.layers or min(self.layers) < 1:
            raise ConfigError(f"layers must be non-empty and numbered from 1, got {self.layers!r}.")
        for name in ("expansion", "k", "n_steps", "batch_size", "checkpoint_every"):
            _check_range(name, _ensure_int(getattr(self, name), name), 1)
        for name in ("warmup_steps", "threshold_start", "dead_window", "seed"):
            _check_range(name, _ensure_int(getattr(self, name), name), 0)
        _validate_type(self.normalize_input, bool, "normalize_input")

    def to_config(self):
        """The configuration as a JSON-serialisable dict."""
        config = dataclasses.asdict(self)
        config["layers"] = list(self.layers)
        return config

    @classmethod
    def from_config(cls, config):
        """Build from a dict; unknown keys raise :class:`ConfigError` naming them."""
        _validate_type(config, dict, "config")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f"Unknown training option(s) {unknown}; allowed options are {sorted(known)}.")
        return cls(**config)


def _layer_seed(seed, layer):
    return int(np.random.SeedSequence([seed, layer]).generate_state(1)[0])


def _state_file(out_dir):
    return Path(out_dir) / "checkpoint" / "state.pt"


def _save_state(out_dir, trainers, store, config_digest):
    state = {"config_hash": config_digest, "store": store.state_dict(),
             "trainers": {layer: trainer.state_dict() for layer, trainer in trainers.items()}}
    path = _state_file(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_state(out_dir, trainers, store, config_digest):
    state = torch.load(_state_file(out_dir), map_location="cpu", weights_only=True)
    if state["config_hash"] != config_digest:
        raise OutputExistsError(f"{str(out_dir)!r} holds a training run of another configuration "
                                f"(config hash {state['config_hash'][:12]} != {config_digest[:12]}); choose "
                                "another out_dir or pass resume=False.")
    store.load_state_dict(state["store"])
    for layer, trainer in trainers.items():
        trainer.load_state_dict(state["trainers"][layer])
    return trainers[next(iter(trainers))].step


def _progress(total, initial, verbose):
    if not verbose:
        return None
    return tqdm(total=total, initial=initial, desc="train SAEs", unit="step")


def train_saes(store, config, *, out_dir=None, device="cpu", resume=True, verbose=False, max_steps=None):
    """Train one BatchTopK SAE per layer from one activation stream.

    Each step draws one batch of frames for all layers from ``store`` and updates
    every layer's SAE. With ``out_dir`` the resumable state (models, optimisers,
    steps, dead-feature counters, the store's RNG and shuffle buffer) is saved every
    ``config.checkpoint_every`` steps, and the final SAEs are written as
    ``out_dir/layer_n/ae.pt`` (+ ``config.json``). A run started again with the same
    configuration resumes from the last saved state and ends with the same weights as
    an uninterrupted run.

    Parameters
    ----------
    store : ActivationStore | ArrayActivationStore
        Source of batches (``next_batch``, ``state_dict``, ``load_state_dict``,
        ``layers``, ``d_model``).
    config : TrainingConfig | dict
        Hyperparameters.
    out_dir : path-like | None
        Output folder; None trains in memory only.
    device : str | torch.device
        Default "cpu"; "auto" takes CUDA when available.
    resume : bool
        Resume from ``out_dir``'s saved state when there is one. Default True.
    verbose : bool
        Show a progress bar with loss, L0, FVU and dead fraction. Default False.
    max_steps : int | None
        Stop (after saving the state) once this step is reached, to resume later.

    Returns
    -------
    saes : dict of int to BatchTopKSAE
        Trained SAE per layer (in eval mode, on ``device``).
    """
    if isinstance(config, dict):
        config = TrainingConfig.from_config(config)
    _validate_type(config, TrainingConfig, "config")
    _validate_type(out_dir, ("path-like", None), "out_dir")
    missing = sorted(set(config.layers) - set(store.layers))
    if missing:
        raise ConfigError(f"layers {missing} are not streamed by the store (it streams {list(store.layers)}).")
    device = resolve_device(device)
    digest = config_hash(config.to_config())
    if store.d_model is None:
        raise ConfigError("The store does not know its activation width (d_model); give the backbone a d_model.")
    d_model = int(store.d_model)
    trainers = {}
    for layer in config.layers:
        sae = BatchTopKSAE(d_model, config.expansion * d_model, config.k, normalize_input=config.normalize_input,
                           random_state=_layer_seed(config.seed, layer))
        trainers[layer] = BatchTopKTrainer(
            sae, n_steps=config.n_steps, lr=config.lr, warmup_steps=config.warmup_steps,
            decay_fraction=config.decay_fraction, threshold_start=config.threshold_start,
            threshold_beta=config.threshold_beta, auxk_coef=config.auxk_coef, dead_window=config.dead_window,
            grad_clip=config.grad_clip, device=device)
    step = 0
    if out_dir is not None and resume and _state_file(out_dir).is_file():
        step = _load_state(out_dir, trainers, store, digest)
        logger.info("Resuming training in %s at step %d", out_dir, step)
    stop = config.n_steps if max_steps is None else min(config.n_steps, _ensure_int(max_steps, "max_steps"))
    bar = _progress(config.n_steps, step, verbose)
    try:
        while step < stop:
            batch = store.next_batch(config.batch_size)
            logs = {layer: trainer.update(batch[layer].to(device)) for layer, trainer in trainers.items()}
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix({f"L{n}": f"loss {v['loss']:.3g} L0 {v['l0']:.1f} FVU {v['fvu']:.3f} "
                                         f"dead {v['dead_fraction']:.2f}" for n, v in logs.items()})
            if out_dir is not None and (step % config.checkpoint_every == 0 or step == stop):
                _save_state(out_dir, trainers, store, digest)
    finally:
        if bar is not None:
            bar.close()
    saes = {layer: trainer.sae.eval() for layer, trainer in trainers.items()}
    if out_dir is not None and step == config.n_steps:
        backbone = getattr(getattr(store, "backbone", None), "name", None)
        for layer, sae in saes.items():
            sae.save(out_dir, layer=layer, extra_config={"backbone": backbone, "training": config.to_config()})
        write_json_atomic(Path(out_dir) / "training.json", {"config": config.to_config(), "config_hash": digest,
                                                            "steps": step})
    return saes


_CONFIG_KEYS = {"backbone", "device", "out_dir", "data", "training", "verbose"}
_DATA_KEYS = {"datasets", "augmentation", "buffer_size", "refill_fraction", "cache_dir", "seed"}
_DATASET_KEYS = {"folder", "files", "weight"}
_AUGMENT_KEYS = {"noise", "music", "noise_folder", "music_folder", "p_noise", "p_music", "snr_db"}


def _check_keys(mapping, allowed, where):
    _validate_type(mapping, dict, where)
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise ConfigError(f"Unknown key(s) {unknown} in {where}; allowed keys are {sorted(allowed)}.")
    return mapping


def _resolve(path, base):
    path = Path(path).expanduser()
    return path if path.is_absolute() or base is None else base / path


def _clip_list(section, kind, base):
    clips = [_resolve(p, base) for p in section.get(kind, [])]
    if f"{kind}_folder" in section:
        clips += audio_files(_resolve(section[f"{kind}_folder"], base))
    return tuple(clips)


def read_training_config(config):
    """Read and check a training configuration (dict, or a YAML/JSON file).

    Parameters
    ----------
    config : dict | path-like
        Keys: ``backbone`` (name or folder), ``out_dir``, ``device`` (default
        "cpu"), ``verbose`` (default False), ``data`` and ``training``.
        ``data`` has ``datasets`` (name -> ``{folder | files, weight}``), optional
        ``augmentation`` (``noise`` / ``music`` file lists or ``noise_folder`` /
        ``music_folder``, ``p_noise``, ``p_music``, ``snr_db``), ``buffer_size``,
        ``refill_fraction``, ``cache_dir``, ``seed``. ``training`` holds the fields
        of :class:`TrainingConfig`. Relative paths in a file are relative to it.

    Returns
    -------
    config : dict
        The checked config with ``training`` as a :class:`TrainingConfig`, file lists
        resolved, ``augmentation`` as an :class:`Augmentation` or None and
        ``weights`` per dataset.

    Raises
    ------
    ConfigError
        Unknown keys or invalid values, naming the key.
    """
    base = None
    if not isinstance(config, dict):
        path = _check_file(config, "config")
        base = path.parent
        text = path.read_text()
        try:
            config = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as err:
            raise ConfigError(f"config file {str(path)!r} could not be parsed ({err}).") from err
    _check_keys(config, _CONFIG_KEYS, "the training config")
    for key in ("backbone", "out_dir", "data", "training"):
        if key not in config:
            raise ConfigError(f"The training config needs the key {key!r} (it has {sorted(config)}).")
    data = _check_keys(config["data"], _DATA_KEYS, "data")
    datasets = _check_keys(data.get("datasets", {}), set(data.get("datasets", {})), "data.datasets")
    if not datasets:
        raise ConfigError("data.datasets is empty; name at least one dataset with a folder or files.")
    sources, weights = {}, {}
    for name, spec in datasets.items():
        _check_keys(spec, _DATASET_KEYS, f"data.datasets.{name}")
        files = [_resolve(p, base) for p in spec.get("files", [])]
        if "folder" in spec:
            files += audio_files(_resolve(spec["folder"], base))
        if not files:
            raise ConfigError(f"data.datasets.{name} lists no audio (give 'folder' or 'files').")
        sources[name], weights[name] = files, float(spec.get("weight", 1.0))
    augmentation = None
    if data.get("augmentation"):
        section = _check_keys(data["augmentation"], _AUGMENT_KEYS, "data.augmentation")
        noise, music = _clip_list(section, "noise", base), _clip_list(section, "music", base)
        augmentation = Augmentation(noise=noise, music=music, p_noise=section.get("p_noise", 0.5 if noise else 0.0),
                                    p_music=section.get("p_music", 0.3 if music else 0.0),
                                    snr_db=tuple(section.get("snr_db", (0.0, 20.0))))
    training = TrainingConfig.from_config(dict(config["training"]))
    backbone = config["backbone"]
    if isinstance(backbone, str) and base is not None and _resolve(backbone, base).exists():
        backbone = str(_resolve(backbone, base))
    return {
        "backbone": backbone, "device": config.get("device", "cpu"), "verbose": bool(config.get("verbose", False)),
        "out_dir": _resolve(config["out_dir"], base), "training": training, "sources": sources, "weights": weights,
        "augmentation": augmentation, "buffer_size": data.get("buffer_size", 65536),
        "refill_fraction": data.get("refill_fraction", 0.5),
        "cache_dir": None if data.get("cache_dir") is None else _resolve(data["cache_dir"], base),
        "seed": data.get("seed", training.seed),
    }


def store_from_config(config, backbone):
    """The :class:`ActivationStore` described by a checked config (see :func:`read_training_config`).

    Parameters
    ----------
    config : dict
        Output of :func:`read_training_config`.
    backbone : Backbone
        The loaded backbone.

    Returns
    -------
    store : ActivationStore
    """
    return ActivationStore(backbone, config["sources"], list(config["training"].layers), weights=config["weights"],
                           buffer_size=config["buffer_size"], refill_fraction=config["refill_fraction"],
                           augmentation=config["augmentation"], cache_dir=config["cache_dir"], seed=config["seed"])

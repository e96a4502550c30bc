"""Train one BatchTopK SAE per layer from one activation stream, with checkpoint/resume."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .._check import _check_range, _ensure_int, _validate_type
from .._io import atomic_path, config_hash, write_json_atomic
from ..errors import ConfigError, OutputExistsError
from .batch_topk import BatchTopKSAE, BatchTopKTrainer
from ._common import resolve_device

logger = logging.getLogger(__name__)

__all__ = ["TrainingConfig", "train_saes"]


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

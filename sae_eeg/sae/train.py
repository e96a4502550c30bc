"""Train one BatchTopK SAE per layer from one activation stream, with checkpoint/resume."""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml
from pydantic import Field, StrictBool, field_validator, model_validator
from tqdm.auto import tqdm

from .._check import _check_file, _ensure_int, _validate_type
from .._config import (
    NonNegativeInt, Number, PositiveInt, StrictModel, resolve_path, resolve_paths, validate_model,
)
from .._io import atomic_path, config_hash, write_json_atomic
from ..backbones import load_backbone
from ..errors import ConfigError, OutputExistsError
from .batch_topk import BatchTopKSAE, BatchTopKTrainer
from ._common import resolve_device, torch_threads
from .store import ActivationStore, Augmentation, audio_files

logger = logging.getLogger(__name__)

__all__ = ["TrainingConfig", "TrainingFile", "TrainingSettings", "read_training_config", "store_from_config", "train_saes", "train_saes_from_config"]


class TrainingSettings(StrictModel):
    """Hyperparameters of a BatchTopK training run, except the layers.

    This is the ``sae.training`` section of a pipeline config (whose layers are the
    pipeline's); :class:`TrainingConfig` adds ``layers``.

    Attributes
    ----------
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
        Steps over which the learning rate rises linearly from ~0 to ``lr``; below
        ``n_steps``. Default 1000.
    decay_fraction : float
        Linear decay of the learning rate to 0 over the final fraction of the steps,
        in [0, 1]. Default 0.2.
    threshold_start : int
        First step at which the inference threshold is estimated: training keeps the
        top ``k * batch_size`` activations of each batch, inference keeps those above
        one threshold, an exponential moving average of the smallest kept activation
        of each step from this step on. Below ``n_steps`` (an SAE without a
        threshold cannot encode at inference); typically half of it. Default 1000.
    threshold_beta : float
        EMA factor of the threshold, in [0, 1) (0.999 averages over ~1000 steps; use
        ~0.99 for short runs). Default 0.999.
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
    cpu_threads : int
        Torch threads of a training run on CPU. The weights depend on it (a product
        split over more threads sums in another order), so it is part of the
        configuration: the default 1 gives the same SAE on any machine and under any
        ``OMP_NUM_THREADS``; raise it for speed on a many-core machine. Not used on GPU.
    """

    expansion: PositiveInt = 8
    k: PositiveInt = 50
    n_steps: PositiveInt = 10000
    batch_size: PositiveInt = 2048
    lr: Number = Field(2e-4, gt=0)
    warmup_steps: NonNegativeInt = 1000
    decay_fraction: Number = Field(0.2, ge=0, le=1)
    threshold_start: NonNegativeInt = 1000
    threshold_beta: Number = Field(0.999, ge=0, lt=1)
    auxk_coef: Number = Field(0.0, ge=0)
    dead_window: NonNegativeInt = 10_000_000
    grad_clip: Number = Field(1.0, gt=0)
    normalize_input: StrictBool = False
    seed: NonNegativeInt = 0
    checkpoint_every: PositiveInt = 1000
    cpu_threads: PositiveInt = 1

    @model_validator(mode="after")
    def _schedule_within_the_run(self):
        problems = []
        if self.threshold_start >= self.n_steps:
            problems.append(f"threshold_start ({self.threshold_start}) must be below n_steps ({self.n_steps}): the "
                            "inference threshold would never be estimated and the SAE could not encode; set "
                            f"threshold_start: {self.n_steps // 2} (half the run)")
        if self.warmup_steps >= self.n_steps:
            problems.append(f"warmup_steps ({self.warmup_steps}) must be below n_steps ({self.n_steps}): the "
                            f"learning rate would never reach lr; set warmup_steps: {self.n_steps // 10} (a tenth)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TrainingConfig(TrainingSettings):
    """Hyperparameters of a multi-layer BatchTopK training run (:class:`TrainingSettings` + layers).

    Attributes
    ----------
    layers : tuple of int
        Layers to train an SAE on, numbered from 1. Default (1,).
    """

    layers: tuple[PositiveInt, ...] = Field((1,), min_length=1)

    def to_config(self):
        """The configuration as a JSON-serialisable dict."""
        config = self.model_dump()
        config["layers"] = list(self.layers)
        return config

    @classmethod
    def from_config(cls, config):
        """Build from a dict; every problem (unknown keys included) is listed in one :class:`ConfigError`."""
        return validate_model(cls, config, source="the SAE training config")


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

    Examples
    --------
    >>> store = ActivationStore(backbone, audio_files("speech/"), [1, 2, 3, 4])  # doctest: +SKIP
    >>> saes = train_saes(store, TrainingConfig(layers=(1, 2, 3, 4)), out_dir="runs/tiny")  # doctest: +SKIP
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
    threads = torch_threads(config.cpu_threads) if device.type == "cpu" else nullcontext()
    try:
        with threads:
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


class DatasetSource(StrictModel):
    """One training corpus: audio files and/or a folder of them, and its sampling weight."""

    folder: Optional[Path] = None
    files: list[Path] = []
    weight: Number = Field(1.0, gt=0)
    _resolve_folder = field_validator("folder")(resolve_path)
    _resolve_files = field_validator("files")(resolve_paths)

    @model_validator(mode="after")
    def _some_audio(self):
        if self.folder is None and not self.files:
            raise ValueError("give 'folder' or 'files'")
        return self


class AugmentationSettings(StrictModel):
    """Noise/music augmentation (:class:`~sae_eeg.sae.Augmentation`): clip files and/or folders."""

    noise: list[Path] = []
    music: list[Path] = []
    noise_folder: Optional[Path] = None
    music_folder: Optional[Path] = None
    p_noise: Optional[Number] = Field(None, ge=0, le=1)
    p_music: Optional[Number] = Field(None, ge=0, le=1)
    snr_db: tuple[Number, Number] = (0.0, 20.0)
    _resolve_lists = field_validator("noise", "music")(resolve_paths)
    _resolve_folders = field_validator("noise_folder", "music_folder")(resolve_path)


class DataSettings(StrictModel):
    """The ``data`` section of a training file: corpora, augmentation, activation buffer."""

    datasets: dict[str, DatasetSource] = Field(min_length=1)
    augmentation: Optional[AugmentationSettings] = None
    buffer_size: PositiveInt = 65536
    refill_fraction: Number = Field(0.5, gt=0, le=1)
    cache_dir: Optional[Path] = None
    seed: Optional[NonNegativeInt] = None
    _resolve_cache = field_validator("cache_dir")(resolve_path)


class TrainingFile(StrictModel):
    """A training configuration file (the ``sae-eeg train-sae`` command).

    Keys: ``backbone`` (name or model folder; a folder relative to the file is
    resolved against it), ``out_dir``, ``device`` (default "cpu"), ``verbose``
    (default False), ``data`` (:class:`DataSettings`) and ``training``
    (:class:`TrainingConfig`). Relative paths are relative to the file.
    """

    backbone: str
    out_dir: Path
    device: str = "cpu"
    verbose: StrictBool = False
    data: DataSettings
    training: TrainingConfig
    _resolve_out = field_validator("out_dir")(resolve_path)

    @field_validator("backbone")
    @classmethod
    def _backbone_folder(cls, value, info):
        candidate = resolve_path(value, info)
        return str(candidate) if candidate.exists() else value


def _clip_list(section, kind):
    clips = list(getattr(section, kind))
    folder = getattr(section, f"{kind}_folder")
    if folder is not None:
        clips += audio_files(folder)
    return tuple(clips)


def read_training_config(config):
    """Read and check a training configuration (dict, or a YAML/JSON file; see :class:`TrainingFile`).

    Parameters
    ----------
    config : dict | path-like
        The settings, or the file holding them.

    Returns
    -------
    config : dict
        The checked config with ``training`` as a :class:`TrainingConfig`, file lists
        resolved, ``augmentation`` as an :class:`Augmentation` or None and
        ``weights`` per dataset.

    Raises
    ------
    ConfigError
        Listing every unknown key and invalid value with its field path.
    """
    base, source = None, "the training config"
    if not isinstance(config, dict):
        path = _check_file(config, "config")
        base, source = path.parent, f"training config {str(path)!r}"
        text = path.read_text()
        try:
            config = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as err:
            raise ConfigError(f"config file {str(path)!r} could not be parsed ({err}).") from err
    checked = validate_model(TrainingFile, config, source=source, base_dir=base)
    data = checked.data
    sources, weights = {}, {}
    for name, spec in data.datasets.items():
        files = list(spec.files) + (audio_files(spec.folder) if spec.folder is not None else [])
        if not files:
            raise ConfigError(f"data.datasets.{name} lists no audio ({str(spec.folder)!r} holds no audio file).")
        sources[name], weights[name] = files, float(spec.weight)
    augmentation = None
    if data.augmentation is not None:
        section = data.augmentation
        noise, music = _clip_list(section, "noise"), _clip_list(section, "music")
        augmentation = Augmentation(
            noise=noise, music=music, snr_db=tuple(section.snr_db),
            p_noise=section.p_noise if section.p_noise is not None else (0.5 if noise else 0.0),
            p_music=section.p_music if section.p_music is not None else (0.3 if music else 0.0))
    return {
        "backbone": checked.backbone, "device": checked.device, "verbose": checked.verbose,
        "out_dir": checked.out_dir, "training": checked.training, "sources": sources, "weights": weights,
        "augmentation": augmentation, "buffer_size": data.buffer_size, "refill_fraction": data.refill_fraction,
        "cache_dir": data.cache_dir, "seed": data.seed if data.seed is not None else checked.training.seed,
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


def train_saes_from_config(config, *, backbone=None):
    """Train the SAEs a configuration describes (the ``sae-eeg train-sae`` command).

    Parameters
    ----------
    config : dict | path-like
        A dict or YAML/JSON file; see :func:`read_training_config`.
    backbone : Backbone | None
        An already loaded backbone to use instead of loading ``config["backbone"]``
        with :func:`sae_eeg.backbones.load_backbone`. Default None.

    Returns
    -------
    saes : dict of int to BatchTopKSAE
        The trained SAE of every layer, also written to ``out_dir/layer_n/``.
    """
    checked = read_training_config(config)
    if backbone is None:
        backbone = load_backbone(checked["backbone"], device=checked["device"])
    store = store_from_config(checked, backbone)
    return train_saes(store, checked["training"], out_dir=checked["out_dir"], device=checked["device"],
                      verbose=checked["verbose"])

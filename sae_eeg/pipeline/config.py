"""YAML configuration files, validated with pydantic, with every problem listed at once."""

from __future__ import annotations

from pathlib import Path

import pydantic
import yaml

from .._check import _check_file
from ..errors import ConfigError


def format_validation_error(err, source):
    """One line per problem: ``field.path: message (got value)``."""
    lines = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        got = problem.get("input")
        shown = f" (got {got!r:.60})" if not isinstance(got, dict) else ""
        lines.append(f"  - {where}: {problem['msg']}{shown}")
    return f"{source} has {len(lines)} problem(s):\n" + "\n".join(lines)


def load_yaml_model(path, model):
    """Read a YAML file into the pydantic ``model``.

    Parameters
    ----------
    path : path-like
        The YAML file.
    model : type[pydantic.BaseModel]
        The schema.

    Returns
    -------
    config : model

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or does not match the schema; the
        message lists every problem with its field path.
    """
    try:
        path = _check_file(path, "config file")
    except ValueError as err:
        raise ConfigError(str(err)) from err
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of settings, got {type(data).__name__}."
        )
    try:  # relative paths in the file are resolved against its folder (see `resolve_path`)
        return model.model_validate(data, context={"base_dir": path.parent.resolve()})
    except pydantic.ValidationError as err:
        raise ConfigError(format_validation_error(err, f"config file {str(path)!r}")) from err


def resolve_path(value, info):
    """Pydantic field validator body: resolve a relative path against the config's folder.

    Use as ``field_validator("manifest")(lambda v, info: resolve_path(v, info))``.
    """
    if value is None:
        return None
    value = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base is None else (Path(base) / value)


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class SaeSettings(_Strict):
    """Which SAEs to use: a checkpoint (folder or hub repo with ``layer_n/``), or train them.

    ``training`` holds :class:`sae_eeg.sae.TrainingConfig` fields (``layers`` is
    taken from the pipeline's ``layers``); the training audio is every stimulus of
    the manifest plus ``extra_audio``.
    """

    checkpoint: str | None = None
    training: dict = {}
    extra_audio: list[Path] = []
    _resolve_audio = pydantic.field_validator("extra_audio")(
        lambda v, info: [resolve_path(p, info) for p in v]
    )


class EvaluateSettings(_Strict):
    """The ``evaluate`` section of a pipeline config (:mod:`sae_eeg.pipeline.evaluate`).

    ``speech`` are utterances (at most 30 s each) with their ``references``;
    ``music`` and ``noise`` are non-speech clips. The steering experiment adds the
    time-reversed utterances to the non-speech clips (Whisper tends to hear speech
    in them). ``layer`` is the layer of the consistency, erasure and steering
    evaluations (default the last). ``segment`` cuts clips into pieces of that many
    seconds, the samples of the concept-erasure classifier.
    """

    speech: list[Path]
    references: list[str]
    music: list[Path] = []
    noise: list[Path] = []
    layer: pydantic.PositiveInt | None = None
    alphas: list[float] = [0.0, 0.1, 0.2, 0.3, 0.5]
    n_steering_features: pydantic.PositiveInt = 100
    second_seed: int | None = 1
    segment: float = pydantic.Field(1.0, gt=0)
    n_receptive_fields: pydantic.PositiveInt = 8
    _resolve = pydantic.field_validator("speech", "music", "noise")(
        lambda v, info: [resolve_path(p, info) for p in v]
    )

    @pydantic.model_validator(mode="after")
    def _pairs(self):
        if len(self.speech) != len(self.references):
            raise ValueError(f"{len(self.speech)} speech clips but {len(self.references)} references")
        return self


class PipelineConfig(_Strict):
    """Configuration of the whole analysis (``sae-eeg`` subcommands, ``analyses/`` scripts).

    ``manifest`` is the EEG dataset; the stimuli are those of the manifest unless
    ``stimuli`` (name -> audio file) is given, which lets the SAE and extraction
    stages run before any EEG exists. Relative paths are resolved against the
    config file's folder.
    """

    name: str = "sae-eeg"
    output_dir: Path
    manifest: Path | None = None
    stimuli: dict[str, Path] = {}
    backbone: str = "bundled-whisper-tiny.en"
    device: str = "cpu"
    layers: list[pydantic.PositiveInt]
    sae: SaeSettings = SaeSettings()
    preprocess: dict = {}
    alignment: dict = {}
    evaluate: EvaluateSettings | None = None
    scheduler: str | None = None
    n_workers: pydantic.PositiveInt = 2
    _resolve = pydantic.field_validator("output_dir", "manifest")(resolve_path)
    _resolve_stimuli = pydantic.field_validator("stimuli")(
        lambda v, info: {name: resolve_path(p, info) for name, p in v.items()}
    )

    @pydantic.field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value):
        if value in (None, "local") or str(value).startswith(("tcp://", "tls://", "inproc://")):
            return value
        raise ValueError("scheduler must be null (serial), 'local' or a Dask address like 'tcp://host:8786'")


def load_pipeline_config(config):
    """A :class:`PipelineConfig` from a YAML file, a dict or a config.

    Raises
    ------
    ConfigError
        Listing every problem with its field path.
    """
    if isinstance(config, PipelineConfig):
        return config
    if isinstance(config, dict):
        try:
            return PipelineConfig.model_validate(config)
        except pydantic.ValidationError as err:
            raise ConfigError(format_validation_error(err, "the pipeline config")) from err
    return load_yaml_model(config, PipelineConfig)

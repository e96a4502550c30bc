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


class PipelineConfig(_Strict):
    """Configuration of the whole analysis (``sae-eeg`` subcommands, ``analyses/`` scripts).

    Relative paths are resolved against the config file's folder.
    """

    name: str = "sae-eeg"
    output_dir: Path
    manifest: Path
    backbone: str = "bundled-whisper-tiny.en"
    device: str = "cpu"
    layers: list[pydantic.PositiveInt]
    sae: SaeSettings = SaeSettings()
    preprocess: dict = {}
    alignment: dict = {}
    evaluate: dict = {}
    scheduler: str | None = None
    n_workers: pydantic.PositiveInt = 2
    _resolve = pydantic.field_validator("output_dir", "manifest")(resolve_path)

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

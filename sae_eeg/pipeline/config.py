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

"""Configuration models: one idiom for every config of the package, one formatter of their errors.

Every configuration (the pipeline's, the preprocessing's, the SAE trainer's, a
manifest's) is a pydantic model derived from :class:`StrictModel`: unknown keys are
errors, values are checked by type and range, and one validation reports every
problem at once as ``field.path: message (got value)`` lines
(:func:`format_validation_error`). Relative paths in a YAML file are resolved
against the file's folder (:func:`resolve_path`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import pydantic
import yaml

from ._check import _check_file, _check_id
from .errors import ConfigError, InputError


def _valid_id(value):
    try:
        return _check_id(value, "id")
    except InputError:
        raise ValueError("not a valid id: ids are names of letters, digits, '-', '_' and '.' (not first, "
                         "no '..'), without path separators, at most 128 characters") from None


#: A subject, run, session or stimulus id: a name that is safe as one path component.
Id = Annotated[str, pydantic.AfterValidator(_valid_id)]
#: Integers and numbers of config files: ``true`` never passes as 1, ``2.5`` never as an int.
Int = Annotated[int, pydantic.Field(strict=True)]
PositiveInt = Annotated[int, pydantic.Field(strict=True, gt=0)]
NonNegativeInt = Annotated[int, pydantic.Field(strict=True, ge=0)]
Number = Annotated[float, pydantic.Field(strict=True)]


def validation_problems(err):
    """One line per problem of a pydantic ``ValidationError``: ``field.path: message (got value)``.

    Parameters
    ----------
    err : pydantic.ValidationError

    Returns
    -------
    lines : list of str
    """
    lines = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        got = problem.get("input")
        shown = "" if problem["type"] == "missing" or isinstance(got, dict) else f" (got {got!r:.60})"
        lines.append(f"{where}: {message}{shown}")
    return lines


def format_validation_error(err, source):
    """The message of a failed validation: ``source has N problem(s):`` then one line each.

    Parameters
    ----------
    err : pydantic.ValidationError | list of str
        The error, or problem lines (:func:`validation_problems`) to format the same way.
    source : str
        What was validated, e.g. ``"config file 'a.yaml'"``.

    Returns
    -------
    message : str
    """
    lines = validation_problems(err) if isinstance(err, pydantic.ValidationError) else list(err)
    return f"{source} has {len(lines)} problem(s):\n" + "\n".join(f"  - {line}" for line in lines)


class _RaisesConfigError(type(pydantic.BaseModel)):
    """Metaclass: building a model directly (``Model(a=1)``) raises ConfigError, not pydantic's error.

    Only direct calls pass here: nested models are built by pydantic's validator,
    which keeps the validation context (the config's folder) and reports every
    problem of the whole config at once.
    """

    def __call__(cls, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except pydantic.ValidationError as err:
            raise ConfigError(format_validation_error(err, cls.__name__)) from None


class StrictModel(pydantic.BaseModel, metaclass=_RaisesConfigError):
    """Base of every configuration model: unknown keys are errors, instances are frozen.

    Building one directly (``Model(a=1)``) raises :class:`~sae_eeg.errors.ConfigError`
    listing every problem, as :func:`validate_model` does for dicts.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


def validate_model(model, data, *, source, base_dir=None):
    """Validate ``data`` against ``model``; every problem is listed in one error.

    Parameters
    ----------
    model : type[pydantic.BaseModel]
        The schema.
    data : dict | model
        The settings (an instance of ``model`` is returned as is).
    source : str
        Names the settings in the message (e.g. ``"the pipeline config"``).
    base_dir : path-like | None
        Folder against which relative paths are resolved (see :func:`resolve_path`).

    Returns
    -------
    config : model

    Raises
    ------
    ConfigError
        Listing every problem with its field path.
    """
    if isinstance(data, model):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping of settings, got {type(data).__name__}.")
    context = None if base_dir is None else {"base_dir": Path(base_dir).resolve()}
    try:
        return model.model_validate(data, context=context)
    except pydantic.ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def read_yaml_mapping(path, *, what="config file", error=ConfigError):
    """Parse a YAML file that must hold a mapping.

    Parameters
    ----------
    path : path-like
        The file.
    what : str
        Names the file in messages.
    error : type[Exception]
        What to raise (:class:`~sae_eeg.errors.ConfigError`, or ``ManifestError`` for manifests).

    Returns
    -------
    data : dict
    path : pathlib.Path

    Raises
    ------
    error
        Missing file, invalid YAML, or not a mapping.
    """
    try:
        path = _check_file(path, what)
    except ValueError as err:
        raise error(str(err)) from err
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise error(f"{what} {str(path)!r} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise error(f"{what} {str(path)!r} must hold a mapping at the top level, got {type(data).__name__}.")
    return data, path


def load_yaml_model(path, model, *, what="config file"):
    """Read a YAML file into the pydantic ``model``; relative paths are against the file's folder.

    Parameters
    ----------
    path : path-like
        The YAML file.
    model : type[pydantic.BaseModel]
        The schema.
    what : str
        Names the file in messages.

    Returns
    -------
    config : model

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or does not match the schema; the
        message lists every problem with its field path.
    """
    data, path = read_yaml_mapping(path, what=what)
    return validate_model(model, data, source=f"{what} {str(path)!r}", base_dir=path.parent)


def resolve_path(value, info):
    """Pydantic field-validator body: a relative path is resolved against the config's folder.

    The folder is ``info.context["base_dir"]`` (set by :func:`validate_model`);
    without it the path is left relative. Use as
    ``pydantic.field_validator("manifest")(resolve_path)``.
    """
    if value is None:
        return None
    value = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base is None else Path(os.path.abspath(Path(base) / value))


def resolve_paths(values, info):
    """:func:`resolve_path` of every item of a list (or every value of a dict)."""
    if isinstance(values, dict):
        return {name: resolve_path(p, info) for name, p in values.items()}
    return [resolve_path(p, info) for p in values]

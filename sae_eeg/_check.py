"""Input validation helpers shared by the package (outside ``trf/``).

Modelled on MNE-Python's ``_validate_type`` / ``_check_option``: every message
names the parameter, shows what was received and lists what is allowed.
"""

from __future__ import annotations

import difflib
import importlib
import numbers
import os
import re
from pathlib import Path

from .errors import InputError

_TYPE_ALIASES = {
    "numeric": (numbers.Real,),
    "int-like": (numbers.Integral,),
    "path-like": (str, os.PathLike),
    "callable": (),
}


def _did_you_mean(value, allowed):
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, [str(a) for a in allowed], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_option(name, value, allowed, *, extra=""):
    """Return ``value`` if it is one of ``allowed``, else raise :class:`InputError`.

    Parameters
    ----------
    name : str
        Name of the parameter, for the message.
    value : object
        The value to check.
    allowed : iterable
        The allowed values (a dict's keys work: registries validate themselves).
    extra : str
        Text appended to the message (e.g. where the value came from).
    """
    allowed = list(allowed)
    if value in allowed:
        return value
    options = ", ".join(repr(a) for a in allowed)
    raise InputError(
        f"Invalid value for {name!r}{extra}: got {value!r}; allowed values are "
        f"{options}.{_did_you_mean(value, allowed)}"
    )


def _validate_type(value, types, name):
    """Raise :class:`InputError` unless ``value`` is of one of ``types``.

    ``types`` may hold classes, ``None`` and the aliases ``"numeric"``,
    ``"int-like"``, ``"path-like"`` and ``"callable"``. ``bool`` never passes as
    a number.
    """
    if not isinstance(types, (tuple, list)):
        types = (types,)
    classes, names = [], []
    for t in types:
        if t is None:
            classes.append(type(None))
            names.append("None")
        elif isinstance(t, str):
            if t == "callable" and callable(value):
                return value
            classes.extend(_TYPE_ALIASES[t])
            names.append(t)
        else:
            classes.append(t)
            names.append(t.__name__)
    is_bool_as_number = isinstance(value, bool) and bool not in classes
    if isinstance(value, tuple(classes)) and not is_bool_as_number:
        return value
    raise InputError(
        f"{name} must be an instance of {' or '.join(names)}, got "
        f"{type(value).__name__} ({value!r:.80})."
    )


def _ensure_int(value, name):
    """Return ``value`` as an int; bools and non-integers raise :class:`InputError`."""
    _validate_type(value, "int-like", name)
    return int(value)


def _check_range(name, value, low=None, high=None, *, low_inclusive=True, high_inclusive=True):
    """Raise :class:`InputError` unless ``low <= value <= high`` (bounds optional)."""
    _validate_type(value, "numeric", name)
    ok_low = low is None or (value >= low if low_inclusive else value > low)
    ok_high = high is None or (value <= high if high_inclusive else value < high)
    if ok_low and ok_high:
        return value
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    bounds = f"{'[' if low_inclusive else '('}{lo}, {hi}{']' if high_inclusive else ')'}"
    raise InputError(f"{name} must be in {bounds}, got {value!r}.")


def _check_file(path, name="path"):
    """Return ``path`` as a :class:`~pathlib.Path` to an existing file."""
    _validate_type(path, "path-like", name)
    path = Path(path)
    if not path.is_file():
        where = "a folder, not a file" if path.is_dir() else "not found"
        raise InputError(f"{name} {str(path)!r}: {where}.")
    return path


_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def _check_id(value, name):
    """Return ``value`` if it is a name that is safe as a path component, else raise :class:`InputError`.

    Subject, run and stimulus ids become folder and file names, so they are names,
    never paths: letters, digits, ``-``, ``_`` and ``.`` (not first), at most 128
    characters, without ``..``.
    """
    if isinstance(value, str) and _ID.fullmatch(value) and ".." not in value:
        return value
    raise InputError(
        f"{name} {value!r} is not a valid id: ids are names of letters, digits, '-', '_' and '.' "
        "(not first, no '..'), without path separators, at most 128 characters."
    )


def _soft_import(name, purpose, *, pip_name=None):
    """Import an optional module, or explain which feature needs it and how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        pip_name = pip_name or name
        raise ImportError(
            f"{purpose} needs the module {name!r}, which could not be imported "
            f"({err}). Install it with `pip install {pip_name}`."
        ) from err

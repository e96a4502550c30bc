"""Validation of the TRF engine (self-contained so ``trf/`` lifts out): built-in ValueError / TypeError
naming the parameter, showing what was received and listing what is allowed (MNE style)."""

from __future__ import annotations

import difflib
import numbers

import numpy as np
from scipy import sparse


def _check_option(name, value, allowed):
    """Return ``value`` if it is in ``allowed`` (a registry's keys work), else raise ValueError (did you mean)."""
    allowed = list(allowed)
    if any(value == a and type(value) is type(a) for a in allowed):
        return value
    close = difflib.get_close_matches(value, [str(a) for a in allowed], n=1) if isinstance(value, str) else []
    raise ValueError(f"Invalid value for {name!r}: got {value!r}; allowed values are "
                     f"{', '.join(repr(a) for a in allowed)}.{f' Did you mean {close[0]!r}?' if close else ''}")


def _check_number(name, value, *, low=None, high=None, inclusive=True, integer=False):
    """Return ``value`` as float (or int) after a type and range check; bool never passes."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, (kind, np.integer if integer else np.number)):
        raise TypeError(f"{name!r} must be {'an int' if integer else 'a real number'}; got {value!r} "
                        f"of type {type(value).__name__}.")
    value = int(value) if integer else float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name!r} must be finite; got {value!r}.")
    bad_low = low is not None and (value < low if inclusive else value <= low)
    bad_high = high is not None and (value > high if inclusive else value >= high)
    if bad_low or bad_high:
        lo, hi, brackets = "-inf" if low is None else low, "inf" if high is None else high, "[]" if inclusive else "()"
        raise ValueError(f"{name!r} must be in {brackets[0]}{lo}, {hi}{brackets[1]}; got {value!r}.")
    return value


def _check_alphas(alpha, name="alpha"):
    """Return the regularisation value(s) as a 1-D float64 array of positive values."""
    if isinstance(alpha, (numbers.Real, np.number)) and not isinstance(alpha, bool):
        arr = np.array([float(alpha)])
    else:
        try:
            arr = np.asarray(alpha, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise TypeError(f"{name!r} must be a positive number or a sequence of them; got {alpha!r}.") from None
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name!r} must hold finite values >= 0 (at least one); got {alpha!r}.")
    return arr


def _as_array(trial, label):
    """One trial as a float64 array (1-D or 2-D checked by the caller)."""
    if hasattr(trial, "detach"):  # a torch tensor
        trial = trial.detach().cpu().numpy()
    arr = np.asarray(trial)
    if np.iscomplexobj(arr):
        raise ValueError(f"Complex data not supported: {label} has dtype {arr.dtype}.")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{label} must hold numbers (argument must be a string or a real "
                            f"number convertible to float); got dtype {arr.dtype}.") from None
    return arr


def _is_trial_list(data):
    """True for a list/tuple of arrays (trials); a nested list of numbers is one array-like."""
    return isinstance(data, (list, tuple)) and len(data) > 0 and all(
        hasattr(d, "ndim") or sparse.issparse(d) for d in data)


def _as_trials(data, name, *, allow_1d=True, allow_sparse=False):
    """A list of 2-D float64 trials (n_times, n_columns) from a 2-D array (one trial), a 3-D array
    (n_trials, n_times, n_columns) or a list of arrays of any lengths (a nested list of numbers is one
    array-like, as in scikit-learn); 1-D: one column if ``allow_1d``; sparse kept (CSR) if ``allow_sparse``."""
    if data is None:
        raise ValueError(f"This estimator requires {name} to be passed, but the target {name} is None."
                         if name == "y" else f"{name!r} is required; got None.")
    if isinstance(data, (list, tuple)) and len(data) == 0:
        raise ValueError(f"{name!r} must hold at least one trial; got an empty {type(data).__name__}.")
    if _is_trial_list(data):
        trials = list(data)
    elif sparse.issparse(data):
        trials = [data]
    else:
        arr = _as_array(data, repr(name))
        trials = list(arr) if arr.ndim == 3 else [arr]
    out = []
    for i, trial in enumerate(trials):
        label = f"{name!r}[{i}]" if _is_trial_list(data) or len(trials) > 1 else repr(name)
        if sparse.issparse(trial):
            if not allow_sparse:
                raise TypeError(f"{label} is a sparse matrix, but dense data is required here "
                                "(sparse input is not supported); use .toarray() or the sparse-aware "
                                "univariate_trfs.")
            out.append(sparse.csr_array(trial, dtype=np.float64))
            continue
        arr = _as_array(trial, label)
        if arr.ndim == 1 and allow_1d:
            arr = arr[:, None]
        elif arr.ndim == 1:
            raise ValueError(f"Expected a 2D array for {label}, got a 1D array of shape {arr.shape}. "
                             "Reshape your data with x[:, None] if it has a single feature.")
        for bad, problem in ((arr.ndim != 2, f"must be 2-D (n_times, n_columns); got shape {arr.shape}"),
                             (arr.ndim == 2 and arr.shape[1] == 0, f"has 0 feature(s) (shape={arr.shape}) while a "
                                                                     "minimum of 1 is required"),
                             (arr.ndim == 2 and arr.shape[0] == 0, f"has 0 sample(s) (shape={arr.shape}) while a "
                                                                     "minimum of 1 is required")):
            if bad:
                raise ValueError(f"{label} {problem}.")
        out.append(np.asarray(arr, dtype=np.float64))
        if not np.all(np.isfinite(out[-1])):
            raise ValueError(f"{label} contains NaN or infinite values.")
    n_cols = {t.shape[1] for t in out}
    if len(n_cols) > 1:
        raise ValueError(f"All trials of {name!r} must have the same number of columns; got {sorted(n_cols)}.")
    return out


def _check_pair(X, y, *, x_name="X", y_name="y", x_1d=True, x_sparse=False):
    """Validate matching trial lists of inputs and outputs."""
    X = _as_trials(X, x_name, allow_1d=x_1d, allow_sparse=x_sparse)
    y = _as_trials(y, y_name)
    if len(X) != len(y):
        raise ValueError(f"{x_name!r} has {len(X)} trials but {y_name!r} has {len(y)}; they must match.")
    for i, (a, b) in enumerate(zip(X, y)):
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"Trial {i}: {x_name!r} has {a.shape[0]} samples but {y_name!r} has {b.shape[0]}; "
                             "each trial must have the same length in both.")
    return X, y

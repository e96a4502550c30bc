"""Compact JSON for the browser: rounded numbers, quantised arrays, data files a page loads from disk.

A page opened from ``file://`` may not ``fetch`` other files (Chromium treats every
file as its own origin), but it may load scripts. So every data file is JavaScript
that hands one JSON object to a callback of the page: ``SAE_BROWSER.block(3, {...})``.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pandas as pd

#: Significant digits kept for numbers shown in tables.
SIGNIFICANT_DIGITS = 4


def plain(value):
    """A JSON-ready Python value: numbers rounded to 4 significant digits, NaN/inf/NA -> None."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)  # timestamps, categories, paths: shown as text


def quantized(values, *, lo=None, hi=None):
    """``values`` as bytes 0..255 between ``lo`` and ``hi``, base64: one byte per value.

    Parameters
    ----------
    values : array-like
        Numbers (flattened in C order).
    lo, hi : float | None
        Ends of the scale (values outside are clipped); default the min and max
        of ``values`` (a common scale lets a page compare several arrays).

    Returns
    -------
    packed : dict
        ``lo``, ``hi`` and ``q`` (base64 of uint8); the page maps byte b back to
        ``lo + (hi - lo) * b / 255`` (error at most (hi - lo) / 510).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if lo is None:
        lo = float(values.min()) if values.size else 0.0
    if hi is None:
        hi = float(values.max()) if values.size else 0.0
    lo, hi = plain(lo), plain(hi)  # the page decodes with the rounded ends: encode with them too
    span = hi - lo
    q = (np.zeros(values.shape, np.uint8) if span <= 0
         else np.rint(np.clip((values - lo) / span, 0, 1) * 255).astype(np.uint8))
    return {"lo": lo, "hi": hi, "q": base64.b64encode(q.tobytes()).decode("ascii")}


def data_script(callback, *args):
    """JavaScript text that calls ``SAE_BROWSER.<callback>(*args)`` with JSON arguments."""
    payload = ",".join(json.dumps(a, separators=(",", ":"), allow_nan=False) for a in args)
    return f"SAE_BROWSER.{callback}({payload});\n"

"""Shared pieces of the figures: input checks, the paper style, saving PNG + SVG.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot), so
nothing depends on or changes the global backend or figure state; the style is
applied with :func:`matplotlib.rc_context` around each figure and restored after.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import NamedTuple

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from .._check import _validate_type
from .._io import atomic_path
from ..errors import InputError

#: Formats every figure is written in, in this order.
FIGURE_FORMATS = ("png", "svg")
_DPI = 150
_SAVE_RC = {
    "svg.fonttype": "none",      # text stays text in the SVG (editable, searchable)
    "svg.hashsalt": "sae-eeg",   # reproducible SVG ids
}
_RC = {
    "axes.titlesize": "medium",
    "axes.titleweight": "bold",
    "legend.frameon": False,
    "figure.dpi": _DPI,
}


class FigureFiles(NamedTuple):
    """Paths of one figure written as PNG and SVG.

    Attributes
    ----------
    png : pathlib.Path
        The raster version (what :class:`~sae_eeg.viz.ReportSection` embeds).
    svg : pathlib.Path
        The vector version (text kept as text).
    """

    png: Path
    svg: Path


@contextlib.contextmanager
def paper_style():
    """Context in which figures get the package's paper style (seaborn "ticks", "paper")."""
    rc = {**sns.axes_style("ticks"), **sns.plotting_context("paper", font_scale=1.15), **_RC}
    with mpl.rc_context(rc):
        yield


def new_figure(n_axes=1, *, width=4.5, height=3.4, ncols=None, **subplot_kw):
    """A constrained-layout figure and a flat array of its axes.

    Parameters
    ----------
    n_axes : int
        Number of axes. Default 1.
    width, height : float
        Size of one axes cell, inches.
    ncols : int | None
        Columns of the grid (default: all axes on one row).
    **subplot_kw
        Passed to :meth:`matplotlib.figure.Figure.subplots` (``sharex``, ...).

    Returns
    -------
    fig : matplotlib.figure.Figure
    axes : ndarray of Axes, shape (n_rows * ncols,)
        Axes beyond ``n_axes`` are switched off.
    """
    ncols = n_axes if ncols is None else min(ncols, n_axes)
    nrows = -(-n_axes // ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw).ravel()
    for ax in axes[n_axes:]:
        ax.set_axis_off()
    return fig, axes


def _stem(path):
    _validate_type(path, "path-like", "path")
    path = Path(path)
    return path.with_suffix("") if path.suffix.lower() in {f".{f}" for f in FIGURE_FORMATS} else path


def save_figure(fig, path):
    """Write ``fig`` as ``<path>.png`` and ``<path>.svg`` atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : path-like
        Output path stem (a ``.png``/``.svg`` suffix is dropped); missing
        folders are created.

    Returns
    -------
    files : FigureFiles
    """
    stem = _stem(path)
    files = {}
    for fmt in FIGURE_FORMATS:
        target = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(target) as tmp, mpl.rc_context(_SAVE_RC):
            fig.savefig(tmp, format=fmt, dpi=_DPI, metadata={"Date": None} if fmt == "svg" else None)
        files[fmt] = target
    return FigureFiles(**files)


def check_table(table, name, columns, *, numeric=()):
    """Raise :class:`InputError` unless ``table`` is a non-empty DataFrame with ``columns``.

    Parameters
    ----------
    table : pandas.DataFrame
        The input table.
    name : str
        Its parameter name, for the message.
    columns : iterable of str
        Columns that must be present (``None`` entries are skipped: optional columns).
    numeric : iterable of str
        Columns that must hold numbers.

    Returns
    -------
    table : pandas.DataFrame
    """
    _validate_type(table, pd.DataFrame, name)
    present = [str(c) for c in table.columns]
    missing = [c for c in columns if c is not None and c not in table.columns]
    if missing:
        raise InputError(
            f"{name} lacks the column(s) {missing}; columns present: {present}. Map other column "
            "names with the *_col arguments."
        )
    if table.empty:
        raise InputError(f"{name} is empty (0 rows); columns present: {present}.")
    for col in numeric:
        if not pd.api.types.is_numeric_dtype(table[col]) or pd.api.types.is_bool_dtype(table[col]):
            raise InputError(f"{name}[{col!r}] must hold numbers, got dtype {table[col].dtype}.")
    return table


def check_array(values, name, *, ndim, size=None):
    """Return ``values`` as a finite float ndarray with ``ndim`` axes (and ``size`` elements on axis 0).

    Raises
    ------
    InputError
        Wrong number of axes, wrong length, empty or non-finite values.
    """
    arr = np.asarray(values, dtype=float)
    if arr.ndim != ndim or arr.size == 0:
        raise InputError(f"{name} must be a non-empty array with {ndim} axes, got shape {arr.shape}.")
    if size is not None and arr.shape[0] != size:
        raise InputError(f"{name} must have {size} entries (one per row of the data), got {arr.shape[0]}.")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} holds {int(np.sum(~np.isfinite(arr)))} non-finite value(s).")
    return arr


def select_rows(table, column, value, name):
    """Rows of ``table`` whose ``column`` equals ``value``, or an error listing the values present."""
    rows = table[table[column] == value]
    if rows.empty:
        values = sorted(pd.unique(table[column]).tolist(), key=str)
        shown = values if len(values) <= 20 else [*values[:20], "..."]
        raise InputError(f"{name}={value!r} is not in column {column!r}; values present: {shown}.")
    return rows


def category_palette(values):
    """Ordered categories of ``values`` and a colour for each (colour-blind-safe)."""
    order = list(dict.fromkeys(values))
    colors = sns.color_palette("colorblind", n_colors=max(len(order), 1))
    return order, dict(zip(order, colors))


def as_percent(ax, axis="y"):
    """Format ``axis`` of ``ax`` as a percentage of values in [0, 1]."""
    fmt = PercentFormatter(xmax=1.0, decimals=None)
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)

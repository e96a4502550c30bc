"""Per-feature result tables, joined into the browser's index and feature pages.

Any table with a ``feature`` column (and a ``layer`` column when it spans several
layers) joins the browser: the paper protocol's ``protocol_features``, the feature
classes, seed consistency, or a table the package does not know yet (an
attribution analysis). Each feature's rows are shown on its page; one row per
feature (the best by a chosen column) gives the index its columns, which can be
sorted and filtered like the built-in ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._check import _check_file, _check_option, _validate_type
from ..errors import InputError
from ._encode import plain

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")

#: Columns a feature page does not repeat in its tables (the page says which feature, layer and model).
_NOT_ON_PAGE = ("feature", "layer", "model")

#: Rows of one table shown on a feature page, at most (the best first).
MAX_ROWS_PER_FEATURE = 50


@dataclass(frozen=True)
class FeatureTable:
    """A per-feature table for the browser.

    Parameters
    ----------
    name : str
        Identifier (a letter, then letters, digits or ``_``), e.g. ``"protocol"``;
        the index columns are keyed ``<name>.<column>``.
    table : pandas.DataFrame
        Has a ``feature`` column (SAE feature id); rows of other layers are dropped
        when it has a ``layer`` column. Several rows per feature are allowed
        (channels, signs, concepts...).
    columns : dict | None
        Columns shown in the index, mapped to their header. None (default): every
        column but ``feature``, ``layer`` and ``model``, headed ``<name> <column>``.
        An empty dict shows the table on the feature pages only.
    best : str | None
        Column whose smallest value (largest with ``ascending=False``) picks the row
        that represents a feature in the index, e.g. a corrected p-value; None: the
        feature's first row.
    ascending : bool
        See ``best``. Default True.
    title : str
        Heading of the table on a feature page. Default ``name``.
    description : str
        One sentence under that heading (what a row is).
    """

    name: str
    table: pd.DataFrame = field(repr=False)
    columns: dict | None = None
    best: str | None = None
    ascending: bool = True
    title: str = ""
    description: str = ""

    def __post_init__(self):
        _validate_type(self.name, str, "FeatureTable.name")
        if not _NAME.match(self.name):
            raise InputError(f"FeatureTable.name must be a letter then letters, digits or '_', got {self.name!r}.")
        _validate_type(self.table, pd.DataFrame, f"FeatureTable {self.name!r} table")
        present = [str(c) for c in self.table.columns]
        if "feature" not in self.table.columns:
            raise InputError(f"FeatureTable {self.name!r}: the table has no 'feature' column; columns present: "
                             f"{present}.")
        _validate_type(self.columns, (dict, None), f"FeatureTable {self.name!r} columns")
        wanted = list(self.columns or ()) + ([self.best] if self.best is not None else [])
        missing = [c for c in wanted if c not in self.table.columns]
        if missing:
            raise InputError(f"FeatureTable {self.name!r}: columns {missing} are not in the table; columns present: "
                             f"{present}.")
        if not pd.api.types.is_integer_dtype(self.table["feature"]):
            raise InputError(f"FeatureTable {self.name!r}: 'feature' must hold integer ids, got dtype "
                             f"{self.table['feature'].dtype}.")

    def index_columns(self):
        """Column -> header of the columns this table adds to the index."""
        if self.columns is not None:
            return dict(self.columns)
        return {c: c if c == self.name else f"{self.name} {c}" for c in self.table.columns if c not in _NOT_ON_PAGE}

    def for_layer(self, layer):
        """The rows of ``layer`` (all rows when the table has no ``layer`` column or layer is None)."""
        if layer is None or "layer" not in self.table.columns:
            return self.table
        return self.table[self.table["layer"] == layer]


def column_type(series):
    """'bool', 'number' or 'text': how the page sorts and filters a column."""
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_numeric_dtype(series):
        return "number"
    return "text"


def _ordered(spec, layer):
    rows = spec.for_layer(layer)
    if spec.best is not None:
        rows = rows.sort_values(spec.best, ascending=spec.ascending, kind="stable", na_position="last")
    return rows.sort_values("feature", kind="stable")  # stable: the best row stays first per feature


def index_columns(spec, layer, n_features):
    """The index columns of one table: one value per feature (None where it has no row).

    Returns
    -------
    columns : list of dict
        ``key``, ``header``, ``type`` and ``values`` (list, length ``n_features``).
    """
    rows = _ordered(spec, layer).drop_duplicates("feature")
    rows = rows[(rows["feature"] >= 0) & (rows["feature"] < n_features)]
    out = []
    for col, header in spec.index_columns().items():
        values = [None] * n_features
        for feature, value in zip(rows["feature"].to_numpy(), rows[col].to_numpy()):
            values[int(feature)] = plain(value)
        out.append({"key": f"{spec.name}.{col}", "header": str(header), "type": column_type(spec.table[col]),
                    "values": values})
    return out


def page_rows(spec, layer):
    """Each feature's rows, best first, for its page.

    Returns
    -------
    columns : list of str
        The columns shown (all but ``feature``, ``layer`` and ``model``: the page's own).
    rows : dict
        Feature id -> list of rows (lists of JSON-ready values), at most
        :data:`MAX_ROWS_PER_FEATURE`.
    """
    ordered = _ordered(spec, layer)
    columns = [str(c) for c in ordered.columns if c not in _NOT_ON_PAGE]
    features = ordered["feature"].to_numpy()
    starts = np.flatnonzero(np.r_[True, features[1:] != features[:-1]]) if features.size else np.array([], int)
    ends = np.r_[starts[1:], features.size]
    values = ordered[columns].to_numpy(dtype=object)
    rows = {}
    for start, end in zip(starts, ends):
        block = values[start:min(end, start + MAX_ROWS_PER_FEATURE)]
        rows[int(features[start])] = [[plain(v) for v in row] for row in block]
    return columns, rows


def read_feature_table(name, path):
    """A :class:`FeatureTable` from a parquet or CSV file (every column but feature/layer/model in the index).

    Parameters
    ----------
    name : str
        The table's name in the browser (a letter, then letters, digits or ``_``).
    path : path-like
        A ``.parquet`` or ``.csv`` file with a ``feature`` column (and ``layer``
        when it holds several layers).

    Returns
    -------
    table : FeatureTable
    """
    path = _check_file(path, f"table {name!r}")
    suffix = path.suffix.lower()
    _check_option(f"the suffix of table file {str(path)!r}", suffix, (".parquet", ".csv"))
    table = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
    return FeatureTable(name, table, title=name, description=f"From {path.name}.")

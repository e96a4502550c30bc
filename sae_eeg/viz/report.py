"""A self-contained HTML report: figures, key numbers and provenance."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .._io import write_text_atomic


@dataclass(frozen=True)
class ReportSection:
    """One section of the report.

    Attributes
    ----------
    title : str
        Heading.
    text : str
        A paragraph saying what the section shows (plain text).
    figures : list of path-like
        PNG files, embedded in the page.
    numbers : dict
        Key figures shown as a two-column table (name -> value).
    table : pandas.DataFrame | None
        A small results table shown as HTML (keep it short: a summary).
    links : dict
        Links listed under the text: label -> address (relative to the report's
        folder for files beside it).
    """

    title: str
    text: str = ""
    figures: list = field(default_factory=list)
    numbers: dict = field(default_factory=dict)
    table: pd.DataFrame | None = None
    links: dict = field(default_factory=dict)


def _img(path):
    data = base64.b64encode(Path(path).read_bytes()).decode()
    alt = html.escape(Path(path).stem)
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{data}"><figcaption>{alt}</figcaption></figure>'


def _numbers(numbers):
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in numbers.items()
    )
    return f"<table class='numbers'>{rows}</table>" if rows else ""


def _links(links):
    items = "".join(f"<li><a href='{html.escape(str(href), quote=True)}'>{html.escape(str(label))}</a></li>"
                    for label, href in links.items())
    return f"<ul class='links'>{items}</ul>" if items else ""


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_STYLE = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{border-bottom:2px solid #444} h2{margin-top:2em;border-bottom:1px solid #ccc}
figure{display:inline-block;margin:.5em;max-width:48%} img{max-width:100%}
figcaption{font-size:.8em;color:#666} table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.2em .6em;text-align:left;font-size:.9em}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.8em}
"""


def write_report(path, *, title, sections, provenance=None):
    """Write one HTML file with every section and the provenance of the inputs.

    Parameters
    ----------
    path : path-like
        The ``.html`` file to write (atomically).
    title : str
        Page title.
    sections : list of ReportSection
        The content, in order.
    provenance : dict | None
        Config, versions and input hashes (see :func:`sae_eeg._io.provenance`).

    Returns
    -------
    path : pathlib.Path
    """
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        parts.append(_links(section.links))
        parts.append(_numbers(section.numbers))
        if section.table is not None and len(section.table):
            parts.append(section.table.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
        parts.extend(_img(f) for f in section.figures)
    if provenance:
        dump = html.escape(json.dumps(provenance, indent=2, sort_keys=True, default=str))
        parts.append(f"<h2>Provenance</h2><pre>{dump}</pre>")
    parts.append("</body></html>")
    write_text_atomic(path, "\n".join(parts))
    return Path(path)

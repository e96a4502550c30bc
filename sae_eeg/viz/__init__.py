"""Figures from result tables, and the HTML report.

Every figure function takes result tables (pandas DataFrames) or small arrays and
an output path stem, writes ``<stem>.png`` and ``<stem>.svg`` and returns their
paths as a :class:`FigureFiles`.
"""

from ._common import FIGURE_FORMATS, FigureFiles, save_figure
from .alignment_figures import (
    peak_lags,
    plot_layer_r,
    plot_significant_fraction,
    plot_topomaps,
    plot_trf_weights,
)
from .report import ReportSection, write_report
from .sae_figures import (
    plot_consistency,
    plot_erasure_curves,
    plot_mel_receptive_fields,
    plot_reconstruction_tradeoff,
    plot_steering,
    plot_tsne_by_label,
)

__all__ = [
    "FIGURE_FORMATS",
    "FigureFiles",
    "ReportSection",
    "peak_lags",
    "plot_consistency",
    "plot_erasure_curves",
    "plot_layer_r",
    "plot_mel_receptive_fields",
    "plot_reconstruction_tradeoff",
    "plot_significant_fraction",
    "plot_steering",
    "plot_topomaps",
    "plot_trf_weights",
    "plot_tsne_by_label",
    "save_figure",
    "write_report",
]

"""Figures from result tables, and the HTML report."""

from .report import ReportSection, write_report

__all__ = ["ReportSection", "write_report"]

"""The static HTML report: PNG figures and tables, readable offline."""

from gpuptc.report.html import draw_report, redraw_report

__all__ = ["draw_report", "redraw_report"]

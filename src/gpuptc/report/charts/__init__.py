"""Charts the browser draws: Vega-Lite specifications built from the tables alone.

Each function returns a :class:`Chart`: its name, caption, a Vega-Lite (v6) specification
and the few columns of the tables it draws, which a page holds column by column and draws
offline with the library the report ships (:func:`write_library`, ``vega.js`` beside the
pages). Hovering a point gives its pair, files and values; models toggle from the legend;
every chart zooms and pans with the mouse. A chart can also be written as a PNG without
a browser (:func:`chart_png`, vl-convert), for notes and papers.
"""

from gpuptc.report.charts.amps import (
    amp_map,
    amp_summary,
    brighter_fatter_matrices,
    comparison_chart,
)
from gpuptc.report.charts.gains import (
    gain_against_exposure_time,
    gain_histograms,
    level_mismatch,
    saturation_onsets,
)
from gpuptc.report.charts.page import CHART_LIBRARY, chart_png, sensor_charts, write_library
from gpuptc.report.charts.ptc import (
    covariance_chart,
    model_residuals,
    ptc_chart,
    residuals_chart,
)
from gpuptc.report.charts.spec import Chart, data_json, records, spec_json

__all__ = [
    "CHART_LIBRARY",
    "Chart",
    "amp_map",
    "amp_summary",
    "brighter_fatter_matrices",
    "chart_png",
    "comparison_chart",
    "covariance_chart",
    "data_json",
    "gain_against_exposure_time",
    "gain_histograms",
    "level_mismatch",
    "model_residuals",
    "ptc_chart",
    "records",
    "residuals_chart",
    "saturation_onsets",
    "sensor_charts",
    "spec_json",
    "write_library",
]

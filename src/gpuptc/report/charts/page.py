"""A sensor's charts in page order, the chart library the pages load, and charts as PNGs."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from gpuptc.report.charts.amps import (
    amp_map,
    amp_summary,
    brighter_fatter_matrices,
    comparison_chart,
)
from gpuptc.report.charts.bf_kernel import bf_kernel_chart
from gpuptc.report.charts.gains import gain_against_exposure_time, gain_histograms, level_mismatch
from gpuptc.report.charts.linearity import linearity_chart
from gpuptc.report.charts.ptc import covariance_chart, ptc_chart, residuals_chart
from gpuptc.report.charts.spec import Chart, spec_json
from gpuptc.schema import MISMATCH_THRESHOLD, file_stem

__all__ = ["CHART_LIBRARY", "chart_png", "sensor_charts", "write_library"]

log = logging.getLogger(__name__)

CHART_LIBRARY = "vega.js"
"""The file, beside the pages, that holds Vega, Vega-Lite and vega-embed."""


def sensor_charts(
    sensor: str, tables: Mapping[str, pd.DataFrame], verdicts: pd.DataFrame, gain_column: str
) -> list[Chart]:
    """The charts of one sensor's page, in page order.

    A chart that cannot be built (a table of an older run without a column it needs)
    comes back with its ``failure``, for the page to say so; the others are built.

    Parameters
    ----------
    sensor : str
        The sensor.
    tables : mapping of str to pandas.DataFrame
        The run's tables (``pairs``, ``ptc``; ``curves``, ``covariances``, ``fullcov``,
        ``comparison`` and ``linearity`` where present).
    verdicts : pandas.DataFrame
        The run's ``verdict`` table.
    gain_column : str
        The per-pair gain of the preset.

    Returns
    -------
    list of Chart
    """
    built = (
        _built(name, sensor, make) for name, make in _planned(sensor, tables, verdicts, gain_column)
    )
    return [chart for chart in built if chart is not None]


def _rolloffs(ptc: pd.DataFrame, sensor: str) -> pd.DataFrame:
    """Each amp's rolloff and tau where cp_pipe's rolloff model was fitted, by amp."""
    if "rolloff_tau" not in ptc:
        return pd.DataFrame(columns=["rolloff", "rolloff_tau"])
    mine = ptc[(ptc["sensor"] == sensor) & (ptc["model"] == "expapprox")]
    fitted = mine[mine["rolloff_tau"].notna() & mine["rolloff"].notna()]
    return fitted.set_index("amp")[["rolloff", "rolloff_tau"]]


def _planned(
    sensor: str, tables: Mapping[str, pd.DataFrame], verdicts: pd.DataFrame, gain_column: str
) -> list[tuple[str, Callable[[], Chart | None]]]:
    """Every chart of a sensor's page as (name, a function that builds it or gives None)."""
    pairs, ptc = tables["pairs"], tables["ptc"]
    adopted = verdicts[verdicts["sensor"] == sensor].set_index("amp")
    fullcov = tables.get("fullcov", pd.DataFrame(columns=["sensor", "model"]))
    curves, covariances = tables.get("curves"), tables.get("covariances")
    comparison = tables.get("comparison")
    linearity, kernels = tables.get("linearity"), tables.get("bf_kernel")
    planned: list[tuple[str, Callable[[], Chart | None]]] = [
        ("amp_map", lambda: amp_map(verdicts, sensor, linearity, kernels))
    ]
    if curves is not None:
        planned += [
            (
                "ptc",
                lambda: ptc_chart(
                    pairs,
                    curves,
                    sensor,
                    adopted["gain"],
                    adopted["turnoff"],
                    _rolloffs(ptc, sensor),
                ),
            ),
            ("residuals", lambda: residuals_chart(pairs, curves, ptc, sensor)),
        ]
    if comparison is not None:
        planned += [
            ("amp_summary", lambda: amp_summary(ptc, comparison, sensor)),
            ("comparison", lambda: comparison_chart(comparison, sensor)),
        ]
    if gain_column in pairs:
        turnoffs = adopted["turnoff"]
        planned += [
            (
                "gain_vs_exptime",
                lambda: gain_against_exposure_time(pairs, turnoffs, gain_column, sensor),
            ),
            ("gain_hist", lambda: gain_histograms(pairs, gain_column, sensor)),
        ]
    planned.append(("mismatch", lambda: level_mismatch(pairs, sensor, MISMATCH_THRESHOLD)))
    if curves is not None and covariances is not None:
        planned.append(
            ("covariances", lambda: covariance_chart(pairs, covariances, fullcov, curves, sensor))
        )
    planned.append(("brighter_fatter", lambda: brighter_fatter_matrices(fullcov, sensor)))
    if linearity is not None:
        planned.append(("linearity", lambda: linearity_chart(linearity, sensor)))
    if kernels is not None:
        planned.append(("bf_kernel", lambda: bf_kernel_chart(kernels, sensor)))
    return planned


def _built(name: str, sensor: str, make: Callable[[], Chart | None]) -> Chart | None:
    """The chart ``make`` builds, or one that says why it could not be built."""
    try:
        return make()
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        log.warning("report chart %r of %s not drawn: %s", name, sensor, failure)
        log.debug("%s", name, exc_info=True)
        title = name.replace("_", " ")
        return Chart(f"{name}_{file_stem(sensor)}", title, {}, failure=failure)


@functools.lru_cache(maxsize=1)
def _library() -> str:
    import vl_convert

    return vl_convert.javascript_bundle()


def write_library(folder: Path) -> Path:
    """Write the chart library (Vega, Vega-Lite, vega-embed) into ``folder``, once.

    Parameters
    ----------
    folder : pathlib.Path
        The report folder (the pages load ``vega.js`` beside them).

    Returns
    -------
    pathlib.Path
        The library's file.
    """
    path = Path(folder) / CHART_LIBRARY
    if not path.exists():
        path.write_text(_library(), encoding="utf-8")
    return path


def chart_png(chart: Chart, scale: float = 2.0) -> bytes:
    """The chart as a PNG, drawn without a browser (vl-convert).

    Parameters
    ----------
    chart : Chart
        The chart.
    scale : float
        Pixels per chart pixel.

    Returns
    -------
    bytes
        The PNG file's contents.
    """
    import vl_convert

    return vl_convert.vegalite_to_png(json.loads(spec_json(chart.inline())), scale=scale)

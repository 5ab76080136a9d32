"""Assemble the report pages from the result tables, with the templates of ``templates/``."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from gpuptc.fitting.solve import per_pair_gain_column as gain_column
from gpuptc.formats.outputs import per_sensor, read_outputs
from gpuptc.products.focal_plane import focal_plane_table
from gpuptc.products.verdict import Thresholds, amp_verdicts, sensor_verdicts, verdict_tests
from gpuptc.report.amp_table import amp_numbers, verdict_table
from gpuptc.report.charts import (
    Chart,
    chart_png,
    data_json,
    sensor_charts,
    spec_json,
    write_library,
)
from gpuptc.report.focal_plane import (
    bf_maps,
    focal_plane_maps,
    linearity_maps,
    vendor_histograms,
)
from gpuptc.report.numbers import bf_check_line, sensor_numbers
from gpuptc.report.sensor import draw, draw_sensors, joined
from gpuptc.report.sensor_table import sensor_summary
from gpuptc.schema import (
    CHARTS_DIR,
    REPORT_DIR,
    RUN_FILE,
    TABLE_FILES,
    DrawnFigure,
    display_images_name,
    file_stem,
    sensor_page_name,
)

__all__ = ["draw_report", "redraw_report"]

log = logging.getLogger(__name__)


_BETWEEN_TAGS = re.compile(r">\s+<")
"""The indentation pandas puts between a table's tags (a fifth of a sensor page)."""


def _html_table(frame: pd.DataFrame, digits: int, escape: bool) -> Markup:
    """``frame`` as HTML; ``escape=False`` only for cells escaped already (`_sensors_table`)."""
    if frame.empty:
        return Markup("<p>(none)</p>")
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}")
    table = _BETWEEN_TAGS.sub("><", shown.to_html(index=False, escape=escape, border=0))
    return Markup('<div class="scroll">{}</div>').format(Markup(table))


def _table(frame: pd.DataFrame, digits: int = 5) -> Markup:
    """A table in a scrolling box; floats to ``digits`` significant digits.

    pandas escapes every header and cell, so the HTML is safe to put in a page as it is
    (the templates' ``table`` filter).
    """
    return _html_table(frame, digits, escape=True)


def _templates() -> jinja2.Environment:
    """The pages' templates (``report/templates``), every value escaped unless Markup."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("gpuptc.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["table"] = _table
    return environment


class _Shown(NamedTuple):
    """A figure as a page shows it: its image (relative to the page), or why not drawn.

    ``name`` is its anchor on the page (the file's stem).
    """

    caption: str
    src: str | None = None
    reason: str = ""
    name: str = ""


def _figure(drawn: DrawnFigure, figs: Path, root: Path) -> _Shown:
    """Write one figure under ``figs``; what the page shows of it (a note if not drawn)."""
    name = drawn.name.removesuffix(".png")
    if drawn.png is None:
        return _Shown(drawn.caption, reason=(drawn.failure or "").split(":")[0], name=name)
    path = figs / drawn.name
    path.write_bytes(drawn.png)
    return _Shown(drawn.caption, src=os.path.relpath(path, root), name=name)


def _index(sensor: str, shown: list[Any]) -> list[tuple[str, str]]:
    """The page's figures and charts as (anchor, label): the name less the sensor's part."""
    suffix = f"_{file_stem(sensor)}"
    return [
        (f"#{item.name}", item.name.removesuffix(suffix).replace("_", " "))
        for item in shown
        if item.name
    ]


def _header(
    title: str, count: int, provenance: Mapping[str, Any], nav: list[tuple[str, str]]
) -> dict[str, Any]:
    """What ``base.html`` shows above every page: title, run facts and navigation."""
    facts = {key: str(provenance.get(key)) for key in ("preset", "backend", "gpuptc")}
    return {"heading": title, "count": count, "facts": facts, "nav": nav, "provenance": None}


def _provenance(provenance: Mapping[str, Any]) -> str:
    """The run's provenance (``run.json``) as the page prints it."""
    return json.dumps(dict(provenance), indent=2, default=str, sort_keys=True)


def _page(path: Path, template: str, title: str, **context: Any) -> None:
    page = _templates().get_template(template).render(title=title, **context)
    path.write_text(page, encoding="utf-8")


def _sensor_href(sensor: str) -> str:
    return quote(sensor_page_name(sensor))


def _sensors_table(verdicts: pd.DataFrame, linearity: pd.DataFrame) -> Markup:
    """The table of sensors, each linked to its page, with the amps to look at.

    Its cells hold markup (the links, line breaks), so pandas is told not to escape them:
    every header and every cell that is not a number is escaped here instead.
    """
    summary = sensor_summary(verdicts, linearity=linearity)
    cells = summary.reset_index(drop=True).map(
        lambda v: v if isinstance(v, int | float | np.number) else escape(v)
    )
    cells.columns = [escape(column) for column in cells.columns]
    link = Markup('<a href="{}">{}</a>')
    cells.insert(0, "sensor", [link.format(_sensor_href(s), s) for s in summary.index])
    cells["worst amps"] = [
        Markup('<div class="text">{}</div>').format(Markup("<br>").join(text.split("\n")))
        for text in summary["worst amps"]
    ]
    return _html_table(cells, 5, escape=False)


def _judged(
    tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any]
) -> tuple[pd.DataFrame, Thresholds]:
    """The run's verdict table and the limits behind it (judged here for older outputs)."""
    limits = Thresholds.from_mapping(provenance.get("thresholds", {}))
    if "verdict" in tables:
        return tables["verdict"], limits
    model = provenance.get("configuration", {}).get("solve", {}).get("ptc_fit_type")
    return amp_verdicts(tables, limits, model), limits


class _ShownChart(NamedTuple):
    """A chart as the page holds it: anchor, caption, escaped specification and data.

    ``failure`` says why it was not drawn, if it was not.
    """

    name: str
    caption: str
    spec: Markup
    data: Markup
    failure: str | None


def _shown_chart(chart: Chart) -> _ShownChart:
    """The chart as the page holds it; one whose data cannot be written is a note."""
    try:
        spec, data = spec_json(chart.spec), data_json(chart.data)
    except (TypeError, ValueError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
        log.warning("report chart %r not drawn: %s", chart.name, failure)
        return _ShownChart(chart.name, chart.caption, Markup(""), Markup(""), failure)
    return _ShownChart(chart.name, chart.caption, Markup(spec), Markup(data), chart.failure)


def _solve_method(provenance: Mapping[str, Any]) -> str:
    """The run's solve method (which per-pair gain its figures show)."""
    return str(provenance.get("configuration", {}).get("solve", {}).get("method", "cp_pipe"))


def _table_links(root: Path) -> list[tuple[str, str]]:
    """Links to the run's tables, for those who want every number."""
    out = root.parent
    found = [name for name in TABLE_FILES.values() if (out / name).exists()]
    return [(os.path.relpath(out / name, root), name) for name in found]


def _write_pages(
    root: Path,
    tables: Mapping[str, pd.DataFrame],
    provenance: Mapping[str, Any],
    drawn: Mapping[str, list[DrawnFigure]],
) -> Path:
    """``index.html``: one sensor's page, or the focal-plane summary linking one per sensor."""
    figs = root / "figures"
    sensors = sorted(drawn)
    index = root / "index.html"
    verdicts, limits = _judged(tables, provenance)
    lines = sensor_verdicts(verdicts, limits).set_index("sensor")
    tests = verdict_tests(limits)
    write_library(root)
    column = gain_column(_solve_method(provenance))
    of = per_sensor(tables)  # split once: a page reads its sensor's rows, not the run's

    def sensor_page(sensor: str) -> dict[str, Any]:
        mine = of(sensor)
        charts = [_shown_chart(c) for c in sensor_charts(sensor, mine, verdicts, column)]
        shown = [_figure(figure, figs, root) for figure in drawn[sensor]]
        numbers = sensor_numbers(mine, sensor, column)
        return {
            "sensor": sensor,
            "verdict": lines.loc[sensor] if sensor in lines.index else None,
            "verdict_table": verdict_table(sensor, verdicts, mine["ptc"]),
            "tests": tests,
            "charts": charts,
            "index": _index(sensor, [*charts, *shown]),
            "per_amp": amp_numbers(sensor, mine),
            "figures": shown,
            "numbers": numbers,
            "bf_check_line": bf_check_line(numbers["bf_check"]),
            "table_links": [],
        }

    if len(sensors) == 1:
        (sensor,) = sensors
        nav = [(f"#{sensor}", sensor), ("#numbers", "numbers"), ("#provenance", "provenance")]
        header = _header("gpuptc report", 1, provenance, nav)
        page = sensor_page(sensor) | {"table_links": _table_links(root)}
        header["provenance"] = _provenance(provenance)
        _page(index, "sensor.html", "gpuptc report", **header, **page)
        return index
    nav = [("index.html", "focal plane summary"), ("#numbers", "numbers")]
    nav += [("#rejected", "rejected")]
    for sensor in sensors:
        header = _header(f"gpuptc report: {sensor}", 1, provenance, nav)
        page = sensor_page(sensor)
        _page(root / sensor_page_name(sensor), "sensor.html", f"gpuptc: {sensor}", **header, **page)
    _summary_page(index, tables, verdicts, provenance, tests)
    return index


_MAPS_CAPTION = (
    "Gain, PTC noise, turnoff, a00, full well and the PTC noise over the overscan's (cp_pipe "
    "warns beyond 5 %) of every amp at its sensor's place (raft and slot); the colours "
    "saturate beyond the 2nd and 98th percentiles (red above, magenta below), so that one "
    "bad amp stands out without flattening the others. The numbers are focal_plane.parquet's."
)
_HISTOGRAMS_CAPTION = (
    "The same numbers for every amp, one histogram per vendor: e2v and ITL sensors differ "
    "by design (gain, full well, brighter-fatter), so each is judged against its own kind."
)
_BF_CAPTION = (
    "Each amp's brighter-fatter kernel: its centre K_00 (negative where the kernel is "
    "valid), and eo_pipe's statistics of its covariances: the slopes of the nearest serial "
    "(cov10) and parallel (cov01) covariances over the mean, and cov10 at the faintest "
    "pair; colours as above."
)
_LINEARITY_CAPTION = (
    "Each amp's linearity: eo_pipe's maximum fractional deviation from a line through the "
    "origin and its linearity turnoff, cp_pipe's linearity turnoff, and the spread of the "
    "residuals the linearizer leaves; colours as above."
)


def _summary_page(
    index: Path,
    tables: Mapping[str, pd.DataFrame],
    verdicts: pd.DataFrame,
    provenance: Mapping[str, Any],
    tests: list[Any],
) -> None:
    """The focal-plane summary of several sensors: maps, the sensors' table, rejections."""
    root = index.parent
    figs, manifest = root / "figures", tables.get("manifest")
    linearity = tables.get("linearity", pd.DataFrame())
    summary = tables.get("focal_plane")
    if summary is None:  # an output written before the table was
        summary = focal_plane_table({**tables, "verdict": verdicts})
    maps = draw("focal_plane.png", _MAPS_CAPTION, lambda: focal_plane_maps(summary, manifest))
    histograms = draw(
        "focal_plane_vendors.png", _HISTOGRAMS_CAPTION, lambda: vendor_histograms(summary)
    )
    linear = draw(
        "focal_plane_linearity.png",
        _LINEARITY_CAPTION,
        lambda: linearity_maps(linearity, manifest),
    )
    kernels = tables.get("bf_kernel", pd.DataFrame())
    bf = draw("focal_plane_bf.png", _BF_CAPTION, lambda: bf_maps(kernels, manifest))
    keys = ["focal-plane", *(["vendors"] if histograms is not None else [])]
    keys += ["linearity"] if linear is not None else []
    keys += [*(["brighter-fatter"] if bf is not None else []), "sensors"]
    keys += ["tables", "rejected", "provenance"]
    nav = [(f"#{k}", k.replace("-", " ")) for k in keys]
    header = _header("gpuptc report", verdicts["sensor"].nunique(), provenance, nav)
    header["provenance"] = _provenance(provenance)
    _page(
        index,
        "summary.html",
        "gpuptc report",
        **header,
        focal_plane=None if maps is None else _figure(maps, figs, root),
        vendors=None if histograms is None else _figure(histograms, figs, root),
        linearity_plane=None if linear is None else _figure(linear, figs, root),
        bf_plane=None if bf is None else _figure(bf, figs, root),
        tests=tests,
        sensors_table=_sensors_table(verdicts, linearity),
        table_links=_table_links(root),
        rejected=tables["rejected"],
    )


def draw_report(
    directory: str | os.PathLike[str],
    tables: Mapping[str, pd.DataFrame],
    provenance: Mapping[str, Any],
    drawn: Mapping[str, list[DrawnFigure] | None] | None = None,
    workers: int | None = None,
) -> Path:
    """Write every figure and the pages into ``directory``.

    One sensor: ``index.html`` is its page. Several: ``index.html`` is a focal-plane
    summary (maps of gain, noise, turnoff and a00 per amp, a table of the sensors with
    the amps to look at) linking to one page per sensor (``sensor_<sensor>.html``).

    Parameters
    ----------
    directory : path-like
        The report folder (``DIR/report``); binned images are read from its ``data/``.
    tables : mapping of str to pandas.DataFrame
        ``pairs``, ``covariances``, ``ptc``, ``fullcov``, ``comparison``, ``rejected``
        (and ``manifest``, for each sensor's place on the focal plane).
    provenance : mapping
        Inputs and configuration of the run (``run.json``).
    drawn : mapping of str to list of DrawnFigure, optional
        Sensor figures already drawn (by the processes that measured the sensors); the
        others are drawn here, in parallel processes, with every sensor's comparison
        with the references.
    workers : int, optional
        Drawing processes (default one per core).

    Returns
    -------
    pathlib.Path
        ``index.html``.
    """
    root = Path(directory)
    (root / "figures").mkdir(parents=True, exist_ok=True)
    sensors = sorted(tables["ptc"]["sensor"].unique())
    known = {s: figures_ for s, figures_ in (drawn or {}).items() if figures_ is not None}
    new = draw_sensors(
        [s for s in sensors if s not in known],
        lambda s: root.parent / display_images_name(s),
        workers,
    )
    every = {s: joined([known.get(s, []), new.get(s, [])]) for s in sensors}
    return _write_pages(root, tables, provenance, every)


def redraw_report(
    out: str | os.PathLike[str], workers: int | None = None, *, png: bool = False
) -> Path:
    """Redraw ``DIR/report`` from the Parquet tables of a finished run (no raw data read).

    Parameters
    ----------
    out : path-like
        An output directory of ``gpuptc run``.
    workers : int, optional
        Drawing processes (default one per core; sensors are drawn in parallel).
    png : bool
        Also write every chart as a PNG into ``DIR/report/charts`` (drawn without a
        browser), for notes and papers.

    Returns
    -------
    pathlib.Path
        The new ``index.html``.
    """
    directory = Path(out)
    tables = read_outputs(directory)
    provenance = json.loads((directory / RUN_FILE).read_text())
    index = draw_report(directory / REPORT_DIR, tables, provenance, workers=workers)
    if png:
        write_chart_images(directory / REPORT_DIR / CHARTS_DIR, tables, provenance)
    return index


def write_chart_images(
    folder: Path, tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any]
) -> list[Path]:
    """Every sensor's charts as PNG files in ``folder`` (``<chart name>.png``)."""
    folder.mkdir(parents=True, exist_ok=True)
    verdicts, _ = _judged(tables, provenance)
    column = gain_column(_solve_method(provenance))
    written = []
    for sensor in sorted(tables["ptc"]["sensor"].unique()):
        for chart in sensor_charts(sensor, tables, verdicts, column):
            if chart.failure is not None:
                continue  # said on the page and in the log
            try:
                image = chart_png(chart)
            except Exception as exc:  # one chart that cannot be drawn costs only itself
                log.warning("chart %s not written as a PNG: %s", chart.name, exc)
                continue
            path = folder / f"{chart.name}.png"
            path.write_bytes(image)
            written.append(path)
    return written

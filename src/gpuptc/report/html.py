"""Assemble the report page from the result tables."""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from gpuptc.fitting.solve import per_pair_gain_column as gain_column
from gpuptc.formats.outputs import read_outputs
from gpuptc.report.amp_table import amp_numbers
from gpuptc.report.focal_plane import focal_plane_maps
from gpuptc.report.sensor import draw, draw_sensors, joined
from gpuptc.report.sensor_table import AMP_FLAGS, sensor_summary
from gpuptc.schema import (
    REPORT_DIR,
    RUN_FILE,
    TABLE_FILES,
    DrawnFigure,
    display_images_name,
    sensor_page_name,
)

__all__ = ["draw_report", "redraw_report"]

log = logging.getLogger(__name__)

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 1400px; }
img { max-width: 100%; border: 1px solid #ccc; margin: 0.3em 0; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eee; }
nav a { margin-right: 1em; }
figure { margin: 1em 0; }
figcaption { font-size: 0.9em; color: #333; max-width: 60em; }
.scroll { overflow-x: auto; max-width: 100%; }
details summary { cursor: pointer; font-weight: bold; margin: 0.5em 0; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
.text { text-align: left; min-width: 30em; }
"""


def _table(frame: pd.DataFrame, digits: int = 5, escape: bool = True) -> str:
    """A table in a scrolling box; floats to ``digits`` significant digits."""
    if frame.empty:
        return "<p>(none)</p>"
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}")
    return f'<div class="scroll">{shown.to_html(index=False, escape=escape, border=0)}</div>'


_UNITS = {
    "gain": "gain (e-/ADU)",
    "gain_err": "gain_err (e-/ADU)",
    "noise": "noise (e-)",
    "noise_err": "noise_err (e-)",
    "a00": "a00 (1/e-)",
    "a00_err": "a00_err (1/e-)",
    "turnoff": "turnoff (ADU)",
}


def _with_units(frame: pd.DataFrame) -> pd.DataFrame:
    """Column headers with their units, for the page."""
    return frame.rename(columns=_UNITS)


def _figure(drawn: DrawnFigure, figs: Path, root: Path) -> str:
    """One figure written under ``figs`` and its HTML (a note when it could not be drawn)."""
    caption = html.escape(drawn.caption)
    if drawn.png is None:
        reason = html.escape((drawn.failure or "").split(":")[0])
        return f"<p>{caption}: not drawn ({reason})</p>"
    path = figs / drawn.name
    path.write_bytes(drawn.png)
    relative = html.escape(os.path.relpath(path, root))
    return (
        f'<figure><img src="{relative}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
    )


def _sensor_section(
    sensor: str,
    tables: Mapping[str, pd.DataFrame],
    drawn: list[DrawnFigure],
    figs: Path,
    root: Path,
) -> list[str]:
    """The per-amp table and figures of one sensor."""
    return [
        f'<h2 id="{html.escape(sensor)}">{html.escape(sensor)}</h2>',
        "<h3>Per amp</h3><p>Every model's gain with its error, the read noise and turnoff "
        "(EXPAPPROXIMATION), the brighter-fatter coefficients a00, a01, a10 (full-covariance "
        "fit; i serial, j parallel lag), the EXPAPPROXIMATION fit's chi^2 per degree of "
        "freedom (about 1 for a good fit), and its gain over each reference.</p>"
        + _table(amp_numbers(sensor, tables)),
        *(_figure(figure, figs, root) for figure in drawn),
    ]


def _of(frame: pd.DataFrame, sensors: list[str]) -> pd.DataFrame:
    return frame[frame["sensor"].isin(sensors)] if "sensor" in frame else frame


def _collapsed(summary: str, frame: pd.DataFrame) -> str:
    """A table folded under a line saying what it holds (open it to read it)."""
    return (
        f"<details><summary>{html.escape(summary)} ({len(frame)} rows)</summary>"
        + _table(frame)
        + "</details>"
    )


def _numbers_section(tables: Mapping[str, pd.DataFrame], sensors: list[str]) -> list[str]:
    """Every number of ``sensors`` in the tables (folded), and what was rejected.

    On one sensor's page its name is the heading's, not a column's.
    """

    def mine(frame: pd.DataFrame) -> pd.DataFrame:
        frame = _of(frame, sensors)
        return frame.drop(columns=["sensor"]) if len(sensors) == 1 and "sensor" in frame else frame

    rejected = _of(tables["rejected"], sensors)
    return [
        '<h2 id="numbers">Numbers</h2><p>Every number of the tables (also in the Parquet '
        "files), folded: the per-amp table above has the main ones.</p>",
        _collapsed("PTC fits: every model of every amp", _with_units(mine(tables["ptc"]))),
        _collapsed(
            "Comparison with the references (EOTEST, cp_pipe) per amp, method and quantity",
            mine(tables["comparison"]),
        ),
        _collapsed(
            "Per-pair measurements: one row per pair and amp",
            mine(tables["pairs"]).drop(columns=["file1", "file2"]),
        ),
        f'<h3 id="rejected">Rejected ({len(rejected)})</h3>' + _table(rejected),
    ]


def _provenance(provenance: Mapping[str, Any]) -> str:
    return (
        '<h2 id="provenance">Provenance</h2><details><summary>Version, preset and every '
        "configuration value, inputs, timings (run.json)</summary><pre>"
        + html.escape(json.dumps(dict(provenance), indent=2, default=str, sort_keys=True))
        + "</pre></details>"
    )


def _header(title: str, count: int, provenance: Mapping[str, Any], links: list[str]) -> str:
    facts = {k: html.escape(str(provenance.get(k))) for k in ("preset", "backend", "gpuptc")}
    return (
        f"<h1>{html.escape(title)}</h1><p>{count} sensor(s), preset <b>{facts['preset']}</b>, "
        f"backend {facts['backend']}, gpuptc {facts['gpuptc']}.</p><nav>{''.join(links)}</nav>"
    )


def _link(href: str, text: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def _page(path: Path, title: str, body: list[str]) -> None:
    head = f'<meta charset="utf-8"><title>{html.escape(title)}</title><style>{_STYLE}</style>'
    path.write_text(
        f'<!DOCTYPE html><html lang="en"><head>{head}</head><body>{"".join(body)}</body></html>',
        encoding="utf-8",
    )


def _sensor_href(sensor: str) -> str:
    return quote(sensor_page_name(sensor))


def _summary_section(tables: Mapping[str, pd.DataFrame]) -> str:
    """The table of sensors, each linked to its page, with the amps to look at."""
    summary = sensor_summary(tables)
    cells = summary.reset_index(drop=True).map(
        lambda v: html.escape(v) if isinstance(v, str) else v
    )
    cells.insert(0, "sensor", [_link(_sensor_href(s), s) for s in summary.index])
    cells["worst amps"] = [
        f'<div class="text">{text.replace(chr(10), "<br>")}</div>' for text in cells["worst amps"]
    ]
    criteria = "".join(f"<li>{html.escape(flag.describe())}</li>" for flag in AMP_FLAGS)
    return (
        '<h2 id="sensors">Sensors</h2><p>Each sensor\'s typical values and the amps that fail '
        f"one of these tests (those failing most first):</p><ul>{criteria}</ul>"
        + _table(cells, escape=False)
    )


def _tables_section(root: Path) -> str:
    """Links to the run's tables, for those who want every number."""
    out = root.parent
    found = [name for name in TABLE_FILES.values() if (out / name).exists()]
    links = ", ".join(_link(os.path.relpath(out / name, root), name) for name in found)
    return f'<h2 id="tables">Tables</h2><p>Every number of the run: {links}.</p>' if found else ""


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
    if len(sensors) == 1:
        (sensor,) = sensors
        links = [f'<a href="#{html.escape(sensor)}">{html.escape(sensor)}</a>']
        links += ['<a href="#numbers">numbers</a>', '<a href="#provenance">provenance</a>']
        body = [_header("gpuptc report", 1, provenance, links)]
        body += _sensor_section(sensor, tables, drawn[sensor], figs, root)
        body += [*_numbers_section(tables, sensors), _tables_section(root), _provenance(provenance)]
        _page(index, "gpuptc report", body)
        return index
    nav = [_link("index.html", "focal plane summary")]
    nav += [f'<a href="#{key}">{key}</a>' for key in ("numbers", "rejected")]
    for sensor in sensors:
        body = [_header(f"gpuptc report: {sensor}", 1, provenance, nav)]
        body += _sensor_section(sensor, tables, drawn[sensor], figs, root)
        body += _numbers_section(tables, [sensor])
        _page(root / sensor_page_name(sensor), f"gpuptc: {sensor}", body)
    keys = ("focal-plane", "sensors", "tables", "rejected", "provenance")
    links = [f'<a href="#{key}">{key.replace("-", " ")}</a>' for key in keys]
    body = [_header("gpuptc report", len(sensors), provenance, links)]
    focal = draw(
        "focal_plane.png",
        "Gain, read noise, turnoff and a00 of every amp at its sensor's place (raft and "
        "slot); the colours saturate beyond the 2nd and 98th percentiles (red above, "
        "magenta below), so that one bad amp stands out without flattening the others.",
        lambda: focal_plane_maps(tables["ptc"], tables.get("manifest")),
    )
    if focal is not None:
        body.append('<h2 id="focal-plane">Focal plane</h2>' + _figure(focal, figs, root))
    rejected = tables["rejected"]
    body += [
        _summary_section(tables),
        _tables_section(root),
        f'<h2 id="rejected">Rejected ({len(rejected)})</h2>' + _table(rejected),
        _provenance(provenance),
    ]
    _page(index, "gpuptc report", body)
    return index


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
    method = provenance.get("configuration", {}).get("solve", {}).get("method", "cp_pipe")
    new = draw_sensors(
        [s for s in sensors if s not in known],
        tables,
        lambda s: root.parent / display_images_name(s),
        gain_column(method),
        workers,
        referenced=sensors if "comparison" in tables else (),
    )
    every = {s: joined([known.get(s, []), new.get(s, [])]) for s in sensors}
    return _write_pages(root, tables, provenance, every)


def redraw_report(out: str | os.PathLike[str], workers: int | None = None) -> Path:
    """Redraw ``DIR/report`` from the Parquet tables of a finished run (no raw data read).

    Parameters
    ----------
    out : path-like
        An output directory of ``gpuptc run``.
    workers : int, optional
        Drawing processes (default one per core; sensors are drawn in parallel).

    Returns
    -------
    pathlib.Path
        The new ``index.html``.
    """
    directory = Path(out)
    tables = read_outputs(directory)
    provenance = json.loads((directory / RUN_FILE).read_text())
    return draw_report(directory / REPORT_DIR, tables, provenance, workers=workers)

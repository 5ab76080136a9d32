"""Assemble the report page from the result tables."""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from gpuptc.io.outputs import read_outputs
from gpuptc.report import figures
from gpuptc.report.amp_table import amp_numbers
from gpuptc.report.sensor import draw, draw_sensors
from gpuptc.schema import REPORT_DIR, RUN_FILE, DrawnFigure, display_images_name
from gpuptc.solve import per_pair_gain_column as gain_column

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
"""


def _table(frame: pd.DataFrame, digits: int = 5) -> str:
    if frame.empty:
        return "<p>(none)</p>"
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}")
    return f'<div class="scroll">{shown.to_html(index=False, escape=True, border=0)}</div>'


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
    """The gain table and figures of one sensor (``drawn``: those of its own tables)."""
    gains = draw(
        f"gains_{sensor}.png",
        "Gain per amp of every method with its error (side by side at each amp), and the "
        "references' gains (EOTEST's PTC_GAIN, a cp_pipe product's GAIN_UNADJUSTED) where "
        "given.",
        lambda: figures.gains_by_method(tables["comparison"], tables["ptc"], sensor),
    )
    compared = draw(
        f"comparison_{sensor}.png",
        "gpuptc over each reference per amp for gain, read noise, turnoff and a00 "
        "(EOTEST's a00 sign undone): 1 is agreement.",
        lambda: figures.comparison_figure(tables["comparison"], sensor),
    )
    return [
        f'<h2 id="{html.escape(sensor)}">{html.escape(sensor)}</h2>',
        "<h3>Per amp</h3><p>Every model's gain with its error, the read noise and turnoff "
        "(EXPAPPROXIMATION), the brighter-fatter coefficients a00, a01, a10 (full-covariance "
        "fit; i serial, j parallel lag), the EXPAPPROXIMATION fit's chi^2 per degree of "
        "freedom (about 1 for a good fit), and its gain over each reference.</p>"
        + _table(amp_numbers(sensor, tables)),
        *(
            _figure(figure, figs, root)
            for figure in [gains, compared, *drawn]
            if figure is not None
        ),
    ]


def _numbers_section(
    tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any]
) -> list[str]:
    """Every number in tables, then the provenance."""
    rejected = tables["rejected"]
    return [
        '<h2 id="numbers">Numbers</h2><h3>PTC fits</h3>' + _table(_with_units(tables["ptc"])),
        "<h3>Comparison with the references (EOTEST, cp_pipe)</h3>" + _table(tables["comparison"]),
        "<details><summary>Per-pair measurements (one row per pair and amp)</summary>"
        + _table(tables["pairs"].drop(columns=["file1", "file2"]))
        + "</details>",
        f"<h3>Rejected ({len(rejected)})</h3>" + _table(rejected),
        '<h2 id="provenance">Provenance</h2><pre>'
        + html.escape(json.dumps(dict(provenance), indent=2, default=str, sort_keys=True))
        + "</pre>",
    ]


def _header(sensors: list[str], provenance: Mapping[str, Any]) -> list[str]:
    facts = {k: html.escape(str(provenance.get(k))) for k in ("preset", "backend", "gpuptc")}
    links = "".join(f'<a href="#{html.escape(s)}">{html.escape(s)}</a>' for s in sensors)
    return [
        f"<h1>gpuptc report</h1><p>{len(sensors)} sensor(s), preset <b>{facts['preset']}</b>, "
        f"backend {facts['backend']}, gpuptc {facts['gpuptc']}.</p>",
        f'<nav>{links}<a href="#numbers">numbers</a><a href="#provenance">provenance</a></nav>',
    ]


def draw_report(
    directory: str | os.PathLike[str],
    tables: Mapping[str, pd.DataFrame],
    provenance: Mapping[str, Any],
    drawn: Mapping[str, list[DrawnFigure] | None] | None = None,
    workers: int | None = None,
) -> Path:
    """Write every figure and ``index.html`` into ``directory``.

    Parameters
    ----------
    directory : path-like
        The report folder (``DIR/report``); binned images are read from its ``data/``.
    tables : mapping of str to pandas.DataFrame
        ``pairs``, ``covariances``, ``ptc``, ``fullcov``, ``comparison``, ``rejected``.
    provenance : mapping
        Inputs and configuration of the run (``run.json``).
    drawn : mapping of str to list of DrawnFigure, optional
        Sensor figures already drawn (by the processes that measured the sensors); the
        others are drawn here, in parallel processes.
    workers : int, optional
        Processes drawing the sensors not in ``drawn`` (default one per core).

    Returns
    -------
    pathlib.Path
        ``index.html``.
    """
    root = Path(directory)
    figs = root / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    sensors = sorted(tables["ptc"]["sensor"].unique())
    known = {s: figures_ for s, figures_ in (drawn or {}).items() if figures_ is not None}
    method = provenance.get("configuration", {}).get("solve", {}).get("method", "cp_pipe")
    missing = [s for s in sensors if s not in known]
    known |= draw_sensors(
        missing,
        tables,
        lambda s: root.parent / display_images_name(s),
        gain_column(method),
        workers,
    )
    body = _header(sensors, provenance)
    focal = draw(
        "focal_plane.png",
        "gain, noise and turnoff per amp",
        lambda: figures.focal_plane_map(tables["ptc"]),
    )
    if focal is not None:
        body.append("<h2>Focal plane</h2>" + _figure(focal, figs, root))
    for sensor in sensors:
        body.extend(_sensor_section(sensor, tables, known[sensor], figs, root))
    body.extend(_numbers_section(tables, provenance))
    head = f'<meta charset="utf-8"><title>gpuptc report</title><style>{_STYLE}</style>'
    page = f'<!DOCTYPE html><html lang="en"><head>{head}</head><body>{"".join(body)}</body></html>'
    index = root / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


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

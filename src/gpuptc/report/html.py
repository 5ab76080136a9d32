"""Assemble the report page from the result tables."""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from gpuptc.io.outputs import read_outputs
from gpuptc.report import figures
from gpuptc.schema import MISMATCH_THRESHOLD, REPORT_DIR, RUN_FILE, display_images_name
from gpuptc.solve import per_pair_gain_column

__all__ = ["draw_report", "redraw_report"]

log = logging.getLogger(__name__)

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 1400px; }
img { max-width: 100%; border: 1px solid #ccc; margin: 0.3em 0; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #eee; }
nav a { margin-right: 1em; }
"""


def _table(frame: pd.DataFrame, digits: int = 5) -> str:
    if frame.empty:
        return "<p>(none)</p>"
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}")
    return shown.to_html(index=False, escape=True, border=0)


def _figure(path: Path | None, root: Path, caption: str) -> str:
    if path is None:
        return ""
    relative = os.path.relpath(path, root)
    text = html.escape(caption)
    image = f'<img src="{html.escape(relative)}" alt="{text}">'
    return f"<figure>{image}<figcaption>{text}</figcaption></figure>"


def _sensor_section(
    sensor: str, tables: Mapping[str, pd.DataFrame], root: Path, figs: Path, gain: str
) -> list[str]:
    """The figures and the gain table of one sensor (``gain``: the per-pair gain column)."""
    pairs, ptc = tables["pairs"], tables["ptc"]
    covariances, fullcov = tables["covariances"], tables["fullcov"]
    summary = ptc[ptc["sensor"] == sensor].pivot(index="amp", columns="model", values="gain")
    images = root.parent / display_images_name(sensor)
    drawn: list[tuple[Callable[[], Any], str]] = [
        (
            lambda: figures.gains_by_method(tables["comparison"], sensor, figs),
            "gain per amp, every method and EOTEST",
        ),
        (lambda: figures.ptc_grids(pairs, ptc, sensor, figs), "PTC per amp"),
        (
            lambda: figures.gain_histograms(pairs, sensor, figs, gain),
            f"per-pair gain histograms ({gain})",
        ),
        (
            lambda: figures.gain_vs_exptime(pairs, ptc, sensor, figs, gain),
            f"per-pair gain against exposure time ({gain})",
        ),
        (
            lambda: figures.level_mismatch(pairs, sensor, figs, MISMATCH_THRESHOLD),
            "level mismatch of each pair's flats",
        ),
        (
            lambda: figures.covariance_figure(pairs, covariances, fullcov, sensor, figs),
            "covariances and a_ij",
        ),
        (
            lambda: figures.images_figure(images, sensor, figs),
            "assembled flat and difference image",
        ),
    ]
    return [
        f'<h2 id="{html.escape(sensor)}">{html.escape(sensor)}</h2>',
        "<h3>Gain per amp and method (e-/ADU)</h3>" + _table(summary.reset_index(), 4),
        *(_drawn(draw, caption, root, sensor) for draw, caption in drawn),
    ]


def _drawn(draw: Callable[[], Any], caption: str, root: Path, sensor: str) -> str:
    """A figure (or a list of them) as HTML; one that cannot be drawn is a note, not a crash."""
    try:
        made = draw()
    except Exception as exc:
        name = type(exc).__name__
        log.warning("%s: report figure %r not drawn: %s: %s", sensor, caption, name, exc)
        log.debug("%s", caption, exc_info=True)
        return f"<p>{html.escape(caption)}: not drawn ({html.escape(name)})</p>"
    if isinstance(made, list):
        return "".join(_figure(path, root, path.stem.replace("_", " ")) for path in made)
    return _figure(made, root, caption)


def _numbers_section(
    tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any]
) -> list[str]:
    """Every number in tables, then the provenance."""
    rejected = tables["rejected"]
    return [
        '<h2 id="numbers">Numbers</h2><h3>PTC fits</h3>' + _table(tables["ptc"]),
        "<h3>Comparison with EOTEST</h3>" + _table(tables["comparison"]),
        "<h3>Per-pair measurements</h3>" + _table(tables["pairs"].drop(columns=["file1", "file2"])),
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
) -> Path:
    """Draw every figure and write ``index.html`` into ``directory``.

    Parameters
    ----------
    directory : path-like
        The report folder (``DIR/report``); binned images are read from its ``data/``.
    tables : mapping of str to pandas.DataFrame
        ``pairs``, ``covariances``, ``ptc``, ``fullcov``, ``comparison``, ``rejected``.
    provenance : mapping
        Inputs and configuration of the run (``run.json``).

    Returns
    -------
    pathlib.Path
        ``index.html``.
    """
    root = Path(directory)
    figs = root / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    sensors = sorted(tables["ptc"]["sensor"].unique())
    body = _header(sensors, provenance)
    focal = _drawn(
        lambda: figures.focal_plane_map(tables["ptc"], figs),
        "gain, noise and turnoff per amp",
        root,
        "focal plane",
    )
    if focal:
        body.append("<h2>Focal plane</h2>" + focal)
    method = provenance.get("configuration", {}).get("solve", {}).get("method", "cp_pipe")
    for sensor in sensors:
        body.extend(_sensor_section(sensor, tables, root, figs, per_pair_gain_column(method)))
    body.extend(_numbers_section(tables, provenance))
    head = f'<meta charset="utf-8"><title>gpuptc report</title><style>{_STYLE}</style>'
    page = f'<!DOCTYPE html><html lang="en"><head>{head}</head><body>{"".join(body)}</body></html>'
    index = root / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def redraw_report(out: str | os.PathLike[str]) -> Path:
    """Redraw ``DIR/report`` from the Parquet tables of a finished run (no raw data read).

    Parameters
    ----------
    out : path-like
        An output directory of ``gpuptc run``.

    Returns
    -------
    pathlib.Path
        The new ``index.html``.
    """
    directory = Path(out)
    tables = read_outputs(directory)
    provenance = json.loads((directory / RUN_FILE).read_text())
    return draw_report(directory / REPORT_DIR, tables, provenance)

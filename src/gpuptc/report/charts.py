"""Charts the browser draws: Vega-Lite specifications built from the tables alone.

Each function returns a :class:`Chart`: its name, caption and a Vega-Lite (v5) specification
whose data are inline values (the few columns the chart needs), so a page draws it
offline with the library the report ships (:func:`write_library`, ``vega.js`` beside the
pages). Hovering a point gives its pair, files and values; the PTC's models toggle from
the legend; every chart zooms and pans with the mouse. A chart can also be written as a
PNG or SVG without a browser (:func:`chart_png`, vl-convert), for notes and papers.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.report.amp_table import full_covariance_model
from gpuptc.report.focal_plane import amp_cell
from gpuptc.schema import file_stem

__all__ = [
    "CHART_LIBRARY",
    "Chart",
    "amp_map",
    "brighter_fatter_matrices",
    "chart_png",
    "gain_against_exposure_time",
    "model_residuals",
    "ptc_chart",
    "residuals_chart",
    "saturation_onsets",
    "sensor_charts",
    "spec_json",
    "write_library",
]

CHART_LIBRARY = "vega.js"
"""The file, beside the pages, that holds Vega, Vega-Lite and vega-embed."""

_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
_PANEL = 210
"""Width and height (px) of one amp's panel of a 4 x 4 grid: the grid fits 1280 px."""
_FONT = {"labelFontSize": 11, "titleFontSize": 12}
_CONFIG = {"axis": _FONT, "legend": {**_FONT, "symbolSize": 80}, "header": _FONT}


@dataclass(frozen=True)
class Chart:
    """One chart of a page.

    Attributes
    ----------
    name : str
        Its file stem (``--png`` writes ``<name>.png``) and anchor on the page.
    caption : str
        What it shows and how to read it.
    spec : dict
        The Vega-Lite specification, data inline.
    """

    name: str
    caption: str
    spec: dict[str, Any]


def spec_json(spec: dict[str, Any]) -> str:
    r"""The specification as JSON safe inside a page's ``<script>`` element.

    ``<``, ``>`` and ``&`` become ``\u003c``, ``\u003e`` and ``\u0026``, so that no
    value from the data (a file name, a header) can close the element or become markup.

    Examples
    --------
    >>> spec_json({"title": "</script><b>"})
    '{"title": "\\u003c/script\\u003e\\u003cb\\u003e"}'
    """
    text = json.dumps(spec, allow_nan=False, default=_plain)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


_DIGITS = 5
"""Significant digits of the numbers a chart carries (its data are most of a page)."""


def _rounded(value: float) -> float:
    """``value`` to the digits a chart carries (scales and data alike, so they agree)."""
    return float(f"{value:.{_DIGITS}g}")


def _values(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON values.

    Numbers to :data:`_DIGITS` significant digits, NaN and infinities left out (Vega's
    missing values), files by their names alone.
    """
    frame = frame.copy()
    for column in frame.columns:
        if column.startswith("file"):
            frame[column] = [os.path.basename(str(f)) for f in frame[column]]
        elif frame[column].dtype.kind == "f":
            frame[column] = [_rounded(v) for v in frame[column]]
    clean = frame.astype(object).where(frame.notna() & ~frame.isin([np.inf, -np.inf]), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items() if v is not None}
        for row in clean.to_dict("records")
    ]


def _grid(
    frames: dict[str, pd.DataFrame],
    layers: list[dict[str, Any]],
    facet: str = "amp",
    columns: int = 4,
) -> dict[str, Any]:
    """``layers`` faceted (by amp, four wide) into a grid on shared scales.

    A facet takes one data set: ``frames`` are stacked with a ``kind`` column naming each
    (its key), and each layer keeps its own kind (``kind`` in the layer, removed here).
    """
    stacked = [row for kind, frame in frames.items() for row in _values(frame.assign(kind=kind))]
    filtered = [
        {
            **layer,
            "transform": [
                {"filter": {"field": "kind", "equal": layer.pop("kind")}},
                *layer.pop("transform", []),
            ],
        }
        for layer in layers
    ]
    return {
        "$schema": _SCHEMA,
        "data": {"values": stacked},
        "facet": {
            "field": facet,
            "type": "ordinal" if facet == "amp" else "nominal",
            "title": None,
            "header": {"labelExpr": "'amp ' + datum.value"} if facet == "amp" else {},
        },
        "columns": columns,
        "spec": {"width": _PANEL, "height": _PANEL, "layer": filtered},
        "config": _CONFIG,
    }


def saturation_onsets(pairs: pd.DataFrame, turnoffs: pd.Series) -> pd.DataFrame:
    """Per amp, the exposure times between which it saturates.

    A pair is saturated on an amp when its mean lies above the amp's turnoff (the highest
    mean its PTC fit keeps). The onset lies between the longest exposure not saturated and
    the shortest one saturated; an amp with no saturated pair has none.

    Parameters
    ----------
    pairs : pandas.DataFrame
        One sensor's ``pairs``.
    turnoffs : pandas.Series
        Turnoff (ADU) by amp.

    Returns
    -------
    pandas.DataFrame
        ``amp``, ``last_unsaturated``, ``first_saturated`` and ``onset`` (their geometric
        mean, s), one row per amp that saturates.

    Examples
    --------
    >>> pairs = pd.DataFrame({"amp": 1, "exptime": [1.0, 4.0, 16.0], "mean": [1e4, 4e4, 9e4]})
    >>> saturation_onsets(pairs, pd.Series({1: 4e4})).round(1).to_dict("records")
    [{'amp': 1, 'last_unsaturated': 4.0, 'first_saturated': 16.0, 'onset': 8.0}]
    """
    rows = []
    for amp, group in pairs.groupby("amp", sort=True):
        turnoff = turnoffs.get(amp, math.nan)
        above = group["mean"] > turnoff
        if not math.isfinite(turnoff) or not above.any() or above.all():
            continue
        first = float(group.loc[above, "exptime"].min())
        below = group.loc[~above & (group["exptime"] < first), "exptime"]
        if below.empty:
            continue
        last = float(below.max())
        rows.append((int(amp), last, first, math.sqrt(last * first)))
    return pd.DataFrame(rows, columns=["amp", "last_unsaturated", "first_saturated", "onset"])


def _gain_domain(gains: pd.Series) -> list[float]:
    """The gain axis: the unsaturated pairs' range, widened by a tenth of it on each side."""
    finite = gains[np.isfinite(gains.to_numpy(float))]
    if finite.empty:
        return [0.0, 1.0]
    low, high = float(finite.min()), float(finite.max())
    margin = 0.1 * (high - low) or 0.05 * abs(high) or 0.1
    return [_rounded(low - margin), _rounded(high + margin)]


_STATES = ("below saturation", "saturated (at the edge when off the axis)")


def _gain_layers(domain: tuple[float, float]) -> list[dict[str, Any]]:
    """The gain chart's layers: the pairs (saturated ones marked), each amp's onset."""
    x = {
        "field": "exptime",
        "type": "quantitative",
        "scale": {"type": "log"},
        "title": "exposure time (s)",
    }
    state = {"field": "state", "type": "nominal", "title": None}
    points = {
        "kind": "pair",
        "mark": {"type": "point", "filled": True, "size": 30, "clip": True},
        "params": [{"name": "zoom", "select": "interval", "bind": "scales"}],
        "encoding": {
            "x": x,
            "y": {
                "field": "shown",
                "type": "quantitative",
                "scale": {"domain": list(domain)},
                "title": "per-pair gain (e-/ADU)",
            },
            "shape": {
                **state,
                "scale": {"domain": list(_STATES), "range": ["circle", "triangle-up"]},
                "legend": {"orient": "top", "labelLimit": 400},
            },
            "color": {
                **state,
                "scale": {"domain": list(_STATES), "range": ["#1f77b4", "#d62728"]},
            },
            "tooltip": _tooltip("pair", "exptime", "mean", "gain"),
        },
    }
    onset = {
        "kind": "onset",
        "mark": {"type": "rule", "strokeDash": [4, 3], "color": "black"},
        "encoding": {
            "x": {**x, "field": "onset"},
            "tooltip": _tooltip("last_unsaturated", "first_saturated", "onset"),
        },
    }
    return [points, onset]


def gain_against_exposure_time(
    pairs: pd.DataFrame, turnoffs: pd.Series, column: str, sensor: str
) -> Chart:
    """Each amp's per-pair gain against exposure time, saturated pairs marked and clipped.

    One panel per amp on shared axes: the y axis is set by the pairs below saturation, and
    a saturated pair's gain (which runs away) is drawn at the axis edge as a triangle
    (its value in the tooltip); the dashed line is the amp's own saturation onset
    (:func:`saturation_onsets`).

    Parameters
    ----------
    pairs : pandas.DataFrame
        The run's ``pairs``.
    turnoffs : pandas.Series
        Each amp's turnoff (ADU), by amp: above it a pair is saturated.
    column : str
        The per-pair gain drawn (the preset's).
    sensor : str
        The sensor.

    Returns
    -------
    Chart
    """
    mine = pairs[pairs["sensor"] == sensor].copy()
    mine["saturated"] = mine["mean"] > mine["amp"].map(turnoffs)
    low, high = _gain_domain(mine.loc[~mine["saturated"], column])
    mine["gain"] = mine[column]
    mine["shown"] = mine[column].clip(low, high)
    mine["state"] = np.where(mine["saturated"], _STATES[1], _STATES[0])
    data = mine[["amp", "pair", "exptime", "mean", "gain", "shown", "state"]]
    onsets = saturation_onsets(mine, turnoffs)
    spec = _grid({"pair": data, "onset": onsets}, _gain_layers((low, high)))
    spec["title"] = f"{sensor}: per-pair gain against exposure time"
    caption = (
        f"Per-pair gain ({column}) against exposure time, one panel per amp: it rises "
        "slowly with the signal (the brighter-fatter effect raises a per-pair gain by "
        "|a00| x signal) and runs away at saturation. The axis is set by the pairs below "
        "saturation (mean within the PTC turnoff); saturated pairs are red triangles, at the "
        "axis edge when off it (hover for their value). The dashed line is the amp's "
        "saturation onset, between its last pair below saturation and its first above."
    )
    return Chart(f"gain_vs_exptime_{file_stem(sensor)}", caption, spec)


_USES = ("used by the fits", "left out")

_UNITS_SWITCH = {
    "name": "units",
    "value": "ADU",
    "bind": {"input": "radio", "options": ["ADU", "e-"], "name": "units: "},
}
"""The PTC chart's switch between ADU and electrons."""
_IN_UNITS = [
    {"calculate": "datum.mean * (units == 'e-' ? datum.g : 1)", "as": "x"},
    {"calculate": "datum.var * (units == 'e-' ? datum.g * datum.g : 1)", "as": "y"},
]
"""The PTC's mean and variance in the units the switch says (``g``: the amp's gain)."""

_CURVE_POINTS = 16
"""Points a model's curve keeps per amp in the PTC chart (a line needs no more)."""


def _thinned(curves: pd.DataFrame) -> pd.DataFrame:
    """At most :data:`_CURVE_POINTS` points of each curve, evenly in its order of mean."""
    kept = []
    for _, rows in curves.sort_values("mean").groupby(["amp", "model"], sort=False):
        if len(rows) > _CURVE_POINTS:
            rows = rows.iloc[
                np.unique(np.linspace(0, len(rows) - 1, _CURVE_POINTS).round().astype(int))
            ]
        kept.append(rows)
    return pd.concat(kept) if kept else curves


def _ptc_layers() -> list[dict[str, Any]]:
    """The PTC chart's layers: the pairs (used or left out) and the models' curves."""
    x = {"field": "x", "type": "quantitative", "scale": {"type": "log"}, "title": "mean"}
    y = {"field": "y", "type": "quantitative", "scale": {"type": "log"}, "title": "variance"}
    layer_points = {
        "kind": "pair",
        "transform": _IN_UNITS,
        "mark": {"type": "point", "filled": True, "size": 25, "clip": True},
        "params": [{"name": "zoom", "select": "interval", "bind": "scales"}],
        "encoding": {
            "x": x,
            "y": y,
            "shape": {
                "field": "use",
                "type": "nominal",
                "scale": {"domain": list(_USES), "range": ["circle", "cross"]},
                "title": None,
                "legend": {"orient": "top"},
            },
            "color": {"value": "#333333"},
            "tooltip": _tooltip("pair", "exptime", "mean", "var", "file1", "file2"),
        },
    }
    layer_models = {
        "kind": "model",
        "transform": _IN_UNITS,
        "mark": {"type": "line", "strokeWidth": 1.5, "clip": True},
        "params": [
            {"name": "models", "select": {"type": "point", "fields": ["model"]}, "bind": "legend"}
        ],
        "encoding": {
            "x": x,
            "y": y,
            "detail": {"field": "model"},
            "color": {
                "field": "model",
                "type": "nominal",
                "title": "model (click: that one alone)",
                "legend": {"orient": "top"},
            },
            "opacity": {"condition": {"param": "models", "value": 1}, "value": 0.08},
            "tooltip": _tooltip("model", "mean", "var"),
        },
    }
    return [layer_points, layer_models]


def ptc_chart(
    pairs: pd.DataFrame, curves: pd.DataFrame, sensor: str, gains: pd.Series | None = None
) -> Chart:
    """Variance against mean per amp on log axes, every model's curve, models toggled.

    With ``gains``, a switch below the chart shows it in electrons (mean x gain,
    variance x gain^2) instead of ADU.

    Parameters
    ----------
    pairs, curves : pandas.DataFrame
        The run's ``pairs`` and ``curves`` (:func:`gpuptc.fitting.curves.model_curves`).
    sensor : str
        The sensor.
    gains : pandas.Series, optional
        Each amp's gain (e-/ADU), by amp: the adopted model's.

    Returns
    -------
    Chart
        Hovering a pair gives its number, exposure time, files, mean and variance.
    """
    mine = pairs[(pairs["sensor"] == sensor) & np.isfinite(pairs["var"].to_numpy(float))].copy()
    mine["use"] = np.where(mine["used"].fillna(False).astype(bool), *_USES)
    points = mine[["amp", "pair", "exptime", "mean", "var", "use", "file1", "file2"]]
    models = curves[(curves["sensor"] == sensor) & (curves["lag"] == "00")]
    lines = _thinned(models)[["amp", "model", "mean", "value"]].rename(columns={"value": "var"})
    lines = lines[np.isfinite(lines["var"].to_numpy(float)) & (lines["var"] > 0)]
    scale = gains if gains is not None else pd.Series(dtype=float)
    points = points.assign(g=points["amp"].map(scale).fillna(1.0))
    lines = lines.assign(g=lines["amp"].map(scale).fillna(1.0))
    spec = _grid({"pair": points, "model": lines}, _ptc_layers())
    spec["params"] = [_UNITS_SWITCH] if gains is not None else [{"name": "units", "value": "ADU"}]
    spec["title"] = f"{sensor}: photon transfer curves (variance in units^2, mean in units)"
    caption = (
        "Variance against mean per amp on log axes, in ADU or, with the switch below the "
        "chart, in electrons (x the adopted gain, x its square): the pairs (dots used by the fits, "
        "crosses left out: saturated or outliers; hover for the pair, its files and "
        "values in ADU) and each model's curve at the pairs' means (click a model in the "
        "legend to show it alone; drag to pan, scroll to zoom, double-click to reset)."
    )
    return Chart(f"ptc_{file_stem(sensor)}", caption, spec)


def model_residuals(pairs: pd.DataFrame, curves: pd.DataFrame, sensor: str) -> pd.DataFrame:
    """Each model's residuals from its own curve, in units of the errors its chi^2 uses.

    Only the pairs each fit took (``fitted`` in the curves); models whose chi^2 has no
    errors (the power law) are left out.

    Parameters
    ----------
    pairs, curves : pandas.DataFrame
        The run's ``pairs`` and ``curves``.
    sensor : str
        The sensor.

    Returns
    -------
    pandas.DataFrame
        ``model``, ``amp``, ``pair``, ``mean``, ``residual``.
    """
    if "fitted" not in curves:  # a run written before the curves held their errors
        return pd.DataFrame(columns=["model", "amp", "pair", "mean", "residual"])
    mine = curves[(curves["sensor"] == sensor) & (curves["lag"] == "00") & curves["fitted"]]
    mine = mine[np.isfinite(mine["error"].to_numpy(float)) & (mine["error"] > 0)]
    measured = pairs[pairs["sensor"] == sensor][["amp", "pair", "exptime", "var"]]
    joined = mine.merge(measured, on=["amp", "pair"])
    joined["residual"] = (joined["var"] - joined["value"]) / joined["error"]
    return joined[["model", "amp", "pair", "mean", "residual"]]


def residuals_chart(
    pairs: pd.DataFrame, curves: pd.DataFrame, ptc: pd.DataFrame, sensor: str
) -> Chart | None:
    """Every model's residuals from its own model, in its own errors, with its chi^2.

    Parameters
    ----------
    pairs, curves, ptc : pandas.DataFrame
        The run's ``pairs``, ``curves`` and ``ptc``.
    sensor : str
        The sensor.

    Returns
    -------
    Chart or None
        None where no model has residuals (curves from before they held their errors).
    """
    residuals = model_residuals(pairs, curves, sensor)
    if residuals.empty:
        return None
    fits = ptc[ptc["sensor"] == sensor]
    summary = [
        {
            "model": model,
            "label": f"rms {np.sqrt(np.mean(rows['residual'] ** 2)):.2f}; sqrt(chi2/dof) "
            f"{np.sqrt(fits.loc[fits['model'] == model, 'chi2_dof']).median():.2f}",
        }
        for model, rows in residuals.groupby("model", sort=False)
    ]
    x = {"field": "mean", "type": "quantitative", "scale": {"type": "log"}, "title": "mean (ADU)"}
    points = {
        "kind": "residual",
        "mark": {"type": "point", "filled": True, "size": 16, "opacity": 0.6},
        "params": [{"name": "zoom", "select": "interval", "bind": "scales"}],
        "encoding": {
            "x": x,
            "y": {"field": "residual", "type": "quantitative", "title": "residual / error"},
            "tooltip": _tooltip("amp", "pair", "mean", "residual"),
        },
    }
    labels = {
        "kind": "summary",
        "mark": {"type": "text", "align": "left", "baseline": "top", "x": 4, "y": 4},
        "encoding": {"text": {"field": "label", "type": "nominal"}},
    }
    spec = _grid(
        {"residual": residuals, "summary": pd.DataFrame(summary)},
        [points, labels],
        facet="model",
        columns=3,
    )
    spec["title"] = f"{sensor}: each model's residuals from its own model"
    caption = (
        "Variance less each model's own curve (eq. 20's C_00 for the full-covariance "
        "fits), in units of the errors that model's chi^2 uses (cp_pipe's weights; "
        "sqrt(var) for EOTEST's fit and the notebook's straight line and quadratic), for "
        "the pairs each fit took, every amp together. A model that fits scatters "
        "without trend with an rms close to the square root of its chi^2/dof (both "
        "written in the panel: the rms pooled over the amps, the root the median over "
        "them; a full-covariance fit's chi^2 also counts its other lags). The power law "
        "has no errors and is left out."
    )
    return Chart(f"residuals_{file_stem(sensor)}", caption, spec)


_MAPPED = (
    ("gain", "gain (e-/ADU)"),
    ("read_noise", "read noise (e-)"),
    ("turnoff_electrons", "turnoff (e-)"),
    ("a00", "a00 (1/e-)"),
)
"""The verdict's columns mapped over the sensor's amps, and their titles."""


def amp_map(verdicts: pd.DataFrame, sensor: str) -> Chart:
    """Gain, read noise, turnoff and a00 of each amp where it sits on the sensor (2 x 8).

    Parameters
    ----------
    verdicts : pandas.DataFrame
        The run's ``verdict`` table (the adopted model's numbers).
    sensor : str
        The sensor.

    Returns
    -------
    Chart
    """
    mine = verdicts[verdicts["sensor"] == sensor].copy()
    namps = 16 if len(mine) and int(mine["amp"].max()) > 8 else 8
    cells = [amp_cell(int(amp), namps) for amp in mine["amp"]]
    mine["row"] = [1 - r for r, _ in cells]  # amp 1 lower left: the top row is row 1
    mine["column"] = [c for _, c in cells]
    panels = []
    for column, title in _MAPPED:
        if column not in mine:
            continue
        data = mine[["amp", "segment", "row", "column", "verdict", column]].rename(
            columns={column: "value"}
        )
        cell = {
            "x": {"field": "column", "type": "ordinal", "axis": None},
            "y": {"field": "row", "type": "ordinal", "axis": None},
        }
        colour = {"scheme": "viridis"}
        text = {"fontSize": 10, "color": "white", "field": "amp"}
        legend = ".2e" if column == "a00" else ",.4~g"
        tooltip = _tooltip("amp", "segment", "value", "verdict")
        panel = _heatmap(cell, colour, legend, tooltip, text)
        panels.append(
            {"title": title, "width": 400, "height": 80, "data": {"values": _values(data)}, **panel}
        )
    spec = {
        "$schema": _SCHEMA,
        "title": f"{sensor}: per amp, as the amps sit on the sensor (amp 1 lower left)",
        "concat": panels,
        "columns": 2,
        "resolve": {"scale": {"color": "independent"}},
        "config": {**_CONFIG, "view": {"stroke": None}},
    }
    caption = (
        "The adopted model's gain, the per-pixel read noise, the turnoff in electrons and "
        "a00 of each amp at its place on the sensor (two rows of eight, amp 1 lower left, "
        "as the assembled image): a bad amp or a gradient across the sensor stands out."
    )
    return Chart(f"amp_map_{file_stem(sensor)}", caption, spec)


def _matrix_panel(cells: pd.DataFrame, name: str, title: str) -> dict[str, Any]:
    """One coefficient's median over amps per lag, on a symmetric scale.

    The scale is set by the lags other than (0,0): a_00 (far larger) is held at the
    scale's end and labelled.
    """
    others = cells.loc[(cells["i"] > 0) | (cells["j"] > 0), name].abs()
    top = _rounded(float(others.max())) if others.notna().any() else 1.0
    data = cells[["i", "j", name, f"{name}_err"]].rename(
        columns={name: "value", f"{name}_err": "error"}
    )
    data["off_scale"] = np.where(data["value"].abs() > top, "off the scale", "")
    lag = {
        "x": {"field": "j", "type": "ordinal", "title": "j (parallel lag)"},
        "y": {"field": "i", "type": "ordinal", "title": "i (serial lag)", "sort": "descending"},
    }
    colour = {"scheme": "redblue", "reverse": True, "domain": [-top, top], "clamp": True}
    text = {"fontSize": 9, "field": "off_scale"}
    tooltip = _tooltip("i", "j", "value", "error", "off_scale")
    panel = _heatmap(lag, colour, ".1e", tooltip, text)
    return {"title": title, "width": 240, "height": 240, "data": {"values": _values(data)}, **panel}


def _heatmap(
    cell: dict[str, Any],
    colour: dict[str, Any],
    legend: str,
    tooltip: list[dict[str, Any]],
    text: dict[str, Any],
) -> dict[str, Any]:
    """A heatmap's layers: cells coloured by ``value`` and a text on each.

    ``text`` holds the text mark's settings and the ``field`` it shows.
    """
    label = {key: value for key, value in text.items() if key != "field"}
    return {
        "layer": [
            {
                "mark": "rect",
                "encoding": {
                    **cell,
                    "color": {
                        "field": "value",
                        "type": "quantitative",
                        "title": None,
                        "scale": colour,
                        "legend": {"format": legend},
                    },
                    "tooltip": tooltip,
                },
            },
            {
                "mark": {"type": "text", **label},
                "encoding": {**cell, "text": {"field": text["field"], "type": "nominal"}},
            },
        ]
    }


def brighter_fatter_matrices(fullcov: pd.DataFrame, sensor: str) -> Chart | None:
    """The full-covariance fit's a_ij and b_ij, and every amp's |a_ij| against distance.

    The matrices are medians over amps; the distances come with each a_ij's error.
    """
    model = full_covariance_model(fullcov, sensor)
    mine = fullcov[(fullcov["sensor"] == sensor) & (fullcov["model"] == model)]
    if mine.empty:
        return None
    cells = mine.groupby(["i", "j"])[["a", "a_err", "b", "b_err"]].median().reset_index()
    points = mine[["amp", "i", "j", "a", "a_err"]].copy()
    points["distance"] = np.hypot(points["i"], points["j"])
    points["size"] = points["a"].abs()
    points["low"] = np.maximum(points["size"] - points["a_err"], points["size"] * 1e-3)
    points["high"] = points["size"] + points["a_err"]
    points["significance"] = np.where(
        points["size"] > 3 * points["a_err"], "more than 3 sigma", "within 3 sigma of 0"
    )
    points = points[points["size"] > 0]
    y = {
        "field": "size",
        "type": "quantitative",
        "scale": {"type": "log"},
        "title": "|a_ij| (1/e-)",
    }
    x = {"field": "distance", "type": "quantitative", "title": "lag distance sqrt(i^2 + j^2)"}
    scatter = {
        "title": "every amp's |a_ij| against lag distance",
        "width": 240,
        "height": 240,
        "data": {"values": _values(points)},
        "layer": [
            {
                "mark": {"type": "rule", "opacity": 0.4},
                "encoding": {"x": x, "y": {**y, "field": "low"}, "y2": {"field": "high"}},
            },
            {
                "mark": {"type": "point", "filled": True, "size": 20},
                "params": [{"name": "zoom", "select": "interval", "bind": "scales"}],
                "encoding": {
                    "x": x,
                    "y": y,
                    "color": {
                        "field": "significance",
                        "type": "nominal",
                        "title": None,
                        "legend": {"orient": "bottom"},
                    },
                    "tooltip": _tooltip("amp", "i", "j", "a", "a_err"),
                },
            },
        ],
    }
    spec = {
        "$schema": _SCHEMA,
        "title": f"{sensor}: brighter-fatter coefficients, {model}",
        "hconcat": [
            _matrix_panel(cells, "a", "a_ij, median over amps"),
            _matrix_panel(cells, "b", "b_ij, median over amps"),
            scatter,
        ],
        "resolve": {"scale": {"color": "independent"}},
        "config": _CONFIG,
    }
    caption = (
        "The full-covariance fit's a_ij and b_ij (median over amps; i serial, j parallel "
        "lag) on symmetric colour scales set by the lags other than (0,0): a_00, far "
        "larger and negative, is held at the scale's end and marked; hover a cell for its "
        "value and the median error. Right: every amp's |a_ij| against lag distance with "
        "its error (grey: within 3 sigma of zero)."
    )
    return Chart(f"brighter_fatter_{file_stem(sensor)}", caption, spec)


def _tooltip(*fields: str) -> list[dict[str, Any]]:
    return [{"field": field, "title": field} for field in fields]


def sensor_charts(
    sensor: str, tables: dict[str, pd.DataFrame], verdicts: pd.DataFrame, gain_column: str
) -> list[Chart]:
    """The charts of one sensor's page, in page order.

    Parameters
    ----------
    sensor : str
        The sensor.
    tables : mapping of str to pandas.DataFrame
        The run's tables (``pairs``, ``ptc``; ``curves`` and ``fullcov`` where present).
    verdicts : pandas.DataFrame
        The run's ``verdict`` table.
    gain_column : str
        The per-pair gain of the preset.

    Returns
    -------
    list of Chart
    """
    pairs = tables["pairs"]
    adopted = verdicts[verdicts["sensor"] == sensor].set_index("amp")["turnoff"]
    charts = [amp_map(verdicts, sensor)]
    if "curves" in tables:
        gains = verdicts[verdicts["sensor"] == sensor].set_index("amp")["gain"]
        charts.append(ptc_chart(pairs, tables["curves"], sensor, gains))
        residuals = residuals_chart(pairs, tables["curves"], tables["ptc"], sensor)
        charts += [residuals] if residuals is not None else []
    if gain_column in pairs:
        charts.append(gain_against_exposure_time(pairs, adopted, gain_column, sensor))
    matrices = brighter_fatter_matrices(tables["fullcov"], sensor) if "fullcov" in tables else None
    return charts + ([matrices] if matrices is not None else [])


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

    return vl_convert.vegalite_to_png(json.loads(spec_json(chart.spec)), scale=scale)

"""Charts of each amp's results.

Where the amps sit, every model's numbers, the references, the brighter-fatter coefficients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gpuptc.fitting.bf_sensor import DETECTOR_SEGMENT, kernel_centres
from gpuptc.raws.layout import amp_cell
from gpuptc.report.amp_table import full_covariance_model
from gpuptc.report.charts.spec import CONFIG, SCHEMA, Chart, heatmap, rounded, tooltip
from gpuptc.schema import file_stem

__all__ = ["amp_map", "amp_summary", "brighter_fatter_matrices", "comparison_chart"]

_MAPPED = (
    ("gain", "gain (e-/ADU)"),
    ("gain_unadjusted", "gain before the gain ratio adjustment (e-/ADU)"),
    ("gain_adjustment", "gain ratio adjustment (the PTC's gain over the adopted)"),
    ("read_noise", "read noise (e-)"),
    ("turnoff_electrons", "turnoff (e-)"),
    ("a00", "a00 (1/e-)"),
    ("max_frac_dev", "linearity: eo_pipe's max. fractional deviation"),
    ("bf_k00", "brighter-fatter kernel centre K_00 (1/e-)"),
)
"""The columns mapped over the sensor's amps (the verdict's; then the linearity's and the
brighter-fatter kernel's centre), and their titles."""


def _kernel_centres(kernels: pd.DataFrame | None, sensor: str) -> pd.Series | None:
    """Each amp's kernel centre K_00 (1/e-) of ``sensor``, or None without a kernel."""
    if kernels is None or "kernel" not in kernels:
        return None
    mine = kernels[(kernels["sensor"] == sensor) & (kernels["segment"] != DETECTOR_SEGMENT)]
    centres = pd.Series(kernel_centres(mine).to_numpy(), index=mine["amp"].to_numpy()).dropna()
    return centres if len(centres) else None


def _adjusted(verdicts: pd.DataFrame) -> bool:
    """Whether some amp's gain was adjusted (a factor other than 1)."""
    if "gain_adjustment" not in verdicts:
        return False
    factors = verdicts["gain_adjustment"].to_numpy(float)
    return bool(np.any(np.isfinite(factors) & (factors != 1.0)))


def amp_map(
    verdicts: pd.DataFrame,
    sensor: str,
    linearity: pd.DataFrame | None = None,
    kernels: pd.DataFrame | None = None,
) -> Chart:
    """Gain, read noise, turnoff, a00, linearity and kernel of each amp where it sits (2 x 8).

    Parameters
    ----------
    verdicts : pandas.DataFrame
        The run's ``verdict`` table (the adopted model's numbers).
    sensor : str
        The sensor.
    linearity : pandas.DataFrame, optional
        The run's ``linearity`` (its ``max_frac_dev`` mapped too).
    kernels : pandas.DataFrame, optional
        The run's ``bf_kernel`` (each kernel's centre mapped too).

    Returns
    -------
    Chart
    """
    mine = verdicts[verdicts["sensor"] == sensor].copy()
    if linearity is not None and "max_frac_dev" in linearity:
        deviations = linearity[linearity["sensor"] == sensor].set_index("amp")["max_frac_dev"]
        if np.isfinite(deviations.to_numpy(float)).any():  # an unsolved sensor: no panel
            mine["max_frac_dev"] = mine["amp"].map(deviations)
    centres = _kernel_centres(kernels, sensor)
    if centres is not None:
        mine["bf_k00"] = mine["amp"].map(centres)
    if not _adjusted(mine):
        mine = mine.drop(columns=["gain_unadjusted", "gain_adjustment"], errors="ignore")
    namps = 16 if len(mine) and int(mine["amp"].max()) > 8 else 8
    cells = [amp_cell(int(amp), namps) for amp in mine["amp"]]
    mine["row"] = [1 - r for r, _ in cells]  # amp 1 lower left: the top row is row 1
    mine["column"] = [c for _, c in cells]
    panels, data = [], {}
    for column, title in _MAPPED:
        if column not in mine:
            continue
        data[column] = mine[["amp", "segment", "row", "column", "verdict", column]].rename(
            columns={column: "value"}
        )
        cell = {
            "x": {"field": "column", "type": "ordinal", "axis": None},
            "y": {"field": "row", "type": "ordinal", "axis": None},
        }
        legend = {"a00": ".2e", "max_frac_dev": ".2%", "bf_k00": ".2e", "gain_adjustment": ".4f"}
        legend = legend.get(column, ",.4~g")
        hover = tooltip("amp", "segment", "value", "verdict")
        text = {"fontSize": 10, "color": "white", "field": "amp"}
        panel = heatmap(cell, {"scheme": "viridis"}, legend, hover, text)
        panels.append(
            {"title": title, "width": 400, "height": 80, "data": {"name": column}, **panel}
        )
    spec = {
        "$schema": SCHEMA,
        "title": f"{sensor}: per amp, as the amps sit on the sensor (amp 1 lower left)",
        "concat": panels,
        "columns": 2,
        "resolve": {"scale": {"color": "independent"}},
        "config": {**CONFIG, "view": {"stroke": None}},
    }
    caption = (
        "The adopted model's gain (where the gain ratios were adjusted, also the PTC's own "
        "gain and the factor it was divided by, so that a flat is seamless across the "
        "amps), the per-pixel read noise, the turnoff in electrons and "
        "a00 of each amp at its place on the sensor (two rows of eight, amp 1 lower left, "
        "as the assembled image), where the run solved the linearity, eo_pipe's maximum "
        "fractional deviation from a line through the origin (1 000-90 000 e-), and where "
        "it solved brighter-fatter kernels, each kernel's centre: a bad amp or a gradient "
        "across the sensor stands out."
    )
    return Chart(f"amp_map_{file_stem(sensor)}", caption, spec, data)


_SUMMARY = (
    ("gain", "gain_err", "gain (e-/ADU)"),
    ("noise", "noise_err", "read noise (e-)"),
    ("turnoff", "turnoff_err", "turnoff (ADU)"),
    ("a00", "a00_err", "a00 (1/e-)"),
)
"""The per-amp summary's panels: column, its error, title."""

_SMALL_IN_EXPONENTS = (
    "abs(datum.value) < 1e-3 && datum.value != 0"
    " ? format(datum.value, '.1e') : format(datum.value, ',~g')"
)
"""Axis labels of panels that share one format: a00's (~1e-6) with exponents."""

_REFERENCE_NAMES = {"eotest": "EOTEST PTC_GAIN", "cp_pipe": "cp_pipe GAIN_UNADJUSTED"}


def _long(ptc: pd.DataFrame) -> pd.DataFrame:
    """The fits as one row per model, amp and panel: ``value`` and ``error``."""
    parts = [
        ptc[["model", "amp", column]]
        .rename(columns={column: "value"})
        .assign(quantity=title, error=ptc.get(error, np.nan))
        for column, error, title in _SUMMARY
    ]
    out = pd.concat(parts)
    out = out[np.isfinite(out["value"].to_numpy(float))]
    out["low"] = out["value"] - out["error"]
    out["high"] = out["value"] + out["error"]
    return out


def _empty_models(fits: pd.DataFrame) -> list[str]:
    """Which models have no gain on which amps, and why (their statuses): a line each."""
    missing = fits[~np.isfinite(fits["gain"].to_numpy(float))]
    return [
        f"{model}: no value on amps {', '.join(map(str, rows['amp']))} "
        f"({', '.join(sorted(set(map(str, rows['status']))))})"
        for model, rows in missing.groupby("model", sort=False)
    ]


def _summary_layers() -> list[dict[str, Any]]:
    """Every model's value and error per amp side by side, and the references' gains."""
    amp = {"field": "amp", "type": "ordinal", "title": "amp"}
    y = {
        "field": "value",
        "type": "quantitative",
        "scale": {"zero": False},
        "axis": {"labelExpr": _SMALL_IN_EXPONENTS},
        "title": None,
    }
    model = {
        "field": "model",
        "type": "nominal",
        "title": "model (click: that one alone)",
        "legend": {"orient": "top"},
    }
    chosen = {"condition": {"param": "models", "value": 1}, "value": 0.1}
    return [
        {
            "transform": [{"filter": "datum.kind == 'fit'"}],
            "mark": {"type": "rule"},
            "encoding": {
                "x": amp,
                "xOffset": {"field": "model"},
                "y": {**y, "field": "low"},
                "y2": {"field": "high"},
                "color": model,
                "opacity": chosen,
            },
        },
        {
            "transform": [{"filter": "datum.kind == 'fit'"}],
            "mark": {"type": "point", "filled": True, "size": 30},
            "params": [
                {
                    "name": "models",
                    "select": {"type": "point", "fields": ["model"]},
                    "bind": "legend",
                }
            ],
            "encoding": {
                "x": amp,
                "xOffset": {"field": "model"},
                "y": y,
                "color": model,
                "opacity": chosen,
                "tooltip": tooltip("model", "amp", "value", "error"),
            },
        },
        {
            "transform": [{"filter": "datum.kind == 'reference'"}],
            "mark": {"type": "point", "size": 120, "strokeWidth": 2, "color": "black"},
            "encoding": {
                "x": amp,
                "y": y,
                "shape": {
                    "field": "reference",
                    "type": "nominal",
                    "scale": {
                        "domain": list(_REFERENCE_NAMES.values()),
                        "range": ["diamond", "square"],
                    },
                    "title": None,
                    "legend": {"orient": "top"},
                },
                "tooltip": tooltip("reference", "amp", "value"),
            },
        },
    ]


def amp_summary(ptc: pd.DataFrame, comparison: pd.DataFrame, sensor: str) -> Chart:
    """Gain, read noise, turnoff and a00 per amp for every model with errors; references.

    The models sit side by side at each amp so that none hides another; the gain panel
    also holds each reference's gain. Models without a value are named with why.

    Parameters
    ----------
    ptc, comparison : pandas.DataFrame
        The run's ``ptc`` and ``comparison``.
    sensor : str
        The sensor.

    Returns
    -------
    Chart
    """
    fits = ptc[ptc["sensor"] == sensor]
    values = _long(fits).assign(kind="fit")
    theirs = comparison[
        (comparison["sensor"] == sensor)
        & (comparison["quantity"] == "gain")
        & comparison["reference_value"].notna()
    ].drop_duplicates(["reference", "amp"])
    references = pd.DataFrame(
        {
            "kind": "reference",
            "amp": theirs["amp"].to_numpy(),
            "quantity": _SUMMARY[0][2],
            "value": theirs["reference_value"].to_numpy(float),
            "reference": theirs["reference"].map(_REFERENCE_NAMES).fillna(theirs["reference"]),
        }
    )
    empty = _empty_models(fits)
    spec = {
        "$schema": SCHEMA,
        "title": {
            "text": f"{sensor}: per-amp results of every model",
            "subtitle": empty or ["every model has a value on every amp"],
        },
        "data": {"name": "values"},
        "facet": {
            "field": "quantity",
            "type": "nominal",
            "title": None,
            "sort": [title for _, _, title in _SUMMARY],
        },
        "columns": 2,
        "spec": {"width": 520, "height": 200, "layer": _summary_layers()},
        "resolve": {"scale": {"y": "independent"}},
        "config": CONFIG,
    }
    caption = (
        "Gain, read noise, turnoff and a00 per amp for every model with its error, the "
        "models side by side at each amp (click a model in the legend to show it alone), "
        "and the references' gains (EOTEST's PTC_GAIN, a cp_pipe product's "
        "GAIN_UNADJUSTED) where given; the line under the title names the models without "
        "a value and why."
    )
    data = {"values": pd.concat([values, references], ignore_index=True)}
    return Chart(f"amp_summary_{file_stem(sensor)}", caption, spec, data)


def _comparison_layers() -> list[dict[str, Any]]:
    """The comparison's layers: the line of agreement, each method's ratio per amp."""
    amp = {"field": "amp", "type": "ordinal", "title": "amp"}
    ratio = {
        "field": "ratio",
        "type": "quantitative",
        "scale": {"zero": False},
        "title": "gpuptc / reference",
    }
    return [
        {
            "transform": [{"filter": "datum.kind == 'one'"}],
            "mark": {"type": "rule", "color": "black"},
            "encoding": {"y": ratio},
        },
        {
            "transform": [{"filter": "datum.kind == 'ratio'"}],
            "mark": {"type": "point", "size": 40, "strokeWidth": 1.5},
            "params": [
                {
                    "name": "methods",
                    "select": {"type": "point", "fields": ["method"]},
                    "bind": "legend",
                }
            ],
            "encoding": {
                "x": amp,
                "xOffset": {"field": "method"},
                "y": ratio,
                "color": {
                    "field": "method",
                    "type": "nominal",
                    "title": "method (click: that one alone)",
                    "legend": {"orient": "top"},
                },
                "shape": {
                    "field": "reference",
                    "type": "nominal",
                    "scale": {"domain": ["eotest", "cp_pipe"], "range": ["circle", "diamond"]},
                    "title": "reference",
                    "legend": {"orient": "top"},
                },
                "opacity": {"condition": {"param": "methods", "value": 1}, "value": 0.1},
                "tooltip": tooltip(
                    "method", "reference", "amp", "value", "reference_value", "ratio"
                ),
            },
        },
    ]


def comparison_chart(comparison: pd.DataFrame, sensor: str) -> Chart | None:
    """Each method's gain, noise, turnoff, a00 and full well over each reference's, per amp.

    Parameters
    ----------
    comparison : pandas.DataFrame
        The run's ``comparison``.
    sensor : str
        The sensor.

    Returns
    -------
    Chart or None
        None when no reference gave a number to compare with.
    """
    mine = comparison[(comparison["sensor"] == sensor) & comparison["ratio"].notna()]
    if mine.empty:
        return None
    ratios = mine[["amp", "method", "quantity", "reference", "value", "reference_value", "ratio"]]
    ones = pd.DataFrame({"kind": "one", "quantity": ratios["quantity"].unique(), "ratio": 1.0})
    layers = _comparison_layers()
    shown = " and ".join(sorted(set(mine["reference"])))
    spec = {
        "$schema": SCHEMA,
        "title": f"{sensor}: gpuptc over the references ({shown})",
        "data": {"name": "ratios"},
        "facet": {"field": "quantity", "type": "nominal", "title": None},
        "columns": 2,
        "spec": {"width": 520, "height": 180, "layer": layers},
        "resolve": {"scale": {"y": "independent"}},
        "config": CONFIG,
    }
    caption = (
        "Each gpuptc method's value over each reference's per amp, for gain, read noise, "
        "turnoff, a00 (EOTEST's sign undone) and full well: 1 (the line) is agreement. "
        "Circles compare with EOTEST, diamonds with cp_pipe; the definition each "
        "reference uses is in the comparison table."
    )
    data = pd.concat([ratios.assign(kind="ratio"), ones], ignore_index=True)
    return Chart(f"comparison_{file_stem(sensor)}", caption, spec, {"ratios": data})


def _matrix_panel(
    cells: pd.DataFrame, name: str, title: str
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One coefficient's median over amps per lag on a symmetric scale, and its data.

    The scale is set by the lags other than (0,0): a_00 (far larger) is held at the
    scale's end and labelled.
    """
    others = cells.loc[(cells["i"] > 0) | (cells["j"] > 0), name].abs()
    top = rounded(float(others.max())) if others.notna().any() else 1.0
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
    hover = tooltip("i", "j", "value", "error", "off_scale")
    panel = heatmap(lag, colour, ".1e", hover, text)
    spec = {"title": title, "width": 240, "height": 240, "data": {"name": name}, **panel}
    return spec, data


def _distance_panel(mine: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    """Every amp's |a_ij| against lag distance with its error, and its data."""
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
    spec = {
        "title": "every amp's |a_ij| against lag distance",
        "width": 240,
        "height": 240,
        "data": {"name": "distances"},
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
                    "tooltip": tooltip("amp", "i", "j", "a", "a_err"),
                },
            },
        ],
    }
    return spec, points


def brighter_fatter_matrices(fullcov: pd.DataFrame, sensor: str) -> Chart | None:
    """The full-covariance fit's a_ij and b_ij, and every amp's |a_ij| against distance.

    The matrices are medians over amps; the distances come with each a_ij's error.

    Parameters
    ----------
    fullcov : pandas.DataFrame
        The run's ``fullcov``.
    sensor : str
        The sensor.

    Returns
    -------
    Chart or None
        None when the sensor has no full-covariance fit.
    """
    model = full_covariance_model(fullcov, sensor)
    mine = fullcov[(fullcov["sensor"] == sensor) & (fullcov["model"] == model)]
    if mine.empty:
        return None
    cells = mine.groupby(["i", "j"])[["a", "a_err", "b", "b_err"]].median().reset_index()
    a_spec, a_data = _matrix_panel(cells, "a", "a_ij, median over amps")
    b_spec, b_data = _matrix_panel(cells, "b", "b_ij, median over amps")
    scatter, points = _distance_panel(mine)
    spec = {
        "$schema": SCHEMA,
        "title": f"{sensor}: brighter-fatter coefficients, {model}",
        "hconcat": [a_spec, b_spec, scatter],
        "resolve": {"scale": {"color": "independent"}},
        "config": CONFIG,
    }
    caption = (
        "The full-covariance fit's a_ij and b_ij (median over amps; i serial, j parallel "
        "lag) on symmetric colour scales set by the lags other than (0,0): a_00, far "
        "larger and negative, is held at the scale's end and marked; hover a cell for its "
        "value and the median error. Right: every amp's |a_ij| against lag distance with "
        "its error (grey: within 3 sigma of zero)."
    )
    data = {"a": a_data, "b": b_data, "distances": points}
    return Chart(f"brighter_fatter_{file_stem(sensor)}", caption, spec, data)

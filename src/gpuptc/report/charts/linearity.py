"""The linearity chart: each amp's signal against the straight line, and its linearizer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gpuptc.kernels.linearize import apply_linearizer
from gpuptc.report.charts.spec import Chart, grid, tooltip
from gpuptc.schema import file_stem

__all__ = ["linearity_chart"]

_CURVE_POINTS = 60
"""Signals at which each amp's linearizer is drawn."""
_ZOOM = {"name": "zoom", "select": "interval", "bind": "scales"}


def _pairs(row: Any) -> pd.DataFrame:
    """One amp's pairs: the deviation from the line and the residual after linearizing."""
    signal = np.asarray(row.input_ordinate, float)
    flux = np.asarray(row.input_abscissa, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        line = row.linear_intercept + row.linear_slope * flux
        if not (np.isfinite(row.linear_slope) and row.linear_slope > 0):
            line = _origin_line(flux, signal) * flux
        deviation = signal / line - 1.0
        residual = np.asarray(row.residuals_unmasked, float) / signal
    return pd.DataFrame(
        {
            "amp": int(row.amp),
            "pair": np.asarray(row.input_pairs, int),
            "signal": signal,
            "deviation": _finite(deviation),
            "residual": _finite(residual),
            "fitted": np.where(np.asarray(row.input_mask, bool), "fitted", "left out"),
        }
    )


def _origin_line(flux: np.ndarray, signal: np.ndarray) -> float:
    """The slope of a line through the origin, the signal as variance (eo_pipe's).

    Over the pairs below nine tenths of the brightest: an unsolved amp has no line of its own.
    """
    chosen = np.isfinite(flux) & np.isfinite(signal) & (flux > 0) & (signal > 0)
    chosen &= signal < 0.9 * np.max(signal, where=chosen, initial=0.0)
    if not chosen.any():
        return np.nan
    return float(np.sum(flux[chosen]) / np.sum(flux[chosen] ** 2 / signal[chosen]))


def _curve(row: Any) -> pd.DataFrame:
    """One amp's linearizer as the fraction by which it lowers the signal."""
    signal = np.asarray(row.input_ordinate, float)
    finite = signal[np.isfinite(signal) & (signal > 0)]
    if row.type in ("None", "LookupTable") or not len(finite):
        return pd.DataFrame(columns=["amp", "signal", "deviation"])
    values = np.geomspace(finite.min(), finite.max(), _CURVE_POINTS)
    linearized = apply_linearizer(row.type, np.asarray(row.coefficients, float), values)
    with np.errstate(invalid="ignore", divide="ignore"):
        deviation = _finite(values / linearized - 1.0)
    return pd.DataFrame({"amp": int(row.amp), "signal": values, "deviation": deviation})


def _finite(values: np.ndarray) -> np.ndarray:
    """Infinities (a line or a linearized signal of zero) as missing: a page holds JSON."""
    return np.where(np.isfinite(values), values, np.nan)


def _layers() -> list[dict[str, Any]]:
    x = {"field": "signal", "type": "quantitative", "scale": {"type": "log"}, "title": "ADU"}
    y = {"field": "deviation", "type": "quantitative", "title": "signal / line - 1"}
    shape = {"field": "fitted", "type": "nominal", "title": None}
    return [
        {
            "kind": "pair",
            "mark": {"type": "point", "filled": True, "size": 30},
            "params": [_ZOOM],
            "encoding": {
                "x": x,
                "y": y,
                "shape": shape,
                "color": {"value": "#1f77b4"},
                "tooltip": tooltip("amp", "pair", "signal", "deviation", "residual"),
            },
        },
        {
            "kind": "pair",
            "mark": {"type": "point", "filled": True, "size": 18, "color": "#2ca02c"},
            "encoding": {"x": x, "y": {**y, "field": "residual"}, "shape": shape},
        },
        {
            "kind": "linearizer",
            "mark": {"type": "line", "color": "#d62728"},
            "encoding": {"x": x, "y": y},
        },
        {
            "kind": "turnoff",
            "mark": {"type": "rule", "strokeDash": [4, 3], "color": "grey"},
            "encoding": {"x": {"field": "signal", "type": "quantitative", "title": "ADU"}},
        },
        {
            "kind": "summary",
            "mark": {"type": "text", "align": "left", "baseline": "top", "x": 4, "y": 4},
            "encoding": {"text": {"field": "label", "type": "nominal"}},
        },
    ]


def linearity_chart(linearity: pd.DataFrame, sensor: str) -> Chart | None:
    """Each amp's signal over the straight line of its flux, and what its linearizer does.

    Parameters
    ----------
    linearity : pandas.DataFrame
        The run's ``linearity``.
    sensor : str
        The sensor.

    Returns
    -------
    Chart or None
        None where the sensor has no linearity rows.
    """
    mine = linearity[linearity["sensor"] == sensor]
    if mine.empty:
        return None
    rows = list(mine.itertuples())
    summary = pd.DataFrame(
        {
            "amp": [int(r.amp) for r in rows],
            "label": [f"{r.type} ({r.status}); eo max dev {r.max_frac_dev:.2%}" for r in rows],
        }
    )
    frames = {
        "pair": pd.concat([_pairs(r) for r in rows], ignore_index=True),
        "linearizer": pd.concat([_curve(r) for r in rows], ignore_index=True),
        "turnoff": pd.DataFrame(
            {"amp": [int(r.amp) for r in rows], "signal": [r.turnoff for r in rows]}
        ).dropna(),
        "summary": summary,
    }
    spec, data = grid(frames, _layers())
    abscissa = mine["abscissa"].iloc[0]
    spec["title"] = f"{sensor}: linearity against {abscissa} (per amp)"
    caption = (
        f"Each pair's mean signal over the straight line of its {abscissa} (blue; the line "
        "is the linearity fit's: cp_pipe's reweighted line, or the spline's mean slope; "
        "for an amp left unsolved, a line through the origin below 90 % of its brightest "
        "pair), the "
        "same after the amp's linearizer (green: its residual), and the linearizer as the "
        "fraction by which it lowers the signal (red line; the lookup table's is not "
        "drawn). Circles were fitted, squares left out; the dashed line is the linearity "
        "turnoff. The panel's note gives the type, the status and eo_pipe's maximum "
        "fractional deviation."
    )
    return Chart(f"linearity_{file_stem(sensor)}", caption, spec, data)

"""Charts of the PTC: the curves with every model, each model's residuals, the covariances."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gpuptc.report.amp_table import full_covariance_model
from gpuptc.report.charts.spec import EXPOSURES_LOOKUP, Chart, exposures, grid, tooltip
from gpuptc.schema import PairStatus, file_stem

__all__ = ["covariance_chart", "in_bins", "model_residuals", "ptc_chart", "residuals_chart"]

_USES = ("used by the fits", "left out", "not Gaussian (KS test)")
"""How each pair of the PTC chart was used: dots, crosses, triangles."""

_ZOOM = {"name": "zoom", "select": "interval", "bind": "scales"}
"""Drag to pan, scroll to zoom, double-click to reset (shared by the panels of a grid)."""

_SWITCHES = [
    {
        "name": "units",
        "value": "ADU",
        "bind": {"input": "radio", "options": ["ADU", "e-"], "name": "units: "},
    },
    {
        "name": "shown",
        "value": "variance",
        "bind": {"input": "radio", "options": ["variance", "variance / mean"], "name": "y: "},
    },
]
"""The PTC chart's switches: ADU or electrons, the variance or the variance over the mean."""

_IN_UNITS = [
    {"calculate": "units == 'e-' ? datum.g : 1", "as": "f"},
    {"calculate": "datum.mean * datum.f", "as": "x"},
    {
        "calculate": "datum.var * datum.f * datum.f"
        " / (shown == 'variance / mean' ? datum.mean * datum.f : 1)",
        "as": "y",
    },
]
"""The PTC's mean and variance (or variance over mean) in the units the switches say (``g``:
the amp's gain; in electrons the variance over the mean is the ADU one times the gain)."""

_CURVE_POINTS = 16
"""Points a model's curve keeps per amp in a chart (a line needs no more)."""


def _thinned(curves: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """At most :data:`_CURVE_POINTS` points of each curve, evenly in its order of mean."""
    kept = []
    for _, rows in curves.sort_values("mean").groupby(keys, sort=False):
        if len(rows) > _CURVE_POINTS:
            rows = rows.iloc[
                np.unique(np.linspace(0, len(rows) - 1, _CURVE_POINTS).round().astype(int))
            ]
        kept.append(rows)
    return pd.concat(kept) if kept else curves


def _ptc_layers() -> list[dict[str, Any]]:
    """The PTC chart's layers: the pairs, the models' curves and each amp's turnoff."""
    x = {"field": "x", "type": "quantitative", "scale": {"type": "log"}, "title": "mean"}
    y = {
        "field": "y",
        "type": "quantitative",
        "scale": {"type": "log"},
        "title": "variance (or variance / mean)",
    }
    points = {
        "kind": "pair",
        "transform": _IN_UNITS,
        "mark": {"type": "point", "filled": True, "size": 25, "clip": True},
        "params": [_ZOOM],
        "encoding": {
            "x": x,
            "y": y,
            "shape": {
                "field": "use",
                "type": "nominal",
                "scale": {"domain": list(_USES), "range": ["circle", "cross", "triangle-up"]},
                "title": None,
                "legend": {"orient": "top"},
            },
            "color": {"value": "#333333"},
            "tooltip": tooltip("pair", "exptime", "mean", "var", "file1", "file2"),
        },
    }
    models = {
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
            "tooltip": tooltip("model", "mean", "var"),
        },
    }
    turnoff = {
        "kind": "turnoff",
        "transform": [{"calculate": "datum.turnoff * (units == 'e-' ? datum.g : 1)", "as": "x"}],
        "mark": {"type": "rule", "strokeDash": [4, 3], "color": "black"},
        "encoding": {"x": x, "tooltip": tooltip("amp", "turnoff")},
    }
    rolloff = {
        "kind": "rolloff",
        "transform": [{"calculate": "datum.rolloff * (units == 'e-' ? datum.g : 1)", "as": "x"}],
        "mark": {"type": "rule", "strokeDash": [1, 2], "color": "#b05000"},
        "encoding": {"x": x, "tooltip": tooltip("amp", "rolloff", "rolloff_tau")},
    }
    return [points, models, turnoff, rolloff]


def _uses(pairs: pd.DataFrame) -> pd.Series:
    """How each pair was used (:data:`_USES`)."""
    cut = pairs["status"].eq(PairStatus.NOT_GAUSSIAN) if "status" in pairs else False
    use = np.where(pairs["used"], _USES[0], np.where(cut, _USES[2], _USES[1]))
    return pd.Series(use, index=pairs.index)


def ptc_chart(
    pairs: pd.DataFrame,
    curves: pd.DataFrame,
    sensor: str,
    gains: pd.Series | None = None,
    turnoffs: pd.Series | None = None,
    rolloffs: pd.DataFrame | None = None,
) -> Chart:
    """Variance against mean per amp on log axes, every model's curve, models toggled.

    A switch shows the variance over the mean instead (1 / gain where the PTC is
    straight, falling as the brighter-fatter effect grows); with ``gains`` a second one
    shows the chart in electrons (mean x gain, variance x gain^2).

    Parameters
    ----------
    pairs, curves : pandas.DataFrame
        The run's ``pairs`` and ``curves`` (:func:`gpuptc.fitting.curves.model_curves`).
    sensor : str
        The sensor.
    gains : pandas.Series, optional
        Each amp's gain (e-/ADU), by amp: the adopted model's.
    turnoffs : pandas.Series, optional
        Each amp's turnoff (ADU), by amp, drawn as a dashed line.
    rolloffs : pandas.DataFrame, optional
        ``rolloff`` (ADU) and ``rolloff_tau`` by amp where cp_pipe's rolloff model ran,
        drawn as a dotted line.

    Returns
    -------
    Chart
        Hovering a pair gives its number, exposure time, files, mean and variance.
    """
    mine = pairs[(pairs["sensor"] == sensor) & np.isfinite(pairs["var"].to_numpy(float))].copy()
    mine["used"] = mine["used"].fillna(False).astype(bool)
    mine["use"] = _uses(mine)
    points = mine[["amp", "pair", "mean", "var", "used", "use"]]
    models = curves[(curves["sensor"] == sensor) & (curves["lag"] == "00")]
    lines = _thinned(models, ["amp", "model"])[["amp", "model", "mean", "value"]]
    lines = lines.rename(columns={"value": "var"})
    lines = lines[np.isfinite(lines["var"].to_numpy(float)) & (lines["var"] > 0)]
    scale = gains if gains is not None else pd.Series(dtype=float)
    limits = turnoffs if turnoffs is not None else pd.Series(dtype=float)
    rules = pd.DataFrame({"amp": limits.index, "turnoff": limits.to_numpy(float)})
    rolled = pd.DataFrame(columns=["rolloff", "rolloff_tau"]) if rolloffs is None else rolloffs
    rolled = rolled.rename_axis("amp").reset_index()[["amp", "rolloff", "rolloff_tau"]]
    frames = {"pair": points, "model": lines, "turnoff": rules, "rolloff": rolled}
    frames = {k: f.assign(g=f["amp"].map(scale).fillna(1.0)) for k, f in frames.items()}
    spec, data = grid(frames, _ptc_layers())
    spec["transform"] = [EXPOSURES_LOOKUP]
    units = _SWITCHES[0] if gains is not None else {"name": "units", "value": "ADU"}
    spec["params"] = [units, _SWITCHES[1]]
    spec["title"] = f"{sensor}: photon transfer curves"
    caption = (
        "Variance against mean per amp on log axes (with the switches below the chart: "
        "variance over mean, which is 1 / gain where the PTC is straight and falls as the "
        "brighter-fatter effect grows; in electrons, x the adopted gain): the pairs (dots "
        "used by the fits, crosses left out: saturated or outliers, triangles cut by the "
        "Gaussianity test of their difference image; hover for the pair, its files and "
        "values in ADU), each model's curve at the pairs' means (click a model in the "
        "legend to show it alone), the turnoff (dashed) and, where cp_pipe's rolloff "
        "model ran, the rolloff (dotted). Drag to pan, "
        "scroll to zoom, double-click to reset."
    )
    return Chart(f"ptc_{file_stem(sensor)}", caption, spec, {**data, "exposures": exposures(mine)})


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


_MOST_POINTS = 2000
"""Points a model's residual panel draws one by one (about 125 pairs of 16 amps); beyond
it, their mean and spread in bins of the signal, so that a 400-pair sensor's page stays
light and quick to draw."""

_BINS = 24
"""Bins of the signal (log-spaced) of a panel drawn in bins."""


def in_bins(frame: pd.DataFrame, keys: list[str], y: str) -> pd.DataFrame:
    """The mean and standard deviation of ``y`` per group of ``keys`` in bins of log mean.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows with ``mean`` (positive), ``y`` and ``keys``.
    keys : list of str
        The columns a bin stays within (a panel, a line).
    y : str
        The value binned.

    Returns
    -------
    pandas.DataFrame
        ``keys``, ``mean`` (the bin's geometric mean), ``y`` (the mean of ``y`` in it),
        ``low`` and ``high`` (that mean less and plus its standard deviation) and ``count``.

    Examples
    --------
    >>> rows = pd.DataFrame({"mean": [10.0, 10.0, 1000.0], "r": [1.0, 3.0, 5.0], "m": "a"})
    >>> in_bins(rows, ["m"], "r").round(2).to_dict("records")[0]
    {'m': 'a', 'mean': 10.0, 'r': 2.0, 'low': 0.59, 'high': 3.41, 'count': 2}
    """
    frame = frame[frame["mean"] > 0]
    edges = np.geomspace(frame["mean"].min(), frame["mean"].max(), _BINS + 1)
    index = np.clip(np.searchsorted(edges, frame["mean"], side="right") - 1, 0, _BINS - 1)
    binned = frame.assign(bin=index, log=np.log(frame["mean"]))
    grouped = binned.groupby([*keys, "bin"], sort=True)
    out = grouped.agg(log=("log", "mean"), value=(y, "mean"), spread=(y, "std"), count=(y, "size"))
    out = out.reset_index().drop(columns="bin")
    spread = out.pop("spread").fillna(0.0)
    out.insert(len(keys), "mean", np.exp(out.pop("log")))
    out.insert(len(keys) + 1, y, out.pop("value"))
    out.insert(len(keys) + 2, "low", out[y] - spread)
    out.insert(len(keys) + 3, "high", out[y] + spread)
    return out


def _residual_layers() -> list[dict[str, Any]]:
    """Each pair's residual, or each bin's mean and spread, and each model's numbers."""
    x = {"field": "mean", "type": "quantitative", "scale": {"type": "log"}, "title": "mean (ADU)"}
    y = {"field": "residual", "type": "quantitative", "title": "residual / error"}
    return [
        {
            "kind": "residual",
            "mark": {"type": "point", "filled": True, "size": 16, "opacity": 0.6},
            "params": [_ZOOM],
            "encoding": {"x": x, "y": y, "tooltip": tooltip("amp", "pair", "mean", "residual")},
        },
        {
            "kind": "bin",
            "mark": {"type": "rule", "opacity": 0.5},
            "encoding": {"x": x, "y": {**y, "field": "low"}, "y2": {"field": "high"}},
        },
        {
            "kind": "bin",
            "mark": {"type": "point", "filled": True, "size": 30},
            "params": [_ZOOM],
            "encoding": {
                "x": x,
                "y": y,
                "tooltip": tooltip("mean", "residual", "low", "high", "count"),
            },
        },
        {
            "kind": "summary",
            "mark": {
                "type": "text",
                "align": "left",
                "baseline": "top",
                "x": 4,
                "y": 4,
                "lineBreak": "\n",
            },
            "encoding": {"text": {"field": "label", "type": "nominal"}},
        },
    ]


def residuals_chart(
    pairs: pd.DataFrame, curves: pd.DataFrame, ptc: pd.DataFrame, sensor: str
) -> Chart | None:
    """Every model's residuals from its own model, in its own errors, with its chi^2.

    Where a model has more than :data:`_MOST_POINTS` residuals, every model is drawn as
    their mean and standard deviation in bins of the signal (:func:`in_bins`, every amp
    together).

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
    many = residuals.groupby("model")["residual"].size().max() > _MOST_POINTS
    summary = [
        {
            "model": model,
            "label": f"rms {np.sqrt(np.mean(rows['residual'] ** 2)):.2f}; sqrt(chi2/dof) "
            f"{np.sqrt(fits.loc[fits['model'] == model, 'chi2_dof']).median():.2f}"
            + (f"\n{len(rows)} residuals, in bins" if many else ""),
        }
        for model, rows in residuals.groupby("model", sort=False)
    ]
    if many:  # every model alike: the panels share their axes
        frames = {"bin": in_bins(residuals, ["model"], "residual")}
    else:
        frames = {"residual": residuals.assign(residual=residuals["residual"].round(2))}
    frames["summary"] = pd.DataFrame(summary)
    spec, data = grid(frames, _residual_layers(), facet="model", columns=3)
    spec["title"] = f"{sensor}: each model's residuals from its own model"
    caption = (
        "Variance less each model's own curve (eq. 20's C_00 for the full-covariance "
        "fits), in units of the errors that model's chi^2 uses (cp_pipe's weights; "
        "sqrt(var) for EOTEST's fit and the notebook's straight line and quadratic), for "
        "the pairs each fit took, every amp together. A model that fits scatters "
        "without trend with an rms close to the square root of its chi^2/dof (both "
        "written in the panel: the rms pooled over the amps, the root the median over "
        "them; a full-covariance fit's chi^2 also counts its other lags). Where a model "
        f"has more than {_MOST_POINTS} residuals, each is drawn as their mean and standard "
        "deviation in bins of the signal (hover for the count). The power law has no errors and is "
        "left out."
    )
    return Chart(f"residuals_{file_stem(sensor)}", caption, spec, data)


_MOST_COVARIANCES = 6000
"""Covariances the chart draws one by one (about 125 pairs of 16 amps at three lags);
beyond it, their mean and spread per amp and lag in bins of the signal."""

_NEAREST_LAGS = ("10", "20", "01", "02", "11")
"""The covariances drawn, eo_pipe's five: C_10 and C_20 (serial neighbours), C_01 and C_02
(parallel) and C_11."""


def _covariance_layers() -> list[dict[str, Any]]:
    """The covariance chart's layers: each used pair's C_ij / mean, the model's curves."""
    x = {"field": "mean", "type": "quantitative", "title": "mean (ADU)"}
    y = {"field": "ratio", "type": "quantitative", "title": "C_ij / mean"}
    colour = {
        "field": "lag",
        "type": "nominal",
        "scale": {"domain": list(_NEAREST_LAGS)},
        "title": "lag ij (i serial, j parallel; click: that one alone)",
        "legend": {"orient": "top"},
    }
    chosen = {"condition": {"param": "lags", "value": 1}, "value": 0.1}
    return [
        {
            "kind": "covariance",
            "mark": {"type": "point", "filled": True, "size": 16, "clip": True},
            "params": [
                _ZOOM,
                {"name": "lags", "select": {"type": "point", "fields": ["lag"]}, "bind": "legend"},
            ],
            "encoding": {
                "x": x,
                "y": y,
                "color": colour,
                "opacity": chosen,
                "tooltip": tooltip("lag", "pair", "mean", "cov", "ratio"),
            },
        },
        {
            "kind": "bin",
            "mark": {"type": "rule", "opacity": 0.5},
            "encoding": {
                "x": x,
                "y": {**y, "field": "low"},
                "y2": {"field": "high"},
                "color": colour,
                "opacity": chosen,
            },
        },
        {
            "kind": "bin",
            "mark": {"type": "point", "filled": True, "size": 24},
            "params": [
                _ZOOM,
                {"name": "lags", "select": {"type": "point", "fields": ["lag"]}, "bind": "legend"},
            ],
            "encoding": {
                "x": x,
                "y": y,
                "color": colour,
                "opacity": chosen,
                "tooltip": tooltip("lag", "mean", "ratio", "low", "high", "count"),
            },
        },
        {
            "kind": "model",
            "mark": {"type": "line", "strokeWidth": 1.2, "clip": True},
            "encoding": {"x": x, "y": y, "color": colour, "opacity": chosen},
        },
    ]


def covariance_chart(
    pairs: pd.DataFrame,
    covariances: pd.DataFrame,
    fullcov: pd.DataFrame,
    curves: pd.DataFrame,
    sensor: str,
) -> Chart | None:
    """eo_pipe's five covariances over the mean per amp, with the full-covariance model's curves.

    Parameters
    ----------
    pairs, covariances, fullcov, curves : pandas.DataFrame
        The run's tables.
    sensor : str
        The sensor.

    Returns
    -------
    Chart or None
        None when the sensor has no measured covariance at those lags (amps with too few
        pixels for them).
    """
    used = pairs[(pairs["sensor"] == sensor) & pairs["used"].fillna(False).astype(bool)]
    mine = covariances[covariances["sensor"] == sensor]
    mine = mine.assign(lag=mine["i"].astype(str) + mine["j"].astype(str))
    mine = mine[mine["lag"].isin(_NEAREST_LAGS)]
    points = mine.merge(used[["amp", "pair", "mean"]], on=["amp", "pair"])
    points["ratio"] = points["cov"] / points["mean"]
    points = points[np.isfinite(points["ratio"].to_numpy(float))]
    if points.empty:  # amps too small for covariances, or none asked for
        return None
    model = full_covariance_model(fullcov, sensor) if len(fullcov) else ""
    drawn = curves[
        (curves["sensor"] == sensor)
        & (curves["model"] == model)
        & curves["lag"].isin(_NEAREST_LAGS)
    ]
    lines = _thinned(drawn, ["amp", "lag"])[["amp", "lag", "mean", "value"]]
    lines = lines.assign(ratio=lines["value"] / lines["mean"]).drop(columns="value")
    points = points[["amp", "pair", "lag", "mean", "cov", "ratio"]]
    many = len(points) > _MOST_COVARIANCES
    frames = {"bin": in_bins(points, ["amp", "lag"], "ratio")} if many else {"covariance": points}
    spec, data = grid({**frames, "model": lines}, _covariance_layers())
    spec["title"] = f"{sensor}: nearest-lag covariances over the mean" + (
        f", {model} model" if len(lines) else ""
    )
    caption = (
        "C_10, C_20, C_01, C_02 and C_11 over the mean per amp (the pairs used; eo_pipe's "
        "brighter-fatter figure; the slopes of C_10 and C_01 are in bfk.parquet) with the "
        "full-covariance model's curves (eq. 20) where it was fitted: they grow with the "
        "signal (the brighter-fatter effect), and the model should follow the points at "
        "every signal. Click a lag in the legend to show it alone. With more than "
        f"{_MOST_COVARIANCES} points, each amp's and lag's are drawn as their mean and "
        "standard deviation in bins of the signal."
    )
    return Chart(f"covariances_{file_stem(sensor)}", caption, spec, data)

"""Charts of the per-pair gains and of each pair's flats: the notebook's figures, redrawn."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.report.charts.spec import (
    CONFIG,
    EXPOSURES_LOOKUP,
    SCHEMA,
    Chart,
    exposures,
    grid,
    rounded,
    tooltip,
)
from gpuptc.schema import file_stem

__all__ = [
    "gain_against_exposure_time",
    "gain_histograms",
    "level_mismatch",
    "saturation_onsets",
]


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
    return [rounded(low - margin), rounded(high + margin)]


_STATES = ("below saturation", "saturated (at the edge when off the axis)")

_EXPTIME = {
    "field": "exptime",
    "type": "quantitative",
    "scale": {"type": "log"},
    "axis": {"tickCount": 4, "labelOverlap": "greedy"},
    "title": "exposure time (s)",
}
_ZOOM = {"name": "zoom", "select": "interval", "bind": "scales"}


def _gain_layers(domain: tuple[float, float]) -> list[dict[str, Any]]:
    """The gain chart's layers: the pairs (saturated ones marked), each amp's onset."""
    state = {"field": "state", "type": "nominal", "title": None}
    points = {
        "kind": "pair",
        "transform": [
            {"calculate": f"datum.saturated ? '{_STATES[1]}' : '{_STATES[0]}'", "as": "state"},
            {"calculate": f"clamp(datum.gain, {domain[0]}, {domain[1]})", "as": "shown"},
        ],
        "mark": {"type": "point", "filled": True, "size": 30, "clip": True},
        "params": [_ZOOM],
        "encoding": {
            "x": _EXPTIME,
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
            "tooltip": tooltip("pair", "exptime", "gain", "file1", "file2"),
        },
    }
    onset = {
        "kind": "onset",
        "mark": {"type": "rule", "strokeDash": [4, 3], "color": "black"},
        "encoding": {
            "x": {**_EXPTIME, "field": "onset"},
            "tooltip": tooltip("last_unsaturated", "first_saturated", "onset"),
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
    points = mine[["amp", "pair", "gain", "saturated"]]
    onsets = saturation_onsets(mine, turnoffs)
    spec, data = grid({"pair": points, "onset": onsets}, _gain_layers((low, high)))
    spec["transform"] = [EXPOSURES_LOOKUP]
    spec["title"] = f"{sensor}: per-pair gain against exposure time"
    caption = (
        f"Per-pair gain ({column}) against exposure time, one panel per amp: it rises "
        "slowly with the signal (the brighter-fatter effect raises a per-pair gain by "
        "|a00| x signal) and runs away at saturation. The axis is set by the pairs below "
        "saturation (mean within the PTC turnoff); saturated pairs are red triangles, at the "
        "axis edge when off it (hover for their value). The dashed line is the amp's "
        "saturation onset, between its last pair below saturation and its first above."
    )
    data = {**data, "exposures": exposures(mine)}
    return Chart(f"gain_vs_exptime_{file_stem(sensor)}", caption, spec, data)


_BINS = 20
"""Bins of each amp's histogram of per-pair gains (over that amp's own range)."""


def _histograms(gains: pd.DataFrame) -> pd.DataFrame:
    """Per amp, :data:`_BINS` bins over its own gains: ``amp``, ``low``, ``high``, ``pairs``."""
    rows = []
    for amp, values in gains.groupby("amp", sort=True)["gain"]:
        counts, edges = np.histogram(values.to_numpy(float), bins=_BINS)
        rows.append(
            pd.DataFrame({"amp": amp, "low": edges[:-1], "high": edges[1:], "pairs": counts})
        )
    return pd.concat(rows) if rows else pd.DataFrame(columns=["amp", "low", "high", "pairs"])


def gain_histograms(pairs: pd.DataFrame, column: str, sensor: str) -> Chart:
    """The notebook's per-amp histograms of the used pairs' gains, with their medians.

    Each amp's bins span its own gains (the amps' gains differ by more than a bin).

    Parameters
    ----------
    pairs : pandas.DataFrame
        The run's ``pairs``.
    column : str
        The per-pair gain (the preset's; its median per amp is the ``rhl`` model).
    sensor : str
        The sensor.

    Returns
    -------
    Chart
    """
    mine = pairs[(pairs["sensor"] == sensor) & pairs["used"].fillna(False).astype(bool)]
    gains = mine[["amp", column]].rename(columns={column: "gain"})
    gains = gains[np.isfinite(gains["gain"].to_numpy(float))]
    medians = gains.groupby("amp", as_index=False)["gain"].median()
    medians["label"] = [f"median {g:.4g}" for g in medians["gain"]]
    gain = {"field": "gain", "type": "quantitative", "title": "per-pair gain (e-/ADU)"}
    axis = {"tickCount": 3, "labelOverlap": "greedy"}
    layers = [
        {
            "kind": "bins",
            "mark": {"type": "rect", "opacity": 0.7},
            "encoding": {
                "x": {**gain, "field": "low", "scale": {"zero": False}, "axis": axis},
                "x2": {"field": "high"},
                "y": {"field": "pairs", "type": "quantitative", "title": "pairs"},
                "tooltip": tooltip("low", "high", "pairs"),
            },
        },
        {
            "kind": "median",
            "mark": {"type": "rule", "color": "black"},
            "encoding": {"x": gain, "tooltip": tooltip("amp", "gain")},
        },
        {
            "kind": "median",
            "mark": {"type": "text", "align": "right", "baseline": "top", "x": "width", "y": 4},
            "encoding": {"text": {"field": "label", "type": "nominal"}},
        },
    ]
    spec, data = grid({"bins": _histograms(gains), "median": medians}, layers)
    spec["resolve"] = {"scale": {"x": "independent"}}
    spec["title"] = f"{sensor}: per-pair gain of the pairs used ({column})"
    caption = (
        f"Per-pair gain ({column}) of the pairs used, per amp, each over its own range, "
        "with its median (the rhl model): the tail to high gains is the brighter-fatter "
        "rise (a pair's gain grows by |a00| x its signal), not cosmic rays; outliers "
        "below come from flats that differ in level."
    )
    return Chart(f"gain_hist_{file_stem(sensor)}", caption, spec, data)


def level_mismatch(pairs: pd.DataFrame, sensor: str, threshold: float) -> Chart:
    """How much the two flats of each pair differ in level (median over amps), flag lines.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The run's ``pairs``.
    sensor : str
        The sensor.
    threshold : float
        The mismatch beyond which a pair is flagged.

    Returns
    -------
    Chart
    """
    mine = pairs[pairs["sensor"] == sensor]
    per_pair = mine.groupby("pair", as_index=False).agg(
        exptime=("exptime", "first"), mismatch=("level_mismatch", "median")
    )
    per_pair["percent"] = 100 * per_pair["mismatch"]
    limits = pd.DataFrame({"percent": [-100 * threshold, 100 * threshold]})
    percent = {"field": "percent", "type": "quantitative", "title": "mean2 / mean1 - 1 (%)"}
    spec = {
        "$schema": SCHEMA,
        "title": f"{sensor}: level mismatch of the flats of each pair",
        "width": 600,
        "height": 220,
        "layer": [
            {
                "data": {"name": "pairs"},
                "mark": {"type": "point", "filled": True, "size": 40},
                "params": [_ZOOM],
                "encoding": {
                    "x": _EXPTIME,
                    "y": percent,
                    "tooltip": tooltip("pair", "exptime", "percent"),
                },
            },
            {
                "data": {"name": "limits"},
                "mark": {"type": "rule", "color": "#d62728", "strokeDash": [4, 3]},
                "encoding": {"y": percent},
            },
        ],
        "config": CONFIG,
    }
    caption = (
        "mean2 / mean1 - 1 of each pair (median over amps, in %): how much the two flats of "
        "a pair differ in level; pairs beyond the red lines are flagged (mismatched)."
    )
    return Chart(
        f"mismatch_{file_stem(sensor)}",
        caption,
        spec,
        {"pairs": per_pair[["pair", "exptime", "percent"]], "limits": limits},
    )

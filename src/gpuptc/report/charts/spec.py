"""What every chart is made of: the :class:`Chart`, its data as the page holds them, shared pieces.

A chart's specification names its data sets (``{"data": {"name": ...}}``) and the chart
carries them as tables. A page holds each data set column by column
(:func:`data_json`: a number once per cell, not once per key and cell) and the page's
script turns them back into rows (:func:`records` does the same here, for the PNGs), so
a 400-pair sensor's page stays small.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CONFIG",
    "EXPOSURES_LOOKUP",
    "PANEL",
    "SCHEMA",
    "Chart",
    "blocks",
    "data_json",
    "exposures",
    "grid",
    "heatmap",
    "records",
    "rounded",
    "rounded_array",
    "spec_json",
    "tooltip",
]

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
PANEL = 210
"""Width and height (px) of one amp's panel of a 4 x 4 grid: the grid fits 1280 px."""
_FONT = {"labelFontSize": 11, "titleFontSize": 12}
CONFIG = {"axis": _FONT, "legend": {**_FONT, "symbolSize": 80}, "header": _FONT}
"""Fonts readable at 100 % on a 1280 px screen."""

_DIGITS = 5
"""Significant digits of the numbers a chart carries (its data are most of a page)."""


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
        The Vega-Lite specification; its data are named (``{"data": {"name": "points"}}``).
    data : dict of str to pandas.DataFrame
        The named data sets, as tables (a ``kind`` column says which layer a row is for).
    failure : str or None
        Why it could not be built (then ``spec`` is empty and the page says so).
    """

    name: str
    caption: str
    spec: dict[str, Any]
    data: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    failure: str | None = None

    def inline(self) -> dict[str, Any]:
        """The specification with its data sets as rows (``datasets``): what a page draws.

        Examples
        --------
        >>> chart = Chart("c", "", {"data": {"name": "d"}}, {"d": pd.DataFrame({"x": [1.5]})})
        >>> chart.inline()["datasets"]
        {'d': [{'x': 1.5}]}
        """
        return {**self.spec, "datasets": {k: records(frame) for k, frame in self.data.items()}}


def _escaped(text: str) -> str:
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def spec_json(spec: Mapping[str, Any]) -> str:
    r"""The specification (or any JSON value) as text safe inside a page's ``<script>`` element.

    ``<``, ``>`` and ``&`` become ``\u003c``, ``\u003e`` and ``\u0026``, so that no
    value from the data (a file name, a header) can close the element or become markup.

    Examples
    --------
    >>> spec_json({"title": "</script><b>"})
    '{"title":"\\u003c/script\\u003e\\u003cb\\u003e"}'
    """
    return _escaped(json.dumps(spec, allow_nan=False, default=_plain, separators=(",", ":")))


def data_json(data: Mapping[str, pd.DataFrame]) -> str:
    """A chart's data sets as the page holds them.

    The :func:`blocks` of each, escaped as in :func:`spec_json`.
    """
    return spec_json({name: blocks(frame) for name, frame in data.items()})


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def rounded(value: float) -> float:
    """``value`` to the digits a chart carries (scales and data alike, so they agree).

    Examples
    --------
    >>> rounded(1234567.0), rounded(0.000123456789)
    (1234600.0, 0.00012346)
    """
    return float(f"{value:.{_DIGITS}g}")


def rounded_array(values: np.ndarray) -> np.ndarray:
    """Finite ``values`` to the digits a chart carries, as :func:`rounded` does one by one.

    Examples
    --------
    >>> rounded_array(np.array([1234567.0, 0.000123456789, -2.5, 0.0])).tolist()
    [1234600.0, 0.00012346, -2.5, 0.0]
    """
    magnitude = np.floor(np.log10(np.abs(np.where(values == 0, 1.0, values))))
    places = np.clip(_DIGITS - 1 - magnitude, -300, 300).astype(int)  # no overflow
    fine = places >= 0  # divide by a power of ten (exact), or multiply by one (exact)
    out = np.empty_like(values)
    scale = 10.0 ** np.abs(places)
    out[fine] = np.round(values[fine] * scale[fine]) / scale[fine]
    out[~fine] = np.round(values[~fine] / scale[~fine]) * scale[~fine]
    return out


def _cells(column: pd.Series) -> list[Any]:
    """One column's cells as JSON values.

    Numbers rounded (whole ones as integers), files by their names alone, missing values
    (NaN, infinities, None) as None.
    """
    kind = column.dtype.kind
    if kind in "iub":  # booleans as 1 and 0: a chart tests them as true and false
        return column.to_numpy().astype(int).tolist()
    if kind == "f":
        values = column.to_numpy(float)
        finite = np.isfinite(values)
        shown = np.where(finite, rounded_array(np.where(finite, values, 0.0)), 0.0)
        cells: list[Any] = shown.tolist()
        for i in np.flatnonzero(finite & (shown == np.floor(shown)) & (np.abs(shown) < 1e15)):
            cells[i] = int(cells[i])
        for i in np.flatnonzero(~finite):
            cells[i] = None
        return cells
    cells = column.astype(object).tolist()
    if str(column.name).startswith("file"):
        return [None if pd.isna(f) else os.path.basename(str(f)) for f in cells]
    return [None if pd.isna(v) else (v.item() if isinstance(v, np.generic) else v) for v in cells]


_BLOCK_KEYS = ("kind", "model", "lag", "amp")
"""Columns a data set is split into blocks by (where it has them): each block holds its
value of each once."""


def blocks(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table column by column, in blocks of one kind, model, lag and amp.

    Each block holds its row count ``n``, its ``constant`` cells (the block's keys, and
    every column with one value in all of its rows) and its other ``columns`` as lists
    (None for a missing value); a column with no value in a block is left out of it.

    Examples
    --------
    >>> table = pd.DataFrame({"kind": ["a", "a", "b"], "x": [1.0, 2.5, np.nan], "y": 7})
    >>> blocks(table)
    [{'n': 2, 'constant': {'kind': 'a', 'y': 7}, 'columns': {'x': [1, 2.5]}}, {'n': 1, 'constant': {'kind': 'b', 'y': 7}, 'columns': {}}]
    """  # noqa: E501
    keys = [key for key in _BLOCK_KEYS if key in frame]
    every = {str(c): _cells(frame[c]) for c in frame.columns}
    groups = frame.groupby(keys, sort=False, dropna=False).indices if keys else {(): None}
    out = []
    for rows in groups.values():
        picked = range(len(frame)) if rows is None else rows.tolist()
        cells = {k: [v[i] for i in picked] for k, v in every.items()}
        present = {k: v for k, v in cells.items() if any(x is not None for x in v)}
        constant = {k: v[0] for k, v in present.items() if all(x == v[0] for x in v)}
        columns = {k: v for k, v in present.items() if k not in constant}
        out.append({"n": len(picked), "constant": constant, "columns": columns})
    return out


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows a page's script makes of :func:`blocks` (missing values left out).

    Examples
    --------
    >>> records(pd.DataFrame({"pair": [1, 2], "mean": [10.0, np.nan]}))
    [{'pair': 1, 'mean': 10}, {'pair': 2}]
    """
    rows = []
    for block in blocks(frame):
        for i in range(block["n"]):
            row = dict(block["constant"])
            row.update({k: v[i] for k, v in block["columns"].items() if v[i] is not None})
            rows.append(row)
    return rows


EXPOSURES_LOOKUP = {
    "lookup": "pair",
    "from": {
        "data": {"name": "exposures"},
        "key": "pair",
        "fields": ["exptime", "file1", "file2"],
    },
}
"""Each pair's exposure time and files, looked up by pair from :func:`exposures` (held once
per pair, not once per amp). At the top of a faceted chart: a facet's layers cannot look
up another data set."""


def exposures(pairs: pd.DataFrame) -> pd.DataFrame:
    """One sensor's pairs, one row each: ``pair``, ``exptime``, ``file1``, ``file2``."""
    return pairs[["pair", "exptime", "file1", "file2"]].drop_duplicates("pair")


def tooltip(*fields: str) -> list[dict[str, Any]]:
    """A tooltip of these fields, each titled by its name."""
    return [{"field": name, "title": name} for name in fields]


def grid(
    frames: Mapping[str, pd.DataFrame],
    layers: list[dict[str, Any]],
    facet: str = "amp",
    columns: int = 4,
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """``layers`` faceted (by amp, four wide) into a grid on shared scales.

    A facet takes one data set: ``frames`` are stacked into the data set ``points`` with a
    ``kind`` column naming each (its key), and each layer keeps its own kind (``kind`` in
    the layer, turned into a filter here); a layer whose kind has no rows is left out.

    Returns
    -------
    spec : dict
        The specification (no title).
    data : dict of str to pandas.DataFrame
        ``{"points": stacked}``.
    """
    frames = {kind: frame for kind, frame in frames.items() if len(frame)}
    stacked = pd.concat([frame.assign(kind=kind) for kind, frame in frames.items()])
    layers = [layer for layer in layers if layer["kind"] in frames]
    filtered = [
        {
            **{k: v for k, v in layer.items() if k not in ("kind", "transform")},
            "transform": [
                {"filter": {"field": "kind", "equal": layer["kind"]}},
                *layer.get("transform", []),
            ],
        }
        for layer in layers
    ]
    header = {"labelExpr": "'amp ' + datum.value"} if facet == "amp" else {}
    spec = {
        "$schema": SCHEMA,
        "data": {"name": "points"},
        "facet": {
            "field": facet,
            "type": "ordinal" if facet == "amp" else "nominal",
            "title": None,
            "header": header,
        },
        "columns": columns,
        "spec": {"width": PANEL, "height": PANEL, "layer": filtered},
        "config": CONFIG,
    }
    return spec, {"points": stacked.reset_index(drop=True)}


def heatmap(
    cell: dict[str, Any],
    colour: dict[str, Any],
    legend: str,
    hover: list[dict[str, Any]],
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
                    "tooltip": hover,
                },
            },
            {
                "mark": {"type": "text", **label},
                "encoding": {**cell, "text": {"field": text["field"], "type": "nominal"}},
            },
        ]
    }

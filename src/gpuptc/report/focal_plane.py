"""Maps of per-amp results over the focal plane, for runs of many sensors.

Each sensor is drawn as a square of its amplifiers (2 rows of 8, amp 1 lower left, as the
assembled CCD of the report's images) at its place in the camera: raft ``Rrc`` and slot
``Src`` give the row (first digit) and column (second digit) of a 5 x 5 grid of rafts of
3 x 3 sensors; a corner raft's sensors take the slots they stand in (its wavefront
half-sensors, one row of 8 amps each, the lower and upper halves of its slot 00:
:data:`gpuptc.raws.camera.CORNER_SLOTS`). Sensors whose place is not known (no
RAFTBAY/CCDSLOT, or two sensors on the same slot) are laid out in reading order instead,
each labelled with its name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure

from gpuptc.products.focal_plane import amp_kernels
from gpuptc.raws.camera import grid_place
from gpuptc.raws.layout import amp_cell

__all__ = [
    "BF_QUANTITIES",
    "LINEARITY_QUANTITIES",
    "MAP_QUANTITIES",
    "amp_cell",
    "bf_maps",
    "focal_plane_maps",
    "linearity_maps",
    "sensor_places",
    "vendor_histograms",
]

AMP_HEIGHT = 4
"""Height of an amp's cell in amp widths (an amp is 512 x 2000 pixels)."""
_SENSOR = 8
"""A sensor's side, in amp widths."""
_GAP = 2
"""Between sensors of one raft."""
_RAFT_GAP = 3
"""Between rafts."""
_NAMED = 36
"""Up to this many sensors, each is labelled with its name."""

MAP_QUANTITIES: tuple[tuple[str, str], ...] = (
    ("gain", "gain (e-/ADU)"),
    ("noise", "PTC noise (e-)"),
    ("turnoff", "turnoff (ADU)"),
    ("a00", "a00 (1/e-)"),
    ("full_well", "full well (e-)"),
    ("noise_over_overscan", "PTC noise / overscan noise"),
)
"""The ``focal_plane`` columns mapped (the adopted model's), with their labels."""

_VENDOR_COLOURS = {"e2v": "tab:blue", "itl": "tab:orange"}
"""Each vendor's colour in the histograms (others: matplotlib's cycle)."""

LINEARITY_QUANTITIES: tuple[tuple[str, str], ...] = (
    ("max_frac_dev", "max. fractional deviation (eo_pipe)"),
    ("eo_linearity_turnoff", "linearity turnoff (ADU, eo_pipe)"),
    ("turnoff", "linearity turnoff (ADU, cp_pipe)"),
    ("residual_sigma_mad", "linearizer's residual (MAD sigma)"),
)
"""The ``linearity`` columns mapped, with their labels."""

BF_QUANTITIES: tuple[tuple[str, str], ...] = (
    ("k00", "kernel centre K_00 (1/e-)"),
    ("bf_slope_x", "slope of cov10 over the mean (eo_pipe)"),
    ("bf_slope_y", "slope of cov01 over the mean (eo_pipe)"),
    ("bf_xcorr", "cov10 at the faintest pair (ADU^2, eo_pipe)"),
)
"""The brighter-fatter quantities mapped (``bfk`` columns and each kernel's centre)."""


def sensor_places(
    sensors: list[str], manifest: pd.DataFrame | None
) -> dict[str, tuple[float, int]]:
    """Each sensor's ``(row, column)`` among the camera's 15 x 15 sensor slots.

    Parameters
    ----------
    sensors : list of str
        The sensors to place.
    manifest : pandas.DataFrame or None
        The run's manifest (``sensor``, ``raftbay``, ``ccdslot``).

    Returns
    -------
    dict of str to (int, int)
        Empty unless every sensor has a raft and slot of its own.
    """
    if manifest is None or not {"raftbay", "ccdslot"} <= set(manifest.columns):
        return {}
    known = manifest.dropna(subset=["raftbay", "ccdslot"]).groupby("sensor").first()
    places = {}
    for sensor in sensors:
        if sensor not in known.index:
            return {}
        place = grid_place(known.at[sensor, "raftbay"], known.at[sensor, "ccdslot"])
        if place is None:
            return {}
        places[sensor] = place
    return places if len(set(places.values())) == len(places) else {}


def _origins(sensors: list[str], places: Mapping[str, tuple[float, int]]) -> dict[str, tuple]:
    """Lower-left corner of each sensor's square, in amp widths.

    A wavefront half-sensor (8 amps: one row, half a square) placed half a slot up
    starts half a square up.
    """
    if places:
        return {
            s: (
                col * (_SENSOR + _GAP) + (col // 3) * _RAFT_GAP,
                int(row) * (_SENSOR + _GAP)
                + (int(row) // 3) * _RAFT_GAP
                + (row - int(row)) * _SENSOR,
            )
            for s, (row, col) in places.items()
        }
    across = math.ceil(math.sqrt(len(sensors)))
    step = _SENSOR + 2 * _GAP
    rows = math.ceil(len(sensors) / across)
    return {
        s: ((k % across) * step, (rows - 1 - k // across) * (step + _GAP))
        for k, s in enumerate(sensors)
    }


def _cells(
    values: pd.DataFrame, origins: Mapping[str, tuple]
) -> tuple[list[np.ndarray], np.ndarray]:
    """One rectangle per amp row of ``values`` (sensor, amp, value) and its value."""
    namps = values.groupby("sensor")["amp"].max().to_dict()
    polygons, shown = [], []
    for row in values.itertuples():
        x0, y0 = origins[row.sensor]
        r, c = amp_cell(int(row.amp), int(namps[row.sensor]))
        x, y = x0 + c, y0 + r * AMP_HEIGHT
        top = y + AMP_HEIGHT
        polygons.append(np.array([(x, y), (x + 1, y), (x + 1, top), (x, top)]))
        shown.append(row.value)
    return polygons, np.ma.masked_invalid(np.asarray(shown, float))


def _percentile_range(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The ``low`` to ``high`` percentiles of the finite (unmasked) values.

    So that one dead amp does not squeeze the others; (0, 1) without any, widened where
    they are one value.
    """
    finite = values.compressed() if np.ma.isMaskedArray(values) else values[np.isfinite(values)]
    if not len(finite):
        return 0.0, 1.0
    bottom, top = np.percentile(finite, [low, high])
    return float(bottom), float(top if top > bottom else bottom + abs(bottom) * 1e-3 + 1e-12)


def _robust_norm(values: np.ndarray) -> Normalize:
    """A colour scale over the 2nd-98th percentiles."""
    return Normalize(*_percentile_range(values, 2, 98))


def _label_sensors(ax: Axes, origins: Mapping[str, tuple], places: Mapping) -> None:
    """Raft rows and columns on the axes when placed; names over the squares when few."""
    if len(origins) <= _NAMED:
        for sensor, (x0, y0) in origins.items():
            where = places.get(sensor)
            name = sensor if where is None else f"{_slot_name(where)}\n{sensor}"
            ax.text(
                x0 + _SENSOR / 2, y0 + _SENSOR + 0.15, name, ha="center", va="bottom", fontsize=6
            )
    if not places:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("sensors in name order (raft and slot not known)")
        ax.set_ylabel("each square: 2 rows of 8 amps, amp 1 lower left")
        return
    step = 3 * (_SENSOR + _GAP) + _RAFT_GAP
    centre = 1.5 * (_SENSOR + _GAP) - _GAP / 2
    columns = sorted({col // 3 for _, col in places.values()})
    rows = sorted({row // 3 for row, _ in places.values()})
    ax.set_xticks([c * step + centre for c in columns], [str(c) for c in columns])
    ax.set_yticks([r * step + centre for r in rows], [str(r) for r in rows])
    ax.set_xlabel("raft column (c of Rrc)")
    ax.set_ylabel("raft row (r of Rrc)")


def _slot_name(place: tuple[float, int]) -> str:
    """``Rrc_Src`` of a science slot; a corner raft's sensor by the slot it stands in."""
    row, col = int(place[0]), place[1]
    return f"R{row // 3}{col // 3}_S{row % 3}{col % 3}"


def focal_plane_maps(summary: pd.DataFrame, manifest: pd.DataFrame | None) -> Figure | None:
    """Each amp's :data:`MAP_QUANTITIES` at its place on the focal plane.

    Parameters
    ----------
    summary : pandas.DataFrame
        The run's ``focal_plane`` table (:func:`gpuptc.products.focal_plane.focal_plane_table`):
        each amp's adopted model's numbers.
    manifest : pandas.DataFrame or None
        The run's manifest, for each sensor's raft and slot.

    Returns
    -------
    matplotlib.figure.Figure or None
        None for fewer than two sensors.
    """
    if summary.empty:
        return None
    model = str(summary["model"].iloc[0])
    return _maps(summary, MAP_QUANTITIES, manifest, model)


def vendor_histograms(summary: pd.DataFrame) -> Figure | None:
    """Histograms of each amp's :data:`MAP_QUANTITIES`, one colour per vendor.

    Parameters
    ----------
    summary : pandas.DataFrame
        The run's ``focal_plane`` table (``vendor`` and the quantities).

    Returns
    -------
    matplotlib.figure.Figure or None
        None for fewer than two sensors.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> summary = pd.DataFrame({"sensor": np.repeat(["E", "I"], 16), "amp": 1,
    ...     "vendor": np.repeat(["e2v", "itl"], 16),
    ...     **{q: rng.normal(1, 0.1, 32) for q, _ in MAP_QUANTITIES}})
    >>> fig = vendor_histograms(summary)
    >>> fig.axes[0].get_legend_handles_labels()[1]
    ['e2v: 16 amps, median 1.03', 'itl: 16 amps, median 0.978']
    """
    if summary["sensor"].nunique() < 2:
        return None
    vendors = summary["vendor"].fillna("unknown").astype(str)
    rows = math.ceil(len(MAP_QUANTITIES) / 3)
    fig = Figure(figsize=(13, 4.2 * rows), layout="constrained")
    axes = fig.subplots(rows, 3, squeeze=False)
    for ax, (column, label) in zip(axes.ravel(), MAP_QUANTITIES, strict=False):
        values = pd.to_numeric(summary[column], errors="coerce")
        edges = _bin_edges(values)
        for vendor in sorted(vendors.unique()):
            mine = values[(vendors == vendor) & np.isfinite(values)]
            if not len(mine):
                continue
            colour = _VENDOR_COLOURS.get(vendor.lower())
            described = f"{vendor}: {len(mine)} amps, median {float(mine.median()):.3g}"
            ax.hist(mine.clip(edges[0], edges[-1]), edges, histtype="step", linewidth=1.5,
                    color=colour, label=described)  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel("amps")
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(
        "Every amp's numbers by vendor (values beyond the 1st and 99th percentiles are "
        "counted in the end bins)",
        fontsize=10,
    )
    return fig


def _bin_edges(values: pd.Series, bins: int = 40) -> np.ndarray:
    """Edges over the 1st to 99th percentiles of the finite values."""
    return np.linspace(*_percentile_range(values.to_numpy(float), 1, 99), bins + 1)


def linearity_maps(linearity: pd.DataFrame, manifest: pd.DataFrame | None) -> Figure | None:
    """eo_pipe's and cp_pipe's linearity numbers of every amp, on the focal plane.

    Parameters
    ----------
    linearity : pandas.DataFrame
        The run's ``linearity`` table.
    manifest : pandas.DataFrame or None
        The run's manifest, for each sensor's raft and slot.

    Returns
    -------
    matplotlib.figure.Figure or None
        None for fewer than two sensors.
    """
    if linearity.empty:
        return None
    kinds = ", ".join(sorted(linearity["type"].astype(str).unique()))
    return _maps(linearity, LINEARITY_QUANTITIES, manifest, kinds)


def bf_maps(kernels: pd.DataFrame, manifest: pd.DataFrame | None) -> Figure | None:
    """Each amp's brighter-fatter kernel centre and eo_pipe's statistics, on the focal plane.

    Parameters
    ----------
    kernels : pandas.DataFrame
        The run's ``bf_kernel`` table (``bfk.parquet``); the detectors' rows are left out.
    manifest : pandas.DataFrame or None
        The run's manifest, for each sensor's raft and slot.

    Returns
    -------
    matplotlib.figure.Figure or None
        None for fewer than two sensors.
    """
    amps = amp_kernels(kernels)
    if amps.empty:
        return None
    method = ", ".join(sorted(amps["method"].astype(str).unique()))
    return _maps(amps, BF_QUANTITIES, manifest, method)


def _maps(
    table: pd.DataFrame,
    quantities: tuple[tuple[str, str], ...],
    manifest: pd.DataFrame | None,
    subtitle: str,
) -> Figure | None:
    """One map per quantity of ``table`` (``sensor``, ``amp`` and the quantities' columns)."""
    sensors = sorted(table["sensor"].unique())
    if len(sensors) < 2:
        return None
    places = sensor_places(sensors, manifest)
    origins = _origins(sensors, places)
    rows = math.ceil(len(quantities) / 2)
    fig = Figure(figsize=(13, 5.75 * rows), layout="constrained")
    axes = fig.subplots(rows, 2)
    for ax, (column, label) in zip(axes.ravel(), quantities, strict=True):
        values = table[["sensor", "amp", column]].rename(columns={column: "value"})
        polygons, shown = _cells(values, origins)
        cmap = _colour_map()
        cells = PolyCollection(polygons, array=shown, cmap=cmap, norm=_robust_norm(shown))
        cells.set_edgecolor("face")
        ax.add_collection(cells)
        ax.autoscale_view()
        ax.set_aspect("equal")
        fig.colorbar(cells, ax=ax, label=label, extend="both", shrink=0.85)
        ax.set_title(f"{label}, {subtitle}", fontsize=10)
        _label_sensors(ax, origins, places)
    fig.suptitle(
        f"{len(sensors)} sensors: per-amp results at each sensor's place (grey: no value; "
        "colours saturate beyond the 2nd and 98th percentiles)",
        fontsize=10,
    )
    return fig


def _colour_map() -> Colormap:
    """viridis; grey where there is no value, red and magenta beyond the scale."""
    return colormaps["viridis"].with_extremes(bad="0.8", over="red", under="magenta")

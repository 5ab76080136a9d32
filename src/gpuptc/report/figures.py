"""Report figures: each function draws one figure from the result tables.

The functions return :class:`matplotlib.figure.Figure` objects made without pyplot (no
global state, so figures can be drawn in threads); :func:`png` renders one with Agg. Grids
of amplifiers share their axes and label only the outer panels, which keeps them cheap to
draw.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import EngFormatter, FixedFormatter, LogLocator, MaxNLocator

__all__ = [
    "DPI",
    "PTC_SCALES",
    "amp_grid",
    "amp_summary",
    "comparison_figure",
    "covariance_figure",
    "covariance_grid",
    "drawable",
    "focal_plane_map",
    "gain_histograms",
    "gains_by_method",
    "images_figure",
    "level_mismatch",
    "png",
    "ptc_grid",
]

DPI = 120
"""Resolution of every PNG of the report."""

_COLOURS = {
    "expapprox": "C0",
    "fullcov": "C1",
    "fullcov_nob": "C2",
    "linear": "C3",
    "quadratic": "C4",
    "powerlaw": "C5",
    "rhl": "C6",
}


def amp_grid(
    namps: int, title: str, xlabel: str, ylabel: str, size: float = 3.0
) -> tuple[Figure, np.ndarray]:
    """A figure with one panel per amplifier (4 x 4 for 16), axes shared, outer ones labelled."""
    side = int(np.ceil(np.sqrt(namps)))
    fig = Figure(figsize=(size * side, size * side * 0.75))
    axes = fig.subplots(side, side, sharex=True, sharey=True, squeeze=False)
    fig.suptitle(title, x=0.01, ha="left")  # the legend, if any, goes top right
    fig.supxlabel(xlabel)
    fig.supylabel(ylabel)
    # a fixed layout: measuring every tick label of 16 panels (tight layout) costs more
    # than drawing them
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.07, top=0.93, wspace=0.06, hspace=0.1)
    for ax in axes.ravel()[namps:]:
        ax.set_axis_off()
    return fig, axes.ravel()


def _few_ticks(ax: Axes, count: int = 4) -> None:
    """At most about ``count`` major ticks per axis of a grid (its panels share them).

    Making tick objects is most of a 16-panel grid's drawing time; four per axis are
    enough to read a panel by.
    """
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        axis.set_major_locator(LogLocator(numticks=count) if scale == "log" else MaxNLocator(count))


def _panel_label(ax: Axes, text: str) -> None:
    """The amp's name inside its panel (a title per panel would need room between rows)."""
    ax.text(0.03, 0.95, text, transform=ax.transAxes, va="top", fontsize=8)


def _single(width: float = 9.0, height: float = 4.5, ncols: int = 1) -> tuple[Figure, Any]:
    """A figure of one row of panels, laid out tight when it is drawn."""
    fig = Figure(figsize=(width, height), layout="tight")
    return fig, fig.subplots(1, ncols)


def png(fig: Figure) -> bytes:
    """The figure rendered as PNG bytes at :data:`DPI`, every text as :func:`drawable`."""
    _drawable_texts(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def drawable(text: str) -> str:
    r"""The text as a figure can show it: what the font lacks, and ``$``, written as escapes.

    Header values (sensor ids, segment names) reach titles and labels. A ``$`` would make
    matplotlib parse them as mathematics, and a character without a glyph (a control
    character, a script the font lacks) draws as an empty box; both are written as their
    Python escapes instead, so that every figure draws and tells its values apart.

    Examples
    --------
    >>> drawable("R22_S11: gain per method")
    'R22_S11: gain per method'
    >>> drawable("E2V\r$x$")
    'E2V\\r\\$x\\$'
    """
    return "".join(_drawable_character(char) for char in text)


@functools.cache
def _drawable_character(char: str) -> str:
    if char == "\n":
        return char
    if char == "$":
        return r"\$"
    font = font_manager.get_font(font_manager.findfont(font_manager.FontProperties()))
    if char.isprintable() and font.get_char_index(ord(char)):
        return char
    return char.encode("unicode_escape").decode("ascii")


def _drawable_texts(fig: Figure) -> None:
    """Every text of the figure, and every fixed tick label, made :func:`drawable`."""
    for text in _texts(fig):
        shown = text.get_text()
        written = drawable(shown)
        if written != shown:
            text.set_text(written)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            formatter = axis.get_major_formatter()
            if isinstance(formatter, FixedFormatter):
                formatter.seq = [drawable(str(label)) for label in formatter.seq]


def _texts(fig: Figure) -> Iterator[Text]:
    """The figure's titles, labels, texts and legends (a tenth of the cost of ``findobj``)."""
    yield from fig.texts
    yield from (t for t in (fig._suptitle, fig._supxlabel, fig._supylabel) if t is not None)
    legends = list(fig.legends)
    for ax in fig.axes:
        yield from ax.texts
        yield from (ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label)
        legends += [ax.get_legend()] if ax.get_legend() is not None else []
    for legend in legends:
        yield from (*legend.texts, legend.get_title())


def _variance_curves(curves: pd.DataFrame, pairs: pd.Series) -> dict[str, np.ndarray]:
    """Each model's variance at these pairs (of one amp), from the ``curves`` table."""
    variances = curves[curves["lag"] == "00"]
    return {
        str(model): rows.set_index("pair")["value"].reindex(pairs).to_numpy(float)
        for model, rows in variances.groupby("model", sort=False)
    }


def _by_amp(frame: pd.DataFrame) -> dict[int, pd.DataFrame]:
    return {int(amp): rows for amp, rows in frame.groupby("amp", sort=True)}


PTC_SCALES: dict[str, str] = {
    "ratio": "Variance over mean per amp (1 / gain where the PTC is straight; it falls with "
    "signal as the brighter-fatter effect grows, and drops at saturation), with each "
    "model's curve and the turnoff.",
}
"""The PTC grids (:func:`ptc_grid`) and what each shows (their captions); the PTC itself
and its residuals are charts (:mod:`gpuptc.report.charts`)."""


def ptc_grid(
    pairs: pd.DataFrame, ptc: pd.DataFrame, curves: pd.DataFrame, sensor: str, scale: str
) -> Figure:
    """Variance over mean against mean per amp with each model's curve (``ratio``).

    The curves are the fit's (:func:`gpuptc.fitting.curves.model_curves`).
    """
    if scale not in PTC_SCALES:
        raise ValueError(f"PTC scale {scale!r} not in {', '.join(PTC_SCALES)}")
    fits = _by_amp(ptc[ptc["sensor"] == sensor])
    models = _by_amp(curves[curves["sensor"] == sensor])
    measured = _by_amp(pairs[pairs["sensor"] == sensor])
    title = f"{sensor}: PTC over its mean"
    fig, axes = amp_grid(len(measured), title, "mean (ADU)", "variance / mean (ADU)")
    ranges = []
    for ax, (amp, rows) in zip(axes, measured.items(), strict=False):
        mine = (fits.get(amp, ptc.iloc[:0]), models.get(amp, curves.iloc[:0]))
        ranges.append(_ptc_panel(ax, rows, mine))
        _panel_label(ax, f"amp {amp}")
    _shared_limits(axes[0], [r for r in ranges if r is not None])
    _few_ticks(axes[0])
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", ncol=len(labels), fontsize=7)
    return fig


def _ptc_panel(
    ax: Axes, rows: pd.DataFrame, fitted: tuple[pd.DataFrame, pd.DataFrame]
) -> tuple[np.ndarray, np.ndarray] | None:
    """One amp's panel (its fits and curves); the (x, y) of its used points, for the range."""
    fits, models = fitted
    data = rows.sort_values("mean")
    data = data[(data["mean"] > 0) & (data["var"] > 0)]  # what a log axis can show
    if data.empty:
        ax.text(0.5, 0.5, "no measured pair", ha="center", transform=ax.transAxes)
        return None
    used = data["used"].fillna(False).to_numpy(bool)
    mean, var = data["mean"].to_numpy(), data["var"].to_numpy()
    y = var / mean
    ax.plot(mean[used], y[used], "o", ms=3, color="k", label="used")
    ax.plot(mean[~used], y[~used], "x", ms=4, color="0.5", label="not used")
    for name, curve in _variance_curves(models, data["pair"]).items():
        ax.plot(mean, curve / mean, "-", lw=1, color=_COLOURS.get(name), label=name)
    turnoff = fits.loc[fits["model"] == "expapprox", "turnoff"]
    if len(turnoff) and np.isfinite(turnoff.iloc[0]):
        ax.axvline(turnoff.iloc[0], color="k", ls="--", lw=0.7, label="turnoff")
    ax.set_xscale("log")
    ax.minorticks_off()  # log minor ticks were most of a grid's drawing time
    ax.tick_params(labelsize=7)
    return mean[used], y[used]


def _shared_limits(ax: Axes, ranges: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """The range of the used points of every panel (saturated pairs do not set it)."""
    x = np.concatenate([r[0] for r in ranges]) if ranges else np.zeros(0)
    y = np.concatenate([r[1] for r in ranges]) if ranges else np.zeros(0)
    x, y = x[np.isfinite(x) & (x > 0)], y[np.isfinite(y)]
    if not len(x) or not len(y):
        return
    ax.set_xlim(x.min() / 1.3, x.max() * 1.3)
    ax.set_ylim(0.95 * y.min(), 1.05 * y.max())


def gain_histograms(pairs: pd.DataFrame, sensor: str, column: str = "rhl_gain_corrected") -> Figure:
    """The notebook's per-amp histograms of per-pair gains (``column``), with their medians."""
    mine = pairs[(pairs["sensor"] == sensor) & pairs["used"].fillna(False).astype(bool)]
    amps = sorted(pairs.loc[pairs["sensor"] == sensor, "amp"].unique())
    fig, axes = amp_grid(
        len(amps),
        f"{sensor}: per-pair gain of the pairs used ({column})",
        "per-pair gain (e-/ADU)",
        "pairs",
    )
    gains = mine.groupby("amp")[column]
    for ax, amp in zip(axes, amps, strict=False):
        values = gains.get_group(amp).dropna().to_numpy() if amp in gains.groups else []
        if len(values):
            counts, edges = np.histogram(values, bins=20)
            ax.stairs(counts, edges, fill=True, alpha=0.6)
            median = float(np.median(values))
            ax.axvline(median, color="k", lw=1)
            ax.text(
                0.97,
                0.95,
                f"median {median:.3f}",
                transform=ax.transAxes,
                fontsize=7,
                ha="right",
                va="top",
            )
        _panel_label(ax, f"amp {amp}")
        ax.tick_params(labelsize=7)
    _few_ticks(axes[0])
    return fig


def _amp_axis(ax: Axes, amps: pd.Series) -> None:
    """An x axis of amplifiers: one tick per amp, labelled."""
    ax.set_xticks(sorted(amps.unique()))
    ax.set_xlabel("amp")


def _side_by_side(k: int, count: int) -> float:
    """The x offset of the k-th of ``count`` series at each amp, so none hides another."""
    return (k - (count - 1) / 2) * 0.8 / max(count, 1)


def gains_by_method(comparison: pd.DataFrame, ptc: pd.DataFrame, sensor: str) -> Figure:
    """Gain per amp for every method with its error, next to the references."""
    fits = ptc[ptc["sensor"] == sensor]
    mine = comparison[(comparison["sensor"] == sensor) & (comparison["quantity"] == "gain")]
    fig, ax = _single()
    groups = list(fits.groupby("model", sort=False))
    for k, (method, rows) in enumerate(groups):
        x = rows["amp"] + _side_by_side(k, len(groups))
        ax.errorbar(
            x,
            rows["gain"],
            yerr=rows["gain_err"],
            fmt="o",
            ms=4,
            lw=0.7,
            color=_COLOURS.get(method),
            label=method,
        )
    markers = {"eotest": ("k*", "EOTEST PTC_GAIN"), "cp_pipe": ("kD", "cp_pipe GAIN_UNADJUSTED")}
    for reference, (style, label) in markers.items():
        theirs = mine[mine["reference"] == reference].drop_duplicates("amp")
        if theirs["reference_value"].notna().any():
            ax.plot(theirs["amp"], theirs["reference_value"], style, ms=9, mfc="none", label=label)
    _amp_axis(ax, fits["amp"])
    ax.set_ylabel("gain (e-/ADU)")
    ax.set_title(f"{sensor}: gain per method")
    ax.legend(fontsize=7, ncol=3)
    return fig


def comparison_figure(comparison: pd.DataFrame, sensor: str) -> Figure | None:
    """Each method's gain, noise, turnoff and a00 over each reference's, per amp."""
    mine = comparison[(comparison["sensor"] == sensor) & comparison["ratio"].notna()]
    if mine.empty:
        return None
    fig, axes = _grid(2, 2, (12, 7))
    pairs = list(mine.groupby(["reference", "method"], sort=False))
    styles = {"eotest": "o", "cp_pipe": "D"}
    for ax, quantity in zip(axes.ravel(), ("gain", "noise", "turnoff", "a00"), strict=True):
        for k, ((reference, method), rows) in enumerate(pairs):
            rows = rows[rows["quantity"] == quantity]
            if rows.empty:
                continue
            ax.plot(
                rows["amp"] + _side_by_side(k, len(pairs)),
                rows["ratio"],
                styles.get(reference, "s"),
                ms=4,
                color=_COLOURS.get(method),
                mfc="none" if reference == "cp_pipe" else None,
                label=f"{method} / {reference}",
            )
        ax.axhline(1, color="k", lw=0.5)
        ax.set_ylabel(f"{quantity}: gpuptc / reference")
        _amp_axis(ax, mine["amp"])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=9)
    markers = {"eotest": "circles EOTEST", "cp_pipe": "open diamonds cp_pipe"}
    shown = ", ".join(markers[r] for r in markers if r in set(mine["reference"]))
    fig.suptitle(f"{sensor}: gpuptc over the references ({shown})")
    return fig


def covariance_grid(
    pairs: pd.DataFrame,
    covariances: pd.DataFrame,
    fullcov: pd.DataFrame,
    curves: pd.DataFrame,
    sensor: str,
) -> Figure | None:
    """C_10, C_01, C_11 over the mean per amp, with the full-covariance model's curves.

    The curves are the fit's (:func:`gpuptc.fitting.curves.model_curves`).
    """
    model = "fullcov" if (fullcov["model"] == "fullcov").any() else "fullcov_nob"
    if not ((fullcov["sensor"] == sensor) & (fullcov["model"] == model)).any():
        return None
    models = _by_amp(curves[(curves["sensor"] == sensor) & (curves["model"] == model)])
    measured = _by_amp(pairs[(pairs["sensor"] == sensor) & pairs["used"].fillna(False)])
    lags = _by_amp(
        covariances[
            (covariances["sensor"] == sensor)
            & (covariances["i"] + covariances["j"]).between(1, 2)
            & (covariances["i"] < 2)
            & (covariances["j"] < 2)
        ]
    )
    fig, axes = amp_grid(
        len(measured),
        f"{sensor}: nearest-lag covariances, {model} model",
        "mean (ADU)",
        "C_ij / mean",
    )
    for ax, (amp, rows) in zip(axes, measured.items(), strict=False):
        means = rows.set_index("pair")["mean"]
        curve = models.get(amp, curves.iloc[:0])
        for (i, j), colour in zip([(1, 0), (0, 1), (1, 1)], ["C0", "C1", "C2"], strict=True):
            lag = lags.get(amp, covariances.iloc[:0])
            lag = lag[(lag["i"] == i) & (lag["j"] == j) & lag["pair"].isin(means.index)]
            mu = lag["pair"].map(means).to_numpy(float)
            ax.plot(mu, lag["cov"].to_numpy(float) / mu, ".", ms=3, color=colour, label=f"C{i}{j}")
            drawn = curve[curve["lag"] == f"{i}{j}"]
            if len(drawn):
                grid = drawn["mean"].to_numpy(float)
                ax.plot(grid, drawn["value"].to_numpy(float) / grid, "-", lw=0.8, color=colour)
        ax.axhline(0, color="k", lw=0.4)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.tick_params(labelsize=7)
        _panel_label(ax, f"amp {amp}")
    _few_ticks(axes[0])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=3, fontsize=7)
    return fig


def covariance_figure(
    pairs: pd.DataFrame, covariances: pd.DataFrame, fullcov: pd.DataFrame, sensor: str
) -> Figure:
    """C_ij / mu against mu for the nearest lags (used pairs, every amp)."""
    mine = covariances[covariances["sensor"] == sensor]
    means = pairs[pairs["sensor"] == sensor].set_index(["pair", "amp"])["mean"]
    used = pairs[pairs["sensor"] == sensor].set_index(["pair", "amp"])["used"].fillna(False)
    fig, ax = _single(9, 4.5)
    for (i, j), colour in zip([(1, 0), (0, 1), (1, 1)], ["C0", "C1", "C2"], strict=True):
        lag = mine[(mine["i"] == i) & (mine["j"] == j)].set_index(["pair", "amp"])
        keep = used.reindex(lag.index).fillna(False).astype(bool)
        lag = lag[keep.to_numpy()]
        mu = means.reindex(lag.index)
        ax.plot(mu, lag["cov"] / mu, ".", ms=3, color=colour, label=f"C{i}{j}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("mean (ADU)")
    ax.set_ylabel("C_ij / mean (ADU)")
    ax.set_title(f"{sensor}: nearest-lag covariances over the mean (used pairs, every amp)")
    ax.legend(fontsize=8)
    return fig


def amp_summary(ptc: pd.DataFrame, sensor: str) -> Figure:
    """Gain, read noise, turnoff and a00 per amp for every model, with their errors."""
    mine = ptc[ptc["sensor"] == sensor]
    fig, axes = _grid(2, 2, (12, 7))
    quantities = [
        ("gain", "gain_err", "gain (e-/ADU)"),
        ("noise", "noise_err", "read noise (e-)"),
        ("turnoff", None, "turnoff (ADU)"),
        ("a00", "a00_err", "a00 (1/e-)"),
    ]
    models = list(mine["model"].unique())
    for ax, (column, error, label) in zip(axes.ravel(), quantities, strict=True):
        for k, (model, rows) in enumerate(mine.groupby("model", sort=False)):
            values = rows[column].to_numpy(float)
            if not np.isfinite(values).any():
                continue
            shift = _side_by_side(k, len(models))
            errors = rows[error].to_numpy(float) if error else None
            ax.errorbar(
                rows["amp"] + shift,
                values,
                yerr=errors,
                fmt="o",
                ms=3,
                lw=0.7,
                color=_COLOURS.get(model),
                label=model,
            )
        ax.set_ylabel(label)
        _amp_axis(ax, mine["amp"])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels) or 1, fontsize=9)
    fig.suptitle(f"{sensor}: per-amp results of every model (markers side by side per amp)")
    empty = _empty_models(mine)
    if empty:
        fig.text(0.01, 0.005, empty, fontsize=8, ha="left", va="bottom")
    return fig


def _empty_models(fits: pd.DataFrame) -> str:
    """Which models have no gain on which amps, and why (their statuses)."""
    missing = fits[~np.isfinite(fits["gain"].to_numpy(float))]
    parts = [
        f"{model}: no value on amps {', '.join(map(str, rows['amp']))} "
        f"({', '.join(sorted(set(map(str, rows['status']))))})"
        for model, rows in missing.groupby("model", sort=False)
    ]
    return "; ".join(parts)


def _grid(rows: int, cols: int, size: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A tight figure of ``rows x cols`` panels."""
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def images_figure(images: dict[str, Any] | Path | None, sensor: str) -> Figure | None:
    """The assembled flat and difference image (a dict of arrays or the ``.npz`` saved)."""
    if images is None or (isinstance(images, Path) and not images.exists()):
        return None
    if isinstance(images, Path):
        with np.load(images) as saved:
            images = {key: saved[key] for key in saved.files}
    pair, exptime, factor = int(images["pair"]), float(images["exptime"]), int(images["bin"])
    fig, axes = _single(11, 5.5, ncols=2)
    for ax, key in zip(axes, ("flat", "difference"), strict=True):
        low, high = np.nanpercentile(images[key], [1, 99])
        shown = ax.imshow(images[key], origin="lower", cmap="gray", vmin=low, vmax=high)
        fig.colorbar(shown, ax=ax, shrink=0.8, label="ADU")
        ax.set_title(f"{key}, pair {pair} ({exptime:g} s), binned {factor}x{factor}")
        ax.set_xlabel(f"serial pixel / {factor}")
        ax.set_ylabel(f"parallel pixel / {factor}")
    fig.suptitle(f"{sensor}: assembled CCD (amp 1 lower left)")
    return fig


def focal_plane_map(ptc: pd.DataFrame) -> Figure | None:
    """Gain, noise and turnoff per amp for every sensor (rows) as colour maps."""
    fits = ptc[ptc["model"] == "expapprox"]
    sensors = sorted(fits["sensor"].unique())
    if len(sensors) < 2:
        return None
    fig, axes = _single(14, 0.6 * len(sensors) + 2, ncols=3)
    for ax, column, label in zip(
        axes,
        ["gain", "noise", "turnoff"],
        ["gain (e-/ADU)", "noise (e-)", "turnoff (ADU)"],
        strict=True,
    ):
        table = fits.pivot(index="sensor", columns="amp", values=column).reindex(sensors)
        shown = ax.imshow(table.to_numpy(), aspect="auto", cmap="viridis")
        fig.colorbar(shown, ax=ax, label=label)
        ax.set_yticks(range(len(sensors)), sensors, fontsize=7)
        ax.set_xticks(range(table.shape[1]), table.columns, fontsize=7)
        ax.set_xlabel("amp")
        ax.set_ylabel("sensor")
        ax.set_title(label)
    return fig


def level_mismatch(pairs: pd.DataFrame, sensor: str, threshold: float) -> Figure:
    """The flats' level mismatch mean2/mean1 - 1 of each pair (median over amps)."""
    mine = pairs[pairs["sensor"] == sensor]
    per_pair = mine.groupby("pair").agg(
        exptime=("exptime", "first"), mismatch=("level_mismatch", "median")
    )
    fig, ax = _single(9, 3.5)
    ax.plot(per_pair["exptime"], 100 * per_pair["mismatch"], "o", ms=4)
    for bound in (-threshold, threshold):
        ax.axhline(100 * bound, color="r", ls="--", lw=0.8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("exposure time (s)")
    ax.set_ylabel("mean2 / mean1 - 1 (%)")
    ax.set_title(f"{sensor}: level mismatch of the flats of each pair (flagged beyond the lines)")
    return fig

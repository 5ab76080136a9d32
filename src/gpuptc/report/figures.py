"""Report figures: each function draws one PNG from the result tables."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from gpuptc.ptc import eq16

__all__ = [
    "amp_grid",
    "covariance_figure",
    "focal_plane_map",
    "gain_histograms",
    "gain_vs_exptime",
    "gains_by_method",
    "images_figure",
    "level_mismatch",
    "ptc_grids",
]

_COLOURS = {
    "expapprox": "C0",
    "fullcov": "C1",
    "fullcov_nob": "C2",
    "linear": "C3",
    "quadratic": "C4",
    "powerlaw": "C5",
    "rhl": "C6",
}


def amp_grid(namps: int, title: str, size: float = 3.2) -> tuple[plt.Figure, np.ndarray]:
    """A figure with one panel per amplifier (4 x 4 for 16)."""
    side = int(np.ceil(np.sqrt(namps)))
    fig, axes = plt.subplots(side, side, figsize=(size * side, size * side * 0.8), squeeze=False)
    fig.suptitle(title)
    # a fixed layout: measuring every tick label of 16 panels (tight_layout) cost more than
    # drawing them
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.04, top=0.93, wspace=0.3, hspace=0.35)
    fig.set_layout_engine("none")
    return fig, axes.ravel()


def _save(fig: plt.Figure, path: Path) -> Path:
    if fig.get_layout_engine() is None:  # single panels: tight layout is cheap
        fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _model_curves(fits: pd.DataFrame, mean: np.ndarray) -> dict[str, np.ndarray]:
    """Curves that can be drawn from the ``ptc`` table alone."""
    curves = {}
    for row in fits.itertuples():
        if not np.isfinite(row.gain):
            continue
        if row.model in ("expapprox", "fullcov", "fullcov_nob") and np.isfinite(row.a00):
            noise2 = row.noise**2 if np.isfinite(row.noise) else 0.0
            curves[row.model] = eq16(mean, row.a00, row.gain, noise2)
        elif row.model == "quadratic" and np.isfinite(row.a00):
            c0 = (row.noise / row.gain) ** 2 if np.isfinite(row.noise) else 0.0
            curves[row.model] = c0 + mean / row.gain + row.a00 * mean**2
        elif row.model == "linear":
            c0 = (row.noise / row.gain) ** 2 if np.isfinite(row.noise) else 0.0
            curves[row.model] = c0 + mean / row.gain
    return curves


def ptc_grids(pairs: pd.DataFrame, ptc: pd.DataFrame, sensor: str, directory: Path) -> list[Path]:
    """Variance against mean per amp (log-log and linear) with model curves, and residuals."""
    mine = pairs[pairs["sensor"] == sensor]
    fits = ptc[ptc["sensor"] == sensor]
    amps = sorted(mine["amp"].unique())
    paths = []
    for scale in ("log", "linear", "residuals"):
        fig, axes = amp_grid(len(amps), f"{sensor}: PTC ({scale})")
        for ax, amp in zip(axes, amps, strict=False):
            data = mine[mine["amp"] == amp].sort_values("mean")
            data = data[(data["mean"] > 0) & (data["var"] > 0)]  # what a log axis can show
            if data.empty:
                ax.text(0.5, 0.5, "no measured pair", ha="center", transform=ax.transAxes)
                ax.set_title(f"amp {amp}", fontsize=9)
                continue
            used = data["used"].fillna(False).to_numpy(bool)
            mean, var = data["mean"].to_numpy(), data["var"].to_numpy()
            curves = _model_curves(fits[fits["amp"] == amp], mean)
            if scale == "residuals":
                model = curves.get("expapprox")
                if model is not None:
                    ax.plot(mean[used], (var / model - 1)[used], "o", ms=3, color="C0")
                    ax.plot(mean[~used], (var / model - 1)[~used], "x", ms=4, color="0.5")
                ax.axhline(0, color="k", lw=0.5)
                ax.set_ylim(-0.05, 0.05)
                ax.set_xscale("log")
                ax.minorticks_off()  # log minor ticks were most of a grid's drawing time
            else:
                ax.plot(mean[used], var[used], "o", ms=3, color="k", label="used")
                ax.plot(mean[~used], var[~used], "x", ms=4, color="0.5", label="not used")
                for name, curve in curves.items():
                    ax.plot(mean, curve, "-", lw=1, color=_COLOURS.get(name), label=name)
                if scale == "log":
                    ax.set_xscale("log")
                    ax.set_yscale("log")
                    ax.minorticks_off()
            ax.set_title(f"amp {amp}", fontsize=9)
            ax.tick_params(labelsize=7)
        if scale != "residuals":
            axes[0].legend(fontsize=6)
        paths.append(_save(fig, directory / f"ptc_{scale}_{sensor}.png"))
    return paths


def gain_histograms(
    pairs: pd.DataFrame, sensor: str, directory: Path, column: str = "rhl_gain_corrected"
) -> Path:
    """The notebook's per-amp histograms of per-pair gains (``column``), with their medians."""
    mine = pairs[(pairs["sensor"] == sensor) & pairs["used"].fillna(False).astype(bool)]
    amps = sorted(pairs.loc[pairs["sensor"] == sensor, "amp"].unique())
    fig, axes = amp_grid(len(amps), f"{sensor}: per-pair gain 1/<(I1-I2)^2/(I1+I2)> (used pairs)")
    for ax, amp in zip(axes, amps, strict=False):
        gains = mine.loc[mine["amp"] == amp, column].dropna().to_numpy()
        if len(gains):
            ax.hist(gains, bins=20, alpha=0.6)
            median = float(np.median(gains))
            ax.axvline(median, color="k", lw=1)
            ax.text(0.05, 0.85, f"median {median:.3f}", transform=ax.transAxes, fontsize=8)
        ax.set_title(f"amp {amp}", fontsize=9)
        ax.tick_params(labelsize=7)
    return _save(fig, directory / f"gain_hist_{sensor}.png")


def gains_by_method(comparison: pd.DataFrame, sensor: str, directory: Path) -> Path:
    """Gain per amp for every method side by side with EOTEST (the notebook's last figure)."""
    mine = comparison[comparison["sensor"] == sensor]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for method, rows in mine.groupby("method", sort=False):
        ax.plot(rows["amp"], rows["gain"], "o", ms=5, color=_COLOURS.get(method), label=method)
    reference = mine.drop_duplicates("amp")
    if reference["eotest_gain"].notna().any():
        ax.plot(reference["amp"], reference["eotest_gain"], "k*", ms=9, label="EOTEST PTC_GAIN")
    ax.set_xlabel("amp")
    ax.set_ylabel("gain (e-/ADU)")
    ax.set_title(f"{sensor}: gain per method")
    ax.set_xticks(sorted(mine["amp"].unique()))
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, directory / f"gains_{sensor}.png")


def gain_vs_exptime(
    pairs: pd.DataFrame,
    ptc: pd.DataFrame,
    sensor: str,
    directory: Path,
    column: str = "rhl_gain_corrected",
) -> Path:
    """Per-pair gain (``column``) against exposure time, with the onset of saturation."""
    mine = pairs[pairs["sensor"] == sensor]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for _, rows in mine.groupby("amp"):
        ordered = rows.sort_values("exptime")
        ax.plot(ordered["exptime"], ordered[column], "-", lw=0.6, alpha=0.7)
    turnoff = ptc[(ptc["sensor"] == sensor) & (ptc["model"] == "expapprox")].set_index("amp")[
        "turnoff"
    ]
    above = mine[mine["mean"] > mine["amp"].map(turnoff)]
    if len(above):
        onset = float(above.groupby("amp")["exptime"].min().median())
        ax.axvline(onset, color="k", ls="--", label=f"saturation onset {onset:.1f} s")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    finite = mine[column][np.isfinite(mine[column])]
    if len(finite):
        low, high = np.percentile(finite, [2, 90])
        ax.set_ylim(0.5 * low, 1.5 * high)
    ax.set_xlabel("exposure time (s)")
    ax.set_ylabel("per-pair gain (e-/ADU)")
    ax.set_title(f"{sensor}: per-pair gain against exposure time, one line per amp")
    return _save(fig, directory / f"gain_vs_exptime_{sensor}.png")


def covariance_figure(
    pairs: pd.DataFrame,
    covariances: pd.DataFrame,
    fullcov: pd.DataFrame,
    sensor: str,
    directory: Path,
) -> Path:
    """C_ij / mu against mu for the nearest lags, and the a_ij matrix as an image."""
    mine = covariances[covariances["sensor"] == sensor]
    means = pairs[pairs["sensor"] == sensor].set_index(["pair", "amp"])["mean"]
    used = pairs[pairs["sensor"] == sensor].set_index(["pair", "amp"])["used"].fillna(False)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for (i, j), colour in zip([(1, 0), (0, 1), (1, 1)], ["C0", "C1", "C2"], strict=True):
        lag = mine[(mine["i"] == i) & (mine["j"] == j)].set_index(["pair", "amp"])
        keep = used.reindex(lag.index).fillna(False).astype(bool)
        lag = lag[keep.to_numpy()]
        mu = means.reindex(lag.index)
        left.plot(mu, lag["cov"] / mu, ".", ms=3, color=colour, label=f"C{i}{j}")
    left.set_xlabel("mean (ADU)")
    left.set_ylabel("C_ij / mean")
    left.set_title(f"{sensor}: nearest-lag covariances (used pairs)")
    left.legend(fontsize=8)
    model = "fullcov" if (fullcov["model"] == "fullcov").any() else "fullcov_nob"
    matrix = fullcov[(fullcov["sensor"] == sensor) & (fullcov["model"] == model)]
    if len(matrix):
        a = matrix.groupby(["i", "j"])["a"].median().unstack().to_numpy(dtype=float)
        image = right.imshow(np.log10(np.abs(a) + 1e-12), origin="lower", cmap="viridis")
        fig.colorbar(image, ax=right, label="log10 |a_ij| (1/e-)")
        right.set_xlabel("j (parallel lag)")
        right.set_ylabel("i (serial lag)")
        right.set_title(f"a_ij, {model}, median over amps")
    else:
        right.text(0.5, 0.5, "no full-covariance fit", ha="center", transform=right.transAxes)
        right.set_axis_off()
    return _save(fig, directory / f"covariances_{sensor}.png")


def images_figure(data: Path, sensor: str, directory: Path) -> Path | None:
    """The assembled flat and difference image saved under ``report/data``."""
    if not data.exists():
        return None
    with np.load(data) as saved:
        flat, difference = saved["flat"], saved["difference"]
        pair, exptime, factor = int(saved["pair"]), float(saved["exptime"]), int(saved["bin"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5))
    for ax, image, title in ((axes[0], flat, "flat"), (axes[1], difference, "difference")):
        low, high = np.nanpercentile(image, [1, 99])
        shown = ax.imshow(image, origin="lower", cmap="gray", vmin=low, vmax=high)
        fig.colorbar(shown, ax=ax, shrink=0.8, label="ADU")
        ax.set_title(f"{title}, pair {pair} ({exptime:g} s), binned {factor}x{factor}")
    fig.suptitle(f"{sensor}: assembled CCD (amp 1 lower left)")
    return _save(fig, directory / f"images_{sensor}.png")


def focal_plane_map(ptc: pd.DataFrame, directory: Path) -> Path | None:
    """Gain, noise and turnoff per amp for every sensor (rows) as colour maps."""
    fits = ptc[ptc["model"] == "expapprox"]
    sensors = sorted(fits["sensor"].unique())
    if len(sensors) < 2:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.6 * len(sensors) + 2))
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
        ax.set_title(label)
    return _save(fig, directory / "focal_plane.png")


def level_mismatch(pairs: pd.DataFrame, sensor: str, directory: Path, threshold: float) -> Path:
    """The flats' level mismatch mean2/mean1 - 1 of each pair (median over amps)."""
    mine = pairs[pairs["sensor"] == sensor]
    per_pair = mine.groupby("pair").agg(
        exptime=("exptime", "first"), mismatch=("level_mismatch", "median")
    )
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(per_pair["exptime"], 100 * per_pair["mismatch"], "o", ms=4)
    for bound in (-threshold, threshold):
        ax.axhline(100 * bound, color="r", ls="--", lw=0.8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("exposure time (s)")
    ax.set_ylabel("mean2 / mean1 - 1 (%)")
    ax.set_title(f"{sensor}: level mismatch of the flats of each pair (flagged beyond the lines)")
    return _save(fig, directory / f"mismatch_{sensor}.png")

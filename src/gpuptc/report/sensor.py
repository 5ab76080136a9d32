"""The figures of one sensor, drawn from that sensor's tables alone.

:func:`sensor_figures` is what the process that measured a sensor calls (the Dask worker,
or a drawing thread next to an in-process run) so that figures are drawn while the next
sensor is measured; :func:`draw_sensors` draws many sensors in parallel processes
(``gpuptc report DIR``). Both return :class:`gpuptc.schema.DrawnFigure` objects: small PNGs as bytes
with their file name and caption, which the report page only has to write.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from gpuptc._shared.processes import process_pool
from gpuptc.fitting.curves import model_curves
from gpuptc.report import figures
from gpuptc.schema import MISMATCH_THRESHOLD, DrawnFigure, figure_name

__all__ = [
    "SENSOR_TABLES_DRAWN",
    "draw",
    "draw_sensors",
    "joined",
    "reference_figures",
    "sensor_figures",
]

log = logging.getLogger(__name__)

SENSOR_TABLES_DRAWN: tuple[str, ...] = ("pairs", "covariances", "ptc", "fullcov", "curves")
"""The tables of one sensor its figures are drawn from."""


def draw(name: str, caption: str, make: Callable[[], Any], order: int = 0) -> DrawnFigure | None:
    """Draw one figure; None when there is nothing to show, a failure noted, not raised."""
    try:
        fig = make()
        return None if fig is None else DrawnFigure(name, caption, figures.png(fig), order=order)
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        log.warning("report figure %r not drawn: %s", caption, failure)
        log.debug("%s", caption, exc_info=True)
        return DrawnFigure(name, caption, failure=failure, order=order)


def sensor_figures(
    sensor: str,
    tables: Mapping[str, pd.DataFrame],
    images: dict[str, Any] | Path | None,
    gain_column: str,
    part: tuple[int, int] = (0, 1),
) -> list[DrawnFigure]:
    """Every figure of one sensor that needs only its own tables, in report order.

    Parameters
    ----------
    sensor : str
        The sensor.
    tables : mapping of str to pandas.DataFrame
        Its ``pairs``, ``covariances``, ``ptc`` and ``fullcov`` (other sensors' rows ignored).
    images : dict of arrays, path of the saved ``.npz``, or None
        Its display images.
    gain_column : str
        The per-pair gain column the preset's ``rhl`` is the median of.
    part : (k, n)
        Only every n-th figure from the k-th, so that n processes share one sensor;
        :func:`joined` puts the parts back in order.

    Returns
    -------
    list of DrawnFigure
    """
    k, n = part
    drawn = (
        draw(name, caption, make, order)
        for order, (name, caption, make) in enumerate(_planned(sensor, tables, images, gain_column))
        if order % n == k
    )
    return [figure for figure in drawn if figure is not None]


_Planned = list[tuple[str, str, Callable[[], Any]]]
"""Figures to draw: (file name, caption, a function that draws it or returns None)."""


def _planned(
    sensor: str,
    tables: Mapping[str, pd.DataFrame],
    images: dict[str, Any] | Path | None,
    gain_column: str,
) -> _Planned:
    """Every figure :func:`sensor_figures` draws, in report order."""
    return [
        *_ptc_figures(sensor, tables),
        *_gain_figures(sensor, tables, gain_column),
        *_covariance_figures(sensor, tables),
        *_summary_figures(sensor, tables, images),
    ]


def _ptc_figures(sensor: str, tables: Mapping[str, pd.DataFrame]) -> _Planned:
    """The PTC over its mean (the PTC itself and its residuals are charts)."""
    pairs, ptc, curves = tables["pairs"], tables["ptc"], tables["curves"]
    return [
        *(
            (
                figure_name(f"ptc_{scale}", sensor),
                caption,
                lambda scale=scale: figures.ptc_grid(pairs, ptc, curves, sensor, scale),
            )
            for scale, caption in figures.PTC_SCALES.items()
        ),
    ]


def _gain_figures(sensor: str, tables: Mapping[str, pd.DataFrame], gain_column: str) -> _Planned:
    """The per-pair gains, and how much the two flats of each pair differ in level."""
    pairs = tables["pairs"]
    return [
        (
            figure_name("gain_hist", sensor),
            f"Per-pair gain ({gain_column}) of the pairs used, per amp, with its median (the "
            "rhl model): the tail to high gains is the brighter-fatter rise (a pair's gain "
            "grows by |a00| x its signal), not cosmic rays; outliers below come from flats "
            "that differ in level.",
            lambda: figures.gain_histograms(pairs, sensor, gain_column),
        ),
        (
            figure_name("mismatch", sensor),
            "mean2 / mean1 - 1 of each pair (median over amps): how much the two flats of a "
            "pair differ in level; pairs beyond the red lines are flagged (mismatched).",
            lambda: figures.level_mismatch(pairs, sensor, MISMATCH_THRESHOLD),
        ),
    ]


def _covariance_figures(sensor: str, tables: Mapping[str, pd.DataFrame]) -> _Planned:
    """The measured covariances, and the full-covariance model over them."""
    pairs = tables["pairs"]
    return [
        (
            figure_name("covariances", sensor),
            "The nearest-lag covariances C_10, C_01, C_11 over the mean, per used pair and "
            "amp: they grow with the signal (the brighter-fatter effect).",
            lambda: figures.covariance_figure(
                pairs, tables["covariances"], tables["fullcov"], sensor
            ),
        ),
        (
            figure_name("covariance_grid", sensor),
            "C_10, C_01 and C_11 over the mean per amp (used pairs) with the full-covariance "
            "model's curves (eq. 20): the model should follow the points at every signal.",
            lambda: figures.covariance_grid(
                pairs, tables["covariances"], tables["fullcov"], tables["curves"], sensor
            ),
        ),
    ]


def _summary_figures(
    sensor: str, tables: Mapping[str, pd.DataFrame], images: dict[str, Any] | Path | None
) -> _Planned:
    """The per-amp summary of every model, and one typical pair's images."""
    ptc = tables["ptc"]
    return [
        (
            figure_name("amp_summary", sensor),
            "Gain, read noise, turnoff and a00 per amp for every model with their errors, "
            "the models side by side at each amp so that none hides another, the legend "
            "below; the note at the bottom names the models without a value and why.",
            lambda: figures.amp_summary(ptc, sensor),
        ),
        (
            figure_name("images", sensor),
            "One typical pair: the assembled flat and the flux-matched difference image, "
            "binned; the difference should show only noise.",
            lambda: figures.images_figure(images, sensor),
        ),
    ]


def joined(parts: Iterable[list[DrawnFigure]]) -> list[DrawnFigure]:
    """The parts of one sensor's figures (:func:`sensor_figures` ``part``) in report order."""
    return sorted((figure for part in parts for figure in part), key=lambda f: f.order)


def reference_figures(sensor: str, tables: Mapping[str, pd.DataFrame]) -> list[DrawnFigure]:
    """The figures of one sensor that need the run's comparison with the references.

    They come before the sensor's other figures (negative ``order``).
    """
    comparison, ptc = tables["comparison"], tables["ptc"]
    drawn = [
        draw(
            figure_name("gains", sensor),
            "Gain per amp of every method with its error (side by side at each amp), and the "
            "references' gains (EOTEST's PTC_GAIN, a cp_pipe product's GAIN_UNADJUSTED) where "
            "given.",
            lambda: figures.gains_by_method(comparison, ptc, sensor),
            order=-2,
        ),
        draw(
            figure_name("comparison", sensor),
            "gpuptc over each reference per amp for gain, read noise, turnoff and a00 "
            "(EOTEST's a00 sign undone): 1 is agreement.",
            lambda: figures.comparison_figure(comparison, sensor),
            order=-1,
        ),
    ]
    return [figure for figure in drawn if figure is not None]


def _mine(
    tables: Mapping[str, pd.DataFrame], sensor: str, names: Iterable[str] = SENSOR_TABLES_DRAWN
) -> dict[str, pd.DataFrame]:
    """The sensor's rows of the tables its figures need.

    A run written before the fits' curves were stored (or before they held each pair's
    error) has no such ``curves`` table: they are evaluated here from its fits, once per
    sensor (with cp_pipe's fit settings).
    """
    mine = {n: tables[n][tables[n]["sensor"] == sensor] for n in names if n in tables}
    if "curves" in names and "fitted" not in mine.get("curves", {}):
        mine["curves"] = model_curves(mine["pairs"], mine["ptc"], mine["fullcov"])
    return mine


def _warm_fonts() -> None:
    """Load the fonts once here, so that forked drawing processes inherit them."""
    fig, _ = figures.amp_grid(1, "fonts", "x", "y")
    figures.png(fig)


def draw_sensors(
    sensors: list[str],
    tables: Mapping[str, pd.DataFrame],
    images: Callable[[str], Path | None],
    gain_column: str,
    workers: int | None = None,
    referenced: Iterable[str] = (),
) -> dict[str, list[DrawnFigure]]:
    """The figures of many sensors, drawn in parallel processes (in this one if one is all).

    Each sensor's figures are shared among several tasks (two per process when there are
    fewer sensors than processes), so that the processes finish together.

    Parameters
    ----------
    sensors : list of str
        Sensors whose own figures (:func:`sensor_figures`) are drawn.
    tables : mapping of str to pandas.DataFrame
        The run's tables (``pairs``, ``covariances``, ``ptc``, ``fullcov``; ``comparison``
        for ``referenced``).
    images : callable
        ``images(sensor)``: the path of its saved display images, or None.
    gain_column : str
        See :func:`sensor_figures`.
    workers : int, optional
        Drawing processes; default one per core.
    referenced : iterable of str
        Sensors whose :func:`reference_figures` are drawn too.

    Returns
    -------
    dict of str to list of DrawnFigure
        Every sensor of ``sensors`` and ``referenced``, its figures in report order.
    """
    referenced = list(referenced)
    workers = workers or os.cpu_count() or 1
    parts = max(1, 2 * workers // max(1, len(sensors))) if workers > 1 else 1
    jobs: list[tuple[str, Callable[..., list[DrawnFigure]], tuple]] = [
        (s, sensor_figures, (s, _mine(tables, s), images(s), gain_column, (k, parts)))
        for s in sensors
        for k in range(parts)
    ]
    jobs += [
        (s, reference_figures, (s, _mine(tables, s, ("comparison", "ptc")))) for s in referenced
    ]
    drawn: dict[str, list[list[DrawnFigure]]] = {s: [] for s in [*sensors, *referenced]}
    workers = min(workers, len(jobs))
    if workers <= 1:
        for sensor, function, arguments in jobs:
            drawn[sensor].append(function(*arguments))
        return {sensor: joined(found) for sensor, found in drawn.items()}
    _warm_fonts()
    with process_pool(workers) as pool:
        futures = [(s, pool.submit(function, *arguments)) for s, function, arguments in jobs]
        for sensor, future in futures:
            drawn[sensor].append(future.result())
    return {sensor: joined(found) for sensor, found in drawn.items()}

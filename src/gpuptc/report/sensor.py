"""The images of one sensor: the figures a report still draws as PNGs.

Every other figure of a page is a chart the browser draws from the tables
(:mod:`gpuptc.report.charts`); what stays an image is the binned CCD of one typical pair.
:func:`sensor_figures` is what the process that measured a sensor calls (the Dask worker,
or a drawing process next to an in-process run); :func:`draw_sensors` draws many sensors in
parallel processes (``gpuptc report DIR``). Both return :class:`gpuptc.schema.DrawnFigure`
objects: small PNGs as bytes with their file name and caption, which the report page only
has to write.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gpuptc._shared.processes import process_pool
from gpuptc.report import figures
from gpuptc.schema import DrawnFigure, figure_name

__all__ = ["draw", "draw_sensors", "joined", "sensor_figures"]

log = logging.getLogger(__name__)


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


_Planned = list[tuple[str, str, Callable[[], Any]]]
"""Figures to draw: (file name, caption, a function that draws it or returns None)."""


def _planned(sensor: str, images: dict[str, Any] | Path | None) -> _Planned:
    """Every figure :func:`sensor_figures` draws, in report order."""
    return [
        (
            figure_name("images", sensor),
            "One typical pair: the assembled flat and the flux-matched difference image, "
            "binned; the difference should show only noise.",
            lambda: figures.images_figure(images, sensor),
        ),
    ]


def sensor_figures(
    sensor: str, images: dict[str, Any] | Path | None, part: tuple[int, int] = (0, 1)
) -> list[DrawnFigure]:
    """Every figure of one sensor, in report order.

    Parameters
    ----------
    sensor : str
        The sensor.
    images : dict of arrays, path of the saved ``.npz``, or None
        Its display images.
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
        for order, (name, caption, make) in enumerate(_planned(sensor, images))
        if order % n == k
    )
    return [figure for figure in drawn if figure is not None]


def joined(parts: Iterable[list[DrawnFigure]]) -> list[DrawnFigure]:
    """The parts of one sensor's figures (:func:`sensor_figures` ``part``) in report order."""
    return sorted((figure for part in parts for figure in part), key=lambda f: f.order)


def draw_sensors(
    sensors: list[str], images: Callable[[str], Path | None], workers: int | None = None
) -> dict[str, list[DrawnFigure]]:
    """The figures of many sensors, drawn in parallel processes (in this one if one is all).

    Parameters
    ----------
    sensors : list of str
        Sensors whose figures (:func:`sensor_figures`) are drawn.
    images : callable
        ``images(sensor)``: the path of its saved display images, or None.
    workers : int, optional
        Drawing processes; default one per core.

    Returns
    -------
    dict of str to list of DrawnFigure
        Every sensor of ``sensors``, its figures in report order.
    """
    workers = min(workers or os.cpu_count() or 1, len(sensors))
    if workers <= 1:
        return {sensor: sensor_figures(sensor, images(sensor)) for sensor in sensors}
    with process_pool(workers) as pool:
        futures = {s: pool.submit(sensor_figures, s, images(s)) for s in sensors}
        return {sensor: future.result() for sensor, future in futures.items()}

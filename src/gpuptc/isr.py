"""Batched instrument-signature removal on whole-CCD stacks (array API only).

Stacks are ``(..., amps, naxis2, naxis1)``; all amplifiers of one sensor share one
geometry, so every step is a handful of vectorised passes.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from gpuptc._xp import median
from gpuptc.io.geometry import SensorGeometry

__all__ = ["serial_overscan_profile", "subtract_serial_overscan"]


def serial_overscan_profile(
    stack: Any,
    geometry: SensorGeometry,
    *,
    skip: tuple[int, int] = (3, 3),
    statistic: str = "median",
    xp: ModuleType,
) -> Any:
    """Per-row level of the serial overscan, over every row of the segment.

    Parameters
    ----------
    stack : array
        ``(..., amps, naxis2, naxis1)`` raw pixels, floating point.
    geometry : SensorGeometry
        The sensor's geometry.
    skip : (int, int)
        Leading and trailing overscan columns left out (deferred charge, edge effects).
    statistic : {'median', 'mean'}
        Row estimator.
    xp : module
        Array namespace of ``stack``.

    Returns
    -------
    array
        ``(..., amps, naxis2, 1)`` row levels.
    """
    box = geometry.amps[0].serial_overscan_all_rows
    x0, x1 = box.x0 + skip[0], box.x1 - skip[1]
    if x1 <= x0:
        width = box.x1 - box.x0
        raise ValueError(
            f"skipping {skip[0]} + {skip[1]} of {width} serial overscan columns leaves none"
        )
    region = stack[..., :, x0:x1]
    if statistic == "median":
        level = median(region, axis=-1, xp=xp)
    elif statistic == "mean":
        level = xp.mean(region, axis=-1)
    else:
        raise ValueError(f"unknown row statistic {statistic!r}")
    return xp.expand_dims(level, axis=-1)


def subtract_serial_overscan(
    stack: Any,
    geometry: SensorGeometry,
    *,
    skip: tuple[int, int] = (3, 3),
    statistic: str = "median",
    xp: ModuleType,
) -> Any:
    """Subtract the per-row serial overscan level from every pixel of each row.

    Parameters
    ----------
    stack : array
        ``(..., amps, naxis2, naxis1)`` raw pixels, floating point.
    geometry : SensorGeometry
        The sensor's geometry.
    skip : (int, int)
        Leading and trailing overscan columns left out.
    statistic : {'median', 'mean'}
        Row estimator.
    xp : module
        Array namespace of ``stack``.

    Returns
    -------
    array
        The corrected stack, same shape.
    """
    return stack - serial_overscan_profile(stack, geometry, skip=skip, statistic=statistic, xp=xp)

"""Batched instrument-signature removal on whole-CCD stacks (array API only).

Stacks are ``(..., amps, naxis2, naxis1)``: any number of leading axes (pairs,
exposures), then every amplifier of one sensor, which all share one geometry. Each step
is a handful of vectorised passes; nothing here touches files, pandas or the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gpuptc import _cpu_kernels
from gpuptc._xp import clipped_stats, fused, median
from gpuptc.config import IsrConfig
from gpuptc.io.geometry import SensorGeometry

__all__ = [
    "IsrResult",
    "parallel_overscan_profile",
    "run_isr",
    "serial_overscan_model",
    "subtract_serial_overscan",
]

READ_NOISE_NSIGMA = 3.0
"""Clip of the overscan residual when measuring read noise (afw STDEVCLIP, 3 passes)."""


def _statistic(region: Any, axis: int | tuple[int, ...], how: str, *, xp: ModuleType) -> Any:
    if how == "mean":
        return xp.mean(region, axis=axis, keepdims=True)
    if isinstance(axis, tuple):
        shape = region.shape
        flat = xp.reshape(region, (*shape[: -len(axis)], -1))
        value = median(flat, axis=-1, xp=xp)
        return xp.reshape(value, (*value.shape, *(1,) * len(axis)))
    return xp.expand_dims(median(region, axis=axis, xp=xp), axis=axis)


def _kept(start: int, stop: int, skip: tuple[int, int], what: str) -> slice:
    """Lines ``start..stop`` less ``skip`` leading and trailing ones; an error if none is left."""
    first, last = start + skip[0], stop - skip[1]
    if last <= first:
        raise ValueError(f"skipping {skip[0]} + {skip[1]} of {stop - start} {what} leaves none")
    return slice(first, last)


def _serial_region(stack: Any, geometry: SensorGeometry, skip: tuple[int, int]) -> Any:
    box = geometry.amps[0].serial_overscan_all_rows
    return stack[..., :, _kept(box.x0, box.x1, skip, "serial overscan columns")]


def _poly_rows(profile: Any, order: int, *, xp: ModuleType) -> Any:
    """Least-squares polynomial along rows of ``profile`` (..., nrows, 1)."""
    import numpy as np

    nrows = profile.shape[-2]
    abscissa = 2.0 * np.arange(nrows) / nrows - 1.0
    design = np.vander(abscissa, order + 1, increasing=True)  # (nrows, order+1)
    projector = design @ np.linalg.pinv(design)  # (nrows, nrows) hat matrix, host-side constant
    hat = xp.asarray(projector.astype("float64"), device=profile.device)
    values = xp.astype(profile[..., 0], xp.float64)
    fitted = xp.matmul(values, xp.matrix_transpose(hat))
    return xp.astype(fitted, profile.dtype)[..., None]


def serial_overscan_model(
    stack: Any,
    geometry: SensorGeometry,
    *,
    method: str = "MEDIAN_PER_ROW",
    skip: tuple[int, int] = (3, 3),
    poly_order: int = 1,
    xp: ModuleType,
) -> Any:
    """Serial-overscan level to subtract, broadcastable against the stack.

    Parameters
    ----------
    stack : array
        ``(..., amps, naxis2, naxis1)`` floating-point raw pixels.
    geometry : SensorGeometry
        The sensor's geometry.
    method : str
        ``MEAN``/``MEDIAN`` (one value per amp), ``MEAN_PER_ROW``/``MEDIAN_PER_ROW``,
        ``POLY`` (polynomial along rows fitted to the row means), ``NONE``.
    skip : (int, int)
        Leading and trailing overscan columns left out.
    poly_order : int
        Order of the ``POLY`` fit.
    xp : module
        Array namespace.

    Returns
    -------
    array
        ``(..., amps, 1, 1)`` for constant methods, ``(..., amps, naxis2, 1)`` otherwise.
    """
    if method == "NONE":
        return xp.zeros((*stack.shape[:-2], 1, 1), dtype=stack.dtype, device=stack.device)
    region = _serial_region(stack, geometry, skip)
    if method in ("MEAN", "MEDIAN"):
        return _statistic(region, (-2, -1), method.lower(), xp=xp)
    if method in ("MEAN_PER_ROW", "MEDIAN_PER_ROW"):
        return _statistic(region, -1, method.split("_")[0].lower(), xp=xp)
    if method == "POLY":
        return _poly_rows(xp.mean(region, axis=-1, keepdims=True), poly_order, xp=xp)
    raise ValueError(f"unknown serial overscan method {method!r}")


def subtract_serial_overscan(
    stack: Any,
    geometry: SensorGeometry,
    *,
    skip: tuple[int, int] = (3, 3),
    method: str = "MEDIAN_PER_ROW",
    xp: ModuleType,
) -> Any:
    """Subtract the serial-overscan model from every pixel (see :func:`serial_overscan_model`)."""
    return stack - serial_overscan_model(stack, geometry, method=method, skip=skip, xp=xp)


def parallel_overscan_profile(
    stack: Any,
    geometry: SensorGeometry,
    *,
    method: str = "MEDIAN_PER_ROW",
    skip: tuple[int, int] = (3, 3),
    xp: ModuleType,
) -> Any:
    """Per-column level of the parallel overscan over the imaging columns.

    Parameters
    ----------
    stack : array
        ``(..., amps, naxis2, naxis1)`` pixels, serial overscan already removed.
    geometry : SensorGeometry
        The sensor's geometry.
    method : {'MEDIAN_PER_ROW', 'MEAN_PER_ROW'}
        Estimator along each column ("row" of the transposed overscan, as cp_pipe).
    skip : (int, int)
        Leading and trailing parallel-overscan rows left out.
    xp : module
        Array namespace.

    Returns
    -------
    array
        ``(..., amps, 1, nx)`` levels for the imaging columns.
    """
    rows, cols = _parallel_region(geometry, skip)
    return _column_levels(stack[..., rows, cols], method, xp=xp)


def _parallel_region(geometry: SensorGeometry, skip: tuple[int, int]) -> tuple[slice, slice]:
    box = geometry.amps[0].parallel_overscan
    return _kept(box.y0, box.y1, skip, "parallel overscan rows"), slice(box.x0, box.x1)


def _column_levels(region: Any, method: str, *, xp: ModuleType) -> Any:
    how = "median" if method == "MEDIAN_PER_ROW" else "mean"
    return _statistic(region, -2, how, xp=xp)


@dataclass
class IsrResult:
    """Output of :func:`run_isr`.

    Attributes
    ----------
    images : array
        ``(..., amps, ny, nx)`` corrected, trimmed pixels.
    good : array of bool
        ``(..., amps, ny, nx)`` pixels usable for statistics.
    read_noise_adu : array
        ``(..., amps)`` clipped standard deviation of the serial-overscan residual.
    overscan_level : array
        ``(..., amps)`` median of the serial-overscan model, ADU.
    """

    images: Any
    good: Any
    read_noise_adu: Any
    overscan_level: Any


def _read_noise(
    stack: Any, model: Any, geometry: SensorGeometry, skip: tuple[int, int], *, xp: ModuleType
) -> Any:
    region = _serial_region(stack, geometry, skip)
    residual = region - model
    flat = xp.reshape(residual, (*residual.shape[:-2], -1))
    good = xp.isfinite(flat)
    _, variance, _ = clipped_stats(flat, good, nsigma=READ_NOISE_NSIGMA, niter=3, xp=xp)
    return xp.sqrt(variance)


def _bound(threshold: float, dtype: Any) -> float:
    """The smallest value of a float ``dtype`` not below ``threshold``.

    ``x < threshold`` holds exactly when ``x < bound`` for every ``x`` of that dtype.
    """
    import numpy as np

    if np.dtype(dtype) != np.float32:
        return threshold
    bound = np.float32(threshold)
    if float(bound) < threshold:
        bound = np.nextafter(bound, np.float32(np.inf))
    return float(bound)


def _below(raw: Any, threshold: float, *, xp: ModuleType) -> Any:
    """``raw < threshold`` exactly, compared in the raw dtype (no float64 copy)."""
    if xp.isdtype(raw.dtype, "integral"):
        return raw < math.ceil(threshold)
    if raw.dtype == xp.float32:
        return raw < _bound(threshold, "float32")
    return raw < threshold


def _step_free(*sections: slice) -> bool:
    return all(section.step in (None, 1) for section in sections)


def _edge_and_defects(
    shape: tuple[int, ...], edge: int, defects: Any | None, *, device: Any, xp: ModuleType
) -> Any:
    ny, nx = shape[-2], shape[-1]
    rows = xp.arange(ny, device=device)[:, None]
    cols = xp.arange(nx, device=device)[None, :]
    inside = (rows >= edge) & (rows < ny - edge) & (cols >= edge) & (cols < nx - edge)
    if defects is not None:
        inside = inside & ~defects
    return inside


def run_isr(
    raw: Any,
    geometry: SensorGeometry,
    config: IsrConfig,
    *,
    bias: Any | None = None,
    defects: Any | None = None,
    xp: ModuleType,
) -> IsrResult:
    """Overscan, bias, trim and masks for a whole stack in one batched pass.

    Parameters
    ----------
    raw : array
        ``(..., amps, naxis2, naxis1)`` raw pixels (int32 or float).
    geometry : SensorGeometry
        Geometry shared by every amplifier of the stack.
    config : IsrConfig
        What to do.
    bias : array, optional
        ``(amps, naxis2, naxis1)`` master bias (overscan-corrected), subtracted when
        ``config.use_bias``.
    defects : array of bool, optional
        ``(amps, ny, nx)`` user defect mask in trimmed coordinates, True = bad.
    xp : module
        Array namespace of ``raw``.

    Returns
    -------
    IsrResult
        Trimmed images, good-pixel mask, read noise and overscan level per amp.
    """
    dtype = xp.float64 if config.dtype == "float64" else xp.float32
    pixels = xp.astype(raw, dtype, copy=False)
    model = serial_overscan_model(
        pixels,
        geometry,
        method=config.serial_overscan,
        skip=config.serial_skip,
        poly_order=config.poly_order,
        xp=xp,
    )
    if config.serial_overscan == "NONE":
        read_noise = xp.full(pixels.shape[:-2], xp.nan, dtype=xp.float64, device=pixels.device)
    else:
        read_noise = _read_noise(pixels, model, geometry, config.serial_skip, xp=xp)
    level = median(xp.reshape(model, (*model.shape[:-2], -1)), axis=-1, xp=xp)
    use_bias = config.use_bias and bias is not None

    def corrected(rows: slice, cols: slice) -> Any:
        """Overscan- and bias-corrected copy of one region (only the pixels needed)."""
        region = pixels[..., rows, cols] - (model if model.shape[-2] == 1 else model[..., rows, :])
        if use_bias:
            region -= xp.astype(bias[..., rows, cols], dtype)
        return region

    levels = None
    if config.parallel_overscan != "NONE":
        region = corrected(*_parallel_region(geometry, config.parallel_skip))
        levels = _column_levels(region, config.parallel_overscan, xp=xp)
    rows, cols = geometry.imaging.slices
    if fused(pixels, xp) and raw.dtype == pixels.dtype and _step_free(rows, cols):
        bound = math.inf if config.saturation is None else _bound(config.saturation, raw.dtype)
        images, good = _cpu_kernels.correct_imaging(
            pixels, model, bias if use_bias else None, levels, rows, cols, bound
        )
    else:
        images = corrected(rows, cols)
        if levels is not None:
            images -= levels
        good = xp.isfinite(images)
        if config.saturation is not None:
            good = good & _below(raw[..., rows, cols], config.saturation, xp=xp)
    if config.edge_mask > 0 or defects is not None:
        good = good & _edge_and_defects(
            images.shape, config.edge_mask, defects, device=images.device, xp=xp
        )
    return IsrResult(images, good, read_noise, level)

"""Batched instrument-signature removal on whole-CCD stacks.

Stacks are ``(..., amps, naxis2, naxis1)``: any number of leading axes (pairs,
exposures), then every amplifier of one sensor, which all share one layout
(:class:`SegmentRegions`). Each step is a handful of vectorised passes through the
backend's kernels; nothing here touches files, pandas or the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gpuptc.backend import Backend
from gpuptc.config import IsrConfig
from gpuptc.kernels import ArrayApiKernels
from gpuptc.kernels.bf_correct import correct_brighter_fatter
from gpuptc.kernels.linearize import AmpLinearizer, linearize

__all__ = [
    "BfCorrection",
    "Calibrations",
    "IsrResult",
    "SegmentRegions",
    "run_isr",
    "serial_overscan_model",
    "subtract_serial_overscan",
]

READ_NOISE_NSIGMA = 3.0
"""Clip of the overscan residual when measuring read noise (afw STDEVCLIP, 3 passes)."""


@dataclass(frozen=True)
class SegmentRegions:
    """Where the overscans and the imaging pixels lie in every raw segment of a stack.

    Attributes
    ----------
    serial_overscan : (slice, slice)
        Rows and columns of the serial overscan (every row, the columns after the
        imaging section).
    parallel_overscan : (slice, slice)
        Rows and columns of the parallel overscan (the rows after the imaging section,
        its columns).
    imaging : (slice, slice)
        Rows and columns of the imaging section.
    """

    serial_overscan: tuple[slice, slice]
    parallel_overscan: tuple[slice, slice]
    imaging: tuple[slice, slice]


def _statistic(
    region: Any, axis: int | tuple[int, ...], how: str, *, kernels: ArrayApiKernels
) -> Any:
    xp = kernels.xp
    if how == "mean":
        return xp.mean(region, axis=axis, keepdims=True)
    if isinstance(axis, tuple):
        shape = region.shape
        flat = xp.reshape(region, (*shape[: -len(axis)], -1))
        value = kernels.median(flat, axis=-1)
        return xp.reshape(value, (*value.shape, *(1,) * len(axis)))
    return xp.expand_dims(kernels.median(region, axis=axis), axis=axis)


def _kept(lines: slice, skip: tuple[int, int], what: str) -> slice:
    """``lines`` less ``skip`` leading and trailing ones; an error if none is left."""
    first, last = lines.start + skip[0], lines.stop - skip[1]
    if last <= first:
        raise ValueError(
            f"skipping {skip[0]} + {skip[1]} of {lines.stop - lines.start} {what} leaves none"
        )
    return slice(first, last)


def _serial_region(stack: Any, regions: SegmentRegions, skip: tuple[int, int]) -> Any:
    rows, cols = regions.serial_overscan
    return stack[..., rows, _kept(cols, skip, "serial overscan columns")]


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
    regions: SegmentRegions,
    *,
    method: str = "MEDIAN_PER_ROW",
    skip: tuple[int, int] = (3, 3),
    poly_order: int = 1,
    backend: Backend,
) -> Any:
    """Serial-overscan level to subtract, broadcastable against the stack.

    Parameters
    ----------
    stack : array
        ``(..., amps, naxis2, naxis1)`` floating-point raw pixels.
    regions : SegmentRegions
        The segments' layout.
    method : str
        ``MEAN``/``MEDIAN`` (one value per amp), ``MEAN_PER_ROW``/``MEDIAN_PER_ROW``,
        ``POLY`` (polynomial along rows fitted to the row means), ``NONE``.
    skip : (int, int)
        Leading and trailing overscan columns left out.
    poly_order : int
        Order of the ``POLY`` fit.
    backend : Backend
        Where the stack lives.

    Returns
    -------
    array
        ``(..., amps, 1, 1)`` for constant methods, ``(..., amps, naxis2, 1)`` otherwise.
    """
    xp, kernels = backend.xp, backend.kernels
    if method == "NONE":
        return xp.zeros((*stack.shape[:-2], 1, 1), dtype=stack.dtype, device=stack.device)
    region = _serial_region(stack, regions, skip)
    if method in ("MEAN", "MEDIAN"):
        return _statistic(region, (-2, -1), method.lower(), kernels=kernels)
    if method in ("MEAN_PER_ROW", "MEDIAN_PER_ROW"):
        return _statistic(region, -1, method.split("_")[0].lower(), kernels=kernels)
    if method == "POLY":
        return _poly_rows(xp.mean(region, axis=-1, keepdims=True), poly_order, xp=xp)
    raise ValueError(f"unknown serial overscan method {method!r}")


def subtract_serial_overscan(
    stack: Any,
    regions: SegmentRegions,
    *,
    skip: tuple[int, int] = (3, 3),
    method: str = "MEDIAN_PER_ROW",
    backend: Backend,
) -> Any:
    """Subtract the serial-overscan model from every pixel (see :func:`serial_overscan_model`)."""
    return stack - serial_overscan_model(stack, regions, method=method, skip=skip, backend=backend)


def _parallel_region(regions: SegmentRegions, skip: tuple[int, int]) -> tuple[slice, slice]:
    rows, cols = regions.parallel_overscan
    return _kept(rows, skip, "parallel overscan rows"), cols


def _column_levels(region: Any, method: str, *, kernels: ArrayApiKernels) -> Any:
    """Per-column level of the parallel overscan (a "row" of cp_pipe's transposed overscan)."""
    how = "median" if method == "MEDIAN_PER_ROW" else "mean"
    return _statistic(region, -2, how, kernels=kernels)


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


@dataclass(frozen=True)
class BfCorrection:
    """Brighter-fatter kernels the ISR corrects each amp's pixels by, and their gains.

    Attributes
    ----------
    kernels : array
        ``(amps, k, k)`` kernels (1/e-) in the images' orientation (parallel, serial), on
        the stack's device; an amp left alone has a zero kernel.
    gains : array
        ``(amps,)`` e-/ADU, each amp corrected in electrons.
    """

    kernels: Any
    gains: Any

    def amps(self, first: int, last: int) -> BfCorrection:
        """Those of amps ``first`` to ``last - 1``."""
        return BfCorrection(self.kernels[first:last], self.gains[first:last])

    def corrected(self, images: Any) -> Any:
        """``(..., amps, ny, nx)`` images corrected, each amp by its own kernel."""
        return correct_brighter_fatter(images, self.kernels, self.gains)[0]


@dataclass(frozen=True)
class Calibrations:
    """What the ISR corrects a stack with besides its own overscans, per amp in stack order.

    Attributes
    ----------
    bias : array or None
        ``(amps, naxis2, naxis1)`` master bias (overscan-corrected) on the stack's device,
        subtracted when the preset says so.
    linearizers : tuple of AmpLinearizer or None
        One per amp, applied after the bias.
    brighter_fatter : BfCorrection or None
        Kernels the pixels are corrected by after the linearity.
    excluded : array of bool or None
        ``(amps, ny, nx)`` imaging pixels left out by their place (the detector's edges,
        the vignetting selection: :func:`gpuptc.measuring.selection.excluded_pixels`).
    """

    bias: Any = None
    linearizers: tuple[AmpLinearizer, ...] | None = None
    brighter_fatter: BfCorrection | None = None
    excluded: Any = None

    def amps(self, first: int, last: int) -> Calibrations:
        """Those of amps ``first`` to ``last - 1``."""
        return Calibrations(
            None if self.bias is None else self.bias[first:last],
            None if self.linearizers is None else self.linearizers[first:last],
            None if self.brighter_fatter is None else self.brighter_fatter.amps(first, last),
            None if self.excluded is None else self.excluded[first:last],
        )


NO_CALIBRATIONS = Calibrations()
"""Nothing but the stack's own overscans."""


def _read_noise(
    stack: Any, model: Any, regions: SegmentRegions, skip: tuple[int, int], *, kernels: Any
) -> Any:
    xp = kernels.xp
    residual = _serial_region(stack, regions, skip) - model
    flat = xp.reshape(residual, (*residual.shape[:-2], -1))
    good = xp.isfinite(flat)
    _, variance, _ = kernels.clipped_stats(flat, good, nsigma=READ_NOISE_NSIGMA, niter=3)
    return xp.sqrt(variance)


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
    regions: SegmentRegions,
    config: IsrConfig,
    *,
    bias: Any | None = None,
    defects: Any | None = None,
    linearizers: tuple[AmpLinearizer, ...] | None = None,
    brighter_fatter: BfCorrection | None = None,
    backend: Backend,
) -> IsrResult:
    """Overscan, bias, trim, linearity, brighter-fatter and masks for a stack in one pass.

    Parameters
    ----------
    raw : array
        ``(..., amps, naxis2, naxis1)`` raw pixels (int32 or float).
    regions : SegmentRegions
        Layout shared by every amplifier of the stack.
    config : IsrConfig
        What to do.
    bias : array, optional
        ``(amps, naxis2, naxis1)`` master bias (overscan-corrected), subtracted when
        ``config.use_bias``.
    defects : array of bool, optional
        ``(amps, ny, nx)`` pixels left out, in trimmed coordinates, True = bad (defects,
        the preset's selections by place).
    linearizers : tuple of AmpLinearizer, optional
        One per amp: each amp's imaging pixels corrected by its own after the bias
        (saturation is judged on the raw values, as before).
    brighter_fatter : BfCorrection, optional
        Each amp's imaging pixels corrected by its kernel after the linearity, as Rubin's
        ISR corrects them (:func:`gpuptc.kernels.bf_correct.correct_brighter_fatter`;
        each amp alone, so the kernel's half width at its edges is left as it is).
    backend : Backend
        Where ``raw`` lives.

    Returns
    -------
    IsrResult
        Trimmed images, good-pixel mask, read noise and overscan level per amp.
    """
    xp, kernels = backend.xp, backend.kernels
    dtype = xp.float64 if config.dtype == "float64" else xp.float32
    pixels = xp.astype(raw, dtype, copy=False)
    model = serial_overscan_model(
        pixels,
        regions,
        method=config.serial_overscan,
        skip=config.serial_skip,
        poly_order=config.poly_order,
        backend=backend,
    )
    if config.serial_overscan == "NONE":
        read_noise = xp.full(pixels.shape[:-2], xp.nan, dtype=xp.float64, device=pixels.device)
    else:
        read_noise = _read_noise(pixels, model, regions, config.serial_skip, kernels=kernels)
    level = kernels.median(xp.reshape(model, (*model.shape[:-2], -1)), axis=-1)
    bias = bias if config.use_bias else None
    levels = None
    if config.parallel_overscan != "NONE":
        region = kernels.corrected_region(
            pixels, model, bias, *_parallel_region(regions, config.parallel_skip)
        )
        levels = _column_levels(region, config.parallel_overscan, kernels=kernels)
    images, good = kernels.correct_imaging(
        pixels, raw, model, bias, levels, regions.imaging, config.saturation
    )
    if linearizers is not None:
        images = linearize(images, list(linearizers))
    if brighter_fatter is not None:
        images = brighter_fatter.corrected(images)
    edge = config.edge_mask if config.edge_mask_level == "AMP" else 0
    if edge > 0 or defects is not None:
        good = good & _edge_and_defects(images.shape, edge, defects, device=images.device, xp=xp)
    return IsrResult(images, good, read_noise, level)

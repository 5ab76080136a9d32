"""Pixel primitives, chosen once per backend.

The ISR (:mod:`gpuptc.measuring.isr`) and the pair statistics
(:mod:`gpuptc.measuring.stats`) call the methods of a kernels object and never ask which
backend they run on. Each class here makes one native-or-generic choice per primitive by
overriding it:

========================  ===============================================================
:class:`ArrayApiKernels`  the array-API reference (sorts, masked sums); any namespace
:class:`NumpyKernels`     NumPy's own selections: ``np.partition``, ``np.median``,
                          ``np.count_nonzero``
:class:`FusedCpuKernels`  NumPy with numba kernels (:mod:`gpuptc.kernels.numba_cpu`) for
                          float arrays: one pass where the reference makes several, FFT
                          lag sums on cropped images with scipy.fft
:class:`CupyKernels`      CuPy: ``cupy.median``
========================  ===============================================================

:func:`kernels_for` picks the class of a backend.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from gpuptc import settings
from gpuptc.kernels import numba_cpu
from gpuptc.kernels.fft import lag_sums_cpu
from gpuptc.kernels.generic import AFW_IQR_TO_SIGMA, ArrayApiKernels, float32_bound

__all__ = [
    "AFW_IQR_TO_SIGMA",
    "ArrayApiKernels",
    "CupyKernels",
    "FusedCpuKernels",
    "NumpyKernels",
    "kernels_for",
]


class NumpyKernels(ArrayApiKernels):
    """The reference on NumPy, with NumPy's selections instead of full sorts."""

    name = "numpy"

    def count_true(self, mask: Any) -> Any:
        """Number of True values along the last axis, as int64."""
        return np.count_nonzero(mask, axis=-1).astype(np.int64)

    def median(self, x: Any, axis: int) -> Any:
        """``np.median`` along ``axis``."""
        return np.median(x, axis=axis)

    def order_statistics(self, filled: Any, counts: Any, ranks: Any) -> Any:
        """Values of the wanted ranks of each row by ``np.partition``."""
        values, counts, ranks = np.asarray(filled), np.asarray(counts), np.asarray(ranks)
        flat = values.reshape(-1, values.shape[-1])
        flat_ranks = ranks.reshape(-1, ranks.shape[-1])
        out = np.empty(flat_ranks.shape, dtype=values.dtype)
        for row in range(flat.shape[0]):
            if counts.reshape(-1)[row] == 0:
                out[row] = np.nan
                continue
            part = np.partition(flat[row], np.unique(flat_ranks[row]))
            out[row] = part[flat_ranks[row]]
        return out.reshape(ranks.shape)


def _float(*arrays: Any) -> bool:
    return all(a.dtype in (np.float32, np.float64) for a in arrays)


class FusedCpuKernels(NumpyKernels):
    """NumPy with the numba kernels for float arrays (the same numbers in fewer passes)."""

    name = "numpy-fused"

    def median(self, x: Any, axis: int) -> Any:
        """Median by counting or in-place selection (:func:`numba_cpu.median_last_axis`)."""
        if not _float(x):
            return super().median(x, axis)
        return numba_cpu.median_last_axis(np.moveaxis(x, axis, -1))

    def masked_quantiles(self, x: Any, good: Any, quantiles: tuple[float, ...]) -> list[Any]:
        """Quantiles by histogram narrowing (:func:`numba_cpu.masked_quantiles`)."""
        if not _float(x):
            return super().masked_quantiles(x, good, quantiles)
        return numba_cpu.masked_quantiles(x, good & np.isfinite(x), quantiles)

    def clipped_stats(
        self, x: Any, good: Any, *, nsigma: float, niter: int
    ) -> tuple[Any, Any, Any]:
        """Each clipping pass in one sweep (:func:`numba_cpu.clipped_moments`)."""
        if not _float(x):
            return super().clipped_stats(x, good, nsigma=nsigma, niter=niter)
        if niter < 1:
            raise ValueError("niter must be at least 1")
        return numba_cpu.clipped_moments(
            x, good, nsigma=nsigma, niter=niter, iqr_to_sigma=AFW_IQR_TO_SIGMA
        )

    def ks_prepare(self, rows: Any) -> Any:
        """The rows as they are: the numba kernels need no order (float rows)."""
        if not _float(rows):
            return super().ks_prepare(rows)
        return rows

    def ks_histogram(self, prepared: Any, edges: Any) -> tuple[Any, Any]:
        """One counting pass per row, fine cells too (:func:`numba_cpu.ks_histogram`)."""
        if not _float(prepared):
            return super().ks_histogram(prepared, edges)
        return numba_cpu.ks_histogram(prepared, edges)

    def ks_statistic(
        self, rows: Any, count: Any, centre: Any, width: Any, cells: Any = None
    ) -> Any:
        """Exact, from counts and a few sorted cells (:func:`numba_cpu.ks_statistic`)."""
        if not _float(rows):
            return super().ks_statistic(rows, count, centre, width)
        return numba_cpu.ks_statistic(rows, count, centre, width, cells)

    def masked_mean(self, x: Any, good: Any) -> Any:
        """One-pass masked mean (:func:`numba_cpu.masked_mean`)."""
        if not _float(x):
            return super().masked_mean(x, good)
        return numba_cpu.masked_mean(x, good)

    def masked_variance(self, x: Any, good: Any) -> Any:
        """Two-pass masked population variance (:func:`numba_cpu.masked_variance`)."""
        if not _float(x):
            return super().masked_variance(x, good)
        return numba_cpu.masked_variance(x, good)

    def flux_matched_difference(self, f1: Any, f2: Any, mean1: Any, mean2: Any, mean: Any) -> Any:
        """One pass (:func:`numba_cpu.flux_matched_difference`)."""
        if not _float(f1, f2):
            return super().flux_matched_difference(f1, f2, mean1, mean2, mean)
        return numba_cpu.flux_matched_difference(f1, f2, mean1, mean2, mean)

    def squared_difference_ratio(self, i1: Any, i2: Any, good: Any, scale: Any = None) -> Any:
        """One pass (:func:`numba_cpu.squared_difference_ratio`)."""
        if not _float(i1, i2):
            return super().squared_difference_ratio(i1, i2, good, scale)
        return numba_cpu.squared_difference_ratio(i1, i2, good, scale)

    def lag_sums(self, d: Any, w: Any, size: int) -> tuple[Any, Any, Any]:
        """Cropped images, scipy.fft, direct partner sums where few pixels are masked."""
        if not _float(d):
            return super().lag_sums(d, w, size)
        return lag_sums_cpu(d, w, size, numba_cpu.masked_lag_sums, numba_cpu.lag_products)

    def correct_imaging(
        self,
        pixels: Any,
        raw: Any,
        model: Any,
        bias: Any | None,
        levels: Any | None,
        imaging: tuple[slice, slice],
        saturation: float | None,
    ) -> tuple[Any, Any]:
        """The imaging-section ISR in one pass (:func:`numba_cpu.correct_imaging`)."""
        rows, cols = imaging
        step_free = all(s.step in (None, 1) for s in imaging)
        if not (_float(pixels) and raw.dtype == pixels.dtype and step_free):
            return super().correct_imaging(pixels, raw, model, bias, levels, imaging, saturation)
        bound = np.inf
        if saturation is not None:
            bound = float32_bound(saturation) if raw.dtype == np.float32 else saturation
        return numba_cpu.correct_imaging(pixels, model, bias, levels, rows, cols, bound)


class CupyKernels(ArrayApiKernels):
    """The reference on CuPy, with ``cupy.median``."""

    name = "cupy"

    def median(self, x: Any, axis: int) -> Any:
        """``cupy.median`` along ``axis``."""
        import cupy

        return cupy.median(x, axis=axis)


def _cuda_kernels_chosen() -> bool:
    """``GPUPTC_CUDA=1`` opts in to the fused CUDA kernels (not yet run on a GPU here)."""
    return settings.cuda()


def kernels_for(name: str, xp: ModuleType, *, fused: bool | None = None) -> ArrayApiKernels:
    """The kernels of a backend.

    Parameters
    ----------
    name : str
        Backend name (``numpy``, ``cupy``, ``torch``, ...).
    xp : module
        Its array namespace.
    fused : bool, optional
        NumPy: the numba kernels (default: when numba imports and ``GPUPTC_NUMBA`` is not
        ``0``). CuPy: the fused CUDA kernels of :mod:`gpuptc.kernels.cuda` (default: only
        with ``GPUPTC_CUDA=1``).

    Returns
    -------
    ArrayApiKernels
        The kernels object.
    """
    if name == "numpy":
        if fused is None:
            fused = numba_cpu.available()
        if fused and numba_cpu.numba is None:
            raise ValueError("the fused NumPy kernels need numba (pip install numba)")
        return FusedCpuKernels(xp) if fused else NumpyKernels(xp)
    if name == "cupy":
        if fused if fused is not None else _cuda_kernels_chosen():
            from gpuptc.kernels.cuda import FusedCupyKernels

            return FusedCupyKernels(xp)
        return CupyKernels(xp)
    return ArrayApiKernels(xp)

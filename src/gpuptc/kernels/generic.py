"""The pixel primitives written once against the array API standard.

:class:`ArrayApiKernels` is the reference for every primitive and what any array-API
namespace runs (torch, array_api_strict, ...): sorts and masked sums, fixed iteration
counts, no boolean indexing, no data-dependent shapes. Backends with faster native or
fused forms subclass it and replace single methods (:mod:`gpuptc.kernels`).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from gpuptc.kernels import fft

__all__ = [
    "AFW_IQR_TO_SIGMA",
    "ArrayApiKernels",
    "float32_bound",
    "normal_cdf",
    "shifted_moments",
]

AFW_IQR_TO_SIGMA = 0.741301109252802
"""Gaussian sigma per unit of interquartile range (afw's constant)."""


def float32_bound(threshold: float) -> float:
    """The smallest float32 not below ``threshold``.

    ``x < threshold`` holds exactly when ``x < bound`` for every float32 ``x``.
    """
    bound = np.float32(threshold)
    if float(bound) < threshold:
        bound = np.nextafter(bound, np.float32(np.inf))
    return float(bound)


def shifted_moments(count: Any, total: Any, squares: Any, *, xp: ModuleType) -> tuple[Any, Any]:
    """Mean and unbiased variance from a count and float64 sums of (shifted) values.

    NaN mean without values, NaN variance with fewer than two.
    """
    n = xp.astype(count, xp.float64)
    safe = xp.where(n > 1, n, 2.0)
    mean = total / xp.where(n > 0, n, 1.0)
    variance = (squares - total * total / safe) / (safe - 1.0)
    return xp.where(n > 0, mean, xp.nan), xp.where(n > 1, variance, xp.nan)


_ERFC_COEFFICIENTS = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)
"""Chebyshev-fitted erfc (fractional error below 1.2e-7 everywhere)."""


def normal_cdf(z: Any, xp: ModuleType) -> Any:
    """The standard normal distribution function on any array library.

    Examples
    --------
    >>> import numpy as np
    >>> round(float(normal_cdf(np.asarray(1.0), np)), 6)
    0.841345
    """
    x = xp.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * x)
    poly = xp.zeros_like(t) + _ERFC_COEFFICIENTS[-1]
    for coefficient in reversed(_ERFC_COEFFICIENTS[1:-1]):
        poly = coefficient + t * poly
    half = 0.5 * t * xp.exp(-x * x + _ERFC_COEFFICIENTS[0] + t * poly)
    return xp.where(z >= 0, 1.0 - half, half)


class ArrayApiKernels:
    """Pixel primitives on any array-API namespace.

    Parameters
    ----------
    xp : module
        The (array-api-compat wrapped) namespace the arrays belong to.
    """

    name = "array-api"

    def __init__(self, xp: ModuleType) -> None:
        self.xp = xp

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.xp.__name__})"

    # -- counting and order statistics -------------------------------------------------

    def count_true(self, mask: Any) -> Any:
        """Number of True values along the last axis, as int64."""
        xp = self.xp
        return xp.sum(xp.astype(mask, xp.int32), axis=-1, dtype=xp.int64)

    def median(self, x: Any, axis: int) -> Any:
        """Median along one axis (mean of the two middle values for even counts).

        Parameters
        ----------
        x : array
            Input values; NaNs propagate.
        axis : int
            Axis to reduce.

        Returns
        -------
        array
            ``x`` reduced along ``axis``.
        """
        xp = self.xp
        ordered = xp.sort(x, axis=axis)
        n = ordered.shape[axis]
        lower = xp.take(ordered, xp.asarray([(n - 1) // 2], device=ordered.device), axis=axis)
        upper = xp.take(ordered, xp.asarray([n // 2], device=ordered.device), axis=axis)
        return xp.squeeze((lower + upper) / 2, axis=axis)

    def order_statistics(self, filled: Any, counts: Any, ranks: Any) -> Any:
        """Values of rank ``ranks[..., k]`` in each row of ``filled`` (masked values +inf)."""
        ordered = self.xp.sort(filled, axis=-1)
        return self.xp.take_along_axis(ordered, ranks, axis=-1)

    def masked_quantiles(self, x: Any, good: Any, quantiles: tuple[float, ...]) -> list[Any]:
        """Quantiles of the good values of each row, NumPy's linear interpolation.

        Parameters
        ----------
        x : array
            ``(..., n)`` values.
        good : array of bool
            ``(..., n)`` which values count (non-finite values never do).
        quantiles : tuple of float
            Quantiles in [0, 1], interpolated at index ``q * (count - 1)``.

        Returns
        -------
        list of array
            One float64 ``(...)`` array per quantile; NaN for rows without good values.
        """
        xp = self.xp
        good = good & xp.isfinite(x)
        counts = self.count_true(good)
        big = xp.asarray(xp.inf, dtype=x.dtype, device=x.device)
        filled = xp.where(good, x, big)
        positions = [q * (xp.astype(counts, xp.float64) - 1.0) for q in quantiles]
        # xp.maximum, not xp.clip: clip masks by boolean indexing, a host sync on CuPy
        positions = [xp.maximum(p, xp.zeros_like(p)) for p in positions]
        lower = [xp.astype(xp.floor(p), xp.int64) for p in positions]
        last = xp.maximum(counts - 1, xp.zeros_like(counts))
        upper = [xp.minimum(lo + 1, last) for lo in lower]
        ranks = xp.stack([r for pair in zip(lower, upper, strict=True) for r in pair], axis=-1)
        picked = xp.astype(self.order_statistics(filled, counts, ranks), xp.float64)
        empty = counts == 0
        results = []
        for k, pos in enumerate(positions):
            lo_value, hi_value = picked[..., 2 * k], picked[..., 2 * k + 1]
            value = lo_value + (pos - xp.floor(pos)) * (hi_value - lo_value)
            results.append(xp.where(empty, xp.nan, value))
        return results

    # -- means and variances --------------------------------------------------------------

    def masked_mean(self, x: Any, good: Any) -> Any:
        """Mean of the good values of each row (float64 sums); NaN for rows without any."""
        xp = self.xp
        zero = xp.zeros((), dtype=x.dtype, device=x.device)
        total = xp.sum(xp.where(good, x, zero), axis=-1, dtype=xp.float64)
        count = xp.astype(self.count_true(good), xp.float64)
        return xp.where(count > 0, total / xp.where(count > 0, count, 1.0), xp.nan)

    def masked_variance(self, x: Any, good: Any) -> Any:
        """Population variance (ddof 0) of the good values, two passes, float64 sums."""
        xp = self.xp
        mean = self.masked_mean(x, good)
        zero = xp.zeros((), dtype=x.dtype, device=x.device)
        centred = xp.where(good, x - xp.astype(mean, x.dtype)[..., None], zero)
        count = xp.astype(self.count_true(good), xp.float64)
        second = xp.sum(centred * centred, axis=-1, dtype=xp.float64)
        return xp.where(count > 0, second / xp.where(count > 0, count, 1.0), xp.nan)

    def clip_sums(self, x: Any, good: Any, centre: Any, half_width: Any) -> tuple[Any, Any, Any]:
        """One afw clipping pass over each row.

        Of the good values within ``half_width`` of ``centre`` (tests inclusive, offsets
        in the dtype of ``x``): the count (int64) and the float64 sums of the offsets and
        of their squares.
        """
        xp = self.xp
        offset = x - xp.astype(centre, x.dtype)[..., None]
        kept = good & (xp.abs(offset) <= xp.astype(half_width, x.dtype)[..., None])
        values = xp.where(kept, offset, xp.zeros((), dtype=offset.dtype, device=offset.device))
        total = xp.sum(values, axis=-1, dtype=xp.float64)
        squares = xp.sum(values * values, axis=-1, dtype=xp.float64)
        return self.count_true(kept), total, squares

    def clipped_stats(
        self, x: Any, good: Any, *, nsigma: float, niter: int
    ) -> tuple[Any, Any, Any]:
        """afw-style sigma-clipped mean and variance of each row.

        Pass 0 keeps good values within ``nsigma * 0.7413 * IQR`` of the median; each
        later pass keeps good values within ``nsigma`` standard deviations of the previous
        mean. Tests are inclusive; variances are unbiased (n - 1); sums are float64.

        Parameters
        ----------
        x : array
            ``(..., n)`` values.
        good : array of bool
            ``(..., n)`` values eligible at all (unmasked and finite).
        nsigma : float
            Clip half-width in standard deviations.
        niter : int
            Number of passes (afw's ``nIter``; cp_pipe uses 3).

        Returns
        -------
        mean, variance : array
            ``(...)`` float64; NaN where fewer than two values survive.
        count : array
            ``(...)`` int64 number of values kept by the last pass.
        """
        if niter < 1:
            raise ValueError("niter must be at least 1")
        xp = self.xp
        good = good & xp.isfinite(x)
        q25, q50, q75 = self.masked_quantiles(x, good, (0.25, 0.5, 0.75))
        centre = q50
        half_width = nsigma * AFW_IQR_TO_SIGMA * (q75 - q25)
        mean = variance = count = None
        for _ in range(niter):
            count, total, squares = self.clip_sums(x, good, centre, half_width)
            mean, variance = shifted_moments(count, total, squares, xp=xp)
            mean = mean + xp.astype(xp.astype(centre, x.dtype), xp.float64)
            centre, half_width = mean, nsigma * xp.sqrt(variance)
        return mean, variance, count

    def at_most(self, x: Any, bound: Any) -> Any:
        """``x <= bound[..., None]`` for a float64 ``bound``, exactly, in the dtype of ``x``.

        A float32 ``x`` is compared with the largest float32 not above ``bound`` (the same
        answer as a float64 comparison, without a float64 copy of ``x``).
        """
        xp = self.xp
        if x.dtype == xp.float32:
            narrow = xp.astype(bound, xp.float32)
            down = xp.nextafter(narrow, xp.full_like(narrow, -xp.inf))
            narrow = xp.where(xp.astype(narrow, xp.float64) > bound, down, narrow)
            return x <= narrow[..., None]
        return x <= xp.astype(bound, x.dtype)[..., None]

    # -- pair images ------------------------------------------------------------------------

    def flux_matched_difference(self, f1: Any, f2: Any, mean1: Any, mean2: Any, mean: Any) -> Any:
        """``(mean2 I1 - mean1 I2) / mean`` per row, in the images' dtype."""
        xp = self.xp
        dtype = f1.dtype
        return (
            xp.astype(mean2[..., None], dtype) * f1 - xp.astype(mean1[..., None], dtype) * f2
        ) / xp.astype(mean[..., None], dtype)

    def squared_difference_ratio(self, i1: Any, i2: Any, good: Any, scale: Any = None) -> Any:
        """Mean of ``(I1 - s I2)**2 / (I1 + s**2 I2)`` over good pixels with a positive divisor.

        Per row; ``s`` is the row's ``scale`` (float64, rounded to the images' dtype), 1 by
        default. For Poisson pixels the divisor is the expectation of the numerator over
        the gain, whatever ``s``: with ``s = mean1 / mean2`` the ratio is the inverse gain
        of the flux-matched pair.
        """
        xp = self.xp
        if scale is None:
            total = i1 + i2
        else:
            factor = xp.astype(scale, i2.dtype)[..., None]
            total = i1 + (factor * factor) * i2
            i2 = factor * i2
        usable = good & (total > 0)
        one = xp.ones((), dtype=total.dtype, device=total.device)
        ratio = (i1 - i2) * (i1 - i2) / xp.where(usable, total, one)
        return self.masked_mean(ratio, usable)

    def lag_sums(self, d: Any, w: Any, size: int) -> tuple[Any, Any, Any]:
        """Sums of products, of partner values and of pixel pairs at every lag.

        See :func:`gpuptc.kernels.fft.lag_sums`; arrays are ``(images, 2 size - 1, 2 size - 1)``.
        """
        return fft.lag_sums(d, w, size, xp=self.xp)

    # -- ISR ----------------------------------------------------------------------------------

    def below(self, raw: Any, threshold: float) -> Any:
        """``raw < threshold`` exactly, compared in the raw dtype (no float64 copy)."""
        xp = self.xp
        if xp.isdtype(raw.dtype, "integral"):
            return raw < math.ceil(threshold)
        if raw.dtype == xp.float32:
            return raw < float32_bound(threshold)
        return raw < threshold

    def corrected_region(
        self, pixels: Any, model: Any, bias: Any | None, rows: slice, cols: slice
    ) -> Any:
        """Overscan- and bias-corrected copy of one region (only the pixels needed)."""
        region = pixels[..., rows, cols] - (model if model.shape[-2] == 1 else model[..., rows, :])
        if bias is not None:
            region -= self.xp.astype(bias[..., rows, cols], pixels.dtype)
        return region

    def ks_prepare(self, rows: Any) -> Any:
        """Rows of samples (+inf where a value is not in the sample) as the KS test reads them.

        Here each row sorted ascending: :meth:`ks_histogram` and :meth:`ks_statistic` read
        the sorted rows. A kernel set that needs no order returns the rows as they are.
        """
        return self.xp.sort(rows, axis=-1, stable=False)

    def ks_histogram(self, prepared: Any, edges: Any) -> tuple[Any, Any]:
        """Each row's count of sample values in each bin between its ``edges``.

        Parameters
        ----------
        prepared : array
            ``(r, n)`` from :meth:`ks_prepare`.
        edges : array
            ``(r, bins + 1)`` ascending; a bin holds ``[e_k, e_k+1)``, the last one closed.

        Returns
        -------
        counts : array
            ``(r, bins)`` int64, from a bisection of every edge at once in the sorted rows.
        state : None
            What :meth:`ks_statistic` may start from (a kernel set that counts finer cells
            in the same pass returns them here).
        """
        xp = self.xp
        rows = prepared
        n = rows.shape[-1]
        flat = xp.reshape(rows, (-1,))
        offsets = xp.reshape(xp.arange(rows.shape[0], device=rows.device) * n, (-1, 1))
        last = xp.reshape(
            xp.arange(edges.shape[-1], device=rows.device) == edges.shape[-1] - 1, (1, -1)
        )
        low = xp.zeros(edges.shape, dtype=xp.int64, device=rows.device)
        high = xp.full(edges.shape, n, dtype=xp.int64, device=rows.device)
        for _ in range(max(1, math.ceil(math.log2(n + 1)))):
            middle = (low + high) // 2
            at = xp.reshape(offsets + xp.minimum(middle, n - 1), (-1,))
            value = xp.reshape(xp.take(flat, at), edges.shape)
            before = xp.where(last, value <= edges, value < edges) & (middle < n)
            low = xp.where(before, middle + 1, low)
            high = xp.where(before, high, middle)
        return low[:, 1:] - low[:, :-1], None

    def ks_statistic(
        self, rows: Any, count: Any, centre: Any, width: Any, cells: Any = None
    ) -> Any:
        """The two-sided Kolmogorov-Smirnov statistic of each row against a normal.

        Parameters
        ----------
        rows : array
            ``(r, n)`` from :meth:`ks_prepare` (here sorted ascending), its first
            ``count`` the sample, the rest +inf.
        count, centre, width : array
            ``(r,)`` the sample sizes and each row's normal distribution.
        cells : optional
            :meth:`ks_histogram`'s state (unused here).

        Returns
        -------
        array
            ``(r,)`` float64: ``max(i/n - F(x_i), F(x_i) - (i-1)/n)`` over the sample.

        Notes
        -----
        In the rows' precision (float32 ranks are exact to 16 million values); past the
        sample the distribution function is 1, where the ranks capped at ``count`` add
        nothing above the sample's own statistic.
        """
        xp = self.xp
        n = rows.shape[-1]
        dtype = rows.dtype
        rank = xp.reshape(xp.arange(1, n + 1, dtype=dtype, device=rows.device), (1, n))
        total = xp.reshape(xp.astype(count, dtype), (-1, 1))
        scale = xp.reshape(xp.astype(width, dtype), (-1, 1))
        cdf = normal_cdf((rows - xp.reshape(xp.astype(centre, dtype), (-1, 1))) / scale, xp)
        above = xp.max(xp.minimum(rank, total) / total - cdf, axis=-1)
        below = xp.max(cdf - (rank - 1.0) / total, axis=-1)
        return xp.astype(xp.maximum(above, below), xp.float64)

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
        """Trimmed imaging pixels less overscan, bias and parallel levels, and their mask.

        Parameters
        ----------
        pixels : array
            ``(..., amps, naxis2, naxis1)`` raw pixels in the working float dtype.
        raw : array
            The same pixels as read (for the saturation test in their own dtype).
        model : array
            Serial-overscan model, ``(..., amps, naxis2 or 1, 1)``.
        bias : array or None
            ``(amps, naxis2, naxis1)`` master bias.
        levels : array or None
            Parallel-overscan levels, ``(..., amps, 1, nx)``.
        imaging : (slice, slice)
            Rows and columns of the imaging section.
        saturation : float or None
            Raw level at or above which pixels are masked.

        Returns
        -------
        images : array
            ``(..., amps, ny, nx)``: ``pixels - model - bias - levels``, in this order.
        good : array of bool
            Finite and below ``saturation``.
        """
        rows, cols = imaging
        images = self.corrected_region(pixels, model, bias, rows, cols)
        if levels is not None:
            images -= levels
        good = self.xp.isfinite(images)
        if saturation is not None:
            good = good & self.below(raw[..., rows, cols], saturation)
        return images, good

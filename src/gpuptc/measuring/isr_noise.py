"""What the ISR does to the read noise: the overscan estimator's bias and the noise it adds.

A raw pixel carries the amplifier's read noise ``sigma`` and the digitisation's
``1/12 ADU^2`` (the raws are integers): ``sigma_raw^2 = sigma^2 + 1/12``. Two numbers of
the pairs table follow from it, for each overscan method of :class:`gpuptc.config.IsrConfig`:

- the **overscan read noise** (``read_noise_adu``) is the clipped standard deviation of
  the serial overscan less its own per-row estimate: a residual with variance
  ``sigma_raw^2 (1 - 2/N + k_N/N)`` for the median of ``N`` columns (``1 - 1/N`` for the
  mean), narrowed by the 3-sigma clip (afw's, three passes) to about 0.97 of it
  (:func:`overscan_estimator_factor`). ``read_noise_pixel_adu`` undoes both and takes the
  digitisation out: the per-pixel read noise ``sigma``;
- the **ISR noise** (``isr_noise_adu``) is what the correction adds to every imaging
  pixel besides ``sigma``: the digitisation, the serial estimate's ``k_N/N`` (``1/N``
  for a mean) of ``sigma_raw^2`` and the parallel estimate's ``k_M/M`` of the serially
  corrected overscan rows, each made anew for every flat. The PTC's noise term is then
  ``sqrt(sigma^2 + isr^2)``. A master bias adds nothing to it: the same one is
  subtracted from both flats of a pair and cancels in their difference.

``k_N = N Var(median) / sigma^2`` for ``N`` normal values (``pi/2`` for large ``N``, 1
for ``N`` = 1 and 2) is computed exactly here (:func:`median_variance_factor`). A row
common mode (an offset shared by a row's pixels and its overscan) cancels in every
per-row method; the constant (``MEAN``, ``MEDIAN``) and ``POLY`` serial methods leave it
in both the overscan noise and the imaging pixels, so their ``read_noise_pixel_adu``
includes it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from gpuptc.backend import get_backend
from gpuptc.config import IsrConfig
from gpuptc.measuring.isr import READ_NOISE_NSIGMA, SegmentRegions

__all__ = [
    "DIGITISATION_VARIANCE",
    "IsrNoise",
    "isr_noise",
    "median_variance_factor",
    "overscan_estimator_factor",
]

DIGITISATION_VARIANCE = 1.0 / 12.0
"""ADU^2 of rounding every raw pixel to an integer."""

_READ_NOISE_PASSES = 3
"""The clip passes of the overscan read noise (:func:`gpuptc.measuring.isr.run_isr`)."""


@functools.lru_cache(maxsize=256)
def median_variance_factor(n: int) -> float:
    """``n Var(median) / sigma^2`` of ``n`` independent normal values.

    The median of an even number of values is the mean of the two middle ones (NumPy's,
    ip_isr's). Exact to about 1e-6, by quadrature of the order statistics' densities.

    Examples
    --------
    >>> median_variance_factor(1), median_variance_factor(2)
    (1.0, 1.0)
    >>> round(median_variance_factor(3), 3)  # 3 x 0.4487
    1.346
    >>> round(median_variance_factor(10001), 3)  # pi / 2 for many values
    1.571
    """
    if n < 1:
        raise ValueError(f"a median of {n} values")
    if n <= 2:
        return 1.0
    if n > _EXACT_UP_TO:
        return math.pi / 2
    grid = np.linspace(-9.0, 9.0, 36001)
    step = grid[1] - grid[0]
    logpdf = -0.5 * grid**2 - 0.5 * math.log(2.0 * math.pi)  # the standard normal's
    log_cdf, log_sf = special.log_ndtr(grid), special.log_ndtr(-grid)
    if n % 2:
        k = n // 2  # values below the median
        log_norm = special.gammaln(n + 1) - 2 * special.gammaln(k + 1)
        density = np.exp(log_norm + k * (log_cdf + log_sf) + logpdf)
        return float(n * np.sum(grid**2 * density) * step)
    return float(n * _middle_pair_mean_square(n // 2, grid, logpdf, log_cdf, log_sf))


_EXACT_UP_TO = 400
"""Medians of more values take the limit pi/2 (its error is below 1e-5 of the variance)."""


def _middle_pair_mean_square(
    m: int, grid: np.ndarray, logpdf: np.ndarray, log_cdf: np.ndarray, log_sf: np.ndarray
) -> float:
    """``E[((X_m + X_m+1) / 2)^2]`` for the middle pair of ``2 m`` standard normal values.

    The joint density of the pair, ``C Phi(x)^(m-1) phi(x) phi(y) (1 - Phi(y))^(m-1)`` for
    ``x < y``, integrated over ``y > x`` by cumulative sums in logarithms (the factors
    alone overflow for large ``m``), then over ``x``.
    """
    step = grid[1] - grid[0]
    log_norm = special.gammaln(2 * m + 1) - 2 * special.gammaln(m)
    upper = (m - 1) * log_sf + logpdf  # the y factor, in logarithms

    def above(weight: np.ndarray) -> np.ndarray:
        """Integral over y > x of ``weight exp(upper)`` times the x factor, per x.

        Trapezoids: the point y = x counts half (the density is largest there).
        """
        terms = np.where(weight != 0, np.log(np.abs(weight) + 1e-300) + upper, -np.inf)
        cumulative = np.logaddexp.accumulate(terms[::-1])[::-1]
        return (np.exp(lower + cumulative) - 0.5 * np.exp(lower + terms)) * step

    lower = log_norm + (m - 1) * log_cdf + logpdf  # the x factor
    total = 0.0
    for power_x, power_y, times in ((2, 0, 1), (1, 1, 2), (0, 2, 1)):
        weight_y = grid**power_y
        inner = above(np.maximum(weight_y, 0)) - above(np.maximum(-weight_y, 0))
        total += times * float(np.sum(grid**power_x * inner) * step)
    return total / 4


_ESTIMATOR_VALUES = 2_000_000
"""Normal values behind :func:`overscan_estimator_factor` (0.05 % in the noise)."""


@functools.lru_cache(maxsize=32)
def overscan_estimator_factor(method: str, columns: int) -> float:
    """Expected overscan read-noise variance over the raw pixel variance, per method.

    The overscan read noise is afw's 3-sigma, 3-pass clipped variance of the serial
    overscan less its own per-row estimate. Less its row's mean, a value keeps
    ``1 - 1/N`` of its variance; less its row's median, ``1 - 2/N + k_N/N``; the clip
    keeps about 0.97 of the rest, a little less than of a normal (the residual is not
    quite one: 0.6 % in the noise for 18 columns). The product is taken from the
    estimator itself, run on 2 million seeded normal values in rows of ``columns``.

    Examples
    --------
    >>> round(overscan_estimator_factor("MEAN_PER_ROW", 17), 3)  # (1 - 1/17) x 0.970
    0.913
    >>> round(overscan_estimator_factor("MEDIAN", 48), 3)  # one level: the clip alone
    0.97
    """
    rng = np.random.default_rng(31)
    rows = max(_ESTIMATOR_VALUES // columns, 1)
    values = rng.standard_normal((rows, columns))
    if method in ("MEAN_PER_ROW", "MEDIAN_PER_ROW"):
        level = np.median if method == "MEDIAN_PER_ROW" else np.mean
        values -= level(values, axis=-1, keepdims=True)
    flat = values.reshape(1, -1)
    kernels = get_backend("numpy").kernels
    _, variance, _ = kernels.clipped_stats(
        flat, np.ones(flat.shape, bool), nsigma=READ_NOISE_NSIGMA, niter=_READ_NOISE_PASSES
    )
    return float(variance[0])


@dataclass(frozen=True)
class IsrNoise:
    """The noise factors of one preset's ISR on one layout.

    Attributes
    ----------
    estimator : float
        Expected overscan read-noise variance over ``sigma_raw^2``.
    added : float
        Variance the per-flat corrections add to an imaging pixel, over
        ``sigma_raw^2`` (what a pair's difference keeps of them).
    """

    estimator: float
    added: float

    def pixel_noise(self, read_noise_adu: np.ndarray) -> np.ndarray:
        """The per-pixel read noise ``sigma`` (ADU) from the overscan read noise."""
        raw = np.asarray(read_noise_adu, float) ** 2 / self.estimator
        return np.sqrt(np.maximum(raw - DIGITISATION_VARIANCE, 0.0))

    def isr_noise(self, read_noise_adu: np.ndarray) -> np.ndarray:
        """The noise (ADU) the digitisation and the ISR add to each imaging pixel."""
        raw = np.asarray(read_noise_adu, float) ** 2 / self.estimator
        return np.sqrt(DIGITISATION_VARIANCE + self.added * raw)


def _estimate_factor(method: str, count: int) -> float:
    """Variance of one estimate from ``count`` values, over one value's."""
    return (median_variance_factor(count) if "MEDIAN" in method else 1.0) / count


def isr_noise(config: IsrConfig, regions: SegmentRegions) -> IsrNoise:
    """The noise factors of ``config``'s overscan corrections on ``regions``.

    Parameters
    ----------
    config : IsrConfig
        The preset's ISR.
    regions : SegmentRegions
        The segments' layout (how many overscan columns and rows the estimates use).

    Returns
    -------
    IsrNoise

    Examples
    --------
    cp_pipe's per-row medians on a layout with 54 serial-overscan columns and 48
    parallel-overscan rows, 3 of each skipped at both ends:

    >>> from gpuptc.config import get_preset
    >>> regions = SegmentRegions(
    ...     (slice(0, 2048), slice(522, 576)), (slice(2000, 2048), slice(10, 522)),
    ...     (slice(0, 2000), slice(10, 522)))
    >>> noise = isr_noise(get_preset("cp_pipe").isr, regions)
    >>> round(noise.estimator, 4), round(noise.added, 4)
    (0.9563, 0.0691)
    """
    _, cols = regions.serial_overscan
    columns = cols.stop - cols.start - sum(config.serial_skip)
    serial = 0.0
    if config.serial_overscan in ("MEAN_PER_ROW", "MEDIAN_PER_ROW"):
        serial = _estimate_factor(config.serial_overscan, columns)
    corrected = 1 + serial  # a serially corrected overscan pixel, over sigma_raw^2
    added = serial
    if config.parallel_overscan != "NONE":
        overscan_rows, _ = regions.parallel_overscan
        count = overscan_rows.stop - overscan_rows.start - sum(config.parallel_skip)
        added += _estimate_factor(config.parallel_overscan, count) * corrected
    estimator = overscan_estimator_factor(config.serial_overscan, columns)
    return IsrNoise(estimator=estimator, added=added)

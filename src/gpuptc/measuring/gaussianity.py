"""Whether each pair's difference image is Gaussian: cp_pipe's histogram fit and KS test.

cp_pipe's ``doKsHistMeasurement`` (its ``computeGaussianHistogramParameters``): the
difference of the two flats, unscaled, over the pixels good in both; its histogram in
``ks_bins`` bins over ``+- ks_limit_multiplier sqrt((mu1 + mu2) / 2)``; a Gaussian
(area, centre, width) fitted to the histogram by least squares, each bin weighted by
``1 / sqrt(count)`` (1 for an empty bin), from lmfit's first guess; the fit's chi^2 per
degree of freedom and width squared (``hist_chi2_dof``, ``hist_var``); then the
Kolmogorov-Smirnov test of every difference against that Gaussian (``ks_pvalue``: SciPy's
exact distribution of the statistic, below 1e-15 taken as 0). A pair with fewer than
``ks_min_values`` good pixels, or without both means, has NaN and a p-value of 0.

Batched over pairs and amps on the array API through the kernels: the reference (and the
GPU) sorts each amp's differences once, and the histogram's counts (a bisection of every
edge at once) and the KS statistic come from the sorted rows; the numba kernels count and
bound without a sort (:func:`gpuptc.kernels.numba_cpu.ks_statistic`). Only the counts
and the statistic cross to the host, where the small fits and the p-values are made.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import optimize

from gpuptc.backend import Backend, to_host
from gpuptc.config import ExtractConfig

__all__ = ["GAUSSIANITY_NAMES", "gaussianity", "no_gaussianity"]

GAUSSIANITY_NAMES: tuple[str, ...] = ("hist_var", "hist_chi2_dof", "ks_pvalue")
"""What :func:`gaussianity` gives per pair and amp."""
ZERO_PVALUE = 1e-15
"""P-values below this are 0, as cp_pipe writes them."""


def _guess(counts: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The first guess of a Gaussian from a peak, as lmfit's: area, centre, width."""
    top, bottom = counts.max(), counts.min()
    width = (centres.max() - centres.min()) / 6.0
    centre = centres[np.argmax(counts)]
    above = centres[counts > (top + bottom) / 2.0]
    if len(above) > 2:
        width = (above.max() - above.min()) / 2.0
        centre = above.mean()
    return np.array([3.0 * (top - bottom) * width, centre, width])


def _gaussian(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (
        p[0]
        / (max(p[2], 1e-300) * math.sqrt(2.0 * math.pi))
        * np.exp(-((x - p[1]) ** 2) / (2.0 * max(p[2], 1e-300) ** 2))
    )


def _histogram_fit(counts: np.ndarray, centres: np.ndarray) -> tuple[float, float, float]:
    """Centre, width and chi^2 per degree of freedom of the Gaussian fit to one histogram."""
    errors = np.sqrt(counts)
    errors[errors == 0.0] = 1.0
    lower = np.array([-np.inf, -np.inf, 0.0])
    start = np.clip(_guess(counts, centres), lower, np.inf)
    fit = optimize.least_squares(
        lambda p: (_gaussian(p, centres) - counts) / errors,
        start,
        bounds=(lower, np.full(3, np.inf)),
    )
    chi2 = float(np.sum(fit.fun**2)) / (len(counts) - 3)
    return float(fit.x[1]), float(fit.x[2]), chi2


def gaussianity(
    f1: Any, f2: Any, both: Any, mean1: Any, mean2: Any, config: ExtractConfig, backend: Backend
) -> dict[str, Any]:
    """cp_pipe's Gaussian histogram fit and KS test of each pair's difference image.

    Parameters
    ----------
    f1, f2 : array
        ``(pairs, amps, pixels)`` the two flats of each pair (ADU).
    both : array of bool
        ``(pairs, amps, pixels)`` pixels good in both.
    mean1, mean2 : array
        ``(pairs, amps)`` the flats' clipped means (ADU).
    config : ExtractConfig
        ``ks_bins``, ``ks_limit_multiplier``, ``ks_min_values``.
    backend : Backend
        Where the images live.

    Returns
    -------
    dict of str to array
        :data:`GAUSSIANITY_NAMES`, each ``(pairs, amps)`` float64 on the backend's device.

    Examples
    --------
    Two flats of Poisson noise at 10 000 ADU: a Gaussian difference.

    >>> from gpuptc.backend import get_backend
    >>> rng = np.random.default_rng(2)
    >>> f1, f2 = rng.poisson(1e4, (2, 1, 1, 20000)).astype(float)
    >>> both = np.ones(f1.shape, bool)
    >>> mean = np.full((1, 1), 1e4)
    >>> found = gaussianity(f1, f2, both, mean, mean, ExtractConfig(), get_backend("numpy"))
    >>> bool(found["ks_pvalue"][0, 0] > 0.01), round(float(found["hist_var"][0, 0]) / 2e4, 1)
    (True, 1.0)
    """
    xp = backend.xp
    shape = mean1.shape
    rows = shape[0] * shape[1]
    difference = xp.reshape(xp.where(both, f1 - f2, xp.inf), (rows, -1))
    prepared = backend.kernels.ks_prepare(difference)
    count = xp.sum(xp.astype(xp.reshape(both, (rows, -1)), xp.int64), axis=-1)
    limit = config.ks_limit_multiplier * xp.sqrt(xp.reshape((mean1 + mean2) / 2.0, (rows, 1)))
    steps = xp.reshape(xp.arange(config.ks_bins + 1, dtype=xp.float64, device=f1.device), (1, -1))
    edges = -limit + steps * (2.0 * limit / config.ks_bins)
    histogram, cells = backend.kernels.ks_histogram(prepared, edges)
    counts, n, limits = (np.asarray(to_host(a)) for a in (histogram, count, limit))
    fitted = [_row_fit(counts[k], limits[k, 0], int(n[k]), config) for k in range(rows)]
    centre, width, chi2 = (np.array(v, float) for v in zip(*fitted, strict=True))
    checked = np.isfinite(width) & (width > 0)
    on_device = [xp.asarray(np.where(checked, a, b), device=f1.device)
                 for a, b in ((centre, 0.0), (width, 1.0))]  # fmt: skip
    statistic = backend.kernels.ks_statistic(prepared, count, *on_device, cells)
    statistic = np.asarray(to_host(statistic))
    from scipy import stats  # here: importing it costs every process 0.5 s

    pvalue = np.where(checked, stats.kstwo.sf(statistic, np.maximum(n, 1)), 0.0)
    pvalue = np.where(pvalue < ZERO_PVALUE, 0.0, pvalue)
    found = {"hist_var": width**2, "hist_chi2_dof": chi2, "ks_pvalue": pvalue}
    return {
        name: xp.asarray(np.reshape(value, shape).astype(np.float64), device=f1.device)
        for name, value in found.items()
    }


def _row_fit(
    counts: np.ndarray, limit: float, n: int, config: ExtractConfig
) -> tuple[float, float, float]:
    """One row's histogram fit; NaN where it has too few values or no limits."""
    if n < config.ks_min_values or not np.isfinite(limit):
        return math.nan, math.nan, math.nan
    edges = np.linspace(-limit, limit, config.ks_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2.0
    return _histogram_fit(counts.astype(np.float64), centres)


def no_gaussianity(shape: tuple[int, ...], backend: Backend, device: Any) -> dict[str, Any]:
    """The numbers of pairs not tested (cp_pipe with the test off): NaN, and a p-value of 1."""
    xp = backend.xp
    nan = xp.full(shape, xp.nan, dtype=xp.float64, device=device)
    return {"hist_var": nan, "hist_chi2_dof": nan, "ks_pvalue": xp.ones_like(nan)}

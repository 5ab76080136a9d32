"""What every fit shares: the optimizer's success test, cp_pipe's weights, a robust spread."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "MAD_TO_SIGMA",
    "covariance_weights",
    "leastsq_converged",
    "normal_mad",
    "variance_weights",
]

MAD_TO_SIGMA = 1.482602218505602
"""A normal distribution's sigma per unit of median absolute deviation."""


def normal_mad(values: np.ndarray) -> float:
    """The median absolute deviation scaled to a normal sigma; NaN when empty.

    Examples
    --------
    >>> round(normal_mad(np.array([-1.0, 0.0, 1.0])), 4)
    1.4826
    """
    values = np.asarray(values, float)
    if not len(values):
        return math.nan
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


_LEASTSQ_SOLUTIONS = frozenset({1, 2, 3, 4})
"""MINPACK's ``info`` values for which ``scipy.optimize.leastsq`` found a solution."""


def leastsq_converged(ier: int) -> bool:
    """Whether ``scipy.optimize.leastsq`` ended on a solution (``ier`` in 1..4)."""
    return int(ier) in _LEASTSQ_SOLUTIONS


def variance_weights(counts: np.ndarray, var: np.ndarray) -> np.ndarray:
    """cp_pipe's weights of the variances: ``1 / sigma(var) = sqrt(npix / 2) / var``.

    Parameters
    ----------
    counts : numpy.ndarray
        Pixels behind each variance (1 where unknown).
    var : numpy.ndarray
        The variances, ADU^2.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(counts / 2.0) / var


def covariance_weights(npix: np.ndarray, var: np.ndarray) -> np.ndarray:
    """cp_pipe's weights of the covariances: ``sqrt(npix_ij) / var``, ``npix_00 / 2`` at lag 0.

    Parameters
    ----------
    npix : numpy.ndarray
        ``(..., n, L, L)`` pixel pairs behind each covariance.
    var : numpy.ndarray
        ``(..., n)`` per-image variances, ADU^2.
    """
    counts = np.array(npix, dtype=np.float64)
    counts[..., 0, 0] /= 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(np.clip(counts, 0, None)) / np.asarray(var, float)[..., None, None]

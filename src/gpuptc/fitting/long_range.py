"""The long-range covariances subtracted before the full-covariance fit (Astier's bfptc).

cp_pipe's ``doSubtractLongRangeCovariances`` (its ``subtractDistantOffset``, ported from
Astier's bfptc): for each pair, a polynomial in the lags ``(i, j)`` (degree
``long_range_degree`` in each, their products included) is fitted by weighted least
squares to the pair's covariances beyond the core, the lags with ``i < start`` and
``j < start`` given no weight, and subtracted from every lag. What it takes out is a
background that correlates pixels at every distance (a slow gradient, a pickup pattern),
which the brighter-fatter model, falling fast with distance, cannot hold.
"""

from __future__ import annotations

import numpy as np

from gpuptc.fitting._common import covariance_weights

__all__ = ["subtract_long_range"]


def _monomials(size: int, degree: int) -> np.ndarray:
    """``(size * size, terms)``: ``i**a * j**b`` for every lag, ``a, b`` up to the degree."""
    order = min(degree, size - 1)
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    terms = [i**a * j**b for a in range(order + 1) for b in range(order + 1)]
    return np.stack([t.ravel() for t in terms], axis=-1).astype(np.float64)


def subtract_long_range(
    cov: np.ndarray, npix: np.ndarray, var: np.ndarray, start: int = 4, degree: int = 1
) -> np.ndarray:
    """The covariances less each pair's long-range background.

    Parameters
    ----------
    cov, npix : numpy.ndarray
        ``(..., n, L, L)`` covariances ``[i, j]`` (ADU^2) and the pixel pairs behind them.
    var : numpy.ndarray
        ``(..., n)`` per-image variances (ADU^2), for cp_pipe's weights.
    start : int
        The core left out of the fit: lags with both ``i`` and ``j`` below it.
    degree : int
        The polynomial's degree in each lag.

    Returns
    -------
    numpy.ndarray
        ``cov`` with each pair's fitted polynomial subtracted at every lag.

    Examples
    --------
    A plane under every lag is taken away whole:

    >>> i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    >>> cov = np.zeros((1, 8, 8)); cov[0, 0, 0] = 100.0
    >>> cov[0] += 0.5 + 0.02 * i - 0.01 * j
    >>> out = subtract_long_range(cov, np.full((1, 8, 8), 1e5), np.ones(1))
    >>> round(float(out[0, 0, 0]), 6), round(float(np.abs(out[0, 5:, 5:]).max()), 9)
    (100.0, 0.0)
    """
    size = cov.shape[-1]
    design = _monomials(size, degree)
    weights = np.nan_to_num(covariance_weights(npix, var))
    weights[..., :start, :start] = 0.0
    w = weights.reshape(*weights.shape[:-2], size * size, 1)
    z = np.nan_to_num(cov).reshape(*cov.shape[:-2], size * size, 1)
    coefficients = np.linalg.pinv(w * design) @ (w * z)
    background = (design @ coefficients).reshape(cov.shape)
    return cov - background

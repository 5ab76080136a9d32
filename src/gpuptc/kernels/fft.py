"""Lag sums of masked images by zero-padded FFT, the work behind the covariances.

For lags ``(dy, dx)`` in ``0..size-1, -1..-(size-1)`` (rows dy, columns dx) of an image
``v`` with weights ``w`` (values zero where the weight is zero):

- ``products[dy, dx] = sum v(x) v(x + lag)``,
- ``partners[dy, dx] = sum w(x) v(x + lag)``,
- ``pairs[dy, dx] = sum w(x) w(x + lag)``,

over pixels ``x`` whose partner lies inside the image. :func:`lag_sums` is the array-API
form (five transforms per image); :func:`lag_sums_cpu` the NumPy one (cropped images,
scipy.fft, and for images with few masked pixels partner sums and pair counts without
transforms).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

__all__ = ["fft_shape", "lag_sums", "lag_sums_cpu"]

_FEW_MASKED = 1 / 64
"""Masked fraction below which pair counts and partner sums skip the transforms."""

DIRECT_PRODUCTS_SIZE = 2
"""Largest ``size`` whose products are summed directly rather than transformed: on one
core, a 256 x 1000 image's products take 0.6 ms (size 1) and 1.6 ms (size 2) directly
against 4 ms by transform; at size 3 the two tie, beyond it the transform wins."""


def _smooth_length(n: int) -> int:
    """Smallest ``2**a 3**b 5**c`` that is at least ``n`` (fast for pocketfft and cuFFT)."""
    best = 2 ** max(0, math.ceil(math.log2(max(n, 1))))
    power3 = 1
    while power3 < best:
        length = power3
        while length < best:
            candidate = length
            while candidate < n:
                candidate *= 2
            best = min(best, candidate)
            length *= 5
        power3 *= 3
    return best


def fft_shape(ny: int, nx: int, max_lag: int) -> tuple[int, int]:
    """Zero-padded FFT shape: the smallest 5-smooth lengths of at least ``n + max_lag``.

    Lags up to ``max_lag - 1`` never wrap around in a circular correlation of that
    length (cp_pipe's rule, ``2**(floor(log2(n + max_lag)) + 1)``, pads further for
    the same result). The second axis is made even for the real transform.
    """
    sy = _smooth_length(ny + max_lag)
    sx = _smooth_length(nx + max_lag)
    while sx % 2:
        sx = _smooth_length(sx + 1)
    return sy, sx


def _lag_correlation(
    spectrum: Any, shape: tuple[int, int], size: int, *, xp: ModuleType, fft: ModuleType
) -> Any:
    """Inverse transform of a product spectrum at lags ``-(size-1)..size-1`` only.

    The transform along y runs over every frequency; only the ``2 size - 1`` rows of
    the lags wanted go through the transform along x. Rows and columns of the result
    are lags ``0..size-1`` then ``-1..-(size-1)``.
    """
    lags = list(range(size)) + [-k for k in range(1, size)]
    rows = xp.asarray([lag % shape[0] for lag in lags], device=spectrum.device)
    columns = xp.asarray([lag % shape[1] for lag in lags], device=spectrum.device)
    along_y = xp.take(fft.ifft(spectrum, axis=-2), rows, axis=-2)
    return xp.take(fft.irfft(along_y, n=shape[1], axis=-1), columns, axis=-1)


def lag_sums(
    d: Any, w: Any, size: int, *, xp: ModuleType, fft: ModuleType | None = None
) -> tuple[Any, Any, Any]:
    """Products, partner sums and pair counts of ``(..., ny, nx)`` images at every lag.

    Parameters
    ----------
    d : array
        Images.
    w : array of bool
        Pixel weights (True = used).
    size : int
        Lags per axis.
    xp : module
        Array namespace with the FFT extension.
    fft : module, optional
        Replaces ``xp.fft`` (scipy.fft on the CPU: the same transforms, faster).

    Returns
    -------
    products, partners, pairs : array
        ``(..., 2 size - 1, 2 size - 1)`` float64, indexed ``[dy, dx]``.
    """
    fft = fft or xp.fft
    shape = fft_shape(d.shape[-2], d.shape[-1], size)
    weights = xp.astype(w, xp.float64)
    values = xp.where(w, xp.astype(d, xp.float64), 0.0)
    axes = (-2, -1)
    f_values = fft.rfftn(values, s=shape, axes=axes)
    f_weights = fft.rfftn(weights, s=shape, axes=axes)
    spectra = (
        f_values * xp.conj(f_values),
        f_values * xp.conj(f_weights),
        f_weights * xp.conj(f_weights),
    )
    products, partners, pairs = (
        _lag_correlation(spectrum, shape, size, xp=xp, fft=fft) for spectrum in spectra
    )
    return products, partners, pairs


def lag_sums_cpu(
    d: Any, w: Any, size: int, masked_lag_sums: Any, lag_products: Any
) -> tuple[Any, Any, Any]:
    """:func:`lag_sums` of ``(images, ny, nx)`` NumPy arrays, one image at a time.

    Each image is cropped to the rows and columns holding good pixels; when few pixels
    are masked, partner sums and pair counts come from ``masked_lag_sums(values, good,
    size)`` (a direct sum) and only the products need transforms (two instead of five),
    or none up to :data:`DIRECT_PRODUCTS_SIZE` (``lag_products(values, size)``, direct).
    Transforms by scipy.fft (the same pocketfft, 25 % faster than numpy.fft here).
    """
    import numpy as np
    import scipy.fft

    positions = 2 * size - 1
    out = np.zeros((3, d.shape[0], positions, positions))
    for k in range(d.shape[0]):
        good = w[k]
        rows = np.flatnonzero(good.any(axis=1))
        cols = np.flatnonzero(good.any(axis=0))
        if rows.size == 0:
            continue
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        good = good[box]
        values = np.where(good, d[k][box], np.float64(0.0))  # transforms in float64
        if good.size - np.count_nonzero(good) > _FEW_MASKED * good.size:
            sums = lag_sums(values[None], good[None], size, xp=np, fft=scipy.fft)
            out[:, k] = [part[0] for part in sums]
            continue
        if size <= DIRECT_PRODUCTS_SIZE:
            out[0, k] = lag_products(values, size)
        else:
            shape = fft_shape(*values.shape, size)
            f_values = scipy.fft.rfftn(values, s=shape, axes=(-2, -1))
            power = f_values * np.conj(f_values)
            out[0, k] = _lag_correlation(power, shape, size, xp=np, fft=scipy.fft)
        out[1, k], out[2, k] = masked_lag_sums(values, good, size)
    return out[0], out[1], out[2]

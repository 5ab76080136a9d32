"""Batched flat-pair statistics and covariances (array API only).

Input: corrected, trimmed images ``(pairs, 2, amps, ny, nx)`` and their good-pixel
masks. Output: per pair and amp the means, the variance of the flux-matched difference,
the per-pixel ("Welcome to PTC") gain, and the covariance matrix of the difference image
for lags 0..cov_size-1, each as each preset defines them. Every reduction is a masked
sum in float64 over whole stacks; nothing loops over amps or pixels in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gpuptc import _cpu_kernels
from gpuptc._xp import (
    at_most,
    clip_correction,
    clipped_stats,
    count_true,
    fused,
    masked_quantiles,
)
from gpuptc.config import ExtractConfig

__all__ = ["PairStatistics", "covariances_fft", "fft_shape", "pair_statistics"]

MAD_TO_SIGMA = 1.482602218505602
"""Gaussian sigma per unit of median absolute deviation (astropy's mad_std)."""


@dataclass
class PairStatistics:
    """Per pair and amp results of :func:`pair_statistics`; arrays on the compute device.

    Attributes
    ----------
    mean1, mean2, mean, var, npix, rhl_gain, gain_corrected, read_noise_adu : array
        ``(pairs, amps)``; ``var`` is the per-image variance (half that of the
        difference), ADU^2; ``npix`` the pixels it used.
    cov, cov_npix : array or None
        ``(pairs, amps, L, L)`` per-image covariances indexed ``[i, j]`` (serial lag i,
        parallel lag j), ADU^2, and the pixel pairs behind each; None when ``cov_size``
        is 0.
    cov_pixels : array
        ``(pairs, amps)`` pixels given weight 1 in the covariance computation.
    """

    mean1: Any
    mean2: Any
    mean: Any
    var: Any
    npix: Any
    rhl_gain: Any
    gain_corrected: Any
    read_noise_adu: Any
    cov: Any | None
    cov_npix: Any | None
    cov_pixels: Any


def _flat(x: Any, *, xp: ModuleType) -> Any:
    return xp.reshape(x, (*x.shape[:-2], x.shape[-2] * x.shape[-1]))


def _masked_mean(x: Any, good: Any, *, xp: ModuleType) -> Any:
    if fused(x, xp):
        return _cpu_kernels.masked_mean(x, good)
    zero = xp.zeros((), dtype=x.dtype, device=x.device)
    total = xp.sum(xp.where(good, x, zero), axis=-1, dtype=xp.float64)
    count = xp.astype(count_true(good, xp=xp), xp.float64)
    return xp.where(count > 0, total / xp.where(count > 0, count, 1.0), xp.nan)


def _masked_var0(x: Any, good: Any, *, xp: ModuleType) -> Any:
    """Population variance (ddof 0) of the good values, two passes, float64 sums."""
    if fused(x, xp):
        return _cpu_kernels.masked_variance(x, good)
    mean = _masked_mean(x, good, xp=xp)
    zero = xp.zeros((), dtype=x.dtype, device=x.device)
    centred = xp.where(good, x - xp.astype(mean, x.dtype)[..., None], zero)
    count = xp.astype(count_true(good, xp=xp), xp.float64)
    second = xp.sum(centred * centred, axis=-1, dtype=xp.float64)
    return xp.where(count > 0, second / xp.where(count > 0, count, 1.0), xp.nan)


def _count(good: Any, *, xp: ModuleType) -> Any:
    return count_true(good, xp=xp)


def _per_pixel_gain(
    i1: Any, i2: Any, good: Any, mean: Any, read_noise: Any, correction: str, *, xp: ModuleType
) -> tuple[Any, Any]:
    """``1/<(I1-I2)^2/(I1+I2)>`` on unscaled images, and its read-noise-corrected form."""
    if fused(i1, xp):
        c = _cpu_kernels.squared_difference_ratio(i1, i2, good)
    else:
        total = i1 + i2
        usable = good & (total > 0)
        one = xp.ones((), dtype=total.dtype, device=total.device)
        ratio = (i1 - i2) * (i1 - i2) / xp.where(usable, total, one)
        c = _masked_mean(ratio, usable, xp=xp)
    rhl = 1.0 / c
    sigma2 = read_noise * read_noise
    if correction == "FULL":
        disc = mean * mean - 2.0 * mean * c + 2.0 * sigma2
        corrected = (mean + xp.sqrt(disc)) / (2.0 * c * mean - 2.0 * sigma2)
    elif correction == "SIMPLE":
        corrected = 1.0 / (c - sigma2 / mean)
    else:
        corrected = rhl
    corrected = xp.where(xp.isfinite(read_noise), corrected, rhl)
    return rhl, corrected


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


def covariances_fft(
    d: Any, w: Any, cov_size: int, *, xp: ModuleType, chunk: int | None = None
) -> tuple[Any, Any]:
    """Covariances of masked images for lags 0..cov_size-1, by zero-padded FFT.

    For each lag (dx, dy), over the pixel pairs where both pixels have weight 1:
    ``C = sum(a b) / n - sum(a) sum(b) / n^2`` (pair-restricted means), averaged with
    lag (dx, -dy) when both are non-zero (pair counts added).

    Parameters
    ----------
    d : array
        ``(..., ny, nx)`` images.
    w : array of bool
        ``(..., ny, nx)`` pixel weights (True = used).
    cov_size : int
        Number of lags per axis.
    xp : module
        Array namespace with the FFT extension.
    chunk : int, optional
        Images transformed at once (bounds memory); default all.

    Returns
    -------
    cov : array
        ``(..., L, L)`` float64, indexed ``[dx, dy]`` (serial lag first); NaN where a
        lag has no pixel pair.
    npix : array
        ``(..., L, L)`` pixel pairs per lag, float64.
    """
    lead = d.shape[:-2]
    ny, nx = d.shape[-2], d.shape[-1]
    count = math.prod(lead)
    flat_d = xp.reshape(d, (count, ny, nx))
    flat_w = xp.reshape(w, (count, ny, nx))
    step = count if chunk is None else max(1, chunk)
    covs, npixs = [], []
    for start in range(0, max(count, 1), step):
        part_d = flat_d[start : start + step, ...]
        part_w = flat_w[start : start + step, ...]
        cov, npix = _covariance_block(part_d, part_w, cov_size, xp=xp)
        covs.append(cov)
        npixs.append(npix)
    cov = xp.concat(covs, axis=0) if len(covs) > 1 else covs[0]
    npix = xp.concat(npixs, axis=0) if len(npixs) > 1 else npixs[0]
    return (
        xp.reshape(cov, (*lead, cov_size, cov_size)),
        xp.reshape(npix, (*lead, cov_size, cov_size)),
    )


def _lag_correlation(
    spectrum: Any,
    shape: tuple[int, int],
    size: int,
    *,
    xp: ModuleType,
    fft: ModuleType | None = None,
) -> Any:
    """Inverse transform of a product spectrum at lags ``-(size-1)..size-1`` only.

    The transform along y runs over every frequency; only the ``2 size - 1`` rows of
    the lags wanted go through the transform along x. Rows and columns of the result
    are lags ``0..size-1`` then ``-1..-(size-1)``. ``fft`` replaces ``xp.fft``.
    """
    fft = fft or xp.fft
    lags = list(range(size)) + [-k for k in range(1, size)]
    rows = xp.asarray([lag % shape[0] for lag in lags], device=spectrum.device)
    columns = xp.asarray([lag % shape[1] for lag in lags], device=spectrum.device)
    along_y = xp.take(fft.ifft(spectrum, axis=-2), rows, axis=-2)
    return xp.take(fft.irfft(along_y, n=shape[1], axis=-1), columns, axis=-1)


def _lag_sums_fft(
    d: Any, w: Any, size: int, *, xp: ModuleType, fft: ModuleType | None = None
) -> tuple[Any, Any, Any]:
    """Sums of products, of partner values and of pixel pairs at every lag, by FFT.

    ``fft`` replaces ``xp.fft`` (scipy.fft on the CPU: the same transforms, faster).
    """
    fft = fft or xp.fft
    ny, nx = d.shape[-2], d.shape[-1]
    shape = fft_shape(ny, nx, size)
    weights = xp.astype(w, xp.float64)
    values = xp.where(w, xp.astype(d, xp.float64), 0.0)
    axes = (-2, -1)
    f_values = fft.rfftn(values, s=shape, axes=axes)
    f_weights = fft.rfftn(weights, s=shape, axes=axes)
    products = (
        f_values * xp.conj(f_values),
        f_values * xp.conj(f_weights),
        f_weights * xp.conj(f_weights),
    )
    p_cov, p_mean, p_count = (
        _lag_correlation(product, shape, size, xp=xp, fft=fft) for product in products
    )
    return p_cov, p_mean, p_count


_FEW_MASKED = 1 / 64
"""Masked fraction below which pair counts and partner sums skip the transforms."""


def _lag_sums_cpu(d: Any, w: Any, size: int) -> tuple[Any, Any, Any]:
    """:func:`_lag_sums_fft` on NumPy, one amplifier at a time.

    Each image is cropped to the rows and columns holding good pixels; when few pixels
    are masked, partner sums and pair counts come from :func:`masked_lag_sums` and only
    the products need transforms (two instead of five). Transforms by scipy.fft (the
    same pocketfft, 25 % faster than numpy.fft here).
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
            sums = _lag_sums_fft(values[None], good[None], size, xp=np, fft=scipy.fft)
            out[:, k] = [part[0] for part in sums]
            continue
        shape = fft_shape(*values.shape, size)
        f_values = scipy.fft.rfftn(values, s=shape, axes=(-2, -1))
        power = f_values * np.conj(f_values)
        out[0, k] = _lag_correlation(power, shape, size, xp=np, fft=scipy.fft)
        out[1, k], out[2, k] = _cpu_kernels.masked_lag_sums(values, good, size)
    return out[0], out[1], out[2]


def _covariance_block(d: Any, w: Any, size: int, *, xp: ModuleType) -> tuple[Any, Any]:
    if fused(d, xp):
        p_cov, p_mean, p_count = _lag_sums_cpu(d, w, size)
    else:
        p_cov, p_mean, p_count = _lag_sums_fft(d, w, size, xp=xp)
    device = d.device
    forward = xp.arange(size, device=device)
    back = xp.asarray([0] + [size - 1 + k for k in range(1, size)], device=device)

    def block(array: Any, rows: Any, cols: Any) -> Any:
        return xp.take(xp.take(array, rows, axis=-2), cols, axis=-1)

    # lag (dx, dy): pixel (y, x) with partner (y + dy, x + dx); arrays are [dy, dx]
    n1 = xp.round(block(p_count, forward, forward))
    n2 = xp.round(block(p_count, back, forward))
    m_pp = block(p_mean, forward, forward)
    m_nn = block(p_mean, back, back)
    m_np = block(p_mean, back, forward)
    m_pn = block(p_mean, forward, back)
    safe1 = xp.where(n1 > 0, n1, 1.0)
    safe2 = xp.where(n2 > 0, n2, 1.0)
    c1 = block(p_cov, forward, forward) / safe1 - m_pp * m_nn / (safe1 * safe1)
    c2 = block(p_cov, back, forward) / safe2 - m_np * m_pn / (safe2 * safe2)
    both = (forward[:, None] > 0) & (forward[None, :] > 0)
    cov = xp.where(both, 0.5 * (c1 + c2), c1)
    npix = xp.where(both, n1 + n2, n1)
    cov = xp.where(npix > 0, cov, xp.nan)
    return xp.matrix_transpose(cov), xp.matrix_transpose(npix)


def _cp_pipe_means(images: Any, good: Any, config: ExtractConfig, *, xp: ModuleType) -> Any:
    mean, _, _ = clipped_stats(
        _flat(images, xp=xp), _flat(good, xp=xp), nsigma=config.nsigma, niter=config.niter, xp=xp
    )
    return mean


def _mad_std(x: Any, good: Any, *, xp: ModuleType) -> Any:
    (centre,) = masked_quantiles(x, good, (0.5,), xp=xp)
    deviation = xp.abs(xp.astype(x, xp.float64, copy=False) - centre[..., None])
    (mad,) = masked_quantiles(deviation, good, (0.5,), xp=xp)
    return MAD_TO_SIGMA * mad


def pair_statistics(
    images: Any,
    good: Any,
    read_noise_adu: Any,
    config: ExtractConfig,
    *,
    xp: ModuleType,
    fft_chunk: int | None = None,
) -> PairStatistics:
    """Statistics of flat pairs, batched over pairs and amplifiers.

    Parameters
    ----------
    images : array
        ``(pairs, 2, amps, ny, nx)`` corrected, trimmed images (ADU).
    good : array of bool
        Same shape: usable pixels of each image.
    read_noise_adu : array
        ``(pairs, 2, amps)`` read noise of each exposure (ADU), for ``gain_corrected``.
    config : ExtractConfig
        The preset's definitions (``method``: ``cp_pipe``, ``eotest`` or ``seed``).
    xp : module
        Array namespace.
    fft_chunk : int, optional
        Amplifier images transformed at once for covariances (bounds memory).

    Returns
    -------
    PairStatistics
        Arrays on the compute device.

    Notes
    -----
    ``cp_pipe``: afw clipped means; d = (mu2 I1 - mu1 I2) / mu; var = clipped variance
    of d / 2 times the clip correction; covariance weights ``|d| <= mean + nsigma sigma``.
    ``eotest``: masked means; images rescaled by mu2/mu and mu1/mu; pixels with
    ``|d| >= 14.826 mad_std(d)`` masked; masked means again, a second rescaling;
    var = population variance of d / 2; mean = the mean of the second means.
    ``seed``: plain masked means; mean = mean of I1; var = population variance of
    ``I1 - I2 m1/m2`` over pixels good in both, / 2.
    """
    i1, i2 = images[:, 0, ...], images[:, 1, ...]
    g1, g2 = good[:, 0, ...], good[:, 1, ...]
    both = g1 & g2
    f1, f2, fboth = _flat(i1, xp=xp), _flat(i2, xp=xp), _flat(both, xp=xp)
    read_noise = 0.5 * (read_noise_adu[:, 0, ...] + read_noise_adu[:, 1, ...])
    method = config.method
    if method == "cp_pipe":
        means = _cp_pipe_means(images, good, config, xp=xp)
        mean1, mean2 = means[:, 0, ...], means[:, 1, ...]
        mean = 0.5 * (mean1 + mean2)
        if fused(f1, xp):
            d = _cpu_kernels.flux_matched_difference(f1, f2, mean1, mean2, mean)
        else:
            d = (
                xp.astype(mean2[..., None], f1.dtype) * f1
                - xp.astype(mean1[..., None], f1.dtype) * f2
            ) / xp.astype(mean[..., None], f1.dtype)
        d_mean, d_var, npix = clipped_stats(
            d, fboth, nsigma=config.nsigma, niter=config.niter, xp=xp
        )
        var = 0.5 * d_var * clip_correction(config.nsigma)
        cut = d_mean + config.nsigma * xp.sqrt(d_var)
        weights = fboth & at_most(xp.abs(d), cut, xp=xp)
    elif method == "eotest":
        mean1 = _masked_mean(f1, _flat(g1, xp=xp), xp=xp)
        mean2 = _masked_mean(f2, _flat(g2, xp=xp), xp=xp)
        f = 0.5 * (mean1 + mean2)
        s1 = xp.astype((mean2 / f)[..., None], xp.float64)
        s2 = xp.astype((mean1 / f)[..., None], xp.float64)
        r1 = xp.astype(f1, xp.float64) * s1
        r2 = xp.astype(f2, xp.float64) * s2
        d = r1 - r2
        scale = _mad_std(d, fboth, xp=xp)
        weights = fboth & (xp.abs(d) < config.eotest_mad_cut * scale[..., None])
        m1b = _masked_mean(r1, weights, xp=xp)
        m2b = _masked_mean(r2, weights, xp=xp)
        fb = 0.5 * (m1b + m2b)
        d = r1 * (m2b / fb)[..., None] - r2 * (m1b / fb)[..., None]
        var = 0.5 * _masked_var0(d, weights, xp=xp)
        mean = fb
        npix = _count(weights, xp=xp)
    elif method == "seed":
        mean1 = _masked_mean(f1, _flat(g1, xp=xp), xp=xp)
        mean2 = _masked_mean(f2, _flat(g2, xp=xp), xp=xp)
        mean = mean1
        d = xp.astype(f1, xp.float64) - xp.astype(f2, xp.float64) * (mean1 / mean2)[..., None]
        var = 0.5 * _masked_var0(d, fboth, xp=xp)
        npix = _count(fboth, xp=xp)
        weights = fboth
    else:
        raise ValueError(f"unknown pair statistics method {method!r}")
    rhl, corrected = _per_pixel_gain(
        f1,
        f2,
        fboth,
        mean,
        read_noise,
        config.gain_correction,
        xp=xp,
    )
    cov_pixels = _count(weights, xp=xp)
    cov = cov_npix = None
    if config.cov_size > 0:
        ny, nx = images.shape[-2], images.shape[-1]
        d_img = xp.reshape(d, (*d.shape[:-1], ny, nx))
        w_img = xp.reshape(weights, (*weights.shape[:-1], ny, nx))
        cov, cov_npix = covariances_fft(d_img, w_img, config.cov_size, xp=xp, chunk=fft_chunk)
        cov = 0.5 * cov
        if method == "cp_pipe":
            factor = clip_correction(config.nsigma)
            lags = xp.arange(config.cov_size, device=cov.device)
            origin = (lags[:, None] == 0) & (lags[None, :] == 0)
            scale = xp.full(origin.shape, factor * factor, dtype=cov.dtype, device=cov.device)
            cov = cov * xp.where(origin, factor, scale)
        enough = cov_pixels >= config.min_pixels_covariance
        cov = xp.where(enough[..., None, None], cov, xp.nan)
    return PairStatistics(
        mean1=mean1,
        mean2=mean2,
        mean=mean,
        var=var,
        npix=npix,
        rhl_gain=rhl,
        gain_corrected=corrected,
        read_noise_adu=read_noise,
        cov=cov,
        cov_npix=cov_npix,
        cov_pixels=cov_pixels,
    )

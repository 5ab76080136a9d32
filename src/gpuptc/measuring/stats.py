"""Batched flat-pair statistics and covariances.

Input: corrected, trimmed images ``(pairs, 2, amps, ny, nx)`` and their good-pixel
masks. Output: per pair and amp the means, the variance of the flux-matched difference,
the per-pixel ("Welcome to PTC") gain, and the covariance matrix of the difference image
for lags 0..cov_size-1, each as each preset defines them. Every reduction is a masked
sum in float64 over whole stacks, made by the backend's kernels; nothing loops over
amps or pixels in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gpuptc.backend import Backend
from gpuptc.config import ExtractConfig
from gpuptc.kernels import ArrayApiKernels
from gpuptc.kernels.fft import fft_shape
from gpuptc.measuring.gaussianity import gaussianity, no_gaussianity

__all__ = [
    "PairStatistics",
    "clip_correction",
    "covariances_fft",
    "fft_shape",
    "pair_statistics",
    "row_mean_variance",
]

MAD_TO_SIGMA = 1.482602218505602
"""Gaussian sigma per unit of median absolute deviation (astropy's mad_std)."""


@dataclass
class PairStatistics:
    """Per pair and amp results of :func:`pair_statistics`; arrays on the compute device.

    Attributes
    ----------
    mean1, mean2, mean, var, npix, read_noise_adu : array
        ``(pairs, amps)``; ``var`` is the per-image variance (half that of the
        difference), ADU^2; ``npix`` the pixels it used.
    rhl_gain, rhl_gain_corrected, notebook_gain, cp_pipe_gain : array
        ``(pairs, amps)`` per-pixel gains, e-/ADU (see :func:`pair_statistics`).
    cov, cov_npix : array or None
        ``(pairs, amps, L, L)`` per-image covariances indexed ``[i, j]`` (serial lag i,
        parallel lag j), ADU^2, and the pixel pairs behind each; None when ``cov_size``
        is 0.
    cov_pixels : array
        ``(pairs, amps)`` pixels given weight 1 in the covariance computation.
    hist_var, hist_chi2_dof, ks_pvalue : array
        ``(pairs, amps)`` the Gaussianity test of the difference image
        (:mod:`gpuptc.measuring.gaussianity`; NaN, NaN and 1 when not asked for).
    row_mean_variance : array
        ``(pairs, amps)`` the clipped variance of the difference image's row means
        (:func:`row_mean_variance`), ADU^2.
    """

    mean1: Any
    mean2: Any
    mean: Any
    var: Any
    npix: Any
    rhl_gain: Any
    rhl_gain_corrected: Any
    notebook_gain: Any
    cp_pipe_gain: Any
    read_noise_adu: Any
    cov: Any | None
    cov_npix: Any | None
    cov_pixels: Any
    hist_var: Any = None
    hist_chi2_dof: Any = None
    ks_pvalue: Any = None
    row_mean_variance: Any = None


def clip_correction(nsigma: float) -> float:
    """Variance lost by clipping a Gaussian at ``nsigma``: multiply a clipped variance by this.

    ``1 / (1 - 2 n phi(n) / (Phi(n) - Phi(-n)))``; 1.0000011847 at 5.5 sigma.
    """
    phi = math.exp(-0.5 * nsigma * nsigma) / math.sqrt(2.0 * math.pi)
    inside = math.erf(nsigma / math.sqrt(2.0))
    return 1.0 / (1.0 - 2.0 * nsigma * phi / inside)


def _flat(x: Any, *, xp: ModuleType) -> Any:
    return xp.reshape(x, (*x.shape[:-2], x.shape[-2] * x.shape[-1]))


def corrected_gain(c: Any, mean: Any, read_noise: Any, correction: str, *, xp: ModuleType) -> Any:
    """The per-pixel gain ``1 / c`` corrected for read noise, as cp_pipe's gainCorrectionType.

    ``FULL``: ``(mu + sqrt(mu^2 - 2 mu c + 2 sigma^2)) / (2 c mu - 2 sigma^2)``; ``SIMPLE``:
    ``1 / (c - sigma^2 / mu)``; ``NONE``: ``1 / c``. Where the read noise is unknown the
    gain is left uncorrected.
    """
    rhl = 1.0 / c
    sigma2 = read_noise * read_noise
    if correction == "FULL":
        disc = mean * mean - 2.0 * mean * c + 2.0 * sigma2
        corrected = (mean + xp.sqrt(disc)) / (2.0 * c * mean - 2.0 * sigma2)
    elif correction == "SIMPLE":
        corrected = 1.0 / (c - sigma2 / mean)
    else:
        corrected = rhl
    return xp.where(xp.isfinite(read_noise), corrected, rhl)


def _per_pair_gains(
    pair: _PairImages,
    measured: _Measured,
    read_noise: Any,
    config: ExtractConfig,
    kernels: ArrayApiKernels,
) -> dict[str, Any]:
    """The per-pixel gains ``1 / <(I1 - I2)^2 / (I1 + I2)>`` of a pair, three ways.

    ``rhl_gain``: robust: I2 scaled to I1's level, over the pixels the preset's clipping of
    the difference keeps (cosmic rays and a flux mismatch between the flats do not bias
    it); ``rhl_gain_corrected`` that with the preset's read-noise correction.
    ``notebook_gain``: unscaled, over every good pixel (the notebook's number);
    ``cp_pipe_gain``: that with the FULL correction (cp_pipe's ``gainList``).
    """
    xp = kernels.xp
    unscaled = kernels.squared_difference_ratio(pair.f1, pair.f2, pair.both)
    scale = measured.mean1 / measured.mean2
    robust = kernels.squared_difference_ratio(pair.f1, pair.f2, measured.weights, scale)
    return {
        "rhl_gain": 1.0 / robust,
        "rhl_gain_corrected": corrected_gain(
            robust, measured.mean1, read_noise, config.gain_correction, xp=xp
        ),
        "notebook_gain": 1.0 / unscaled,
        "cp_pipe_gain": corrected_gain(unscaled, measured.mean, read_noise, "FULL", xp=xp),
    }


def covariances_fft(
    d: Any, w: Any, cov_size: int, *, backend: Backend, chunk: int | None = None
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
    backend : Backend
        Where the images live (its kernels make the lag sums).
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
    xp = backend.xp
    lead = d.shape[:-2]
    ny, nx = d.shape[-2], d.shape[-1]
    count = math.prod(lead)
    flat_d = xp.reshape(d, (count, ny, nx))
    flat_w = xp.reshape(w, (count, ny, nx))
    step = count if chunk is None else max(1, chunk)
    covs, npixs = [], []
    for start in range(0, max(count, 1), step):
        sums = backend.kernels.lag_sums(
            flat_d[start : start + step, ...], flat_w[start : start + step, ...], cov_size
        )
        cov, npix = _lag_covariances(*sums, cov_size, xp=xp)
        covs.append(cov)
        npixs.append(npix)
    cov = xp.concat(covs, axis=0) if len(covs) > 1 else covs[0]
    npix = xp.concat(npixs, axis=0) if len(npixs) > 1 else npixs[0]
    return (
        xp.reshape(cov, (*lead, cov_size, cov_size)),
        xp.reshape(npix, (*lead, cov_size, cov_size)),
    )


def _lag_covariances(
    p_cov: Any, p_mean: Any, p_count: Any, size: int, *, xp: ModuleType
) -> tuple[Any, Any]:
    """Covariances and pair counts ``[dx, dy]`` from the lag sums ``[dy, dx]``."""
    device = p_cov.device
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


@dataclass
class _PairImages:
    """One batch of pairs as rows of pixels: ``(pairs, amps, ny * nx)``."""

    images: Any
    good: Any
    f1: Any
    f2: Any
    g1: Any
    g2: Any
    both: Any


@dataclass
class _Measured:
    """What each tool's definitions give: means, variance and the difference image."""

    mean1: Any
    mean2: Any
    mean: Any
    var: Any
    npix: Any
    difference: Any
    weights: Any


def _cp_pipe(pair: _PairImages, config: ExtractConfig, kernels: ArrayApiKernels) -> _Measured:
    """Clipped (afw) means, flux-matched difference, clipped variance, covariance cut."""
    xp = kernels.xp
    means, _, _ = kernels.clipped_stats(
        _flat(pair.images, xp=xp), _flat(pair.good, xp=xp), nsigma=config.nsigma, niter=config.niter
    )
    mean1, mean2 = means[:, 0, ...], means[:, 1, ...]
    mean = 0.5 * (mean1 + mean2)
    d = kernels.flux_matched_difference(pair.f1, pair.f2, mean1, mean2, mean)
    return _Measured(mean1, mean2, mean, *_clipped_difference(d, pair.both, config, kernels))


def _clipped_difference(
    d: Any, good: Any, config: ExtractConfig, kernels: ArrayApiKernels
) -> tuple[Any, Any, Any, Any]:
    """cp_pipe's variance of a difference image, its pixels, and its covariance weights.

    The clipped variance halved and clip-corrected, the pixels the clipping kept, the
    difference, and its good pixels within ``nsigma`` of the clipped mean.
    """
    xp = kernels.xp
    d_mean, d_var, npix = kernels.clipped_stats(d, good, nsigma=config.nsigma, niter=config.niter)
    var = 0.5 * d_var * clip_correction(config.nsigma)
    cut = d_mean + config.nsigma * xp.sqrt(d_var)
    return var, npix, d, good & kernels.at_most(xp.abs(d), cut)


def _binned(
    measured: _Measured,
    good: Any,
    shape: tuple[int, int],
    config: ExtractConfig,
    kernels: ArrayApiKernels,
) -> tuple[_Measured, Any, tuple[int, int]]:
    """cp_pipe's ``binSize``: the difference image binned before its variance and covariances.

    Each ``bin_size`` square the mean of its pixels (a partial square at the far edges
    dropped), bad where any of its pixels is bad (afw's ``binImage``); the means are the
    unbinned images'. Returns the measurement on the binned image, its good bins and shape.
    """
    xp = kernels.xp
    b = config.bin_size
    ny, nx = shape[0] // b, shape[1] // b
    lead = measured.difference.shape[:-1]

    def blocks(x: Any) -> Any:
        image = xp.reshape(x, (*lead, *shape))[..., : ny * b, : nx * b]
        return xp.reshape(image, (*lead, ny, b, nx, b))

    d = xp.mean(xp.astype(blocks(measured.difference), xp.float64), axis=(-3, -1))
    kept = xp.all(blocks(good), axis=(-3, -1))
    flat_d = xp.reshape(xp.astype(d, measured.difference.dtype), (*lead, ny * nx))
    flat_good = xp.reshape(kept, (*lead, ny * nx))
    var, npix, d, weights = _clipped_difference(flat_d, flat_good, config, kernels)
    binned = _Measured(measured.mean1, measured.mean2, measured.mean, var, npix, d, weights)
    return binned, flat_good, (ny, nx)


def _mad_std(x: Any, good: Any, *, kernels: ArrayApiKernels) -> Any:
    xp = kernels.xp
    (centre,) = kernels.masked_quantiles(x, good, (0.5,))
    deviation = xp.abs(xp.astype(x, xp.float64, copy=False) - centre[..., None])
    (mad,) = kernels.masked_quantiles(deviation, good, (0.5,))
    return MAD_TO_SIGMA * mad


def _eotest(pair: _PairImages, config: ExtractConfig, kernels: ArrayApiKernels) -> _Measured:
    """Masked means, symmetric flux weights, MAD cut, rescaled again, population variance."""
    xp = kernels.xp
    mean1 = kernels.masked_mean(pair.f1, pair.g1)
    mean2 = kernels.masked_mean(pair.f2, pair.g2)
    f = 0.5 * (mean1 + mean2)
    r1 = xp.astype(pair.f1, xp.float64) * xp.astype((mean2 / f)[..., None], xp.float64)
    r2 = xp.astype(pair.f2, xp.float64) * xp.astype((mean1 / f)[..., None], xp.float64)
    d = r1 - r2
    scale = _mad_std(d, pair.both, kernels=kernels)
    weights = pair.both & (xp.abs(d) < config.eotest_mad_cut * scale[..., None])
    m1b = kernels.masked_mean(r1, weights)
    m2b = kernels.masked_mean(r2, weights)
    fb = 0.5 * (m1b + m2b)
    d = r1 * (m2b / fb)[..., None] - r2 * (m1b / fb)[..., None]
    var = 0.5 * kernels.masked_variance(d, weights)
    return _Measured(mean1, mean2, fb, var, kernels.count_true(weights), d, weights)


def _seed(pair: _PairImages, config: ExtractConfig, kernels: ArrayApiKernels) -> _Measured:
    """The notebook: plain means, ``mean = mean(I1)``, ``var(I1 - I2 m1/m2) / 2``."""
    xp = kernels.xp
    mean1 = kernels.masked_mean(pair.f1, pair.g1)
    mean2 = kernels.masked_mean(pair.f2, pair.g2)
    d = xp.astype(pair.f1, xp.float64) - xp.astype(pair.f2, xp.float64) * (mean1 / mean2)[..., None]
    var = 0.5 * kernels.masked_variance(d, pair.both)
    npix = kernels.count_true(pair.both)
    return _Measured(mean1, mean2, mean1, var, npix, d, pair.both)


_METHODS = {"cp_pipe": _cp_pipe, "eotest": _eotest, "seed": _seed}
"""Each tool's definitions of means, difference and variance (``ExtractConfig.method``)."""


def _pair_images(images: Any, good: Any, *, xp: ModuleType) -> _PairImages:
    g1, g2 = good[:, 0, ...], good[:, 1, ...]
    return _PairImages(
        images,
        good,
        _flat(images[:, 0, ...], xp=xp),
        _flat(images[:, 1, ...], xp=xp),
        _flat(g1, xp=xp),
        _flat(g2, xp=xp),
        _flat(g1 & g2, xp=xp),
    )


def _covariances(
    measured: _Measured,
    weight_count: Any,
    shape: tuple[int, int],
    config: ExtractConfig,
    backend: Backend,
    fft_chunk: int | None,
) -> tuple[Any, Any]:
    """Per-image covariances of the difference image, clip-corrected for cp_pipe."""
    xp = backend.xp
    d_img = xp.reshape(measured.difference, (*measured.difference.shape[:-1], *shape))
    w_img = xp.reshape(measured.weights, (*measured.weights.shape[:-1], *shape))
    cov, cov_npix = covariances_fft(d_img, w_img, config.cov_size, backend=backend, chunk=fft_chunk)
    cov = 0.5 * cov
    if config.method == "cp_pipe":
        factor = clip_correction(config.nsigma)
        lags = xp.arange(config.cov_size, device=cov.device)
        origin = (lags[:, None] == 0) & (lags[None, :] == 0)
        scale = xp.full(origin.shape, factor * factor, dtype=cov.dtype, device=cov.device)
        cov = cov * xp.where(origin, factor, scale)
    enough = weight_count * config.bin_size**2 >= config.min_pixels_covariance  # min / b^2
    return xp.where(enough[..., None, None], cov, xp.nan), cov_npix


def row_mean_variance(
    difference: Any, good: Any, shape: tuple[int, int], config: ExtractConfig, kernels: Any
) -> Any:
    """The clipped variance of the difference image's row means (``rowMeanVariance``).

    eo_pipe's and cp_pipe's: each row's mean over its good pixels, every row but the last
    (cp_pipe's loop stops one row short), then afw's clipped variance of those means
    (``nsigma``, ``niter``; rows without a good pixel left out). Noise correlated along
    rows (the serial direction) raises it above the variance over the row length.

    Parameters
    ----------
    difference, good : array
        ``(pairs, amps, ny * nx)`` the difference image and its good pixels.
    shape : (int, int)
        ``(ny, nx)``.
    config : ExtractConfig
        The clipping.
    kernels : ArrayApiKernels
        The backend's kernels.

    Returns
    -------
    array
        ``(pairs, amps)`` ADU^2.
    """
    xp = kernels.xp
    lead = difference.shape[:-1]
    rows = xp.reshape(difference, (*lead, *shape))[..., :-1, :]
    kept = xp.reshape(good, (*lead, *shape))[..., :-1, :]
    means = kernels.masked_mean(rows, kept)
    _, variance, _ = kernels.clipped_stats(
        means, xp.isfinite(means), nsigma=config.nsigma, niter=config.niter
    )
    return variance


def pair_statistics(
    images: Any,
    good: Any,
    read_noise_adu: Any,
    config: ExtractConfig,
    *,
    backend: Backend,
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
        ``(pairs, 2, amps)`` read noise of each exposure (ADU), for the corrected gains.
    config : ExtractConfig
        The preset's definitions (``method``: ``cp_pipe``, ``eotest`` or ``seed``).
    backend : Backend
        Where the images live.
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

    Per-pixel gains: ``rhl_gain`` on I1 and ``I2 m1/m2`` over the pixels the method's
    difference clipping keeps (its covariance weights), ``rhl_gain_corrected`` with the
    preset's read-noise correction; ``notebook_gain`` on the unscaled flats over every
    good pixel and ``cp_pipe_gain`` that with the FULL correction, whatever the preset.
    """
    kernels = backend.kernels
    if config.method not in _METHODS:
        raise ValueError(f"unknown pair statistics method {config.method!r}")
    pair = _pair_images(images, good, xp=backend.xp)
    measured = _METHODS[config.method](pair, config, kernels)
    read_noise = 0.5 * (read_noise_adu[:, 0, ...] + read_noise_adu[:, 1, ...])
    gains = _per_pair_gains(pair, measured, read_noise, config, kernels)
    shape, both = (images.shape[-2], images.shape[-1]), pair.both
    if config.bin_size > 1:
        measured, both, shape = _binned(measured, both, shape, config, kernels)
    cov_pixels = kernels.count_true(measured.weights)
    cov = cov_npix = None
    if config.cov_size > 0:
        cov, cov_npix = _covariances(measured, cov_pixels, shape, config, backend, fft_chunk)
    rows = row_mean_variance(measured.difference, both, shape, config, kernels)
    tested = (
        gaussianity(pair.f1, pair.f2, pair.both, measured.mean1, measured.mean2, config, backend)
        if config.ks_test
        else no_gaussianity(measured.mean.shape, backend, images.device)
    )
    return PairStatistics(
        mean1=measured.mean1,
        mean2=measured.mean2,
        mean=measured.mean,
        var=measured.var,
        npix=measured.npix,
        **gains,
        read_noise_adu=read_noise,
        cov=cov,
        cov_npix=cov_npix,
        cov_pixels=cov_pixels,
        row_mean_variance=rows,
        **tested,
    )

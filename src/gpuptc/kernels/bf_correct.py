"""The brighter-fatter correction of images by their kernels, as Rubin's ISR applies it.

ip_isr's ``brighterFatterCorrection``: with ``I`` the image in electrons and ``K`` its
kernel, the correction ``0.5 * (grad I . grad (K * I) + I laplacian (K * I))`` (the
divergence of ``I grad (K * I)`` halved, ``*`` a convolution) is added to the image; as
the measured image, not the incident one, stands in for ``I``, it is iterated (the
correction recomputed on the corrected image) until the summed absolute change falls below
``threshold`` electrons or ``max_iter`` rounds. The kernel's half width at the edges is
left as it is (the convolution is not valid there), one pixel more for the derivatives.

Batched: a stack of images ``(..., ny, nx)``, each with its own kernel and gain (or
kernels and gains that broadcast against the stack's leading axes: one per amp of a
``(pairs, 2, amps, ny, nx)`` stack), on any array library (the convolution by FFT).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

__all__ = ["correct_brighter_fatter"]


def correct_brighter_fatter(
    images: Any, kernels: Any, gains: Any, max_iter: int = 10, threshold: float = 1000.0
) -> tuple[Any, Any]:
    """Images corrected for the brighter-fatter effect by their kernels.

    Parameters
    ----------
    images : array
        ``(..., ny, nx)`` images in ADU (NaN pixels take no part and stay NaN).
    kernels : array
        ``(..., k, k)`` kernels (1/e-), ``k`` odd, each symmetric, in the images'
        orientation; their leading axes broadcast against the images'.
    gains : array
        ``(...)`` e-/ADU, broadcasting likewise: each image is corrected in electrons.
    max_iter : int
        Rounds at most (Rubin's ISR: 10).
    threshold : float
        An image stops when a round changes it by less than this, summed over its pixels
        in electrons (Rubin's ISR: 1000).

    Returns
    -------
    corrected : array
        ``(..., ny, nx)`` ADU in the images' dtype, on the images' array library.
    rounds : array
        ``(...)`` the rounds each image took.

    Examples
    --------
    A flat image has no gradient to correct:

    >>> import numpy as np
    >>> flat = np.full((1, 40, 40), 1000.0)
    >>> kernel = np.zeros((1, 5, 5)); kernel[0, 2, 2] = -1e-7
    >>> corrected, _ = correct_brighter_fatter(flat, kernel, np.ones(1))
    >>> bool(np.allclose(corrected, flat))
    True
    """
    xp = array_namespace(images)
    gain = xp.astype(gains, images.dtype)[..., None, None]
    unknown = xp.isnan(images)
    electrons = xp.where(unknown, 0.0, images * gain)
    kernels = xp.astype(kernels, images.dtype)
    size = kernels.shape[-1]
    start, end = size // 2, -size // 2
    inner = (..., slice(start, end), slice(start, end))
    core = (..., slice(start + 1, end - 1), slice(start + 1, end - 1))
    correction = xp.zeros_like(electrons)
    current = electrons
    previous = xp.zeros_like(electrons)
    device = getattr(images, "device", None)
    running = xp.ones(electrons.shape[:-2], dtype=xp.bool, device=device)
    rounds = xp.zeros(electrons.shape[:-2], dtype=xp.int64, device=device)
    for iteration in range(max_iter):
        step = _correction(current, _convolve(current, kernels, xp), inner, xp)
        correction = xp.where(running[..., None, None], step, correction)
        updated = _with(electrons, correction, inner, xp)
        current = xp.where(running[..., None, None], updated, current)
        rounds = xp.where(running, iteration, rounds)
        if iteration > 0:  # Rubin's compares with zeros the first time, as here
            change = xp.sum(xp.abs(previous - current), axis=(-2, -1))
            running = running & ~(change < threshold)
            if not bool(xp.any(running)):
                break
            previous = current
    corrected = _with(electrons, correction, core, xp) / gain
    return xp.where(unknown, images, corrected), rounds


def _correction(image: Any, convolved: Any, inner: tuple, xp: Any) -> Any:
    """``0.5 (grad I . grad C + I laplacian C)`` inside the kernel's margin (zero outside)."""
    tmp, out = image[inner], convolved[inner]
    tmp_y, tmp_x = _gradient(tmp, -2, xp), _gradient(tmp, -1, xp)
    out_y, out_x = _gradient(out, -2, xp), _gradient(out, -1, xp)
    first = (tmp_y * out_y + tmp_x * out_x)[..., 1:-1, 1:-1]
    second_y = out[..., 2:, 1:-1] - 2.0 * out[..., 1:-1, 1:-1] + out[..., :-2, 1:-1]
    second_x = out[..., 1:-1, 2:] - 2.0 * out[..., 1:-1, 1:-1] + out[..., 1:-1, :-2]
    value = 0.5 * (first + tmp[..., 1:-1, 1:-1] * (second_y + second_x))
    return _placed(value, image.shape, inner, xp)


def _placed(value: Any, shape: tuple, inner: tuple, xp: Any) -> Any:
    """``value`` (the inner region less a ring of one) in a zero array of ``shape``."""
    ny, nx = shape[-2], shape[-1]
    top, left = inner[-2].start + 1, inner[-1].start + 1
    bottom = ny - top - value.shape[-2]
    right = nx - left - value.shape[-1]
    device = getattr(value, "device", None)
    lead = value.shape[:-2]
    rows = [
        xp.zeros((*lead, top, value.shape[-1]), dtype=value.dtype, device=device),
        value,
        xp.zeros((*lead, bottom, value.shape[-1]), dtype=value.dtype, device=device),
    ]
    tall = xp.concat(rows, axis=-2)
    columns = [
        xp.zeros((*tall.shape[:-1], left), dtype=value.dtype, device=device),
        tall,
        xp.zeros((*tall.shape[:-1], right), dtype=value.dtype, device=device),
    ]
    return xp.concat(columns, axis=-1)


def _with(electrons: Any, correction: Any, region: tuple, xp: Any) -> Any:
    """``electrons`` plus ``correction`` inside ``region`` only."""
    ny, nx = electrons.shape[-2], electrons.shape[-1]
    device = getattr(electrons, "device", None)
    rows = xp.arange(ny, device=device)
    columns = xp.arange(nx, device=device)
    inside_rows = (rows >= region[-2].start) & (rows < ny + region[-2].stop)
    inside_columns = (columns >= region[-1].start) & (columns < nx + region[-1].stop)
    inside = inside_rows[:, None] & inside_columns[None, :]
    return electrons + xp.where(inside, correction, 0.0)


def _gradient(values: Any, axis: int, xp: Any) -> Any:
    """The gradient along ``axis`` as NumPy's: central differences, one-sided at the ends."""
    moved = xp.moveaxis(values, axis, -1)
    centre = (moved[..., 2:] - moved[..., :-2]) / 2.0
    first = moved[..., 1:2] - moved[..., :1]
    last = moved[..., -1:] - moved[..., -2:-1]
    return xp.moveaxis(xp.concat([first, centre, last], axis=-1), -1, axis)


def _convolve(images: Any, kernels: Any, xp: Any) -> Any:
    """Each image convolved with its kernel, the output the image's size (``same``)."""
    ny, nx = images.shape[-2], images.shape[-1]
    k = kernels.shape[-1]
    shape = (ny + k - 1, nx + k - 1)
    product = xp.fft.rfftn(images, s=shape, axes=(-2, -1)) * xp.fft.rfftn(
        kernels, s=shape, axes=(-2, -1)
    )
    full = xp.fft.irfftn(product, s=shape, axes=(-2, -1))
    offset = (k - 1) // 2
    return full[..., offset : offset + ny, offset : offset + nx]

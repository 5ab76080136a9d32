"""The brighter-fatter kernel of each amplifier from its PTC, as cp_pipe solves it.

cp_pipe's ``BrighterFatterKernelSolveTask`` (after Coulton et al. 2018, eqs. 22-29, and
Broughton et al. 2024), for every amp of a sensor at once on any array library:

1. **Correlations.** Each kept pair's covariances ``C_ij`` (ADU^2, lags ``0..n-1``) in
   electrons and undoubled, ``q = 2 g^2 C``; the Poisson term ``2 mu g`` taken from
   ``q_00`` (a pair whose ``q_00`` stays positive is left out); ``q / -2`` (the
   correlations, kept for the quadratic fit) and ``q / (-2 mu_e^2)`` (scaled by the flux
   squared), each mirrored from its quadrant to the full ``(2n-1) x (2n-1)`` grid
   (:func:`tile_quadrant`). A pair whose scaled grid has ``|sum| / sum|.|`` above
   ``xcorr_check_reject_level`` is left out.
2. **The pre-kernel**, one of: the sigma-clipped mean of the scaled grids over the pairs
   (afw's, ``n_sigma_clip``); the slope of a reweighted straight line of the correlations
   against the flux squared, per lag (``correlation_quadratic_fit``); minus the full
   covariance fit's ``a`` matrix (``use_amatrix``); or the full covariance model sampled at
   the pair nearest ``cov_model_flux_sample`` electrons, less its noise and Poisson terms,
   over the flux squared (``use_cov_model_sample``). Padded by a ring of zeros.
3. **Zero sum** (``force_zero_sum``): the centre less the grid's sum, plus a power-law
   tail ``-A r^(2 slope)`` beyond the grid when ``correlation_model_radius`` lies inside it.
4. **The kernel**: the solution of the Poisson equation ``laplacian(K) = pre-kernel`` by
   successive over-relaxation with Chebyshev acceleration (:func:`successive_over_relaxation`).
5. **Validity** (``do_check_validity``): the outer ring within ``n_sigma_tol_for_valid_edge``
   of the spread of the outer three rings, the centre the minimum, and nothing above
   ``fraction_k00_for_kernel_max`` of ``|K_00|``.

At ``level = "DETECTOR"`` the scaled grids of every amp not in ``ignore_amps_for_averaging``
are averaged (or fitted) together into one detector kernel, without the zero sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from gpuptc.backend import Backend, get_backend, to_host
from gpuptc.config import BrighterFatterConfig
from gpuptc.fitting._batched import device_of
from gpuptc.fitting.linearity_line import irls_polynomials

__all__ = [
    "BfKernels",
    "correlation_grids",
    "solve_kernels",
    "successive_over_relaxation",
    "tile_quadrant",
]


def tile_quadrant(quadrant: Any, xp: ModuleType) -> Any:
    """Mirror ``(..., n, n)`` quadrants (lag 0 at ``[0, 0]``) to ``(..., 2n-1, 2n-1)`` grids.

    Examples
    --------
    >>> import numpy as np
    >>> tile_quadrant(np.array([[1, 2], [3, 4]]), np).tolist()
    [[4, 3, 4], [2, 1, 2], [4, 3, 4]]
    """
    rows = xp.concat([xp.flip(quadrant[..., 1:, :], axis=-2), quadrant], axis=-2)
    return xp.concat([xp.flip(rows[..., :, 1:], axis=-1), rows], axis=-1)


@dataclass(frozen=True)
class _Grids:
    """Each pair's correlations (electrons^2 and over the flux squared) and which count."""

    unscaled: Any  # (amps, pairs, 2n-1, 2n-1)
    scaled: Any
    flux: Any  # (amps, pairs) electrons
    kept: Any  # (amps, pairs) bool


def correlation_grids(
    cov: Any, mean: Any, gain: Any, used: Any, reject_level: float, xp: ModuleType
) -> _Grids:
    """Step 1 for every amp and pair: the mirrored correlations and the pairs kept.

    Parameters
    ----------
    cov : array
        ``(amps, pairs, n, n)`` covariances (ADU^2).
    mean : array
        ``(amps, pairs)`` means (ADU).
    gain : array
        ``(amps,)`` gains (e-/ADU).
    used : array
        ``(amps, pairs)`` the PTC's selection.
    reject_level : float
        ``xcorr_check_reject_level``.
    xp : module
        The array library.
    """
    g = gain[:, None, None, None]
    flux = mean * gain[:, None]
    q = 2.0 * cov * g * g
    centre = q[..., 0, 0] - 2.0 * flux  # the Poisson term out
    correlations = _with_centre(q, centre, xp) / -2.0
    unscaled = tile_quadrant(correlations, xp)
    scaled = unscaled / (flux * flux)[..., None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        check = xp.abs(xp.sum(scaled, axis=(-2, -1))) / xp.sum(xp.abs(scaled), axis=(-2, -1))
    kept = used & (centre <= 0.0) & (check <= reject_level) & xp.isfinite(check)
    return _Grids(unscaled, scaled, flux, kept)


def _with_centre(q: Any, centre: Any, xp: ModuleType) -> Any:
    """``q`` with its ``[0, 0]`` lag replaced by ``centre``."""
    n = q.shape[-1]
    first = xp.reshape(xp.arange(n * n, device=device_of(q)) == 0, (n, n))
    return xp.where(first, centre[..., None, None], q)


def _pad(grid: Any, xp: ModuleType) -> Any:
    """A ring of zeros around each ``(..., m, m)`` grid."""
    shape = grid.shape[:-2]
    column = xp.zeros((*shape, grid.shape[-2], 1), dtype=grid.dtype, device=device_of(grid))
    wide = xp.concat([column, grid, column], axis=-1)
    row = xp.zeros((*shape, 1, wide.shape[-1]), dtype=grid.dtype, device=device_of(grid))
    return xp.concat([row, wide, row], axis=-2)


def clipped_mean(grids: Any, kept: Any, n_sigma: float, backend: Backend) -> Any:
    """The sigma-clipped mean (afw's) over axis -3 (the pairs) of each lag, kept ones only.

    A lag with a single pair (nothing to clip by) takes that pair's value.
    """
    xp = backend.xp
    values = xp.moveaxis(grids, -3, -1)  # (..., m, m, pairs)
    good = xp.broadcast_to(kept[..., None, None, :], values.shape) & xp.isfinite(values)
    with np.errstate(invalid="ignore", divide="ignore"):  # an amp without pairs: NaN
        mean, _, _ = backend.kernels.clipped_stats(values, good, nsigma=n_sigma, niter=3)
    count = xp.sum(xp.astype(good, values.dtype), axis=-1)
    total = xp.sum(xp.where(good, values, 0.0), axis=-1)
    plain = total / xp.where(count > 0, count, 1.0)
    return xp.where(xp.isnan(mean) & (count > 0), plain, mean)  # one pair: its own grid


def _quadratic_slopes(grids: _Grids, kept: Any, xp: ModuleType) -> Any:
    """Per lag, the slope of a reweighted line of the correlations on the flux squared.

    cp_pipe's Cauchy weights, of unscaled residuals.
    """
    amps, pairs, m, _ = grids.unscaled.shape
    values = xp.reshape(xp.moveaxis(grids.unscaled, 1, -1), (amps * m * m, pairs))
    flux2 = grids.flux * grids.flux
    x = xp.reshape(xp.broadcast_to(flux2[:, None, :], (amps, m * m, pairs)), values.shape)
    mask = xp.reshape(xp.broadcast_to(kept[:, None, :], (amps, m * m, pairs)), values.shape)
    line, _, _ = irls_polynomials(x, values, mask, 1, xp, scale_residuals=False)
    return xp.reshape(line[:, 1], (amps, m, m))


def _sampled_model(
    model: Any, mean: Any, gain: Any, noise: Any, flux: float, xp: ModuleType
) -> Any:
    """Broughton et al. 2024 eq. 4, at the pair nearest ``flux`` electrons.

    The covariance model there less its noise and Poisson terms, over its mean squared.
    """
    distance = (mean * gain[:, None] - flux) ** 2
    nearest = xp.argmin(xp.where(xp.isnan(distance), math.inf, distance), axis=1)  # no NaN
    at = xp.take_along_axis(mean, nearest[:, None], axis=1)[:, 0]
    index = xp.broadcast_to(nearest[:, None, None, None], (model.shape[0], 1, *model.shape[2:]))
    sample = xp.take_along_axis(model, index, axis=1)[:, 0]  # on the device, no host trip
    tilde = (sample - noise / (gain * gain)[:, None, None]) / (at * at)[:, None, None]
    poisson = (at / gain) / (at * at)
    return _with_centre(tilde, tilde[:, 0, 0] - poisson, xp)


def _zero_sum(pre: Any, radius: int, slope: float, xp: ModuleType) -> Any:
    """The centre less each grid's sum (and a power-law tail beyond ``radius``)."""
    size = pre.shape[-1]
    centre = (size - 1) // 2
    total = xp.sum(pre, axis=(-2, -1))
    if radius < (size - 1) / 2:
        factor = xp.sqrt(pre[..., centre, centre + 1] * pre[..., centre + 1, centre])
        power = 2.0 * abs(slope)
        total = total + 2.0 * math.pi * (factor / (power * (centre + 0.5)) ** power)
    index = xp.arange(size * size, device=device_of(pre)) == centre * size + centre
    return xp.where(xp.reshape(index, (size, size)), pre - total[..., None, None], pre)


def successive_over_relaxation(
    source: Any, xp: ModuleType, max_iter: int = 10000, e_level: float = 5e-14
) -> tuple[Any, Any]:
    """Solve ``laplacian(K) = source`` on each ``(..., m, m)`` grid, zero beyond its edge.

    Red-black successive over-relaxation with Chebyshev acceleration (cp_pipe's, Coulton
    et al. 2018): half-sweeps alternate between the points with odd and even index sums,
    each updated at once (none is another's neighbour); a grid stops when the sum of the
    absolute residuals falls below ``e_level`` of the first one's.

    Returns
    -------
    kernel : array
        ``(..., m, m)``.
    converged : array
        Whether each grid converged within ``max_iter`` sweeps.

    Examples
    --------
    >>> import numpy as np
    >>> source = np.zeros((1, 5, 5)); source[0, 2, 2] = -1.0
    >>> kernel, converged = successive_over_relaxation(source, np)
    >>> bool(converged[0]), bool(kernel[0, 2, 2] == kernel[0].max())
    (True, True)
    """
    size = source.shape[-1]
    shape = source.shape[:-2]
    dtype, device = source.dtype, device_of(source)
    func = xp.zeros((*shape, size + 2, size + 2), dtype=dtype, device=device)
    padded = _pad(source, xp)
    resid = -padded  # the first residuals, of K = 0
    start = xp.sum(xp.abs(resid), axis=(-2, -1))
    colours = _colours(size, xp, device)
    rho = math.cos(math.pi / size)
    omega = 1.0
    running = start > 0  # a grid of zeros is solved already
    for sweep in range(2 * max_iter):
        first, second = colours[0:2] if sweep % 2 == 0 else colours[2:4]
        for colour in (first, second):
            update = (
                xp.roll(func, 1, axis=-1) + xp.roll(func, -1, axis=-1)
                + xp.roll(func, 1, axis=-2) + xp.roll(func, -1, axis=-2)
                - 4.0 * func - padded
            )  # fmt: skip
            where = colour & running[..., None, None]
            resid = xp.where(where, update, resid)
            func = xp.where(where, func + omega * update * 0.25, func)
        error = xp.sum(xp.abs(resid), axis=(-2, -1))
        running = running & ~(error < start * e_level)
        if not bool(xp.any(running)):
            break
        rho2 = rho * rho
        omega = 1.0 / (1.0 - rho2 / 2.0) if sweep == 0 else 1.0 / (1.0 - rho2 * omega / 4.0)
    return func[..., 1:-1, 1:-1], ~running


def _colours(size: int, xp: ModuleType, device: Any) -> list[Any]:
    """The four interleaved sets of interior points of a ``size + 2`` grid.

    In cp_pipe's order: (odd, odd), (even, even), then (odd, even), (even, odd).
    """
    index = xp.arange(size + 2, device=device)
    inside = (index >= 1) & (index <= size)
    odd = inside & (index % 2 == 1)
    even = inside & (index % 2 == 0)
    sets = ((odd, odd), (even, even), (odd, even), (even, odd))
    return [rows[:, None] & columns[None, :] for rows, columns in sets]


def _valid(kernel: Any, fraction: float, xp: ModuleType) -> Any:
    """cp_pipe's validity of each ``(..., m, m)`` kernel (``m`` at least 7).

    The outer ring must be zero within 1e-8: cp_pipe compares it with
    ``numpy.isclose(edge, 0, rtol=n_sigma * spread)``, whose relative tolerance of a zero
    is zero, so its ``nSigmaTolForValidEdge`` changes nothing and only the absolute 1e-8
    counts; reproduced as it is. The centre must be the minimum, and no value above
    ``fraction`` of ``|K_00|``.
    """
    size = kernel.shape[-1]
    if size < 7:
        raise ValueError(f"a kernel of {size} x {size} is too small for the validity check")
    index = xp.arange(size, device=device_of(kernel))
    ring = (index == 0) | (index == size - 1)
    edge = ring[:, None] | ring[None, :]
    quiet = xp.all(xp.where(edge, xp.abs(kernel) <= 1e-8, True), axis=(-2, -1))
    centre = kernel[..., size // 2, size // 2]
    lowest = xp.all(kernel >= centre[..., None, None], axis=(-2, -1))
    negative = xp.all(kernel <= fraction * xp.abs(centre)[..., None, None], axis=(-2, -1))
    return quiet & lowest & negative


@dataclass(frozen=True)
class BfKernels:
    """Every amp's brighter-fatter kernel of a sensor (cp_pipe's ``BrighterFatterKernel``).

    Attributes
    ----------
    pre_kernels : numpy.ndarray
        ``(amps, m, m)`` the averaged (or fitted) correlations the kernels solve for
        (cp_pipe's MEAN_XCORRS), ``m = 2n + 1``.
    kernels : numpy.ndarray
        ``(amps, m, m)`` the kernels (zeros for an amp without one).
    valid : numpy.ndarray
        ``(amps,)`` whether each kernel passed the validity checks.
    converged : numpy.ndarray
        ``(amps,)`` whether its relaxation converged.
    kept : numpy.ndarray
        ``(amps, pairs)`` the pairs that entered it.
    status : list of str
        ``ok``, ``no_gain`` (no positive gain), ``no_pairs`` (every pair rejected).
    detector_kernel : numpy.ndarray or None
        The detector's kernel (``level = "DETECTOR"``).
    detector_valid, detector_converged : bool
        Its validity (the amps' checks; cp_pipe does not check it) and convergence.
    """

    pre_kernels: np.ndarray
    kernels: np.ndarray
    valid: np.ndarray
    converged: np.ndarray
    kept: np.ndarray
    status: list[str]
    detector_kernel: np.ndarray | None = None
    detector_valid: bool = False
    detector_converged: bool = False


def solve_kernels(
    cov: np.ndarray,
    mean: np.ndarray,
    gain: np.ndarray,
    used: np.ndarray,
    config: BrighterFatterConfig | None = None,
    *,
    a_matrix: np.ndarray | None = None,
    cov_model: np.ndarray | None = None,
    noise_matrix: np.ndarray | None = None,
    amp_names: list[str] | None = None,
    backend: str | Backend = "numpy",
) -> BfKernels:
    """Every amp's brighter-fatter kernel from its PTC, all amps at once.

    Parameters
    ----------
    cov : numpy.ndarray
        ``(amps, pairs, n, n)`` covariances per pair (ADU^2; lag ``[0, 0]`` the variance).
    mean : numpy.ndarray
        ``(amps, pairs)`` pair means (ADU).
    gain : numpy.ndarray
        ``(amps,)`` gains (e-/ADU).
    used : numpy.ndarray
        ``(amps, pairs)`` the PTC's selection.
    config : BrighterFatterConfig, optional
        The preset's ``[brighter_fatter]`` section (default cp_pipe's).
    a_matrix : numpy.ndarray, optional
        ``(amps, k, k)`` the full covariance fit's ``a`` (1/e-), for ``use_amatrix``.
    cov_model, noise_matrix : numpy.ndarray, optional
        ``(amps, pairs, n, n)`` the full covariance model (ADU^2) and ``(amps, n, n)`` its
        noise matrix (e-^2), for ``use_cov_model_sample``.
    amp_names : list of str, optional
        The amps' names, for ``ignore_amps_for_averaging``.
    backend : str or Backend
        Where to compute.

    Returns
    -------
    BfKernels
    """
    config = config or BrighterFatterConfig()
    where = get_backend(backend)
    xp = where.xp
    on = [xp.asarray(np.asarray(a, float), device=where.device) for a in (cov, mean, gain)]
    cov_, mean_, gain_ = on
    has_gain = xp.isfinite(gain_) & (gain_ > 0)
    safe_gain = xp.where(has_gain, gain_, 1.0)
    used_ = xp.asarray(np.asarray(used, bool), device=where.device) & has_gain[:, None]
    grids = correlation_grids(cov_, mean_, safe_gain, used_, config.xcorr_check_reject_level, xp)
    pre = _pre_kernels(config, grids, where, a_matrix, cov_model, noise_matrix, mean_, safe_gain)
    if config.force_zero_sum:
        pre = _zero_sum(pre, config.correlation_model_radius, config.correlation_model_slope, xp)
    has_pairs = xp.any(grids.kept, axis=1)
    solved = has_gain & has_pairs  # cp_pipe: no kernel when every pair is rejected
    pre = xp.where(solved[:, None, None], pre, 0.0)
    kernels, converged = successive_over_relaxation(
        pre, xp, config.max_iter_sor, config.e_level_sor
    )
    valid = solved & (
        _valid(kernels, config.fraction_k00_for_kernel_max, xp)
        if config.do_check_validity
        else True
    )
    detector = _detector_kernel(config, grids, where, amp_names)
    host = [np.asarray(to_host(a)) for a in (pre, kernels, valid, converged, grids.kept)]
    status = [
        "ok" if s else ("no_gain" if not g else "no_pairs")
        for s, g in zip(np.asarray(to_host(solved)), np.asarray(to_host(has_gain)), strict=True)
    ]
    return BfKernels(*host, status, *detector)


def _pre_kernels(config, grids, where, a_matrix, cov_model, noise_matrix, mean, gain) -> Any:
    """Step 2: each amp's pre-kernel, ``(amps, 2n+1, 2n+1)``."""
    xp = where.xp
    if config.use_amatrix:
        if a_matrix is None:
            raise ValueError("use_amatrix needs the full covariance fit's a matrix")
        a = xp.asarray(np.asarray(a_matrix, float), device=where.device)
        return _pad(tile_quadrant(-a, xp), xp)
    if config.correlation_quadratic_fit:
        return _pad(_quadratic_slopes(grids, grids.kept, xp), xp)
    if config.use_cov_model_sample:
        if cov_model is None or noise_matrix is None:
            raise ValueError("use_cov_model_sample needs the full covariance model and noise")
        model, noise = (
            xp.asarray(np.asarray(a, float), device=where.device) for a in (cov_model, noise_matrix)
        )
        tilde = _sampled_model(model, mean, gain, noise, config.cov_model_flux_sample, xp)
        return _pad(tile_quadrant(-tilde, xp), xp)
    return _pad(clipped_mean(grids.scaled, grids.kept, config.n_sigma_clip, where), xp)


def _detector_kernel(config, grids: _Grids, where: Backend, amp_names) -> tuple:
    """One kernel from every counted amp's pairs together (no zero sum, as cp_pipe).

    With its validity and convergence; ``(None, False, False)`` unless ``level`` is
    ``DETECTOR``.
    """
    if config.level != "DETECTOR":
        return None, False, False
    xp = where.xp
    amps = grids.kept.shape[0]
    names = amp_names or [str(k) for k in range(amps)]
    counted = [k for k in range(amps) if names[k] not in config.ignore_amps_for_averaging]
    index = xp.asarray(np.asarray(counted, np.int64), device=where.device)

    def pooled(a: Any) -> Any:
        chosen = xp.take(a, index, axis=0)
        return xp.reshape(chosen, (1, chosen.shape[0] * chosen.shape[1], *chosen.shape[2:]))

    together = _Grids(
        *(pooled(a) for a in (grids.unscaled, grids.scaled, grids.flux)), pooled(grids.kept)
    )
    if config.correlation_quadratic_fit:
        pre = _pad(_quadratic_slopes(together, together.kept, xp), xp)
    else:
        pre = _pad(clipped_mean(together.scaled, together.kept, config.n_sigma_clip, where), xp)
    kernel, converged = successive_over_relaxation(pre, xp, config.max_iter_sor, config.e_level_sor)
    valid = _valid(kernel, config.fraction_k00_for_kernel_max, xp)
    return np.asarray(to_host(kernel))[0], bool(valid[0]), bool(converged[0])

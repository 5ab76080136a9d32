"""Array backends and the array work the array API standard lacks.

A :class:`Backend` names an array namespace (wrapped by array-api-compat where needed)
and a device. Helpers take ``xp`` explicitly: NumPy and CuPy get native fast paths,
every other namespace a generic path built from the standard (sorts and masked sums,
fixed iteration counts, no boolean indexing, no data-dependent shapes).
"""

from __future__ import annotations

import importlib
import logging
import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from gpuptc import _cpu_kernels

__all__ = [
    "AFW_IQR_TO_SIGMA",
    "Backend",
    "BackendError",
    "at_most",
    "clip_correction",
    "clipped_stats",
    "count_true",
    "fused",
    "get_backend",
    "masked_quantiles",
    "median",
    "namespace",
    "to_host",
]

log = logging.getLogger(__name__)

AFW_IQR_TO_SIGMA = 0.741301109252802
"""Gaussian sigma per unit of interquartile range (afw's constant)."""

BACKENDS = ("auto", "numpy", "cupy", "torch", "array_api_strict")


class BackendError(RuntimeError):
    """A requested array backend is not available."""


@dataclass(frozen=True)
class Backend:
    """An array namespace and the device arrays are put on.

    Attributes
    ----------
    name : str
        ``numpy``, ``cupy``, ``torch``, ``array_api_strict`` or a module name.
    xp : module
        Array-API namespace.
    device : object or None
        Device for new arrays (None: the namespace's default).
    """

    name: str
    xp: ModuleType
    device: Any = None

    @property
    def is_gpu(self) -> bool:
        """Whether arrays live on a GPU."""
        return self.name == "cupy" or "cuda" in str(self.device)

    def asarray(self, host: np.ndarray) -> Any:
        """Copy a host (NumPy) array to this backend's device."""
        if self.name == "numpy":
            return np.asarray(host)
        if self.device is None:
            return self.xp.asarray(host)
        return self.xp.asarray(host, device=self.device)


def _cupy_with_gpu() -> ModuleType | None:
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # no CuPy, no driver, no device
        return None
    return cupy


def get_backend(backend: str | Backend = "auto", *, device: Any = None) -> Backend:
    """Resolve a backend name to a :class:`Backend`.

    Parameters
    ----------
    backend : str or Backend
        ``auto`` (CuPy when it imports and sees a GPU, else NumPy), ``numpy``, ``cupy``,
        ``torch``, ``array_api_strict``, or the import name of any namespace
        array-api-compat knows (``jax.numpy``, ``dask.array``, ...).
    device : object, optional
        Device for new arrays (``'cpu'``/``'cuda'`` for torch, an
        ``array_api_strict.Device``, ...).

    Returns
    -------
    Backend
        The namespace and device.

    Raises
    ------
    BackendError
        If the backend cannot be imported or has no device.
    """
    if isinstance(backend, Backend):
        return backend
    name = backend.strip().lower()
    if name == "auto":
        cupy = _cupy_with_gpu()
        chosen = Backend("cupy", array_api_compat.array_namespace(cupy.empty(0))) if cupy else None
        chosen = chosen or Backend("numpy", array_api_compat.array_namespace(np.empty(0)))
        log.info("array backend: %s (auto)", chosen.name)
        return chosen
    if name == "numpy":
        return Backend("numpy", array_api_compat.array_namespace(np.empty(0)), device)
    if name == "cupy":
        cupy = _cupy_with_gpu()
        if cupy is None:
            raise BackendError(
                "backend 'cupy' is not available: CuPy does not import or sees no GPU"
            )
        return Backend("cupy", array_api_compat.array_namespace(cupy.empty(0)), device)
    module_name = {"torch": "torch", "array_api_strict": "array_api_strict"}.get(name, backend)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"backend {backend!r} is not available: {exc}") from exc
    try:
        xp = array_api_compat.array_namespace(module.asarray([0.0]))
    except TypeError as exc:
        raise BackendError(f"{backend!r} is not an array-API namespace") from exc
    return Backend(name, xp, device)


def namespace(*arrays: Any) -> ModuleType:
    """The array-API namespace of ``arrays`` (array-api-compat wrapped)."""
    return array_api_compat.array_namespace(*arrays)


def to_host(x: Any) -> np.ndarray:
    """Copy an array of any namespace to a NumPy array: the one explicit host copy."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    module = type(x).__module__
    if module.startswith("array_api_strict"):
        import array_api_strict

        return np.asarray(array_api_strict.asarray(x, device=array_api_strict.Device("CPU_DEVICE")))
    return np.asarray(x)


def median(x: Any, /, *, axis: int, xp: ModuleType) -> Any:
    """Median along one axis (mean of the two middle values for even counts).

    Parameters
    ----------
    x : array
        Input values; NaNs propagate.
    axis : int
        Axis to reduce.
    xp : module
        Array namespace of ``x``.

    Returns
    -------
    array
        ``x`` reduced along ``axis``.
    """
    if fused(x, xp):
        return _cpu_kernels.median_last_axis(np.moveaxis(x, axis, -1))
    if array_api_compat.is_numpy_namespace(xp):
        return np.median(x, axis=axis)
    if array_api_compat.is_cupy_namespace(xp):
        import cupy

        return cupy.median(x, axis=axis)
    ordered = xp.sort(x, axis=axis)
    n = ordered.shape[axis]
    lower = xp.take(ordered, xp.asarray([(n - 1) // 2], device=ordered.device), axis=axis)
    upper = xp.take(ordered, xp.asarray([n // 2], device=ordered.device), axis=axis)
    return xp.squeeze((lower + upper) / 2, axis=axis)


def _order_statistics_numpy(
    values: np.ndarray, counts: np.ndarray, ranks: np.ndarray
) -> np.ndarray:
    """Values of rank ``ranks[..., k]`` among the first ``counts`` of each row (selection)."""
    flat = values.reshape(-1, values.shape[-1])
    flat_ranks = ranks.reshape(-1, ranks.shape[-1])
    out = np.empty(flat_ranks.shape, dtype=values.dtype)
    for row in range(flat.shape[0]):
        if counts.reshape(-1)[row] == 0:
            out[row] = np.nan
            continue
        wanted = np.unique(flat_ranks[row])
        part = np.partition(flat[row], wanted)
        out[row] = part[flat_ranks[row]]
    return out.reshape(ranks.shape)


def fused(x: Any, xp: ModuleType) -> bool:
    """Whether the fused CPU kernels (:mod:`gpuptc._cpu_kernels`) serve this float array."""
    return (
        array_api_compat.is_numpy_namespace(xp)
        and x.dtype in (np.float32, np.float64)
        and _cpu_kernels.available()
    )


def masked_quantiles(
    x: Any, good: Any, quantiles: tuple[float, ...], *, xp: ModuleType
) -> list[Any]:
    """Quantiles of the good values of each row, NumPy's linear interpolation.

    Parameters
    ----------
    x : array
        ``(..., n)`` values.
    good : array of bool
        ``(..., n)`` which values count.
    quantiles : tuple of float
        Quantiles in [0, 1], interpolated at index ``q * (count - 1)``.
    xp : module
        Array namespace.

    Returns
    -------
    list of array
        One ``(...)`` array per quantile; NaN for rows without good values.
    """
    good = good & xp.isfinite(x)
    if fused(x, xp):
        return _cpu_kernels.masked_quantiles(x, good, quantiles)
    counts = count_true(good, xp=xp)
    big = xp.asarray(xp.inf, dtype=x.dtype, device=x.device)
    filled = xp.where(good, x, big)
    positions = [q * (xp.astype(counts, xp.float64) - 1.0) for q in quantiles]
    positions = [xp.clip(p, 0.0, None) for p in positions]
    lower = [xp.astype(xp.floor(p), xp.int64) for p in positions]
    upper = [xp.minimum(lo + 1, xp.clip(counts - 1, 0, None)) for lo in lower]
    ranks = xp.stack([r for pair in zip(lower, upper, strict=True) for r in pair], axis=-1)
    if array_api_compat.is_numpy_namespace(xp):
        picked = _order_statistics_numpy(filled, np.asarray(counts), np.asarray(ranks))
    else:
        ordered = xp.sort(filled, axis=-1)
        picked = xp.take_along_axis(ordered, ranks, axis=-1)
    picked = xp.astype(picked, xp.float64)
    empty = counts == 0
    results = []
    for k, pos in enumerate(positions):
        lo_value, hi_value = picked[..., 2 * k], picked[..., 2 * k + 1]
        frac = pos - xp.floor(pos)
        value = lo_value + frac * (hi_value - lo_value)
        results.append(xp.where(empty, xp.nan, value))
    return results


def clipped_stats(
    x: Any,
    good: Any,
    *,
    nsigma: float,
    niter: int,
    xp: ModuleType,
) -> tuple[Any, Any, Any]:
    """afw-style sigma-clipped mean and variance of each row.

    Pass 0 keeps good values within ``nsigma * 0.7413 * IQR`` of the median; each later
    pass keeps good values within ``nsigma`` standard deviations of the previous mean.
    Tests are inclusive; variances are unbiased (n - 1); sums are float64. After
    ``niter`` passes the last mean and variance are returned.

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
    xp : module
        Array namespace.

    Returns
    -------
    mean, variance : array
        ``(...)`` float64; NaN where fewer than two values survive.
    count : array
        ``(...)`` int64 number of values kept by the last pass.

    Notes
    -----
    On NumPy with numba installed, fused kernels (:mod:`gpuptc._cpu_kernels`) compute
    the same numbers in a few passes; ``GPUPTC_NUMBA=0`` selects this generic path.
    """
    if niter < 1:
        raise ValueError("niter must be at least 1")
    if fused(x, xp):
        return _cpu_kernels.clipped_moments(
            x, good, nsigma=nsigma, niter=niter, iqr_to_sigma=AFW_IQR_TO_SIGMA
        )
    good = good & xp.isfinite(x)
    q25, q50, q75 = masked_quantiles(x, good, (0.25, 0.5, 0.75), xp=xp)
    centre = q50
    half_width = nsigma * AFW_IQR_TO_SIGMA * (q75 - q25)
    mean = variance = kept = None
    for _ in range(niter):
        centre_x = xp.astype(centre, x.dtype)
        offset = x - centre_x[..., None]
        kept = good & (xp.abs(offset) <= xp.astype(half_width, x.dtype)[..., None])
        mean, variance = _masked_mean_var(offset, kept, xp=xp)
        mean = mean + xp.astype(centre_x, xp.float64)
        centre, half_width = mean, nsigma * xp.sqrt(variance)
    return mean, variance, count_true(kept, xp=xp)


def at_most(x: Any, bound: Any, *, xp: ModuleType) -> Any:
    """``x <= bound[..., None]`` for a float64 ``bound``, exactly, in the dtype of ``x``.

    A float32 ``x`` is compared with the largest float32 not above ``bound`` (the same
    answer as a float64 comparison, without a float64 copy of ``x``).
    """
    if x.dtype == xp.float32:
        narrow = xp.astype(bound, xp.float32)
        down = xp.nextafter(narrow, xp.full_like(narrow, -xp.inf))
        narrow = xp.where(xp.astype(narrow, xp.float64) > bound, down, narrow)
        return x <= narrow[..., None]
    return x <= xp.astype(bound, x.dtype)[..., None]


def count_true(mask: Any, *, xp: ModuleType) -> Any:
    """Number of True values along the last axis, as int64."""
    if array_api_compat.is_numpy_namespace(xp):
        return np.count_nonzero(mask, axis=-1).astype(np.int64)
    return xp.sum(xp.astype(mask, xp.int32), axis=-1, dtype=xp.int64)


def _masked_mean_var(offset: Any, kept: Any, *, xp: ModuleType) -> tuple[Any, Any]:
    """Mean and unbiased variance of the kept values from shifted sums, float64 accumulators."""
    values = xp.where(kept, offset, xp.zeros((), dtype=offset.dtype, device=offset.device))
    count = xp.astype(count_true(kept, xp=xp), xp.float64)
    total = xp.sum(values, axis=-1, dtype=xp.float64)
    squares = xp.sum(values * values, axis=-1, dtype=xp.float64)
    safe = xp.where(count > 1, count, 2.0)
    mean = total / xp.where(count > 0, count, 1.0)
    variance = (squares - total * total / safe) / (safe - 1.0)
    mean = xp.where(count > 0, mean, xp.nan)
    variance = xp.where(count > 1, variance, xp.nan)
    return mean, variance


def clip_correction(nsigma: float) -> float:
    """Variance lost by clipping a Gaussian at ``nsigma``: multiply a clipped variance by this.

    ``1 / (1 - 2 n phi(n) / (Phi(n) - Phi(-n)))``; 1.0000011847 at 5.5 sigma.
    """
    phi = math.exp(-0.5 * nsigma * nsigma) / math.sqrt(2.0 * math.pi)
    inside = math.erf(nsigma / math.sqrt(2.0))
    return 1.0 / (1.0 - 2.0 * nsigma * phi / inside)

"""Array backends: a namespace, a device, its pixel kernels and its memory.

A :class:`Backend` is everything the compute core needs to know about where arrays
live: the array-API namespace (wrapped by array-api-compat where needed), the device,
the kernels chosen for it (:mod:`gpuptc.kernels`), and the device specifics of the
batched pipeline (host buffers, batch size, FFT chunking). Nothing else in the package
asks which backend it runs on.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from gpuptc.kernels import ArrayApiKernels, kernels_for

__all__ = ["Backend", "BackendError", "get_backend", "to_host"]

log = logging.getLogger(__name__)

_CPU_BATCH_BYTES = 1.5e9
"""Host memory a CPU batch may take, counting ~10x the raw stack for the work arrays."""

_CPU_FFT_CHUNK = 4
"""Amplifier images transformed at once on the CPU (bounds memory)."""


class BackendError(RuntimeError):
    """A requested array backend is not available."""


@dataclass(frozen=True)
class Backend:
    """An array namespace, the device arrays are put on, and the kernels for them.

    Attributes
    ----------
    name : str
        ``numpy``, ``cupy``, ``torch``, ``array_api_strict`` or a module name.
    xp : module
        Array-API namespace.
    device : object or None
        Device for new arrays (None: the namespace's default).
    kernels : ArrayApiKernels
        The pixel primitives for this namespace.
    """

    name: str
    xp: ModuleType
    device: Any = None
    kernels: ArrayApiKernels = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.kernels is None:
            object.__setattr__(self, "kernels", kernels_for(self.name, self.xp))

    @property
    def is_gpu(self) -> bool:
        """Whether arrays live on a GPU."""
        return self.name == "cupy" or "cuda" in str(self.device)

    @property
    def threads_over_amps(self) -> bool:
        """Whether amplifier groups should run in host threads (NumPy releases the GIL)."""
        return self.name == "numpy"

    @property
    def fft_chunk(self) -> int | None:
        """Amplifier images transformed at once for covariances (None: the whole batch)."""
        return None if self.is_gpu else _CPU_FFT_CHUNK

    def asarray(self, host: np.ndarray) -> Any:
        """Copy a host (NumPy) array to this backend's device."""
        if self.name == "numpy":
            return np.asarray(host)
        if self.device is None:
            return self.xp.asarray(host)
        return self.xp.asarray(host, device=self.device)

    def host_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 host buffer for raw stacks: pinned memory on CuPy (asynchronous copies).

        float32 holds every 18-bit integer exactly, takes the bytes of int32, and also
        takes float raw data (NaN included).
        """
        if self.name == "cupy":
            import cupyx

            return cupyx.empty_pinned(shape, dtype=np.float32)
        return np.empty(shape, dtype=np.float32)

    def batch_size(self, bytes_per_pair: int, requested: int | None = None) -> int:
        """Pairs measured at once: ``requested``, else what memory allows.

        On a GPU half the free device memory over ~12x the raw stack (raw, float copies,
        masks, FFT work space); on the CPU at most 4 pairs within 1.5 GB.
        """
        if requested:
            return max(1, requested)
        if self.is_gpu:
            try:
                import cupy

                free, _ = cupy.cuda.runtime.memGetInfo()
                return max(1, int(0.5 * free / (12 * bytes_per_pair)))
            except Exception:
                return 4
        return max(1, min(4, int(_CPU_BATCH_BYTES // (10 * bytes_per_pair))))


def _cupy_with_gpu() -> ModuleType | None:
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # no CuPy, no driver, no device
        return None
    return cupy


def _wrapped(array: Any) -> ModuleType:
    return array_api_compat.array_namespace(array)


def get_backend(
    backend: str | Backend = "auto", *, device: Any = None, fused: bool | None = None
) -> Backend:
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
    fused : bool, optional
        NumPy only: the numba kernels (default: when numba imports and ``GPUPTC_NUMBA``
        is not ``0``); False selects the array-API reference path.

    Returns
    -------
    Backend
        The namespace, device and kernels.

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
        chosen = Backend("cupy", _wrapped(cupy.empty(0))) if cupy else None
        chosen = chosen or Backend("numpy", _wrapped(np.empty(0)))
        log.debug("array backend: %s (auto)", chosen.name)
        return chosen
    if name == "numpy":
        xp = _wrapped(np.empty(0))
        try:
            kernels = kernels_for("numpy", xp, fused=fused)
        except ValueError as exc:
            raise BackendError(str(exc)) from exc
        return Backend("numpy", xp, device, kernels)
    if name == "cupy":
        cupy = _cupy_with_gpu()
        if cupy is None:
            raise BackendError(
                "backend 'cupy' is not available: CuPy does not import or sees no GPU"
            )
        return Backend("cupy", _wrapped(cupy.empty(0)), device)
    module_name = {"torch": "torch", "array_api_strict": "array_api_strict"}.get(name, backend)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"backend {backend!r} is not available: {exc}") from exc
    try:
        xp = _wrapped(module.asarray([0.0]))
    except TypeError as exc:
        raise BackendError(f"{backend!r} is not an array-API namespace") from exc
    return Backend(name, xp, device)


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

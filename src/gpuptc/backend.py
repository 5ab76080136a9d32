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

from gpuptc import settings
from gpuptc.errors import GpuptcError
from gpuptc.kernels import ArrayApiKernels, kernels_for

__all__ = ["Backend", "BackendError", "get_backend", "to_host"]

log = logging.getLogger(__name__)

_CPU_BATCH_BYTES = 1.5e9
"""Host memory a CPU batch may take, counting ~10x the raw stack for the work arrays."""

_CPU_FFT_CHUNK = 4
"""Amplifier images transformed at once on the CPU (bounds memory)."""

_GPU_WORK_FACTOR = 12
"""Device bytes a batch takes per byte of its raw stack (float copies, masks, differences)."""

_PINNED_HOST_BYTES = 8 * 2**30
"""Most host memory the two pinned batch buffers of a GPU backend may take together."""

_FFT_BYTES_PER_PIXEL = 5 * 16
"""Device bytes per padded pixel of one image's covariance transforms (five complex128)."""


class BackendError(GpuptcError, RuntimeError):
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
    def decodes_rice(self) -> bool:
        """Whether RICE_1 tiles cross the bus compressed and are decoded on the device.

        On CuPy, unless ``GPUPTC_GPU_RICE=0`` (see :mod:`gpuptc.settings`).
        """
        return self.name == "cupy" and settings.gpu_rice()

    @property
    def native(self) -> ModuleType:
        """The library's own module (``cupy`` itself on CuPy: raw kernels, ``asnumpy``).

        Elsewhere the array-API namespace :attr:`xp`.
        """
        if self.name == "cupy":
            import cupy

            return cupy
        return self.xp

    @property
    def threads_over_amps(self) -> bool:
        """Whether amplifier groups should run in host threads (NumPy releases the GIL)."""
        return self.name == "numpy"

    def fft_chunk(self, padded_pixels: int) -> int:
        """Amplifier images transformed at once for covariances.

        On the CPU a few at a time; on a GPU as many as a quarter of the free device
        memory holds, at five complex128 spectra per padded image.
        """
        if not self.is_gpu:
            return _CPU_FFT_CHUNK
        return max(
            1, int(0.25 * self.free_device_bytes() // (_FFT_BYTES_PER_PIXEL * padded_pixels))
        )

    def free_device_bytes(self) -> int:
        """Device memory free for new arrays: the device's free bytes and the pool's cache."""
        import cupy

        free, _ = cupy.cuda.runtime.memGetInfo()
        return int(free + cupy.get_default_memory_pool().free_bytes())

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
        takes float raw data (NaN included). Two buffers alternate between batches; reusing
        one is safe because all device work runs on CuPy's default stream, so the copy out
        of a buffer has finished when the results of its batch have come back.
        """
        if self.name == "cupy":
            import cupyx

            return cupyx.empty_pinned(shape, dtype=np.float32)
        return np.empty(shape, dtype=np.float32)

    def batch_size(
        self, bytes_per_pair: int, requested: int | None = None, pairs: int | None = None
    ) -> int:
        """Pairs measured at once: ``requested``, else what memory allows, at most ``pairs``.

        On a GPU: half the free device memory (the memory pool's cached blocks counted)
        over ~12x the raw stack, and the two pinned host buffers within 8 GiB; on the
        CPU at most 4 pairs within 1.5 GB.
        """
        if requested:
            return max(1, requested)
        if self.is_gpu:
            device = 0.5 * self.free_device_bytes() / (_GPU_WORK_FACTOR * bytes_per_pair)
            host = _PINNED_HOST_BYTES / (2 * bytes_per_pair)
            size = int(min(device, host))
        else:
            size = min(4, int(_CPU_BATCH_BYTES // (10 * bytes_per_pair)))
        return max(1, min(size, pairs or size))


def _cupy_with_gpu() -> tuple[ModuleType | None, str]:
    """CuPy if it imports and sees a GPU, else None and why not."""
    try:
        import cupy
    except ImportError as exc:
        return None, f"CuPy is not installed ({exc})"
    except Exception as exc:  # a broken installation: say what it is
        return None, f"CuPy does not import: {type(exc).__name__}: {exc}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, or a driver too old for this CuPy
        return None, f"CuPy sees no GPU: {type(exc).__name__}: {exc}"
    if count < 1:
        return None, "CuPy sees no GPU"
    return cupy, ""


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
        The fused kernels: numba on NumPy (default: when numba imports and
        ``GPUPTC_NUMBA`` is not ``0``), CUDA on CuPy (default: with ``GPUPTC_CUDA=1``);
        False selects the array-API reference kernels.

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
        cupy, why_not = _cupy_with_gpu()
        if cupy is not None:
            return Backend("cupy", _wrapped(cupy.empty(0)))
        log.debug("array backend auto: NumPy, as %s", why_not)
        return Backend("numpy", _wrapped(np.empty(0)))
    if name == "numpy":
        xp = _wrapped(np.empty(0))
        try:
            kernels = kernels_for("numpy", xp, fused=fused)
        except ValueError as exc:
            raise BackendError(str(exc)) from exc
        return Backend("numpy", xp, device, kernels)
    if name == "cupy":
        cupy, why_not = _cupy_with_gpu()
        if cupy is None:
            raise BackendError(f"backend 'cupy' is not available: {why_not}")
        xp = _wrapped(cupy.empty(0))
        return Backend("cupy", xp, device, kernels_for("cupy", xp, fused=fused))
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

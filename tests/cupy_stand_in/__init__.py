"""A NumPy-backed stand-in for CuPy, for the GPU path's tests on machines without a GPU.

It behaves like CuPy where gpuptc's correctness and speed depend on it:

- its array type (:class:`ndarray`, module ``cupy``) is not a NumPy array, so
  array-api-compat wraps it as it wraps CuPy's;
- implicit conversion to the host is refused (``np.asarray(x)`` raises, as CuPy does);
  explicit reads (``.get()``, ``float(x)``, ``bool(x)``, ``.item()``) work and are counted;
- device functions reject host (NumPy) arrays, as CuPy's do;
- every host synchronisation (a scalar read, a boolean mask index or assignment, which
  reads a count back) is counted in :data:`COUNTS`;
- a ``RawKernel`` runs its CUDA source, compiled for the CPU (``tests/cuda_cpu``);
- streams, pinned memory, memory pools and device queries are cheap fakes;
- it exports only names that CuPy 14.2 exports (``cupy14_names.json``, listed from an
  installed ``cupy-cuda13x`` wheel, which imports without a GPU).

:func:`install` puts it in ``sys.modules`` as ``cupy`` and ``cupyx`` (for a test's
duration); with a real CuPy and a GPU the tests use that instead.
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
import types
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

COUNTS: Counter[str] = Counter()
"""``sync`` (device-to-host waits), ``to_host`` and ``to_device`` copies since the reset."""

SYNC_SITES: Counter[str] = Counter()
"""Where the synchronisations came from: the innermost gpuptc frame, ``file:line``."""


def _synchronise() -> None:
    COUNTS["sync"] += 1
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/gpuptc/" in frame.filename:
            SYNC_SITES[f"{Path(frame.filename).name}:{frame.lineno}"] += 1
            return
    SYNC_SITES["outside gpuptc"] += 1


NAMES: dict[str, list[str]] = json.loads(
    (Path(__file__).with_name("cupy14_names.json")).read_text()
)["modules"]

FREE_BYTES = 100 * 2**30
TOTAL_BYTES = 140 * 2**30


def reset() -> None:
    """Set every count back to zero."""
    COUNTS.clear()
    SYNC_SITES.clear()


class ndarray:
    """A device array: a NumPy array behind a wall that host code must cross explicitly."""

    __module__ = "cupy"
    __array_priority__ = 100

    def __init__(self, data: np.ndarray) -> None:
        self._a = data

    # -- what CuPy refuses or counts ---------------------------------------------------
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def get(self, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
        COUNTS["to_host"] += 1
        return np.array(self._a, order=order)

    def _scalar(self) -> Any:
        _synchronise()
        return self._a.item()

    def __float__(self) -> float:
        return float(self._scalar())

    def __int__(self) -> int:
        return int(self._scalar())

    def __bool__(self) -> bool:
        return bool(self._scalar())

    def __index__(self) -> int:
        return int(self._scalar())

    def item(self) -> Any:
        return self._scalar()

    def tolist(self) -> Any:
        _synchronise()
        return self._a.tolist()

    # -- attributes ----------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    mT = property(lambda self: ndarray(np.swapaxes(self._a, -1, -2)))
    real = property(lambda self: ndarray(self._a.real))
    imag = property(lambda self: ndarray(self._a.imag))
    device = property(lambda self: cuda.Device(0))

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (ndarray(row) for row in self._a)

    def __repr__(self) -> str:
        return f"stand-in cupy array({self._a!r})"

    def __getattr__(self, name: str) -> Any:
        if name not in NAMES["cupy.ndarray"]:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        return _device_function(getattr(self._a, name), name)

    # -- indexing -------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_index(key)] = _unwrap(value, f"assignment to {type(self).__name__}")

    def __dlpack__(self, **kwargs: Any) -> Any:
        raise TypeError("the stand-in does not export DLPack")


def _index(key: Any) -> Any:
    """An index with device arrays unwrapped; a boolean mask costs a synchronisation."""
    parts = key if isinstance(key, tuple) else (key,)
    unwrapped = []
    for part in parts:
        if isinstance(part, ndarray):
            if part.dtype == np.bool_:
                _synchronise()  # CuPy reads the number of True values back
            unwrapped.append(part._a)
        elif isinstance(part, np.ndarray) and part.ndim > 0:
            raise TypeError("a NumPy array cannot index a device array (use a device array)")
        else:
            unwrapped.append(part)
    return tuple(unwrapped) if isinstance(key, tuple) else unwrapped[0]


def _unwrap(value: Any, what: str) -> Any:
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        raise TypeError(
            f"Unsupported type {type(value)} in {what}: host arrays are not device arrays"
        )
    if isinstance(value, list | tuple):
        return type(value)(_unwrap(v, what) for v in value)
    return value


def _wrap(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):  # CuPy reductions give 0-d device arrays
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _device_function(function: Any, name: str) -> Any:
    def device(*args: Any, **kwargs: Any) -> Any:
        args = tuple(_unwrap(a, name) for a in args)
        kwargs = {k: _unwrap(v, name) for k, v in kwargs.items()}
        with np.errstate(all="ignore"):  # CuPy never warns about NaN or overflow
            return _wrap(function(*args, **kwargs))

    device.__name__ = name
    return device


def _operator(name: str) -> Any:
    def operate(self: ndarray, *others: Any) -> Any:
        values = [_unwrap(o, name) for o in others]
        with np.errstate(all="ignore"):
            result = getattr(self._a, name)(*values)
        if result is NotImplemented:
            return NotImplemented
        if name in _IN_PLACE:
            return self
        return _wrap(result)

    return operate


_IN_PLACE = frozenset(
    f"__i{n}__" for n in "add sub mul truediv floordiv mod pow and or xor".split()
)
"""The in-place operators, which return the array itself (``__invert__`` is not one)."""

for _name in (
    "add sub mul truediv floordiv mod pow matmul and or xor lshift rshift "
    "radd rsub rmul rtruediv rfloordiv rmod rpow rmatmul rand ror rxor "
    "iadd isub imul itruediv ifloordiv imod ipow iand ior ixor "
    "lt le eq ne gt ge neg pos abs invert"
).split():
    setattr(ndarray, f"__{_name}__", _operator(f"__{_name}__"))


# -- module functions ---------------------------------------------------------------------


def asarray(a: Any, dtype: Any = None, order: Any = None, *, blocking: bool = False) -> ndarray:
    """A device copy of host data (counted), or the device array itself."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else ndarray(a._a.astype(dtype))
    COUNTS["to_device"] += 1
    return ndarray(np.array(a, dtype=dtype, order=order or "K"))


def array(
    obj: Any, dtype: Any = None, copy: bool = True, order: str = "K", **kwargs: Any
) -> ndarray:
    if isinstance(obj, ndarray):
        return ndarray(np.array(obj._a, dtype=dtype, copy=copy, order=order))
    COUNTS["to_device"] += 1
    return ndarray(np.array(obj, dtype=dtype, order=order))


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def get_array_module(*args: Any) -> types.ModuleType:
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


def get_default_memory_pool() -> _MemoryPool:
    return _POOL


def get_default_pinned_memory_pool() -> _MemoryPool:
    return _POOL


class _MemoryPool:
    def used_bytes(self) -> int:
        return 0

    def free_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self, stream: Any = None) -> None:
        pass

    def set_limit(self, size: Any = None, fraction: Any = None) -> None:
        pass


_POOL = _MemoryPool()


class RawKernel:
    """A CUDA kernel: compiled by CuPy on a GPU; here its exact source run on the CPU.

    The source is compiled by the system's C++ compiler with the CUDA built-ins of
    ``tests/cuda_cpu`` (each CUDA thread a fiber, the block's threads resumed in an order
    drawn from :data:`SCHEDULE_SEED`), and called on the arrays behind the device arrays,
    with CuPy's grid, block and argument conventions.
    """

    def __init__(self, code: str, name: str, options: tuple[str, ...] = (), **kwargs: Any):
        from cuda_cpu import CpuKernel

        self.code, self.name = code, name
        self.kernel = CpuKernel(code, name)

    def __call__(self, grid: tuple[int, ...], block: tuple[int, ...], args: tuple, **kwargs: Any):
        COUNTS["kernels"] += 1
        arguments = tuple(_unwrap(a, f"kernel {self.name}") for a in args)
        self.kernel(grid, block, arguments, seed=SCHEDULE_SEED)


SCHEDULE_SEED = 0
"""The seed of the order in which the stand-in's kernels run their blocks and threads."""


_SPECIAL = {
    "RawKernel": RawKernel,
    "ndarray": ndarray,
    "asarray": asarray,
    "array": array,
    "asnumpy": asnumpy,
    "get_array_module": get_array_module,
    "get_default_memory_pool": get_default_memory_pool,
    "get_default_pinned_memory_pool": get_default_pinned_memory_pool,
}


def _namespace(name: str, source: Any, names: list[str]) -> types.ModuleType:
    """A module of device functions: each CuPy name that ``source`` (NumPy) also has."""
    module = types.ModuleType(name)
    for attribute in names:
        if name == "cupy" and attribute in _SPECIAL:
            setattr(module, attribute, _SPECIAL[attribute])
            continue
        value = getattr(source, attribute, None)
        if value is None:
            continue
        if isinstance(value, type) or not callable(value):
            setattr(module, attribute, value)  # dtypes, constants, newaxis
        else:
            setattr(module, attribute, _device_function(value, attribute))
    return module


# -- cupy.cuda ------------------------------------------------------------------------------


class _Device:
    def __init__(self, device: int = 0) -> None:
        self.id = device

    def __enter__(self) -> _Device:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Device) and other.id == self.id

    def __hash__(self) -> int:
        return self.id

    def synchronize(self) -> None:
        _synchronise()

    @property
    def mem_info(self) -> tuple[int, int]:
        return FREE_BYTES, TOTAL_BYTES


class _Stream:
    null: _Stream

    def __init__(self, non_blocking: bool = False) -> None:
        self.non_blocking = non_blocking

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def use(self) -> _Stream:
        return self

    def synchronize(self) -> None:
        _synchronise()


_Stream.null = _Stream()


class _Event:
    """A CUDA event: the host time at ``record``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.time = 0.0

    def record(self, stream: Any = None) -> None:
        import time

        self.time = time.perf_counter()

    def synchronize(self) -> None:
        _synchronise()


def _elapsed_ms(start: _Event, stop: _Event) -> float:
    return 1e3 * (stop.time - start.time)


def _runtime() -> types.ModuleType:
    runtime = types.ModuleType("cupy.cuda.runtime")
    runtime.getDeviceCount = lambda: 1
    runtime.memGetInfo = lambda: (FREE_BYTES, TOTAL_BYTES)
    runtime.getDevice = lambda: 0
    runtime.deviceSynchronize = _synchronise
    runtime.getDeviceProperties = lambda device: {
        "name": b"stand-in",
        "totalGlobalMem": TOTAL_BYTES,
    }
    runtime.runtimeGetVersion = lambda: 13000
    return runtime


def _cuda() -> types.ModuleType:
    module = types.ModuleType("cupy.cuda")
    module.__path__ = []  # a package: ``from cupy.cuda.device import Device`` works
    module.device = types.ModuleType("cupy.cuda.device")
    module.device.Device = _Device
    module.Device = _Device
    module.Stream = _Stream
    module.Event = _Event
    module.get_elapsed_time = _elapsed_ms
    module.runtime = _runtime()
    module.get_current_stream = lambda device=None: _Stream.null
    module.is_available = lambda: True
    return module


cuda = _cuda()


def _cupyx() -> types.ModuleType:
    module = types.ModuleType("cupyx")
    module.empty_pinned = lambda shape, dtype=np.float64, order="C": np.empty(shape, dtype, order)
    module.zeros_pinned = lambda shape, dtype=np.float64, order="C": np.zeros(shape, dtype, order)
    module.empty_like_pinned = lambda a, dtype=None: np.empty_like(a, dtype=dtype)
    module.zeros_like_pinned = lambda a, dtype=None: np.zeros_like(a, dtype=dtype)
    return module


@functools.cache
def modules() -> dict[str, types.ModuleType]:
    """The stand-in's modules by import name (``cupy``, ``cupy.fft``, ..., ``cupyx``)."""
    cupy = _namespace("cupy", np, NAMES["cupy"])
    cupy.__path__ = []
    cupy.__version__ = "14.2.0 (stand-in)"
    cupy.__file__ = __file__
    cupy.fft = _namespace("cupy.fft", np.fft, NAMES["cupy.fft"])
    cupy.linalg = _namespace("cupy.linalg", np.linalg, NAMES["cupy.linalg"])
    cupy.cuda = cuda
    found = {
        "cupy": cupy,
        "cupy.fft": cupy.fft,
        "cupy.linalg": cupy.linalg,
        "cupy.cuda": cuda,
        "cupy.cuda.runtime": cuda.runtime,
        "cupy.cuda.device": cuda.device,
        "cupyx": _cupyx(),
    }
    unknown = [n for n in ("empty_pinned", "zeros_pinned") if n not in NAMES["cupyx"]]
    assert not unknown, unknown
    return found


def install(monkeypatch: Any) -> types.ModuleType:
    """Make ``import cupy`` give the stand-in for the rest of a test; return ``cupy``."""
    for name, module in modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    reset()
    return sys.modules["cupy"]

"""gpuptc's CUDA kernels executed on the CPU, from their exact source.

``runtime.h`` gives the CUDA built-ins the kernels use (:data:`BUILTINS`) their meaning on
the CPU: each CUDA thread is a fiber that yields at every barrier and atomic, and the order
in which a block's threads resume is drawn from a seeded generator (see the header). A
kernel source is compiled once per test run by the system's C++ compiler, after the header
and with one generated launcher per ``extern "C" __global__`` function, into a shared
library that :class:`CpuKernel` calls through ``ctypes`` with CuPy's grid, block and
argument conventions.

The second smallest finite value of a row, by the radix-selection kernel (one block of
32 threads, schedule 3):

>>> from gpuptc.kernels.cuda import SOURCE
>>> row, out = np.array([[3.0, np.nan, 1.0, 2.0]]), np.empty((1, 1))
>>> select = CpuKernel(SOURCE, "select_f64")
>>> yields = select((1,), (32,), (row, np.int64(4), np.array([[1]]), np.int32(1), out), seed=3)
>>> out
array([[2.]])
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from shared_inputs import SHARED_ENV

__all__ = ["BUILTINS", "LAUNCHED", "CpuKernel", "builtins_used", "kernels_in"]

HEADER = Path(__file__).with_name("runtime.h")

BUILTINS: tuple[str, ...] = (
    *("blockIdx", "threadIdx", "blockDim", "gridDim", "__syncthreads", "__shared__"),
    *("__global__", "__device__", "atomicAdd", "atomicExch", "__int_as_float"),
    *("__uint_as_float", "__float_as_uint", "__longlong_as_double", "__double_as_longlong"),
    *("__clzll", "isfinite", "isnan", "fabs"),
)
"""What the header defines: every CUDA built-in gpuptc's kernels use."""

_CUDA_NAMES = re.compile(
    r"\b(__\w+|atomic\w+|(?:thread|block)Idx|(?:block|grid)Dim|isfinite|isnan|isinf|fabsf?"
    r"|sqrtf?|rsqrtf?|floorf?|ceilf?|fminf?|fmaxf?|warpSize)\b"
)
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)

_SCALARS = {
    "bool": (ctypes.c_bool, np.bool_),
    "int": (ctypes.c_int, np.int32),
    "unsigned int": (ctypes.c_uint, np.uint32),
    "long long": (ctypes.c_longlong, np.int64),
    "unsigned long long": (ctypes.c_ulonglong, np.uint64),
    "float": (ctypes.c_float, np.float32),
    "double": (ctypes.c_double, np.float64),
    "unsigned char": (ctypes.c_ubyte, np.uint8),
}
"""C types of kernel parameters: the ctypes type and the NumPy dtype of their values."""

LAUNCHED: Counter[str] = Counter()
"""Launches per kernel name in this process."""

COMPILER_MISSING = (
    "gpuptc's CUDA kernels are run on the CPU by the system's C++ compiler, and there is "
    "none here: install g++ (Debian and Ubuntu: apt-get install g++; .ci/run does)."
)


def builtins_used(source: str) -> set[str]:
    """The CUDA built-ins (and math functions) a source names."""
    return set(_CUDA_NAMES.findall(_COMMENT.sub("", source)))


def kernels_in(source: str) -> dict[str, list[str]]:
    """Each ``extern "C" __global__`` function of ``source`` and its parameters' C types."""
    found = {}
    for name, parameters in _KERNEL.findall(_COMMENT.sub("", source)):
        declared = [" ".join(p.split()) for p in parameters.split(",") if p.strip()]
        found[name] = [re.sub(r"\s*\b\w+$", "", p).replace("const ", "") for p in declared]
    return found


def _launchers(source: str) -> str:
    """A C entry point per kernel: ``gpuptc_launch_NAME(grid, block, seed, args)``."""
    parts = []
    for name, types in kernels_in(source).items():
        call = ", ".join(f"*({t}*)args[{i}]" for i, t in enumerate(types))
        parts.append(
            f'extern "C" unsigned long long gpuptc_launch_{name}(const unsigned int* grid,\n'
            f"        const unsigned int* block, unsigned long long seed, void** args) {{\n"
            f"    return gpuptc_cuda_cpu::launch(grid, block, seed,\n"
            f"        [args] {{ {name}({call}); }});\n"
            f"}}\n"
        )
    return "\n".join(parts)


def _cache_folder() -> Path:
    """Where compiled kernels are kept: the test run's shared folder, else this process's."""
    shared = os.environ.get(SHARED_ENV)
    if shared:
        return Path(shared) / "cuda-cpu"
    return Path(_process_folder().name)


@functools.cache
def _process_folder() -> tempfile.TemporaryDirectory:
    """A folder removed when this process ends (the cache keeps it until then)."""
    return tempfile.TemporaryDirectory(prefix="gpuptc-cuda-cpu-")


_FLAGS = ("-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Wno-unused-function")


@functools.cache
def _library(source: str) -> ctypes.CDLL:
    """The shared library of ``source`` after the header, compiled once per test run."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        raise RuntimeError(COMPILER_MISSING)
    unit = f'#include "{HEADER}"\n#line 1 "kernel.cu"\n{source}\n#line 1 "launchers"\n'
    unit += _launchers(source)
    header = HEADER.read_bytes()
    key = hashlib.sha256(b"\0".join([header, unit.encode(), " ".join(_FLAGS).encode()]))
    folder = _cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / f"kernels-{key.hexdigest()[:16]}.so"
    with FileLock(f"{library}.lock"):
        if not library.exists():
            _compile(compiler, unit, library)
    return ctypes.CDLL(str(library))


def _compile(compiler: str, unit: str, library: Path) -> None:
    source = library.with_suffix(".cpp")
    source.write_text(unit)
    partial = library.with_suffix(".partial")
    command = [compiler, *_FLAGS, "-o", str(partial), str(source)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"the kernel source does not compile on the CPU:\n{done.stderr}")
    partial.replace(library)


@dataclass(frozen=True)
class _Argument:
    holder: Any
    keep: Any = None


def _argument(value: Any, ctype: str, what: str) -> _Argument:
    """One kernel argument as the launcher reads it: a pointer to its bytes."""
    if ctype.endswith("*"):
        element = _SCALARS[ctype[:-1].strip()][1]
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{what}: a {ctype} parameter takes a device array, not {value!r}")
        if value.dtype != element or not value.flags.c_contiguous:
            raise TypeError(f"{what}: a {ctype} parameter given a {value.dtype} array")
        return _Argument(ctypes.c_void_p(value.ctypes.data), value)
    c_type, dtype = _SCALARS[ctype]
    if not isinstance(value, np.generic) or value.dtype != dtype:
        raise TypeError(f"{what}: a {ctype} parameter given {value!r} (pass a {dtype.__name__})")
    return _Argument(c_type(value.item()))


class CpuKernel:
    """One kernel of a CUDA source, executed on the CPU: called as a ``cupy.RawKernel``.

    Parameters
    ----------
    source : str
        The CUDA C++ source.
    name : str
        An ``extern "C" __global__`` function in it.
    """

    def __init__(self, source: str, name: str) -> None:
        types = kernels_in(source)
        if name not in types:
            raise ValueError(f"kernel {name!r} is not in the source")
        self.source, self.name, self.types = source, name, types[name]
        self.function = getattr(_library(source), f"gpuptc_launch_{name}")
        self.function.restype = ctypes.c_ulonglong

    def __call__(
        self, grid: tuple[int, ...], block: tuple[int, ...], args: tuple, seed: int = 0
    ) -> int:
        """Run the kernel over ``grid`` blocks of ``block`` threads; the number of yields."""
        what = f"kernel {self.name}"
        if len(args) != len(self.types):
            raise TypeError(f"{what} takes {len(self.types)} arguments, {len(args)} given")
        held = [_argument(v, t, what) for v, t in zip(args, self.types, strict=True)]
        pointers = (ctypes.c_void_p * len(held))(
            *(ctypes.cast(ctypes.pointer(a.holder), ctypes.c_void_p) for a in held)
        )
        dims = [(ctypes.c_uint * 3)(*(*d, 1, 1)[:3]) for d in (grid, block)]
        LAUNCHED[self.name] += 1
        return int(self.function(dims[0], dims[1], ctypes.c_ulonglong(seed), pointers))

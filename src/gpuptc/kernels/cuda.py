"""Fused CUDA kernels for CuPy: the afw clipping passes and short per-row medians.

Each kernel is CUDA C++ compiled by CuPy at first use (``cupy.RawKernel``), with a NumPy
reference of the same arithmetic in :data:`REFERENCES`, the contract the tests check the
kernels against (run from this source on the CPU without a GPU, and on a GPU):

``clip_pass``
    One block per row: the count, and the float64 sums of the offsets ``x - centre`` and
    of their squares (both in the pixels' dtype, as the array-API reference computes
    them) over the good finite values with ``|x - centre| <= half``: one afw clipping
    pass in one read of the pixels.
``select``
    One block per row: exact order statistics (up to 8 ranks) of the row's finite values
    by radix selection on an order-preserving integer key, 8 bits a pass, every rank in
    the same read of the row; the quartiles of the afw clipping without a sort. A rank
    outside ``[0, count)`` of the row's finite values gives NaN.
``row_median``
    One block per row of at most 1024 values (per-row overscan medians): the row is
    sorted in shared memory (bitonic), NaN propagates, even counts give the mean of the
    two middle values.

:class:`FusedCupyKernels` uses them for single primitives (``clip_sums``,
``order_statistics``, ``median``), so the afw algorithm itself stays the reference's.
Until they have run on a GPU in this project's device check they are opt-in
(``get_backend("cupy", fused=True)`` or ``GPUPTC_CUDA=1``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from gpuptc.kernels.generic import ArrayApiKernels

__all__ = ["KERNELS", "REFERENCES", "SOURCE", "FusedCupyKernels"]

_THREADS = 256
_MEDIAN_MAX = 1024

SOURCE = r"""
template <typename T> __device__ T infinity();
template <> __device__ float infinity<float>() { return __int_as_float(0x7f800000); }
template <> __device__ double infinity<double>() {
    return __longlong_as_double(0x7ff0000000000000LL);
}
template <typename T> __device__ T quiet_nan();
template <> __device__ float quiet_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ double quiet_nan<double>() {
    return __longlong_as_double(0x7ff8000000000000LL);
}

template <typename T>
__device__ void clip_pass(const T* x, const bool* good, const T* centre, const T* half,
                          long long n, long long* count, double* total, double* squares) {
    __shared__ double s_sum[256];
    __shared__ double s_sq[256];
    __shared__ long long s_n[256];
    const long long row = blockIdx.x;
    const T* values = x + row * n;
    const bool* mask = good + row * n;
    const T c = centre[row];
    const T h = half[row];
    double sum = 0.0, sq = 0.0;
    long long kept = 0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        const T offset = values[i] - c;
        if (mask[i] && isfinite(values[i]) && fabs(offset) <= h) {
            sum += (double)offset;
            sq += (double)(offset * offset);  // squared in the pixels' dtype, as the reference
            kept += 1;
        }
    }
    s_sum[threadIdx.x] = sum;
    s_sq[threadIdx.x] = sq;
    s_n[threadIdx.x] = kept;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) {
            s_sum[threadIdx.x] += s_sum[threadIdx.x + stride];
            s_sq[threadIdx.x] += s_sq[threadIdx.x + stride];
            s_n[threadIdx.x] += s_n[threadIdx.x + stride];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        count[row] = s_n[0];
        total[row] = s_sum[0];
        squares[row] = s_sq[0];
    }
}

template <typename T>
__device__ void row_median(const T* x, long long n, T* out) {
    __shared__ T row[1024];
    __shared__ int has_nan;
    const long long r = blockIdx.x;
    int size = 1;
    while (size < n) size <<= 1;
    if (threadIdx.x == 0) has_nan = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < size; i += blockDim.x) {
        if (i < n) {
            const T v = x[r * n + i];
            if (isnan(v)) atomicExch(&has_nan, 1);
            row[i] = v;
        } else {
            row[i] = infinity<T>();
        }
    }
    __syncthreads();
    for (int k = 2; k <= size; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < size; i += blockDim.x) {
                const int partner = i ^ j;
                if (partner > i) {
                    const bool up = (i & k) == 0;
                    if ((row[i] > row[partner]) == up) {
                        const T swap = row[i];
                        row[i] = row[partner];
                        row[partner] = swap;
                    }
                }
            }
            __syncthreads();
        }
    }
    if (threadIdx.x == 0) {
        if (has_nan) {
            out[r] = quiet_nan<T>();
        } else {
            out[r] = (row[(n - 1) / 2] + row[n / 2]) / (T)2;
        }
    }
}

__device__ unsigned int order_key(float v) {
    const unsigned int u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ unsigned long long order_key(double v) {
    const unsigned long long u = (unsigned long long)__double_as_longlong(v);
    return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}
__device__ float from_key(unsigned int key) {
    return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}
__device__ double from_key(unsigned long long key) {
    const unsigned long long top = 0x8000000000000000ull;
    return __longlong_as_double((long long)((key & top) ? (key & ~top) : ~key));
}

// Exact order statistics of the finite values of each row by radix selection: for every
// wanted rank, one 8-bit digit of the order-preserving key per pass, from the top; each
// pass reads the row once for all ranks (at most 8). No sort, no host round trip. A rank
// outside [0, the row's finite values) never selects a digit: its key stays 0, the bits
// of a NaN (no finite value has it), so it gives NaN, as does every rank of an empty row.
template <typename T, typename K>
__device__ void select_ranks(const T* x, long long n, const long long* ranks, int count,
                             T* out) {
    __shared__ unsigned int histogram[8][256];
    __shared__ K prefix[8];
    __shared__ long long remaining[8];
    const long long row = blockIdx.x;
    const T* values = x + row * n;
    const int bits = 8 * sizeof(K);
    if (threadIdx.x < count) {
        prefix[threadIdx.x] = 0;
        remaining[threadIdx.x] = ranks[row * count + threadIdx.x];
    }
    for (int shift = bits - 8; shift >= 0; shift -= 8) {
        const K high = (shift + 8 >= bits) ? (K)0 : (~(K)0) << (shift + 8);
        for (int i = threadIdx.x; i < 8 * 256; i += blockDim.x) histogram[i / 256][i % 256] = 0;
        __syncthreads();
        for (long long i = threadIdx.x; i < n; i += blockDim.x) {
            const T v = values[i];
            if (!isfinite(v)) continue;
            const K key = order_key(v);
            for (int r = 0; r < count; ++r) {
                if ((key & high) == (prefix[r] & high)) {
                    atomicAdd(&histogram[r][(unsigned int)((key >> shift) & 255)], 1u);
                }
            }
        }
        __syncthreads();
        if (threadIdx.x < count) {
            const int r = threadIdx.x;
            long long below = 0;
            for (int digit = 0; digit < 256; ++digit) {
                const long long here = histogram[r][digit];
                if (below + here > remaining[r]) {
                    prefix[r] |= ((K)digit) << shift;
                    remaining[r] -= below;
                    break;
                }
                below += here;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x < count) out[row * count + threadIdx.x] = from_key(prefix[threadIdx.x]);
}

extern "C" __global__ void select_f32(const float* x, long long n, const long long* ranks,
        int count, float* out) {
    select_ranks<float, unsigned int>(x, n, ranks, count, out);
}
extern "C" __global__ void select_f64(const double* x, long long n, const long long* ranks,
        int count, double* out) {
    select_ranks<double, unsigned long long>(x, n, ranks, count, out);
}

extern "C" __global__ void clip_pass_f32(const float* x, const bool* good, const float* centre,
        const float* half, long long n, long long* count, double* total, double* squares) {
    clip_pass<float>(x, good, centre, half, n, count, total, squares);
}
extern "C" __global__ void clip_pass_f64(const double* x, const bool* good, const double* centre,
        const double* half, long long n, long long* count, double* total, double* squares) {
    clip_pass<double>(x, good, centre, half, n, count, total, squares);
}
extern "C" __global__ void row_median_f32(const float* x, long long n, float* out) {
    row_median<float>(x, n, out);
}
extern "C" __global__ void row_median_f64(const double* x, long long n, double* out) {
    row_median<double>(x, n, out);
}
"""
"""The CUDA C++ of every kernel (one translation unit)."""

KERNELS: tuple[str, ...] = (
    "clip_pass_f32",
    "clip_pass_f64",
    "row_median_f32",
    "row_median_f64",
    "select_f32",
    "select_f64",
)
_MAX_RANKS = 8


def _clip_pass_reference(
    x: np.ndarray,
    good: np.ndarray,
    centre: np.ndarray,
    half: np.ndarray,
    n: int,
    count: np.ndarray,
    total: np.ndarray,
    squares: np.ndarray,
) -> None:
    rows = x.reshape(-1, int(n))
    offset = rows - centre.reshape(-1, 1)
    kept = good.reshape(rows.shape) & np.isfinite(rows) & (np.abs(offset) <= half.reshape(-1, 1))
    values = np.where(kept, offset, offset.dtype.type(0))
    count[...] = kept.sum(axis=-1)
    total[...] = values.sum(axis=-1, dtype=np.float64)
    squares[...] = (values * values).sum(axis=-1, dtype=np.float64)


def _row_median_reference(x: np.ndarray, n: int, out: np.ndarray) -> None:
    out[...] = np.median(x.reshape(-1, int(n)), axis=-1)


def _select_reference(
    x: np.ndarray, n: int, ranks: np.ndarray, count: int, out: np.ndarray
) -> None:
    rows = x.reshape(-1, int(n))
    wanted = ranks.reshape(rows.shape[0], int(count))
    picked = out.reshape(wanted.shape)
    for row in range(rows.shape[0]):
        finite = np.sort(rows[row][np.isfinite(rows[row])])
        inside = (wanted[row] >= 0) & (wanted[row] < finite.size)
        picked[row] = np.nan
        picked[row][inside] = finite[wanted[row][inside]]


REFERENCES: dict[str, Callable[..., None]] = {
    "select_f32": _select_reference,
    "select_f64": _select_reference,
    "clip_pass_f32": _clip_pass_reference,
    "clip_pass_f64": _clip_pass_reference,
    "row_median_f32": _row_median_reference,
    "row_median_f64": _row_median_reference,
}
"""NumPy forms of the kernels: the same arguments (host arrays), outputs written in place."""


@functools.cache
def _kernel(name: str) -> Any:
    import cupy

    return cupy.RawKernel(SOURCE, name, options=("-std=c++17",))


def _suffix(dtype: Any) -> str | None:
    return {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}.get(np.dtype(dtype))


class FusedCupyKernels(ArrayApiKernels):
    """CuPy with the fused CUDA kernels where they apply (float rows), else the reference."""

    name = "cupy-fused"

    def order_statistics(self, filled: Any, counts: Any, ranks: Any) -> Any:
        """The wanted ranks of each row's finite values by radix selection (no sort)."""
        suffix = _suffix(filled.dtype)
        if suffix is None or ranks.shape[-1] > _MAX_RANKS:
            return super().order_statistics(filled, counts, ranks)
        import cupy

        n, wanted = filled.shape[-1], ranks.shape[-1]
        rows = cupy.ascontiguousarray(self.xp.reshape(filled, (-1, n)))
        flat_ranks = cupy.ascontiguousarray(self.xp.reshape(ranks, (-1, wanted)))
        out = self.xp.empty(flat_ranks.shape, dtype=filled.dtype)
        arguments = (rows, np.int64(n), flat_ranks, np.int32(wanted), out)
        _kernel(f"select_{suffix}")((rows.shape[0],), (_THREADS,), arguments)
        return self.xp.reshape(out, ranks.shape)

    def median(self, x: Any, axis: int) -> Any:
        """Per-row medians of short rows in one kernel; others by ``cupy.median``."""
        xp = self.xp
        suffix = _suffix(x.dtype)
        n = x.shape[axis]
        import cupy

        if suffix is None or n == 0 or n > _MEDIAN_MAX:
            return cupy.median(x, axis=axis)
        moved = xp.moveaxis(x, axis, -1)
        rows = cupy.ascontiguousarray(xp.reshape(moved, (-1, n)))  # the kernel reads rows
        out = xp.empty((rows.shape[0],), dtype=x.dtype)
        threads = min(_THREADS, 1 << math.ceil(math.log2(max(n, 2))))
        _kernel(f"row_median_{suffix}")((rows.shape[0],), (threads,), (rows, np.int64(n), out))
        return xp.reshape(out, moved.shape[:-1])

    def clip_sums(self, x: Any, good: Any, centre: Any, half_width: Any) -> tuple[Any, Any, Any]:
        """One afw clipping pass in one read of the pixels (the ``clip_pass`` kernel)."""
        suffix = _suffix(x.dtype)
        if suffix is None:
            return super().clip_sums(x, good, centre, half_width)
        import cupy

        xp, lead, n = self.xp, x.shape[:-1], x.shape[-1]
        rows = cupy.ascontiguousarray(xp.reshape(x, (-1, n)))  # the kernel reads rows
        mask = cupy.ascontiguousarray(xp.reshape(good, (-1, n)))
        count = xp.empty((rows.shape[0],), dtype=xp.int64)
        total = xp.empty((rows.shape[0],), dtype=xp.float64)
        squares = xp.empty((rows.shape[0],), dtype=xp.float64)
        centre_x = xp.reshape(xp.astype(centre, x.dtype), (-1,))
        half_x = xp.reshape(xp.astype(half_width, x.dtype), (-1,))
        arguments = (rows, mask, centre_x, half_x, np.int64(n), count, total, squares)
        _kernel(f"clip_pass_{suffix}")((rows.shape[0],), (_THREADS,), arguments)
        return tuple(xp.reshape(a, lead) for a in (count, total, squares))

"""RICE_1 tiles decoded on the GPU: only the compressed bytes cross the bus.

The host reads each file's tile bytes (its heaps, ~19 MB for a full-size raw instead of
75 MB of pixels) and their descriptors (:func:`file_tiles`); :func:`pack` lays the tiles of
a batch of files end to end with, for each tile, where its pixels go in the batch buffer;
:func:`decode_on_device` copies that to the device and runs one CUDA thread per tile
(``rice_decode_f32``: the bit stream of :mod:`gpuptc.raws.rice`, every byte read checked
against the tile's own length), writing float32 pixels scaled by BSCALE/BZERO straight
into the device batch buffer. :data:`REFERENCES` holds the kernel's NumPy form (the CPU
decoder, tile by tile, with the same arguments), which the tests check the kernel against.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpuptc.raws.rice import _BIT_LENGTH, TILE_ERRORS, RiceError, RiceLayout, _decode_tile

__all__ = [
    "KERNEL",
    "REFERENCES",
    "SOURCE",
    "FileTiles",
    "PackedTiles",
    "decode_on_device",
    "file_tiles",
    "pack",
]

KERNEL = "rice_decode_f32"
_THREADS = 128

SOURCE = r"""
extern "C" __global__ void rice_decode_f32(
    const unsigned char* bytes, const long long* starts, const long long* sizes,
    const long long* out_starts, const int* rows, const int* cols, const int* strides,
    const int* codes, const double* scales, const double* zeros,
    float* out, int* status, const int ntiles)
{
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= ntiles) return;
    const int blocksize = codes[t] >> 8;
    const int bytepix = codes[t] & 0xff;
    const int fsbits = bytepix == 1 ? 3 : (bytepix == 2 ? 4 : 5);
    const int fsmax = bytepix == 1 ? 6 : (bytepix == 2 ? 14 : 25);
    const int bbits = 8 * bytepix;
    const unsigned long long width = bbits == 64 ? ~0ull : ((1ull << bbits) - 1ull);
    const long long half = 1ll << (bbits - 1);
    const long long n = (long long)rows[t] * cols[t];
    const int ncols = cols[t];
    const long long base = out_starts[t];
    const int stride = strides[t];
    const double scale = scales[t], zero = zeros[t];
    long long c = starts[t];
    const long long stop = c + sizes[t];
    if (c + bytepix > stop) { status[t] = 1; return; }
    unsigned long long last = 0;
    for (int k = 0; k < bytepix; ++k) last = (last << 8) | bytes[c++];
    if (n == 0) { status[t] = 0; return; }
    if (c >= stop) { status[t] = 1; return; }
    unsigned long long b = bytes[c++];
    int nbits = 8;
    long long i = 0;
    while (i < n) {
        const long long end = i + blocksize < n ? i + blocksize : n;
        nbits -= fsbits;
        while (nbits < 0) {
            if (c >= stop) { status[t] = 1; return; }
            b = (b << 8) | bytes[c++];
            nbits += 8;
        }
        const int fs = (int)(b >> nbits) - 1;
        b &= (1ull << nbits) - 1ull;
        if (fs > fsmax) { status[t] = 2; return; }
        for (long long k = i; k < end; ++k) {
            unsigned long long diff;
            if (fs < 0) {
                diff = 0;
            } else if (fs == fsmax) {
                diff = b << (bbits - nbits);
                int shift = bbits - nbits - 8;
                for (; shift >= 0; shift -= 8) {
                    if (c >= stop) { status[t] = 1; return; }
                    diff |= (unsigned long long)bytes[c++] << shift;
                }
                if (nbits > 0) {
                    if (c >= stop) { status[t] = 1; return; }
                    b = bytes[c++];
                    diff |= b >> (-shift);
                    b &= (1ull << nbits) - 1ull;
                } else {
                    b = 0;
                }
            } else {
                while (b == 0) {
                    if (c >= stop) { status[t] = 1; return; }
                    nbits += 8;
                    b = bytes[c++];
                }
                const int nzero = nbits - (64 - __clzll((long long)b));
                nbits -= nzero + 1;
                b ^= 1ull << nbits;
                nbits -= fs;
                while (nbits < 0) {
                    if (c >= stop) { status[t] = 1; return; }
                    b = (b << 8) | bytes[c++];
                    nbits += 8;
                }
                diff = ((unsigned long long)nzero << fs) | (b >> nbits);
                b &= (1ull << nbits) - 1ull;
            }
            if (fs >= 0) {
                diff &= width;
                diff = (diff & 1ull) == 0 ? (diff >> 1) : ((~(diff >> 1)) & width);
                last = (diff + last) & width;
            }
            long long value = (long long)last;
            if (bytepix > 1 && value >= half) value -= 2 * half;
            out[base + (k / ncols) * stride + k % ncols] = (float)(value * scale + zero);
        }
        i = end;
    }
    status[t] = 0;
}
"""


@dataclass(frozen=True)
class FileTiles:
    """One file's compressed tiles, read from disk, and where their pixels go.

    Attributes
    ----------
    path : str
        The file.
    data : numpy.ndarray of uint8
        Its heaps' bytes (from the first tile's first byte to the last tile's last).
    starts, sizes : numpy.ndarray of int64
        Each tile's first byte in ``data`` and its length.
    out_starts : numpy.ndarray of int64
        Each tile's first pixel in the file's ``(amps, ny, nx)`` stack (flat index).
    rows, cols, strides, codes : numpy.ndarray of int32
        Each tile's rows and columns, the stack's row length, ``blocksize << 8 | bytepix``.
    scales, zeros : numpy.ndarray of float64
        BSCALE and BZERO of each tile's segment.
    segments : numpy.ndarray of int32
        Each tile's amplifier (0-based), for errors.
    """

    path: str
    data: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray
    out_starts: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    strides: np.ndarray
    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    segments: np.ndarray


def _placement(layout: RiceLayout, amp: int) -> dict[str, np.ndarray]:
    ny, nx = layout.shape
    tile_rows, tile_cols = layout.tile
    across = -(-nx // tile_cols)
    t = np.arange(layout.ntiles)
    row0, col0 = (t // across) * tile_rows, (t % across) * tile_cols
    n = layout.ntiles
    return {
        "out_starts": amp * ny * nx + row0 * nx + col0,
        "rows": np.minimum(tile_rows, ny - row0).astype(np.int32),
        "cols": np.minimum(tile_cols, nx - col0).astype(np.int32),
        "strides": np.full(n, nx, np.int32),
        "codes": np.full(n, (layout.blocksize << 8) | layout.bytepix, np.int32),
        "scales": np.full(n, layout.bscale),
        "zeros": np.full(n, layout.bzero),
        "segments": np.full(n, amp, np.int32),
    }


def file_tiles(path: str | os.PathLike[str], layouts: Sequence[RiceLayout]) -> FileTiles:
    """Read one file's compressed tiles (only their bytes) for the segments ``layouts``.

    Parameters
    ----------
    path : path-like
        The raw file.
    layouts : sequence of RiceLayout
        Its segments in amplifier order (:func:`gpuptc.raws.rice.rice_layout`).

    Returns
    -------
    FileTiles
    """
    offsets = np.concatenate([layout.offsets for layout in layouts])
    sizes = np.concatenate([layout.sizes for layout in layouts])
    first = int(offsets.min())
    count = int((offsets + sizes).max()) - first
    data = np.fromfile(path, dtype=np.uint8, count=count, offset=first)
    if len(data) != count:
        raise RiceError(f"{os.fspath(path)}: the heap ends before its last tile")
    parts = [_placement(layout, amp) for amp, layout in enumerate(layouts)]
    joined = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return FileTiles(os.fspath(path), data, offsets - first, sizes, **joined)


@dataclass(frozen=True)
class PackedTiles:
    """The tiles of several files end to end: the kernel's arguments on the host."""

    data: np.ndarray
    arrays: dict[str, np.ndarray]
    files: list[FileTiles]
    first_tile: np.ndarray
    """Index of each file's first tile."""


_ARRAY_ORDER = ("starts", "sizes", "out_starts", "rows", "cols", "strides", "codes")


def pack(
    files: Sequence[FileTiles],
    stack_starts: Sequence[int],
    allocate: Callable[[int], np.ndarray] | None = None,
) -> PackedTiles:
    """Lay the tiles of ``files`` end to end, as the kernel's arguments.

    Parameters
    ----------
    files : sequence of FileTiles
        The files of a batch.
    stack_starts : sequence of int
        Each file's first pixel in the batch buffer (flat index).
    allocate : callable, optional
        ``allocate(nbytes)``: the host byte buffer (pinned memory on a GPU); default NumPy.

    Returns
    -------
    PackedTiles
    """
    total = sum(len(f.data) for f in files)
    data = allocate(total) if allocate else np.empty(total, np.uint8)
    byte_starts = np.cumsum([0, *(len(f.data) for f in files)])
    for f, start in zip(files, byte_starts, strict=False):
        data[start : start + len(f.data)] = f.data
    arrays = {
        "starts": np.concatenate([f.starts + s for f, s in zip(files, byte_starts, strict=False)]),
        "out_starts": np.concatenate(
            [f.out_starts + int(s) for f, s in zip(files, stack_starts, strict=True)]
        ),
    }
    for key in ("sizes", "rows", "cols", "strides", "codes", "scales", "zeros"):
        arrays[key] = np.concatenate([getattr(f, key) for f in files])
    first_tile = np.cumsum([0, *(len(f.starts) for f in files)])[:-1]
    return PackedTiles(data[:total], arrays, list(files), first_tile)


def _failure(packed: PackedTiles, status: np.ndarray) -> str | None:
    bad = np.flatnonzero(status)
    if not len(bad):
        return None
    tile = int(bad[0])
    k = int(np.searchsorted(packed.first_tile, tile, side="right") - 1)
    f = packed.files[k]
    index = tile - int(packed.first_tile[k])
    segment = int(f.segments[index])
    within = index - int(np.searchsorted(f.segments, segment))
    return f"{f.path}: HDU {segment + 1}, tile {within}: {TILE_ERRORS[int(status[tile])]}"


def decode_on_device(xp: Any, packed: PackedTiles, out: Any) -> None:
    """Copy the packed tiles to the device and decode them into ``out`` (float32).

    Parameters
    ----------
    xp : module
        CuPy.
    packed : PackedTiles
        From :func:`pack`.
    out : cupy.ndarray of float32
        The device batch buffer the tiles' ``out_starts`` index (flat).

    Raises
    ------
    RiceError
        If a tile is corrupt or truncated, naming the file, segment and tile.
    """
    device = {key: xp.asarray(value) for key, value in packed.arrays.items()}
    data = xp.asarray(packed.data)
    ntiles = len(packed.arrays["starts"])
    status = xp.zeros(ntiles, dtype=xp.int32)
    kernel = _kernel(xp)
    arguments = (
        data,
        *(device[key] for key in _ARRAY_ORDER),
        device["scales"],
        device["zeros"],
        out.reshape(-1),
        status,
        np.int32(ntiles),
    )
    kernel(((ntiles + _THREADS - 1) // _THREADS,), (_THREADS,), arguments)
    failure = _failure(packed, xp.asnumpy(status))
    if failure is not None:
        raise RiceError(failure)


def _kernel(xp: Any) -> Any:
    cached = _KERNELS.get(id(xp))
    if cached is None:
        cached = _KERNELS[id(xp)] = xp.RawKernel(SOURCE, KERNEL)
    return cached


_KERNELS: dict[int, Any] = {}


def _reference(
    data: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
    out_starts: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    strides: np.ndarray,
    codes: np.ndarray,
    scales: np.ndarray,
    zeros: np.ndarray,
    out: np.ndarray,
    status: np.ndarray,
    ntiles: int,
) -> None:
    """The kernel on the CPU: each tile by :mod:`gpuptc.raws.rice`'s decoder, same arguments."""
    pixels = np.empty(int((rows.astype(np.int64) * cols).max(initial=0)), np.int64)
    for t in range(int(ntiles)):
        n = int(rows[t]) * int(cols[t])
        start = int(starts[t])
        blocksize, bytepix = int(codes[t]) >> 8, int(codes[t]) & 0xFF
        status[t] = _decode_tile(
            data, start, start + int(sizes[t]), pixels[:n], blocksize, bytepix, _BIT_LENGTH
        )
        if status[t]:
            continue
        values = pixels[:n].copy()
        if bytepix > 1:
            half = 1 << (8 * bytepix - 1)
            values[values >= half] -= 2 * half
        k = np.arange(n)
        where = int(out_starts[t]) + (k // int(cols[t])) * int(strides[t]) + k % int(cols[t])
        out[where] = (values * float(scales[t]) + float(zeros[t])).astype(np.float32)


REFERENCES: dict[str, Callable[..., None]] = {KERNEL: _reference}
"""The kernel's NumPy form: the same arguments (host arrays), outputs written in place."""

"""RICE_1 tile-compressed images decoded by gpuptc itself, straight into float32 buffers.

A tile-compressed image extension (the FITS tiled-image convention) is a binary table with
one row per tile: each row's ``COMPRESSED_DATA`` descriptor (count, offset) points at the
tile's bytes in the table's heap. :func:`rice_layout` reads those descriptors from the file
and checks that the extension is one this decoder handles (integer data, RICE_1, no
quantisation, no tiles stored another way); :func:`decode_tiles` decodes a range of tiles
with a numba kernel that releases the GIL, so threads decode tiles in parallel, and writes
the pixels, scaled by BSCALE and BZERO, into the caller's float32 array. Every byte read is
checked against the tile's own length: a corrupt or truncated tile is an error naming its
tile, never a read out of bounds.

The bit stream (as cfitsio writes it): the tile's first pixel as a BYTEPIX-byte big-endian
integer, then blocks of BLOCKSIZE pixels, each a code of 3, 4 or 5 bits (BYTEPIX 1, 2, 4)
giving ``fs + 1``: 0 means every difference of the block is zero; the largest code means
each difference follows as 8, 16 or 32 raw bits; otherwise each difference is ``top``
zero bits, a one, and its ``fs`` low bits. Differences are zigzag-mapped
(0, -1, 1, -2, ... as 0, 1, 2, 3, ...) and add to the previous pixel, wrapping at the pixel
width.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpuptc.errors import GpuptcError
from gpuptc.kernels import numba_cpu

__all__ = [
    "TILE_ERRORS",
    "RiceError",
    "RiceLayout",
    "decode_tiles",
    "rice_layout",
    "unsupported_reason",
]


class RiceError(GpuptcError, ValueError):
    """A tile-compressed extension cannot be decoded: the message says where and why."""


_FIELD_BYTES = {"L": 1, "B": 1, "A": 1, "I": 2, "J": 4, "K": 8, "E": 4, "D": 8, "C": 8, "M": 16}
_DESCRIPTOR_BYTES = {"P": 8, "Q": 16}
_TFORM = re.compile(r"^\s*(\d*)([A-Z])")

TILE_ERRORS = {
    1: "its bytes end before its pixels do (truncated or corrupt)",
    2: "a block code is out of range (corrupt)",
    3: "it lies outside the heap",
}
"""What a tile's non-zero status from :func:`decode_tiles` means."""

_CODES = {1: (3, 6), 2: (4, 14), 4: (5, 25)}
"""BYTEPIX -> (bits of a block's code, the code of a block stored as raw bits)."""


@dataclass(frozen=True)
class RiceLayout:
    """Where a RICE_1 extension's tiles are in its file, and how to place their pixels.

    Attributes
    ----------
    offsets, sizes : numpy.ndarray of int64
        Each tile's first byte in the file and its length in bytes.
    shape : (int, int)
        The image's ``(ZNAXIS2, ZNAXIS1)``.
    tile : (int, int)
        ``(ZTILE2, ZTILE1)``: rows and columns of a tile (edge tiles are clipped).
    blocksize, bytepix : int
        Pixels per block, bytes per pixel of the compressed integers.
    bscale, bzero : float
        Physical value = stored * bscale + bzero.
    """

    offsets: np.ndarray
    sizes: np.ndarray
    shape: tuple[int, int]
    tile: tuple[int, int]
    blocksize: int
    bytepix: int
    bscale: float
    bzero: float

    @property
    def ntiles(self) -> int:
        """Number of tiles."""
        return len(self.offsets)


def _parameters(header: Mapping[str, Any]) -> dict[str, Any]:
    """The ZNAMEn/ZVALn pairs of the compression, upper-case names."""
    found = {}
    for k in range(1, 100):
        name = header.get(f"ZNAME{k}")
        if name is None:
            break
        found[str(name).strip().upper()] = header.get(f"ZVAL{k}")
    return found


def _columns(header: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    """Each column's (byte offset in a row, TFORM), by upper-case TTYPE."""
    columns, offset = {}, 0
    for k in range(1, int(header.get("TFIELDS", 0)) + 1):
        form = str(header.get(f"TFORM{k}", "")).strip().upper()
        name = str(header.get(f"TTYPE{k}", "")).strip().upper()
        matched = _TFORM.match(form)
        if matched is None:
            raise RiceError(f"column {name}: TFORM {form!r} not understood")
        repeat = int(matched[1] or 1)
        code = matched[2]
        if code in _DESCRIPTOR_BYTES:
            size = _DESCRIPTOR_BYTES[code]
        elif code == "X":
            size = (repeat + 7) // 8
            repeat = 1
        elif code in _FIELD_BYTES:
            size = _FIELD_BYTES[code]
        else:
            raise RiceError(f"column {name}: TFORM {form!r} not understood")
        columns[name] = (offset, form)
        offset += repeat * size
    return columns


def unsupported_reason(header: Mapping[str, Any]) -> str | None:
    """Why gpuptc's decoder does not handle this extension, or None when it does.

    Parameters
    ----------
    header : mapping
        The extension's header as stored (the binary table's, with ZIMAGE).
    """
    if not header.get("ZIMAGE"):
        return "not a tile-compressed image"
    if numba_cpu.numba is None:
        return numba_cpu.UNAVAILABLE
    kind = str(header.get("ZCMPTYPE", "")).strip().upper()
    if kind != "RICE_1":
        return f"compression {kind or '(none)'} (only RICE_1 is decoded natively)"
    if int(header.get("ZBITPIX", 0)) not in (8, 16, 32):
        return f"ZBITPIX {header.get('ZBITPIX')} (quantised floats are left to cfitsio)"
    if int(header.get("ZNAXIS", 0)) != 2:
        return f"ZNAXIS {header.get('ZNAXIS')} (images of two axes only)"
    parameters = _parameters(header)
    if int(parameters.get("BYTEPIX", 4)) not in _CODES:
        return f"BYTEPIX {parameters.get('BYTEPIX')}"
    if int(parameters.get("BLOCKSIZE", 32)) <= 0:
        return f"BLOCKSIZE {parameters.get('BLOCKSIZE')}"
    try:
        columns = _columns(header)
    except RiceError as exc:
        return str(exc)
    if "COMPRESSED_DATA" not in columns:
        return "no COMPRESSED_DATA column"
    others = set(columns) & {"GZIP_COMPRESSED_DATA", "UNCOMPRESSED_DATA", "ZSCALE", "ZZERO"}
    if others:
        return f"tiles stored with {', '.join(sorted(others))}"
    return None


def rice_layout(
    path: str | os.PathLike[str], header: Mapping[str, Any], data_start: int
) -> RiceLayout:
    """Read a RICE_1 extension's tile descriptors from its file.

    Parameters
    ----------
    path : path-like
        The FITS file.
    header : mapping
        The extension's header as stored.
    data_start : int
        Byte offset of the extension's data (its table) in the file.

    Returns
    -------
    RiceLayout

    Raises
    ------
    RiceError
        If the extension is not one this decoder handles (:func:`unsupported_reason`), or
        its table or heap runs past the end of the file.
    """
    reason = unsupported_reason(header)
    if reason is not None:
        raise RiceError(reason)
    row_bytes, rows = int(header["NAXIS1"]), int(header["NAXIS2"])
    column, form = _columns(header)["COMPRESSED_DATA"]
    heap = data_start + int(header.get("THEAP", row_bytes * rows))
    size = os.path.getsize(path)
    if data_start + row_bytes * rows > size:
        raise RiceError(
            f"its table ends {data_start + row_bytes * rows - size} bytes past the file"
        )
    wide = _TFORM.match(form)[2] == "Q"  # type: ignore[index]
    table = np.fromfile(path, dtype=np.uint8, count=row_bytes * rows, offset=data_start)
    fields = table.reshape(rows, row_bytes)[:, column : column + (16 if wide else 8)]
    pairs = np.ascontiguousarray(fields).view(">i8" if wide else ">i4").astype(np.int64)
    sizes, offsets = pairs[:, 0], pairs[:, 1] + heap
    if np.any(sizes < 0) or np.any(offsets < heap) or np.any(offsets + sizes > size):
        bad = int(np.flatnonzero((sizes < 0) | (offsets < heap) | (offsets + sizes > size))[0])
        raise RiceError(f"tile {bad}: its bytes lie outside the heap (truncated file?)")
    parameters = _parameters(header)
    bitpix = int(header["ZBITPIX"])
    shape = (int(header["ZNAXIS2"]), int(header["ZNAXIS1"]))
    tile = (int(header.get("ZTILE2", 1)), int(header.get("ZTILE1", shape[1])))
    expected = -(-shape[0] // tile[0]) * -(-shape[1] // tile[1])
    if rows != expected:
        raise RiceError(
            f"{rows} tiles for a {shape[1]} x {shape[0]} image in {tile[1]} x {tile[0]} tiles"
        )
    return RiceLayout(
        offsets=offsets,
        sizes=sizes,
        shape=shape,
        tile=tile,
        blocksize=int(parameters.get("BLOCKSIZE", 32)),
        bytepix=int(parameters.get("BYTEPIX", max(1, bitpix // 8))),
        bscale=float(header.get("BSCALE", 1.0)),
        bzero=float(header.get("BZERO", 0.0)),
    )


_BIT_LENGTH = np.array([int(v).bit_length() for v in range(256)], dtype=np.int64)


@numba_cpu.compiled(nogil=True)
def _unzigzag(diff: int, width_mask: int) -> int:
    """The difference a zigzag code stands for (0, 1, 2, 3, ... as 0, -1, 1, -2, ...), wrapped."""
    return (diff >> 1) if (diff & 1) == 0 else (~(diff >> 1)) & width_mask


@numba_cpu.compiled(nogil=True)
def _block_code(
    data: np.ndarray, c: int, stop: int, b: int, nbits: int, fsbits: int
) -> tuple[int, int, int, int]:
    """A block's ``fsbits``-bit code less one: ``(fs, c, b, nbits)``; ``c`` -1 if bytes end.

    ``c`` is the next byte to read, ``b`` the ``nbits`` bits read but not yet used.
    """
    nbits -= fsbits
    while nbits < 0:
        if c >= stop:
            return 0, -1, b, nbits
        b = (b << 8) | np.int64(data[c])
        c += 1
        nbits += 8
    fs = (b >> nbits) - 1
    b &= (1 << nbits) - 1
    return fs, c, b, nbits


@numba_cpu.compiled(nogil=True)
def _raw_block(
    data: np.ndarray,
    c: int,
    stop: int,
    b: int,
    nbits: int,
    bbits: int,
    last: int,
    pixels: np.ndarray,
    i: int,
    end: int,
) -> tuple[int, int, int]:
    """Pixels ``[i, end)`` from differences stored as raw ``bbits``-bit integers.

    Returns ``(c, b, last)`` (``nbits`` is unchanged); ``c`` is -1 if the bytes end first.
    """
    width_mask = (np.int64(1) << bbits) - 1
    for k in range(i, end):
        diff = b << (bbits - nbits)
        shift = bbits - nbits - 8
        while shift >= 0:
            if c >= stop:
                return -1, b, last
            diff |= np.int64(data[c]) << shift
            c += 1
            shift -= 8
        if nbits > 0:
            if c >= stop:
                return -1, b, last
            b = np.int64(data[c])
            c += 1
            diff |= b >> (-shift)
            b &= (1 << nbits) - 1
        else:
            b = 0
        last = (_unzigzag(diff & width_mask, width_mask) + last) & width_mask
        pixels[k] = last
    return c, b, last


@numba_cpu.compiled(nogil=True)
def _rice_block(
    data: np.ndarray,
    c: int,
    stop: int,
    b: int,
    nbits: int,
    fs: int,
    width_mask: int,
    last: int,
    pixels: np.ndarray,
    i: int,
    end: int,
    bit_length: np.ndarray,
) -> tuple[int, int, int, int]:
    """Pixels ``[i, end)`` from Rice codes: zero bits, a one, then ``fs`` low bits.

    Returns ``(c, b, nbits, last)``; ``c`` is -1 if the bytes end first.
    """
    for k in range(i, end):
        while b == 0:
            if c >= stop:
                return -1, b, nbits, last
            nbits += 8
            b = np.int64(data[c])
            c += 1
        nzero = nbits - bit_length[b]
        nbits -= nzero + 1
        b ^= 1 << nbits
        nbits -= fs
        while nbits < 0:
            if c >= stop:
                return -1, b, nbits, last
            b = (b << 8) | np.int64(data[c])
            c += 1
            nbits += 8
        diff = ((nzero << fs) | (b >> nbits)) & width_mask
        b &= (1 << nbits) - 1
        last = (_unzigzag(diff, width_mask) + last) & width_mask
        pixels[k] = last
    return c, b, nbits, last


@numba_cpu.compiled(nogil=True)
def _decode_tile(
    data: np.ndarray,
    start: int,
    stop: int,
    pixels: np.ndarray,
    blocksize: int,
    bytepix: int,
    bit_length: np.ndarray,
) -> int:
    """Decode one tile's bytes ``data[start:stop]`` into ``pixels`` (int64). 0, or an error."""
    fsbits, fsmax = (3, 6) if bytepix == 1 else ((4, 14) if bytepix == 2 else (5, 25))
    bbits = 8 * bytepix
    width_mask = (1 << bbits) - 1
    n = pixels.shape[0]
    c = start
    if c + bytepix > stop:
        return 1
    last = 0
    for _ in range(bytepix):
        last = (last << 8) | np.int64(data[c])
        c += 1
    if c >= stop:
        return 1 if n > 0 else 0
    b = np.int64(data[c])
    c += 1
    nbits = 8
    i = 0
    while i < n:
        end = min(i + blocksize, n)
        fs, c, b, nbits = _block_code(data, c, stop, b, nbits, fsbits)
        if c < 0:
            return 1
        if fs < 0:
            for k in range(i, end):
                pixels[k] = last
        elif fs == fsmax:
            c, b, last = _raw_block(data, c, stop, b, nbits, bbits, last, pixels, i, end)
        elif fs > fsmax:
            return 2
        else:
            c, b, nbits, last = _rice_block(
                data, c, stop, b, nbits, fs, width_mask, last, pixels, i, end, bit_length
            )
        if c < 0:
            return 1
        i = end
    return 0


@numba_cpu.compiled(nogil=True)
def _decode_range(
    data: np.ndarray,
    offsets: np.ndarray,
    sizes: np.ndarray,
    first: int,
    last: int,
    out: np.ndarray,
    tile_rows: int,
    tile_cols: int,
    blocksize: int,
    bytepix: int,
    bscale: float,
    bzero: float,
    status: np.ndarray,
    bit_length: np.ndarray,
) -> None:
    ny, nx = out.shape
    across = (nx + tile_cols - 1) // tile_cols
    signed = bytepix > 1  # 8-bit FITS integers are unsigned
    half = np.int64(1) << (8 * bytepix - 1)
    full = np.int64(1) << (8 * bytepix)
    pixels = np.empty(tile_rows * tile_cols, dtype=np.int64)
    for t in range(first, last):
        row0 = (t // across) * tile_rows
        col0 = (t % across) * tile_cols
        rows = min(tile_rows, ny - row0)
        cols = min(tile_cols, nx - col0)
        count = rows * cols
        start = offsets[t]
        if start < 0 or start + sizes[t] > data.shape[0]:
            status[t] = 3
            continue
        status[t] = _decode_tile(
            data, start, start + sizes[t], pixels[:count], blocksize, bytepix, bit_length
        )
        if status[t] != 0:
            continue
        for k in range(count):
            value = pixels[k]
            if signed and value >= half:
                value -= full
            out[row0 + k // cols, col0 + k % cols] = value * bscale + bzero


def decode_tiles(
    data: np.ndarray,
    layout: RiceLayout,
    out: np.ndarray,
    tiles: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode tiles ``[first, last)`` of one extension into ``out``; the GIL is released.

    Parameters
    ----------
    data : numpy.ndarray of uint8
        The file's bytes (a memory map), which ``layout.offsets`` index.
    layout : RiceLayout
        The extension's tiles.
    out : numpy.ndarray of float32
        ``layout.shape``, written in place.
    tiles : (int, int), optional
        The range of tiles; default all.

    Returns
    -------
    numpy.ndarray of int32
        Each tile's status: 0 decoded, else a key of :data:`TILE_ERRORS`.
    """
    first, last = tiles or (0, layout.ntiles)
    status = np.zeros(layout.ntiles, dtype=np.int32)
    _decode_range(
        data,
        layout.offsets,
        layout.sizes,
        first,
        last,
        out,
        layout.tile[0],
        layout.tile[1],
        layout.blocksize,
        layout.bytepix,
        layout.bscale,
        layout.bzero,
        status,
        _BIT_LENGTH,
    )
    return status[first:last]

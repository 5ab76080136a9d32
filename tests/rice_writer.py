"""A plain RICE_1 encoder written from the bit-stream description, for tests.

It writes what cfitsio and astropy do not (BLOCKSIZE 16, BYTEPIX 1 and 2 for 32-bit
images, blocks forced into the raw-bits code), so that every block type of gpuptc's
decoders is exercised; cfitsio reads its files (``tests/test_rice.py``).
"""

import numpy as np
from astropy.io import fits

_CODES = {1: (3, 6), 2: (4, 14), 4: (5, 25)}


def _bits(value, count):
    return format(value, f"0{count}b") if count else ""


def rice_encode(values, blocksize=32, bytepix=4, mode=None):
    """One tile's bytes. ``mode`` forces ``"raw"`` (each difference as raw bits) or picks
    cfitsio's choice of code per block (None)."""
    fsbits, fsmax = _CODES[bytepix]
    width = 8 * bytepix
    mask = (1 << width) - 1
    values = [int(v) & mask for v in values]
    stream = [_bits(values[0], width)]
    last = values[0]
    for start in range(0, len(values), blocksize):
        block = values[start : start + blocksize]
        mapped = []
        for value in block:
            diff = (value - last) & mask
            diff = diff - (1 << width) if diff >> (width - 1) else diff
            mapped.append(2 * diff if diff >= 0 else -2 * diff - 1)
            last = value
        total = sum(mapped)
        average = max(0, (total - len(block) // 2 - 1) // len(block)) >> 1
        fs = average.bit_length()
        if mode == "raw" or fs >= fsmax:
            stream.append(_bits(fsmax + 1, fsbits))
            stream.extend(_bits(m, width) for m in mapped)
        elif fs == 0 and total == 0:
            stream.append(_bits(0, fsbits))
        else:
            stream.append(_bits(fs + 1, fsbits))
            for m in mapped:
                stream.append("0" * (m >> fs) + "1" + _bits(m & ((1 << fs) - 1), fs))
    text = "".join(stream)
    text += "0" * (-len(text) % 8)
    return bytes(int(text[k : k + 8], 2) for k in range(0, len(text), 8))


def write_rice(path, image, *, blocksize=32, bytepix=4, zbitpix=32, mode=None, tile_rows=1):
    """A tile-compressed extension written by hand (one tile per ``tile_rows`` rows)."""
    ny, nx = image.shape
    tiles = [
        np.frombuffer(
            rice_encode(image[r : r + tile_rows].ravel(), blocksize, bytepix, mode), np.uint8
        )
        for r in range(0, ny, tile_rows)
    ]
    column = fits.Column(name="COMPRESSED_DATA", format="1PB()", array=tiles)
    table = fits.BinTableHDU.from_columns([column])
    header = table.header
    header["ZIMAGE"] = True
    header["ZBITPIX"] = zbitpix
    header["ZNAXIS"] = 2
    header["ZNAXIS1"] = nx
    header["ZNAXIS2"] = ny
    header["ZTILE1"] = nx
    header["ZTILE2"] = tile_rows
    header["ZCMPTYPE"] = "RICE_1"
    header["ZNAME1"], header["ZVAL1"] = "BLOCKSIZE", blocksize
    header["ZNAME2"], header["ZVAL2"] = "BYTEPIX", bytepix
    header["EXTNAME"] = "Segment10"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    return path

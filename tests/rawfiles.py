"""Changing the pixels of simulated raw files in place, for tests that damage them."""

from __future__ import annotations

import fitsio
import numpy as np

from gpuptc.formats.writer import write_raw
from gpuptc.raws.exposure import read_raw


def rewrite(path, change) -> None:
    """Read a raw file, ``change(pixels)`` in place, write it back in the same layout.

    Pixels stay int32 unless the change leaves non-finite values (then float32).
    """
    with fitsio.FITS(str(path)) as f:
        primary = {
            k: f[0].read_header()[k]
            for k in f[0].read_header().keys()
            if k not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND")
        }
        headers = [
            {k: f[i].read_header()[k] for k in ("EXTNAME", "CHANNEL", "DATASEC", "DETSEC")}
            for i in range(1, 17)
        ]
    pixels = read_raw(path).pixels.astype(np.float64)
    change(pixels)
    finite = np.isfinite(pixels).all()
    write_raw(path, np.round(pixels).astype(np.int32) if finite else pixels, primary, headers)

"""Changing simulated raw files in place (pixels, primary headers), for tests that damage
them, and listing what a run wrote."""

from __future__ import annotations

import os
from collections.abc import Iterable

import fitsio
import numpy as np
from astropy.io import fits

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


def set_primary(paths: Iterable[os.PathLike], **values: object) -> None:
    """Set primary-header keys of each raw file in place (e.g. ``LSST_NUM``)."""
    for path in paths:
        with fits.open(path, mode="update") as hdus:
            hdus[0].header.update(values)


def files_under(folder: os.PathLike) -> set[str]:
    """Every file below ``folder``, as paths."""
    return {os.path.join(root, name) for root, _, names in os.walk(folder) for name in names}

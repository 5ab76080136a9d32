"""EOTEST results files: ``<sensor>_eotest_results.fits`` with an AMPLIFIER_RESULTS table.

EOTEST writes an empty primary header (no LSST_NUM) and one float32 row per amplifier.
Files gpuptc writes carry ``ORIGIN = 'gpuptc'`` so they are never taken back as
references.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from gpuptc.io.writer import atomic_path

__all__ = [
    "AMPLIFIER_RESULTS",
    "EOTEST_UNITS",
    "read_eotest_results",
    "sensor_from_eotest_name",
    "write_eotest_results",
]

AMPLIFIER_RESULTS = "AMPLIFIER_RESULTS"

EOTEST_UNITS: dict[str, str] = {
    "AMP": "None",
    "GAIN": "Ne/DN",
    "GAIN_ERROR": "Ne/DN",
    "READ_NOISE": "rms e-/pixel",
    "FULL_WELL": "e-/pixel",
}


def sensor_from_eotest_name(path: str | os.PathLike[str]) -> str | None:
    """Sensor id from a file name such as ``E2V-CCD250-266_eotest_results.fits``."""
    name = Path(path).name
    marker = "_eotest_results"
    return name.split(marker)[0] or None if marker in name else None


def write_eotest_results(
    path: str | os.PathLike[str],
    columns: Mapping[str, np.ndarray],
    *,
    primary: Mapping[str, str | int | float] | None = None,
) -> Path:
    """Write an EOTEST-style results file, atomically.

    Parameters
    ----------
    path : path-like
        Destination.
    columns : mapping of str to array
        ``AMP`` (written as int16) and float columns (written as float32, format E),
        in the order given.
    primary : mapping, optional
        Primary-header keywords (EOTEST leaves it empty; gpuptc adds ORIGIN).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    from astropy.io import fits

    cols = []
    for name, values in columns.items():
        unit = EOTEST_UNITS.get(name, "None")
        if name == "AMP":
            cols.append(fits.Column(name=name, format="I", unit=unit, array=np.asarray(values)))
        else:
            array = np.asarray(values, dtype=np.float32)
            cols.append(fits.Column(name=name, format="E", unit=unit, array=array))
    header = fits.Header()
    for key, value in (primary or {}).items():
        header[key] = value
    hdus = fits.HDUList(
        [
            fits.PrimaryHDU(header=header),
            fits.BinTableHDU.from_columns(cols, name=AMPLIFIER_RESULTS),
        ]
    )
    with atomic_path(path) as tmp:
        hdus.writeto(tmp, output_verify="exception")
    return Path(path)


def read_eotest_results(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read the AMPLIFIER_RESULTS table of an EOTEST results file.

    Parameters
    ----------
    path : path-like
        The results file.

    Returns
    -------
    pandas.DataFrame
        One row per amplifier, EOTEST's column names, native-order float64/int values.
        ``attrs`` holds the primary header's LSST_NUM and ORIGIN when present.

    Raises
    ------
    ValueError
        If the file has no AMPLIFIER_RESULTS table or no AMP column.
    """
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdus:
        if AMPLIFIER_RESULTS not in hdus:
            raise ValueError(f"{path}: no {AMPLIFIER_RESULTS} table")
        data = hdus[AMPLIFIER_RESULTS].data
        frame = pd.DataFrame(
            {
                name: np.asarray(data[name]).astype(np.asarray(data[name]).dtype.newbyteorder("="))
                for name in data.columns.names
            }
        )
        primary = hdus[0].header
        attrs = {key.lower(): primary[key] for key in ("LSST_NUM", "ORIGIN") if key in primary}
    if "AMP" not in frame:
        raise ValueError(f"{path}: {AMPLIFIER_RESULTS} has no AMP column")
    frame.attrs.update(attrs)
    return frame

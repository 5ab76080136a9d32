"""Columns of the calibration tables Rubin's ISR reads (PTC datasets, linearizers).

Rubin's ``IsrCalib.writeFits`` writes a calibration as an empty primary HDU and binary
tables made by astropy from one mapping per amplifier: strings as text columns, numbers as
64-bit columns, arrays as fixed-length vectors. :func:`fits_column` makes one such column.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fits_column"]


def fits_column(name: str, kind: str, values: list[Any]) -> Any:
    """One column of a calibration table as astropy writes it, from one value per row.

    Kinds: ``text``, ``int``, ``float`` (one value per row); ``names`` (a list of strings
    per row); ``mask`` (booleans), ``integers``, ``float32``, ``ids`` (a 2-D array of
    integers) and any other kind (floats): a vector per row, every row's of one length.

    Examples
    --------
    >>> fits_column("COEFFS", "vector", [[1.0, 2.0], [3.0, 4.0]]).format
    '2D'
    """
    from astropy.io import fits

    if kind == "text":
        width = max(1, *(len(str(v)) for v in values))
        return fits.Column(name=name, format=f"{width}A", array=np.array(values, dtype=f"U{width}"))
    if kind == "int":
        return fits.Column(name=name, format="K", array=np.asarray(values, dtype=np.int64))
    if kind == "float":
        return fits.Column(name=name, format="D", array=np.asarray(values, dtype=np.float64))
    if kind == "names":
        names = [list(v) for v in values]
        count = len(names[0])
        width = max([3, *(len(n) for row in names for n in row)])
        array = np.array(names, dtype=f"U{width}").reshape(len(names), count)
        return fits.Column(
            name=name, format=f"{count * width}A", dim=f"({width},{count})", array=array
        )
    array = np.stack([np.asarray(v) for v in values])
    per_row = int(np.prod(array.shape[1:]))
    vector = f"({per_row})"  # TDIM: a one-wide vector stays a vector when read
    if kind == "mask":
        return fits.Column(name=name, format=f"{per_row}L", dim=vector, array=array.astype(bool))
    if kind == "integers":
        return fits.Column(
            name=name, format=f"{per_row}K", dim=vector, array=array.astype(np.int64)
        )
    if kind == "float32":
        return fits.Column(
            name=name, format=f"{per_row}E", dim=vector, array=array.astype(np.float32)
        )
    if kind == "ids":
        dim = f"({array.shape[2]},{array.shape[1]})"
        return fits.Column(name=name, format=f"{per_row}K", dim=dim, array=array.astype(np.int64))
    return fits.Column(name=name, format=f"{per_row}D", dim=vector, array=array.astype(np.float64))

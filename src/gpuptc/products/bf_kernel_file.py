"""A sensor's brighter-fatter kernels as Rubin's ISR reads them (ip_isr's ``BrighterFatterKernel``).

ip_isr's ``BrighterFatterKernel`` (schema "Brighter-fatter kernel", version 1.1), as its
``writeFits`` lays it out: an empty primary HDU, then a table of one row per amplifier
(AMPLIFIER, EXP_ID_MASK, RAW_MEANS, RAW_VARIANCES, RAW_XCORRS: the covariances of every pair
flattened, GAIN, NOISE, MEAN_XCORRS: the pre-kernel, KERNEL, VALID) whose header holds
OBSTYPE ``bfk``, the schema and version, LEVEL, KERNEL_DX and KERNEL_DY and the detector's
keywords; with a detector kernel, a second table (DETECTOR, KERNEL). Vectors are per pair
in the PTC's pair order; a pair an amp lacks is NaN (its mask False).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuptc._version import __version__
from gpuptc.fitting.bf_sensor import DETECTOR_SEGMENT
from gpuptc.fitting.pair_arrays import covariance_cube, pair_grid
from gpuptc.formats.fits_tables import fits_column
from gpuptc.formats.writer import atomic_path
from gpuptc.products.cp_pipe_ptc import amplifier_name, detector_header

__all__ = ["BFK_SCHEMA", "BFK_VERSION", "read_bf_kernel", "write_bf_kernel"]

BFK_SCHEMA = "Brighter-fatter kernel"
BFK_VERSION = 1.1
_CALIBCLS = "lsst.ip.isr.brighterFatterKernel.BrighterFatterKernel"
_KINDS = {
    "AMPLIFIER": "text",
    "EXP_ID_MASK": "mask",
    "RAW_MEANS": "vector",
    "RAW_VARIANCES": "vector",
    "RAW_XCORRS": "vector",
    "GAIN": "float",
    "NOISE": "float",
    "MEAN_XCORRS": "vector",
    "KERNEL": "vector",
    "VALID": "int",
}


def write_bf_kernel(
    path: str | os.PathLike[str],
    tables: dict[str, pd.DataFrame],
    sensor: str,
    manifest: pd.DataFrame | None = None,
) -> Path:
    """Write one sensor's kernels as ip_isr's ``BrighterFatterKernel`` (1.1), atomically.

    Parameters
    ----------
    path : path-like
        Destination (``DIR/cp_pipe/<sensor>_bfk.fits`` in a run).
    tables : dict of str to pandas.DataFrame
        The run's ``bf_kernel``, ``pairs`` (means, variances, the PTC's selection) and
        ``covariances`` (other sensors' rows ignored), and ``ptc`` (the noise of the
        EXPAPPROXIMATION fit, e-).
    sensor : str
        The sensor.
    manifest : pandas.DataFrame, optional
        The run's manifest: the detector's keywords.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    The kernels of a small simulated sensor's measurements ``pairs`` and ``covariances``
    (:func:`gpuptc.measure` of the raws made by :func:`gpuptc.simulate`), written into the
    empty directory ``tmp`` and read back:

    >>> from gpuptc import fit
    >>> from gpuptc.config import BrighterFatterConfig
    >>> from gpuptc.fitting.bf_sensor import sensor_bf_kernels
    >>> ptc, fullcov, fitted = fit(pairs, covariances, models=["expapprox"])
    >>> kernels = sensor_bf_kernels(fitted, covariances, ptc, fullcov, BrighterFatterConfig())
    >>> tables = {"bf_kernel": kernels, "pairs": fitted, "covariances": covariances, "ptc": ptc}
    >>> path = write_bf_kernel(tmp / "bfk.fits", tables, "E2V-CCD250-101")
    >>> back = read_bf_kernel(path)
    >>> len(back), back.kernel[0].shape == (kernels["size"][0],) * 2, back.amplifier[0]
    (16, True, 'C10')
    """
    kernels = tables["bf_kernel"]
    mine = kernels[(kernels["sensor"] == sensor) & (kernels["segment"] != DETECTOR_SEGMENT)]
    solved = mine[mine["size"] > 0].sort_values("amp")
    if solved.empty:
        raise ValueError(f"{sensor}: no brighter-fatter kernel to write")
    size = int(solved["size"].iloc[0])
    pairs = tables["pairs"][tables["pairs"]["sensor"] == sensor]
    covariances = tables["covariances"][tables["covariances"]["sensor"] == sensor]
    rows = _amp_rows(solved, pairs, covariances, _noises(tables["ptc"], sensor), size)
    detector = kernels[(kernels["sensor"] == sensor) & (kernels["segment"] == DETECTOR_SEGMENT)]
    header = _header(sensor, pairs, manifest, solved["level"].iloc[0], size)
    with atomic_path(path) as temporary:
        _hdus(rows, header, sensor, detector).writeto(temporary)
    return Path(path)


def _noises(ptc: pd.DataFrame, sensor: str) -> pd.Series:
    fitted = ptc[(ptc["sensor"] == sensor) & (ptc["model"] == "expapprox")]
    return fitted.set_index("amp")["noise"]


def _amp_rows(solved, pairs, covariances, noises, size) -> list[dict[str, Any]]:
    """The amplifier table's rows, every vector over the same pairs (the sensor's)."""
    order = np.sort(pairs["pair"].unique())
    amps = solved["amp"].to_numpy()
    lags = (size - 1) // 2
    means = pair_grid(pairs, "mean", amps, order, np.nan)
    variances = pair_grid(pairs, "var", amps, order, np.nan)
    used = pair_grid(pairs.assign(used=pairs["used"].fillna(False)), "used", amps, order, False)
    cubes = covariance_cube(covariances, amps, order)[..., :lags, :lags]
    return [
        {
            "AMPLIFIER": amplifier_name(row.segment),
            "EXP_ID_MASK": used[k].astype(bool),
            "RAW_MEANS": means[k].astype(float),
            "RAW_VARIANCES": variances[k].astype(float),
            "RAW_XCORRS": cubes[k].reshape(-1),
            "GAIN": float(row.gain),
            "NOISE": float(noises.get(row.amp, math.nan)),
            "MEAN_XCORRS": np.asarray(row.pre_kernel, float),
            "KERNEL": np.asarray(row.kernel, float),
            "VALID": int(bool(row.valid)),
        }
        for k, row in enumerate(solved.itertuples())
    ]


def _header(sensor, pairs, manifest, level, size) -> dict[str, Any]:
    return {
        "OBSTYPE": "bfk",
        "bfk_SCHEMA": BFK_SCHEMA,
        "bfk_VERSION": BFK_VERSION,
        "LEVEL": str(level),
        "KERNEL_DX": size,
        "KERNEL_DY": size,
        "CALIBCLS": _CALIBCLS,
        **detector_header(sensor, pairs, manifest),
    }


def _hdus(rows, header, sensor, detector: pd.DataFrame) -> Any:
    """The file: an empty primary HDU, the amplifier table, the detector's kernel if any."""
    from astropy.io import fits

    columns = [fits_column(name, kind, [r[name] for r in rows]) for name, kind in _KINDS.items()]
    hdus = [fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)]
    if len(detector):
        kernel = [np.asarray(detector["kernel"].iloc[0], float)]
        columns = [
            fits_column("DETECTOR", "text", [sensor]),
            fits_column("KERNEL", "vector", kernel),
        ]
        hdus.append(fits.BinTableHDU.from_columns(columns))
    for hdu in hdus[1:]:
        for key, value in header.items():
            hdu.header[key if len(key) <= 8 and key.isupper() else f"HIERARCH {key}"] = value
    hdus[0].header["ORIGIN"] = "gpuptc"
    hdus[0].header["CREATOR"] = f"gpuptc {__version__}"
    return fits.HDUList(hdus)


def read_bf_kernel(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A brighter-fatter kernel file (gpuptc's or cp_pipe's), one row per amplifier.

    Parameters
    ----------
    path : path-like
        An ip_isr ``BrighterFatterKernel`` FITS file (version 1.1).

    Returns
    -------
    pandas.DataFrame
        ``amplifier``, ``kernel`` and ``pre_kernel`` (``KERNEL_DX x KERNEL_DY`` arrays),
        ``valid``, ``gain``, ``noise``, ``used``, ``means``, ``variances`` and
        ``covariances`` (pairs x lags x lags); ``attrs["header"]`` holds the table's
        header and ``attrs["detector_kernel"]`` the detector's kernel, if any.

    Raises
    ------
    ValueError
        If the file is not a brighter-fatter kernel of version 1.1 (the message says why).

    Examples
    --------
    See :func:`write_bf_kernel` for a file read back; another calibration is refused
    (``tmp`` an empty directory):

    >>> from astropy.io import fits
    >>> table = fits.BinTableHDU.from_columns([fits.Column(name="X", format="D", array=[1.0])])
    >>> table.header["OBSTYPE"] = "LINEARIZER"
    >>> fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp / "linearizer.fits")
    >>> read_bf_kernel(tmp / "linearizer.fits")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...: not a brighter-fatter kernel of version 1.1 (OBSTYPE 'LINEARIZER', ...)
    """
    from astropy.io import fits

    with fits.open(path) as hdus:
        header = dict(hdus[1].header)
        if header.get("OBSTYPE") != "bfk" or header.get("bfk_VERSION") != BFK_VERSION:
            raise ValueError(
                f"{path}: not a brighter-fatter kernel of version {BFK_VERSION} "
                f"(OBSTYPE {header.get('OBSTYPE')!r}, version {header.get('bfk_VERSION')!r})"
            )
        shape = (int(header["KERNEL_DX"]), int(header["KERNEL_DY"]))
        lags = (shape[0] - 1) // 2
        data = hdus[1].data
        frame = pd.DataFrame(
            {
                "amplifier": [str(a).strip() for a in data["AMPLIFIER"]],
                "kernel": [np.asarray(k, float).reshape(shape) for k in data["KERNEL"]],
                "pre_kernel": [np.asarray(k, float).reshape(shape) for k in data["MEAN_XCORRS"]],
                "valid": [bool(v) for v in data["VALID"]],
                "gain": np.asarray(data["GAIN"], float),
                "noise": np.asarray(data["NOISE"], float),
                "used": [np.asarray(m, bool) for m in data["EXP_ID_MASK"]],
                "means": [np.asarray(m, float) for m in data["RAW_MEANS"]],
                "variances": [np.asarray(v, float) for v in data["RAW_VARIANCES"]],
                "covariances": [
                    np.asarray(x, float).reshape(-1, lags, lags) for x in data["RAW_XCORRS"]
                ],
            }
        )
        detector = None
        if len(hdus) > 2:
            detector = np.asarray(hdus[2].data["KERNEL"][0], float).reshape(shape)
    frame.attrs["header"] = header
    frame.attrs["detector_kernel"] = detector
    return frame

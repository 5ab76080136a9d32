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

from gpuptc.formats.writer import atomic_path

__all__ = [
    "AMPLIFIER_RESULTS",
    "EOTEST_UNITS",
    "eotest_results_columns",
    "read_eotest_results",
    "sensor_from_eotest_name",
    "write_eotest_results",
    "write_ptc_stats",
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
        ``attrs`` holds the primary header's LSST_NUM and ORIGIN when present, and the path.

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
    frame.attrs.update(attrs, path=str(path))
    return frame


def eotest_results_columns(
    ptc: pd.DataFrame, sensor: str, model: str = "expapprox"
) -> dict[str, np.ndarray]:
    """EOTEST's PTC_* columns for one sensor from a ``ptc`` table.

    PTC_A00 takes EOTEST's (positive) sign; FULL_WELL is EOTEST's full well (e-, from the
    flat pairs, with this model's gain); missing values are written as EOTEST writes a
    failed fit (0, errors -1).
    """
    rows = ptc[(ptc["sensor"] == sensor) & (ptc["model"] == model)].sort_values("amp")
    if rows.empty:
        raise ValueError(f"no {model!r} fit for sensor {sensor}")

    def column(name: str, fill: float, sign: float = 1.0) -> np.ndarray:
        values = sign * rows[name].to_numpy(dtype=np.float64)
        return np.where(np.isfinite(values), values, fill)

    return {
        "AMP": rows["amp"].to_numpy().astype(np.int16),
        "PTC_GAIN": column("gain", 0.0),
        "PTC_GAIN_ERROR": column("gain_err", -1.0),
        "PTC_A00": column("a00", 0.0, -1.0),
        "PTC_A00_ERROR": column("a00_err", -1.0),
        "PTC_NOISE": column("noise", 0.0),
        "PTC_NOISE_ERROR": column("noise_err", -1.0),
        "PTC_TURNOFF": column("turnoff", 0.0),
        "FULL_WELL": column("full_well", 0.0),
    }


def write_ptc_stats(
    path: str | os.PathLike[str],
    pairs: pd.DataFrame,
    sensor: str,
    *,
    manifest: pd.DataFrame | None = None,
) -> Path:
    """Write EOTEST's ``<sensor>_ptc.fits``: a PTC_STATS row per pair, ORIGIN = 'gpuptc'.

    Columns: EXPOSURE (E), AMPnn_MEAN (E), AMPnn_VAR (E), AMPnn_DISCARD (J, pixels not
    used), SEQNUM (J) and DAYOBS (J, yyyymmdd, 0 when unknown) of the pair's first flat.
    """
    from astropy.io import fits

    rows = pairs[pairs["sensor"] == sensor]
    if rows.empty:
        raise ValueError(f"no pairs for sensor {sensor}")
    amps = sorted(int(a) for a in rows["amp"].unique())
    by_pair = rows.sort_values(["pair", "amp"]).groupby("pair", sort=True)
    first = by_pair.first()
    columns = [fits.Column("EXPOSURE", "E", unit="seconds", array=first["exptime"].to_numpy())]
    wide = rows.pivot(index="pair", columns="amp", values=["mean", "var", "pixels", "npix"])
    wide = wide.reindex(first.index)
    discards = (wide["pixels"] - wide["npix"])[amps].fillna(-1).to_numpy().astype(np.int32)
    for k, amp in enumerate(amps):
        mean, var = wide["mean"][amp].to_numpy(), wide["var"][amp].to_numpy()
        columns += [
            fits.Column(f"AMP{amp:02d}_MEAN", "E", unit="ADU", array=mean),
            fits.Column(f"AMP{amp:02d}_VAR", "E", unit="ADU**2", array=var),
            fits.Column(f"AMP{amp:02d}_DISCARD", "J", unit="pixls", array=discards[:, k]),
        ]
    seqnum = np.zeros(len(first), np.int32)
    dayobs = np.zeros(len(first), np.int32)
    if manifest is not None:
        info = manifest.set_index("path")
        files = first["file1"]
        seqnum = files.map(info["seqnum"]).fillna(0).to_numpy().astype(np.int32)
        digits = files.map(info["dayobs"]).astype("string").str.replace("-", "")
        dayobs = pd.to_numeric(digits).fillna(0).to_numpy(np.int32)  # unknown: 0
    columns += [fits.Column("SEQNUM", "J", array=seqnum), fits.Column("DAYOBS", "J", array=dayobs)]
    header = fits.Header()
    header["NAMPS"] = len(amps)
    header["ORIGIN"] = "gpuptc"
    header["LSST_NUM"] = sensor
    hdus = fits.HDUList(
        [fits.PrimaryHDU(header=header), fits.BinTableHDU.from_columns(columns, name="PTC_STATS")]
    )
    with atomic_path(path) as tmp:
        hdus.writeto(tmp, output_verify="exception")
    return Path(path)

"""gpuptc's linearity as Rubin's linearizer calibration, and back.

:func:`write_linearizer` writes one sensor's rows of ``linearity.parquet`` as ip_isr's
``Linearizer`` (schema "Gen3 Linearizer", version 1.8): an empty primary HDU, a table of one
row per amplifier (its type, coefficients, bounding box, the fit's inputs and residuals,
the straight line, turnoff and maximum signal, the PTC's gain and turnoff), and for lookup
tables a second table of ``LOOKUP_VALUES``. :func:`read_linearizer` reads such a file
(gpuptc's or cp_pipe's) back into those rows.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuptc._version import __version__
from gpuptc.errors import GpuptcError
from gpuptc.fitting.linearity import lookup_table
from gpuptc.fitting.linearity_sensor import adopted_gains
from gpuptc.formats.fits_tables import fits_column
from gpuptc.formats.writer import atomic_path
from gpuptc.kernels.linearize import AmpLinearizer, apply_linearizer
from gpuptc.products.cp_pipe_ptc import amplifier_name, detector_header, segment_of
from gpuptc.raws.layout import LAYOUTS, amp_cell, segment_name

__all__ = [
    "LINEARIZER_SCHEMA",
    "LINEARIZER_VERSION",
    "LinearizerError",
    "amp_linearizers",
    "linearity_linearizers",
    "read_linearizer",
    "sensor_linearizers",
    "write_linearizer",
]

LINEARIZER_SCHEMA = "Gen3 Linearizer"
LINEARIZER_VERSION = 1.8
_CALIBCLS = "lsst.ip.isr.linearize.Linearizer"

_KINDS = {
    "AMPLIFIER_NAME": "text",
    "INPUT_GAIN": "float",
    "INPUT_TURNOFF": "float",
    "TYPE": "text",
    "COEFFS": "vector",
    "BBOX_X0": "int",
    "BBOX_Y0": "int",
    "BBOX_DX": "int",
    "BBOX_DY": "int",
    "INP_ABSCISSA": "vector",
    "INP_ORDINATE": "vector",
    "INP_MASK": "mask",
    "INP_GROUPING_INDEX": "integers",
    "INP_NORMALIZATION": "vector",
    "FIT_PARAMS": "vector",
    "FIT_PARAMS_ERR": "vector",
    "RED_CHI_SQ": "float",
    "FIT_RES": "vector",
    "FIT_RES_SIGMAD": "float",
    "FIT_RES_UNMASKED": "vector",
    "FIT_RES_MODEL": "vector",
    "LIN_FIT": "vector",
    "LINEARITY_TURNOFF": "float",
    "LINEARITY_MAX_SIGNAL": "float",
    "ABS_REF_AMP": "text",
}
"""The amplifier table's columns (ip_isr ``Linearizer.toTable``, version 1.8) and kinds."""


class LinearizerError(GpuptcError):
    """A file that is not a readable linearizer (the message names the file and why)."""


def _padded(values: list[list[float]], fill: float = 0.0) -> list[np.ndarray]:
    """Vectors of one length (the longest), ``fill`` after each shorter one's values."""
    width = max(1, *(len(v) for v in values))
    return [np.r_[np.asarray(v, float), np.full(width - len(v), fill)] for v in values]


def _bbox(segment: str, vendor: str | None) -> tuple[int, int, int, int]:
    """The amp's box in the assembled image of the camera's layout (zeros if unknown)."""
    if vendor not in LAYOUTS:
        return 0, 0, 0, 0
    layout = LAYOUTS[vendor]
    amp = next(a for a in range(1, 17) if segment_name(a, 16) == segment)
    row, column = amp_cell(amp, 16)
    return column * layout.nx, row * layout.ny, layout.nx, layout.ny


def _amp_row(row: Any, gain: float, turnoff: float, vendor: str | None, table_row: int) -> dict:
    """One amplifier's row of the file from its row of ``linearity.parquet``."""
    ordinate = np.asarray(row.input_ordinate, float)
    coefficients = [float(table_row), 0.0] if row.type == "LookupTable" else list(row.coefficients)
    residuals = np.asarray(row.residuals, float)
    x0, y0, dx, dy = _bbox(row.segment, vendor)
    return {
        "AMPLIFIER_NAME": amplifier_name(row.segment),
        "INPUT_GAIN": gain,
        "INPUT_TURNOFF": turnoff,
        "TYPE": row.type,
        "COEFFS": coefficients,
        "BBOX_X0": x0,
        "BBOX_Y0": y0,
        "BBOX_DX": dx,
        "BBOX_DY": dy,
        "INP_ABSCISSA": np.asarray(row.input_abscissa, float),
        "INP_ORDINATE": ordinate,
        "INP_MASK": np.asarray(row.input_mask, bool),
        "INP_GROUPING_INDEX": _groups(row, len(ordinate)),
        "INP_NORMALIZATION": np.ones(len(ordinate)),
        "FIT_PARAMS": list(row.fit_params),
        "FIT_PARAMS_ERR": list(row.fit_params_err),
        "RED_CHI_SQ": float(row.reduced_chi2),
        "FIT_RES": residuals,
        "FIT_RES_SIGMAD": float(row.residual_sigma_mad),
        "FIT_RES_UNMASKED": np.asarray(row.residuals_unmasked, float),
        "FIT_RES_MODEL": ordinate,  # replaced by the linearized signal where it is known
        "LIN_FIT": [float(row.linear_intercept), float(row.linear_slope)],
        "LINEARITY_TURNOFF": float(row.turnoff),
        "LINEARITY_MAX_SIGNAL": float(row.max_signal),
        "ABS_REF_AMP": "",
    }


def write_linearizer(
    path: str | os.PathLike[str],
    linearity: pd.DataFrame,
    ptc: pd.DataFrame,
    sensor: str,
    pairs: pd.DataFrame | None = None,
    manifest: pd.DataFrame | None = None,
    table_length: int = 2**18,
    model: str = "expapprox",
) -> Path:
    """Write one sensor's linearity as ip_isr's ``Linearizer`` (version 1.8), atomically.

    Parameters
    ----------
    path : path-like
        Destination (``DIR/cp_pipe/<sensor>_linearizer.fits`` in a run).
    linearity : pandas.DataFrame
        The run's ``linearity`` (other sensors' rows ignored).
    ptc : pandas.DataFrame
        The run's ``ptc``: each amp's gain of ``model`` (INPUT_GAIN) and EXPAPPROXIMATION
        turnoff (INPUT_TURNOFF).
    sensor : str
        The sensor.
    pairs, manifest : pandas.DataFrame, optional
        The run's pairs and manifest: the detector's keywords (raft, slot, filter) and
        vendor (the amps' bounding boxes).
    table_length : int
        Entries of each lookup table (the preset's ``max_lookup_table_adu``).
    model : str
        The adopted PTC model (the preset's ``ptc_fit_type``).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    The linearity of a small simulated sensor's measurements ``pairs`` and ``covariances``
    (:func:`gpuptc.measure` of the raws made by :func:`gpuptc.simulate`), written into the
    empty directory ``tmp`` and read back:

    >>> from gpuptc import fit
    >>> from gpuptc.config import LinearityConfig
    >>> from gpuptc.fitting.linearity_sensor import sensor_linearity
    >>> ptc, _, fitted = fit(pairs, covariances, models=["expapprox"])
    >>> config = LinearityConfig(max_linear_adu=1e5, polynomial_order=2)  # 6 pairs: few
    >>> linearity = sensor_linearity(fitted, ptc, config)
    >>> path = write_linearizer(tmp / "linearizer.fits", linearity, ptc, "E2V-CCD250-101")
    >>> back = read_linearizer(path)
    >>> len(back), back.type.unique().tolist(), back.amplifier[0]
    (16, ['Squared'], 'C10')
    """
    mine = linearity[linearity["sensor"] == sensor].sort_values("amp")
    if mine.empty:
        raise ValueError(f"{sensor}: no linearity to write as a linearizer")
    linearizers = linearity_linearizers(mine, table_length)  # each lookup table made once
    rows = _amp_rows(mine, ptc, sensor, _vendor(manifest, sensor), linearizers, model)
    values = [linearizers[r.segment].table[0] for r in mine.itertuples() if r.type == "LookupTable"]
    header = _header(sensor, pairs, manifest, has_table=bool(values))
    with atomic_path(path) as temporary:
        _hdus(rows, header, values).writeto(temporary)
    return Path(path)


def _amp_rows(
    mine: pd.DataFrame,
    ptc: pd.DataFrame,
    sensor: str,
    vendor: str | None,
    linearizers: dict[str, AmpLinearizer],
    model: str,
) -> list[dict[str, Any]]:
    """The amplifier table's rows.

    Vectors padded to one length; each amp's linearized signal as FIT_RES_MODEL.
    """
    fitted = ptc[(ptc["sensor"] == sensor) & (ptc["model"] == "expapprox")].set_index("amp")
    gains = adopted_gains(ptc[ptc["sensor"] == sensor], model)
    tables = [row.amp for row in mine.itertuples() if row.type == "LookupTable"]
    rows = [
        _amp_row(
            row,
            float(gains.get(row.amp, math.nan)),
            float(fitted["turnoff"].get(row.amp, math.nan)),
            vendor,
            tables.index(row.amp) if row.amp in tables else 0,
        )
        for row in mine.itertuples()
    ]
    for name in ("COEFFS", "FIT_PARAMS", "FIT_PARAMS_ERR"):
        for row, padded in zip(rows, _padded([r[name] for r in rows]), strict=True):
            row[name] = padded
    for row, source in zip(rows, mine.itertuples(), strict=True):
        linearizer = linearizers[source.segment]  # cp_pipe's FIT_RES_MODEL: inputs linearized
        row["FIT_RES_MODEL"] = apply_linearizer(
            linearizer.kind, linearizer.coefficients, row["INP_ORDINATE"], linearizer.table
        )
    return rows


def _hdus(rows: list[dict[str, Any]], header: dict[str, Any], tables: list[np.ndarray]) -> Any:
    """The file: an empty primary HDU, the amplifier table, the lookup tables if any."""
    from astropy.io import fits

    columns = [fits_column(n, k, [r[n] for r in rows]) for n, k in _KINDS.items()]
    hdus = [fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)]
    if tables:
        values = fits_column("LOOKUP_VALUES", "float32", tables)  # cp_pipe's precision
        hdus.append(fits.BinTableHDU.from_columns([values]))
    for key, value in header.items():
        hdus[1].header[key if len(key) <= 8 else f"HIERARCH {key}"] = value
    hdus[0].header["ORIGIN"] = "gpuptc"
    hdus[0].header["CREATOR"] = f"gpuptc {__version__}"
    return fits.HDUList(hdus)


def _vendor(manifest: pd.DataFrame | None, sensor: str) -> str | None:
    if manifest is None or "vendor" not in manifest:
        return None
    vendors = manifest.loc[manifest["sensor"] == sensor, "vendor"].dropna().unique()
    return str(vendors[0]).lower() if len(vendors) else None


def _header(
    sensor: str, pairs: pd.DataFrame | None, manifest: pd.DataFrame | None, has_table: bool
) -> dict[str, Any]:
    detector = (
        detector_header(sensor, pairs[pairs["sensor"] == sensor], manifest)
        if pairs is not None
        else {"DET_SER": sensor}
    )
    return {
        "OBSTYPE": "LINEARIZER",
        "LINEARIZER_SCHEMA": LINEARIZER_SCHEMA,
        "LINEARIZER_VERSION": LINEARIZER_VERSION,
        "HAS_LINEARITY": True,
        "OVERRIDE": False,
        "HAS_TABLE": has_table,
        "LINEARITY_UNITS": "adu",
        "CALIBCLS": _CALIBCLS,
        **detector,
    }


def read_linearizer(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A linearizer file (gpuptc's or cp_pipe's) as one row per amplifier.

    Parameters
    ----------
    path : path-like
        An ip_isr ``Linearizer`` FITS file.

    Returns
    -------
    pandas.DataFrame
        ``amplifier`` (the camera's name), ``type``, ``coefficients``, ``bbox`` (x0, y0,
        dx, dy), ``input_gain``, ``input_turnoff``, ``input_abscissa``, ``input_ordinate``,
        ``input_mask``, ``input_groups``, ``fit_params``, ``fit_params_err``, ``reduced_chi2``,
        ``residuals``, ``residual_sigma_mad``, ``linear_intercept``, ``linear_slope``,
        ``turnoff``, ``max_signal``, and ``table`` (the amp's lookup table or None);
        ``attrs["header"]`` holds the table's header.

    Raises
    ------
    LinearizerError
        If the file is unreadable or not a linearizer (the message says which and why).

    Examples
    --------
    The linearity of a small simulated sensor's measurements ``pairs`` and ``covariances``
    (:func:`gpuptc.measure` of the raws made by :func:`gpuptc.simulate`) as
    :func:`write_linearizer` writes it, in the empty directory ``tmp``:

    >>> from gpuptc import fit
    >>> from gpuptc.config import LinearityConfig
    >>> from gpuptc.fitting.linearity_sensor import sensor_linearity
    >>> ptc, _, fitted = fit(pairs, covariances, models=["expapprox"])
    >>> config = LinearityConfig(max_linear_adu=1e5, polynomial_order=2)  # 6 pairs: few
    >>> linearity = sensor_linearity(fitted, ptc, config)
    >>> path = write_linearizer(tmp / "linearizer.fits", linearity, ptc, "E2V-CCD250-101")
    >>> amps = read_linearizer(path)
    >>> amps.attrs["header"]["LINEARIZER_VERSION"], bool(amps.loc[0, "linear_slope"] > 0)
    (1.8, True)
    """
    from astropy.io import fits

    try:
        with open(path, "rb") as handle, fits.open(handle, memmap=False) as hdus:
            if len(hdus) < 2:
                raise LinearizerError(f"{path}: not a linearizer (no table extension)")
            header = dict(hdus[1].header)
            data = hdus[1].data
            names = set(data.columns.names) if data is not None else set()
            lookup = np.asarray(hdus[2].data["LOOKUP_VALUES"]) if len(hdus) > 2 else None
            rows = [_read_row(data, k, names, lookup) for k in range(len(data))]
    except LinearizerError:
        raise
    except Exception as exc:
        raise LinearizerError(f"{path}: not a readable linearizer ({exc})") from exc
    if str(header.get("OBSTYPE", "")).strip().upper() != "LINEARIZER":
        raise LinearizerError(f"{path}: not a linearizer (OBSTYPE is {header.get('OBSTYPE')!r})")
    frame = pd.DataFrame(rows)
    frame.attrs["header"] = header
    return frame


def _read_row(data: Any, k: int, names: set[str], lookup: np.ndarray | None) -> dict[str, Any]:
    """One amplifier's values, ip_isr's defaults where the file's version lacks a column."""

    def value(name: str, default: Any) -> Any:
        return data[name][k] if name in names else default

    def vector(name: str, default: list[Any], kind: type = float) -> np.ndarray:
        return np.atleast_1d(np.asarray(value(name, default), kind))  # a 1-wide column: scalars

    kind = str(value("TYPE", "None")).strip()
    coefficients = vector("COEFFS", [0.0])
    table = None
    if kind == "LookupTable" and lookup is not None:
        table = np.asarray(lookup[int(coefficients[0])], float)
    fit = vector("LIN_FIT", [0.0, math.nan])
    return {
        "amplifier": str(value("AMPLIFIER_NAME", "")).strip(),
        "type": kind,
        "coefficients": coefficients,
        "bbox": tuple(int(value(f"BBOX_{k_}", 0)) for k_ in ("X0", "Y0", "DX", "DY")),
        "input_gain": float(value("INPUT_GAIN", math.nan)),
        "input_turnoff": float(value("INPUT_TURNOFF", math.inf)),
        "input_abscissa": vector("INP_ABSCISSA", [0.0]),
        "input_ordinate": vector("INP_ORDINATE", [0.0]),
        "input_mask": vector("INP_MASK", [False], bool),
        "input_groups": vector("INP_GROUPING_INDEX", [0], np.int64),
        "fit_params": vector("FIT_PARAMS", [0.0]),
        "fit_params_err": vector("FIT_PARAMS_ERR", [0.0]),
        "reduced_chi2": float(value("RED_CHI_SQ", math.nan)),
        "residuals": vector("FIT_RES", [0.0]),
        "residual_sigma_mad": float(value("FIT_RES_SIGMAD", math.nan)),
        "linear_intercept": float(fit[0]),
        "linear_slope": float(fit[1]) if len(fit) > 1 else math.nan,
        "turnoff": float(value("LINEARITY_TURNOFF", math.nan)),
        "max_signal": float(value("LINEARITY_MAX_SIGNAL", math.nan)),
        "table": table,
    }


def _groups(row: Any, pairs: int) -> np.ndarray:
    """An amp's group per pair (zeros for one group, or for a table without them)."""
    groups = getattr(row, "input_groups", None)
    if groups is None or len(groups) != pairs:
        return np.zeros(pairs, np.int64)
    return np.asarray(groups, np.int64)


def amp_linearizers(amps: pd.DataFrame) -> dict[str, AmpLinearizer]:
    """A linearizer's amps (:func:`read_linearizer`) as the ISR applies them, by segment.

    Examples
    --------
    >>> amps = pd.DataFrame({"amplifier": ["C10"], "type": ["Squared"],
    ...                      "coefficients": [np.array([1e-7])], "table": [None]})
    >>> amp_linearizers(amps)["Segment10"].kind
    'Squared'
    """
    found = {}
    for row in amps.itertuples():
        table = None if row.table is None else np.asarray(row.table, float)[None, :]
        coefficients = np.asarray(row.coefficients, float)
        if table is not None:
            coefficients = np.array([0.0, coefficients[1] if len(coefficients) > 1 else 0.0])
        found[segment_of(row.amplifier)] = AmpLinearizer(row.type, coefficients, table)
    return found


def linearity_linearizers(
    linearity: pd.DataFrame, table_length: int = 2**18
) -> dict[str, AmpLinearizer]:
    """One sensor's rows of ``linearity.parquet`` as the ISR applies them, by segment.

    An amp left unsolved (type ``None``) is left as measured.
    """
    found = {}
    for row in linearity.itertuples():
        if row.type == "LookupTable":  # its one row, made from the polynomial it tabulates
            table = lookup_table(np.asarray(row.fit_params, float), table_length)[None, :]
            found[row.segment] = AmpLinearizer(row.type, np.array([0.0, 0.0]), table)
        else:
            found[row.segment] = AmpLinearizer(row.type, np.asarray(row.coefficients, float))
    return found


def _identity(path: Path) -> tuple[str, str | None]:
    """A calibration file's type (``OBSTYPE``) and detector serial (``DET_SER`` or None)."""
    from astropy.io import fits

    try:
        header = fits.getheader(path, 1)
    except Exception as exc:
        raise LinearizerError(f"{path}: not a readable linearizer ({exc})") from exc
    serial = header.get("DET_SER")
    kind = str(header.get("OBSTYPE", "")).strip().upper()
    return kind, None if serial is None else str(serial).strip()


def sensor_linearizers(source: str | os.PathLike[str], sensor: str) -> dict[str, AmpLinearizer]:
    """The linearizer of ``sensor`` from a file or a folder of them, by segment.

    Parameters
    ----------
    source : path-like
        A linearizer file (gpuptc's or cp_pipe's): its detector serial (``DET_SER``), where
        it has one, must be ``sensor``'s. Or a folder (a run's ``cp_pipe``): the one file
        in it whose serial is ``sensor``'s.
    sensor : str
        The sensor's serial (LSST_NUM).

    Returns
    -------
    dict of str to AmpLinearizer

    Raises
    ------
    LinearizerError
        No such file, a file of another sensor, none or two of the sensor in a folder,
        or an unreadable file (the message names it and says why).
    """
    path = Path(source)
    if path.is_dir():
        candidates = sorted(p for p in path.glob("*.fits") if p.is_file())
        matching = [p for p in candidates if _identity(p) == ("LINEARIZER", sensor)]
        if len(matching) != 1:
            found = "none" if not matching else ", ".join(p.name for p in matching)
            raise LinearizerError(f"{path}: {found} of the linearizer files is of {sensor}")
        path = matching[0]
    elif not path.is_file():
        raise LinearizerError(f"{path}: no such linearizer file or folder")
    amps = read_linearizer(path)
    serial = amps.attrs["header"].get("DET_SER")
    if serial is not None and str(serial).strip() != sensor:
        raise LinearizerError(f"{path}: the linearizer of {str(serial).strip()}, not of {sensor}")
    return amp_linearizers(amps)

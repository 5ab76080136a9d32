"""The FITS form of Rubin's PTC calibration (ip_isr ``PhotonTransferCurveDataset``).

An empty primary HDU and one BINTABLE with one row per amplifier: scalars, length-N
vectors (one value per flat pair) and raveled matrices in fixed-width array columns, the
calibration's metadata in the table header. This module knows the columns of schema
version 2.6, writes rows given as mappings of column name to value, reads them back as
NumPy arrays, and fills what files of older versions lack. What the values mean is
:mod:`gpuptc.products.cp_pipe_ptc`'s business.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpuptc.errors import GpuptcError
from gpuptc.formats.fits_tables import fits_column
from gpuptc.formats.writer import atomic_path

__all__ = [
    "CALIBCLS",
    "PTC_SCHEMA",
    "PTC_VERSION",
    "PtcDatasetError",
    "PtcTable",
    "columns_by_kind",
    "is_ptc_dataset",
    "ptc_dataset_sensor",
    "read_ptc_table",
    "write_ptc_table",
]

PTC_VERSION = 2.6
"""The schema version written (ip_isr ``PhotonTransferCurveDataset._VERSION``)."""
PTC_SCHEMA = "Gen3 Photon Transfer Curve"
CALIBCLS = "lsst.ip.isr.ptcDataset.PhotonTransferCurveDataset"

# column -> (kind, first version that has it); kinds: text, int, float (scalars), pairs
# (N floats), mask (N booleans), ids (N x 2 int64), cov (N x M^2), cov_fit (N x Mf^2),
# fit (Mf^2), pars (fit parameters), names (the bad amps' names)
_COLUMNS: dict[str, tuple[str, float]] = {
    "AMPLIFIER_NAME": ("text", 1.0),
    "PTC_FIT_TYPE": ("text", 1.0),
    "COV_MATRIX_SIDE": ("int", 1.0),
    "COV_MATRIX_SIDE_FULL_COV_FIT": ("int", 1.5),
    "INPUT_EXP_ID_PAIRS": ("ids", 1.0),
    "INPUT_EXP_PAIR_MJD_START": ("pairs", 2.2),
    "EXP_ID_MASK": ("mask", 1.0),
    "EXP_ID_ROLLOFF_MASK": ("mask", 2.6),
    "RAW_EXP_TIMES": ("pairs", 1.0),
    "RAW_MEANS": ("pairs", 1.0),
    "RAW_VARS": ("pairs", 1.0),
    "RAW_DELTAS": ("pairs", 2.5),
    "ROW_MEAN_VARIANCE": ("pairs", 1.6),
    "GAIN": ("float", 1.0),
    "GAIN_ERR": ("float", 1.0),
    "GAIN_UNADJUSTED": ("float", 2.0),
    "GAIN_LIST": ("pairs", 2.0),
    "OVERSCAN_MEDIAN_LIST": ("pairs", 2.2),
    "OVERSCAN_MEDIAN": ("float", 2.3),
    "OVERSCAN_MEDIAN_SIGMA": ("float", 2.3),
    "NOISE_LIST": ("pairs", 1.7),
    "NOISE": ("float", 1.0),
    "NOISE_ERR": ("float", 1.0),
    "HIST_VARS": ("pairs", 1.2),
    "HIST_CHI2_DOFS": ("pairs", 1.2),
    "KS_PVALUES": ("pairs", 1.2),
    "PTC_FIT_PARS": ("pars", 1.0),
    "PTC_FIT_PARS_ERROR": ("pars", 1.0),
    "PTC_FIT_CHI_SQ": ("float", 1.0),
    "PTC_TURNOFF": ("float", 1.1),
    "PTC_TURNOFF_SAMPLING_ERROR": ("float", 1.8),
    "PTC_ROLLOFF": ("float", 2.6),
    "PTC_ROLLOFF_ERROR": ("float", 2.6),
    "PTC_ROLLOFF_TAU": ("float", 2.6),
    "PTC_ROLLOFF_TAU_ERROR": ("float", 2.6),
    "A_MATRIX": ("fit", 1.0),
    "B_MATRIX": ("fit", 1.0),
    "NOISE_MATRIX": ("fit", 1.3),
    "BAD_AMPS": ("names", 1.0),
    "PHOTO_CHARGE": ("pairs", 1.0),
    "PHOTO_CHARGE_DELTAS": ("pairs", 2.5),
    "AMP_OFFSETS": ("pairs", 2.0),
    "NPIXEL_COVARIANCES": ("int", 2.4),
    "COVARIANCES": ("cov", 1.0),
    "COVARIANCES_MODEL": ("cov_fit", 1.0),
    "COVARIANCES_SQRT_WEIGHTS": ("cov", 1.0),
    "FINAL_VARS": ("pairs", 1.0),
    "FINAL_MODEL_VARS": ("pairs", 1.0),
    "FINAL_MEANS": ("pairs", 1.0),
}

_HEADER_KEYS = (
    "INSTRUME",
    "RAFTNAME",
    "SLOTNAME",
    "DETECTOR",
    "DET_NAME",
    "DET_SER",
    "FILTER",
    "CALIB_ID",
    "SEQFILE",
    "SEQNAME",
    "SEQCKSUM",
    "CALIBDATE",
)
"""Metadata written where known (besides OBSTYPE, PTC_SCHEMA, PTC_VERSION, PTC_FIT_TYPE,
CALIBCLS, which are always written)."""


class PtcDatasetError(GpuptcError, ValueError):
    """A file that is not a readable PTC dataset; the message names the file and why."""


def columns_by_kind(version: float = PTC_VERSION) -> dict[str, str]:
    """Every column of ``version`` (and earlier) and its kind, in the order written."""
    return {name: kind for name, (kind, since) in _COLUMNS.items() if since <= version}


@dataclass
class PtcTable:
    """The rows and metadata of a PTC dataset file."""

    rows: list[dict[str, Any]]
    """One mapping per amplifier, column name to value (arrays for vectors)."""
    header: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    """Columns the file's version lacks, filled with NaN (or False, or -1)."""

    @property
    def version(self) -> float:
        """PTC_VERSION of the file."""
        return float(self.header["PTC_VERSION"])


AUX_COLUMN_PREFIX = "PTCAUX_"
"""The columns of auxiliary header values per pair (ip_isr's ``auxValues``, version 1.4 on)."""


def _aux(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The rows' auxiliary columns and their kinds: numbers per pair, or texts per pair."""
    names = sorted({name for row in rows for name in row if name.startswith(AUX_COLUMN_PREFIX)})
    kinds = []
    for name in names:
        values = np.asarray(rows[0][name])
        kinds.append((name, "names" if values.dtype.kind in "USO" else "pairs"))
    return kinds


def write_ptc_table(
    path: str | os.PathLike[str],
    rows: Sequence[Mapping[str, Any]],
    header: Mapping[str, Any],
    primary: Mapping[str, Any] | None = None,
) -> Path:
    """Write a PTC dataset file of schema :data:`PTC_VERSION`, atomically.

    Parameters
    ----------
    path : path-like
        Destination.
    rows : sequence of mapping
        One per amplifier, every column of :func:`columns_by_kind` and any auxiliary
        columns (``PTCAUX_<KEYWORD>``, numbers or texts per pair); vectors of the same
        length in every row.
    header : mapping
        Metadata: PTC_FIT_TYPE and the keys of ``_HEADER_KEYS`` that are known.
    primary : mapping, optional
        Primary-header keywords (gpuptc writes ORIGIN).

    Returns
    -------
    pathlib.Path
    """
    from astropy.io import fits

    kinds = columns_by_kind()
    missing = [name for name in kinds if any(name not in row for row in rows)]
    if missing or not rows:
        raise ValueError(f"{path}: rows lack {', '.join(missing) or 'every column'}")
    columns = [fits_column(name, kind, [row[name] for row in rows]) for name, kind in kinds.items()]
    columns += [fits_column(name, kind, [row[name] for row in rows]) for name, kind in _aux(rows)]
    table = fits.BinTableHDU.from_columns(columns)
    metadata = {
        "OBSTYPE": "PTC",
        "PTC_SCHEMA": PTC_SCHEMA,
        "PTC_VERSION": PTC_VERSION,
        "PTC_FIT_TYPE": str(header["PTC_FIT_TYPE"]),
        "CALIBCLS": CALIBCLS,
        **{key: header[key] for key in _HEADER_KEYS if header.get(key) is not None},
    }
    for key, value in metadata.items():  # keys longer than 8 characters as HIERARCH cards
        table.header[key if len(key) <= 8 else f"HIERARCH {key}"] = value
    first = fits.PrimaryHDU()
    for key, value in (primary or {}).items():
        first.header[key] = value
    with atomic_path(path) as temporary:
        fits.HDUList([first, table]).writeto(temporary)
    return Path(path)


def is_ptc_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether the file's first extension says it is a PTC dataset (OBSTYPE = 'PTC')."""
    import fitsio

    try:
        header = fitsio.read_header(str(path), 1)
    except Exception:
        return False
    return str(header.get("OBSTYPE", "")).strip().upper() == "PTC" and "PTC_VERSION" in header


def ptc_dataset_sensor(path: str | os.PathLike[str]) -> str | None:
    """The sensor a PTC dataset belongs to: DET_SER of its table header, else DET_NAME."""
    import fitsio

    header = fitsio.read_header(str(path), 1)
    for key in ("DET_SER", "DET_NAME"):
        if str(header.get(key, "")).strip():
            return str(header[key]).strip()
    return None


def read_ptc_table(path: str | os.PathLike[str]) -> PtcTable:
    """The rows of a PTC dataset file, columns its version lacks filled.

    Raises
    ------
    PtcDatasetError
        If the file cannot be read, has no OBSTYPE = 'PTC' or no PTC_VERSION, or lacks a
        column its version has.
    """
    from astropy.io import fits

    try:
        with open(path, "rb") as handle, fits.open(handle, memmap=False) as hdus:
            if len(hdus) < 2:
                raise PtcDatasetError(f"{path}: not a PTC dataset (no table extension)")
            header = dict(hdus[1].header)
            data = hdus[1].data
            names = [] if data is None else list(data.columns.names)
            records = [] if data is None else _records(data, names)
    except PtcDatasetError:
        raise
    except Exception as exc:
        raise PtcDatasetError(f"{path}: not a readable FITS table ({exc})") from exc
    if str(header.get("OBSTYPE", "")).strip().upper() != "PTC":
        raise PtcDatasetError(f"{path}: not a PTC dataset (OBSTYPE is {header.get('OBSTYPE')!r})")
    if "PTC_VERSION" not in header:
        raise PtcDatasetError(f"{path}: not a PTC dataset (no PTC_VERSION in its header)")
    version = float(header["PTC_VERSION"])
    required = columns_by_kind(version)
    absent = [name for name in required if name not in names]
    if absent or not records:
        what = f"lacks {', '.join(absent)}" if absent else "has no amplifier"
        raise PtcDatasetError(f"{path}: PTC_VERSION {version} table {what}")
    missing = [name for name in columns_by_kind() if name not in required]
    rows = [_filled(_native(record), missing) for record in records]
    return PtcTable(rows, header, missing)


def _records(data: Any, names: list[str]) -> list[dict[str, Any]]:
    """One mapping per row; a zero-width column (no bad amps) is an empty list."""
    columns = {}
    for name in names:
        try:
            column = np.asarray(data[name])
        except IndexError:
            column = np.empty(0)
        if column.shape[:1] != (len(data),):
            column = np.empty((len(data), 0), dtype="U3")
        columns[name] = column
    return [{name: columns[name][k] for name in names} for k in range(len(data))]


def _native(record: Mapping[str, Any]) -> dict[str, Any]:
    row = {}
    for name, value in record.items():
        if isinstance(value, bytes | np.bytes_):
            value = value.decode().strip()
        elif isinstance(value, str):
            value = value.strip()
        elif isinstance(value, np.ndarray) and value.dtype.kind in "SU":
            value = [str(v).strip() for v in np.ravel(value) if str(v).strip()]
        elif isinstance(value, np.ndarray):
            value = np.array(value)
        row[name] = value
    return row


def _filled(row: dict[str, Any], missing: list[str]) -> dict[str, Any]:
    """What a file of an older version lacks: NaN vectors and scalars, False masks, -1."""
    n = len(np.atleast_1d(row["RAW_MEANS"]))
    kinds = columns_by_kind()
    for name in missing:
        kind = kinds[name]
        if kind == "pairs":
            row[name] = np.full(n, np.nan)
        elif kind == "mask":
            row[name] = np.zeros(n, dtype=bool)
        elif kind == "int":
            row[name] = row["COV_MATRIX_SIDE"] if name.endswith("FULL_COV_FIT") else -1
        elif kind == "fit":
            row[name] = np.full_like(np.asarray(row["A_MATRIX"], float), np.nan)
        else:
            row[name] = np.nan
    return row

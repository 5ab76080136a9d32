"""Header-based ingest: find raw files, classify them, pair the flats.

File names carry no meaning: what a file is comes from its primary header only
(IMGTYPE, TESTTYPE, EXPTIME, LSST_NUM, ...). The manifest has one row per input file
and says what became of it (``status``) and why (``reason``).

Statuses
--------
``paired``    a flat in a pair (``pair``, ``member`` set);
``unpaired``  a flat left without a partner (single, third at one exposure time, ...);
``bias``      a bias frame, used for the master bias;
``eotest``    an EOTEST results file (AMPLIFIER_RESULTS), used for the comparison;
``ptc_dataset`` a cp_pipe PTC calibration (OBSTYPE = 'PTC'), used for the comparison;
``ignored``   a readable file with no use here (DARK, FE55, gpuptc's own outputs, ...);
``rejected``  an unusable input: unreadable, missing keywords, duplicate, ...
"""

from __future__ import annotations

import glob
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.config import ExtractConfig
from gpuptc.formats.eotest import AMPLIFIER_RESULTS, sensor_from_eotest_name
from gpuptc.formats.ptc_dataset import is_ptc_dataset, ptc_dataset_sensor
from gpuptc.inputs.remote import InputFiles, is_remote, read_remote_header
from gpuptc.raws.exposure import (
    RawReadError,
    is_fits_signature,
    read_primary_header,
    read_segment_headers,
)
from gpuptc.raws.header import ExposureInfo, exposure_info
from gpuptc.raws.names import c_name, on_disk, printable
from gpuptc.schema import FileStatus

__all__ = [
    "AUX_PREFIX",
    "DEFAULT_PAIRING",
    "EXPTIME_RELATIVE_TOLERANCE",
    "EXPTIME_TOLERANCE",
    "FITS_SUFFIXES",
    "MANIFEST_COLUMNS",
    "MATCH_TYPES",
    "SEQUENCER_KEYS",
    "STATUSES",
    "Inventory",
    "PairFiles",
    "PairingRule",
    "exposure_times_match",
    "find_inputs",
    "flat_pairs",
    "ingest",
    "inventory",
    "manifest_of",
    "pair_flats",
    "pair_header_values",
    "sequencer_changes",
    "summarize",
]

FITS_SUFFIXES: tuple[str, ...] = (".fits", ".fit", ".fz", ".fits.gz", ".fit.gz", ".fits.fz")
"""File-name endings opened when a directory is searched."""

EXPTIME_TOLERANCE = 0.005
"""Exposure-time difference (s) within which two flats always pair (cp_pipe's tolerance)."""

EXPTIME_RELATIVE_TOLERANCE = ExtractConfig.exptime_tolerance
"""Default fraction of the longer exposure time within which two flats pair.

Shutters jitter and exposure times are not round (an LSSTCam BOT flat says EXPTIME
7.83172): two flats of one requested time differ by about a millisecond, 0.1 % at 1 s,
more than a 5 ms tolerance allows from 5 s up. 0.5 % pairs them at every time and never
pairs flats a step of a PTC apart (steps are several per cent); the level check of each
pair (``level_mismatch``) then tests that their fluxes agree."""


def exposure_times_match(
    first: float, second: float, relative: float = EXPTIME_RELATIVE_TOLERANCE
) -> bool:
    """Whether two flats' exposure times pair: within 5 ms, or ``relative`` of the longer.

    Examples
    --------
    >>> exposure_times_match(6.194, 6.194 * 1.001), exposure_times_match(10.0, 12.0)
    (True, False)
    """
    return abs(first - second) <= max(EXPTIME_TOLERANCE, relative * max(first, second))


SEQUENCER_KEYS: tuple[str, ...] = ("SEQNAME", "SEQFILE", "SEQCKSUM")
"""The camera's sequencer, which every exposure of a PTC should share: read from each
file, compared across a sensor's flats (:func:`sequencer_changes`)."""

MATCH_TYPES: tuple[str, ...] = ("TIME", "FLUX", "EXPID")
"""How flats are matched into pairs (cp_pipe's ``matchExposuresType``)."""


@dataclass(frozen=True)
class PairingRule:
    """How flats are matched into pairs, and which header values each file keeps.

    Attributes
    ----------
    match : {'TIME', 'FLUX', 'EXPID'}
        In the camera's exposure order, per sensor and filter: consecutive flats of one
        exposure time (:func:`exposure_times_match`), of one value of ``flux_keyword``
        (exactly, as cp_pipe), or simply two by two.
    exptime_tolerance : float
        Fraction of the longer exposure time within which two flats pair (``TIME``).
    flux_keyword : str
        The primary-header keyword ``FLUX`` pairs by.
    header_keys : tuple of str
        Primary-header keywords whose values each file keeps (``header_values``).

    Examples
    --------
    >>> PairingRule(match="FLUX").keys
    ('CCOBFLUX', 'SEQNAME', 'SEQFILE', 'SEQCKSUM')
    """

    match: str = "TIME"
    exptime_tolerance: float = EXPTIME_RELATIVE_TOLERANCE
    flux_keyword: str = "CCOBFLUX"
    header_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.match not in MATCH_TYPES:
            raise ValueError(f"unknown exposure matching {self.match!r}: one of {MATCH_TYPES}")

    @classmethod
    def of(cls, extract: ExtractConfig) -> PairingRule:
        """The rule a preset's ``[extract]`` section sets."""
        return cls(
            extract.match_exposures,
            extract.exptime_tolerance,
            extract.match_flux_keyword,
            tuple(extract.auxiliary_header_keys),
        )

    @property
    def keys(self) -> tuple[str, ...]:
        """The header keywords read from each file.

        The flux's (``FLUX``), the auxiliary ones and the sequencer's
        (:data:`SEQUENCER_KEYS`).
        """
        flux = (self.flux_keyword,) if self.match == "FLUX" else ()
        return tuple(dict.fromkeys((*flux, *self.header_keys, *SEQUENCER_KEYS)))


DEFAULT_PAIRING = PairingRule()
"""cp_pipe's pairing: by exposure time."""

STATUSES: tuple[str, ...] = FileStatus.ALL

MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",
    "sensor",
    "vendor",
    "raftbay",
    "ccdslot",
    "imgtype",
    "testtype",
    "exptime",
    "mondiode",
    "dayobs",
    "seqnum",
    "mjd",
    "filter",
    "obsid",
    "pair",
    "member",
    "status",
    "reason",
    "header_values",
)

_PTC_TESTTYPES = ("FLAT", "PTC")


NOT_REGULAR = "not a regular file (a named pipe, socket or device): not opened"
"""Why an input that is neither a file nor a folder is passed over."""


def _is_fits_name(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in FITS_SUFFIXES)


def _inside(path: Path, directories: Sequence[Path]) -> bool:
    return any(path == d or d in path.parents for d in directories)


def find_inputs(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> tuple[list[Path], list[Path], list[tuple[str, str]]]:
    """Expand files, directories (recursively) and globs into candidate FITS files.

    Parameters
    ----------
    inputs : iterable of path-like
        Files, directories or glob patterns.
    exclude : iterable of path-like
        Directories never searched (gpuptc's own output directory).

    Returns
    -------
    candidates : list of pathlib.Path
        Files to open, each once (by resolved path), in a stable order.
    skipped : list of pathlib.Path
        Non-FITS files met while searching directories.
    missing : list of (str, str)
        Inputs that matched nothing or are not regular files (named pipes, sockets,
        devices: never opened, since opening a pipe waits for a writer), with the reason.
    """
    finder = _Finder([Path(p).resolve() for p in exclude])
    for item in inputs:
        finder.item(os.fspath(item))
    missing = list(dict.fromkeys(finder.missing))  # an input given twice: listed once
    return finder.candidates, finder.skipped, missing


class _Finder:
    """What :func:`find_inputs` has found so far (candidates once each, by resolved path)."""

    def __init__(self, excluded: list[Path]) -> None:
        self.excluded = excluded
        self.seen: set[Path] = set()
        self.candidates: list[Path] = []
        self.skipped: list[Path] = []
        self.missing: list[tuple[str, str]] = []

    def item(self, text: str) -> None:
        """One input as given: a folder, a file or a pattern."""
        path = Path(text)
        if path.is_dir():
            if not _inside(path.resolve(), self.excluded):
                self.walk(path)
        elif path.is_file():
            if _is_fits_name(path) or is_fits_signature(path):
                self.add(path)
            else:
                self.missing.append((text, "not a FITS file (no FITS or gzip signature)"))
        elif path.exists():
            self.missing.append((text, NOT_REGULAR))
        elif any(ch in text for ch in "*?["):
            self.pattern(text)
        else:
            self.missing.append((text, "no such file or directory"))

    def pattern(self, text: str) -> None:
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            self.missing.append((text, "pattern matched no file"))
        for match in matches:
            path = Path(match)
            if path.is_dir():
                self.walk(path)
            elif not path.is_file():
                self.missing.append((match, NOT_REGULAR))
            elif _is_fits_name(path) or is_fits_signature(path):
                self.add(path)
            else:
                self.skipped.append(path)

    def walk(self, directory: Path) -> None:
        """Every file under ``directory``; symbolic-link loops cut, excluded folders left."""
        visited: set[tuple[int, int]] = set()
        for root, dirs, files in os.walk(directory, followlinks=True):
            stat = os.stat(root)
            if (stat.st_dev, stat.st_ino) in visited:
                dirs[:] = []
                continue
            visited.add((stat.st_dev, stat.st_ino))
            here = Path(root)
            dirs[:] = sorted(d for d in dirs if not _inside((here / d).resolve(), self.excluded))
            for name in sorted(files):
                path = here / name
                if not _is_fits_name(path):
                    if not name.startswith("."):
                        self.skipped.append(path)
                elif path.is_file():  # follows links; False for pipes, sockets, devices
                    self.add(path)
                else:
                    self.missing.append((str(path), NOT_REGULAR))

    def add(self, path: Path) -> None:
        """A regular file, once (by resolved path)."""
        real = path.resolve()
        if real not in self.seen:
            self.seen.add(real)
            self.candidates.append(path)


def _kept_values(primary: Mapping[str, Any], keys: Sequence[str]) -> str:
    """The numbers and texts of ``keys`` in a primary header, as JSON."""
    kept = {
        key: primary[key]
        for key in keys
        if key in primary
        and isinstance(primary[key], int | float | str)
        and not isinstance(primary[key], bool)
    }
    return json.dumps(kept, sort_keys=True)


def _row(path: Path | str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(MANIFEST_COLUMNS)
    row["path"] = printable(path)  # a name that is not UTF-8 as \xNN escapes
    row.update(values)
    return row


def _info_values(info: ExposureInfo) -> dict[str, Any]:
    return {
        "sensor": info.sensor,
        "vendor": info.vendor,
        "raftbay": info.raftbay,
        "ccdslot": info.ccdslot,
        "imgtype": info.imgtype,
        "testtype": info.testtype,
        "exptime": info.exptime,
        "mondiode": info.mondiode,
        "dayobs": info.dayobs,
        "seqnum": info.seqnum,
        "mjd": info.mjd,
        "filter": info.filter,
        "obsid": info.obsid,
    }


def _eotest_sensor(path: Path, primary: dict[str, Any]) -> str | None:
    import fitsio

    if primary.get("LSST_NUM"):
        return str(primary["LSST_NUM"]).strip()
    with c_name(path) as name:
        header = fitsio.read_header(name, AMPLIFIER_RESULTS)
    if header.get("LSST_NUM"):
        return str(header["LSST_NUM"]).strip()
    return sensor_from_eotest_name(path)


def _has_amplifier_results(path: Path) -> bool:
    import fitsio

    try:
        with c_name(path) as name, fitsio.FITS(name) as fits_file:
            return AMPLIFIER_RESULTS in fits_file
    except Exception:
        return False


_GUIDER_KEYS = ("N_STAMPS", "ROICOLS", "ROIROWS", "ROISEG")
"""Keywords of a guider-mode file's primary header: the camera's guiders read stamps of a
region of interest, not whole segments."""


def _guider_mode(primary: Mapping[str, Any]) -> str | None:
    """Why a guider-mode file is not measured; None for any other file."""
    if not any(key in primary for key in _GUIDER_KEYS):
        return None
    stamps, segment = primary.get("N_STAMPS", "?"), primary.get("ROISEG", "?")
    size = f"{primary.get('ROICOLS', '?')} x {primary.get('ROIROWS', '?')}"
    return (
        f"a guider-mode file ({stamps} stamps of {size} pixels of {segment}, ROISEG and "
        "N_STAMPS in its header): no whole segments to measure"
    )


def _not_camera_segments(primary: Mapping[str, Any], info: ExposureInfo) -> str | None:
    """Why a file holds no camera segments to measure; None for any other file.

    Written by gpuptc, or a guider's stamps.
    """
    if (info.origin or "").lower() == "gpuptc":
        return "written by gpuptc (ORIGIN = 'gpuptc')"
    return _guider_mode(primary)


def _primary_header(path: Path | str) -> dict[str, Any]:
    if is_remote(path):
        return read_remote_header(str(path))
    return read_primary_header(path)


def _vendor_from_segments(path: Path | str) -> str:
    """The vendor from the segments' geometry (a remote file is fetched for it)."""
    with InputFiles([str(path)]) as files:
        return read_segment_headers(files.local(str(path)))[1].vendor


def classify_file(path: Path | str, header_keys: Sequence[str] = ()) -> dict[str, Any]:
    """One manifest row for one FITS file, from its headers only.

    Parameters
    ----------
    path : pathlib.Path or str
        The file, or the URI of a remote one (``s3://...``: its primary header is read
        with ranged reads, see :mod:`gpuptc.inputs.remote`).
    header_keys : sequence of str
        Primary-header keywords whose values the row keeps (``header_values``: JSON of
        those present with a number or text).

    Returns
    -------
    dict
        Manifest columns; ``status`` is ``bias``, ``ignored``, ``eotest``, ``rejected``,
        or ``None`` for a flat still to be paired.
    """
    try:
        primary = _primary_header(path)
    except RawReadError as exc:
        return _row(path, status=FileStatus.REJECTED, reason=exc.reason)
    info = exposure_info(primary)
    values = _info_values(info)
    if header_keys:
        values["header_values"] = _kept_values(primary, header_keys)
    passed_over = _not_camera_segments(primary, info)
    if passed_over:
        return _row(path, **values, status=FileStatus.IGNORED, reason=passed_over)
    if info.imgtype is None:
        if _has_amplifier_results(path):
            values["sensor"] = _eotest_sensor(path, primary)
            return _row(path, **values, status=FileStatus.EOTEST, reason=None)
        if is_ptc_dataset(path):
            values["sensor"] = ptc_dataset_sensor(path)
            return _row(path, **values, status=FileStatus.PTC_DATASET, reason=None)
        return _row(
            path,
            **values,
            status=FileStatus.REJECTED,
            reason="no IMGTYPE keyword in the primary header, no AMPLIFIER_RESULTS table and "
            "no PTC dataset (OBSTYPE = 'PTC')",
        )
    if info.imgtype not in ("FLAT", "BIAS"):
        return _row(
            path,
            **values,
            status=FileStatus.IGNORED,
            reason=f"IMGTYPE {info.imgtype} is not used for PTCs",
        )
    if info.imgtype == "FLAT" and info.testtype and info.testtype not in _PTC_TESTTYPES:
        return _row(
            path,
            **values,
            status=FileStatus.IGNORED,
            reason=f"TESTTYPE {info.testtype} is not a PTC flat (FLAT or PTC)",
        )
    if info.sensor is None:
        return _row(
            path,
            **values,
            status=FileStatus.REJECTED,
            reason="no LSST_NUM, nor RAFTBAY and CCDSLOT",
        )
    if info.imgtype == "FLAT" and info.exptime is None:
        return _row(
            path, **values, status=FileStatus.REJECTED, reason="flat without a valid EXPTIME"
        )
    if info.vendor is None:
        try:
            values["vendor"] = _vendor_from_segments(path)
        except RawReadError as exc:
            return _row(path, **values, status=FileStatus.REJECTED, reason=exc.reason)
    status = FileStatus.BIAS if info.imgtype == "BIAS" else None
    return _row(path, **values, status=status, reason=None)


def _exposure_order(flats: pd.DataFrame) -> pd.DataFrame:
    """Flats in the camera's exposure order: DAYOBS, SEQNUM; else MJD; else path.

    DAYOBS and SEQNUM make cp_pipe's exposure ids. The sequence number, not the clock: a
    flat whose DATE-OBS is wrong still sits between the exposures taken before and after
    it.
    """
    if flats["dayobs"].notna().all() and flats["seqnum"].notna().all():
        keys = ["dayobs", "seqnum", "path"]
    elif flats["mjd"].notna().all():
        keys = ["mjd", "path"]
    else:
        keys = ["dayobs", "seqnum", "mjd", "path"]
    return flats.sort_values(keys, na_position="last", kind="stable")


def _header_values(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Each row's values of primary-header keywords (None where it has none), parsed once."""
    texts = frame["header_values"] if "header_values" in frame else [None] * len(frame)
    parsed = [json.loads(t) if isinstance(t, str) else {} for t in texts]
    columns = {key: [found.get(key) for found in parsed] for key in keys}
    return pd.DataFrame(columns, index=frame.index, dtype=object)


def sequencer_changes(manifest: pd.DataFrame) -> dict[str, dict[str, list[Any]]]:
    """Per sensor, the sequencer keywords whose value changes between its paired flats.

    Parameters
    ----------
    manifest : pandas.DataFrame
        A run's manifest (``header_values`` holds :data:`SEQUENCER_KEYS`).

    Returns
    -------
    dict
        ``{sensor: {keyword: [values in exposure order, each once]}}`` for the sensors
        whose flats disagree; empty when all agree (or none says).

    Examples
    --------
    >>> manifest = pd.DataFrame({"sensor": "S", "status": "paired", "dayobs": 1,
    ...     "seqnum": [1, 2], "mjd": 0.0, "path": ["a", "b"],
    ...     "header_values": ['{"SEQFILE": "v1.seq"}', '{"SEQFILE": "v2.seq"}']})
    >>> sequencer_changes(manifest)
    {'S': {'SEQFILE': ['v1.seq', 'v2.seq']}}
    """
    if "header_values" not in manifest:
        return {}
    flats = manifest[manifest["status"] == FileStatus.PAIRED]
    values = _header_values(flats, SEQUENCER_KEYS)
    changes: dict[str, dict[str, list[Any]]] = {}
    for sensor, mine in flats.groupby("sensor", sort=True):
        order = _exposure_order(mine).index
        for key in SEQUENCER_KEYS:
            seen = list(dict.fromkeys(values[key][order].dropna()))
            if len(seen) > 1:
                changes.setdefault(str(sensor), {})[key] = seen
    return changes


AUX_PREFIX = "aux_"
"""The pairs table's columns of auxiliary header values: ``aux_<KEYWORD>``."""


def pair_header_values(
    pairs: pd.DataFrame, manifest: pd.DataFrame, keys: Sequence[str]
) -> pd.DataFrame:
    """Each pair's values of primary-header keywords: its first flat's, as cp_pipe keeps them.

    Parameters
    ----------
    pairs : pandas.DataFrame
        One sensor's pairs (``pair``, ``file1``).
    manifest : pandas.DataFrame
        The manifest of its files, with ``header_values`` (:class:`PairingRule`'s
        ``header_keys``).
    keys : sequence of str
        The keywords.

    Returns
    -------
    pandas.DataFrame
        By pair, a column ``aux_<KEYWORD>`` per keyword: floats (NaN where the flat has
        none) where every value found is a number, else text (empty where none).

    Examples
    --------
    >>> manifest = pd.DataFrame({"path": ["a", "b"],
    ...     "header_values": ['{"TEMP6": -101.5}', '{}']})
    >>> pairs = pd.DataFrame({"pair": [0, 1], "file1": ["a", "b"]})
    >>> pair_header_values(pairs, manifest, ["TEMP6"])["aux_TEMP6"].tolist()
    [-101.5, nan]
    """
    first = pairs.drop_duplicates("pair").set_index("pair")["file1"]
    rows = manifest.drop_duplicates("path").set_index("path")
    by_key = _header_values(rows, keys)
    found = {}
    for key in keys:
        by_path = by_key[key]
        values = [by_path.get(path) for path in first]
        numbers = all(isinstance(v, int | float) for v in values if v is not None)
        found[f"{AUX_PREFIX}{key}"] = (
            [math.nan if v is None else float(v) for v in values]
            if numbers
            else ["" if v is None else str(v) for v in values]
        )
    return pd.DataFrame(found, index=first.index)


def _matcher(ordered: pd.DataFrame, rule: PairingRule) -> tuple[Callable[[int, int], bool], Any]:
    """Whether the ``i``-th and ``j``-th flats match, and what each is matched by."""
    if rule.match == "EXPID":
        numbers = np.arange(len(ordered))
        return (lambda i, j: True), numbers
    if rule.match == "FLUX":
        flux = list(_header_values(ordered, [rule.flux_keyword])[rule.flux_keyword])
        return (lambda i, j: flux[i] is not None and flux[i] == flux[j]), flux
    exptimes = ordered["exptime"].to_numpy(dtype=float)

    def same(i: int, j: int) -> bool:
        return exposure_times_match(exptimes[i], exptimes[j], rule.exptime_tolerance)

    return same, exptimes


def _runs(count: int, same: Callable[[int, int], bool]) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of each run of consecutive flats that match the run's first."""
    start = 0
    while start < count:
        stop = start + 1
        while stop < count and same(start, stop):
            stop += 1
        yield start, stop
        start = stop


def _unpaired_reason(rule: PairingRule, values: Any, start: int, stop: int, length: int) -> str:
    """Why the odd flat of the run ``start:stop`` (of ``length`` flats) has no partner."""
    name, unit = {"TIME": ("EXPTIME", " s"), "FLUX": (rule.flux_keyword, "")}.get(
        rule.match, ("exposure", "")
    )
    if rule.match == "EXPID":
        return "the last of an odd number of flats (pairs by exposure id, two by two)"
    shown = [f"{values[i]:g}{unit}" if values[i] is not None else "none" for i in range(length)]
    if rule.match == "FLUX" and values[start] is None:
        return f"flat without the {name} keyword that pairs by it"
    if stop - start > 1:
        return (
            f"extra flat at {name} {shown[start]}: {stop - start} consecutive flats at this "
            "value, pairs are taken in exposure order"
        )
    around = [shown[i] for i in (start - 1, stop) if 0 <= i < length]
    detail = f"; neighbouring flats have {name} {' and '.join(around)}" if around else ""
    return f"single flat at {name} {shown[start]}, no partner{detail}"


def pair_flats(manifest: pd.DataFrame, *, pairing: PairingRule = DEFAULT_PAIRING) -> pd.DataFrame:
    """Pair consecutive matching flats, per sensor and filter.

    Flats with ``status`` None are considered. Within a sensor and filter, in the camera's
    exposure order, runs of consecutive flats that match (``pairing``: one exposure time,
    one flux keyword value, or any two) are cut into pairs; a run of one or the odd flat
    of a longer run (a third exposure at one time) is left ``unpaired`` with the reason.
    ``pair`` numbers pairs within each sensor in exposure order.

    Parameters
    ----------
    manifest : pandas.DataFrame
        Rows from :func:`classify_file`.
    pairing : PairingRule
        How flats match (cp_pipe's TIME matching by default).

    Returns
    -------
    pandas.DataFrame
        The manifest with ``pair``, ``member``, ``status`` and ``reason`` filled for flats.
    """
    out = manifest.copy()
    pending = out["status"].isna() & (out["imgtype"] == "FLAT")
    pairs: list[tuple[str, Any, Any]] = []  # (sensor, first row index, second row index)
    for (sensor, _), group in out[pending].groupby(["sensor", "filter"], dropna=False, sort=True):
        ordered = _exposure_order(group)
        index = list(ordered.index)
        same, values = _matcher(ordered, pairing)
        for start, stop in _runs(len(index), same):
            run = index[start:stop]
            pairs.extend((str(sensor), run[k], run[k + 1]) for k in range(0, len(run) - 1, 2))
            if len(run) % 2:
                out.loc[run[-1], "status"] = FileStatus.UNPAIRED
                out.loc[run[-1], "reason"] = _unpaired_reason(
                    pairing, values, start, stop, len(index)
                )
    _number_pairs(out, pairs)
    return out


def _number_pairs(out: pd.DataFrame, pairs: list[tuple[str, Any, Any]]) -> None:
    """Mark the pairs' flats ``paired`` and number each sensor's pairs in exposure order."""
    for sensor in sorted({p[0] for p in pairs}):
        mine = [p for p in pairs if p[0] == sensor]
        order = _exposure_order(out.loc[[p[1] for p in mine]])
        rank = {idx: n for n, idx in enumerate(order.index)}
        for _, first, second in mine:
            out.loc[[first, second], "status"] = FileStatus.PAIRED
            out.loc[[first, second], "pair"] = rank[first]
            out.loc[first, "member"] = 1
            out.loc[second, "member"] = 2


def _mark_duplicates(frame: pd.DataFrame) -> None:
    """Reject copies of an exposure (same sensor and OBSID, or time) but the one kept.

    The copy kept is the largest file, the first listed among equals: a copy cut short
    (an interrupted transfer) never wins over the complete file, whatever the names.
    """
    open_rows = frame["status"].isna() | (frame["status"] == FileStatus.BIAS)
    raw = frame["imgtype"].isin(["FLAT", "BIAS"]) & open_rows
    copies: dict[tuple[Any, ...], list[Any]] = {}
    for idx in frame.index[raw]:
        row = frame.loc[idx]
        if row["obsid"]:
            key: tuple[Any, ...] = (row["sensor"], row["obsid"])
        else:
            key = (row["sensor"], row["dayobs"], row["seqnum"], row["mjd"], row["exptime"])
        copies.setdefault(key, []).append(idx)
    for rows in copies.values():
        if len(rows) < 2:
            continue  # sizes are read for exposures with copies only
        kept = max(rows, key=lambda idx: _size(frame.loc[idx, "path"]))  # the first of equals
        for idx in rows:
            if idx != kept:
                frame.loc[idx, "status"] = FileStatus.REJECTED
                frame.loc[idx, "reason"] = (
                    f"duplicate of {frame.loc[kept, 'path']} (same sensor and exposure; the "
                    "larger copy is kept)"
                )


def _size(path: str) -> int:
    """A local file's size in bytes; -1 where it cannot be known (a URI, a vanished file)."""
    try:
        return os.stat(on_disk(path)).st_size
    except (OSError, ValueError):
        return -1


def _resolve_eotest_sensors(frame: pd.DataFrame) -> None:
    sensors = sorted(
        set(
            frame.loc[
                frame["status"].isin([FileStatus.PAIRED, FileStatus.UNPAIRED, FileStatus.BIAS]),
                "sensor",
            ]
        )
    )
    for idx in frame.index[(frame["status"] == FileStatus.EOTEST) & frame["sensor"].isna()]:
        if len(sensors) == 1:
            frame.loc[idx, "sensor"] = sensors[0]
            frame.loc[idx, "reason"] = "sensor taken from the run's only sensor"
        else:
            frame.loc[idx, "status"] = FileStatus.REJECTED
            frame.loc[idx, "reason"] = (
                "EOTEST results file names no sensor (no LSST_NUM, no '<sensor>_eotest_results' "
                f"name) and the inputs hold {len(sensors)} sensors"
            )


def ingest(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    exclude: Iterable[str | os.PathLike[str]] = (),
    progress: Callable[[int, int], None] | None = None,
    pairing: PairingRule = DEFAULT_PAIRING,
) -> pd.DataFrame:
    """Build the manifest of a set of inputs, reading primary headers only.

    Parameters
    ----------
    inputs : path-like or iterable of path-like
        Files, directories (searched recursively, symbolic-link loops are cut) and glob
        patterns.
    exclude : iterable of path-like
        Directories never searched, such as the output directory.
    progress : callable, optional
        Called as ``progress(done, total)`` while headers are read.
    pairing : PairingRule
        How flats pair (by exposure time within 5 ms or
        :data:`EXPTIME_RELATIVE_TOLERANCE` of the longer, by default) and which header
        values each file keeps (``header_values``, JSON).

    Returns
    -------
    pandas.DataFrame
        One row per input file with the columns of :data:`MANIFEST_COLUMNS`, sorted by
        sensor, then time (the ``manifest`` of :func:`inventory`, which also lists the
        non-FITS files met in directories).

    Examples
    --------
    The raws of a small simulated sensor in ``raw_dir`` (:func:`gpuptc.simulate`: 6 flat
    pairs, 3 biases, its EOTEST results and two Parquet tables of truth):

    >>> manifest = ingest(raw_dir)
    >>> manifest.status.value_counts().to_dict()
    {'paired': 12, 'bias': 3, 'eotest': 1}
    >>> manifest[manifest.status == "paired"].groupby("sensor").pair.nunique().to_dict()
    {'E2V-CCD250-101': 6}
    >>> len(inventory(raw_dir).skipped)  # the Parquet tables: not FITS, never opened
    2
    """
    return inventory(inputs, exclude=exclude, progress=progress, pairing=pairing).manifest


@dataclass(frozen=True)
class Inventory:
    """What ingesting found: the manifest, and what it passed over on the way.

    Attributes
    ----------
    manifest : pandas.DataFrame
        One row per input file (:data:`MANIFEST_COLUMNS`); see :func:`ingest`.
    skipped : tuple of pathlib.Path
        Files met in directories that are not FITS files (never opened).
    queries : tuple of dict
        The provenance of each data-repository query the manifest's raws came from.
    """

    manifest: pd.DataFrame
    skipped: tuple[Path, ...] = ()
    queries: tuple[dict[str, Any], ...] = ()

    @classmethod
    def joined(cls, parts: Sequence[Inventory]) -> Inventory:
        """Several inventories as one (manifests concatenated)."""
        if len(parts) == 1:
            return parts[0]
        manifest = pd.concat([part.manifest for part in parts], ignore_index=True)
        skipped = tuple(path for part in parts for path in part.skipped)
        return cls(manifest, skipped, tuple(q for part in parts for q in part.queries))


def inventory(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    exclude: Iterable[str | os.PathLike[str]] = (),
    progress: Callable[[int, int], None] | None = None,
    pairing: PairingRule = DEFAULT_PAIRING,
) -> Inventory:
    """:func:`ingest`'s manifest with the non-FITS files it skipped (same parameters)."""
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    candidates, skipped, missing = find_inputs(inputs, exclude=exclude)
    rows = [_row(text, status=FileStatus.REJECTED, reason=reason) for text, reason in missing]
    for done, path in enumerate(candidates, 1):
        rows.append(classify_file(path, pairing.keys))
        if progress:
            progress(done, len(candidates))
    return Inventory(manifest_of(rows, pairing=pairing), tuple(skipped))


def manifest_of(
    rows: Iterable[Mapping[str, Any]], *, pairing: PairingRule = DEFAULT_PAIRING
) -> pd.DataFrame:
    """The manifest of classified files (:func:`classify_file` rows), as :func:`ingest` gives it.

    Duplicates marked, flats paired, columns typed, rows sorted; columns beyond
    :data:`MANIFEST_COLUMNS` in the rows are kept.
    """
    rows = list(rows)
    extra = [c for c in dict.fromkeys(k for row in rows for k in row) if c not in MANIFEST_COLUMNS]
    frame = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, *extra])
    frame = frame.astype({"exptime": float, "mondiode": float, "mjd": float})
    _mark_duplicates(frame)
    frame = pair_flats(frame, pairing=pairing)
    _resolve_eotest_sensors(frame)
    frame["seqnum"] = frame["seqnum"].astype("Int64")
    frame["pair"] = frame["pair"].astype("Int64")
    frame["member"] = frame["member"].astype("Int64")
    frame["status"] = frame["status"].astype(str)
    return frame.sort_values(
        ["sensor", "mjd", "dayobs", "seqnum", "path"], na_position="last", kind="stable"
    ).reset_index(drop=True)


@dataclass(frozen=True)
class PairFiles:
    """The two files of one flat pair and what the pair is known by.

    Attributes
    ----------
    pair : int
        The pair's index within its sensor, in time order.
    exptime, mjd : float
        Exposure time (s) and MJD of the first flat.
    file1, file2 : str
        The two flats.
    """

    pair: int
    exptime: float
    mjd: float
    file1: str
    file2: str

    @property
    def paths(self) -> tuple[str, str]:
        """Both files, first flat first."""
        return self.file1, self.file2


def flat_pairs(manifest: pd.DataFrame, sensor: str) -> list[PairFiles]:
    """The paired flats of one sensor of a manifest, in pair order."""
    rows = manifest[(manifest["sensor"] == sensor) & (manifest["status"] == FileStatus.PAIRED)]
    pairs = []
    for number, group in rows.groupby("pair", sort=True):
        group = group.sort_values("member")
        first, second = group.iloc[0], group.iloc[1]
        pairs.append(
            PairFiles(
                int(number),
                float(first["exptime"]),
                float(first["mjd"]),
                first["path"],
                second["path"],
            )
        )
    return pairs


def summarize(manifest: pd.DataFrame) -> pd.DataFrame:
    """Per-sensor counts of a manifest.

    Parameters
    ----------
    manifest : pandas.DataFrame
        From :func:`ingest`.

    Returns
    -------
    pandas.DataFrame
        One row per sensor (``'(unknown)'`` for files without one): vendor, flats,
        pairs, unpaired, biases, eotest, ignored, rejected.
    """
    frame = manifest.assign(sensor=manifest["sensor"].fillna("(unknown)"))
    rows = []
    for sensor, group in frame.groupby("sensor", sort=True):
        status = group["status"]
        vendors = sorted(v for v in group["vendor"].dropna().unique())
        rows.append(
            {
                "sensor": sensor,
                "vendor": ",".join(vendors) or "-",
                "flats": int((group["imgtype"] == "FLAT").sum()),
                "pairs": int(group.loc[status == FileStatus.PAIRED, "pair"].nunique()),
                "unpaired": int((status == FileStatus.UNPAIRED).sum()),
                "biases": int((status == FileStatus.BIAS).sum()),
                "eotest": int((status == FileStatus.EOTEST).sum()),
                "ignored": int((status == FileStatus.IGNORED).sum()),
                "rejected": int((status == FileStatus.REJECTED).sum()),
            }
        )
    columns = ["sensor", "vendor", "flats", "pairs", "unpaired", "biases", "eotest", "ignored"]
    return pd.DataFrame(rows, columns=[*columns, "rejected"]).astype(
        {c: np.int64 for c in [*columns[2:], "rejected"]}
    )

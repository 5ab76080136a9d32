"""The camera's photodiode readings of an exposure, and the charge they integrate to.

LSSTCam writes each flat's photodiode current beside its raw files as
``Photodiode_Readings_<DAYOBS>_<SEQNUM>.txt``: two columns separated by white space, time
(s) and current (A), no header. The charge of an exposure is the integral of that current,
by one of the four methods Rubin's ISR offers (its ``PhotodiodeCalib.integrate``), which
gpuptc reproduces to the last bit on the camera's own file (``tests/test_photodiode.py``):

- ``DIRECT_SUM``: the trapezoid rule over every sample, as read (no scale, no baseline);
- ``TRIMMED_SUM``: the scaled current less its baseline (the 3-sigma clipped mean of the
  samples below a fifth of the current's range), by the trapezoid rule over every sample;
- ``CHARGE_SUM``: for meters that report the charge of each interval: each interval's
  charge less the background (the charge per second outside the signal, two samples of
  margin before it and one after), summed;
- ``MEAN``: the scaled mean current times the exposure time.

A Rubin data repository holds the same readings as each exposure's ``photodiode`` dataset:
a FITS file whose first extension is a table of the samples (ip_isr's ``PhotodiodeCalib``
writes ``TIME`` and ``CURRENT``; the electrometer's own files, as ingested, ``Elapsed Time``
or ``RNUM`` and ``Signal``), read by :func:`read_photodiode_table`.

The current scale (``current_scale``) turns the meter's sign into a positive charge: cp_pipe
uses -1 for the camera's meters; this file's current is positive already.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.config import INTEGRATION_METHODS

__all__ = [
    "INTEGRATION_METHODS",
    "PhotodiodeReadings",
    "exposure_charge",
    "flat_charges",
    "integrate",
    "mean_charges",
    "pair_charges",
    "pair_monitor_currents",
    "photodiode_file_name",
    "read_photodiode",
    "read_photodiode_table",
    "read_readings",
    "readings_location",
]


_FILE_NAME = re.compile(r"^Photodiode_Readings_(\d+)_(\d+)\.txt$")


@dataclass(frozen=True)
class PhotodiodeReadings:
    """One exposure's photodiode readings.

    Attributes
    ----------
    time : numpy.ndarray
        Sample times (s).
    current : numpy.ndarray
        The current at each (A, the meter's sign).
    dayobs, seqnum : int or None
        The exposure's observing day and sequence number (from the file's name), where
        known.
    """

    time: np.ndarray
    current: np.ndarray
    dayobs: int | None = None
    seqnum: int | None = None


def photodiode_file_name(dayobs: int | str, seqnum: int | str) -> str:
    """The readings' file name of an exposure, as the camera writes it.

    Examples
    --------
    >>> photodiode_file_name(20211212, 310)
    'Photodiode_Readings_20211212_000310.txt'
    """
    return f"Photodiode_Readings_{int(dayobs)}_{int(seqnum):06d}.txt"


def read_photodiode(path: str | Path) -> PhotodiodeReadings:
    """Read a camera photodiode file (two columns: time in s, current in A).

    Parameters
    ----------
    path : path-like
        ``Photodiode_Readings_<DAYOBS>_<SEQNUM>.txt``.

    Returns
    -------
    PhotodiodeReadings

    Raises
    ------
    ValueError
        When the name is not a readings file's, or the content is not two columns of
        numbers with at least two samples, times increasing (the message names the file).
    """
    path = Path(path)
    named = _FILE_NAME.match(path.name)
    if named is None:
        raise ValueError(
            f"{path}: not a photodiode readings file (Photodiode_Readings_<DAYOBS>_<SEQNUM>.txt)"
        )
    try:
        table = np.loadtxt(path, dtype=float, ndmin=2)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: unreadable photodiode readings ({exc})") from exc
    if table.shape[1] != 2 or table.shape[0] < 2:
        raise ValueError(
            f"{path}: photodiode readings need two columns and two samples, found {table.shape}"
        )
    time, current = _checked(path, table[:, 0], table[:, 1])
    return PhotodiodeReadings(time, current, int(named.group(1)), int(named.group(2)))


_TIME_COLUMNS = ("TIME", "Elapsed Time", "RNUM")
"""Where a readings table keeps its times; the last one present wins, as in Rubin's reader."""
_CURRENT_COLUMNS = ("CURRENT", "Signal")


def read_photodiode_table(path: str | Path) -> PhotodiodeReadings:
    """Read the readings of a repository's ``photodiode`` dataset (a FITS table).

    Parameters
    ----------
    path : path-like
        The dataset's file: the samples in its first extension, times in ``TIME`` (or the
        electrometer's ``Elapsed Time`` or ``RNUM``), currents in ``CURRENT`` (or ``Signal``).

    Returns
    -------
    PhotodiodeReadings
        With the header's ``DAY_OBS`` and ``SEQNUM`` where it has them.

    Raises
    ------
    ValueError
        When the file is not a FITS table of readings, or its samples are unusable (the
        message names the file).
    """
    from astropy.utils.exceptions import AstropyWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", AstropyWarning)  # a damaged file: say so
            time, current, header = _samples(path)
    except (OSError, IndexError, TypeError, ValueError, AstropyWarning) as exc:
        raise ValueError(f"{path}: unreadable photodiode readings ({exc})") from exc
    if len(time) < 2:
        raise ValueError(f"{path}: photodiode readings need two samples, found {len(time)}")
    time, current = _checked(path, time, current)
    return PhotodiodeReadings(
        time, current, _header_integer(header, "DAY_OBS"), _header_integer(header, "SEQNUM")
    )


def _samples(path: str | Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """The time and current columns of a readings table, and its header."""
    from astropy.io import fits

    with fits.open(path) as hdus:
        table, header = hdus[1].data, hdus[1].header
        names = [] if table is None else list(table.columns.names)
        times = [c for c in _TIME_COLUMNS if c in names]
        currents = [c for c in _CURRENT_COLUMNS if c in names]
        if not times or not currents:
            raise ValueError(f"no time and current columns (found {names})")
        time = np.array(table[times[-1]], dtype=float)
        current = np.array(table[currents[-1]], dtype=float)
        return time, current, header.copy()


def read_readings(path: str | Path) -> PhotodiodeReadings:
    """Read photodiode readings: the camera's text file, or a repository's FITS table."""
    if str(path).endswith(".txt"):
        return read_photodiode(path)
    return read_photodiode_table(path)


def _checked(path: object, time: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The samples, or why they cannot be integrated."""
    if not (np.isfinite(time).all() and np.isfinite(current).all() and (np.diff(time) > 0).all()):
        raise ValueError(
            f"{path}: photodiode readings with non-finite values or times not increasing"
        )
    return time, current


def _header_integer(header: object, key: str) -> int | None:
    try:
        return int(header[key])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


def integrate(
    readings: PhotodiodeReadings,
    method: str = "DIRECT_SUM",
    current_scale: float = 1.0,
    exptime: float | None = None,
) -> float:
    """The charge (C) of an exposure's readings by one of :data:`INTEGRATION_METHODS`.

    Parameters
    ----------
    readings : PhotodiodeReadings
        The samples.
    method : str
        How to integrate (see the module's description).
    current_scale : float
        Multiplies the current (``DIRECT_SUM`` ignores it, as Rubin's does).
    exptime : float, optional
        The exposure time (s); ``MEAN`` needs it.

    Returns
    -------
    float

    Examples
    --------
    >>> steady = PhotodiodeReadings(np.linspace(0, 2, 5), np.full(5, 1e-9), 20240101, 1)
    >>> integrate(steady), integrate(steady, "MEAN", exptime=2.0)
    (2e-09, 2e-09)
    """
    time, current = readings.time, readings.current
    if method == "DIRECT_SUM":
        return float(np.trapezoid(current, x=time))
    if method == "TRIMMED_SUM":
        scaled = current_scale * current
        return float(np.trapezoid(scaled - _baseline(scaled), x=time))
    if method == "CHARGE_SUM":
        return _charge_sum(time, current_scale * current)
    if method == "MEAN":
        if exptime is None:
            raise ValueError("the MEAN integration needs the exposure time")
        return float(current_scale * np.mean(current) * exptime)
    raise ValueError(
        f"unknown photodiode integration {method!r} (one of {', '.join(INTEGRATION_METHODS)})"
    )


def _baseline(current: np.ndarray) -> float:
    """The current's pedestal: the clipped mean of the samples below a fifth of its range."""
    low = current[current < (current.max() - current.min()) / 5 + current.min()]
    return _clipped_mean(low)


def _clipped_mean(values: np.ndarray, sigma: float = 3.0, iterations: int = 5) -> float:
    """The mean of ``values`` after clipping them to the median +- ``sigma`` std.

    Clipped again on what is left until nothing more goes (at most ``iterations`` times),
    as astropy's ``sigma_clipped_stats`` with its defaults.

    Examples
    --------
    >>> _clipped_mean(np.array([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.02, 0.98, 1.0, 50.0]))
    1.0
    """
    kept = values[np.isfinite(values)]
    for _ in range(iterations):
        centre, spread = np.median(kept), np.std(kept)
        inside = kept[(kept >= centre - sigma * spread) & (kept <= centre + sigma * spread)]
        if len(inside) == len(kept):
            break
        kept = inside
    return float(np.mean(kept))


def _charge_sum(time: np.ndarray, charge_per_sample: np.ndarray) -> float:
    """Each interval's charge less the background charge of its duration, summed."""
    dt = np.diff(time)
    charge = charge_per_sample[1:]  # a sample holds the charge since the one before
    current = charge / dt
    signal = np.flatnonzero(current > (current.max() - current.min()) / 20 + current.min())
    if not len(signal):  # a flat current: no light, or a dead meter
        raise ValueError("no signal above the readings' background (CHARGE_SUM)")
    first, last = signal[0] - 2, signal[-1] + 2
    background = np.r_[np.arange(0, max(first, 0)), np.arange(last, len(dt))]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.sum(charge[background]) / np.sum(dt[background])
    return float(np.sum(charge - rate * dt))


def exposure_charge(
    path: str,
    dayobs: object,
    seqnum: object,
    exptime: float,
    method: str,
    current_scale: float,
    readings: str | None = None,
) -> tuple[float, str | None]:
    """The charge of one exposure from its photodiode readings, or why none.

    Parameters
    ----------
    path : str
        The raw file; its readings are ``Photodiode_Readings_<DAYOBS>_<SEQNUM>.txt`` beside
        it, unless ``readings`` names them.
    dayobs, seqnum : object
        Its header's DAYOBS and SEQNUM.
    exptime : float
        Its exposure time (for ``MEAN``).
    method, current_scale
        See :func:`integrate`.
    readings : str, optional
        The exposure's readings file (a repository's ``photodiode`` dataset: a local path
        or a URI).

    Returns
    -------
    charge : float
        NaN when there is none.
    reason : str or None
        Why there is none.
    """
    readings, reason = readings_location(path, dayobs, seqnum, readings)
    if readings is None:
        return math.nan, reason
    try:
        with _local(readings) as local:
            charge = integrate(read_readings(local), method, current_scale, exptime)
    except ValueError as exc:
        return math.nan, str(exc)
    if not math.isfinite(charge):
        return math.nan, f"{readings}: its readings integrate to no charge ({method})"
    return charge, None


def readings_location(
    path: str, dayobs: object, seqnum: object, named: str | None = None
) -> tuple[str | None, str | None]:
    """Where an exposure's photodiode readings are, or why nowhere.

    ``named`` (a repository's ``photodiode`` dataset) when given, else the camera's file
    beside the raw ``path`` if it exists.

    Examples
    --------
    >>> readings_location("/data/raw.fits", 20211212, 310)
    (None, 'no photodiode readings beside it (Photodiode_Readings_20211212_000310.txt)')
    """
    if named is not None:
        return named, None
    try:
        name = photodiode_file_name(dayobs, seqnum)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None, "no DAYOBS and SEQNUM to find its photodiode readings by"
    beside = os.path.join(os.path.dirname(str(path)), name)
    if not os.path.isfile(beside):
        return None, f"no photodiode readings beside it ({name})"
    return beside, None


@contextmanager
def _local(location: str) -> Iterator[str]:
    """A local file of ``location``: itself, or a temporary copy of a remote file."""
    if "://" not in location or location.startswith("file://"):
        yield location.removeprefix("file://")
        return
    try:
        from lsst.resources import ResourcePath

        with ResourcePath(location).as_local() as copy:
            yield copy.ospath
    except ImportError:
        raise ValueError(f"{location}: remote readings need lsst-resources") from None
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"{location}: photodiode readings not fetched ({exc})") from exc


def flat_charges(
    pairs: pd.DataFrame, manifest: pd.DataFrame, method: str, current_scale: float
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Each pair's two flats' photodiode charges (``charge1``, ``charge2``; NaN where none).

    Parameters
    ----------
    pairs : pandas.DataFrame
        One sensor's pairs (``pair``, ``file1``, ``file2``, ``exptime``).
    manifest : pandas.DataFrame
        The manifest rows of its files (``path``, ``dayobs``, ``seqnum``; ``photodiode``,
        the readings' file, where a repository named it).
    method, current_scale
        See :func:`integrate`.

    Returns
    -------
    charges : pandas.DataFrame
        By pair, ``charge1`` and ``charge2`` (C).
    missing : dict of str to str
        Each flat without a charge, and why.
    """
    headers = manifest.drop_duplicates("path").set_index("path")
    per_pair = pairs.drop_duplicates("pair").set_index("pair")
    rows, missing = {}, {}
    for pair, row in per_pair.iterrows():
        found = []
        for path in (row["file1"], row["file2"]):
            dayobs, seqnum, readings = exposure_keys(headers, path)
            charge, reason = exposure_charge(
                path, dayobs, seqnum, float(row["exptime"]), method, current_scale, readings
            )
            found.append(charge)
            if reason is not None:
                missing[str(path)] = reason
        rows[pair] = found
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["charge1", "charge2"])
    return frame.astype(float), missing


def pair_charges(
    pairs: pd.DataFrame, manifest: pd.DataFrame, method: str, current_scale: float
) -> tuple[pd.Series, dict[str, str]]:
    """Each pair's photodiode charge: the mean of its two flats', NaN unless both have one.

    (cp_pipe averages whichever it has; a pair with one flat's charge would carry that
    flat's illumination mismatch, and a sensor is fitted against one abscissa only.)
    Parameters as :func:`flat_charges`; returns the charges by pair and the flats without
    one (with why).
    """
    flats, missing = flat_charges(pairs, manifest, method, current_scale)
    return mean_charges(flats), missing


def mean_charges(flats: pd.DataFrame) -> pd.Series:
    """Each pair's charge from :func:`flat_charges`: the mean of both, NaN unless both.

    Examples
    --------
    >>> flats = pd.DataFrame({"charge1": [1.0, 2.0], "charge2": [3.0, np.nan]})
    >>> mean_charges(flats).tolist()
    [2.0, nan]
    """
    return (flats["charge1"] + flats["charge2"]) / 2.0


def exposure_keys(headers: pd.DataFrame, path: str) -> tuple[object, object, str | None]:
    """A flat's DAYOBS, SEQNUM and readings file (a repository's) from its manifest row.

    ``headers`` is the manifest indexed by path.
    """
    if path not in headers.index:
        return None, None, None
    readings = headers.at[path, "photodiode"] if "photodiode" in headers else None
    readings = str(readings) if isinstance(readings, str) and readings else None
    return headers.at[path, "dayobs"], headers.at[path, "seqnum"], readings


def pair_monitor_currents(pairs: pd.DataFrame, manifest: pd.DataFrame) -> pd.Series:
    """Each pair's monitoring-diode current: the mean of its two flats' ``MONDIODE`` (A).

    The value the camera's headers carry (EOTEST's linearity takes ``MONDIODE x EXPTIME``
    as each flat's flux); NaN unless both flats have one.

    Parameters
    ----------
    pairs : pandas.DataFrame
        One sensor's pairs (``pair``, ``file1``, ``file2``).
    manifest : pandas.DataFrame
        The manifest rows of its files (``path``, ``mondiode``).

    Returns
    -------
    pandas.Series
        By pair, in the headers' unit and sign.

    Examples
    --------
    >>> manifest = pd.DataFrame({"path": ["a", "b", "c"], "mondiode": [-2e-9, -4e-9, np.nan]})
    >>> pairs = pd.DataFrame({"pair": [0, 1], "file1": ["a", "a"], "file2": ["b", "c"]})
    >>> pair_monitor_currents(pairs, manifest).tolist()
    [-3e-09, nan]
    """
    if "mondiode" not in manifest:
        return pd.Series(math.nan, index=pd.unique(pairs["pair"]), dtype=float)
    current = manifest.drop_duplicates("path").set_index("path")["mondiode"].astype(float)
    per_pair = pairs.drop_duplicates("pair").set_index("pair")
    both = per_pair["file1"].map(current).to_numpy(float), per_pair["file2"].map(current)
    return pd.Series((both[0] + both[1].to_numpy(float)) / 2, index=per_pair.index, dtype=float)

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

The current scale (``current_scale``) turns the meter's sign into a positive charge: cp_pipe
uses -1 for the camera's meters; this file's current is positive already.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gpuptc.config import INTEGRATION_METHODS

__all__ = [
    "INTEGRATION_METHODS",
    "PhotodiodeReadings",
    "exposure_charge",
    "integrate",
    "pair_charges",
    "photodiode_file_name",
    "read_photodiode",
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
    dayobs, seqnum : int
        The exposure's observing day and sequence number (from the file's name).
    """

    time: np.ndarray
    current: np.ndarray
    dayobs: int
    seqnum: int


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
    time, current = table[:, 0], table[:, 1]
    if not (np.isfinite(table).all() and (np.diff(time) > 0).all()):
        raise ValueError(
            f"{path}: photodiode readings with non-finite values or times not increasing"
        )
    return PhotodiodeReadings(time, current, int(named.group(1)), int(named.group(2)))


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
    path: str, dayobs: object, seqnum: object, exptime: float, method: str, current_scale: float
) -> tuple[float, str | None]:
    """The charge of one exposure from the readings beside its raw file, or why none.

    Parameters
    ----------
    path : str
        The raw file; its readings are ``Photodiode_Readings_<DAYOBS>_<SEQNUM>.txt`` beside it.
    dayobs, seqnum : object
        Its header's DAYOBS and SEQNUM.
    exptime : float
        Its exposure time (for ``MEAN``).
    method, current_scale
        See :func:`integrate`.

    Returns
    -------
    charge : float
        NaN when there is none.
    reason : str or None
        Why there is none.
    """
    try:
        name = photodiode_file_name(dayobs, seqnum)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan, "no DAYOBS and SEQNUM to find its photodiode readings by"
    readings = Path(path).parent / name
    if not readings.is_file():
        return math.nan, f"no photodiode readings beside it ({name})"
    try:
        charge = integrate(read_photodiode(readings), method, current_scale, exptime)
    except ValueError as exc:
        return math.nan, str(exc)
    if not math.isfinite(charge):
        return math.nan, f"{readings}: its readings integrate to no charge ({method})"
    return charge, None


def pair_charges(
    pairs: pd.DataFrame, manifest: pd.DataFrame, method: str, current_scale: float
) -> tuple[pd.Series, dict[str, str]]:
    """Each pair's photodiode charge: the mean of its two flats', NaN unless both have one.

    (cp_pipe averages whichever it has; a pair with one flat's charge would carry that
    flat's illumination mismatch, and a sensor is fitted against one abscissa only.)

    Parameters
    ----------
    pairs : pandas.DataFrame
        One sensor's pairs (``pair``, ``file1``, ``file2``, ``exptime``).
    manifest : pandas.DataFrame
        The manifest rows of its files (``path``, ``dayobs``, ``seqnum``).
    method, current_scale
        See :func:`integrate`.

    Returns
    -------
    charges : pandas.Series
        By pair.
    missing : dict of str to str
        Each flat without a charge, and why.
    """
    headers = manifest.drop_duplicates("path").set_index("path")
    per_pair = pairs.drop_duplicates("pair").set_index("pair")
    charges, missing = {}, {}
    for pair, row in per_pair.iterrows():
        found = []
        for path in (row["file1"], row["file2"]):
            known = path in headers.index
            dayobs = headers.at[path, "dayobs"] if known else None
            seqnum = headers.at[path, "seqnum"] if known else None
            charge, reason = exposure_charge(
                path, dayobs, seqnum, float(row["exptime"]), method, current_scale
            )
            found.append(charge)
            if reason is not None:
                missing[str(path)] = reason
        charges[pair] = float(np.mean(found)) if all(map(math.isfinite, found)) else math.nan
    return pd.Series(charges, dtype=float), missing

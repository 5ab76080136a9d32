"""Primary-header metadata of LSST camera raw exposures.

One parser shared by ingest (headers only) and the raw reader, so both agree on what
a file is.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ExposureInfo", "exposure_info", "mjd_from_isot", "normalize_vendor"]

_MJD_EPOCH = _dt.datetime(1858, 11, 17, tzinfo=_dt.UTC)


def _text(header: Mapping[str, Any], key: str) -> str | None:
    value = header.get(key)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    text = str(value).strip()
    return text or None


def _number(header: Mapping[str, Any], key: str) -> float | None:
    value = header.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _integer(header: Mapping[str, Any], key: str) -> int | None:
    number = _number(header, key)
    if number is None or number != int(number):
        return None
    return int(number)


def mjd_from_isot(text: str | None) -> float | None:
    """Convert an ISO date-time (``DATE-OBS``, UTC/TAI alike) to a Modified Julian Date.

    Parameters
    ----------
    text : str or None
        Such as ``'2021-12-13T03:55:09.370'``.

    Returns
    -------
    float or None
        The MJD, or None when the text is missing or unreadable.
    """
    if not text:
        return None
    try:
        moment = _dt.datetime.fromisoformat(text.strip().rstrip("Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return (moment - _MJD_EPOCH).total_seconds() / 86400.0


def normalize_vendor(value: str | None) -> str | None:
    """Map CCD_MANU values (``'E2V'``, ``'ITL'``, any case) to ``'e2v'`` / ``'itl'``."""
    if not value:
        return None
    text = value.strip().lower()
    if text.startswith("e2v"):
        return "e2v"
    if text.startswith("itl"):
        return "itl"
    return text


@dataclass(frozen=True)
class ExposureInfo:
    """The primary-header keywords gpuptc needs, parsed and typed.

    Missing keywords are None; ``sensor`` is LSST_NUM, else ``RAFTBAY_CCDSLOT``.
    """

    imgtype: str | None
    testtype: str | None
    exptime: float | None
    darktime: float | None
    mondiode: float | None
    seqnum: int | None
    dayobs: str | None
    date_obs: str | None
    mjd: float | None
    obsid: str | None
    filter: str | None
    lsst_num: str | None
    raftbay: str | None
    ccdslot: str | None
    vendor: str | None
    detsize: str | None
    origin: str | None

    @property
    def sensor(self) -> str | None:
        """Sensor id: LSST_NUM, else RAFTBAY_CCDSLOT, else None."""
        if self.lsst_num:
            return self.lsst_num
        if self.raftbay and self.ccdslot:
            return f"{self.raftbay}_{self.ccdslot}"
        return None

    def as_dict(self) -> dict[str, Any]:
        """Plain dictionary of the fields plus ``sensor``."""
        out = asdict(self)
        out["sensor"] = self.sensor
        return out


def exposure_info(header: Mapping[str, Any]) -> ExposureInfo:
    """Parse a raw file's primary header.

    Parameters
    ----------
    header : mapping
        Keyword -> value (a ``fitsio.FITSHDR``, an ``astropy.io.fits.Header`` or a dict).

    Returns
    -------
    ExposureInfo
        Typed metadata. The observation time is MJD-OBS, else MJD, else DATE-OBS.
    """
    imgtype = _text(header, "IMGTYPE")
    testtype = _text(header, "TESTTYPE")
    dayobs = _text(header, "DAYOBS")
    if dayobs is not None:
        dayobs = dayobs.replace("-", "")
    date_obs = _text(header, "DATE-OBS")
    mjd = _number(header, "MJD-OBS")
    if mjd is None:
        mjd = _number(header, "MJD")
    if mjd is None:
        mjd = mjd_from_isot(date_obs)
    return ExposureInfo(
        imgtype=imgtype.upper() if imgtype else None,
        testtype=testtype.upper() if testtype else None,
        exptime=_number(header, "EXPTIME"),
        darktime=_number(header, "DARKTIME"),
        mondiode=_number(header, "MONDIODE"),
        seqnum=_integer(header, "SEQNUM"),
        dayobs=dayobs,
        date_obs=date_obs,
        mjd=mjd,
        obsid=_text(header, "OBSID"),
        filter=_text(header, "FILTER"),
        lsst_num=_text(header, "LSST_NUM"),
        raftbay=_text(header, "RAFTBAY"),
        ccdslot=_text(header, "CCDSLOT"),
        vendor=normalize_vendor(_text(header, "CCD_MANU")),
        detsize=_text(header, "DETSIZE"),
        origin=_text(header, "ORIGIN"),
    )

"""Read LSST camera raw FITS files into one whole-CCD stack.

A raw file is a primary header followed by 16 amplifier segments (8 on wavefront
sensors) in HDU order, amp n = HDU n = CHANNEL n, then conditions tables that are
ignored. Segments may be int32, RICE_1 tile-compressed, legacy uint16 (BITPIX 16,
BZERO 32768) or float (master biases); whole files may be gzip-compressed.

Two readers give identical results: ``fitsio`` (the default; cfitsio decompresses RICE
tiles about twice as fast as astropy and returns native byte order) and ``astropy``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gpuptc.io.geometry import (
    AmpGeometry,
    GeometryError,
    SensorGeometry,
    amp_geometry,
    assemble_ccd,
    vendor_from_detsec,
)
from gpuptc.io.header import ExposureInfo, exposure_info

__all__ = [
    "RawExposure",
    "RawReadError",
    "Reader",
    "is_fits_signature",
    "read_primary_header",
    "read_raw",
    "read_segment_headers",
]

Reader = Literal["fitsio", "astropy"]

_FITS_MAGIC = b"SIMPLE  ="
_GZIP_MAGIC = b"\x1f\x8b"
_VALID_NAMPS = (16, 8)


class RawReadError(OSError):
    """A file cannot be read as an LSST camera raw exposure.

    The message names the file and the reason.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def is_fits_signature(path: str | os.PathLike[str]) -> bool:
    """Whether a file starts like a FITS file or a gzip stream.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    bool
        True for a FITS (``SIMPLE  =``) or gzip signature.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_FITS_MAGIC))
    except OSError:
        return False
    return head.startswith(_FITS_MAGIC) or head.startswith(_GZIP_MAGIC)


@dataclass
class RawExposure:
    """One raw exposure: pixels of every amplifier, geometry and metadata.

    Attributes
    ----------
    path : str
        The file read.
    pixels : numpy.ndarray
        ``(amps, naxis2, naxis1)`` raw segments in native byte order: int32 for integer
        data, float32 for float data.
    geometry : SensorGeometry
        Per-amplifier geometry, in the same order.
    info : ExposureInfo
        Primary-header metadata.
    """

    path: str
    pixels: np.ndarray
    geometry: SensorGeometry
    info: ExposureInfo

    def trimmed(self) -> np.ndarray:
        """View of the imaging pixels, ``(amps, ny, nx)``, without any correction."""
        return self.pixels[(slice(None), *self.geometry.imaging.slices)]

    def assemble(self, image: np.ndarray | None = None) -> np.ndarray:
        """Assemble trimmed amplifier images into the full CCD (DETSEC orientation).

        Parameters
        ----------
        image : numpy.ndarray, optional
            ``(amps, ny, nx)`` images to assemble; default the raw trimmed pixels.

        Returns
        -------
        numpy.ndarray
            The CCD image, amp 1 at the lower left (row 0 at the bottom).
        """
        return assemble_ccd(self.trimmed() if image is None else image, self.geometry.amps)


def _check_reader(reader: str) -> None:
    if reader not in ("fitsio", "astropy"):
        raise ValueError(f"unknown FITS reader {reader!r}; use 'fitsio' or 'astropy'")


def _as_dict(header: Any) -> dict[str, Any]:
    return {str(key).upper(): header[key] for key in header.keys() if key}


def read_primary_header(
    path: str | os.PathLike[str], *, reader: Reader = "fitsio"
) -> dict[str, Any]:
    """Read the primary header only.

    Parameters
    ----------
    path : path-like
        A FITS file (gzip allowed).
    reader : {'fitsio', 'astropy'}
        Which FITS library reads the file.

    Returns
    -------
    dict
        Keyword -> value.

    Raises
    ------
    RawReadError
        If the file cannot be opened as FITS.
    """
    _check_reader(reader)
    try:
        if reader == "fitsio":
            import fitsio

            return _as_dict(fitsio.read_header(os.fspath(path), 0))
        from astropy.io import fits

        return _as_dict(fits.getheader(os.fspath(path), 0))
    except Exception as exc:  # any library failure is the file's fault here
        raise RawReadError(path, f"not a readable FITS file ({_describe(exc)})") from exc


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class _SegmentHeader:
    index: int
    header: dict[str, Any]
    naxis1: int
    naxis2: int
    bitpix: int


def _segment_from_header(index: int, header: Mapping[str, Any]) -> _SegmentHeader | None:
    """Image size and BITPIX of an extension, or None when it holds no 2-D image."""
    compressed = bool(header.get("ZIMAGE", False))
    prefix = "Z" if compressed else ""
    if not compressed and str(header.get("XTENSION", "IMAGE")).strip() not in ("IMAGE", ""):
        return None
    naxis = header.get(f"{prefix}NAXIS", 0)
    if naxis != 2:
        return None
    naxis1 = int(header.get(f"{prefix}NAXIS1", 0))
    naxis2 = int(header.get(f"{prefix}NAXIS2", 0))
    if naxis1 <= 0 or naxis2 <= 0:
        return None
    return _SegmentHeader(index, dict(header), naxis1, naxis2, int(header.get(f"{prefix}BITPIX")))


def _segment_headers_fitsio(path: str) -> tuple[dict[str, Any], list[_SegmentHeader]]:
    import fitsio

    with fitsio.FITS(path) as fits_file:
        primary = _as_dict(fits_file[0].read_header())
        segments = []
        for index in range(1, len(fits_file)):
            seg = _segment_from_header(index, _as_dict(fits_file[index].read_header()))
            if seg is None:
                break
            segments.append(seg)
    return primary, segments


def _segment_headers_astropy(path: str) -> tuple[dict[str, Any], list[_SegmentHeader]]:
    from astropy.io import fits

    with fits.open(path, memmap=False, disable_image_compression=True) as hdus:
        primary = _as_dict(hdus[0].header)
        segments = []
        for index in range(1, len(hdus)):
            seg = _segment_from_header(index, _as_dict(hdus[index].header))
            if seg is None:
                break
            segments.append(seg)
    return primary, segments


def _geometry(path: str, segments: list[_SegmentHeader], info: ExposureInfo) -> SensorGeometry:
    if len(segments) not in _VALID_NAMPS:
        raise RawReadError(
            path,
            f"found {len(segments)} amplifier image extensions after the primary header; "
            "expected 16 (or 8 for a wavefront sensor)",
        )
    bitpixes = {seg.bitpix for seg in segments}
    if len(bitpixes) > 1:
        raise RawReadError(path, f"segments mix BITPIX values {sorted(bitpixes)}")
    amps: list[AmpGeometry] = []
    for seg in segments:
        hdr = seg.header
        name = str(hdr.get("EXTNAME", f"HDU{seg.index}")).strip()
        channel = hdr.get("CHANNEL")
        if channel is not None and int(channel) != seg.index:
            raise RawReadError(
                path, f"HDU {seg.index} ({name}) has CHANNEL {channel}: segments are out of order"
            )
        datasec = hdr.get("DATASEC")
        if datasec is None:
            raise RawReadError(path, f"HDU {seg.index} ({name}) has no DATASEC")
        try:
            amps.append(
                amp_geometry(
                    seg.index,
                    name,
                    seg.naxis1,
                    seg.naxis2,
                    str(datasec),
                    hdr.get("DETSEC"),
                    hdr.get("BIASSEC"),
                )
            )
        except GeometryError as exc:
            raise RawReadError(path, f"HDU {seg.index} ({name}): {exc}") from exc
    vendor = info.vendor
    if vendor is None:
        detsec9 = segments[8].header.get("DETSEC") if len(segments) > 8 else None
        try:
            vendor = vendor_from_detsec(detsec9)
        except GeometryError as exc:
            raise RawReadError(path, f"HDU 9: {exc}") from exc
    try:
        return SensorGeometry(tuple(amps), vendor)
    except GeometryError as exc:
        raise RawReadError(path, f"inconsistent amplifiers: {exc}") from exc


def _scan(path: str, reader: Reader) -> tuple[ExposureInfo, SensorGeometry, int]:
    _check_reader(reader)
    try:
        if reader == "fitsio":
            primary, segments = _segment_headers_fitsio(path)
        else:
            primary, segments = _segment_headers_astropy(path)
    except Exception as exc:
        raise RawReadError(path, f"not a readable FITS file ({_describe(exc)})") from exc
    info = exposure_info(primary)
    geometry = _geometry(path, segments, info)
    return info, geometry, segments[0].bitpix


def read_segment_headers(
    path: str | os.PathLike[str], *, reader: Reader = "fitsio"
) -> tuple[ExposureInfo, SensorGeometry]:
    """Read the metadata and geometry of a raw file without its pixels.

    Parameters
    ----------
    path : path-like
        A raw LSST camera file.
    reader : {'fitsio', 'astropy'}
        Which FITS library reads the file.

    Returns
    -------
    info : ExposureInfo
        Primary-header metadata.
    geometry : SensorGeometry
        Per-amplifier geometry.

    Raises
    ------
    RawReadError
        If the file is not a readable raw exposure.
    """
    info, geometry, _ = _scan(os.fspath(path), reader)
    return info, geometry


def _target_dtype(bitpix: int) -> np.dtype:
    return np.dtype(np.float32) if bitpix < 0 else np.dtype(np.int32)


def _read_pixels_fitsio(path: str, out: np.ndarray, namps: int) -> None:
    import fitsio

    with fitsio.FITS(path) as fits_file:
        for amp in range(namps):
            out[amp] = fits_file[amp + 1].read()


def _read_pixels_astropy(path: str, out: np.ndarray, namps: int) -> None:
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdus:
        for amp in range(namps):
            out[amp] = hdus[amp + 1].data


def read_raw(
    path: str | os.PathLike[str],
    *,
    reader: Reader = "fitsio",
    out: np.ndarray | None = None,
) -> RawExposure:
    """Read a raw LSST camera file as one ``(amps, naxis2, naxis1)`` stack.

    Parameters
    ----------
    path : path-like
        The raw file: int32, RICE_1 tile-compressed, uint16 with BZERO 32768, float, or
        any of these gzip-compressed.
    reader : {'fitsio', 'astropy'}
        Which FITS library reads the pixels; both give identical stacks.
    out : numpy.ndarray, optional
        Preallocated native-order buffer of the right shape to read into (a pinned
        buffer, say). Integer data need an integer or float buffer.

    Returns
    -------
    RawExposure
        Pixels (native byte order, int32 for integer data, float32 for float data),
        geometry and metadata.

    Raises
    ------
    RawReadError
        If the file is unreadable, truncated, or not laid out as a raw exposure; the
        message names the file and the reason.
    """
    path = os.fspath(path)
    info, geometry, bitpix = _scan(path, reader)
    shape = (geometry.namps, *geometry.segment_shape)
    if out is None:
        out = np.empty(shape, dtype=_target_dtype(bitpix))
    elif out.shape != shape:
        raise ValueError(f"{path}: buffer shape {out.shape} does not match the file's {shape}")
    try:
        if reader == "fitsio":
            _read_pixels_fitsio(path, out, geometry.namps)
        else:
            _read_pixels_astropy(path, out, geometry.namps)
    except Exception as exc:
        raise RawReadError(path, f"cannot read pixels ({_describe(exc)})") from exc
    return RawExposure(path, out, geometry, info)

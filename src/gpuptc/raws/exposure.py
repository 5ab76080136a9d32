"""Read LSST camera raw FITS files into one whole-CCD stack.

A raw file is a primary header followed by 16 amplifier segments (8 on wavefront
sensors) in HDU order, amp n = HDU n = CHANNEL n, then conditions tables that are
ignored. Segments may be int32, RICE_1 tile-compressed, legacy uint16 (BITPIX 16,
BZERO 32768) or float (master biases); whole files may be gzip-compressed.

Three readers give identical results: ``native`` (the default: headers through fitsio,
uncompressed pixels copied from a memory map, RICE_1 tiles decoded by gpuptc's own
decoder, :mod:`gpuptc.raws.rice`, which releases the GIL so that threads read files in
parallel; anything else, such as gzip files, through fitsio), ``fitsio`` (cfitsio
decompresses) and ``astropy``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gpuptc import settings
from gpuptc.errors import GpuptcError
from gpuptc.raws.geometry import (
    AmpGeometry,
    GeometryError,
    SensorGeometry,
    amp_geometry,
    assemble_ccd,
    vendor_from_detsec,
)
from gpuptc.raws.header import ExposureInfo, exposure_info
from gpuptc.raws.names import c_name, on_disk, printable
from gpuptc.raws.rice import (
    TILE_ERRORS,
    RiceError,
    decode_tiles,
    rice_layout,
    unsupported_reason,
)
from gpuptc.raws.rice_gpu import FileTiles, file_tiles

__all__ = [
    "FITS_MAGIC",
    "RawExposure",
    "RawReadError",
    "Reader",
    "header_dict",
    "is_fits_signature",
    "native_reason",
    "read_primary_header",
    "read_raw",
    "read_segment_headers",
    "read_tiles",
]

log = logging.getLogger(__name__)

Reader = Literal["native", "fitsio", "astropy"]
_READERS = ("native", "fitsio", "astropy")

FITS_MAGIC = b"SIMPLE  ="
_GZIP_MAGIC = b"\x1f\x8b"
_PLAIN_DTYPES = {32: np.dtype(">i4"), -32: np.dtype(">f4")}
"""Big-endian pixel types read straight from the file when unscaled and uncompressed."""
_VALID_NAMPS = (16, 8)


class RawReadError(GpuptcError, OSError):
    """A file cannot be read as an LSST camera raw exposure.

    The message names the file and the reason.

    Examples
    --------
    An EOTEST results file (here the one the simulated sensor ``simulated`` of
    :func:`gpuptc.simulate` comes with) is a FITS file but no raw exposure:

    >>> try:
    ...     read_raw(simulated.eotest_path)
    ... except RawReadError as error:
    ...     print(error.reason)
    found 0 amplifier image extensions after the primary header; expected 16 (or 8 ...)
    >>> isinstance(RawReadError("x.fits", "truncated"), OSError)
    True
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = printable(path)
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
        with open(on_disk(path), "rb") as handle:
            head = handle.read(len(FITS_MAGIC))
    except OSError:
        return False
    return head.startswith(FITS_MAGIC) or head.startswith(_GZIP_MAGIC)


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

    Examples
    --------
    The first flat of the small simulated sensor ``simulated`` (:func:`gpuptc.simulate`):
    16 segments of 98 x 108 pixels, 64 x 96 of them imaging pixels:

    >>> raw = read_raw(simulated.flats[0])
    >>> raw.pixels.shape, raw.pixels.dtype
    ((16, 108, 98), dtype('int32'))
    >>> raw.trimmed().shape, raw.assemble().shape
    ((16, 96, 64), (192, 512))
    >>> raw.info.imgtype, raw.info.sensor, raw.info.exptime
    ('FLAT', 'E2V-CCD250-101', 0.534)
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
    if reader not in _READERS:
        raise ValueError(f"unknown FITS reader {reader!r}; use one of {', '.join(_READERS)}")


def header_dict(header: Any) -> dict[str, Any]:
    """A FITS header (fitsio's or astropy's) as keyword -> value, keywords upper case."""
    return {str(key).upper(): header[key] for key in header.keys() if key}


def _is_gzip(path: str | os.PathLike[str]) -> bool:
    """Whether the file (by the name the operating system knows) starts as gzip."""
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == _GZIP_MAGIC
    except OSError:
        return False


def read_primary_header(
    path: str | os.PathLike[str], *, reader: Reader = "native"
) -> dict[str, Any]:
    """Read the primary header only.

    Parameters
    ----------
    path : path-like
        A FITS file (gzip allowed).
    reader : {'native', 'fitsio', 'astropy'}
        Which FITS library reads the file (``native``: fitsio). Gzip-compressed files
        are always read with astropy, which stops after the primary header where cfitsio
        decompresses the whole file first (0.8 ms against 445 ms for a full-size raw file).

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
    path = on_disk(path)
    try:
        if reader != "astropy" and not _is_gzip(path):
            import fitsio

            with c_name(path) as name:
                return header_dict(fitsio.read_header(name, 0))
        from astropy.io import fits

        return header_dict(fits.getheader(path, 0))
    except Exception as exc:  # any library failure is the file's fault here
        raise RawReadError(path, f"not a readable FITS file ({_describe(exc)})") from exc


def _native_unsupported(header: Mapping[str, Any]) -> str | None:
    """Why the native reader leaves this extension to cfitsio (``GPUPTC_RICE=0``: always)."""
    if not settings.rice():
        return "GPUPTC_RICE=0"
    return unsupported_reason(header)


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


class _OpenFile:
    """One open FITS file, whichever library reads it: headers first, pixels on demand."""

    def __init__(self, path: str, reader: Reader) -> None:
        self.path = path
        self.reader = reader
        if reader != "astropy":
            import fitsio

            with c_name(path) as name:
                self._handle: Any = fitsio.FITS(name)
            headers = (self._handle[i].read_header() for i in range(len(self._handle)))
        else:
            from astropy.io import fits

            self._handle = fits.open(path, memmap=False, disable_image_compression=True)
            headers = (hdu.header for hdu in self._handle)
        self.primary = header_dict(next(headers))
        self.segments: list[_SegmentHeader] = []
        for index, header in enumerate(headers, 1):
            seg = _segment_from_header(index, header_dict(header))
            if seg is None:
                break
            self.segments.append(seg)

    def _plain_data(self, amp: int) -> tuple[int, np.dtype] | None:
        """Offset and dtype of an uncompressed, unscaled image extension, else None."""
        segment = self.segments[amp]
        header = segment.header
        dtype = _PLAIN_DTYPES.get(segment.bitpix)
        if (
            dtype is None
            or header.get("ZIMAGE")
            or header.get("BZERO", 0) != 0
            or header.get("BSCALE", 1) != 1
        ):
            return None
        start = int(self._handle[segment.index].get_offsets()["data_start"])
        if start + segment.naxis1 * segment.naxis2 * dtype.itemsize > self._size:
            return None  # truncated: fitsio says so
        return start, dtype

    def read_into(self, out: np.ndarray) -> None:
        if self.reader == "astropy":
            self._read_with_astropy(out)
            return
        self._size = os.path.getsize(self.path)
        plain = not _is_gzip(self.path)
        data = np.memmap(self.path, dtype=np.uint8, mode="r") if plain else None
        for amp in range(out.shape[0]):
            located = self._plain_data(amp) if plain else None
            if located is not None:
                self._copy_plain(amp, located, out[amp])
            elif data is not None and self.reader == "native" and self._decodable(amp):
                self._decode(amp, data, out[amp])
            else:
                out[amp] = self._handle[amp + 1].read()

    def _decodable(self, amp: int) -> bool:
        reason = _native_unsupported(self.segments[amp].header)
        if reason is not None:
            log.debug("%s HDU %d read by cfitsio: %s", self.path, amp + 1, reason)
        return reason is None

    def _copy_plain(self, amp: int, located: tuple[int, np.dtype], out: np.ndarray) -> None:
        """A memory copy with the byte swap and the cast in one pass."""
        start, dtype = located
        segment = self.segments[amp]
        pixels = np.memmap(
            self.path, dtype=dtype, mode="r", offset=start, shape=(segment.naxis2, segment.naxis1)
        )
        np.copyto(out, pixels, casting="unsafe")
        del pixels

    def _decode(self, amp: int, data: np.ndarray, out: np.ndarray) -> None:
        """Gpuptc's RICE_1 decoder, straight into ``out``."""
        segment = self.segments[amp]
        start = int(self._handle[segment.index].get_offsets()["data_start"])
        name = segment.header.get("EXTNAME", f"HDU {segment.index}")
        try:
            layout = rice_layout(self.path, segment.header, start)
        except RiceError as exc:
            raise RiceError(f"{name}: {exc}") from None
        status = decode_tiles(data, layout, out)
        if status.any():
            tile = int(np.flatnonzero(status)[0])
            raise RiceError(f"{name}, tile {tile}: {TILE_ERRORS[int(status[tile])]}")

    def _read_with_astropy(self, out: np.ndarray) -> None:
        from astropy.io import fits

        for amp in range(out.shape[0]):
            hdu = self._handle[amp + 1]
            if hdu.header.get("ZIMAGE"):
                hdu = fits.CompImageHDU(bintable=hdu)
            out[amp] = hdu.data

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> _OpenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


def _open(path: str, reader: Reader) -> _OpenFile:
    _check_reader(reader)
    try:
        return _OpenFile(on_disk(path), reader)
    except Exception as exc:
        raise RawReadError(path, f"not a readable FITS file ({_describe(exc)})") from exc


def read_segment_headers(
    path: str | os.PathLike[str], *, reader: Reader = "native"
) -> tuple[ExposureInfo, SensorGeometry]:
    """Read the metadata and geometry of a raw file without its pixels.

    Parameters
    ----------
    path : path-like
        A raw LSST camera file.
    reader : {'native', 'fitsio', 'astropy'}
        Which FITS library reads the file (``native``: fitsio).

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
    path = os.fspath(path)
    with _open(path, reader) as opened:
        info = exposure_info(opened.primary)
        return info, _geometry(path, opened.segments, info)


def native_reason(path: str | os.PathLike[str]) -> str | None:
    """Why the ``native`` reader leaves some of this file to cfitsio, or None if it does not.

    Parameters
    ----------
    path : path-like
        A raw file.

    Returns
    -------
    str or None
        The reason (a gzip file, another compression, quantised floats), or None when every
        segment is uncompressed or RICE_1 that gpuptc decodes itself.

    Raises
    ------
    RawReadError
        If the file is not a readable FITS file.
    """
    path = on_disk(path)
    if _is_gzip(path):
        return "gzip-compressed file"
    with _open(path, "native") as opened:
        for segment in opened.segments:
            if segment.header.get("ZIMAGE"):
                reason = _native_unsupported(segment.header)
                if reason is not None:
                    return f"HDU {segment.index}: {reason}"
    return None


def read_tiles(path: str | os.PathLike[str]) -> tuple[FileTiles, SensorGeometry]:
    """A RICE_1 raw file's compressed tiles (their bytes only) and its geometry.

    For decoding on a GPU (:mod:`gpuptc.raws.rice_gpu`): the pixels are not decoded here.

    Parameters
    ----------
    path : path-like
        A raw file whose every segment is RICE_1 (:func:`native_reason` is None).

    Returns
    -------
    tiles : FileTiles
    geometry : SensorGeometry

    Raises
    ------
    RawReadError
        If the file is not a readable raw exposure, or a segment is not RICE_1 that
        gpuptc decodes; the message names the file and the reason.
    """
    path = on_disk(os.fspath(path))
    with _open(path, "native") as opened:
        geometry = _geometry(path, opened.segments, exposure_info(opened.primary))
        layouts = []
        for segment in opened.segments:
            reason = _native_unsupported(segment.header)
            if reason is not None:
                raise RawReadError(path, f"HDU {segment.index} not decoded by gpuptc: {reason}")
            start = int(opened._handle[segment.index].get_offsets()["data_start"])
            try:
                layouts.append(rice_layout(path, segment.header, start))
            except RiceError as exc:
                raise RawReadError(path, f"HDU {segment.index}: {exc}") from None
    try:
        return file_tiles(path, layouts), geometry
    except (OSError, RiceError) as exc:
        raise RawReadError(path, f"cannot read its tiles ({_describe(exc)})") from exc


def _target_dtype(bitpix: int) -> np.dtype:
    return np.dtype(np.float32) if bitpix < 0 else np.dtype(np.int32)


def read_raw(
    path: str | os.PathLike[str],
    *,
    reader: Reader = "native",
    out: np.ndarray | None = None,
) -> RawExposure:
    """Read a raw LSST camera file as one ``(amps, naxis2, naxis1)`` stack.

    Parameters
    ----------
    path : path-like
        The raw file: int32, RICE_1 tile-compressed, uint16 with BZERO 32768, float, or
        any of these gzip-compressed.
    reader : {'native', 'fitsio', 'astropy'}
        Which decoder reads the pixels; all give identical stacks. ``native`` decodes
        RICE_1 tiles itself (the GIL released) and leaves what it does not handle (gzip
        files, other compressions, quantised floats) to fitsio, saying why at debug level.
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

    Examples
    --------
    A bias frame of the small simulated sensor ``simulated`` (:func:`gpuptc.simulate`);
    every reader gives the same pixels:

    >>> import numpy as np
    >>> raw = read_raw(simulated.biases[0])
    >>> raw.info.imgtype, raw.pixels.shape
    ('BIAS', (16, 108, 98))
    >>> [amp.segment for amp in raw.geometry.amps[:3]]
    ['Segment10', 'Segment11', 'Segment12']
    >>> bool(np.array_equal(read_raw(simulated.biases[0], reader="astropy").pixels, raw.pixels))
    True
    """
    path = os.fspath(path)
    with _open(path, reader) as opened:
        info = exposure_info(opened.primary)
        geometry = _geometry(path, opened.segments, info)
        shape = (geometry.namps, *geometry.segment_shape)
        if out is None:
            out = np.empty(shape, dtype=_target_dtype(opened.segments[0].bitpix))
        elif out.shape != shape:  # the file changed since its layout was read, or lies
            raise RawReadError(
                path,
                f"the file now holds {shape[0]} amplifiers of {shape[1]} x {shape[2]} pixels "
                f"where {out.shape[0]} of {out.shape[1]} x {out.shape[2]} were expected "
                "(changed or cut short since it was listed?)",
            )
        try:
            opened.read_into(out)
        except Exception as exc:
            raise RawReadError(path, f"cannot read pixels ({_describe(exc)})") from exc
    return RawExposure(path, out, geometry, info)

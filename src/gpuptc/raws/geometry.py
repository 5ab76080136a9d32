"""Amplifier geometry of LSST camera raw segments.

Everything is derived from each extension's NAXIS1/NAXIS2 and DATASEC, as the camera
writes them: the prescan is every column left of DATASEC, the serial overscan every
column right of it and the parallel overscan every row above it. A BIASSEC keyword is
honoured only where it lies inside that derived serial overscan.

FITS sections are 1-based and inclusive, ``[x1:x2,y1:y2]``; the boxes here are 0-based,
half-open NumPy slices ``arr[y0:y1, x0:x1]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpuptc.errors import GpuptcError

__all__ = [
    "AmpGeometry",
    "Box",
    "GeometryError",
    "Section",
    "SensorGeometry",
    "amp_geometry",
    "assemble_ccd",
    "ccd_coordinates",
    "ccd_places",
    "ccd_shape",
    "parse_section",
    "vendor_from_detsec",
]

_SECTION = re.compile(r"^\s*\[\s*(-?\d+)\s*:\s*(-?\d+)\s*,\s*(-?\d+)\s*:\s*(-?\d+)\s*\]\s*$")


class GeometryError(GpuptcError, ValueError):
    """A segment's geometry keywords are missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Section:
    """A FITS section ``[x1:x2,y1:y2]``, 1-based, inclusive, orientation kept.

    ``x1 > x2`` (or ``y1 > y2``) means the axis is read in reverse, as in DETSEC.
    """

    x1: int
    x2: int
    y1: int
    y2: int

    @property
    def flip_x(self) -> bool:
        """Whether the x axis runs backwards."""
        return self.x1 > self.x2

    @property
    def flip_y(self) -> bool:
        """Whether the y axis runs backwards."""
        return self.y1 > self.y2

    def box(self) -> Box:
        """The 0-based half-open box covered by this section, ignoring orientation."""
        return Box(
            min(self.y1, self.y2) - 1,
            max(self.y1, self.y2),
            min(self.x1, self.x2) - 1,
            max(self.x1, self.x2),
        )

    def __str__(self) -> str:
        return f"[{self.x1}:{self.x2},{self.y1}:{self.y2}]"


def parse_section(text: str) -> Section:
    """Parse a FITS section string such as ``'[11:522,1:2002]'``.

    Parameters
    ----------
    text : str
        The keyword value.

    Returns
    -------
    Section
        The parsed section.

    Raises
    ------
    GeometryError
        If the text is not a two-axis section of positive integers.
    """
    if not isinstance(text, str):
        raise GeometryError(f"section {text!r} is not a string")
    match = _SECTION.match(text)
    if match is None:
        raise GeometryError(f"malformed section {text!r}, expected '[x1:x2,y1:y2]'")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    if min(x1, x2, y1, y2) < 1:
        raise GeometryError(f"section {text!r} has a coordinate below 1")
    return Section(x1, x2, y1, y2)


@dataclass(frozen=True)
class Box:
    """A 0-based, half-open rectangle ``[y0:y1, x0:x1]``."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(row slice, column slice)`` for indexing a 2-D array."""
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))

    @property
    def empty(self) -> bool:
        """Whether the box holds no pixel."""
        return self.y1 <= self.y0 or self.x1 <= self.x0

    def contains(self, other: Box) -> bool:
        """Whether ``other`` lies entirely inside this box."""
        return (
            self.y0 <= other.y0
            and other.y1 <= self.y1
            and self.x0 <= other.x0
            and other.x1 <= self.x1
        )


@dataclass(frozen=True)
class AmpGeometry:
    """Geometry of one amplifier segment.

    Parameters
    ----------
    amp : int
        Amplifier number, 1-based: HDU index = CHANNEL.
    segment : str
        EXTNAME (``Segment10`` ... ``Segment00``).
    naxis1, naxis2 : int
        Raw segment width and height.
    datasec : Section
        Imaging pixels within the segment.
    detsec : Section or None
        Where the imaging pixels land in the assembled CCD, with orientation.
    biassec : Section or None
        A BIASSEC keyword that lies inside the derived serial overscan (columns right of
        DATASEC, imaging rows), else None.
    """

    amp: int
    segment: str
    naxis1: int
    naxis2: int
    datasec: Section
    detsec: Section | None = None
    biassec: Section | None = None

    @property
    def imaging(self) -> Box:
        """Imaging region (DATASEC)."""
        return self.datasec.box()

    @property
    def prescan(self) -> Box:
        """Serial prescan: every column left of DATASEC, imaging rows."""
        im = self.imaging
        return Box(im.y0, im.y1, 0, im.x0)

    @property
    def serial_overscan(self) -> Box:
        """Serial overscan: every column right of DATASEC, imaging rows."""
        im = self.imaging
        return Box(im.y0, im.y1, im.x1, self.naxis1)

    @property
    def serial_overscan_all_rows(self) -> Box:
        """Serial overscan columns over every row of the segment (EOTEST's box)."""
        im = self.imaging
        return Box(0, self.naxis2, im.x1, self.naxis1)

    @property
    def parallel_overscan(self) -> Box:
        """Parallel overscan: every row above DATASEC, imaging columns."""
        im = self.imaging
        return Box(im.y1, self.naxis2, im.x0, im.x1)

    @property
    def shape(self) -> tuple[int, int]:
        """Raw segment shape ``(naxis2, naxis1)``."""
        return (self.naxis2, self.naxis1)


def amp_geometry(
    amp: int,
    segment: str,
    naxis1: int,
    naxis2: int,
    datasec: str,
    detsec: str | None = None,
    biassec: str | None = None,
) -> AmpGeometry:
    """Build and validate one segment's geometry from its header values.

    Parameters
    ----------
    amp : int
        Amplifier number (HDU index).
    segment : str
        EXTNAME of the extension.
    naxis1, naxis2 : int
        Image size of the extension.
    datasec : str
        DATASEC keyword.
    detsec, biassec : str, optional
        DETSEC and BIASSEC keywords, when present.

    Returns
    -------
    AmpGeometry
        The validated geometry. A BIASSEC outside the derived serial overscan is dropped.

    Raises
    ------
    GeometryError
        If DATASEC does not fit in the segment or leaves no serial overscan.
    """
    data = parse_section(datasec)
    if data.flip_x or data.flip_y:
        raise GeometryError(f"DATASEC {datasec!r} is reversed")
    full = Box(0, naxis2, 0, naxis1)
    if not full.contains(data.box()):
        raise GeometryError(f"DATASEC {datasec!r} does not fit in a {naxis1} x {naxis2} segment")
    geom = AmpGeometry(amp, segment, naxis1, naxis2, data)
    if geom.serial_overscan.empty:
        raise GeometryError(f"DATASEC {datasec!r} leaves no serial overscan in {naxis1} columns")
    det = parse_section(detsec) if detsec else None
    if det is not None and det.box().shape != data.box().shape:
        raise GeometryError(f"DETSEC {detsec!r} and DATASEC {datasec!r} differ in size")
    bias = None
    if biassec:
        try:
            candidate = parse_section(biassec)
        except GeometryError:
            candidate = None
        if candidate is not None and geom.serial_overscan.contains(candidate.box()):
            bias = candidate
    return AmpGeometry(amp, segment, naxis1, naxis2, data, det, bias)


def vendor_from_detsec(detsec_hdu9: str | None) -> str:
    """Tell e2v from ITL by the x orientation of HDU 9's DETSEC, as EOTEST does.

    Parameters
    ----------
    detsec_hdu9 : str or None
        DETSEC of the ninth segment; None when the sensor has only eight (wavefront).

    Returns
    -------
    str
        ``'e2v'`` when x runs forwards, ``'itl'`` otherwise.
    """
    if not detsec_hdu9:
        return "itl"
    return "itl" if parse_section(detsec_hdu9).flip_x else "e2v"


@dataclass(frozen=True)
class SensorGeometry:
    """Geometry of every amplifier of one sensor, in HDU order.

    All amplifiers share one raw shape and one DATASEC, so a whole sensor is one stack.
    """

    amps: tuple[AmpGeometry, ...]
    vendor: str

    def __post_init__(self) -> None:
        if not self.amps:
            raise GeometryError("no amplifier segments")
        first = self.amps[0]
        for geom in self.amps[1:]:
            if geom.shape != first.shape:
                raise GeometryError(
                    f"{geom.segment} is {geom.naxis1} x {geom.naxis2}, "
                    f"{first.segment} is {first.naxis1} x {first.naxis2}"
                )
            if geom.datasec.box() != first.datasec.box():
                raise GeometryError(
                    f"{geom.segment} DATASEC {geom.datasec} differs from "
                    f"{first.segment} DATASEC {first.datasec}"
                )

    @property
    def namps(self) -> int:
        """Number of amplifiers."""
        return len(self.amps)

    @property
    def segment_shape(self) -> tuple[int, int]:
        """Raw segment shape ``(naxis2, naxis1)``."""
        return self.amps[0].shape

    @property
    def imaging(self) -> Box:
        """The imaging box, common to all amplifiers."""
        return self.amps[0].imaging

    @property
    def layout(self) -> str:
        """A short label such as ``'e2v 576x2048 [11:522,1:2002]'``."""
        first = self.amps[0]
        return f"{self.vendor} {first.naxis1}x{first.naxis2} {first.datasec}"

    @property
    def segments(self) -> tuple[str, ...]:
        """EXTNAMEs in amplifier order."""
        return tuple(g.segment for g in self.amps)


def ccd_shape(amps: Sequence[AmpGeometry]) -> tuple[int, int]:
    """``(rows, columns)`` of the CCD the amplifiers' DETSECs assemble."""
    boxes = [amp.detsec.box() for amp in amps if amp.detsec is not None]
    if len(boxes) != len(amps):
        raise GeometryError("an amplifier has no DETSEC: the CCD cannot be assembled")
    return max(b.y1 for b in boxes), max(b.x1 for b in boxes)


def ccd_coordinates(
    amp: AmpGeometry, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where positions in an amp's imaging region (its readout order) lie on the CCD.

    ``rows`` and ``cols`` (pixel indices, fractions allowed) map as
    :func:`assemble_ccd` places the amp's pixels: reversed along an axis its DETSEC runs
    backwards on. Returns ``(x, y)`` on the assembled CCD.

    Examples
    --------
    >>> amp = amp_geometry(1, "Segment10", 576, 2048, "[11:522,1:2002]", "[512:1,1:2002]")
    >>> ccd_coordinates(amp, np.array([0.0]), np.array([0.0, 511.0]))
    (array([511.,   0.]), array([0.]))
    """
    if amp.detsec is None:
        raise GeometryError(f"{amp.segment} has no DETSEC: its pixels have no place on the CCD")
    ny, nx = amp.imaging.shape
    box = amp.detsec.box()
    x = box.x0 + (nx - 1 - cols if amp.detsec.flip_x else cols)
    y = box.y0 + (ny - 1 - rows if amp.detsec.flip_y else rows)
    return x, y


def ccd_places(
    amps: Sequence[AmpGeometry], rows: np.ndarray | None = None, cols: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(amps, rows, cols)`` grids of where positions in each amp's imaging region lie.

    :func:`ccd_coordinates` of every amp over the grid of ``rows`` and ``cols`` (imaging
    indices in readout order; default: every pixel of the amps' shared imaging shape).
    """
    ny, nx = amps[0].imaging.shape
    rows = np.arange(ny, dtype=float) if rows is None else rows
    cols = np.arange(nx, dtype=float) if cols is None else cols
    grids = [np.meshgrid(*ccd_coordinates(amp, rows, cols)) for amp in amps]
    return np.stack([x for x, _ in grids]), np.stack([y for _, y in grids])


def assemble_ccd(trimmed: np.ndarray, amps: Sequence[AmpGeometry]) -> np.ndarray:
    """Assemble trimmed amplifier images into the full CCD, camera-team orientation.

    Each amplifier's image is flipped where its DETSEC runs backwards and placed at
    DETSEC. Amp 1 (Segment10) lands at the lower left of the returned array
    (row 0 is the bottom).

    Parameters
    ----------
    trimmed : numpy.ndarray
        ``(amps, ny, nx)`` images trimmed to DATASEC.
    amps : sequence of AmpGeometry
        Geometry of each amplifier, with DETSEC.

    Returns
    -------
    numpy.ndarray
        The assembled CCD image.

    Raises
    ------
    GeometryError
        If an amplifier has no DETSEC.
    """
    trimmed = np.asarray(trimmed)
    if trimmed.shape[0] != len(amps):
        raise GeometryError(f"{trimmed.shape[0]} images for {len(amps)} amplifiers")
    boxes = []
    for geom in amps:
        if geom.detsec is None:
            raise GeometryError(f"{geom.segment} has no DETSEC: cannot assemble the CCD")
        boxes.append(geom.detsec.box())
    ny = max(b.y1 for b in boxes)
    nx = max(b.x1 for b in boxes)
    ccd = np.zeros((ny, nx), dtype=trimmed.dtype)
    for image, geom, box in zip(trimmed, amps, boxes, strict=True):
        det = geom.detsec
        assert det is not None
        if image.shape != box.shape:
            raise GeometryError(f"{geom.segment}: image {image.shape} does not match DETSEC {det}")
        oriented = image[:: -1 if det.flip_y else 1, :: -1 if det.flip_x else 1]
        ccd[box.slices] = oriented
    return ccd

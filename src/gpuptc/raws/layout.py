"""Nominal raw layouts of LSST camera sensors, as CCS writes them.

Used to *write* files (the simulator); reading never assumes a layout and derives
everything from each file's own keywords.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuptc.raws.geometry import SensorGeometry, amp_geometry

__all__ = ["LAYOUTS", "RawLayout", "amp_cell", "segment_name", "small_layout"]


def segment_name(amp: int, namps: int = 16) -> str:
    """EXTNAME of amplifier ``amp`` (1-based): Segment10..17, then Segment07..00."""
    if not 1 <= amp <= namps:
        raise ValueError(f"amp {amp} outside 1..{namps}")
    return f"Segment1{amp - 1}" if amp <= 8 else f"Segment0{16 - amp}"


def amp_cell(amp: int, namps: int = 16) -> tuple[int, int]:
    """``(row, column)`` of an amplifier in its sensor, as DETSEC places it.

    Amps 1-8 run along the bottom row left to right, 9-16 along the top row right to left
    (16 above 1).
    """
    if amp <= 8 or namps <= 8:
        return 0, amp - 1
    return 1, 16 - amp


@dataclass(frozen=True)
class RawLayout:
    """Raw segment layout of one sensor type.

    Parameters
    ----------
    vendor : {'e2v', 'itl'}
        Sensor vendor; fixes the DETSEC orientation of the top half.
    prescan : int
        Serial prescan columns.
    nx, ny : int
        Imaging columns and rows per amplifier.
    serial_overscan : int
        Serial overscan columns.
    parallel_overscan : int
        Parallel overscan rows.
    namps : int
        16 for science sensors.
    """

    vendor: str
    prescan: int
    nx: int
    ny: int
    serial_overscan: int
    parallel_overscan: int
    namps: int = 16

    @property
    def naxis1(self) -> int:
        """Raw segment width."""
        return self.prescan + self.nx + self.serial_overscan

    @property
    def naxis2(self) -> int:
        """Raw segment height."""
        return self.ny + self.parallel_overscan

    @property
    def datasec(self) -> str:
        """DATASEC keyword, common to all amplifiers."""
        return f"[{self.prescan + 1}:{self.prescan + self.nx},1:{self.ny}]"

    @property
    def detsize(self) -> str:
        """DETSIZE keyword: the assembled imaging area."""
        return f"[1:{8 * self.nx},1:{2 * self.ny}]"

    @property
    def ccd_manu(self) -> str:
        """CCD_MANU keyword."""
        return "E2V" if self.vendor == "e2v" else "ITL"

    @property
    def ccd_type(self) -> str:
        """CCD_TYPE keyword."""
        return "CCD250" if self.vendor == "e2v" else "3800C"

    def detector_keywords(self, amp: int) -> dict[str, int | str]:
        """DETSEC, DTV1/2 and DTM keywords of amplifier ``amp`` as real CCS headers.

        Bottom amplifiers (1-8) are mirrored in x; top amplifiers (9-16) run
        backwards in y, and for ITL also in x.
        """
        nx, ny, p = self.nx, self.ny, self.prescan
        if amp <= 8:
            k = amp
            return {
                "DETSEC": f"[{k * nx}:{(k - 1) * nx + 1},1:{ny}]",
                "DTV1": k * nx + p + 1,
                "DTV2": 0,
                "DTM1_1": -1,
                "DTM2_2": 1,
            }
        j = 16 - amp
        if self.vendor == "e2v":
            x_section, dtv1, dtm11 = f"{j * nx + 1}:{(j + 1) * nx}", j * nx - p, 1
        else:
            x_section, dtv1, dtm11 = f"{(j + 1) * nx}:{j * nx + 1}", (j + 1) * nx + p + 1, -1
        return {
            "DETSEC": f"[{x_section},{2 * ny}:{ny + 1}]",
            "DTV1": dtv1,
            "DTV2": 2 * ny + 1,
            "DTM1_1": dtm11,
            "DTM2_2": -1,
        }

    def sensor_geometry(self) -> SensorGeometry:
        """The geometry a reader derives from files written in this layout."""
        amps = tuple(
            amp_geometry(
                amp,
                segment_name(amp, self.namps),
                self.naxis1,
                self.naxis2,
                self.datasec,
                str(self.detector_keywords(amp)["DETSEC"]),
            )
            for amp in range(1, self.namps + 1)
        )
        return SensorGeometry(amps, self.vendor)


LAYOUTS: dict[str, RawLayout] = {
    "e2v": RawLayout("e2v", prescan=10, nx=512, ny=2002, serial_overscan=54, parallel_overscan=46),
    "itl": RawLayout("itl", prescan=3, nx=509, ny=2000, serial_overscan=64, parallel_overscan=48),
}


def small_layout(vendor: str, nx: int = 64, ny: int = 96) -> RawLayout:
    """A reduced layout for fast tests: the vendor's prescan, fewer pixels.

    Parameters
    ----------
    vendor : {'e2v', 'itl'}
        Sensor vendor.
    nx, ny : int
        Imaging columns and rows per amplifier.

    Returns
    -------
    RawLayout
        Same prescan as the real layout, 24 serial and 12 parallel overscan lines.
    """
    full = LAYOUTS[vendor]
    return RawLayout(vendor, full.prescan, nx, ny, serial_overscan=24, parallel_overscan=12)

"""Where a sensor sits in LSSTCam's focal plane, from its raft and slot.

LSSTCam's science rafts ``Rrc`` form a 5 x 5 grid 127 mm apart (the corner rafts hold the
wavefront and guide sensors), each of 3 x 3 sensors ``Src`` 42.25 mm apart, row ``r``
up and column ``c`` across, R22 S11 at the centre; pixels are 10 microns (the camera's
nominal layout, as obs_lsst describes it, without the survey's measured offsets and
rotations, which are fractions of a millimetre and a degree).
"""

from __future__ import annotations

import re

import numpy as np

__all__ = [
    "CORNER_RAFTS",
    "CORNER_SLOTS",
    "PIXEL_MM",
    "RAFT_PITCH_MM",
    "SLOT_PITCH_MM",
    "focal_plane_mm",
    "grid_place",
    "sensor_centre_mm",
]

PIXEL_MM = 0.010
RAFT_PITCH_MM = 127.0
SLOT_PITCH_MM = 42.25

_RAFT = re.compile(r"^R(\d)(\d)$")
_SLOT = re.compile(r"^S(\d)(\d)$")
CORNER_RAFTS = frozenset({"R00", "R04", "R40", "R44"})
"""The rafts of the wavefront and guide sensors."""
CORNER_SLOTS: dict[str, tuple[int, int, float]] = {
    "SG0": (1, 0, 0.0),
    "SG1": (0, 1, 0.0),
    "SW0": (0, 0, 0.0),
    "SW1": (0, 0, 0.5),
}
"""A corner raft's slots: the science slot (row, column) each stands in, as obs_lsst's
camera describes them (SG0 for slot 10, SG1 for 01, the wavefront half-sensors SW0 and SW1
for the lower and upper halves of 00), and how far up that slot a half-sensor starts (in
slot heights)."""


def grid_place(raftbay: object, ccdslot: object) -> tuple[float, int] | None:
    """The sensor's ``(row, column)`` among the camera's 15 x 15 slots, or None.

    A corner raft's sensors take the slots they stand in (:data:`CORNER_SLOTS`); the upper
    wavefront half-sensor's row is half a slot up.

    Examples
    --------
    >>> grid_place("R22", "S11"), grid_place("r01", "S20"), grid_place("R40", "SW1")
    ((7, 7), (2, 3), (12.5, 0))
    >>> grid_place("R22", "SW0"), grid_place("bay 3", "S11")
    (None, None)
    """
    bay, name = str(raftbay).strip().upper(), str(ccdslot).strip().upper()
    raft = _RAFT.match(bay)
    if raft is not None and bay in CORNER_RAFTS and name in CORNER_SLOTS:
        row, column, lift = CORNER_SLOTS[name]
        return 3 * int(raft[1]) + row + lift, 3 * int(raft[2]) + column
    science = _science_slot(raftbay, ccdslot)
    if science is None:
        return None
    raft_row, raft_column, slot_row, slot_column = science
    return 3 * raft_row + slot_row, 3 * raft_column + slot_column


def _science_slot(raftbay: object, ccdslot: object) -> tuple[int, int, int, int] | None:
    """``(raft row, raft column, slot row, slot column)`` of a science sensor, or None."""
    bay = str(raftbay).strip().upper()
    raft, slot = _RAFT.match(bay), _SLOT.match(str(ccdslot).strip().upper())
    if raft is None or slot is None or bay in CORNER_RAFTS:
        return None
    return int(raft[1]), int(raft[2]), int(slot[1]), int(slot[2])


def sensor_centre_mm(raftbay: object, ccdslot: object) -> tuple[float, float] | None:
    """A science sensor's centre in the focal plane ``(x, y)`` in mm, or None if not known.

    The corner rafts' sensors (rotated, offset within their rafts) have none here.

    Examples
    --------
    >>> sensor_centre_mm("R22", "S11"), sensor_centre_mm("R01", "S00")
    ((0.0, 0.0), (-169.25, -296.25))
    """
    science = _science_slot(raftbay, ccdslot)
    if science is None:
        return None
    raft_row, raft_column, slot_row, slot_column = science
    x = (raft_column - 2) * RAFT_PITCH_MM + (slot_column - 1) * SLOT_PITCH_MM
    y = (raft_row - 2) * RAFT_PITCH_MM + (slot_row - 1) * SLOT_PITCH_MM
    return x, y


def focal_plane_mm(
    x: np.ndarray, y: np.ndarray, ccd_shape: tuple[int, int], centre: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Focal-plane ``(x, y)`` in mm of CCD pixel positions, the CCD centred on ``centre``.

    Examples
    --------
    >>> focal_plane_mm(np.array([0.0]), np.array([4003.0]), (4004, 4096), (0.0, 0.0))
    (array([-20.475]), array([20.015]))
    """
    ny, nx = ccd_shape
    return (
        centre[0] + (x - (nx - 1) / 2) * PIXEL_MM,
        centre[1] + (y - (ny - 1) / 2) * PIXEL_MM,
    )

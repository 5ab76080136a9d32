"""Pixels left out by their place: the detector's edges and the vignetting selection."""

from __future__ import annotations

import numpy as np
import pytest

import gpuptc
from gpuptc.config import LSSTCAM_VIGNETTING, get_preset
from gpuptc.measuring.selection import detector_edges, excluded_pixels, vignetting_selection
from gpuptc.raws.camera import focal_plane_mm, sensor_centre_mm
from gpuptc.raws.geometry import assemble_ccd, ccd_coordinates, ccd_shape
from gpuptc.raws.layout import small_layout


@pytest.mark.parametrize("vendor", ["e2v", "itl"])
def test_detector_edges_are_the_assembled_ccds_frame(vendor: str) -> None:
    """Assembled as the report assembles images, the mask is a frame of the CCD."""
    geometry = small_layout(vendor, nx=12, ny=10).sensor_geometry()
    assembled = assemble_ccd(detector_edges(geometry, 3), geometry.amps)
    frame = np.ones(ccd_shape(geometry.amps), bool)
    frame[3:-3, 3:-3] = False
    np.testing.assert_array_equal(assembled, frame)


def _throughputs(geometry, centre: tuple[float, float]) -> list[np.ndarray]:
    """Each amp's vignetting function at its pixels, pixel by pixel."""
    out = []
    for amp in geometry.amps:
        ny, nx = amp.imaging.shape
        x, y = ccd_coordinates(amp, np.arange(ny, dtype=float), np.arange(nx, dtype=float))
        fx, fy = focal_plane_mm(*np.meshgrid(x, y), ccd_shape(geometry.amps), centre)
        out.append(np.polyval(LSSTCAM_VIGNETTING, np.hypot(fx, fy) / 1000.0))
    return out


def test_vignetting_selection_keeps_the_least_vignetted_pixels() -> None:
    """Per amp, the pixels above the first of 0.1 %, 1.1 %, 2.1 %, ... below the amp's
    highest throughput that keeps at least half of them (cp_pipe's search)."""
    geometry = small_layout("e2v", nx=32, ny=40).sensor_geometry()
    centre = sensor_centre_mm("R01", "S00")  # 340 mm out, where the function falls fast
    wanted = 32 * 40 // 2
    excluded = vignetting_selection(geometry, LSSTCAM_VIGNETTING, 0.1, wanted, centre)
    raised = 0
    for a, throughput in enumerate(_throughputs(geometry, centre)):
        for percent in np.arange(0.1, 101.0, 1.0):
            expected = throughput > throughput.max() * (1 - percent / 100)
            if expected.sum() >= wanted:
                break
        np.testing.assert_array_equal(~excluded[a], expected)
        raised += percent > 0.1
    assert raised  # the search was needed somewhere


def test_excluded_pixels_follow_the_preset() -> None:
    geometry = small_layout("e2v", nx=12, ny=10).sensor_geometry()
    centre = (0.0, 0.0)
    assert excluded_pixels(geometry, get_preset("cp_pipe"), centre) is None
    amp_level = get_preset("cp_pipe", isr__edge_mask=2, isr__edge_mask_level="AMP")
    assert excluded_pixels(geometry, amp_level, centre) is None  # the ISR masks those
    detector = get_preset("cp_pipe", isr__edge_mask=2)
    np.testing.assert_array_equal(
        excluded_pixels(geometry, detector, centre), detector_edges(geometry, 2)
    )
    lsstcam = get_preset("cp_pipe_lsstcam")
    assert excluded_pixels(geometry, lsstcam, None) is None  # place unknown: a warning


def test_detector_level_edges_measure_more_pixels(small_e2v) -> None:
    """The same flats with 10-pixel edges by amp and by detector: amps on the detector's
    edge keep their inner borders, so more pixels; none keeps fewer."""
    manifest = gpuptc.ingest([small_e2v.directory])
    by_amp = gpuptc.measure(manifest, "cp_pipe", "numpy", edge_mask=10, edge_mask_level="AMP")
    by_detector = gpuptc.measure(manifest, "cp_pipe", "numpy", edge_mask=10)
    amp_pixels = by_amp.pairs.groupby("amp")["npix"].median()
    detector_pixels = by_detector.pairs.groupby("amp")["npix"].median()
    assert (detector_pixels > amp_pixels).all()
    # an amp at a corner loses two of its sides, the others one: the corner keeps fewer
    corner, middle = detector_pixels.loc[1], detector_pixels.loc[4]
    assert corner < middle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuptc.raws.geometry import (
    GeometryError,
    Section,
    SensorGeometry,
    amp_geometry,
    assemble_ccd,
    parse_section,
    vendor_from_detsec,
)
from gpuptc.raws.layout import LAYOUTS


def test_parse_section_keeps_orientation():
    section = parse_section("[512:1,4004:2003]")
    assert (section.x1, section.x2, section.y1, section.y2) == (512, 1, 4004, 2003)
    assert section.flip_x and section.flip_y
    box = section.box()
    assert (box.y0, box.y1, box.x0, box.x1) == (2002, 4004, 0, 512)


@pytest.mark.parametrize("text", ["", "[1:2]", "[a:b,1:2]", "11:522,1:2002", "[0:5,1:5]", None])
def test_parse_section_rejects_malformed(text):
    with pytest.raises(GeometryError):
        parse_section(text)


@settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 5000), st.integers(1, 5000), st.integers(1, 5000), st.integers(1, 5000))
def test_section_round_trips_through_text(x1, x2, y1, y2):
    section = Section(x1, x2, y1, y2)
    assert parse_section(str(section)) == section
    assert parse_section(f" [ {x1} : {x2} , {y1} : {y2} ] ") == section


def test_e2v_boxes_match_camera_layout():
    geom = amp_geometry(1, "Segment10", 576, 2048, "[11:522,1:2002]", "[512:1,1:2002]")
    assert geom.prescan.slices == (slice(0, 2002), slice(0, 10))
    assert geom.imaging.slices == (slice(0, 2002), slice(10, 522))
    assert geom.serial_overscan.slices == (slice(0, 2002), slice(522, 576))
    assert geom.serial_overscan_all_rows.slices == (slice(0, 2048), slice(522, 576))
    assert geom.parallel_overscan.slices == (slice(2002, 2048), slice(10, 522))


@pytest.mark.parametrize(
    ("naxis1", "naxis2", "datasec", "overscan_cols", "parallel_rows"),
    [
        (576, 2048, "[4:512,1:2000]", 64, 48),  # ITL camera
        (542, 2022, "[11:522,1:2002]", 20, 20),  # EOTEST simulator e2v
        (544, 2048, "[4:512,1:2000]", 32, 48),  # TS3 ITL
        (572, 2048, "[11:522,1:2002]", 50, 46),  # TS3 e2v
    ],
)
def test_other_layouts_are_derived_not_assumed(
    naxis1, naxis2, datasec, overscan_cols, parallel_rows
):
    geom = amp_geometry(1, "Segment10", naxis1, naxis2, datasec)
    assert geom.serial_overscan.shape[1] == overscan_cols
    assert geom.parallel_overscan.shape[0] == parallel_rows


def test_biassec_used_only_inside_derived_overscan():
    good = amp_geometry(1, "S", 572, 2048, "[11:522,1:2002]", biassec="[523:572,1:2002]")
    assert good.biassec == parse_section("[523:572,1:2002]")
    # EOTEST's template keeps the e2v BIASSEC for ITL: rows beyond DATASEC.
    itl = amp_geometry(1, "S", 542, 2022, "[4:512,1:2000]", biassec="[523:542,1:2002]")
    assert itl.biassec is None
    overlapping = amp_geometry(1, "S", 576, 2048, "[11:522,1:2002]", biassec="[500:576,1:2002]")
    assert overlapping.biassec is None


def test_datasec_outside_segment_is_an_error():
    with pytest.raises(GeometryError, match="does not fit"):
        amp_geometry(1, "S", 500, 2048, "[11:522,1:2002]")
    with pytest.raises(GeometryError, match="no serial overscan"):
        amp_geometry(1, "S", 522, 2048, "[11:522,1:2002]")


def test_vendor_from_hdu9_detsec():
    assert vendor_from_detsec("[3585:4096,4004:2003]") == "e2v"
    assert vendor_from_detsec("[4072:3564,4000:2001]") == "itl"
    assert vendor_from_detsec(None) == "itl"


def _layout_geometry(vendor):
    layout = LAYOUTS[vendor]
    return layout.sensor_geometry(), layout


@pytest.mark.parametrize("vendor", ["e2v", "itl"])
def test_assembly_places_and_orients_amps(vendor):
    geometry, layout = _layout_geometry(vendor)
    ny, nx = layout.ny, layout.nx
    # Each amp holds amp * 10000 + column index, so placement and x flips show.
    columns = np.arange(nx)[None, :]
    stack = np.stack([np.broadcast_to(a * 10000 + columns, (ny, nx)) for a in range(1, 17)])
    ccd = assemble_ccd(stack, geometry.amps)
    assert ccd.shape == (2 * ny, 8 * nx)
    assert ccd[0, 0] // 10000 == 1  # amp 1 lower left
    assert ccd[0, -1] // 10000 == 8  # amp 8 lower right
    assert ccd[-1, 0] // 10000 == 16  # amp 16 upper left
    assert ccd[-1, -1] // 10000 == 9  # amp 9 upper right
    # bottom row mirrored in x: first read column (0) lands at the amp's right edge
    assert ccd[0, nx - 1] % 10000 == 0
    top_first_column = ccd[-1, 7 * nx] % 10000
    assert top_first_column == (0 if vendor == "e2v" else nx - 1)


def test_sensor_geometry_rejects_mixed_datasec():
    a = amp_geometry(1, "Segment10", 576, 2048, "[11:522,1:2002]")
    b = amp_geometry(2, "Segment11", 576, 2048, "[4:512,1:2000]")
    with pytest.raises(GeometryError, match="DATASEC"):
        SensorGeometry((a, b), "e2v")

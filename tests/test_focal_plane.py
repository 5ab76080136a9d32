"""The focal-plane summary: where each amp is drawn, and which amps it lists to look at."""

import numpy as np
import pandas as pd
import pytest

from gpuptc.raws.geometry import parse_section
from gpuptc.raws.layout import LAYOUTS
from gpuptc.report.focal_plane import amp_cell, focal_plane_maps, sensor_places
from gpuptc.report.sensor_table import flagged_amps, sensor_summary
from gpuptc.schema import FitStatus


@pytest.mark.parametrize("vendor", ["e2v", "itl"])
def test_amps_are_placed_where_their_detsec_puts_them(vendor):
    layout = LAYOUTS[vendor]
    for amp in range(1, 17):
        box = parse_section(str(layout.detector_keywords(amp)["DETSEC"])).box()
        expected = (box.y0 // layout.ny, box.x0 // layout.nx)  # rows from the bottom
        assert amp_cell(amp) == expected, amp


def _manifest(places):
    return pd.DataFrame([{"sensor": s, "raftbay": r, "ccdslot": c} for s, (r, c) in places.items()])


def test_sensors_are_placed_by_raft_and_slot():
    places = {"A": ("R22", "S11"), "B": ("R01", "S20"), "C": ("R43", "S02")}
    assert sensor_places(list(places), _manifest(places)) == {
        "A": (7, 7),  # raft row 2 x 3 + slot row 1, raft column 2 x 3 + slot column 1
        "B": (2, 3),
        "C": (12, 11),
    }


@pytest.mark.parametrize(
    "places",
    [
        {"A": ("R22", "S11"), "B": ("R22", "S11")},  # two on one slot
        {"A": ("R22", "S11"), "B": ("bay 3", "S11")},  # not a raft name
    ],
)
def test_sensors_without_a_place_of_their_own_are_laid_out_by_name(places):
    assert sensor_places(list(places), _manifest(places)) == {}
    assert sensor_places(["A"], None) == {}


def _ptc(gains, noises=None, status=None, sensor="S"):
    noises = noises or [6.0] * len(gains)
    rows = [
        {
            "sensor": sensor,
            "amp": amp,
            "segment": f"Segment{amp:02d}",
            "model": "expapprox",
            "gain": gain,
            "noise": noise,
            "turnoff": 9e4,
            "a00": -2.5e-6,
            "chi2_dof": 1.0,
            "status": FitStatus.OK,
        }
        for amp, (gain, noise) in enumerate(zip(gains, noises, strict=True), start=1)
    ]
    for amp, value in (status or {}).items():
        rows[amp - 1]["status"] = value
    return pd.DataFrame(rows)


def test_amps_far_from_their_sensor_are_flagged():
    gains = [1.0] * 16
    gains[2] = 1.08  # 8 % high
    noises = [6.0] * 16
    noises[9] = 12.0  # twice the median
    ptc = _ptc(gains, noises, status={5: FitStatus.NO_CONVERGENCE})
    ptc.loc[4, ["gain", "noise"]] = np.nan
    flagged = flagged_amps(ptc).set_index("amp")
    assert list(flagged.index) == [3, 5, 10]
    assert flagged.at[3, "flags"] == "gain +8.0 %"
    assert flagged.at[10, "flags"] == "noise 12.00 e-"
    assert flagged.at[5, "flags"] == f"fit {FitStatus.NO_CONVERGENCE}"


def test_a_reference_that_disagrees_flags_the_amp():
    ptc = _ptc([1.0] * 16)
    comparison = pd.DataFrame(
        {
            "sensor": "S",
            "amp": [1, 2],
            "method": "expapprox",
            "quantity": "gain",
            "ratio": [1.01, 0.95],
        }
    )
    flagged = flagged_amps(ptc, comparison)
    assert flagged["amp"].tolist() == [2] and flagged["flags"].iloc[0] == "gain/reference 0.950"


def test_the_summary_lists_the_worst_amps_first():
    gains = [1.0] * 16
    gains[0], gains[1] = 1.2, 1.06
    noises = [6.0] * 16
    noises[0] = 20.0
    ptc = pd.concat([_ptc(gains, noises), _ptc([2.0] * 16, sensor="T")])
    summary = sensor_summary({"ptc": ptc})
    assert summary.loc["S", "amps flagged"] == 2 and summary.loc["T", "amps flagged"] == 0
    worst = summary.loc["S", "worst amps"].splitlines()
    assert worst[0].startswith("amp 1 (Segment01): gain +20.0 %; noise 20.00 e-")
    assert worst[1].startswith("amp 2 ")
    assert summary.loc["T", "median gain (e-/ADU)"] == 2.0
    assert summary.loc["S", "amps fitted"] == "16/16"


def test_maps_colour_each_amp_by_its_value():
    places = {"S": ("R22", "S11"), "T": ("R22", "S12")}
    gains = np.linspace(1.0, 1.3, 16)
    ptc = pd.concat([_ptc(list(gains)), _ptc([1.5] * 16, sensor="T")])
    fig = focal_plane_maps(ptc, _manifest(places))
    cells = fig.axes[0].collections[0]
    corners = np.array([path.vertices.min(axis=0) for path in cells.get_paths()])
    values = np.asarray(cells.get_array())
    # sensor S (slot column 1) lies left of T (slot column 2); amp 1 lower left, 16 above it
    first, sixteenth, other = corners[0], corners[15], corners[16]
    assert first[0] == sixteenth[0] and sixteenth[1] > first[1] and other[0] > first[0]
    assert values[:16] == pytest.approx(gains) and values[16:] == pytest.approx(1.5)
    assert focal_plane_maps(_ptc([1.0] * 16), None) is None  # one sensor: no map

"""The focal-plane summary: where each amp and sensor is drawn."""

import numpy as np
import pandas as pd
import pytest

from gpuptc.products.focal_plane import focal_plane_table
from gpuptc.raws.geometry import parse_section
from gpuptc.raws.layout import LAYOUTS
from gpuptc.report.focal_plane import (
    BF_QUANTITIES,
    LINEARITY_QUANTITIES,
    amp_cell,
    bf_maps,
    focal_plane_maps,
    linearity_maps,
    sensor_places,
)


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


def _verdicts(gains, sensor="S"):
    """The verdict table's mapped columns for one sensor."""
    return pd.DataFrame(
        {
            "sensor": sensor,
            "amp": range(1, len(gains) + 1),
            "model": "expapprox",
            "gain": gains,
            "noise": 6.0,
            "turnoff": 9e4,
            "a00": -2e-6,
        }
    )


def test_maps_colour_each_amp_by_its_value():
    places = {"S": ("R22", "S11"), "T": ("R22", "S12")}
    gains = np.linspace(1.0, 1.3, 16)
    verdicts = pd.concat([_verdicts(list(gains)), _verdicts([1.5] * 16, sensor="T")])
    summary = focal_plane_table({"verdict": verdicts, "manifest": _manifest(places)})
    fig = focal_plane_maps(summary, _manifest(places))
    cells = fig.axes[0].collections[0]
    corners = np.array([path.vertices.min(axis=0) for path in cells.get_paths()])
    values = np.asarray(cells.get_array())
    # sensor S (slot column 1) lies left of T (slot column 2); amp 1 lower left, 16 above it
    first, sixteenth, other = corners[0], corners[15], corners[16]
    assert first[0] == sixteenth[0] and sixteenth[1] > first[1] and other[0] > first[0]
    assert values[:16] == pytest.approx(gains) and values[16:] == pytest.approx(1.5)
    one = focal_plane_table({"verdict": _verdicts([1.0] * 16)})
    assert focal_plane_maps(one, None) is None  # one sensor: no map


def test_the_focal_plane_table_joins_each_amps_numbers_by_amp():
    """Linearity and kernels joined by sensor and amp (not by row order), the detector's
    kernel left out, a noise or a00 held at zero not a value to map, and the sensor's place."""
    places = {"S": ("R22", "S11"), "T": ("R22", "S12")}
    verdicts = pd.concat([_verdicts([1.0] * 16), _verdicts([1.5] * 16, sensor="T")])
    verdicts = verdicts.assign(status="ok", overscan_noise=5.0, flag_chi2=False)
    verdicts.loc[(verdicts.sensor == "T") & (verdicts.amp == 3), "status"] = "noise_at_zero"
    verdicts.loc[(verdicts.sensor == "S") & (verdicts.amp == 5), "status"] = "a00_at_zero"
    amps = [(s, a) for s in ("T", "S") for a in range(16, 0, -1)]  # another order
    linearity = pd.DataFrame(
        {"sensor": [s for s, _ in amps], "amp": [a for _, a in amps],
         "max_frac_dev": [a * 1e-3 for _, a in amps], "eo_linearity_turnoff": 1e5,
         "turnoff": [9e4 + a for _, a in amps]}
    )  # fmt: skip
    kernels = pd.DataFrame(
        {"sensor": ["S", "S"], "amp": [2, -1], "segment": ["Segment11", "DETECTOR"],
         "size": [3, 3], "kernel": [[0, 0, 0, 0, -1e-6, 0, 0, 0, 0]] * 2,
         "bf_slope_x": [1e-7, 9.0], "bf_slope_y": [2e-7, 9.0]}
    )  # fmt: skip
    tables = {"verdict": verdicts, "manifest": _manifest(places), "linearity": linearity}
    table = focal_plane_table({**tables, "bf_kernel": kernels}).set_index(["sensor", "amp"])
    assert table.loc[("T", 7), "max_frac_dev"] == pytest.approx(7e-3)
    assert table.loc[("S", 16), "linearity_turnoff"] == 9e4 + 16
    assert table.loc[("S", 2), ["k00", "bf_slope_x"]].tolist() == [-1e-6, 1e-7]
    assert table.k00.notna().sum() == 1 and table.bf_slope_y.notna().sum() == 1
    assert np.isnan(table.loc[("T", 3), "noise"]) and table.noise.notna().sum() == 31
    assert np.isnan(table.loc[("S", 5), "a00"]) and table.a00.notna().sum() == 31
    assert table.noise_over_overscan.dropna().eq(6.0 / 5.0).all()
    assert table.loc["T", "ccdslot"].eq("S12").all() and table.loc["S", "raftbay"].eq("R22").all()


def test_linearity_maps_colour_each_amp_by_its_linearity():
    """eo_pipe's maximum deviation and turnoff, cp_pipe's turnoff and the residual spread."""
    places = {"S": ("R22", "S11"), "T": ("R22", "S12")}
    rows = []
    for k, sensor in enumerate(places):
        for amp in range(1, 17):
            rows.append(
                {
                    "sensor": sensor,
                    "amp": amp,
                    "segment": f"C{amp}",
                    "type": "Spline",
                    "max_frac_dev": 1e-3 * amp + k,
                    "eo_linearity_turnoff": 9e4 + amp,
                    "turnoff": 8e4 + amp,
                    "residual_sigma_mad": 1e-4 * amp,
                }
            )
    linearity = pd.DataFrame(rows)
    fig = linearity_maps(linearity, _manifest(places))
    titles = [ax.get_title() for ax in fig.axes[:4]]  # the maps; their colour bars follow
    assert titles == [f"{label}, Spline" for _, label in LINEARITY_QUANTITIES]
    for ax, (column, _) in zip(fig.axes, LINEARITY_QUANTITIES, strict=False):
        shown = np.asarray(ax.collections[0].get_array())
        assert shown == pytest.approx(linearity[column].to_numpy()), column
    assert linearity_maps(linearity[linearity.sensor == "S"], None) is None


def test_bf_maps_show_each_kernels_centre_and_eo_pipes_statistics():
    """Each amp's kernel centre (the middle of its flattened kernel) and the statistics; the
    detector kernel's row is not an amp."""
    places = {"S": ("R22", "S11"), "T": ("R22", "S12")}
    rows = []
    for k, sensor in enumerate(places):
        for amp in range(1, 17):
            kernel = np.zeros(9)
            kernel[4] = -1e-6 * amp - k
            row = {"sensor": sensor, "amp": amp, "segment": f"C{amp}", "method": "averaged"}
            row |= {"size": 3, "kernel": kernel.tolist(), "bf_slope_x": 1e-3 * amp}
            rows.append(row | {"bf_slope_y": 2e-3 * amp, "bf_xcorr": 5.0 * amp + k})
    rows.append(rows[0] | {"amp": 0, "segment": "DETECTOR", "kernel": [9.0] * 9})
    kernels = pd.DataFrame(rows)
    fig = bf_maps(kernels, _manifest(places))
    assert [ax.get_title() for ax in fig.axes[:4]] == [
        f"{label}, averaged" for _, label in BF_QUANTITIES
    ]
    amps = kernels[kernels.segment != "DETECTOR"]
    expected = {"k00": [k[4] for k in amps.kernel], **{c: amps[c] for c, _ in BF_QUANTITIES[1:]}}
    for ax, (column, _) in zip(fig.axes, BF_QUANTITIES, strict=False):
        np.testing.assert_allclose(np.asarray(ax.collections[0].get_array()), expected[column])

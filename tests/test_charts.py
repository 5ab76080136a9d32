"""The charts the browser draws: what each specification holds, checked against the tables."""

import json

import numpy as np
import pandas as pd
import pytest

import gpuptc
import shared_inputs
from gpuptc.config import get_preset
from gpuptc.fitting.curves import model_curves
from gpuptc.report.charts import (
    amp_map,
    brighter_fatter_matrices,
    chart_png,
    gain_against_exposure_time,
    model_residuals,
    ptc_chart,
    spec_json,
)

COLUMN = "rhl_gain_corrected"


@pytest.fixture(scope="module")
def tables(small_e2v):
    """A small sensor's tables: 8 pairs up to 1.3 x the full well, so every amp saturates."""
    pairs, covariances = gpuptc.measure(
        gpuptc.ingest([small_e2v.directory]),
        backend="numpy",
        cov_size=4,
        extract__min_pixels_covariance=100,
    )
    models = ["expapprox", "quadratic", "fullcov"]
    ptc, fullcov, fitted = gpuptc.fit(pairs, covariances, models=models, fullcov_size=3)
    curves = model_curves(fitted, ptc, fullcov)
    tables = {"pairs": fitted, "ptc": ptc, "curves": curves, "fullcov": fullcov}
    return small_e2v.sensor, tables, gpuptc.amp_verdicts(tables)


def _rows(spec, kind):
    return pd.DataFrame([row for row in spec["data"]["values"] if row["kind"] == kind])


def _gain_chart(tables):
    sensor, tables_, verdicts = tables
    turnoffs = verdicts.set_index("amp")["turnoff"]
    return gain_against_exposure_time(tables_["pairs"], turnoffs, COLUMN, sensor), turnoffs


def test_each_amps_onset_lies_between_its_last_unsaturated_and_first_saturated_pair(tables):
    chart, turnoffs = _gain_chart(tables)
    onsets = _rows(chart.spec, "onset").set_index("amp")
    pairs = tables[1]["pairs"]
    assert len(onsets) == 16  # the brightest pairs saturate every amp
    for amp, rows in pairs.groupby("amp"):
        onset = onsets.at[amp, "onset"]
        before, after = rows[rows.exptime < onset], rows[rows.exptime > onset]
        assert (before["mean"] <= turnoffs[amp]).all() and len(before)
        assert (after["mean"] > turnoffs[amp]).all() and len(after)


def test_no_point_of_the_gain_chart_lies_off_its_axes(tables):
    chart, _ = _gain_chart(tables)
    low, high = _layer(chart.spec, "pair")["encoding"]["y"]["scale"]["domain"]
    points = _rows(chart.spec, "pair")
    assert points["shown"].between(low, high).all()
    below = points[points.state == "below saturation"]
    np.testing.assert_allclose(below["shown"], below["gain"])  # none of them clipped
    saturated = points[points.state != "below saturation"]
    assert (saturated["gain"] > high).any()  # the runaway gains, drawn at the edge
    assert _layer(chart.spec, "pair")["mark"]["clip"] is True


def _layer(spec, kind):
    return next(
        layer for layer in spec["spec"]["layer"] if layer["transform"][0]["filter"]["equal"] == kind
    )


def test_the_ptc_chart_holds_every_pair_and_every_models_curve(tables):
    sensor, tables_, _ = tables
    chart = ptc_chart(tables_["pairs"], tables_["curves"], sensor)
    points, lines = _rows(chart.spec, "pair"), _rows(chart.spec, "model")
    measured = tables_["pairs"][np.isfinite(tables_["pairs"]["var"])]
    assert len(points) == len(measured)
    assert (points["use"] == "used by the fits").sum() == int(measured.used.sum())
    curves = tables_["curves"][tables_["curves"].lag == "00"]
    assert set(lines.model) == set(curves.model) == {"expapprox", "quadratic", "fullcov"}
    merged = points.merge(measured, on=["amp", "pair"], suffixes=("", "_table"))
    np.testing.assert_allclose(merged["var"], merged["var_table"], rtol=1e-4)
    toggled = _layer(chart.spec, "model")["params"][0]
    assert toggled["bind"] == "legend" and toggled["select"]["fields"] == ["model"]
    assert [t["field"] for t in _layer(chart.spec, "pair")["encoding"]["tooltip"]] == [
        "pair",
        "exptime",
        "mean",
        "var",
        "file1",
        "file2",
    ]


def test_the_amp_map_holds_each_amp_once_where_it_sits(tables):
    sensor, _, verdicts = tables
    chart = amp_map(verdicts, sensor)
    gains = pd.DataFrame(chart.spec["concat"][0]["data"]["values"]).set_index("amp")
    assert sorted(gains.index) == list(range(1, 17))
    np.testing.assert_allclose(gains["value"], verdicts.set_index("amp").gain[gains.index], 1e-4)
    # e2v: amps 1-8 along the bottom row left to right, 9-16 along the top right to left
    assert gains.loc[1, ["row", "column"]].tolist() == [1, 0]
    assert gains.loc[8, ["row", "column"]].tolist() == [1, 7]
    assert gains.loc[16, ["row", "column"]].tolist() == [0, 0]


def test_values_from_the_data_cannot_close_the_script_that_holds_them(tables):
    sensor, tables_, _ = tables
    hostile = "<script>alert(1)<img src=x onerror=y>.fits"  # a file name has no slash
    pairs = tables_["pairs"].assign(file1=f"/raw/{hostile}")
    text = spec_json(ptc_chart(pairs, tables_["curves"], sensor).spec)
    assert "<" not in text and ">" not in text
    assert {row.get("file1") for row in json.loads(text)["data"]["values"]} == {hostile, None}


def test_a_chart_is_drawn_to_png_without_a_browser(tables):
    sensor, _, verdicts = tables
    png = chart_png(amp_map(verdicts, sensor), scale=1.0)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_the_a_matrix_scale_is_set_by_the_lags_other_than_the_origin(tables):
    sensor, tables_, _ = tables
    chart = brighter_fatter_matrices(tables_["fullcov"], sensor)
    a_panel, b_panel, scatter = chart.spec["hconcat"]
    cells = pd.DataFrame(a_panel["data"]["values"])
    low, high = a_panel["layer"][0]["encoding"]["color"]["scale"]["domain"]
    others = cells[(cells.i > 0) | (cells.j > 0)]
    assert -low == high == pytest.approx(others.value.abs().max())
    origin = cells[(cells.i == 0) & (cells.j == 0)].iloc[0]
    assert abs(origin.value) > high and origin.off_scale == "off the scale"
    assert cells.error.notna().all()  # every lag with its error
    medians = tables_["fullcov"].query("model == 'fullcov'").groupby(["i", "j"]).a.median()
    np.testing.assert_allclose(
        cells.set_index(["i", "j"]).value, medians[cells.set_index(["i", "j"]).index], rtol=1e-4
    )
    b_cells = pd.DataFrame(b_panel["data"]["values"])
    assert b_cells.error.notna().all() and len(b_cells) == 9
    points = pd.DataFrame(scatter["data"]["values"])
    assert len(points) <= 16 * 9 and set(points.significance) <= {
        "more than 3 sigma",
        "within 3 sigma of 0",
    }


@pytest.mark.parametrize("vendor", ["e2v", "itl"])
@pytest.mark.parametrize("preset", ["cp_pipe", "eotest"])
def test_each_models_residuals_have_the_rms_its_chi2_says(vendor, preset, tmp_path_factory):
    """Residuals in each model's own errors, over the pairs it took: rms within 25 % of the
    square root of its chi^2/dof (measured: 0.86-1.16). Medium sensors: a small amp's
    few pairs leave the full-covariance fits too few degrees of freedom to compare."""
    sensor, pairs, covariances = shared_inputs.measured_truth_sensor(vendor, tmp_path_factory)
    ptc, fullcov, fitted = gpuptc.fit(pairs, covariances, preset=preset)
    curves = model_curves(fitted, ptc, fullcov, get_preset(preset).solve)
    residuals = model_residuals(fitted, curves, sensor.sensor)
    assert set(residuals.model) == {"expapprox", "fullcov", "fullcov_nob", "linear", "quadratic"}
    for model, rows in residuals.groupby("model"):
        rms = np.sqrt(np.mean(rows.residual**2))
        chi = np.sqrt(ptc.loc[ptc.model == model, "chi2_dof"]).median()
        assert rms == pytest.approx(chi, rel=0.25), model
        fits = ptc[ptc.model == model].set_index("amp")
        taken = rows.groupby("amp").size()
        assert (taken == fits.n_used[taken.index]).all(), model  # the pairs the fit took


def test_the_ptc_switches_to_electrons_with_each_amps_gain(tables):
    sensor, tables_, verdicts = tables
    gains = verdicts.set_index("amp")["gain"]
    chart = ptc_chart(tables_["pairs"], tables_["curves"], sensor, gains)
    (switch,) = chart.spec["params"]
    assert switch["bind"]["options"] == ["ADU", "e-"] and switch["value"] == "ADU"
    points = _rows(chart.spec, "pair").set_index("amp")
    np.testing.assert_allclose(points["g"], gains[points.index], rtol=1e-4)
    calculated = {t["as"]: t["calculate"] for t in _layer(chart.spec, "pair")["transform"][1:]}
    assert calculated == {
        "x": "datum.mean * (units == 'e-' ? datum.g : 1)",
        "y": "datum.var * (units == 'e-' ? datum.g * datum.g : 1)",
    }
    without = ptc_chart(tables_["pairs"], tables_["curves"], sensor)
    assert "bind" not in without.spec["params"][0] and (_rows(without.spec, "pair").g == 1).all()

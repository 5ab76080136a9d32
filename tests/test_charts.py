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
    amp_summary,
    brighter_fatter_matrices,
    chart_png,
    comparison_chart,
    covariance_chart,
    data_json,
    gain_against_exposure_time,
    gain_histograms,
    level_mismatch,
    model_residuals,
    ptc_chart,
    records,
    sensor_charts,
)
from gpuptc.report.charts.spec import blocks
from gpuptc.schema import MISMATCH_THRESHOLD

COLUMN = "rhl_gain_corrected"


@pytest.fixture(scope="module")
def tables(small_e2v):
    """A small sensor's tables: 8 pairs up to 1.3 x the full well, so every amp saturates;
    covariances measured (fewer pixels than cp_pipe asks for) and compared with EOTEST."""
    pairs, covariances = gpuptc.measure(
        gpuptc.ingest([small_e2v.directory]),
        backend="numpy",
        cov_size=4,
        extract__min_pixels_covariance=100,
    )
    models = ["expapprox", "quadratic", "fullcov"]
    ptc, fullcov, fitted = gpuptc.fit(pairs, covariances, models=models, fullcov_size=3)
    curves = model_curves(fitted, ptc, fullcov)
    comparison = gpuptc.compare(ptc, [small_e2v.eotest_path])
    tables = {
        "pairs": fitted,
        "ptc": ptc,
        "curves": curves,
        "fullcov": fullcov,
        "covariances": covariances,
        "comparison": comparison,
    }
    return small_e2v.sensor, tables, gpuptc.amp_verdicts(tables)


def _rows(chart, kind, name="points"):
    """The rows a page draws of one layer's kind (the data set as the page's script makes it)."""
    return pd.DataFrame([row for row in records(chart.data[name]) if row.get("kind") == kind])


def _gain_chart(tables):
    sensor, tables_, verdicts = tables
    turnoffs = verdicts.set_index("amp")["turnoff"]
    return gain_against_exposure_time(tables_["pairs"], turnoffs, COLUMN, sensor), turnoffs


def _layer(spec, kind):
    return next(
        layer for layer in spec["spec"]["layer"] if layer["transform"][0]["filter"]["equal"] == kind
    )


def test_each_amps_onset_lies_between_its_last_unsaturated_and_first_saturated_pair(tables):
    chart, turnoffs = _gain_chart(tables)
    onsets = _rows(chart, "onset").set_index("amp")
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
    points = _rows(chart, "pair")
    assert points["shown"].between(low, high).all()
    below = points[~points.saturated]
    np.testing.assert_allclose(below["shown"], below["gain"])  # none of them clipped
    assert (points[points.saturated]["gain"] > high).any()  # the runaway gains, at the edge
    assert _layer(chart.spec, "pair")["mark"]["clip"] is True


def test_the_ptc_chart_holds_every_pair_and_every_models_curve(tables):
    sensor, tables_, _ = tables
    chart = ptc_chart(tables_["pairs"], tables_["curves"], sensor)
    points, lines = _rows(chart, "pair"), _rows(chart, "model")
    measured = tables_["pairs"][np.isfinite(tables_["pairs"]["var"])]
    assert len(points) == len(measured)
    assert points["used"].sum() == int(measured.used.sum())
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
    # each pair's files, once per pair, looked up before the facet splits the amps
    files = pd.DataFrame(records(chart.data["files"])).set_index("pair")
    assert len(files) == measured.pair.nunique()
    assert chart.spec["transform"][0]["from"]["data"]["name"] == "files"
    first = measured.drop_duplicates("pair").set_index("pair")
    assert all(files.file1[p] == first.file1[p].rsplit("/", 1)[-1] for p in files.index)


def test_the_ptc_chart_marks_each_amps_turnoff(tables):
    sensor, tables_, verdicts = tables
    turnoffs = verdicts.set_index("amp")["turnoff"]
    chart = ptc_chart(tables_["pairs"], tables_["curves"], sensor, turnoffs=turnoffs)
    rules = _rows(chart, "turnoff").set_index("amp")
    np.testing.assert_allclose(rules["turnoff"], turnoffs[rules.index], rtol=1e-4)
    switch = chart.spec["params"][1]
    assert switch["bind"]["options"] == ["variance", "variance / mean"]


def test_the_amp_map_holds_each_amp_once_where_it_sits(tables):
    sensor, _, verdicts = tables
    chart = amp_map(verdicts, sensor)
    assert chart.spec["concat"][0]["data"] == {"name": "gain"}
    gains = pd.DataFrame(records(chart.data["gain"])).set_index("amp")
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
    text = data_json(ptc_chart(pairs, tables_["curves"], sensor).data)
    assert "<" not in text and ">" not in text
    (block,) = json.loads(text)["files"]
    assert set(block["columns"]["file1"]) == {hostile}


def test_the_page_holds_each_data_set_column_by_column_and_gets_every_row_back():
    """Blocks per kind, missing cells left out, numbers to 5 digits: the rows the page's
    script makes (``records``) are the table's own, cell by cell."""
    frame = pd.DataFrame(
        {
            "kind": ["a", "b", "a"],
            "amp": [1, 2, 3],
            "mean": [1234.5678, np.nan, -np.inf],
            "file1": ["/x/y/f.fits", "g.fits", None],
            "used": [True, False, True],
        }
    )
    assert [block["n"] for block in blocks(frame)] == [2, 1]
    assert records(frame) == [
        {"kind": "a", "amp": 1, "mean": 1234.6, "file1": "f.fits", "used": True},
        {"kind": "a", "amp": 3, "used": True},
        {"kind": "b", "amp": 2, "file1": "g.fits", "used": False},
    ]


def test_a_chart_is_drawn_to_png_without_a_browser(tables):
    sensor, _, verdicts = tables
    png = chart_png(amp_map(verdicts, sensor), scale=1.0)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_the_a_matrix_scale_is_set_by_the_lags_other_than_the_origin(tables):
    sensor, tables_, _ = tables
    chart = brighter_fatter_matrices(tables_["fullcov"], sensor)
    a_panel = chart.spec["hconcat"][0]
    cells = pd.DataFrame(records(chart.data["a"]))
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
    b_cells = pd.DataFrame(records(chart.data["b"]))
    assert b_cells.error.notna().all() and len(b_cells) == 9
    points = pd.DataFrame(records(chart.data["distances"]))
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
    switch = chart.spec["params"][0]
    assert switch["bind"]["options"] == ["ADU", "e-"] and switch["value"] == "ADU"
    points = _rows(chart, "pair").set_index("amp")
    np.testing.assert_allclose(points["g"], gains[points.index], rtol=1e-4)
    calculated = {t["as"]: t["calculate"] for t in _layer(chart.spec, "pair")["transform"][1:]}
    assert calculated["f"] == "units == 'e-' ? datum.g : 1"
    assert calculated["x"] == "datum.mean * datum.f"
    assert calculated["y"].startswith("datum.var * datum.f * datum.f")
    without = ptc_chart(tables_["pairs"], tables_["curves"], sensor)
    assert "bind" not in without.spec["params"][0] and (_rows(without, "pair").g == 1).all()


def test_each_amps_gain_histogram_counts_its_used_pairs_over_its_own_range(tables):
    sensor, tables_, _ = tables
    chart = gain_histograms(tables_["pairs"], COLUMN, sensor)
    bins, medians = _rows(chart, "bins"), _rows(chart, "median").set_index("amp")
    used = tables_["pairs"][tables_["pairs"].used.astype(bool)]
    for amp, rows in used.groupby("amp"):
        mine = bins[bins.amp == amp]
        assert mine.pairs.sum() == rows[COLUMN].notna().sum()
        assert mine.low.min() == pytest.approx(rows[COLUMN].min(), rel=1e-4)
        assert mine.high.max() == pytest.approx(rows[COLUMN].max(), rel=1e-4)
        assert medians.gain[amp] == pytest.approx(rows[COLUMN].median(), rel=1e-4)
    assert chart.spec["resolve"] == {"scale": {"x": "independent"}}


def test_the_mismatch_chart_gives_each_pairs_median_level_difference(tables):
    sensor, tables_, _ = tables
    chart = level_mismatch(tables_["pairs"], sensor, MISMATCH_THRESHOLD)
    shown = pd.DataFrame(records(chart.data["pairs"])).set_index("pair")
    expected = 100 * tables_["pairs"].groupby("pair").level_mismatch.median()
    np.testing.assert_allclose(shown.percent, expected[shown.index], rtol=1e-4, atol=1e-9)
    limits = sorted(row["percent"] for row in records(chart.data["limits"]))
    assert limits == pytest.approx([-100 * MISMATCH_THRESHOLD, 100 * MISMATCH_THRESHOLD])


def test_the_amp_summary_holds_every_models_numbers_and_the_references_gain(tables):
    sensor, tables_, _ = tables
    chart = amp_summary(tables_["ptc"], tables_["comparison"], sensor)
    fits = _rows(chart, "fit", "values")
    gains = fits[fits.quantity == "gain (e-/ADU)"].set_index(["model", "amp"])
    expected = tables_["ptc"].set_index(["model", "amp"])
    np.testing.assert_allclose(gains.value, expected.gain[gains.index], rtol=1e-4)
    np.testing.assert_allclose(gains.error, expected.gain_err[gains.index], rtol=1e-4)
    assert set(fits.quantity) == {"gain (e-/ADU)", "read noise (e-)", "turnoff (ADU)", "a00 (1/e-)"}
    references = _rows(chart, "reference", "values").set_index("amp")
    eotest = tables_["comparison"].query("quantity == 'gain' and reference == 'eotest'")
    eotest = eotest.drop_duplicates("amp").set_index("amp").reference_value
    np.testing.assert_allclose(references.value, eotest[references.index], rtol=1e-4)
    assert set(references.reference) == {"EOTEST PTC_GAIN"} and len(references) == 16


def test_a_model_without_values_is_named_with_why(tables):
    sensor, tables_, _ = tables
    ptc = tables_["ptc"].copy()
    lost = (ptc.model == "quadratic") & ptc.amp.isin([3, 5])
    ptc.loc[lost, ["gain", "status"]] = (np.nan, "too_few_points")
    chart = amp_summary(ptc, tables_["comparison"], sensor)
    assert chart.spec["title"]["subtitle"] == ["quadratic: no value on amps 3, 5 (too_few_points)"]


def test_the_comparison_chart_gives_each_ratio_to_each_reference(tables):
    sensor, tables_, _ = tables
    chart = comparison_chart(tables_["comparison"], sensor)
    ratios = _rows(chart, "ratio", "ratios").set_index(["amp", "method", "quantity"])
    compared = tables_["comparison"].dropna(subset=["ratio"])
    compared = compared.set_index(["amp", "method", "quantity"])
    assert len(ratios) == len(compared)
    np.testing.assert_allclose(ratios.ratio, compared.ratio[ratios.index], rtol=1e-4)
    assert comparison_chart(tables_["comparison"].assign(ratio=np.nan), sensor) is None


def test_the_covariance_chart_divides_each_used_pairs_covariance_by_its_mean(tables):
    sensor, tables_, _ = tables
    arguments = (tables_["covariances"], tables_["fullcov"], tables_["curves"], sensor)
    chart = covariance_chart(tables_["pairs"], *arguments)
    points = _rows(chart, "covariance")
    used = tables_["pairs"][tables_["pairs"].used.astype(bool)].set_index(["amp", "pair"])
    assert set(points.lag) == {"10", "01", "11"}
    assert len(points) == 3 * len(used)
    expected = (
        points["cov"] / used["mean"][pd.MultiIndex.from_frame(points[["amp", "pair"]])].values
    )
    np.testing.assert_allclose(points.ratio, expected, rtol=1e-3)
    assert set(_rows(chart, "model").lag) == {"10", "01", "11"}  # the fit's curves
    unmeasured = tables_["covariances"].assign(cov=np.nan)  # amps too small for them
    assert covariance_chart(tables_["pairs"], unmeasured, *arguments[1:]) is None


def _titles(spec):
    """Every x and y encoding of the specification, with where it is."""
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key in ("x", "y") and isinstance(value, dict) and "field" in value:
                yield value
            yield from _titles(value)
    elif isinstance(spec, list):
        for value in spec:
            yield from _titles(value)


def test_every_axis_of_every_chart_is_titled_in_words(tables):
    """An axis shows a title, not a bare column name (``rhl_gain_corrected``), or no axis
    at all; the per-amp summary's values are titled by their panel's header."""
    sensor, tables_, verdicts = tables
    charts = sensor_charts(sensor, tables_, verdicts, COLUMN)
    assert len(charts) == 10
    for chart in charts:
        headed = chart.spec.get("facet", {}).get("field") == "quantity"
        for encoding in _titles(chart.spec):
            if encoding.get("axis", {}) is None or (
                headed and encoding["field"] in ("value", "low")
            ):
                continue
            title, field = encoding.get("title"), encoding["field"]
            assert title and not (title == field and "_" in field), (chart.name, encoding)


def test_a_chart_that_cannot_be_built_is_a_note_and_the_others_are_drawn(tables, caplog):
    """Tables of an older run without a column a chart needs: that chart says why."""
    sensor, tables_, verdicts = tables
    older = {**tables_, "pairs": tables_["pairs"].drop(columns=["level_mismatch"])}
    charts = {
        chart.name.split("_E2V")[0]: chart
        for chart in sensor_charts(sensor, older, verdicts, COLUMN)
    }
    assert len(charts) == 10
    assert (
        charts["mismatch"].failure.startswith("KeyError")
        and "level_mismatch" in charts["mismatch"].failure
    )
    assert charts["mismatch"].spec == {} and "mismatch" in caplog.text
    assert all(chart.failure is None for name, chart in charts.items() if name != "mismatch")

"""The charts the browser draws: what each specification holds, checked against the tables."""

import json

import numpy as np
import pandas as pd
import pytest

import gpuptc
import shared_inputs
from gpuptc.config import BrighterFatterConfig, LinearityConfig, get_preset
from gpuptc.fitting.bf_sensor import sensor_bf_kernels
from gpuptc.fitting.curves import model_curves
from gpuptc.fitting.linearity_sensor import sensor_linearity
from gpuptc.kernels.linearize import apply_linearizer
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
    residuals_chart,
    sensor_charts,
)
from gpuptc.report.charts import ptc as charts_ptc
from gpuptc.report.charts.bf_kernel import bf_kernel_chart
from gpuptc.report.charts.linearity import linearity_chart
from gpuptc.report.charts.ptc import in_bins
from gpuptc.report.charts.spec import blocks, rounded_array
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
    config = LinearityConfig(max_linear_adu=1e5, polynomial_order=2)  # 8 pairs: few
    tables = {
        "pairs": fitted,
        "ptc": ptc,
        "curves": curves,
        "fullcov": fullcov,
        "covariances": covariances,
        "comparison": comparison,
        "linearity": sensor_linearity(fitted, ptc, config),
        "bf_kernel": sensor_bf_kernels(fitted, covariances, ptc, fullcov, BrighterFatterConfig()),
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
    """The axis spans every gain below saturation; a runaway gain is drawn at its edge."""
    chart, _ = _gain_chart(tables)
    layer = _layer(chart.spec, "pair")
    low, high = layer["encoding"]["y"]["scale"]["domain"]
    assert layer["encoding"]["y"]["field"] == "shown" and layer["mark"]["clip"] is True
    assert {"calculate": f"clamp(datum.gain, {low}, {high})", "as": "shown"} in layer["transform"]
    points = _rows(chart, "pair")
    below = points[points.saturated == 0]
    assert below["gain"].between(low, high).all()  # none of them clipped
    assert (points[points.saturated == 1]["gain"] > high).any()  # the runaway gains


def test_the_ptc_chart_holds_every_pair_and_every_models_curve(tables):
    sensor, tables_, _ = tables
    chart = ptc_chart(tables_["pairs"], tables_["curves"], sensor)
    points, lines = _rows(chart, "pair"), _rows(chart, "model")
    measured = tables_["pairs"][np.isfinite(tables_["pairs"]["var"])]
    assert len(points) == len(measured)
    assert points["used"].sum() == int(measured.used.sum())  # 1 and 0
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
    # each pair's exposure time and files, once per pair, looked up before the facet
    files = pd.DataFrame(records(chart.data["exposures"])).set_index("pair")
    assert len(files) == measured.pair.nunique()
    assert chart.spec["transform"][0]["from"]["data"]["name"] == "exposures"
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
    sensor, tables_, verdicts = tables
    chart = amp_map(verdicts, sensor)
    assert chart.spec["concat"][0]["data"] == {"name": "gain"}
    gains = pd.DataFrame(records(chart.data["gain"])).set_index("amp")
    assert sorted(gains.index) == list(range(1, 17))
    np.testing.assert_allclose(gains["value"], verdicts.set_index("amp").gain[gains.index], 1e-4)
    # e2v: amps 1-8 along the bottom row left to right, 9-16 along the top right to left
    assert gains.loc[1, ["row", "column"]].tolist() == [1, 0]
    assert gains.loc[8, ["row", "column"]].tolist() == [1, 7]
    assert gains.loc[16, ["row", "column"]].tolist() == [0, 0]
    with_linearity = amp_map(verdicts, sensor, tables_["linearity"])
    deviations = pd.DataFrame(records(with_linearity.data["max_frac_dev"])).set_index("amp")
    expected = tables_["linearity"].set_index("amp").max_frac_dev[deviations.index]
    np.testing.assert_allclose(deviations["value"], expected, rtol=1e-4)
    assert deviations.loc[16, ["row", "column"]].tolist() == [0, 0]
    assert "max_frac_dev" not in chart.data  # no linearity table: no panel
    with_kernels = amp_map(verdicts, sensor, None, tables_["bf_kernel"])
    centres = pd.DataFrame(records(with_kernels.data["bf_k00"])).set_index("amp")
    kernels = tables_["bf_kernel"].set_index("amp")
    for amp in centres.index:
        expected = np.reshape(kernels.kernel[amp], (9, 9))[4, 4]
        assert centres.value[amp] == pytest.approx(expected, rel=1e-4)
    assert "bf_k00" not in chart.data


def test_values_from_the_data_cannot_close_the_script_that_holds_them(tables):
    sensor, tables_, _ = tables
    hostile = "<script>alert(1)<img src=x onerror=y>.fits"  # a file name has no slash
    pairs = tables_["pairs"].assign(file1=f"/raw/{hostile}")
    text = data_json(ptc_chart(pairs, tables_["curves"], sensor).data)
    assert "<" not in text and ">" not in text
    (block,) = json.loads(text)["exposures"]
    assert block["constant"]["file1"] == hostile


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
    assert [block["n"] for block in blocks(frame)] == [1, 1, 1]  # a block per kind and amp
    assert records(frame) == [
        {"kind": "a", "amp": 1, "mean": 1234.6, "file1": "f.fits", "used": 1},
        {"kind": "b", "amp": 2, "file1": "g.fits", "used": 0},
        {"kind": "a", "amp": 3, "used": 1},
    ]
    many = pd.DataFrame({"amp": 1, "pair": range(5), "g": 0.9, "var": [1.0, 2, 3, 4, np.nan]})
    (block,) = blocks(many)  # what one amp's rows share is held once
    assert block["constant"] == {"amp": 1, "g": 0.9}
    assert block["columns"] == {"pair": [0, 1, 2, 3, 4], "var": [1, 2, 3, 4, None]}
    assert records(many)[4] == {"amp": 1, "g": 0.9, "pair": 4}


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
    assert set(points.lag) == {"10", "20", "01", "02", "11"}  # eo_pipe's five
    assert len(points) == 5 * len(used)
    expected = (
        points["cov"] / used["mean"][pd.MultiIndex.from_frame(points[["amp", "pair"]])].values
    )
    np.testing.assert_allclose(points.ratio, expected, rtol=1e-3)
    assert set(_rows(chart, "model").lag) == {"10", "20", "01", "02", "11"}  # the fit's curves
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
    assert len(charts) == 12
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
    assert len(charts) == 12
    assert (
        charts["mismatch"].failure.startswith("KeyError")
        and "level_mismatch" in charts["mismatch"].failure
    )
    assert charts["mismatch"].spec == {} and "mismatch" in caplog.text
    assert all(chart.failure is None for name, chart in charts.items() if name != "mismatch")


def test_in_bins_gives_each_bins_mean_spread_and_count():
    """Against a straightforward loop over the bins' edges."""
    rng = np.random.default_rng(5)
    rows = pd.DataFrame(
        {"model": rng.choice(["a", "b"], 500), "mean": 10 ** rng.uniform(2, 5, 500)}
    ).assign(residual=lambda r: rng.normal(size=500))
    binned = in_bins(rows, ["model"], "residual")
    edges = np.geomspace(rows["mean"].min(), rows["mean"].max(), 25)
    for (model, k), rows_in in rows.groupby(
        ["model", np.clip(np.searchsorted(edges, rows["mean"], side="right") - 1, 0, 23)]
    ):
        (found,) = binned[
            (binned.model == model)
            & np.isclose(binned["mean"], np.exp(np.log(rows_in["mean"]).mean()))
        ].itertuples()
        assert found.count == len(rows_in) and edges[k] <= found.mean <= edges[k + 1]
        assert found.residual == pytest.approx(rows_in.residual.mean())
        spread = rows_in.residual.std() if len(rows_in) > 1 else 0.0
        assert found.high - found.residual == pytest.approx(spread)
    assert binned["count"].sum() == len(rows)


def test_many_residuals_are_drawn_in_bins(tables, monkeypatch):
    sensor, tables_, _ = tables
    arguments = (tables_["pairs"], tables_["curves"], tables_["ptc"], sensor)
    points = residuals_chart(*arguments)
    assert len(_rows(points, "residual")) == len(model_residuals(*arguments[:2], sensor))
    monkeypatch.setattr(charts_ptc, "_MOST_POINTS", 50)
    binned = residuals_chart(*arguments)
    assert _rows(binned, "residual").empty and len(_rows(binned, "bin"))
    assert _rows(binned, "bin").groupby("model")["count"].sum().to_dict() == (
        model_residuals(*arguments[:2], sensor).groupby("model").size().to_dict()
    )
    assert all("in bins" in label for label in _rows(binned, "summary").label)


def test_many_covariances_are_drawn_in_bins_per_amp_and_lag(tables, monkeypatch):
    sensor, tables_, _ = tables
    arguments = (tables_["covariances"], tables_["fullcov"], tables_["curves"], sensor)
    monkeypatch.setattr(charts_ptc, "_MOST_COVARIANCES", 100)
    chart = covariance_chart(tables_["pairs"], *arguments)
    bins = _rows(chart, "bin")
    assert _rows(chart, "covariance").empty
    used = tables_["pairs"][tables_["pairs"].used.astype(bool)]
    assert (
        bins.groupby(["amp", "lag"])["count"].sum()
        == used.groupby("amp")
        .size()
        .reindex(bins.groupby(["amp", "lag"]).size().index, level="amp")
    ).all()


def test_numbers_are_rounded_alike_one_by_one_and_in_arrays():
    """The page's data (arrays) and the scales (one number) carry the same digits."""
    rng = np.random.default_rng(9)
    values = rng.normal(size=2000) * 10.0 ** rng.integers(-9, 9, 2000)
    expected = [float(f"{v:.5g}") for v in values]  # the straightforward way
    assert rounded_array(values).tolist() == expected


def test_the_linearity_chart_shows_each_pairs_deviation_and_the_linearizer(tables):
    """Each pair's mean over its amp's straight line, its residual after the linearizer,
    and the linearizer's curve, all as the linearity table says."""
    sensor, tables_, _ = tables
    linearity = tables_["linearity"].set_index("amp")
    chart = linearity_chart(tables_["linearity"], sensor)
    pairs, curve = _rows(chart, "pair"), _rows(chart, "linearizer")
    assert len(pairs) == sum(len(v) for v in linearity.input_ordinate)
    for amp, rows in pairs.groupby("amp"):
        row = linearity.loc[amp]
        flux = np.asarray(row.input_abscissa)[: len(rows)]
        line = row.linear_intercept + row.linear_slope * flux
        expected = np.asarray(row.input_ordinate) / line - 1
        np.testing.assert_allclose(rows.deviation, expected, rtol=1e-4, atol=1e-9)
        fitted = rows.fitted == "fitted"
        assert fitted.tolist() == list(row.input_mask)
    for amp, rows in curve.groupby("amp"):
        row = linearity.loc[amp]
        signal = rows.signal.to_numpy()
        lowered = signal / apply_linearizer(row.type, row.coefficients, signal) - 1
        np.testing.assert_allclose(rows.deviation, lowered, rtol=1e-4, atol=1e-9)
    assert set(curve.amp) == set(linearity.index[linearity.type == "Squared"])
    assert linearity_chart(tables_["linearity"], "another sensor") is None


def test_the_kernel_chart_draws_each_amps_kernel_at_its_lags(tables):
    """Each amp's 9 x 9 kernel (lags -4..4), every cell its value, the note its centre."""
    sensor, tables_, _ = tables
    chart = bf_kernel_chart(tables_["bf_kernel"], sensor)
    cells = _rows(chart, "kernel")
    kernels = tables_["bf_kernel"].set_index("amp")
    assert len(cells) == 16 * 81 and set(cells.i) == set(range(-4, 5))
    for row in cells.sample(40, random_state=1).itertuples():
        kernel = np.reshape(kernels.kernel[row.amp], (9, 9))
        assert row.value == pytest.approx(kernel[row.i + 4, row.j + 4], rel=1e-4, abs=1e-15)
    notes = _rows(chart, "summary").set_index("amp").label
    centre = np.reshape(kernels.kernel[1], (9, 9))[4, 4]
    assert notes[1].endswith(f"K00 {centre:.2e}")
    assert bf_kernel_chart(tables_["bf_kernel"].assign(size=0), sensor) is None


def test_the_ptc_chart_marks_the_gaussianity_cuts_and_the_rolloff(tables):
    """Pairs cut by the Gaussianity test as their own kind (triangles), apart from the
    pairs left out for other reasons; each amp's rolloff where the model ran (dotted)."""
    sensor, tables_, _ = tables
    pairs = tables_["pairs"].copy()
    cut = (pairs.sensor == sensor) & (pairs.pair == 2) & pairs.amp.isin([1, 4])
    pairs.loc[cut, ["status", "used"]] = ["not_gaussian", False]
    rolloffs = pd.DataFrame({"rolloff": [8.1e4, 7.7e4], "rolloff_tau": [-1.5e3, -2.2e3]},
                            index=pd.Index([3, 9], name="amp"))  # fmt: skip
    chart = ptc_chart(pairs, tables_["curves"], sensor, rolloffs=rolloffs)
    points = _rows(chart, "pair").set_index(["amp", "pair"])
    marked = points[points.use == "not Gaussian (KS test)"].index
    assert sorted(marked) == [(1, 2), (4, 2)]
    assert (points.loc[points.used == 1, "use"] == "used by the fits").all()
    others = points[(points.used == 0) & ~points.index.isin(marked)]
    assert (others.use == "left out").all() and len(others) > 0
    rules = _rows(chart, "rolloff").set_index("amp")
    np.testing.assert_allclose(rules.loc[[3, 9], "rolloff"], [8.1e4, 7.7e4])
    shapes = _layer(chart.spec, "pair")["encoding"]["shape"]["scale"]
    assert shapes["range"][shapes["domain"].index("not Gaussian (KS test)")] == "triangle-up"

"""The PTC turnoff and EOTEST's full well: definitions, electrons and truth."""

import math

import numpy as np
import pytest

import gpuptc
import shared_inputs
from gpuptc.fitting.turnoff import eotest_full_well, turnoff_with_sampling_error
from gpuptc.formats.eotest import eotest_results_columns


def _eotest_recipe(flux, signal):
    """EOTEST's full well as its recipe states it: closed-form root, g = 0.1.

    Written from the recipe, independently of :func:`eotest_full_well` (no root search
    within the fitted span, no line for two pairs): the two agree wherever three or more
    pairs lie on the quadratic.
    """
    order = np.argsort(flux)
    flux, signal = flux[order], signal[order]
    brightest = flux[np.argmax(signal)]
    low = (signal > 1e2) & (signal < 5e4) & (flux <= brightest)
    slope = low.sum() / np.sum(flux[low] / signal[low])
    deficit = 1 - signal / (slope * flux)
    start = np.nonzero(np.abs(deficit) <= 0.02)[0][-1]
    stop = start + np.nonzero(np.abs(deficit[start:]) >= 0.1)[0][0] + 1
    a, b, c = np.polyfit(flux[start:stop], signal[start:stop], 2)
    d, g = slope, 0.1
    x = (-math.sqrt((b + d * g - d) ** 2 - 4 * a * c) - b - d * g + d) / (2 * a)
    return a * x**2 + b * x + c


@pytest.mark.parametrize("knee", [0.05, 0.15, 0.3])
def test_full_well_follows_eotest_recipe_on_dense_pairs(knee):
    """A soft saturation (``W tanh(x / W)`` past a linear start) sampled densely."""
    well, rate = 1.6e5, 2000.0
    flux = np.linspace(1.0, 200.0, 120)
    linear = rate * flux
    soft = well * (1 - knee) + well * knee * np.tanh((linear - well * (1 - knee)) / (well * knee))
    signal = np.where(linear < well * (1 - knee), linear, soft)
    expected = _eotest_recipe(flux, signal)
    assert eotest_full_well(flux, signal / 1.7, 1.7) == pytest.approx(expected, rel=1e-9)
    assert 0.8 * well < expected < well


def test_full_well_from_two_pairs_is_the_line_through_them():
    """Exposure times too sparse for a quadratic: linear to 150 000 e-, flat above it."""
    well, rate = 1.5e5, 1000.0
    flux = np.array([10.0, 20.0, 40.0, 80.0, 140.0, 250.0])
    signal = np.minimum(rate * flux, well)
    # the line through (140, 140 000) and (250, 150 000) meets 0.9 x 1000 x flux here:
    slope = (well - 1.4e5) / 110.0
    crossing = (1.4e5 - slope * 140.0) / (0.9 * rate - slope)
    assert eotest_full_well(flux, signal, 1.0) == pytest.approx(0.9 * rate * crossing, rel=1e-9)


def test_no_full_well_without_saturation_or_gain():
    flux = np.linspace(1.0, 50.0, 20)
    assert math.isnan(eotest_full_well(flux, 1000.0 * flux, 1.0))
    assert math.isnan(eotest_full_well(flux, 1000.0 * flux, math.nan))


def test_sampling_error_is_half_the_gap_around_the_turnoff():
    mean = np.array([3e4, 1e4, 5e4, 9e4, 2e4])
    assert turnoff_with_sampling_error(mean, mean < 6e4) == (5e4, 0.5 * (9e4 - 3e4))
    assert turnoff_with_sampling_error(mean, np.ones(5, bool)) == (9e4, 9e4 - 5e4)
    assert all(map(math.isnan, turnoff_with_sampling_error(mean, np.zeros(5, bool))))


@pytest.fixture(scope="module", params=["e2v", "itl"])
def truth_fit(request, tmp_path_factory):
    # medium: 24 pairs bring a pair within 2 % of linear and a saturated one on each amp,
    # and their means resolve the deficit at the 1 % level (a small amp's do not)
    sensor, pairs, covariances = shared_inputs.measured_truth_sensor(
        request.param, tmp_path_factory
    )
    ptc, _, fitted = gpuptc.fit(pairs, covariances, models=["expapprox", "rhl"])
    return sensor, ptc, fitted


def test_full_well_recovers_the_simulated_well(truth_fit):
    sensor, ptc, _ = truth_fit
    truth = sensor.truth.set_index("amp")
    fits = ptc[ptc.model == "expapprox"].set_index("amp")
    ratio = fits.full_well / truth.full_well
    assert ratio.between(0.95, 1.05).all(), ratio.to_dict()
    assert abs(ratio.median() - 1) < 0.02


def test_turnoff_in_electrons_and_its_sampling_error(truth_fit):
    _, ptc, fitted = truth_fit
    for row in ptc[ptc.model == "expapprox"].itertuples():
        amp = fitted[fitted.amp == row.amp]
        kept = amp.used.fillna(False).to_numpy(bool)
        turnoff, sampling = turnoff_with_sampling_error(amp["mean"].to_numpy(), kept)
        assert row.turnoff == turnoff and row.turnoff_err == pytest.approx(sampling)
        assert row.turnoff_electrons == pytest.approx(row.turnoff * row.gain)
    rhl = ptc[ptc.model == "rhl"]
    assert rhl.full_well.notna().all() and rhl.turnoff_err.isna().all()


def test_comparison_names_the_references_definitions(truth_fit):
    sensor, ptc, _ = truth_fit
    comparison = gpuptc.compare(ptc[ptc.model == "expapprox"], [sensor.eotest_path])
    turnoff = comparison[comparison.quantity == "turnoff"]
    assert turnoff.definition.str.contains("5-sigma re-selection").all()
    full_well = comparison[comparison.quantity == "full_well"]
    assert full_well.definition.str.startswith("FULL_WELL: EOTEST's full well").all()
    assert comparison[comparison.quantity == "gain"].definition.eq("").all()
    # the reference is the simulated well with 1 % scatter
    assert full_well.ratio.between(0.93, 1.07).all(), full_well.ratio.tolist()


def test_eotest_file_carries_the_full_well(small_e2v):
    pairs, covariances = gpuptc.measure(gpuptc.ingest([small_e2v.directory]), backend="numpy")
    ptc, _, _ = gpuptc.fit(pairs, covariances, models=["expapprox"])
    columns = eotest_results_columns(ptc, small_e2v.sensor)
    full_well = ptc.sort_values("amp").full_well.to_numpy()
    assert np.isfinite(full_well).any()
    np.testing.assert_array_equal(columns["FULL_WELL"], np.nan_to_num(full_well, nan=0.0))

"""Each amp's linearity as cp_pipe solves it: cp_pipe's own test cases and their numbers.

The expected numbers come from lsst/cp_pipe's ``tests/test_linearity.py`` at f029a3f2:
``test_linearity_turnoff`` (LSSTComCam data, tests/data/linearity/README.md),
``_check_linearity`` (a quadratic non-linearity of -5e-6 per s^2 at 1000 ADU/s, 20 exposure
times from 1 to 96 s) and ``_check_linearity_spline`` (an Akima spline of 10 nodes from
LSSTCam run 7193D, detector 22, C00, on 200 photodiode charges with 1e-4 noise, five
outliers and a missing charge; optionally four photodiode groups and a signal offset),
each at the tolerance stated beside it; and ``test_linearity_turnoff_lsstcam``'s grouping
of its LSSTCam series (DM-51470, tests/data/linearity/README.md) by a column, by signal
over exposure time and by signal over photodiode charge. cp_pipe's spline cases with
fitted weights or temperatures are not reproduced: gpuptc fits neither.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpuptc.config import LinearityConfig
from gpuptc.fitting.linearity import (
    apply_linearizer,
    irls_polynomial,
    linearity_turnoff,
    solve_amp,
    solve_amps,
)
from gpuptc.fitting.linearity_groups import pair_groups
from gpuptc.kernels.linearize import akima

COMCAM = pd.read_csv(Path(__file__).parent / "data" / "linearity" / "comcam_turnoff.csv")


def test_the_comcam_turnoff_and_maximum_signal_are_cp_pipes():
    found = linearity_turnoff(COMCAM.photo_charge, COMCAM.raw_mean, COMCAM.ptc_mask.astype(bool))
    assert found.found and found.index == 90
    assert found.turnoff == pytest.approx(99756.30512572, abs=1e-7)
    assert found.max_signal == pytest.approx(108730.32842316, abs=1e-7)


def test_no_turnoff_below_saturation_is_the_brightest_pair():
    """cp_pipe's case: the pairs cut below the turnoff; the last pair is the turnoff."""
    below = COMCAM[COMCAM.raw_mean < 99756.30512572]
    found = linearity_turnoff(below.photo_charge, below.raw_mean, below.ptc_mask.astype(bool))
    assert found.index == len(below) - 1
    assert found.turnoff == found.max_signal == below.raw_mean.max()


FLUX, K2 = 1000.0, -5e-6
TIMES = np.arange(1, 101, 5, dtype=float)
SIGNAL = FLUX * TIMES + K2 * TIMES**2  # cp_pipe: mu = poly([0, flux, k2], t)


@pytest.mark.parametrize("kind", ["Polynomial", "Squared", "LookupTable"])
def test_cp_pipes_quadratic_case_is_solved_and_undone(kind):
    """fitParams (0, 1, -5e-12) and the coefficient +5e-12, as cp_pipe's test expects; the
    linearized signal over the ideal one is 1 within 1e-6 (cp_pipe's tolerance)."""
    config = LinearityConfig(linearity_type=kind, min_linear_adu=0, max_linear_adu=1e5)
    solved = solve_amp(TIMES, SIGNAL, np.ones(20, bool), config)
    assert solved.status == "ok" and solved.mask.all()
    k = solved.fit_params
    assert k[0] == pytest.approx(0, abs=1e-2) and k[1] == pytest.approx(1, rel=1e-5)
    assert k[2] == pytest.approx(K2 / FLUX**2, rel=1e-6)
    assert k[3] == pytest.approx(0, abs=1e-18)  # nothing cubic
    if kind == "LookupTable":
        ideal = np.linspace(0, 2**18 / FLUX, 2**18)
        expected = -K2 * ideal**2  # cp_pipe: (t flux) - poly([0, flux, k2], t)
        np.testing.assert_allclose(solved.table[1:], expected[1:], rtol=1e-4)
        table = solved.table[None, :]
    else:
        expected = {"Polynomial": [-K2 / FLUX**2, 0.0], "Squared": [-K2 / FLUX**2]}[kind]
        np.testing.assert_allclose(solved.coefficients, expected, rtol=1e-6, atol=1e-18)
        table = None
    corrected = apply_linearizer(kind, solved.coefficients, SIGNAL, table)
    np.testing.assert_allclose(corrected / (FLUX * TIMES), 1.0, rtol=1e-6)
    np.testing.assert_allclose(solved.residuals, 0.0, atol=1e-2)


def test_the_fit_range_is_the_pairs_within_the_adu_limits():
    """cp_pipe's ``aducuts`` case: 1e4 to 9e4 ADU."""
    config = LinearityConfig(linearity_type="Polynomial", min_linear_adu=1e4, max_linear_adu=9e4)
    solved = solve_amp(TIMES, SIGNAL, np.ones(20, bool), config)
    np.testing.assert_array_equal(solved.mask, (SIGNAL > 1e4) & (SIGNAL < 9e4))
    assert np.isfinite(solved.residuals).sum() == solved.mask.sum()
    assert solved.fit_params[2] == pytest.approx(K2 / FLUX**2, rel=1e-6)


def test_reweighting_keeps_an_outlier_from_the_line():
    """A pair 10 % off moves the reweighted line by a tenth of its error; an unweighted
    fit by several errors."""
    rng = np.random.default_rng(3)
    x = np.linspace(1, 100, 60)
    clean = 500.0 * x + rng.normal(0, np.sqrt(500 * x))
    spoiled = clean.copy()
    spoiled[45] *= 1.10
    (_, slope), errors, _ = irls_polynomial(x, spoiled, 1)
    (_, reference), _, _ = irls_polynomial(x, clean, 1)
    assert abs(slope - reference) < 0.1 * errors[1]
    unweighted = np.polynomial.polynomial.polyfit(x, spoiled, 1)[1]
    plain = np.polynomial.polynomial.polyfit(x, clean, 1)[1]
    assert abs(unweighted - plain) > 3 * errors[1]


def test_an_amp_without_signal_is_left_unsolved_with_why():
    solved = solve_amp(TIMES, np.full(20, np.nan), np.ones(20, bool))
    assert solved.kind == "None" and solved.status == "no_turnoff"
    assert np.isnan(solved.residuals).all() and not solved.mask.any()


SPLINE_VALUES = np.array([0, -8.87, 1.46, 1.69, -6.92, -68.23, -78.01, -11.56, 80.26, 185.01])
"""cp_pipe's test spline (ADU at 10 nodes from 0 to the brightest linear signal)."""
GROUP_SCALES = np.array([0.995, 1.0, 1.005, 1.002])
"""cp_pipe's photodiode groups: each quarter of the charges scaled by one of these."""


def _spline_case(groups: bool, offset: bool):
    """cp_pipe's ``_check_linearity_spline`` data (its random draws are NumPy's legacy
    seed 12345): charges, signals, the linear signals and the group labels."""
    legacy = np.random.RandomState(12345)  # the stream of cp_pipe's np.random.seed
    n = 200
    charge = np.linspace(1e-8, 2e-5, n)
    linear = 5e9 * charge
    nodes = np.linspace(0, linear.max(), len(SPLINE_VALUES))
    signal = linear + akima(linear, nodes, SPLINE_VALUES)
    if offset:
        signal += 2.0
    signal += legacy.normal(scale=signal) / 1e4
    signal[170:175] += 200.0  # outliers
    labels = np.repeat([0.01, 0.02, 0.03, 0.04], n // 4) if groups else np.zeros(n)
    if groups:
        charge = charge * np.repeat(GROUP_SCALES, n // 4)
    charge[-2] = np.nan
    return charge, signal, linear, labels


@pytest.mark.parametrize(
    "groups, offset", [(False, False), (True, False), (True, True)], ids=["one", "groups", "offset"]
)
def test_cp_pipes_spline_cases(groups, offset):
    charge, signal, linear, labels = _spline_case(groups, offset)
    config = LinearityConfig(
        linearity_type="Spline",
        min_linear_adu=0.0,
        max_frac_linearity_deviation=0.05,
        do_spline_fit_offset=offset,
    )
    solved = solve_amp(
        charge, signal, np.ones(200, bool), config, ptc_turnoff=np.nanmax(signal), groups=labels
    )
    assert solved.status == "ok"
    # no turnoff in these data: both are the brightest pair
    assert solved.turnoff.turnoff == solved.turnoff.max_signal == np.nanmax(signal)
    assert not solved.mask[[170, 171, 172, 173, 174, 198]].any()  # outliers and the NaN
    finite = np.isfinite(solved.residuals)
    assert np.all(np.abs(solved.residuals[finite] / linear[finite]) < 4e-4)
    assert solved.reduced_chi2 < 2.0
    fractional = solved.residuals[finite] / signal[finite]
    mad = 1.4826 * np.median(np.abs(fractional - np.median(fractional)))
    assert mad < 1.2e-4
    nodes, values = np.split(solved.coefficients, 2)
    assert nodes[0] == 0.0 and values[0] == 0.0
    offset_fitted = solved.fit_params[-1] if offset else 0.0
    corrected = apply_linearizer("Spline", solved.coefficients, signal - offset_fitted)
    ratio = corrected / linear
    ratio /= np.nanmedian(ratio[solved.mask])
    # cp_pipe: 5e-4 (5e-2 with the offset, which it applies uncorrected)
    np.testing.assert_allclose(ratio[solved.mask], 1.0, rtol=5e-4)
    small = np.abs(SPLINE_VALUES) < 20
    np.testing.assert_allclose(values[small], SPLINE_VALUES[small], atol=6.0 if groups else 2.0)
    np.testing.assert_allclose(values[~small], SPLINE_VALUES[~small], rtol=0.14 if groups else 0.05)
    if groups:
        slopes = solved.fit_params[:4]
        np.testing.assert_allclose(slopes[1] / slopes, GROUP_SCALES, rtol=6e-4)
    if offset:
        assert offset_fitted == pytest.approx(2.0, rel=6e-3)


def test_the_comcam_spline_stays_within_cp_pipes_bounds():
    """cp_pipe's ``test_linearity_turnoff`` Spline solve: the turnoff and maximum signal
    as above, the spline under 0.2 % of its nodes below the PTC turnoff, the residuals
    under 0.15 % of the signal up to the turnoff."""
    mask = COMCAM.ptc_mask.to_numpy(bool)
    ptc_turnoff = COMCAM.raw_mean[mask].max()
    config = LinearityConfig(linearity_type="Spline", do_spline_fit_offset=False)
    solved = solve_amp(COMCAM.photo_charge, COMCAM.raw_mean, mask, config, ptc_turnoff=ptc_turnoff)
    assert solved.turnoff.turnoff == pytest.approx(99756.30512572, abs=1e-7)
    assert solved.turnoff.max_signal == pytest.approx(108730.32842316, abs=1e-7)
    nodes, values = np.split(solved.coefficients, 2)
    assert values[0] == 0.0
    inside = (nodes > 0) & (nodes < ptc_turnoff)
    assert np.all(np.abs(values[inside] / nodes[inside]) < 0.002)
    below = COMCAM.raw_mean.to_numpy() <= solved.turnoff.turnoff
    fractional = solved.residuals[below] / COMCAM.raw_mean.to_numpy()[below]
    assert np.all(np.abs(fractional[np.isfinite(fractional)]) < 0.0015)


@pytest.mark.parametrize("kind", ["Spline", "Squared"])
def test_the_amps_of_a_batch_are_solved_as_each_alone_on_every_backend(backend, kind):
    """Four amps at once (cp_pipe's spline case, the same 2 % brighter, one without signal,
    one with the PTC's selection empty): each as solved alone on NumPy, on every array
    backend (CuPy: the stand-in without a GPU), each with its own status."""
    charge, signal, _, _ = _spline_case(False, False)
    amps = np.stack([signal, 1.02 * signal, np.full_like(signal, np.nan), signal])
    masks = np.ones(amps.shape, bool)
    masks[3] = False
    config = LinearityConfig(
        linearity_type=kind, min_linear_adu=0.0, max_linear_adu=2e5, polynomial_order=2
    )
    tops = np.full(4, np.nanmax(signal))
    batch = solve_amps(charge, amps, masks, config, ptc_turnoffs=tops, backend=backend)
    assert [s.status for s in batch] == ["ok", "ok", "no_turnoff", "no_ptc_pairs"]
    for k in (0, 1):
        alone = solve_amp(charge, amps[k], masks[k], config, ptc_turnoff=tops[k])
        np.testing.assert_array_equal(batch[k].mask, alone.mask)
        np.testing.assert_allclose(batch[k].coefficients, alone.coefficients, rtol=1e-6)
        np.testing.assert_allclose(batch[k].residuals, alone.residuals, rtol=1e-6, atol=1e-6)
        assert batch[k].turnoff == alone.turnoff


LSSTCAM = pd.read_csv(Path(__file__).parent / "data" / "linearity" / "lsstcam_grouping.csv")


def _lsstcam_groups() -> tuple[np.ndarray, np.ndarray]:
    """cp_pipe's grouping truth for its LSSTCam series (``test_linearity_turnoff_lsstcam``):
    three lamp settings told apart by signal per second, and the setting as a value."""
    ratio = LSSTCAM.raw_mean / LSSTCAM.exp_time
    truth = np.zeros(len(ratio), np.int64)
    truth[ratio > 800] = 1
    truth[(ratio > 1200) | (LSSTCAM.exp_time > 70.0)] = 2
    return truth, np.array([0.15, 0.5, 0.8])[truth]


def _same_partition(found: np.ndarray, expected: np.ndarray) -> None:
    """The same pairs together, whatever the groups' labels."""
    assert len(np.unique(found)) == len(np.unique(expected))
    for label in np.unique(expected):
        members = np.unique(found[expected == label])
        assert len(members) == 1 and np.array_equal(found == members[0], expected == label)


@pytest.mark.parametrize("how", ["column", "exptime", "photodiode"])
def test_cp_pipes_lsstcam_series_groups_as_cp_pipe_groups_it(how):
    """cp_pipe's three grouping cases on its LSSTCam series: by a column of values, by
    signal over exposure time, by signal over photodiode charge (threshold 0.008, the
    first pair's charge below 1e-10 C: no group)."""
    truth, setting = _lsstcam_groups()
    pairs = pd.DataFrame(
        {"exptime": LSSTCAM.exp_time, "photo_charge": LSSTCAM.photo_charge, "aux": setting}
    )
    config = {
        "column": LinearityConfig(spline_grouping_column="aux"),
        "exptime": LinearityConfig(do_auto_grouping=True),
        "photodiode": LinearityConfig(
            do_auto_grouping=True,
            auto_grouping_use_exptime=False,
            auto_grouping_threshold=0.008,
            use_photodiode=True,
            min_photodiode_current=1e-10,
        ),
    }[how]
    groups = pair_groups(pairs, LSSTCAM.raw_mean.to_numpy(float), config)
    if how == "photodiode":
        truth[0] = -1
        assert groups[0] == -1
    _same_partition(groups, truth)


def test_a_grouped_spline_needs_enough_pairs_and_a_known_column():
    pairs = pd.DataFrame({"exptime": [1.0, 2.0], "photo_charge": [1.0, 2.0], "lamp": [1, 2]})
    signal = np.array([100.0, 200.0])
    spline = LinearityConfig(linearity_type="Spline", spline_grouping_column="lamp")
    with pytest.raises(ValueError, match="2 pairs, fewer than spline_grouping_min_points"):
        pair_groups(pairs, signal, spline)
    with pytest.raises(ValueError, match="'filter': the pairs have no such column"):
        pair_groups(pairs, signal, LinearityConfig(spline_grouping_column="filter"))
    with pytest.raises(ValueError, match="exclude each other"):
        LinearityConfig(do_auto_grouping=True, spline_grouping_column="lamp")
    assert pair_groups(pairs, signal, LinearityConfig()) is None

"""Each amp's linearity as cp_pipe solves it: cp_pipe's own test cases and their numbers.

The expected numbers come from lsst/cp_pipe's ``tests/test_linearity.py`` at f029a3f2:
``test_linearity_turnoff`` (LSSTComCam data, tests/data/linearity/README.md) and
``_check_linearity`` (a quadratic non-linearity of -5e-6 per s^2 at 1000 ADU/s, 20 exposure
times from 1 to 96 s), each at the tolerance stated beside it.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpuptc.fitting.linearity import (
    apply_linearizer,
    irls_polynomial,
    linearity_turnoff,
    solve_amp,
)

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
    solved = solve_amp(TIMES, SIGNAL, np.ones(20, bool), kind, min_adu=0, max_adu=1e5)
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
    solved = solve_amp(TIMES, SIGNAL, np.ones(20, bool), "Polynomial", min_adu=1e4, max_adu=9e4)
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

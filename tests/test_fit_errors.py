"""Every fitted value has an error: a term fitted to zero is held there and says so.

The errors are checked against independent fits written plainly with
``scipy.optimize.curve_fit`` (the held term left out of the model) and against numerical
error propagation; the whole-sensor checks run on small sensors of 8 and 24 pairs, where
the read-noise and a00 terms are poorly constrained and reach zero on some amps.
"""

import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import curve_fit

import gpuptc
import shared_inputs
from gpuptc.fitting.ptc import (
    eq16,
    fit_expapprox_cp_pipe,
    fit_linear,
    fit_powerlaw,
)
from gpuptc.fitting.solve import amp_rejections
from gpuptc.products.verdict import amp_verdicts
from gpuptc.schema import FitStatus

MEANS = np.geomspace(300.0, 60_000.0, 20)


def _ptc_without_read_noise():
    """An eq. 16 PTC whose read-noise term is negative (fitted: pinned at its bound, zero),
    with a deterministic ripple so that the fit has a chi^2."""
    var = eq16(MEANS, -2.0e-6, 1.1, -40.0) * (1.0 + 0.004 * np.sin(np.arange(MEANS.size)))
    return MEANS, var


def test_a_read_noise_term_at_zero_is_held_and_the_others_keep_their_errors():
    mean, var = _ptc_without_read_noise()
    weights = 1.0 / var
    fit = fit_expapprox_cp_pipe(mean, var, weights)
    assert fit.status == FitStatus.NOISE_AT_ZERO
    assert fit.noise < 1e-3 and math.isnan(fit.noise_err)
    used = fit.mask

    def without_noise(m, a00, gain):
        return eq16(m, a00, gain, 0.0)

    (a00, gain), covariance = curve_fit(
        without_noise, mean[used], var[used], p0=(fit.a00, fit.gain), sigma=1 / weights[used]
    )
    dof = np.count_nonzero(used)
    scale = (dof - 2) / (dof - 3)  # gpuptc's chi^2/dof counts the held term's degree
    assert gain == pytest.approx(fit.gain, rel=1e-5)  # leastsq stops within its tolerance
    assert a00 == pytest.approx(fit.a00, rel=1e-4)
    assert fit.gain_err == pytest.approx(math.sqrt(covariance[1, 1] * scale), rel=1e-3)
    assert fit.a00_err == pytest.approx(math.sqrt(covariance[0, 0] * scale), rel=1e-3)


def _numeric_error(function, parameters, covariance):
    """sqrt(g^T C g) with g by central differences."""
    gradient = []
    for k, value in enumerate(parameters):
        step = 1e-6 * max(abs(value), 1e-12)
        up, down = np.array(parameters, float), np.array(parameters, float)
        up[k] += step
        down[k] -= step
        gradient.append((function(*up) - function(*down)) / (2 * step))
    gradient = np.array(gradient)
    return math.sqrt(gradient @ covariance @ gradient)


def test_the_power_law_gain_has_the_error_of_its_log_log_fit():
    mean = MEANS
    var = mean / 1.3 * (1.0 + 0.01 * np.cos(3 * np.arange(mean.size)))
    fit = fit_powerlaw(mean, var, points=slice(None))
    (log_amplitude, index), covariance = curve_fit(
        lambda x, s, k: s + k * x, np.log10(mean), np.log10(var), sigma=0.1 / var
    )
    pivot = float(np.median(mean))

    def gain(s, k):
        return pivot ** (1 - k) / 10**s

    assert fit.gain == pytest.approx(gain(log_amplitude, index), rel=1e-7)
    expected = _numeric_error(gain, [log_amplitude, index], covariance)
    assert fit.gain_err == pytest.approx(expected, rel=1e-4)
    assert 0 < fit.gain_err < 0.01 * fit.gain


def test_the_linear_fits_noise_has_the_error_of_its_intercept_and_slope():
    mean = MEANS[:12]
    var = 30.0 + mean / 1.2 + 5.0 * np.sin(np.arange(mean.size))
    fit = fit_linear(mean, var, points=slice(None))
    (slope, intercept), covariance = curve_fit(lambda x, b, a: a + b * x, mean, var)
    expected = _numeric_error(lambda b, a: math.sqrt(a) / b, [slope, intercept], covariance)
    assert fit.noise == pytest.approx(math.sqrt(intercept) / slope, rel=1e-6)
    assert fit.noise_err == pytest.approx(expected, rel=1e-4)


@pytest.fixture(scope="module")
def small_sensors(small_e2v, small_itl, tmp_path_factory):
    """The session's small sensors (8 pairs) and two of 24 pairs."""
    longer = [
        shared_inputs.simulated(
            tmp_path_factory, vendor=vendor, size="small", pairs=24, biases=0, seed=seed
        )
        for vendor, seed in (("e2v", 11), ("itl", 12))
    ]
    return [small_e2v, small_itl, *longer]


@pytest.mark.parametrize("preset", ["cp_pipe", "eotest"])
def test_no_fitted_value_without_its_error(small_sensors, preset):
    """On small sensors of 8 and 24 pairs (where terms reach zero on some amps): every
    ``ok`` row gives each fitted value an error; a term held at zero says so."""
    statuses = []
    for sensor in small_sensors:
        inventory = gpuptc.ingest([sensor.directory])
        pairs, covariances = gpuptc.measure(inventory, preset=preset, backend="numpy")
        ptc, _, _ = gpuptc.fit(pairs, covariances, preset=preset)
        ok = ptc[ptc.status == FitStatus.OK]
        for quantity in ("gain", "noise", "a00"):
            missing = ok[np.isfinite(ok[quantity]) & ~np.isfinite(ok[f"{quantity}_err"])]
            assert missing.empty, missing[["model", "amp", quantity]]
        held = ptc[ptc.status.isin([FitStatus.NOISE_AT_ZERO, FitStatus.A00_AT_ZERO])]
        assert np.isfinite(held[["gain", "gain_err"]]).all().all()
        statuses += list(ptc.status)
    if preset == "cp_pipe":  # these sensors have such amps (the reason for this test)
        assert FitStatus.NOISE_AT_ZERO in statuses


def test_a_term_held_at_zero_is_flagged_but_neither_rejected_nor_a_bad_amp():
    ptc = pd.DataFrame(
        {
            "sensor": "S",
            "amp": [1, 2, 3],
            "segment": ["C10", "C11", "C12"],
            "model": "expapprox",
            "gain": 1.0,
            "noise": 6.0,
            "turnoff": 9e4,
            "chi2_dof": 1.0,
            "status": [FitStatus.OK, FitStatus.NOISE_AT_ZERO, FitStatus.NO_CONVERGENCE],
        }
    )
    pairs = pd.DataFrame(columns=["sensor", "pair", "amp", "status", "file1"])
    rejected = amp_rejections(pairs, ptc)
    assert list(rejected.amp) == [3]
    verdicts = amp_verdicts({"ptc": ptc}).set_index("amp")
    assert verdicts.at[2, "flags"] == "fit noise_at_zero" and verdicts.at[1, "flags"] == ""
    assert verdicts.verdict.tolist() == ["pass", "check", "fail"]


def test_bootstrap_errors_are_those_of_the_scatter():
    """cp_pipe's ``doFitBootstrap`` (seeded here): on an eq. 16 PTC with Gaussian noise of
    known size (sigma = var / sqrt(npix / 2)), the bootstrap's gain and a00 are the least
    squares' within one error and its errors within a factor of 1.6 of theirs (100
    refits; the deviates are each residual's size, whose mean is 0.8 sigma); the same PTC
    gives the same numbers twice."""
    rng = np.random.default_rng(9)
    mean = np.linspace(1000.0, 90_000.0, 40)
    npix = np.full(mean.size, 2.0e5)
    exact = eq16(mean, -2.5e-6, 1.2, 30.0)
    var = exact + rng.normal(0.0, exact / np.sqrt(npix / 2))
    plain = gpuptc.fit_ptc(mean, var, preset="cp_pipe", npix=npix)
    booted = gpuptc.fit_ptc(mean, var, preset="cp_pipe", npix=npix, fit_bootstrap=True)
    again = gpuptc.fit_ptc(mean, var, preset="cp_pipe", npix=npix, fit_bootstrap=True)
    assert booted.gain == again.gain and booted.gain_err == again.gain_err
    assert booted.gain != plain.gain and booted.gain_err != plain.gain_err  # refitted
    for name in ("gain", "a00"):
        value, error = getattr(booted, name), getattr(booted, f"{name}_err")
        assert abs(value - getattr(plain, name)) < getattr(plain, f"{name}_err"), name
        assert 1 / 1.6 < error / getattr(plain, f"{name}_err") < 1.6, name


def test_binned_variances_are_fitted_without_the_bounds():
    """cp_pipe's solve with ``binSize > 1`` drops its first passes' bounds (gain 0.1-10):
    variances of 4 x 4 bins (a sixteenth of the pixels', gain 19.2) keep all 30 pairs
    under ``bin_size = 4``, where the bounded passes, unable to reach the gain, cut all but
    6 (the weighted fit that follows is unbounded in both); the two sections' bin sizes
    must agree, as cp_pipe's pipelines require. (The initial cut in ADU: a cut in
    electrons scaled by the binned gain would leave one pair.)"""
    mean = np.linspace(1000.0, 80_000.0, 30)
    var = eq16(mean, -2.0e-6 / 16, 1.2 * 16, 30.0 / 256)
    options = {"npix": np.full(mean.size, 2.0e4), "solve__scale_initial_by_gain": False}
    binned = gpuptc.fit_ptc(mean, var, preset="cp_pipe", extract__bin_size=4,
                            solve__bin_size=4, **options)  # fmt: skip
    assert binned.status == "ok" and binned.n_used == 30
    assert binned.gain == pytest.approx(19.2, rel=1e-6)
    bounded = gpuptc.fit_ptc(mean, var, preset="cp_pipe", **options)
    assert bounded.n_used < 10
    with pytest.raises(ValueError, match=r"extract\.bin_size 4 and solve\.bin_size 1 differ"):
        gpuptc.fit_ptc(mean, var, preset="cp_pipe", extract__bin_size=4)

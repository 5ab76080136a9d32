"""The read noise: the overscan estimator's bias undone, and the noise the ISR adds.

The simulator's per-pixel read noise is the truth; digitisation and the overscan
estimates' own noise are the ISR's term, predicted by :mod:`gpuptc.measuring.isr_noise`.
Full-size sensors are checked by ``benchmarks/read_noise_truth.py`` (RESULTS.md).
"""

import numpy as np
import pytest

import gpuptc
import shared_inputs
from gpuptc.measuring.isr_noise import median_variance_factor, overscan_estimator_factor


@pytest.mark.parametrize("n", [3, 4, 7, 18, 48])
def test_median_variance_factor_matches_sampled_medians(n):
    """Against medians of 2 million seeded normal values (0.1 % of sampling error)."""
    rng = np.random.default_rng(n)
    medians = np.median(rng.standard_normal((2_000_000 // n * 4, n)), axis=1)
    sampled = n * medians.var()
    assert median_variance_factor(n) == pytest.approx(sampled, rel=3 * np.sqrt(2 / len(medians)))


def test_the_limit_of_many_values_is_pi_over_2():
    assert median_variance_factor(399) == pytest.approx(np.pi / 2, rel=2e-3)
    assert median_variance_factor(1001) == pytest.approx(np.pi / 2)


def test_a_row_mean_keeps_one_less_nth():
    """The mean's residual keeps 1 - 1/N of the variance (exactly); the clip, 0.970 of it."""
    clip = overscan_estimator_factor("MEDIAN", 10_000)  # one level: the clip alone
    assert clip == pytest.approx(0.970, abs=1e-3)
    assert overscan_estimator_factor("MEAN_PER_ROW", 17) == pytest.approx(
        (1 - 1 / 17) * clip, rel=2e-3
    )


@pytest.fixture(scope="module", params=["e2v", "itl"])
def truth_fit(request, tmp_path_factory):
    # medium amps: 1 000 rows of 18 serial-overscan columns make the read noise to 0.1 %,
    # and 24 pairs the PTC noise term to a few %; cp_pipe's ISR (per-row medians, the
    # parallel one over 6 rows) adds 0.56 x the read noise
    sensor, pairs, covariances = shared_inputs.measured_truth_sensor(
        request.param, tmp_path_factory
    )
    ptc, _, fitted = gpuptc.fit(pairs, covariances, models=["expapprox"])
    return sensor, ptc.set_index("amp"), fitted


def test_per_pixel_read_noise_recovers_the_simulated_one(truth_fit):
    sensor, _, fitted = truth_fit
    truth = sensor.truth.set_index("amp").read_noise_adu
    used = fitted[fitted.used.astype(bool)].groupby("amp")
    ratio = used.read_noise_pixel_adu.median() / truth
    assert np.abs(ratio - 1).max() < 0.02, ratio.round(4).to_dict()  # measured: 0.3 %
    assert np.abs(ratio.median() - 1) < 0.01
    # the overscan's own number, before its estimator's bias is undone, is 3-4 % low
    raw = used.read_noise_adu.median() / truth
    assert (raw < 0.98).all()


def test_ptc_noise_is_the_read_noise_and_the_isr_noise_together(truth_fit):
    sensor, ptc, fitted = truth_fit
    truth = sensor.truth.set_index("amp")
    isr = fitted[fitted.used.astype(bool)].groupby("amp").isr_noise_adu.median()
    expected = np.hypot(truth.read_noise_adu, isr) * truth.gain
    z = (ptc.noise - expected) / ptc.noise_err
    assert (z.abs() < 3).all(), z.round(2).to_dict()
    # the median of 16 ratios, each known to its relative error (about 3 % on these
    # amps), within 3 of the median's own error (1.25 x theirs over 4): 1.004 (e2v) and
    # 0.980 (ITL) measured
    median_error = 1.25 * (ptc.noise_err / ptc.noise).median() / np.sqrt(len(ptc))
    assert abs((ptc.noise / expected).median() - 1) < 3 * median_error
    assert (ptc.noise / truth.read_noise).median() > 1.1  # what the ISR's noise explains


def test_eotest_per_row_mean_on_a_small_sensor(small_e2v):
    """EOTEST's per-row mean over 17 columns and no parallel overscan: its read noise."""
    pairs, _ = gpuptc.measure(
        gpuptc.ingest([small_e2v.directory]), preset="eotest", backend="numpy", cov_size=0
    )
    truth = small_e2v.truth.set_index("amp").read_noise_adu
    pixel = pairs.groupby("amp").read_noise_pixel_adu.median() / truth
    assert np.abs(pixel - 1).max() < 0.03  # 1 700 overscan pixels a flat
    isr = pairs.groupby("amp").isr_noise_adu.median()
    expected = np.sqrt(1 / 12 + (truth**2 + 1 / 12) / 17)  # digitisation, the row mean
    np.testing.assert_allclose(isr, expected, rtol=0.05)

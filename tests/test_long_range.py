"""The long-range covariances subtracted before the full-covariance fit (cp_pipe's
``doSubtractLongRangeCovariances``, ``subtractDistantOffset`` with Astier's ``Pol2D`` at
lsst/cp_pipe f029a3f2): against a straightforward per-pair weighted least squares, and
on the simulator's covariances with a planted background."""

import numpy as np
import pytest

import gpuptc
import shared_inputs
from gpuptc.fitting.long_range import subtract_long_range


def _by_hand(cov, npix, var, start, degree):
    """Each pair alone: cp_pipe's weights, the core's zeroed, NumPy's lstsq of w G c = w z."""
    out = cov.copy()
    size = cov.shape[-1]
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    order = min(degree, size - 1)
    columns = [(i**a * j**b).ravel() for a in range(order + 1) for b in range(order + 1)]
    design = np.stack(columns, axis=-1).astype(float)
    for index in np.ndindex(cov.shape[:-2]):
        counts = npix[index].astype(float)
        counts[0, 0] /= 2.0
        w = np.sqrt(counts) / var[index]
        w[:start, :start] = 0.0
        coefficients = np.linalg.lstsq(w.ravel()[:, None] * design, w.ravel() * cov[index].ravel(),
                                       rcond=None)[0]  # fmt: skip
        out[index] = cov[index] - (design @ coefficients).reshape(size, size)
    return out


@pytest.mark.parametrize(("start", "degree"), [(4, 1), (3, 2), (5, 0)])
def test_the_subtraction_is_a_weighted_fit_per_pair(start, degree):
    rng = np.random.default_rng(5)
    cov = rng.normal(0.0, 5.0, (2, 3, 8, 8))
    npix = rng.integers(50_000, 100_000, (2, 3, 8, 8))
    var = rng.uniform(1e3, 5e4, (2, 3))
    expected = _by_hand(cov, npix, var, start, degree)
    np.testing.assert_allclose(subtract_long_range(cov, npix, var, start, degree), expected,
                               rtol=1e-9, atol=1e-9)  # fmt: skip


def test_a_planted_background_is_taken_out_before_the_fit(tmp_path_factory):
    """A medium truth sensor's covariances with a plane under every lag, growing with the
    flux squared as a slow gradient's does: the full-covariance gain moves by more than
    0.3 % with it; with the subtraction the plane goes whole (a plane is such a polynomial),
    and the gains are those of the clean covariances subtracted alike, to 1e-6, which
    differ from the clean fit's by the sensor's own far-lag covariances only (< 0.2 %)."""
    _, pairs, covs = shared_inputs.measured_truth_sensor("e2v", tmp_path_factory)
    pairs, covs = pairs[pairs.amp <= 4], covs[covs.amp <= 4]  # four amps say it (cost)
    mean = pairs.set_index(["pair", "amp"])["mean"]
    flux = mean.reindex(covs.set_index(["pair", "amp"]).index).to_numpy()
    plane = 4e-7 + 2e-9 * covs["i"] - 1e-9 * covs["j"]
    planted = covs.assign(cov=covs["cov"] + flux**2 * plane)

    def gains(table, **options):
        ptc, _, _ = gpuptc.fit(pairs, table, models=["expapprox", "fullcov"], **options)
        return ptc[ptc.model == "fullcov"].set_index("amp").gain

    subtracted = {"solve__subtract_long_range": True}
    clean, spoiled = gains(covs), gains(planted)
    cleaned, clean_subtracted = gains(planted, **subtracted), gains(covs, **subtracted)
    assert (spoiled / clean - 1).abs().median() > 0.003
    np.testing.assert_allclose(cleaned, clean_subtracted, rtol=1e-6)
    assert (clean_subtracted / clean - 1).abs().max() < 0.002

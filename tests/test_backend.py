import numpy as np
import pytest

from backends import host
from gpuptc.backend import BackendError, get_backend
from gpuptc.measuring.stats import clip_correction

NUMPY = get_backend("numpy").kernels


def _reference_clip(values, good, nsigma, niter):
    """afw's algorithm written plainly: boolean indexing, one row at a time."""
    x = values[good & np.isfinite(values)].astype(np.float64)
    q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    centre, half = q50, nsigma * 0.741301109252802 * (q75 - q25)
    for _ in range(niter):
        kept = x[np.abs(x - centre) <= half]
        mean, var = kept.mean(), kept.var(ddof=1)
        centre, half = mean, nsigma * np.sqrt(var)
    return mean, var, kept.size


def _sample(rng, shape=(3, 5, 2000)):
    values = rng.normal(1000.0, 30.0, shape)
    outliers = rng.random(shape) < 0.01
    values[outliers] += rng.choice([-1, 1], outliers.sum()) * rng.uniform(200, 5000, outliers.sum())
    good = rng.random(shape) > 0.05
    values[0, 0, :7] = np.nan
    return values, good


def test_clipped_stats_match_plain_reference():
    rng = np.random.default_rng(0)
    values, good = _sample(rng)
    mean, var, count = NUMPY.clipped_stats(values, good, nsigma=5.5, niter=3)
    for index in np.ndindex(values.shape[:-1]):
        ref_mean, ref_var, ref_n = _reference_clip(values[index], good[index], 5.5, 3)
        assert mean[index] == pytest.approx(ref_mean, rel=1e-12)
        assert var[index] == pytest.approx(ref_var, rel=1e-10)
        assert count[index] == ref_n


def test_clipped_stats_on_every_backend(backend):
    rng = np.random.default_rng(1)
    values, good = _sample(rng, (2, 3, 500))
    for dtype, rtol in (("float64", 1e-10), ("float32", 1e-5)):
        x = backend.asarray(values.astype(dtype))
        g = backend.asarray(good)
        mean, var, _ = backend.kernels.clipped_stats(x, g, nsigma=5.5, niter=3)
        ref_mean, ref_var, _ = NUMPY.clipped_stats(values.astype(dtype), good, nsigma=5.5, niter=3)
        np.testing.assert_allclose(host(mean), ref_mean, rtol=rtol)
        np.testing.assert_allclose(host(var), ref_var, rtol=max(rtol, 1e-9))


def test_masked_quantiles_match_numpy(backend):
    rng = np.random.default_rng(2)
    values = rng.normal(size=(4, 101))
    good = rng.random((4, 101)) > 0.3
    q = backend.kernels.masked_quantiles(
        backend.asarray(values), backend.asarray(good), (0.25, 0.5, 0.75)
    )
    for row in range(4):
        expected = np.quantile(values[row][good[row]], [0.25, 0.5, 0.75])
        np.testing.assert_allclose([host(v)[row] for v in q], expected, rtol=1e-12)


def test_empty_rows_give_nan():
    mean, var, _ = NUMPY.clipped_stats(np.ones((2, 10)), np.zeros((2, 10), bool), nsigma=3, niter=3)
    assert np.isnan(mean).all() and np.isnan(var).all()


def test_median_generic_path_matches_numpy(backend):
    values = np.random.default_rng(3).normal(size=(3, 8, 9))
    for axis in (-1, -2):
        got = host(backend.kernels.median(backend.asarray(values), axis=axis))
        np.testing.assert_allclose(got, np.median(values, axis=axis), rtol=1e-12)


def test_clip_correction_value():
    # cp_pipe's varFactor at 5.5, 3 and 5 sigma
    assert clip_correction(5.5) == pytest.approx(1.0000011847, rel=1e-9)
    assert clip_correction(3.0) == pytest.approx(1.0273935, rel=1e-6)
    assert clip_correction(5.0) == pytest.approx(1.0000149, rel=1e-6)


def test_unavailable_backend_is_a_clear_error():
    with pytest.raises(BackendError, match="not available"):
        get_backend("no_such_array_library")


def test_auto_picks_numpy_without_gpu():
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy importable here")
    except ImportError:
        pass
    assert get_backend("auto").name == "numpy"
    with pytest.raises(BackendError, match="cupy"):
        get_backend("cupy")


def test_at_most_is_the_float64_comparison(backend):
    rng = np.random.default_rng(11)
    x = rng.normal(0.0, 100.0, (3, 4, 500)).astype(np.float32)
    bound = np.abs(rng.normal(0.0, 100.0, (3, 4)))
    bound[0, 0] = float(x[0, 0, 7])  # exactly a float32 value: kept
    bound[0, 1] = float(np.nextafter(x[0, 1, 3], np.float32(-np.inf))) + 1e-12  # just below
    bound[1, 0] = np.nan
    bound[1, 1] = np.inf
    expected = x.astype(np.float64) <= bound[..., None]
    for dtype in (np.float32, np.float64):
        got = backend.kernels.at_most(backend.asarray(x.astype(dtype)), backend.asarray(bound))
        np.testing.assert_array_equal(host(got), expected)

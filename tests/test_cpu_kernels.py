"""The fused CPU kernels against the generic array-API path they replace on NumPy."""

import numpy as np
import pytest

from gpuptc.backend import get_backend
from gpuptc.kernels import AFW_IQR_TO_SIGMA, FusedCpuKernels, NumpyKernels, numba_cpu

pytest.importorskip("numba")
FUSED = FusedCpuKernels(np)
GENERIC = NumpyKernels(np)


def test_gpuptc_numba_0_selects_the_generic_kernels(monkeypatch):
    assert isinstance(get_backend("numpy").kernels, FusedCpuKernels)
    monkeypatch.setenv("GPUPTC_NUMBA", "0")
    assert not numba_cpu.available()
    assert type(get_backend("numpy").kernels) is NumpyKernels


def _rows(rng, n=6000):
    """Rows that exercise the narrowing: outliers, ties, constants, masks, NaN and inf."""
    gaussian = rng.normal(20_000.0, 140.0, n)
    wild = gaussian.copy()
    wild[rng.random(n) < 0.002] = 1e30  # one bin would hold everything without narrowing
    wild[:3] = -1e25
    ties = np.round(rng.normal(50.0, 2.0, n))  # integers: many equal values
    constant = np.full(n, 7.0)
    few = rng.normal(size=n)
    bad = gaussian.copy()
    bad[::7] = np.nan
    bad[1::11] = np.inf
    bad[2::13] = -np.inf
    values = np.stack([gaussian, wild, ties, constant, few, bad, gaussian])
    good = np.ones(values.shape, bool)
    good[4, 3:] = False  # three values
    good[6] = False  # none
    good[0] = rng.random(n) > 0.3
    return values, good


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantiles_are_exactly_the_generic_ones(dtype):
    values, good = _rows(np.random.default_rng(7))
    values = values.astype(dtype)
    quantiles = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
    fused = FUSED.masked_quantiles(values, good, quantiles)
    generic = GENERIC.masked_quantiles(values, good, quantiles)
    for got, expected in zip(fused, generic, strict=True):
        np.testing.assert_array_equal(got, expected)
    finite = good & np.isfinite(values)
    for row in range(5):
        expected = np.quantile(values[row][finite[row]].astype(np.float64), quantiles)
        np.testing.assert_allclose([q[row] for q in fused], expected, rtol=1e-14)
    assert np.isnan(fused[0][6])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipped_moments_match_the_generic_path(dtype):
    values, good = _rows(np.random.default_rng(8))
    values = values.astype(dtype)
    mean, var, count = FUSED.clipped_stats(values, good, nsigma=5.5, niter=3)
    ref_mean, ref_var, ref_count = GENERIC.clipped_stats(values, good, nsigma=5.5, niter=3)
    np.testing.assert_array_equal(count, ref_count)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-13, equal_nan=True)
    np.testing.assert_allclose(var, ref_var, rtol=1e-10, equal_nan=True)
    assert np.isnan(mean[6]) and np.isnan(var[6]) and count[6] == 0


def test_full_amplifier_row_in_float32():
    """One amplifier's worth of flat-field pixels, cosmic rays and a hot column."""
    rng = np.random.default_rng(9)
    image = rng.poisson(30_000.0, (2, 2000 * 512)).astype(np.float32)
    image[:, rng.integers(0, image.shape[1], 500)] += 40_000.0
    good = rng.random(image.shape) > 0.01
    fused = FUSED.clipped_stats(image, good, nsigma=5.5, niter=3)
    generic = GENERIC.clipped_stats(image, good, nsigma=5.5, niter=3)
    np.testing.assert_array_equal(fused[2], generic[2])
    np.testing.assert_allclose(fused[0], generic[0], rtol=1e-13)
    np.testing.assert_allclose(fused[1], generic[1], rtol=1e-10)


def test_the_iqr_factor_is_afws():
    assert AFW_IQR_TO_SIGMA == pytest.approx(0.741301109252802, rel=1e-12)


def test_squared_difference_ratio_matches_the_generic_form():
    rng = np.random.default_rng(10)
    i1 = rng.normal(100.0, 30.0, (3, 4000)).astype(np.float32)
    i2 = rng.normal(100.0, 30.0, (3, 4000)).astype(np.float32)
    i1[0, :50] = -i2[0, :50]  # zero sums are left out
    good = rng.random(i1.shape) > 0.1
    good[2] = False
    total = i1 + i2
    usable = good & (total > 0)
    ratio = np.where(usable, (i1 - i2) * (i1 - i2) / np.where(usable, total, 1), 0)
    with np.errstate(invalid="ignore"):
        expected = ratio.sum(axis=-1, dtype=np.float64) / usable.sum(axis=-1)
    got = numba_cpu.squared_difference_ratio(i1, i2, good)
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[2])


def test_scaled_squared_difference_ratio_is_the_flux_matched_pairs():
    """With I2 scaled by s: (I1 - s I2)^2 / (I1 + s^2 I2), the divisor being what the
    numerator is for Poisson pixels, so that 1 / ratio is the gain at any s."""
    rng = np.random.default_rng(11)
    gain, level = 1.7, 20_000.0
    i1 = (rng.poisson(level, (2, 200_000)) / gain).astype(np.float32)
    i2 = (rng.poisson(1.05 * level, (2, 200_000)) / gain).astype(np.float32)
    good = np.ones(i1.shape, bool)
    scale = i1.mean(axis=-1) / i2.mean(axis=-1)
    s = scale.astype(np.float32)[:, None]
    expected = np.mean((i1 - s * i2) ** 2 / (i1 + s * s * i2), axis=-1, dtype=np.float64)
    got = numba_cpu.squared_difference_ratio(i1, i2, good, scale)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(1.0 / got, gain, rtol=0.01)  # 5 % brighter, gain unmoved
    unscaled = numba_cpu.squared_difference_ratio(i1, i2, good)
    assert (1.0 / unscaled < 0.8 * gain).all()  # the notebook's form is not


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_is_numpys(dtype):
    rng = np.random.default_rng(12)
    stack = rng.normal(1000.0, 5.0, (2, 3, 40, 64)).astype(dtype)
    stack[0, 0, 3, 5] = np.nan
    stack[1, 2, :, 7] = np.round(stack[1, 2, :, 7])  # ties
    stack[1, 1, 4, :] = 3.0  # a constant row
    counts = np.round(rng.normal(20_000.0, 6.0, stack.shape)).astype(dtype)  # raw ADU
    counts[0, 1, 2, 9] = 1e6  # a span too wide for counting
    counts[0, 2, 3, 4] = np.nan
    for region in (
        stack[..., 3:61],
        stack[..., 3:60],
        stack[..., 5:9, :],
        counts[..., 3:61],
        counts[..., 3:60],
        counts[..., 5:10, :],
    ):
        for axis in (-1, -2):
            got = FUSED.median(region, axis=axis)
            with np.errstate(invalid="ignore"):
                expected = np.median(region, axis=axis)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flux_matched_difference_is_the_generic_expression(dtype):
    rng = np.random.default_rng(13)
    f1 = rng.normal(30_000.0, 170.0, (2, 3, 5000)).astype(dtype)
    f2 = rng.normal(30_300.0, 170.0, (2, 3, 5000)).astype(dtype)
    mean1 = f1.mean(axis=-1, dtype=np.float64)
    mean2 = f2.mean(axis=-1, dtype=np.float64)
    mean = 0.5 * (mean1 + mean2)
    mean1[1, 2] = np.nan
    mean[0, 1] = 0.0  # a dead amplifier: infinities and NaNs, no exception
    scaled1 = mean2[..., None].astype(dtype) * f1
    scaled2 = mean1[..., None].astype(dtype) * f2
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = (scaled1 - scaled2) / mean[..., None].astype(dtype)
    got = numba_cpu.flux_matched_difference(f1, f2, mean1, mean2, mean)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)


def test_kernels_compile_without_a_disk_cache(monkeypatch):
    """Where numba finds no writable cache location, kernels are compiled uncached."""
    import numba

    compile_ = numba.njit

    def njit(*args, cache=False, **options):
        if cache:
            raise RuntimeError("cannot cache function: no locator available")
        return compile_(*args, **options)

    monkeypatch.setattr(numba, "njit", njit)

    def square(x):
        return x * x

    assert numba_cpu.compiled(nogil=True)(square)(3.0) == 9.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masked_mean_and_variance_match_the_generic_forms(dtype):
    rng = np.random.default_rng(14)
    x = rng.normal(25_000.0, 160.0, (3, 2, 7000)).astype(dtype)
    good = rng.random(x.shape) > 0.1
    good[2, 1] = False  # nothing to average
    fused = FUSED.masked_mean(x, good), FUSED.masked_variance(x, good)
    generic = GENERIC.masked_mean(x, good), GENERIC.masked_variance(x, good)
    for got, expected in zip(fused, generic, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)
        assert np.isnan(got[2, 1])


def test_a_numba_that_does_not_import_leaves_gpuptc_working(tmp_path):
    """A numba broken for this NumPy (numba-cuda with NumPy 2.5 was seen failing on a
    removed NumPy function) must not stop gpuptc from importing: NumPy's array-API
    kernels run instead."""
    import subprocess
    import sys

    broken = tmp_path / "numba"
    broken.mkdir()
    (broken / "__init__.py").write_text(
        "raise AttributeError(\"module 'numpy' has no attribute 'row_stack'\")\n"
    )
    program = (
        "import gpuptc\n"
        "from gpuptc.backend import get_backend\n"
        "from gpuptc.kernels import numba_cpu\n"
        "assert numba_cpu.numba is None and 'AttributeError' in numba_cpu.UNAVAILABLE\n"
        "print(type(get_backend('numpy').kernels).__name__)\n"
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "NumpyKernels"


def _ks_rows(rng: np.random.Generator, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of differences as the Gaussianity test gives them: +inf where not in the sample.

    A normal row, one with a bump of outliers, one of whole numbers (ties), one whose
    normal is off in centre and width, one nearly empty; centres and widths as fitted.
    """
    n = 40_000
    rows = rng.normal(3.0, 140.0, (5, n))
    rows[1, :400] += 500.0
    rows = rows.astype(dtype)
    rows[2] = np.round(rows[2])
    rows[rng.random(rows.shape) < 0.05] = np.inf
    rows[4, 5:] = np.inf
    centre = np.array([3.0, 5.0, 3.0, 30.0, 0.0])
    width = np.array([140.0, 150.0, 140.0, 120.0, 140.0])
    return rows, centre, width


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ks_statistic_without_sorting_is_the_sorted_ones(dtype):
    """The counting kernel against SciPy's KS statistic of each row's sample (every value,
    sorted, against SciPy's normal distribution function): the same to 1e-12."""
    from scipy import stats

    rows, centre, width = _ks_rows(np.random.default_rng(4), dtype)
    count = np.isfinite(rows).sum(axis=1)
    fused = FUSED.ks_statistic(FUSED.ks_prepare(rows), count, centre, width)
    expected = [
        stats.ks_1samp(row[np.isfinite(row)].astype(np.float64), stats.norm(c, w).cdf).statistic
        for row, c, w in zip(rows, centre, width, strict=True)
    ]
    np.testing.assert_allclose(fused, expected, rtol=1e-12)
    assert fused[1] > 3 * fused[0]  # the bump shows


def test_ks_histogram_counts_as_the_bisection_does():
    """Values on the edges included: the edges are values of the row."""
    rows, _, _ = _ks_rows(np.random.default_rng(5), np.float64)
    limit = np.full((5, 1), 700.0)
    edges = -limit + np.arange(101)[None, :] * (2 * limit / 100)
    rows[0, :101] = edges[0]  # every edge, the last one too (the last bin is closed)
    fused, cells = FUSED.ks_histogram(FUSED.ks_prepare(rows), edges)
    generic, _ = GENERIC.ks_histogram(GENERIC.ks_prepare(rows), edges)
    np.testing.assert_array_equal(fused, generic)
    assert fused[0].sum() == np.sum(np.abs(rows[0][np.isfinite(rows[0])]) <= 700.0)
    # the same pass's fine cells give the statistic its own cells give
    count = np.isfinite(rows).sum(axis=1)
    np.testing.assert_array_equal(cells.counts.sum(axis=1), count)
    centre, width = np.full(5, 3.0), np.full(5, 140.0)
    np.testing.assert_array_equal(
        FUSED.ks_statistic(rows, count, centre, width, cells),
        FUSED.ks_statistic(rows, count, centre, width),
    )


def _straight_products(values, size):
    """``sum v(x) v(x + lag)`` over the overlap, lag by lag with NumPy slices."""
    ny, nx = values.shape
    lags = list(range(size)) + [-k for k in range(1, size)]
    out = np.zeros((len(lags), len(lags)))
    for i, dy in enumerate(lags):
        for j, dx in enumerate(lags):
            first = values[max(0, -dy) : ny - max(0, dy), max(0, -dx) : nx - max(0, dx)]
            partner = values[max(0, dy) : ny + min(0, dy), max(0, dx) : nx + min(0, dx)]
            out[i, j] = (first * partner).sum()
    return out


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_direct_lag_products_are_the_straight_sums(size):
    values = np.random.default_rng(size).normal(size=(13, 9))
    expected = _straight_products(values, size)
    np.testing.assert_allclose(numba_cpu.lag_products(values, size), expected, rtol=1e-12)


@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("masked", [0.001, 0.2])
def test_fused_lag_sums_equal_the_transforms(size, masked):
    """Direct products (small sizes), direct partner sums (few masked), transforms else."""
    rng = np.random.default_rng(7)
    d = rng.normal(size=(3, 40, 30))
    w = rng.random(d.shape) > masked
    for fused, generic in zip(
        FUSED.lag_sums(d, w, size), GENERIC.lag_sums(d, w, size), strict=True
    ):
        np.testing.assert_allclose(fused, generic, rtol=1e-10, atol=1e-9)

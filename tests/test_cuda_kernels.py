"""The fused CUDA kernels: compiled for sm_90 by NVRTC, and checked against the reference.

On a machine without a GPU the kernels run from their CUDA source on the CPU through the
CuPy stand-in (``tests/cuda_cpu``); on a GPU the same tests run them compiled by CuPy. Both
are checked against the array-API reference kernels.
"""

import numpy as np
import pytest

import cupy_stand_in
from backends import real_cupy_with_gpu
from gpuptc.kernels import ArrayApiKernels
from gpuptc.kernels.cuda import KERNELS, SOURCE, FusedCupyKernels
from nvrtc import compile_for_sm90


def test_every_kernel_compiles_for_sm90_with_nvrtc():
    compile_for_sm90(SOURCE, KERNELS)


@pytest.fixture
def cupy_kernels(monkeypatch):
    if real_cupy_with_gpu():
        import cupy
    else:
        cupy = cupy_stand_in.install(monkeypatch)
    from gpuptc.backend import get_backend

    backend = get_backend("cupy", fused=True)
    assert isinstance(backend.kernels, FusedCupyKernels)
    return cupy, backend, ArrayApiKernels(backend.xp)


def _hard_rows(rng, dtype):
    """Gaussian rows with outliers, ties, NaN, a constant row and a fully masked one."""
    values = rng.normal(20_000.0, 140.0, (6, 3000))
    values[1, rng.random(3000) < 0.01] += 30_000.0
    values[2] = np.round(values[2] / 50.0) * 50.0  # ties
    values[3] = 7.0  # all equal
    values[4, ::17] = np.nan
    good = rng.random(values.shape) > 0.05
    good[5] = False  # nothing to use
    return values.astype(dtype), good


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cupy_fused_clipping_is_the_reference(cupy_kernels, dtype):
    _, backend, reference = cupy_kernels
    values, good = _hard_rows(np.random.default_rng(3), dtype)
    x, g = backend.asarray(values), backend.asarray(good)
    fused = backend.kernels.clipped_stats(x, g, nsigma=5.5, niter=3)
    expected = reference.clipped_stats(x, g, nsigma=5.5, niter=3)
    np.testing.assert_array_equal(fused[2].get(), expected[2].get())
    np.testing.assert_allclose(fused[0].get(), expected[0].get(), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(fused[1].get(), expected[1].get(), rtol=1e-9, equal_nan=True)
    assert np.isnan(fused[0].get()[5]) and fused[2].get()[5] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cupy_fused_row_medians_are_numpys(cupy_kernels, dtype):
    _, backend, _ = cupy_kernels
    rng = np.random.default_rng(4)
    stack = np.round(rng.normal(1000.0, 5.0, (2, 3, 40, 58))).astype(dtype)  # ties
    stack[0, 0, 3, 5] = np.nan
    stack[1, 1, 4, :] = 3.0
    for region, axis in ((stack, -1), (stack, -2), (stack[..., 1:], -1)):
        got = backend.kernels.median(backend.asarray(np.ascontiguousarray(region)), axis=axis)
        with np.errstate(invalid="ignore"):
            expected = np.median(region, axis=axis)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got.get(), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cupy_fused_quantiles_select_without_sorting(cupy_kernels, dtype):
    """Radix selection gives exactly the sorted order statistics (ties, NaN, -0.0 and
    0.0, negative values, empty rows), hence the same quartiles as the reference."""
    _, backend, reference = cupy_kernels
    values, good = _hard_rows(np.random.default_rng(5), dtype)
    values[0, :40] = -values[0, :40]  # negative values order below positive ones
    values[3, :5] = [0.0, -0.0, -1e-30, 1e-30, -7.0]
    x, g = backend.asarray(values), backend.asarray(good)
    quantiles = (0.0, 0.25, 0.5, 0.75, 1.0)
    fused = backend.kernels.masked_quantiles(x, g, quantiles)
    expected = reference.masked_quantiles(x, g, quantiles)
    for got, want in zip(fused, expected, strict=True):
        np.testing.assert_array_equal(got.get(), want.get())
    finite = good & np.isfinite(values)
    for row in range(5):
        truth = np.quantile(values[row][finite[row]].astype(np.float64), quantiles)
        np.testing.assert_allclose([q.get()[row] for q in fused], truth, rtol=1e-15)

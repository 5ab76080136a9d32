import numpy as np
import pytest

from backends import host
from gpuptc.backend import get_backend
from gpuptc.measuring.stats import covariances_fft, fft_shape


def direct_covariance(image, weights, dx, dy):
    """Masked pair sum for lag (dx, dy), averaged with (dx, -dy) when both are non-zero."""

    def one(dx, dy):
        ny, nx = image.shape
        ys = slice(max(0, -dy), ny - max(0, dy))
        ys2 = slice(max(0, dy), ny - max(0, -dy) if dy < 0 else ny)
        a, b = image[ys, : nx - dx], image[ys2, dx:]
        wa, wb = weights[ys, : nx - dx], weights[ys2, dx:]
        both = wa & wb
        n = both.sum()
        if n == 0:
            return np.nan, 0
        sa, sb = a[both], b[both]
        return (sa * sb).sum() / n - sa.sum() * sb.sum() / n**2, n

    c1, n1 = one(dx, dy)
    if dx > 0 and dy > 0:
        c2, n2 = one(dx, -dy)
        return 0.5 * (c1 + c2), n1 + n2
    return c1, n1


def _weights(rng, shape, kind):
    if kind == "many masked":
        return rng.random(shape) > 0.2
    weights = rng.random(shape) > 0.005  # few masked: sums without transforms on NumPy
    if kind == "masked border":
        weights[..., :3, :] = weights[..., :, -2:] = False
    if kind == "one masked image":
        weights[0] = False
    return weights


@pytest.mark.parametrize("kind", ["many masked", "few masked", "masked border", "one masked image"])
@pytest.mark.parametrize("shape", [(37, 23), (64, 50)])
def test_fft_equals_direct_masked_sum(shape, kind, backend):
    rng = np.random.default_rng(4)
    image = rng.normal(size=(2, *shape)) + np.linspace(0, 3, shape[1])  # a gradient, too
    weights = _weights(rng, image.shape, kind)
    size = 8
    cov, npix = covariances_fft(
        backend.asarray(image), backend.asarray(weights), size, backend=backend
    )
    cov, npix = host(cov), host(npix)
    for k in range(2):
        for dx in range(size):
            for dy in range(size):
                expected, n = direct_covariance(image[k], weights[k], dx, dy)
                assert npix[k, dx, dy] == n
                if n == 0:
                    assert np.isnan(cov[k, dx, dy])
                    continue
                assert cov[k, dx, dy] == pytest.approx(expected, rel=1e-9, abs=1e-12), (dx, dy)


def test_no_wrap_around_at_the_largest_lag():
    """A periodic pattern whose wrap-around would show at the largest lag."""
    ny, nx, size = 30, 20, 10
    assert all(s >= n + size for s, n in zip(fft_shape(ny, nx, size), (ny, nx), strict=True))
    image = np.zeros((ny, nx))
    image[:, -3:] = 100.0  # bright right edge: circular lags would pair it with the left edge
    image[-2:, :] -= 50.0
    weights = np.ones_like(image, bool)
    cov, npix = covariances_fft(image[None], weights[None], size, backend=get_backend("numpy"))
    for dx, dy in [(size - 1, 0), (0, size - 1), (size - 1, size - 1)]:
        expected, n = direct_covariance(image, weights, dx, dy)
        assert cov[0, dx, dy] == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert npix[0, dx, dy] == n


def test_fft_covariances_on_every_backend(backend):
    rng = np.random.default_rng(5)
    image = rng.normal(size=(3, 2, 40, 30))
    weights = rng.random(image.shape) > 0.1
    cov, npix = covariances_fft(
        backend.asarray(image), backend.asarray(weights), 5, backend=backend
    )
    ref, ref_n = covariances_fft(image, weights, 5, backend=get_backend("numpy"))
    np.testing.assert_allclose(host(cov), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(host(npix), ref_n)
    chunked, _ = covariances_fft(image, weights, 5, backend=get_backend("numpy"), chunk=2)
    np.testing.assert_allclose(chunked, ref, rtol=1e-12)


def test_float32_images_are_transformed_in_float64(backend):
    """Covariances of float32 pixels match those of the same values in float64."""
    rng = np.random.default_rng(6)
    image = (rng.normal(0.0, 150.0, (2, 200, 120)) + 3e4).astype(np.float32)
    weights = _weights(rng, image.shape, "few masked")
    w = backend.asarray(weights)
    single, n_single = map(host, covariances_fft(backend.asarray(image), w, 6, backend=backend))
    double, n_double = map(
        host, covariances_fft(backend.asarray(image.astype(np.float64)), w, 6, backend=backend)
    )
    np.testing.assert_array_equal(n_single, n_double)
    np.testing.assert_allclose(single, double, rtol=1e-9, atol=1e-9 * np.abs(double).max())

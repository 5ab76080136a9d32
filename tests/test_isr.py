import numpy as np
import pytest

import gpuptc
from backends import host
from gpuptc.backend import get_backend
from gpuptc.config import IsrConfig
from gpuptc.measuring.compute import isr_regions
from gpuptc.measuring.isr import run_isr, serial_overscan_model
from gpuptc.raws.geometry import SensorGeometry, amp_geometry


def _geometry(namps=2, naxis1=40, naxis2=60, datasec="[3:28,1:50]"):
    amps = tuple(amp_geometry(a, f"S{a}", naxis1, naxis2, datasec) for a in range(1, namps + 1))
    return SensorGeometry(amps, "e2v")


def _frame(geometry, rng, slope=0.05, level=1000.0, noise=0.0):
    naxis2, naxis1 = geometry.segment_shape
    rows = np.arange(naxis2)[:, None]
    frame = level + slope * rows + np.zeros((naxis2, naxis1))
    frame = np.broadcast_to(frame, (geometry.namps, naxis2, naxis1)).copy()
    return frame + noise * rng.standard_normal(frame.shape)


@pytest.mark.parametrize("method", ["MEAN_PER_ROW", "MEDIAN_PER_ROW", "POLY"])
def test_row_methods_follow_a_row_gradient(backend, method):
    geometry = _geometry()
    raw = _frame(geometry, np.random.default_rng(0))
    config = IsrConfig(serial_overscan=method, parallel_overscan="NONE", dtype="float64")
    result = run_isr(backend.asarray(raw), isr_regions(geometry), config, backend=backend)
    np.testing.assert_allclose(host(result.images), 0.0, atol=1e-9)


@pytest.mark.parametrize("method", ["MEAN", "MEDIAN"])
def test_constant_methods_leave_the_gradient(method):
    geometry = _geometry()
    raw = _frame(geometry, np.random.default_rng(0))
    config = IsrConfig(serial_overscan=method, parallel_overscan="NONE", dtype="float64")
    images = run_isr(raw, isr_regions(geometry), config, backend=get_backend("numpy")).images
    assert images[0, -1, 0] - images[0, 0, 0] == pytest.approx(0.05 * 49)


def test_poly_order_two_fits_a_parabola():
    geometry = _geometry()
    naxis2, naxis1 = geometry.segment_shape
    rows = np.arange(naxis2, dtype=float)[:, None]
    raw = np.broadcast_to(500 + 0.3 * rows + 0.01 * rows**2, (2, naxis2, naxis1)).copy()
    numpy = get_backend("numpy")
    model = serial_overscan_model(
        raw, isr_regions(geometry), method="POLY", poly_order=2, skip=(0, 0), backend=numpy
    )
    np.testing.assert_allclose(model[..., 0], raw[..., 0], rtol=1e-10)


def test_skipped_columns_keep_a_cti_trail_out():
    geometry = _geometry()
    raw = _frame(geometry, np.random.default_rng(0), slope=0.0)
    first_overscan = geometry.amps[0].serial_overscan.x0
    raw[..., first_overscan] += 300.0  # deferred charge in the first overscan column
    numpy = get_backend("numpy")

    def corrected(skip):
        config = IsrConfig(
            serial_overscan="MEAN_PER_ROW",
            serial_skip=skip,
            parallel_overscan="NONE",
            dtype="float64",
        )
        return run_isr(raw, isr_regions(geometry), config, backend=numpy)

    skipping, naive = corrected((3, 0)), corrected((0, 0))
    assert np.abs(skipping.images).max() < 1e-9
    assert naive.images.mean() == pytest.approx(-300.0 / 12)


@pytest.mark.parametrize("skip", [(3, 3), (5, 2), (1, 4)])
def test_every_skipped_overscan_column_and_row_counts(skip):
    """A CTI trail in exactly the first ``skip[0]`` serial-overscan columns and a glitch in
    the last ``skip[1]``, and the same in the parallel overscan rows: skipping exactly
    those leaves nothing; skipping one fewer at either end leaves its trace."""
    geometry = _geometry(naxis1=48, naxis2=70, datasec="[3:28,1:50]")
    raw = _frame(geometry, np.random.default_rng(0), slope=0.0)
    serial = geometry.amps[0].serial_overscan
    parallel = geometry.amps[0].parallel_overscan
    lead, trail = skip
    raw[..., serial.x0 : serial.x0 + lead] += 400.0 * 0.5 ** np.arange(lead)
    raw[..., serial.x1 - trail : serial.x1] -= 250.0
    columns = slice(parallel.x0, parallel.x1)
    raw[..., parallel.y0 : parallel.y0 + lead, columns] += 300.0
    raw[..., parallel.y1 - trail : parallel.y1, columns] -= 150.0
    numpy = get_backend("numpy")

    def corrected(serial_skip, parallel_skip=None):
        config = IsrConfig(
            serial_overscan="MEAN_PER_ROW",
            serial_skip=serial_skip,
            parallel_overscan="NONE" if parallel_skip is None else "MEAN_PER_ROW",
            parallel_skip=parallel_skip or (0, 0),
            dtype="float64",
        )
        return run_isr(raw, isr_regions(geometry), config, backend=numpy).images

    np.testing.assert_allclose(corrected(skip), 0.0, atol=1e-9)
    np.testing.assert_allclose(corrected(skip, skip), 0.0, atol=1e-9)
    for fewer in ((lead - 1, trail), (lead, trail - 1)):
        assert np.abs(corrected(fewer)).max() > 1.0, ("serial", fewer)
        assert np.abs(corrected(skip, fewer)).max() > 1.0, ("parallel", fewer)


def test_parallel_overscan_removes_a_column_pattern():
    geometry = _geometry()
    raw = _frame(geometry, np.random.default_rng(0), slope=0.0)
    columns = np.arange(raw.shape[-1])
    raw += 3.0 * np.sin(columns / 3.0)  # column structure through image and parallel overscan
    numpy = get_backend("numpy")
    config = IsrConfig(serial_skip=(0, 0), parallel_skip=(1, 1), dtype="float64")
    result = run_isr(raw, isr_regions(geometry), config, backend=numpy)
    np.testing.assert_allclose(result.images, 0.0, atol=1e-9)


def test_bias_saturation_edges_and_nans(backend):
    geometry = _geometry()
    rng = np.random.default_rng(1)
    raw = _frame(geometry, rng, slope=0.0, noise=1.0)
    bias = np.zeros(raw.shape)
    bias[..., :, 10] = 7.0
    raw[..., :, 10] += 7.0
    raw[0, 5, 5] = 70000.0  # saturated
    raw[1, 6, 6] = np.nan
    config = IsrConfig(
        parallel_overscan="NONE",
        use_bias=True,
        saturation=65000.0,
        edge_mask=2,
        edge_mask_level="AMP",
        dtype="float64",
    )
    result = run_isr(
        backend.asarray(raw),
        isr_regions(geometry),
        config,
        bias=backend.asarray(bias),
        backend=backend,
    )
    images, good = host(result.images), host(result.good)
    assert abs(images[good].mean()) < 0.1
    assert not good[0, 5, 3] and not good[1, 6, 4]  # DATASEC starts at column 3
    assert not good[:, :2].any() and not good[:, -2:].any() and not good[..., :2].any()
    assert good.sum() == 2 * (50 - 4) * (26 - 4) - 2
    # residual about a per-row median of 6 columns: somewhat below the pixel noise of 1
    assert np.all((host(result.read_noise_adu) > 0.7) & (host(result.read_noise_adu) < 1.05))


def test_measure_is_identical_on_strict_backend(small_e2v):
    manifest = gpuptc.ingest([small_e2v.directory])
    manifest = manifest[(manifest.status != "paired") | (manifest.pair < 2)]
    options = {"isr__dtype": "float64", "extract__min_pixels_covariance": 100, "cov_size": 3}
    a, ca = gpuptc.measure(manifest, backend="numpy", **options)
    b, cb = gpuptc.measure(manifest, backend="array_api_strict", **options)
    columns = ["mean", "var", "rhl_gain", "rhl_gain_corrected", "notebook_gain", "read_noise_adu"]
    np.testing.assert_allclose(a[columns].to_numpy(), b[columns].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(ca["cov"].to_numpy(), cb["cov"].to_numpy(), rtol=1e-9, atol=1e-12)
    assert (a.npix == b.npix).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("parallel", ["MEDIAN_PER_ROW", "NONE"])
@pytest.mark.parametrize("serial", ["MEDIAN_PER_ROW", "MEAN", "NONE"])
def test_fused_isr_is_the_generic_isr(serial, parallel, dtype):
    pytest.importorskip("numba")
    geometry = _geometry(namps=3)
    rng = np.random.default_rng(7)
    raw = np.stack([_frame(geometry, rng, noise=3.0) for _ in range(2)]).astype(dtype)
    raw = np.round(raw)  # raw ADU
    raw[0, 1, 7, 9] = 70000.0
    raw[1, 2, 8, 4] = np.nan
    bias = rng.normal(0.0, 2.0, raw.shape[1:]).astype(dtype)
    config = IsrConfig(
        serial_overscan=serial,
        parallel_overscan=parallel,
        use_bias=True,
        saturation=65000.3,
        edge_mask=1,
        edge_mask_level="AMP",
        dtype=dtype,
    )
    results = {
        setting: run_isr(
            raw, isr_regions(geometry), config, bias=bias, backend=get_backend("numpy", fused=fused)
        )
        for setting, fused in (("1", True), ("0", False))
    }
    for field in ("images", "good", "overscan_level"):
        np.testing.assert_array_equal(
            getattr(results["1"], field), getattr(results["0"], field), err_msg=field
        )
    np.testing.assert_allclose(results["1"].read_noise_adu, results["0"].read_noise_adu, rtol=1e-12)
    assert not results["1"].good[0, 1, 7, 7] and not results["1"].good[1, 2, 8, 2]

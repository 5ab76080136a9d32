"""The CuPy path, driven through the NumPy-backed stand-in (or a real GPU where there is one).

The stand-in (``tests/cupy_stand_in``) refuses implicit host copies, rejects host arrays in
device functions and counts every host synchronisation, so these tests show that the GPU
path computes the NumPy path's numbers without waiting on the device inside a batch.
"""

import shutil
import sys

import fitsio
import numpy as np
import pandas as pd
import pytest

import cupy_stand_in
import gpuptc
from backends import real_cupy_with_gpu
from gpuptc.backend import BackendError, get_backend
from gpuptc.raws.exposure import read_raw
from gpuptc.simulation.simulate import simulate

OPTIONS = {"cov_size": 4, "extract__min_pixels_covariance": 100}


STAND_IN = not real_cupy_with_gpu()
"""Whether these tests run on the stand-in (no GPU here) or on a real CuPy."""

only_on_the_stand_in = pytest.mark.skipif(not STAND_IN, reason="about the stand-in itself")


@pytest.fixture
def cupy(monkeypatch):
    """CuPy: the real one where it sees a GPU, else the stand-in (counts reset)."""
    if not STAND_IN:
        import cupy

        return cupy
    return cupy_stand_in.install(monkeypatch)


@pytest.fixture(scope="module")
def sensor(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("gpu"), size="small", pairs=6, biases=0, seed=51)


@only_on_the_stand_in
def test_the_stand_in_behaves_like_cupy(cupy):
    x = cupy.asarray(np.arange(12.0).reshape(3, 4))
    assert not isinstance(x, np.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(x)
    with pytest.raises(TypeError, match="host arrays"):
        cupy.add(x, np.ones((3, 4)))
    cupy_stand_in.reset()
    y = x[x > 5.0]  # boolean indexing reads a count back
    assert cupy_stand_in.COUNTS["sync"] == 1 and float(y.sum()) == 51.0
    assert cupy_stand_in.COUNTS["sync"] == 2
    np.testing.assert_array_equal(x.get(), np.arange(12.0).reshape(3, 4))
    for name, module in cupy_stand_in.modules().items():
        listed = cupy_stand_in.NAMES.get(name)
        if listed is not None:
            public = {n for n in vars(module) if not n.startswith("_")}
            assert public <= set(listed), (name, public - set(listed))


def test_measure_on_cupy_matches_numpy_without_waiting_on_the_device(cupy, sensor):
    manifest = gpuptc.ingest([sensor.directory])
    reference, reference_covs = gpuptc.measure(manifest, backend="numpy", **OPTIONS)
    counts = {}
    for batch in (2, 3):
        cupy_stand_in.reset()
        pairs, covs = gpuptc.measure(manifest, backend="cupy", batch_pairs=batch, **OPTIONS)
        counts[batch] = (cupy_stand_in.COUNTS["sync"], dict(cupy_stand_in.SYNC_SITES))
        columns = [
            "mean",
            "var",
            "rhl_gain",
            "rhl_gain_corrected",
            "notebook_gain",
            "read_noise_adu",
        ]
        np.testing.assert_allclose(pairs[columns], reference[columns], rtol=1e-9)
        np.testing.assert_allclose(covs["cov"], reference_covs["cov"], rtol=1e-7, atol=1e-9)
        assert (pairs.npix == reference.npix).all()
    if not STAND_IN:
        return
    # the same small number of host synchronisations per batch, whatever the pairs
    per_batch = {batch: counts[batch][0] / (6 // batch) for batch in counts}
    assert per_batch[2] == per_batch[3] <= 2, counts


def test_rice_tiles_decoded_on_the_device_give_the_host_numbers(
    cupy, tmp_path_factory, monkeypatch
):
    """RICE raws on CuPy: compressed tiles cross the bus and are decoded there; a pair with
    a corrupt tile is rejected (its batch decoded on the host), the others kept."""
    rice = simulate(
        tmp_path_factory.mktemp("rice"), size="small", pairs=4, biases=0, seed=52, storage="rice"
    )
    manifest = gpuptc.ingest([rice.directory])
    reference, _ = gpuptc.measure(manifest, backend="numpy", **OPTIONS)
    from gpuptc.raws import rice_gpu

    sent = []
    decode = rice_gpu.decode_on_device

    def counting(xp, packed, out):
        sent.append(len(packed.data))
        return decode(xp, packed, out)

    monkeypatch.setattr("gpuptc.measuring.batches.decode_on_device", counting)
    pairs, _ = gpuptc.measure(manifest, backend="cupy", batch_pairs=2, **OPTIONS)
    file_bytes = read_raw(manifest.path.iloc[0]).pixels.size * 4
    assert len(sent) == 2 and sum(sent) < 0.7 * 8 * file_bytes  # compressed bytes only
    columns = ["mean", "var", "rhl_gain", "read_noise_adu"]
    np.testing.assert_allclose(pairs[columns], reference[columns], rtol=1e-9)

    broken = tmp_path_factory.mktemp("broken")
    for path in rice.directory.glob("*.fits"):
        shutil.copy(path, broken / path.name)
    flat = sorted(broken.glob("MC_*.fits"))[-1]  # a flat of the last pair
    with fitsio.FITS(str(flat)) as opened:
        start = opened[3].get_offsets()["data_start"]
        table = opened[3].read_header()
    heap = start + int(table["NAXIS1"]) * int(table["NAXIS2"])
    with open(flat, "r+b") as handle:  # the first tile's block codes out of range
        handle.seek(start)
        _, offset = np.frombuffer(handle.read(8), ">i4")
        handle.seek(heap + int(offset) + 4)
        handle.write(b"\xff" * 4)
    kept, _ = gpuptc.measure(gpuptc.ingest([broken]), backend="cupy", batch_pairs=2, **OPTIONS)
    assert sorted(kept.pair.unique()) == sorted(reference.pair.unique())[:-1]
    last = kept.pair.max()
    np.testing.assert_allclose(
        kept[kept.pair == last][columns], reference[reference.pair == last][columns], rtol=1e-9
    )


def test_a_whole_run_on_cupy(cupy, sensor, tmp_path):
    numpy_run = gpuptc.run(
        [sensor.directory], tmp_path / "numpy", backend="numpy", report=False, **OPTIONS
    )
    cupy_stand_in.reset()
    cupy_run = gpuptc.run([sensor.directory], tmp_path / "cupy", backend="cupy", **OPTIONS)
    assert cupy_run.exit_code == numpy_run.exit_code == 0
    a = numpy_run.tables["ptc"].set_index(["amp", "model"])
    b = cupy_run.tables["ptc"].set_index(["amp", "model"])
    pd.testing.assert_series_equal(a["status"], b["status"])
    np.testing.assert_allclose(b["gain"], a["gain"], rtol=1e-6)
    assert (tmp_path / "cupy" / "report" / "index.html").exists()
    assert '"backend": "cupy"' in (tmp_path / "cupy" / "run.json").read_text()
    if STAND_IN:
        assert cupy_stand_in.COUNTS["to_device"] > 0 and cupy_stand_in.COUNTS["to_host"] > 0


@only_on_the_stand_in
def test_batches_and_transforms_fit_the_device(cupy, monkeypatch):
    backend = get_backend("cupy")
    pair = 2 * 16 * 2048 * 576 * 4  # a full-size e2v pair, float32
    assert backend.batch_size(pair, pairs=4) == 4  # never more pairs than the sensor has
    by_device = int(0.5 * cupy_stand_in.FREE_BYTES / (12 * pair))
    by_host = int(8 * 2**30 / (2 * pair))
    assert backend.batch_size(pair, pairs=400) == min(by_device, by_host)
    monkeypatch.setattr(cupy_stand_in, "FREE_BYTES", 2 * 2**30)
    monkeypatch.setattr(cupy.cuda.runtime, "memGetInfo", lambda: (2 * 2**30, 16 * 2**30))
    assert backend.batch_size(pair, pairs=400) == 1  # a small card: one pair at a time
    chunk = backend.fft_chunk(2025 * 540)
    assert 1 <= chunk < 32 and chunk == int(0.25 * 2 * 2**30 // (80 * 2025 * 540))
    assert get_backend("numpy").fft_chunk(2025 * 540) == 4


@only_on_the_stand_in
def test_cupy_problems_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(BackendError, match="CuPy is not installed"):
        get_backend("cupy")
    assert get_backend("auto").name == "numpy"
    cupy = cupy_stand_in.install(monkeypatch)

    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceCount", no_driver)
    with pytest.raises(BackendError, match="InsufficientDriver"):
        get_backend("cupy")

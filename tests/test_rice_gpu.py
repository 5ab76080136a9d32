"""RICE_1 tiles decoded on the device: NVRTC compiles the kernel; the CuPy stand-in runs its
source on the CPU (``tests/cuda_cpu``), a GPU the compiled kernel."""

import shutil

import fitsio
import numpy as np
import pytest

import cupy_stand_in
from backends import real_cupy_with_gpu
from gpuptc.raws.exposure import read_raw
from gpuptc.raws.rice import RiceError, rice_layout
from gpuptc.raws.rice_gpu import KERNEL, SOURCE, decode_on_device, file_tiles, pack
from nvrtc import compile_for_sm90


def test_the_kernel_compiles_for_sm90_with_nvrtc():
    compile_for_sm90(SOURCE, (KERNEL,))


@pytest.fixture
def cupy(monkeypatch):
    if real_cupy_with_gpu():
        import cupy

        return cupy
    return cupy_stand_in.install(monkeypatch)


def _tiles(path):
    with fitsio.FITS(str(path)) as opened:
        layouts = [
            rice_layout(path, dict(opened[k].read_header()), opened[k].get_offsets()["data_start"])
            for k in range(1, len(opened))
            if opened[k].read_header().get("ZIMAGE")
        ]
    return file_tiles(path, layouts)


def test_a_batch_decoded_on_the_device_equals_the_cpu_decoder(small_itl, cupy):
    paths = sorted(small_itl.directory.glob("MC_*.fits"))[:3]
    expected = np.stack([read_raw(p, out=None).pixels for p in paths]).astype(np.float32)
    files = [_tiles(p) for p in paths]
    compressed = sum(len(f.data) for f in files)
    assert compressed < 0.7 * expected.nbytes  # only the compressed bytes cross the bus
    per_file = expected[0].size
    packed = pack(files, [k * per_file for k in range(len(files))])
    out = cupy.full(expected.shape, np.nan, dtype=cupy.float32)
    decode_on_device(cupy, packed, out)
    assert np.array_equal(cupy.asnumpy(out), expected)


def test_a_corrupt_tile_on_the_device_names_file_segment_and_tile(small_itl, cupy, tmp_path):
    path = tmp_path / "raw.fits"
    shutil.copy(sorted(small_itl.directory.glob("MC_*.fits"))[0], path)
    shape = read_raw(path).pixels.shape
    with fitsio.FITS(str(path)) as opened:
        start = opened[5].get_offsets()["data_start"]
    offsets = rice_layout(path, dict(fitsio.read_header(str(path), 5)), start).offsets
    with open(path, "r+b") as handle:  # HDU 5, its sixth tile: block codes out of range
        handle.seek(int(offsets[5]) + 4)
        handle.write(b"\xff" * 4)
    files = [_tiles(path)]
    out = cupy.zeros((1, *shape), dtype=cupy.float32)
    with pytest.raises(RiceError, match=rf"{path}: HDU 5, tile 5: a block code"):
        decode_on_device(cupy, pack(files, [0]), out)

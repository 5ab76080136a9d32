"""gpuptc's own RICE_1 decoder, bit-exact against cfitsio and astropy, and safe on bad bytes.

Variants cfitsio and astropy do not write (BLOCKSIZE 16, BYTEPIX 1 and 2 for 32-bit
images, tiles forced into the raw-bits code) come from the plain Python encoder of
``rice_writer``; cfitsio reads those files too, which checks the encoder.
"""

import shutil

import fitsio
import numpy as np
import pytest
from astropy.io import fits

from gpuptc.raws.exposure import RawReadError, native_reason, read_raw
from gpuptc.raws.rice import RiceError, decode_tiles, rice_layout, unsupported_reason
from rice_writer import write_rice


def _decoded(path, hdu=1, out_dtype=np.float32):
    header = fitsio.read_header(str(path), hdu)
    with fitsio.FITS(str(path)) as opened:
        start = opened[hdu].get_offsets()["data_start"]
    layout = rice_layout(path, dict(header), start)
    out = np.full(layout.shape, np.nan, dtype=out_dtype)
    status = decode_tiles(np.memmap(path, dtype=np.uint8, mode="r"), layout, out)
    return out, status


def _images(rng):
    ramp = rng.poisson(20000, (40, 37)).astype(np.int32)
    full = rng.integers(-(2**31), 2**31 - 1, (6, 50), dtype=np.int64).astype(np.int32)
    first = np.full((4, 33), 7, np.int32)
    first[:, 0] = -(2**31) + 5  # first values needing all 32 bits, then a jump
    flat = np.full((5, 64), 123456, np.int32)  # zero-entropy blocks
    return {"poisson": ramp, "random 32 bits": full, "extreme first": first, "constant": flat}


@pytest.mark.parametrize("writer", ["fitsio", "astropy"])
def test_files_written_by_cfitsio_and_astropy(tmp_path, writer):
    rng = np.random.default_rng(3)
    for name, image in _images(rng).items():
        path = tmp_path / f"{writer}-{name.replace(' ', '_')}.fits"
        if writer == "fitsio":
            fitsio.write(str(path), image, compress="RICE", tile_dims=[1, image.shape[1]])
        else:
            hdu = fits.CompImageHDU(image, compression_type="RICE_1", tile_shape=(2, 16))
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
        out, status = _decoded(path, out_dtype=np.float64)
        assert not status.any(), name
        assert np.array_equal(out, image.astype(np.float64)), name


@pytest.mark.parametrize(("dtype", "zbitpix"), [(np.int16, 16), (np.uint16, 16), (np.uint8, 8)])
def test_narrow_integers_and_their_bzero(tmp_path, dtype, zbitpix):
    rng = np.random.default_rng(5)
    info = np.iinfo(dtype)
    image = rng.integers(info.min, info.max, (20, 45), endpoint=True).astype(dtype)
    image[3] = info.max
    path = tmp_path / "narrow.fits"
    fitsio.write(str(path), image, compress="RICE")
    header = fitsio.read_header(str(path), 1)
    assert header["ZBITPIX"] == zbitpix
    out, status = _decoded(path)
    assert not status.any()
    assert np.array_equal(out, image.astype(np.float32))


@pytest.mark.parametrize("blocksize", [16, 32])
@pytest.mark.parametrize("bytepix", [1, 2, 4])
@pytest.mark.parametrize("mode", [None, "raw"])
def test_blocksize_bytepix_and_raw_code_variants(tmp_path, blocksize, bytepix, mode):
    rng = np.random.default_rng(blocksize + bytepix)
    high = {1: 255, 2: 2**15 - 1, 4: 2**31 - 1}[bytepix]
    low = 0 if bytepix == 1 else -high - 1
    image = rng.integers(low, high, (9, 70), endpoint=True)
    image[2] = rng.poisson(30, 70) + max(low, -10)  # compressible rows among random ones
    image[4] = 42
    zbitpix = {1: 8, 2: 16, 4: 32}[bytepix]
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[bytepix]
    path = write_rice(
        tmp_path / "v.fits",
        image.astype(dtype),
        blocksize=blocksize,
        bytepix=bytepix,
        zbitpix=zbitpix,
        mode=mode,
        tile_rows=2,
    )
    out, status = _decoded(path, out_dtype=np.float64)
    assert not status.any()
    assert np.array_equal(out, image.astype(np.float64))
    assert np.array_equal(fitsio.read(str(path), ext=1), image.astype(dtype))  # cfitsio agrees


def test_every_simulated_layout_reads_alike(small_itl, tmp_path):
    """The ITL fixture is RICE; an e2v sensor is written RICE here: native, cfitsio, astropy."""
    import gpuptc

    e2v = tmp_path / "e2v"
    gpuptc.simulate(e2v, vendor="e2v", pairs=1, biases=0, size="small", storage="rice")
    files = [*sorted(small_itl.directory.glob("MC_*.fits"))[:2], *sorted(e2v.glob("MC_*.fits"))]
    for path in files:
        assert native_reason(path) is None
        native = read_raw(path, reader="native", out=None).pixels
        assert np.array_equal(native, read_raw(path, reader="fitsio").pixels)
        assert np.array_equal(native, read_raw(path, reader="astropy").pixels)
        buffer = np.empty(native.shape, np.float32)
        read_raw(path, out=buffer)  # straight into a float32 batch buffer
        assert np.array_equal(buffer, native.astype(np.float32))


def _first_raw(sensor, tmp_path):
    path = tmp_path / "raw.fits"
    shutil.copy(sorted(sensor.directory.glob("MC_*.fits"))[0], path)
    return path


def _tile_bytes(path, hdu, tile):
    header = fitsio.read_header(str(path), hdu)
    with fitsio.FITS(str(path)) as opened:
        start = opened[hdu].get_offsets()["data_start"]
    layout = rice_layout(path, dict(header), start)
    return int(layout.offsets[tile]), int(layout.sizes[tile])


def test_a_corrupt_tile_is_an_error_naming_file_segment_and_tile(small_itl, tmp_path):
    path = _first_raw(small_itl, tmp_path)
    offset, size = _tile_bytes(path, 3, 7)
    with open(path, "r+b") as handle:  # every block code the largest: out of range
        handle.seek(offset + 4)
        handle.write(b"\xff" * (size - 4))
    with pytest.raises(RawReadError) as caught:
        read_raw(path)
    message = str(caught.value)
    assert str(path) in message and "Segment" in message and "tile 7" in message


def test_a_tile_cut_short_is_an_error_not_a_read_past_it(small_itl, tmp_path):
    path = _first_raw(small_itl, tmp_path)
    header = fitsio.read_header(str(path), 1)
    with fitsio.FITS(str(path)) as opened:
        start = opened[1].get_offsets()["data_start"]
    layout = rice_layout(path, dict(header), start)
    data = np.memmap(path, dtype=np.uint8, mode="r")
    short = type(layout)(**{**layout.__dict__, "sizes": layout.sizes // 2})
    out = np.zeros(layout.shape, np.float32)
    status = decode_tiles(data, short, out)
    assert (status == 1).all()  # truncated, every tile
    beyond = type(layout)(**{**layout.__dict__, "offsets": layout.offsets + len(data)})
    assert (decode_tiles(data, beyond, out) == 3).all()


def test_a_truncated_file_is_an_error(small_itl, tmp_path):
    path = _first_raw(small_itl, tmp_path)
    offset, _ = _tile_bytes(path, 16, 0)
    with open(path, "r+b") as handle:
        handle.truncate(offset + 10)
    with pytest.raises(RawReadError, match=str(path)):
        read_raw(path)


def test_what_the_decoder_leaves_to_cfitsio(tmp_path):
    image = np.arange(200, dtype=np.float32).reshape(10, 20)
    quantised = tmp_path / "float.fits"
    fitsio.write(str(quantised), image, compress="RICE")
    gzipped = tmp_path / "gzip.fits"
    fitsio.write(str(gzipped), image.astype(np.int32), compress="GZIP")
    for path, reason in ((quantised, "ZBITPIX -32"), (gzipped, "GZIP_1")):
        header = dict(fitsio.read_header(str(path), 1))
        assert reason in unsupported_reason(header)
        with pytest.raises(RiceError):
            rice_layout(path, header, 0)

from pathlib import Path

import fitsio
import numpy as np
import pytest
from astropy.io import fits

from gpuptc.formats.writer import write_raw
from gpuptc.raws.exposure import RawReadError, read_raw, read_segment_headers
from gpuptc.simulation.simulate import (
    SimulationConfig,
    exposure_plan,
    render_exposure,
    sensor_truth,
    simulate,
)


def _expected(config, index):
    truth = sensor_truth(config)
    return render_exposure(config, truth, exposure_plan(config, truth)[index])


@pytest.mark.parametrize("vendor", ["e2v", "itl"])
@pytest.mark.parametrize("storage", ["int32", "rice", "uint16", "gzip"])
def test_every_storage_round_trips_through_both_readers(tmp_path, vendor, storage):
    config = SimulationConfig(
        vendor=vendor, size="small", pairs=1, biases=0, seed=5, storage=storage
    )
    sim = simulate(tmp_path, config)
    path = sim.flats[0]
    assert path.name.endswith(".fits.gz" if storage == "gzip" else ".fits")
    expected = _expected(config, 0)
    if storage == "uint16":
        expected = np.clip(expected, 0, 65535)
    via_fitsio = read_raw(path)
    via_astropy = read_raw(path, reader="astropy")
    for raw in (via_fitsio, via_astropy):
        assert raw.pixels.dtype == np.int32
        assert raw.pixels.dtype.isnative
        np.testing.assert_array_equal(raw.pixels, expected)
        assert raw.geometry.vendor == vendor
        assert raw.geometry.namps == 16
        assert raw.info.sensor == config.sensor
        assert raw.info.imgtype == "FLAT"


def test_storage_is_what_the_camera_writes(tmp_path):
    sim = simulate(tmp_path, vendor="e2v", size="small", pairs=1, biases=0, storage="rice")
    with fits.open(sim.flats[0], disable_image_compression=True) as hdus:
        seg = hdus[1].header
        assert seg["ZCMPTYPE"] == "RICE_1"
        assert seg["ZBITPIX"] == 32
        assert (seg["ZTILE1"], seg["ZTILE2"]) == (seg["ZNAXIS1"], 1)
        assert "BIASSEC" not in seg
        names = [h.name for h in hdus]
    assert names[1:17] == [f"Segment1{i}" for i in range(8)] + [
        f"Segment0{i}" for i in range(7, -1, -1)
    ]
    assert names[17:] == ["REB_COND", "CONFIG_COND"]


def test_legacy_uint16_has_bzero(tmp_path):
    sim = simulate(tmp_path, vendor="e2v", size="small", pairs=1, biases=0, storage="uint16")
    header = fitsio.read_header(str(sim.flats[0]), 1)
    assert header["BITPIX"] == 16
    assert header["BZERO"] == 32768


def test_gzip_signature_without_gz_name(tmp_path):
    sim = simulate(tmp_path, vendor="itl", size="small", pairs=1, biases=0, storage="gzip")
    renamed = tmp_path / "exposure_without_suffix.fits"
    sim.flats[0].rename(renamed)
    assert renamed.read_bytes()[:2] == b"\x1f\x8b"
    raw = read_raw(renamed)
    assert raw.pixels.shape == (16, 108, 91)


def test_overscan_boxes_hold_no_signal(small_e2v):
    """A bright flat: imaging pixels carry signal; prescan and overscans only bias."""
    raw = read_raw(small_e2v.flats[-6])
    truth = small_e2v.truth
    geom = raw.geometry.amps[0]
    for amp in range(16):
        seg = raw.pixels[amp].astype(float)
        bias = truth.loc[amp, "bias_level"]
        signal = seg[geom.imaging.slices].mean() - bias
        assert signal > 1000
        assert abs(seg[geom.prescan.slices].mean() - bias) < 2
        skip_cti = (geom.serial_overscan.slices[0], slice(geom.serial_overscan.x0 + 3, None))
        assert abs(seg[skip_cti].mean() - bias) < 2
        assert abs(seg[geom.parallel_overscan.slices].mean() - bias) < 3
        # the last imaging column is bright; a box shifted by one column would catch it
        assert seg[geom.imaging.slices][:, -1].mean() - bias > 0.5 * signal


def test_full_size_real_layout(tmp_path):
    # full size: the camera's own layout is what is checked; rendered in this process, as
    # the test run keeps the cores busy
    sim = simulate(tmp_path, vendor="e2v", pairs=1, biases=0, storage="rice", seed=2, workers=1)
    raw = read_raw(sim.flats[0])
    assert raw.pixels.shape == (16, 2048, 576)
    assert raw.geometry.layout == "e2v 576x2048 [11:522,1:2002]"
    assert raw.geometry.segments[0] == "Segment10"
    assert raw.geometry.segments[-1] == "Segment00"
    assert raw.trimmed().shape == (16, 2002, 512)
    assert raw.assemble().shape == (4004, 4096)
    assert raw.info.detsize == "[1:4096,1:4004]"


def _write(path, pixels, datasecs, primary=None, channels=True):
    segments = []
    for amp, datasec in enumerate(datasecs, 1):
        header = {"EXTNAME": f"Segment{amp:02d}", "DATASEC": datasec}
        if channels:
            header["CHANNEL"] = amp
        segments.append(header)
    write_raw(path, pixels, primary or {"IMGTYPE": "FLAT", "EXPTIME": 1.0}, segments)
    return path


def test_missing_segment_is_named(tmp_path):
    path = _write(tmp_path / "a.fits", np.zeros((15, 20, 30), np.int32), ["[3:20,1:15]"] * 15)
    with pytest.raises(RawReadError, match=r"a\.fits: found 15 amplifier image extensions"):
        read_raw(path)


def test_inconsistent_datasec_between_amps(tmp_path):
    datasecs = ["[3:20,1:15]"] * 15 + ["[4:20,1:15]"]
    path = _write(tmp_path / "b.fits", np.zeros((16, 20, 30), np.int32), datasecs)
    with pytest.raises(RawReadError, match="DATASEC"):
        read_raw(path)


def test_out_of_order_channel(tmp_path):
    path = _write(tmp_path / "c.fits", np.zeros((16, 20, 30), np.int32), ["[3:20,1:15]"] * 16)
    with fitsio.FITS(str(path), "rw") as f:
        f[2].write_key("CHANNEL", 7)
    with pytest.raises(RawReadError, match="CHANNEL 7"):
        read_raw(path)


def test_legacy_layout_with_biassec_and_no_vendor_keyword(tmp_path):
    """TS3-era e2v file: 572 x 2048, BITPIX 16, BZERO 32768, with BIASSEC."""
    pixels = np.full((16, 2048, 572), 30000, dtype=np.int32)
    datasec = "[11:522,1:2002]"
    segments = []
    for amp in range(1, 17):
        detsec = "[1:512,1:2002]" if amp <= 8 else "[513:1024,4004:2003]"
        segments.append(
            {
                "EXTNAME": f"Segment{amp:02d}",
                "DATASEC": datasec,
                "DETSEC": detsec,
                "BIASSEC": "[523:572,1:2002]",
            }
        )
    path = tmp_path / "ts3.fits"
    write_raw(path, pixels, {"IMGTYPE": "FLAT", "EXPTIME": 2.0}, segments, storage="uint16")
    raw = read_raw(path)
    assert raw.pixels.dtype == np.int32 and int(raw.pixels[0, 0, 0]) == 30000
    assert raw.geometry.vendor == "e2v"  # from HDU 9's forward DETSEC
    assert raw.geometry.amps[0].biassec is not None
    assert raw.geometry.amps[0].serial_overscan.shape == (2002, 50)


@pytest.mark.parametrize("content", [b"", b"hello, this is not FITS\n" * 10])
def test_not_fits(tmp_path, content):
    path = tmp_path / "bad.fits"
    path.write_bytes(content)
    with pytest.raises(RawReadError, match=r"bad\.fits: not a readable FITS file"):
        read_raw(path)


def test_truncated_file(small_e2v, tmp_path):
    data = Path(small_e2v.flats[0]).read_bytes()
    path = tmp_path / "truncated.fits"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RawReadError, match=r"truncated\.fits"):
        read_raw(path)


def test_header_only_read_matches(small_itl):
    info, geometry = read_segment_headers(small_itl.flats[0])
    assert info.exptime > 0 and geometry.vendor == "itl"
    assert geometry.amps[8].detsec.flip_x


def test_float_master_bias_reads_as_float32(tmp_path):
    pixels = np.random.default_rng(0).normal(size=(16, 20, 30)).astype(np.float32)
    path = _write(tmp_path / "bias.fits", pixels, ["[3:20,1:15]"] * 16)
    raw = read_raw(path)
    assert raw.pixels.dtype == np.float32
    np.testing.assert_array_equal(raw.pixels, pixels)


def test_wavefront_sensor_has_eight_segments(tmp_path):
    pixels = np.zeros((8, 30, 40), np.int32)
    path = _write(tmp_path / "wfs.fits", pixels, ["[4:30,1:20]"] * 8)
    raw = read_raw(path)
    assert raw.geometry.namps == 8
    assert raw.geometry.vendor == "itl"  # no HDU 9: ITL, as EOTEST decides

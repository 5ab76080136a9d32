import numpy as np

from gpuptc.inputs.manifest import ingest
from gpuptc.measuring.masterbias import make_master_bias, read_master_bias, write_master_bias
from gpuptc.simulation.simulate import SimulationConfig, _fixed_patterns


def test_master_bias_recovers_the_fixed_bias_structure(small_e2v, tmp_path):
    bias = make_master_bias(small_e2v.biases)
    assert bias.pixels.shape == (16, 108, 98) and bias.pixels.dtype == np.float32
    structure = _fixed_patterns(small_e2v.config).bias_structure
    imaging = bias.pixels[(slice(None), *bias.geometry.imaging.slices)]
    residual = imaging - imaging.mean(axis=(1, 2), keepdims=True)
    expected = structure - structure.mean(axis=(1, 2), keepdims=True)
    noise = small_e2v.truth["read_noise_adu"].to_numpy()[:, None, None]
    # median of 5 frames: about 1.2 x sigma / sqrt(5) per pixel
    scaled = (residual - expected) / (noise * 1.2 / np.sqrt(5))
    assert abs(scaled.mean()) < 0.1
    assert 0.7 < scaled.std() < 1.3

    path = write_master_bias(tmp_path / "master_bias.fits", bias)
    again = read_master_bias(path)
    np.testing.assert_array_equal(again.pixels, bias.pixels)
    assert again.sensor == small_e2v.sensor
    manifest = ingest([tmp_path])
    assert list(manifest.status) == ["ignored"]


def test_config_is_hashable_for_pattern_cache():
    assert _fixed_patterns(SimulationConfig(size="small")) is _fixed_patterns(
        SimulationConfig(size="small")
    )


def test_master_bias_per_sensor_from_a_manifest(small_e2v, small_itl):
    from gpuptc.measuring.masterbias import master_biases

    biases = master_biases(ingest([small_e2v.directory, small_itl.directory]))
    assert sorted(biases) == sorted([small_e2v.sensor, small_itl.sensor])
    assert len(biases[small_itl.sensor].sources) == 2
    assert biases[small_itl.sensor].geometry.vendor == "itl"

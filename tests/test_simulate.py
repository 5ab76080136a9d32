"""The simulator's truth, checked by simple independent estimates on its raw files."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from gpuptc.formats.eotest import read_eotest_results
from gpuptc.inputs.photodiode import integrate, photodiode_file_name, read_photodiode
from gpuptc.raws.exposure import read_raw
from gpuptc.simulation.cosmic_rays import CosmicRayRates, add_cosmic_rays
from gpuptc.simulation.nonlinearity import NONLINEARITY_COLUMNS, response
from gpuptc.simulation.photodiode import AMPERES_PER_ELECTRON_RATE
from gpuptc.simulation.simulate import (
    SimulationConfig,
    eq16_variance,
    exposure_plan,
    render_exposure,
    sensor_truth,
    sharing_fractions,
    simulate,
)

QUANTIZATION = 1.0 / 12.0


@pytest.mark.parametrize("signal", [1e3, 2e4, 1e5, 2e5])
@pytest.mark.parametrize("a00", [-1e-6, -2.5e-6, -3e-6])
def test_sharing_gives_eq16_variance(signal, a00):
    fx, fy = sharing_fractions(signal, a00)
    keep = 1 - 2 * fx - 2 * fy
    assert abs(keep + 2 * fx + 2 * fy - 1) < 1e-15  # charge conserved
    variance = signal * (keep**2 + 2 * fx**2 + 2 * fy**2)
    assert variance == pytest.approx(float(eq16_variance(signal, a00)), rel=1e-12)
    assert 0 < fx < fy


def test_no_sharing_without_brighter_fatter():
    assert sharing_fractions(5e4, 0.0) == (0.0, 0.0)


def test_default_ladder():
    config = SimulationConfig()
    truth = sensor_truth(config)
    plan = exposure_plan(config, truth)
    flats = [p for p in plan if p.imgtype == "FLAT"]
    assert len(flats) == 48 and len([p for p in plan if p.imgtype == "BIAS"]) == 5
    signals = np.array([p.signal for p in flats[::2]])
    assert signals[0] == pytest.approx(1000, rel=1e-3)
    assert signals[-1] == pytest.approx(1.3 * truth["full_well"].median(), rel=1e-3)
    assert np.all(
        np.diff(np.log(signals)) == pytest.approx(np.log(signals[1] / signals[0]), rel=1e-2)
    )
    assert all(a.exptime == b.exptime for a, b in zip(flats[::2], flats[1::2], strict=True))
    assert len({p.seqnum for p in plan}) == len(plan)
    assert 0.7 <= truth["gain"].min() and truth["gain"].max() <= 1.0
    assert 4 <= truth["read_noise"].min() and truth["read_noise"].max() <= 8


def test_itl_truth_ranges():
    truth = sensor_truth(SimulationConfig(vendor="itl"))
    assert 1.3 <= truth["gain"].min() and truth["gain"].max() <= 1.8
    assert (truth["a00"] < 0).all()


def _pair_statistics(sensor, pair):
    """Straightforward per-amp estimate: row-median overscan, trim, flux-matched difference."""
    raws = [read_raw(p) for p in sensor.flats[2 * pair : 2 * pair + 2]]
    geom = raws[0].geometry.amps[0]
    cols = slice(geom.serial_overscan.x0 + 3, geom.serial_overscan.x1 - 3)
    images = []
    for raw in raws:
        pixels = raw.pixels.astype(np.float64)
        overscan = np.median(pixels[:, geom.imaging.slices[0], cols], axis=2, keepdims=True)
        images.append(pixels[(slice(None), *geom.imaging.slices)] - overscan)
    n_overscan = cols.stop - cols.start
    rows = []
    for amp in range(16):
        a, b = images[0][amp], images[1][amp]
        m1, m2 = a.mean(), b.mean()
        d = a - b * m1 / m2
        mad = np.median(np.abs(d - np.median(d))) * 1.4826
        keep = np.abs(d - np.median(d)) < 5 * mad
        dd = d[keep]
        right = np.roll(d, -1, axis=1)[:, :-1][keep[:, :-1] & keep[:, 1:]]
        left = d[:, :-1][keep[:, :-1] & keep[:, 1:]]
        rows.append(
            {
                "amp": amp + 1,
                "mean": (m1 + m2) / 2,
                "var": dd.var() / 2,
                "cov10": np.mean((left - left.mean()) * (right - right.mean())) / 2,
                "n_overscan": n_overscan,
            }
        )
    return pd.DataFrame(rows)


def _expected_variance(truth, mean_adu, n_overscan):
    gain = truth["gain"].to_numpy()
    noise = truth["read_noise_adu"].to_numpy() ** 2 + QUANTIZATION
    overscan_noise = noise * np.pi / 2 / n_overscan
    return (
        eq16_variance(mean_adu * gain, truth["a00"].to_numpy()) / gain**2 + noise + overscan_noise
    )


def test_variance_follows_eq16_with_truth(small_e2v):
    """Unsaturated pairs: measured variance matches eq. 16 with the true gain, a00, noise."""
    truth = small_e2v.truth
    full_well_adu = truth["full_well_adu"].to_numpy()
    checked = 0
    for pair in range(8):
        stats = _pair_statistics(small_e2v, pair)
        mean = stats["mean"].to_numpy()
        if np.any(mean > 0.8 * full_well_adu):
            continue
        expected = _expected_variance(truth, mean, stats["n_overscan"].iloc[0])
        ratio = stats["var"].to_numpy() / expected
        # 64 x 96 pixels per amp: 1.8 % per amp, 0.45 % for the average of 16
        assert np.mean(ratio) == pytest.approx(1.0, abs=0.02), pair
        assert np.all(np.abs(ratio - 1) < 0.09), (pair, ratio)
        checked += 1
    assert checked >= 5


def test_brighter_fatter_deficit_is_visible(small_e2v):
    """At high flux the variance falls clearly below Poisson, as a00 says."""
    truth = small_e2v.truth
    stats = _pair_statistics(small_e2v, 5)  # about 1/3 of the full well
    mean_e = stats["mean"].to_numpy() * truth["gain"].to_numpy()
    assert mean_e.min() > 3e4
    noise = truth["read_noise_adu"].to_numpy() ** 2
    poisson_ratio = (
        (stats["var"].to_numpy() - noise) * truth["gain"].to_numpy() / stats["mean"].to_numpy()
    )
    expected_ratio = eq16_variance(mean_e, truth["a00"].to_numpy()) / mean_e
    assert np.mean(poisson_ratio) < 0.97
    assert np.mean(poisson_ratio) == pytest.approx(np.mean(expected_ratio), abs=0.01)
    # nearest-neighbour covariance: per amp noise is var / sqrt(npix) = 1.3 % of var
    cov_over_var = (stats["cov10"] / stats["var"]).mean()
    assert cov_over_var > 4 * 0.0128 / 4


def test_without_brighter_fatter_variance_is_poisson(tmp_path):
    sim = simulate(
        tmp_path, vendor="e2v", size="small", pairs=8, biases=0, seed=11, brighter_fatter=False
    )
    stats = _pair_statistics(sim, 5)
    truth = sim.truth
    noise = truth["read_noise_adu"].to_numpy() ** 2 + QUANTIZATION
    ratio = (stats["var"].to_numpy() - noise) * truth["gain"].to_numpy() / stats["mean"].to_numpy()
    assert np.mean(ratio) == pytest.approx(1.0, abs=0.01)
    cov_over_var = stats["cov10"] / stats["var"]
    assert abs(cov_over_var.mean()) < 3 * 0.0128 / 4  # consistent with zero


def test_saturated_pair_collapses_variance(small_e2v):
    truth = small_e2v.truth
    stats = _pair_statistics(small_e2v, 7)  # 1.3 x full well
    assert np.all(stats["mean"] > 0.95 * truth["full_well_adu"] * 0.95)
    assert np.all(stats["var"] < 0.2 * stats["mean"] / truth["gain"])


def test_means_follow_signal_and_gain(small_e2v):
    exposures = pd.read_parquet(small_e2v.exposures_path)
    flats = exposures[exposures.imgtype == "FLAT"].reset_index(drop=True)
    stats = _pair_statistics(small_e2v, 2)
    signal = flats.loc[4:5, "signal"].mean() * flats.loc[4:5, "illumination"].mean()
    electrons = stats["mean"] * small_e2v.truth["gain"]
    # vignetting lowers the mean by about 2 % (fixed pattern); nothing else changes it
    assert np.all(np.abs(electrons / signal - 0.98) < 0.015)


def test_eotest_results_file_like_eotest(small_e2v):
    from astropy.io import fits

    with fits.open(small_e2v.eotest_path) as hdus:
        assert len(hdus[0].header) <= 6 and "LSST_NUM" not in hdus[0].header
        table = hdus["AMPLIFIER_RESULTS"]
        formats = {c.name: c.format for c in table.columns}
    assert formats["AMP"] == "I"
    for name in (
        "GAIN",
        "PTC_GAIN",
        "PTC_GAIN_ERROR",
        "PTC_A00",
        "PTC_NOISE",
        "PTC_TURNOFF",
        "READ_NOISE",
    ):
        assert formats[name] == "E"
    results = read_eotest_results(small_e2v.eotest_path)
    truth = small_e2v.truth
    assert list(results["AMP"]) == list(range(1, 17))
    assert np.all(results["PTC_A00"] > 0)
    ratio = results["PTC_GAIN"] / truth["gain"]
    assert np.all(np.abs(ratio - 1) < 0.05) and ratio.std() > 0.001


def test_same_seed_same_files_whatever_the_workers(tmp_path):
    one = simulate(tmp_path / "a", vendor="itl", size="small", pairs=2, biases=1, seed=4, workers=1)
    two = simulate(tmp_path / "b", vendor="itl", size="small", pairs=2, biases=1, seed=4, workers=2)
    for a, b in zip(one.flats + one.biases, two.flats + two.biases, strict=True):
        np.testing.assert_array_equal(read_raw(a).pixels, read_raw(b).pixels)


def test_reuse_keeps_matching_files(tmp_path):
    first = simulate(tmp_path, vendor="e2v", size="small", pairs=1, biases=0, seed=1)
    stamp = first.flats[0].stat().st_mtime_ns
    again = simulate(tmp_path, vendor="e2v", size="small", pairs=1, biases=0, seed=1, reuse=True)
    assert again.flats[0].stat().st_mtime_ns == stamp
    simulate(
        tmp_path,
        vendor="e2v",
        size="small",
        pairs=1,
        biases=0,
        seed=1,
        reuse=True,
        brighter_fatter=False,
    )
    assert first.flats[0].stat().st_mtime_ns != stamp


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="vendor"):
        SimulationConfig(vendor="sta")
    with pytest.raises(ValueError, match="storage"):
        SimulationConfig(storage="bzip2")


def test_cosmic_ray_events_scale_with_area_and_time():
    """Events arrive at the given rate per cm^2 per second: 1 cm^2 of 10 um pixels."""
    rates = CosmicRayRates()
    for seconds in (2_000.0, 10_000.0):
        image = np.zeros((1000, 1000), np.float32)
        events = add_cosmic_rays(image, np.random.default_rng(int(seconds)), seconds, rates)
        expected = rates.total * seconds
        assert abs(events - expected) < 4 * np.sqrt(expected)


def test_muons_deposit_what_a_thick_sensor_records():
    """A minimum-ionising particle leaves ~70 e-/um (most probable) over its path through
    100 um of silicon: ~7 000 e- straight down, more at an angle; the mean over the
    cos^3 zenith distribution and the Landau tail is ~10 000 e-. Charge is conserved."""
    image = np.zeros((2000, 2000), np.float64)
    muons = CosmicRayRates(muons=1.0, worms=0.0, spots=0.0)
    events = add_cosmic_rays(image, np.random.default_rng(3), 100.0, muons)
    per_event = image.sum() / events
    assert 9_000 < per_event < 12_500
    assert (image > 0).sum() > 4 * events  # tracks and diffusion, not single pixels


def test_cosmic_rays_add_charge_and_nothing_else(tmp_path):
    """On their own random stream: the same sensor without cosmic rays has the same pixels
    except where an event fell, and a long flat has many more hit pixels than a short one."""
    hit = SimulationConfig(size="small", pairs=8, biases=0, seed=4, cosmic_ray_rate=50.0)
    clean = replace(hit, cosmic_rays=False)
    truth = sensor_truth(hit)
    flats = [p for p in exposure_plan(hit, truth) if p.imgtype == "FLAT"]
    hit_pixels = []
    for plan in (flats[0], flats[-3]):  # 0.5 s and 47 s
        delta = render_exposure(hit, truth, plan) - render_exposure(clean, truth, plan)
        assert (delta >= 0).all()
        hit_pixels.append(int((delta > 0).sum()))
    assert 0 < 10 * hit_pixels[0] < hit_pixels[1]


def test_a_mismatched_flat_keeps_the_pixel_noise():
    """A flat 1 % brighter than nominal is the nominal flat plus 1 % more electrons: the
    difference from the nominal sensor's is ~sqrt(0.01 N), not ~sqrt(2 N)."""
    mismatched = SimulationConfig(size="small", pairs=8, biases=0, seed=4, cosmic_rays=False)
    truth = sensor_truth(mismatched)
    plan = [p for p in exposure_plan(mismatched, truth) if p.imgtype == "FLAT"][-3]
    nominal = render_exposure(mismatched, truth, replace(plan, illumination=1.0))
    brighter = render_exposure(mismatched, truth, replace(plan, illumination=1.01))
    lay = mismatched.layout
    image = (slice(None), slice(0, lay.ny), slice(lay.prescan, lay.prescan + lay.nx))
    delta = (brighter - nominal)[image].astype(np.float64)
    electrons = delta * truth["gain"].to_numpy()[:, None, None]
    assert electrons.mean() == pytest.approx(0.01 * plan.signal, rel=0.05)
    assert electrons.std() < 2 * np.sqrt(0.01 * plan.signal)


def test_the_non_linearity_is_the_truths_response_and_nothing_else():
    """On or off, the sensor's other truth and noise are the same: a flat's pixels differ
    by the response's deficit at their signals (on average over an amp, within 0.2 ADU)."""
    linear = SimulationConfig(size="small", pairs=16, biases=0, seed=4, cosmic_rays=False)
    bent = replace(linear, nonlinearity=True)
    truth, bent_truth = sensor_truth(linear), sensor_truth(bent)
    pd.testing.assert_frame_equal(
        truth.drop(columns=list(NONLINEARITY_COLUMNS)),
        bent_truth.drop(columns=list(NONLINEARITY_COLUMNS)),
    )
    assert (truth[list(NONLINEARITY_COLUMNS)] == 0).all().all()
    assert bent_truth.nl_step.between(0.005, 0.02).all()
    assert bent_truth.nl_center.between(0.6, 0.9).all()
    lay = linear.layout
    image = (slice(0, lay.ny), slice(lay.prescan, lay.prescan + lay.nx))
    deepest = 0.0
    flats = [p for p in exposure_plan(linear, truth) if p.imgtype == "FLAT"]
    for plan in [flats[0], *flats[-6:-1]]:  # the faintest, and 0.5 to 1.1 of the full well
        straight = render_exposure(linear, truth, plan).astype(float)
        curved = render_exposure(bent, bent_truth, plan).astype(float)
        for amp in (0, 7, 15):
            row = bent_truth.iloc[amp]
            signal = straight[amp][image] - row.bias_level  # the linear one, with its noise
            expected = response(signal, row, row.full_well_adu) - signal
            found = curved[amp][image] - straight[amp][image]
            below = signal < 0.99 * row.full_well_adu  # clipped at the full well above
            if below.any():  # pixel by pixel, rounding and the slope times the noise differ
                assert abs(np.mean((found - expected)[below])) < 0.2
                deepest = min(deepest, float(np.median(expected[below] / signal[below])))
    assert deepest < -0.004  # the step is there


def test_photodiode_readings_follow_each_flats_light(tmp_path):
    """A file per flat, named by its header's DAYOBS and SEQNUM; its charge (cp_pipe's
    integration) in proportion to the flat's signal, illumination mismatch included."""
    sim = simulate(tmp_path, size="small", pairs=5, biases=1, seed=6, photodiode=True)
    exposures = pd.read_parquet(sim.exposures_path)
    flats = exposures[exposures.imgtype == "FLAT"]
    files = sorted(tmp_path.glob("Photodiode_Readings_*.txt"))
    assert len(files) == len(flats) == 10
    for (_, flat), raw in zip(flats.iterrows(), sim.flats, strict=True):
        info = read_raw(raw).info
        readings = read_photodiode(tmp_path / photodiode_file_name(info.dayobs, info.seqnum))
        charge = integrate(readings, "TRIMMED_SUM")
        expected = flat.signal * flat.illumination * AMPERES_PER_ELECTRON_RATE
        assert charge == pytest.approx(expected, rel=2e-3)


def test_the_planted_rolloff_compresses_charge_above_its_knee(tmp_path):
    """``rolloff=True``: charge below the knee untouched, above it ``K + tau (1 - e^-x/tau)``
    (continuous, slope 1 at the knee, never past ``K + tau``); the truth names the knee in
    ADU; a pair above its amp's knee has a variance far below Poisson's, one well below
    the knee has Poisson's."""
    from gpuptc.simulation.simulate import ROLLOFF_KNEE, ROLLOFF_TAU, _rolled_off

    full_well = 1.5e5
    knee, tau = ROLLOFF_KNEE * full_well, ROLLOFF_TAU * full_well
    charge = np.array([1e3, knee - 1.0, knee, knee + 10.0, knee + tau, knee + 20 * tau])
    out = _rolled_off(charge.astype(np.float32), full_well)
    np.testing.assert_allclose(out[:3], charge[:3].astype(np.float32))
    np.testing.assert_allclose(out[3], knee + tau * (1 - np.exp(-10.0 / tau)), rtol=1e-6)
    assert out[4] == pytest.approx(knee + tau * (1 - np.exp(-1.0)), rel=1e-6)
    assert out[-1] <= knee + tau
    sim = simulate(tmp_path, vendor="e2v", size="small", pairs=2, biases=0, seed=3,
                   rolloff=True, brighter_fatter=False, cosmic_rays=False,
                   min_signal=2e4, max_signal_over_full_well=0.85)  # fmt: skip
    truth = sim.truth.set_index("amp")
    np.testing.assert_allclose(truth.rolloff_adu, ROLLOFF_KNEE * truth.full_well / truth.gain)
    onset = truth.rolloff_onset_adu / truth.rolloff_adu  # the brightest pixels reach it first
    assert onset.between(0.9, 0.999).all()
    import gpuptc

    pairs, _ = gpuptc.measure(gpuptc.ingest([sim.directory]), backend="numpy", cov_size=0)
    pairs = pairs.join(truth[["gain", "rolloff_adu"]], on="amp")
    poisson = pairs["var"] * pairs["gain"] / pairs["mean"]  # 1 for a Poisson flat
    below = pairs["mean"] < 0.5 * pairs["rolloff_adu"]
    above = pairs["mean"] > pairs["rolloff_adu"]  # the amps whose knee the bright pair passed
    assert poisson[below].between(0.9, 1.1).all()  # the faint pair: untouched
    assert above.sum() >= 8 and (poisson[above] < 0.5).all()  # squeezed

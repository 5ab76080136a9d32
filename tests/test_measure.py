"""The batched core against simple per-amp references, the truth, and across backends."""

import numpy as np
import pandas as pd
import pytest

import gpuptc
import reference
from backends import host
from gpuptc.backend import get_backend
from gpuptc.config import get_preset
from gpuptc.measuring.compute import isr_regions
from gpuptc.measuring.isr import run_isr
from gpuptc.measuring.masterbias import make_master_bias
from gpuptc.measuring.sensor import measure
from gpuptc.measuring.stats import pair_statistics
from gpuptc.raws.exposure import read_raw
from gpuptc.schema import COVARIANCE_COLUMNS, PAIR_COLUMNS
from gpuptc.simulation.simulate import simulate

PRESETS = ["cp_pipe", "cp_pipe_lsstcam", "eotest", "seed"]
GAINS = ("rhl_gain", "rhl_gain_corrected", "notebook_gain", "cp_pipe_gain")


@pytest.fixture(scope="module")
def manifest(small_e2v):
    return gpuptc.ingest([small_e2v.directory])


@pytest.mark.parametrize("preset", PRESETS)
def test_matches_simple_reference(small_e2v, manifest, preset):
    pairs, covs = measure(
        manifest,
        preset=preset,
        backend="numpy",
        isr__dtype="float64",
        extract__min_pixels_covariance=100,
        cov_size=3,
    )
    bias = (
        make_master_bias(small_e2v.biases).pixels.astype(np.float64) if preset == "seed" else None
    )
    for pair in (1, 4):
        raws = [read_raw(p) for p in small_e2v.flats[2 * pair : 2 * pair + 2]]
        box = raws[0].geometry.imaging
        datasec = (box.y0, box.y1, box.x0, box.x1)
        for amp in (1, 9, 16):
            images = [
                reference.isr_amp(
                    r.pixels[amp - 1], datasec, preset, None if bias is None else bias[amp - 1]
                )
                for r in raws
            ]
            if preset == "cp_pipe_lsstcam":
                images = [im[20:-20, 20:-20] for im in images]
            ref = reference.pair_amp(
                *images, preset="cp_pipe" if preset.startswith("cp") else preset
            )
            if preset == "cp_pipe_lsstcam":  # the row left out is a masked edge row
                ref["row_mean_variance"] = reference.afw_clip(ref["d"].mean(axis=1))[1]
            row = pairs[(pairs.pair == pair) & (pairs.amp == amp)].iloc[0]
            names = ("mean1", "mean2", "mean", "var", "rhl_gain", "notebook_gain")
            for name in (*names, "row_mean_variance"):
                assert row[name] == pytest.approx(ref[name], rel=1e-9), (name, pair, amp)
            assert row["npix"] == ref["npix"]
            cov = covs[(covs.pair == pair) & (covs.amp == amp)].set_index(["i", "j"])["cov"]
            factor = reference.clip_factor(5.5) if preset.startswith("cp") else 1.0
            d, w = ref["d"], ref["weights"]
            if preset == "cp_pipe_lsstcam":
                pass
            for dx, dy in [(0, 0), (1, 0), (0, 1), (1, 1), (2, 1)]:
                expected = reference.direct_cov(d, w, dx, dy) * (
                    factor if (dx, dy) == (0, 0) else factor**2
                )
                assert cov[(dx, dy)] == pytest.approx(expected, rel=1e-8), (dx, dy)


@pytest.mark.parametrize("preset", PRESETS)
def test_complete_tables_under_every_preset(manifest, preset):
    pairs, covs = measure(
        manifest, preset=preset, backend="numpy", extract__min_pixels_covariance=100
    )
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    assert list(covs.columns) == list(COVARIANCE_COLUMNS)
    assert len(pairs) == 8 * 16
    assert len(covs) == 8 * 16 * 100
    assert (pairs.status == "ok").all()
    assert pairs[["mean", "var", *GAINS, "read_noise_adu"]].notna().all().all()
    assert pairs.used.isna().all()
    assert covs["cov"].notna().all()


def _stack(sensor, pairs):
    raws = [[read_raw(p) for p in sensor.flats[2 * k : 2 * k + 2]] for k in pairs]
    geometry = raws[0][0].geometry
    return np.stack([[r.pixels for r in pair] for pair in raws]), geometry


def _statistics(backend, raw, geometry, preset):
    isr = run_isr(backend.asarray(raw), isr_regions(geometry), preset.isr, backend=backend)
    stats = pair_statistics(
        isr.images, isr.good, isr.read_noise_adu, preset.extract, backend=backend
    )
    names = ("mean", "var", *GAINS, "read_noise_adu", "cov")
    return {k: host(getattr(stats, k)) for k in names}


@pytest.mark.parametrize("preset", [*PRESETS, "cp_pipe binned"])
def test_backends_agree_with_float64_numpy(small_e2v, backend, preset):
    raw, geometry = _stack(small_e2v, [2, 5])
    binned = {"extract__bin_size": 2, "solve__bin_size": 2} if preset.endswith("binned") else {}
    preset = preset.split()[0]
    config = get_preset(preset, extract__min_pixels_covariance=100, cov_size=4, **binned)
    reference64 = _statistics(
        get_backend("numpy"), raw, geometry, config.replace(isr__dtype="float64")
    )
    for dtype, rtol in (("float64", 1e-10), ("float32", 1e-5)):
        got = _statistics(backend, raw, geometry, config.replace(isr__dtype=dtype))
        for key, expected in reference64.items():
            scale = np.nanmax(np.abs(expected))
            np.testing.assert_allclose(
                got[key], expected, rtol=rtol, atol=rtol * scale, err_msg=key
            )


def test_truth_low_and_high_flux(small_e2v, manifest):
    """(var - noise) / mean tends to 1/g at low flux and falls below it with brighter-fatter."""
    pairs, covs = measure(
        manifest, preset="eotest", backend="numpy", extract__min_pixels_covariance=100
    )
    truth = small_e2v.truth.set_index("amp")
    gain = pairs.amp.map(truth["gain"])
    # pixel noise, plus that of a per-row mean over 17 overscan columns
    noise = (pairs.amp.map(truth["read_noise_adu"]) ** 2 + 1 / 12) * (1 + 1 / 17)
    pairs["ratio"] = (pairs["var"] - noise) / pairs["mean"] * gain
    low = pairs[pairs.pair == 0]
    electrons = low["mean"] * gain
    expected = 1 + low.amp.map(truth["a00"]) * electrons  # eq. 16 to first order
    assert (low.ratio - expected).mean() == pytest.approx(0.0, abs=0.012)
    high = pairs[pairs.pair == 5]
    assert high.ratio.mean() < 0.93
    nn = covs[(covs.pair == 5) & (covs.i + covs.j == 1)]
    var = high.set_index("amp")["var"]
    assert (nn.groupby("amp")["cov"].mean() / var).mean() > 0.01


def test_no_brighter_fatter_no_correlation(tmp_path):
    sim = simulate(
        tmp_path, vendor="itl", size="small", pairs=6, biases=0, seed=21, brighter_fatter=False
    )
    pairs, covs = measure(
        gpuptc.ingest([tmp_path]), backend="numpy", extract__min_pixels_covariance=100
    )
    sel = covs[(covs.pair == 4) & (covs.i + covs.j == 1)]
    var = pairs[pairs.pair == 4].set_index("amp")["var"]
    coefficient = sel.groupby("amp")["cov"].mean() / var
    # 64 x 96 pixels: 1 sigma of a correlation coefficient is 1/sqrt(6144) / sqrt(2) per amp
    assert abs(coefficient.mean()) < 4 * 0.0128 / np.sqrt(2) / 4
    ratio = (
        (pairs["var"] - pairs.read_noise_adu**2)
        / pairs["mean"]
        * pairs.amp.map(sim.truth.set_index("amp")["gain"])
    )
    assert ratio[pairs.pair < 5].mean() == pytest.approx(1.0, abs=0.01)


def test_masks_remove_defects_and_empty_amps_give_nan(small_e2v):
    raw, geometry = _stack(small_e2v, [3])
    config = get_preset("seed", use_bias=False, extract__min_pixels_covariance=100)
    numpy = get_backend("numpy")
    clean = pair_statistics(*_isr(raw, geometry, config, None), config.extract, backend=numpy)
    damaged = raw.copy()
    column = geometry.imaging.x0 + 30
    damaged[0, 0, :, :, column] += 5000  # a hot column in one flat
    damaged[0, 1, :, 40:43, geometry.imaging.x0 + 5] += 20000  # a cosmic ray
    defects = np.zeros((16, *geometry.imaging.shape), bool)
    defects[:, :, 30] = True
    defects[:, 40:43, 5] = True
    defects[7] = True  # amp 8 entirely masked
    masked = pair_statistics(
        *_isr(damaged, geometry, config, defects), config.extract, backend=numpy
    )
    unmasked = pair_statistics(
        *_isr(damaged, geometry, config, None), config.extract, backend=numpy
    )
    relative_noise = np.sqrt(2 / clean.npix[0, 0])
    assert abs(masked.var[0, 0] / clean.var[0, 0] - 1) < 3 * relative_noise
    assert unmasked.var[0, 0] / clean.var[0, 0] > 1.5  # the defects matter when not masked
    assert np.isnan(masked.var[0, 7]) and masked.npix[0, 7] == 0


def _isr(raw, geometry, config, defects):
    isr = run_isr(
        raw, isr_regions(geometry), config.isr, defects=defects, backend=get_backend("numpy")
    )
    return isr.images, isr.good, isr.read_noise_adu


def test_fully_masked_amp_has_a_status(small_e2v, manifest):
    amp_level = {"isr__edge_mask": 48, "isr__edge_mask_level": "AMP"}
    pairs, _ = measure(manifest, preset="cp_pipe", backend="numpy", **amp_level)
    assert set(pairs.status) == {"no_good_pixels"}
    assert pairs["var"].isna().all()


def test_read_noise_from_overscan(small_e2v, manifest):
    pairs, _ = measure(manifest, preset="eotest", backend="numpy", cov_size=0)
    truth = small_e2v.truth.set_index("amp")["read_noise_adu"]
    measured = pairs.groupby("amp")["read_noise_adu"].mean()
    # per-row mean over 17 columns removes 1/17 of the variance; rounding adds 1/12 ADU^2
    expected = np.sqrt(truth**2 * (1 - 1 / 17) + 1 / 12)
    np.testing.assert_allclose(measured, expected, rtol=0.03)


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("nope")
    with pytest.raises(ValueError, match="unknown configuration field"):
        get_preset("cp_pipe", colour="blue")


def test_rejected_pair_listed(small_e2v, manifest, tmp_path):
    broken = tmp_path / "broken.fits"
    broken.write_bytes(small_e2v.flats[2].read_bytes()[:50000])
    edited = manifest.copy()
    edited.loc[edited.path == str(small_e2v.flats[2]), "path"] = str(broken)
    measured = measure(edited, backend="numpy", cov_size=0)
    pairs, rejected = measured.pairs, measured.rejected
    assert list(rejected.pair) == [1] and "broken.fits" in rejected.path.iloc[0]
    assert 1 not in set(pairs.pair)
    assert isinstance(rejected, pd.DataFrame)


@pytest.mark.parametrize("correction", ["FULL", "SIMPLE", "NONE"])
def test_read_noise_corrections_of_the_per_pair_gain(manifest, correction):
    """rhl_gain_corrected from the robust ratio c = 1 / rhl_gain at the first flat's level,
    and cp_pipe_gain (always FULL) from the unscaled 1 / notebook_gain at the pair's mean,
    by cp_pipe's formulas written out in tests/reference.py."""
    pairs, _ = measure(manifest, backend="numpy", cov_size=0, extract__gain_correction=correction)
    c = 1 / pairs["rhl_gain"].to_numpy()
    mu, sigma = pairs["mean1"].to_numpy(), pairs["read_noise_adu"].to_numpy()
    expected = {
        "FULL": reference.gain_full(c, mu, sigma),
        "SIMPLE": reference.gain_simple(c, mu, sigma),
        "NONE": 1 / c,
    }[correction]
    np.testing.assert_allclose(pairs["rhl_gain_corrected"], expected, rtol=1e-12)
    unscaled = 1 / pairs["notebook_gain"].to_numpy()
    cp_pipe = reference.gain_full(unscaled, pairs["mean"].to_numpy(), sigma)
    np.testing.assert_allclose(pairs["cp_pipe_gain"], cp_pipe, rtol=1e-12)
    if correction != "NONE":  # read noise matters at low flux: the correction raises the gain
        low = pairs[pairs.pair == 0]
        assert (low["rhl_gain_corrected"] > low["rhl_gain"]).all()


def test_robust_per_pair_gain_survives_cosmic_rays_and_a_flux_mismatch(small_e2v):
    """The notebook's unscaled, unclipped per-pixel gain fails on a pair with cosmic rays
    and a 1 % level difference between its flats; the robust one does not."""
    raw, geometry = _stack(small_e2v, [4])
    box = geometry.imaging
    damaged = raw.astype(np.float64).copy()
    rng = np.random.default_rng(8)
    truth = small_e2v.truth
    for amp in range(16):  # 1 % more light in the second flat: 1 % more Poisson electrons
        gain, image = truth.gain[amp], damaged[0, 1, amp][box.slices]
        electrons = (image.mean() - truth.bias_level[amp]) * gain
        image += rng.poisson(0.01 * electrons, image.shape) / gain
    for amp in range(16):
        rows = rng.integers(box.y0, box.y1 - 2, 20)
        cols = rng.integers(box.x0, box.x1 - 2, 20)
        for flat, (y, x) in zip(rng.integers(0, 2, 20), zip(rows, cols, strict=True), strict=True):
            damaged[0, flat, amp, y : y + 2, x : x + 2] += 15000.0  # 2 x 2 deposits
    config = get_preset("cp_pipe", cov_size=0, isr__dtype="float64")
    numpy = get_backend("numpy")
    clean = pair_statistics(*_isr(raw, geometry, config, None), config.extract, backend=numpy)
    hit = pair_statistics(*_isr(damaged, geometry, config, None), config.extract, backend=numpy)
    robust = hit.rhl_gain[0] / clean.rhl_gain[0] - 1
    notebook = hit.notebook_gain[0] / clean.notebook_gain[0] - 1
    # measured: the robust gain moves by its noise from the added electrons (0.17 % RMS
    # for 6 144 pixels; at most 0.55 % over the amps), the notebook's by tens of %
    assert np.abs(robust).max() < 0.01
    assert np.abs(notebook).min() > 0.1


def test_an_unreadable_pair_mid_batch_leaves_the_others_unchanged(small_e2v, copy_of):
    """Pair 1 of a batch of 4 cannot be used; pairs 2 and 3 move up in the batch buffer
    and must come out exactly as in a run where pair 1 is fine."""
    import fitsio

    directory = copy_of(small_e2v)
    victim = directory / small_e2v.flats[3].name  # second flat of pair 1
    with fitsio.FITS(str(victim), "rw") as f:
        for i in range(1, 17):
            f[i].write_key("DATASEC", "[11:70,1:90]")
    options = {"backend": "numpy", "batch_pairs": 4, "cov_size": 3}
    damaged_run = measure(gpuptc.ingest([directory]), **options)
    damaged, damaged_covs = damaged_run
    clean, clean_covs = measure(gpuptc.ingest([small_e2v.directory]), **options)
    assert sorted(damaged.pair.unique()) == [0, 2, 3, 4, 5, 6, 7]
    assert list(damaged_run.rejected.pair) == [1]
    kept = clean[clean.pair != 1].reset_index(drop=True)
    columns = [c for c in PAIR_COLUMNS if c not in ("file1", "file2")]
    pd.testing.assert_frame_equal(damaged[columns].reset_index(drop=True), kept[columns])
    pd.testing.assert_frame_equal(
        damaged_covs.reset_index(drop=True),
        clean_covs[clean_covs.pair != 1].reset_index(drop=True),
    )


def test_file1_is_the_first_flat_of_each_pair(manifest):
    pairs, _ = measure(manifest, backend="numpy", cov_size=0)
    member = manifest.set_index("path")["member"]
    assert (pairs.file1.map(member) == 1).all() and (pairs.file2.map(member) == 2).all()
    mjd = manifest.set_index("path")["mjd"]
    assert (pairs.file1.map(mjd) < pairs.file2.map(mjd)).all()
    assert (pairs["mjd"] == pairs.file1.map(mjd)).all()


def test_master_bias_given_three_ways(small_e2v, manifest, tmp_path):
    """The seed preset subtracts a master bias: built from the manifest by default, or given
    as a MasterBias, as a file, or as a mapping sensor -> MasterBias; all the same numbers.
    Without bias frames and without a given bias, none is subtracted (and the means rise)."""
    from gpuptc.measuring.masterbias import write_master_bias

    options = {"preset": "seed", "backend": "numpy", "cov_size": 0}
    default, _ = measure(manifest, **options)
    master = make_master_bias(small_e2v.biases)
    path = write_master_bias(tmp_path / "bias.fits", master)
    flats_only = manifest[manifest.status == "paired"]
    for given in (master, str(path), {small_e2v.sensor: master}):
        pairs, _ = measure(flats_only, bias=given, **options)
        np.testing.assert_allclose(pairs["mean"], default["mean"], rtol=1e-6)
    unbiased, _ = measure(flats_only, **options)
    rows, cols = master.geometry.imaging.slices
    level = master.pixels[:, rows, cols].astype(np.float64).mean()
    assert (unbiased["mean"] - default["mean"]).mean() == pytest.approx(level, rel=1e-3)


def test_eotest_variance_leaves_out_what_the_mad_cut_removes(small_e2v):
    """A cosmic ray in one flat: EOTEST's variance is that of the pixels its MAD cut keeps
    (the reference's), and far from the variance of every pixel."""
    raw, geometry = _stack(small_e2v, [3])
    box = geometry.imaging
    damaged = raw.copy()
    damaged[0, 0, 4, 40:42, box.x0 + 5 : box.x0 + 7] += 30000
    config = get_preset("eotest", cov_size=0, isr__dtype="float64")
    stats = pair_statistics(
        *_isr(damaged, geometry, config, None), config.extract, backend=get_backend("numpy")
    )
    datasec = (box.y0, box.y1, box.x0, box.x1)
    images = [reference.isr_amp(damaged[0, k, 4], datasec, "eotest") for k in range(2)]
    ref = reference.pair_amp(*images, preset="eotest")
    assert stats.var[0, 4] == pytest.approx(ref["var"], rel=1e-9)
    assert ref["npix"] <= images[0].size - 4
    assert np.var(ref["d"]) / 2 > 1.5 * ref["var"]


def test_a_variance_that_disagrees_with_cov00_is_named(small_e2v, manifest, caplog):
    """cp_pipe's thresholdDiffAfwVarVsCov00: one warning per sensor naming how many
    pair-amps differ by 1 % or more and the worst; none on the simulator's own pairs."""
    import logging

    from gpuptc.measuring.sensor import SensorMeasurement, _warn_variance_disagreement

    pairs, covs = measure(manifest, backend="numpy", extract__min_pixels_covariance=100)
    caplog.set_level(logging.WARNING)
    measured = SensorMeasurement(pairs, covs, pd.DataFrame())
    _warn_variance_disagreement(small_e2v.sensor, measured, 1.0)
    assert not caplog.records  # the clipped variance is Cov[0,0] of the same pixels
    changed = pairs.copy()
    hit = (changed.pair == 2) & (changed.amp.isin([3, 5]))
    changed.loc[hit, "var"] *= [1.02, 1.05]
    _warn_variance_disagreement(
        small_e2v.sensor, SensorMeasurement(changed, covs, pd.DataFrame()), 1.0
    )
    (record,) = caplog.records
    assert "on 2 pair-amps" in record.getMessage() and "pair 2 amp 5" in record.getMessage()


def test_binned_differences_as_cp_pipe_bins_them(small_e2v, manifest):
    """``extract.bin_size`` (cp_pipe's binSize): the flux-matched difference binned 2 x 2
    (each bin the mean of its pixels, the odd last column dropped) before its clipped
    variance, covariances and row-mean variance, against the reference's unbinned
    difference binned by hand; the means and per-pair gains are the unbinned ones."""
    options = {"backend": "numpy", "isr__dtype": "float64", "cov_size": 3}
    options |= {"extract__min_pixels_covariance": 100}
    plain, _ = measure(manifest, preset="cp_pipe", **options)
    binned = {"extract__bin_size": 2, "solve__bin_size": 2}  # cp_pipe's contract: both
    pairs, covs = measure(manifest, preset="cp_pipe", **binned, **options)
    pair, amp = 4, 9
    raws = [read_raw(p) for p in small_e2v.flats[2 * pair : 2 * pair + 2]]
    box = raws[0].geometry.imaging
    datasec = (box.y0, box.y1, box.x0, box.x1)
    images = [reference.isr_amp(r.pixels[amp - 1], datasec, "cp_pipe") for r in raws]
    d = reference.pair_amp(*images, preset="cp_pipe")["d"]
    ny, nx = d.shape[0] // 2, d.shape[1] // 2
    binned = d[: 2 * ny, : 2 * nx].reshape(ny, 2, nx, 2).mean(axis=(1, 3))
    d_mean, d_var, kept = reference.afw_clip(binned.ravel())
    factor = reference.clip_factor(5.5)
    row = pairs[(pairs.pair == pair) & (pairs.amp == amp)].iloc[0]
    unbinned = plain[(plain.pair == pair) & (plain.amp == amp)].iloc[0]
    assert row["var"] == pytest.approx(0.5 * d_var * factor, rel=1e-9)
    assert row["npix"] == kept
    assert row["row_mean_variance"] == pytest.approx(
        reference.afw_clip(binned[:-1].mean(axis=1))[1], rel=1e-9
    )
    for name in ("mean1", "mean2", "mean", "rhl_gain"):
        assert row[name] == unbinned[name]
    weights = np.abs(binned) <= d_mean + 5.5 * np.sqrt(d_var)
    cov = covs[(covs.pair == pair) & (covs.amp == amp)].set_index(["i", "j"])["cov"]
    for dx, dy in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        expected = reference.direct_cov(binned, weights, dx, dy) * (
            factor if (dx, dy) == (0, 0) else factor**2
        )
        assert cov[(dx, dy)] == pytest.approx(expected, rel=1e-8), (dx, dy)
    with pytest.raises(ValueError, match="bin_size 2: 1, or more with the cp_pipe method"):
        get_preset("eotest", extract__bin_size=2)

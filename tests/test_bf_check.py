"""The brighter-fatter check (``--bf-check``): kernels applied in the ISR, each amp by its
own, as ``tests/reference_bfk.py``'s straightforward reading of ip_isr's correction applies
them; the kernels each mode chooses; the slopes it reports against SciPy's regression."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from backends import host
from gpuptc.backend import get_backend
from gpuptc.config import IsrConfig, get_preset
from gpuptc.fitting.bf_check import check_met, checked, correction_kernels
from gpuptc.inputs.manifest import ingest
from gpuptc.measuring.compute import isr_regions
from gpuptc.measuring.isr import BfCorrection, run_isr
from gpuptc.measuring.sensor import measure_sensor, sensor_inputs
from gpuptc.measuring.stats import pair_statistics
from gpuptc.raws.geometry import SensorGeometry, amp_geometry
from reference_bfk import reference_correction


def _kernels(amps: int, size: int = 7, seed: int = 5) -> np.ndarray:
    """Kernels mirrored from random quadrants: symmetric under flips, not under transposes."""
    rng = np.random.default_rng(seed)
    half = size // 2
    out = []
    for _ in range(amps):
        quadrant = -rng.uniform(0.0, 2e-7, (half + 1, half + 1))
        quadrant[0, 0] = -2e-6
        rows = np.concatenate([quadrant[:0:-1], quadrant])
        out.append(np.concatenate([rows[:, :0:-1], rows], axis=1))
    return np.stack(out)


def test_the_isr_corrects_each_amp_by_its_own_kernel_on_every_backend(backend):
    """Each flat of a stack of pairs, each amp by its own kernel and gain, as ip_isr's
    correction of that image alone (kernels that a transpose would change)."""
    amps = tuple(amp_geometry(a, f"S{a}", 60, 80, "[3:48,1:70]") for a in (1, 2, 3))
    geometry = SensorGeometry(amps, "e2v")
    rng = np.random.default_rng(8)
    level = np.linspace(2e4, 6e4, 60)  # a gradient to correct
    raw = 1000.0 + level + rng.normal(0.0, 150.0, (2, 2, 3, 80, 60))
    kernels, gains = _kernels(3), np.array([0.8, 1.3, 1.6])
    assert np.abs(kernels - np.swapaxes(kernels, -1, -2)).max() > 1e-8
    config = IsrConfig(parallel_overscan="NONE", dtype="float64")
    regions = isr_regions(geometry)
    plain = run_isr(raw, regions, config, backend=get_backend("numpy")).images
    on = BfCorrection(*(backend.asarray(a) for a in (kernels, gains)))
    corrected = host(
        run_isr(backend.asarray(raw), regions, config, brighter_fatter=on, backend=backend).images
    )
    for index in np.ndindex(2, 2, 3):
        expected, _ = reference_correction(plain[index], kernels[index[-1]], gains[index[-1]])
        np.testing.assert_allclose(corrected[index], expected, rtol=1e-10, err_msg=str(index))
        assert np.abs(corrected[index] - plain[index]).max() > 0.5  # it moved


def test_measuring_corrects_only_the_amps_given(small_e2v):
    """``measure_sensor`` with kernels for two amps (the others' pixels left alone, their
    numbers unchanged, on amps measured in threads): the two amps' per-pair gains are those
    of the reference correction of each flat, measured by the pair statistics."""
    preset = get_preset("cp_pipe", isr__use_bias=False, isr__dtype="float64")
    manifest = ingest([small_e2v.directory])
    inputs = sensor_inputs(manifest, small_e2v.sensor, preset, None)
    pairs = inputs.pairs[-2:]  # the brightest
    numpy = get_backend("numpy")
    plain = measure_sensor(small_e2v.sensor, pairs, preset, numpy)
    names = plain.pairs.drop_duplicates("amp").set_index("amp")["segment"]
    kernels = _kernels(2, seed=9)
    chosen = {names[3]: (kernels[0], 0.9), names[12]: (kernels[1], 1.4)}
    corrected = measure_sensor(small_e2v.sensor, pairs, preset, numpy, bf_kernels=chosen)
    before = plain.pairs.set_index(["pair", "amp"])["rhl_gain"]
    after = corrected.pairs.set_index(["pair", "amp"])["rhl_gain"]
    others = [a for a in names.index if a not in (3, 12)]
    pd.testing.assert_series_equal(after.loc[:, others], before.loc[:, others])
    for amp, (kernel, gain) in ((3, chosen[names[3]]), (12, chosen[names[12]])):
        for pair in pairs:
            expected = _reference_gain(pair, amp, kernel, gain, preset)
            assert after[(pair.pair, amp)] == pytest.approx(expected, rel=1e-9)
            assert after[(pair.pair, amp)] != pytest.approx(before[(pair.pair, amp)], rel=1e-6)


def _reference_gain(pair, amp: int, kernel: np.ndarray, gain: float, preset) -> float:
    """One pair's per-pair gain of one amp, each flat corrected by the reference."""
    from gpuptc.raws.exposure import read_raw

    numpy = get_backend("numpy")
    raws = [read_raw(path) for path in (pair.file1, pair.file2)]
    geometry = raws[0].geometry
    k = [a.amp for a in geometry.amps].index(amp)
    stack = np.stack([r.pixels for r in raws])[None]  # (1, 2, amps, ny, nx)
    isr = run_isr(stack, isr_regions(geometry), preset.isr, backend=numpy)
    images = isr.images.copy()
    for flat in range(2):
        images[0, flat, k], _ = reference_correction(images[0, flat, k], kernel, gain)
    statistics = pair_statistics(
        images, isr.good, isr.read_noise_adu, preset.extract, backend=numpy
    )
    return float(statistics.rhl_gain[0, k])


def _table(kernels: np.ndarray, valid, status=None, detector=None) -> pd.DataFrame:
    amps = len(kernels)
    size = kernels.shape[-1]
    table = pd.DataFrame(
        {
            "amp": np.arange(1, amps + 1),
            "segment": [f"C1{k}" for k in range(amps)],
            "status": status or ["ok"] * amps,
            "valid": valid,
            "size": size,
            "gain": np.linspace(1.0, 1.5, amps),
            "kernel": [k.ravel() for k in kernels],
            "check_kernel": "",
        }
    )
    if detector is not None:
        row = {"amp": 0, "segment": "DETECTOR", "status": "ok", "valid": True, "size": size}
        row |= {"gain": np.nan, "kernel": detector.ravel(), "check_kernel": ""}
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    return table


def test_each_mode_chooses_the_kernels_rubins_isr_would():
    """``detector``: the mean of the valid amps' kernels, an outlier clipped (ip_isr's
    5-sigma clipped mean), or the dataset's own detector kernel; ``amp``: each solved amp's
    own, valid or not; both transposed to the images' axes, each amp with its gain."""
    factors = np.array([0.99, 0.995, 1.0, 1.005, 1.01, 50.0, 3.0, 2.0])  # amp 5 an outlier
    kernels = _kernels(1)[0] * factors[:, None, None]
    valid = [True] * 6 + [False, True]
    status = ["ok"] * 7 + ["no_pairs"]
    table = _table(kernels, valid, status)
    chosen = correction_kernels(table, "detector")
    inliers = [0, 1, 2, 3, 4]  # valid, solved, not the outlier
    mean = kernels[inliers].mean(axis=0)
    assert sorted(chosen) == [f"C1{k}" for k in range(7)]  # every solved amp
    for k in range(7):
        np.testing.assert_allclose(chosen[f"C1{k}"][0], mean.T, rtol=1e-12)
        assert chosen[f"C1{k}"][1] == table.gain[k]
    own = correction_kernels(table, "amp")
    assert sorted(own) == [f"C1{k}" for k in range(7)]
    np.testing.assert_array_equal(own["C16"][0], kernels[6].T)  # not valid, still its own
    detector = _kernels(1, seed=2)[0]
    given = correction_kernels(_table(kernels, valid, status, detector), "detector")
    np.testing.assert_array_equal(given["C10"][0], detector.T)
    assert correction_kernels(_table(kernels, [False] * 8), "detector") == {}
    with pytest.raises(ValueError, match="unknown brighter-fatter check 'ccd'"):
        correction_kernels(table, "ccd")


def test_the_check_reports_the_slope_over_the_pairs_the_ptc_kept():
    """The corrected slope is SciPy's regression of the gains measured again over their
    median, against the means, over the pairs used before (a wild unused pair left out);
    an amp not corrected says ``none``; met as the thresholds say."""
    rng = np.random.default_rng(3)
    means = np.linspace(1e4, 8e4, 9)
    rows_before, rows_after = [], []
    for amp in (1, 2):
        for pair, mean in enumerate(means):
            used = pair != 4
            rows_before.append({"amp": amp, "pair": pair, "used": used})
            gain = 1.2 * (1 + 2e-7 * mean) + rng.normal(0, 1e-3)
            if not used:
                gain = 5.0
            rows_after.append({"amp": amp, "pair": pair, "mean": mean, "rhl_gain": gain})
    before, after = pd.DataFrame(rows_before), pd.DataFrame(rows_after)
    table = _table(_kernels(2), [True, True]).assign(gain_slope=[3e-6, 3e-6])
    corrections = correction_kernels(table.iloc[:1], "amp")
    result = checked(table, before, after, corrections, "amp")
    assert result.check_kernel.tolist() == ["amp", "none"]
    mine = after[(after.amp == 1) & (after.pair != 4)]
    fit = stats.linregress(mine["mean"], mine["rhl_gain"] / np.median(mine["rhl_gain"]))
    assert result.gain_slope_corrected[0] == pytest.approx(fit.slope, rel=1e-9)
    assert result.gain_slope_corrected_err[0] == pytest.approx(fit.stderr, rel=1e-9)
    assert np.isnan(result.gain_slope_corrected[1])
    met = check_met(result)
    reduction = 1 - fit.slope / 3e-6
    assert met[0] == bool(reduction >= 0.8 or abs(fit.slope / fit.stderr) <= 2.0)
    assert met[1] is pd.NA


def test_the_sensor_pages_show_the_check(reported_run):
    """Each sensor's page of the shared run (``--bf-check amp``): the check's section, its
    sentence counting the amps that meet it as the kernels' table says, a row per amp."""
    from gpuptc.schema import sensor_page_name

    _, out = reported_run
    kernels = pd.read_parquet(out / "bfk.parquet")
    for sensor, mine in kernels.groupby("sensor"):
        page = (out / "report" / sensor_page_name(sensor)).read_text()
        assert 'id="bf-check"' in page
        section = page.split('id="bf-check"')[1].split("<h3>")[0]
        corrected = mine[mine.check_kernel == "amp"]
        removed = 1 - corrected.gain_slope_corrected / corrected.gain_slope
        within = (corrected.gain_slope_corrected / corrected.gain_slope_corrected_err).abs()
        met = int(((removed >= 0.8) | (within <= 2.0)).sum())
        assert f"met on {met} of {len(mine)} amps" in section
        assert "corrected by its own kernel" in section
        assert section.count("<tr") == len(mine) + 1  # the header and a row per amp

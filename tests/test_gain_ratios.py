"""The gain ratio adjustment: gains that make a flat seamless across amp boundaries.

The first cases are cp_pipe's ``tests/test_ptcAdjustGainRatios.py``
(``PtcAdjustGainRatiosTestCase``: small and large gradients, a bad amp, an odd amp not
known as bad, the task over 40 flux levels), made on gpuptc's own geometry: an e2v
sensor (small amplifiers, binned by 2 with no boundary as there) at the place of that
test's detector in the focal plane (LSSTCam detector 20, R03 S02), the flat a radial
Akima spline from 1 at the sensor's smallest radius to ``outer`` at its largest (10
nodes), times that test's planar gradient, divided by gains drawn from N(1.5, 0.05), two of
them biased by +-0.2 % in the PTC. cp_pipe asserts that the flat, put in electrons by the
adjusted gains, is smoother than by the PTC's; here also that the adjustment is the
planted bias (no noise: to 1e-4). The last is a truth test on the simulator.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy.interpolate import Akima1DInterpolator

from gpuptc.config import GainRatiosConfig
from gpuptc.fitting.gain_ratios import adjust_gain_ratios, flat_gain_ratios, reference_amp
from gpuptc.measuring.binning import BinSpec, bin_amps, bin_centres
from gpuptc.raws.camera import focal_plane_mm, sensor_centre_mm
from gpuptc.raws.geometry import ccd_coordinates, ccd_shape
from gpuptc.raws.layout import small_layout
from gpuptc.schema import BinnedFlats

AMPS = small_layout("e2v", nx=64, ny=48).sensor_geometry().amps
SHAPE = ccd_shape(AMPS)
CENTRE = sensor_centre_mm("R03", "S02")
SPEC = BinSpec(2, 0)
"""cp_pipe's test bins by 2 and keeps the amps' edges."""
BIASED = {0: 1.002, 4: 0.998}
"""The PTC's gains of amps 0 and 4 are off by these factors (cp_pipe's test)."""


def _gains() -> np.ndarray:
    return np.random.RandomState(seed=12345).normal(1.5, 0.05, len(AMPS))


def _gradients(outer: float) -> tuple[np.ndarray, np.ndarray]:
    """``(amps, ny, nx)`` the radial and the planar gradients at each amp's pixels."""
    radial, planar = [], []
    ny, nx = AMPS[0].imaging.shape
    for amp in AMPS:
        x, y = ccd_coordinates(amp, np.arange(ny, dtype=float), np.arange(nx, dtype=float))
        x, y = np.meshgrid(x, y)
        fx, fy = focal_plane_mm(x, y, SHAPE, CENTRE)
        radial.append(np.hypot(fx, fy))
        planar.append(1 - 5e-5 * (x - SHAPE[1] / 2) + 1e-5 * (y - SHAPE[0] / 2))
    radius = np.stack(radial)
    nodes = np.linspace(radius.min(), radius.max(), 10)
    spline = Akima1DInterpolator(nodes, np.linspace(1.0, outer, 10), method="akima")
    return spline(radius), np.stack(planar)


def _flat(level: float, outer: float, odd: tuple[int, ...] = ()) -> np.ndarray:
    """The flat in ADU: gradients over the true gains; an odd amp at a tenth."""
    radial, planar = _gradients(outer)
    flat = level * radial * planar / _gains()[:, None, None]
    for amp in odd:
        flat[amp] *= 0.1
    return flat


def _ptc_gains(bad: tuple[int, ...] = ()) -> np.ndarray:
    gains = _gains()
    for amp, factor in BIASED.items():
        gains[amp] *= factor
    gains[list(bad)] = np.nan
    return gains


def _binned(flats: list[np.ndarray]) -> BinnedFlats:
    stack = np.stack(flats)
    values = bin_amps(stack, np.ones(stack.shape, bool), SPEC, np).astype(float)
    x, y = bin_centres(AMPS, SPEC)
    return BinnedFlats(np.arange(len(flats)), np.array([a.amp for a in AMPS]), values, x, y, SHAPE)


def _focal_plane() -> tuple[np.ndarray, np.ndarray]:
    x, y = bin_centres(AMPS, SPEC)
    return focal_plane_mm(x, y, SHAPE, CENTRE)


def _config(**changes) -> GainRatiosConfig:
    """cp_pipe's test settings: bins of 2, no boundary, 3 radial nodes."""
    return GainRatiosConfig(adjust=True, bin_factor=2, amp_boundary=0, radial_nodes=3, **changes)


def _spread(flat: np.ndarray, gains: np.ndarray, outer: float) -> float:
    """The scatter of a flat put in electrons by ``gains``, gradients divided out."""
    radial, planar = _gradients(outer)
    return float(np.nanstd(flat * gains[:, None, None] / radial / planar))


REFERENCE = 2
"""cp_pipe's tests of one flat hold amp 2 fixed (``fixed_amp_num``)."""


def _ratios(flat: np.ndarray, gains: np.ndarray, **changes) -> np.ndarray:
    """One flat's amp ratios to amp 2, as cp_pipe's ``_compute_gain_ratios`` of its tests."""
    binned = _binned([flat])
    electrons = binned.values[0] * gains[:, None, None]
    low, high = np.nanpercentile(electrons, [5.0, 95.0])
    keep = np.isfinite(electrons) & (electrons >= 0.8 * low) & (electrons <= 1.2 * high)
    amp = np.broadcast_to(np.arange(len(AMPS))[:, None, None], electrons.shape)
    radius = np.hypot(*_focal_plane())
    return flat_gain_ratios(
        binned.x[keep], binned.y[keep], amp[keep], electrons[keep], radius[keep],
        len(AMPS), REFERENCE, SHAPE, _config(**changes),
    )  # fmt: skip


def _adjust(flats, gains, noise=None, turnoff=None, **changes):
    n = len(AMPS)
    noise = np.full(n, 10.0) if noise is None else noise
    turnoff = np.full(n, 50000.0) if turnoff is None else turnoff
    means = np.array([np.nanmean(f) for f in flats])
    binned = _binned(flats)
    return adjust_gain_ratios(
        binned, gains, noise, turnoff, means, _config(**changes), _focal_plane()
    )


def _planted(reference: int, bad: tuple[int, ...] = ()) -> np.ndarray:
    """The ratios that undo the planted biases, relative to the reference amp."""
    factors = np.ones(len(AMPS))
    for amp, factor in BIASED.items():
        factors[amp] = factor
    factors /= factors[reference]
    factors[list(bad)] = 1.0
    return factors


@pytest.mark.parametrize("outer", [0.98, 0.6], ids=["small_gradient", "large_gradient"])
def test_gradients_with_biased_gains(outer: float, caplog: pytest.LogCaptureFixture) -> None:
    """cp_pipe's test_compute_gain_ratios_small_gradient and _large_gradient."""
    flat = _flat(10000.0, outer)
    gains = _ptc_gains()
    with caplog.at_level(logging.WARNING):
        ratios = _ratios(flat, gains)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert _spread(flat, gains / ratios, outer) < _spread(flat, gains, outer)
    np.testing.assert_allclose(ratios, _planted(REFERENCE), atol=1e-4)


def test_known_bad_amp() -> None:
    """cp_pipe's test_compute_gain_ratios_bad_amp: amp 1 dim and marked bad (no gain)."""
    flat = _flat(10000.0, 0.6, odd=(1,))
    gains = _ptc_gains(bad=(1,))
    ratios = _ratios(flat, gains)
    assert _spread(flat, gains / ratios, 0.6) < _spread(flat, gains, 0.6)
    np.testing.assert_allclose(ratios, _planted(REFERENCE, bad=(1,)), atol=1e-4)


def test_odd_amp_not_known_bad(caplog: pytest.LogCaptureFixture) -> None:
    """cp_pipe's test_compute_gain_ratios_weird_amp: amp 1 at a tenth, its gain kept."""
    flat = _flat(10000.0, 0.6, odd=(1,))
    gains = _ptc_gains()
    with caplog.at_level(logging.WARNING):
        ratios = _ratios(flat, gains, max_fractional_gain_ratio=0.05)
    assert any("left out of the gain ratios" in r.getMessage() for r in caplog.records)
    assert np.all(np.abs(ratios - 1.0) < 0.05)
    assert ratios[1] == 1.0
    masked = flat.copy()
    masked[1] = np.nan  # the odd amp's own step is not what the adjustment can remove
    assert _spread(masked, gains / ratios, 0.6) < _spread(masked, gains, 0.6)
    good = np.arange(len(AMPS)) != 1
    np.testing.assert_allclose(ratios[good], _planted(REFERENCE)[good], atol=1e-4)


def test_over_flux_levels_with_a_noisy_and_a_low_turnoff_amp() -> None:
    """cp_pipe's test_task_run: 40 levels from 500 to 25 000 ADU, 10 drawn."""
    levels = np.linspace(500.0, 25000.0, 40)
    flats = [_flat(level, 0.6) for level in levels]
    gains = _ptc_gains()
    noise, turnoff = np.full(len(AMPS), 10.0), np.full(len(AMPS), 50000.0)
    noise[-1] = 15.0  # too noisy to be the reference
    turnoff[-2] = 10000.0  # turns off too early to be the reference
    result = _adjust(flats, gains, noise, turnoff, n_flat=10)
    config = _config()
    assert len(result.per_flat) == 10
    assert result.per_flat["mean_adu"].min() > config.min_adu
    assert result.per_flat["mean_adu"].max() < config.max_adu
    assert result.reference not in (len(AMPS) - 1, len(AMPS) - 2)
    ratios = result.per_flat.filter(like="ratio_").to_numpy()
    np.testing.assert_allclose(ratios, np.broadcast_to(ratios[0], ratios.shape), atol=1e-6)
    np.testing.assert_allclose(result.adjustment, ratios[0] / result.median_correction, rtol=1e-6)
    adjusted = gains / result.adjustment
    assert _spread(flats[0], adjusted, 0.6) < _spread(flats[0], gains, 0.6)


def test_reference_amp_choice() -> None:
    """cp_pipe's _choose_reference_amplifier: quiet, high turnoff, the median gain."""
    gains = np.array([1.0, 1.1, 1.2, 1.3, 1.4])
    noise = np.array([5.0, 5.0, 5.0, 20.0, 5.0])
    turnoff = np.array([9e4, 1e4, 9e4, 9e4, 9e4])
    # amp 3 is noisy, amp 1 below the 25th percentile of turnoffs: of 0, 2, 4 the middle
    assert reference_amp(gains, noise, turnoff, 12.0, 25.0) == 2
    assert reference_amp(gains[:1], noise[:1], turnoff[:1], 12.0, 25.0) == -1


def test_seamless_flats_recover_planted_gains(tmp_path) -> None:
    """Truth: a medium sensor under a CCD-wide gradient, run with the adjustment on.

    Medium, not small: the adjustment works on bins 20 pixels in from each amp's edges,
    and small amps (64 x 96) keep only 21 bins each. The PTC's gains are off from the
    truth by several tenths of a per cent; adjusted, their ratios are within 0.1 %.
    """
    import gpuptc
    from gpuptc.simulation.simulate import simulate

    sim = simulate(
        tmp_path / "raw", size="medium", pairs=7, illumination="ccd", seed=1,
        max_signal_over_full_well=0.2, biases=0,
    )  # fmt: skip
    gpuptc.run(
        tmp_path / "raw", tmp_path / "out", preset="cp_pipe", models=["expapprox"],
        report=False, gain_ratios__adjust=True,
    )  # fmt: skip
    ptc = pd.read_parquet(tmp_path / "out" / "ptc.parquet")
    fitted = ptc[ptc["model"] == "expapprox"].set_index("amp")
    truth = sim.truth.set_index("amp")["gain"]

    def spread(gains: pd.Series) -> float:
        ratio = gains / truth
        return float((ratio / ratio.median() - 1).abs().max())

    assert spread(fitted["gain"]) < 1e-3
    assert spread(fitted["gain_unadjusted"]) > 3 * spread(fitted["gain"])
    ratios = pd.read_parquet(tmp_path / "out" / "gain_ratios.parquet")
    assert ratios["reference"].sum() == ratios["pair"].nunique()
    assert ratios["mean_adu"].between(1000, 20000).all()

"""Realistic raw flat pairs and biases with known truth: gpuptc's embedded default data.

Each amplifier of a simulated sensor has a gain, read noise, brighter-fatter strength
``a00`` (Astier's sign, negative), full well and bias level drawn from a fixed seed.
Every exposure goes through:

1. the expected signal in electrons: a flux ladder times a fixed illumination pattern
   (smooth vignetting plus 0.5 % pixel response non-uniformity) times a small
   per-exposure illumination offset, so the two flats of a pair differ slightly;
2. Poisson electrons;
3. brighter-fatter charge sharing: every pixel hands a fraction of its charge to its
   four neighbours (more along columns than rows). The kernel sums to one, so charge is
   conserved, and its weights are solved for at each signal level so that the pixel
   variance is exactly Astier et al. (2019) eq. 16, ``V(N) = (exp(2 a00 N) - 1)/(2 a00)``
   electrons^2: the truth ``a00`` is exact for the EXPAPPROXIMATION model;
4. a few hot columns, cosmic rays at a laboratory's rate over the exposure and read-out
   (muon tracks, worms and spots; their own random stream), and full-well saturation;
5. conversion to ADU with the gain, per-amp bias level, a fixed bias structure, Gaussian
   read noise, a row-to-row common-mode offset shared by the data and overscan of a row,
   and a serial CTI trail into the first overscan columns; rounding to integers and an
   18-bit ADC range.

Files are laid out as the camera writes them (int32, no BIASSEC, DETSEC/DTV/DTM as real
headers, conditions tables after the segments), optionally RICE-compressed.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from gpuptc._shared.processes import process_pool
from gpuptc.fitting.ptc import eq16
from gpuptc.formats.eotest import write_eotest_results
from gpuptc.formats.writer import STORAGES, Storage, atomic_path, raw_suffix, write_raw
from gpuptc.inputs.photodiode import photodiode_file_name
from gpuptc.raws.camera import focal_plane_mm, sensor_centre_mm
from gpuptc.raws.geometry import ccd_places, ccd_shape
from gpuptc.raws.layout import LAYOUTS, RawLayout, segment_name, small_layout
from gpuptc.simulation.cosmic_rays import CosmicRayRates, add_cosmic_rays
from gpuptc.simulation.nonlinearity import nonlinearity_truth, response
from gpuptc.simulation.photodiode import readings, write_readings

__all__ = [
    "SIZES",
    "SPACINGS",
    "ExposurePlan",
    "SimulatedSensor",
    "SimulationConfig",
    "exposure_plan",
    "sensor_truth",
    "sharing_fractions",
    "simulate",
]

ADC_MAX = 2**18 - 1
"""Largest value of the 18-bit camera ADCs."""

READOUT_S = 2.0
"""Read-out time of the camera, seconds: cosmic rays arrive during it too."""

_CTI_TRAIL = (3e-4, 6e-5, 1.2e-5)
"""Fractions of the last imaging pixel's signal deferred into the first overscan columns."""

_PARALLEL_TO_SERIAL_SHARING = 1.4
"""Brighter-fatter sharing along columns relative to along rows."""


SPACINGS = ("log", "linear")
"""How a simulated series spaces its pairs' signals (:class:`SimulationConfig`)."""

SIZES: dict[str, dict[str, int]] = {
    "full": {},
    "medium": {"nx": 256, "ny": 1000},
    "small": {"nx": 64, "ny": 96},
}
"""Amplifier sizes: the camera's layout, or imaging columns and rows of a reduced one."""


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated sensor; the same config gives the same files.

    Parameters
    ----------
    vendor : {'e2v', 'itl'}
        Sensor type: fixes layout, gain and full-well ranges.
    pairs : int
        Number of flat pairs, spaced in signal by ``spacing``.
    seed : int
        Seed for the truth, the fixed patterns and every exposure.
    storage : {'int32', 'rice', 'uint16', 'gzip'}
        How raw files are stored.
    size : {'full', 'medium', 'small'}
        ``full`` is the real camera layout; ``medium`` a 256 x 1000 and ``small`` a
        64 x 96 imaging area per amp, for fast tests.
    biases : int
        Number of bias frames taken before the flats.
    brighter_fatter : bool
        Whether charge sharing is applied (otherwise the variance is Poisson).
    min_signal : float
        Signal of the faintest pair, electrons.
    max_signal_over_full_well : float
        Signal of the brightest pair in units of the sensor's median full well.
    spacing : {'log', 'linear'}
        The pairs' signals evenly spaced in their logarithm (a PTC series) or in signal
        (a linearity series, which a spline's evenly spaced nodes need).
    cosmic_rays, hot_columns, cti : bool
        Switch the defects on or off.
    cosmic_ray_rate : float
        Cosmic-ray and radioactivity events per cm^2 per second of exposure plus read-out
        (muon tracks, Compton-electron worms and spots, :mod:`gpuptc.simulation.cosmic_rays`); the
        default is a sea-level laboratory's.
    pair_mismatch : float
        RMS relative illumination difference between the two flats of a pair.
    common_mode_adu : float
        RMS of the per-row offset shared by a row's data and overscan.
    read_noise_scale : float
        Multiplies the drawn read noise (4-8 e-), for studies of its effect.
    filter : str
        FILTER keyword.
    nonlinearity : bool
        A known non-linear response per amp (:mod:`gpuptc.simulation.nonlinearity`;
        its parameters in the truth), instead of a linear one.
    photodiode : bool
        Write each flat's photodiode readings beside it
        (``Photodiode_Readings_<DAYOBS>_<SEQNUM>.txt``, :mod:`gpuptc.simulation.photodiode`).
    rolloff : bool
        A soft saturation below full well (a PTC rolloff): each pixel's charge above a
        knee at :data:`ROLLOFF_KNEE` of its amp's full well is compressed as
        ``K + tau (1 - exp(-(q - K) / tau))``, ``tau`` :data:`ROLLOFF_TAU` of the full well,
        so its variance falls by ``exp(-2 (q - K) / tau)``; the knee is the truth's
        ``rolloff_adu``, and ``rolloff_onset_adu`` the pair mean at which the brightest
        pixels (:data:`ROLLOFF_ONSET_QUANTILE` of the illumination) reach it.
    illumination : {'amp', 'ccd'}
        ``amp``: each amp its own vignetting and tilt (steps at the amps' boundaries);
        ``ccd``: one smooth illumination over the assembled CCD, as a real flat's: a
        radial fall-off about the focal plane's centre (:data:`RADIAL_FALLOFF` per mm^2,
        the sensor placed by its RAFTBAY and CCDSLOT) and a tilt of :data:`CCD_TILT`
        across the CCD, so that the flat in electrons is seamless.

    Examples
    --------
    >>> config = SimulationConfig(vendor="itl", size="small", pairs=4)
    >>> config.sensor, config.layout.namps, config.layout.nx, config.layout.ny
    ('ITL-3800C-100', 16, 64, 96)
    >>> SimulationConfig(vendor="hamamatsu")
    Traceback (most recent call last):
    ...
    ValueError: unknown vendor 'hamamatsu'; use 'e2v' or 'itl'
    """

    vendor: str = "e2v"
    pairs: int = 24
    seed: int = 0
    storage: Storage = "int32"
    size: str = "full"
    biases: int = 5
    brighter_fatter: bool = True
    min_signal: float = 1000.0
    max_signal_over_full_well: float = 1.3
    spacing: str = "log"
    cosmic_rays: bool = True
    hot_columns: bool = True
    cti: bool = True
    cosmic_ray_rate: float = CosmicRayRates().total
    pair_mismatch: float = 3e-3
    common_mode_adu: float = 1.5
    read_noise_scale: float = 1.0
    filter: str = "SDSSi"
    nonlinearity: bool = False
    photodiode: bool = False
    rolloff: bool = False
    illumination: str = "amp"

    def __post_init__(self) -> None:
        if self.vendor not in LAYOUTS:
            raise ValueError(
                f"unknown vendor {self.vendor!r}; use {' or '.join(map(repr, LAYOUTS))}"
            )
        if self.storage not in STORAGES:
            raise ValueError(f"unknown storage {self.storage!r}; use one of {', '.join(STORAGES)}")
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; use {', '.join(map(repr, SIZES))}")
        if self.pairs < 0 or self.biases < 0:
            raise ValueError("pairs and biases must be non-negative")
        if self.cosmic_ray_rate < 0:
            raise ValueError("cosmic_ray_rate must be non-negative")
        if self.spacing not in SPACINGS:
            raise ValueError(f"unknown spacing {self.spacing!r}; use 'log' or 'linear'")
        if self.illumination not in ("amp", "ccd"):
            raise ValueError(f"unknown illumination {self.illumination!r}; use 'amp' or 'ccd'")

    @property
    def layout(self) -> RawLayout:
        """The raw layout written."""
        if self.size == "full":
            return LAYOUTS[self.vendor]
        return small_layout(self.vendor, **SIZES[self.size])

    @property
    def sensor(self) -> str:
        """LSST_NUM of the simulated sensor, derived from vendor and seed."""
        number = 100 + self.seed % 900
        return f"E2V-CCD250-{number:03d}" if self.vendor == "e2v" else f"ITL-3800C-{number:03d}"

    @property
    def raftbay(self) -> str:
        """RAFTBAY keyword."""
        return "R22"

    @property
    def ccdslot(self) -> str:
        """CCDSLOT keyword, derived from the seed."""
        return f"S{self.seed % 3}{(self.seed // 3) % 3}"


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def sensor_truth(config: SimulationConfig) -> pd.DataFrame:
    """The per-amplifier truth of a simulated sensor.

    Parameters
    ----------
    config : SimulationConfig
        The sensor's configuration.

    Returns
    -------
    pandas.DataFrame
        One row per amp: sensor, vendor, amp, segment, gain (e-/ADU), read_noise (e-),
        read_noise_adu, a00 (1/e-, negative), full_well (e-), full_well_adu,
        bias_level (ADU), and the non-linearity's parameters
        (:data:`gpuptc.simulation.nonlinearity.NONLINEARITY_COLUMNS`, zero when linear);
        with ``rolloff``, ``rolloff_adu`` (the soft saturation's knee).
    """
    rng = _rng(config.seed, 1)
    namps = config.layout.namps
    if config.vendor == "e2v":
        gain = rng.uniform(0.70, 1.00, namps)
        full_well = rng.uniform(1.35e5, 1.60e5, namps)
    else:
        gain = rng.uniform(1.30, 1.80, namps)
        full_well = rng.uniform(1.80e5, 2.20e5, namps)
    read_noise = rng.uniform(4.0, 8.0, namps) * config.read_noise_scale
    a00 = -rng.uniform(2.0e-6, 3.0e-6, namps) if config.brighter_fatter else np.zeros(namps)
    bias = rng.uniform(15000.0, 25000.0, namps).round(1)
    amps = np.arange(1, namps + 1)
    response = nonlinearity_truth(_rng(config.seed, 7), namps, config.nonlinearity)
    rolloff = {"rolloff_adu": ROLLOFF_KNEE * full_well / gain} if config.rolloff else {}
    linear = pd.DataFrame(
        {
            "sensor": config.sensor,
            "vendor": config.vendor,
            "amp": amps,
            "segment": [segment_name(int(a), namps) for a in amps],
            "gain": gain,
            "read_noise": read_noise,
            "read_noise_adu": read_noise / gain,
            "a00": a00,
            "full_well": full_well,
            "full_well_adu": full_well / gain,
            "bias_level": bias,
            **rolloff,
        }
    )
    return pd.concat([linear, response], axis=1)


ROLLOFF_ONSET_QUANTILE = 0.99
"""The planted rolloff's onset in a pair's mean signal: where this quantile of an amp's
illumination pattern reaches the knee (its brightest pixels, by vignetting and tilt a few
per cent above its mean, are compressed first)."""


def _with_rolloff_onset(truth: pd.DataFrame, config: SimulationConfig) -> pd.DataFrame:
    """The truth with ``rolloff_onset_adu`` per amp where a rolloff is planted."""
    if not config.rolloff:
        return truth
    illumination = _fixed_patterns(config).illumination.reshape(config.layout.namps, -1)
    brightest = np.quantile(illumination, ROLLOFF_ONSET_QUANTILE, axis=1)
    scale = illumination.mean(axis=1) / brightest
    return truth.assign(rolloff_onset_adu=truth["rolloff_adu"].to_numpy() * scale)


ROLLOFF_KNEE = 0.8
"""Where the simulated soft saturation starts (``rolloff``), in units of the full well."""
ROLLOFF_TAU = 0.02
"""Its compression length, in units of the full well."""


def _rolled_off(charge: np.ndarray, full_well: float) -> np.ndarray:
    """Charge compressed above the knee (``SimulationConfig.rolloff``)."""
    knee, tau = ROLLOFF_KNEE * full_well, ROLLOFF_TAU * full_well
    above = charge > knee
    excess = np.where(above, charge - knee, 0.0)
    squeezed = knee + tau * (1.0 - np.exp(-excess / tau))
    return np.where(above, squeezed, charge).astype(charge.dtype)


def eq16_variance(signal: np.ndarray | float, a00: np.ndarray | float) -> np.ndarray:
    """Astier eq. 16 pixel variance in electrons^2 for a mean signal in electrons.

    :func:`gpuptc.fitting.ptc.eq16` with unit gain and no read noise.
    """
    return eq16(np.asarray(signal, dtype=np.float64), np.asarray(a00, dtype=np.float64), 1.0, 0.0)


def sharing_fractions(signal: float, a00: float) -> tuple[float, float]:
    """Charge-sharing fractions that give Astier's eq. 16 variance at ``signal``.

    A pixel keeps ``1 - 2 fx - 2 fy`` of its charge and gives ``fx`` to each row
    neighbour and ``fy`` to each column neighbour; with ``fy = 1.4 fx`` the variance
    of independent Poisson charges after sharing is ``signal * (keep^2 + 2 fx^2 + 2 fy^2)``,
    solved here to equal eq. 16.

    Parameters
    ----------
    signal : float
        Mean signal, electrons.
    a00 : float
        Brighter-fatter coefficient, 1/e- (negative).

    Returns
    -------
    fx, fy : float
        Fractions handed to each serial and each parallel neighbour.
    """
    if signal <= 0 or a00 >= 0:
        return 0.0, 0.0
    deficit = 1.0 - float(eq16_variance(signal, a00)) / signal
    rho = _PARALLEL_TO_SERIAL_SHARING
    s, q = 1.0 + rho, 1.0 + rho * rho
    quad = 4.0 * s * s + 2.0 * q
    disc = 16.0 * s * s - 4.0 * quad * deficit
    if disc < 0:
        raise ValueError(f"brighter-fatter deficit {deficit:.3f} too large to model at {signal} e-")
    fx = (4.0 * s - math.sqrt(disc)) / (2.0 * quad)
    return fx, rho * fx


@dataclass(frozen=True)
class ExposurePlan:
    """One exposure to simulate."""

    index: int
    imgtype: str
    exptime: float
    signal: float
    illumination: float
    seqnum: int
    mjd: float
    pair: int | None = None
    member: int | None = None

    @property
    def dayobs(self) -> str:
        """Observing day (local date at UTC-12 h), yyyymmdd."""
        return (_mjd_to_datetime(self.mjd) - _dt.timedelta(hours=12)).strftime("%Y%m%d")

    @property
    def obsid(self) -> str:
        """OBSID as the camera writes it."""
        return f"MC_C_{self.dayobs}_{self.seqnum:06d}"


_MJD_EPOCH = _dt.datetime(1858, 11, 17, tzinfo=_dt.UTC)
_START = _dt.datetime(2025, 6, 1, 22, 0, 0, tzinfo=_dt.UTC)


def _mjd_to_datetime(mjd: float) -> _dt.datetime:
    return _MJD_EPOCH + _dt.timedelta(days=mjd)


def _datetime_to_mjd(moment: _dt.datetime) -> float:
    return (moment - _MJD_EPOCH).total_seconds() / 86400.0


def exposure_plan(config: SimulationConfig, truth: pd.DataFrame) -> list[ExposurePlan]:
    """The sequence of exposures: biases, then flat pairs in increasing signal.

    Signals are log-spaced (or evenly spaced, ``spacing``) from ``min_signal`` to
    ``max_signal_over_full_well`` times the median full well; the flux is constant, so
    exposure times follow the signal (the brightest pair takes 100 s), rounded to
    milliseconds.
    """
    rng = _rng(config.seed, 2)
    top = config.max_signal_over_full_well * float(np.median(truth["full_well"]))
    rate = top / 100.0
    if config.pairs > 1:
        spaced = np.geomspace if config.spacing == "log" else np.linspace
        signals = spaced(config.min_signal, top, config.pairs)
    else:
        signals = np.full(config.pairs, config.min_signal)
    plans: list[ExposurePlan] = []
    clock = _START + _dt.timedelta(days=config.seed % 7)
    seqnum = 1
    for _ in range(config.biases):
        plans.append(
            ExposurePlan(len(plans), "BIAS", 0.0, 0.0, 1.0, seqnum, _datetime_to_mjd(clock))
        )
        clock += _dt.timedelta(seconds=5)
        seqnum += 1
    for pair, target in enumerate(signals):
        exptime = max(round(target / rate, 3), 0.001)
        for member in (1, 2):
            illumination = 1.0 + config.pair_mismatch * float(rng.standard_normal())
            plans.append(
                ExposurePlan(
                    len(plans),
                    "FLAT",
                    exptime,
                    rate * exptime,
                    illumination,
                    seqnum,
                    _datetime_to_mjd(clock),
                    pair,
                    member,
                )
            )
            clock += _dt.timedelta(seconds=exptime + 5.0)
            seqnum += 1
    return plans


@dataclass(frozen=True)
class _FixedPatterns:
    illumination: np.ndarray  # (amps, ny, nx) relative response, mean about 1
    bias_structure: np.ndarray  # (amps, ny, nx) ADU added to imaging pixels
    hot_columns: tuple[tuple[int, int, float], ...]  # (amp index, column, e-/s)


RADIAL_FALLOFF = 2e-6
"""The ``ccd`` illumination's fall-off: ``1 - RADIAL_FALLOFF (r^2 - r0^2)``, r in mm from
the focal plane's centre, r0 the sensor centre's."""
CCD_TILT = (0.01, -0.005)
"""The ``ccd`` illumination's tilt: fractional change from the CCD's centre to its right
and top edges."""


def _ccd_illumination(config: SimulationConfig) -> np.ndarray:
    """``(amps, ny, nx)`` the seamless illumination of each amp's imaging pixels."""
    amps = config.layout.sensor_geometry().amps
    shape = ccd_shape(amps)
    centre = sensor_centre_mm(config.raftbay, config.ccdslot) or (0.0, 0.0)
    x, y = ccd_places(amps)
    fx, fy = focal_plane_mm(x, y, shape, centre)
    u = 2 * x / (shape[1] - 1) - 1
    v = 2 * y / (shape[0] - 1) - 1
    radial = 1.0 - RADIAL_FALLOFF * (fx * fx + fy * fy - centre[0] ** 2 - centre[1] ** 2)
    return (radial + CCD_TILT[0] * u + CCD_TILT[1] * v).astype(np.float32)


@functools.lru_cache(maxsize=2)
def _fixed_patterns(config: SimulationConfig) -> _FixedPatterns:
    rng = _rng(config.seed, 3)
    lay = config.layout
    y = np.linspace(-1.0, 1.0, lay.ny, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, lay.nx, dtype=np.float32)[None, :]
    illumination = np.empty((lay.namps, lay.ny, lay.nx), dtype=np.float32)
    bias = np.empty_like(illumination)
    rows = np.arange(lay.ny, dtype=np.float32)[:, None]
    cols = np.arange(lay.nx, dtype=np.float32)[None, :]
    seamless = _ccd_illumination(config) if config.illumination == "ccd" else None
    for amp in range(lay.namps):
        tilt_x, tilt_y = rng.uniform(-0.02, 0.02, 2)
        vignetting = 1.0 - 0.03 * (x * x + y * y) + tilt_x * x + tilt_y * y
        if seamless is not None:
            vignetting = seamless[amp]
        prnu = 1.0 + 0.005 * rng.standard_normal((lay.ny, lay.nx), dtype=np.float32)
        illumination[amp] = vignetting * prnu
        phase = rng.uniform(0, 2 * np.pi)
        bias[amp] = 3.0 * np.exp(-rows / 20.0) + 0.8 * np.sin(cols / 7.0 + phase)
    hot: list[tuple[int, int, float]] = []
    if config.hot_columns:
        for _ in range(3):
            hot.append((int(rng.integers(lay.namps)), int(rng.integers(lay.nx)), 30.0))
    return _FixedPatterns(illumination, bias, tuple(hot))


def _share_charge(charge: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """Conservative nearest-neighbour sharing with mirrored edges."""
    if fx == 0.0 and fy == 0.0:
        return charge
    padded = np.pad(charge, 1, mode="edge")
    out = (1.0 - 2.0 * fx - 2.0 * fy) * charge
    out += fx * (padded[1:-1, :-2] + padded[1:-1, 2:])
    out += fy * (padded[:-2, 1:-1] + padded[2:, 1:-1])
    return out


def _photo_electrons(
    expected: np.ndarray,
    illumination: float,
    noise: np.random.Generator,
    mismatch: np.random.Generator,
) -> np.ndarray:
    """Electrons of mean and variance ``expected * illumination``, float32.

    The nominal level's electrons are Poisson draws from ``noise``; the illumination
    offset's come from a second stream, so that a sensor simulated with another
    ``pair_mismatch`` keeps the same pixel noise and the two compare pair by pair. The
    offset's electrons have the mean and variance of the exact ones (Poisson more for a
    brighter flat, binomial thinning for a dimmer one) and are drawn from a normal of
    those: the offset is at most about 1 % of the charge, so the flat's mean, variance and
    covariances are exact and only its third moment departs, by at most the offset's share.
    One normal draw costs a quarter of a binomial one.
    """
    charge = noise.poisson(expected).astype(np.float32)
    offset = np.float32(illumination - 1.0)
    if offset == 0.0:
        return charge
    if offset > 0.0:
        mean = expected.astype(np.float32, copy=False) * offset  # Poisson: variance = mean
        variance = mean
    else:
        mean = charge * offset  # thinning with probability -offset
        variance = charge * (-offset * (1.0 + offset))
    draw = mismatch.standard_normal(charge.shape, dtype=np.float32)
    return np.maximum(charge + mean + np.sqrt(variance) * draw, np.float32(0.0))


def render_exposure(
    config: SimulationConfig, truth: pd.DataFrame, plan: ExposurePlan
) -> np.ndarray:
    """Simulate the raw pixels of one exposure.

    Parameters
    ----------
    config : SimulationConfig
        The sensor's configuration.
    truth : pandas.DataFrame
        Its per-amp truth (:func:`sensor_truth`).
    plan : ExposurePlan
        Which exposure.

    Returns
    -------
    numpy.ndarray
        ``(amps, naxis2, naxis1)`` int32 raw segments.
    """
    lay = config.layout
    patterns = _fixed_patterns(config)
    rng = _rng(config.seed, 4, plan.index)
    raw = np.empty((lay.namps, lay.naxis2, lay.naxis1), dtype=np.int32)
    image_rows = slice(0, lay.ny)
    image_cols = slice(lay.prescan, lay.prescan + lay.nx)
    first_overscan = lay.prescan + lay.nx
    for amp in range(lay.namps):
        row = truth.iloc[amp]
        gain = float(row["gain"])
        segment = np.full((lay.naxis2, lay.naxis1), row["bias_level"], dtype=np.float32)
        segment += rng.standard_normal(segment.shape, dtype=np.float32) * np.float32(
            row["read_noise_adu"]
        )
        segment += config.common_mode_adu * rng.standard_normal((lay.naxis2, 1), dtype=np.float32)
        segment[image_rows, image_cols] += patterns.bias_structure[amp]
        if plan.signal > 0:
            level = plan.signal * plan.illumination
            expected = plan.signal * patterns.illumination[amp]
            charge = _photo_electrons(
                expected, plan.illumination, rng, _rng(config.seed, 6, plan.index, amp)
            )
            fx, fy = sharing_fractions(level * float(patterns.illumination[amp].mean()), row["a00"])
            charge = _share_charge(charge, fx, fy)
            for hot_amp, column, rate in patterns.hot_columns:
                if hot_amp == amp:
                    charge[:, column] += rng.poisson(rate * plan.exptime, lay.ny)
            if config.cosmic_rays:
                add_cosmic_rays(
                    charge,
                    _rng(config.seed, 5, plan.index, amp),
                    plan.exptime + READOUT_S,
                    CosmicRayRates().scaled_to(config.cosmic_ray_rate),
                )
            if config.rolloff:
                charge = _rolled_off(charge, float(row["full_well"]))
            np.minimum(charge, np.float32(row["full_well"]), out=charge)
            signal_adu = charge / np.float32(gain)
            if config.nonlinearity:
                signal_adu = response(signal_adu, row, float(row["full_well_adu"]))
            segment[image_rows, image_cols] += signal_adu
            if config.cti:
                last = signal_adu[:, -1]
                for k, fraction in enumerate(_CTI_TRAIL):
                    if first_overscan + k < lay.naxis1:
                        segment[image_rows, first_overscan + k] += np.float32(fraction) * last
        np.rint(segment, out=segment)
        np.clip(segment, 0, ADC_MAX, out=segment)
        raw[amp] = segment
    return raw


def _primary_header(config: SimulationConfig, plan: ExposurePlan) -> dict[str, object]:
    lay = config.layout
    moment = _mjd_to_datetime(plan.mjd)
    date_obs = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    testtype = "BIAS" if plan.imgtype == "BIAS" else "FLAT"
    return {
        "ORIGIN": "SIMULATION",
        "TELESCOP": "LSST",
        "INSTRUME": "lsstCam",
        "TSTAND": "BOT",
        "DATE": date_obs,
        "DATE-OBS": date_obs,
        "MJD": plan.mjd,
        "MJD-OBS": plan.mjd,
        "IMGTYPE": plan.imgtype,
        "TESTTYPE": testtype,
        "OBSID": plan.obsid,
        "SEQNUM": plan.seqnum,
        "DAYOBS": plan.dayobs,
        "EXPTIME": plan.exptime,
        "DARKTIME": round(plan.exptime + 0.312, 3),
        "FILTER": config.filter,
        "FILTER2": "empty",
        "MONDIODE": round(-1e-9 * plan.signal / max(plan.exptime, 1e-3), 15),
        "CCD_MANU": lay.ccd_manu,
        "CCD_TYPE": lay.ccd_type,
        "CCD_SERN": f"{17000 + config.seed % 1000}-04-01",
        "LSST_NUM": config.sensor,
        "RAFTBAY": config.raftbay,
        "CCDSLOT": config.ccdslot,
        "RAFTNAME": "LCA-11021_RTM-024",
        "REBNAME": "LCA-13574-065",
        "CONTNUM": "18511d2b",
        "DETSIZE": lay.detsize,
        "CCDTEMP": -100.0,
        "TEMP_SET": -100.0,
        "BINX": 1,
        "BINY": 1,
        "HEADVER": 2,
        "RUNNUM": "13162",
        "IMAGETAG": f"{config.seed:08x}{plan.index:08x}",
        "FILENAME": plan.obsid + raw_suffix(config.storage),
        "SIMSEED": config.seed,
    }


def _segment_headers(config: SimulationConfig) -> list[dict[str, object]]:
    lay = config.layout
    headers = []
    for amp in range(1, lay.namps + 1):
        keys: dict[str, object] = {
            "EXTNAME": segment_name(amp, lay.namps),
            "CHANNEL": amp,
            "CCDSUM": "1 1",
            "DATASEC": lay.datasec,
            "DETSIZE": lay.detsize,
        }
        keys.update(lay.detector_keywords(amp))
        keys.update({"DTM1_2": 0, "DTM2_1": 0, "HEADVER": 2})
        headers.append(keys)
    return headers


def _conditions_tables(plan: ExposurePlan) -> dict[str, np.ndarray]:
    reb = np.zeros(1, dtype=[("BOARDTEMP", "f4"), ("ODV", "f4"), ("RDV", "f4")])
    reb[0] = (-20.5, 23.8, 12.9)
    config = np.zeros(1, dtype=[("SEQNUM", "i4"), ("DAQSTATE", "S8")])
    config[0] = (plan.seqnum, b"OK")
    return {"REB_COND": reb, "CONFIG_COND": config}


def file_name(config: SimulationConfig, plan: ExposurePlan) -> str:
    """Camera-style file name, ``MC_C_<dayobs>_<seqnum>_<raftbay>_<ccdslot>.fits``."""
    return f"{plan.obsid}_{config.raftbay}_{config.ccdslot}{raw_suffix(config.storage)}"


def _write_exposure(
    config: SimulationConfig, truth: pd.DataFrame, plan: ExposurePlan, directory: str
) -> str:
    pixels = render_exposure(config, truth, plan)
    path = Path(directory) / file_name(config, plan)
    write_raw(
        path,
        pixels,
        _primary_header(config, plan),
        _segment_headers(config),
        storage=config.storage,
        tables=_conditions_tables(plan),
    )
    return str(path)


def _eotest_columns(config: SimulationConfig, truth: pd.DataFrame) -> dict[str, np.ndarray]:
    """Truth perturbed by a 1 % calibration scatter, as EOTEST would report it."""
    rng = _rng(config.seed, 5)
    n = len(truth)

    def scatter(values: np.ndarray) -> np.ndarray:
        return values * (1.0 + 0.01 * rng.standard_normal(n))

    gain = truth["gain"].to_numpy()
    return {
        "AMP": truth["amp"].to_numpy().astype(np.int16),
        "GAIN": scatter(gain),
        "GAIN_ERROR": 0.003 * gain,
        "READ_NOISE": scatter(truth["read_noise"].to_numpy()),
        "FULL_WELL": scatter(truth["full_well"].to_numpy()),
        "PTC_GAIN": scatter(gain),
        "PTC_GAIN_ERROR": 0.002 * gain,
        "PTC_A00": -scatter(truth["a00"].to_numpy()),
        "PTC_A00_ERROR": np.full(n, 4e-8),
        "PTC_NOISE": scatter(truth["read_noise"].to_numpy()),
        "PTC_NOISE_ERROR": np.full(n, 0.4),
        "PTC_TURNOFF": scatter(truth["full_well_adu"].to_numpy()),
    }


@dataclass
class SimulatedSensor:
    """What :func:`simulate` wrote."""

    config: SimulationConfig
    directory: Path
    truth: pd.DataFrame
    flats: list[Path] = field(default_factory=list)
    biases: list[Path] = field(default_factory=list)
    truth_path: Path | None = None
    exposures_path: Path | None = None
    eotest_path: Path | None = None

    @property
    def sensor(self) -> str:
        """LSST_NUM of the sensor."""
        return self.config.sensor


def _config_record(config: SimulationConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True)


def simulate(
    directory: str | os.PathLike[str],
    config: SimulationConfig | None = None,
    *,
    workers: int | None = None,
    reuse: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **options: object,
) -> SimulatedSensor:
    """Simulate one sensor's biases and flat pairs into ``directory``.

    Parameters
    ----------
    directory : path-like
        Output directory (created).
    config : SimulationConfig, optional
        The sensor; keyword ``options`` override its fields
        (``simulate(d, vendor="itl", pairs=8, size="small")``).
    workers : int, optional
        Processes rendering exposures in parallel; default one per core for big jobs.
        The files do not depend on it.
    reuse : bool
        Keep files already simulated with the same configuration instead of rewriting.
    progress : callable, optional
        Called as ``progress(done, total)`` after each exposure.
    **options
        Fields of :class:`SimulationConfig`.

    Returns
    -------
    SimulatedSensor
        Paths of the raw files, the truth table and the EOTEST-style results file.

    Notes
    -----
    Writes ``<sensor>_truth.parquet`` (per amp), ``<sensor>_exposures.parquet`` (per
    exposure: file, type, exposure time, signal in electrons, illumination factor) and
    ``<sensor>_eotest_results.fits`` laid out as EOTEST writes it.

    Examples
    --------
    Two flat pairs and a bias of a small ITL sensor, in an empty directory ``tmp``:

    >>> sim = simulate(tmp, vendor="itl", size="small", pairs=2, biases=1, seed=3)
    >>> sim.sensor, len(sim.flats), len(sim.biases)
    ('ITL-3800C-103', 4, 1)
    >>> sim.flats[0].name
    'MC_C_20250604_000002_R22_S01.fits'
    >>> sim.truth.columns[:6].tolist()
    ['sensor', 'vendor', 'amp', 'segment', 'gain', 'read_noise']
    >>> bool(sim.truth.gain.between(0.5, 2.0).all())
    True
    """
    config = replace(config or SimulationConfig(), **options)  # type: ignore[arg-type]
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    truth = _with_rolloff_onset(sensor_truth(config), config)
    plans = exposure_plan(config, truth)
    result = SimulatedSensor(config, out, truth)
    stamp = out / f".{config.sensor}.simulation.json"
    paths = [out / file_name(config, plan) for plan in plans]
    reusable = (
        reuse
        and stamp.exists()
        and stamp.read_text() == _config_record(config)
        and all(p.exists() for p in paths)
    )
    if not reusable:
        stamp.unlink(missing_ok=True)
        _render_all(config, truth, plans, out, workers, progress)
        if config.photodiode:
            _write_photodiode(config, plans, out)
    for plan, path in zip(plans, paths, strict=True):
        (result.flats if plan.imgtype == "FLAT" else result.biases).append(path)
    result.truth_path = out / f"{config.sensor}_truth.parquet"
    result.exposures_path = out / f"{config.sensor}_exposures.parquet"
    result.eotest_path = out / f"{config.sensor}_eotest_results.fits"
    if not reusable:
        _write_truth(result, plans, paths, stamp)
    return result


def _write_photodiode(config: SimulationConfig, plans: Sequence[ExposurePlan], out: Path) -> None:
    """Each flat's photodiode readings, its current in proportion to its illumination."""
    for plan in plans:
        if plan.imgtype != "FLAT":
            continue
        rate = plan.signal * plan.illumination / max(plan.exptime, 1e-3)
        time, current = readings(plan.exptime, rate, _rng(config.seed, 8, plan.index))
        write_readings(out / photodiode_file_name(plan.dayobs, plan.seqnum), time, current)


def _write_truth(
    result: SimulatedSensor, plans: list[ExposurePlan], paths: list[Path], stamp: Path
) -> None:
    """The truth and exposure tables, the EOTEST-style results, then the reuse stamp."""
    config, truth = result.config, result.truth
    _write_parquet(truth, result.truth_path)
    exposures = pd.DataFrame([asdict(p) for p in plans])
    exposures.insert(0, "file", [p.name for p in paths])
    exposures.insert(0, "sensor", config.sensor)
    _write_parquet(exposures, result.exposures_path)
    write_eotest_results(result.eotest_path, _eotest_columns(config, truth))
    with atomic_path(stamp) as tmp:
        tmp.write_text(_config_record(config))


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def _render_all(
    config: SimulationConfig,
    truth: pd.DataFrame,
    plans: Sequence[ExposurePlan],
    out: Path,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    total = len(plans)
    pixels_per_exposure = config.layout.naxis1 * config.layout.naxis2 * config.layout.namps
    if workers is None:
        workers = (os.cpu_count() or 1) if pixels_per_exposure * total > 5e7 else 1
    workers = max(1, min(workers, total))
    if workers == 1:
        for done, plan in enumerate(plans, 1):
            _write_exposure(config, truth, plan, str(out))
            if progress:
                progress(done, total)
        return
    with process_pool(workers) as pool:
        futures = [pool.submit(_write_exposure, config, truth, plan, str(out)) for plan in plans]
        for done, future in enumerate(futures, 1):
            future.result()
            if progress:
                progress(done, total)

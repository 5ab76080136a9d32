"""Cosmic rays and environmental radiation as a thick CCD records them, for the simulator.

Three kinds of event hit a 100 um thick, 10 um pixel LSST sensor in the laboratory:

- **muons** crossing the whole thickness: straight tracks whose length on the sensor is
  ``thickness * tan(zenith)`` (a vertical muon makes a dot, a grazing one a track of tens
  of pixels), depositing a Landau-distributed ~70 e-/um along the path in silicon,
  with the lateral diffusion of charge growing with the depth of conversion;
- **worms**: Compton-scattered electrons from environmental gamma rays, 10-300 keV,
  wandering over their range in silicon (a few um to a few hundred);
- **spots**: compact deposits (low-energy electrons, X-rays, alphas from the package).

Rates are per unit area and time, over the exposure plus the read-out, so long flats carry
proportionally more events than short ones. Defaults are sea-level laboratory values:
the vertical-muon flux through a horizontal detector is about 1 cm^-2 min^-1 (Particle Data
Group, Review of Particle Physics, "Cosmic rays" section); Groom (2004, "Cosmic rays and other
nonsense in astronomical CCD imagers", Experimental Astronomy 14, 45) finds gamma-induced
events in thick CCDs at a comparable rate that depends on shielding: here a third of the
muons' rate, plus a few spots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CosmicRayRates", "add_cosmic_rays"]

PIXEL_UM = 10.0
"""Pixel pitch of the LSST sensors, micrometres."""

THICKNESS_UM = 100.0
"""Depleted thickness of the LSST sensors, micrometres."""

_ELECTRONS_PER_KEV = 1000.0 / 3.65
"""Electron-hole pairs per keV deposited in silicon (3.65 eV each)."""

_MUON_MPV_PER_UM = 70.0
"""Most probable muon deposit in a 100 um silicon layer, electrons per micrometre."""

_LANDAU_WIDTH = 0.1
"""Moyal scale of the muon deposit relative to its most probable value."""

_MAX_DIFFUSION_PX = 0.45
"""Lateral diffusion (sigma, pixels) of charge converted at the entrance window."""

_SAMPLES_PER_PIXEL = 12
"""Charge packets per pixel of track when depositing a track."""


@dataclass(frozen=True)
class CosmicRayRates:
    """Event rates per cm^2 per second of exposure plus read-out.

    Parameters
    ----------
    muons, worms, spots : float
        Rates of each kind of event, cm^-2 s^-1.
    """

    muons: float = 1.0 / 60.0
    worms: float = 1.0 / 180.0
    spots: float = 1.0 / 600.0

    @property
    def total(self) -> float:
        """All events, cm^-2 s^-1."""
        return self.muons + self.worms + self.spots

    def scaled_to(self, total: float) -> CosmicRayRates:
        """The same mix of events at a total rate of ``total`` cm^-2 s^-1."""
        factor = total / self.total
        return CosmicRayRates(self.muons * factor, self.worms * factor, self.spots * factor)


def add_cosmic_rays(
    charge: np.ndarray,
    rng: np.random.Generator,
    seconds: float,
    rates: CosmicRayRates | None = None,
) -> int:
    """Add the events of ``seconds`` of exposure to an amplifier's charge image in place.

    Parameters
    ----------
    charge : numpy.ndarray
        ``(rows, columns)`` electrons, modified in place.
    rng : numpy.random.Generator
        Source of every random draw (keep it separate from the pixel noise so that
        switching cosmic rays off changes nothing else).
    seconds : float
        Exposure plus read-out time.
    rates : CosmicRayRates, optional
        Event rates; the sea-level laboratory default if omitted.

    Returns
    -------
    int
        Number of events added.
    """
    rates = rates or CosmicRayRates()
    ny, nx = charge.shape
    area_cm2 = ny * nx * (PIXEL_UM * 1e-4) ** 2
    events = 0
    for rate, draw in ((rates.muons, _muon), (rates.worms, _worm), (rates.spots, _spot)):
        for _ in range(rng.poisson(rate * area_cm2 * seconds)):
            start = (rng.uniform(0, ny), rng.uniform(0, nx))
            ys, xs, electrons = draw(rng, start)
            _deposit(charge, ys, xs, electrons)
            events += 1
    return events


def _muon(rng: np.random.Generator, start: tuple[float, float]):
    # flux through a horizontal surface ~ cos^3(zenith) sin(zenith): cos(zenith) = U^(1/4)
    cos_zenith = max(rng.uniform() ** 0.25, 0.05)
    tan_zenith = math.sqrt(1.0 - cos_zenith**2) / cos_zenith
    length_px = THICKNESS_UM * tan_zenith / PIXEL_UM
    path_um = THICKNESS_UM / cos_zenith
    moyal = -math.log(max(rng.standard_normal() ** 2, 1e-12))
    electrons = path_um * _MUON_MPV_PER_UM * (1.0 + _LANDAU_WIDTH * moyal)
    samples = max(int(length_px * _SAMPLES_PER_PIXEL), _SAMPLES_PER_PIXEL)
    depth = rng.uniform(0.0, 1.0, samples)  # 0 at the gates, 1 at the entrance window
    angle = rng.uniform(0.0, 2.0 * math.pi)
    spread = _MAX_DIFFUSION_PX * np.sqrt(depth)
    ys = start[0] + depth * length_px * math.sin(angle) + spread * rng.standard_normal(samples)
    xs = start[1] + depth * length_px * math.cos(angle) + spread * rng.standard_normal(samples)
    return ys, xs, np.full(samples, electrons / samples)


def _worm(rng: np.random.Generator, start: tuple[float, float]):
    energy_kev = math.exp(rng.uniform(math.log(10.0), math.log(300.0)))
    range_px = _electron_range_um(energy_kev) / PIXEL_UM
    steps = max(int(range_px / 0.25), 1)
    turns = np.cumsum(rng.normal(0.0, 0.35, steps)) + rng.uniform(0.0, 2.0 * math.pi)
    ys = start[0] + np.cumsum(0.25 * np.sin(turns))
    xs = start[1] + np.cumsum(0.25 * np.cos(turns))
    electrons = energy_kev * _ELECTRONS_PER_KEV
    samples = steps * 3
    pick = rng.integers(0, steps, samples)
    jitter = 0.3 * rng.standard_normal((2, samples))
    return ys[pick] + jitter[0], xs[pick] + jitter[1], np.full(samples, electrons / samples)


def _spot(rng: np.random.Generator, start: tuple[float, float]):
    electrons = math.exp(rng.uniform(math.log(2e3), math.log(5e4)))
    sigma = rng.uniform(0.4, 1.0)
    samples = 64
    ys = start[0] + sigma * rng.standard_normal(samples)
    xs = start[1] + sigma * rng.standard_normal(samples)
    return ys, xs, np.full(samples, electrons / samples)


def _electron_range_um(energy_kev: float) -> float:
    """CSDA range of an electron in silicon (Katz and Penfold's empirical fit)."""
    mev = energy_kev / 1000.0
    grams_per_cm2 = 0.412 * mev ** (1.265 - 0.0954 * math.log(mev))
    return grams_per_cm2 / 2.33 * 1e4


def _deposit(charge: np.ndarray, ys: np.ndarray, xs: np.ndarray, electrons: np.ndarray) -> None:
    ny, nx = charge.shape
    rows = np.floor(ys).astype(np.int64)
    cols = np.floor(xs).astype(np.int64)
    inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    np.add.at(charge, (rows[inside], cols[inside]), electrons[inside].astype(charge.dtype))

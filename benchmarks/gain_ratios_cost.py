"""What the gain ratio adjustment costs per flat, and how well it recovers planted ratios.

A full-size (or medium) sensor's seamless illumination (the simulator's ``ccd`` one: a
radial fall-off about the focal plane's centre and a tilt), binned as the measuring pass
bins it (8 x 8, 20-pixel amp boundaries), put in electrons by gains off by up to +-2 %,
with 0.1 % noise per bin; ``flat_gain_ratios`` with cp_pipe's defaults (20 radial nodes,
Chebyshev order 1) timed over ``--repeat`` flats, with the largest error of the ratios
against the planted ones. Both with and without the radial term.

Usage: ``python benchmarks/gain_ratios_cost.py [--size full] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from gpuptc.config import GainRatiosConfig
from gpuptc.fitting.gain_ratios import flat_gain_ratios
from gpuptc.measuring.binning import BinSpec, bin_amps, bin_centres
from gpuptc.raws.camera import focal_plane_mm, sensor_centre_mm
from gpuptc.raws.geometry import ccd_shape
from gpuptc.simulation.simulate import SimulationConfig, _ccd_illumination


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="full")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    config = SimulationConfig(size=args.size, illumination="ccd", seed=1)
    amps = config.layout.sensor_geometry().amps
    spec = BinSpec(8, 20)
    illumination = _ccd_illumination(config).astype(float)[None]
    binned = bin_amps(illumination, np.ones(illumination.shape, bool), spec, np)[0]
    x, y = bin_centres(amps, spec)
    shape = ccd_shape(amps)
    radius = np.hypot(
        *focal_plane_mm(x, y, shape, sensor_centre_mm(config.raftbay, config.ccdslot))
    )
    rng = np.random.default_rng(0)
    planted = rng.uniform(0.98, 1.02, len(amps))
    amp = np.broadcast_to(np.arange(len(amps))[:, None, None], binned.shape).ravel()
    print(f"# {platform.node()}, {os.cpu_count()} cores, {args.size} sensor, {binned.size} bins")
    print("| radial term | seconds per flat | largest ratio error |")
    print("|---|---|---|")
    for with_radius in (True, False):
        started, worst = time.perf_counter(), 0.0
        for _ in range(args.repeat):
            noisy = binned * planted[:, None, None] * (1 + 1e-3 * rng.standard_normal(binned.shape))
            ratios = flat_gain_ratios(
                x.ravel(), y.ravel(), amp, noisy.ravel(), radius.ravel() if with_radius else None,
                len(amps), 0, shape, GainRatiosConfig(),
            )  # fmt: skip
            worst = max(worst, float(np.max(np.abs(ratios / (planted / planted[0]) - 1))))
        seconds = (time.perf_counter() - started) / args.repeat
        print(f"| {'yes' if with_radius else 'no'} | {seconds:.3f} | {worst:.1e} |")


if __name__ == "__main__":
    main()

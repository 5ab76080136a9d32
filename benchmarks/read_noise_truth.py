"""The read noise on full-size sensors against the simulator's truth (issue 31's criteria).

For each vendor, a full-size sensor is simulated (``--pairs`` flat pairs, seeded) and
measured under each preset's ISR; per amp it prints the per-pixel read noise from the
overscan over the truth, the overscan's own number over the truth, the ISR's predicted
noise over the truth, and the PTC noise (EXPAPPROXIMATION) against the read noise and the
ISR noise together: their ratio and its distance in the fit's errors. The criteria: the
per-pixel read noise within 1 % of the truth on every amp; the PTC noise within 3 errors
of the expected one on every amp, the median ratio within 1 %.

Usage: ``python benchmarks/read_noise_truth.py [--pairs 16] [--vendors e2v,itl]
[--presets cp_pipe,eotest]``; about 3 minutes per vendor on two cores.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import numpy as np
import pandas as pd

import gpuptc


def _one(sensor: gpuptc.simulation.simulate.SimulatedSensor, preset: str) -> pd.DataFrame:
    truth = sensor.truth.set_index("amp")
    pairs, covariances = gpuptc.measure(gpuptc.ingest([sensor.directory]), preset=preset)
    ptc, _, fitted = gpuptc.fit(pairs, covariances, preset=preset, models=["expapprox"])
    fits = ptc.set_index("amp")
    used = fitted[fitted.used.astype(bool)].groupby("amp")
    pixel = used.read_noise_pixel_adu.median()
    isr = used.isr_noise_adu.median()
    expected = np.hypot(truth.read_noise_adu, isr) * truth.gain
    return pd.DataFrame(
        {
            "pixel/truth": pixel / truth.read_noise_adu,
            "overscan/truth": used.read_noise_adu.median() / truth.read_noise_adu,
            "isr/truth": isr / truth.read_noise_adu,
            "PTC/truth": fits.noise / truth.read_noise,
            "PTC/expected": fits.noise / expected,
            "z": (fits.noise - expected) / fits.noise_err,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--vendors", default="e2v,itl")
    parser.add_argument("--presets", default="cp_pipe,eotest")
    args = parser.parse_args()
    print(f"# {platform.node()}, {platform.processor() or platform.machine()}, {args.pairs} pairs")
    for vendor in args.vendors.split(","):
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            sensor = gpuptc.simulate(folder, vendor=vendor, size="full", pairs=args.pairs, seed=41)
            for preset in args.presets.split(","):
                table = _one(sensor, preset)
                worst = (table["pixel/truth"] - 1).abs().max()
                print(
                    f"\n## {vendor} {preset}: per-pixel read noise within {100 * worst:.2f} % of "
                    f"truth on every amp (median {table['pixel/truth'].median():.4f}); PTC "
                    f"over expected median {table['PTC/expected'].median():.4f}, |z| at most "
                    f"{table['z'].abs().max():.2f}; PTC over truth median "
                    f"{table['PTC/truth'].median():.4f} ({time.perf_counter() - started:.0f} s)"
                )
                print(table.round(4).to_string())


if __name__ == "__main__":
    main()

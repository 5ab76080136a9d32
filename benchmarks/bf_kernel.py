"""What solving a sensor's brighter-fatter kernels costs, against measuring its pairs.

A full-size e2v sensor of 16 pairs (the simulator's brighter-fatter on, covariances to lag
9 as the presets measure them): the seconds to measure its pairs (``gpuptc.measure`` on
NumPy, the second of two, in a subprocess) by a baseline commit (default ``17aa5e2``, the
one before issue 33) and by this checkout, and the best of three solves of its 16 kernels
by each method (``gpuptc.fitting.bf_sensor.sensor_bf_kernels``, after the PTC fit with the
full covariance model, which two methods take their input from).

Usage: ``python benchmarks/bf_kernel.py [--baseline COMMIT]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from pathlib import Path

import gpuptc
from baseline import measure_against
from gpuptc.config import BrighterFatterConfig
from gpuptc.fitting.bf_sensor import sensor_bf_kernels

METHODS = {
    "averaged": {},
    "quadratic": {"correlation_quadratic_fit": True},
    "amatrix": {"use_amatrix": True},
    "cov_model_sample": {"use_cov_model_sample": True},
}


def _best(solve, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = solve()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="17aa5e2")
    args = parser.parse_args()
    print(f"# {platform.node()}, {os.cpu_count()} cores, full-size e2v, 16 pairs")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        raws = folder / "raws"
        gpuptc.simulate(raws, vendor="e2v", pairs=16, biases=0, seed=5, workers=os.cpu_count())
        before, now = measure_against(args.baseline, raws, folder)
        pairs, covariances = gpuptc.measure(gpuptc.ingest([raws]), backend="numpy")
        ptc, fullcov, fitted = gpuptc.fit(pairs, covariances, models=["expapprox", "fullcov"])
    print("| step | seconds | over measuring |")
    print("|---|---|---|")
    print(f"| measure, baseline {args.baseline} | {before:.2f} | |")
    print(f"| measure, this checkout | {now:.2f} | 1 |")
    for name, fields in METHODS.items():
        config = dataclasses.replace(BrighterFatterConfig(), **fields)
        seconds, kernels = _best(
            lambda c=config: sensor_bf_kernels(fitted, covariances, ptc, fullcov, c)
        )
        solved = int((kernels["status"] == "ok").sum())
        valid = int(kernels["valid"].sum())
        print(
            f"| kernels, {name} (16 amps: {solved} solved, {valid} valid) "
            f"| {seconds:.3f} | {seconds / now:.2%} |"
        )


if __name__ == "__main__":
    main()

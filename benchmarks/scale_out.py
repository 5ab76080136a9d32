"""Throughput of ``gpuptc run`` with 1 and 2 Dask workers, and a focal-plane projection.

Simulates (or reuses) several sensors under ``benchmarks/data/scale_out``, runs the whole
job in process, on a local cluster of 1 worker and of 2 workers (``--force`` each time, no
report), and prints sensors per minute and pairs per second for each, plus a projection
of a full focal plane (189 sensors) from the measured per-pair time.

Usage: ``python benchmarks/scale_out.py [--sensors 4] [--pairs 12] [--size medium]``
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

import gpuptc
from gpuptc.simulation.simulate import simulate

DATA = Path(__file__).parent / "data" / "scale_out"
MODELS = ["expapprox", "rhl", "quadratic", "linear", "powerlaw"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--size", default="medium", choices=["small", "medium", "full"])
    args = parser.parse_args()
    for k in range(args.sensors):
        simulate(
            DATA / f"{args.size}-{k}",
            vendor="e2v" if k % 2 == 0 else "itl",
            size=args.size,
            pairs=args.pairs,
            biases=0,
            seed=300 + k,
            reuse=True,
        )
    inputs = [DATA / f"{args.size}-{k}" for k in range(args.sensors)]
    total_pairs = args.sensors * args.pairs
    print(
        f"{platform.machine()}, {os.cpu_count()} cores; {args.sensors} {args.size} sensors "
        f"x {args.pairs} pairs"
    )
    print("| mode | seconds | sensors / minute | pairs / second | speed-up |")
    print("|---|---|---|---|---|")
    timings = {}
    for label, workers in (("in process", None), ("1 Dask worker", 1), ("2 Dask workers", 2)):
        started = time.perf_counter()
        result = gpuptc.run(
            inputs,
            DATA / f"out-{label.replace(' ', '-')}",
            backend="numpy",
            report=False,
            models=MODELS,
            workers=workers,
            force=True,
        )
        seconds = time.perf_counter() - started
        assert result.exit_code == 0, result.rejected
        timings[label] = seconds
        print(
            f"| {label} | {seconds:.1f} | {60 * args.sensors / seconds:.1f} | "
            f"{total_pairs / seconds:.2f} | {timings['in process'] / seconds:.2f} |"
        )
    per_pair = timings["2 Dask workers"] * 2 / total_pairs  # worker-seconds per pair
    print(f"\nMeasured cost: {per_pair:.2f} worker-seconds per {args.size} pair.")
    for pairs in (100, 400):
        for nodes in (1, 10, 50):
            waves = math.ceil(189 / (nodes * 2))
            hours = waves * pairs * per_pair / 3600
            print(
                f"focal plane, {pairs} pairs per sensor, {nodes} such 2-core nodes: "
                f"{hours:.1f} h at this per-pair cost"
            )


if __name__ == "__main__":
    main()

"""The cost per sensor of ``gpuptc run`` over a simulated focal plane, stage by stage (issue 35).

Simulates LSSTCam's focal plane (:func:`gpuptc.simulation.focal_plane.simulate_focal_plane`:
small amps, every exposure shared, files named and foldered as the camera writes them)
once per size, then runs ``gpuptc run`` with its defaults (report on) in a subprocess per
size and mode (in process, or ``--workers`` Dask workers), and prints the wall time per
sensor of the run and of each stage (``run.json``'s ``seconds_by_stage``; the sensors'
own stages are summed over sensors, so per sensor they are CPU-ish time), the report
folder's size, the client's peak memory and the largest peak of the processes it started
(Dask workers, drawing processes).

Usage: ``python benchmarks/focal_plane.py [--sizes 1 16] [--pairs 8] [--workers 0 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from gpuptc.simulation.focal_plane import simulate_focal_plane

RUN = """
import json, resource, sys, time
import gpuptc
started = time.perf_counter()
workers = int(sys.argv[3]) or None
gpuptc.run(sys.argv[1], sys.argv[2], workers=workers, force=True)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak, "child_peak_mb": child}))
"""


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _timed(plane: Path, out: Path, workers: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(plane), str(out), str(workers)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    provenance = json.loads((out / "run.json").read_text())
    return measured | {
        "stages": provenance["seconds_by_stage"],
        "report_mb": _folder_mb(out / "report"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    print(
        f"# {platform.node()}, {os.cpu_count()} cores; small sensors, {args.pairs} pairs, 2 biases"
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            plane = simulate_focal_plane(Path(folder) / f"plane-{size}", size, pairs=args.pairs)
            for workers in args.workers:
                result = _timed(plane.directory, Path(folder) / f"out-{size}-{workers}", workers)
                rows.append((size, workers, result))
    stages = sorted({stage for _, _, r in rows for stage in r["stages"]})
    mode = {0: "in process"}
    head = "| sensors | mode | s per sensor | peak MB | largest child MB | report MB | "
    print(head + " | ".join(stages) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(stages))
    for size, workers, result in rows:
        per = [f"{result['stages'].get(s, 0.0) / size:.3f}" for s in stages]
        label = mode.get(workers, f"{workers} Dask workers")
        print(
            f"| {size} | {label} | {result['seconds'] / size:.2f} | {result['peak_mb']:.0f} | "
            f"{result['child_peak_mb']:.0f} | {result['report_mb']:.1f} | " + " | ".join(per) + " |"
        )


if __name__ == "__main__":
    main()

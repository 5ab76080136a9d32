"""A focal-plane run killed halfway, resumed, and run again with nothing changed (issue 35).

Simulates LSSTCam's focal plane (``--sensors`` detectors, small amps, 8 pairs), then runs
``gpuptc run --no-report`` with its defaults three ways: uninterrupted; killed (SIGKILL)
once half the sensors are stored, then run again; and once more with nothing changed.
Prints the wall time of each, how many sensors the resumed run recomputed and the second
reused, and whether the resumed run's tables equal the uninterrupted run's.

Usage: ``python benchmarks/resume_at_scale.py [--sensors 189]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from gpuptc.schema import SENSORS_DIR
from gpuptc.simulation.focal_plane import simulate_focal_plane

TABLES = ("manifest", "pairs", "covariances", "ptc", "fullcov", "verdict", "focal_plane")


def _command(inputs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "gpuptc", "run", str(inputs), "--out", str(out),
            "--no-report", "-q"]  # fmt: skip


def _timed_run(inputs: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(_command(inputs, out), check=True, capture_output=True)
    return time.perf_counter() - started


def _stored(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (out / SENSORS_DIR).glob("*/done.json")}


def _killed_at(inputs: Path, out: Path, stored: int) -> int:
    """Run, kill once ``stored`` sensors are stored; how many were."""
    process = subprocess.Popen(
        _command(inputs, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while process.poll() is None and len(_stored(out)) < stored:
            time.sleep(0.1)
    finally:
        process.kill()
        process.wait()
    return len(_stored(out))


def _table(out: Path, name: str) -> pd.DataFrame:
    frame = pd.read_parquet(out / f"{name}.parquet")
    keys = [c for c in ("sensor", "pair", "amp", "model", "i", "j", "seqnum") if c in frame]
    return frame.sort_values(keys).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=189)
    args = parser.parse_args()
    print(f"# {platform.node()}, {os.cpu_count()} cores; {args.sensors} small sensors, 8 pairs")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        plane = simulate_focal_plane(root / "plane", args.sensors).directory
        whole = _timed_run(plane, root / "whole")
        killed_after = _killed_at(plane, root / "resumed", args.sensors // 2)
        before = _stored(root / "resumed")
        resumed = _timed_run(plane, root / "resumed")
        after = _stored(root / "resumed")
        kept = sum(after.get(p) == t for p, t in before.items())
        again = _timed_run(plane, root / "resumed")
        untouched = _stored(root / "resumed") == after
        for name in TABLES:
            pd.testing.assert_frame_equal(
                _table(root / "resumed", name), _table(root / "whole", name)
            )
    print(f"uninterrupted run: {whole:.1f} s")
    print(f"killed with {killed_after} sensors stored; the resumed run: {resumed:.1f} s, "
          f"{kept} stored sensors reused, {len(after) - kept} computed")  # fmt: skip
    print(f"run again with nothing changed: {again:.1f} s, every sensor reused: {untouched}")
    print(f"the resumed run's tables equal the uninterrupted run's: {', '.join(TABLES)}")


if __name__ == "__main__":
    main()

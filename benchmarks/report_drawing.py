"""The report's drawing cost and page weight per sensor, against a baseline commit.

One small simulated e2v sensor per pair count (seeded) is run with ``gpuptc run``'s
defaults (NumPy) twice in turn on this machine: by the baseline commit (a git worktree,
default ``cb33de4``, the commit before issue 31's report work, when every figure was a
matplotlib PNG) and by this checkout. Per sensor it prints

- figures: the drawing processes' time for the sensor's PNGs (``run.json``
  ``seconds_by_stage["figures (sensors)"]``);
- charts: this checkout only, the CPU time to build the sensor's charts and their data
  as the page holds them (``sensor_charts`` and ``data_json``, timed in this process on
  the run's tables);
- drawing: the two together, the cost issue 31 bounds at 0.5 s per sensor;
- report: the report stage (the pages; now also the chart library, once per report);
- page: the sensor page's bytes apart from its CCD images (the PNGs beside it count
  before, since every figure was one), which issue 31 bounds at 1 MB.

Usage: ``python benchmarks/report_drawing.py [--pairs 48,400] [--baseline cb33de4]``;
about a minute per pair count on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gpuptc
from gpuptc.fitting.solve import per_pair_gain_column
from gpuptc.formats.outputs import read_outputs
from gpuptc.report.charts import data_json, sensor_charts

_ROOT = Path(__file__).resolve().parents[1]


def _run(source: Path, raws: Path, out: Path) -> dict:
    """``gpuptc run`` with the package of ``source`` (its ``src``); what run.json says."""
    environment = {**os.environ, "PYTHONPATH": str(source / "src")}
    command = [sys.executable, "-m", "gpuptc", "run", str(raws), "--out", str(out), "-q"]
    subprocess.run(command, env=environment, check=True, capture_output=True)
    return json.loads((out / "run.json").read_text())


def _page_bytes(report: Path, images_count: bool) -> int:
    """The sensor page and, where the figures were PNGs, every figure but the CCD images."""
    page = (report / "index.html").stat().st_size
    if not images_count:
        return page
    figures = [p for p in (report / "figures").glob("*.png") if not p.name.startswith("images")]
    return page + sum(p.stat().st_size for p in figures)


def _chart_seconds(out: Path) -> float:
    """CPU seconds to build the sensor's charts and their page data from the run's tables."""
    tables = read_outputs(out)
    sensor = str(tables["ptc"]["sensor"].iloc[0])
    column = per_pair_gain_column(
        json.loads((out / "run.json").read_text())["configuration"]["solve"]["method"]
    )
    started = time.process_time()
    for chart in sensor_charts(sensor, tables, tables["verdict"], column):
        data_json(chart.data)
    return time.process_time() - started


def _row(name: str, stages: dict, charts: float, page: int) -> str:
    figures = stages.get("figures (sensors)", 0.0)
    return (
        f"| {name} | {figures:.2f} | {charts:.2f} | {figures + charts:.2f} | "
        f"{stages['report']:.2f} | {page:,} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="48,400")
    parser.add_argument("--baseline", default="cb33de4")
    args = parser.parse_args()
    print(f"# {platform.node()}, {os.cpu_count()} cores, baseline {args.baseline}")
    print("| run | figures (s) | charts (s) | drawing (s) | report (s) | page (bytes) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        baseline = folder / "baseline"
        subprocess.run(
            [
                "git",
                "-C",
                str(_ROOT),
                "worktree",
                "add",
                "-q",
                "--detach",
                str(baseline),
                args.baseline,
            ],
            check=True,
        )
        try:
            for pairs in map(int, args.pairs.split(",")):
                raws = folder / f"raws{pairs}"
                gpuptc.simulate(raws, vendor="e2v", size="small", pairs=pairs, seed=3)
                before = _run(baseline, raws, folder / f"before{pairs}")
                print(
                    _row(
                        f"{args.baseline}, {pairs} pairs",
                        before["seconds_by_stage"],
                        0.0,
                        _page_bytes(folder / f"before{pairs}" / "report", True),
                    )
                )
                now = _run(_ROOT, raws, folder / f"now{pairs}")
                charts = _chart_seconds(folder / f"now{pairs}")
                print(
                    _row(
                        f"this checkout, {pairs} pairs",
                        now["seconds_by_stage"],
                        charts,
                        _page_bytes(folder / f"now{pairs}" / "report", False),
                    )
                )
        finally:
            subprocess.run(
                ["git", "-C", str(_ROOT), "worktree", "remove", "--force", str(baseline)],
                check=True,
            )


if __name__ == "__main__":
    main()

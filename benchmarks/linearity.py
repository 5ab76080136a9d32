"""Linearity on sensors with a known non-linearity, and what solving it costs.

Two parts, each printing a Markdown table for ``RESULTS.md``:

``truth`` (default: medium e2v and ITL sensors, 60 pairs evenly spaced in signal, the
simulator's non-linearity and photodiode readings): ``gpuptc run`` with the
``cp_pipe_lsstcam`` preset (photodiode charges) and a ``Spline`` linearizer solved first
(``linearizer="first"``), then per amp

- the residual non-linearity each linearizer type leaves: the simulator's response
  (``gpuptc.simulation.nonlinearity.response``) at 400 linear signals from 5 000 ADU to
  the brightest pair the amp's fit kept (at most 90 % of its full well, above which its
  brightest pixels clip; Polynomial and Squared at most their ``max_linear_adu``),
  corrected by the fitted linearizer, over the linear signal, normalised by its median:
  the largest deviation from 1 (Spline; Polynomial and Squared solved on the same pairs);
  for the Spline also up to the linearity turnoff, beyond pairs its fit rejected;
- the PTC gain (EXPAPPROXIMATION) over the simulated gain, measured on linearized pixels
  and, from a plain run of the same raws, on raw pixels.

``cost`` (a full-size 16-pair e2v sensor, evenly spaced in signal): the seconds to measure
its pairs (``measure``), to solve its linearity from the measured pairs for each type, and
of a whole run plain and with ``linearizer="first"``; measuring also by a baseline commit
(a git worktree, default ``265f517``, the commit before issue 32) in a subprocess, for the
same raws.

``solve`` (a medium e2v sensor of 60 pairs evenly spaced in signal, measured and fitted
once): the seconds to solve its linearity for each type, best of three, by a baseline
commit that solved one amp after another (``--baseline``) and by this checkout, which
solves all amps at once; both on NumPy, in subprocesses.

Usage: ``python benchmarks/linearity.py [truth|cost|solve] [--size medium] [--pairs 40]
[--baseline COMMIT]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import gpuptc
from baseline import ROOT, baseline_tree, measure_against
from gpuptc.config import get_preset
from gpuptc.fitting.linearity_sensor import sensor_linearity
from gpuptc.kernels.linearize import apply_linearizer
from gpuptc.products.linearizer import linearity_linearizers
from gpuptc.simulation.nonlinearity import response

SPLINE = {"linearity__linearity_type": "Spline"}
LOWEST = 5000.0
"""The faintest signal (ADU) at which the residual is taken (as the suite's test)."""
CLIPPING = 0.9
"""Above this fraction of the full well the brightest pixels of an amp clip."""


def _worst_residual(row: pd.Series, truth: pd.Series, config, table, upto: str = "fitted") -> float:
    """The largest fractional deviation of the corrected response, from :data:`LOWEST` to
    the brightest pair the fit kept (``fitted``) or to the linearity turnoff."""
    top = min(row["turnoff"], CLIPPING * truth["full_well_adu"])
    if upto == "fitted":
        signal, kept = np.asarray(row["input_ordinate"]), np.asarray(row["input_mask"], bool)
        top = min(top, float(np.max(signal[kept])))
    if row["type"] != "Spline":
        top = min(top, config.max_linear_adu)
    linear = np.linspace(LOWEST, top, 400)
    raw = response(linear, truth, float(truth["full_well_adu"]))
    corrected = apply_linearizer(row["type"], np.asarray(row["coefficients"]), raw, table)
    ratio = corrected / linear
    return float(np.max(np.abs(ratio / np.median(ratio) - 1.0)))


def _residuals(out: Path, sim, kind: str, upto: str = "fitted") -> pd.Series:
    """Each amp's worst residual of linearizer ``kind`` solved from the run's pairs."""
    pairs, ptc = (pd.read_parquet(out / f"{n}.parquet") for n in ("pairs", "ptc"))
    config = dataclasses.replace(get_preset("cp_pipe_lsstcam").linearity, linearity_type=kind)
    if kind == "Spline":
        linearity = pd.read_parquet(out / "linearity.parquet")
    else:
        linearity = sensor_linearity(pairs, ptc, config)
    tables = linearity_linearizers(linearity, config.max_lookup_table_adu)
    truth = sim.truth.set_index("amp")
    worst = {}
    for row in linearity.itertuples():
        if row.status != "ok":
            continue
        table = tables[row.segment].table
        worst[row.amp] = _worst_residual(
            pd.Series(row._asdict()), truth.loc[row.amp], config, table, upto
        )
    return pd.Series(worst)


def _gain_ratios(out: Path, sim) -> pd.Series:
    ptc = pd.read_parquet(out / "ptc.parquet")
    fitted = ptc[ptc.model == "expapprox"].set_index("amp").gain
    return fitted / sim.truth.set_index("amp").gain


def truth(size: str, pairs: int) -> None:
    print(f"# {platform.node()}, {os.cpu_count()} cores, {size} sensors, {pairs} pairs")
    print(
        "| vendor | Spline worst residual (max over amps): fitted range, to the turnoff "
        "| Polynomial | Squared | gain/truth linearized: median, worst "
        "| raw pixels: median, worst |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for vendor, seed in (("e2v", 41), ("itl", 42)):
            raws = Path(folder) / f"raw-{vendor}"
            sim = gpuptc.simulate(
                raws, vendor=vendor, size=size, pairs=pairs, biases=0, seed=seed,
                nonlinearity=True, photodiode=True, spacing="linear", workers=os.cpu_count(),
            )  # fmt: skip
            runs = {}
            for name, first in (("linearized", True), ("raw", False)):
                runs[name] = Path(folder) / f"{vendor}-{name}"
                gpuptc.run(
                    raws, runs[name], preset="cp_pipe_lsstcam", backend="numpy",
                    models=["expapprox"], report=False,
                    linearizer="first" if first else None, **SPLINE,
                )  # fmt: skip
            worst = {
                k: _residuals(runs["linearized"], sim, k)
                for k in ("Spline", "Polynomial", "Squared")
            }
            to_turnoff = _residuals(runs["linearized"], sim, "Spline", "turnoff")
            linearized, raw = (
                np.abs(_gain_ratios(runs[n], sim) - 1) for n in ("linearized", "raw")
            )
            print(
                f"| {vendor} | {worst['Spline'].max():.2e}, {to_turnoff.max():.2e} "
                f"| {worst['Polynomial'].max():.2e} "
                f"| {worst['Squared'].max():.2e} "
                f"| {linearized.median():.2%}, {linearized.max():.2%} "
                f"| {raw.median():.2%}, {raw.max():.2%} |"
            )


def cost(baseline: str) -> None:
    print(f"# {platform.node()}, {os.cpu_count()} cores, full-size e2v, 16 pairs")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        raws = folder / "raws"
        gpuptc.simulate(
            raws, vendor="e2v", pairs=16, biases=0, seed=5, nonlinearity=True, photodiode=True,
            spacing="linear", workers=os.cpu_count(),
        )  # fmt: skip
        before, now = measure_against(baseline, raws, folder)
        measured = gpuptc.measure(gpuptc.ingest([raws]), preset="cp_pipe_lsstcam", backend="numpy")
        ptc, _, fitted = gpuptc.fit(measured.pairs, measured.covariances, models=["expapprox"])
        print("| step | seconds | over measuring |")
        print("|---|---|---|")
        print(f"| measure, baseline {baseline} | {before:.2f} | |")
        print(f"| measure, this checkout | {now:.2f} | 1 |")
        preset = get_preset("cp_pipe_lsstcam").linearity
        for kind in ("Squared", "Polynomial", "LookupTable", "Spline"):
            config = dataclasses.replace(preset, linearity_type=kind)
            started = time.perf_counter()
            solved = sensor_linearity(fitted, ptc, config)
            seconds = time.perf_counter() - started
            ok = int((solved.status == "ok").sum())
            print(f"| solve {kind} (16 amps, {ok} solved) | {seconds:.3f} | {seconds / now:.2%} |")
        for first in (False, True):
            started = time.perf_counter()
            gpuptc.run(
                raws, folder / f"run-{first}", preset="cp_pipe_lsstcam", backend="numpy",
                report=False, linearizer="first" if first else None, **SPLINE,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            name = "run, linearity first then PTC linearized" if first else "run, plain"
            print(f"| {name} | {seconds:.2f} | {seconds / now:.2f} |")


_SOLVE = """
import sys, time, dataclasses, pandas as pd
from gpuptc.config import get_preset
from gpuptc.fitting.linearity_sensor import sensor_linearity
pairs, ptc = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
preset = get_preset("cp_pipe_lsstcam").linearity
for kind in ("Squared", "Polynomial", "LookupTable", "Spline"):
    config = dataclasses.replace(preset, linearity_type=kind)
    sensor_linearity(pairs, ptc, config)
    best = []
    for _ in range(3):
        t = time.perf_counter(); solved = sensor_linearity(pairs, ptc, config)
        best.append(time.perf_counter() - t)
    print(kind, min(best), int((solved.status == "ok").sum()))
"""


def _solve_seconds(source: Path, pairs: Path, ptc: Path) -> dict[str, tuple[float, int]]:
    """Each type's best-of-three seconds to solve a sensor's linearity, and amps solved, by
    the package of ``source`` (in a subprocess)."""
    environment = {**os.environ, "PYTHONPATH": str(source / "src")}
    done = subprocess.run(
        [sys.executable, "-c", _SOLVE, str(pairs), str(ptc)],
        env=environment, check=True, capture_output=True, text=True,
    )  # fmt: skip
    found = (line.split() for line in done.stdout.splitlines() if line.strip())
    return {kind: (float(seconds), int(ok)) for kind, seconds, ok in found}


def solve(baseline: str, size: str, pairs: int) -> None:
    """Solving a sensor's linearity per amp (``baseline``) and all amps at once (here)."""
    print(f"# {platform.node()}, {os.cpu_count()} cores, {size} e2v, {pairs} pairs, NumPy")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        raws = folder / "raws"
        gpuptc.simulate(
            raws, vendor="e2v", size=size, pairs=pairs, biases=0, seed=41, nonlinearity=True,
            photodiode=True, spacing="linear", workers=os.cpu_count(),
        )  # fmt: skip
        measured = gpuptc.measure(gpuptc.ingest([raws]), preset="cp_pipe_lsstcam", backend="numpy")
        ptc, _, fitted = gpuptc.fit(measured.pairs, measured.covariances, models=["expapprox"])
        fitted.to_parquet(folder / "pairs.parquet")
        ptc.to_parquet(folder / "ptc.parquet")
        tables = folder / "pairs.parquet", folder / "ptc.parquet"
        with baseline_tree(baseline, folder) as worktree:
            before = _solve_seconds(worktree, *tables)
        now = _solve_seconds(ROOT, *tables)
    print(f"| type | per amp ({baseline}), s | all amps at once, s | ratio | amps solved |")
    print("|---|---|---|---|---|")
    for kind, (seconds, ok) in now.items():
        old, old_ok = before[kind]
        print(f"| {kind} | {old:.3f} | {seconds:.3f} | {seconds / old:.2f} | {old_ok}, {ok} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", default="truth", choices=["truth", "cost", "solve"])
    parser.add_argument("--size", default="medium")
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--baseline", default="265f517")
    args = parser.parse_args()
    if args.part == "truth":
        truth(args.size, args.pairs)
    elif args.part == "solve":
        solve(args.baseline, args.size, args.pairs)
    else:
        cost(args.baseline)


if __name__ == "__main__":
    main()

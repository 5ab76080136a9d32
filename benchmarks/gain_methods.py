"""Which gain method to trust: the seed notebook's open question, answered on simulated data.

The notebook saw its per-pixel ("Welcome to PTC") gains and its PTC-slope gains separated by
a near-constant factor. This script simulates sensors with known truth and changes one
thing at a time (read noise, brighter-fatter, illumination mismatch between the two flats,
overscan mode, fit range), then reports, for every method, the median over amplifiers of
gain / true gain (and the smallest and largest ratio), plus the per-pair gain against
signal. Everything is written to ``benchmarks/GAIN_METHODS.md``.

Usage: ``python benchmarks/gain_methods.py [--size medium|small] [--pairs 24]`` (or
``make study``); about three minutes on two cores.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

import gpuptc

RESULTS = Path(__file__).parent / "GAIN_METHODS.md"

CASES: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    ("baseline (cp_pipe statistics)", {}, "cp_pipe", {}),
    ("the notebook's statistics (seed preset: no clipping)", {}, "seed", {}),
    ("read noise x 3 (12-24 e-)", {"read_noise_scale": 3.0}, "cp_pipe", {}),
    ("no brighter-fatter", {"brighter_fatter": False}, "cp_pipe", {}),
    ("no illumination mismatch within pairs", {"pair_mismatch": 0.0}, "cp_pipe", {}),
    ("1 % illumination mismatch within pairs", {"pair_mismatch": 0.01}, "cp_pipe", {}),
    (
        "overscan: one mean per amp, no parallel",
        {},
        "cp_pipe",
        {"isr__serial_overscan": "MEAN", "isr__parallel_overscan": "NONE"},
    ),
    ("linear fit on the bright half [12:-4]", {}, "cp_pipe", {"solve__linear_points": (12, -4)}),
    ("linear fit on the faint end [2:8]", {}, "cp_pipe", {"solve__linear_points": (2, 8)}),
]

METHODS = ["expapprox", "fullcov_nob", "linear", "quadratic", "powerlaw", "rhl"]


def _run_case(
    directory: Path,
    size: str,
    pairs: int,
    sim: dict[str, Any],
    preset: str,
    overrides: dict[str, Any],
):
    sensor = gpuptc.simulate(
        directory, vendor="e2v", size=size, pairs=pairs, biases=3, seed=5, **sim
    )
    manifest = gpuptc.ingest([directory])
    measured, covariances = gpuptc.measure(
        manifest, preset=preset, backend="numpy", extract__gain_correction="FULL", **overrides
    )
    # cp_pipe's selection (outliers, turnoff) decides which pairs are "used"
    solve = {k: v for k, v in overrides.items() if k.startswith("solve__")}
    ptc, _, fitted = gpuptc.fit(
        measured, covariances, preset="cp_pipe", models=METHODS, fullcov_size=5, **solve
    )
    truth = sensor.truth.set_index("amp")["gain"]
    ratios = {}
    for method in METHODS:
        gains = ptc[ptc.model == method].set_index("amp")["gain"]
        ratios[method] = gains / truth
    # the notebook's own choice: the median per-pixel gain over every pair, saturated ones too
    ratios["rhl, every pair (notebook)"] = fitted.groupby("amp")["notebook_gain"].median() / truth
    ratios["per-pair gain, read-noise corrected"] = (
        fitted[fitted.used].groupby("amp")["cp_pipe_gain"].median() / truth
    )
    return ratios, fitted.join(truth.rename("true_gain"), on="amp")


def _markdown(frame: pd.DataFrame, index: bool = False) -> str:
    if index:
        frame = frame.reset_index()
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _cell(ratio: pd.Series) -> str:
    return f"{ratio.median():.3f} ({ratio.min():.3f}-{ratio.max():.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="medium", choices=["small", "medium", "full"])
    parser.add_argument("--pairs", type=int, default=24)
    args = parser.parse_args()
    started = time.monotonic()
    rows = []
    baseline_pairs = None
    with tempfile.TemporaryDirectory() as tmp:
        for k, (label, sim, preset, overrides) in enumerate(CASES):
            ratios, fitted = _run_case(
                Path(tmp) / f"case{k}", args.size, args.pairs, sim, preset, overrides
            )
            rows.append({"case": label, **{m: _cell(r) for m, r in ratios.items()}})
            if baseline_pairs is None:
                baseline_pairs = fitted
            print(f"{label}: done ({time.monotonic() - started:.0f} s)", flush=True)
    table = pd.DataFrame(rows)
    assert baseline_pairs is not None
    electrons = baseline_pairs["mean"] * baseline_pairs["true_gain"]
    baseline_pairs["signal_e"] = electrons
    baseline_pairs["rhl_ratio"] = baseline_pairs["notebook_gain"] / baseline_pairs["true_gain"]
    baseline_pairs["corrected_ratio"] = baseline_pairs["cp_pipe_gain"] / baseline_pairs["true_gain"]
    per_pair = (
        baseline_pairs.groupby("pair")
        .agg(
            signal_e=("signal_e", "median"),
            rhl=("rhl_ratio", "median"),
            corrected=("corrected_ratio", "median"),
            used=("used", "mean"),
        )
        .round({"signal_e": 0, "rhl": 3, "corrected": 3, "used": 2})
    )
    text = [
        "# Gain methods on simulated sensors with known truth",
        "",
        f"`python benchmarks/gain_methods.py --size {args.size} --pairs {args.pairs}`, "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{time.monotonic() - started:.0f} s. One e2v sensor per case (seed 5, {args.size} "
        f"amplifiers, {args.pairs} pairs from 1 000 e- to 1.3 x full well), measured with the "
        "`cp_pipe` preset unless the case says otherwise, fitted with cp_pipe's selection "
        "(outliers, turnoff); `rhl` and the corrected per-pair gain are medians over the pairs "
        "that selection keeps, `rhl, every pair` over all pairs as the notebook did.",
        "",
        "Median over the 16 amplifiers of gain / true gain (smallest-largest in brackets):",
        "",
        _markdown(table),
        "",
        "Per-pair gain / true gain against signal, baseline case (median over amplifiers; "
        "`used` is the fraction of amplifiers whose fit kept the pair):",
        "",
        _markdown(per_pair, index=True),
        "",
    ]
    RESULTS.write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()

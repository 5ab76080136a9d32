"""Cost of the PTC fits of one sensor against the number of pairs, measured in one process.

For each number of pairs a 16-amp e2v sensor is simulated at the medium size (the fits cost
the same whatever the pixels per amp: they see only the tables), measured, and fitted with
the default models and lags (``cp_pipe`` preset, 10 x 10 lags). Timed: the batched
full-covariance fits of the whole sensor (``fullcov``, ``fullcov_nob``), every other model,
and, as the baseline, MINPACK on the dense Jacobian amplifier by amplifier
(``tests/reference_fullcov.py`` with its default tolerances, as gpuptc fitted before).

Usage: ``python benchmarks/fits.py [--pairs 16,64,200] [--baseline-up-to 64]``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import gpuptc
from gpuptc.config import get_preset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import reference_fullcov

OTHERS = ["expapprox", "linear", "quadratic", "powerlaw", "rhl"]


def _tables(directory: Path, pairs: int):
    gpuptc.simulate(directory, vendor="e2v", size="medium", pairs=pairs, biases=0, seed=9)
    return gpuptc.measure(gpuptc.ingest([directory]), backend="numpy")


def _timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def _baseline(pairs, covariances, with_b: bool) -> float:
    """MINPACK amplifier by amplifier, default tolerances, as gpuptc fitted before."""
    size = get_preset("cp_pipe").solve.fullcov_size
    inputs = reference_fullcov.fullcov_inputs(pairs, covariances)
    started = time.perf_counter()
    for arrays in inputs:
        reference_fullcov.fit_fullcov(*arrays, with_b=with_b, size=size, ftol=1.49012e-8)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="16,64,200")
    parser.add_argument("--baseline-up-to", type=int, default=64)
    args = parser.parse_args()
    rows = []
    for count in (int(n) for n in args.pairs.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            pairs, covariances = _tables(Path(tmp), count)
        row = {"pairs": count}
        for model in ("fullcov", "fullcov_nob"):
            row[model], (ptc, _, _) = _timed(gpuptc.fit, pairs, covariances, models=[model])
            row[f"{model} ok"] = int((ptc.status == "ok").sum())
        row["others"], _ = _timed(gpuptc.fit, pairs, covariances, models=OTHERS)
        if count <= args.baseline_up_to:
            row["baseline fullcov"] = _baseline(pairs, covariances, True)
            row["baseline fullcov_nob"] = _baseline(pairs, covariances, False)
        rows.append(row)
        print(row, flush=True)
    print(f"\n{platform.machine()}, {platform.python_version()}")
    header = [
        "pairs",
        "fullcov",
        "fullcov_nob",
        "others",
        "baseline fullcov",
        "baseline fullcov_nob",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [
            f"{row[h]:.2f} s" if isinstance(row.get(h), float) else str(row.get(h, "-"))
            for h in header
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

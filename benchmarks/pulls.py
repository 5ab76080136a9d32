"""Are the quoted errors right? Pulls (fit - truth) / error over many simulated sensors.

For each seed a medium sensor (16 amps of 256 x 1000 pixels, 24 pairs) is simulated,
measured and fitted; the pull of every amp's gain (and a00) under each model is collected.
Standard deviations near 1 mean the errors are right; the means show biases.

    python benchmarks/pulls.py --seeds 8
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd

import gpuptc
from gpuptc.simulation.simulate import simulate

MODELS = ["expapprox", "fullcov", "fullcov_nob", "quadratic", "rhl"]


def one_sensor(vendor: str, seed: int) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        sim = simulate(tmp, vendor=vendor, size="medium", pairs=24, biases=0, seed=seed)
        pairs, covs = gpuptc.measure(gpuptc.ingest([tmp]), backend="numpy")
    ptc, _, _ = gpuptc.fit(pairs, covs, models=MODELS, fullcov_size=5, fullcov_max_signal=1e5)
    truth = sim.truth[["amp", "gain", "a00"]].rename(
        columns={"gain": "gain_truth", "a00": "a00_truth"}
    )
    ptc = ptc.merge(truth, on="amp")
    ptc["gain_pull"] = (ptc["gain"] - ptc["gain_truth"]) / ptc["gain_err"]
    ptc["a00_pull"] = (ptc["a00"] - ptc["a00_truth"]) / ptc["a00_err"]
    ptc["vendor"], ptc["seed"] = vendor, seed
    return ptc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    start = time.perf_counter()
    frames = [
        one_sensor(vendor, 1000 + seed) for seed in range(args.seeds) for vendor in ("e2v", "itl")
    ]
    table = pd.concat(frames, ignore_index=True)
    table = table[table["status"] == "ok"]
    rows = []
    for model, group in table.groupby("model", sort=False):
        row = {"model": model, "amps": len(group)}
        for quantity in ("gain", "a00"):
            pulls = group[f"{quantity}_pull"].replace([np.inf, -np.inf], np.nan).dropna()
            if len(pulls):
                row[f"{quantity} pull mean"] = round(float(pulls.mean()), 2)
                row[f"{quantity} pull std"] = round(float(pulls.std()), 2)
        rows.append(row)
    frame = pd.DataFrame(rows)
    print("| " + " | ".join(frame.columns) + " |")
    print("|" + "---|" * len(frame.columns))
    for values in frame.itertuples(index=False):
        print("| " + " | ".join(str(v) for v in values) + " |")
    print(f"\n{args.seeds} seeds x 2 vendors in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

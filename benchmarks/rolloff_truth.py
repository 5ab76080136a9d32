"""Whether cp_pipe's rolloff model finds a planted rolloff where it was put (issue 34).

A medium sensor simulated with the simulator's soft saturation (``rolloff=True``): above a
knee at 0.8 of each amp's full well the charge is compressed with a length of 0.02 of it,
so the variance falls away from Astier's eq. 16 there. The knee in ADU is the truth's
``rolloff_adu``; its onset in a pair's mean, ``rolloff_onset_adu``, is where the brightest
1 % of the amp's pixels reach it. The pairs are spaced evenly in signal up to 0.95 of the
median full well (steps of about 1.3 % of the knee). Measured once; the EXPAPPROXIMATION
fit with the rolloff model under ``cp_pipe`` with ``solve.rolloff`` (maximum deviation
1 %) and under ``cp_pipe_lsstcam`` (0.5 %). Per amp: the knee and the onset, the first
pass's turnoff (the same in both) and each rolloff found, with their distances from the
onset.

Predicted before the first run: the variance leaves eq. 16 a little before the knee (a
pair's pixels spread by about sqrt(K) = 340 e- around its mean): 0.5 % of it lost some
2.5 spreads, 0.7 % of the knee, below it, so the rolloff within 2 % below the knee. The
first run found it 3.5-8 % below the knee: the prediction forgot the illumination pattern
(vignetting 3 %, tilts up to 2 % per amp, PRNU 0.5 %), which brings an amp's brightest
pixels to the knee while its mean is a few per cent below. Predicted before the second:
within 2 % of the onset, where the brightest 1 % of the pixels reach the knee.

Usage: ``python benchmarks/rolloff_truth.py [--pairs 90] [--vendor e2v]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import pandas as pd

import gpuptc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=90)
    parser.add_argument("--vendor", default="e2v")
    args = parser.parse_args()
    print(f"# {platform.node()}, {os.cpu_count()} cores, medium {args.vendor}, {args.pairs} pairs")
    with tempfile.TemporaryDirectory() as folder:
        sim = gpuptc.simulate(
            Path(folder) / "raw", vendor=args.vendor, size="medium", pairs=args.pairs,
            biases=0, seed=41, rolloff=True, spacing="linear", max_signal_over_full_well=0.95,
            cosmic_rays=False, workers=os.cpu_count(),
        )  # fmt: skip
        pairs, covariances = gpuptc.measure(gpuptc.ingest([sim.directory]), backend="numpy")
    truth = sim.truth.set_index("amp")
    found = {}
    for name, preset, options in (
        ("cp_pipe, rolloff on", "cp_pipe", {"solve__rolloff": True}),
        ("cp_pipe_lsstcam", "cp_pipe_lsstcam", {}),
    ):
        ptc, _, _ = gpuptc.fit(pairs, covariances, preset=preset, models=["expapprox"], **options)
        found[name] = ptc.set_index("amp")
    header = " | ".join(f"{n}: rolloff, from the onset" for n in found)
    print(f"| amp | knee, onset (ADU) | turnoff, from the onset | {header} |")
    print("|---|---|---|" + "---|" * len(found))
    summary = {n: [] for n in ["turnoff", *found]}
    for amp, row in truth.iterrows():
        turnoff = next(iter(found.values())).loc[amp, "turnoff"]
        summary["turnoff"].append(turnoff / row["rolloff_onset_adu"] - 1.0)
        cells = [f"{turnoff:.0f}, {summary['turnoff'][-1]:+.2%}"]
        for name, fits in found.items():
            off = fits.loc[amp, "rolloff"] / row["rolloff_onset_adu"] - 1.0
            summary[name].append(off)
            cells.append(f"{fits.loc[amp, 'rolloff']:.0f}, {off:+.2%}")
        knees = f"{row['rolloff_adu']:.0f}, {row['rolloff_onset_adu']:.0f}"
        print(f"| {amp} | {knees} | " + " | ".join(cells) + " |")
    for name, offs in summary.items():
        offs = pd.Series(offs)
        print(f"\n{name}: median {offs.median():+.2%}, worst {offs.abs().max():.2%}, "
              f"within 2 % on {int((offs.abs() <= 0.02).sum())} of {len(offs)} amps")  # fmt: skip


if __name__ == "__main__":
    main()

"""What cp_pipe's further PTC options cost when measuring (issue 34).

A full-size e2v sensor of 8 pairs: the seconds to measure its pairs (``gpuptc.measure`` on
NumPy, the second of two, each in a subprocess) by a baseline commit (default
``5f56396``, the one before issue 34), by this checkout with the presets' defaults, and by
this checkout with the Gaussianity test on (``extract.ks_test``), and with every new
option of the measuring pass on (:data:`EVERYTHING`; the auxiliary header values cost
nothing here, they are read with the headers).

Usage: ``python benchmarks/ptc_options.py [--baseline COMMIT] [--pairs 8]``; prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import gpuptc
from baseline import ROOT, measure_against, measure_seconds

EVERYTHING = (
    ", extract__ks_test=True, gain_ratios__adjust=True, extract__output_binned_images=True,"
    " extract__vignette_selection=True,"
    " extract__vignette_coefficients=gpuptc.config.LSSTCAM_VIGNETTING"
)
"""Every option of the measuring pass: the Gaussianity test, the gain ratios' binning,
both flats binned for output, LSSTCam's vignetting selection."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="5f56396")
    parser.add_argument("--pairs", type=int, default=8)
    args = parser.parse_args()
    print(f"# {platform.node()}, {os.cpu_count()} cores, full-size e2v, {args.pairs} pairs")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        raws = folder / "raws"
        gpuptc.simulate(raws, vendor="e2v", pairs=args.pairs, biases=0, seed=5,
                        workers=os.cpu_count())  # fmt: skip
        before, now = measure_against(args.baseline, raws, folder)
        tested = measure_seconds(ROOT, raws, ", extract__ks_test=True")
        everything = measure_seconds(ROOT, raws, EVERYTHING)
    print("| measuring | seconds | per pair | over the baseline |")
    print("|---|---|---|---|")
    for name, seconds in (
        (f"baseline {args.baseline}", before),
        ("this checkout, defaults", now),
        ("this checkout, ks_test on", tested),
        ("this checkout, everything on", everything),
    ):
        print(f"| {name} | {seconds:.2f} | {seconds / args.pairs:.3f} | {seconds / before:.3f} |")


if __name__ == "__main__":
    main()

"""Whether gpuptc's brighter-fatter kernels undo the effect they are derived from.

A simulated sensor with the simulator's brighter-fatter effect (each pixel shares charge
with its neighbours in proportion to the exposure's level, so that the variance follows
Astier's eq. 16 exactly; ``gpuptc.simulation.simulate.sharing_fractions``) is run plain
(``bfk.parquet``: each amp's kernel); then each flat's imaging pixels are corrected by its
amp's kernel as Rubin's ISR corrects them (``gpuptc.kernels.bf_correct``, in electrons by
the amp's gain), the correction added to a copy of the raw file's imaging section (rounded
to integers), and the copy is run again. Per amp, the slope of the per-pair gain
(``cp_pipe_gain``) against the pair mean over the pairs the PTC keeps, before and after,
with its standard error.

The prediction, written before running it: to first order in the sharing fraction ``f``
(about 0.02 at 30 000 e- for ``a00 = -2.5e-6``), the correction is
``0.5 * mu * (laplacian K) * delta`` on a pixel's fluctuation ``delta``, and the kernel's
Laplacian is the correlations over the flux squared (less the centre's zero sum): it
subtracts half of each neighbour's correlation coefficient times its fluctuation and adds
half their sum at the pixel, which is the inverse of the sharing to first order. The
per-pair gain's slope (|a00| g per ADU) should then fall by about 1 - O(f): 90-95 %,
the rest second order in ``f`` and the kernel's noise beyond lag 1 (the simulation has
correlations at lag 1 only; the kernel's other lags are noise).

The images' axes are (parallel, serial); the kernels are indexed as the covariances,
(serial, parallel), and are transposed to correct the images.

Usage: ``python benchmarks/bf_correction.py [--size medium] [--pairs 20]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
from pathlib import Path

import fitsio
import numpy as np
import pandas as pd
from scipy import stats

import gpuptc
from gpuptc.formats.writer import write_raw
from gpuptc.kernels.bf_correct import correct_brighter_fatter
from gpuptc.raws.exposure import read_raw

MODELS = ["expapprox"]


def _kernels(out: Path) -> dict[int, tuple[np.ndarray, float]]:
    """Each amp's kernel in the images' orientation, and its gain."""
    table = pd.read_parquet(out / "bfk.parquet")
    table = table[(table.segment != "DETECTOR") & (table.status == "ok")]
    found = {}
    for row in table.itertuples():
        size = int(row.size)
        kernel = np.asarray(row.kernel, float).reshape(size, size).T  # (parallel, serial)
        found[int(row.amp)] = (kernel, float(row.gain))
    return found


def _corrected_copy(path: Path, into: Path, kernels) -> None:
    """The raw file with each amp's imaging section corrected by its kernel."""
    raw = read_raw(path)
    pixels = raw.pixels.astype(np.float64)
    rows, columns = raw.geometry.imaging.slices()
    for k, amp in enumerate(raw.geometry.amps):
        if amp.amp not in kernels:
            continue
        kernel, gain = kernels[amp.amp]
        overscan = np.median(pixels[k][rows, columns.stop + 2 :])  # the serial overscan
        image = pixels[k][rows, columns] - overscan
        corrected, _ = correct_brighter_fatter(image[None], kernel[None], np.array([gain]))
        pixels[k][rows, columns] += corrected[0] - image
    with fitsio.FITS(str(path)) as f:
        header = f[0].read_header()
        primary = {
            key: header[key]
            for key in header.keys()
            if key not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND")
        }
        keys = ("EXTNAME", "CHANNEL", "DATASEC", "DETSEC")
        headers = [{key: f[i].read_header()[key] for key in keys} for i in range(1, 17)]
    write_raw(into / path.name, np.round(pixels).astype(np.int32), primary, headers)


def _slopes(out: Path) -> pd.DataFrame:
    """Per amp: the per-pair gain's slope against the mean (1/ADU of the gain) and error."""
    pairs = pd.read_parquet(out / "pairs.parquet")
    used = pairs[pairs.used.fillna(False).astype(bool)]
    rows = []
    for amp, mine in used.groupby("amp"):
        fit = stats.linregress(mine["mean"], mine["cp_pipe_gain"])
        gain = float(np.median(mine["cp_pipe_gain"]))
        rows.append({"amp": amp, "slope": fit.slope / gain, "error": fit.stderr / gain})
    return pd.DataFrame(rows).set_index("amp")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="medium")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--vendor", default="e2v")
    args = parser.parse_args()
    machine = f"{platform.node()}, {os.cpu_count()} cores"
    print(f"# {machine}, {args.size} {args.vendor}, {args.pairs} pairs")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        sim = gpuptc.simulate(
            folder / "raw", vendor=args.vendor, size=args.size, pairs=args.pairs, biases=0,
            seed=51, cosmic_rays=False, spacing="linear", workers=os.cpu_count(),
        )  # fmt: skip
        options = {"backend": "numpy", "models": MODELS, "report": False}
        gpuptc.run(sim.directory, folder / "plain", **options)
        kernels = _kernels(folder / "plain")
        corrected = folder / "corrected"
        corrected.mkdir()
        for path in sorted(sim.directory.glob("*.fits")):
            if path.name.startswith("MC_"):
                _corrected_copy(path, corrected, kernels)
            else:
                shutil.copy(path, corrected / path.name)
        gpuptc.run(corrected, folder / "after", **options)
        before, after = _slopes(folder / "plain"), _slopes(folder / "after")
        truth = sim.truth.set_index("amp")
    expected = (-truth["a00"] * truth["gain"]).rename("abs_a00_g")  # 1/ADU
    table = pd.concat([before.add_suffix("_before"), after.add_suffix("_after"), expected], axis=1)
    table["reduction"] = 1.0 - table["slope_after"] / table["slope_before"]
    table["after_in_errors"] = table["slope_after"] / table["error_after"]
    print(
        "| amp | |a00| g (1/ADU) | slope before | slope after (+- error) | reduction "
        "| after / error |"
    )
    print("|---|---|---|---|---|---|")
    for amp, row in table.iterrows():
        print(
            f"| {amp} | {row.abs_a00_g:.2e} | {row.slope_before:.2e} "
            f"| {row.slope_after:.2e} +- {row.error_after:.1e} | {row.reduction:.1%} "
            f"| {row.after_in_errors:.1f} |"
        )
    met = (table.reduction >= 0.8) | (table.after_in_errors.abs() <= 2.0)
    median = table.reduction.median()
    print(f"\nmedian reduction {median:.1%}; met on {int(met.sum())} of {len(table)} amps")


if __name__ == "__main__":
    main()

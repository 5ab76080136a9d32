"""Whether gpuptc's brighter-fatter kernels undo the effect they are derived from.

A simulated sensor with the simulator's brighter-fatter effect (each pixel shares charge
with its neighbours in proportion to the exposure's level, so that the variance follows
Astier's eq. 16 exactly; ``gpuptc.simulation.simulate.sharing_fractions``) is run plain
(``bfk.parquet``: each amp's kernel) with ``--bf-check``: each flat's imaging pixels are
corrected in the ISR of one more measuring pass as Rubin's ISR corrects them
(``gpuptc.fitting.bf_check``; in electrons by the amp's gain) by each amp's own kernel
(``--check amp``, the default) or by the detector's (``--check detector``: the clipped mean
of the valid amp kernels, as Rubin's ISR applies an amp-level kernel dataset). Per amp, the
slope of the per-pair gain (``rhl_gain``: the second flat scaled to the first, so that
their level mismatch does not bias it) against the pair mean over the pairs the PTC keeps,
before and after, with its standard error (``bfk.parquet``'s ``gain_slope`` and
``gain_slope_corrected``).

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

``--no-bf``: the same sensor simulated without the effect; its kernels (cp_pipe's default
averaged kernel) should be zero within their errors, taken by bootstrap over the pairs (the
pairs drawn again with replacement 200 times, every amp's kernel solved again each time):
per amp, the centre and the four nearest lags in units of their bootstrap spread, and the
fraction of all lags within two spreads of zero.

``--method amatrix``: the kernels of the full covariance fit's ``a`` matrix instead of the
averaged correlations.

Usage: ``python benchmarks/bf_correction.py [--size medium] [--pairs 20] [--no-bf]
[--method amatrix] [--check detector]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import gpuptc
from gpuptc.fitting.bf_check import MET_REDUCTION, MET_SIGMA
from gpuptc.fitting.bf_kernel import solve_kernels
from gpuptc.fitting.linearity_sensor import adopted_gains
from gpuptc.fitting.pair_arrays import covariance_cube, pair_grid

MODELS = ["expapprox"]


def _slopes(out: Path) -> pd.DataFrame:
    """Per amp: the slopes before and after (1/ADU of the gain) and their errors."""
    kernels = pd.read_parquet(out / "bfk.parquet")
    kernels = kernels[kernels.segment != "DETECTOR"].set_index("amp")
    columns = {
        "gain_slope": "slope_before",
        "gain_slope_err": "error_before",
        "gain_slope_corrected": "slope_after",
        "gain_slope_corrected_err": "error_after",
    }
    return kernels[[*columns, "valid"]].rename(columns=columns)


def _bootstrap(out: Path, draws: int = 200, seed: int = 3) -> None:
    """Each amp's kernel against its spread over pairs drawn again with replacement."""
    tables = {n: pd.read_parquet(out / f"{n}.parquet") for n in ("pairs", "covariances", "ptc")}
    pairs = tables["pairs"]
    order = np.sort(pairs["pair"].unique())
    amps = np.sort(pairs["amp"].unique())
    mean = pair_grid(pairs, "mean", amps, order, np.nan)
    used = pair_grid(pairs.assign(used=pairs["used"].fillna(False)), "used", amps, order, False)
    cov = covariance_cube(tables["covariances"], amps, order)
    gain = adopted_gains(tables["ptc"], "expapprox").reindex(amps).to_numpy(float)
    used = used.astype(bool)
    kernel = solve_kernels(cov, mean, gain, used).kernels
    rng = np.random.default_rng(seed)
    again = []
    for _ in range(draws):
        pick = rng.integers(0, len(order), len(order))
        again.append(solve_kernels(cov[:, pick], mean[:, pick], gain, used[:, pick]).kernels)
    spread = np.std(np.stack(again), axis=0)
    c = kernel.shape[-1] // 2
    print("| amp | K00 / spread | nearest four lags / spread | lags within 2 spreads |")
    print("|---|---|---|---|")
    within = []
    for k, amp in enumerate(amps):
        pull = kernel[k] / spread[k]
        near = [pull[c + 1, c], pull[c - 1, c], pull[c, c + 1], pull[c, c - 1]]
        within.append(np.mean(np.abs(pull) <= 2.0))
        text = ", ".join(f"{v:.1f}" for v in near)
        print(f"| {amp} | {pull[c, c]:.1f} | {text} | {within[-1]:.0%} |")
    print(f"\nall amps: {np.mean(within):.1%} of the lags within 2 spreads of zero")


def _simulated(folder: Path, args: argparse.Namespace, **extra):
    """The benchmark's sensor (the machine said first), with ``extra`` simulation options."""
    machine = f"{platform.node()}, {os.cpu_count()} cores"
    effect = "" if extra.get("brighter_fatter", True) else ", no brighter-fatter"
    print(f"# {machine}, {args.size} {args.vendor}, {args.pairs} pairs{effect}")
    return gpuptc.simulate(
        folder / "raw", vendor=args.vendor, size=args.size, pairs=args.pairs, biases=0,
        seed=51, cosmic_rays=False, spacing="linear", workers=os.cpu_count(), **extra,
    )  # fmt: skip


def _without_bf(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        sim = _simulated(folder, args, brighter_fatter=False)
        gpuptc.run(sim.directory, folder / "plain", backend="numpy", models=MODELS, report=False)
        _bootstrap(folder / "plain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="medium")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--vendor", default="e2v")
    parser.add_argument("--no-bf", action="store_true")
    parser.add_argument(
        "--check", default="amp", choices=["amp", "detector"],
        help="correct each amp by its own kernel or by the detector's",
    )  # fmt: skip
    parser.add_argument(
        "--method", default="averaged", choices=["averaged", "amatrix"],
        help="the kernels' pre-kernel: cp_pipe's default average, or the full fit's a matrix",
    )  # fmt: skip
    args = parser.parse_args()
    if args.no_bf:
        _without_bf(args)
        return
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        sim = _simulated(folder, args)
        options = {"backend": "numpy", "models": MODELS, "report": False}
        if args.method == "amatrix":
            options |= {"models": [*MODELS, "fullcov"], "brighter_fatter__use_amatrix": True}
        gpuptc.run(sim.directory, folder / "out", bf_check=args.check, **options)
        table = _slopes(folder / "out")
        truth = sim.truth.set_index("amp")
    expected = (-truth["a00"] * truth["gain"]).rename("abs_a00_g")  # 1/ADU
    table = table.join(expected)
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
    met = (table.reduction >= MET_REDUCTION) | (table.after_in_errors.abs() <= MET_SIGMA)
    median = table.reduction.median()
    print(f"\nmedian reduction {median:.1%}; met on {int(met.sum())} of {len(table)} amps")


if __name__ == "__main__":
    main()

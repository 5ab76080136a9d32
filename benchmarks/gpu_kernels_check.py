"""The fused CUDA kernels against the array-API reference kernels, on the device.

Hard cases (outliers, ties, NaN, all-equal and fully masked rows) in float32 and float64;
prints the largest differences and exits non-zero if any is beyond the tolerance of the
suite's tests. ``--small`` runs one tiny case (for compute-sanitizer, which is slow).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from gpuptc.backend import get_backend
from gpuptc.kernels import ArrayApiKernels


def _rows(rng: np.random.Generator, rows: int, n: int, dtype: type) -> tuple:
    values = rng.normal(20_000.0, 140.0, (rows, n))
    values[1 % rows, rng.random(n) < 0.01] += 30_000.0
    values[2 % rows] = np.round(values[2 % rows] / 50.0) * 50.0
    values[3 % rows] = 7.0
    values[4 % rows, ::17] = np.nan
    good = rng.random(values.shape) > 0.05
    good[-1] = False
    return values.astype(dtype), good


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="one tiny case")
    args = parser.parse_args()
    backend = get_backend("cupy", fused=True)
    reference = ArrayApiKernels(backend.xp)
    rng = np.random.default_rng(1)
    shape = (6, 300) if args.small else (64, 1_000_000)
    worst = 0.0
    for dtype in (np.float32, np.float64):
        values, good = _rows(rng, *shape, dtype)
        x, g = backend.asarray(values), backend.asarray(good)
        fused = [a.get() for a in backend.kernels.clipped_stats(x, g, nsigma=5.5, niter=3)]
        expected = [a.get() for a in reference.clipped_stats(x, g, nsigma=5.5, niter=3)]
        counts_equal = np.array_equal(fused[2], expected[2])
        with np.errstate(invalid="ignore"):
            rel = np.nanmax(np.abs(fused[1] / expected[1] - 1))
        worst = max(worst, rel if counts_equal else np.inf)
        print(
            f"clipping {np.dtype(dtype).name}: counts equal {counts_equal}, variance rel {rel:.2e}"
        )
        stack = np.round(rng.normal(1000.0, 5.0, (4, 16, 40 if args.small else 2048, 58)))
        stack = stack.astype(dtype)
        stack[0, 0, 3, 5] = np.nan
        got = backend.kernels.median(backend.asarray(stack), axis=-1).get()
        same = np.array_equal(got, np.median(stack, axis=-1), equal_nan=True)
        worst = max(worst, 0.0 if same else np.inf)
        print(f"row medians {np.dtype(dtype).name}: equal to numpy {same}")
    print(f"worst relative difference {worst:.2e}")
    return 0 if worst < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())

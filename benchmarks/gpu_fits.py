"""The batched full-covariance fit of one sensor on NumPy and on CuPy, timed in one process.

Covariances of 16 amplifiers are drawn from eq. 20 (a, b and the noise matrix of a typical
e2v amplifier, each amp's gain different) with the scatter of 1e6-pixel images at
``--pairs`` log-spaced means, then fitted by :func:`gpuptc.fitting.fullcov.fit_fullcov_batch` on
the ``numpy`` backend and, where CuPy sees a GPU, the ``cupy`` one (the first CuPy call compiles
its kernels and is timed apart). Prints the times and the largest gain difference between the two.

Usage: ``python benchmarks/gpu_fits.py [--pairs 200] [--size 10]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gpuptc.backend import BackendError, get_backend
from gpuptc.fitting.fullcov import evaluate, fit_fullcov_batch


def _sensor(pairs: int, size: int, seed: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    mean = np.geomspace(1e3, 9e4, pairs)
    lags = np.arange(size)
    distance = np.hypot(*np.meshgrid(lags, lags, indexing="ij"))
    a = 2e-7 / (1.0 + distance**3)
    a[0, 0] = -2.4e-6
    b = np.full((size, size), 1.5e-6)
    noise = np.zeros((size, size))
    noise[0, 0] = 30.0
    arrays = {"mean": [], "cov": [], "npix": [], "var": []}
    for gain in rng.uniform(0.7, 1.0, 16):
        cov = evaluate(mean, a, a * b, noise, gain)
        npix = np.full(cov.shape, 1e6)
        cov = cov + rng.normal(size=cov.shape) * cov[:, :1, :1] / np.sqrt(npix)
        for key, value in zip(arrays, (mean, cov, npix, cov[:, 0, 0]), strict=True):
            arrays[key].append(value)
    return [np.stack(v) for v in arrays.values()]


def _timed(backend, arrays, size):
    started = time.perf_counter()
    fits = fit_fullcov_batch(*arrays, with_b=True, size=size, backend=backend)
    return time.perf_counter() - started, fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--size", type=int, default=10)
    args = parser.parse_args()
    arrays = _sensor(args.pairs, args.size)
    seconds, reference = _timed("numpy", arrays, args.size)
    ok = sum(f.status == "ok" for f in reference)
    print(f"numpy: {seconds:.2f} s for 16 amps x {args.pairs} pairs ({ok} ok)")
    try:
        cupy = get_backend("cupy")
    except BackendError as exc:
        print(f"cupy: skipped ({exc})")
        return
    first, _ = _timed(cupy, arrays, args.size)
    seconds, fits = _timed(cupy, arrays, args.size)
    cupy.native.cuda.Device().synchronize()
    worst = max(abs(f.gain / r.gain - 1) for f, r in zip(fits, reference, strict=True))
    print(f"cupy: {seconds:.2f} s (first call {first:.2f} s); largest gain difference {worst:.1e}")


if __name__ == "__main__":
    main()

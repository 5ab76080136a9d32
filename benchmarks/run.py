"""gpuptc against its floors and a notebook-style baseline, measured in one process.

Generates (or reuses) full-size simulated flat pairs under ``benchmarks/data/`` and times,
per pair:

1. the read floor: every pixel of both files read with the fastest reader (gpuptc's
   memory-mapped copy for uncompressed files, fitsio for compressed ones) into a
   preallocated float32 buffer, nothing else;
2. the FFT floor: the zero-padded transforms the covariances of one pair need (per amp
   the forward transform of the difference image, the inverse of its power spectrum along
   y and, for the rows of the lags wanted, along x), with scipy.fft on every core;
3. a baseline written as the original notebook would be on NumPy, vectorised per amp:
   the same fastest reader, float32, median overscan, trim, means, variance of the scaled
   difference, per-pixel gain;
4. with ``--compress`` (RICE raws), decompression alone with 1 and 2 reader processes;
5. ``gpuptc.measure`` (reading included) with covariances off and on, for the preset(s)
   asked for, on NumPy (and CuPy when present); with ``--compress`` each with 1 and 2
   reader processes (``GPUPTC_READERS``).

Prints a table with the ratios gpuptc / read floor, gpuptc / (read + FFT floor) and
baseline / gpuptc, and the peak resident memory after each step.

Usage: ``python benchmarks/run.py [--pairs 4] [--vendor e2v|itl] [--compress] [--preset cp_pipe]
[--repeats 3]`` (baseline and gpuptc steps: median of the repeats).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import scipy.fft

import gpuptc
from gpuptc.measuring.stats import fft_shape
from gpuptc.raws.readers import start_reader_processes
from gpuptc.simulation.simulate import simulate

DATA = Path(__file__).parent / "data"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pairs(manifest) -> list[tuple[str, str]]:
    paired = manifest[manifest["status"] == "paired"].sort_values(["pair", "member"])
    return [tuple(group["path"]) for _, group in paired.groupby("pair", sort=True)]


def read_floor(pairs: list[tuple[str, str]], buffer: np.ndarray, repeats: int = 3) -> float:
    """Best of ``repeats``: every pixel of every file read into a float32 buffer, one file
    at a time, by the fastest reader available (``gpuptc.read_raw``: a memory-mapped copy
    for uncompressed files, fitsio for compressed ones; see ``io_readers.py``)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for pair in pairs:
            for member, path in enumerate(pair):
                gpuptc.read_raw(path, out=buffer[member])
        times.append((time.perf_counter() - start) / len(pairs))
    return min(times)


def fft_floor(ny: int, nx: int, lags: int, repeats: int = 3) -> float:
    """The transforms the covariances of one pair need, alone: best of ``repeats``.

    Per amplifier (one at a time, the fastest batching here): the forward transform of
    the masked difference image and the inverse of its power spectrum along y, then
    along x for the rows of the lags kept. (Partner sums and pair counts need no
    transform while few pixels are masked, see ``gpuptc.measuring.stats``.)
    """
    shape = fft_shape(ny, nx, lags)
    rows = [lag % shape[0] for lag in range(-lags + 1, lags)]
    image = np.random.default_rng(0).standard_normal((1, ny, nx))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(16):
            f_image = scipy.fft.rfftn(image, s=shape, axes=(-2, -1), workers=-1)
            power = f_image * f_image.conj()
            along_y = scipy.fft.ifft(power, axis=-2, workers=-1)[..., rows, :]
            scipy.fft.irfft(along_y, n=shape[1], axis=-1, workers=-1)
        times.append(time.perf_counter() - start)
    return min(times)


def decompression(pairs: list[tuple[str, str]], shape: tuple[int, ...], processes: int) -> float:
    """Seconds per pair to read every file with ``processes`` reader processes."""
    from gpuptc.raws.readers import FileReaders

    files = [path for pair in pairs for path in pair]
    with FileReaders((1, 2, *shape), count=1, processes=processes) as readers:
        for future in [readers.submit(0, 0, k % 2, files[k]) for k in range(processes)]:
            future.result()  # start the processes outside the timing
        start = time.perf_counter()
        futures = [readers.submit(0, 0, k % 2, path) for k, path in enumerate(files)]
        for future in futures:
            future.result()
        return (time.perf_counter() - start) / len(pairs)


def notebook_baseline(pairs: list[tuple[str, str]], geometry) -> float:
    """The notebook's per-amp analysis, vectorised per amp on NumPy, float32.

    Pixels come from the same fastest reader as the read floor, straight into float32.
    """
    rows, cols = geometry.imaging.slices
    overscan_cols = slice(geometry.amps[0].serial_overscan.x0, None)
    buffer = np.empty((16, *geometry.segment_shape), dtype=np.float32)
    start = time.perf_counter()
    for pair in pairs:
        images = []
        for path in pair:
            gpuptc.read_raw(path, out=buffer)
            amps = []
            for amp in range(16):
                segment = buffer[amp].copy()
                segment -= np.median(segment[:, overscan_cols])
                amps.append(segment[rows, cols])
            images.append(amps)
        for a1, a2 in zip(*images, strict=True):
            m1, m2 = a1.mean(dtype=np.float64), a2.mean(dtype=np.float64)
            diff = a1 - a2 * np.float32(m1 / m2)
            _ = np.var(diff, dtype=np.float64) / 2
            _ = 1.0 / np.mean((a1 - a2) ** 2 / (a1 + a2), dtype=np.float64)
    return (time.perf_counter() - start) / len(pairs)


def gpuptc_measure(manifest, preset: str, backend: str, cov_size: int, repeats: int) -> float:
    n_pairs = int(manifest.loc[manifest["status"] == "paired", "pair"].nunique())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        gpuptc.measure(manifest, preset=preset, backend=backend, cov_size=cov_size)
        times.append((time.perf_counter() - start) / n_pairs)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--vendor", default="e2v", choices=["e2v", "itl"])
    parser.add_argument("--compress", action="store_true", help="RICE-compressed raws")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    parser.add_argument("--preset", action="append", help="preset(s) to time (default cp_pipe)")
    args = parser.parse_args()
    presets = args.preset or ["cp_pipe"]
    storage = "rice" if args.compress else "int32"
    directory = DATA / f"run-{args.vendor}-{storage}-{args.pairs}"
    simulate(
        directory,
        vendor=args.vendor,
        pairs=args.pairs,
        biases=0,
        seed=21,
        storage=storage,
        reuse=True,
    )
    manifest = gpuptc.ingest([directory])
    pairs = _pairs(manifest)
    raw = gpuptc.read_raw(pairs[0][0])
    geometry = raw.geometry
    ny, nx = geometry.imaging.shape
    buffer = np.empty((2, 16, *geometry.segment_shape), dtype=np.float32)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy "
        f"{np.__version__}, scipy {scipy.__version__}; {len(pairs)} full-size {args.vendor} "
        f"pairs, {storage}"
    )
    rows = []
    read_s = read_floor(pairs, buffer)
    rows.append(("read floor (fastest reader)", read_s, _rss_mb()))
    fft_s = fft_floor(ny, nx, 10)
    rows.append(("FFT floor (scipy.fft, all cores)", fft_s, _rss_mb()))
    baseline_s = statistics.median(
        [notebook_baseline(pairs, geometry) for _ in range(args.repeats)]
    )
    rows.append(("notebook-style baseline", baseline_s, _rss_mb()))
    if args.compress:
        for processes in (1, 2):
            seconds = decompression(pairs, buffer.shape[1:], processes)
            rows.append((f"decompression, {processes} reader processes", seconds, _rss_mb()))
    backends = ["numpy"]
    try:
        gpuptc.backend.get_backend("cupy")
        backends.append("cupy")
    except gpuptc.backend.BackendError:
        pass
    start = time.perf_counter()
    gpuptc.measure(manifest[manifest["pair"].isin([0])], preset=presets[0], cov_size=10)
    print(f"first call (kernels loaded or compiled, one pair): {time.perf_counter() - start:.2f} s")
    readers = ["1", "2"] if args.compress else [None]
    for backend in backends:
        for preset in presets:
            for cov_size in (0, 10):
                for setting in readers:
                    label = f"gpuptc {preset} {backend}, covariances {'on' if cov_size else 'off'}"
                    if setting is not None:
                        os.environ["GPUPTC_READERS"] = setting
                        start_reader_processes(int(setting))
                        label += f", {setting} reader processes"
                    seconds = gpuptc_measure(manifest, preset, backend, cov_size, args.repeats)
                    rows.append((label, seconds, _rss_mb()))
    header = "| step | s per pair | / read floor | / (read + FFT) | baseline / step | peak RSS MB |"
    print(header)
    print("|---|---|---|---|---|---|")
    for label, seconds, rss in rows:
        print(
            f"| {label} | {seconds:.3f} | {seconds / read_s:.1f} | "
            f"{seconds / (read_s + fft_s):.2f} | {baseline_s / seconds:.2f} | {rss:.0f} |"
        )
    if not math.isfinite(read_s):
        raise SystemExit(1)


if __name__ == "__main__":
    main()

"""Timing of the compute core on full-size e2v stacks: copy, ISR + statistics, end to end.

Runs on any backend (``--backend numpy`` on a laptop); on CuPy the device work is timed
with CUDA events. Measured in one process, each against its floor:

- host-to-device copy of a batch of raw int32 pairs from pinned memory, and a
  device-to-device copy of the same bytes (the bandwidth floor);
- ISR + pair statistics with covariances off and on (median of repeats), reported as
  ms per pair and as raw-bytes bandwidth relative to the device copy;
- the largest relative difference to NumPy on one pair (float64 ISR);
- end to end: files written to disk, ``gpuptc.measure`` (reading overlapped with compute).

Usage: ``python benchmarks/gpu_bench.py [--backend cupy] [--pairs 8] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gpuptc.backend import Backend, get_backend, to_host
from gpuptc.config import get_preset
from gpuptc.measuring.compute import correct_and_measure
from gpuptc.raws.layout import LAYOUTS
from gpuptc.simulation.simulate import (
    SimulationConfig,
    exposure_plan,
    render_exposure,
    sensor_truth,
)


def _raw_pairs(pairs: int) -> np.ndarray:
    """Two distinct simulated pairs (mid and high flux), tiled to ``pairs``."""
    config = SimulationConfig(vendor="e2v", pairs=24, biases=0, seed=3)
    truth = sensor_truth(config)
    plan = exposure_plan(config, truth)
    distinct = [
        np.stack(
            [
                render_exposure(config, truth, plan[2 * k]),
                render_exposure(config, truth, plan[2 * k + 1]),
            ]
        )
        for k in (12, 18)
    ]
    return np.stack([distinct[i % 2] for i in range(pairs)])


def _timer(backend: Backend) -> Callable[[Callable[[], object], int], float]:
    if backend.name == "cupy":
        import cupy

        def timed(func: Callable[[], object], repeats: int) -> float:
            func()  # warm-up: kernel compilation, FFT plans, memory pool
            times = []
            for _ in range(repeats):
                start, stop = cupy.cuda.Event(), cupy.cuda.Event()
                start.record()
                func()
                stop.record()
                stop.synchronize()
                times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
            return statistics.median(times)

        return timed

    def timed_host(func: Callable[[], object], repeats: int) -> float:
        func()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            func()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return timed_host


def _pinned(host: np.ndarray, backend: Backend) -> np.ndarray:
    if backend.name != "cupy":
        return host
    import cupyx

    buffer = cupyx.empty_pinned(host.shape, dtype=host.dtype)
    buffer[...] = host
    return buffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--pairs", type=int, default=8, help="pairs per batch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--end-to-end-pairs", type=int, default=8)
    parser.add_argument(
        "--end-to-end-storage",
        nargs="+",
        default=["int32"],
        choices=["int32", "rice"],
        help="raw storage of the end-to-end runs (rice: decompressed by reader processes)",
    )
    args = parser.parse_args()
    backend = get_backend(args.backend)
    xp = backend.xp
    timed = _timer(backend)
    geometry = LAYOUTS["e2v"].sensor_geometry()
    host = _pinned(_raw_pairs(args.pairs), backend)
    nbytes = host.nbytes
    megabytes = nbytes / 1e6
    print(f"backend {backend.name}; {args.pairs} full-size e2v pairs, {megabytes:.0f} MB raw int32")

    copy_s = timed(lambda: backend.asarray(host), args.repeats)
    device = backend.asarray(host)
    d2d_s = timed(lambda: xp.asarray(device, copy=True), args.repeats)
    rows = [
        ("host-to-device copy", copy_s, nbytes / copy_s / 1e9),
        ("device-to-device copy (floor)", d2d_s, 2 * nbytes / d2d_s / 1e9),
    ]
    variants = [(backend, "")]
    if backend.name == "cupy":  # the fused CUDA kernels beside the array-API ones
        variants.append((get_backend("cupy", fused=True), ", fused CUDA kernels"))
    for chosen, suffix in variants:
        for label, cov_size in (
            ("ISR + statistics, no covariances", 0),
            ("ISR + statistics + covariances", 10),
        ):
            preset = get_preset("cp_pipe", cov_size=cov_size)

            def compute(preset=preset, chosen=chosen) -> object:
                return correct_and_measure(device, geometry, preset, chosen)[1].var

            seconds = timed(compute, args.repeats)
            rows.append((label + suffix, seconds, nbytes / seconds / 1e9))
    print("| step | ms per batch | ms per pair | GB/s of raw data | relative to device copy |")
    print("|---|---|---|---|---|")
    floor = rows[1][2]
    for label, seconds, bandwidth in rows:
        print(
            f"| {label} | {1e3 * seconds:.1f} | {1e3 * seconds / args.pairs:.2f} | "
            f"{bandwidth:.1f} | {bandwidth / floor:.2f} |"
        )

    preset = get_preset("cp_pipe", isr__dtype="float64")
    outputs = []
    for chosen in (backend, get_backend("numpy")):
        raw = chosen.asarray(np.asarray(host[:1]))
        _, stats = correct_and_measure(raw, geometry, preset, chosen)
        outputs.append(np.concatenate([to_host(stats.var).ravel(), to_host(stats.cov).ravel()]))
    worst = np.nanmax(np.abs(outputs[0] - outputs[1]) / np.abs(outputs[1]))
    print(f"largest relative difference to NumPy (var and covariances, float64): {worst:.2e}")
    if backend.name == "cupy":
        import cupy

        pool = cupy.get_default_memory_pool()
        print(
            f"device memory held by CuPy's pool after the runs: {pool.total_bytes() / 1e9:.2f} GB"
        )

    for storage in args.end_to_end_storage if args.end_to_end_pairs else ():
        _end_to_end(backend, args.end_to_end_pairs, storage)


def _end_to_end(backend: Backend, pairs: int, storage: str) -> None:
    import gpuptc
    from gpuptc.measuring.sensor import measure
    from gpuptc.simulation.simulate import simulate

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        simulate(Path(tmp), vendor="e2v", pairs=pairs, biases=0, seed=4, storage=storage)
        written = time.perf_counter() - start
        manifest = gpuptc.ingest([tmp])
        first = manifest[(manifest["status"] != "paired") | (manifest["pair"] == 0)]
        measure(first, preset="cp_pipe", backend=backend)  # kernels, plans, reader processes
        start = time.perf_counter()
        table, _ = measure(manifest, preset="cp_pipe", backend=backend)
        seconds = time.perf_counter() - start
    print(
        f"end to end ({pairs} pairs, {storage} files, page cache, after a one-pair warm-up, "
        f"simulated in {written:.0f} s): {seconds:.1f} s, {pairs / seconds:.2f} pairs/s, "
        f"{len(table)} rows"
    )


if __name__ == "__main__":
    main()

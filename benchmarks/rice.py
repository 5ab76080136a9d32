"""gpuptc's RICE_1 decoder against cfitsio, on full-size raw files, in one process.

1. Decoding: one full-size RICE file (16 segments of 2048 x 576 int32 pixels) read into a
   float32 buffer, by fitsio (cfitsio) and by gpuptc's decoder; then 2 files at once in 2
   threads (cfitsio holds the GIL; the decoder releases it).
2. End to end: ``gpuptc.measure`` of a RICE sensor with the decoder in threads
   (``GPUPTC_RICE=1``, the default) and with cfitsio in reader processes (``GPUPTC_RICE=0``),
   each in a fresh subprocess: seconds, and the peak memory of the process and of its
   largest reader process.

Usage: ``python benchmarks/rice.py [--pairs 8] [--repeats 5]``; files are made once under
``benchmarks/data/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import gpuptc
from gpuptc.raws.exposure import read_raw

DATA = Path(__file__).parent / "data"

_CHILD = """
import json, resource, sys, time
import gpuptc
from gpuptc.raws.readers import stop_reader_processes
manifest = gpuptc.ingest([sys.argv[1]])
start = time.perf_counter()
pairs, _ = gpuptc.measure(manifest, preset="cp_pipe", backend="numpy")
seconds = time.perf_counter() - start
stop_reader_processes()
print(json.dumps({
    "pairs": int(pairs.pair.nunique()),
    "seconds": seconds,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "reader_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""


def _sensor(pairs: int) -> Path:
    directory = DATA / f"rice-e2v-{pairs}"
    gpuptc.simulate(directory, vendor="e2v", pairs=pairs, storage="rice", reuse=True)
    return directory


def _best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def _decoding(files: list[str], repeats: int) -> None:
    shape = read_raw(files[0]).pixels.shape
    buffers = [np.empty(shape, np.float32) for _ in files]
    reference = read_raw(files[0], reader="fitsio").pixels
    read_raw(files[0], reader="native", out=buffers[0])  # compiled (cached) before timing
    assert np.array_equal(buffers[0], reference), "decoders disagree"
    megapixels = np.prod(shape) / 1e6
    print(f"one file ({shape[0]} x {shape[1]} x {shape[2]}, {megapixels:.1f} Mpix):")
    single = {}
    for reader in ("fitsio", "native"):
        single[reader] = _best(
            lambda r=reader: read_raw(files[0], reader=r, out=buffers[0]), repeats
        )
        print(
            f"  {reader:7s} 1 thread  {single[reader]:.3f} s  "
            f"{megapixels / single[reader]:6.0f} Mpix/s"
        )
    for reader in ("fitsio", "native"):
        with ThreadPoolExecutor(2) as pool:

            def both(r=reader):
                list(pool.map(lambda k: read_raw(files[k], reader=r, out=buffers[k]), (0, 1)))

            seconds = _best(both, repeats) / 2
        print(
            f"  {reader:7s} 2 threads {seconds:.3f} s per file  "
            f"{single[reader] / seconds:.2f}x one thread"
        )
    print(f"  native / fitsio, 1 thread: {single['fitsio'] / single['native']:.2f}x faster")


def _end_to_end(directory: Path) -> None:
    print(f"gpuptc.measure of {directory.name} (cp_pipe preset, NumPy):")
    for setting, label in (("1", "gpuptc decoder, threads"), ("0", "cfitsio, reader processes")):
        environment = {**os.environ, "GPUPTC_RICE": setting}
        completed = subprocess.run(
            [sys.executable, "-c", _CHILD, str(directory)],
            capture_output=True,
            text=True,
            env=environment,
            check=True,
        )
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        per_pair = result["seconds"] / result["pairs"]
        print(
            f"  {label:26s} {result['seconds']:6.1f} s ({per_pair:.3f} s/pair)  peak RSS "
            f"{result['peak_rss_mb']:.0f} MB, largest reader process "
            f"{result['reader_peak_rss_mb']:.0f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-end-to-end", action="store_true")
    args = parser.parse_args()
    directory = _sensor(args.pairs)
    files = sorted(str(p) for p in directory.glob("MC_*.fits"))[-2:]
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    _decoding(files, args.repeats)
    if not args.no_end_to_end:
        _end_to_end(directory)


if __name__ == "__main__":
    main()

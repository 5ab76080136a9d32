"""Reader choice, measured: fitsio vs astropy on full-size simulated raw files.

Simulates (or reuses) one full-size e2v flat pair per storage variant under
``benchmarks/data/``, then times, in the same process and from the page cache:
primary-header reads, full-pixel reads with each library, and ``gpuptc.read_raw``
with each reader. Prints a Markdown table (median of repeats, milliseconds per file).

Usage: ``python benchmarks/io_readers.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from gpuptc.raws.exposure import read_primary_header, read_raw
from gpuptc.simulation.simulate import simulate

DATA = Path(__file__).parent / "data" / "readers"


def _median_ms(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _plain_astropy(path: Path) -> np.ndarray:
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdus:
        return np.stack([np.asarray(hdus[i].data, dtype=np.int32) for i in range(1, 17)])


def _plain_fitsio(path: Path) -> np.ndarray:
    import fitsio

    with fitsio.FITS(str(path)) as f:
        return np.stack([f[i].read() for i in range(1, 17)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"Machine: {platform.processor() or platform.machine()}, {platform.system()}, "
        f"Python {platform.python_version()}"
    )
    print(
        "| storage | MB on disk | header fitsio | header astropy | pixels fitsio | "
        "pixels astropy | read_raw fitsio | read_raw astropy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for storage in ("int32", "rice", "uint16", "gzip"):
        sim = simulate(
            DATA / storage, vendor="e2v", pairs=1, biases=0, seed=9, storage=storage, reuse=True
        )
        path = sim.flats[1]
        size = path.stat().st_size / 1e6
        cells = [
            _median_ms(lambda p=path: read_primary_header(p), args.repeats),
            _median_ms(lambda p=path: read_primary_header(p, reader="astropy"), args.repeats),
            _median_ms(lambda p=path: _plain_fitsio(p), args.repeats),
            _median_ms(lambda p=path: _plain_astropy(p), args.repeats),
            _median_ms(lambda p=path: read_raw(p), args.repeats),
            _median_ms(lambda p=path: read_raw(p, reader="astropy"), args.repeats),
        ]
        print(f"| {storage} | {size:.1f} | " + " | ".join(f"{c:.1f} ms" for c in cells) + " |")


if __name__ == "__main__":
    main()

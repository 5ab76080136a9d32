"""RICE_1 decoding on the GPU against the CPU decoder on every core (a device-check step).

One full-size RICE e2v flat is simulated; the compressed tiles of ``--files`` copies of it
(a batch) are packed, copied to the device and decoded by ``rice_decode_f32``, checked
bit-exact against the CPU decoder, and timed: the kernel alone (CUDA events) and with the
host-to-device copy of the compressed bytes. The CPU decoder runs the same files in one
thread per core. Prints the output rates in GB/s of float32 pixels.

Usage: ``python benchmarks/gpu_rice.py [--files 16] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import gpuptc
from gpuptc.raws.exposure import read_raw, read_tiles
from gpuptc.raws.rice_gpu import decode_on_device, pack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import cupy

    with tempfile.TemporaryDirectory() as tmp:
        gpuptc.simulate(Path(tmp), vendor="e2v", pairs=1, biases=0, storage="rice")
        path = str(sorted(Path(tmp).glob("MC_*.fits"))[-1])
        expected = read_raw(path).pixels.astype(np.float32)
        tiles, _ = read_tiles(path)
    files = [tiles] * args.files
    per_file = expected.size
    packed = pack(files, [k * per_file for k in range(args.files)])
    out = cupy.empty((args.files, *expected.shape), dtype=cupy.float32)
    decode_on_device(cupy, packed, out)  # compiles the kernel
    assert np.array_equal(cupy.asnumpy(out[-1]), expected), "GPU and CPU decoders disagree"
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    kernel, whole = [], []
    for _ in range(args.repeats):
        began = time.perf_counter()
        start.record()
        decode_on_device(cupy, packed, out)
        stop.record()
        stop.synchronize()
        whole.append(time.perf_counter() - began)
        kernel.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    output = out.nbytes / 1e9
    compressed = len(packed.data) / 1e9
    print(f"{args.files} full-size files: {compressed:.2f} GB compressed, {output:.2f} GB out")
    print(
        f"GPU decode incl. copy of the compressed bytes: {min(whole):.4f} s "
        f"({output / min(whole):.1f} GB/s of pixels)"
    )
    print(f"GPU (events, the same): {min(kernel):.4f} s ({output / min(kernel):.1f} GB/s)")
    cores = os.cpu_count() or 1
    buffers = [np.empty(expected.shape, np.float32) for _ in range(cores)]
    read_raw(path, out=buffers[0])  # compiled before timing
    with ThreadPoolExecutor(cores) as pool:
        began = time.perf_counter()
        list(pool.map(lambda k: read_raw(path, out=buffers[k % cores]), range(args.files)))
        seconds = time.perf_counter() - began
    print(
        f"CPU decoder, {cores} threads: {seconds:.3f} s ({output / seconds:.2f} GB/s); "
        f"GPU / CPU: {seconds / min(whole):.1f}x"
    )


if __name__ == "__main__":
    main()

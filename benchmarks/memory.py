"""Peak memory of ``gpuptc.measure`` against the number of pairs (streaming in batches).

Simulates (or reuses) full-size e2v sensors with each pair count, then measures each in a
fresh subprocess and reports its peak resident memory. Memory should not grow with the
number of pairs: pairs are read, corrected and measured in batches, and only per-amp
numbers are kept.

Reader processes (RICE input) are reported apart: the largest peak of any child process.

Usage: ``python benchmarks/memory.py [--pairs 10 40] [--compress]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from gpuptc.simulation.simulate import simulate

DATA = Path(__file__).parent / "data"

_CHILD = """
import json, resource, sys, time
import gpuptc
from gpuptc.raws.readers import stop_reader_processes
manifest = gpuptc.ingest([sys.argv[1]])
start = time.perf_counter()
pairs, covariances = gpuptc.measure(manifest, preset="cp_pipe", backend="numpy")
seconds = time.perf_counter() - start
stop_reader_processes()  # so that their peak memory is counted below
print(json.dumps({
    "pairs": int(pairs.pair.nunique()),
    "seconds": seconds,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "reader_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--compress", action="store_true", help="RICE-compressed raws")
    args = parser.parse_args()
    storage = "rice" if args.compress else "int32"
    print("| pairs | storage | seconds | peak RSS (MB) | largest reader process peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for count in args.pairs:
        directory = DATA / (f"memory-e2v-{count}" + ("-rice" if args.compress else ""))
        simulate(
            directory, vendor="e2v", pairs=count, biases=0, seed=77, storage=storage, reuse=True
        )
        output = subprocess.run(
            [sys.executable, "-c", _CHILD, str(directory)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        print(
            f"| {result['pairs']} | {storage} | {result['seconds']:.1f} | "
            f"{result['peak_rss_mb']:.0f} | {result['reader_peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()

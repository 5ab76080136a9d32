"""Raws on object storage: measuring while fetching, against the same files on local disk.

A full-size RICE e2v sensor is put into an S3 bucket of a moto server (a separate process on
the loopback address) and registered in a Gen3 repository by URI. In one process, best of
``--repeats``:

1. the fetch floor: every file fetched by :class:`gpuptc.inputs.remote.InputFiles` alone;
2. ingest: the repository query with each remote header read by ranged reads, against
   ``gpuptc.ingest`` of the local folder;
3. measuring: ``gpuptc.measure`` of the local files, and of the remote ones (fetched ahead
   of their reading, at most ``GPUPTC_CACHE_MB`` held).

If fetching overlaps measuring, (3, remote) is near max(measuring, fetch floor), not their
sum. Usage: ``python benchmarks/remote.py [--pairs 8] [--repeats 2]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gpuptc
from gpuptc.inputs.remote import InputFiles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from butler_repo import make_repository

DATA = Path(__file__).parent / "data"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server() -> tuple[subprocess.Popen, str]:
    """A moto S3 server in its own process; its endpoint."""
    port = _free_port()
    command = [Path(sys.executable).with_name("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return server, endpoint
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the moto server did not start")


def _best(function, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import boto3

    directory = DATA / f"rice-e2v-{args.pairs}"
    sensor = gpuptc.simulate(
        directory, vendor="e2v", pairs=args.pairs, biases=0, storage="rice", reuse=True
    )
    files = sorted(sensor.flats)
    server, endpoint = _server()
    os.environ |= {
        "S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="raws")
        for path in files:
            s3.upload_file(str(path), "raws", path.name)
        remote = [f"s3://raws/{p.name}" for p in files]
        scratch = Path(tempfile.mkdtemp(prefix="gpuptc-remote-"))
        os.environ["GPUPTC_CACHE"] = str(scratch / "cache")
        repo = make_repository(
            scratch / "repo", {"raws": remote}, headers=dict(zip(remote, files, strict=True))
        )

        def fetch_all() -> int:
            with InputFiles(remote) as inputs:
                for uri in remote:
                    inputs.local(uri)
                    inputs.release([uri])
                return inputs.fetched_bytes

        fetch, fetched = _best(fetch_all, args.repeats)
        ingest_local, local_manifest = _best(lambda: gpuptc.ingest([directory]), args.repeats)
        ingest_remote, remote_manifest = _best(
            lambda: gpuptc.ingest_butler(repo, "raws"), args.repeats
        )

        def measured(manifest):
            return lambda: gpuptc.measure(manifest, backend="numpy")

        local, _ = _best(measured(local_manifest), args.repeats)
        from_s3, _ = _best(measured(remote_manifest), args.repeats)
    finally:
        server.terminate()
        server.wait()

    megabytes = fetched / 2**20
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"{len(files)} RICE files, {megabytes:.0f} MB, {args.pairs} pairs; best of {args.repeats}"
    )
    print("| step | seconds |")
    print("|---|---|")
    print(f"| fetch every file alone (8 threads) | {fetch:.2f} ({megabytes / fetch:.0f} MB/s) |")
    print(f"| ingest: local folder | {ingest_local:.2f} |")
    print(f"| ingest: repository query, remote headers by ranged reads | {ingest_remote:.2f} |")
    print(f"| measure: local files | {local:.2f} |")
    print(f"| measure: from S3, fetched while measuring | {from_s3:.2f} |")
    print(
        f"overlap: remote / max(local, fetch) = {from_s3 / max(local, fetch):.2f}, "
        f"remote / (local + fetch) = {from_s3 / (local + fetch):.2f}"
    )


if __name__ == "__main__":
    main()

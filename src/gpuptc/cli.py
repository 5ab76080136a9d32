"""The ``gpuptc`` command line. Every subcommand calls a documented function."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from gpuptc import __version__

__all__ = ["EXIT_FATAL", "EXIT_OK", "EXIT_REJECTED", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3

log = logging.getLogger("gpuptc")


def _print_table(frame: pd.DataFrame) -> None:
    if frame.empty:
        print("(none)")
    else:
        print(frame.to_string(index=False))


def _report_manifest(manifest: pd.DataFrame, *, verbose: bool) -> None:
    from gpuptc.io.manifest import summarize

    print("Per-sensor summary:")
    _print_table(summarize(manifest))
    skipped = manifest.attrs.get("skipped", 0)
    if skipped:
        print(f"Skipped {skipped} non-FITS file(s) found while searching directories.")
    for status, title in (("rejected", "Rejected"), ("unpaired", "Unpaired flats")):
        rows = manifest[manifest["status"] == status]
        if len(rows):
            print(f"{title} ({len(rows)}):")
            for row in rows.itertuples():
                print(f"  {row.path}: {row.reason}")
    if verbose:
        ignored = manifest[manifest["status"] == "ignored"]
        for row in ignored.itertuples():
            print(f"  ignored {row.path}: {row.reason}")


def _cmd_ingest(args: argparse.Namespace) -> int:
    from gpuptc._progress import Progress
    from gpuptc.io.manifest import ingest
    from gpuptc.io.writer import atomic_path

    progress = Progress("headers", 0, enabled=not args.quiet)
    manifest = ingest(args.inputs, exclude=args.exclude, progress=progress)
    _report_manifest(manifest, verbose=args.verbose)
    if args.write:
        with atomic_path(args.write) as tmp:
            manifest.to_parquet(tmp, index=False)
        print(f"Manifest written to {args.write}")
    usable = manifest["status"].isin(["paired", "bias"]).any()
    if not usable:
        print("No usable flat pair or bias found.", file=sys.stderr)
        return EXIT_FATAL
    return EXIT_REJECTED if (manifest["status"] == "rejected").any() else EXIT_OK


def _simulation_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "vendor": args.vendor,
        "pairs": args.pairs,
        "seed": args.seed,
        "storage": "rice" if args.compress else args.storage,
        "size": args.size,
        "biases": args.biases,
        "brighter_fatter": not args.no_bf,
    }


def _cmd_simulate(args: argparse.Namespace) -> int:
    from gpuptc._progress import Progress
    from gpuptc.simulate import simulate

    started = time.monotonic()
    progress = Progress("exposures", 0, enabled=not args.quiet)
    result = simulate(
        args.directory, workers=args.workers, progress=progress, **_simulation_options(args)
    )
    elapsed = time.monotonic() - started
    print(
        f"Simulated {result.sensor} ({result.config.vendor}, {result.config.storage}): "
        f"{len(result.flats)} flats, {len(result.biases)} biases in {elapsed:.1f} s "
        f"-> {result.directory}"
    )
    print(f"Truth: {result.truth_path}")
    print(f"EOTEST-style results: {result.eotest_path}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from gpuptc._progress import Progress
    from gpuptc.io.manifest import ingest
    from gpuptc.simulate import simulate

    directory = Path(args.directory)
    print(f"Simulating one e2v sensor ({args.pairs} flat pairs, RICE-compressed) in {directory}")
    started = time.monotonic()
    result = simulate(
        directory,
        vendor="e2v",
        pairs=args.pairs,
        seed=args.seed,
        storage="rice",
        reuse=True,
        workers=args.workers,
        progress=Progress("exposures", 0, enabled=not args.quiet),
    )
    print(
        f"  {len(result.flats)} flats and {len(result.biases)} biases ready "
        f"({time.monotonic() - started:.1f} s)"
    )
    manifest = ingest([directory], progress=Progress("headers", 0, enabled=not args.quiet))
    _report_manifest(manifest, verbose=args.verbose)
    truth = pd.read_parquet(result.truth_path)
    print("Truth (per amp): gain e-/ADU, read noise e-, a00 1e-6/e-, full well e-")
    table = truth[["amp", "segment", "gain", "read_noise", "a00", "full_well"]].copy()
    table["a00"] *= 1e6
    _print_table(table.round({"gain": 4, "read_noise": 2, "a00": 3, "full_well": 0}))
    return EXIT_OK


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail")


def _add_simulation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vendor", choices=["e2v", "itl"], default="e2v", help="sensor type")
    parser.add_argument("--pairs", type=int, default=24, help="flat pairs (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--storage",
        choices=["int32", "rice", "uint16", "gzip"],
        default="int32",
        help="how raw pixels are stored (default int32, as uncompressed camera files)",
    )
    parser.add_argument(
        "--compress", action="store_true", help="RICE_1 tile compression (same as --storage rice)"
    )
    parser.add_argument(
        "--size", choices=["full", "small"], default="full", help="real layout or 64 x 96 amps"
    )
    parser.add_argument("--biases", type=int, default=5, help="bias frames (default 5)")
    parser.add_argument("--no-bf", action="store_true", help="no brighter-fatter effect")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: cores)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gpuptc`` command."""
    parser = argparse.ArgumentParser(
        prog="gpuptc",
        description="Photon transfer curves of LSST camera CCDs from raw flat pairs.",
    )
    parser.add_argument("--version", action="version", version=f"gpuptc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ingest = sub.add_parser(
        "ingest",
        help="find raw files by header, pair the flats, summarise per sensor",
        description="Read primary headers of the inputs, classify and pair them, and print a "
        "per-sensor summary with every rejected or unpaired file and its reason.",
    )
    ingest.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs")
    ingest.add_argument("--write", metavar="FILE", help="write the manifest as Parquet")
    ingest.add_argument(
        "--exclude", action="append", default=[], metavar="DIR", help="directory not searched"
    )
    _add_common(ingest)
    ingest.set_defaults(func=_cmd_ingest)

    simulate = sub.add_parser(
        "simulate",
        help="write simulated raw flats and biases with known truth",
        description="Simulate one sensor's biases and flat pairs in the camera's raw layout, "
        "with <sensor>_truth.parquet and an EOTEST-style <sensor>_eotest_results.fits.",
    )
    simulate.add_argument("directory", metavar="DIR", help="output directory")
    _add_simulation_arguments(simulate)
    _add_common(simulate)
    simulate.set_defaults(func=_cmd_simulate)

    demo = sub.add_parser(
        "demo",
        help="simulate one e2v sensor and analyse it (the embedded default job)",
        description="Simulate one full-size e2v sensor, RICE-compressed as the camera writes, "
        "then ingest it and summarise. Files are reused when already simulated.",
    )
    demo.add_argument(
        "directory", nargs="?", default="gpuptc-demo", metavar="DIR", help="default ./gpuptc-demo"
    )
    demo.add_argument("--pairs", type=int, default=24, help="flat pairs (default 24)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--workers", type=int, default=None, help="processes (default: cores)")
    _add_common(demo)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gpuptc`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit code: 0 success, 1 fatal error, 2 usage error, 3 some inputs rejected.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (OSError, ValueError) as exc:
        if args.verbose:
            raise
        print(f"gpuptc {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130

"""The ``gpuptc`` command line. Every subcommand calls a documented function."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from gpuptc._version import __version__
from gpuptc.errors import GpuptcError
from gpuptc.fitting.bf_check import CHECK_MODES
from gpuptc.schema import (
    CHARTS_DIR,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    INTERRUPTED,
    SENSORS_DIR,
    FileStatus,
)

if TYPE_CHECKING:
    from gpuptc.running.job import RunResult

__all__ = ["build_parser", "main"]

log = logging.getLogger("gpuptc")


class _UsageError(GpuptcError):
    """Arguments that do not make a command (exit code 2, the message printed)."""


def _print_table(frame: pd.DataFrame) -> None:
    if frame.empty:
        print("(none)")
    else:
        print(frame.to_string(index=False))


def _report_manifest(manifest: pd.DataFrame, skipped: int, *, verbose: bool) -> None:
    from gpuptc.inputs.manifest import summarize

    print("Per-sensor summary:")
    _print_table(summarize(manifest))
    if skipped:
        print(f"Skipped {skipped} non-FITS file(s) found while searching directories.")
    for status, title in (
        (FileStatus.REJECTED, "Rejected"),
        (FileStatus.UNPAIRED, "Unpaired flats"),
    ):
        rows = manifest[manifest["status"] == status]
        if len(rows):
            print(f"{title} ({len(rows)}):")
            for row in rows.itertuples():
                print(f"  {row.path}: {row.reason}")
    if verbose:
        ignored = manifest[manifest["status"] == FileStatus.IGNORED]
        for row in ignored.itertuples():
            print(f"  ignored {row.path}: {row.reason}")


def _cmd_ingest(args: argparse.Namespace) -> int:
    from gpuptc._shared.progress import Progress
    from gpuptc.formats.writer import atomic_path
    from gpuptc.inputs.manifest import inventory

    progress = Progress("headers", 0, enabled=not args.quiet)
    found = inventory(args.inputs, exclude=args.exclude, progress=progress)
    manifest = found.manifest
    _report_manifest(manifest, len(found.skipped), verbose=args.verbose)
    if args.write:
        with atomic_path(args.write) as tmp:
            manifest.to_parquet(tmp, index=False)
        print(f"Manifest written to {args.write}")
    usable = manifest["status"].isin([FileStatus.PAIRED, FileStatus.BIAS]).any()
    if not usable:
        print("No usable flat pair or bias found.", file=sys.stderr)
        return EXIT_FATAL
    return EXIT_REJECTED if (manifest["status"] == FileStatus.REJECTED).any() else EXIT_OK


def _simulation_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "vendor": args.vendor,
        "pairs": args.pairs,
        "seed": args.seed,
        "storage": "rice" if args.compress else args.storage,
        "size": args.size,
        "biases": args.biases,
        "brighter_fatter": not args.no_bf,
        "cosmic_ray_rate": args.cosmic_ray_rate,
        "cosmic_rays": args.cosmic_ray_rate > 0,
        "pair_mismatch": args.pair_mismatch,
        "nonlinearity": args.nonlinearity,
        "photodiode": args.photodiode,
        "rolloff": args.rolloff,
        "spacing": args.spacing,
    }


def _cmd_simulate(args: argparse.Namespace) -> int:
    from gpuptc._shared.progress import Progress
    from gpuptc.simulation.simulate import simulate

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
    from gpuptc._shared.progress import Progress
    from gpuptc.running.job import run
    from gpuptc.simulation.simulate import simulate

    directory = Path(args.directory)
    raw = directory / "raw"
    print(f"Simulating one e2v sensor ({args.pairs} flat pairs, RICE-compressed) in {raw}")
    started = time.monotonic()
    result = simulate(
        raw,
        vendor="e2v",
        pairs=args.pairs,
        seed=args.seed,
        storage="rice",
        size=args.size,
        reuse=True,
        workers=args.workers,
        progress=Progress("exposures", 0, enabled=not args.quiet),
    )
    print(
        f"  {len(result.flats)} flats and {len(result.biases)} biases ready "
        f"({time.monotonic() - started:.1f} s)"
    )
    print(f"Running the analysis (preset {args.preset}, backend {args.backend})")
    analysis = run(
        [raw],
        directory / "results",
        preset=args.preset,
        backend=args.backend,
        progress=_RunProgress(enabled=not args.quiet),
    )
    truth = pd.read_parquet(result.truth_path).set_index("amp")
    gains = analysis.tables["ptc"].pivot(index="amp", columns="model", values="gain")
    comparison = analysis.tables["comparison"]
    references = comparison[
        (comparison["quantity"] == "gain") & (comparison["reference"] == "eotest")
    ]
    eotest = references.drop_duplicates("amp").set_index("amp")["reference_value"]
    table = pd.DataFrame({"truth": truth["gain"]}).join(gains).join(eotest.rename("EOTEST"))
    print("Gain per amp (e-/ADU): simulated truth, each method, EOTEST-style reference")
    _print_table(table.reset_index().round(4))
    ratio = gains.div(truth["gain"], axis=0)
    print(
        "Median gain / truth per method: "
        + ", ".join(f"{method} {value:.4f}" for method, value in ratio.median().items())
    )
    _print_run(analysis, verbose=args.verbose)
    print(
        f"Report: {directory / 'results' / 'report' / 'index.html'} "
        f"({time.monotonic() - started:.0f} s in all)"
    )
    return analysis.exit_code


def _config_document(path: str | None) -> dict[str, Any]:
    """A ``--config`` TOML file, read (empty without one)."""
    if not path:
        return {}
    import tomllib

    with open(path, "rb") as handle:
        return tomllib.load(handle)


_NOT_PRESET = ("preset", "verdict")
"""``--config`` tables that are not preset sections: the preset's name, the verdict's limits."""


def _config_thresholds(path: str | None) -> Any:
    """The verdict's limits from a ``--config`` file's ``[verdict]`` table (default: None).

    A table that names no threshold, or a value that is no number, is a usage error.
    """
    from gpuptc.products.verdict import Thresholds

    values = _config_document(path).get("verdict")
    if values is None:
        return None
    if not isinstance(values, dict):
        raise _UsageError(f"{path}: [verdict] must be a table of thresholds")
    try:
        return Thresholds.from_mapping(values, source=f"{path}: [verdict]")
    except (TypeError, ValueError) as exc:
        raise _UsageError(str(exc)) from None


def _config_overrides(path: str | None) -> dict[str, object]:
    """Preset overrides from a TOML file with [isr], [extract] and [solve] tables."""
    document = _config_document(path)
    overrides: dict[str, object] = {}
    for section, values in document.items():
        if section in _NOT_PRESET:
            continue
        if not isinstance(values, dict):
            raise ValueError(f"{path}: [{section}] must be a table of fields")
        for name, value in values.items():
            overrides[f"{section}__{name}"] = tuple(value) if isinstance(value, list) else value
    return overrides


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    return repr(value)


def _cmd_config(args: argparse.Namespace) -> int:
    import dataclasses

    from gpuptc.config import get_preset
    from gpuptc.products.verdict import Thresholds

    preset = get_preset(args.preset, **_config_overrides(args.config))
    print(f"# gpuptc {__version__}: preset {preset.name!r}; edit and pass with --config FILE")
    print(f'preset = "{preset.name}"')
    for section in ("isr", "extract", "solve"):
        print(f"\n[{section}]")
        for name, value in dataclasses.asdict(getattr(preset, section)).items():
            if value is None or (isinstance(value, tuple | list) and None in value):
                print(f"# {name} = {value!r}  (None: not set)")
            else:
                print(f"{name} = {_toml_value(value)}")
    thresholds = _config_thresholds(args.config) or Thresholds()
    print("\n# the verdict's limits: they judge the numbers, never change them")
    print("[verdict]")
    for name, value in dataclasses.asdict(thresholds).items():
        print(f"{name} = {_toml_value(value)}")
    return EXIT_OK


class _RunProgress:
    """Pairs measured per sensor and overall, on one status line or in log lines."""

    def __init__(self, enabled: bool) -> None:
        from gpuptc._shared.progress import Progress

        self.overall = Progress("pairs (all sensors)", 0, enabled=enabled)
        self.sensor_done: dict[str, int] = {}
        self.sensor_total: dict[str, int] = {}

    def __call__(self, sensor: str, done: int, total: int) -> None:
        self.sensor_done[sensor] = done
        self.sensor_total[sensor] = total
        self.overall.label = f"{sensor} {done}/{total}; pairs (all sensors)"
        self.overall(sum(self.sensor_done.values()), max(sum(self.sensor_total.values()), 1))


def _print_run(result: RunResult, *, verbose: bool) -> None:
    from gpuptc.running.job import summarize_run

    summary = summarize_run(result)
    print("Per-sensor summary (median gain per method, e-/ADU):")
    _print_table(summary)
    rejected = result.rejected
    if len(rejected):
        print(f"Rejected ({len(rejected)}), listed in {result.out / 'rejected.csv'}:")
        for row in rejected.head(20 if not verbose else len(rejected)).itertuples():
            where = " ".join(
                str(part)
                for part in (
                    row.path,
                    row.sensor,
                    f"pair {row.pair}" if not _missing(row.pair) else None,
                    f"amp {row.amp}" if not _missing(row.amp) else None,
                )
                if part is not None and not _missing(part)
            )
            print(f"  {where}: {row.reason}")
        if len(rejected) > 20 and not verbose:
            print(f"  ... {len(rejected) - 20} more (-v lists all)")
    written = ["tables", "rejected.csv"]
    written += [
        name
        for name in ("eotest/", "cp_pipe/", "report/index.html")
        if (result.out / name).exists()
    ]
    print(f"Outputs: {result.out} ({', '.join(written)})")


def _sensor_progress(enabled: bool):
    from gpuptc._shared.progress import Progress

    bar = Progress("sensors", 0, enabled=enabled)

    def report(sensor: str, done: int, total: int, pairs_done: int, pairs_total: int) -> None:
        bar.label = f"{sensor} finished, pairs {pairs_done}/{pairs_total}; sensors"
        bar(done, total)

    return report


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NA


def _fit_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Preset overrides of ``--config`` and ``--ptc-model`` (``run`` and ``fit``)."""
    overrides = _config_overrides(args.config)
    if args.ptc_model:
        overrides["solve__ptc_fit_type"] = args.ptc_model
    return overrides


def _cmd_run(args: argparse.Namespace) -> int:
    from gpuptc.inputs.butler import ButlerInputError
    from gpuptc.running.job import run

    overrides = _fit_overrides(args)
    if args.cov_size is not None:
        overrides["extract__cov_size"] = args.cov_size
    try:
        query, publish = _butler_query(args), _butler_output(args)
        result = run(
            [*([query] if query is not None else []), *args.inputs],
            args.out,
            preset=args.preset,
            publish=publish,
            thresholds=_config_thresholds(args.config),
            **_run_options(args),
            **overrides,
        )
    except ButlerInputError as exc:
        raise _UsageError(str(exc)) from None
    if result.exit_code == EXIT_FATAL:
        manifest = result.tables.get("manifest")
        if manifest is not None:
            _report_manifest(manifest, len(result.skipped), verbose=args.verbose)
        print("No usable flat pair found: nothing written.", file=sys.stderr)
        return EXIT_FATAL
    _print_run(result, verbose=args.verbose)
    return result.exit_code


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`gpuptc.run` that ``gpuptc run``'s options set."""
    return {
        "backend": args.backend,
        "bias": args.bias or None,
        "eotest": args.eotest,
        "models": args.models.split(",") if args.models else None,
        "sensors": args.sensors.split(",") if args.sensors else None,
        "report": not args.no_report,
        "progress": _RunProgress(enabled=not args.quiet),
        "on_sensor": _sensor_progress(enabled=not args.quiet),
        "workers": -1 if args.gpus else args.workers,
        "scheduler": args.scheduler,
        "force": args.force,
        "linearizer": "first" if args.linearize_first else args.linearizer,
        "bf_check": args.bf_check,
    }


def _cmd_fit(args: argparse.Namespace) -> int:
    from gpuptc.running.refit import refit

    overrides = _fit_overrides(args)
    result = refit(
        args.files,
        args.out,
        preset=args.preset,
        models=args.models.split(",") if args.models else None,
        report=not args.no_report,
        thresholds=_config_thresholds(args.config),
        **overrides,
    )
    if result.exit_code == EXIT_FATAL:
        for reason in result.rejected["reason"]:
            print(reason, file=sys.stderr)
        print("No readable PTC dataset: nothing written.", file=sys.stderr)
        return EXIT_FATAL
    _print_run(result, verbose=args.verbose)
    return result.exit_code


def _cmd_report(args: argparse.Namespace) -> int:
    from gpuptc.report import redraw_report

    index = redraw_report(args.directory, png=args.png)
    print(f"Report redrawn: {index}")
    if args.png:
        print(f"Charts as PNG: {index.parent / CHARTS_DIR}")
    return EXIT_OK


def _command(
    sub: Any, name: str, func: Any, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand with -q/-v, running ``func``."""
    parser = sub.add_parser(name, help=help, description=description or help)
    _add_common(parser)
    parser.set_defaults(func=func)
    return parser


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail")


def _add_simulation_arguments(parser: argparse.ArgumentParser) -> None:
    from gpuptc.formats.writer import STORAGES
    from gpuptc.raws.layout import LAYOUTS
    from gpuptc.simulation.simulate import SIZES, SPACINGS, SimulationConfig

    parser.add_argument("--vendor", choices=list(LAYOUTS), default="e2v", help="sensor type")
    parser.add_argument("--pairs", type=int, default=24, help="flat pairs (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--storage",
        choices=list(STORAGES),
        default="int32",
        help="how raw pixels are stored (default int32, as uncompressed camera files)",
    )
    parser.add_argument(
        "--compress", action="store_true", help="RICE_1 tile compression (same as --storage rice)"
    )
    parser.add_argument(
        "--size",
        choices=list(SIZES),
        default="full",
        help="amplifier size: the camera's layout, 256 x 1000 or 64 x 96 pixels",
    )
    parser.add_argument("--biases", type=int, default=5, help="bias frames (default 5)")
    parser.add_argument("--no-bf", action="store_true", help="no brighter-fatter effect")
    parser.add_argument(
        "--cosmic-ray-rate",
        type=_non_negative,
        default=SimulationConfig.cosmic_ray_rate,
        metavar="PER_CM2_S",
        help="cosmic-ray events per cm^2 per second of exposure and read-out "
        f"(default {SimulationConfig.cosmic_ray_rate:.3f}, a sea-level laboratory's; 0: none)",
    )
    parser.add_argument(
        "--pair-mismatch",
        type=_non_negative,
        default=SimulationConfig.pair_mismatch,
        metavar="RMS",
        help="RMS relative illumination difference between the flats of a pair "
        f"(default {SimulationConfig.pair_mismatch})",
    )
    parser.add_argument(
        "--nonlinearity",
        action="store_true",
        help="a known non-linear response per amp (its parameters in the truth table)",
    )
    parser.add_argument(
        "--photodiode",
        action="store_true",
        help="write each flat's photodiode readings beside it, as the camera does",
    )
    parser.add_argument(
        "--rolloff",
        action="store_true",
        help="a soft saturation from 0.8 of each amp's full well: a PTC rolloff (its knee "
        "and onset in the truth table)",
    )
    parser.add_argument(
        "--spacing",
        choices=list(SPACINGS),
        default="log",
        help="the pairs' signals evenly spaced in log (a PTC series, default) or in signal "
        "(a linearity series)",
    )
    parser.add_argument(
        "--workers", type=_positive, default=None, help="processes (default: cores)"
    )


def _add_ingest(sub: Any) -> None:
    ingest = _command(
        sub,
        "ingest",
        _cmd_ingest,
        help="find raw files by header, pair the flats, summarise per sensor",
        description="Read primary headers of the inputs, classify and pair them, and print a "
        "per-sensor summary with every rejected or unpaired file and its reason.",
    )
    _add_inputs(ingest)
    ingest.add_argument("--write", metavar="FILE", help="write the manifest as Parquet")
    ingest.add_argument(
        "--exclude", action="append", default=[], metavar="DIR", help="directory not searched"
    )


def _add_simulate(sub: Any) -> None:
    simulate = _command(
        sub,
        "simulate",
        _cmd_simulate,
        help="write simulated raw flats and biases with known truth",
        description="Simulate one sensor's biases and flat pairs in the camera's raw layout, "
        "with <sensor>_truth.parquet and an EOTEST-style <sensor>_eotest_results.fits.",
    )
    simulate.add_argument("directory", metavar="DIR", help="output directory")
    _add_simulation_arguments(simulate)


def _positive(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _non_negative(text: str) -> float:
    """An argument that must be a number of at least 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of at least 0, not {text!r}")
    return value


def _add_run_scale(run: argparse.ArgumentParser) -> None:
    scale = run.add_mutually_exclusive_group()
    scale.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="local Dask cluster of N worker processes",
    )
    scale.add_argument("--scheduler", metavar="ADDRESS", help="use an existing Dask scheduler")
    scale.add_argument(
        "--gpus", action="store_true", help="one Dask worker per GPU (needs dask-cuda)"
    )


def _add_run(sub: Any) -> None:
    from gpuptc.config import PRESETS

    run = _command(
        sub,
        "run",
        _cmd_run,
        help="the main job: measure, fit, compare, write tables and the report",
        description="Find raw flats and biases among the inputs by header, pair the flats, "
        "measure every pair (ISR, statistics, covariances), fit every PTC model, compare with "
        "EOTEST results, and write the tables, EOTEST-format files and an HTML report to "
        "--out. Exit codes: 0 success, 1 nothing usable, 2 usage error, 3 results written but "
        "some inputs, pairs or amps rejected (rejected.csv).",
    )
    run.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="files, directories or globs (with --butler: only reference files, optional)",
    )
    run.add_argument("--out", required=True, metavar="DIR", help="output directory")
    _add_butler(run)
    run.add_argument(
        "--preset",
        default="cp_pipe",
        choices=list(PRESETS),
        help="whose definitions to reproduce (default cp_pipe)",
    )
    run.add_argument("--backend", default="auto", help="auto, numpy, cupy, torch, ...")
    run.add_argument("--bias", nargs="+", metavar="FILE", help="master bias file(s)")
    linearity = run.add_mutually_exclusive_group()
    linearity.add_argument(
        "--linearizer",
        metavar="PATH",
        help="linearize the pixels by this linearizer file (gpuptc's or cp_pipe's) or by the "
        "one of each sensor's serial in this folder (an earlier run's cp_pipe/)",
    )
    linearity.add_argument(
        "--linearize-first",
        action="store_true",
        help="solve each sensor's linearity first, then measure its PTC on linearized pixels "
        "(reads each raw twice)",
    )
    run.add_argument(
        "--bf-check",
        nargs="?",
        const="detector",
        choices=CHECK_MODES,
        help="correct each sensor's flats by its own brighter-fatter kernels (the detector's, "
        "as Rubin's ISR applies them, or 'amp': each amp's) and measure them again: the "
        "per-pair gain's slope against the mean, before and after, in bfk.parquet and the "
        "report (one more pass over the raws)",
    )
    run.add_argument(
        "--eotest", nargs="+", default=[], metavar="FILE", help="EOTEST results to compare with"
    )
    run.add_argument("--cov-size", type=int, default=None, help="covariance lags per axis")
    run.add_argument("--models", help="comma-separated PTC models (default all)")
    run.add_argument("--sensors", help="comma-separated sensor ids (default all)")
    run.add_argument("--config", metavar="FILE", help="TOML file overriding preset fields")
    run.add_argument("--no-report", action="store_true", help="skip the HTML report")
    _add_ptc_model(run)
    _add_run_scale(run)
    run.add_argument(
        "--force", action="store_true", help="recompute sensors already complete in DIR/sensors"
    )


def _add_butler(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group(
        "a data repository",
        "select the flats and biases with a Butler query (pip install gpuptc[butler])",
    )
    group.add_argument("--butler", metavar="REPO", help="a Gen3 data repository")
    group.add_argument("--collections", metavar="C[,C...]", help="collections to search")
    group.add_argument(
        "--where", default="", metavar="EXPR", help="a query expression narrowing it"
    )
    group.add_argument(
        "--bind", nargs="+", default=[], metavar="K=V", help="values for identifiers of --where"
    )
    group.add_argument(
        "--detectors",
        nargs="+",
        default=[],
        metavar="D",
        help="detector numbers or names (R22_S11)",
    )
    group.add_argument(
        "--output-run",
        metavar="RUN",
        help="also put the cp_pipe PTC datasets into this RUN collection of the repository "
        "(dataset type ptc), where cp_pipe puts its own",
    )


def _butler_output(args: argparse.Namespace) -> Any:
    """Where ``--output-run`` puts the PTC datasets, or None."""
    if not args.output_run:
        return None
    from gpuptc.products.butler_output import ButlerOutput

    return ButlerOutput(args.butler, args.output_run)


def _butler_query(args: argparse.Namespace) -> Any:
    """The ``--butler`` query, or None; a usage error when it is incomplete."""
    if not args.butler:
        if args.collections or args.where or args.bind or args.detectors or args.output_run:
            raise _UsageError(
                "--collections, --where, --bind, --detectors and --output-run need --butler"
            )
        if not args.inputs:
            raise _UsageError("give INPUT files or directories, or --butler REPO")
        return None
    from gpuptc.inputs.butler import ButlerQuery

    if not args.collections:
        raise _UsageError("--butler needs --collections")
    bind = {}
    for item in args.bind:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _UsageError(f"--bind {item!r}: give KEY=VALUE")
        bind[key] = int(value) if value.lstrip("-").isdigit() else value
    return ButlerQuery.of(
        args.butler, args.collections, where=args.where, bind=bind, detectors=args.detectors
    )


def _add_ptc_model(parser: argparse.ArgumentParser) -> None:
    from gpuptc.config import PTC_FIT_MODELS

    parser.add_argument(
        "--ptc-model",
        choices=PTC_FIT_MODELS,
        help="the fit written as cp_pipe/<sensor>_ptc.fits (default: the preset's, "
        "fullcov for cp_pipe_lsstcam, else expapprox)",
    )


def _add_fit(sub: Any) -> None:
    from gpuptc.config import PRESETS

    refit = _command(
        sub,
        "fit",
        _cmd_fit,
        help="refit cp_pipe PTC datasets (no raw data) with gpuptc's models",
        description="Read the measured means, variances and covariances of cp_pipe "
        "PhotonTransferCurveDataset files (any PTC_VERSION) and fit them again with "
        "gpuptc's models under a preset, writing the tables, EOTEST-format files, a PTC "
        "dataset per sensor and a report (without display images) to --out. Exit codes as "
        "for gpuptc run.",
    )
    refit.add_argument("files", nargs="+", metavar="FILE", help="PTC dataset files")
    refit.add_argument("--out", required=True, metavar="DIR", help="output directory")
    refit.add_argument(
        "--preset", default="cp_pipe", choices=list(PRESETS), help="whose fits (default cp_pipe)"
    )
    refit.add_argument("--models", help="comma-separated PTC models (default all)")
    refit.add_argument("--config", metavar="FILE", help="TOML file overriding preset fields")
    refit.add_argument("--no-report", action="store_true", help="skip the HTML report")
    _add_ptc_model(refit)


def _add_report(sub: Any) -> None:
    report = _command(
        sub,
        "report",
        _cmd_report,
        help="redraw the HTML report of a finished run from its tables",
        description="Redraw DIR/report from the Parquet tables of a finished run, without "
        "reading raw data.",
    )
    report.add_argument("directory", metavar="DIR", help="output directory of gpuptc run")
    report.add_argument(
        "--png",
        action="store_true",
        help="also write every chart as a PNG into DIR/report/charts (no browser needed)",
    )


def _add_config(sub: Any) -> None:
    from gpuptc.config import PRESETS

    config = sub.add_parser(
        "config",
        help="print a preset as a TOML file to start a --config from",
        description="Print every field of a preset (after --config overrides) as TOML.",
    )
    config_sub = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = _command(config_sub, "show", _cmd_config, help="print the configuration")
    show.add_argument(
        "--preset", default="cp_pipe", choices=list(PRESETS), help="preset name (default cp_pipe)"
    )
    show.add_argument("--config", metavar="FILE", help="TOML overrides to apply")


def _add_demo(sub: Any) -> None:
    from gpuptc.config import PRESETS
    from gpuptc.simulation.simulate import SIZES

    demo = _command(
        sub,
        "demo",
        _cmd_demo,
        help="simulate one e2v sensor and analyse it (the embedded default job)",
        description="Simulate one full-size e2v sensor (24 pairs, RICE-compressed as the camera "
        "writes, with truth and an EOTEST-style results file) into DIR/raw, run the full "
        "analysis into DIR/results, and print each method's gain per amp next to the truth "
        "and EOTEST. Simulated files are reused when present.",
    )
    demo.add_argument(
        "directory", nargs="?", default="gpuptc-demo", metavar="DIR", help="default ./gpuptc-demo"
    )
    demo.add_argument("--pairs", type=int, default=24, help="flat pairs (default 24)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--workers", type=_positive, default=None, help="processes (default: cores)")
    demo.add_argument(
        "--preset", default="cp_pipe", choices=list(PRESETS), help="preset (default cp_pipe)"
    )
    demo.add_argument("--size", choices=list(SIZES), default="full", help="amplifier size")
    demo.add_argument("--backend", default="auto", help="array backend (default auto)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gpuptc`` command."""
    parser = argparse.ArgumentParser(
        prog="gpuptc",
        description="Photon transfer curves of LSST camera CCDs from raw flat pairs.",
    )
    parser.add_argument("--version", action="version", version=f"gpuptc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = (_add_ingest, _add_simulate, _add_run, _add_fit, _add_report, _add_config)
    for add in (*commands, _add_demo):
        add(sub)
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
    from gpuptc.backend import BackendError

    try:
        return int(args.func(args))
    except (BackendError, _UsageError) as exc:
        print(f"gpuptc {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (GpuptcError, OSError, ValueError) as exc:
        # gpuptc's own errors, then the file system's and the libraries' (plain OSError or
        # ValueError): the message printed, or the traceback with --verbose
        if args.verbose:
            raise
        print(f"gpuptc {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        message = "Interrupted."
        if args.command == "run":
            message += (
                f" Finished sensors are kept in {Path(args.out) / SENSORS_DIR} "
                f"(see {Path(args.out) / INTERRUPTED}); "
                "run the same command again to resume."
            )
        print(message, file=sys.stderr)
        return EXIT_INTERRUPTED

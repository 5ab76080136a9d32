"""The main job: ingest, measure, fit, compare, write every table and the report.

``run(inputs, out)`` is what ``gpuptc run`` does, in stages: select the inputs, make one
task per sensor, execute the tasks (:mod:`gpuptc.running.schedulers`), collect their tables,
compare, write, record the provenance, draw the report. The command line only parses
arguments, shows progress and prints the summary.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuptc._shared.timing import Stopwatch, summed
from gpuptc._version import __version__
from gpuptc.backend import get_backend
from gpuptc.config import Preset, get_preset
from gpuptc.fitting.bf_check import CHECK_MODES
from gpuptc.fitting.ptc import MODELS
from gpuptc.formats.outputs import StagedOutputs, per_sensor
from gpuptc.formats.writer import atomic_path
from gpuptc.inputs.butler import ButlerQuery, butler_inventory
from gpuptc.inputs.manifest import Inventory, PairingRule, inventory, sequencer_changes
from gpuptc.products.bf_kernel_file import write_bf_kernel
from gpuptc.products.butler_output import (
    BF_KERNEL_DATASET_TYPE,
    LINEARIZER_DATASET_TYPE,
    PTC_DATASET_TYPE,
    ButlerOutput,
    sensor_detectors,
)
from gpuptc.products.compare import compare, write_eotest_files
from gpuptc.products.cp_pipe_ptc import write_ptc_dataset
from gpuptc.products.focal_plane import focal_plane_table
from gpuptc.products.linearizer import LinearizerError, write_linearizer
from gpuptc.products.verdict import Thresholds, amp_verdicts
from gpuptc.running.schedulers import execute
from gpuptc.running.sensor import SENSOR_TABLES, SensorResult, SensorTask
from gpuptc.running.store import SensorStore
from gpuptc.schema import (
    EOTEST_DIR,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_REJECTED,
    INTERRUPTED,
    REJECTED_COLUMNS,
    REPORT_DIR,
    RUN_FILE,
    TABLE_FILES,
    FileStatus,
    Stage,
    bf_kernel_name,
    display_images_name,
    joined_rejections,
    linearizer_name,
    ptc_dataset_name,
    rejected_frame,
)

__all__ = ["RunResult", "run", "summarize_run"]

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What :func:`run` produced."""

    out: Path
    exit_code: int
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: tuple[Path, ...] = ()
    """Non-FITS files met in the input directories (never opened)."""

    @property
    def rejected(self) -> pd.DataFrame:
        """Rejected files, pairs and amps with their reasons."""
        return self.tables.get("rejected", rejected_frame())


def _manifest_rejections(manifest: pd.DataFrame) -> pd.DataFrame:
    bad = manifest[manifest["status"].isin(FileStatus.REJECTIONS)]
    frame = {"path": bad["path"], "sensor": bad["sensor"], "pair": pd.NA, "amp": pd.NA}
    frame["stage"] = Stage.INGEST
    return pd.DataFrame(frame, columns=list(REJECTED_COLUMNS)).assign(reason=bad["reason"])


@dataclass
class _Selection:
    found: Inventory
    sensors: list[str]
    rejected: pd.DataFrame

    @property
    def manifest(self) -> pd.DataFrame:
        return self.found.manifest


def _select(
    inputs: list[Any], out: Any, sensors: Sequence[str] | None, pairing: PairingRule
) -> _Selection:
    """Ingest the inputs (repository queries among them); the sensors with flat pairs."""
    queries = [item for item in inputs if isinstance(item, ButlerQuery)]
    paths = [item for item in inputs if not isinstance(item, ButlerQuery)]
    parts = [butler_inventory(query, pairing=pairing) for query in queries]
    if paths or not parts:
        parts.append(inventory(paths, exclude=[out], pairing=pairing))
    found = Inventory.joined(parts)
    paired = found.manifest[found.manifest["status"] == FileStatus.PAIRED]
    if sensors:
        paired = paired[paired["sensor"].isin(sensors)]
    rejected = _manifest_rejections(found.manifest)
    return _Selection(found, sorted(paired["sensor"].unique()), rejected)


def _tasks(selection: _Selection, job: _Job, report: bool) -> list[SensorTask]:
    """One task per sensor; with the report, its figures are drawn where it is measured."""
    manifest = selection.manifest
    return [
        SensorTask(
            sensor,
            manifest[manifest["sensor"] == sensor],
            job.config,
            job.backend,
            tuple(job.models),
            job.bias,
            figures=report,
            linearizer=job.linearizer,
            linearize_first=job.linearize_first,
            bf_check=job.bf_check,
        )
        for sensor in selection.sensors
    ]


def _collect(
    selection: _Selection, results: dict[str, SensorResult], job: _Job
) -> dict[str, pd.DataFrame] | None:
    """Every table of the run from the sensors' results (None if no sensor has any)."""
    rejected = [selection.rejected, *(results[s].rejected for s in selection.sensors)]
    done = [results[s] for s in selection.sensors if results[s].measured]
    if not done:
        return None
    tables = {
        name: pd.concat([getattr(r, name) for r in done], ignore_index=True)
        for name in SENSOR_TABLES
        if name != "rejected"
    }
    tables["comparison"] = compare(tables["ptc"], selection.manifest)
    tables["manifest"] = selection.manifest
    tables["verdict"] = amp_verdicts(tables, job.thresholds, job.config.solve.ptc_fit_type)
    return {
        **tables,
        "focal_plane": focal_plane_table(tables),
        "rejected": joined_rejections(rejected),
    }


def _write_tables(
    staged: StagedOutputs,
    tables: dict[str, pd.DataFrame],
    ptc_model: str,
    table_length: int = 2**18,
) -> dict[str, dict[str, Path]]:
    """The tables, EOTEST's files, and per sensor cp_pipe's PTC, linearizer and kernel.

    Per sensor a PTC dataset, a linearizer and a brighter-fatter kernel in ip_isr's formats.
    The PTC dataset holds ``ptc_model``; a linearizer's lookup tables ``table_length``
    entries.

    Returns the files by dataset type (``ptc``, ``linearizer``, ``bfk``) and sensor.
    """
    for name, frame in tables.items():
        staged.table(TABLE_FILES[name], frame)
    if (tables["ptc"]["model"] == "expapprox").any():
        write_eotest_files(
            staged.path(EOTEST_DIR), tables["ptc"], tables["pairs"], manifest=tables["manifest"]
        )
    fitted = tables["ptc"][tables["ptc"]["model"] == ptc_model]
    if fitted.empty:
        log.info("no %s fit: no cp_pipe PTC dataset written", ptc_model)
    of = per_sensor(tables)
    written = {}
    for sensor in sorted(fitted["sensor"].unique()):
        path = written[sensor] = staged.path(ptc_dataset_name(sensor))
        write_ptc_dataset(path, of(sensor), sensor, ptc_model, manifest=tables["manifest"])
    linearity = tables.get("linearity", pd.DataFrame(columns=["sensor"]))
    linearizers = {}
    for sensor in sorted(linearity["sensor"].unique()):
        path = linearizers[sensor] = staged.path(linearizer_name(sensor))
        mine = of(sensor)
        write_linearizer(
            path,
            mine["linearity"],
            mine["ptc"],
            sensor,
            mine["pairs"],
            tables["manifest"],
            table_length,
            ptc_model,
        )
    kernels = {}
    solved = tables.get("bf_kernel", pd.DataFrame(columns=["sensor", "size"]))
    for sensor in sorted(solved.loc[solved["size"] > 0, "sensor"].unique()):
        path = kernels[sensor] = staged.path(bf_kernel_name(sensor))
        write_bf_kernel(path, of(sensor), sensor, tables["manifest"])
    return {
        PTC_DATASET_TYPE: written,
        LINEARIZER_DATASET_TYPE: linearizers,
        BF_KERNEL_DATASET_TYPE: kernels,
    }


def _write_images(staged: StagedOutputs, results: dict[str, SensorResult]) -> None:
    """The display images the sensors made, where the report finds them."""
    for sensor, result in sorted(results.items()):
        if result.images is not None:
            np.savez_compressed(staged.path(display_images_name(sensor)), **result.images)


def run_provenance(
    config: Preset,
    backend: str,
    inputs: list[Any],
    tables: dict[str, pd.DataFrame],
    exit_code: int,
    started: float,
) -> dict[str, Any]:
    pairs, ptc = tables["pairs"], tables["ptc"]
    return {
        "gpuptc": __version__,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "backend": backend,
        "preset": config.name,
        "configuration": dataclasses.asdict(config),
        "inputs": [os.fspath(p) for p in inputs],
        "models": sorted(ptc["model"].unique(), key=list(MODELS).index),
        "sensors": sorted(pairs["sensor"].unique().tolist()),
        "pairs": int(pairs[["sensor", "pair"]].drop_duplicates().shape[0]),
        "rejected": len(tables["rejected"]),
        "exit_code": exit_code,
        "seconds": round(time.monotonic() - started, 2),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    preset: str | Preset = "cp_pipe",
    backend: str = "auto",
    bias: Any = None,
    eotest: Sequence[str | os.PathLike[str]] = (),
    models: Sequence[str] | None = None,
    sensors: Sequence[str] | None = None,
    report: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    on_sensor: Callable[[str, int, int, int, int], None] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    force: bool = False,
    publish: ButlerOutput | None = None,
    thresholds: Thresholds | None = None,
    linearizer: str | os.PathLike[str] | None = None,
    bf_check: str | None = None,
    **overrides: Any,
) -> RunResult:
    """Run the whole analysis and write every output.

    Parameters
    ----------
    inputs, out : path-like
        Files, directories (searched recursively) and globs (one or an iterable); the
        output directory (never searched for inputs; foreign files in it left alone).
    preset, backend : str (or Preset), str
        ``cp_pipe`` (default), ``cp_pipe_lsstcam``, ``eotest``, ``seed``; the array
        backend (``auto``, ``numpy``, ``cupy``, ...).
    bias : path(s) or MasterBias, optional
        Master bias; default built from the bias frames among the inputs.
    eotest : sequence of path-like
        EOTEST results files to compare with (those among the inputs are found too).
    models, sensors : sequence of str, optional
        PTC models to fit (default all); only these sensors (default all).
    report, force : bool
        Draw the HTML report; recompute sensors stored complete and valid in ``DIR/sensors/``.
    progress, on_sensor : callable, optional
        ``progress(sensor, pairs_done, pairs_total)`` while measuring in process;
        ``on_sensor(sensor, sensors_done, sensors_total, pairs_done, pairs_total)``.
    workers, scheduler, client : optional
        A local Dask cluster of ``workers`` processes (-1: one per GPU, dask-cuda), an
        existing scheduler's address, or a ``distributed.Client`` you have.
    publish, thresholds : ButlerOutput, Thresholds, optional
        A repository's RUN collection for the products (checked first); the verdict's
        limits (``verdict.parquet``; stored sensors stay valid when they change).
    linearizer, bf_check : path-like or 'first', {'detector', 'amp'}, optional
        Linearize the pixels after the bias by a linearizer file (in a folder, each sensor's
        by its serial) or by each sensor's, solved ``first``; check the brighter-fatter
        kernels on the flats they come from (:mod:`gpuptc.fitting.bf_check`).
    **overrides
        Preset field overrides (``cov_size=5``, ``isr__edge_mask=10``, ...).

    Returns
    -------
    RunResult
        The tables and the exit code: 0 success, 3 results written but some inputs,
        pairs or amps rejected (``rejected.csv``), 1 nothing usable (nothing written).

    Examples
    --------
    A small simulated sensor's raws in ``raw_dir`` (:func:`gpuptc.simulate`), no report:

    >>> result = run(raw_dir, tmp / "out", report=False)
    >>> result.exit_code, len(result.rejected)
    (0, 0)
    >>> int(result.tables["verdict"].gain.notna().sum())  # the adopted gains, EXPAPPROXIMATION
    16
    """
    started = time.monotonic()
    config = get_preset(preset, **overrides)
    job = _Job.checked(config, backend, inputs, eotest, out, publish, models, bias, thresholds)
    job.add_pixel_passes(linearizer, bf_check)
    execution = {"client": client, "workers": workers, "scheduler": scheduler, "force": force}
    execution |= {"progress": progress, "on_sensor": on_sensor}
    return _run_staged(job, sensors, report, execution, started)


def _run_staged(
    job: _Job,
    sensors: Sequence[str] | None,
    report: bool,
    execution: dict[str, Any],
    started: float,
) -> RunResult:
    """The run's stages into a staging folder, committed at the end or abandoned."""
    staged = StagedOutputs(job.out)
    try:
        exit_code, tables, found = _stages(job, staged, sensors, report, execution, started)
    except KeyboardInterrupt:
        staged.abandon()
        _mark_interrupted(Path(job.out))
        raise
    except BaseException:
        staged.abandon()
        raise
    seconds = time.monotonic() - started
    return RunResult(Path(job.out), exit_code, tables, seconds, found.skipped)


@dataclass
class _Job:
    """What a run measures and how."""

    config: Preset
    backend: str
    """As asked (``auto`` is resolved by each worker)."""
    resolved: str
    """What ``backend`` is in this process."""
    inputs: list[Any]
    out: Any
    publish: ButlerOutput | None
    models: Sequence[str]
    bias: Any
    thresholds: Thresholds
    linearizer: str | None = None
    linearize_first: bool = False
    bf_check: str | None = None

    @classmethod
    def checked(
        cls,
        config: Preset,
        backend: str,
        inputs: Any,
        eotest: Sequence[Any],
        out: Any,
        publish: ButlerOutput | None,
        models: Sequence[str] | None,
        bias: Any,
        thresholds: Thresholds | None = None,
    ) -> _Job:
        """The job, once its backend and its repository output are known to work.

        An unavailable backend or repository fails here, before anything is written;
        ``inputs`` are one or several paths, ``eotest`` more of them; ``models`` None
        means every model.
        """
        chosen = get_backend(backend)
        log.info("array backend: %s%s", chosen.name, " (auto)" if backend == "auto" else "")
        if publish is not None:
            publish.check()
        chosen_models = models or MODELS
        limits = thresholds or Thresholds()
        found = [*_listed(inputs), *eotest]
        return cls(config, backend, chosen.name, found, out, publish, chosen_models, bias, limits)

    def add_pixel_passes(self, linearizer: Any, bf_check: str | None) -> None:
        """The linearizer and the brighter-fatter check, checked before anything is written."""
        self.linearizer, self.linearize_first = _checked_linearity(linearizer)
        self.bf_check = _checked_bf_check(bf_check)


def _sequencer_changes(manifest: pd.DataFrame) -> dict[str, dict[str, list[Any]]]:
    """The sensors whose flats were not all taken with one sequencer, each named in a warning."""
    changes = sequencer_changes(manifest)
    for sensor, keys in changes.items():
        said = "; ".join(f"{key} {' then '.join(map(str, values))}" for key, values in keys.items())
        log.warning("%s: the flats' sequencer changes during the PTC: %s", sensor, said)
    return changes


def _linearized_by(job: _Job) -> str | None:
    """What linearized the measured pixels, in words (None: nothing did)."""
    if job.linearizer is not None:
        return job.linearizer
    return "each sensor's linearity, solved from a first pass" if job.linearize_first else None


def _checked_bf_check(mode: str | None) -> str | None:
    """The brighter-fatter check asked for (None: none), known before anything is written."""
    if mode is not None and mode not in CHECK_MODES:
        raise ValueError(f"unknown brighter-fatter check {mode!r}: one of {CHECK_MODES}")
    return mode


def _checked_linearity(linearizer: str | os.PathLike[str] | None) -> tuple[str | None, bool]:
    """The run's linearizer file or folder (known to exist), or whether it solves its own.

    Checked before anything is written.
    """
    if linearizer is None or linearizer == "first":
        return None, linearizer == "first"
    path = Path(linearizer)
    if not path.exists():
        raise LinearizerError(f"{path}: no such linearizer file or folder")
    return str(path.resolve()), False


def _listed(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Any]:
    """One input, or several, as a list."""
    return [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)


def _stages(
    job: _Job,
    staged: StagedOutputs,
    sensors: Sequence[str] | None,
    report: bool,
    execution: dict[str, Any],
    started: float,
) -> tuple[int, dict[str, pd.DataFrame], Inventory]:
    """Select, make tasks, execute, collect, write: the exit code, the tables, the inputs."""
    watch = Stopwatch()
    with watch.stage("ingest"):
        selection = _select(job.inputs, job.out, sensors, PairingRule.of(job.config.extract))
    tasks = _tasks(selection, job, report)
    with watch.stage("sensors"):
        results = execute(tasks, job.out, **execution) if tasks else {}
    with watch.stage("tables and comparison"):
        tables = _collect(selection, results, job)
    if tables is None:
        staged.abandon()
        rejected = [selection.rejected, *(results[s].rejected for s in selection.sensors)]
        tables = {"manifest": selection.manifest, "rejected": joined_rejections(rejected)}
        return EXIT_FATAL, tables, selection.found
    exit_code = EXIT_REJECTED if len(tables["rejected"]) else EXIT_OK
    provenance = run_provenance(job.config, job.resolved, job.inputs, tables, exit_code, started)
    provenance["thresholds"] = dataclasses.asdict(job.thresholds)
    provenance["linearized_by"] = _linearized_by(job)
    provenance["sequencer_changes"] = _sequencer_changes(selection.manifest)
    if selection.found.queries:
        provenance["butler"] = list(selection.found.queries)
    write_outputs(
        staged, tables, results if report else None, provenance, (watch, started), job.publish
    )
    return exit_code, tables, selection.found


def write_outputs(
    staged: StagedOutputs,
    tables: dict[str, pd.DataFrame],
    results: dict[str, SensorResult] | None,
    provenance: dict[str, Any],
    clock: tuple[Stopwatch, float],
    publish: ButlerOutput | None = None,
) -> None:
    """Every output into the staging folder, the report when ``results`` are given, then commit.

    With ``publish``, the PTC datasets are put into that repository before the commit
    (``provenance['butler_output']``); a failure there abandons the outputs.

    ``run.json`` ends with the whole run's ``seconds`` and each stage's
    (``seconds_by_stage``; measure, fit, display images and figures summed over the sensors
    measured in this run, not those reused).
    """
    watch, started = clock
    ptc_model = provenance["configuration"]["solve"]["ptc_fit_type"]
    table_length = provenance["configuration"].get("linearity", {}).get("max_lookup_table_adu")
    with watch.stage("write tables"):
        written = _write_tables(staged, tables, ptc_model, table_length or 2**18)
    if publish is not None:
        with watch.stage("repository"):
            detectors = sensor_detectors(tables["manifest"])
            provenance["butler_output"] = publish.ingest(written, detectors)
    if results is not None:
        from gpuptc.report import draw_report

        with watch.stage("report"):
            _write_images(staged, results)
            drawn = {sensor: result.figures for sensor, result in results.items()}
            draw_report(staged.path(REPORT_DIR), tables, provenance, drawn)
    measured = {s: r.seconds for s, r in (results or {}).items() if r.seconds}
    stages = {**watch.seconds, **{f"{k} (sensors)": v for k, v in summed(measured).items()}}
    provenance["seconds_by_stage"] = {k: round(v, 2) for k, v in stages.items()}
    provenance["seconds"] = round(time.monotonic() - started, 2)
    staged.json(RUN_FILE, provenance)
    staged.commit()


def _mark_interrupted(out: Path) -> None:
    """Say which sensors an interrupted run finished (kept for the next run)."""
    note = {
        "partial": True,
        "finished_sensors": SensorStore(out).finished(),
        "resume": "run the same command again: finished sensors are reused",
        "interrupted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with atomic_path(out / INTERRUPTED) as temporary:
        temporary.write_text(json.dumps(note, indent=2))


def _worst_amp(group: pd.DataFrame, comparison: pd.DataFrame) -> str | None:
    """The amp farthest from EOTEST (else cp_pipe, else the sensor's median gain)."""
    expapprox = group[group["model"] == "expapprox"].set_index("amp")
    gains = comparison[(comparison["method"] == "expapprox") & (comparison["quantity"] == "gain")]
    for reference, name in (("eotest", "EOTEST"), ("cp_pipe", "cp_pipe")):
        mine = gains[gains["reference"] == reference].set_index("amp")
        if mine["ratio"].notna().any():
            worst = int((mine["ratio"] - 1).abs().idxmax())
            return f"{worst} ({mine.loc[worst, 'ratio']:.3f} x {name})"
    if len(expapprox):
        deviation = (expapprox["gain"] / expapprox["gain"].median() - 1).abs()
        worst = int(deviation.idxmax()) if deviation.notna().any() else -1
        return f"{worst} ({deviation.max():+.1%} from median)"
    return None


def summarize_run(result: RunResult) -> pd.DataFrame:
    """Per-sensor summary: amps, median gain per method, worst amp, rejected inputs."""
    ptc = result.tables.get("ptc", pd.DataFrame())
    comparison = result.tables.get("comparison", pd.DataFrame())
    rejected = result.rejected
    rows = []
    for sensor, group in ptc.groupby("sensor", sort=True):
        row: dict[str, Any] = {"sensor": sensor, "amps": group["amp"].nunique()}
        for model, fits in group.groupby("model", sort=False):
            row[f"gain_{model}"] = round(float(fits["gain"].median()), 4)
        worst = _worst_amp(group, comparison[comparison["sensor"] == sensor])
        if worst is not None:
            row["worst_amp"] = worst
        row["rejected"] = int((rejected["sensor"] == sensor).sum())
        rows.append(row)
    return pd.DataFrame(rows)

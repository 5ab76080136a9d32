"""The main job: ingest, measure, fit, compare, write every table and the report.

``run(inputs, out)`` is what ``gpuptc run`` does; the command line only parses
arguments, shows progress and prints the summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuptc._version import __version__
from gpuptc._xp import get_backend
from gpuptc.compare import compare, write_eotest_files
from gpuptc.config import Preset, get_preset
from gpuptc.distributed import SensorStore, SensorTask, run_sensors
from gpuptc.io.manifest import ingest
from gpuptc.io.outputs import INTERRUPTED, StagedOutputs
from gpuptc.io.raw import RawReadError, read_raw
from gpuptc.isr import run_isr
from gpuptc.pipeline import REJECTED_COLUMNS
from gpuptc.ptc import MODELS

__all__ = ["EXIT_FATAL", "EXIT_OK", "EXIT_REJECTED", "RunResult", "run", "summarize_run"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_REJECTED = 3

_IMAGE_BIN = 8


@dataclass
class RunResult:
    """What :func:`run` produced."""

    out: Path
    exit_code: int
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rejected(self) -> pd.DataFrame:
        """Rejected files, pairs and amps with their reasons."""
        return self.tables.get("rejected", pd.DataFrame(columns=list(REJECTED_COLUMNS)))


def _manifest_rejections(manifest: pd.DataFrame) -> pd.DataFrame:
    bad = manifest[manifest["status"].isin(["rejected", "unpaired"])]
    return pd.DataFrame(
        {
            "path": bad["path"],
            "sensor": bad["sensor"],
            "pair": pd.NA,
            "amp": pd.NA,
            "reason": bad["reason"],
        },
        columns=list(REJECTED_COLUMNS),
    )


def _bin(image: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    trimmed = image[:ny, :nx]
    return trimmed.reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))


def _display_images(pairs: pd.DataFrame, preset: Preset, staged: StagedOutputs) -> list[str]:
    """Binned assembled images of one flat and one difference image per sensor."""
    written = []
    xp = get_backend("numpy").xp
    for sensor, group in pairs.groupby("sensor", sort=True):
        used = group[group["used"].fillna(False).astype(bool)]
        candidates = used if len(used) else group
        by_pair = candidates.groupby("pair")["mean"].median()
        pair = int(by_pair.index[np.argmin(np.abs(by_pair.to_numpy() - by_pair.median()))])
        row = group[group["pair"] == pair].iloc[0]
        try:
            raws = [read_raw(row["file1"]), read_raw(row["file2"])]
        except RawReadError as exc:
            log.warning("%s: no display image (%s)", sensor, exc)
            continue
        stack = np.stack([raw.pixels for raw in raws])
        isr = run_isr(
            stack, raws[0].geometry, dataclasses.replace(preset.isr, dtype="float64"), xp=xp
        )
        images = np.asarray(isr.images)
        means = np.array([np.nanmean(images[k]) for k in range(2)])
        difference = images[0] - images[1] * means[0] / means[1]
        flat = raws[0].assemble(images[0])
        diff = raws[0].assemble(difference)
        target = staged.path(f"report/data/{sensor}_images.npz")
        np.savez_compressed(
            target,
            flat=_bin(flat, _IMAGE_BIN),
            difference=_bin(diff, _IMAGE_BIN),
            pair=pair,
            exptime=float(row["exptime"]),
            bin=_IMAGE_BIN,
        )
        written.append(str(sensor))
    return written


def _process(
    tasks: list[SensorTask],
    out: str | os.PathLike[str],
    client: Any,
    workers: int | None,
    scheduler: str | None,
    force: bool,
    progress: Callable[[str, int, int], None] | None,
    on_sensor: Callable[[str, int, int, int, int], None] | None,
) -> dict[str, dict[str, pd.DataFrame]]:
    """Run the sensor tasks in process, on a local Dask cluster, or on a given one."""
    store = SensorStore(out)
    if client is None and scheduler is None and not workers:
        return run_sensors(tasks, store, force=force, progress=progress, on_sensor=on_sensor)
    from distributed import Client, LocalCluster

    if client is not None:
        return run_sensors(tasks, store, client=client, force=force, on_sensor=on_sensor)
    if workers == -1:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as exc:
            raise ValueError("--gpus needs dask-cuda (pip install dask-cuda)") from exc
        with _glibc_allocation(), LocalCUDACluster() as cluster, Client(cluster) as gpus:
            return run_sensors(tasks, store, client=gpus, force=force, on_sensor=on_sensor)
    if scheduler is not None:
        with Client(scheduler) as remote:
            return run_sensors(tasks, store, client=remote, force=force, on_sensor=on_sensor)
    with (
        _glibc_allocation(),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=_share_of_cores(workers),
        ) as cluster,
        Client(cluster) as local,
    ):
        return run_sensors(tasks, store, client=local, force=force, on_sensor=on_sensor)


@contextlib.contextmanager
def _glibc_allocation() -> Iterator[None]:
    """Dask configuration that lets local workers allocate as this process does.

    Dask's nannies set ``MALLOC_TRIM_THRESHOLD_`` in their workers, which turns off
    glibc's adaptive mmap threshold: every large array is then mapped afresh and
    faulted in page by page. gpuptc allocates and frees images of the same sizes for
    every pair, so that made a sensor take 1.6x as long in a worker as in this process
    (3.2 s against 2.0 s for 24 medium pairs). Our own local workers keep glibc's
    defaults. (Nannies also leave the setting in this process's environment, from
    where later workers would inherit it; it is lifted for the duration.)
    """
    import dask

    key = "MALLOC_TRIM_THRESHOLD_"
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    dask_value = environ.pop(key, None)
    inherited = os.environ.get(key)
    left_by_dask = dask_value is not None and inherited == str(dask_value)
    if left_by_dask:
        del os.environ[key]
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            yield
    finally:
        if left_by_dask and inherited is not None:
            os.environ[key] = inherited


def _share_of_cores(workers: int) -> dict[str, str]:
    """Environment of local workers: the cores divided between them for amplifier threads.

    Each worker computes one sensor at a time with amplifier groups in threads; left to
    the default (every core) the workers would oversubscribe the machine. A
    ``GPUPTC_THREADS`` set by the user is passed on unchanged.
    """
    if "GPUPTC_THREADS" in os.environ:
        return {}
    return {"GPUPTC_THREADS": str(max(1, (os.cpu_count() or 1) // max(workers, 1)))}


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
    **overrides: Any,
) -> RunResult:
    """Run the whole analysis and write every output.

    Parameters
    ----------
    inputs : path-like or iterable of path-like
        Files, directories (searched recursively) and globs.
    out : path-like
        Output directory; never searched for inputs, foreign files in it left alone.
    preset : str or Preset
        ``cp_pipe`` (default), ``cp_pipe_lsstcam``, ``eotest``, ``seed``.
    backend : str
        Array backend (``auto``, ``numpy``, ``cupy``, ...).
    bias : path(s) or MasterBias, optional
        Master bias; default built from the bias frames among the inputs.
    eotest : sequence of path-like
        EOTEST results files to compare with (those among the inputs are found too).
    models : sequence of str, optional
        PTC models to fit (default all).
    sensors : sequence of str, optional
        Only these sensors.
    report : bool
        Draw the HTML report.
    progress : callable, optional
        ``progress(sensor, pairs_done, pairs_total)`` while measuring in process.
    on_sensor : callable, optional
        ``on_sensor(sensor, sensors_done, sensors_total, pairs_done, pairs_total)`` as
        sensors finish (stored ones count as done at once).
    workers : int, optional
        Start a local Dask cluster with this many worker processes; -1: one worker per
        GPU (dask-cuda's LocalCUDACluster).
    scheduler : str, optional
        Address of an existing Dask scheduler to use.
    client : distributed.Client, optional
        A Dask client the caller already has.
    force : bool
        Recompute sensors whose stored results (``DIR/sensors/``) are complete and valid.
    **overrides
        Preset field overrides (``cov_size=5``, ``isr__edge_mask=10``, ...).

    Returns
    -------
    RunResult
        The tables and the exit code: 0 success, 3 results written but some inputs,
        pairs or amps rejected (``rejected.csv``), 1 nothing usable (nothing written).
    """
    started = time.monotonic()
    config = get_preset(preset, **overrides)
    chosen = get_backend(backend)
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    all_inputs = [*items, *eotest]
    staged = StagedOutputs(out)
    try:
        manifest = ingest(all_inputs, exclude=[out])
        rejected = [_manifest_rejections(manifest)]
        paired = manifest[manifest["status"] == "paired"]
        if sensors:
            paired = paired[paired["sensor"].isin(sensors)]
        if paired.empty:
            staged.abandon()
            return RunResult(
                Path(out),
                EXIT_FATAL,
                {"manifest": manifest, "rejected": pd.concat(rejected)},
                time.monotonic() - started,
            )
        wanted = list(models) if models else list(MODELS)
        selected = sorted(paired["sensor"].unique())
        tasks = [
            SensorTask(
                sensor,
                manifest[manifest["sensor"] == sensor],
                config,
                backend,
                tuple(wanted),
                bias,
            )
            for sensor in selected
        ]
        results = _process(tasks, out, client, workers, scheduler, force, progress, on_sensor)
        for sensor in selected:
            rejected.append(results[sensor]["rejected"])
        done = [results[s] for s in selected if "pairs" in results[s]]
        if not done:
            staged.abandon()
            every = pd.concat([r for r in rejected if len(r)], ignore_index=True)
            return RunResult(
                Path(out),
                EXIT_FATAL,
                {"manifest": manifest, "rejected": every},
                time.monotonic() - started,
            )
        pairs, covariances, ptc, fullcov = (
            pd.concat([r[name] for r in done], ignore_index=True)
            for name in ("pairs", "covariances", "ptc", "fullcov")
        )
        wanted = sorted(ptc["model"].unique(), key=list(MODELS).index)
        comparison = compare(ptc, manifest)
        rejected_frame = pd.concat(
            [r for r in rejected if len(r)] or [rejected[0]], ignore_index=True
        )
        tables = {
            "manifest": manifest,
            "pairs": pairs,
            "covariances": covariances,
            "ptc": ptc,
            "fullcov": fullcov,
            "comparison": comparison,
            "rejected": rejected_frame,
        }
        for name, frame in tables.items():
            staged.table(f"{name}.csv" if name == "rejected" else f"{name}.parquet", frame)
        if (ptc["model"] == "expapprox").any():
            write_eotest_files(staged.path("eotest"), ptc, pairs, manifest=manifest)
        exit_code = EXIT_REJECTED if len(rejected_frame) else EXIT_OK
        provenance = {
            "gpuptc": __version__,
            "python": platform.python_version(),
            "machine": platform.platform(),
            "backend": chosen.name,
            "preset": config.name,
            "configuration": dataclasses.asdict(config),
            "inputs": [os.fspath(p) for p in all_inputs],
            "models": wanted,
            "sensors": sorted(pairs["sensor"].unique().tolist()),
            "pairs": int(pairs[["sensor", "pair"]].drop_duplicates().shape[0]),
            "rejected": len(rejected_frame),
            "exit_code": exit_code,
            "seconds": round(time.monotonic() - started, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if report:
            from gpuptc.report import draw_report

            _display_images(pairs, config, staged)
            draw_report(staged.path("report"), tables, provenance)
        staged.json("run.json", provenance)
        staged.commit()
    except KeyboardInterrupt:
        staged.abandon()
        _mark_interrupted(Path(out))
        raise
    except BaseException:
        staged.abandon()
        raise
    return RunResult(Path(out), exit_code, tables, time.monotonic() - started)


def _mark_interrupted(out: Path) -> None:
    """Say which sensors an interrupted run finished (kept for the next run)."""
    store = SensorStore(out)
    finished = (
        sorted(p.parent.name for p in store.root.glob("*/done.json")) if store.root.exists() else []
    )
    note = {
        "partial": True,
        "finished_sensors": finished,
        "resume": "run the same command again: finished sensors are reused",
        "interrupted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    target = out / INTERRUPTED
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(note, indent=2))
    os.replace(temporary, target)


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
        expapprox = group[group["model"] == "expapprox"].set_index("amp")
        mine = comparison[(comparison["sensor"] == sensor) & (comparison["method"] == "expapprox")]
        if mine["ratio"].notna().any():
            deviation = (mine.set_index("amp")["ratio"] - 1).abs()
            worst = int(deviation.idxmax())
            row["worst_amp"] = f"{worst} ({mine.set_index('amp').loc[worst, 'ratio']:.3f} x EOTEST)"
        elif len(expapprox):
            deviation = (expapprox["gain"] / expapprox["gain"].median() - 1).abs()
            worst = int(deviation.idxmax()) if deviation.notna().any() else -1
            row["worst_amp"] = f"{worst} ({deviation.max():+.1%} from median)"
        row["rejected"] = int((rejected["sensor"] == sensor).sum())
        rows.append(row)
    return pd.DataFrame(rows)

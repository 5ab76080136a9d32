"""Many sensors: one task per sensor, in process or on Dask, with resumable results.

A :class:`SensorTask` carries everything one sensor needs (its manifest rows, the preset,
the backend and models); :func:`process_sensor` turns it into small DataFrames and the
report's binned display images, never device arrays. :class:`SensorStore` keeps each
finished sensor under ``DIR/sensors/<sensor>/`` with a fingerprint of its configuration
and input files, written atomically, so a re-run (even after ``kill -9``) skips what is
complete and valid. :func:`execute` runs the tasks in process, on a local Dask cluster,
on dask-cuda's one worker per GPU, or on a cluster the caller has.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuptc._shared.processes import process_pool
from gpuptc._shared.timing import Stopwatch
from gpuptc.backend import get_backend
from gpuptc.config import Preset
from gpuptc.fitting.solve import amp_rejections, fit, per_pair_gain_column
from gpuptc.formats.writer import replace_folder
from gpuptc.inputs.remote import InputFiles
from gpuptc.measuring.compute import display_images
from gpuptc.measuring.sensor import input_files, measure
from gpuptc.raws.exposure import RawReadError
from gpuptc.schema import (
    SCHEMA_VERSION,
    SENSORS_DIR,
    DrawnFigure,
    FileStatus,
    Stage,
    rejected_frame,
    rejected_row,
)

__all__ = [
    "SENSOR_TABLES",
    "SensorStore",
    "SensorTask",
    "execute",
    "process_sensor",
    "run_sensors",
]

log = logging.getLogger(__name__)

SENSOR_TABLES: tuple[str, ...] = ("pairs", "covariances", "ptc", "fullcov", "rejected")
"""The tables of one sensor's results."""

SensorResult = dict[str, Any]
"""One sensor's results: the :data:`SENSOR_TABLES` as DataFrames and, where made, the
display images under ``images`` (a dict of arrays); a failed sensor has only
``rejected``."""

Progress = Callable[[str, int, int], None]
OnSensor = Callable[[str, int, int, int, int], None]


@dataclass(frozen=True)
class SensorTask:
    """Everything needed to measure and fit one sensor, picklable for any worker."""

    sensor: str
    manifest: pd.DataFrame
    preset: Preset
    backend: str
    models: tuple[str, ...]
    bias: Any = None
    figures: bool = False
    """Draw the sensor's report figures where it is measured (not part of its fingerprint)."""

    @property
    def n_pairs(self) -> int:
        """Flat pairs of the sensor."""
        paired = self.manifest[self.manifest["status"] == FileStatus.PAIRED]
        return int(paired["pair"].nunique())

    def fingerprint(self) -> str:
        """Hash of the configuration, models and every input file (path, size, mtime)."""
        files = []
        inputs = self.manifest["status"].isin([FileStatus.PAIRED, FileStatus.BIAS])
        for path in sorted(self.manifest.loc[inputs, "path"]):
            try:
                info = os.stat(path)
                files.append([path, info.st_size, info.st_mtime_ns])
            except OSError:
                files.append([path, None, None])
        document = {
            "schema": SCHEMA_VERSION,
            "configuration": dataclasses.asdict(self.preset),
            "backend": self.backend,
            "models": list(self.models),
            "bias": str(self.bias),
            "files": files,
        }
        return hashlib.sha256(
            json.dumps(document, sort_keys=True, default=str).encode()
        ).hexdigest()


def _display_pair(pairs: pd.DataFrame) -> pd.Series | None:
    """A typical pair to show: of the used pairs, the one whose mean is the median's."""
    if pairs.empty:
        return None
    used = pairs[pairs["used"].fillna(False).astype(bool)]
    candidates = used if len(used) else pairs
    by_pair = candidates.groupby("pair")["mean"].median()
    pair = int(by_pair.index[np.argmin(np.abs(by_pair.to_numpy() - by_pair.median()))])
    return pairs[pairs["pair"] == pair].iloc[0]


def _images(task: SensorTask, pairs: pd.DataFrame, files: InputFiles) -> dict[str, Any] | None:
    """The display images of one typical pair of the sensor (None if it cannot be read)."""
    row = _display_pair(pairs)
    if row is None:
        return None
    paths = (row["file1"], row["file2"])
    try:
        local = (files.local(paths[0]), files.local(paths[1]))
        images = display_images(local, task.preset, get_backend(task.backend))
    except RawReadError as exc:
        log.warning("%s: no display image (%s)", task.sensor, exc)
        return None
    finally:
        files.release(paths)
    return {**images, "pair": np.int64(row["pair"]), "exptime": np.float64(row["exptime"])}


def process_sensor(task: SensorTask, progress: Progress | None = None) -> SensorResult:
    """Measure and fit one sensor, make its display images and, if asked, its figures.

    Parameters
    ----------
    task : SensorTask
        The sensor and its configuration.
    progress : callable, optional
        ``progress(sensor, pairs_done, pairs_total)`` (in-process runs only).

    Returns
    -------
    dict
        ``pairs`` (with ``used``), ``covariances``, ``ptc``, ``fullcov``, ``rejected``
        DataFrames, ``images`` (see :func:`gpuptc.measuring.compute.display_images`) or None,
        ``figures`` (a list of :class:`gpuptc.report.sensor.DrawnFigure`) when
        ``task.figures``, and ``seconds``: wall time of each stage.
    """
    with _sensor_files(task) as files:
        return _process(task, files, progress)


def _sensor_files(task: SensorTask) -> InputFiles:
    """The sensor's raws in reading order (remote ones fetched ahead, see io.remote)."""
    return input_files(task.manifest, [task.sensor], task.preset, task.bias)


def _process(task: SensorTask, files: InputFiles, progress: Progress | None) -> SensorResult:
    watch = Stopwatch()
    with watch.stage("measure"):
        pairs, covariances = measure(
            task.manifest,
            task.preset,
            task.backend,
            bias=task.bias,
            sensors=[task.sensor],
            progress=progress,
            files=files,
        )
    rejected = [pairs.attrs.get("rejected", rejected_frame())]
    models = list(task.models)
    if covariances.empty or covariances["cov"].isna().all():
        models = [m for m in models if not m.startswith("fullcov")]
    with watch.stage("fit"):
        xp = get_backend(task.backend).xp
        ptc, fullcov, pairs = fit(pairs, covariances, task.preset, models=models, xp=xp)
    rejected.append(amp_rejections(pairs, ptc))
    frames = [r for r in rejected if len(r)]
    table = pd.concat(frames, ignore_index=True) if frames else rejected[0]
    for frame in (pairs, covariances):
        frame.attrs = {}
    with watch.stage("display images"):
        images = _images(task, pairs, files)
    result = {
        "pairs": pairs,
        "covariances": covariances,
        "ptc": ptc,
        "fullcov": fullcov,
        "rejected": table,
        "images": images,
        "seconds": watch.seconds,
    }
    return with_figures(task, result) if task.figures else result


def with_figures(task: SensorTask, result: SensorResult) -> SensorResult:
    """The result with its sensor's report figures (``figures``) drawn, timed as a stage."""
    drawn, seconds = draw_figures(task, result)
    return _drawn_into(result, [drawn], seconds)


def draw_figures(
    task: SensorTask, result: SensorResult, part: tuple[int, int] = (0, 1)
) -> tuple[list[DrawnFigure], float]:
    """A part of a sensor's figures (see :func:`gpuptc.report.sensor.sensor_figures`), timed."""
    from gpuptc.report.sensor import sensor_figures

    watch = Stopwatch()
    with watch.stage("figures"):
        column = per_pair_gain_column(task.preset.solve.method)
        drawn = sensor_figures(task.sensor, result, result.get("images"), column, part)
    return drawn, watch.seconds["figures"]


def _drawn_into(
    result: SensorResult, parts: list[list[DrawnFigure]], seconds: float
) -> SensorResult:
    from gpuptc.report.sensor import joined

    timing = {**result["seconds"], "figures": seconds}
    return {**result, "figures": joined(parts), "seconds": timing}


class SensorStore:
    """Finished sensors under ``DIR/sensors/<sensor>/``, each with its fingerprint.

    Parameters
    ----------
    out : path-like
        The run's output directory.
    """

    _DONE = "done.json"
    _IMAGES = "images.npz"
    _FIGURES = "figures"

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.root = Path(out) / SENSORS_DIR

    def _folder(self, sensor: str) -> Path:
        return self.root / sensor.replace(os.sep, "_")

    def load(self, sensor: str, fingerprint: str) -> SensorResult | None:
        """The stored results of ``sensor`` if complete and made from the same inputs."""
        folder = self._folder(sensor)
        try:
            done = json.loads((folder / self._DONE).read_text())
            if done.get("fingerprint") != fingerprint:
                return None
            result: SensorResult = {
                name: pd.read_parquet(folder / f"{name}.parquet") for name in SENSOR_TABLES
            }
            images = folder / self._IMAGES
            if images.exists():
                with np.load(images) as arrays:
                    result["images"] = {key: arrays[key] for key in arrays.files}
            if "figures" in done:
                result["figures"] = [self._figure(folder, entry) for entry in done["figures"]]
            return result
        except (OSError, ValueError):
            return None

    def save(self, sensor: str, fingerprint: str, result: SensorResult) -> None:
        """Write a sensor's results atomically (folder renamed into place when complete)."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{sensor}.{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            for name in SENSOR_TABLES:
                frame = result[name].copy()
                frame.attrs = {}
                if name == "rejected":
                    frame = frame.astype({"pair": "Int64", "amp": "Int64"})
                frame.to_parquet(staging / f"{name}.parquet", index=False)
            if result.get("images") is not None:
                np.savez_compressed(staging / self._IMAGES, **result["images"])
            done: dict[str, Any] = {"fingerprint": fingerprint}
            if result.get("figures") is not None:
                done["figures"] = self._save_figures(staging, result["figures"])
            (staging / self._DONE).write_text(json.dumps(done))
            replace_folder(staging, self._folder(sensor))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _save_figures(self, staging: Path, drawn: list[DrawnFigure]) -> list[dict[str, Any]]:
        (staging / self._FIGURES).mkdir()
        for figure in drawn:
            if figure.png is not None:
                (staging / self._FIGURES / figure.name).write_bytes(figure.png)
        return [{"name": f.name, "caption": f.caption, "failure": f.failure} for f in drawn]

    def _figure(self, folder: Path, entry: dict[str, Any]) -> DrawnFigure:
        png = None if entry["failure"] else (folder / self._FIGURES / entry["name"]).read_bytes()
        return DrawnFigure(entry["name"], entry["caption"], png, entry["failure"])

    def finished(self) -> list[str]:
        """Sensors whose results are stored complete."""
        if not self.root.exists():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"*/{self._DONE}"))

    def clean(self) -> None:
        """Remove folders left by interrupted writes."""
        if self.root.exists():
            for leftover in self.root.glob(".*"):
                shutil.rmtree(leftover, ignore_errors=True)


def _failure(task: SensorTask, exc: BaseException) -> SensorResult:
    log.error("sensor %s failed:\n%s", task.sensor, "".join(traceback.format_exception(exc)))
    reason = f"sensor failed: {type(exc).__name__}: {exc}"
    return {
        "rejected": rejected_frame([rejected_row(reason, stage=Stage.SENSOR, sensor=task.sensor)])
    }


class _Bookkeeper:
    """Stores finished sensors, collects their results and reports sensor progress."""

    def __init__(
        self, tasks: Sequence[SensorTask], store: SensorStore, on_sensor: OnSensor | None
    ) -> None:
        self.store = store
        self.on_sensor = on_sensor
        self.results: dict[str, SensorResult] = {}
        self.total = len(tasks)
        self.pairs_total = sum(task.n_pairs for task in tasks)
        self.pairs_done = 0

    def reuse(self, task: SensorTask, stored: SensorResult) -> None:
        log.info("%s: results of an earlier run reused", task.sensor)
        self.results[task.sensor] = stored
        self.pairs_done += task.n_pairs

    def finished(self, task: SensorTask, fingerprint: str, result: SensorResult) -> None:
        if "pairs" in result:
            self.store.save(task.sensor, fingerprint, result)
        self.results[task.sensor] = result
        self.pairs_done += task.n_pairs
        if self.on_sensor:
            self.on_sensor(
                task.sensor, len(self.results), self.total, self.pairs_done, self.pairs_total
            )


def _in_process(
    pending: list[tuple[SensorTask, str]], books: _Bookkeeper, progress: Progress | None
) -> None:
    """One sensor after another, each one's figures drawn by other processes meanwhile."""
    workers = os.cpu_count() or 1
    with _drawing_pool(any(task.figures for task, _ in pending), workers) as pool:
        waiting: list[_Drawing] = []
        for task, fingerprint in pending:
            try:
                result = process_sensor(dataclasses.replace(task, figures=False), progress)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                result = _failure(task, exc)
            if pool is not None and task.figures and "pairs" in result:
                waiting.append(_Drawing.submit(pool, workers, task, fingerprint, result))
            else:
                books.finished(task, fingerprint, result)
            waiting = _collect_drawn(waiting, books, wait=False)
        _collect_drawn(waiting, books, wait=True)


@contextlib.contextmanager
def _drawing_pool(enabled: bool, workers: int) -> Iterator[Any]:
    """``workers`` processes that draw figures while this one measures, or None.

    Processes, not threads: drawing holds the GIL, and a drawing thread slowed the
    measuring of 4 sensors more than it saved (70 s against 67 s inline, 56 s with a
    process, on 2 cores). They are started before the measuring starts its threads.
    """
    if not enabled:
        yield None
        return
    with process_pool(workers) as pool:
        pool.submit(_import_report).result()
        yield pool


def _import_report() -> None:
    import gpuptc.report.sensor  # noqa: F401


@dataclass
class _Drawing:
    """A measured sensor whose figures are being drawn, in one part per drawing process."""

    task: SensorTask
    fingerprint: str
    result: SensorResult
    futures: list[Any]

    @classmethod
    def submit(
        cls, pool: Any, parts: int, task: SensorTask, fingerprint: str, result: SensorResult
    ) -> _Drawing:
        """Its figures in ``parts`` parts, one per drawing process."""
        futures = [pool.submit(draw_figures, task, result, (k, parts)) for k in range(parts)]
        return cls(task, fingerprint, result, futures)

    def done(self) -> bool:
        return all(future.done() for future in self.futures)

    def finished(self) -> SensorResult:
        """The result with its figures, or without them if a drawing process failed."""
        try:
            drawn = [future.result() for future in self.futures]
        except Exception as exc:  # the report draws them itself
            log.warning("%s: figures not drawn beside the run: %s", self.task.sensor, exc)
            return self.result
        return _drawn_into(self.result, [part for part, _ in drawn], sum(s for _, s in drawn))


def _collect_drawn(waiting: list[_Drawing], books: _Bookkeeper, wait: bool) -> list[_Drawing]:
    """Finish the sensors whose figures are drawn (all of them when ``wait``); the others."""
    left = []
    for drawing in waiting:
        if wait or drawing.done():
            books.finished(drawing.task, drawing.fingerprint, drawing.finished())
        else:
            left.append(drawing)
    return left


def _on_client(pending: list[tuple[SensorTask, str]], books: _Bookkeeper, client: Any) -> None:
    from distributed import as_completed

    futures = {
        client.submit(
            process_sensor,
            task,
            key=f"gpuptc-{task.sensor}-{fingerprint[:12]}",
            pure=False,
            retries=2,
        ): (task, fingerprint)
        for task, fingerprint in pending
    }
    for future in as_completed(futures):
        task, fingerprint = futures[future]
        try:
            result = future.result()
        except Exception as exc:
            result = _failure(task, exc)
        books.finished(task, fingerprint, result)


def run_sensors(
    tasks: Sequence[SensorTask],
    store: SensorStore,
    *,
    client: Any = None,
    force: bool = False,
    progress: Progress | None = None,
    on_sensor: OnSensor | None = None,
) -> dict[str, SensorResult]:
    """Process every sensor, reusing stored results, in process or on a Dask client.

    Parameters
    ----------
    tasks : sequence of SensorTask
        One per sensor.
    store : SensorStore
        Where finished sensors are kept (and found again).
    client : distributed.Client, optional
        Run the tasks on this cluster (one task per sensor, retried on lost workers).
    force : bool
        Recompute sensors even when valid stored results exist.
    progress : callable, optional
        Per-pair progress of in-process runs.
    on_sensor : callable, optional
        ``on_sensor(sensor, sensors_done, sensors_total, pairs_done, pairs_total)`` as
        sensors finish (stored ones count as done at once).

    Returns
    -------
    dict
        Sensor -> its results; a failed sensor has only a ``rejected`` table.
    """
    store.clean()
    books = _Bookkeeper(tasks, store, on_sensor)
    pending = []
    for task in tasks:
        fingerprint = task.fingerprint()
        stored = None if force else store.load(task.sensor, fingerprint)
        if stored is not None:
            books.reuse(task, stored)
        else:
            pending.append((task, fingerprint))
    if client is None:
        _in_process(pending, books, progress)
    else:
        _on_client(pending, books, client)
    return books.results


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


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler: str | None) -> Iterator[Any]:
    """A Dask client for the run: a local cluster, one worker per GPU, or a scheduler's.

    Parameters
    ----------
    workers : int or None
        Local worker processes; -1 for dask-cuda's ``LocalCUDACluster``.
    scheduler : str or None
        Address of an existing scheduler (wins over ``workers``).

    Yields
    ------
    distributed.Client
        Closed, with any cluster it started, on exit.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as remote:
            yield remote
        return
    if workers == -1:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as exc:
            raise ValueError("--gpus needs dask-cuda (pip install dask-cuda)") from exc
        with _glibc_allocation(), LocalCUDACluster() as cluster, Client(cluster) as gpus:
            yield gpus
        return
    with (
        _glibc_allocation(),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=_share_of_cores(workers or 1),
        ) as cluster,
        Client(cluster) as local,
    ):
        yield local


def execute(
    tasks: list[SensorTask],
    out: str | os.PathLike[str],
    *,
    client: Any = None,
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
    on_sensor: OnSensor | None = None,
) -> dict[str, SensorResult]:
    """Run the sensor tasks in process, on a Dask cluster gpuptc starts, or on a given one.

    Parameters
    ----------
    tasks : list of SensorTask
        One per sensor.
    out : path-like
        The run's output directory (finished sensors are stored under ``sensors/``).
    client : distributed.Client, optional
        Use this client.
    workers : int, optional
        Start a local cluster of this many workers (-1: one per GPU, dask-cuda).
    scheduler : str, optional
        Connect to this scheduler.
    force : bool
        Recompute stored sensors.
    progress, on_sensor : callable, optional
        See :func:`run_sensors` (``progress`` only in process).

    Returns
    -------
    dict
        Sensor -> its results.
    """
    store = SensorStore(out)
    if client is None and scheduler is None and not workers:
        return run_sensors(tasks, store, force=force, progress=progress, on_sensor=on_sensor)
    if client is not None:
        return run_sensors(tasks, store, client=client, force=force, on_sensor=on_sensor)
    with dask_client(workers, scheduler) as started:
        return run_sensors(tasks, store, client=started, force=force, on_sensor=on_sensor)

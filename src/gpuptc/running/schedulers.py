"""Where and when the sensor tasks run: in process, on a local Dask cluster, or on yours.

:func:`execute` runs :func:`gpuptc.running.sensor.process_sensor` for each task in this
process (each sensor's figures drawn by other processes while the next is measured), on a
local Dask cluster, on dask-cuda's one worker per GPU, or on a cluster the caller has; it
reuses the sensors the :class:`gpuptc.running.store.SensorStore` holds complete and stores
each one that finishes. Nothing here knows what a sensor's stages are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gpuptc import settings
from gpuptc._shared.processes import process_pool
from gpuptc.running.sensor import (
    SensorResult,
    SensorTask,
    draw_figures,
    process_sensor,
    with_drawn,
)
from gpuptc.running.store import SensorStore

__all__ = ["dask_client", "execute", "run_sensors"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
OnSensor = Callable[[str, int, int, int, int], None]


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
        if result.measured:
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
                result = SensorResult.failed(task.sensor, exc)
            if pool is not None and task.figures and result.measured:
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
        return with_drawn(self.result, [part for part, _ in drawn], sum(s for _, s in drawn))


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
        task, fingerprint = futures.pop(future)
        try:
            result = future.result()
        except Exception as exc:
            result = SensorResult.failed(task.sensor, exc)
        future.release()  # fetched: its worker frees the sensor's tables now, not at the end
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
    if settings.is_set("GPUPTC_THREADS"):
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
            dashboard_address=":0",  # any free port: runs side by side never collide
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

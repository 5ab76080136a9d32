"""Many sensors: one task per sensor, in process or on Dask, with resumable results.

A :class:`SensorTask` carries everything one sensor needs (its manifest rows, the preset,
the backend and models); :func:`process_sensor` turns it into small DataFrames, never
device arrays. :class:`SensorStore` keeps each finished sensor under
``DIR/sensors/<sensor>/`` with a fingerprint of its configuration and input files, written
atomically, so a re-run (even after ``kill -9``) skips what is complete and valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gpuptc.config import Preset
from gpuptc.pipeline import REJECTED_COLUMNS, measure
from gpuptc.solve import MEASURED_STATUSES, fit

__all__ = ["SENSOR_TABLES", "SensorStore", "SensorTask", "process_sensor", "run_sensors"]

log = logging.getLogger(__name__)

SENSOR_TABLES: tuple[str, ...] = ("pairs", "covariances", "ptc", "fullcov", "rejected")


@dataclass(frozen=True)
class SensorTask:
    """Everything needed to measure and fit one sensor, picklable for any worker."""

    sensor: str
    manifest: pd.DataFrame
    preset: Preset
    backend: str
    models: tuple[str, ...]
    bias: Any = None

    @property
    def n_pairs(self) -> int:
        """Flat pairs of the sensor."""
        paired = self.manifest[self.manifest["status"] == "paired"]
        return int(paired["pair"].nunique())

    def fingerprint(self) -> str:
        """Hash of the configuration, models and every input file (path, size, mtime)."""
        files = []
        for path in sorted(
            self.manifest.loc[self.manifest["status"].isin(["paired", "bias"]), "path"]
        ):
            try:
                info = os.stat(path)
                files.append([path, info.st_size, info.st_mtime_ns])
            except OSError:
                files.append([path, None, None])
        document = {
            "configuration": dataclasses.asdict(self.preset),
            "backend": self.backend,
            "models": list(self.models),
            "bias": str(self.bias),
            "files": files,
        }
        return hashlib.sha256(
            json.dumps(document, sort_keys=True, default=str).encode()
        ).hexdigest()


def _amp_rejections(pairs: pd.DataFrame, ptc: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for row in pairs[~pairs["status"].isin(MEASURED_STATUSES)].itertuples():
        reason = f"pair not measurable: {row.status.replace('_', ' ')}"
        rows.append(
            {
                "path": row.file1,
                "sensor": row.sensor,
                "pair": row.pair,
                "amp": row.amp,
                "reason": reason,
            }
        )
    failed = ptc[(ptc["model"] == "expapprox") & (ptc["status"] != "ok")]
    for row in failed.itertuples():
        rows.append(
            {
                "path": None,
                "sensor": row.sensor,
                "pair": pd.NA,
                "amp": row.amp,
                "reason": f"PTC fit failed: {row.status.replace('_', ' ')}",
            }
        )
    return pd.DataFrame(rows, columns=list(REJECTED_COLUMNS))


def process_sensor(
    task: SensorTask, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, pd.DataFrame]:
    """Measure and fit one sensor.

    Parameters
    ----------
    task : SensorTask
        The sensor and its configuration.
    progress : callable, optional
        ``progress(sensor, pairs_done, pairs_total)`` (in-process runs only).

    Returns
    -------
    dict of str to pandas.DataFrame
        ``pairs`` (with ``used``), ``covariances``, ``ptc``, ``fullcov``, ``rejected``.
    """
    pairs, covariances = measure(
        task.manifest,
        task.preset,
        task.backend,
        bias=task.bias,
        sensors=[task.sensor],
        progress=progress,
    )
    rejected = [pairs.attrs.get("rejected", pd.DataFrame(columns=list(REJECTED_COLUMNS)))]
    models = list(task.models)
    if covariances.empty or covariances["cov"].isna().all():
        models = [m for m in models if not m.startswith("fullcov")]
    ptc, fullcov, pairs = fit(pairs, covariances, task.preset, models=models)
    rejected.append(_amp_rejections(pairs, ptc))
    frames = [r for r in rejected if len(r)]
    table = pd.concat(frames, ignore_index=True) if frames else rejected[0]
    for frame in (pairs, covariances):
        frame.attrs = {}
    return {
        "pairs": pairs,
        "covariances": covariances,
        "ptc": ptc,
        "fullcov": fullcov,
        "rejected": table,
    }


class SensorStore:
    """Finished sensors under ``DIR/sensors/<sensor>/``, each with its fingerprint.

    Parameters
    ----------
    out : path-like
        The run's output directory.
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.root = Path(out) / "sensors"

    def _folder(self, sensor: str) -> Path:
        return self.root / sensor.replace(os.sep, "_")

    def load(self, sensor: str, fingerprint: str) -> dict[str, pd.DataFrame] | None:
        """The stored results of ``sensor`` if complete and made from the same inputs."""
        folder = self._folder(sensor)
        try:
            done = json.loads((folder / "done.json").read_text())
            if done.get("fingerprint") != fingerprint:
                return None
            return {name: pd.read_parquet(folder / f"{name}.parquet") for name in SENSOR_TABLES}
        except (OSError, ValueError):
            return None

    def save(self, sensor: str, fingerprint: str, result: dict[str, pd.DataFrame]) -> None:
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
            (staging / "done.json").write_text(json.dumps({"fingerprint": fingerprint}))
            folder = self._folder(sensor)
            previous = folder.with_name(folder.name + f".old-{uuid.uuid4().hex[:8]}")
            if folder.exists():
                os.replace(folder, previous)
            os.replace(staging, folder)
            shutil.rmtree(previous, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def clean(self) -> None:
        """Remove folders left by interrupted writes."""
        if self.root.exists():
            for leftover in self.root.glob(".*"):
                shutil.rmtree(leftover, ignore_errors=True)


def _failure(task: SensorTask, exc: BaseException) -> dict[str, pd.DataFrame]:
    log.error("sensor %s failed:\n%s", task.sensor, "".join(traceback.format_exception(exc)))
    reason = f"sensor failed: {type(exc).__name__}: {exc}"
    rejected = pd.DataFrame(
        [{"path": None, "sensor": task.sensor, "pair": pd.NA, "amp": pd.NA, "reason": reason}],
        columns=list(REJECTED_COLUMNS),
    )
    return {"rejected": rejected}


def run_sensors(
    tasks: Sequence[SensorTask],
    store: SensorStore,
    *,
    client: Any = None,
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    on_sensor: Callable[[str, int, int, int, int], None] | None = None,
) -> dict[str, dict[str, pd.DataFrame]]:
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
        Sensor -> its tables; a failed sensor has only a ``rejected`` table.
    """
    store.clean()
    results: dict[str, dict[str, pd.DataFrame]] = {}
    pending = []
    for task in tasks:
        fingerprint = task.fingerprint()
        stored = None if force else store.load(task.sensor, fingerprint)
        if stored is not None:
            log.info("%s: results of an earlier run reused", task.sensor)
            results[task.sensor] = stored
        else:
            pending.append((task, fingerprint))
    total = len(tasks)
    pairs_total = sum(task.n_pairs for task in tasks)
    pairs_done = [sum(task.n_pairs for task in tasks if task.sensor in results)]

    def finished(task: SensorTask, fingerprint: str, result: dict[str, pd.DataFrame]) -> None:
        if "pairs" in result:
            store.save(task.sensor, fingerprint, result)
        results[task.sensor] = result
        pairs_done[0] += task.n_pairs
        if on_sensor:
            on_sensor(task.sensor, len(results), total, pairs_done[0], pairs_total)

    if client is None:
        for task, fingerprint in pending:
            try:
                result = process_sensor(task, progress)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
                result = _failure(task, exc)
            finished(task, fingerprint, result)
        return results
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
        finished(task, fingerprint, result)
    return results

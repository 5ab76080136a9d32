"""Finished sensors kept on disk, so that a run resumes where it stopped.

Each finished sensor lives under ``DIR/sensors/<sensor>/`` with the fingerprint of its
task (:meth:`gpuptc.running.sensor.SensorTask.fingerprint`), written atomically, so a
re-run (even after ``kill -9``) skips what is complete and made from the same inputs.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.formats.writer import replace_folder
from gpuptc.running.sensor import SENSOR_TABLES, SensorResult
from gpuptc.schema import BINNED_PAIRS_FILE, SENSORS_DIR, DrawnFigure, file_stem

__all__ = ["SensorStore"]


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
        return self.root / file_stem(sensor)

    def load(self, sensor: str, fingerprint: str) -> SensorResult | None:
        """The stored results of ``sensor`` if complete and made from the same inputs."""
        folder = self._folder(sensor)
        try:
            done = json.loads((folder / self._DONE).read_text())
            if done.get("fingerprint") != fingerprint:
                return None
            tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in SENSOR_TABLES}
            binned = folder / BINNED_PAIRS_FILE
            if binned.exists():
                tables["binned_pairs"] = pd.read_parquet(binned)
            images = None
            if (folder / self._IMAGES).exists():
                with np.load(folder / self._IMAGES) as arrays:
                    images = {key: arrays[key] for key in arrays.files}
            figures = None
            if "figures" in done:
                figures = [self._figure(folder, entry) for entry in done["figures"]]
            return SensorResult(sensor, **tables, images=images, figures=figures)
        except (OSError, ValueError):
            return None

    def save(self, sensor: str, fingerprint: str, result: SensorResult) -> None:
        """Write a sensor's results atomically (folder renamed into place when complete)."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".{file_stem(sensor)}.{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            for name, frame in result.tables().items():
                if name == "rejected":
                    frame = frame.astype({"pair": "Int64", "amp": "Int64"})
                frame.to_parquet(staging / f"{name}.parquet", index=False)
            if result.binned_pairs is not None:
                result.binned_pairs.to_parquet(staging / BINNED_PAIRS_FILE, index=False)
            if result.images is not None:
                np.savez_compressed(staging / self._IMAGES, **result.images)
            done: dict[str, Any] = {"sensor": sensor, "fingerprint": fingerprint}
            if result.figures is not None:
                done["figures"] = self._save_figures(staging, result.figures)
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
        return sorted(self._sensor_of(done) for done in self.root.glob(f"*/{self._DONE}"))

    @staticmethod
    def _sensor_of(done: Path) -> str:
        """The sensor a ``done.json`` belongs to (its folder's name before it was recorded)."""
        try:
            return json.loads(done.read_text()).get("sensor", done.parent.name)
        except (OSError, ValueError):
            return done.parent.name

    def clean(self) -> None:
        """Remove folders left by interrupted writes."""
        if self.root.exists():
            for leftover in self.root.glob(".*"):
                shutil.rmtree(leftover, ignore_errors=True)

"""The output directory: every table written whole, and old and new results never mixed.

A run writes into a staging folder inside ``--out``; when everything is written, the
previous run's outputs (only files gpuptc writes, never foreign ones) are moved aside,
the new ones renamed into place, and the old ones deleted. A run that dies leaves the
previous results untouched and at most a staging folder, which the next run removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from gpuptc.schema import OUTPUT_NAMES, RUN_FILE, TABLE_FILES

__all__ = ["StagedOutputs", "per_sensor", "read_outputs", "rows_by"]

_STAGING_PREFIX = ".gpuptc-staging-"
_OLD_PREFIX = ".gpuptc-old-"


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.attrs = {}
    return out


class StagedOutputs:
    """Write a run's outputs into a staging folder, then put them in place at once.

    Parameters
    ----------
    out : path-like
        The output directory (created; foreign files in it are left alone).
    """

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.created = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in self.out.glob(f"{_STAGING_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)
            self.staging = self.out / f"{_STAGING_PREFIX}{uuid.uuid4().hex[:8]}"
            self.staging.mkdir()
        except OSError as exc:
            raise OSError(
                f"{self.out}: cannot write the output directory ({exc.strerror or exc})"
            ) from exc

    def path(self, name: str) -> Path:
        """Where to write ``name`` (relative to the output directory) while staging."""
        target = self.staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def table(self, name: str, frame: pd.DataFrame) -> Path:
        """Write a DataFrame as Parquet (or CSV for ``.csv`` names)."""
        target = self.path(name)
        if name.endswith(".csv"):
            _clean(frame).to_csv(target, index=False)
        else:
            _clean(frame).to_parquet(target, index=False)
        return target

    def json(self, name: str, content: Mapping[str, Any]) -> Path:
        """Write a JSON document."""
        target = self.path(name)
        target.write_text(json.dumps(content, indent=2, default=str, sort_keys=True))
        return target

    def commit(self) -> None:
        """Replace the previous run's outputs by the staged ones."""
        old = self.out / f"{_OLD_PREFIX}{uuid.uuid4().hex[:8]}"
        old.mkdir()
        for name in OUTPUT_NAMES:
            current = self.out / name
            if current.exists() or current.is_symlink():
                os.replace(current, old / name)
        for item in sorted(self.staging.iterdir()):
            os.replace(item, self.out / item.name)
        self.staging.rmdir()
        shutil.rmtree(old, ignore_errors=True)

    def abandon(self) -> None:
        """Remove the staging folder; the previous outputs stay as they were.

        An output directory this run created is removed again if nothing else is in it.
        """
        shutil.rmtree(self.staging, ignore_errors=True)
        if self.created:
            with contextlib.suppress(OSError):
                self.out.rmdir()


def read_outputs(out: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """Read the tables of a finished run.

    Parameters
    ----------
    out : path-like
        An output directory of ``gpuptc run``.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``manifest``, ``pairs``, ``covariances``, ``ptc``, ``fullcov``, ``comparison``,
        ``rejected`` (those present).

    Raises
    ------
    FileNotFoundError
        If the directory holds no finished run (no ``run.json``).
    """
    directory = Path(out)
    if not (directory / RUN_FILE).exists():
        raise FileNotFoundError(f"{directory}: no finished gpuptc run here (no {RUN_FILE})")
    tables = {}
    for name, file in TABLE_FILES.items():
        path = directory / file
        if path.exists():
            tables[name] = pd.read_parquet(path) if file.endswith(".parquet") else pd.read_csv(path)
    return tables


def per_sensor(
    tables: Mapping[str, pd.DataFrame],
) -> Callable[[str], dict[str, pd.DataFrame]]:
    """``sensor -> that sensor's rows`` of every run table with a ``sensor`` column.

    The manifest and tables without a ``sensor`` column come whole. The tables are split
    once, so that what is done for every sensor (its products, its report page) reads each
    table once rather than once per sensor (189 scans of the focal plane's covariances).

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        The run's tables.

    Returns
    -------
    callable
        ``of(sensor)``: the tables as ``tables`` has them, each cut to the sensor's rows
        (empty where it has none), in their order.

    Examples
    --------
    >>> ptc = pd.DataFrame({"sensor": ["A", "B", "A"], "gain": [1.0, 2.0, 3.0]})
    >>> of = per_sensor({"ptc": ptc, "manifest": ptc})
    >>> of("A")["ptc"].gain.tolist(), len(of("A")["manifest"]), len(of("C")["ptc"])
    ([1.0, 3.0], 3, 0)
    """
    split = {
        name: rows_by(frame, "sensor")
        for name, frame in tables.items()
        if name != "manifest" and "sensor" in frame
    }

    def of(sensor: str) -> dict[str, pd.DataFrame]:
        return {
            name: split[name](sensor) if name in split else frame for name, frame in tables.items()
        }

    return of


def rows_by(frame: pd.DataFrame, column: str) -> Callable[[Any], pd.DataFrame]:
    """``key -> the rows of frame whose column holds key``, the frame split once.

    For work done once per sensor or per amp: each lookup costs a dictionary access, not a
    scan of the whole frame. A key without rows gives the frame's columns and no rows.

    Examples
    --------
    >>> of = rows_by(pd.DataFrame({"amp": [1, 2, 1], "gain": [1.0, 2.0, 3.0]}), "amp")
    >>> of(1).gain.tolist(), len(of(9))
    ([1.0, 3.0], 0)
    """
    groups = dict(tuple(frame.groupby(column, sort=False)))
    return lambda key: groups.get(key, frame.iloc[0:0])

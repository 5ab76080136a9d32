"""Gain methods side by side, and against EOTEST results.

``compare(ptc, eotest_files)`` gives, per sensor, amp and method, the gain, EOTEST's
PTC_GAIN for that amp and their ratio. ``write_eotest_files`` writes gpuptc's results in
EOTEST's formats (marked ORIGIN = 'gpuptc', so they are never taken back as references).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from gpuptc.io.eotest import (
    eotest_results_columns,
    read_eotest_results,
    sensor_from_eotest_name,
    write_eotest_results,
    write_ptc_stats,
)
from gpuptc.schema import COMPARISON_COLUMNS, FileStatus

__all__ = ["COMPARISON_COLUMNS", "compare", "eotest_references", "write_eotest_files"]

log = logging.getLogger(__name__)


EotestInputs = (
    pd.DataFrame | Mapping[str, str | os.PathLike[str]] | Iterable[str | os.PathLike[str]]
)


def eotest_references(
    eotest_files: EotestInputs, sensors: Iterable[str]
) -> dict[str, pd.DataFrame]:
    """Read EOTEST results files and tell which sensor each belongs to.

    Parameters
    ----------
    eotest_files : manifest, mapping or iterable of paths
        A manifest (rows with status ``eotest`` and their sensor), ``{sensor: path}``, or
        paths. A path's sensor is LSST_NUM in its header, else the file-name prefix before
        ``_eotest_results``, else the only sensor in ``sensors``.
    sensors : iterable of str
        Sensors of the run.

    Returns
    -------
    dict of str to pandas.DataFrame
        AMPLIFIER_RESULTS table per sensor. Files written by gpuptc are skipped.
    """
    sensors = sorted(set(sensors))
    if isinstance(eotest_files, pd.DataFrame):
        rows = eotest_files[eotest_files["status"] == FileStatus.EOTEST]
        items = [(row.sensor, row.path) for row in rows.itertuples()]
    elif isinstance(eotest_files, Mapping):
        items = list(eotest_files.items())
    else:
        items = [(None, path) for path in eotest_files]
    references: dict[str, pd.DataFrame] = {}
    for sensor, path in items:
        table = read_eotest_results(path)
        if str(table.attrs.get("origin", "")).lower() == "gpuptc":
            log.warning("%s: written by gpuptc, not used as an EOTEST reference", path)
            continue
        sensor = sensor or table.attrs.get("lsst_num") or sensor_from_eotest_name(path)
        if sensor is None and len(sensors) == 1:
            sensor = sensors[0]
        if sensor is None:
            raise ValueError(f"{path}: cannot tell which sensor these EOTEST results belong to")
        references[str(sensor)] = table
    return references


def compare(ptc: pd.DataFrame, eotest_files: EotestInputs = ()) -> pd.DataFrame:
    """Each method's gain per amp, next to EOTEST's PTC_GAIN.

    Parameters
    ----------
    ptc : pandas.DataFrame
        From :func:`gpuptc.fit`.
    eotest_files : manifest, mapping or iterable of paths
        EOTEST results (see :func:`eotest_references`); without any, ``eotest_gain`` and
        ``ratio`` are NaN.

    Returns
    -------
    pandas.DataFrame
        One row per sensor, amp and method: gain, eotest_gain, ratio = gain / eotest_gain.
    """
    references = eotest_references(eotest_files, ptc["sensor"].unique()) if len(ptc) else {}
    frame = ptc[["sensor", "amp", "model", "gain"]].rename(columns={"model": "method"}).copy()
    eotest_gain = np.full(len(frame), np.nan)
    for sensor, table in references.items():
        lookup = table.set_index(table["AMP"].astype(int))["PTC_GAIN"].astype(float)
        mine = (frame["sensor"] == sensor).to_numpy()
        eotest_gain[mine] = frame.loc[mine, "amp"].map(lookup).to_numpy(float)
    frame["eotest_gain"] = eotest_gain
    frame["ratio"] = frame["gain"] / frame["eotest_gain"]
    return frame[list(COMPARISON_COLUMNS)].reset_index(drop=True)


def write_eotest_files(
    directory: str | os.PathLike[str],
    ptc: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    model: str = "expapprox",
    manifest: pd.DataFrame | None = None,
) -> list[Path]:
    """Write ``<sensor>_eotest_results.fits`` and ``<sensor>_ptc.fits`` for every sensor.

    Parameters
    ----------
    directory : path-like
        Where to write.
    ptc, pairs : pandas.DataFrame
        From :func:`gpuptc.fit`.
    model : str
        Which fit fills the PTC_* columns.
    manifest : pandas.DataFrame, optional
        For SEQNUM and DAYOBS of each pair.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    out = Path(directory)
    written = []
    for sensor in sorted(ptc["sensor"].unique()):
        written.append(
            write_eotest_results(
                out / f"{sensor}_eotest_results.fits",
                eotest_results_columns(ptc, sensor, model),
                primary={"ORIGIN": "gpuptc", "LSST_NUM": sensor},
            )
        )
        written.append(
            write_ptc_stats(out / f"{sensor}_ptc.fits", pairs, sensor, manifest=manifest)
        )
    return written

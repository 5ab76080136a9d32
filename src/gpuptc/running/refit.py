"""Refit cp_pipe PTC products without raw data: ``gpuptc fit FILE.fits... --out DIR``.

Each PTC dataset's measured means, variances and covariances (:mod:`gpuptc.products.cp_pipe_ptc`)
are fitted again with gpuptc's models under a preset, and written as a run is: the tables,
EOTEST's files, a PTC dataset per sensor, ``run.json`` and a report (without the display
images, which need raw data), with each sensor's brighter-fatter kernels solved from its
refitted PTC as a run solves them. A file that is not a PTC dataset is rejected with its reason
and the others go on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gpuptc._shared.timing import Stopwatch
from gpuptc.config import Preset, get_preset
from gpuptc.fitting.bf_sensor import BF_KERNEL_COLUMNS, sensor_bf_kernels
from gpuptc.fitting.curves import model_curves
from gpuptc.fitting.ptc import MODELS
from gpuptc.fitting.solve import amp_rejections, fit
from gpuptc.formats.outputs import StagedOutputs
from gpuptc.formats.ptc_dataset import PtcDatasetError
from gpuptc.inputs.manifest import MANIFEST_COLUMNS
from gpuptc.products.compare import compare
from gpuptc.products.cp_pipe_ptc import read_ptc_dataset
from gpuptc.products.verdict import Thresholds, amp_verdicts
from gpuptc.running.job import RunResult, run_provenance, write_outputs
from gpuptc.schema import (
    EXIT_FATAL,
    EXIT_OK,
    EXIT_REJECTED,
    FileStatus,
    Stage,
    rejected_frame,
    rejected_row,
)

__all__ = ["refit"]

log = logging.getLogger(__name__)


def _read_all(
    paths: list[Path],
) -> tuple[dict[str, dict[str, pd.DataFrame]], list[dict[str, Any]], pd.DataFrame]:
    """The tables of each readable file by sensor, manifest rows, and the rejected files."""
    read: dict[str, dict[str, pd.DataFrame]] = {}
    rows, rejected = [], []
    for path in paths:
        row = dict.fromkeys(MANIFEST_COLUMNS) | {"path": str(path)}
        try:
            tables = read_ptc_dataset(path)
        except PtcDatasetError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            rejected.append(rejected_row(reason, stage=Stage.INGEST, path=str(path)))
            rows.append(row | {"status": FileStatus.REJECTED, "reason": reason})
            continue
        sensor = str(tables["ptc"]["sensor"].iloc[0])
        if sensor in read:
            reason = f"a second PTC dataset of sensor {sensor}"
            rejected.append(rejected_row(reason, stage=Stage.INGEST, path=str(path)))
            rows.append(row | {"sensor": sensor, "status": FileStatus.REJECTED, "reason": reason})
            continue
        read[sensor] = tables
        rows.append(row | {"sensor": sensor, "status": FileStatus.PTC_DATASET})
    return read, rows, rejected_frame(rejected)


def _refitted(
    read: dict[str, dict[str, pd.DataFrame]],
    manifest: pd.DataFrame,
    rejected: pd.DataFrame,
    config: Preset,
    models: list[str],
) -> dict[str, pd.DataFrame]:
    """Every table of a refit: the files' measurements fitted and compared."""
    pairs = pd.concat([t["pairs"] for t in read.values()], ignore_index=True)
    covariances = pd.concat([t["covariances"] for t in read.values()], ignore_index=True)
    ptc, fullcov, pairs = fit(pairs, covariances, config, models=models)
    kernels, failed = _bf_kernels(pairs, covariances, ptc, fullcov, config)
    return {
        "manifest": manifest,
        "pairs": pairs,
        "covariances": covariances,
        "ptc": ptc,
        "fullcov": fullcov,
        "curves": model_curves(pairs, ptc, fullcov, config.solve),
        "bf_kernel": kernels,
        "comparison": compare(ptc, manifest),
        "rejected": pd.concat([rejected, amp_rejections(pairs, ptc), failed], ignore_index=True),
    }


def _bf_kernels(
    pairs: pd.DataFrame,
    covariances: pd.DataFrame,
    ptc: pd.DataFrame,
    fullcov: pd.DataFrame,
    config: Preset,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each sensor's brighter-fatter kernels from its refitted PTC.

    A sensor whose kernels fail is a rejected row (its PTC stands).
    """
    tables, failed = [], []
    for sensor in sorted(pairs["sensor"].unique()):
        mine = [t[t["sensor"] == sensor] for t in (pairs, covariances, ptc, fullcov)]
        try:
            tables.append(
                sensor_bf_kernels(*mine, config.brighter_fatter, config.solve.ptc_fit_type)
            )
        except Exception as exc:
            log.error("%s: brighter-fatter kernels not solved", sensor, exc_info=True)
            reason = f"brighter-fatter kernels not solved: {type(exc).__name__}: {exc}"
            failed.append(rejected_row(reason, stage=Stage.BF_KERNEL, sensor=sensor))
    kernels = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame(columns=list(BF_KERNEL_COLUMNS))
    )
    return kernels, rejected_frame(failed)


def refit(
    files: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    preset: str = "cp_pipe",
    models: Sequence[str] | None = None,
    report: bool = True,
    thresholds: Thresholds | None = None,
    **overrides: Any,
) -> RunResult:
    """Refit PTC datasets' measurements with gpuptc's models and write every output.

    Parameters
    ----------
    files : path-like or iterable of path-like
        PTC dataset files (cp_pipe's, or gpuptc's ``cp_pipe/<sensor>_ptc.fits``).
    out : path-like
        Output directory, written as by :func:`gpuptc.run`.
    preset : str
        Whose fits (``cp_pipe`` by default); its ISR and extraction settings do not apply.
    models : sequence of str, optional
        PTC models to fit (default all; ``rhl`` needs per-pair gains the files lack).
    report : bool
        Draw the HTML report.
    thresholds : Thresholds, optional
        The limits of the verdict (as :func:`gpuptc.run` takes them).
    **overrides
        Preset field overrides (``solve__sigma_cut=4``, ...).

    Returns
    -------
    RunResult
        Exit code 0, 3 when some files or amps were rejected, 1 when no file was usable.

    Examples
    --------
    A PTC dataset of a small simulated sensor, written (into the empty directory ``tmp``)
    from the fit of its measurements ``pairs`` and ``covariances`` (:func:`gpuptc.measure`
    of the raws made by :func:`gpuptc.simulate`), refitted with three models:

    >>> from gpuptc import fit, write_ptc_dataset
    >>> ptc, fullcov, fitted = fit(pairs, covariances, models=["expapprox"])
    >>> tables = {"pairs": fitted, "covariances": covariances, "ptc": ptc, "fullcov": fullcov}
    >>> dataset = write_ptc_dataset(tmp / "E2V-CCD250-101_ptc.fits", tables, "E2V-CCD250-101")
    >>> models = ["expapprox", "linear", "quadratic"]
    >>> result = refit(dataset, tmp / "refit", models=models, report=False)
    >>> result.exit_code
    0
    >>> result.tables["ptc"].groupby("model").size().to_dict()
    {'expapprox': 16, 'linear': 16, 'quadratic': 16}
    >>> (tmp / "refit" / "ptc.parquet").exists()
    True
    >>> refit(tmp / "missing_ptc.fits", tmp / "nothing", report=False).exit_code
    1
    """
    started = time.monotonic()
    watch = Stopwatch()
    paths = [Path(files)] if isinstance(files, str | os.PathLike) else [Path(f) for f in files]
    config = get_preset(preset, **overrides)
    with watch.stage("ingest"):
        read, rows, rejected = _read_all(paths)
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    if not read:
        return RunResult(Path(out), EXIT_FATAL, {"manifest": manifest, "rejected": rejected})
    with watch.stage("fit"):
        tables = _refitted(read, manifest, rejected, config, list(models or MODELS))
        limits = thresholds or Thresholds()
        tables["verdict"] = amp_verdicts(tables, limits, config.solve.ptc_fit_type)
    exit_code = EXIT_REJECTED if len(tables["rejected"]) else EXIT_OK
    provenance = run_provenance(config, "numpy", paths, tables, exit_code, started)
    provenance["refit_of"] = {sensor: t["ptc"].attrs for sensor, t in read.items()}
    provenance["thresholds"] = dataclasses.asdict(limits)
    staged = StagedOutputs(out)
    try:
        write_outputs(staged, tables, {} if report else None, provenance, (watch, started))
    except BaseException:
        staged.abandon()
        raise
    return RunResult(Path(out), exit_code, tables, time.monotonic() - started)

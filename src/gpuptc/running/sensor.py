"""One sensor's pipeline: its files, measuring, fitting and figures, in one place.

A :class:`SensorTask` carries everything one sensor needs (its manifest rows, the preset,
the backend and models), picklable for any worker; :func:`process_sensor` runs its stages
in order and returns one :class:`SensorResult`: small DataFrames, the report's binned
display images and, when asked, its figures; never device arrays. The schedulers
(:mod:`gpuptc.running.schedulers`) only decide where and when it runs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from gpuptc import settings
from gpuptc._shared.timing import Stopwatch
from gpuptc.backend import Backend, get_backend
from gpuptc.config import Preset
from gpuptc.fitting.bf_check import checked, correction_kernels
from gpuptc.fitting.bf_sensor import BF_KERNEL_COLUMNS, sensor_bf_kernels
from gpuptc.fitting.curves import model_curves
from gpuptc.fitting.gain_ratios import adjusted_ptc
from gpuptc.fitting.linearity_sensor import sensor_linearity
from gpuptc.fitting.solve import amp_rejections, fit
from gpuptc.inputs.manifest import pair_header_values
from gpuptc.inputs.photodiode import (
    exposure_keys,
    flat_charges,
    mean_charges,
    pair_monitor_currents,
    readings_location,
)
from gpuptc.kernels.linearize import AmpLinearizer
from gpuptc.measuring.masterbias import MasterBias
from gpuptc.measuring.sensor import (
    SensorInputs,
    SensorMeasurement,
    display_pair,
    given_biases,
    input_files,
    measure_sensor,
    sensor_bias,
    sensor_inputs,
)
from gpuptc.products.linearizer import linearity_linearizers, sensor_linearizers
from gpuptc.schema import (
    GAIN_RATIO_COLUMNS,
    LINEARITY_COLUMNS,
    SCHEMA_VERSION,
    DrawnFigure,
    FileStatus,
    Stage,
    joined_rejections,
    rejected_frame,
    rejected_row,
)

__all__ = [
    "SENSOR_TABLES",
    "SensorResult",
    "SensorTask",
    "draw_figures",
    "process_sensor",
    "with_figures",
]

log = logging.getLogger(__name__)

SENSOR_TABLES: tuple[str, ...] = (
    "pairs",
    "covariances",
    "ptc",
    "fullcov",
    "curves",
    "linearity",
    "bf_kernel",
    "gain_ratios",
    "rejected",
)
"""The tables of one sensor's results."""

Progress = Callable[[str, int, int], None]


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
    linearizer: str | None = None
    """A linearizer file, or a folder of them, applied in the ISR (see :func:`run`)."""
    linearize_first: bool = False
    """Solve the linearity from a first pass, then measure the PTC on linearized pixels."""
    bf_check: str | None = None
    """Correct the flats by the sensor's own brighter-fatter kernels and measure them again
    (``detector`` or ``amp``; :mod:`gpuptc.fitting.bf_check`)."""

    @property
    def n_pairs(self) -> int:
        """Flat pairs of the sensor."""
        paired = self.manifest[self.manifest["status"] == FileStatus.PAIRED]
        return int(paired["pair"].nunique())

    def _readings(self) -> list[str]:
        """The photodiode readings files of the sensor's flats (those that exist)."""
        flats = self.manifest[self.manifest["status"] == FileStatus.PAIRED]
        headers = flats.drop_duplicates("path").set_index("path")
        found = (readings_location(p, *exposure_keys(headers, p))[0] for p in headers.index)
        return [location for location in found if location is not None]

    def fingerprint(self) -> str:
        """Hash of what changes the numbers: configuration, models, settings, input files.

        The input files (and the photodiode readings beside the flats) by path, size and
        modification time; the ``GPUPTC_*`` settings that
        change numbers (:func:`gpuptc.settings.fingerprint`), not those that only change
        speed.
        """
        inputs = self.manifest["status"].isin([FileStatus.PAIRED, FileStatus.BIAS])
        files = _stamped(sorted([*self.manifest.loc[inputs, "path"], *self._readings()]))
        document = {
            "schema": SCHEMA_VERSION,
            "configuration": dataclasses.asdict(self.preset),
            "backend": self.backend,
            "models": list(self.models),
            "bias": str(self.bias),
            "linearizer": _stamped(_linearizer_files(self.linearizer)),
            "linearize_first": self.linearize_first,
            "bf_check": self.bf_check,
            "settings": settings.fingerprint(),
            "files": files,
        }
        return hashlib.sha256(
            json.dumps(document, sort_keys=True, default=str).encode()
        ).hexdigest()


def _stamped(paths: list[str]) -> list[list[Any]]:
    """Each file's path, size and modification time (None and None where it is gone)."""
    stamps = []
    for path in paths:
        try:
            info = os.stat(path)
            stamps.append([path, info.st_size, info.st_mtime_ns])
        except OSError:
            stamps.append([path, None, None])
    return stamps


def _linearizer_files(source: str | None) -> list[str]:
    """A linearizer file, or the FITS files of a folder of them."""
    if source is None:
        return []
    found = sorted(Path(source).glob("*.fits")) if Path(source).is_dir() else [Path(source)]
    return [str(path) for path in found]


@dataclass
class SensorResult:
    """One sensor's results; a sensor that failed has only ``rejected``.

    Attributes
    ----------
    sensor : str
        The sensor.
    rejected : pandas.DataFrame
        Its pairs and amps that were rejected, or the reason the sensor failed.
    pairs, covariances, ptc, fullcov : pandas.DataFrame or None
        Its tables (see :data:`SENSOR_TABLES`); None when it failed.
    curves : pandas.DataFrame or None
        The fitted models evaluated where the report draws them
        (:func:`gpuptc.fitting.curves.model_curves`).
    linearity : pandas.DataFrame or None
        Each amp's linearity (:func:`gpuptc.fitting.linearity_sensor.sensor_linearity`).
    bf_kernel : pandas.DataFrame or None
        Each amp's brighter-fatter kernel (:func:`gpuptc.fitting.bf_sensor.sensor_bf_kernels`).
    gain_ratios : pandas.DataFrame or None
        Each flat's amp ratios of the gain adjustment (:data:`gpuptc.schema.GAIN_RATIO_COLUMNS`).
    binned_pairs : pandas.DataFrame or None
        Both flats of every pair binned, when the preset writes them
        (``extract.output_binned_images``); kept with the sensor's results only.
    images : dict or None
        The display images (see :func:`gpuptc.measuring.compute.display_images`).
    figures : list of DrawnFigure or None
        Its report figures, when drawn beside the run.
    seconds : dict
        Wall time of each stage.
    """

    sensor: str
    rejected: pd.DataFrame
    pairs: pd.DataFrame | None = None
    covariances: pd.DataFrame | None = None
    ptc: pd.DataFrame | None = None
    fullcov: pd.DataFrame | None = None
    curves: pd.DataFrame | None = None
    linearity: pd.DataFrame | None = None
    bf_kernel: pd.DataFrame | None = None
    gain_ratios: pd.DataFrame | None = None
    binned_pairs: pd.DataFrame | None = None
    images: dict[str, Any] | None = None
    figures: list[DrawnFigure] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        """Whether the sensor has tables (it did not fail)."""
        return self.pairs is not None

    def tables(self) -> dict[str, pd.DataFrame]:
        """The :data:`SENSOR_TABLES` by name (a failed sensor: ``rejected`` only)."""
        names = SENSOR_TABLES if self.measured else ("rejected",)
        return {name: getattr(self, name) for name in names}

    @classmethod
    def failed(cls, sensor: str, exc: BaseException) -> SensorResult:
        """The result of a sensor whose task raised ``exc``: one rejected row saying so."""
        log.error("sensor %s failed:\n%s", sensor, "".join(traceback.format_exception(exc)))
        reason = f"sensor failed: {type(exc).__name__}: {exc}"
        row = rejected_row(reason, stage=Stage.SENSOR, sensor=sensor)
        return cls(sensor, rejected_frame([row]))


def _measure(
    task: SensorTask,
    inputs: SensorInputs,
    backend: Backend,
    progress: Progress | None,
    linearizers: dict[str, AmpLinearizer] | None,
    master: MasterBias | None = None,
    bf_kernels: dict[str, tuple[Any, float]] | None = None,
) -> tuple[SensorMeasurement, MasterBias | None]:
    """The sensor's pairs through ISR and statistics, its display pair's images on the way.

    Also the master bias it subtracted: ``master`` where given (a second pass), else the
    given one or one made from ``inputs``' bias frames. With ``bf_kernels`` (the check's
    pass) the flats are corrected by them (:func:`measure_sensor`), and no display images
    are made.
    """
    with input_files([inputs]) as files:
        if master is None:
            given = given_biases(task.manifest, task.bias, [task.sensor], task.preset)
            master = sensor_bias(inputs, task.preset, files, given)
        measured = measure_sensor(
            task.sensor,
            inputs.pairs,
            task.preset,
            backend,
            bias=master,
            progress=(lambda done, total: progress(task.sensor, done, total)) if progress else None,
            files=files,
            display=None if bf_kernels else display_pair(inputs.pairs),
            linearizers=linearizers,
            bf_kernels=bf_kernels,
        )
    return measured, master


def _fit(
    task: SensorTask, measured: SensorMeasurement, backend: Backend
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``ptc, fullcov, pairs`` (``used`` filled) and every rejection of the sensor."""
    models = list(task.models)
    covariances = measured.covariances
    if covariances.empty or covariances["cov"].isna().all():
        models = [m for m in models if not m.startswith("fullcov")]
    ptc, fullcov, pairs = fit(
        _with_monitor_readings(measured.pairs, task),
        covariances,
        task.preset,
        models=models,
        backend=backend,
    )
    rejected = joined_rejections([measured.rejected, amp_rejections(pairs, ptc)])
    return ptc, fullcov, pairs, rejected


def _adjusted(
    task: SensorTask,
    measured: SensorMeasurement,
    pairs: pd.DataFrame,
    ptc: pd.DataFrame,
    watch: Stopwatch,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``ptc`` with its gains adjusted to seamless flats when the preset asks.

    Also the flats' ratios, and a rejected row if the adjustment failed (the fit's gains
    then stand). Timed as the ``gain ratios`` stage where it runs.
    """
    empty = pd.DataFrame(columns=list(GAIN_RATIO_COLUMNS))
    if measured.binned is None or ptc.empty:
        return ptc, empty, rejected_frame([])
    try:
        with watch.stage("gain ratios"):
            adjusted, ratios = adjusted_ptc(
                ptc, pairs, measured.binned, task.preset.gain_ratios,
                task.preset.solve.ptc_fit_type,
            )  # fmt: skip
        return adjusted, ratios, rejected_frame([])
    except Exception as exc:
        log.error("%s: gains not adjusted:\n%s", task.sensor, traceback.format_exc())
        reason = f"gains not adjusted: {type(exc).__name__}: {exc}"
        row = rejected_row(reason, stage=Stage.GAIN_RATIOS, sensor=task.sensor)
        return ptc, empty, rejected_frame([row])


def _with_monitor_readings(pairs: pd.DataFrame, task: SensorTask) -> pd.DataFrame:
    """The pairs with their photodiode charges, monitor currents and header values.

    The header values are those of the preset's auxiliary keywords (``aux_<KEYWORD>``,
    :func:`gpuptc.inputs.manifest.pair_header_values`). NaN where a pair's flats have no
    readings, or a header no ``MONDIODE``.
    """
    if pairs.empty:
        return pairs
    extract = task.preset.extract
    charges, missing = flat_charges(
        pairs,
        task.manifest,
        extract.photodiode_integration,
        extract.photodiode_current_scale,
    )
    _warn_missing_readings(task, missing, 2 * pairs["pair"].nunique())
    currents = pair_monitor_currents(pairs, task.manifest)
    header = pair_header_values(pairs, task.manifest, extract.auxiliary_header_keys)
    return pairs.assign(
        photo_charge=pairs["pair"].map(mean_charges(charges)).to_numpy(float),
        photo_charge_delta=pairs["pair"]
        .map(charges["charge2"] - charges["charge1"])
        .to_numpy(float),
        mondiode=pairs["pair"].map(currents).to_numpy(float),
        **{name: pairs["pair"].map(header[name]).to_numpy() for name in header},
    )


def _warn_missing_readings(task: SensorTask, missing: dict[str, str], flats: int) -> None:
    """Name the flats without photodiode readings (the first five), or say none has any."""
    if missing and len(missing) < flats:  # some, not all: say which (the first five)
        for path, reason in sorted(missing.items())[:5]:
            log.warning("%s: %s: %s", task.sensor, path, reason)
    elif missing and task.preset.linearity.use_photodiode:
        log.warning(
            "%s: no flat has photodiode readings beside it (%s): linearity against exposure time",
            task.sensor,
            next(iter(missing.values())),
        )


def _linearity(
    task: SensorTask, pairs: pd.DataFrame, ptc: pd.DataFrame, backend: Backend
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sensor's linearity table, and a rejected row if it could not be solved.

    A failure here costs the linearity only, never the sensor's PTC.
    """
    try:
        preset = task.preset
        table = sensor_linearity(
            pairs, ptc, preset.linearity, preset.solve.ptc_fit_type, backend=backend
        )
        return table, rejected_frame([])
    except Exception as exc:
        log.error("%s: linearity not solved:\n%s", task.sensor, traceback.format_exc())
        reason = f"linearity not solved: {type(exc).__name__}: {exc}"
        row = rejected_row(reason, stage=Stage.LINEARITY, sensor=task.sensor)
        return pd.DataFrame(columns=list(LINEARITY_COLUMNS)), rejected_frame([row])


def _bf_kernels(
    task: SensorTask,
    pairs: pd.DataFrame,
    covariances: pd.DataFrame,
    ptc: pd.DataFrame,
    fullcov: pd.DataFrame,
    backend: Backend,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sensor's brighter-fatter kernels, and a rejected row if they could not be solved.

    From the PTC the run ends with (linearized pixels, with a linearizer); a failure here
    costs the kernels only, never the sensor's PTC.
    """
    preset = task.preset
    try:
        table = sensor_bf_kernels(
            pairs, covariances, ptc, fullcov, preset.brighter_fatter,
            preset.solve.ptc_fit_type, backend=backend,
        )  # fmt: skip
        return table, rejected_frame([])
    except Exception as exc:
        log.error(
            "%s: brighter-fatter kernels not solved:\n%s", task.sensor, traceback.format_exc()
        )
        reason = f"brighter-fatter kernels not solved: {type(exc).__name__}: {exc}"
        row = rejected_row(reason, stage=Stage.BF_KERNEL, sensor=task.sensor)
        return pd.DataFrame(columns=list(BF_KERNEL_COLUMNS)), rejected_frame([row])


def _bf_check(
    task: SensorTask,
    measure_again: Callable[..., tuple[SensorMeasurement, Any]],
    master: MasterBias | None,
    pairs: pd.DataFrame,
    kernels: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The kernels with their check (:mod:`gpuptc.fitting.bf_check`), or why it failed.

    The flats measured once more (``measure_again``: as the run measured them last, with
    the same linearizers) with the same master bias, corrected by the kernels; a failure
    costs the check only.
    """
    try:
        corrections = correction_kernels(kernels, task.bf_check)
        if not corrections:
            log.warning(
                "%s: no valid kernel to check the brighter-fatter correction by", task.sensor
            )
        after = measure_again(master, corrections)[0].pairs if corrections else pairs.iloc[0:0]
        return checked(kernels, pairs, after, corrections, task.bf_check), rejected_frame([])
    except Exception as exc:
        log.error("%s: brighter-fatter check failed:\n%s", task.sensor, traceback.format_exc())
        reason = f"brighter-fatter check failed: {type(exc).__name__}: {exc}"
        row = rejected_row(reason, stage=Stage.BF_KERNEL, sensor=task.sensor)
        return kernels, rejected_frame([row])


def process_sensor(task: SensorTask, progress: Progress | None = None) -> SensorResult:
    """Run one sensor's stages: its files, measuring, fitting and, if asked, its figures.

    The backend and the preset are resolved once, the pairs listed once; the display
    images come out of the measuring pass. With ``task.linearizer`` the pixels are
    linearized by it as they are measured; with ``task.linearize_first`` the linearity
    is solved from a first pass and the pairs measured and fitted again, linearized by
    it (each raw read once per pass); the linearity table is the first pass's.

    Parameters
    ----------
    task : SensorTask
        The sensor and its configuration.
    progress : callable, optional
        ``progress(sensor, pairs_done, pairs_total)`` (in-process runs only).

    Returns
    -------
    SensorResult
        Its tables, display images, figures when ``task.figures``, and the seconds of
        each stage.
    """
    backend = get_backend(task.backend)
    inputs = sensor_inputs(task.manifest, task.sensor, task.preset, task.bias)
    linearizers = sensor_linearizers(task.linearizer, task.sensor) if task.linearizer else None
    watch = Stopwatch()
    with watch.stage("measure"):
        measured, master = _measure(task, inputs, backend, progress, linearizers)
    with watch.stage("fit"):
        ptc, fullcov, pairs, rejected = _fit(task, measured, backend)
    ptc, ratios, unadjusted = _adjusted(task, measured, pairs, ptc, watch)
    with watch.stage("linearity"):
        linearity, failed = _linearity(task, pairs, ptc, backend)
    measuring = "measure"
    flats_only = dataclasses.replace(inputs, bias_frames=())  # later passes: the bias is made
    if task.linearize_first and len(linearity):
        linearizers = linearity_linearizers(linearity, task.preset.linearity.max_lookup_table_adu)
        measuring = "measure linearized"
        with watch.stage(measuring):
            measured, _ = _measure(task, flats_only, backend, progress, linearizers, master)
        with watch.stage("fit linearized"):
            ptc, fullcov, pairs, rejected = _fit(task, measured, backend)
        ptc, ratios, unadjusted = _adjusted(task, measured, pairs, ptc, watch)
    with watch.stage("bf kernel"):
        bf_kernel, bf_failed = _bf_kernels(task, pairs, measured.covariances, ptc, fullcov, backend)
    if task.bf_check and len(bf_kernel):
        with watch.stage("bf check"):
            again = functools.partial(_measure, task, flats_only, backend, progress, linearizers)
            bf_kernel, check_failed = _bf_check(task, again, master, pairs, bf_kernel)
        bf_failed = joined_rejections([bf_failed, check_failed])
    rejected = joined_rejections([rejected, unadjusted, failed, bf_failed])
    with watch.stage("fit"):
        curves = model_curves(pairs, ptc, fullcov, task.preset.solve)
    seconds = dict(watch.seconds)  # the display images were made while measuring
    seconds[measuring] -= measured.display_seconds
    seconds["display images"] = measured.display_seconds
    result = SensorResult(
        task.sensor,
        rejected,
        pairs,
        measured.covariances,
        ptc,
        fullcov,
        curves,
        linearity,
        bf_kernel,
        ratios,
        binned_pairs=measured.binned_pairs,
        images=measured.images,
        seconds=seconds,
    )
    return with_figures(task, result) if task.figures else result


def with_figures(task: SensorTask, result: SensorResult) -> SensorResult:
    """The result with its sensor's report figures (``figures``) drawn, timed as a stage."""
    drawn, seconds = draw_figures(task, result)
    return with_drawn(result, [drawn], seconds)


def draw_figures(
    task: SensorTask, result: SensorResult, part: tuple[int, int] = (0, 1)
) -> tuple[list[DrawnFigure], float]:
    """A part of a sensor's figures (see :func:`gpuptc.report.sensor.sensor_figures`), timed."""
    from gpuptc.report.sensor import sensor_figures

    watch = Stopwatch()
    with watch.stage("figures"):
        drawn = sensor_figures(task.sensor, result.images, part)
    return drawn, watch.seconds["figures"]


def with_drawn(
    result: SensorResult, parts: list[list[DrawnFigure]], seconds: float
) -> SensorResult:
    """The result with the figures drawn in ``parts`` (in report order) and their time."""
    from gpuptc.report.sensor import joined

    timing = {**result.seconds, "figures": seconds}
    return dataclasses.replace(result, figures=joined(parts), seconds=timing)

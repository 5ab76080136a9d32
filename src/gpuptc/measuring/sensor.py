"""Per-sensor measurement: every pair of a sensor through the compute core, as tables.

Raw files are read on the host into one native-order float32 stack per batch of pairs
``(batch, 2, amps, naxis2, naxis1)`` (:mod:`gpuptc.measuring.batches`), copied once to the compute
device, corrected and measured there in one batched pass (:mod:`gpuptc.measuring.compute`); only
per-amp numbers come back and become rows of the ``pairs`` and ``covariances`` tables
(:mod:`gpuptc.schema`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.backend import Backend, get_backend
from gpuptc.config import Preset, get_preset
from gpuptc.inputs.manifest import PairFiles, flat_pairs
from gpuptc.inputs.remote import InputFiles
from gpuptc.measuring.batches import read_batches
from gpuptc.measuring.compute import BatchResult, measure_batch
from gpuptc.measuring.masterbias import MasterBias, resolve_biases
from gpuptc.raws.exposure import RawReadError, read_segment_headers
from gpuptc.raws.geometry import SensorGeometry
from gpuptc.schema import (
    COVARIANCE_COLUMNS,
    MISMATCH_THRESHOLD,
    PAIR_COLUMNS,
    FileStatus,
    PairStatus,
    Stage,
    rejected_frame,
    rejected_row,
    typed,
)

__all__ = ["input_files", "measure", "measure_sensor"]

log = logging.getLogger(__name__)


def _status(
    failed: bool, mean: float, var: float, npix: int, cov_ok: bool, cov_wanted: bool
) -> str:
    if failed:
        return PairStatus.MEASURE_FAILED
    if npix == 0:
        return PairStatus.NO_GOOD_PIXELS
    if not np.isfinite(mean) or not np.isfinite(var):
        return PairStatus.NOT_MEASURABLE
    if mean <= 0:
        return PairStatus.NONPOSITIVE_MEAN
    if var <= 0:
        return PairStatus.ZERO_VARIANCE
    if cov_wanted and not cov_ok:
        return PairStatus.TOO_FEW_PIXELS_FOR_COVARIANCE
    return PairStatus.OK


def _pair_rows(
    sensor: str, pair: PairFiles, k: int, geometry: SensorGeometry, result: BatchResult
) -> list[dict[str, Any]]:
    """Rows of ``pairs`` for pair ``k`` of a batch: one per amplifier."""
    rows = []
    for a, amp in enumerate(geometry.amps):
        row = {
            "sensor": sensor,
            "pair": pair.pair,
            "amp": amp.amp,
            "segment": amp.segment,
            "exptime": pair.exptime,
            "mjd": pair.mjd,
            "file1": pair.file1,
            "file2": pair.file2,
            **{name: values[k, a] for name, values in result.values.items()},
            "pixels": geometry.imaging.shape[0] * geometry.imaging.shape[1],
            "used": pd.NA,
        }
        with np.errstate(divide="ignore", invalid="ignore"):
            row["level_mismatch"] = row["mean2"] / row["mean1"] - 1.0
        row["mismatched"] = bool(abs(row["level_mismatch"]) > MISMATCH_THRESHOLD)
        cov_ok = result.cov is not None and bool(np.isfinite(result.cov[k, a, 0, 0]))
        row["status"] = _status(
            bool(result.failed[k, a]),
            row["mean"],
            row["var"],
            int(row["npix"]),
            cov_ok,
            result.cov is not None,
        )
        rows.append(row)
    return rows


def _covariance_frame(
    sensor: str, pair: PairFiles, k: int, geometry: SensorGeometry, result: BatchResult
) -> pd.DataFrame:
    """Rows of ``covariances`` for pair ``k`` of a batch: amplifiers x lags."""
    assert result.cov is not None and result.cov_npix is not None
    size = result.cov.shape[-1]
    ii, jj = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    namps = geometry.namps
    return pd.DataFrame(
        {
            "sensor": sensor,
            "pair": pair.pair,
            "amp": np.repeat([g.amp for g in geometry.amps], size * size),
            "i": np.tile(ii.ravel(), namps),
            "j": np.tile(jj.ravel(), namps),
            "cov": result.cov[k].ravel(),
            "npix": result.cov_npix[k].ravel(),
        }
    )


def _first_geometry(pairs: list[PairFiles], files: InputFiles) -> SensorGeometry | None:
    """Geometry of the first readable flat of the sensor."""
    for pair in pairs:
        try:
            return read_segment_headers(files.local(pair.file1))[1]
        except RawReadError:
            continue
    return None


def _empty_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return (
        typed(pd.DataFrame(columns=list(PAIR_COLUMNS))),
        typed(pd.DataFrame(columns=list(COVARIANCE_COLUMNS))),
        rejected_frame(),
    )


def _device_bias(
    sensor: str, bias: MasterBias | None, geometry: SensorGeometry, preset: Preset, backend: Backend
) -> Any:
    """The master bias on the device when the preset subtracts one, else None."""
    if not (preset.isr.use_bias and bias is not None):
        return None
    expected = (geometry.namps, *geometry.segment_shape)
    if bias.pixels.shape != expected:
        raise ValueError(
            f"master bias of {sensor} is {bias.pixels.shape}, raw segments are {expected}"
        )
    return backend.asarray(bias.pixels)


def measure_sensor(
    sensor: str,
    pairs: list[PairFiles],
    preset: Preset,
    backend: Backend,
    *,
    bias: MasterBias | None = None,
    batch_pairs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    files: InputFiles | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Measure every pair of one sensor, reading the next batch while this one computes.

    ``files`` fetches remote raws ahead of their reading (default: every file local).

    Returns
    -------
    pairs, covariances, rejected : pandas.DataFrame
        Rows for this sensor (see :func:`measure`).
    """
    files = files or InputFiles(())
    geometry = _first_geometry(pairs, files)
    if geometry is None:
        rejected = [
            rejected_row("unreadable", stage=Stage.READ, path=p.file1, sensor=sensor, pair=p.pair)
            for p in pairs
        ]
        empty = _empty_tables()
        return empty[0], empty[1], rejected_frame(rejected)
    bytes_per_pair = 2 * geometry.namps * int(np.prod(geometry.segment_shape)) * 4
    batch = backend.batch_size(bytes_per_pair, batch_pairs, pairs=len(pairs))
    bias_device = _device_bias(sensor, bias, geometry, preset, backend)
    pair_rows: list[dict[str, Any]] = []
    cov_frames: list[pd.DataFrame] = []
    rejected: list[dict[str, Any]] = []
    done = 0
    for chunk in read_batches(sensor, pairs, geometry, batch, backend, files):
        rejected.extend(chunk.rejected)
        if not chunk.pairs:
            continue
        result = measure_batch(chunk.raw, geometry, preset, backend, bias_device)
        for k, pair in enumerate(chunk.pairs):
            pair_rows.extend(_pair_rows(sensor, pair, k, geometry, result))
            if result.cov is not None:
                cov_frames.append(_covariance_frame(sensor, pair, k, geometry, result))
        done += len(chunk.pairs)
        if progress:
            progress(done, len(pairs))
    pairs_frame = typed(pd.DataFrame(pair_rows, columns=list(PAIR_COLUMNS)))
    covariances = pd.concat(cov_frames, ignore_index=True) if cov_frames else _empty_tables()[1]
    return pairs_frame, typed(covariances), rejected_frame(rejected)


def _bias_rows(manifest: pd.DataFrame, sensors: list[str]) -> pd.DataFrame:
    return manifest[(manifest["status"] == FileStatus.BIAS) & manifest["sensor"].isin(sensors)]


def _biases_read(preset: Preset, bias: Any) -> bool:
    """Whether measuring reads the manifest's bias frames (to make master biases)."""
    return preset.isr.use_bias and bias is None


def input_files(
    manifest: pd.DataFrame, sensors: list[str], preset: Preset, bias: Any = None
) -> InputFiles:
    """The raws measuring these sensors reads, in reading order, fetched ahead if remote.

    The bias frames first when a master bias is made from them (the preset subtracts
    one and none is given as ``bias``), then each sensor's pairs.
    """
    order = list(_bias_rows(manifest, sensors)["path"]) if _biases_read(preset, bias) else []
    for sensor in sensors:
        order.extend(path for pair in flat_pairs(manifest, sensor) for path in pair.paths)
    return InputFiles(order)


def _master_biases(
    manifest: pd.DataFrame, bias: Any, sensors: list[str], preset: Preset, files: InputFiles
) -> dict[str, MasterBias]:
    """The sensors' master biases when the preset subtracts one (biases read through ``files``)."""
    if not preset.isr.use_bias:
        return {}
    rows = _bias_rows(manifest, sensors) if _biases_read(preset, bias) else manifest.iloc[:0]
    if len(rows):  # the bias frames read from where the files have them locally
        manifest = manifest.copy()
        manifest.loc[rows.index, "path"] = [files.local(path) for path in rows["path"]]
    biases = resolve_biases(manifest, bias, sensors)
    files.release(rows["path"])
    for sensor in sensors:
        if sensor not in biases:
            log.warning("%s: no master bias; bias subtraction skipped", sensor)
    return biases


def measure(
    manifest: pd.DataFrame,
    preset: str | Preset = "cp_pipe",
    backend: str | Backend = "auto",
    *,
    bias: Any = None,
    sensors: list[str] | None = None,
    batch_pairs: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    files: InputFiles | None = None,
    **overrides: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measure every flat pair of a manifest.

    Parameters
    ----------
    manifest : pandas.DataFrame
        From :func:`gpuptc.ingest`.
    preset : str or Preset
        ``cp_pipe`` (default), ``cp_pipe_lsstcam``, ``eotest`` or ``seed``.
    backend : str or Backend
        ``auto`` (CuPy with a GPU, else NumPy), ``numpy``, ``cupy``, ``torch``,
        ``array_api_strict``, ...
    bias : MasterBias, path(s) or dict, optional
        Master bias(es); by default built from the manifest's bias frames (used only
        by presets that subtract a bias, such as ``seed``).
    sensors : list of str, optional
        Subset of sensors.
    batch_pairs : int, optional
        Pairs per batch; default from free device memory (GPU) or 1.5 GB (CPU).
    progress : callable, optional
        Called as ``progress(sensor, pairs_done, pairs_total)``.
    files : InputFiles, optional
        Where the raws are read from; by default made for the manifest
        (:func:`input_files`), so that remote raws (URIs in ``path``) are fetched ahead
        of their reading.
    **overrides
        Preset field overrides (``cov_size=5``, ``isr__edge_mask=10``, ...).

    Returns
    -------
    pairs : pandas.DataFrame
        One row per sensor, pair and amp (columns :data:`gpuptc.schema.PAIR_COLUMNS`);
        ``used`` is left empty (filled by :func:`gpuptc.fit`). ``attrs['rejected']``
        lists pairs that could not be read.
    covariances : pandas.DataFrame
        One row per sensor, pair, amp and lag (``i`` serial, ``j`` parallel), per-image
        covariance in ADU^2.
    """
    config = get_preset(preset, **overrides)
    chosen = get_backend(backend)
    all_sensors = sorted(manifest.loc[manifest["status"] == FileStatus.PAIRED, "sensor"].unique())
    wanted = [s for s in all_sensors if sensors is None or s in sensors]
    results = []
    with contextlib.ExitStack() as stack:
        if files is None:
            files = stack.enter_context(input_files(manifest, wanted, config, bias))
        biases = _master_biases(manifest, bias, wanted, config, files)
        for sensor in wanted:
            report = functools.partial(progress, sensor) if progress else None
            results.append(
                measure_sensor(
                    sensor,
                    flat_pairs(manifest, sensor),
                    config,
                    chosen,
                    bias=biases.get(sensor),
                    batch_pairs=batch_pairs,
                    progress=report,
                    files=files,
                )
            )
    if not results:
        results = [_empty_tables()]
    pairs_frame = typed(pd.concat([r[0] for r in results], ignore_index=True))
    covariances = pd.concat([r[1] for r in results], ignore_index=True)
    pairs_frame.attrs["rejected"] = pd.concat([r[2] for r in results], ignore_index=True)
    pairs_frame.attrs["preset"] = config.name
    pairs_frame.attrs["backend"] = chosen.name
    return pairs_frame, typed(covariances)

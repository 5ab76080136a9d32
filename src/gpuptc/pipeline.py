"""Per-sensor orchestration: read pairs in batches, correct and measure them, build tables.

Raw files are read on the host into one native-order float32 stack per batch of pairs
``(batch, 2, amps, naxis2, naxis1)``, copied once to the compute device, corrected and
measured there in one batched pass; only per-amp numbers come back.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpuptc._environment import whole_number
from gpuptc._xp import Backend, get_backend, to_host
from gpuptc.config import Preset, get_preset
from gpuptc.io.geometry import SensorGeometry
from gpuptc.io.raw import RawReadError, read_segment_headers
from gpuptc.io.readers import FileReaders, is_compressed, reader_processes
from gpuptc.isr import IsrResult, run_isr
from gpuptc.masterbias import MasterBias, master_biases, read_master_bias
from gpuptc.stats import PairStatistics, pair_statistics

__all__ = [
    "COVARIANCE_COLUMNS",
    "PAIR_COLUMNS",
    "REJECTED_COLUMNS",
    "correct_and_measure",
    "measure",
    "measure_sensor",
]

log = logging.getLogger(__name__)

_STAT_NAMES: tuple[str, ...] = (
    "mean1",
    "mean2",
    "mean",
    "var",
    "npix",
    "rhl_gain",
    "gain_corrected",
    "read_noise_adu",
    "cov_pixels",
)
"""Per pair and amp results of :func:`gpuptc.stats.pair_statistics` kept in the table."""

PAIR_COLUMNS: tuple[str, ...] = (
    "sensor",
    "pair",
    "amp",
    "segment",
    "exptime",
    "mjd",
    "file1",
    "file2",
    *_STAT_NAMES[:-1],
    "overscan_level",
    "cov_pixels",
    "pixels",
    "used",
    "status",
)
COVARIANCE_COLUMNS: tuple[str, ...] = ("sensor", "pair", "amp", "i", "j", "cov", "npix")
REJECTED_COLUMNS: tuple[str, ...] = ("path", "sensor", "pair", "amp", "reason")


@dataclass(frozen=True)
class _PairFiles:
    pair: int
    exptime: float
    mjd: float
    file1: str
    file2: str

    @property
    def paths(self) -> tuple[str, str]:
        return self.file1, self.file2


def _pairs_of(manifest: pd.DataFrame, sensor: str) -> list[_PairFiles]:
    rows = manifest[(manifest["sensor"] == sensor) & (manifest["status"] == "paired")]
    pairs = []
    for number, group in rows.groupby("pair", sort=True):
        group = group.sort_values("member")
        first, second = group.iloc[0], group.iloc[1]
        pairs.append(
            _PairFiles(
                int(number),
                float(first["exptime"]),
                float(first["mjd"]),
                first["path"],
                second["path"],
            )
        )
    return pairs


def _batch_size(geometry: SensorGeometry, backend: Backend, requested: int | None) -> int:
    if requested:
        return max(1, requested)
    naxis2, naxis1 = geometry.segment_shape
    bytes_per_pair = 2 * geometry.namps * naxis2 * naxis1 * 4
    if backend.is_gpu:
        try:
            import cupy

            free, _ = cupy.cuda.runtime.memGetInfo()
            # raw int32, float copies, masks and FFT work space: about 12 x the raw stack
            return max(1, int(0.5 * free / (12 * bytes_per_pair)))
        except Exception:
            return 4
    return max(1, min(4, int(1.5e9 // (10 * bytes_per_pair))))


def _status(mean: float, var: float, npix: int, cov_ok: bool, cov_wanted: bool) -> str:
    if npix == 0:
        return "no_good_pixels"
    if not np.isfinite(mean) or not np.isfinite(var):
        return "not_measurable"
    if mean <= 0:
        return "nonpositive_mean"
    if var <= 0:
        return "zero_variance"
    if cov_wanted and not cov_ok:
        return "too_few_pixels_for_covariance"
    return "ok"


def _host_buffer(shape: tuple[int, ...], backend: Backend) -> np.ndarray:
    """A host buffer for raw stacks: pinned memory on CuPy so copies run asynchronously.

    float32 holds every 18-bit integer exactly, takes the bytes of int32, and also takes
    float raw data (NaN included).
    """
    if backend.name == "cupy":
        import cupyx

        return cupyx.empty_pinned(shape, dtype=np.float32)
    return np.empty(shape, dtype=np.float32)


def _read_batch(
    sensor: str,
    chunk: list[_PairFiles],
    readers: FileReaders,
    index: int,
    geometry: SensorGeometry,
) -> tuple[list[_PairFiles], list[dict[str, Any]]]:
    """Read a batch of pairs into the front of buffer ``index``; unreadable pairs are listed.

    Every file of the batch is read at once by ``readers`` (threads, or processes for
    compressed raws).
    """
    buffer = readers.buffers[index]
    futures = [
        [readers.submit(index, slot, member, path) for member, path in enumerate(pair.paths)]
        for slot, pair in enumerate(chunk)
    ]
    kept: list[_PairFiles] = []
    rejected: list[dict[str, Any]] = []
    for slot, (pair, reads) in enumerate(zip(chunk, futures, strict=True)):
        problem = None
        for path, future in zip(pair.paths, reads, strict=True):
            layout, reason = future.result()
            if reason is None and layout != geometry.layout:
                reason = f"layout {layout} differs from {geometry.layout}"
            if reason is not None and problem is None:
                problem = (path, reason)
        if problem is not None:
            rejected.append(
                {
                    "path": problem[0],
                    "sensor": sensor,
                    "pair": pair.pair,
                    "amp": None,
                    "reason": problem[1],
                }
            )
            continue
        if len(kept) != slot:
            buffer[len(kept)] = buffer[slot]
        kept.append(pair)
    return kept, rejected


def _file_readers(
    pairs: list[_PairFiles], geometry: SensorGeometry, shape: tuple[int, ...], backend: Backend
) -> FileReaders:
    """Readers for this sensor: processes for compressed raws, threads otherwise."""
    pixel_bytes = geometry.namps * math.prod(geometry.segment_shape) * 4
    compressed = is_compressed(pairs[0].file1, pixel_bytes)
    processes = reader_processes(compressed, files_per_batch=2 * shape[0], pixel_bytes=pixel_bytes)
    threads = min(os.cpu_count() or 1, 2 * shape[0])
    allocate = functools.partial(_host_buffer, backend=backend)
    if processes:
        try:
            return FileReaders(shape, processes=processes)
        except OSError as exc:
            log.warning("cannot start reader processes (%s); reading in threads", exc)
    return FileReaders(shape, threads=threads, allocate=allocate)


def _rows(
    sensor: str,
    chunk: list[_PairFiles],
    geometry: SensorGeometry,
    values: dict[str, np.ndarray],
    cov: np.ndarray | None,
    cov_npix: np.ndarray | None,
) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    rows: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    for k, pair in enumerate(chunk):
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
                **{name: values[name][k, a] for name in values},
                "pixels": geometry.imaging.shape[0] * geometry.imaging.shape[1],
                "used": pd.NA,
            }
            cov_ok = cov is not None and bool(np.isfinite(cov[k, a, 0, 0]))
            row["status"] = _status(
                row["mean"], row["var"], int(row["npix"]), cov_ok, cov is not None
            )
            rows.append(row)
        if cov is not None and cov_npix is not None:
            size = cov.shape[-1]
            ii, jj = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
            namps = geometry.namps
            frames.append(
                pd.DataFrame(
                    {
                        "sensor": sensor,
                        "pair": pair.pair,
                        "amp": np.repeat([g.amp for g in geometry.amps], size * size),
                        "i": np.tile(ii.ravel(), namps),
                        "j": np.tile(jj.ravel(), namps),
                        "cov": cov[k].ravel(),
                        "npix": cov_npix[k].ravel(),
                    }
                )
            )
    return rows, frames


def correct_and_measure(
    raw: Any, geometry: SensorGeometry, preset: Preset, backend: Backend, bias: Any = None
) -> tuple[IsrResult, PairStatistics]:
    """ISR then pair statistics of one ``(pairs, 2, amps, naxis2, naxis1)`` stack.

    Everything stays on the backend's device; dead or empty amplifiers give NaNs (later
    statuses), not warnings. On the CPU the covariance FFTs run four amplifiers at a time
    to bound memory.
    """
    xp = backend.xp
    with np.errstate(divide="ignore", invalid="ignore"):
        isr = run_isr(raw, geometry, preset.isr, bias=bias, xp=xp)
        stats = pair_statistics(
            isr.images,
            isr.good,
            isr.read_noise_adu,
            preset.extract,
            xp=xp,
            fft_chunk=None if backend.is_gpu else 4,
        )
    return isr, stats


def _measure_amps(
    raw: Any, geometry: SensorGeometry, preset: Preset, backend: Backend, bias: Any
) -> tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
    """ISR and statistics of one stack; per-amp numbers back on the host."""
    isr, stats = correct_and_measure(raw, geometry, preset, backend, bias)
    values = {name: to_host(getattr(stats, name)) for name in _STAT_NAMES}
    values["overscan_level"] = to_host(isr.overscan_level).mean(axis=1)
    cov = to_host(stats.cov) if stats.cov is not None else None
    cov_npix = to_host(stats.cov_npix) if stats.cov_npix is not None else None
    return values, cov, cov_npix


def _threads() -> int:
    return whole_number("GPUPTC_THREADS", os.cpu_count() or 1, minimum=1)


def _measure_batch(
    raw: Any, geometry: SensorGeometry, preset: Preset, backend: Backend, bias: Any
) -> tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
    """Measure a batch; on NumPy, groups of amplifiers run in threads.

    Amplifiers are independent, and NumPy's selections and reductions release the GIL,
    so on two cores this is about 1.7x faster. ``GPUPTC_THREADS`` sets the number.
    """
    threads = min(_threads(), geometry.namps)
    if backend.name != "numpy" or threads == 1:
        return _measure_amps(raw, geometry, preset, backend, bias)
    groups = [g for g in np.array_split(np.arange(geometry.namps), threads) if len(g)]

    def work(
        group: np.ndarray,
    ) -> tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
        first, last = int(group[0]), int(group[-1]) + 1
        subset = SensorGeometry(geometry.amps[first:last], geometry.vendor)
        sub_bias = None if bias is None else bias[first:last]
        return _measure_amps(raw[:, :, first:last], subset, preset, backend, sub_bias)

    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="gpuptc-amps") as pool:
        parts = list(pool.map(work, groups))
    values = {
        name: np.concatenate([part[0][name] for part in parts], axis=1) for name in parts[0][0]
    }
    cov = None if parts[0][1] is None else np.concatenate([part[1] for part in parts], axis=1)
    npix = None if parts[0][2] is None else np.concatenate([part[2] for part in parts], axis=1)
    return values, cov, npix


def _first_geometry(pairs: list[_PairFiles]) -> SensorGeometry | None:
    """Geometry of the first readable flat of the sensor."""
    for pair in pairs:
        try:
            return read_segment_headers(pair.file1)[1]
        except RawReadError:
            continue
    return None


def measure_sensor(
    sensor: str,
    pairs: list[_PairFiles],
    preset: Preset,
    backend: Backend,
    *,
    bias: MasterBias | None = None,
    batch_pairs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Measure every pair of one sensor, reading the next batch while this one computes.

    Returns
    -------
    pairs, covariances, rejected : pandas.DataFrame
        Rows for this sensor (see :func:`measure`).
    """
    geometry = _first_geometry(pairs)
    if geometry is None:
        rejected = [
            {"path": p.file1, "sensor": sensor, "pair": p.pair, "amp": None, "reason": "unreadable"}
            for p in pairs
        ]
        empty = _empty_tables()
        return empty[0], empty[1], pd.DataFrame(rejected, columns=list(REJECTED_COLUMNS))
    batch = _batch_size(geometry, backend, batch_pairs)
    shape = (batch, 2, geometry.namps, *geometry.segment_shape)
    bias_device = None
    if preset.isr.use_bias and bias is not None:
        if bias.pixels.shape != shape[2:]:
            raise ValueError(
                f"master bias of {sensor} is {bias.pixels.shape}, raw segments are {shape[2:]}"
            )
        bias_device = backend.asarray(bias.pixels)
    chunks = [pairs[i : i + batch] for i in range(0, len(pairs), batch)]
    pair_rows: list[dict[str, Any]] = []
    cov_frames: list[pd.DataFrame] = []
    rejected: list[dict[str, Any]] = []
    done = 0
    with (
        _file_readers(pairs, geometry, shape, backend) as readers,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpuptc-read") as reader,
    ):
        pending = reader.submit(_read_batch, sensor, chunks[0], readers, 0, geometry)
        for index in range(len(chunks)):
            kept, problems = pending.result()
            rejected.extend(problems)
            buffer = readers.buffers[index % 2]
            device_raw = backend.asarray(buffer[: len(kept)]) if kept else None
            if index + 1 < len(chunks):
                # the other buffer's last copy finished when its results came back
                pending = reader.submit(
                    _read_batch, sensor, chunks[index + 1], readers, (index + 1) % 2, geometry
                )
            if not kept:
                continue
            values, cov, cov_npix = _measure_batch(
                device_raw, geometry, preset, backend, bias_device
            )
            rows, frames = _rows(sensor, kept, geometry, values, cov, cov_npix)
            pair_rows.extend(rows)
            cov_frames.extend(frames)
            done += len(kept)
            if progress:
                progress(done, len(pairs))
    pairs_frame = _typed(pd.DataFrame(pair_rows, columns=list(PAIR_COLUMNS)))
    covariances = pd.concat(cov_frames, ignore_index=True) if cov_frames else _empty_tables()[1]
    return (
        pairs_frame,
        _typed(covariances),
        pd.DataFrame(rejected, columns=list(REJECTED_COLUMNS)),
    )


_INTEGER_COLUMNS = frozenset({"pair", "amp", "npix", "cov_pixels", "pixels", "i", "j"})
_TEXT_COLUMNS = frozenset({"sensor", "segment", "file1", "file2", "status"})


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Fixed column types whatever the rows: counts int64, ``used`` boolean, numbers float64."""
    types: dict[str, str] = {}
    for column in frame.columns:
        if column in _INTEGER_COLUMNS:
            types[column] = "int64"
        elif column == "used":
            types[column] = "boolean"
        elif column not in _TEXT_COLUMNS:
            types[column] = "float64"
    return frame.astype(types)


def _empty_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return (
        _typed(pd.DataFrame(columns=list(PAIR_COLUMNS))),
        _typed(pd.DataFrame(columns=list(COVARIANCE_COLUMNS))),
        pd.DataFrame(columns=list(REJECTED_COLUMNS)),
    )


def _resolve_biases(manifest: pd.DataFrame, bias: Any, sensors: list[str]) -> dict[str, MasterBias]:
    if bias is None:
        return master_biases(manifest[manifest["sensor"].isin(sensors)])
    if isinstance(bias, MasterBias):
        return {s: bias for s in sensors}
    if isinstance(bias, dict):
        return dict(bias)
    paths = [bias] if isinstance(bias, str | os.PathLike) else list(bias)
    biases = {}
    for path in paths:
        master = read_master_bias(path)
        key = master.sensor or (sensors[0] if len(sensors) == 1 else None)
        if key is None:
            raise ValueError(f"{path}: master bias names no sensor and the run has several")
        biases[key] = master
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
    **overrides
        Preset field overrides (``cov_size=5``, ``isr__edge_mask=10``, ...).

    Returns
    -------
    pairs : pandas.DataFrame
        One row per sensor, pair and amp (columns :data:`PAIR_COLUMNS`); ``used`` is
        left empty (filled by :func:`gpuptc.fit`). ``attrs['rejected']`` lists pairs
        that could not be read.
    covariances : pandas.DataFrame
        One row per sensor, pair, amp and lag (``i`` serial, ``j`` parallel), per-image
        covariance in ADU^2.
    """
    config = get_preset(preset, **overrides)
    chosen = get_backend(backend)
    all_sensors = sorted(manifest.loc[manifest["status"] == "paired", "sensor"].unique())
    wanted = [s for s in all_sensors if sensors is None or s in sensors]
    biases = _resolve_biases(manifest, bias, wanted) if config.isr.use_bias else {}
    results = []
    for sensor in wanted:
        pairs = _pairs_of(manifest, sensor)
        if config.isr.use_bias and sensor not in biases:
            log.warning("%s: no master bias; bias subtraction skipped", sensor)
        report = functools.partial(progress, sensor) if progress else None
        results.append(
            measure_sensor(
                sensor,
                pairs,
                config,
                chosen,
                bias=biases.get(sensor),
                batch_pairs=batch_pairs,
                progress=report,
            )
        )
    if not results:
        results = [_empty_tables()]
    pairs_frame = pd.concat([r[0] for r in results], ignore_index=True)
    covariances = pd.concat([r[1] for r in results], ignore_index=True)
    rejected = pd.concat([r[2] for r in results], ignore_index=True)
    pairs_frame = _typed(pairs_frame)
    pairs_frame.attrs["rejected"] = rejected
    pairs_frame.attrs["preset"] = config.name
    pairs_frame.attrs["backend"] = chosen.name
    return pairs_frame, _typed(covariances)

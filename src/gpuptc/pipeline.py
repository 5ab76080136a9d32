"""Per-sensor orchestration: read pairs in batches, correct and measure them, build tables.

Raw files are read on the host into one native-order stack per batch of pairs
``(batch, 2, amps, naxis2, naxis1)``, copied once to the compute device, corrected and
measured there in one batched pass; only per-amp numbers come back.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpuptc._xp import Backend, get_backend, to_host
from gpuptc.config import Preset, get_preset
from gpuptc.io.geometry import SensorGeometry
from gpuptc.io.raw import RawReadError, read_raw
from gpuptc.isr import run_isr
from gpuptc.masterbias import MasterBias, master_biases, read_master_bias
from gpuptc.stats import pair_statistics

__all__ = [
    "COVARIANCE_COLUMNS",
    "PAIR_COLUMNS",
    "REJECTED_COLUMNS",
    "measure",
    "measure_sensor",
]

log = logging.getLogger(__name__)

PAIR_COLUMNS: tuple[str, ...] = (
    "sensor",
    "pair",
    "amp",
    "segment",
    "exptime",
    "mjd",
    "file1",
    "file2",
    "mean1",
    "mean2",
    "mean",
    "var",
    "npix",
    "rhl_gain",
    "gain_corrected",
    "read_noise_adu",
    "overscan_level",
    "cov_pixels",
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
    """Measure every pair of one sensor.

    Returns
    -------
    pairs, covariances, rejected : pandas.DataFrame
        Rows for this sensor (see :func:`measure`).
    """
    xp = backend.xp
    pair_rows: list[dict[str, Any]] = []
    cov_frames: list[pd.DataFrame] = []
    rejected: list[dict[str, Any]] = []
    if not pairs:
        return _empty_tables()
    first = read_raw(pairs[0].file1)
    geometry = first.geometry
    batch = _batch_size(geometry, backend, batch_pairs)
    shape = (geometry.namps, *geometry.segment_shape)
    bias_device = None
    if preset.isr.use_bias and bias is not None:
        if bias.pixels.shape != shape:
            raise ValueError(
                f"master bias of {sensor} is {bias.pixels.shape}, raw segments are {shape}"
            )
        bias_device = backend.asarray(bias.pixels)
    done = 0
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        host = np.empty((len(chunk), 2, *shape), dtype=np.int32)
        ok = []
        for k, pair in enumerate(chunk):
            try:
                for member, path in enumerate((pair.file1, pair.file2)):
                    raw = read_raw(path, out=host[k, member])
                    if raw.geometry.layout != geometry.layout:
                        raise RawReadError(
                            path, f"layout {raw.geometry.layout} differs from {geometry.layout}"
                        )
                ok.append(k)
            except RawReadError as exc:
                rejected.append(
                    {
                        "path": exc.path,
                        "sensor": sensor,
                        "pair": pair.pair,
                        "amp": None,
                        "reason": exc.reason,
                    }
                )
        if not ok:
            continue
        chunk = [chunk[k] for k in ok]
        device_raw = backend.asarray(host[ok])
        isr = run_isr(device_raw, geometry, preset.isr, bias=bias_device, xp=xp)
        stats = pair_statistics(
            isr.images,
            isr.good,
            isr.read_noise_adu,
            preset.extract,
            xp=xp,
            fft_chunk=None if backend.is_gpu else 4,
        )
        level = to_host(isr.overscan_level).mean(axis=1)
        values = {
            name: to_host(getattr(stats, name))
            for name in (
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
        }
        cov = to_host(stats.cov) if stats.cov is not None else None
        cov_npix = to_host(stats.cov_npix) if stats.cov_npix is not None else None
        for k, pair in enumerate(chunk):
            for a, amp in enumerate(geometry.amps):
                cov_ok = cov is not None and bool(np.isfinite(cov[k, a, 0, 0]))
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
                    "overscan_level": level[k, a],
                    "used": pd.NA,
                }
                row["status"] = _status(
                    row["mean"], row["var"], int(row["npix"]), cov_ok, cov is not None
                )
                pair_rows.append(row)
            if cov is not None:
                size = cov.shape[-1]
                ii, jj = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
                for a, amp in enumerate(geometry.amps):
                    cov_frames.append(
                        pd.DataFrame(
                            {
                                "sensor": sensor,
                                "pair": pair.pair,
                                "amp": amp.amp,
                                "i": ii.ravel(),
                                "j": jj.ravel(),
                                "cov": cov[k, a].ravel(),
                                "npix": cov_npix[k, a].ravel(),
                            }
                        )
                    )
        done += len(chunk)
        if progress:
            progress(done, len(pairs))
    pairs_frame = _typed_pairs(pd.DataFrame(pair_rows, columns=list(PAIR_COLUMNS)))
    covariances = pd.concat(cov_frames, ignore_index=True) if cov_frames else _empty_tables()[1]
    return (
        pairs_frame,
        _typed_covariances(covariances),
        pd.DataFrame(rejected, columns=list(REJECTED_COLUMNS)),
    )


def _typed_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(
        {
            "pair": "int64",
            "amp": "int64",
            "npix": "int64",
            "cov_pixels": "int64",
            "used": "boolean",
            **{
                c: "float64"
                for c in (
                    "exptime",
                    "mjd",
                    "mean1",
                    "mean2",
                    "mean",
                    "var",
                    "rhl_gain",
                    "gain_corrected",
                    "read_noise_adu",
                    "overscan_level",
                )
            },
        }
    )


def _typed_covariances(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(
        {
            "pair": "int64",
            "amp": "int64",
            "i": "int64",
            "j": "int64",
            "cov": "float64",
            "npix": "int64",
        }
    )


def _empty_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return (
        _typed_pairs(pd.DataFrame(columns=list(PAIR_COLUMNS))),
        _typed_covariances(pd.DataFrame(columns=list(COVARIANCE_COLUMNS))),
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
    pairs_frame = _typed_pairs(pairs_frame)
    pairs_frame.attrs["rejected"] = rejected
    pairs_frame.attrs["preset"] = config.name
    pairs_frame.attrs["backend"] = chosen.name
    return pairs_frame, _typed_covariances(covariances)

"""One batch of flat pairs through the compute core: ISR, then pair statistics.

The bridge between the raw files' geometry (:mod:`gpuptc.raws`) and the array code
(:mod:`gpuptc.measuring.isr`, :mod:`gpuptc.measuring.stats`): a
``(pairs, 2, amps, naxis2, naxis1)`` stack on the backend's device in, per-amp numbers on the
host out. On NumPy, groups of
amplifiers run in threads. Also the report's display images of one pair, made by the
same ISR and flux-matched difference.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpuptc import settings
from gpuptc.backend import Backend, to_host
from gpuptc.config import Preset
from gpuptc.kernels.fft import fft_shape
from gpuptc.measuring.binning import bin_amps, bin_spec, output_spec
from gpuptc.measuring.isr import (
    NO_CALIBRATIONS,
    Calibrations,
    IsrResult,
    SegmentRegions,
    run_isr,
)
from gpuptc.measuring.stats import PairStatistics, pair_statistics
from gpuptc.raws.geometry import SensorGeometry, assemble_ccd
from gpuptc.schema import DISPLAY_BIN, STAT_NAMES

log = logging.getLogger(__name__)

__all__ = [
    "BatchResult",
    "correct_and_measure",
    "display_images",
    "isr_regions",
    "measure_batch",
]


def isr_regions(geometry: SensorGeometry) -> SegmentRegions:
    """The ISR's view of a sensor's segment layout (shared by all its amplifiers)."""
    amp = geometry.amps[0]
    return SegmentRegions(
        serial_overscan=amp.serial_overscan_all_rows.slices,
        parallel_overscan=amp.parallel_overscan.slices,
        imaging=amp.imaging.slices,
    )


def padded_pixels(image_shape: tuple[int, int], preset: Preset) -> int:
    """Pixels of one amplifier image as zero-padded for its covariance transforms."""
    sy, sx = fft_shape(*image_shape, max(preset.extract.cov_size, 1))
    return sy * sx


def _isr(
    raw: Any, geometry: SensorGeometry, preset: Preset, backend: Backend, calibrations: Calibrations
) -> IsrResult:
    return run_isr(
        raw,
        isr_regions(geometry),
        preset.isr,
        bias=calibrations.bias,
        defects=calibrations.excluded,
        linearizers=calibrations.linearizers,
        brighter_fatter=calibrations.brighter_fatter,
        backend=backend,
    )


def correct_and_measure(
    raw: Any,
    geometry: SensorGeometry,
    preset: Preset,
    backend: Backend,
    calibrations: Calibrations = NO_CALIBRATIONS,
) -> tuple[IsrResult, PairStatistics]:
    """ISR then pair statistics of one ``(pairs, 2, amps, naxis2, naxis1)`` stack.

    Everything stays on the backend's device; dead or empty amplifiers give NaNs (later
    statuses), not warnings.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        isr = _isr(raw, geometry, preset, backend, calibrations)
        stats = pair_statistics(
            isr.images,
            isr.good,
            isr.read_noise_adu,
            preset.extract,
            backend=backend,
            fft_chunk=backend.fft_chunk(padded_pixels(isr.images.shape[-2:], preset)),
        )
    return isr, stats


@dataclass
class BatchResult:
    """Per pair and amp numbers of one batch, on the host.

    Attributes
    ----------
    values : dict of str to numpy.ndarray
        ``(pairs, amps)`` arrays named by :data:`gpuptc.schema.STAT_NAMES` and
        ``overscan_level``.
    cov, cov_npix : numpy.ndarray or None
        ``(pairs, amps, L, L)`` covariances and pixel pairs, None without covariances.
    failed : numpy.ndarray of bool
        ``(pairs, amps)``: the amplifier's measurement raised (its numbers are NaN).
    binned : numpy.ndarray or None
        ``(pairs, amps, by, bx)`` each pair's first flat binned
        (:func:`gpuptc.measuring.binning.bin_amps`), None when the preset needs none.
    binned_pairs : numpy.ndarray or None
        ``(pairs, 2, amps, by, bx)`` both flats binned for output
        (:func:`gpuptc.measuring.binning.output_spec`), None when none are written.
    """

    values: dict[str, np.ndarray]
    cov: np.ndarray | None
    cov_npix: np.ndarray | None
    failed: np.ndarray
    binned: np.ndarray | None = None
    binned_pairs: np.ndarray | None = None

    @staticmethod
    def joined(parts: list[BatchResult]) -> BatchResult:
        """The results of amplifier groups side by side (along the amp axis)."""

        def join(arrays: list[np.ndarray | None], axis: int = 1) -> np.ndarray | None:
            return None if arrays[0] is None else np.concatenate(arrays, axis=axis)

        values = {
            name: np.concatenate([part.values[name] for part in parts], axis=1)
            for name in parts[0].values
        }
        return BatchResult(
            values,
            join([p.cov for p in parts]),
            join([p.cov_npix for p in parts]),
            np.concatenate([p.failed for p in parts], axis=1),
            join([p.binned for p in parts]),
            join([p.binned_pairs for p in parts], axis=2),
        )


def _measure_amps(
    raw: Any, geometry: SensorGeometry, preset: Preset, backend: Backend, calibrations: Calibrations
) -> BatchResult:
    """ISR and statistics of one stack; per-amp numbers back on the host.

    The numbers cross in three copies (the per-amp values stacked in float64, which holds
    the pixel counts exactly; the overscan levels; covariances with their pair counts),
    not one per quantity.
    """
    isr, stats = correct_and_measure(raw, geometry, preset, backend, calibrations)
    xp = backend.xp
    stacked = xp.stack([xp.astype(getattr(stats, name), xp.float64) for name in STAT_NAMES])
    values = dict(zip(STAT_NAMES, to_host(stacked), strict=True))
    values["overscan_level"] = to_host(isr.overscan_level).mean(axis=1)
    cov = cov_npix = None
    if stats.cov is not None and stats.cov_npix is not None:
        cov, cov_npix = to_host(xp.stack([stats.cov, stats.cov_npix]))
    failed = np.zeros(values["mean"].shape, bool)
    spec, output = bin_spec(preset), output_spec(preset)
    binned = binned_pairs = None
    if spec is not None:
        binned = to_host(bin_amps(isr.images[:, 0], isr.good[:, 0], spec, xp))
    if output is not None:
        binned_pairs = to_host(bin_amps(isr.images, isr.good, output, xp))
    return BatchResult(values, cov, cov_npix, failed, binned, binned_pairs)


def _failed_amp(pairs: int, geometry: SensorGeometry, preset: Preset) -> BatchResult:
    """The numbers of an amplifier whose measurement raised: NaN, no pixels, ``failed``."""
    values = {name: np.full((pairs, 1), np.nan) for name in (*STAT_NAMES, "overscan_level")}
    values["npix"] = np.zeros((pairs, 1))
    values["cov_pixels"] = np.zeros((pairs, 1))
    size = preset.extract.cov_size
    cov = np.full((pairs, 1, size, size), np.nan) if size else None
    failed = np.ones((pairs, 1), bool)
    spec, output = bin_spec(preset), output_spec(preset)
    shape = geometry.imaging.shape
    binned = binned_pairs = None
    if spec is not None:
        binned = np.full((pairs, 1, *spec.grid(shape)), np.nan, np.float32)
    if output is not None:
        binned_pairs = np.full((pairs, 2, 1, *output.grid(shape)), np.nan, np.float32)
    npix = None if cov is None else np.zeros_like(cov)
    return BatchResult(values, cov, npix, failed, binned, binned_pairs)


def _isolated(
    raw: Any, geometry: SensorGeometry, preset: Preset, backend: Backend, calibrations: Calibrations
) -> BatchResult:
    """:func:`_measure_amps`; where it raises, each amplifier alone.

    One bad amplifier then costs only itself: its rows get the ``measure_failed`` status.
    """
    try:
        return _measure_amps(raw, geometry, preset, backend, calibrations)
    except Exception as exc:
        if geometry.namps == 1:
            amp = geometry.amps[0]
            log.warning("%s: measurement failed: %s: %s", amp.segment, type(exc).__name__, exc)
            log.debug("%s", amp.segment, exc_info=True)
            return _failed_amp(raw.shape[0], geometry, preset)
    parts = [
        _isolated(
            raw[:, :, a : a + 1],
            SensorGeometry(geometry.amps[a : a + 1], geometry.vendor),
            preset,
            backend,
            calibrations.amps(a, a + 1),
        )
        for a in range(geometry.namps)
    ]
    return BatchResult.joined(parts)


def _threads() -> int:
    return settings.threads()


def measure_batch(
    raw: Any,
    geometry: SensorGeometry,
    preset: Preset,
    backend: Backend,
    calibrations: Calibrations = NO_CALIBRATIONS,
) -> BatchResult:
    """Measure a batch; where the backend gains from it, groups of amplifiers run in threads.

    Amplifiers are independent, and NumPy's selections and reductions release the GIL,
    so on two cores this is about 1.7x faster. ``GPUPTC_THREADS`` sets the number.
    """
    threads = min(_threads(), geometry.namps)
    if not backend.threads_over_amps or threads == 1:
        return _isolated(raw, geometry, preset, backend, calibrations)
    groups = [g for g in np.array_split(np.arange(geometry.namps), threads) if len(g)]

    def work(group: np.ndarray) -> BatchResult:
        first, last = int(group[0]), int(group[-1]) + 1
        subset = SensorGeometry(geometry.amps[first:last], geometry.vendor)
        mine = calibrations.amps(first, last)
        return _isolated(raw[:, :, first:last], subset, preset, backend, mine)

    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="gpuptc-amps") as pool:
        return BatchResult.joined(list(pool.map(work, groups)))


def _bin(image: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    trimmed = image[:ny, :nx]
    binned = trimmed.reshape(ny // factor, factor, nx // factor, factor)
    return binned.mean(axis=(1, 3), dtype=np.float64)


def display_images(
    pair: Any,
    geometry: SensorGeometry,
    preset: Preset,
    backend: Backend,
    calibrations: Calibrations = NO_CALIBRATIONS,
) -> dict[str, np.ndarray]:
    """Binned assembled images of one pair: its first flat and its difference image.

    The flats go through the preset's ISR and the flux-matched difference
    ``(mu2 I1 - mu1 I2) / mu`` of the pair statistics (means over good pixels).

    Parameters
    ----------
    pair : array
        The pair's raw pixels on the backend's device, ``(2, amps, naxis2, naxis1)``
        float32 (one entry of a measured batch).
    geometry : SensorGeometry
        The sensor's raw geometry.
    preset : Preset
        ISR settings.
    backend : Backend
        Where to compute.
    calibrations : Calibrations, optional
        Master bias and linearizers on the backend's device.

    Returns
    -------
    dict
        ``flat`` and ``difference`` binned by :data:`gpuptc.schema.DISPLAY_BIN`
        (float64, CCD orientation), and ``bin``.
    """
    kernels, xp = backend.kernels, backend.xp
    with np.errstate(divide="ignore", invalid="ignore"):
        isr = _isr(pair, geometry, preset, backend, calibrations)
        ny, nx = isr.images.shape[-2:]
        flat = xp.reshape(isr.images, (2, geometry.namps, ny * nx))
        good = xp.reshape(isr.good, (2, geometry.namps, ny * nx))
        means = kernels.masked_mean(flat, good)
        mean = 0.5 * (means[0] + means[1])
        difference = kernels.flux_matched_difference(flat[0], flat[1], means[0], means[1], mean)
    images = to_host(isr.images[0])  # float32: assembled, then binned in float64
    difference = to_host(xp.reshape(difference, (geometry.namps, ny, nx)))
    return {
        "flat": _bin(assemble_ccd(images, geometry.amps), DISPLAY_BIN),
        "difference": _bin(assemble_ccd(difference, geometry.amps), DISPLAY_BIN),
        "bin": np.int64(DISPLAY_BIN),
    }

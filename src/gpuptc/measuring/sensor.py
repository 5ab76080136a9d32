"""Per-sensor measurement: every pair of a sensor through the compute core, as tables.

Raw files are read on the host into one native-order float32 stack per batch of pairs
``(batch, 2, amps, naxis2, naxis1)`` (:mod:`gpuptc.measuring.batches`), copied once to the
compute device, corrected and measured there in one batched pass
(:mod:`gpuptc.measuring.compute`); only per-amp numbers come back and become rows of the
``pairs`` and ``covariances`` tables (:mod:`gpuptc.schema`), and the binned display images
of one pair, made from that pair's batch as it passes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.backend import Backend, get_backend
from gpuptc.config import Preset, get_preset
from gpuptc.inputs.manifest import PairFiles, flat_pairs
from gpuptc.inputs.remote import InputFiles
from gpuptc.kernels.linearize import AmpLinearizer
from gpuptc.measuring.batches import read_batches
from gpuptc.measuring.binning import bin_centres, bin_spec, binned_pair_rows, output_spec
from gpuptc.measuring.compute import BatchResult, display_images, isr_regions, measure_batch
from gpuptc.measuring.isr import BfCorrection, Calibrations
from gpuptc.measuring.isr_noise import IsrNoise, isr_noise
from gpuptc.measuring.masterbias import MasterBias, make_master_bias, resolve_biases
from gpuptc.measuring.selection import excluded_pixels
from gpuptc.raws.camera import sensor_centre_mm
from gpuptc.raws.exposure import RawReadError, read_segment_headers
from gpuptc.raws.geometry import GeometryError, SensorGeometry, ccd_shape
from gpuptc.raws.header import ExposureInfo
from gpuptc.schema import (
    COVARIANCE_COLUMNS,
    GROSS_MISMATCH,
    MISMATCH_THRESHOLD,
    PAIR_COLUMNS,
    BinnedFlats,
    FileStatus,
    PairStatus,
    Stage,
    rejected_frame,
    rejected_row,
    typed,
)

__all__ = [
    "Measurement",
    "SensorInputs",
    "SensorMeasurement",
    "given_biases",
    "input_files",
    "measure",
    "measure_sensor",
    "sensor_bias",
    "sensor_inputs",
]

log = logging.getLogger(__name__)


def _status(
    failed: bool,
    mean: float,
    var: float,
    npix: int,
    cov_ok: bool,
    cov_wanted: bool,
    mismatch: float,
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
    if not abs(mismatch) <= GROSS_MISMATCH:  # NaN too: one flat without signal
        return PairStatus.FLATS_DISAGREE
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
            "rolloff_fit": pd.NA,
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
            row["level_mismatch"],
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


@dataclass
class SensorMeasurement:
    """What measuring one sensor gives: its tables and one pair's display images.

    Attributes
    ----------
    pairs : pandas.DataFrame
        One row per pair and amp (:data:`gpuptc.schema.PAIR_COLUMNS`), ``used`` empty.
    covariances : pandas.DataFrame
        One row per pair, amp and lag (:data:`gpuptc.schema.COVARIANCE_COLUMNS`).
    rejected : pandas.DataFrame
        Pairs that could not be read (:data:`gpuptc.schema.REJECTED_COLUMNS`).
    images : dict or None
        The display pair's binned images (see :func:`gpuptc.measuring.compute.display_images`)
        with its ``pair`` and ``exptime``; None when none was asked for or it was not read.
    display_seconds : float
        The part of the measuring's wall time spent making the display images.
    binned : BinnedFlats or None
        The first flats of the pairs inside the gain ratio adjustment's signal window,
        binned (:mod:`gpuptc.measuring.binning`); None when the preset adjusts no gains.
    binned_pairs : pandas.DataFrame or None
        Both flats of every pair binned for output
        (:func:`gpuptc.measuring.binning.binned_pair_rows`); None unless the preset asks.
    """

    pairs: pd.DataFrame
    covariances: pd.DataFrame
    rejected: pd.DataFrame
    images: dict[str, Any] | None = None
    display_seconds: float = 0.0
    binned: BinnedFlats | None = None
    binned_pairs: pd.DataFrame | None = None


@dataclass
class Measurement:
    """What :func:`gpuptc.measure` gives: every sensor's tables and what was rejected.

    It unpacks and indexes as the ``(pairs, covariances)`` tuple it replaced (as scipy's
    result objects do), so ``pairs, covariances = gpuptc.measure(manifest)`` works.

    Attributes
    ----------
    pairs : pandas.DataFrame
        One row per sensor, pair and amp (:data:`gpuptc.schema.PAIR_COLUMNS`); ``used`` is
        left empty (filled by :func:`gpuptc.fit`).
    covariances : pandas.DataFrame
        One row per sensor, pair, amp and lag (``i`` serial, ``j`` parallel), per-image
        covariance in ADU^2.
    rejected : pandas.DataFrame
        Pairs that could not be read, with the reason (:data:`gpuptc.schema.REJECTED_COLUMNS`).
    preset, backend : str
        The preset's name and the backend the pairs were measured on.
    """

    pairs: pd.DataFrame
    covariances: pd.DataFrame
    rejected: pd.DataFrame
    preset: str
    backend: str

    def __iter__(self) -> Iterator[pd.DataFrame]:
        """``pairs``, then ``covariances``."""
        return iter((self.pairs, self.covariances))

    def __getitem__(self, index: int) -> pd.DataFrame:
        """``pairs`` (0) or ``covariances`` (1)."""
        return (self.pairs, self.covariances)[index]

    def __len__(self) -> int:
        return 2

    @classmethod
    def joined(cls, parts: list[SensorMeasurement], preset: str, backend: str) -> Measurement:
        """The sensors' measurements as one (empty tables when there are none)."""
        empty = _empty_tables()
        return cls(
            typed(pd.concat([r.pairs for r in parts] or [empty[0]], ignore_index=True)),
            typed(pd.concat([r.covariances for r in parts] or [empty[1]], ignore_index=True)),
            pd.concat([r.rejected for r in parts] or [empty[2]], ignore_index=True),
            preset,
            backend,
        )


@dataclass(frozen=True)
class SensorInputs:
    """The raws measuring one sensor reads: its flat pairs and the bias frames it combines.

    Made once per sensor by :func:`sensor_inputs`; :attr:`reading_order` is the order in
    which measuring reads them (what remote files are fetched ahead in).
    """

    sensor: str
    pairs: tuple[PairFiles, ...]
    bias_frames: tuple[str, ...] = ()

    @property
    def reading_order(self) -> list[str]:
        """The bias frames, then each pair's two flats."""
        return [*self.bias_frames, *(path for pair in self.pairs for path in pair.paths)]


def _biases_read(preset: Preset, bias: Any) -> bool:
    """Whether measuring reads the manifest's bias frames (to make master biases)."""
    return preset.isr.use_bias and bias is None


def sensor_inputs(manifest: pd.DataFrame, sensor: str, preset: Preset, bias: Any) -> SensorInputs:
    """The flat pairs of ``sensor`` and, when a master bias is made from them, its bias frames."""
    frames: tuple[str, ...] = ()
    if _biases_read(preset, bias):
        rows = manifest[(manifest["status"] == FileStatus.BIAS) & (manifest["sensor"] == sensor)]
        frames = tuple(rows["path"])
    return SensorInputs(sensor, tuple(flat_pairs(manifest, sensor)), frames)


def input_files(inputs: Sequence[SensorInputs]) -> InputFiles:
    """The raws measuring these sensors reads, in reading order, fetched ahead if remote.

    Per sensor, its bias frames first when a master bias is made from them (the preset
    subtracts one and none is given as ``bias``), then its pairs.
    """
    return InputFiles([path for each in inputs for path in each.reading_order])


def given_biases(
    manifest: pd.DataFrame, bias: Any, sensors: list[str], preset: Preset
) -> dict[str, MasterBias]:
    """The master biases given as ``bias`` (see :func:`measure`) of each sensor, if used."""
    if bias is None or not preset.isr.use_bias:
        return {}
    return resolve_biases(manifest, bias, sensors)


def sensor_bias(
    inputs: SensorInputs, preset: Preset, files: InputFiles, given: dict[str, MasterBias]
) -> MasterBias | None:
    """The sensor's master bias when the preset subtracts one: given, or made from its frames.

    The bias frames are read through ``files`` (fetched first if remote) and released.
    """
    if not preset.isr.use_bias:
        return None
    master = given.get(inputs.sensor)
    if master is None and inputs.bias_frames:
        try:
            master = make_master_bias([files.local(path) for path in inputs.bias_frames])
        finally:
            files.release(inputs.bias_frames)
    if master is None:
        log.warning("%s: no master bias; bias subtraction skipped", inputs.sensor)
    return master


def display_pair(pairs: Sequence[PairFiles]) -> PairFiles | None:
    """The pair the report shows: the one of median exposure time (the lower of two)."""
    if not pairs:
        return None
    ordered = sorted(pairs, key=lambda pair: (pair.exptime, pair.pair))
    return ordered[(len(ordered) - 1) // 2]


def _first_headers(
    pairs: Sequence[PairFiles], files: InputFiles
) -> tuple[ExposureInfo, SensorGeometry] | None:
    """Primary-header metadata and geometry of the first readable flat of the sensor."""
    for pair in pairs:
        try:
            return read_segment_headers(files.local(pair.file1))
        except RawReadError:
            continue
    return None


def _device_exclusions(
    geometry: SensorGeometry,
    preset: Preset,
    centre_mm: tuple[float, float] | None,
    backend: Backend,
) -> Any:
    """The pixels left out by their place (:mod:`gpuptc.measuring.selection`) on the device."""
    excluded = excluded_pixels(geometry, preset, centre_mm)
    return None if excluded is None else backend.asarray(excluded)


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


def _amp_linearizers(
    sensor: str, linearizers: dict[str, AmpLinearizer] | None, geometry: SensorGeometry
) -> tuple[AmpLinearizer, ...] | None:
    """The linearizers in the order of the sensor's amps (each amp must have one)."""
    if linearizers is None:
        return None
    missing = [amp.segment for amp in geometry.amps if amp.segment not in linearizers]
    if missing:
        raise ValueError(f"{sensor}: the linearizer has no amp {', '.join(missing)}")
    return tuple(linearizers[amp.segment] for amp in geometry.amps)


def _bf_correction(
    bf_kernels: Mapping[str, tuple[np.ndarray, float]] | None,
    geometry: SensorGeometry,
    backend: Backend,
) -> BfCorrection | None:
    """The kernels and gains on the device in the order of the sensor's amps.

    An amp without a kernel gets a zero one (its pixels are left as they are).
    """
    if not bf_kernels:
        return None
    size = next(iter(bf_kernels.values()))[0].shape
    zero = (np.zeros(size), 1.0)
    chosen = [bf_kernels.get(amp.segment, zero) for amp in geometry.amps]
    kernels = np.stack([np.asarray(kernel, float) for kernel, _ in chosen])
    gains = np.array([gain for _, gain in chosen], float)
    return BfCorrection(backend.asarray(kernels), backend.asarray(gains))


def _unreadable(sensor: str, pairs: Sequence[PairFiles]) -> SensorMeasurement:
    rejected = [
        rejected_row("unreadable", stage=Stage.READ, path=p.file1, sensor=sensor, pair=p.pair)
        for p in pairs
    ]
    empty = _empty_tables()
    return SensorMeasurement(empty[0], empty[1], rejected_frame(rejected))


def _by_pair(arrays: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs in order and their arrays stacked along a first axis."""
    pairs = np.array(sorted(arrays), np.int64)
    return pairs, np.stack([arrays[p] for p in pairs])


class _Tables:
    """Rows of one sensor's tables, gathered batch by batch."""

    def __init__(
        self,
        sensor: str,
        geometry: SensorGeometry,
        noise: IsrNoise,
        preset: Preset,
        centre_mm: tuple[float, float] | None,
    ) -> None:
        self.sensor, self.geometry, self.noise = sensor, geometry, noise
        self.centre_mm = centre_mm
        self.amps = np.array([amp.amp for amp in geometry.amps], np.int64)
        self.window = (preset.gain_ratios.min_adu, preset.gain_ratios.max_adu)
        self.spec = bin_spec(preset)
        self.pair_rows: list[dict[str, Any]] = []
        self.cov_frames: list[pd.DataFrame] = []
        self.rejected: list[dict[str, Any]] = []
        self.binned: dict[int, np.ndarray] = {}
        self.output = output_spec(preset)
        self.binned_pairs: dict[int, np.ndarray] = {}

    def add(self, pairs: Sequence[PairFiles], result: BatchResult) -> None:
        for k, pair in enumerate(pairs):
            self.pair_rows.extend(_pair_rows(self.sensor, pair, k, self.geometry, result))
            if result.cov is not None:
                self.cov_frames.append(
                    _covariance_frame(self.sensor, pair, k, self.geometry, result)
                )
            if result.binned is not None and self._inside(result.values["mean"][k]):
                self.binned[pair.pair] = result.binned[k]
            if result.binned_pairs is not None:
                self.binned_pairs[pair.pair] = result.binned_pairs[k]

    def binned_pair_table(self) -> pd.DataFrame | None:
        """Both flats of every pair binned, as rows; None unless the preset writes them."""
        if self.output is None or not self.binned_pairs:
            return None
        x, y = bin_centres(self.geometry.amps, self.output)
        return binned_pair_rows(self.sensor, *_by_pair(self.binned_pairs), self.amps, x, y)

    def _inside(self, means: np.ndarray) -> bool:
        """Whether a pair's signal (its amps' median) may be in the gain ratios' window."""
        finite = means[np.isfinite(means)]
        return bool(len(finite)) and self.window[0] < np.median(finite) < self.window[1]

    def binned_flats(self) -> BinnedFlats | None:
        """The binned first flats kept, with their bins' places; None without any."""
        if self.spec is None or not self.binned:
            return None
        try:
            x, y = bin_centres(self.geometry.amps, self.spec)
            shape = ccd_shape(self.geometry.amps)
        except GeometryError as exc:
            log.warning("%s: no gain ratio adjustment: %s", self.sensor, exc)
            return None
        pairs, values = _by_pair(self.binned)
        return BinnedFlats(pairs, self.amps, values, x, y, shape, self.centre_mm)

    def measurement(self, images: dict[str, Any] | None, seconds: float) -> SensorMeasurement:
        pairs = pd.DataFrame(self.pair_rows, columns=list(PAIR_COLUMNS))
        pairs["read_noise_pixel_adu"] = self.noise.pixel_noise(pairs["read_noise_adu"])
        pairs["isr_noise_adu"] = self.noise.isr_noise(pairs["read_noise_adu"])
        pairs = typed(pairs)
        empty = _empty_tables()[1]
        covariances = pd.concat(self.cov_frames, ignore_index=True) if self.cov_frames else empty
        rejected = rejected_frame(self.rejected)
        return SensorMeasurement(
            pairs, typed(covariances), rejected, images, seconds, self.binned_flats(),
            self.binned_pair_table(),
        )  # fmt: skip


def _warn_variance_disagreement(
    sensor: str, measured: SensorMeasurement, threshold_percent: float
) -> None:
    """A warning where a pair's variance and its Cov[0,0] differ by ``threshold_percent``.

    cp_pipe's ``thresholdDiffAfwVarVsCov00``: the clipped variance of the difference image
    and the covariance at lag 0 of its unclipped pixels should agree; one warning per
    sensor, with how many pair-amps disagree and the largest difference.
    """
    origin = measured.covariances
    if origin.empty:
        return
    origin = origin[(origin["i"] == 0) & (origin["j"] == 0)].set_index(["pair", "amp"])["cov"]
    var = measured.pairs.set_index(["pair", "amp"])["var"]
    with np.errstate(divide="ignore", invalid="ignore"):
        percent = (100.0 * (1.0 - var / origin.reindex(var.index)).abs()).dropna()
    off = percent[percent >= threshold_percent]
    if len(off):
        log.warning(
            "%s: the clipped variance and Cov[0,0] differ by %g %% or more on %d pair-amps "
            "(at most %.2f %%, pair %s amp %s)",
            sensor, threshold_percent, len(off), off.max(), *off.idxmax(),
        )  # fmt: skip


def _shown(batch: Sequence[PairFiles], display: PairFiles, order: dict[int, int]) -> int | None:
    """Which pair of a batch shows the sensor: the display pair, else the first after it."""
    after = (k for k, pair in enumerate(batch) if order[pair.pair] >= order[display.pair])
    return next(after, None)


def measure_sensor(
    sensor: str,
    pairs: Sequence[PairFiles],
    preset: Preset,
    backend: Backend,
    *,
    bias: MasterBias | None = None,
    batch_pairs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    files: InputFiles | None = None,
    display: PairFiles | None = None,
    linearizers: dict[str, AmpLinearizer] | None = None,
    bf_kernels: Mapping[str, tuple[np.ndarray, float]] | None = None,
) -> SensorMeasurement:
    """Measure every pair of one sensor, reading the next batch while this one computes.

    ``files`` fetches remote raws ahead of their reading (default: every file local).
    With ``display``, that pair's display images are made from its batch as it passes
    (when it cannot be read, from the first pair measured after it). With
    ``linearizers`` (by segment name, every amp of the sensor), each amp's pixels are
    linearized after the bias. With ``bf_kernels`` (by segment name: the kernel in the
    images' orientation, parallel then serial, and the gain), those amps' pixels are
    corrected for the brighter-fatter effect after that.

    Returns
    -------
    SensorMeasurement
        Rows for this sensor (see :func:`measure`) and the display images.
    """
    files = files or InputFiles(())
    headers = _first_headers(pairs, files)
    if headers is None:
        return _unreadable(sensor, pairs)
    info, geometry = headers
    centre = sensor_centre_mm(info.raftbay, info.ccdslot)
    bytes_per_pair = 2 * geometry.namps * int(np.prod(geometry.segment_shape)) * 4
    batch = backend.batch_size(bytes_per_pair, batch_pairs, pairs=len(pairs))
    calibrations = Calibrations(
        _device_bias(sensor, bias, geometry, preset, backend),
        _amp_linearizers(sensor, linearizers, geometry),
        _bf_correction(bf_kernels, geometry, backend),
        _device_exclusions(geometry, preset, centre, backend),
    )
    noise = isr_noise(preset.isr, isr_regions(geometry))
    tables = _Tables(sensor, geometry, noise, preset, centre)
    order = {pair.pair: index for index, pair in enumerate(pairs)}
    images, seconds = None, 0.0
    done = 0
    for chunk in read_batches(sensor, list(pairs), geometry, batch, backend, files):
        tables.rejected.extend(chunk.rejected)
        if not chunk.pairs:
            continue
        result = measure_batch(chunk.raw, geometry, preset, backend, calibrations)
        tables.add(chunk.pairs, result)
        k = _shown(chunk.pairs, display, order) if display and images is None else None
        if k is not None:
            started = time.perf_counter()
            shown = chunk.pairs[k]
            images = display_images(chunk.raw[k], geometry, preset, backend, calibrations)
            images |= {"pair": np.int64(shown.pair), "exptime": np.float64(shown.exptime)}
            seconds = time.perf_counter() - started
        done += len(chunk.pairs)
        if progress:
            progress(done, len(pairs))
    measured = tables.measurement(images, seconds)
    _warn_variance_disagreement(sensor, measured, preset.extract.var_cov00_threshold)
    return measured


def _measured(
    inputs: SensorInputs,
    preset: Preset,
    backend: Backend,
    bias: MasterBias | None,
    files: InputFiles,
    batch_pairs: int | None,
    progress: Callable[[str, int, int], None] | None,
) -> SensorMeasurement:
    """One sensor of :func:`measure` (its progress reported under its name)."""
    report = functools.partial(progress, inputs.sensor) if progress else None
    return measure_sensor(
        inputs.sensor,
        inputs.pairs,
        preset,
        backend,
        bias=bias,
        batch_pairs=batch_pairs,
        progress=report,
        files=files,
    )


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
) -> Measurement:
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
        Where the raws are read from (default :func:`input_files`: remote ones fetched ahead).
    **overrides
        Preset field overrides (``cov_size=5``, ``isr__edge_mask=10``, ...).

    Returns
    -------
    Measurement
        The ``pairs`` and ``covariances`` tables of every sensor, the ``rejected`` pairs,
        the preset and the backend; it unpacks as ``pairs, covariances``.

    Examples
    --------
    The 6 flat pairs of a small simulated sensor in ``raw_dir`` (:func:`gpuptc.simulate`),
    16 amplifiers each:

    >>> from gpuptc import ingest
    >>> measured = measure(ingest(raw_dir), "cp_pipe", "numpy")
    >>> len(measured.pairs), measured.pairs.pair.nunique(), len(measured.rejected)
    (96, 6, 0)
    >>> pairs, covariances = measured
    >>> gains = (pairs["mean"] / pairs["var"]).groupby(pairs["pair"]).median()  # e-/ADU
    >>> bool(gains.iloc[:5].between(0.7, 1.0).all())  # the sixth pair is saturated
    True
    """
    config, chosen = get_preset(preset, **overrides), get_backend(backend)
    paired = manifest.loc[manifest["status"] == FileStatus.PAIRED, "sensor"]
    wanted = sorted(s for s in paired.unique() if sensors is None or s in sensors)
    inputs = [sensor_inputs(manifest, sensor, config, bias) for sensor in wanted]
    given = given_biases(manifest, bias, wanted, config)
    with contextlib.ExitStack() as stack:
        if files is None:
            files = stack.enter_context(input_files(inputs))
        results = [
            _measured(each, config, chosen, sensor_bias(each, config, files, given), files,
                      batch_pairs, progress)
            for each in inputs
        ]  # fmt: skip
    return Measurement.joined(results, config.name, chosen.name)

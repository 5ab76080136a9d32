"""The output contract in one place: tables, their columns and types, statuses, files.

Every module that builds, writes or reads a table takes its column names from here;
statuses are the constants of :class:`FileStatus`, :class:`PairStatus` and
:class:`FitStatus`; a rejection is made by :func:`rejected_row`; exit codes and output
file names are defined once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CHARTS_DIR",
    "COMPARISON_COLUMNS",
    "COVARIANCE_COLUMNS",
    "CP_PIPE_DIR",
    "DISPLAY_BIN",
    "DISPLAY_KEYS",
    "EOTEST_DIR",
    "EXIT_FATAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "FULLCOV_COLUMNS",
    "GAIN_RATIO_COLUMNS",
    "GROSS_MISMATCH",
    "INTERRUPTED",
    "LINEARITY_COLUMNS",
    "MISMATCH_THRESHOLD",
    "OUTPUT_NAMES",
    "PAIR_COLUMNS",
    "PTC_COLUMNS",
    "REJECTED_COLUMNS",
    "REJECTED_FILE",
    "REPORT_DIR",
    "RUN_FILE",
    "SCHEMA_VERSION",
    "SENSORS_DIR",
    "STAT_NAMES",
    "TABLE_FILES",
    "BinnedFlats",
    "DrawnFigure",
    "FileStatus",
    "FitStatus",
    "PairStatus",
    "Stage",
    "bf_kernel_name",
    "display_images_name",
    "eotest_file_names",
    "figure_name",
    "file_stem",
    "joined_rejections",
    "linearizer_name",
    "ptc_dataset_name",
    "rejected_frame",
    "rejected_row",
    "sensor_page_name",
    "typed",
    "words",
]

# -- exit codes -------------------------------------------------------------------------

EXIT_OK = 0
"""Success."""
EXIT_FATAL = 1
"""Nothing usable: nothing written."""
EXIT_USAGE = 2
"""A usage error (bad option, unavailable backend)."""
EXIT_REJECTED = 3
"""Results written, but some inputs, pairs or amps were rejected (``rejected.csv``)."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C."""

SCHEMA_VERSION = 6
"""Version of the tables' layout; stored per-sensor results of another version are redone."""

# -- statuses ---------------------------------------------------------------------------


class FileStatus:
    """What ingest made of each input file (``manifest.status``)."""

    PAIRED = "paired"
    UNPAIRED = "unpaired"
    BIAS = "bias"
    EOTEST = "eotest"
    PTC_DATASET = "ptc_dataset"
    IGNORED = "ignored"
    REJECTED = "rejected"
    ALL: tuple[str, ...] = (PAIRED, UNPAIRED, BIAS, EOTEST, PTC_DATASET, IGNORED, REJECTED)
    REJECTIONS: tuple[str, ...] = (REJECTED, UNPAIRED)
    """Statuses listed in ``rejected.csv``."""


class PairStatus:
    """Whether one pair of one amplifier could be measured (``pairs.status``)."""

    OK = "ok"
    NO_GOOD_PIXELS = "no_good_pixels"
    NOT_MEASURABLE = "not_measurable"
    NONPOSITIVE_MEAN = "nonpositive_mean"
    ZERO_VARIANCE = "zero_variance"
    MEASURE_FAILED = "measure_failed"
    TOO_FEW_PIXELS_FOR_COVARIANCE = "too_few_pixels_for_covariance"
    NOT_GAUSSIAN = "not_gaussian"
    """The pair's difference image failed the Gaussianity test (KS p-value below the
    solve's ``ks_min_pvalue``): measured, not fitted."""
    FLATS_DISAGREE = "flats_disagree"
    """The two flats' levels differ beyond :data:`GROSS_MISMATCH` (a shutter that stayed
    shut, a lamp that failed): not a pair of one illumination, never fitted."""
    MEASURED: tuple[str, ...] = (OK, TOO_FEW_PIXELS_FOR_COVARIANCE)
    """Statuses whose mean and variance are fitted."""


class FitStatus:
    """How one model's fit of one amplifier ended (``ptc.status``)."""

    OK = "ok"
    NOISE_AT_ZERO = "noise_at_zero"
    """The read-noise term fitted to zero (its lower bound): held there, and the other
    parameters' errors are those of the fit without it; the noise has no error."""
    A00_AT_ZERO = "a00_at_zero"
    """The brighter-fatter term fitted to zero: held there, the others' errors without it."""
    SINGULAR = "singular"
    """The fit converged but its covariance is singular with no parameter at zero: the
    values are kept, their errors are NaN."""
    TOO_FEW_POINTS = "too_few_points"
    NO_CONVERGENCE = "no_convergence"
    BAD_INPUT = "bad_input"
    FAILED = "failed"
    """The fit raised an error (logged with the amplifier and model)."""

    FITTED = frozenset({OK, NOISE_AT_ZERO, A00_AT_ZERO, SINGULAR})
    """The statuses of a fit with values: not a rejection, not a bad amplifier of the PTC
    dataset; every one but ``ok`` is flagged on the report."""


class Stage:
    """Where in the job something was rejected (``rejected.stage``)."""

    INGEST = "ingest"
    """The file itself: unreadable, inconsistent, unpaired, a duplicate."""
    READ = "read"
    """A pair's pixels could not be read into its batch."""
    MEASURE = "measure"
    """One amplifier of one pair could not be measured."""
    FIT = "fit"
    """An amplifier's PTC could not be fitted."""
    LINEARITY = "linearity"
    """A sensor's linearity could not be solved (its PTC stands)."""
    BF_KERNEL = "bf_kernel"
    """A sensor's brighter-fatter kernels could not be solved (its PTC stands)."""
    GAIN_RATIOS = "gain_ratios"
    """A sensor's gains could not be adjusted to seamless flats (its PTC's gains stand)."""
    SENSOR = "sensor"
    """The whole sensor failed (the log holds the traceback)."""


def words(status: str) -> str:
    """A status as words for a reason (``zero_variance`` -> ``zero variance``)."""
    return status.replace("_", " ")


# -- tables -----------------------------------------------------------------------------

STAT_NAMES: tuple[str, ...] = (
    "mean1",
    "mean2",
    "mean",
    "var",
    "npix",
    "rhl_gain",
    "rhl_gain_corrected",
    "notebook_gain",
    "cp_pipe_gain",
    "read_noise_adu",
    "hist_var",
    "hist_chi2_dof",
    "ks_pvalue",
    "row_mean_variance",
    "cov_pixels",
)
"""Per pair and amp results of :func:`gpuptc.measuring.stats.pair_statistics` kept in ``pairs``."""

PAIR_COLUMNS: tuple[str, ...] = (
    "sensor",
    "pair",
    "amp",
    "segment",
    "exptime",
    "photo_charge",
    "photo_charge_delta",
    "mondiode",
    "mjd",
    "file1",
    "file2",
    *STAT_NAMES[:-1],
    "read_noise_pixel_adu",
    "isr_noise_adu",
    "overscan_level",
    "level_mismatch",
    "mismatched",
    "cov_pixels",
    "pixels",
    "used",
    "rolloff_fit",
    "status",
)
MISMATCH_THRESHOLD = 0.03
"""``mismatched`` marks pairs whose flats differ in level (``|mean2/mean1 - 1|``) by more."""

GROSS_MISMATCH = 0.2
"""Flats whose levels differ by more (``|mean2/mean1 - 1|``, several times
:data:`MISMATCH_THRESHOLD`) are no pair at all: status ``flats_disagree``, left out of
every fit (a flux step of a PTC, a shutter that stayed shut)."""
LINEARITY_COLUMNS: tuple[str, ...] = (
    "sensor",
    "amp",
    "segment",
    "abscissa",
    "type",
    "coefficients",
    "fit_params",
    "fit_params_err",
    "linear_intercept",
    "linear_slope",
    "turnoff",
    "max_signal",
    "residual_sigma_mad",
    "max_frac_dev",
    "eo_linearity_turnoff",
    "n_used",
    "reduced_chi2",
    "status",
    "abscissa_reason",
    "input_pairs",
    "input_abscissa",
    "input_ordinate",
    "input_mask",
    "input_groups",
    "residuals",
    "residuals_unmasked",
)
"""One row per sensor and amp of ``linearity.parquet``: what it was fitted against
(``photodiode`` or ``exptime``, and why not the photodiode), the linearizer (type,
coefficients, the polynomial of the signal in the line's value with errors), the straight
line, the linearity turnoff and maximum signal (ADU), the robust spread of the fractional
residuals after linearizing (cp_pipe's FIT_RES_SIGMAD: MAD x 1.4826), eo_pipe's maximum
fractional deviation and 5 % turnoff (ADU), the pairs fitted, the status, and per pair
in the fit's order (lists): its number, abscissa, mean signal, whether the fit took it,
its group (one illumination each) and its residual (ADU, NaN where not fitted;
``residuals_unmasked`` at every pair): what a linearizer file holds as its inputs."""
COVARIANCE_COLUMNS: tuple[str, ...] = ("sensor", "pair", "amp", "i", "j", "cov", "npix")
PTC_COLUMNS: tuple[str, ...] = (
    "sensor",
    "amp",
    "segment",
    "model",
    "gain",
    "gain_err",
    "noise",
    "noise_err",
    "a00",
    "a00_err",
    "turnoff",
    "turnoff_err",
    "turnoff_electrons",
    "full_well",
    "n_used",
    "chi2_dof",
    "status",
    "powerlaw_amplitude",
    "powerlaw_index",
    "rolloff",
    "rolloff_err",
    "rolloff_tau",
    "rolloff_tau_err",
    "gain_unadjusted",
    "gain_adjustment",
)
FULLCOV_COLUMNS: tuple[str, ...] = (
    "sensor",
    "amp",
    "model",
    "i",
    "j",
    "a",
    "a_err",
    "b",
    "b_err",
    "noise",
)
COMPARISON_COLUMNS: tuple[str, ...] = (
    "sensor",
    "amp",
    "method",
    "quantity",
    "value",
    "reference",
    "reference_file",
    "reference_value",
    "ratio",
    "definition",
)
GAIN_RATIO_COLUMNS: tuple[str, ...] = (
    "sensor",
    "pair",
    "amp",
    "segment",
    "mean_adu",
    "ratio",
    "reference",
)
"""One row per sensor, flat and amp of ``gain_ratios.parquet``: each amp's ratio to the
reference amp on one binned flat (the first of the pair) in electrons, gradients removed
(:mod:`gpuptc.fitting.gain_ratios`); ``mean_adu`` is the flat's signal."""
REJECTED_COLUMNS: tuple[str, ...] = ("path", "sensor", "pair", "amp", "stage", "reason")

_INTEGER_COLUMNS = frozenset({"pair", "amp", "npix", "cov_pixels", "pixels", "i", "j"})
_TEXT_COLUMNS = frozenset({"sensor", "segment", "file1", "file2", "status"})


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """``pairs`` or ``covariances`` with fixed column types, whatever the rows.

    Counts are int64, ``used`` and ``rolloff_fit`` boolean, every other number float64.
    """
    types: dict[str, str] = {}
    for column in frame.columns:
        if column in _INTEGER_COLUMNS:
            types[column] = "int64"
        elif column in ("used", "rolloff_fit"):
            types[column] = "boolean"
        elif column == "mismatched":
            types[column] = "bool"
        elif column not in _TEXT_COLUMNS:
            types[column] = "float64"
    return frame.astype(types)


def rejected_row(
    reason: str,
    *,
    stage: str,
    path: str | None = None,
    sensor: str | None = None,
    pair: Any = pd.NA,
    amp: Any = pd.NA,
) -> dict[str, Any]:
    """One row of ``rejected.csv``: what was rejected (file, pair, amp), where and why."""
    return {
        "path": path,
        "sensor": sensor,
        "pair": pair,
        "amp": amp,
        "stage": stage,
        "reason": reason,
    }


def rejected_frame(rows: Iterable[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """A ``rejected`` table from :func:`rejected_row` rows (empty by default)."""
    return pd.DataFrame(list(rows), columns=list(REJECTED_COLUMNS))


def joined_rejections(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """``rejected`` tables concatenated (the first, empty, when all are)."""
    return pd.concat([f for f in frames if len(f)] or [frames[0]], ignore_index=True)


# -- files ------------------------------------------------------------------------------

INTERRUPTED = "interrupted.json"
"""Written when a run is interrupted: which sensors it finished; removed by the next run."""
RUN_FILE = "run.json"
"""Provenance of a finished run."""
REJECTED_FILE = "rejected.csv"
TABLE_FILES: dict[str, str] = {
    "manifest": "manifest.parquet",
    "pairs": "pairs.parquet",
    "covariances": "covariances.parquet",
    "ptc": "ptc.parquet",
    "fullcov": "fullcov.parquet",
    "curves": "curves.parquet",
    "comparison": "comparison.parquet",
    "verdict": "verdict.parquet",
    "focal_plane": "focal_plane.parquet",
    "linearity": "linearity.parquet",
    "bf_kernel": "bfk.parquet",
    "gain_ratios": "gain_ratios.parquet",
    "rejected": REJECTED_FILE,
}
"""Each table of a run and the file it is written to."""
EOTEST_DIR = "eotest"
CP_PIPE_DIR = "cp_pipe"
REPORT_DIR = "report"
CHARTS_DIR = "charts"
"""Inside the report folder: the charts as PNG files (``gpuptc report DIR --png``)."""
SENSORS_DIR = "sensors"
BINNED_PAIRS_FILE = "binned_pairs.parquet"
"""In a sensor's folder under ``sensors/``: both flats of every pair binned, when the
preset writes them (``extract.output_binned_images``); one row per pair, amp and bin."""
OUTPUT_NAMES: tuple[str, ...] = (
    *TABLE_FILES.values(),
    RUN_FILE,
    EOTEST_DIR,
    CP_PIPE_DIR,
    REPORT_DIR,
    INTERRUPTED,
)
"""Everything a run replaces at the top of an output directory (``sensors/`` holds the
per-sensor results that later runs reuse)."""

DISPLAY_BIN = 8
"""Binning of the report's display images."""
DISPLAY_KEYS: tuple[str, ...] = ("flat", "difference", "pair", "exptime", "bin")
"""Arrays of a display-images file: binned flat and difference image, pair, EXPTIME, bin."""


@dataclass(frozen=True)
class DrawnFigure:
    """One figure of the report: PNG bytes, or why it could not be drawn."""

    name: str
    """File name under ``report/figures/``."""
    caption: str
    png: bytes | None = None
    failure: str | None = None
    """``ExceptionType: message`` when drawing failed."""
    order: int = 0
    """Its place among its sensor's figures (parts drawn apart are joined by it)."""


@dataclass(frozen=True)
class BinnedFlats:
    """Flats of a sensor binned per amplifier, with where their bins lie.

    Attributes
    ----------
    pairs : numpy.ndarray
        ``(n,)`` the pairs the flats belong to.
    amps : numpy.ndarray
        ``(amps,)`` the amplifiers' numbers, in the order of the amp axis.
    values : numpy.ndarray
        ``(n, amps, by, bx)`` mean signal of each bin of each pair's first flat (ADU; NaN
        without a good pixel).
    x, y : numpy.ndarray
        ``(amps, by, bx)`` each bin's centre on the assembled CCD (pixels, amp 1 at the
        lower left).
    ccd_shape : tuple of int
        The assembled CCD's ``(ny, nx)``.
    centre_mm : tuple of float or None
        The CCD's centre in the focal plane (mm, from RAFTBAY and CCDSLOT); None when its
        place is not known.
    """

    pairs: np.ndarray
    amps: np.ndarray
    values: np.ndarray
    x: np.ndarray
    y: np.ndarray
    ccd_shape: tuple[int, int]
    centre_mm: tuple[float, float] | None = None


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def file_stem(identifier: str) -> str:
    """The form an identifier read from a header takes in file and folder names.

    An identifier of at most 64 letters, digits and ``._+-`` that starts with a letter or
    digit is its own name (every camera id is). Anything else (a path separator, ``.`` or
    ``..``, spaces, markup, control characters, non-ASCII, a longer value) becomes its
    plain characters, at most 40, then ``~`` and a digest of the whole value: the name
    never leaves its folder, never equals a plain identifier's (``~`` is not plain), and
    two identifiers never share one. The tables keep the identifier itself.

    Parameters
    ----------
    identifier : str
        A sensor id, raft or slot as a header gives it (any characters).

    Returns
    -------
    str

    Examples
    --------
    >>> file_stem("E2V-CCD250-101")
    'E2V-CCD250-101'
    >>> file_stem("../../escaped")
    '_.._escaped~ea03bc47f879'
    >>> file_stem("..")
    '~5ec1f7e700f3'
    """
    if _PLAIN_NAME.fullmatch(identifier):
        return identifier
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    readable = _UNSAFE.sub("_", identifier)[:40].lstrip(".")
    return f"{readable}~{digest}"


def ptc_dataset_name(sensor: str) -> str:
    """Where a sensor's cp_pipe PTC dataset is written, relative to the output directory."""
    return f"{CP_PIPE_DIR}/{file_stem(sensor)}_ptc.fits"


def linearizer_name(sensor: str) -> str:
    """Where a sensor's linearizer (ip_isr's format) is written, relative to the outputs."""
    return f"{CP_PIPE_DIR}/{file_stem(sensor)}_linearizer.fits"


def bf_kernel_name(sensor: str) -> str:
    """Where a sensor's brighter-fatter kernel (ip_isr's format) is written."""
    return f"{CP_PIPE_DIR}/{file_stem(sensor)}_bfk.fits"


def sensor_page_name(sensor: str) -> str:
    """A sensor's report page (runs of several sensors), relative to the report folder."""
    return f"sensor_{file_stem(sensor)}.html"


def display_images_name(sensor: str) -> str:
    """Where a sensor's display images are kept, relative to the output directory."""
    return f"{REPORT_DIR}/data/{file_stem(sensor)}_images.npz"


def eotest_file_names(sensor: str) -> tuple[str, str]:
    """A sensor's EOTEST results and PTC files, relative to the ``eotest`` folder."""
    stem = file_stem(sensor)
    return f"{stem}_eotest_results.fits", f"{stem}_ptc.fits"


def figure_name(kind: str, sensor: str) -> str:
    """A sensor's figure of ``kind`` (``ptc_log``, ``gain_hist``, ...) in ``report/figures``."""
    return f"{kind}_{file_stem(sensor)}.png"

"""Whether a sensor's brighter-fatter kernels undo the effect in its own flats (``--bf-check``).

The kernels the run solved (``bfk.parquet``) are applied to the sensor's flats in the ISR
of one more measuring pass (:class:`gpuptc.measuring.isr.BfCorrection`, as Rubin's ISR
corrects an image), and each amp's per-pair gain is measured again. The brighter-fatter
effect makes that gain rise with the pair mean (about ``|a00| g`` per ADU); a kernel that
corrects the flats flattens it. Per amp, the slope over the pairs the PTC kept, before
(``gain_slope``) and after (``gain_slope_corrected``), with their standard errors.

Which kernel corrects an amp (:data:`CHECK_MODES`):

- ``detector`` (the default): as Rubin's ISR applies a kernel dataset: the detector's
  kernel where the dataset has one (``level = "DETECTOR"``), else the mean of the amps'
  valid kernels clipped at 5 sigma (ip_isr's ``makeDetectorKernelFromAmpwiseKernels``),
  every amp corrected by it in electrons of its own gain;
- ``amp``: each amp by its own kernel, valid or not (an amp whose kernel was not solved,
  status other than ``ok``, is left alone and not checked).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from gpuptc.backend import get_backend
from gpuptc.fitting.bf_kernel import clipped_mean
from gpuptc.fitting.bf_metrics import gain_slope
from gpuptc.fitting.bf_sensor import DETECTOR_SEGMENT
from gpuptc.fitting.pair_arrays import pair_grid

__all__ = [
    "CHECK_MODES",
    "DETECTOR_CLIP_SIGMA",
    "MET_REDUCTION",
    "MET_SIGMA",
    "check_met",
    "checked",
    "correction_kernels",
]

log = logging.getLogger(__name__)

CHECK_MODES: tuple[str, ...] = ("detector", "amp")
"""How ``--bf-check`` corrects each amp: the detector's kernel, or the amp's own."""
DETECTOR_CLIP_SIGMA = 5.0
"""The clip of the mean of the amps' kernels that makes a detector kernel (ip_isr's)."""
MET_REDUCTION = 0.8
"""The check is met where the correction removes at least this fraction of the slope ..."""
MET_SIGMA = 2.0
"""... or leaves a slope within this many standard errors of zero."""

Corrections = dict[str, tuple[np.ndarray, float]]
"""By segment: the kernel in the images' orientation (parallel, serial) and the gain."""


def _amp_rows(kernels: pd.DataFrame) -> pd.DataFrame:
    """The amps' rows whose kernel was solved (status ``ok``) with a finite gain."""
    rows = kernels[kernels["segment"] != DETECTOR_SEGMENT]
    solved = (rows["status"] == "ok") & (rows["size"] > 0)
    solved &= np.isfinite(rows["gain"].astype(float))
    return rows[solved & rows["kernel"].map(lambda k: bool(np.isfinite(k).all()))]


def _square(row: pd.Series) -> np.ndarray:
    """A row's kernel as a square, (serial, parallel) as the table indexes it."""
    size = int(row["size"])
    return np.asarray(row["kernel"], float).reshape(size, size)


def _detector_kernel(kernels: pd.DataFrame, amps: pd.DataFrame) -> np.ndarray | None:
    """The detector's kernel, else the clipped mean of the amps' valid kernels."""
    detector = kernels[(kernels["segment"] == DETECTOR_SEGMENT) & (kernels["size"] > 0)]
    if len(detector):
        return _square(detector.iloc[0])
    valid = amps[amps["valid"].astype(bool)]
    if valid.empty:
        return None
    stack = np.stack([_square(row) for _, row in valid.iterrows()])
    kept = np.ones(len(stack), bool)
    return np.asarray(clipped_mean(stack, kept, DETECTOR_CLIP_SIGMA, get_backend("numpy")))


def correction_kernels(kernels: pd.DataFrame, mode: str = "detector") -> Corrections:
    """The kernel and gain each amp of one sensor is corrected by in the check.

    Parameters
    ----------
    kernels : pandas.DataFrame
        One sensor's ``bf_kernel`` rows (:func:`gpuptc.fitting.bf_sensor.sensor_bf_kernels`).
    mode : str
        One of :data:`CHECK_MODES`.

    Returns
    -------
    dict
        By segment, the kernel transposed to the images' axes (parallel, serial) and the
        amp's gain; empty where nothing can correct (no valid kernel for ``detector``).

    Examples
    --------
    >>> table = pd.DataFrame({"segment": ["C10"], "status": ["ok"], "size": [3],
    ...                       "gain": [1.5], "valid": [True], "kernel": [np.arange(9.0)]})
    >>> chosen = correction_kernels(table, "amp")
    >>> chosen["C10"][0][0].tolist(), chosen["C10"][1]
    ([0.0, 3.0, 6.0], 1.5)
    """
    if mode not in CHECK_MODES:
        raise ValueError(f"unknown brighter-fatter check {mode!r}: one of {CHECK_MODES}")
    amps = _amp_rows(kernels)
    if mode == "amp":
        return {row["segment"]: (_square(row).T, float(row["gain"])) for _, row in amps.iterrows()}
    kernel = _detector_kernel(kernels, amps)
    if kernel is None:
        return {}
    return {row["segment"]: (kernel.T, float(row["gain"])) for _, row in amps.iterrows()}


def checked(
    kernels: pd.DataFrame,
    before: pd.DataFrame,
    after: pd.DataFrame,
    corrections: Corrections,
    mode: str,
) -> pd.DataFrame:
    """The kernels' rows with the check filled in for every amp.

    Parameters
    ----------
    kernels : pandas.DataFrame
        One sensor's ``bf_kernel`` rows.
    before : pandas.DataFrame
        Its pairs as the run fitted them (``used`` filled by the PTC).
    after : pandas.DataFrame
        The same pairs measured again on the corrected flats (empty: none was corrected).
    corrections : dict
        What corrected each amp (:func:`correction_kernels`).
    mode : str
        The check's mode.

    Returns
    -------
    pandas.DataFrame
        ``kernels`` with ``check_kernel`` (``mode`` on the corrected amps, ``none`` on the
        others), ``gain_slope_corrected`` and its error (over the pairs the PTC kept, their
        gains measured again; NaN where not corrected).
    """
    table = kernels.copy()
    slopes = _slopes(before, after) if len(after) else {}
    for index, row in table.iterrows():
        if row["segment"] == DETECTOR_SEGMENT:
            continue
        corrected = row["segment"] in corrections
        fitted = slopes.get(int(row["amp"]), {}) if corrected else {}
        table.loc[index, "check_kernel"] = mode if corrected else "none"
        table.loc[index, "gain_slope_corrected"] = fitted.get("gain_slope", math.nan)
        table.loc[index, "gain_slope_corrected_err"] = fitted.get("gain_slope_err", math.nan)
    return table


def _slopes(before: pd.DataFrame, after: pd.DataFrame) -> dict[int, dict[str, float]]:
    """By amp, the per-pair gain's slope of ``after`` over the pairs ``before`` kept."""
    order = np.sort(before["pair"].unique())
    amps = np.sort(before["amp"].unique())
    used = before.assign(used=before["used"].fillna(False).astype(bool))
    kept = pair_grid(used, "used", amps, order, False).astype(bool)
    mean = pair_grid(after, "mean", amps, order, np.nan)
    gains = pair_grid(after, "rhl_gain", amps, order, np.nan)
    return {int(amp): gain_slope(mean[k], kept[k], gains[k]) for k, amp in enumerate(amps)}


def check_met(kernels: pd.DataFrame) -> pd.Series:
    """Per row: the correction removed :data:`MET_REDUCTION` of the slope, or left none.

    None left: within :data:`MET_SIGMA` standard errors of zero; ``<NA>`` where the amp
    was not corrected or its slope not measured.

    Examples
    --------
    >>> table = pd.DataFrame({"check_kernel": ["amp", "amp", "none"],
    ...     "gain_slope": [1e-6, 1e-6, 1e-6], "gain_slope_corrected": [5e-7, 1e-7, 1e-7],
    ...     "gain_slope_corrected_err": [1e-8, 1e-8, 1e-8]})
    >>> check_met(table).tolist()
    [False, True, <NA>]
    """
    reduction = 1.0 - kernels["gain_slope_corrected"] / kernels["gain_slope"]
    pull = kernels["gain_slope_corrected"] / kernels["gain_slope_corrected_err"]
    met = (reduction >= MET_REDUCTION) | (pull.abs() <= MET_SIGMA)
    checked = kernels["check_kernel"].isin(CHECK_MODES)
    return met.astype("boolean").where(checked & kernels["gain_slope_corrected"].notna(), pd.NA)

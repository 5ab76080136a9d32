"""The straight lines of a linearity solve, for every amp of a sensor at once.

Two steps of cp_pipe's ``LinearitySolveTask``, written against the array API and batched
over amps (each amp a row; NumPy or CuPy):

- :func:`linearity_turnoffs`: where each amp's signal leaves a line through the origin
  (the linearity turnoff and maximum signal);
- :func:`irls_polynomials`: polynomials fitted by iteratively reweighted least squares with
  Cauchy weights.

:func:`linearity_turnoff` and :func:`irls_polynomial` are one amp's, on NumPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from gpuptc.backend import to_host
from gpuptc.fitting._batched import device_of, nanmedian, weighted_lstsq

__all__ = [
    "CAUCHY_SCALE",
    "IRLS_ROUNDS",
    "LinearityTurnoff",
    "default_namespace",
    "irls_polynomial",
    "irls_polynomials",
    "linearity_turnoff",
    "linearity_turnoffs",
]

IRLS_ROUNDS = 10
"""Reweighting rounds of the iteratively reweighted least squares (cp_pipe's)."""
CAUCHY_SCALE = 2.385
"""The Cauchy weight's scale: ``w = 1 / (1 + (r / 2.385)^2)`` of residuals ``r`` in units
of sqrt(signal) (95 % efficiency for normal residuals)."""
FAINTEST = 10
"""Pairs of a group that set its first line when none of its pairs is fitted."""


def default_namespace() -> ModuleType:
    """NumPy as an array-API namespace (array-api-compat's)."""
    from array_api_compat import numpy as xp

    return xp


def irls_polynomials(
    x: Any,
    y: Any,
    mask: Any,
    degree: int,
    xp: ModuleType,
    rounds: int = IRLS_ROUNDS,
    *,
    scale_residuals: bool = True,
) -> tuple[Any, Any, Any]:
    """A polynomial per row fitted by iteratively reweighted least squares, Cauchy weights.

    Each round weighs every point of the row's ``mask`` by ``1 / (1 + (r / 2.385)^2)``,
    ``r`` its residual from the previous round's fit in units of ``sqrt(|y|)``, and fits
    afresh.

    Parameters
    ----------
    x, y : array
        (rows, points); points outside ``mask`` may be NaN.
    mask : array
        (rows, points) bool: the points fitted.
    degree : int
        The polynomial's degree.
    xp : module
        The array library.
    rounds : int
        Reweighting rounds after the first, unweighted fit.
    scale_residuals : bool
        Residuals in units of ``sqrt(|y|)`` (else as they are).

    Returns
    -------
    coefficients : array
        (rows, degree + 1), increasing powers.
    errors : array
        Their standard errors, the covariance scaled by the weighted reduced chi^2 (NaN
        with no degree of freedom).
    reduced_chi2 : array
        (rows,) of the last weighted fit.
    """
    weights = xp.astype(mask, xp.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # points outside the mask
        fit = _weighted_polynomials(x, y, weights, degree, xp)
        for _ in range(rounds):
            residuals = xp.abs(y - polyvals(x, fit[0], xp))
            if scale_residuals:
                residuals = residuals / xp.sqrt(xp.abs(y))
            cauchy = 1.0 / (1.0 + (residuals / CAUCHY_SCALE) ** 2)
            weights = xp.where(mask, cauchy, 0.0)
            fit = _weighted_polynomials(x, y, weights, degree, xp)
    return fit


def polyvals(x: Any, coefficients: Any, xp: ModuleType) -> Any:
    """Each row's polynomial (increasing powers) at that row's ``x``."""
    total = xp.zeros_like(x)
    for k in range(coefficients.shape[1] - 1, -1, -1):
        total = total * x + coefficients[:, k : k + 1]
    return total


def _weighted_polynomials(
    x: Any, y: Any, weights: Any, degree: int, xp: ModuleType
) -> tuple[Any, Any, Any]:
    """Least squares of ``weights * (polynomial(x) - y)`` per row, x scaled to order one."""
    counted = weights > 0
    scale = xp.max(xp.where(counted, xp.abs(x), 0.0), axis=1)
    scale = xp.where(scale > 0, scale, 1.0)
    scaled = xp.where(counted, x, 0.0) / scale[:, None]
    design = xp.stack([scaled**k for k in range(degree + 1)], axis=-1)
    solution, inverse = weighted_lstsq(design, xp.where(counted, y, 0.0), weights, xp)
    exponents = xp.arange(degree + 1, dtype=xp.float64, device=device_of(scale))
    powers = scale[:, None] ** exponents[None, :]
    coefficients = solution / powers
    residuals = xp.where(counted, (polyvals(x, coefficients, xp) - y) * weights, 0.0)
    dof = xp.sum(xp.astype(counted, xp.float64), axis=1) - (degree + 1)
    chi2 = xp.where(dof > 0, xp.sum(residuals**2, axis=1) / xp.where(dof > 0, dof, 1.0), math.nan)
    variances = xp.abs(xp.linalg.diagonal(inverse)) * chi2[:, None]
    return coefficients, xp.sqrt(variances) / powers, chi2


def irls_polynomial(
    x: np.ndarray, y: np.ndarray, degree: int, rounds: int = IRLS_ROUNDS
) -> tuple[np.ndarray, np.ndarray, float]:
    """One polynomial fitted by iteratively reweighted least squares, on NumPy.

    See :func:`irls_polynomials`.

    Examples
    --------
    >>> x = np.arange(1.0, 11.0)
    >>> y = 1000.0 + 200.0 * x
    >>> y[4] += 2000  # an outlier the weights push away
    >>> coefficients, _, _ = irls_polynomial(x, y, 1)
    >>> np.round(coefficients, 1).tolist()
    [1000.0, 200.0]
    """
    xp = default_namespace()
    rows = np.asarray(x, float)[None, :], np.asarray(y, float)[None, :]
    coefficients, errors, chi2 = irls_polynomials(
        *rows, np.ones_like(rows[0], bool), degree, xp, rounds
    )
    return coefficients[0], errors[0], float(chi2[0])


@dataclass(frozen=True)
class LinearityTurnoff:
    """Where an amp's signal leaves the straight line.

    Attributes
    ----------
    index : int
        The pair at the turnoff (-1 when none could be found).
    turnoff : float
        The highest signal (ADU) within ``max_fraction`` of the line.
    max_signal : float
        The signal the amp saturates at: the median of the signals within ``max_fraction``
        of the highest one (the turnoff's own signal when no pair lies beyond it).
    found : bool
        Whether more than four pairs lay within ``max_fraction`` of the line.
    """

    index: int
    turnoff: float
    max_signal: float
    found: bool


def linearity_turnoffs(
    x: Any,
    y: Any,
    mask: Any,
    groups: np.ndarray | None,
    min_signal: float,
    max_fraction: float,
    xp: ModuleType,
) -> list[LinearityTurnoff]:
    """The linearity turnoff and maximum signal of every row (cp_pipe's rule).

    Per group of pairs (one illumination each), a line through the origin is fitted to
    the masked pairs above ``min_signal`` with the signal as variance; every pair's
    fractional residual, less their median, is compared with ``max_fraction``. While four
    pairs or fewer lie within it, the fitted pair farthest from its line is dropped and
    the lines refitted.

    Parameters
    ----------
    x, y : array
        (rows, pairs) exposure time or photodiode charge, and mean signal (ADU).
    mask : array
        (rows, pairs): the pairs that may be fitted (the PTC's selection).
    groups : numpy.ndarray, optional
        A group index per pair (default one group).
    min_signal : float
        Pairs below it are not fitted (cp_pipe's ``minSignalFitLinearityTurnoff``).
    max_fraction : float
        cp_pipe's ``maxFracLinearityDeviation``.
    xp : module
        The array library.

    Returns
    -------
    list of LinearityTurnoff
        One per row.
    """
    pairs = y.shape[1]
    members = _group_members(groups, pairs, xp, device_of(y))
    with np.errstate(invalid="ignore"):
        fitted = mask & xp.isfinite(x) & xp.isfinite(y) & (y >= min_signal)
    running = _count(fitted, xp) >= 4
    turnoff = xp.full(running.shape, math.nan, dtype=xp.float64, device=device_of(y))
    found = xp.zeros_like(running)
    first = True
    while bool(xp.any(running)):
        residual = _fractional_residuals(x, y, fitted, members, first, xp)
        first = False
        good = xp.abs(residual) < max_fraction
        success = running & (_count(good, xp) > 4)
        highest = xp.max(xp.where(good, y, -math.inf), axis=1)
        turnoff = xp.where(success, highest, turnoff)
        found = found | success
        running = running & ~success
        farthest = xp.argmax(xp.where(fitted, xp.abs(residual), -math.inf), axis=1)
        index = xp.arange(pairs, device=device_of(y))
        dropped = running[:, None] & (index[None, :] == farthest[:, None])
        fitted = fitted & ~dropped
        running = running & (_count(fitted, xp) >= 4)
    leftover = xp.max(xp.where(fitted, y, -math.inf), axis=1)
    leftover = xp.where(xp.any(fitted, axis=1), leftover, math.nan)
    turnoff = xp.where(found, turnoff, leftover)
    return _with_max_signals(y, turnoff, found, max_fraction, xp)


def _count(flags: Any, xp: ModuleType) -> Any:
    return xp.sum(xp.astype(flags, xp.int64), axis=1)


def _group_members(groups: np.ndarray | None, pairs: int, xp: ModuleType, device: Any) -> list[Any]:
    """Each group's pairs as a (pairs,) bool array, groups in numpy.unique's order."""
    labels = np.zeros(pairs, int) if groups is None else np.asarray(groups)
    return [xp.asarray(labels == label, device=device) for label in np.unique(labels)]


def _fractional_residuals(
    x: Any, y: Any, fitted: Any, members: list[Any], first: bool, xp: ModuleType
) -> Any:
    """Each pair's ``(y - a_g x) / y`` from its group's line through the origin, per row.

    Less the row's median over all pairs. A group without fitted pairs takes its faintest
    pairs the first time, and has no line after.
    """
    slope = xp.full(y.shape, math.nan, dtype=xp.float64, device=device_of(y))
    for mine in members:
        chosen = fitted & mine[None, :]
        if first:
            faintest = mine & (xp.cumulative_sum(xp.astype(mine, xp.int64)) <= FAINTEST)
            none = ~xp.any(chosen, axis=1)
            chosen = xp.where(none[:, None], faintest[None, :], chosen)
        with np.errstate(invalid="ignore", divide="ignore"):
            numerator = xp.sum(xp.where(chosen, x, 0.0), axis=1)
            denominator = xp.sum(xp.where(chosen, x * x / y, 0.0), axis=1)
            line = xp.where(xp.any(chosen, axis=1), numerator / denominator, math.nan)
        slope = xp.where(mine[None, :], line[:, None], slope)
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = (y - slope * x) / y
    return residual - nanmedian(residual, xp)[:, None]


def _with_max_signals(
    y: Any, turnoff: Any, found: Any, max_fraction: float, xp: ModuleType
) -> list[LinearityTurnoff]:
    """Each row's turnoff with its pair and maximum signal, on the host."""
    known = xp.isfinite(turnoff)
    at = xp.abs(y - turnoff[:, None]) <= 1e-8 + 1e-5 * xp.abs(turnoff[:, None])  # isclose
    index = xp.argmax(xp.astype(at, xp.int64), axis=1)
    top = xp.max(xp.where(xp.isnan(y), -math.inf, y), axis=1)
    near_top = xp.where(xp.isnan(y), 0.0, y) > (1 - max_fraction) * top[:, None]
    saturated = nanmedian(xp.where(near_top, y, math.nan), xp)
    last = index == y.shape[1] - 1  # nothing beyond it: the amp never saturated
    max_signal = xp.where(last, turnoff, saturated)
    host = [np.asarray(to_host(a)) for a in (index, turnoff, max_signal, found, known)]
    return [
        LinearityTurnoff(int(i), float(t), float(m), bool(f))
        if k
        else LinearityTurnoff(-1, math.nan, math.nan, found=False)
        for i, t, m, f, k in zip(*host, strict=True)
    ]


def linearity_turnoff(
    abscissa: np.ndarray,
    ordinate: np.ndarray,
    mask: np.ndarray,
    groups: np.ndarray | None = None,
    min_signal: float = 1000.0,
    max_fraction: float = 0.01,
) -> LinearityTurnoff:
    """The linearity turnoff and maximum signal of one amp (see :func:`linearity_turnoffs`).

    Examples
    --------
    >>> times = np.arange(1.0, 11.0)
    >>> signal = 10_000.0 * times * np.where(times > 8, 0.9, 1.0)  # the last two fall
    >>> found = linearity_turnoff(times, signal, np.ones(10, bool))
    >>> found.turnoff, found.found
    (80000.0, True)
    """
    xp = default_namespace()
    x, y = (xp.asarray(np.asarray(a, float)[None, :]) for a in (abscissa, ordinate))
    rows = xp.asarray(np.asarray(mask, bool)[None, :])
    (found,) = linearity_turnoffs(x, y, rows, groups, min_signal, max_fraction, xp)
    return found

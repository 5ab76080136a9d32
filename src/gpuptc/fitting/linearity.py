"""Each amplifier's non-linearity from its flat pairs, as Rubin's calibration pipeline solves it.

The ordinate is each pair's mean signal (ADU), the abscissa its exposure time or photodiode
charge. The steps are cp_pipe's ``LinearitySolveTask``:

1. the linearity turnoff and maximum signal (:func:`linearity_turnoff`): a line through
   the origin fitted with the signal as variance, the points beyond ``max_fraction`` of it
   (after its median fractional residual is taken out) removed one by one, largest first;
2. an iteratively reweighted straight line (:func:`irls_polynomial`: Cauchy weights of the
   residuals in units of sqrt(signal), ten rounds, each refitted from the start) between
   ``min_adu`` and ``max_adu``, the points beyond ``n_sigma`` x sqrt(signal) of it dropped;
3. the signal as a polynomial in that line's value, ``mu = k0 + k1 L + k2 L^2 + ...``, and
   the linearizer's coefficients ``c_j = -k_j / k1^j`` (j >= 2; arXiv:2003.05978 eq. 37):
   ``Polynomial`` keeps them all, ``Squared`` the first, ``LookupTable`` tabulates the
   correction;
4. the residuals: the linearized signal less a line through the origin (fitted again).

:func:`apply_linearizer` corrects values as Rubin's ISR does (``Polynomial``, ``Squared``
and ``LookupTable`` add their correction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gpuptc.config import LINEARITY_TYPES

__all__ = [
    "CAUCHY_SCALE",
    "EO_PIPE_FIT_RANGE",
    "EO_PIPE_MAX_FRAC_DEV",
    "IRLS_ROUNDS",
    "LINEARITY_TYPES",
    "AmpLinearity",
    "LinearityTurnoff",
    "apply_linearizer",
    "eo_pipe_linearity",
    "irls_polynomial",
    "linearity_turnoff",
    "lookup_table",
    "solve_amp",
]


IRLS_ROUNDS = 10
"""Reweighting rounds of the iteratively reweighted least squares (cp_pipe's)."""
CAUCHY_SCALE = 2.385
"""The Cauchy weight's scale: ``w = 1 / (1 + (r / 2.385)^2)`` of residuals ``r`` in units
of sqrt(signal) (95 % efficiency for normal residuals)."""


def irls_polynomial(
    x: np.ndarray, y: np.ndarray, degree: int, rounds: int = IRLS_ROUNDS
) -> tuple[np.ndarray, np.ndarray, float]:
    """A polynomial fitted by iteratively reweighted least squares with Cauchy weights.

    Each round weighs every point by ``1 / (1 + (r / 2.385)^2)``, ``r`` its residual from
    the previous round's fit in units of ``sqrt(|y|)``, and fits afresh.

    Parameters
    ----------
    x, y : numpy.ndarray
        The points (no NaN).
    degree : int
        The polynomial's degree.
    rounds : int
        Reweighting rounds after the first, unweighted fit.

    Returns
    -------
    coefficients : numpy.ndarray
        Increasing powers, ``degree + 1`` of them.
    errors : numpy.ndarray
        Their standard errors, the covariance scaled by the weighted reduced chi^2 (NaN
        with no degree of freedom).
    reduced_chi2 : float
        Of the last weighted fit.

    Examples
    --------
    >>> x = np.arange(1.0, 11.0)
    >>> y = 1000.0 + 200.0 * x
    >>> y[4] += 2000  # an outlier the weights push away
    >>> coefficients, _, _ = irls_polynomial(x, y, 1)
    >>> np.round(coefficients, 1).tolist()
    [1000.0, 200.0]
    """
    weights = np.ones_like(y)
    coefficients, errors, chi2 = _weighted_polynomial(x, y, weights, degree)
    for _ in range(rounds):
        residuals = np.abs(y - np.polynomial.polynomial.polyval(x, coefficients))
        weights = 1.0 / (1.0 + (residuals / np.sqrt(np.abs(y)) / CAUCHY_SCALE) ** 2)
        coefficients, errors, chi2 = _weighted_polynomial(x, y, weights, degree)
    return coefficients, errors, chi2


def _weighted_polynomial(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, degree: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares of ``weights * (polynomial(x) - y)``, on x scaled to order one."""
    scale = float(np.max(np.abs(x))) or 1.0
    design = np.vander(x / scale, degree + 1, increasing=True) * weights[:, None]
    solution, *_ = np.linalg.lstsq(design, y * weights, rcond=None)
    powers = scale ** np.arange(degree + 1)
    coefficients = solution / powers
    residuals = (np.polynomial.polynomial.polyval(x, coefficients) - y) * weights
    dof = len(x) - (degree + 1)
    if dof <= 0:
        return coefficients, np.full(degree + 1, math.nan), math.nan
    chi2 = float(np.sum(residuals**2) / dof)
    covariance = np.linalg.pinv(design.T @ design) * chi2
    return coefficients, np.sqrt(np.abs(np.diag(covariance))) / powers, chi2


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


def linearity_turnoff(
    abscissa: np.ndarray,
    ordinate: np.ndarray,
    mask: np.ndarray,
    groups: np.ndarray | None = None,
    min_signal: float = 1000.0,
    max_fraction: float = 0.01,
) -> LinearityTurnoff:
    """The linearity turnoff and maximum signal of one amp (cp_pipe's rule).

    Per group of pairs (one illumination each), a line through the origin is fitted to
    the masked pairs above ``min_signal`` with the signal as variance; every pair's
    fractional residual, less their median, is compared with ``max_fraction``. While four
    pairs or fewer lie within it, the fitted pair farthest from its line is dropped and
    the lines refitted.

    Parameters
    ----------
    abscissa, ordinate : numpy.ndarray
        Exposure time or photodiode charge, and mean signal (ADU), per pair.
    mask : numpy.ndarray
        The pairs that may be fitted (the PTC's selection).
    groups : numpy.ndarray, optional
        A group index per pair (default one group).
    min_signal : float
        Pairs below it are not fitted (cp_pipe's ``minSignalFitLinearityTurnoff``).
    max_fraction : float
        cp_pipe's ``maxFracLinearityDeviation``.

    Returns
    -------
    LinearityTurnoff
    """
    x, y = np.asarray(abscissa, float), np.asarray(ordinate, float)
    groups = np.zeros(len(y), int) if groups is None else np.asarray(groups)
    fitted = np.asarray(mask, bool) & np.isfinite(x) & np.isfinite(y) & (y >= min_signal)
    first = True
    while fitted.sum() >= 4:
        residual = _fractional_residuals(x, y, fitted, groups, first)
        first = False
        good = np.abs(residual) < max_fraction
        if good.sum() > 4:
            turnoff = float(np.max(y[good]))
            return _with_max_signal(y, turnoff, max_fraction, found=True)
        fitted[np.flatnonzero(fitted)[np.argmax(np.abs(residual[fitted]))]] = False
    if not fitted.any():
        return LinearityTurnoff(-1, math.nan, math.nan, found=False)
    return _with_max_signal(y, float(np.max(y[fitted])), max_fraction, found=False)


def _fractional_residuals(
    x: np.ndarray, y: np.ndarray, fitted: np.ndarray, groups: np.ndarray, first: bool
) -> np.ndarray:
    """Each pair's ``(y - a_g x) / y`` from its group's line through the origin.

    Less the median over all pairs.
    """
    slope = np.full(len(y), math.nan)
    for group in np.unique(groups):
        mine = groups == group
        chosen = mine & fitted
        if not chosen.any():
            if not first:
                continue
            chosen = np.zeros_like(mine)
            chosen[np.flatnonzero(mine)[:10]] = True  # the group's faintest pairs, once
        with np.errstate(invalid="ignore", divide="ignore"):
            slope[mine] = np.sum(x[chosen]) / np.sum(x[chosen] ** 2 / y[chosen])
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = (y - slope * x) / y
    return residual - np.nanmedian(residual)


def _with_max_signal(
    y: np.ndarray, turnoff: float, max_fraction: float, found: bool
) -> LinearityTurnoff:
    index = int(np.flatnonzero(np.isclose(y, turnoff))[0])
    if index == len(y) - 1:  # nothing beyond it: the amp never saturated
        return LinearityTurnoff(index, turnoff, turnoff, found)
    top = np.nanmax(y)
    return LinearityTurnoff(
        index, turnoff, float(np.median(y[np.nan_to_num(y) > (1 - max_fraction) * top])), found
    )


def lookup_table(k: np.ndarray, length: int) -> np.ndarray:
    """The correction table of a polynomial ``mu = k0 + k1 L + ...``: ideal less measured.

    Its entries are at ``length`` values of the ideal signal from 0 to where the measured
    one reaches ``length`` ADU (cp_pipe's table; the ISR indexes it by the measured value).
    """
    top = (length - k[0]) / k[1]
    ideal = np.linspace(0.0, top, length)
    return (k[0] + k[1] * ideal) - np.polynomial.polynomial.polyval(ideal, k)


def apply_linearizer(
    kind: str, coefficients: np.ndarray, values: np.ndarray, table: np.ndarray | None = None
) -> np.ndarray:
    """Values corrected by a linearizer, as Rubin's ISR applies it.

    Parameters
    ----------
    kind : str
        ``Polynomial`` (``v + sum_i c_i v^(i+2)``), ``Squared`` (``v + c_0 v^2``),
        ``LookupTable`` (``v + table[row, int(offset + v)]``, ``coefficients`` = row, offset;
        indices clamped to the table) or ``None`` (unchanged).
    coefficients : numpy.ndarray
        The linearizer's coefficients for the amp.
    values : numpy.ndarray
        Signals (ADU).
    table : numpy.ndarray, optional
        The lookup tables (rows), for ``LookupTable``.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> apply_linearizer("Squared", np.array([1e-5]), np.array([1000.0, 20000.0])).tolist()
    [1010.0, 24000.0]
    """
    values = np.asarray(values, float)
    if kind == "Polynomial":
        corrected = values.copy()
        for power, coefficient in enumerate(coefficients, start=2):
            corrected += coefficient * values**power
        return corrected
    if kind == "Squared":
        return values * (1.0 + coefficients[0] * values)
    if kind == "LookupTable":
        row, offset = int(coefficients[0]), coefficients[1]
        columns = np.clip(np.trunc(offset + values).astype(np.int64), 0, table.shape[1] - 1)
        return values + table[row, columns]
    if kind == "None":
        return values.copy()
    raise ValueError(f"unknown linearizer type {kind!r}")


@dataclass
class AmpLinearity:
    """One amp's linearity solution (Rubin's ``Linearizer`` fields for an amp).

    Attributes
    ----------
    kind : str
        Its type (``None`` when it could not be solved).
    coefficients : numpy.ndarray
        The linearizer's coefficients (a lookup table's: row and offset).
    fit_params, fit_params_err : numpy.ndarray
        The polynomial ``k`` of the signal in the line's value, with errors.
    reduced_chi2 : float
        Of that polynomial fit.
    linear_fit : numpy.ndarray
        The straight line (intercept, slope) of signal on abscissa.
    turnoff : LinearityTurnoff
        Where the signal leaves the line.
    mask : numpy.ndarray
        The pairs the fits took.
    residuals : numpy.ndarray
        The linearized signal less the slope of a line refitted to it, per pair (NaN
        where not fitted).
    residuals_unmasked : numpy.ndarray
        The same at every pair (cp_pipe's ``fitResidualsUnmasked``).
    status : str
        ``ok`` or why not solved: ``no_ptc_pairs`` (the PTC kept none of its pairs),
        ``no_turnoff``, ``too_few_points``.
    table : numpy.ndarray or None
        A lookup table's row.
    """

    kind: str
    coefficients: np.ndarray
    fit_params: np.ndarray
    fit_params_err: np.ndarray
    reduced_chi2: float
    linear_fit: np.ndarray
    turnoff: LinearityTurnoff
    mask: np.ndarray
    residuals: np.ndarray
    residuals_unmasked: np.ndarray
    status: str = "ok"
    table: np.ndarray | None = field(default=None, repr=False)


def _unsolved(status: str, n: int, turnoff: LinearityTurnoff) -> AmpLinearity:
    empty = np.zeros(0)
    return AmpLinearity(
        "None",
        empty,
        empty,
        empty,
        math.nan,
        np.zeros(2),
        turnoff,
        np.zeros(n, bool),
        np.full(n, math.nan),
        np.full(n, math.nan),
        status,
    )


def solve_amp(
    abscissa: np.ndarray,
    ordinate: np.ndarray,
    ptc_mask: np.ndarray,
    kind: str = "Squared",
    order: int = 3,
    min_adu: float = 30.0,
    max_adu: float = 20000.0,
    n_sigma: float = 5.0,
    max_fraction: float = 0.01,
    min_signal_turnoff: float = 1000.0,
    table_length: int = 2**18,
    valid: np.ndarray | None = None,
) -> AmpLinearity:
    """One amp's linearizer from its pairs (cp_pipe's ``LinearitySolveTask`` for one amp).

    Parameters
    ----------
    abscissa, ordinate : numpy.ndarray
        Exposure time or photodiode charge, and mean signal (ADU), per pair.
    ptc_mask : numpy.ndarray
        The PTC's selection (used for the turnoff only, as cp_pipe does).
    kind : str
        One of :data:`LINEARITY_TYPES`.
    order : int
        The polynomial's order (``Polynomial``; the others fit it too).
    min_adu, max_adu : float
        The signal range of the fits (cp_pipe's ``minLinearAdu``, ``maxLinearAdu``).
    n_sigma : float
        Points beyond ``n_sigma`` x sqrt(signal) of the line are dropped once.
    max_fraction, min_signal_turnoff : float
        See :func:`linearity_turnoff`.
    table_length : int
        A lookup table's entries (cp_pipe's ``maxLookupTableAdu``).
    valid : numpy.ndarray, optional
        Pairs that may be fitted at all (cp_pipe masks those below its minimum
        photodiode current); default every pair with finite values.

    Returns
    -------
    AmpLinearity
    """
    if kind not in LINEARITY_TYPES:
        raise ValueError(f"linearity type {kind!r} not in {', '.join(LINEARITY_TYPES)}")
    x, y = np.asarray(abscissa, float), np.asarray(ordinate, float)
    finite = np.isfinite(x) & np.isfinite(y)
    if valid is not None:
        finite &= np.asarray(valid, bool)
    if not np.asarray(ptc_mask, bool).any():  # cp_pipe: a bad amp of the PTC
        return _unsolved("no_ptc_pairs", len(y), LinearityTurnoff(-1, math.nan, math.nan, False))
    turnoff = linearity_turnoff(
        x, y, np.asarray(ptc_mask, bool) & finite, None, min_signal_turnoff, max_fraction
    )
    if not math.isfinite(turnoff.turnoff):
        return _unsolved("no_turnoff", len(y), turnoff)
    mask = finite & (y < max_adu) & (y > min_adu)
    if mask.sum() < 2:
        return _unsolved("too_few_points", len(y), turnoff)
    linear, _, _ = irls_polynomial(x[mask], y[mask], 1)
    line = np.polynomial.polynomial.polyval(x, linear)
    with np.errstate(invalid="ignore"):
        mask &= np.abs(y - line) < n_sigma * np.sqrt(np.abs(y))
    if mask.sum() < order + 2:
        return _unsolved("too_few_points", len(y), turnoff)
    k, k_err, chi2 = irls_polynomial(line[mask], y[mask], order)
    signs = -k / k[1] ** np.arange(order + 1)
    coefficients = {"Polynomial": signs[2:], "Squared": signs[2:3]}.get(kind, np.array([0.0, 0.0]))
    table = lookup_table(k, table_length) if kind == "LookupTable" else None
    corrected = apply_linearizer(kind, coefficients, y, None if table is None else table[None, :])
    unmasked = _residuals(x, corrected, mask)
    residuals = np.where(mask, unmasked, math.nan)
    return AmpLinearity(
        kind, coefficients, k, k_err, chi2, linear, turnoff, mask, residuals, unmasked, table=table
    )


def _residuals(x: np.ndarray, corrected: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The linearized signal less the slope of a line refitted to the fitted pairs.

    At every pair; the line's intercept is left in, as cp_pipe does.
    """
    line, _, _ = irls_polynomial(x[mask], corrected[mask], 1)
    return corrected - line[1] * x


EO_PIPE_FIT_RANGE = (1e3, 9e4)
"""eo_pipe's signal range (electrons) of its straight line through the origin."""
EO_PIPE_MAX_FRAC_DEV = 0.05
"""eo_pipe's linearity turnoff: the highest signal within 5 % of that line."""


def eo_pipe_linearity(flux: np.ndarray, electrons: np.ndarray) -> tuple[float, float]:
    """eo_pipe's maximum fractional deviation and linearity turnoff (electrons) of one amp.

    A line through the origin, the signal as its variance, over the pairs within
    :data:`EO_PIPE_FIT_RANGE` up to the brightest pair's flux (leaving out bright-flux
    pairs whose signal collapsed); the deviation is the largest fractional residual of
    those pairs, the turnoff the highest signal of any pair within 5 % of the line (0
    when none).

    Parameters
    ----------
    flux : numpy.ndarray
        Photodiode charge or exposure time per pair.
    electrons : numpy.ndarray
        Mean signal x gain per pair.

    Returns
    -------
    max_frac_dev, turnoff : float

    Examples
    --------
    >>> flux = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    >>> electrons = 5000.0 * flux * np.array([1.0, 1.0, 1.0, 1.0, 0.97])
    >>> [round(v, 4) for v in eo_pipe_linearity(flux, electrons)]
    [0.0157, 77600.0]
    """
    flux, electrons = np.asarray(flux, float), np.asarray(electrons, float)
    finite = np.isfinite(flux) & np.isfinite(electrons)
    if not finite.any():
        return math.nan, math.nan
    top = int(np.flatnonzero(electrons == np.nanmax(electrons))[0])
    low, high = EO_PIPE_FIT_RANGE
    with np.errstate(invalid="ignore"):
        chosen = (
            finite
            & (electrons > low)
            & (electrons < high)
            & (flux <= flux[top])
            & (flux > 0)
            & ~((flux > 0.9 * flux[top]) & (electrons < 0.1 * electrons[top]))
        )
    if not chosen.any():
        return math.nan, math.nan
    slope = np.sum(flux[chosen]) / np.sum(flux[chosen] ** 2 / electrons[chosen])
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = (electrons - slope * flux) / electrons
    within = finite & (np.abs(residual) < EO_PIPE_MAX_FRAC_DEV)
    turnoff = float(np.max(electrons[within])) if within.any() else 0.0
    return float(np.max(np.abs(residual[chosen]))), turnoff

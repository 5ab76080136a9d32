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

A ``Spline`` replaces steps 2 and 3 with Astier's spline fit up to the linearity turnoff
(:mod:`gpuptc.fitting.linearity_spline`); its residuals are taken against the flux each
group of pairs saw.

:func:`apply_linearizer` corrects values as Rubin's ISR does (``Polynomial``, ``Squared``
and ``LookupTable`` add their correction, ``Spline`` subtracts its own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gpuptc.config import LINEARITY_TYPES, LinearityConfig
from gpuptc.fitting.linearity_spline import fit_spline, spline_nodes
from gpuptc.kernels.linearize import apply_linearizer

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
        The polynomial ``k`` of the signal in the line's value, with errors; a
        ``Spline``'s group slopes and (when fitted) offset, errors zero as cp_pipe's.
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
        ``no_turnoff``, ``too_few_points`` (below two, below the polynomial's terms plus
        one, or below a spline's nodes), ``sparse_nodes`` (a spline's nodes with no pair
        between two of them: fewer knots or more pairs, evenly spaced in signal, pin it),
        ``spline_diverged`` (a correction beyond a quarter of the signal at a node),
        ``no_convergence`` (a spline's last least-squares round did not converge).
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
    config: LinearityConfig | None = None,
    *,
    valid: np.ndarray | None = None,
    ptc_turnoff: float = math.nan,
    groups: np.ndarray | None = None,
) -> AmpLinearity:
    """One amp's linearizer from its pairs (cp_pipe's ``LinearitySolveTask`` for one amp).

    Parameters
    ----------
    abscissa, ordinate : numpy.ndarray
        Exposure time or photodiode charge, and mean signal (ADU), per pair.
    ptc_mask : numpy.ndarray
        The PTC's selection (used for the turnoff only, as cp_pipe does).
    config : LinearityConfig, optional
        The type and the fits' settings (the preset's ``[linearity]`` section; default
        cp_pipe's).
    valid : numpy.ndarray, optional
        Pairs that may be fitted at all (cp_pipe masks those below its minimum
        photodiode current); default every pair with finite values.
    ptc_turnoff : float
        The PTC's turnoff (ADU): a ``Spline`` averages to zero below it (default the
        linearity turnoff).
    groups : numpy.ndarray, optional
        A ``Spline``'s groups of pairs, one linear response each (default one).

    Returns
    -------
    AmpLinearity
    """
    config = config or LinearityConfig()
    x, y = np.asarray(abscissa, float), np.asarray(ordinate, float)
    finite = np.isfinite(x) & np.isfinite(y)
    if valid is not None:
        finite &= np.asarray(valid, bool)
    if not np.asarray(ptc_mask, bool).any():  # cp_pipe: a bad amp of the PTC
        return _unsolved("no_ptc_pairs", len(y), LinearityTurnoff(-1, math.nan, math.nan, False))
    turnoff = linearity_turnoff(
        x,
        y,
        np.asarray(ptc_mask, bool) & finite,
        None,
        config.min_signal_fit_linearity_turnoff,
        config.max_frac_linearity_deviation,
    )
    if not math.isfinite(turnoff.turnoff):
        return _unsolved("no_turnoff", len(y), turnoff)
    if config.linearity_type == "Spline":
        top = ptc_turnoff if math.isfinite(ptc_turnoff) else turnoff.turnoff
        return _solve_spline(x, y, finite, turnoff, config, top, groups)
    return _solve_polynomial(x, y, finite, turnoff, config)


def _solve_polynomial(
    x: np.ndarray,
    y: np.ndarray,
    finite: np.ndarray,
    turnoff: LinearityTurnoff,
    config: LinearityConfig,
) -> AmpLinearity:
    """The straight line, then the polynomial of the signal in its value (not Spline)."""
    kind, order = config.linearity_type, config.polynomial_order
    mask = finite & (y < config.max_linear_adu) & (y > config.min_linear_adu)
    if mask.sum() < 2:
        return _unsolved("too_few_points", len(y), turnoff)
    linear, _, _ = irls_polynomial(x[mask], y[mask], 1)
    line = np.polynomial.polynomial.polyval(x, linear)
    with np.errstate(invalid="ignore"):
        mask &= np.abs(y - line) < config.n_sigma_clip_linear * np.sqrt(np.abs(y))
    if mask.sum() < order + 2:
        return _unsolved("too_few_points", len(y), turnoff)
    k, k_err, chi2 = irls_polynomial(line[mask], y[mask], order)
    signs = -k / k[1] ** np.arange(order + 1)
    coefficients = {"Polynomial": signs[2:], "Squared": signs[2:3]}.get(kind, np.array([0.0, 0.0]))
    table = lookup_table(k, config.max_lookup_table_adu) if kind == "LookupTable" else None
    corrected = apply_linearizer(kind, coefficients, y, None if table is None else table[None, :])
    unmasked = _residuals(x, corrected, mask)
    residuals = np.where(mask, unmasked, math.nan)
    return AmpLinearity(
        kind, coefficients, k, k_err, chi2, linear, turnoff, mask, residuals, unmasked, table=table
    )


def _solve_spline(
    x: np.ndarray,
    y: np.ndarray,
    finite: np.ndarray,
    turnoff: LinearityTurnoff,
    config: LinearityConfig,
    ptc_turnoff: float,
    groups: np.ndarray | None,
) -> AmpLinearity:
    """Astier's spline up to the linearity turnoff; residuals of the flux each group saw."""
    with np.errstate(invalid="ignore"):
        mask = finite & (y <= turnoff.turnoff) & (y > config.min_linear_adu)
    if mask.sum() < config.spline_knots:
        return _unsolved("too_few_points", len(y), turnoff)
    if _empty_intervals(y[mask], config.spline_knots):
        return _unsolved("sparse_nodes", len(y), turnoff)
    fit = fit_spline(
        y,
        x,
        mask,
        groups,
        knots=config.spline_knots,
        max_signal_nearly_linear=ptc_turnoff,
        fit_offset=config.do_spline_fit_offset,
        n_sigma=config.n_sigma_clip_linear,
        min_iter=config.spline_fit_min_iter,
        max_iter=config.spline_fit_max_iter,
        max_rejection=config.spline_fit_max_rejection_per_iteration,
    )
    if not fit.converged:
        return _unsolved("no_convergence", len(y), turnoff)
    if np.any(np.abs(fit.values[1:]) > MAX_SPLINE_CORRECTION * fit.nodes[1:]):
        return _unsolved("spline_diverged", len(y), turnoff)
    coefficients = np.concatenate([fit.nodes, fit.values])
    params = np.concatenate([fit.slopes, [fit.offset] if config.do_spline_fit_offset else []])
    flux = x * fit.slopes[fit.group] / np.mean(fit.slopes)
    corrected = apply_linearizer("Spline", coefficients, y - fit.offset)
    unmasked = _residuals(flux, corrected, fit.mask)
    residuals = np.where(fit.mask, unmasked, math.nan)
    linear = np.array([0.0, float(np.mean(fit.slopes))])
    return AmpLinearity(
        "Spline",
        coefficients,
        params,
        np.zeros_like(params),
        fit.reduced_chi2,
        linear,
        turnoff,
        fit.mask,
        residuals,
        unmasked,
    )


MAX_SPLINE_CORRECTION = 0.25
"""A spline whose correction at a node exceeds this fraction of the node's signal is
refused (``spline_diverged``): the pairs could not pin it there."""


def _empty_intervals(signal: np.ndarray, knots: int) -> bool:
    """Whether a spline's evenly spaced nodes leave two neighbours without a pair between.

    The nodes are placed as the fit places them (:func:`spline_nodes`).
    """
    nodes = spline_nodes(signal, knots)
    counts = np.bincount(np.searchsorted(nodes, signal, side="right") - 1, minlength=knots - 1)
    return bool((counts[: knots - 1] == 0).any())


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

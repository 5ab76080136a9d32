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

:func:`solve_amps` solves every amp of a sensor at once: the lines, polynomials and
splines are fitted for all amps together on the run's array library (NumPy, CuPy;
:mod:`gpuptc.fitting.linearity_line`), each amp with its own masks and status; only the
linearizer of each amp is put together on the host. :func:`solve_amp` is one amp's.

:func:`apply_linearizer` corrects values as Rubin's ISR does (``Polynomial``, ``Squared``
and ``LookupTable`` add their correction, ``Spline`` subtracts its own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from gpuptc.backend import Backend, get_backend, to_host
from gpuptc.config import LINEARITY_TYPES, LinearityConfig
from gpuptc.fitting.linearity_line import (
    CAUCHY_SCALE,
    IRLS_ROUNDS,
    LinearityTurnoff,
    irls_polynomial,
    irls_polynomials,
    linearity_turnoff,
    linearity_turnoffs,
    polyvals,
)
from gpuptc.fitting.linearity_spline import SplineFit, fit_splines, spline_nodes
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
    "solve_amps",
]


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
        The groups of pairs, one illumination each (default one): the turnoff's lines
        and a ``Spline``'s slopes, one per group.

    Returns
    -------
    AmpLinearity

    Examples
    --------
    >>> times = np.arange(1.0, 21.0)
    >>> signal = 4000.0 * times * (1.0 - 2e-7 * 4000.0 * times)  # 1.6 % low at 80 000 ADU
    >>> solved = solve_amp(times, signal, np.ones(20, bool))
    >>> solved.kind, solved.status, f"{solved.coefficients[0]:.2e}"
    ('Squared', 'ok', '2.00e-07')
    """
    (solved,) = solve_amps(
        abscissa,
        np.asarray(ordinate, float)[None, :],
        np.asarray(ptc_mask, bool)[None, :],
        config,
        valid=valid,
        ptc_turnoffs=np.array([ptc_turnoff], float),
        groups=groups,
    )
    return solved


def solve_amps(
    abscissa: np.ndarray,
    ordinates: np.ndarray,
    ptc_masks: np.ndarray,
    config: LinearityConfig | None = None,
    *,
    valid: np.ndarray | None = None,
    ptc_turnoffs: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    backend: str | Backend = "numpy",
) -> list[AmpLinearity]:
    """Every amp's linearizer from its pairs, the fits of all amps at once.

    Parameters
    ----------
    abscissa : numpy.ndarray
        (pairs,) exposure time or photodiode charge, shared by the amps (or one row each).
    ordinates : numpy.ndarray
        (amps, pairs) mean signal (ADU).
    ptc_masks : numpy.ndarray
        (amps, pairs): the PTC's selection of each amp (used for the turnoff only).
    config : LinearityConfig, optional
        As :func:`solve_amp`.
    valid : numpy.ndarray, optional
        (pairs,) or (amps, pairs): pairs that may be fitted at all.
    ptc_turnoffs : numpy.ndarray, optional
        (amps,) each amp's PTC turnoff (ADU), for a ``Spline`` (NaN: its linearity turnoff).
    groups : numpy.ndarray, optional
        (pairs,) the groups of pairs, one illumination each (default one): each group has
        its own line in the turnoff's fit and its own slope in a ``Spline``.
    backend : str or Backend
        Where the fits run (NumPy, CuPy, ...); inputs and results are NumPy.

    Returns
    -------
    list of AmpLinearity
        One per amp, each with its own status.
    """
    config, where = config or LinearityConfig(), get_backend(backend)
    y = np.asarray(ordinates, float)
    x = np.broadcast_to(np.asarray(abscissa, float), y.shape)
    finite = np.isfinite(x) & np.isfinite(y)
    if valid is not None:
        finite = finite & np.broadcast_to(np.asarray(valid, bool), y.shape)
    masks = np.asarray(ptc_masks, bool)
    turnoffs = linearity_turnoffs(
        *_on(where, x, y, masks & finite),
        groups,
        config.min_signal_fit_linearity_turnoff,
        config.max_frac_linearity_deviation,
        where.xp,
    )
    solved: list[AmpLinearity | None] = [None] * len(y)
    for k, turnoff in enumerate(turnoffs):
        if not masks[k].any():  # cp_pipe: a bad amp of the PTC
            none = LinearityTurnoff(-1, math.nan, math.nan, False)
            solved[k] = _unsolved("no_ptc_pairs", y.shape[1], none)
        elif not math.isfinite(turnoff.turnoff):
            solved[k] = _unsolved("no_turnoff", y.shape[1], turnoff)
    rows = [k for k, s in enumerate(solved) if s is None]
    batch = _Batch(x[rows], y[rows], finite[rows], [turnoffs[k] for k in rows], config, where)
    if config.linearity_type == "Spline":
        tops = np.full(len(y), math.nan) if ptc_turnoffs is None else np.asarray(ptc_turnoffs)
        found = _solve_splines(batch, tops[rows], groups)
    else:
        found = _solve_polynomials(batch)
    for k, result in zip(rows, found, strict=True):
        solved[k] = result
    return solved  # type: ignore[return-value]


@dataclass(frozen=True)
class _Batch:
    """The amps that have a turnoff: their pairs (host rows) and settings."""

    x: np.ndarray
    y: np.ndarray
    finite: np.ndarray
    turnoffs: list[LinearityTurnoff]
    config: LinearityConfig
    backend: Backend

    @property
    def xp(self) -> ModuleType:
        return self.backend.xp

    def on_device(self, *arrays: np.ndarray) -> list[Any]:
        return _on(self.backend, *arrays)


def _on(backend: Backend, *arrays: np.ndarray) -> list[Any]:
    """Host arrays on the backend's device."""
    return [backend.xp.asarray(np.ascontiguousarray(a), device=backend.device) for a in arrays]


def _solve_polynomials(batch: _Batch) -> list[AmpLinearity]:
    """The straight line, then the polynomial of the signal in its value (not Spline)."""
    if not len(batch.y):
        return []
    xp, config, x, y = batch.xp, batch.config, batch.x, batch.y
    order = config.polynomial_order
    with np.errstate(invalid="ignore"):
        mask = batch.finite & (y < config.max_linear_adu) & (y > config.min_linear_adu)
    rows = batch.on_device(x, y, mask)
    linear, _, _ = irls_polynomials(*rows, 1, xp)
    line = np.asarray(to_host(polyvals(rows[0], linear, xp)))
    enough = mask.sum(axis=1) >= 2
    with np.errstate(invalid="ignore"):
        mask = mask & (np.abs(y - line) < config.n_sigma_clip_linear * np.sqrt(np.abs(y)))
    k, k_err, chi2 = (
        np.asarray(to_host(a)) for a in irls_polynomials(*batch.on_device(line, y, mask), order, xp)
    )
    enough &= mask.sum(axis=1) >= order + 2
    linear = np.asarray(to_host(linear))
    results, corrected = [], np.full(y.shape, math.nan)
    for a in range(len(y)):
        if not enough[a]:
            results.append(_unsolved("too_few_points", y.shape[1], batch.turnoffs[a]))
            continue
        fit = _PolynomialFit(k[a], k_err[a], float(chi2[a]), linear[a])
        solved, corrected[a] = _polynomial_linearity(fit, y[a], mask[a], batch.turnoffs[a], config)
        results.append(solved)
    return _with_residuals(results, x, corrected, batch.backend)


@dataclass(frozen=True)
class _PolynomialFit:
    """An amp's signal as a polynomial ``k`` in its straight line's value, and that line."""

    k: np.ndarray
    k_err: np.ndarray
    reduced_chi2: float
    linear: np.ndarray


def _polynomial_linearity(
    fit: _PolynomialFit,
    y: np.ndarray,
    mask: np.ndarray,
    turnoff: LinearityTurnoff,
    config: LinearityConfig,
) -> tuple[AmpLinearity, np.ndarray]:
    """An amp's Polynomial, Squared or LookupTable linearizer, and its linearized signal."""
    kind, k = config.linearity_type, fit.k
    signs = -k / k[1] ** np.arange(len(k))
    coefficients = {"Polynomial": signs[2:], "Squared": signs[2:3]}.get(kind, np.zeros(2))
    table = lookup_table(k, config.max_lookup_table_adu) if kind == "LookupTable" else None
    corrected = apply_linearizer(kind, coefficients, y, None if table is None else table[None, :])
    nothing = np.full(len(y), math.nan)  # filled by _with_residuals
    solved = AmpLinearity(
        kind, coefficients, k, fit.k_err, fit.reduced_chi2, fit.linear, turnoff, mask,
        nothing, nothing.copy(), table=table,
    )  # fmt: skip
    return solved, corrected


def _with_residuals(
    results: list[AmpLinearity], flux: np.ndarray, corrected: np.ndarray, backend: Backend
) -> list[AmpLinearity]:
    """Each solved amp's residuals, at every pair.

    The linearized signal less the slope of a line refitted to its fitted pairs (the line's
    intercept left in, as cp_pipe does).
    """
    solved = [a for a, r in enumerate(results) if r.status == "ok"]
    if not solved:
        return results
    masks = np.stack([results[a].mask for a in solved])
    rows = [m[solved] for m in (flux, corrected)]
    line, _, _ = irls_polynomials(*_on(backend, *rows, masks), 1, backend.xp)
    slopes = np.asarray(to_host(line))[:, 1]
    for row, a in enumerate(solved):
        unmasked = rows[1][row] - slopes[row] * rows[0][row]
        results[a].residuals_unmasked = unmasked
        results[a].residuals = np.where(results[a].mask, unmasked, math.nan)
    return results


def _solve_splines(batch: _Batch, ptc_turnoffs: np.ndarray, groups: np.ndarray | None):
    """Astier's spline up to each amp's linearity turnoff.

    The residuals are taken against the flux each group of pairs saw.
    """
    config, y = batch.config, batch.y
    turnoff = np.array([t.turnoff for t in batch.turnoffs], float).reshape(-1, 1)
    with np.errstate(invalid="ignore"):
        mask = batch.finite & (y <= turnoff) & (y > config.min_linear_adu)
    statuses = [_spline_inputs_status(y[a][mask[a]], config.spline_knots) for a in range(len(y))]
    fitted = [a for a, status in enumerate(statuses) if status is None]
    tops = np.where(np.isfinite(ptc_turnoffs), ptc_turnoffs, turnoff[:, 0])
    fits = fit_splines(
        y[fitted],
        batch.x[fitted],
        mask[fitted],
        groups,
        knots=config.spline_knots,
        max_signal_nearly_linear=tops[fitted],
        fit_offset=config.do_spline_fit_offset,
        n_sigma=config.n_sigma_clip_linear,
        min_iter=config.spline_fit_min_iter,
        max_iter=config.spline_fit_max_iter,
        max_rejection=config.spline_fit_max_rejection_per_iteration,
        backend=batch.backend,
    ) if fitted else []  # fmt: skip
    by_amp = dict(zip(fitted, fits, strict=True))
    results, flux, corrected = [], np.full(y.shape, math.nan), np.full(y.shape, math.nan)
    for a, status in enumerate(statuses):
        fit = by_amp.get(a)
        status = status or _spline_status(fit)
        if status is not None:
            results.append(_unsolved(status, y.shape[1], batch.turnoffs[a]))
            continue
        solved, flux[a], corrected[a] = _spline_linearity(fit, batch.x[a], y[a], batch, a)
        results.append(solved)
    return _with_residuals(results, flux, corrected, batch.backend)


def _spline_inputs_status(signal: np.ndarray, knots: int) -> str | None:
    """Why an amp's fitted pairs cannot pin a spline, or None."""
    if len(signal) < knots:
        return "too_few_points"
    if _empty_intervals(signal, knots):
        return "sparse_nodes"
    return None


def _spline_status(fit: SplineFit | None) -> str | None:
    """Why a fitted spline is refused, or None."""
    if fit is None or not fit.converged:
        return "no_convergence"
    if np.any(np.abs(fit.values[1:]) > MAX_SPLINE_CORRECTION * fit.nodes[1:]):
        return "spline_diverged"
    return None


def _spline_linearity(
    fit: SplineFit, x: np.ndarray, y: np.ndarray, batch: _Batch, a: int
) -> tuple[AmpLinearity, np.ndarray, np.ndarray]:
    """An amp's Spline linearizer, the flux its pairs saw and its linearized signal."""
    config = batch.config
    coefficients = np.concatenate([fit.nodes, fit.values])
    params = np.concatenate([fit.slopes, [fit.offset] if config.do_spline_fit_offset else []])
    flux = x * fit.slopes[fit.group] / np.mean(fit.slopes)
    corrected = apply_linearizer("Spline", coefficients, y - fit.offset)
    linear = np.array([0.0, float(np.mean(fit.slopes))])
    nothing = np.full(len(y), math.nan)
    solved = AmpLinearity(
        "Spline", coefficients, params, np.zeros_like(params), fit.reduced_chi2, linear,
        batch.turnoffs[a], fit.mask, nothing, nothing.copy(),
    )  # fmt: skip
    return solved, flux, corrected


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

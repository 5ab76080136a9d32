"""The ``Spline`` linearizer: Astier's spline fit of signal against flux, as cp_pipe does it.

The measured signal ``mu`` of each pair is modelled as a linear response to the pair's
flux ``x`` (photodiode charge or exposure time) plus a smooth correction ``S``::

    (mu - S(mu) - O) / (k_g x) = 1

with ``S`` an Akima spline through fixed nodes (from 0 to just above the brightest
fitted signal) whose values are fitted, ``k_g`` one slope per group of pairs that share
an illumination (a lamp current, a filter) and ``O`` an optional signal offset. ``S(0)``
is 0 and the mean of ``S`` over ``[0, max_signal_nearly_linear]`` (the PTC turnoff) is
held to zero, so that ``S`` does not absorb the gain. The fit is Levenberg-Marquardt least
squares, repeated while it rejects outliers (beyond ``n_sigma`` normal-scaled MADs, at
most four pairs a round).

cp_pipe reaches the same solution through two penalty terms of weight 1e3 and 1e10 (and
a third against a last value beyond a quarter of its node); here the first value is not
a free parameter at all and the mean is weighed as a fraction of the signal, which keeps
the least squares well conditioned (it converges in tens of evaluations, not thousands).
A correction beyond a quarter of the signal at any node is refused after the fit
(:func:`gpuptc.fitting.linearity.solve_amp`).

The linearizer applies ``mu - S(mu)`` (:func:`gpuptc.kernels.linearize.apply_linearizer`).
cp_pipe's optional weight, temperature and temporal terms are not fitted here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import leastsq

from gpuptc.fitting._common import normal_mad
from gpuptc.kernels.linearize import akima_slopes, hermite_weights

__all__ = ["SplineFit", "fit_spline", "spline_nodes"]

NORMALIZATION_WEIGHT = 100.0
"""Weight of the constraint that ``S`` averages to zero up to the PTC turnoff, on that mean
over the turnoff (the data's residuals are fractions too): 100 holds it to about 1e-6 of
the signal, where the data's noise is 1e-4, and keeps the problem well conditioned."""
MAX_EVALUATIONS = 12000
"""Evaluations of the model one least-squares round may take (cp_pipe's)."""
NORMALIZATION_POINTS = 100
"""Points of ``[0, max_signal_nearly_linear]`` at which the mean of ``S`` is taken."""


@dataclass(frozen=True)
class SplineFit:
    """An amp's fitted spline model.

    Attributes
    ----------
    nodes, values : numpy.ndarray
        The spline ``S`` (``values[0]`` is 0).
    slopes : numpy.ndarray
        The linear response ``k_g`` of each group (in the order of ``numpy.unique``).
    offset : float
        The signal offset ``O`` (0 unless fitted).
    mask : numpy.ndarray
        The pairs fitted, after outlier rejection.
    group : numpy.ndarray
        Each pair's group: its index into ``slopes``.
    reduced_chi2 : float
        Of the fitted pairs' ``ratio - 1``.
    iterations : int
        Rounds of fitting and rejection.
    converged : bool
        Whether the last round's least squares converged.
    """

    nodes: np.ndarray
    values: np.ndarray
    slopes: np.ndarray
    offset: float
    mask: np.ndarray
    group: np.ndarray
    reduced_chi2: float
    iterations: int
    converged: bool = True


def _hermite_basis(x: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matrices ``V, T`` with ``S(x) = V @ values + T @ slopes`` for a spline on ``nodes``."""
    interval, (value_left, slope_left, value_right, slope_right) = hermite_weights(x, nodes)
    rows = np.arange(len(x))
    by_value, by_slope = np.zeros((len(x), len(nodes))), np.zeros((len(x), len(nodes)))
    by_value[rows, interval], by_value[rows, interval + 1] = value_left, value_right
    by_slope[rows, interval], by_slope[rows, interval + 1] = slope_left, slope_right
    return by_value, by_slope


def spline_nodes(signal: np.ndarray, knots: int) -> np.ndarray:
    """A spline's nodes: ``knots`` of them evenly from 0 to just above the brightest signal.

    Examples
    --------
    >>> spline_nodes(np.array([10.0, 299.0]), 4).tolist()
    [0.0, 100.0, 200.0, 300.0]
    """
    return np.linspace(0.0, float(np.max(signal)) + 1.0, knots)


class _Model:
    """The residual vector of the spline model for fixed data and nodes."""

    def __init__(
        self,
        mu: np.ndarray,
        flux: np.ndarray,
        group: np.ndarray,
        nodes: np.ndarray,
        max_signal_nearly_linear: float,
        fit_offset: bool,
    ) -> None:
        self.mu, self.flux, self.group, self.nodes = mu, flux, group, nodes
        self.groups = int(group.max()) + 1
        self.fit_offset = fit_offset
        safe = np.clip(np.nan_to_num(mu), nodes[0], nodes[-1])
        self.at_data = _hermite_basis(safe, nodes)
        self.top = min(max_signal_nearly_linear, nodes[-1])
        self.at_grid = _hermite_basis(np.linspace(0.0, self.top, NORMALIZATION_POINTS), nodes)

    def unpack(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The spline's values (the first, at 0, held at 0), group slopes and offset."""
        n = len(self.nodes) - 1
        offset = float(params[n + self.groups]) if self.fit_offset else 0.0
        return np.concatenate([[0.0], params[:n]]), params[n : n + self.groups], offset

    def spline(self, values: np.ndarray, basis: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return basis[0] @ values + basis[1] @ akima_slopes(self.nodes, values)

    def ratio(self, params: np.ndarray) -> np.ndarray:
        values, slopes, offset = self.unpack(params)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.mu - self.spline(values, self.at_data) - offset) / (
                slopes[self.group] * self.flux
            )

    def residuals(self, params: np.ndarray, weights: np.ndarray) -> np.ndarray:
        values, _, _ = self.unpack(params)
        data = np.where(weights > 0, weights * (self.ratio(params) - 1.0), 0.0)
        mean = np.mean(self.spline(values, self.at_grid)) / self.top
        return np.concatenate([data, [NORMALIZATION_WEIGHT * mean]])


def _first_guess(model: _Model, mask: np.ndarray, max_signal_nearly_linear: float) -> np.ndarray:
    """Group slopes from straight lines, then the spline from the binned ratio to them."""
    mu, flux, group = model.mu, model.flux, model.group
    slopes = np.ones(model.groups)
    for g in range(model.groups):
        mine = mask & (group == g)
        chosen = mine & (mu < 0.8 * max_signal_nearly_linear)
        if not chosen.any() and mine.any():
            chosen = mine & (mu < np.percentile(mu[mine], 25.0))
        if chosen.sum() >= 2:
            slopes[g] = np.polyfit(flux[chosen], mu[chosen], 1)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = mu / (slopes[group] * flux)
        slopes *= np.median(ratio[mask])
        ratio = mu / (slopes[group] * flux)
    n = len(model.nodes)
    bins = np.clip(np.searchsorted(model.nodes, mu[mask]), 0, n - 1)
    total = np.bincount(bins, ratio[mask], minlength=n)
    count = np.bincount(bins, minlength=n)
    binned = np.where(count > 0, total / np.maximum(count, 1), 1.0)
    binned[0] = 1.0
    params = [((binned - 1.0) * model.nodes)[1:], slopes]
    if model.fit_offset:
        params.append([0.0])
    return np.concatenate(params)


def _rejected(residual: np.ndarray, fitted: np.ndarray, n_sigma: float, max_rejection: int):
    """Fitted pairs beyond ``n_sigma`` MADs; fewer than ``max_rejection`` of them a round."""
    spread = normal_mad(residual[fitted])
    cut = n_sigma * spread
    if fitted.sum() > max_rejection:
        cut = max(np.sort(np.abs(residual[fitted]))[-max_rejection], cut)
    return fitted & (np.abs(residual) > cut)


def fit_spline(
    mu: np.ndarray,
    flux: np.ndarray,
    mask: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    knots: int = 10,
    max_signal_nearly_linear: float,
    fit_offset: bool = True,
    n_sigma: float = 5.0,
    min_iter: int = 3,
    max_iter: int = 20,
    max_rejection: int = 5,
) -> SplineFit:
    """Fit the spline model of one amp's signal against flux (cp_pipe's Spline linearizer).

    Parameters
    ----------
    mu, flux : numpy.ndarray
        Mean signal (ADU) and photodiode charge or exposure time, per pair.
    mask : numpy.ndarray
        The pairs that may be fitted.
    groups : numpy.ndarray, optional
        A group label per pair, one linear response each (default one group).
    knots : int
        Nodes of the spline, evenly spaced from 0 to just above the brightest fitted pair.
    max_signal_nearly_linear : float
        The PTC turnoff (ADU): ``S`` averages to zero below it.
    fit_offset : bool
        Fit a signal offset ``O``.
    n_sigma : float
        Rejection threshold in normal-scaled MADs of the ratio's residuals.
    min_iter, max_iter : int
        Fit-and-reject rounds: at least, at most.
    max_rejection : int
        At most ``max_rejection - 1`` pairs are rejected a round.

    Returns
    -------
    SplineFit

    Examples
    --------
    >>> from gpuptc.kernels.linearize import akima
    >>> flux = np.linspace(1.0, 100.0, 60)
    >>> mu = 1000.0 * flux * (1.0 - 1e-7 * 1000.0 * flux)  # 1 % low at 100 000 ADU
    >>> fit = fit_spline(mu, flux, np.ones(60, bool), max_signal_nearly_linear=8e4)
    >>> corrected = mu - akima(mu, fit.nodes, fit.values)
    >>> bool(np.ptp(corrected / flux) / np.median(corrected / flux) < 1e-4)
    True
    """
    mu, flux = np.asarray(mu, float), np.asarray(flux, float)
    fitted = np.asarray(mask, bool) & np.isfinite(mu) & np.isfinite(flux)
    labels = np.zeros(len(mu), int) if groups is None else np.asarray(groups)
    _, group = np.unique(labels, return_inverse=True)
    nodes = spline_nodes(mu[fitted], knots)
    model = _Model(mu, flux, group, nodes, max_signal_nearly_linear, fit_offset)
    params = _first_guess(model, fitted, max_signal_nearly_linear)
    for iteration in range(1, max_iter + 1):
        weights = fitted.astype(float)
        params, converged = _least_squares(model, params, weights)
        residual = model.residuals(params, weights)[: len(mu)]
        outliers = _rejected(residual, fitted, n_sigma, max_rejection)
        fitted &= ~outliers
        if not outliers.any() and iteration >= min_iter:
            break
    values, slopes, offset = model.unpack(params)
    residual = model.ratio(params) - 1.0
    dof = int(fitted.sum()) - model.groups - int(fit_offset)
    chi2 = float(np.sum(residual[fitted] ** 2) / dof) if dof > 0 else math.nan
    return SplineFit(
        nodes, values, slopes.copy(), offset, fitted, group, chi2, iteration, converged
    )


def _least_squares(model: _Model, params: np.ndarray, weights: np.ndarray):
    """Levenberg-Marquardt from ``params``: the solution and whether it converged.

    MINPACK with cp_pipe's tolerances; a round that runs out of evaluations is taken up
    again by the next round, from where it stopped.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # out of evaluations: said below
        solution, _, _, _, status = leastsq(
            model.residuals, params, args=(weights,), ftol=1e-5, maxfev=MAX_EVALUATIONS,
            full_output=True,
        )  # fmt: skip
    return solution, status in (1, 2, 3, 4)

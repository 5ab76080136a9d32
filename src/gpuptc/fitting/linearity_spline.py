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
most four pairs a round). :func:`fit_splines` fits every amp of a sensor at once, on the
array library of the run (NumPy, CuPy), each amp with its own nodes, rejections, rounds
and convergence; :func:`fit_spline` is one amp's.

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
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np

from gpuptc.backend import Backend, get_backend, to_host
from gpuptc.fitting._batched import device_of, levenberg_marquardt, nanmedian, weighted_lstsq
from gpuptc.fitting._common import MAD_TO_SIGMA
from gpuptc.kernels.linearize import akima_slopes, hermite_weights

__all__ = ["SplineFit", "fit_spline", "fit_splines", "spline_nodes"]

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


def spline_nodes(signal: np.ndarray, knots: int) -> np.ndarray:
    """A spline's nodes: ``knots`` of them evenly from 0 to just above the brightest signal.

    Examples
    --------
    >>> spline_nodes(np.array([10.0, 299.0]), 4).tolist()
    [0.0, 100.0, 200.0, 300.0]
    """
    return np.linspace(0.0, float(np.max(signal)) + 1.0, knots)


class _Model:
    """The residuals of every amp's spline model, for fixed data and nodes (batched)."""

    def __init__(
        self,
        mu: Any,
        flux: Any,
        group: Any,
        nodes: Any,
        top: Any,
        fit_offset: bool,
        xp: ModuleType,
        groups: int,
    ) -> None:
        self.mu, self.flux, self.group, self.nodes, self.xp = mu, flux, group, nodes, xp
        self.groups = groups
        self.fit_offset = fit_offset
        safe = xp.clip(xp.where(xp.isfinite(mu), mu, 0.0), nodes[:, :1], nodes[:, -1:])
        self.at_data = hermite_weights(safe, nodes)
        self.top = xp.minimum(top, nodes[:, -1])
        fractions = xp.linspace(
            0.0, 1.0, NORMALIZATION_POINTS, dtype=mu.dtype, device=device_of(mu)
        )
        self.at_grid = hermite_weights(self.top[:, None] * fractions[None, :], nodes)
        self.weights = xp.zeros_like(mu)

    def unpack(self, params: Any) -> tuple[Any, Any, Any]:
        """Each amp's spline values (the first, at 0, held at 0), group slopes and offset."""
        xp, n = self.xp, self.nodes.shape[1] - 1
        values = xp.concat([xp.zeros_like(params[:, :1]), params[:, :n]], axis=1)
        slopes = params[:, n : n + self.groups]
        offset = params[:, n + self.groups] if self.fit_offset else xp.zeros_like(params[:, 0])
        return values, slopes, offset

    def spline(self, values: Any, basis: tuple[Any, tuple[Any, ...]]) -> Any:
        xp = self.xp
        tangents = akima_slopes(self.nodes, values)
        interval, (a, b, c, d) = basis
        following = interval + 1
        return (
            a * xp.take_along_axis(values, interval, axis=1)
            + b * xp.take_along_axis(tangents, interval, axis=1)
            + c * xp.take_along_axis(values, following, axis=1)
            + d * xp.take_along_axis(tangents, following, axis=1)
        )

    def ratio(self, params: Any) -> Any:
        values, slopes, offset = self.unpack(params)
        response = self.xp.take(slopes, self.group, axis=1) * self.flux
        return (self.mu - self.spline(values, self.at_data) - offset[:, None]) / response

    def residuals(self, params: Any) -> Any:
        """The weighted ratios less one, and the normalisation of ``S``, per amp."""
        xp = self.xp
        values, _, _ = self.unpack(params)
        data = xp.where(self.weights > 0, self.weights * (self.ratio(params) - 1.0), 0.0)
        mean = xp.mean(self.spline(values, self.at_grid), axis=1) / self.top
        return xp.concat([data, (NORMALIZATION_WEIGHT * mean)[:, None]], axis=1)


def _line_slopes(model: _Model, mask: Any, top: Any) -> Any:
    """Each group's straight-line slope of signal on flux, per amp (the first guess).

    Over the group's fitted pairs below 0.8 of ``top``, or, with none there, its faintest
    quarter; 1 where fewer than two pairs are left.
    """
    xp, mu, flux = model.xp, model.mu, model.flux
    columns = []
    for g in range(model.groups):
        mine = mask & (model.group == g)[None, :]
        chosen = mine & (mu < 0.8 * top[:, None])
        quarter = _quantile(xp.where(mine, mu, math.nan), 0.25, xp)
        fallback = mine & (mu < quarter[:, None])
        none = ~xp.any(chosen, axis=1) & xp.any(mine, axis=1)
        chosen = xp.where(none[:, None], fallback, chosen)
        design = xp.stack([xp.ones_like(mu), flux * xp.ones_like(mu)], axis=-1)
        weights = xp.astype(chosen, mu.dtype)
        line, _ = weighted_lstsq(design, xp.where(chosen, mu, 0.0), weights, xp)
        enough = xp.sum(weights, axis=1) >= 2
        columns.append(xp.where(enough, line[:, 1], 1.0))
    return xp.stack(columns, axis=1)


def _quantile(x: Any, q: float, xp: ModuleType) -> Any:
    """The quantile along the last axis, NaN ignored (NumPy's linear interpolation)."""
    finite = xp.isfinite(x)
    count = xp.sum(xp.astype(finite, xp.int64), axis=-1, keepdims=True)
    ordered = xp.sort(xp.where(finite, x, math.inf), axis=-1)
    position = q * xp.astype(xp.clip(count - 1, 0, None), x.dtype)
    below = xp.astype(xp.floor(position), xp.int64)
    above = xp.clip(below + 1, None, xp.clip(count - 1, 0, None))
    low = xp.take_along_axis(ordered, below, axis=-1)
    high = xp.take_along_axis(ordered, above, axis=-1)
    value = low + (position - xp.astype(below, x.dtype)) * (high - low)
    return xp.where(count > 0, value, math.nan)[..., 0]


def _first_guess(model: _Model, mask: Any, top: Any) -> Any:
    """Group slopes from straight lines, then the spline from the binned ratio to them."""
    xp, mu, flux = model.xp, model.mu, model.flux
    slopes = _line_slopes(model, mask, top)
    ratio = mu / (xp.take(slopes, model.group, axis=1) * flux)
    slopes = slopes * nanmedian(xp.where(mask, ratio, math.nan), xp)[:, None]
    ratio = mu / (xp.take(slopes, model.group, axis=1) * flux)
    n = model.nodes.shape[1]
    below = model.nodes[:, None, :] < mu[:, :, None]  # searchsorted: nodes below each mu
    bins = xp.clip(xp.sum(xp.astype(below, xp.int64), axis=-1), 0, n - 1)
    every = xp.arange(n, device=device_of(mu))
    chosen = (bins[:, :, None] == every[None, None, :]) & mask[:, :, None]
    weights = xp.astype(chosen, mu.dtype)
    total = xp.sum(weights * xp.where(mask, ratio, 0.0)[:, :, None], axis=1)
    count = xp.sum(weights, axis=1)
    binned = xp.where(count > 0, total / xp.where(count > 0, count, 1.0), 1.0)
    values = ((binned - 1.0) * model.nodes)[:, 1:]
    offset = [xp.zeros_like(slopes[:, :1])] if model.fit_offset else []
    return xp.concat([values, slopes, *offset], axis=1)


def _rejected(residual: Any, fitted: Any, n_sigma: float, max_rejection: int, xp) -> Any:
    """Fitted pairs beyond ``n_sigma`` MADs; fewer than ``max_rejection`` of them a round."""
    kept = xp.where(fitted, residual, math.nan)
    centre = nanmedian(kept, xp)
    spread = MAD_TO_SIGMA * nanmedian(xp.abs(kept - centre[:, None]), xp)
    cut = n_sigma * spread
    ordered = xp.sort(xp.where(fitted, xp.abs(residual), -math.inf), axis=1)
    count = xp.sum(xp.astype(fitted, xp.int64), axis=1)
    largest = ordered[:, ordered.shape[1] - max_rejection]
    cut = xp.where(count > max_rejection, xp.maximum(largest, cut), cut)
    return fitted & (xp.abs(residual) > cut[:, None])


def fit_splines(
    mu: Any,
    flux: Any,
    mask: Any,
    groups: np.ndarray | None = None,
    *,
    knots: int = 10,
    max_signal_nearly_linear: Any,
    fit_offset: bool = True,
    n_sigma: float = 5.0,
    min_iter: int = 3,
    max_iter: int = 20,
    max_rejection: int = 5,
    backend: str | Backend = "numpy",
) -> list[SplineFit]:
    """Fit the spline model of every amp's signal against flux at once.

    Parameters
    ----------
    mu : array
        (amps, pairs) mean signal (ADU).
    flux : array
        (pairs,) photodiode charge or exposure time, shared by the amps (or one row each).
    mask : array
        (amps, pairs): the pairs each amp may fit.
    groups : numpy.ndarray, optional
        A group label per pair, one linear response each (default one group).
    knots, fit_offset, n_sigma, min_iter, max_iter, max_rejection
        As :func:`fit_spline`.
    max_signal_nearly_linear : float or array
        The PTC turnoff (ADU) of each amp (or one for all).
    backend : str or Backend
        Where to compute (NumPy, CuPy, ...); inputs may be NumPy, results are.

    Returns
    -------
    list of SplineFit
        One per amp.
    """
    with np.errstate(divide="ignore", invalid="ignore"):  # pairs outside the mask
        return _fit_splines(
            mu, flux, mask, groups, knots, max_signal_nearly_linear, fit_offset,
            (n_sigma, min_iter, max_iter, max_rejection), get_backend(backend),
        )  # fmt: skip


def _fit_splines(mu, flux, mask, groups, knots, top, fit_offset, rejection, where: Backend):
    """:func:`fit_splines` on the backend ``where``."""
    n_sigma, min_iter, max_iter, max_rejection = rejection
    xp, device = where.xp, where.device
    fitted, arrays, group = _inputs(mu, flux, mask, groups, top, where)
    mu, flux, top = arrays
    nodes = _nodes(mu, fitted, knots, xp)
    on_device = xp.asarray(group, device=device)
    model = _Model(mu, flux, on_device, nodes, top, fit_offset, xp, int(group.max()) + 1)
    params = _first_guess(model, fitted, top)
    amps = mu.shape[0]
    running = xp.ones((amps,), dtype=xp.bool, device=device)
    converged = xp.zeros((amps,), dtype=xp.bool, device=device)
    rounds = xp.zeros((amps,), dtype=xp.int64, device=device)
    for iteration in range(1, max_iter + 1):
        model.weights = xp.astype(fitted, mu.dtype)
        solved, done = levenberg_marquardt(
            model.residuals, params, running, xp, ftol=1e-5, max_evaluations=MAX_EVALUATIONS
        )
        params = xp.where(running[:, None], solved, params)
        converged = xp.where(running, done, converged)
        residual = model.residuals(params)[:, :-1]
        outliers = _rejected(residual, fitted, n_sigma, max_rejection, xp) & running[:, None]
        fitted = fitted & ~outliers
        rounds = xp.where(running, iteration, rounds)
        if iteration >= min_iter:
            running = running & xp.any(outliers, axis=1)
        if not bool(xp.any(running)):
            break
    return _results(model, params, fitted, converged, rounds, group, fit_offset)


def _inputs(mu, flux, mask, groups, top, where: Backend):
    """The batch on the backend: the fitted pairs, (mu, flux, top) and each pair's group."""
    host_mu = np.asarray(to_host(mu), dtype=float)
    amps, pairs = host_mu.shape
    host = {
        "mu": host_mu,
        "flux": np.broadcast_to(np.asarray(to_host(flux), dtype=float), (amps, pairs)),
        "top": np.broadcast_to(np.asarray(to_host(top), dtype=float), (amps,)),
        "mask": np.broadcast_to(np.asarray(to_host(mask), bool), (amps, pairs)),
    }
    mu, flux, top, mask = (
        where.xp.asarray(np.ascontiguousarray(a), device=where.device) for a in host.values()
    )
    labels = np.zeros(pairs, int) if groups is None else np.asarray(groups)
    _, group = np.unique(labels, return_inverse=True)
    fitted = mask & where.xp.isfinite(mu) & where.xp.isfinite(flux)
    return fitted, (mu, flux, top), group.reshape(pairs)


def _nodes(mu: Any, fitted: Any, knots: int, xp: ModuleType) -> Any:
    """Each amp's nodes (:func:`spline_nodes` of its fitted pairs), (amps, knots)."""
    brightest = xp.max(xp.where(fitted, mu, -math.inf), axis=1)
    brightest = xp.where(xp.isfinite(brightest), brightest, 0.0)
    fractions = xp.linspace(0.0, 1.0, knots, dtype=mu.dtype, device=device_of(mu))
    return (brightest + 1.0)[:, None] * fractions[None, :]


def _results(model, params, fitted, converged, rounds, group, fit_offset) -> list[SplineFit]:
    """One :class:`SplineFit` per amp, on the host."""
    values, slopes, offset = (np.asarray(to_host(x)) for x in model.unpack(params))
    residual = np.asarray(to_host(model.ratio(params))) - 1.0
    host = [np.asarray(to_host(x)) for x in (model.nodes, fitted, converged, rounds)]
    nodes, fitted, converged, rounds = host
    fits = []
    for k in range(len(values)):
        dof = int(fitted[k].sum()) - model.groups - int(fit_offset)
        chi2 = float(np.sum(residual[k][fitted[k]] ** 2) / dof) if dof > 0 else math.nan
        offset_k, slopes_k = float(offset[k]), slopes[k].copy()
        fit = SplineFit(nodes[k], values[k], slopes_k, offset_k, fitted[k], group, chi2, 0)
        fits.append(replace(fit, iterations=int(rounds[k]), converged=bool(converged[k])))
    return fits


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
    (fit,) = fit_splines(
        np.asarray(mu, float)[None, :],
        np.asarray(flux, float),
        np.asarray(mask, bool)[None, :],
        groups,
        knots=knots,
        max_signal_nearly_linear=max_signal_nearly_linear,
        fit_offset=fit_offset,
        n_sigma=n_sigma,
        min_iter=min_iter,
        max_iter=max_iter,
        max_rejection=max_rejection,
    )
    return fit

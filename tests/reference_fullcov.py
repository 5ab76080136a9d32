"""Reference fit of Astier et al. (2019) eq. 20: MINPACK on the dense Jacobian, one amplifier.

The straightforward implementation the batched solver of :mod:`gpuptc.fitting.fullcov` is checked
against: ``scipy.optimize.leastsq`` (``lmder``) on the weighted residuals of every pair and
lag, with the exact Jacobian, after Astier's lag-by-lag parabolas as the initial guess and
the ``b = 0`` fit first. Its cost grows with pairs x lags^2 x parameters^2.

The model, its convolution matrices ``K(X)`` and the result class are those of
:mod:`gpuptc.fitting.fullcov`; what is independent here is the solver.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from gpuptc.config import get_preset
from gpuptc.fitting import solve
from gpuptc.fitting._common import covariance_weights, leastsq_converged
from gpuptc.fitting.fullcov import FullCovFit, convolution_matrix, evaluate
from gpuptc.schema import FitStatus

__all__ = ["fit_fullcov", "fullcov_inputs"]


def fullcov_inputs(pairs, covariances, preset: str = "cp_pipe") -> list[tuple[np.ndarray, ...]]:
    """Per amp ``(mean, cov, npix, var)`` of the pairs ``gpuptc.fit`` gives eq. 20."""
    config = get_preset(preset)
    lookup = solve._CovarianceLookup(covariances)
    inputs = []
    for key, group in pairs.groupby(["sensor", "amp"]):
        data = solve._amp_data(key, group.sort_values("pair"), lookup, config.solve, True)
        mask = solve._fullcov_mask(data)
        inputs.append((data.mean[mask], data.cov[mask], data.npix[mask], data.var[mask]))
    return inputs


@dataclass
class _Terms:
    a2: np.ndarray  # a x a, raveled
    a3: np.ndarray  # a x a x a
    ac: np.ndarray  # a x c
    k_a: np.ndarray  # K(a)
    k_a2: np.ndarray  # K(a x a)
    k_c: np.ndarray  # K(c)


def _terms(a: np.ndarray, c: np.ndarray) -> _Terms:
    k_a = convolution_matrix(a)
    a2 = k_a @ a.ravel()
    r = a.shape[0]
    k_a2 = convolution_matrix(a2.reshape(r, r))
    return _Terms(a2, k_a2 @ a.ravel(), k_a @ c.ravel(), k_a, k_a2, convolution_matrix(c))


class _Problem:
    """Weighted residuals and their Jacobian for one amplifier."""

    def __init__(
        self, mean: np.ndarray, cov: np.ndarray, weights: np.ndarray, with_b: bool
    ) -> None:
        self.mu = mean[:, None]
        self.r = cov.shape[-1]
        self.data = cov.reshape(len(mean), -1)
        self.w = weights.reshape(len(mean), -1)
        self.with_b = with_b
        self.delta = np.zeros(self.r * self.r)
        self.delta[0] = 1.0

    def split(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        rr = self.r * self.r
        a = p[:rr].reshape(self.r, self.r)
        if self.with_b:
            c = p[rr : 2 * rr].reshape(self.r, self.r)
            noise = p[2 * rr : 3 * rr].reshape(self.r, self.r)
        else:
            c = np.zeros_like(a)
            noise = p[rr : 2 * rr].reshape(self.r, self.r)
        return a, c, noise, float(p[-1])

    def join(self, a: np.ndarray, c: np.ndarray, noise: np.ndarray, gain: float) -> np.ndarray:
        parts = [a.ravel(), c.ravel(), noise.ravel()] if self.with_b else [a.ravel(), noise.ravel()]
        return np.concatenate([*parts, [gain]])

    def residuals(self, p: np.ndarray) -> np.ndarray:
        a, c, noise, gain = self.split(p)
        model = evaluate(self.mu[:, 0], a, c, noise, gain).reshape(self.data.shape)
        return ((model - self.data) * self.w).ravel()

    def jacobian(self, p: np.ndarray) -> np.ndarray:
        a, c, noise, g = self.split(p)
        t = _terms(a, c)
        mu, w = self.mu, self.w
        npairs, rr = self.data.shape
        eye = np.eye(rr)
        mu2, mu3, mu4 = (mu**2)[:, :, None], (mu**3)[:, :, None], (mu**4)[:, :, None]
        # d/da: a mu^2 + (2/3) a x a g mu^3 + ((1/3) a x a x a + (5/6) a x c) g^2 mu^4
        d_a = (
            eye * mu2
            + (2.0 / 3.0) * 2.0 * t.k_a * g * mu3
            + ((1.0 / 3.0) * t.k_a2 + (2.0 / 3.0) * t.k_a @ t.k_a + (5.0 / 6.0) * t.k_c)
            * g**2
            * mu4
        )
        blocks = [d_a]
        if self.with_b:
            blocks.append((2.0 / 3.0) * eye * g * mu3 + (5.0 / 6.0) * t.k_a * g**2 * mu4)
        blocks.append(np.broadcast_to(eye / g**2, (npairs, rr, rr)))
        d_g = (
            -mu / g**2 * self.delta
            + (2.0 / 3.0) * (t.a2 + c.ravel()) * mu**3
            + 2.0 * g * ((1.0 / 3.0) * t.a3 + (5.0 / 6.0) * t.ac) * mu**4
            - 2.0 * noise.ravel() / g**3
        )
        jac = np.concatenate([*blocks, d_g[:, :, None]], axis=2)
        return (jac * w[:, :, None]).reshape(npairs * rr, -1)


def _initial(mean: np.ndarray, cov: np.ndarray, weights: np.ndarray, *, with_b: bool) -> np.ndarray:
    """Lag-by-lag parabolas (Astier's initial fit): a += p2, n += p0 g^2, 1/g += p1 at 00."""
    r = cov.shape[-1]
    a = np.zeros((r, r))
    c = np.zeros((r, r))
    noise = np.zeros((r, r))
    gain = 1.0
    best = None
    best_chi2 = math.inf
    for _ in range(5):
        model = evaluate(mean, a, c, noise, gain)
        chi2 = float(np.nansum(((model - cov) * weights) ** 2))
        if chi2 > best_chi2:
            break
        best, best_chi2 = (a.copy(), c.copy(), noise.copy(), gain), chi2
        for i in range(r):
            for j in range(r):
                w = weights[:, i, j]
                if np.count_nonzero(w) < 3:
                    continue
                p2, p1, p0 = np.polyfit(mean, cov[:, i, j] - model[:, i, j], 2, w=w)
                a[i, j] += p2
                noise[i, j] += p0 * gain**2
                if i == 0 and j == 0:
                    gain = 1.0 / (1.0 / gain + p1)
    assert best is not None
    a, c, noise, gain = best
    parts = [a.ravel(), c.ravel(), noise.ravel()] if with_b else [a.ravel(), noise.ravel()]
    return np.concatenate([*parts, [gain]])


def _leastsq(
    problem: _Problem, start: np.ndarray, tolerance: float
) -> tuple[np.ndarray, np.ndarray | None, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        params, cov_x, _, _, ier = optimize.leastsq(
            problem.residuals,
            start,
            Dfun=problem.jacobian,
            full_output=True,
            maxfev=5000,
            ftol=tolerance,
            xtol=tolerance,
        )
    return params, cov_x, ier


def fit_fullcov(
    mean: np.ndarray,
    cov: np.ndarray,
    npix: np.ndarray,
    var: np.ndarray,
    *,
    with_b: bool = True,
    size: int | None = None,
    ftol: float = 1e-12,
) -> FullCovFit:
    """Fit eq. 20 to one amplifier with MINPACK: arguments and result as
    :func:`gpuptc.fitting.fullcov.fit_fullcov`.

    ``ftol`` is MINPACK's ``ftol`` and ``xtol``. Its default, 1.5e-8, stops ~1e-3 standard
    errors short of the minimum along b's valley; the tests use 1e-12. Errors are the
    leastsq covariance times the reduced chi^2.
    """
    name = "fullcov" if with_b else "fullcov_nob"
    mean = np.asarray(mean, float)
    size = size or cov.shape[-1]
    cov = np.asarray(cov, float)[:, :size, :size]
    npix = np.asarray(npix, float)[:, :size, :size]
    good = np.isfinite(mean) & np.isfinite(var) & np.all(np.isfinite(cov), axis=(1, 2))
    if np.count_nonzero(good) < max(size, 3):
        return FullCovFit(name, status=FitStatus.TOO_FEW_POINTS, n_used=int(np.count_nonzero(good)))
    mean, cov, npix, var = mean[good], cov[good], npix[good], np.asarray(var, float)[good]
    parameters = (3 if with_b else 2) * size * size + 1
    if len(mean) * size * size <= parameters:
        return FullCovFit(name, status=FitStatus.TOO_FEW_POINTS, n_used=len(mean))
    weights = covariance_weights(npix, var)
    # as Astier's code: the b = 0 fit first, then b released from that solution
    nob = _Problem(mean, cov, weights, with_b=False)
    params, cov_x, ier = _leastsq(nob, _initial(mean, cov, weights, with_b=False), ftol)
    problem = nob
    if with_b and leastsq_converged(ier):
        problem = _Problem(mean, cov, weights, with_b=True)
        a, c, noise, gain = nob.split(params)
        params, cov_x, ier = _leastsq(problem, problem.join(a, c, noise, gain), ftol)
    if not leastsq_converged(ier):
        return FullCovFit(name, status=FitStatus.NO_CONVERGENCE, n_used=len(mean))
    return _result(name, problem, params, cov_x, mean)


def _result(
    name: str, problem: _Problem, params: np.ndarray, cov_x: np.ndarray | None, mean: np.ndarray
) -> FullCovFit:
    """Parameters, their errors (leastsq covariance times the reduced chi^2) and b = c / a."""
    residuals = problem.residuals(params)
    dof = residuals.size - params.size
    chi2 = float(np.sum(residuals**2) / dof) if dof > 0 else math.nan
    errors = (
        np.sqrt(np.abs(np.diag(cov_x)) * chi2)
        if cov_x is not None
        else np.full(params.size, np.nan)
    )
    a, c, noise, gain = problem.split(params)
    a_err, c_err, noise_err, gain_err = problem.split(errors)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(a != 0, c / a, np.nan)
        b_err = np.abs(b) * np.sqrt((c_err / c) ** 2 + (a_err / a) ** 2)
    if not problem.with_b:
        b = np.zeros_like(a)
        b_err = np.zeros_like(a)
    return FullCovFit(
        name,
        gain=gain,
        gain_err=gain_err,
        a=a,
        a_err=a_err,
        b=b,
        b_err=b_err,
        noise_matrix=noise,
        noise_matrix_err=noise_err,
        chi2_dof=chi2,
        n_used=len(mean),
        turnoff=float(np.max(mean)),
    )

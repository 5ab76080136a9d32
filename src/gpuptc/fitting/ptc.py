"""PTC models and fits, per amplifier, on the host.

Models (the ``model`` column of ``ptc.parquet``; ``docs/design.md``):

``expapprox``
    Astier et al. (2019) eq. 16, ``C00 = (exp(2 a00 g mu) - 1) / (2 a00 g^2) + n00 / g^2``,
    fitted either as EOTEST does (``method='eotest'``) or as cp_pipe's solve stage does
    (``method='cp_pipe'``: outlier loop, jump rule, turnoff, optional rolloff, weighted
    final fit with errors scaled by the reduced chi^2).
``linear``, ``quadratic``, ``powerlaw``
    The original notebook's fits of variance against mean, on configurable point
    selections (the notebook's index slices by default).
``rhl``
    Median of the per-pair gains 1/<(I1-I2)^2/(I1+I2)> over the used pairs.

Every fit returns a :class:`PtcFit`; a fit that cannot be made returns a status and NaNs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from gpuptc.config import SolveConfig
from gpuptc.fitting._common import leastsq_converged
from gpuptc.fitting.turnoff import turnoff_with_sampling_error
from gpuptc.schema import FitStatus

__all__ = [
    "EXPAPPROX_PARAMETERS",
    "MODELS",
    "ROLLOFF_KEYS",
    "PtcFit",
    "eq16",
    "fit_expapprox_cp_pipe",
    "fit_expapprox_eotest",
    "fit_linear",
    "fit_powerlaw",
    "fit_quadratic",
    "fit_rhl",
    "notebook_selection",
    "point_errors",
]

EXPAPPROX_PARAMETERS = 3
"""Gain, a00 and noise: an EXPAPPROXIMATION fit's degrees of freedom are its points less these."""

MODELS: tuple[str, ...] = (
    "expapprox",
    "fullcov",
    "fullcov_nob",
    "linear",
    "quadratic",
    "powerlaw",
    "rhl",
)


def point_errors(model: str, method: str, var: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The error of each variance that a model's chi^2 divides its residual by.

    One place for what each fit calls an error, so that a residual in these units has the
    rms its chi^2/dof says:

    - EXPAPPROXIMATION under cp_pipe's procedure (``cp_pipe``, ``seed``) and the
      full-covariance fits at lag (0, 0): the variance's statistical error,
      ``var / sqrt(npix / 2)`` (cp_pipe's weights);
    - EXPAPPROXIMATION under EOTEST's: ``sqrt(var)``, as EOTEST's ptcTask divides;
    - the notebook's straight line and quadratic: ``sqrt(|var|)``;
    - the power law (fitted in log10 with errors ``0.1 / var``) and ``rhl``: none (NaN).

    Parameters
    ----------
    model, method : str
        The model, and the solve method of the preset (``cp_pipe``, ``eotest``, ``seed``).
    var, counts : numpy.ndarray
        The variances (ADU^2) and the pixels behind each.

    Examples
    --------
    >>> import numpy as np
    >>> point_errors("expapprox", "eotest", np.array([400.0]), np.array([5000.0]))
    array([20.])
    >>> point_errors("fullcov", "cp_pipe", np.array([400.0]), np.array([5000.0]))
    array([8.])
    """
    var = np.asarray(var, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        if model in ("fullcov", "fullcov_nob") or (model == "expapprox" and method != "eotest"):
            return var / np.sqrt(np.asarray(counts, float) / 2.0)
        if model == "expapprox":
            return np.sqrt(var)
        if model in ("linear", "quadratic"):
            return np.sqrt(np.abs(var))
    return np.full(var.shape, math.nan)


def notebook_selection(
    mean: np.ndarray,
    var: np.ndarray,
    turnoff: float,
    fractions: tuple[float, float],
    points: tuple[int | None, int | None] | None = None,
) -> np.ndarray:
    """The pairs a notebook fit (straight line, quadratic, power law) takes.

    Its index slice where one is given (the notebook's own, under ``seed``), else the
    finite pairs whose means lie within ``fractions`` of the turnoff (every finite pair
    where the turnoff is unknown).

    Examples
    --------
    >>> import numpy as np
    >>> mean = np.array([1e3, 5e3, 2e4, 8e4])
    >>> notebook_selection(mean, mean, 1e5, (0.0, 0.1)).tolist()
    [True, True, False, False]
    >>> notebook_selection(mean, mean, 1e5, (0.0, 0.1), points=(1, None)).tolist()
    [False, True, True, True]
    """
    mean, var = np.asarray(mean, float), np.asarray(var, float)
    finite = np.isfinite(mean) & np.isfinite(var)
    if points is not None:
        chosen = np.zeros(len(mean), bool)
        chosen[slice(*points)] = True
        return chosen & finite
    if not math.isfinite(turnoff):
        return finite
    low, high = fractions
    return finite & (mean >= low * turnoff) & (mean <= high * turnoff)


@dataclass
class PtcFit:
    """Result of one model fitted to one amplifier's PTC.

    Attributes
    ----------
    model : str
        Model name.
    gain, gain_err : float
        e-/ADU.
    noise, noise_err : float
        Read noise, e-.
    a00, a00_err : float
        Brighter-fatter coefficient, 1/e-, Astier's sign (negative).
    turnoff : float
        Largest mean (ADU) of the points used by a fit that finds where the PTC turns
        off (EXPAPPROXIMATION, full covariance); NaN for the notebook's fits, whose
        points are a fixed slice.
    mask : numpy.ndarray of bool
        Points used, in the order given.
    chi2_dof : float
        Reduced chi^2 of the final fit (NaN where not defined).
    status : str
        ``ok``, ``too_few_points``, ``no_convergence`` or ``bad_input``.
    powerlaw_amplitude, powerlaw_index : float
        The power law's ``var = A mu^k`` (``A`` in ADU^(2-k)); NaN for the other models.
    extra : dict
        Model-specific results (turnoff sampling error, rolloff, parameters, ...).
    """

    model: str
    gain: float = math.nan
    gain_err: float = math.nan
    noise: float = math.nan
    noise_err: float = math.nan
    a00: float = math.nan
    a00_err: float = math.nan
    turnoff: float = math.nan
    mask: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    chi2_dof: float = math.nan
    status: str = FitStatus.OK
    powerlaw_amplitude: float = math.nan
    powerlaw_index: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_used(self) -> int:
        """Number of points used."""
        return int(np.count_nonzero(self.mask))


def eq16(mean: np.ndarray, a00: float, gain: float, n00: float) -> np.ndarray:
    """Astier eq. 16 variance (ADU^2) at mean signal ``mean`` (ADU); n00 in e-^2."""
    mean = np.asarray(mean, dtype=np.float64)
    x = 2.0 * a00 * gain * mean
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = np.where(np.abs(x) < 1e-12, 1.0 + x / 2.0, np.expm1(x) / np.where(x == 0, 1.0, x))
    return mean / gain * ratio + n00 / gain**2


def eq16_jacobian(mean: np.ndarray, a00: float, gain: float, n00: float) -> np.ndarray:
    """Derivatives of :func:`eq16` by ``a00``, ``gain`` and ``n00``: shape ``(len(mean), 3)``.

    Examples
    --------
    >>> mean = np.array([1e3, 5e4])
    >>> step = 1e-10
    >>> numeric = (eq16(mean, -2e-6 + step, 1.2, 30.0) - eq16(mean, -2e-6, 1.2, 30.0)) / step
    >>> bool(np.allclose(eq16_jacobian(mean, -2e-6, 1.2, 30.0)[:, 0], numeric, rtol=1e-4))
    True
    """
    mean = np.asarray(mean, dtype=np.float64)
    x = 2.0 * a00 * gain * mean
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        small = np.abs(x) < 1e-5
        safe = np.where(small, 1.0, x)
        ratio = np.where(small, 1.0 + x / 2.0, np.expm1(safe) / safe)
        slope = np.where(small, 0.5 + x / 3.0, (safe * np.exp(safe) - np.expm1(safe)) / safe**2)
    d_a00 = 2.0 * mean**2 * slope
    d_gain = -mean / gain**2 * ratio + 2.0 * a00 * mean**2 / gain * slope - 2.0 * n00 / gain**3
    d_n00 = np.full_like(mean, 1.0 / gain**2)
    return np.stack([d_a00, d_gain, d_n00], axis=1)


def _failed(model: str, n: int, status: str, **extra: Any) -> PtcFit:
    return PtcFit(model, mask=np.zeros(n, bool), status=status, extra=dict(extra))


# ---------------------------------------------------------------------------------------------
# EOTEST


def _eotest_model(params: np.ndarray, mean: np.ndarray) -> np.ndarray:
    a00, gain, intercept = params
    return eq16(mean, -a00, gain, intercept)


def fit_expapprox_eotest(
    mean: np.ndarray,
    var: np.ndarray,
    *,
    start: tuple[float, float, float] = (2.7e-6, 0.75, 25.0),
    initial_max_mean: float = 4e4,
    sigma_cut: float = 5.0,
    max_fits: int = 9,
) -> PtcFit:
    """EOTEST's PTC fit (``PtcTask.fit_ptc_curve``), reproduced.

    Residuals ``(var - model) / sqrt(var)`` are minimised with ``scipy.optimize.leastsq``
    from ``start`` (EOTEST's positive a00, gain, noise^2) on the points with mean below
    ``initial_max_mean`` and positive variance; then the selection becomes every point
    with ``|residual| < sigma_cut`` and the fit is repeated until the selection stops
    changing (at most ``max_fits`` fits). Errors are leastsq's unscaled covariance.

    Parameters
    ----------
    mean, var : array
        Per-pair means (ADU) and variances (ADU^2).
    start : tuple of float
        Starting a00 (EOTEST sign, positive), gain, noise^2 (e-^2).
    initial_max_mean : float
        Mean cut of the first fit, ADU.
    sigma_cut : float
        Re-selection threshold.
    max_fits : int
        Largest number of fits.

    Returns
    -------
    PtcFit
        ``a00`` in Astier's (negative) sign; ``extra['a00_eotest']`` is EOTEST's.
    """
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    n = len(mean)
    if n < 3:
        return _failed("expapprox", n, FitStatus.TOO_FEW_POINTS)
    with np.errstate(invalid="ignore"):
        selection = (mean < initial_max_mean) & (var > 0)
    outcome = _eotest_iterations(
        mean, var, selection, np.asarray(start, float), sigma_cut, max_fits
    )
    if isinstance(outcome, str):
        return _failed("expapprox", n, outcome)
    return _eotest_result(mean, var, *outcome)


def _eotest_iterations(
    mean: np.ndarray,
    var: np.ndarray,
    selection: np.ndarray,
    start: np.ndarray,
    sigma_cut: float,
    max_fits: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int] | str:
    """Fit, re-select at ``sigma_cut``, repeat until the selection holds.

    Returns the parameters, their covariance, the points used and the number of fits,
    or the failure status.
    """
    with np.errstate(invalid="ignore"):
        sigma = np.sqrt(var)
    params, cov_x, fits, previous = start, None, 0, None
    while fits < max_fits and (previous is None or np.any(selection != previous)):
        if np.count_nonzero(selection) < 3:
            return FitStatus.TOO_FEW_POINTS

        def residuals(
            p: np.ndarray,
            m: np.ndarray = mean[selection],
            v: np.ndarray = var[selection],
            s: np.ndarray = sigma[selection],
        ) -> np.ndarray:
            return (v - _eotest_model(p, m)) / s

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            params, cov_x, _, _, ier = optimize.leastsq(residuals, start.copy(), full_output=True)
        if not leastsq_converged(ier) or cov_x is None:
            return FitStatus.NO_CONVERGENCE
        fits += 1
        with np.errstate(invalid="ignore"):
            all_residuals = (var - _eotest_model(params, mean)) / sigma
        previous = selection
        selection = np.abs(all_residuals) < sigma_cut
    used = previous if previous is not None else selection
    return params, cov_x, used, fits


def _eotest_result(
    mean: np.ndarray,
    var: np.ndarray,
    params: np.ndarray,
    cov_x: np.ndarray,
    used: np.ndarray,
    fits: int,
) -> PtcFit:
    with np.errstate(invalid="ignore"):
        sigma = np.sqrt(var)
    a00, gain, intercept = params
    noise = math.sqrt(intercept) if intercept > 0 else math.nan
    with np.errstate(invalid="ignore"):
        chi2 = float(np.sum(((var[used] - _eotest_model(params, mean[used])) / sigma[used]) ** 2))
    return PtcFit(
        "expapprox",
        gain=float(gain),
        gain_err=float(math.sqrt(cov_x[1, 1])),
        noise=noise,
        noise_err=float(0.5 / noise * math.sqrt(cov_x[2, 2])) if noise == noise else math.nan,
        a00=float(-a00),
        a00_err=float(math.sqrt(cov_x[0, 0])),
        turnoff=float(np.max(mean[used])),
        mask=np.asarray(used, bool),
        chi2_dof=chi2 / max(int(np.count_nonzero(used)) - EXPAPPROX_PARAMETERS, 1),
        extra={"a00_eotest": float(a00), "fits": fits},
    )


# ---------------------------------------------------------------------------------------------
# cp_pipe


_P0 = np.array([-2e-6, 1.5, 25.0])
_LOWER = np.array([-1e-4, 0.1, 0.0])
_UPPER = np.array([0.0, 10.0, 2000.0])


def _astier(params: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return eq16(mean, params[0], params[1], params[2])


def _outlier_loop(
    mean: np.ndarray, var: np.ndarray, base: np.ndarray, settings: SolveConfig
) -> tuple[np.ndarray, np.ndarray] | None:
    """cp_pipe's bounded, unweighted outlier loop; returns (mask, parameters)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if settings.scale_initial_by_gain:
            approx_gain = np.nanmedian(mean / var)
            max_adu = settings.max_signal_initial / approx_gain
            max_delta = settings.max_delta_initial / approx_gain
        else:
            max_adu, max_delta = settings.max_signal_initial, settings.max_delta_initial
        mask = base & (mean <= max_adu) & (var <= max_adu)
        sigma = np.sqrt(var)
    params = _P0.copy()
    previous = base
    for _ in range(settings.max_iterations):
        if np.count_nonzero(mask) < 3:
            return None
        selected_mean, selected_var = mean[mask], var[mask]
        bounds = (_LOWER, _UPPER) if settings.bin_size == 1 else (-np.inf, np.inf)
        result = optimize.least_squares(
            lambda p, m=selected_mean, v=selected_var: _astier(p, m) - v,
            _P0,
            # eq. 16's own derivatives where cp_pipe lets SciPy difference: the same
            # minimum (gains within 4e-10, the same pairs kept) at half the cost
            jac=lambda p, m=selected_mean, v=selected_var: eq16_jacobian(m, *p),
            bounds=bounds,
            method="trf",
        )
        params = result.x
        with np.errstate(invalid="ignore", divide="ignore"):
            residuals = (var - _astier(params, mean)) / sigma
        new = np.isfinite(residuals) & (np.abs(residuals) < settings.sigma_cut) & base
        new = _jump_rule(mean, new, max_delta)
        if np.count_nonzero(new) < 2:
            return None
        converged = np.array_equal(new, previous)
        previous, mask = new, new
        if converged:
            break
    return mask, params


def _jump_rule(mean: np.ndarray, mask: np.ndarray, max_delta: float) -> np.ndarray:
    """Reject a kept point that follows a rejected one and jumps by max_delta, and all above."""
    out = mask.copy()
    previous_kept = None
    for index in range(len(mean)):
        if not out[index]:
            continue
        if (
            previous_kept is not None
            and index > 0
            and not out[index - 1]
            and mean[index] - mean[previous_kept] >= max_delta
        ):
            out[index:] = False
            break
        previous_kept = index
    return out


def _weighted_final(
    mean: np.ndarray, var: np.ndarray, weights: np.ndarray, mask: np.ndarray, start: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, str] | None:
    """cp_pipe's weighted final fit: parameters, covariance, chi^2/dof and the status."""
    m, v, w = mean[mask], var[mask], weights[mask]

    def residuals(p: np.ndarray) -> np.ndarray:
        return (v - _astier(p, m)) * w

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        params, cov_x, _, _, ier = optimize.leastsq(residuals, start, full_output=True, epsfcn=1e-4)
    if not leastsq_converged(ier):
        return None
    dof = len(m) - EXPAPPROX_PARAMETERS
    chi2 = float(np.sum(residuals(params) ** 2) / dof) if dof > 0 else math.nan
    # scaled by chi^2/dof as cp_pipe does; with no degree of freedom left (3 points), the
    # weights' own errors (they are 1/sigma of each variance) instead of NaN
    scale = chi2 if dof > 0 else 1.0
    if cov_x is None:  # leastsq's differences cannot move a parameter at zero
        cov, status = _held_at_zero(m, w, params)
        return params, cov * scale, chi2, status
    return params, cov_x * scale, chi2, FitStatus.OK


BOOTSTRAP_DRAWS = 100
"""Refits of cp_pipe's bootstrap (``doFitBootstrap``)."""
BOOTSTRAP_SEED = 12345
"""Its random numbers' seed (cp_pipe's are unseeded): the same PTC, the same errors."""


def _bootstrapped(
    mean: np.ndarray, var: np.ndarray, weights: np.ndarray, final: tuple
) -> tuple[np.ndarray, np.ndarray, float, str]:
    """cp_pipe's bootstrap of the weighted fit: parameters and errors from refits.

    Each of :data:`BOOTSTRAP_DRAWS` refits adds to every variance a normal deviate of the
    size of its residual; the parameters are the refits' mean, their errors the refits'
    standard deviations (a diagonal covariance), the chi^2/dof that of the mean. cp_pipe
    scales the deviates by the weighted residuals, which are in units of sigma, not of the
    variance (deviates some 10^4 times too small, errors near zero); here the residuals in
    the variance's own units, so that the errors mean what they say.
    """
    params, _, _, status = final
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    residuals = np.abs(var - _astier(params, mean))

    def refit(values: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fitted, _ = optimize.leastsq(
                lambda p: (values - _astier(p, mean)) * weights, params, epsfcn=1e-4
            )
        return fitted

    draws = np.array([refit(var + rng.normal(0.0, residuals)) for _ in range(BOOTSTRAP_DRAWS)])
    centre = draws.mean(axis=0)
    dof = len(mean) - EXPAPPROX_PARAMETERS
    chi2 = (
        float(np.sum(((var - _astier(centre, mean)) * weights) ** 2) / dof) if dof > 0 else math.nan
    )
    return centre, np.diag(draws.std(axis=0) ** 2), chi2, status


_NEGLIGIBLE = 1e-9
"""A term of eq. 16 below this fraction of the variance it is fitted to counts as zero."""


def _held_at_zero(
    mean: np.ndarray, weights: np.ndarray, params: np.ndarray
) -> tuple[np.ndarray, str]:
    """The covariance (unscaled) with eq. 16's negligible term held at zero, and the status.

    ``leastsq`` estimates its Jacobian by relative differences, which vanish for a
    parameter at (about) zero: its covariance is then singular. The read-noise term or
    a00 that contributes less than :data:`_NEGLIGIBLE` of the variance is held at zero,
    and the other parameters' covariance is that of the fit without it, from eq. 16's
    analytic Jacobian (the held parameter's variance is NaN).
    """
    a00, gain, n00 = params
    jacobian = eq16_jacobian(mean, a00, gain, n00) * weights[:, None]
    smallest = float(np.min(np.abs(eq16(mean, a00, gain, n00))))
    curvature = abs(2.0 * a00 * gain * float(np.max(mean)))
    held = [2] if abs(n00) / gain**2 < _NEGLIGIBLE * smallest else []
    held += [0] if curvature < _NEGLIGIBLE else []
    if not held:
        return np.full((3, 3), np.nan), FitStatus.SINGULAR
    free = [k for k in range(3) if k not in held]
    cov = np.full((3, 3), np.nan)
    cov[np.ix_(free, free)] = np.linalg.inv(jacobian[:, free].T @ jacobian[:, free])
    return cov, FitStatus.NOISE_AT_ZERO if 2 in held else FitStatus.A00_AT_ZERO


ROLLOFF_KEYS = ("rolloff", "rolloff_err", "rolloff_tau", "rolloff_tau_err")
"""What the rolloff model gives (``PtcFit.extra``): the rolloff point (ADU) and the
model's decay length tau (ADU, negative), with their errors."""


def _rolloff(
    mean: np.ndarray,
    var: np.ndarray,
    mask: np.ndarray,
    params: np.ndarray,
    turnoff: float,
    settings: SolveConfig,
) -> tuple[np.ndarray, dict[str, float]]:
    """cp_pipe's rolloff model: extend past the turnoff, fit, cut where it deviates.

    Returns the new mask and :data:`ROLLOFF_KEYS` with ``rolloff_points``, the pairs the
    model is fitted to (cp_pipe's ``expIdRolloffMask``): with no point past the turnoff to fit,
    the rolloff is the turnoff (its error, tau and tau's error NaN); a fit that fails
    changes nothing and gives NaN (as cp_pipe, which leaves them unset).
    """
    var_at_turnoff = var[np.argmax(np.where(mask, mean, -np.inf))]
    extra = (
        (mean >= turnoff) & (mean < turnoff + settings.rolloff_search_adu) & (var <= var_at_turnoff)
    )
    candidates = mask | extra
    if not np.any(extra & ~mask):
        unchanged = dict.fromkeys(ROLLOFF_KEYS, math.nan) | {"rolloff": turnoff}
        return mask, unchanged | {"rolloff_points": candidates}

    def model(p: np.ndarray, m: np.ndarray) -> np.ndarray:
        base = _astier(p[:3], m)
        with np.errstate(over="ignore"):
            roll = np.where(m < p[3], 0.0, np.exp(-(m - p[3]) / p[4]) - 1.0)
        return base - roll

    lower = np.array([-1e-4, 0.1, 0.0, 0.0, -10000.0])
    upper = np.array([0.0, 10.0, 2000.0, turnoff, -100.0])
    start = np.clip(np.array([*params, turnoff, -1200.0]), lower, upper)
    result = optimize.least_squares(
        lambda p: model(p, mean[candidates]) - var[candidates], start, bounds=(lower, upper)
    )
    if not result.success:
        return mask, dict.fromkeys(ROLLOFF_KEYS, math.nan)
    errors = _jacobian_errors(result.jac)
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = np.abs(model(result.x, mean) / _astier(result.x[:3], mean) - 1.0)
    ok = candidates & (deviation <= settings.max_rolloff_deviation)
    rolloff = min(float(np.max(mean[ok])) if np.any(ok) else turnoff, turnoff)
    values = (rolloff, errors[3], float(result.x[4]), errors[4])
    found = dict(zip(ROLLOFF_KEYS, values, strict=True)) | {"rolloff_points": candidates}
    return candidates & (mean < rolloff), found


def _jacobian_errors(jacobian: np.ndarray) -> np.ndarray:
    """The parameters' errors from a Jacobian: cp_pipe's inv(J^T J), NaN if singular."""
    try:
        covariance = np.linalg.inv(jacobian.T @ jacobian)
    except np.linalg.LinAlgError:
        return np.full(jacobian.shape[1], math.nan)
    return np.sqrt(np.diag(covariance))


def fit_expapprox_cp_pipe(
    mean: np.ndarray,
    var: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    mask: np.ndarray | None = None,
    settings: SolveConfig | None = None,
) -> PtcFit:
    """cp_pipe's EXPAPPROXIMATION solve, reproduced (two passes, turnoff, rolloff).

    Parameters
    ----------
    mean, var : array
        Per-pair means (ADU) and variances (ADU^2).
    weights : array, optional
        1/sigma of each variance (cp_pipe: sqrt(npix/2)/var); default that with unit npix.
    mask : array of bool, optional
        Points allowed at all (default: finite, within the mean limits).
    settings : SolveConfig, optional
        Solve settings (cp_pipe defaults).

    Returns
    -------
    PtcFit
        ``turnoff`` from pass 1, ``extra`` has ``turnoff_sampling_error`` and, with
        rolloff, :data:`ROLLOFF_KEYS`.
    """
    settings = settings or SolveConfig()
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    n = len(mean)
    if np.count_nonzero(np.isfinite(mean) & np.isfinite(var)) < 3:
        return _failed("expapprox", n, FitStatus.TOO_FEW_POINTS)
    order = np.argsort(mean, kind="stable")
    inverse = np.argsort(order, kind="stable")
    m, v = mean[order], np.where(var[order] == 0, 1e-9, var[order])
    w = (np.ones(n) / np.abs(v) if weights is None else np.asarray(weights, float))[order]
    base = np.isfinite(m) & np.isfinite(v) & (m > settings.min_mean) & (m < settings.max_mean)
    if mask is not None:
        base &= np.asarray(mask, bool)[order]
    first = _outlier_loop(m, v, base, settings)
    if first is None:
        return _failed("expapprox", n, FitStatus.TOO_FEW_POINTS)
    pass1_mask, pass1_params = first
    if np.count_nonzero(pass1_mask) < 3:
        return _failed("expapprox", n, FitStatus.TOO_FEW_POINTS)
    turnoff, sampling = turnoff_with_sampling_error(m, pass1_mask)
    extra: dict[str, Any] = {"turnoff_sampling_error": sampling}
    if settings.rolloff:
        pass1_mask, rolled = _rolloff(m, v, pass1_mask, pass1_params, turnoff, settings)
        if "rolloff_points" in rolled:  # in the caller's order
            rolled["rolloff_points"] = rolled["rolloff_points"][inverse]
        extra.update(rolled)
    second = _outlier_loop(m, v, pass1_mask, settings)
    if second is None:
        return _failed("expapprox", n, FitStatus.TOO_FEW_POINTS)
    final_mask, params = second
    if np.count_nonzero(final_mask) < 3:
        return _failed("expapprox", n, FitStatus.TOO_FEW_POINTS)
    final = _weighted_final(m, v, w, final_mask, params)
    if final is None:
        return _failed("expapprox", n, FitStatus.NO_CONVERGENCE)
    if settings.fit_bootstrap:
        final = _bootstrapped(m[final_mask], v[final_mask], w[final_mask], final)
    return _cp_pipe_result(*final, turnoff, final_mask[inverse], extra)


def _cp_pipe_result(
    params: np.ndarray,
    cov: np.ndarray,
    chi2: float,
    status: str,
    turnoff: float,
    mask: np.ndarray,
    extra: dict[str, Any],
) -> PtcFit:
    errors = np.sqrt(np.abs(np.diag(cov)))
    noise = math.sqrt(abs(params[2]))
    noise_err = 0.5 * errors[2] / abs(params[2]) * noise if params[2] != 0 else math.nan
    return PtcFit(
        "expapprox",
        gain=float(params[1]),
        gain_err=float(errors[1]),
        noise=noise,
        noise_err=float(noise_err),
        a00=float(params[0]),
        a00_err=float(errors[0]),
        turnoff=turnoff,
        mask=mask,
        chi2_dof=chi2,
        status=status,
        extra=extra,
    )


# ---------------------------------------------------------------------------------------------
# The notebook's fits


def _points(
    mean: np.ndarray, var: np.ndarray, points: slice | np.ndarray | None, default: slice
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float arrays and the mask of the selected finite points (``default`` if none given)."""
    mean, var = np.asarray(mean, float), np.asarray(var, float)
    mask = np.zeros(len(mean), bool)
    if points is None:
        points = default
    if isinstance(points, slice):
        mask[points] = True
    else:
        mask = np.asarray(points, bool).copy()
    return mean, var, mask & np.isfinite(mean) & np.isfinite(var)


def fit_linear(
    mean: np.ndarray, var: np.ndarray, *, points: slice | np.ndarray | None = None
) -> PtcFit:
    """The notebook's straight line through the PTC; gain = 1/slope.

    Parameters
    ----------
    mean, var : array
        Per-pair means and variances, in exposure order.
    points : slice or bool array, optional
        Points fitted; default the notebook's ``[6:-15]``.

    Returns
    -------
    PtcFit
        ``noise`` is sqrt(intercept) x gain when the intercept is positive.
    """
    mean, var, mask = _points(mean, var, points, slice(6, -15))
    if np.count_nonzero(mask) < 3:
        return _failed("linear", len(mean), FitStatus.TOO_FEW_POINTS)
    (slope, intercept), covariance, chi2 = _polyfit(mean[mask], var[mask], 1)
    gain = 1.0 / slope
    noise, noise_err = _noise_of(intercept, gain, [-1.0 / slope**2, 0.0], 1, covariance)
    return PtcFit(
        "linear",
        gain=gain,
        gain_err=float(math.sqrt(covariance[0, 0]) / slope**2),
        noise=noise,
        noise_err=noise_err,
        mask=mask,
        chi2_dof=chi2,
    )


def _noise_of(
    c0: float, gain: float, dgain: list[float], k: int, covariance: np.ndarray
) -> tuple[float, float]:
    """Noise ``sqrt(c0) x gain`` (e-) and its error, NaN when ``c0 <= 0``.

    ``dgain`` is the gain's gradient over the coefficients; ``c0`` is coefficient ``k``.
    """
    if c0 <= 0:
        return math.nan, math.nan
    noise = math.sqrt(c0) * gain
    gradient = np.asarray(dgain, float) * noise / gain
    gradient[k] += 0.5 * noise / c0
    return noise, _propagated(gradient, covariance)


def _propagated(gradient: np.ndarray, covariance: np.ndarray) -> float:
    """The error of a function of fitted coefficients: sqrt(g^T C g)."""
    return float(math.sqrt(abs(gradient @ covariance @ gradient)))


def _polyfit(x: np.ndarray, y: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Coefficients (highest power first), their covariance, and chi^2/dof.

    The covariance is scaled by the residuals' variance, NaN without degrees of freedom;
    the chi^2 uses Poisson-like errors sqrt(|y|).
    """
    coeffs = np.polyfit(x, y, degree)
    chi2 = _reduced_chi2(x, y, np.poly1d(coeffs), degree + 1)
    if len(x) <= degree + 1:
        return coeffs, np.full((degree + 1, degree + 1), np.nan), chi2
    design = np.vander(x, degree + 1)
    return coeffs, _scaled_covariance(design, y - design @ coeffs), chi2


def _scaled_covariance(design: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """A linear least-squares solution's covariance, scaled by its residuals' variance.

    The design's columns are scaled to unit norm first: unscaled, x^2 and 1 differ by
    ~1e10 at PTC means and the inverse would lose the constant term's variance (noise
    errors of ~1e-8 e-).
    """
    norms = np.linalg.norm(design, axis=0)
    scaled = design / norms
    variance = float(np.sum(residuals**2)) / (design.shape[0] - design.shape[1])
    return np.linalg.inv(scaled.T @ scaled) / np.outer(norms, norms) * variance


def _reduced_chi2(x: np.ndarray, y: np.ndarray, curve: Any, nparams: int) -> float:
    dof = len(x) - nparams
    errors = point_errors("linear", "", y, np.ones_like(y))
    return float(np.sum(((y - curve(x)) / errors) ** 2) / dof) if dof > 0 else math.nan


def fit_quadratic(
    mean: np.ndarray, var: np.ndarray, *, points: slice | np.ndarray | None = None
) -> PtcFit:
    """The notebook's parabola ``var = c0 + c1 mu + c2 mu^2``.

    Gain is 1/c1, noise sqrt(c0) x gain, a00 = c2.

    Parameters
    ----------
    mean, var : array
        Per-pair means and variances, in exposure order.
    points : slice or bool array, optional
        Points fitted; default the notebook's ``[:-3]``.

    Returns
    -------
    PtcFit
        The fit.
    """
    mean, var, mask = _points(mean, var, points, slice(0, -3))
    if np.count_nonzero(mask) < 4:
        return _failed("quadratic", len(mean), FitStatus.TOO_FEW_POINTS)
    coeffs, covariance, chi2 = _polyfit(mean[mask], var[mask], 2)
    c2, c1, c0 = coeffs
    gain = 1.0 / c1
    noise, noise_err = _noise_of(c0, gain, [0.0, -1.0 / c1**2, 0.0], 2, covariance)
    return PtcFit(
        "quadratic",
        gain=gain,
        gain_err=float(math.sqrt(covariance[1, 1]) / c1**2),
        noise=noise,
        noise_err=noise_err,
        a00=float(c2),
        a00_err=float(math.sqrt(covariance[0, 0])),
        mask=mask,
        chi2_dof=chi2,
    )


def fit_powerlaw(
    mean: np.ndarray, var: np.ndarray, *, points: slice | np.ndarray | None = None
) -> PtcFit:
    """The notebook's power law ``var = A mu^k`` fitted in log-log with errors 0.1/var.

    Gain is mean/var of the fitted curve at the median used mean; noise is NaN.

    Parameters
    ----------
    mean, var : array
        Per-pair means and variances, in exposure order.
    points : slice or bool array, optional
        Points fitted; default the notebook's ``[:-15]``.

    Returns
    -------
    PtcFit
        With ``powerlaw_amplitude`` and ``powerlaw_index``.
    """
    mean, var, mask = _points(mean, var, points, slice(0, -15))
    with np.errstate(invalid="ignore"):
        mask &= (mean > 0) & (var > 0)
    if np.count_nonzero(mask) < 3:
        return _failed("powerlaw", len(mean), FitStatus.TOO_FEW_POINTS)
    log_x, log_y = np.log10(mean[mask]), np.log10(var[mask])
    sigma = 0.1 / var[mask]
    design = np.stack([np.ones_like(log_x), log_x], axis=1) / sigma[:, None]
    solution, *_ = np.linalg.lstsq(design, log_y / sigma, rcond=None)
    amplitude, index = 10.0 ** solution[0], solution[1]
    pivot = float(np.median(mean[mask]))
    gain = pivot / (amplitude * pivot**index)
    # log10 gain = (1 - index) log10 pivot - log10 amplitude; the solution's covariance
    # scaled by its residuals, as the polynomial fits' (the notebook's 0.1/var errors set
    # only the weights)
    covariance = _scaled_covariance(design, design @ solution - log_y / sigma)
    log_error = _propagated(np.array([-1.0, -math.log10(pivot)]), covariance)
    return PtcFit(
        "powerlaw",
        gain=float(gain),
        gain_err=float(gain * math.log(10.0) * log_error),
        mask=mask,
        powerlaw_amplitude=float(amplitude),
        powerlaw_index=float(index),
    )


def fit_rhl(per_pair_gain: np.ndarray, used: np.ndarray | None = None) -> PtcFit:
    """Median of the per-pair gains over the used pairs (the notebook's "Welcome to PTC")."""
    gains = np.asarray(per_pair_gain, float)
    mask = np.isfinite(gains) if used is None else np.asarray(used, bool) & np.isfinite(gains)
    if not np.any(mask):
        return _failed("rhl", len(gains), FitStatus.TOO_FEW_POINTS)
    values = gains[mask]
    spread = (
        1.2533 * np.std(values, ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    )
    return PtcFit("rhl", gain=float(np.median(values)), gain_err=float(spread), mask=mask)

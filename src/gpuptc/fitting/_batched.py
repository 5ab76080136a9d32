"""Many small, independent fits at once, on any array library (NumPy, CuPy).

Each amplifier of a sensor is one problem; the arrays hold them along their first axis,
and nothing here mixes one problem with another. What the fits share:

- :func:`nanmedian` (along the last axis, NaN ignored);
- :func:`damped_step`: Marquardt's step on the normal equations scaled to a unit
  diagonal (one place for it: the full-covariance fit and :func:`levenberg_marquardt`);
- :func:`weighted_lstsq`: linear least squares with per-point weights, by the normal
  equations of the columns scaled to order one;
- :func:`levenberg_marquardt`: a damped Gauss-Newton minimisation of residuals given by a
  function, its Jacobian by forward differences, each problem with its own damping and
  stop (MINPACK's ``ftol`` test).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = [
    "damped_step",
    "device_of",
    "levenberg_marquardt",
    "nanmedian",
    "scaled_normal",
    "weighted_lstsq",
]

RIDGE = 1e-12
"""Added to the unit diagonal of a scaled normal matrix, so that every solve is regular."""
_INITIAL_DAMPING = 1e-3
_MAX_DAMPING = 1e16
_STEP = 1.4901161193847656e-08
"""Forward-difference step relative to a parameter (the square root of float64's epsilon,
as MINPACK's)."""


def device_of(x: Any) -> Any:
    """The device of an array (None for NumPy's)."""
    return getattr(x, "device", None)


def nanmedian(x: Any, xp: ModuleType) -> Any:
    """The median along the last axis, NaN ignored (as numpy's); NaN where all are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> nanmedian(np.array([[1.0, np.nan, 3.0, 2.0], [np.nan] * 4]), np).tolist()
    [2.0, nan]
    """
    known = ~xp.isnan(x)
    count = xp.sum(xp.astype(known, xp.int64), axis=-1, keepdims=True)
    ordered = xp.sort(xp.where(known, x, math.inf), axis=-1)  # the NaN last
    low = xp.clip((count - 1) // 2, 0, None)
    high = xp.clip(count // 2, 0, None)
    middle = 0.5 * (
        xp.take_along_axis(ordered, low, axis=-1) + xp.take_along_axis(ordered, high, axis=-1)
    )
    return xp.where(count > 0, middle, math.nan)[..., 0]


def damped_step(scale: Any, scaled: Any, gradient: Any, damping: Any, xp: ModuleType) -> Any:
    """``-(N + lambda diag N)^-1 g`` from the scaled normal matrix ``D^-1 N D^-1``.

    ``scale`` is ``D = sqrt(diag N)`` (batch, P), ``scaled`` (batch, P, P), ``gradient``
    ``g`` (batch, P) and ``damping`` lambda (batch,).
    """
    size = scaled.shape[-1]
    eye = xp.eye(size, dtype=scaled.dtype, device=device_of(scaled))[None, ...]
    damped = scaled + (damping[:, None, None] + RIDGE) * eye
    step = xp.linalg.solve(damped, (gradient / scale)[..., None])[..., 0]
    return -step / scale


def scaled_normal(normal: Any, xp: ModuleType) -> tuple[Any, Any]:
    """Column scales ``D = sqrt(diag N)`` (1 where it vanishes) and ``D^-1 N D^-1``."""
    diagonal = xp.linalg.diagonal(normal)
    scale = xp.where(diagonal > 0, xp.sqrt(xp.abs(diagonal)), 1.0)
    return scale, normal / (scale[:, :, None] * scale[:, None, :])


def weighted_lstsq(design: Any, y: Any, weights: Any, xp: ModuleType) -> tuple[Any, Any]:
    """Minimise ``sum (w (design @ p - y))^2`` for each problem of a batch.

    By a QR decomposition of the weighted design, its columns scaled to unit norm (as
    accurate as an SVD for these small problems, where the normal equations would square
    the condition number); a ridge of ``RIDGE`` keeps a problem with fewer points than
    parameters regular (and one of 1e-24, far below rounding, any other).

    Parameters
    ----------
    design : array
        (batch, N, P).
    y, weights : array
        (batch, N); a point of weight 0 does not count (whatever its values).
    xp : module
        The array library.

    Returns
    -------
    solution : array
        (batch, P).
    inverse : array
        (batch, P, P): the inverse of the weighted normal matrix (the solution's covariance
        per unit reduced chi^2).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(5.0)
    >>> design = np.stack([np.ones(5), x], axis=-1)[None]
    >>> solution, _ = weighted_lstsq(design, (3.0 + 2.0 * x)[None], np.ones((1, 5)), np)
    >>> np.round(solution, 12).tolist()
    [[3.0, 2.0]]
    """
    counted = weights != 0  # a point of weight 0 counts for nothing, even a NaN
    weighted = xp.where(counted[..., None], design * weights[..., None], 0.0)
    right = xp.where(counted, y * weights, 0.0)
    norms = xp.sqrt(xp.sum(weighted * weighted, axis=-2))
    norms = xp.where(norms > 0, norms, 1.0)
    size = design.shape[-1]
    eye = xp.eye(size, dtype=weighted.dtype, device=device_of(weighted))
    count = xp.sum(xp.astype(counted, weighted.dtype), axis=-1)
    strength = xp.where(count < size, math.sqrt(RIDGE), xp.full_like(count, 1e-12))
    ridge = strength[:, None, None] * eye[None, :, :]
    augmented = xp.concat([weighted / norms[:, None, :], ridge], axis=-2)
    q, r = xp.linalg.qr(augmented)
    rhs = xp.concat([right, xp.zeros_like(right[:, :size])], axis=-1)
    projected = xp.matmul(xp.matrix_transpose(q), rhs[..., None])
    solution = xp.linalg.solve(r, projected)[..., 0] / norms
    r_inverse = xp.linalg.solve(r, xp.broadcast_to(eye, r.shape))
    inverse = xp.matmul(r_inverse, xp.matrix_transpose(r_inverse))
    return solution, inverse / (norms[:, :, None] * norms[:, None, :])


Residuals = Callable[[Any], Any]
"""(batch, P) parameters to (batch, M) residuals."""


def levenberg_marquardt(
    residuals: Residuals,
    start: Any,
    active: Any,
    xp: ModuleType,
    *,
    ftol: float = 1e-5,
    xtol: float = 1.49012e-08,
    max_evaluations: int = 12000,
) -> tuple[Any, Any]:
    """Minimise ``sum residuals(p)^2`` for each active problem of a batch.

    Gauss-Newton steps damped as Marquardt's (on the scaled normal equations) and updated
    as Nielsen's (1999) from the ratio of the actual to the predicted decrease; the
    Jacobian by forward differences. A problem has converged, as MINPACK's, when a step
    changes the sum of squares, actually and as predicted, by at most ``ftol`` of it, or
    changes the scaled parameters by at most ``xtol`` of their norm, or the sum is zero;
    it stops without converging when its damping grows without bound or the evaluations
    run out. Inactive problems keep their start.

    Parameters
    ----------
    residuals : callable
        (batch, P) to (batch, M), every problem at once (a non-finite residual is a step
        refused).
    start : array
        (batch, P).
    active : array
        (batch,) bool: the problems to fit.
    xp : module
        The array library.
    ftol : float
        The relative change of the sum of squares below which a problem has converged.
    xtol : float
        The relative change of the parameters below which a problem has converged.
    max_evaluations : int
        Evaluations of ``residuals`` (one per parameter for each Jacobian, one per step).

    Returns
    -------
    params : array
        (batch, P).
    converged : array
        (batch,) bool.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(0.0, 1.0, 20)
    >>> def curves(p):  # two problems: exp(-k t) with k = 2 and k = 5
    ...     return np.exp(-p[:, :1] * t) - np.exp(-np.array([[2.0], [5.0]]) * t)
    >>> params, converged = levenberg_marquardt(
    ...     curves, np.ones((2, 1)), np.ones(2, bool), np, ftol=1e-12
    ... )
    >>> np.round(params[:, 0], 6).tolist(), converged.tolist()
    ([2.0, 5.0], [True, True])
    """
    size = start.shape[1]
    state = _Damping.start(start, active, residuals(start), xp)
    evaluations = 1
    while evaluations + size + 1 <= max_evaluations and bool(xp.any(state.running)):
        state = _step(residuals, state, xp, ftol, xtol)
        evaluations += size + 1
    return state.params, state.converged


@dataclass
class _Damping:
    """Every problem's parameters, residuals, sum of squares and damping."""

    params: Any
    current: Any
    chi2: Any
    damping: Any
    factor: Any
    running: Any
    converged: Any

    @classmethod
    def start(cls, params: Any, active: Any, current: Any, xp: ModuleType) -> _Damping:
        chi2 = _sum_squares(current, xp)
        damping = xp.full(
            chi2.shape, _INITIAL_DAMPING, dtype=params.dtype, device=device_of(params)
        )
        running = active & xp.isfinite(chi2)
        return cls(params, current, chi2, damping, xp.full_like(damping, 2.0), running,
                   xp.zeros_like(active))  # fmt: skip


def _step(residuals: Residuals, s: _Damping, xp: ModuleType, ftol: float, xtol: float) -> _Damping:
    """One damped Gauss-Newton step of every running problem, the damping updated."""
    jacobian = _jacobian(residuals, s.params, s.current, xp)
    normal = xp.matmul(xp.matrix_transpose(jacobian), jacobian)
    gradient = xp.matmul(xp.matrix_transpose(jacobian), s.current[..., None])[..., 0]
    scale, scaled = scaled_normal(normal, xp)
    step = damped_step(scale, scaled, gradient, s.damping, xp)
    step = xp.where(s.running[:, None], step, 0.0)
    trial = residuals(s.params + step)
    trial_chi2 = _sum_squares(trial, xp)
    predicted = -(
        2.0 * xp.sum(gradient * step, axis=1)
        + xp.sum(step * xp.matmul(normal, step[..., None])[..., 0], axis=1)
    )
    actual = s.chi2 - trial_chi2
    ratio = actual / xp.where(predicted > 0, predicted, 1.0)
    better = s.running & xp.isfinite(trial_chi2) & (actual > 0) & (predicted > 0)
    small = (xp.abs(actual) <= ftol * s.chi2) & (predicted <= ftol * s.chi2) & (ratio <= 2.0)
    tiny = _norm(scale * step, xp) <= xtol * _norm(scale * s.params, xp)
    done = s.running & xp.isfinite(trial_chi2) & (small | tiny | (s.chi2 == 0))
    shrink = xp.clip(1.0 - (2.0 * ratio - 1.0) ** 3, 1.0 / 3.0, None)
    running = s.running
    damping = xp.where(
        better, s.damping * shrink, xp.where(running, s.damping * s.factor, s.damping)
    )
    factor = xp.where(better, 2.0, xp.where(running, s.factor * 2.0, s.factor))
    return _Damping(
        xp.where(better[:, None], s.params + step, s.params),
        xp.where(better[:, None], trial, s.current),
        xp.where(better, trial_chi2, s.chi2),
        damping,
        factor,
        running & ~done & (damping < _MAX_DAMPING),
        s.converged | done,
    )


def _norm(x: Any, xp: ModuleType) -> Any:
    return xp.sqrt(xp.sum(x * x, axis=1))


def _sum_squares(residual: Any, xp: ModuleType) -> Any:
    return xp.sum(residual * residual, axis=1)


def _jacobian(residuals: Residuals, params: Any, current: Any, xp: ModuleType) -> Any:
    """(batch, M, P) forward differences of ``residuals`` at ``params``."""
    columns = []
    size = params.shape[1]
    for j in range(size):
        h = _STEP * xp.abs(params[:, j])
        h = xp.where(h == 0, _STEP, h)
        shifted = params + h[:, None] * xp.asarray(
            [1.0 if k == j else 0.0 for k in range(size)], dtype=params.dtype,
            device=device_of(params),
        )[None, :]  # fmt: skip
        columns.append((residuals(shifted) - current) / h[:, None])
    return xp.stack(columns, axis=-1)

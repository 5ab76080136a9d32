"""Astier et al. (2019) eq. 20: the full covariance model of flat-field pairs, and its fit.

With ``M = g mu`` electrons and ``x`` the 2-D convolution of quadrant-symmetrised arrays
(``a_ij = a_|i||j|``), for lags ``0 <= i, j < r`` (ADU^2)::

    C_ij = mu/g d_i0 d_j0 + a_ij mu^2 + (2/3) (a x a + c)_ij g mu^3
           + ((1/3) a x a x a + (5/6) a x c)_ij g^2 mu^4 + n_ij / g^2

where ``c = a b``. Parameters: ``a`` (1/e-), ``c``, the noise matrix ``n`` (e-^2) and the
gain ``g`` (e-/ADU); ``fullcov_nob`` fixes ``c = 0``.

The model is a polynomial of degree 4 in ``mu`` whose coefficients depend on the parameters
only, and so is its Jacobian: ``J(mu) = sum_k mu^k B_k``. The normal equations of the
weighted least squares are then ``sum_kl B_k^T diag(S_k+l) B_l`` with the weighted moments
``S_m = sum over pairs of w^2 mu^m``, whose cost does not depend on the number of pairs once
the moments are summed. :func:`fit_fullcov_batch` runs Levenberg-Marquardt on them for all
amplifiers of a batch at once, in array-API code (NumPy, CuPy), each amplifier with its own
damping, convergence and status; it reaches the minimum MINPACK reaches on the dense
Jacobian, at a cost that grows only through the sums over pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np

from gpuptc.backend import Backend, get_backend
from gpuptc.fitting._batched import damped_step, scaled_normal
from gpuptc.fitting._common import covariance_weights
from gpuptc.schema import FitStatus

__all__ = ["FullCovFit", "convolution_matrix", "evaluate", "fit_fullcov", "fit_fullcov_batch"]

_MAX_ITERATIONS = 500
_TOLERANCE = 1e-10
"""chi^2 decrease the undamped step may still promise at a converged fit."""
_NEWTON_WITHIN = 0.1
"""Gauss-Newton promise (chi^2) below which the steps use the full Hessian."""
_INITIAL_DAMPING = 1e-3
_MAX_DAMPING = 1e16


@lru_cache(maxsize=8)
def _mirror_index(r: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat lag indices and multiplicities of the mirrored convolution of r x r arrays.

    ``K(X)[ij, kl] = sum_m valid[ij, kl, m] X.ravel()[index[ij, kl, m]]`` over the four
    mirrors ``(+-k, +-l)`` of ``(k, l)``, a mirror of a zero index counted once.
    """
    lags = np.arange(r)
    i, j = np.meshgrid(lags, lags, indexing="ij")
    ij_i, ij_j = i.ravel()[:, None, None], j.ravel()[:, None, None]
    kl_k, kl_l = i.ravel()[None, :, None], j.ravel()[None, :, None]
    signs = np.array([(1, 1), (1, -1), (-1, 1), (-1, -1)])
    sk, sl = signs[:, 0][None, None, :], signs[:, 1][None, None, :]
    duplicate = ((kl_k == 0) & (sk < 0)) | ((kl_l == 0) & (sl < 0))
    u = np.abs(ij_i - sk * kl_k)
    v = np.abs(ij_j - sl * kl_l)
    valid = ~duplicate & (u < r) & (v < r)
    index = np.minimum(u, r - 1) * r + np.minimum(v, r - 1)
    return index.astype(np.int64), valid.astype(np.float64)


@lru_cache(maxsize=8)
def _pairing(r: int) -> np.ndarray:
    """``Q (rr, rr*rr)`` with ``<t, e_i x e_j> = (t @ Q)[i*rr + j]``: bilinear forms of x."""
    index, valid = _mirror_index(r)
    rr = r * r
    q = np.zeros((rr, rr, rr))
    lag, j, _ = np.meshgrid(np.arange(rr), np.arange(rr), np.arange(4), indexing="ij")
    np.add.at(q, (lag.ravel(), index.ravel(), j.ravel()), valid.ravel())
    return q.reshape(rr, rr * rr)


def _bilinear(t: Any, r: int, xp: ModuleType) -> Any:
    """``Z(t)[i, j] = <t, e_i x e_j>`` for a batch ``t (A, rr)``: ``(A, rr, rr)``, symmetric."""
    q = xp.asarray(_pairing(r), device=_device(t))
    # one product per amplifier (not one (A, rr) x (rr, rr^2) product): the same numbers
    # for an amplifier whatever else is in the batch
    return xp.reshape(xp.matmul(t[:, None, :], q), (t.shape[0], r * r, r * r))


def _convolutions(x: Any, r: int, xp: ModuleType) -> Any:
    """``K(x)`` for a batch of raveled lag arrays ``(A, r*r)``: ``(A, r*r, r*r)``."""
    index, valid = _mirror_index(r)
    rr = r * r
    flat = xp.asarray(index.reshape(-1), device=_device(x))
    gathered = xp.reshape(xp.take(x, flat, axis=-1), (x.shape[0], rr, rr, 4))
    return xp.sum(gathered * xp.asarray(valid, device=_device(x)), axis=-1)


def convolution_matrix(x: np.ndarray) -> np.ndarray:
    """Matrix ``K`` with ``(X x Y).ravel() = K @ Y.ravel()`` for r x r lag arrays.

    Parameters
    ----------
    x : numpy.ndarray
        ``(r, r)`` array of lags ``[i, j]``, i, j >= 0, mirrored into all quadrants.

    Returns
    -------
    numpy.ndarray
        ``(r*r, r*r)``.
    """
    r = x.shape[0]
    return _convolutions(np.asarray(x, float).reshape(1, r * r), r, np)[0]


def _device(x: Any) -> Any:
    return getattr(x, "device", None)


@dataclass(frozen=True)
class _Layout:
    """Where a, c, the noise matrix and the gain sit in a parameter vector."""

    r: int
    with_b: bool

    @property
    def rr(self) -> int:
        return self.r * self.r

    @property
    def size(self) -> int:
        return (3 if self.with_b else 2) * self.rr + 1

    def split(self, p: Any, xp: ModuleType) -> tuple[Any, Any, Any, Any]:
        """``a, c, noise (A, rr)`` and ``gain (A,)``; ``c`` is zero without b."""
        rr = self.rr
        a = p[:, :rr]
        c = p[:, rr : 2 * rr] if self.with_b else xp.zeros_like(a)
        noise = p[:, (2 if self.with_b else 1) * rr : -1]
        return a, c, noise, p[:, -1]

    def join(self, a: Any, c: Any, noise: Any, gain: Any, xp: ModuleType) -> Any:
        parts = [a, c, noise] if self.with_b else [a, noise]
        return xp.concat([*parts, gain[:, None]], axis=1)


@dataclass
class _Terms:
    """The convolution products of the current parameters."""

    a: Any
    c: Any
    noise: Any
    gain: Any
    a2: Any  # a x a
    a3: Any  # a x a x a
    ac: Any  # a x c
    k_a: Any  # K(a)
    k_a2: Any  # K(a x a)
    k_c: Any  # K(c)


def _terms(layout: _Layout, p: Any, xp: ModuleType) -> _Terms:
    a, c, noise, gain = layout.split(p, xp)
    k_a = _convolutions(a, layout.r, xp)
    a2 = xp.matmul(k_a, a[..., None])[..., 0]
    k_a2 = _convolutions(a2, layout.r, xp)
    a3 = xp.matmul(k_a2, a[..., None])[..., 0]
    ac = xp.matmul(k_a, c[..., None])[..., 0]
    k_c = _convolutions(c, layout.r, xp) if layout.with_b else xp.zeros_like(k_a)
    return _Terms(a, c, noise, gain, a2, a3, ac, k_a, k_a2, k_c)


def _delta(layout: _Layout, like: Any, xp: ModuleType) -> Any:
    """The lag-00 indicator, ``(1, rr)``."""
    index = xp.arange(layout.rr, device=_device(like))
    return xp.astype(index == 0, like.dtype)[None, :]


def _coefficients(layout: _Layout, t: _Terms, xp: ModuleType) -> list[Any]:
    """Model coefficients ``m_k (A, rr)``: ``C(mu) = sum_k mu^k m_k``, k = 0..4."""
    g = t.gain[:, None]
    return [
        t.noise / g**2,
        _delta(layout, t.a, xp) / g,
        t.a,
        (2.0 / 3.0) * (t.a2 + t.c) * g,
        ((1.0 / 3.0) * t.a3 + (5.0 / 6.0) * t.ac) * g**2,
    ]


@dataclass(frozen=True)
class _Block:
    """One parameter group's part of ``B_k``: ``diag(value)`` or a dense ``(A, rr, w)``."""

    diagonal: bool
    value: Any

    def transpose_times(self, vector: Any, xp: ModuleType) -> Any:
        """``block^T vector`` for ``vector (A, rr)``."""
        if self.diagonal:
            return self.value * vector
        return xp.matmul(xp.matrix_transpose(self.value), vector[..., None])[..., 0]


def _product(left: _Block, moment: Any, right: _Block, xp: ModuleType) -> Any:
    """``left^T diag(moment) right``, dense, without multiplying out diagonal blocks."""
    if left.diagonal and right.diagonal:
        rr = moment.shape[-1]
        eye = xp.eye(rr, dtype=moment.dtype, device=_device(moment))[None, ...]
        return eye * (left.value * moment * right.value)[:, None, :]
    if left.diagonal:
        return (left.value * moment)[..., None] * right.value
    if right.diagonal:
        return xp.matrix_transpose(left.value * (moment * right.value)[..., None])
    return xp.matmul(xp.matrix_transpose(left.value), moment[..., None] * right.value)


def _groups(layout: _Layout) -> list[str]:
    return ["a", "c", "noise", "gain"] if layout.with_b else ["a", "noise", "gain"]


def _jacobian_blocks(layout: _Layout, t: _Terms, xp: ModuleType) -> list[dict[str, _Block]]:
    """``B_k`` with ``dC(mu)/dp = sum_k mu^k B_k``, k = 0..4, by parameter group."""
    g = t.gain[:, None]
    g3 = g[..., None]
    ones = xp.ones_like(t.a)

    def column(vector: Any) -> _Block:
        return _Block(False, vector[..., None])

    # a x a x a is (a x a) truncated to r x r lags, then x a: its derivative is
    # K(a x a) + 2 K(a) K(a), not 3 K(a x a) (truncation breaks associativity)
    cubic = (1.0 / 3.0) * t.k_a2 + (2.0 / 3.0) * xp.matmul(t.k_a, t.k_a)
    blocks = [
        {"noise": _Block(True, ones / g**2), "gain": column(-2.0 * t.noise / g**3)},
        {"gain": column(-_delta(layout, t.a, xp) / g**2 + 0.0 * t.a)},
        {"a": _Block(True, ones)},
        {
            "a": _Block(False, (4.0 / 3.0) * t.k_a * g3),
            "c": _Block(True, (2.0 / 3.0) * ones * g),
            "gain": column((2.0 / 3.0) * (t.a2 + t.c)),
        },
        {
            "a": _Block(False, (cubic + (5.0 / 6.0) * t.k_c) * g3**2),
            "c": _Block(False, (5.0 / 6.0) * t.k_a * g3**2),
            "gain": column(2.0 * g * ((1.0 / 3.0) * t.a3 + (5.0 / 6.0) * t.ac)),
        },
    ]
    if not layout.with_b:
        for block in blocks:
            block.pop("c", None)
    return blocks


@dataclass
class _Data:
    """The weighted covariances of a batch and their moments in ``mu``."""

    mu: Any  # (A, N)
    cov: Any  # (A, N, rr)
    w2: Any  # (A, N, rr) squared weights, 0 for pairs not fitted
    powers: list[Any]  # mu^k (A, N, 1), k = 0..8
    moments: list[Any]  # S_m = sum_pairs w^2 mu^m (A, rr), m = 0..8

    @classmethod
    def build(cls, mu: Any, cov: Any, w2: Any, xp: ModuleType) -> _Data:
        powers = [xp.ones_like(mu)[..., None]]
        for _ in range(8):
            powers.append(powers[-1] * mu[..., None])
        moments = [xp.sum(w2 * power, axis=1) for power in powers]
        return cls(mu, cov, w2, powers, moments)

    def take(self, where: Any, xp: ModuleType) -> _Data:
        """The data of the amplifiers at ``where``."""

        def take(x: Any) -> Any:
            return xp.take(x, where, axis=0)

        return _Data(
            take(self.mu),
            take(self.cov),
            take(self.w2),
            [take(p) for p in self.powers],
            [take(m) for m in self.moments],
        )

    def residuals(self, coefficients: list[Any]) -> Any:
        """``model - data``, ``(A, N, rr)``."""
        model = sum(self.powers[k] * m[:, None, :] for k, m in enumerate(coefficients))
        return model - self.cov


def _chi2(layout: _Layout, data: _Data, p: Any, xp: ModuleType) -> Any:
    t = _terms(layout, p, xp)
    r = data.residuals(_coefficients(layout, t, xp))
    return xp.sum(xp.reshape(data.w2 * r * r, (r.shape[0], -1)), axis=1)


def _normal_equations(layout: _Layout, data: _Data, p: Any, xp: ModuleType) -> tuple[Any, Any, Any]:
    """``J^T W J (A, P, P)``, ``J^T W r (A, P)`` and chi^2 ``(A,)`` at ``p``.

    ``sum_kl B_k^T diag(S_k+l) B_l`` group by group; no sum over pairs but the moments'.
    """
    t = _terms(layout, p, xp)
    residuals = data.residuals(_coefficients(layout, t, xp))
    weighted = data.w2 * residuals
    blocks = _jacobian_blocks(layout, t, xp)
    groups = _groups(layout)
    sums = [xp.sum(weighted * power, axis=1) for power in data.powers[: len(blocks)]]
    gradient = xp.concat(
        [
            sum(b[group].transpose_times(sums[k], xp) for k, b in enumerate(blocks) if group in b)
            for group in groups
        ],
        axis=1,
    )
    rows = []
    for i, left in enumerate(groups):
        row = []
        for right in groups[:i]:
            row.append(xp.matrix_transpose(rows[groups.index(right)][i]))
        for right in groups[i:]:
            row.append(_group_product(blocks, data.moments, left, right, xp))
        rows.append(row)
    normal = xp.concat([xp.concat(row, axis=2) for row in rows], axis=1)
    chi2 = xp.sum(xp.reshape(residuals * weighted, (residuals.shape[0], -1)), axis=1)
    return normal, normal + _residual_curvature(layout, t, sums, xp), gradient, chi2


def _residual_curvature(layout: _Layout, t: _Terms, sums: list[Any], xp: ModuleType) -> Any:
    """``sum_k sum_lag T_k d2 m_k``, ``T_k = sum_pairs w^2 mu^k r``: the Hessian's second part.

    Half the Hessian of chi^2 is ``J^T W J`` plus this; with it each step is Newton's, which
    converges where Gauss-Newton creeps (residuals of chi^2 / dof ~ 1 curving a long valley).
    """
    r, rr = layout.r, layout.rr
    t0, t1, _, t3, t4 = sums
    g = t.gain[:, None]
    g3 = g[..., None]
    k_a_t = xp.matrix_transpose(t.k_a)
    z3, z4, z4a = (_bilinear(x, r, xp) for x in (t3, t4, xp.matmul(k_a_t, t4[..., None])[..., 0]))
    cubic = (1.0 / 3.0) * t.k_a2 + (2.0 / 3.0) * xp.matmul(t.k_a, t.k_a)
    z4_k_a = xp.matmul(z4, t.k_a)
    blocks = {
        ("a", "a"): (4.0 / 3.0) * g3 * z3
        + (2.0 / 3.0) * g3**2 * (z4a + z4_k_a + xp.matrix_transpose(z4_k_a)),
        ("a", "c"): (5.0 / 6.0) * g3**2 * z4,
        ("a", "gain"): (4.0 / 3.0) * xp.matmul(k_a_t, t3[..., None])
        + 2.0 * g3 * xp.matmul(xp.matrix_transpose(cubic + (5.0 / 6.0) * t.k_c), t4[..., None]),
        ("c", "gain"): (
            (2.0 / 3.0) * t3 + (5.0 / 3.0) * g * xp.matmul(k_a_t, t4[..., None])[..., 0]
        )[..., None],
        ("noise", "gain"): (-2.0 * t0 / g**3)[..., None],
    }
    a0 = xp.sum(t0 * t.noise, axis=1)
    b4 = xp.sum(t4 * ((1.0 / 3.0) * t.a3 + (5.0 / 6.0) * t.ac), axis=1)
    gg = 6.0 * a0 / g[:, 0] ** 4 + 2.0 * t1[:, 0] / g[:, 0] ** 3 + 2.0 * b4
    blocks[("gain", "gain")] = gg[:, None, None]
    groups = _groups(layout)
    widths = {"a": rr, "c": rr, "noise": rr, "gain": 1}
    count = t.a.shape[0]
    rows = []
    for left in groups:
        row = []
        for right in groups:
            if (left, right) in blocks:
                block = blocks[(left, right)]
            elif (right, left) in blocks:
                block = xp.matrix_transpose(blocks[(right, left)])
            else:
                block = xp.zeros(
                    (count, widths[left], widths[right]), dtype=t.a.dtype, device=_device(t.a)
                )
            row.append(block)
        rows.append(xp.concat(row, axis=2))
    return xp.concat(rows, axis=1)


def _group_product(
    blocks: list[dict[str, _Block]], moments: list[Any], left: str, right: str, xp: ModuleType
) -> Any:
    """The ``(left, right)`` block of the normal matrix."""
    total = 0
    for k, bk in enumerate(blocks):
        for m, bm in enumerate(blocks):
            if left in bk and right in bm:
                total = total + _product(bk[left], moments[k + m], bm[right], xp)
    return total


@dataclass
class _Solution:
    params: Any
    converged: Any  # (A,) bool


@dataclass
class _State:
    """The amplifiers still being fitted: parameters, damping and normal equations."""

    index: np.ndarray  # positions in the batch, host
    data: _Data
    params: Any
    damping: Any
    factor: Any
    normal: Any
    hessian: Any
    gradient: Any
    chi2: Any

    def keep(self, kept: np.ndarray, xp: ModuleType) -> _State:
        """The state of the amplifiers at ``kept`` (host positions in this state) only."""
        where = xp.asarray(kept, device=_device(self.params))
        arrays = (self.params, self.damping, self.factor, self.normal, self.hessian)
        arrays += (self.gradient, self.chi2)
        return _State(
            self.index[kept],
            self.data.take(where, xp),
            *(xp.take(x, where, axis=0) for x in arrays),
        )


def _levenberg_marquardt(
    layout: _Layout, data: _Data, start: Any, active: Any, xp: ModuleType
) -> _Solution:
    """Minimise chi^2 for every active amplifier, each with its own damping and stop.

    Gauss-Newton steps, then, near the minimum, Newton steps on the full Hessian
    (``J^T W J`` and the residuals' curvature), with Marquardt's scaled damping, updated
    as Nielsen (1999) from the ratio of the actual to the predicted decrease. An amplifier
    has converged when the Gauss-Newton step promises less than ``_TOLERANCE`` in chi^2:
    its parameters are then within 1e-5 standard errors of the minimum. Amplifiers that
    stop leave the batch, so each iteration costs only what is still running.
    """
    count = start.shape[0]
    params = np.array(_host(start))
    converged = np.zeros(count, bool)
    index = np.flatnonzero(_host(active))
    state = _started(layout, index, data, start, xp) if index.size else None
    for _ in range(_MAX_ITERATIONS):
        if state is None or state.index.size == 0:
            break
        finished, stopped = _iterate(layout, state, xp)
        leaving = _host(finished | stopped)
        if leaving.any():
            left = state.index[leaving]
            params[left] = _host(state.params)[leaving]
            converged[left] = _host(finished)[leaving]
            state = state.keep(np.flatnonzero(~leaving), xp)
    if state is not None and state.index.size:
        params[state.index] = _host(state.params)
    return _Solution(xp.asarray(params), xp.asarray(converged))


def _host(x: Any) -> np.ndarray:
    from gpuptc.backend import to_host

    return np.asarray(to_host(x))


def _started(layout: _Layout, index: np.ndarray, data: _Data, start: Any, xp: ModuleType) -> _State:
    """The state of the amplifiers at ``index``, at ``start``, with their normal equations."""
    where = xp.asarray(index, device=_device(start))
    subset = data.take(where, xp)
    params = xp.take(start, where, axis=0)
    shape = (index.size,)
    damping = xp.full(shape, _INITIAL_DAMPING, dtype=params.dtype, device=_device(params))
    factor = xp.full(shape, 2.0, dtype=params.dtype, device=_device(params))
    *equations, bad = _finite(_normal_equations(layout, subset, params, xp), xp)
    normal, hessian, gradient, chi2 = equations
    return _State(
        index,
        subset,
        params,
        damping,
        factor,
        normal,
        hessian,
        gradient,
        xp.where(bad, math.nan, chi2),
    )


def _iterate(layout: _Layout, state: _State, xp: ModuleType) -> tuple[Any, Any]:
    """One damped step for every amplifier of ``state`` (updated in place).

    Returns which amplifiers have converged and which stopped without converging.
    """
    scale, scaled = scaled_normal(state.normal, xp)
    undamped = damped_step(scale, scaled, state.gradient, xp.zeros_like(state.damping), xp)
    promise = -xp.sum(state.gradient * undamped, axis=1)
    finished = xp.isfinite(state.chi2) & (promise < _TOLERANCE)
    running = xp.isfinite(state.chi2) & ~finished
    # Gauss-Newton while far from a minimum, Newton once within ~0.3 standard errors
    near = promise < _NEWTON_WITHIN
    model = xp.where(near[:, None, None], state.hessian, state.normal)
    curved = model / (scale[:, :, None] * scale[:, None, :])
    step = xp.where(
        running[:, None], damped_step(scale, curved, state.gradient, state.damping, xp), 0.0
    )
    trial_chi2 = _chi2(layout, state.data, state.params + step, xp)
    predicted = -(
        2.0 * xp.sum(state.gradient * step, axis=1)
        + xp.sum(step * xp.matmul(model, step[..., None])[..., 0], axis=1)
    )
    ratio = (state.chi2 - trial_chi2) / xp.where(predicted > 0, predicted, 1.0)
    better = running & xp.isfinite(trial_chi2) & (ratio > 0) & (predicted > 0)
    failed = running & ~better
    shrink = xp.maximum(xp.asarray(1.0 / 3.0), 1.0 - (2.0 * ratio - 1.0) ** 3)
    state.damping = xp.where(
        better,
        state.damping * shrink,
        xp.where(failed, state.damping * state.factor, state.damping),
    )
    state.factor = xp.where(better, 2.0, xp.where(failed, state.factor * 2.0, state.factor))
    broken = xp.zeros_like(better)
    if bool(xp.any(better)):
        state.params = xp.where(better[:, None], state.params + step, state.params)
        *update, broken = _finite(_normal_equations(layout, state.data, state.params, xp), xp)
        old = (state.normal, state.hessian, state.gradient, state.chi2)
        state.normal, state.hessian, state.gradient, state.chi2 = (
            xp.where(better[(...,) + (None,) * (o.ndim - 1)], n, o)
            for n, o in zip(update, old, strict=True)
        )
        broken = better & broken
    stopped = ~finished & (~xp.isfinite(state.chi2) | broken | (state.damping >= _MAX_DAMPING))
    return finished, stopped


def _finite(equations: tuple[Any, Any, Any, Any], xp: ModuleType) -> tuple[Any, Any, Any, Any, Any]:
    """The normal equations with those of non-finite amplifiers made harmless, and which."""
    normal, hessian, gradient, chi2 = equations
    count = normal.shape[0]
    bad = ~(
        xp.all(xp.isfinite(xp.reshape(hessian, (count, -1))), axis=1)
        & xp.all(xp.isfinite(gradient), axis=1)
        & xp.isfinite(chi2)
    )
    eye = xp.eye(normal.shape[-1], dtype=normal.dtype, device=_device(normal))[None, ...]
    normal = xp.where(bad[:, None, None], eye, normal)
    hessian = xp.where(bad[:, None, None], eye, hessian)
    gradient = xp.where(bad[:, None], 0.0, gradient)
    return normal, hessian, gradient, xp.where(bad, math.inf, chi2), bad


def evaluate(
    mean: np.ndarray, a: np.ndarray, c: np.ndarray, noise: np.ndarray, gain: float
) -> np.ndarray:
    """Eq. 20 covariances ``(n, r, r)`` (ADU^2) at means ``mean`` (ADU).

    Parameters
    ----------
    mean : numpy.ndarray
        Pair means, ADU.
    a, c, noise : numpy.ndarray
        ``(r, r)`` parameters (1/e-, 1/e-^2, e-^2).
    gain : float
        e-/ADU.

    Returns
    -------
    numpy.ndarray
        Model covariances indexed ``[pair, i, j]``.
    """
    r = a.shape[0]
    layout = _Layout(r, with_b=True)
    p = layout.join(
        *(np.asarray(x, float).reshape(1, -1) for x in (a, c, noise)), np.array([gain]), np
    )
    coefficients = _coefficients(layout, _terms(layout, p, np), np)
    mu = np.asarray(mean, float)[:, None]
    model = sum(mu**k * m for k, m in enumerate(coefficients))
    return model.reshape(-1, r, r)


def _parabolas(mu: Any, y: Any, w2: Any, xp: ModuleType) -> tuple[Any, Any, Any, Any]:
    """Weighted parabola ``p2 mu^2 + p1 mu + p0`` per amplifier and lag.

    ``mu (A, N)``, ``y, w2 (A, N, rr)``; the abscissa is scaled to its largest value
    before the 3 x 3 normal equations are solved. Returns ``p2, p1, p0`` and where a fit
    exists (three pairs or more with weight), each ``(A, rr)``.
    """
    top = xp.max(xp.where(xp.sum(w2, axis=2) > 0, xp.abs(mu), 0.0), axis=1)
    top = xp.where(top > 0, top, 1.0)[:, None, None]
    t = mu[..., None] / top
    moments = [xp.sum(w2 * t**k, axis=1) for k in range(5)]
    rhs = [xp.sum(w2 * t**k * y, axis=1) for k in range(3)]
    matrix = xp.stack(
        [xp.stack([moments[i + j] for j in range(3)], axis=-1) for i in range(3)], axis=-2
    )
    fits = xp.sum(xp.astype(w2 > 0, xp.int64), axis=1) >= 3
    eye = xp.eye(3, dtype=matrix.dtype, device=_device(matrix))
    matrix = xp.where(fits[..., None, None], matrix, eye)
    vector = xp.where(fits[..., None], xp.stack(rhs, axis=-1), 0.0)
    q = xp.linalg.solve(matrix, vector[..., None])[..., 0]
    scale = top[..., 0]
    return q[..., 2] / scale**2, q[..., 1] / scale, q[..., 0], fits


def _initial(layout: _Layout, data: _Data, active: Any, xp: ModuleType) -> Any:
    """Astier's initial fit, per amplifier, from a = 0, n = 0, g = 1.

    Up to five rounds of lag-by-lag parabolas to the residuals (a += p2, n += p0 g^2,
    1/g += p1 at lag 00), each kept while chi^2 falls.
    """
    count, rr = data.cov.shape[0], layout.rr
    zeros = xp.zeros((count, rr), dtype=data.cov.dtype, device=_device(data.cov))
    a, noise = zeros, zeros
    gain = xp.ones((count,), dtype=data.cov.dtype, device=_device(data.cov))
    nob = _Layout(layout.r, with_b=False)
    best = nob.join(a, zeros, noise, gain, xp)
    best_chi2 = xp.full((count,), math.inf, dtype=gain.dtype, device=_device(gain))
    improving = active
    origin = _delta(layout, zeros, xp)
    for _ in range(5):
        current = nob.join(a, zeros, noise, gain, xp)
        chi2 = _chi2(nob, data, current, xp)
        improving = improving & ~(chi2 > best_chi2)
        best = xp.where(improving[:, None], current, best)
        best_chi2 = xp.where(improving, chi2, best_chi2)
        residual = -data.residuals(_coefficients(nob, _terms(nob, current, xp), xp))
        p2, p1, p0, fits = _parabolas(data.mu, residual, data.w2, xp)
        update = improving[:, None] & fits
        new_gain = 1.0 / (1.0 / gain + xp.where(update[:, 0], p1[:, 0], 0.0))
        # lag 00's noise takes the gain before its update, the other lags the one after
        noise_gain = origin * gain[:, None] + (1.0 - origin) * new_gain[:, None]
        a = a + xp.where(update, p2, 0.0)
        noise = noise + xp.where(update, p0 * noise_gain**2, 0.0)
        gain = new_gain
    a, _, noise, gain = nob.split(best, xp)
    return layout.join(a, zeros, noise, gain, xp)


@dataclass
class FullCovFit:
    """Result of an eq. 20 fit."""

    model: str
    gain: float = math.nan
    gain_err: float = math.nan
    a: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    a_err: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    b: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    b_err: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    noise_matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    noise_matrix_err: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    chi2_dof: float = math.nan
    n_used: int = 0
    turnoff: float = math.nan
    status: str = FitStatus.OK

    @property
    def noise(self) -> float:
        """Read noise sqrt(|n00|), e-."""
        return math.sqrt(abs(self.noise_matrix[0, 0])) if self.noise_matrix.size else math.nan

    @property
    def noise_err(self) -> float:
        """Error of the read noise, e-."""
        if not self.noise_matrix.size or self.noise_matrix[0, 0] == 0:
            return math.nan
        return 0.5 * self.noise_matrix_err[0, 0] / abs(self.noise_matrix[0, 0]) * self.noise


def _inverse(normal: Any, xp: ModuleType) -> Any:
    """``(J^T W J)^-1`` per amplifier, NaN where it is singular."""
    scale, scaled = scaled_normal(normal, xp)
    values, vectors = xp.linalg.eigh(scaled)
    singular = xp.any(values <= 0, axis=1)
    safe = xp.where(values > 0, values, 1.0)
    inverse = xp.matmul(vectors / safe[:, None, :], xp.matrix_transpose(vectors))
    inverse = inverse / (scale[:, :, None] * scale[:, None, :])
    return xp.where(singular[:, None, None], math.nan, inverse)


@dataclass
class _Prepared:
    """A batch's inputs on the host: what is fitted, with which weights."""

    mean: np.ndarray  # (A, N), 0 where not fitted
    cov: np.ndarray  # (A, N, rr), 0 where not fitted
    w2: np.ndarray  # (A, N, rr)
    good: np.ndarray  # (A, N)
    enough: np.ndarray  # (A,)


def _prepare(
    mean: np.ndarray,
    cov: np.ndarray,
    npix: np.ndarray,
    var: np.ndarray,
    used: np.ndarray | None,
    layout: _Layout,
) -> _Prepared:
    size = layout.r
    mean = np.asarray(mean, float)
    cov = np.asarray(cov, float)[..., :size, :size]
    var = np.asarray(var, float)
    weights = covariance_weights(np.asarray(npix, float)[..., :size, :size], var)
    good = np.isfinite(mean) & np.isfinite(var) & np.all(np.isfinite(cov), axis=(-2, -1))
    good &= np.all(np.isfinite(weights), axis=(-2, -1))
    if used is not None:
        good &= np.asarray(used, bool)
    counts = np.count_nonzero(good, axis=1)
    enough = (counts >= max(size, 3)) & (counts * layout.rr > layout.size)
    shape = (*mean.shape, layout.rr)
    return _Prepared(
        np.where(good, mean, 0.0),
        np.where(good[..., None], cov.reshape(shape), 0.0),
        np.where(good[..., None], weights.reshape(shape) ** 2, 0.0),
        good,
        enough,
    )


def fit_fullcov_batch(
    mean: np.ndarray,
    cov: np.ndarray,
    npix: np.ndarray,
    var: np.ndarray,
    used: np.ndarray | None = None,
    *,
    with_b: bool = True,
    size: int | None = None,
    backend: str | Backend = "numpy",
) -> list[FullCovFit]:
    """Fit eq. 20 to the covariance matrices of a batch of amplifiers at once.

    Parameters
    ----------
    mean : numpy.ndarray
        ``(A, N)`` pair means, ADU.
    cov : numpy.ndarray
        ``(A, N, L, L)`` per-image covariances ``[i, j]``, ADU^2.
    npix : numpy.ndarray
        ``(A, N, L, L)`` pixel pairs behind each covariance.
    var : numpy.ndarray
        ``(A, N)`` per-image variances (ADU^2): sigma(C_ij) = var / sqrt(npix_ij), and
        var / sqrt(npix / 2) at lag 00, as cp_pipe weights them.
    used : numpy.ndarray, optional
        ``(A, N)`` pairs to fit (default every pair with finite numbers).
    with_b : bool
        Fit ``b`` (``fullcov``) or fix it to 0 (``fullcov_nob``); as Astier's code, the
        ``b = 0`` fit runs first and ``b`` is released from its solution.
    size : int, optional
        Lags fitted per axis (default all L).
    backend : str or Backend
        Where to compute (``numpy``, ``cupy``, ...); inputs and results are NumPy.

    Returns
    -------
    list of FullCovFit
        One per amplifier: a, b, noise matrix, gain and their errors (the inverse of the
        normal matrix times the reduced chi^2), status ``too_few_points`` below ``size``
        pairs or no more residuals than parameters, ``no_convergence`` when the fit stops
        without converging. Amplifiers do not change each other's results.
    """
    size = size or np.shape(cov)[-1]
    layout = _Layout(size, with_b)
    xp = get_backend(backend).xp
    prepared = _prepare(mean, cov, npix, var, used, layout)
    data = _Data.build(*(xp.asarray(x) for x in (prepared.mean, prepared.cov, prepared.w2)), xp)
    active = xp.asarray(prepared.enough)
    nob = _Layout(size, with_b=False)
    solution = _levenberg_marquardt(nob, data, _initial(nob, data, active, xp), active, xp)
    final = nob
    if with_b:
        a, _, noise, gain = nob.split(solution.params, xp)
        start = layout.join(a, xp.zeros_like(a), noise, gain, xp)
        solution = _levenberg_marquardt(layout, data, start, solution.converged, xp)
        final = layout
    normal, _, _, chi2 = _normal_equations(final, data, solution.params, xp)
    host = [_host(x) for x in (solution.params, solution.converged, chi2, _inverse(normal, xp))]
    return [_result(final, prepared, k, *(x[k] for x in host)) for k in range(len(host[0]))]


def _result(
    layout: _Layout,
    prepared: _Prepared,
    amp: int,
    params: np.ndarray,
    converged: bool,
    chi2: float,
    covariance: np.ndarray,
) -> FullCovFit:
    """One amplifier's fit: parameters, errors (scaled by the reduced chi^2), b = c / a."""
    name = "fullcov" if layout.with_b else "fullcov_nob"
    n_used = int(np.count_nonzero(prepared.good[amp]))
    if not prepared.enough[amp]:
        return FullCovFit(name, status=FitStatus.TOO_FEW_POINTS, n_used=n_used)
    if not converged:
        return FullCovFit(name, status=FitStatus.NO_CONVERGENCE, n_used=n_used)
    dof = n_used * layout.rr - layout.size
    chi2_dof = float(chi2) / dof
    errors = np.sqrt(np.abs(np.diag(covariance)) * chi2_dof)
    r = layout.r
    a, c, noise, gain = (x[0] for x in layout.split(params[None], np))
    a_err, c_err, noise_err, gain_err = (x[0] for x in layout.split(errors[None], np))
    if layout.with_b:
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.where(a != 0, c / a, np.nan)
            b_err = np.abs(b) * np.sqrt((c_err / c) ** 2 + (a_err / a) ** 2)
    else:
        b = b_err = np.zeros_like(a)
    return FullCovFit(
        name,
        gain=float(gain),
        gain_err=float(gain_err),
        a=a.reshape(r, r),
        a_err=a_err.reshape(r, r),
        b=b.reshape(r, r),
        b_err=b_err.reshape(r, r),
        noise_matrix=noise.reshape(r, r),
        noise_matrix_err=noise_err.reshape(r, r),
        chi2_dof=chi2_dof,
        n_used=n_used,
        turnoff=float(np.max(prepared.mean[amp][prepared.good[amp]])),
    )


def fit_fullcov(
    mean: np.ndarray,
    cov: np.ndarray,
    npix: np.ndarray,
    var: np.ndarray,
    *,
    with_b: bool = True,
    size: int | None = None,
) -> FullCovFit:
    """Fit eq. 20 to the covariance matrices of one amplifier.

    Parameters
    ----------
    mean : numpy.ndarray
        ``(n,)`` pair means, ADU (the pairs to use).
    cov : numpy.ndarray
        ``(n, L, L)`` per-image covariances ``[i, j]``, ADU^2.
    npix : numpy.ndarray
        ``(n, L, L)`` pixel pairs behind each covariance.
    var : numpy.ndarray
        ``(n,)`` per-image variances, ADU^2.
    with_b : bool
        Fit ``b`` (``fullcov``) or fix it to 0 (``fullcov_nob``).
    size : int, optional
        Lags fitted per axis (default all L).

    Returns
    -------
    FullCovFit
        As :func:`fit_fullcov_batch` for a batch of one.
    """
    return fit_fullcov_batch(
        np.asarray(mean, float)[None],
        np.asarray(cov, float)[None],
        np.asarray(npix, float)[None],
        np.asarray(var, float)[None],
        with_b=with_b,
        size=size,
    )[0]

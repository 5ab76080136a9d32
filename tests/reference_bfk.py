"""Reference brighter-fatter kernel of one amplifier: cp_pipe's steps, one loop at a time.

The straightforward implementation :mod:`gpuptc.fitting.bf_kernel` is checked against:
each pair's correlations in plain Python loops over lags (the mirror included), the mean
over pairs of each lag (no clipping: the test inputs have no outliers), the zero sum with
its power-law tail, and the successive over-relaxation point by point in cp_pipe's order
(its ``BrighterFatterKernelSolveTask`` at f029a3f2, read, not copied). Nothing of the
package's solver is used.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["reference_kernel"]


def _mirror(quadrant: np.ndarray) -> np.ndarray:
    n = quadrant.shape[0] - 1
    out = np.zeros((2 * n + 1, 2 * n + 1))
    for i in range(n + 1):
        for j in range(n + 1):
            for row in (n + i, n - i):
                for column in (n + j, n - j):
                    out[row, column] = quadrant[i, j]
    return out


def _relax(source: np.ndarray, max_iter: int = 10000, e_level: float = 5e-14) -> np.ndarray:
    size = source.shape[0]
    func = np.zeros((size + 2, size + 2))
    resid = np.zeros_like(func)

    def residual(i: int, j: int) -> float:
        around = func[i, j - 1] + func[i, j + 1] + func[i - 1, j] + func[i + 1, j]
        return around - 4.0 * func[i, j] - source[i - 1, j - 1]

    for i in range(1, size + 1):
        for j in range(1, size + 1):
            resid[i, j] = residual(i, j)
    start = np.sum(np.abs(resid))
    rho = math.cos(math.pi / size)
    omega = 1.0
    for sweep in range(2 * max_iter):
        groups = ((1, 1), (2, 2)) if sweep % 2 == 0 else ((1, 2), (2, 1))
        for first_row, first_column in groups:
            for i in range(first_row, size + 1, 2):
                for j in range(first_column, size + 1, 2):
                    resid[i, j] = residual(i, j)
                    func[i, j] += omega * resid[i, j] * 0.25
        if np.sum(np.abs(resid)) < start * e_level:
            break
        if sweep == 0:
            omega = 1.0 / (1.0 - rho * rho / 2.0)
        else:
            omega = 1.0 / (1.0 - rho * rho * omega / 4.0)
    return func[1:-1, 1:-1]


def reference_kernel(
    cov: np.ndarray,
    mean: np.ndarray,
    gain: float,
    used: np.ndarray,
    *,
    zero_sum: bool = True,
    radius: int = 100,
    slope: float = -1.35,
) -> tuple[np.ndarray, np.ndarray]:
    """One amp's averaged pre-kernel and kernel (cp_pipe's default path).

    Parameters
    ----------
    cov : numpy.ndarray
        ``(pairs, n, n)`` covariances (ADU^2).
    mean : numpy.ndarray
        ``(pairs,)`` means (ADU).
    gain : float
        e-/ADU.
    used : numpy.ndarray
        ``(pairs,)`` the pairs to use.
    zero_sum, radius, slope
        ``force_zero_sum``, ``correlation_model_radius``, ``correlation_model_slope``.
    """
    grids = []
    for covariance, level, take in zip(cov, mean, used, strict=True):
        if not take:
            continue
        flux = level * gain
        q = np.array(covariance, float) * gain * gain * 2.0
        q[0, 0] -= 2.0 * flux
        if q[0, 0] > 0.0:
            continue
        scaled = _mirror(q / -2.0 / flux**2)
        if abs(scaled.sum()) / np.abs(scaled).sum() > 2.0:
            continue
        grids.append(scaled)
    pre = np.pad(np.mean(grids, axis=0), 1)
    if zero_sum:
        centre = (pre.shape[0] - 1) // 2
        total = pre.sum()
        if radius < (pre.shape[0] - 1) / 2:
            factor = math.sqrt(pre[centre, centre + 1] * pre[centre + 1, centre])
            power = 2.0 * abs(slope)
            total += 2.0 * math.pi * (factor / (power * (centre + 0.5)) ** power)
        pre[centre, centre] -= total
    return pre, _relax(pre)


def reference_correction(
    image: np.ndarray,
    kernel: np.ndarray,
    gain: float,
    max_iter: int = 10,
    threshold: float = 1000.0,
) -> tuple[np.ndarray, int]:
    """One image corrected as ip_isr's ``brighterFatterCorrection`` reads, and its last round.

    scipy's FFT convolution, numpy's gradient and differences, the loop as written there.
    """
    from scipy import signal

    electrons = image * gain
    nan = np.isnan(electrons)
    tmp = np.where(nan, 0.0, electrons)
    corr = np.zeros_like(tmp)
    previous = np.zeros_like(tmp)
    size = kernel.shape[0]
    start, end = size // 2, -size // 2
    for iteration in range(max_iter):
        out = signal.convolve(tmp, kernel, mode="same", method="fft")
        grad_tmp = np.gradient(tmp[start:end, start:end])
        grad_out = np.gradient(out[start:end, start:end])
        first = (grad_tmp[0] * grad_out[0] + grad_tmp[1] * grad_out[1])[1:-1, 1:-1]
        rows = np.diff(out, 2, 0)[start:end, start + 1 : end - 1]
        columns = np.diff(out, 2, 1)[start + 1 : end - 1, start:end]
        second = tmp[start + 1 : end - 1, start + 1 : end - 1] * (rows + columns)
        corr[start + 1 : end - 1, start + 1 : end - 1] = 0.5 * (first + second)
        tmp = np.where(nan, 0.0, electrons)
        tmp[start:end, start:end] += corr[start:end, start:end]
        if iteration > 0:
            if np.sum(np.abs(previous - tmp)) < threshold:
                break
            previous = tmp.copy()
    out = electrons.copy()
    out[start + 1 : end - 1, start + 1 : end - 1] += corr[start + 1 : end - 1, start + 1 : end - 1]
    return out / gain, iteration

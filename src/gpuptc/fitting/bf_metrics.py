"""eo_pipe's brighter-fatter statistics of each amplifier, from its pairs' covariances.

eo_pipe's ``BFAnalysisTask``: over the pairs the PTC kept, in order of mean, the nearest
serial and parallel covariances (``cov10``, ``cov01``; ``i`` serial, ``j`` parallel, ADU^2)
at the first of them (``bf_mean``, ``bf_xcorr``, ``bf_ycorr``) and the slopes of straight
lines of ``cov10`` and ``cov01`` against the mean (``bf_slope_x``, ``bf_slope_y`` with
their standard errors; ``scipy.stats.linregress``). Beside them, the slopes of the three
further covariances its figure draws over the mean (``cov20``, ``cov02``, ``cov11``), and
the slope of the per-pair gain (``rhl_gain``: the second flat scaled to the first, which a
level mismatch does not bias) against the mean over its median: the brighter-fatter
effect's signature in the gain (about ``|a00| g`` per ADU), which a kernel that corrects
the flats removes.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BF_STAT_COLUMNS", "CHECK_COLUMNS", "LAGS", "bf_statistics", "gain_slope"]

LAGS: dict[str, tuple[int, int]] = {
    "cov10": (1, 0),
    "cov01": (0, 1),
    "cov20": (2, 0),
    "cov02": (0, 2),
    "cov11": (1, 1),
}
"""The covariances eo_pipe looks at, by name: (serial, parallel) lag."""

BF_STAT_COLUMNS: tuple[str, ...] = (
    "bf_mean",
    "bf_xcorr",
    "bf_ycorr",
    "bf_slope_x",
    "bf_slope_x_err",
    "bf_slope_y",
    "bf_slope_y_err",
    "bf_slope_cov20",
    "bf_slope_cov02",
    "bf_slope_cov11",
    "gain_slope",
    "gain_slope_err",
)
"""eo_pipe's statistics of one amp (its ``bf_stats`` columns), the three other slopes, and
the per-pair gain's slope against the mean relative to its median (1/ADU; |a00| g where
the brighter-fatter effect alone moves it) with its error."""

CHECK_COLUMNS: tuple[str, ...] = (
    "check_kernel",
    "gain_slope_corrected",
    "gain_slope_corrected_err",
)
"""The ``--bf-check`` of one amp (:mod:`gpuptc.fitting.bf_check`): which kernel corrected
its flats (``amp``: its own; ``detector``: the detector's; ``none``: no kernel could; empty:
no check asked for) and the
per-pair gain's slope over the same pairs measured again on the corrected flats, with its
error (NaN where not checked)."""


def bf_statistics(
    mean: np.ndarray, used: np.ndarray, cov: np.ndarray, gain: np.ndarray | None = None
) -> dict[str, float]:
    """One amp's eo_pipe brighter-fatter statistics.

    Parameters
    ----------
    mean : numpy.ndarray
        ``(pairs,)`` means (ADU).
    used : numpy.ndarray
        ``(pairs,)`` the PTC's selection.
    cov : numpy.ndarray
        ``(pairs, n, n)`` covariances (ADU^2), ``[pair, serial lag, parallel lag]``.
    gain : numpy.ndarray, optional
        ``(pairs,)`` per-pair gains (e-/ADU), for ``gain_slope``.

    Returns
    -------
    dict of str to float
        :data:`BF_STAT_COLUMNS` (NaN without two pairs with finite covariances).

    Examples
    --------
    >>> mean = np.array([1000.0, 2000.0, 3000.0])
    >>> cov = np.zeros((3, 3, 3)); cov[:, 1, 0] = 1e-6 * mean**2
    >>> stats = bf_statistics(mean, np.ones(3, bool), cov)
    >>> round(stats["bf_xcorr"], 6), round(stats["bf_slope_x"], 6)
    (1.0, 0.005)
    """
    out = dict.fromkeys(BF_STAT_COLUMNS, math.nan) | gain_slope(mean, used, gain)
    if cov.shape[-1] < 3:
        return out
    chosen = np.asarray(used, bool) & np.isfinite(mean) & np.isfinite(cov[:, 1, 0])
    chosen &= np.isfinite(cov[:, 0, 1])
    order = np.argsort(mean[chosen], kind="stable")
    m, c = mean[chosen][order], cov[chosen][order]
    if len(m) < 1:
        return out
    out |= {"bf_mean": float(m[0]), "bf_xcorr": float(c[0, 1, 0]), "bf_ycorr": float(c[0, 0, 1])}
    if len(m) < 2:
        return out
    for name, (i, j) in LAGS.items():
        slope, error = _line(m, c[:, i, j])
        key = {"cov10": "bf_slope_x", "cov01": "bf_slope_y"}.get(name, f"bf_slope_{name}")
        out[key] = slope
        if name in ("cov10", "cov01"):
            out[f"{key}_err"] = error
    return out


def gain_slope(mean: np.ndarray, used: np.ndarray, gain: np.ndarray | None) -> dict:
    """The per-pair gain's slope against the mean over its median, and the error.

    ``{"gain_slope": ..., "gain_slope_err": ...}`` over the ``used`` pairs with finite
    numbers; empty without two of them or without ``gain``.

    Examples
    --------
    >>> mean = np.array([1e4, 2e4, 3e4])
    >>> fitted = gain_slope(mean, np.ones(3, bool), 1.5 * (1 + 1e-7 * mean))
    >>> round(fitted["gain_slope"] * 1e7, 3)
    0.998
    """
    if gain is None:
        return {}
    chosen = np.asarray(used, bool) & np.isfinite(mean) & np.isfinite(gain)
    if chosen.sum() < 2:
        return {}
    typical = float(np.median(gain[chosen]))
    slope, error = _line(mean[chosen], gain[chosen] / typical)
    return {"gain_slope": slope, "gain_slope_err": error}


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of ``y`` on ``x`` and its standard error (linregress's)."""
    dx = x - x.mean()
    sxx = float(np.sum(dx * dx))
    if sxx == 0 or not np.isfinite(y).all():
        return math.nan, math.nan
    slope = float(np.sum(dx * (y - y.mean())) / sxx)
    dof = len(x) - 2
    if dof <= 0:
        return slope, math.nan
    residuals = y - y.mean() - slope * dx
    return slope, math.sqrt(float(np.sum(residuals**2)) / dof / sxx)

"""Where an amplifier stops responding: the PTC turnoff and the full well, defined once.

The two tools gpuptc reproduces name different things by these words:

- the **PTC turnoff** is the highest pair mean (ADU) a PTC fit keeps, so its value depends
  on which pairs the fit's selection keeps and on how densely the exposure times sample
  the signal near saturation (its sampling error, half the gap between the pairs around
  it, says how much). :data:`TURNOFF_DEFINITIONS` states each selection's rule;
- the **full well** (e-) is EOTEST's, from the flat-pair linearity: the signal in
  electrons at which a quadratic through the pairs around saturation falls 10 % below
  the line through the origin fitted at low signal (:func:`eotest_full_well`).

Both are given in ADU and in electrons (the gain of the fit that kept the pairs).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "FULL_WELL_DEFINITION",
    "TURNOFF_DEFINITIONS",
    "eotest_full_well",
    "turnoff_with_sampling_error",
]

TURNOFF_DEFINITIONS: dict[str, str] = {
    "cp_pipe": (
        "the highest pair mean (ADU) kept by cp_pipe's first outlier rejection "
        "(sigma cut, initial signal cap and jump rule), before any rolloff cut"
    ),
    "eotest": "the highest pair mean (ADU) kept by EOTEST's final 5-sigma re-selection",
}
"""What each tool calls the PTC turnoff, by the solve method whose selection makes it
(``seed`` selects as ``cp_pipe`` does for its EXPAPPROXIMATION fit)."""

FULL_WELL_DEFINITION = (
    "EOTEST's full well (e-): where a quadratic through the pairs from the last within 2 % "
    "of linear to the first 10 % below it falls 10 % below the line through the origin "
    "fitted between 100 and 50 000 e-"
)
"""What the ``full_well`` column (and EOTEST's FULL_WELL) is."""

_LINEAR_RANGE = (1e2, 5e4)
"""Signals (e-) of the line through the origin, EOTEST's."""
_NEAR_LINEAR = 0.02
"""The quadratic starts at the last pair within this fraction of the line."""
_FAR_FROM_LINEAR = 0.1
"""It ends at the first later pair this far below the line; the full well is where the
quadratic falls this far below it."""


def turnoff_with_sampling_error(mean: np.ndarray, kept: np.ndarray) -> tuple[float, float]:
    """The highest kept mean and cp_pipe's sampling error of it.

    The error is half the gap between the kept means' neighbours around the turnoff in
    signal order (the next mean above it and the kept one below), or the gap to the one
    below where nothing lies above: the resolution the exposure times give the turnoff.

    Parameters
    ----------
    mean : numpy.ndarray
        ``(n,)`` pair means (ADU), in any order.
    kept : numpy.ndarray
        ``(n,)`` the fit's selection.

    Returns
    -------
    turnoff, sampling_error : float
        ADU; NaN where nothing is kept (the error also where only one pair is).

    Examples
    --------
    >>> import numpy as np
    >>> turnoff_with_sampling_error(np.array([4e4, 1e4, 8e4, 2e4]), np.array([1, 1, 0, 1], bool))
    (40000.0, 30000.0)
    """
    mean = np.asarray(mean, float)
    order = np.argsort(mean, kind="stable")
    m, mask = mean[order], np.asarray(kept, bool)[order] & np.isfinite(mean[order])
    if not mask.any():
        return math.nan, math.nan
    last = int(np.flatnonzero(mask)[-1])
    turnoff = float(m[last])
    if last < 1:
        return turnoff, math.nan
    if last + 1 < len(m) and np.isfinite(m[last + 1]):
        return turnoff, float(0.5 * (m[last + 1] - m[last - 1]))
    return turnoff, float(turnoff - m[last - 1])


def eotest_full_well(flux: np.ndarray, mean: np.ndarray, gain: float) -> float:
    """EOTEST's full well (e-) of one amplifier from its flat pairs.

    The signal ``Ne = mean x gain`` against the flux (exposure time or photodiode
    charge): a line through the origin fitted where ``100 < Ne < 50 000`` e- (and no
    brighter than the brightest pair), a quadratic through the pairs from the last within
    2 % of the line to the first later one 10 % off it (EOTEST tests the deviation's
    absolute value, as here), and the full well is the quadratic's value where it falls
    10 % below the line. Where those are only two pairs
    (exposure times too sparse near saturation, as in most PTCs), the line through them
    replaces the quadratic, whose three terms two pairs cannot fix (EOTEST would fit an
    underdetermined quadratic).

    Parameters
    ----------
    flux : numpy.ndarray
        ``(n,)`` exposure times (s) or photodiode charges of the pairs.
    mean : numpy.ndarray
        ``(n,)`` pair means (ADU), every measured pair (saturated ones included).
    gain : float
        e-/ADU.

    Returns
    -------
    float
        e-; NaN when the pairs never fall 10 % below the line or without a finite gain.

    Examples
    --------
    A response that is linear (1000 e-/s) up to 150 000 e- and flat above it:

    >>> import numpy as np
    >>> t = np.linspace(5, 300, 60)
    >>> signal = np.minimum(1000 * t, 1.5e5)
    >>> round(eotest_full_well(t, signal / 2.0, 2.0) / 1.5e5, 2)
    1.0
    """
    flux, signal = np.asarray(flux, float), np.asarray(mean, float) * gain
    good = np.isfinite(flux) & np.isfinite(signal)
    if not math.isfinite(gain) or np.count_nonzero(good) < 3:
        return math.nan
    order = np.argsort(flux[good], kind="stable")
    flux, signal = flux[good][order], signal[good][order]
    slope = _slope_through_origin(flux, signal)
    if not math.isfinite(slope):
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        deficit = 1.0 - signal / (slope * flux)
    near = np.flatnonzero(np.abs(deficit) <= _NEAR_LINEAR)
    if not len(near):
        return math.nan
    start = int(near[-1])
    far = np.flatnonzero(np.abs(deficit[start:]) >= _FAR_FROM_LINEAR)
    if not len(far):
        return math.nan
    stop = start + int(far[0]) + 1
    degree = min(2, stop - start - 1)
    curve = np.polyfit(flux[start:stop], signal[start:stop], degree)
    return _where_below_line(np.pad(curve, (2 - degree, 0)), slope, (flux[start], flux[stop - 1]))


def _slope_through_origin(flux: np.ndarray, signal: np.ndarray) -> float:
    """EOTEST's line through the origin: ``N / sum(flux / Ne)`` over its signal range."""
    brightest = flux[int(np.argmax(signal))]
    low, high = _LINEAR_RANGE
    chosen = (signal > low) & (signal < high) & (flux <= brightest) & (flux > 0)
    if not chosen.any():
        return math.nan
    return float(np.count_nonzero(chosen) / np.sum(flux[chosen] / signal[chosen]))


def _where_below_line(quadratic: np.ndarray, slope: float, span: tuple[float, float]) -> float:
    """The quadratic's value where it falls to ``(1 - 0.1) x slope x flux`` within ``span``.

    ``quadratic`` holds three coefficients, the first 0 for a line.

    EOTEST solves the quadratic equation in closed form, taking the root where the
    quadratic crosses the line downwards; that root is taken here among those within the
    fitted fluxes, which stays finite when the quadratic is nearly a line.
    """
    a, b, c = quadratic
    linear = b - (1.0 - _FAR_FROM_LINEAR) * slope
    low, high = span
    falling = [
        float(r.real)
        for r in np.roots([a, linear, c])
        if abs(r.imag) <= 1e-9 * abs(r.real)
        and low <= r.real <= high
        and 2.0 * a * r.real + linear < 0
    ]
    if not falling:
        return math.nan
    value = float(np.polyval(quadratic, falling[0]))
    return value if value > 0 else math.nan

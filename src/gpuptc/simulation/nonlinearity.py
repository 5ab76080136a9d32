"""A known non-linear response per amplifier, which no linearizer type represents exactly.

The signal an amp reports falls short of the charge it collected by two smooth deficits:
a step of 0.5-2 % centred between 60 and 90 % of the full well (a tanh of width 10 % of
the full well), and a deficit of 0.1-0.3 % at low signal that fades over 15 000-40 000 ADU.
Both are smooth on the scale of a spline with ten evenly spaced nodes, which can follow
them to a few 1e-4; a polynomial of low order cannot. Each amp draws its own from a
stream of its own, so switching the non-linearity on leaves every other truth of the
sensor as it was.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["NONLINEARITY_COLUMNS", "nonlinearity_truth", "response"]

NONLINEARITY_COLUMNS = ("nl_step", "nl_center", "nl_width", "nl_low", "nl_low_scale")
"""The truth's columns of the non-linearity: the step's depth, centre and width (fractions
of the full well), the low-signal deficit's depth and its fading scale (ADU)."""


def nonlinearity_truth(rng: np.random.Generator, namps: int, on: bool) -> pd.DataFrame:
    """Each amp's non-linearity parameters (all zero when ``on`` is false: linear).

    Examples
    --------
    >>> truth = nonlinearity_truth(np.random.default_rng(1), 16, True)
    >>> bool(truth.nl_step.between(0.005, 0.02).all()), tuple(truth.columns)[:2]
    (True, ('nl_step', 'nl_center'))
    """
    if not on:
        return pd.DataFrame({column: np.zeros(namps) for column in NONLINEARITY_COLUMNS})
    return pd.DataFrame(
        {
            "nl_step": rng.uniform(0.005, 0.02, namps),
            "nl_center": rng.uniform(0.6, 0.9, namps),
            "nl_width": np.full(namps, 0.1),
            "nl_low": rng.uniform(0.001, 0.003, namps),
            "nl_low_scale": rng.uniform(15000.0, 40000.0, namps),
        }
    )


def response(signal_adu: np.ndarray, amp: pd.Series, full_well_adu: float) -> np.ndarray:
    """The signal an amp reports for a collected signal (both ADU), by its truth ``amp``.

    Parameters
    ----------
    signal_adu : numpy.ndarray
        The linear signal (collected charge over the gain).
    amp : pandas.Series
        One amp's truth (:data:`NONLINEARITY_COLUMNS`).
    full_well_adu : float
        Its full well, ADU.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype.

    Examples
    --------
    >>> amp = pd.Series({"nl_step": 0.01, "nl_center": 0.7, "nl_width": 0.04,
    ...                  "nl_low": 0.0, "nl_low_scale": 500.0})
    >>> np.round(response(np.array([1e3, 1.4e5]), amp, 1e5) / [1e3, 1.4e5], 4).tolist()
    [1.0, 0.99]
    """
    signal = np.asarray(signal_adu)
    fraction = signal / np.float32(full_well_adu)
    step = amp["nl_step"] * 0.5 * (1.0 + np.tanh((fraction - amp["nl_center"]) / amp["nl_width"]))
    low = amp["nl_low"] * np.exp(-signal / amp["nl_low_scale"])
    return (signal * (1.0 - step - low)).astype(signal.dtype, copy=False)

"""Photodiode readings of simulated flats, in the camera's text format.

The meter samples every 16.7 ms from before the shutter opens to a second after it
closes, each sample the mean current over its interval; the lamp's current reaches the
photodiode from a shutter delay on, for the exposure time, in proportion to the flat's
illumination (so the charge follows each flat's signal, illumination mismatch included).
The current is positive, as in the camera's own files, on a small pedestal, with 0.1 %
noise on the lamp's current and 50 fA on the pedestal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "AMPERES_PER_ELECTRON_RATE",
    "SAMPLE_S",
    "SHUTTER_DELAY_S",
    "readings",
    "write_readings",
]

SAMPLE_S = 0.0167
"""The meter's sampling interval, s (the camera's files)."""
SHUTTER_DELAY_S = 0.3
"""When the light reaches the photodiode after the meter starts, s."""
AMPERES_PER_ELECTRON_RATE = 1e-12
"""Photodiode current per electron per second per pixel of the flat, A."""
_PEDESTAL_A = 1e-13
_PEDESTAL_NOISE_A = 5e-14
_LAMP_NOISE = 1e-3


def readings(
    exptime: float, electrons_per_s: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sample times (s) and currents (A) of one flat.

    Examples
    --------
    >>> time, current = readings(2.0, 1000.0, np.random.default_rng(0))
    >>> round(float(np.trapezoid(current, time)) / (2.0 * 1e-9), 2)
    1.0
    """
    time = np.arange(0.0, SHUTTER_DELAY_S + exptime + 1.0, SAMPLE_S)
    opens, closes = SHUTTER_DELAY_S, SHUTTER_DELAY_S + exptime
    # each sample is the mean current over its interval: lit for part of it at the edges
    lit = np.clip(
        (np.minimum(time + SAMPLE_S / 2, closes) - np.maximum(time - SAMPLE_S / 2, opens))
        / SAMPLE_S,
        0.0,
        1.0,
    )
    lamp = AMPERES_PER_ELECTRON_RATE * electrons_per_s
    current = lamp * lit * (1.0 + _LAMP_NOISE * rng.standard_normal(len(time)))
    current += _PEDESTAL_A + _PEDESTAL_NOISE_A * rng.standard_normal(len(time))
    return np.round(time, 4), current


def write_readings(path: Path, time: np.ndarray, current: np.ndarray) -> None:
    """The readings as the camera writes them: ``<time> <current>`` per line, no header."""
    lines = (f"{t:.4f} {c:.6g}" for t, c in zip(time, current, strict=True))
    path.write_text("\n".join(lines) + "\n")

"""One row per sensor for the focal-plane summary: typical values and the amps to look at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gpuptc.report.focal_plane import representative_model
from gpuptc.schema import FitStatus

__all__ = ["AMP_FLAGS", "flagged_amps", "sensor_summary"]


@dataclass(frozen=True)
class AmpFlag:
    """A test an amp fails when its value is far from its sensor's other amps."""

    quantity: str
    text: str

    def describe(self) -> str:
        return f"{self.quantity}: {self.text}"


GAIN_SPREAD = 0.05
"""Gain further than this fraction from the sensor's median gain."""
NOISE_FACTOR = 1.5
"""Read noise above this multiple of the sensor's median read noise."""
TURNOFF_FACTOR = 0.8
"""Turnoff below this fraction of the sensor's median turnoff."""
CHI2_LIMIT = 5.0
"""Reduced chi^2 of the PTC fit above this."""
REFERENCE_SPREAD = 0.02
"""Gain further than this fraction from a reference's (EOTEST, cp_pipe)."""

AMP_FLAGS: tuple[AmpFlag, ...] = (
    AmpFlag("fit", "the PTC fit failed"),
    AmpFlag("gain", f"more than {GAIN_SPREAD:.0%} from the sensor's median"),
    AmpFlag("noise", f"above {NOISE_FACTOR:g} x the sensor's median"),
    AmpFlag("turnoff", f"below {TURNOFF_FACTOR:g} x the sensor's median"),
    AmpFlag("chi2/dof", f"above {CHI2_LIMIT:g}"),
    AmpFlag("reference", f"gain more than {REFERENCE_SPREAD:.0%} from a reference's"),
)
"""What marks an amp as one to look at, in the order the summary lists them."""


def _reference_ratios(comparison: pd.DataFrame | None, model: str) -> pd.Series:
    """Worst gain / reference - 1 per (sensor, amp) of ``model``."""
    if comparison is None or comparison.empty:
        return pd.Series(dtype=float)
    gains = comparison[
        (comparison["quantity"] == "gain")
        & (comparison["method"] == model)
        & comparison["ratio"].notna()
    ]
    deviation = (gains["ratio"] - 1).abs()
    worst = deviation.groupby([gains["sensor"], gains["amp"]]).idxmax()
    return (gains.loc[worst.to_numpy(), "ratio"] - 1).set_axis(worst.index)


def flagged_amps(ptc: pd.DataFrame, comparison: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every amp that fails a test of :data:`AMP_FLAGS`, with what it fails.

    Parameters
    ----------
    ptc : pandas.DataFrame
        The run's ``ptc`` table; the EXPAPPROXIMATION rows are judged (else the first
        fitted model's).
    comparison : pandas.DataFrame, optional
        The run's ``comparison`` table, for the references.

    Returns
    -------
    pandas.DataFrame
        ``sensor``, ``amp``, ``segment``, ``flags`` (text, one entry per failed test) and
        ``count``.
    """
    model = representative_model(ptc)
    fits = ptc[ptc["model"] == model].copy()
    medians = fits.groupby("sensor")[["gain", "noise", "turnoff"]].transform("median")
    ratios = _reference_ratios(comparison, model)
    found = []
    for k, row in enumerate(fits.itertuples()):
        flags = []
        if row.status != FitStatus.OK:
            flags.append(f"fit {row.status}")
        deviation = row.gain / medians["gain"].iloc[k] - 1
        if abs(deviation) > GAIN_SPREAD:
            flags.append(f"gain {100 * deviation:+.1f} %")
        if row.noise > NOISE_FACTOR * medians["noise"].iloc[k]:
            flags.append(f"noise {row.noise:.2f} e-")
        if row.turnoff < TURNOFF_FACTOR * medians["turnoff"].iloc[k]:
            flags.append(f"turnoff {row.turnoff:.0f} ADU")
        if row.chi2_dof > CHI2_LIMIT:
            flags.append(f"chi2/dof {row.chi2_dof:.1f}")
        off = ratios.get((row.sensor, row.amp), np.nan)
        if abs(off) > REFERENCE_SPREAD:
            flags.append(f"gain/reference {1 + off:.3f}")
        if flags:
            found.append((row.sensor, row.amp, row.segment, "; ".join(flags), len(flags)))
    return pd.DataFrame(found, columns=["sensor", "amp", "segment", "flags", "count"])


def _worst(flagged: pd.DataFrame, most: int) -> str:
    ranked = flagged.sort_values(["count", "amp"], ascending=[False, True])
    listed = [f"amp {r.amp} ({r.segment}): {r.flags}" for r in ranked.head(most).itertuples()]
    if len(ranked) > most:
        listed.append(f"and {len(ranked) - most} more")
    return "\n".join(listed)


def sensor_summary(tables: Mapping[str, pd.DataFrame], most: int = 3) -> pd.DataFrame:
    """One row per sensor: its typical values and the amps to look at.

    Amps fitted, median gain and noise, lowest turnoff, median a00, how many amps fail a
    test of :data:`AMP_FLAGS` and the worst of them.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        The run's ``ptc`` and (optionally) ``comparison`` tables.
    most : int
        Flagged amps listed per sensor (the ones failing most tests first).

    Returns
    -------
    pandas.DataFrame
        Indexed by sensor; numbers rounded for the page, column names with units; the
        worst amps one per line.
    """
    ptc = tables["ptc"]
    model = representative_model(ptc)
    fits = ptc[ptc["model"] == model]
    flagged = flagged_amps(ptc, tables.get("comparison"))
    grouped = fits.groupby("sensor")
    out = pd.DataFrame(
        {
            "amps fitted": grouped["status"].agg(
                lambda s: f"{int((s == FitStatus.OK).sum())}/{len(s)}"
            ),
            "median gain (e-/ADU)": grouped["gain"].median().round(4),
            "median noise (e-)": grouped["noise"].median().round(2),
            "lowest turnoff (ADU)": grouped["turnoff"].min().round(0),
            "median a00 (1/e-)": grouped["a00"]
            .median()
            .map(lambda v: f"{v:.3e}" if np.isfinite(v) else ""),
        }
    )
    out.index.name = "sensor"
    by_sensor = dict(tuple(flagged.groupby("sensor")))
    out["amps flagged"] = [len(by_sensor.get(s, ())) for s in out.index]
    out["worst amps"] = [_worst(by_sensor[s], most) if s in by_sensor else "" for s in out.index]
    return out

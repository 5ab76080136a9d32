"""One row per sensor for the focal-plane summary: its verdict, typical values, amps to look at."""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpuptc.products.verdict import amps_to_look_at, sensor_verdicts

__all__ = ["sensor_summary"]


def _worst(amps: pd.DataFrame, most: int) -> str:
    ranked = amps_to_look_at(amps)
    listed = [f"amp {r.amp} ({r.segment}): {r.flags}" for r in ranked.head(most).itertuples()]
    if len(ranked) > most:
        listed.append(f"and {len(ranked) - most} more")
    return "\n".join(listed)


def sensor_summary(
    verdicts: pd.DataFrame, most: int = 3, linearity: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per sensor: its verdict, typical values and the amps to look at.

    Parameters
    ----------
    verdicts : pandas.DataFrame
        The run's ``verdict`` table (:func:`gpuptc.products.verdict.amp_verdicts`).
    most : int
        Amps listed per sensor (failing ones first, then those to check).
    linearity : pandas.DataFrame, optional
        The run's ``linearity`` table: each sensor's largest eo_pipe maximum fractional
        deviation, and the amp it is on.

    Returns
    -------
    pandas.DataFrame
        Indexed by sensor: its verdict, amps fitted, median gain and noise, lowest
        turnoff, full-well range, median a00, amps failing and to check, the worst amps
        one per line; numbers rounded for the page, column names with units.
    """
    grouped = verdicts.groupby("sensor")
    lines = sensor_verdicts(verdicts).set_index("sensor")
    out = pd.DataFrame(
        {
            "verdict": lines["verdict"],
            "amps fitted": grouped["flag_fit"].agg(lambda s: f"{int((~s).sum())}/{len(s)}"),
            "median gain (e-/ADU)": grouped["gain"].median().round(4),
            "median noise (e-)": grouped["noise"].median().round(2),
            "lowest turnoff (ADU)": grouped["turnoff"].min().round(0),
            "full well (e-)": grouped["full_well"].agg(_range),
            "median a00 (1/e-)": grouped["a00"]
            .median()
            .map(lambda v: f"{v:.3e}" if np.isfinite(v) else ""),
            "amps failing": lines["failing"],
            "amps to check": lines["to_check"],
        }
    )
    out.index.name = "sensor"
    if linearity is not None and not linearity.empty:
        out["worst max. frac. dev. (amp)"] = (
            _worst_deviation(linearity).reindex(out.index).fillna("")
        )
    out["worst amps"] = [_worst(amps, most) for _, amps in grouped]
    return out


def _worst_deviation(linearity: pd.DataFrame) -> pd.Series:
    """Each sensor's largest maximum fractional deviation and its amp, as text."""
    known = linearity.dropna(subset=["max_frac_dev"])
    worst = known.loc[known.groupby("sensor")["max_frac_dev"].idxmax()]
    text = [f"{row.max_frac_dev:.2e} ({row.segment})" for row in worst.itertuples()]
    return pd.Series(text, index=worst["sensor"].to_numpy(), dtype=object)


def _range(values: pd.Series) -> str:
    finite = values[np.isfinite(values.to_numpy(float))]
    return f"{finite.min():,.0f}-{finite.max():,.0f}" if len(finite) else ""

"""The per-amp numbers of one sensor, as the report shows them: value +- error, with units."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["amp_numbers"]

_BF_LAGS = {"a00": (0, 0), "a01": (0, 1), "a10": (1, 0)}
"""The brighter-fatter coefficients shown: a_ij with i the serial lag, j the parallel lag."""


def _with_error(value: float, error: float, digits: int = 4) -> str:
    if not np.isfinite(value):
        return ""
    if not np.isfinite(error) or error <= 0:
        return f"{value:.{digits}g}"
    places = max(0, 1 - math.floor(math.log10(error)))  # two significant digits
    if abs(value) < 1e-3 or abs(value) >= 1e6:
        return f"{value:.3e} ± {error:.1e}"
    return f"{value:.{places}f} ± {error:.{places}f}"


def amp_numbers(sensor: str, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per amp: gains, read noise, turnoff, a00/a01/a10, chi^2 and the references.

    Every model's gain with its error, the EXPAPPROXIMATION read noise, turnoff and chi^2
    per degree of freedom, the full-covariance a00, a01, a10 with errors and the
    EXPAPPROXIMATION gain over each reference's.

    Parameters
    ----------
    sensor : str
        The sensor.
    tables : mapping of str to pandas.DataFrame
        ``ptc``, ``fullcov`` and ``comparison`` of the run.

    Returns
    -------
    pandas.DataFrame
        Text cells, column names with units.
    """
    ptc = tables["ptc"][tables["ptc"]["sensor"] == sensor]
    out = pd.DataFrame(index=pd.Index(sorted(ptc["amp"].unique()), name="amp"))
    for model, rows in ptc.groupby("model", sort=False):
        rows = rows.set_index("amp")
        out[f"gain {model} (e-/ADU)"] = [
            _with_error(rows.at[a, "gain"], rows.at[a, "gain_err"]) if a in rows.index else ""
            for a in out.index
        ]
    base = ptc[ptc["model"] == "expapprox"].set_index("amp").reindex(out.index)
    noise = zip(base["noise"], base["noise_err"], strict=True)
    out["noise (e-)"] = [_with_error(v, e, 3) for v, e in noise]
    out["turnoff (ADU)"] = [f"{v:.0f}" if np.isfinite(v) else "" for v in base["turnoff"]]
    out["chi2/dof expapprox"] = [f"{v:.2f}" if np.isfinite(v) else "" for v in base["chi2_dof"]]
    _brighter_fatter(out, tables["fullcov"], sensor)
    _references(out, tables["comparison"], sensor)
    return out.reset_index()


def _brighter_fatter(out: pd.DataFrame, fullcov: pd.DataFrame, sensor: str) -> None:
    model = "fullcov" if (fullcov["model"] == "fullcov").any() else "fullcov_nob"
    mine = fullcov[(fullcov["sensor"] == sensor) & (fullcov["model"] == model)]
    if mine.empty:
        return
    indexed = mine.set_index(["amp", "i", "j"])
    for name, lag in _BF_LAGS.items():
        cells = []
        for amp in out.index:
            key = (amp, *lag)
            found = key in indexed.index
            a = indexed.at[key, "a"] if found else math.nan
            cells.append(_with_error(a, indexed.at[key, "a_err"] if found else math.nan))
        out[f"{name} {model} (1/e-)"] = cells


def _references(out: pd.DataFrame, comparison: pd.DataFrame, sensor: str) -> None:
    gains = comparison[
        (comparison["sensor"] == sensor)
        & (comparison["quantity"] == "gain")
        & (comparison["method"] == "expapprox")
        & comparison["reference_value"].notna()
    ]
    for reference, rows in gains.groupby("reference", sort=False):
        ratio = rows.set_index("amp")["ratio"].reindex(out.index)
        out[f"expapprox gain / {reference}"] = [f"{v:.4f}" if np.isfinite(v) else "" for v in ratio]

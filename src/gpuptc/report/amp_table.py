"""The per-amp numbers of one sensor, as the report shows them: value +- error, with units."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from gpuptc.products.verdict import JUDGED_CHI2_MODELS

__all__ = ["amp_numbers", "full_covariance_model", "verdict_table"]

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
    """One row per amp: every model's gain and chi^2, a00/a01/a10 and the references.

    Every model's gain with its error, the EXPAPPROXIMATION read noise and turnoff, every
    model's chi^2 per degree of freedom, the full-covariance a00, a01, a10 with errors
    and the EXPAPPROXIMATION gain over each reference's.

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
    for model, rows in ptc.groupby("model", sort=False):
        chi2 = rows.set_index("amp")["chi2_dof"].reindex(out.index)
        out[f"chi2/dof {model}"] = [f"{v:.2f}" if np.isfinite(v) else "" for v in chi2]
    _brighter_fatter(out, tables["fullcov"], sensor)
    _references(out, tables["comparison"], sensor)
    return out.reset_index()


def full_covariance_model(fullcov: pd.DataFrame, sensor: str) -> str:
    """The full-covariance fit a sensor's page shows: with b where fitted, else without."""
    mine = set(fullcov.loc[fullcov["sensor"] == sensor, "model"])
    return "fullcov" if "fullcov" in mine or "fullcov_nob" not in mine else "fullcov_nob"


def _brighter_fatter(out: pd.DataFrame, fullcov: pd.DataFrame, sensor: str) -> None:
    model = full_covariance_model(fullcov, sensor)
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


def verdict_table(sensor: str, verdicts: pd.DataFrame, ptc: pd.DataFrame) -> pd.DataFrame:
    """The first table of a sensor's page: per amp its verdict and adopted numbers.

    Parameters
    ----------
    sensor : str
        The sensor.
    verdicts : pandas.DataFrame
        The run's ``verdict`` table.
    ptc : pandas.DataFrame
        The run's ``ptc`` table, for the chi^2 of each PTC model.

    Returns
    -------
    pandas.DataFrame
        Text cells, column names with units: the verdict, the adopted model's gain, the
        per-pixel read noise, the PTC noise the ISR's model expects and the fitted one
        (``*`` where cp_pipe would warn that it is 5 % from the overscan's), turnoff in
        ADU with its sampling error and in electrons, full well, a00, the PTC models' chi^2/dof, the
        full-covariance gain's difference from the adopted one, the gain over the
        farthest reference and the tests failed.
    """
    mine = verdicts[verdicts["sensor"] == sensor].set_index("amp").sort_index()
    model = str(mine["model"].iloc[0]) if len(mine) else ""
    fits = ptc[ptc["sensor"] == sensor]
    judged = [m for m in JUDGED_CHI2_MODELS if m in set(fits["model"])]
    chi2 = fits.pivot_table(index="amp", columns="model", values="chi2_dof", dropna=False)
    chi2 = chi2.reindex(index=mine.index, columns=judged)
    out = pd.DataFrame(index=mine.index)
    out["verdict"] = mine["verdict"]
    out[f"gain {model} (e-/ADU)"] = _cells(mine["gain"], mine["gain_err"])
    out["read noise (e-)"] = [_number(v, ".2f") for v in mine["read_noise"]]
    out["PTC noise (e-): expected / fitted"] = [
        f"{_number(x, '.2f')} / {_with_error(p, e, 3)}" + (" *" if warned else "")
        for x, p, e, warned in zip(
            mine["expected_noise"],
            mine["noise"],
            mine["noise_err"],
            mine["cp_pipe_noise_warning"],
            strict=True,
        )
    ]
    out["turnoff ADU (e-)"] = [
        f"{_with_error(t, err)} ({_number(e, ',.0f')})"
        for t, err, e in zip(
            mine["turnoff"], mine["turnoff_err"], mine["turnoff_electrons"], strict=True
        )
    ]
    out["full well (e-)"] = [_number(v, ",.0f") for v in mine["full_well"]]
    out["a00 (1/e-)"] = _cells(mine["a00"], mine["a00_err"])
    out[f"chi2/dof {' / '.join(judged)}"] = [
        " / ".join(_number(chi2.at[amp, m], ".2f") for m in judged) for amp in mine.index
    ]
    out["full-cov. gain off"] = [_number(100 * v, ".2f", " %") for v in mine["model_spread"]]
    out["gain / reference"] = [_number(v, ".4f") for v in mine["reference_ratio"]]
    out["flags"] = mine["flags"]
    return out.reset_index()


def _cells(values: pd.Series, errors: pd.Series) -> list[str]:
    return [_with_error(v, e) for v, e in zip(values, errors, strict=True)]


def _number(value: float, spec: str, unit: str = "") -> str:
    return f"{value:{spec}}{unit}" if np.isfinite(value) else "-"

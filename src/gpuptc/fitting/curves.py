"""The fitted models evaluated where the report draws them, once, as a table.

The fit knows its models; the report only draws. :func:`model_curves` evaluates every
fitted PTC model at each measured pair's mean (the curves of the PTC grids and the
residuals) and the full-covariance model's nearest-lag covariances on a grid of means (the
curves of the covariance grid). The table is stored with each sensor's results and written
as ``curves.parquet``, so that ``gpuptc report`` redraws from it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.config import SolveConfig
from gpuptc.fitting.ptc import eq16, notebook_selection, point_errors
from gpuptc.fitting.solve import fit_matrices, model_covariances
from gpuptc.schema import PairStatus

__all__ = ["COVARIANCE_CURVE_POINTS", "CURVE_COLUMNS", "NEAREST_LAGS", "model_curves"]

CURVE_COLUMNS: tuple[str, ...] = (
    "sensor",
    "amp",
    "model",
    "lag",
    "pair",
    "mean",
    "value",
    "error",
    "fitted",
)
"""``lag`` ``"00"`` is the variance at pair ``pair``'s mean (ADU^2; eq. 20's for the
full-covariance models, eq. 16's for EXPAPPROXIMATION), with the error the model's chi^2
gives that pair's variance (:func:`gpuptc.fitting.ptc.point_errors`) and whether the pair
entered the fit; ``"10"``, ``"01"``, ``"11"`` the full-covariance model's covariance
(ADU^2) at ``mean`` (``pair`` -1, no error, not fitted)."""

NEAREST_LAGS: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (0, 1), (0, 2), (1, 1))
"""The lags whose model curves the covariance grid draws (eo_pipe's five; those beyond a
fit's lags are left out)."""

COVARIANCE_CURVE_POINTS = 49
"""Means of a covariance curve, evenly spaced up to the amp's largest used mean."""

_DTYPES = {
    "amp": "int64",
    "pair": "int64",
    "mean": "float64",
    "value": "float64",
    "error": "float64",
    "fitted": "bool",
}


def _variance_curves(
    fits: pd.DataFrame, mean: np.ndarray, matrices: dict[str, pd.DataFrame]
) -> dict[str, np.ndarray]:
    """Each model's variance at ``mean``, from its row of the ``ptc`` table.

    The full-covariance models' from their matrices where given (eq. 20's C_00).
    """
    curves = {}
    for row in fits.itertuples():
        if not np.isfinite(row.gain):
            continue
        if row.model in matrices:
            rows = matrices[row.model]
            side = int(rows["i"].max()) + 1
            curves[row.model] = model_covariances(fit_matrices(rows, side), row.gain, mean)[:, 0, 0]
        elif row.model in ("expapprox", "fullcov", "fullcov_nob") and np.isfinite(row.a00):
            noise2 = row.noise**2 if np.isfinite(row.noise) else 0.0
            curves[row.model] = eq16(mean, row.a00, row.gain, noise2)
        elif row.model == "quadratic" and np.isfinite(row.a00):
            c0 = (row.noise / row.gain) ** 2 if np.isfinite(row.noise) else 0.0
            curves[row.model] = c0 + mean / row.gain + row.a00 * mean**2
        elif row.model == "linear":
            c0 = (row.noise / row.gain) ** 2 if np.isfinite(row.noise) else 0.0
            curves[row.model] = c0 + mean / row.gain
        elif row.model == "powerlaw" and np.isfinite(getattr(row, "powerlaw_index", math.nan)):
            with np.errstate(invalid="ignore", divide="ignore"):
                curves[row.model] = row.powerlaw_amplitude * mean**row.powerlaw_index
    return curves


def _fitted(model: str, rows: pd.DataFrame, fits: pd.DataFrame, solve: SolveConfig) -> np.ndarray:
    """Which of an amp's measured pairs entered ``model``'s fit, by the rule it applied.

    EXPAPPROXIMATION and the full-covariance fits take the ``used`` pairs (under ``seed``,
    where ``used`` is every pair, they took the EXPAPPROXIMATION selection, which the
    tables do not keep: every pair is marked), the notebook fits their range of the
    EXPAPPROXIMATION turnoff (every pair where the table has none).
    """
    used = rows["used"].fillna(False).to_numpy(bool)
    mean, var = rows["mean"].to_numpy(float), rows["var"].to_numpy(float)
    if model in ("linear", "quadratic", "powerlaw"):
        expapprox = fits[fits["model"] == "expapprox"]["turnoff"]
        turnoff = float(expapprox.iloc[0]) if len(expapprox) else math.nan
        ranges = getattr(solve, f"{model}_range"), getattr(solve, f"{model}_points")
        return notebook_selection(mean, var, turnoff, *ranges)
    if model in ("fullcov", "fullcov_nob") and solve.fullcov_max_signal is not None:
        gain = fits.loc[fits["model"] == "expapprox", "gain"]
        if len(gain) and np.isfinite(gain.iloc[0]):
            return used & (mean * float(gain.iloc[0]) <= solve.fullcov_max_signal)
    return used


class _Columns:
    """The curves' columns, gathered curve by curve and made into one table at the end."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {column: [] for column in CURVE_COLUMNS}

    def add(
        self,
        key: tuple[str, int, str, str],
        pair: Any,
        mean: np.ndarray,
        value: np.ndarray,
        error: np.ndarray | None = None,
        fitted: np.ndarray | None = None,
    ) -> None:
        """One curve: ``key`` is (sensor, amp, model, lag), repeated on each of its points."""
        for column, item in zip(("sensor", "amp", "model", "lag"), key, strict=True):
            self.parts[column].append(np.full(len(mean), item, dtype=object))
        self.parts["pair"].append(np.broadcast_to(np.asarray(pair, dtype=np.int64), mean.shape))
        self.parts["mean"].append(mean)
        self.parts["value"].append(value)
        self.parts["error"].append(np.full(mean.shape, np.nan) if error is None else error)
        self.parts["fitted"].append(np.zeros(mean.shape, bool) if fitted is None else fitted)

    def frame(self) -> pd.DataFrame:
        if not self.parts["mean"]:
            return pd.DataFrame({c: pd.Series(dtype=_DTYPES.get(c, object)) for c in CURVE_COLUMNS})
        columns = {c: np.concatenate(arrays) for c, arrays in self.parts.items()}
        return pd.DataFrame(columns).astype(_DTYPES)


def _ptc_rows(
    pairs: pd.DataFrame,
    ptc: pd.DataFrame,
    fullcov: pd.DataFrame,
    solve: SolveConfig,
    out: _Columns,
) -> None:
    fits = ptc.groupby(["sensor", "amp"], sort=True)
    matrices = {
        key: dict(tuple(rows.groupby("model"))) for key, rows in fullcov.groupby(["sensor", "amp"])
    }
    measured = pairs[pairs["status"].isin(PairStatus.MEASURED)] if "status" in pairs else pairs
    for (sensor, amp), rows in measured.groupby(["sensor", "amp"], sort=True):
        if (sensor, amp) not in fits.groups:
            continue
        rows = rows.sort_values("pair")  # the order the fits took them in
        mine = fits.get_group((sensor, amp))
        mean = rows["mean"].to_numpy(float)
        counts = _counts(rows)
        curves = _variance_curves(mine, mean, matrices.get((sensor, amp), {}))
        for model, curve in curves.items():
            errors = point_errors(model, solve.method, rows["var"].to_numpy(float), counts)
            fitted = _fitted(model, rows, mine, solve)
            out.add(
                (sensor, amp, model, "00"), rows["pair"].to_numpy(), mean, curve, errors, fitted
            )


def _counts(rows: pd.DataFrame) -> np.ndarray:
    """Pixels behind each variance: the covariances' where measured, else the pair's."""
    counts = rows["npix"].to_numpy(float)
    if "cov_pixels" in rows:
        covariance = rows["cov_pixels"].to_numpy(float)
        counts = np.where(np.isfinite(covariance) & (covariance > 0), covariance, counts)
    return counts


def _covariance_rows(
    pairs: pd.DataFrame, ptc: pd.DataFrame, fullcov: pd.DataFrame, out: _Columns
) -> None:
    used = pairs[pairs["used"].fillna(False).astype(bool)]
    for (sensor, model), matrices in fullcov.groupby(["sensor", "model"], sort=True):
        gains = ptc[(ptc["sensor"] == sensor) & (ptc["model"] == model)].set_index("amp")["gain"]
        means = used[used["sensor"] == sensor].groupby("amp")["mean"].max()
        for amp, rows in matrices.groupby("amp", sort=True):
            gain = gains.get(amp, np.nan)
            if amp not in means.index or not np.isfinite(gain):
                continue
            grid = np.linspace(0, float(means[amp]), COVARIANCE_CURVE_POINTS + 1)[1:]
            side = int(rows["i"].max()) + 1
            cube = model_covariances(fit_matrices(rows, side), gain, grid)
            for i, j in NEAREST_LAGS:
                if i < side and j < side:
                    out.add((sensor, amp, model, f"{i}{j}"), -1, grid, cube[:, i, j])


def model_curves(
    pairs: pd.DataFrame,
    ptc: pd.DataFrame,
    fullcov: pd.DataFrame,
    solve: SolveConfig | None = None,
) -> pd.DataFrame:
    """Every fitted model evaluated where the report draws it.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The measured pairs, ``used`` filled (:func:`gpuptc.fit`).
    ptc, fullcov : pandas.DataFrame
        The fits (:func:`gpuptc.fit`).
    solve : SolveConfig, optional
        The preset's fit settings the fits were made with (default cp_pipe's): which pairs
        each model took and what its chi^2 calls an error.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CURVE_COLUMNS`: each model's variance at every pair's mean
        (``lag`` ``"00"``) with the pair's error in that model's chi^2 and whether the
        fit took it, and the full-covariance models' :data:`NEAREST_LAGS`
        covariances on :data:`COVARIANCE_CURVE_POINTS` means up to each amp's largest used
        mean.

    Examples
    --------
    The curves of a small simulated sensor's fits (``pairs`` and ``covariances`` measured
    by :func:`gpuptc.measure`):

    >>> from gpuptc import fit
    >>> ptc, fullcov, fitted = fit(pairs, covariances, models=["expapprox"])
    >>> curves = model_curves(fitted, ptc, fullcov)
    >>> curves.groupby(["model", "lag"]).size().to_dict()  # 16 amps x 6 pairs each
    {('expapprox', '00'): 96}
    >>> model = curves.set_index(["amp", "pair"])["value"]
    >>> used = fitted[fitted.used].set_index(["amp", "pair"])["var"]
    >>> bool(((used / model.reindex(used.index)) - 1).abs().max() < 0.1)  # within 10 %
    True
    """
    out = _Columns()
    _ptc_rows(pairs, ptc, fullcov, solve or SolveConfig(), out)
    _covariance_rows(pairs, ptc, fullcov, out)
    return out.frame()

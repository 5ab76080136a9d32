"""Table-level PTC fits: every model for every amplifier, and the ``used`` selection.

``fit(pairs, covariances, preset=...)`` turns the tables of :func:`gpuptc.measure` into
the ``ptc`` table (one row per sensor, amp and model) and fills ``used`` in ``pairs``;
``fit_ptc(mean, var, ...)`` fits one PTC for users who already have measurements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.config import Preset, SolveConfig, get_preset
from gpuptc.fullcov import FullCovFit, fit_fullcov
from gpuptc.ptc import (
    MODELS,
    PtcFit,
    fit_expapprox_cp_pipe,
    fit_expapprox_eotest,
    fit_linear,
    fit_powerlaw,
    fit_quadratic,
    fit_rhl,
)

__all__ = ["FULLCOV_COLUMNS", "MEASURED_STATUSES", "PTC_COLUMNS", "fit", "fit_ptc"]

PTC_COLUMNS: tuple[str, ...] = (
    "sensor",
    "amp",
    "segment",
    "model",
    "gain",
    "gain_err",
    "noise",
    "noise_err",
    "a00",
    "a00_err",
    "turnoff",
    "n_used",
    "chi2_dof",
    "status",
)
MEASURED_STATUSES: tuple[str, ...] = ("ok", "too_few_pixels_for_covariance")
"""Pair statuses (set by :func:`gpuptc.measure`) whose mean and variance are fitted."""
FULLCOV_COLUMNS: tuple[str, ...] = (
    "sensor",
    "amp",
    "model",
    "i",
    "j",
    "a",
    "a_err",
    "b",
    "b_err",
    "noise",
)


def _slice(points: tuple[int | None, int | None]) -> slice:
    return slice(points[0], points[1])


def _expapprox(
    mean: np.ndarray, var: np.ndarray, weights: np.ndarray, solve: SolveConfig
) -> PtcFit:
    if solve.method == "eotest":
        return fit_expapprox_eotest(
            mean, var, initial_max_mean=solve.eotest_initial_max_mean, sigma_cut=solve.sigma_cut
        )
    return fit_expapprox_cp_pipe(mean, var, weights, settings=solve)


def fit_ptc(
    mean: Sequence[float] | np.ndarray,
    var: Sequence[float] | np.ndarray,
    model: str = "expapprox",
    preset: str | Preset = "cp_pipe",
    *,
    cov: np.ndarray | None = None,
    npix: np.ndarray | None = None,
    gains: np.ndarray | None = None,
    **options: Any,
) -> PtcFit:
    """Fit one PTC from measurements you already have.

    Parameters
    ----------
    mean, var : array-like
        Per-pair mean (ADU) and per-image variance (ADU^2), in exposure order.
    model : str
        ``expapprox``, ``fullcov``, ``fullcov_nob``, ``linear``, ``quadratic``,
        ``powerlaw`` or ``rhl``.
    preset : str or Preset
        Fixes the fit procedure (``eotest``, ``cp_pipe``, ``cp_pipe_lsstcam``, ``seed``).
    cov : array, optional
        ``(n, L, L)`` covariances ``[i, j]``, for ``fullcov`` and ``fullcov_nob`` (fitted
        on the pairs the EXPAPPROXIMATION selection keeps).
    npix : array, optional
        Pixels behind each variance, ``(n,)``, or behind each covariance, ``(n, L, L)``
        for the full-covariance models: the weights of cp_pipe's fits (default equal).
    gains : array, optional
        Per-pair gains, for ``rhl``.
    **options
        Preset field overrides (``sigma_cut=4``, ``linear_points=(2, None)``, ...).

    Returns
    -------
    PtcFit
        gain, gain_err, noise, noise_err, a00, a00_err, turnoff, mask, status.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuptc.ptc import eq16
    >>> mu = np.linspace(1e3, 9e4, 20)
    >>> result = fit_ptc(mu, eq16(mu, -1.2e-6, 0.75, 1.5))
    >>> round(result.gain, 6), result.status
    (0.75, 'ok')
    """
    config = get_preset(preset, **options)
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    if mean.shape != var.shape or mean.ndim != 1:
        raise ValueError(f"mean {mean.shape} and var {var.shape} must be 1-D and of one length")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    solve = config.solve
    counts = np.ones_like(mean) if npix is None else np.asarray(npix, dtype=np.float64)
    if counts.ndim == 3:
        counts = counts[:, 0, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.sqrt(counts / 2.0) / var
    if model == "expapprox":
        return _expapprox(mean, var, weights, solve)
    if model in ("fullcov", "fullcov_nob"):
        if cov is None:
            raise ValueError(f"model {model!r} needs the covariances (cov=..., npix=...)")
        counts3 = np.ones_like(cov) if npix is None else np.asarray(npix, dtype=np.float64)
        used = _fullcov_mask(mean, _expapprox(mean, var, weights, solve), solve)
        return _as_ptc_fit(
            fit_fullcov(
                mean[used],
                np.asarray(cov)[used],
                counts3[used],
                var[used],
                with_b=model == "fullcov",
                size=solve.fullcov_size,
            ),
            used,
        )
    if model == "linear":
        return fit_linear(mean, var, points=_slice(solve.linear_points))
    if model == "quadratic":
        return fit_quadratic(mean, var, points=_slice(solve.quadratic_points))
    if model == "powerlaw":
        return fit_powerlaw(mean, var, points=_slice(solve.powerlaw_points))
    if gains is None:
        raise ValueError("model 'rhl' needs the per-pair gains (gains=...)")
    return fit_rhl(gains)


def _fullcov_mask(mean: np.ndarray, expapprox: PtcFit, solve: SolveConfig) -> np.ndarray:
    """Pairs for the full-covariance fits: the EXPAPPROXIMATION selection, optionally cut."""
    mask = expapprox.mask if len(expapprox.mask) == len(mean) else np.zeros(len(mean), bool)
    if solve.fullcov_max_signal is not None and np.isfinite(expapprox.gain):
        mask = mask & (mean * expapprox.gain <= solve.fullcov_max_signal)
    return mask


def _as_ptc_fit(result: FullCovFit, used: np.ndarray) -> PtcFit:
    """Summarise a full-covariance fit in the common shape; matrices go to ``extra``."""
    if result.status != "ok":
        return PtcFit(result.model, mask=np.zeros(len(used), bool), status=result.status)
    return PtcFit(
        result.model,
        gain=result.gain,
        gain_err=result.gain_err,
        noise=result.noise,
        noise_err=result.noise_err,
        a00=float(result.a[0, 0]),
        a00_err=float(result.a_err[0, 0]),
        turnoff=result.turnoff,
        mask=used,
        chi2_dof=result.chi2_dof,
        extra={"fullcov": result},
    )


def _fullcov_rows(sensor: str, amp: int, result: PtcFit) -> list[dict[str, Any]]:
    matrices = result.extra.get("fullcov")
    if matrices is None:
        return []
    size = matrices.a.shape[0]
    return [
        {
            "sensor": sensor,
            "amp": amp,
            "model": result.model,
            "i": i,
            "j": j,
            "a": matrices.a[i, j],
            "a_err": matrices.a_err[i, j],
            "b": matrices.b[i, j],
            "b_err": matrices.b_err[i, j],
            "noise": matrices.noise_matrix[i, j],
        }
        for i in range(size)
        for j in range(size)
    ]


def _row(sensor: str, amp: int, segment: str, result: PtcFit) -> dict[str, Any]:
    return {
        "sensor": sensor,
        "amp": amp,
        "segment": segment,
        "model": result.model,
        "gain": result.gain,
        "gain_err": result.gain_err,
        "noise": result.noise,
        "noise_err": result.noise_err,
        "a00": result.a00,
        "a00_err": result.a00_err,
        "turnoff": result.turnoff,
        "n_used": result.n_used,
        "chi2_dof": result.chi2_dof,
        "status": result.status,
    }


def fit(
    pairs: pd.DataFrame,
    covariances: pd.DataFrame | None = None,
    preset: str | Preset = "cp_pipe",
    models: Sequence[str] | None = None,
    **options: Any,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Fit every requested model to every amplifier's PTC.

    Parameters
    ----------
    pairs : pandas.DataFrame
        From :func:`gpuptc.measure`.
    covariances : pandas.DataFrame, optional
        From :func:`gpuptc.measure`; their lag-0 pixel counts weight cp_pipe's final fit.
    preset : str or Preset
        Fit procedure and ``used`` selection: ``eotest`` (final 5-sigma selection),
        ``cp_pipe`` / ``cp_pipe_lsstcam`` (outlier and turnoff mask, after rolloff for
        lsstcam), ``seed`` (every measured pair).
    models : sequence of str, optional
        Default every model: ``expapprox``, ``linear``, ``quadratic``, ``powerlaw``, ``rhl``.
    **options
        Preset field overrides.

    Returns
    -------
    ptc : pandas.DataFrame
        One row per sensor, amp and model (columns :data:`PTC_COLUMNS`).
    fullcov : pandas.DataFrame
        Full-covariance matrices (columns :data:`FULLCOV_COLUMNS`).
    pairs : pandas.DataFrame
        A copy of ``pairs`` with ``used`` filled.
    """
    config = get_preset(preset, **options)
    wanted = list(models) if models is not None else list(MODELS)
    unknown = [m for m in wanted if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    out = pairs.copy()
    out["used"] = pd.array([False] * len(out), dtype="boolean")
    npix00 = None
    cov_lookup = None
    if covariances is not None and len(covariances):
        origin = covariances[(covariances["i"] == 0) & (covariances["j"] == 0)]
        npix00 = origin.set_index(["sensor", "pair", "amp"])["npix"]
        cov_lookup = covariances.groupby(["sensor", "amp"], sort=False)
    needs_cov = any(m in ("fullcov", "fullcov_nob") for m in wanted)
    if needs_cov and cov_lookup is None:
        raise ValueError("the full-covariance models need the covariances table")
    rows: list[dict[str, Any]] = []
    cov_rows: list[dict[str, Any]] = []
    for (sensor, amp), group in out.groupby(["sensor", "amp"], sort=True):
        group = group.sort_values("pair")
        measured = group[group["status"].isin(MEASURED_STATUSES)]
        segment = str(group["segment"].iloc[0])
        mean = measured["mean"].to_numpy(float)
        var = measured["var"].to_numpy(float)
        counts = measured["npix"].to_numpy(float)
        if npix00 is not None:
            keys = pd.MultiIndex.from_arrays(
                [measured["sensor"], measured["pair"], measured["amp"]]
            )
            counts = npix00.reindex(keys).fillna(pd.Series(counts, index=keys)).to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            weights = np.sqrt(counts / 2.0) / var
        expapprox = _expapprox(mean, var, weights, config.solve)
        used = np.ones(len(measured), bool) if config.solve.method == "seed" else expapprox.mask
        if len(used) == len(measured):
            out.loc[measured.index, "used"] = used
        cube = npix_cube = None
        if needs_cov and cov_lookup is not None:
            cube, npix_cube = _cov_cubes(cov_lookup.get_group((sensor, amp)), measured["pair"])
        for model in wanted:
            if model == "expapprox":
                result = expapprox
            elif model in ("fullcov", "fullcov_nob"):
                fit_mask = _fullcov_mask(mean, expapprox, config.solve)
                result = _as_ptc_fit(
                    fit_fullcov(
                        mean[fit_mask],
                        cube[fit_mask],
                        npix_cube[fit_mask],
                        var[fit_mask],
                        with_b=model == "fullcov",
                        size=config.solve.fullcov_size,
                    ),
                    fit_mask,
                )
                cov_rows.extend(_fullcov_rows(str(sensor), int(amp), result))
            elif model == "rhl":
                result = fit_rhl(measured["rhl_gain"].to_numpy(float), used if len(used) else None)
            else:
                result = fit_ptc(mean, var, model, config)
            rows.append(_row(str(sensor), int(amp), segment, result))
    ptc = pd.DataFrame(rows, columns=list(PTC_COLUMNS)).astype({"amp": "int64", "n_used": "int64"})
    fullcov = pd.DataFrame(cov_rows, columns=list(FULLCOV_COLUMNS)).astype(
        {"amp": "int64", "i": "int64", "j": "int64"}
    )
    return ptc, fullcov, out


def _cov_cubes(table: pd.DataFrame, pairs: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(n, L, L)`` covariance and pixel-count arrays for the given pairs, in order."""
    size = int(table["i"].max()) + 1
    cov = np.full((len(pairs), size, size), np.nan)
    npix = np.zeros((len(pairs), size, size))
    position = {int(p): k for k, p in enumerate(pairs)}
    rows = table[table["pair"].isin(position)]
    k = rows["pair"].map(position).to_numpy()
    cov[k, rows["i"].to_numpy(), rows["j"].to_numpy()] = rows["cov"].to_numpy()
    npix[k, rows["i"].to_numpy(), rows["j"].to_numpy()] = rows["npix"].to_numpy()
    return cov, npix

"""The linearity of every amp of a sensor from its pairs: the rows of ``linearity.parquet``.

One abscissa per sensor: the pairs' photodiode charges when the preset asks for them and
every pair has one, else exposure times (the ``abscissa_reason`` column says why). The
pairs are taken in order of their abscissa; the ordinate is each pair's mean, the PTC's
selection (``used``) marks what the turnoff may fit, as cp_pipe's solve takes it. Every
amp is solved at once, on the run's backend.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gpuptc.backend import Backend
from gpuptc.config import LinearityConfig
from gpuptc.fitting._common import normal_mad
from gpuptc.fitting.linearity import AmpLinearity, eo_pipe_linearity, solve_amps
from gpuptc.fitting.linearity_groups import pair_groups
from gpuptc.fitting.pair_arrays import pair_grid
from gpuptc.schema import LINEARITY_COLUMNS

__all__ = ["adopted_gains", "sensor_abscissa", "sensor_linearity"]


def sensor_abscissa(pairs: pd.DataFrame, config: LinearityConfig) -> tuple[str, str]:
    """What a sensor's linearity is fitted against, and why not the photodiode.

    Examples
    --------
    >>> pairs = pd.DataFrame({"pair": [0, 1], "photo_charge": [1e-9, np.nan]})
    >>> sensor_abscissa(pairs, LinearityConfig(use_photodiode=True))
    ('exptime', '1 of 2 pairs without a photodiode charge (pairs 1)')
    >>> sensor_abscissa(pairs, LinearityConfig())
    ('exptime', 'the preset fits against exposure time (use_photodiode false)')
    """
    if not config.use_photodiode:
        return "exptime", "the preset fits against exposure time (use_photodiode false)"
    charges = pairs.drop_duplicates("pair").set_index("pair")
    charge = (
        charges["photo_charge"] if "photo_charge" in charges else pd.Series(np.nan, charges.index)
    )
    values = charge.to_numpy(float)
    lacking = charge.index[~np.isfinite(values)]
    if len(lacking):
        shown = ", ".join(map(str, lacking[:10])) + (" ..." if len(lacking) > 10 else "")
        return (
            "exptime",
            f"{len(lacking)} of {len(charge)} pairs without a photodiode charge (pairs {shown})",
        )
    if (values <= 0).any():
        return "exptime", (
            f"{int((values <= 0).sum())} of {len(values)} pairs with a photodiode charge of 0 "
            "or less (the current's sign: extract.photodiode_current_scale)"
        )
    return "photodiode", ""


def sensor_linearity(
    pairs: pd.DataFrame,
    ptc: pd.DataFrame,
    config: LinearityConfig,
    model: str = "expapprox",
    backend: str | Backend = "numpy",
) -> pd.DataFrame:
    """Every amp's linearity of one sensor, the amps solved together.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The sensor's measured pairs (``used`` filled by the PTC fit).
    ptc : pandas.DataFrame
        Its PTC fits (the adopted model's gain converts eo_pipe's metrics to electrons).
    config : LinearityConfig
        The preset's linearity section.
    model : str
        The adopted PTC model (the preset's ``ptc_fit_type``); EXPAPPROXIMATION where it
        has no gain for an amp.
    backend : str or Backend
        Where the fits run (:func:`gpuptc.fitting.linearity.solve_amps`).

    Returns
    -------
    pandas.DataFrame
        :data:`gpuptc.schema.LINEARITY_COLUMNS`, one row per amp.
    """
    abscissa, reason = sensor_abscissa(pairs, config)
    column = "photo_charge" if abscissa == "photodiode" else "exptime"
    if pairs.empty:
        return pd.DataFrame(columns=list(LINEARITY_COLUMNS))
    ordered = pairs.sort_values([column, "pair"], kind="stable")
    per_pair = ordered.drop_duplicates("pair").set_index("pair")
    x, y, ptc_masks, amps = _arrays(ordered, per_pair.index, column)
    gains = adopted_gains(ptc, model).reindex(amps).to_numpy(float)
    groups = pair_groups(per_pair, _sensor_electrons(y, gains), config)
    solved = solve_amps(
        x,
        y,
        ptc_masks,
        config,
        valid=x >= config.min_photodiode_current if abscissa == "photodiode" else None,
        ptc_turnoffs=adopted_gains(ptc, model, "turnoff").reindex(amps).to_numpy(float),
        groups=groups,
        backend=backend,
    )
    labels = (np.zeros(len(x), np.int64) if groups is None else groups).tolist()
    by_amp = dict(iter(ordered.groupby("amp", sort=True)))
    rows = [
        _row(by_amp[amp], amp, abscissa, reason, result, x, y[k], gains[k])
        | {"input_groups": labels}
        for k, (amp, result) in enumerate(zip(amps, solved, strict=True))
    ]
    return pd.DataFrame(rows, columns=list(LINEARITY_COLUMNS))


def _arrays(
    ordered: pd.DataFrame, order: pd.Index, column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs' abscissa, every amp's means and PTC selection (amps x pairs), the amps."""
    amps = np.sort(ordered["amp"].unique())
    y = pair_grid(ordered, "mean", amps, order, np.nan).astype(float)
    used = ordered.assign(used=ordered["used"].fillna(False).astype(bool))
    ptc_masks = pair_grid(used, "used", amps, order, False).astype(bool)
    x = ordered.drop_duplicates("pair").set_index("pair")[column].reindex(order)
    return x.to_numpy(float), y, ptc_masks, amps


def _sensor_electrons(y: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Each pair's signal in electrons averaged over the amps that have one."""
    electrons = y * gains[:, None]
    known = np.isfinite(electrons)
    counts = known.sum(axis=0)
    total = np.where(known, electrons, 0.0).sum(axis=0)
    return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)


def _row(
    mine: pd.DataFrame,
    amp: int,
    abscissa: str,
    reason: str,
    solved: AmpLinearity,
    x: np.ndarray,
    y: np.ndarray,
    gain: float,
) -> dict[str, object]:
    """One amp's row of :data:`gpuptc.schema.LINEARITY_COLUMNS`."""
    fitted = solved.mask & np.isfinite(solved.residuals)
    with np.errstate(invalid="ignore", divide="ignore"):
        fractional = solved.residuals[fitted] / y[fitted]
    max_frac_dev, turnoff_e = (
        eo_pipe_linearity(x, y * gain) if math.isfinite(gain) else (math.nan, math.nan)
    )
    return {
        "sensor": mine["sensor"].iloc[0],
        "amp": int(amp),
        "segment": mine["segment"].iloc[0],
        "abscissa": abscissa,
        "type": solved.kind,
        "coefficients": solved.coefficients.tolist(),
        "fit_params": solved.fit_params.tolist(),
        "fit_params_err": solved.fit_params_err.tolist(),
        "linear_intercept": float(solved.linear_fit[0]),
        "linear_slope": float(solved.linear_fit[1]),
        "turnoff": solved.turnoff.turnoff,
        "max_signal": solved.turnoff.max_signal,
        "residual_sigma_mad": normal_mad(fractional),
        "max_frac_dev": max_frac_dev,
        "eo_linearity_turnoff": turnoff_e / gain,
        "n_used": int(fitted.sum()),
        "reduced_chi2": solved.reduced_chi2,
        "status": solved.status,
        "abscissa_reason": reason,
        "input_pairs": mine["pair"].astype(int).tolist(),
        "input_abscissa": x.tolist(),
        "input_ordinate": y.tolist(),
        "input_mask": solved.mask.tolist(),
        "residuals": solved.residuals.tolist(),
        "residuals_unmasked": solved.residuals_unmasked.tolist(),
    }


def adopted_gains(ptc: pd.DataFrame, model: str, quantity: str = "gain") -> pd.Series:
    """Each amp's gain (or ``quantity``) of ``model``, else EXPAPPROXIMATION's (by amp).

    Examples
    --------
    >>> ptc = pd.DataFrame({"amp": [1, 1, 2], "model": ["expapprox", "fullcov", "expapprox"],
    ...                     "gain": [1.0, 1.1, 1.2]})
    >>> adopted_gains(ptc, "fullcov").to_dict()
    {1: 1.1, 2: 1.2}
    """
    chosen = ptc[ptc["model"] == model].set_index("amp")[quantity].dropna()
    fallback = ptc[ptc["model"] == "expapprox"].set_index("amp")[quantity]
    return chosen.combine_first(fallback)

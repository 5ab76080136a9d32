"""Gains adjusted so that a flat is seamless across amplifier boundaries.

The PTC gives each amplifier a gain good to a few tenths of a per cent, but a flat put in
electrons by those gains still shows steps at the amplifiers' boundaries. cp_pipe's gain
ratio adjustment (``PhotonTransferCurveAdjustGainRatiosTask``) removes them: on each of
up to ``n_flat`` binned flats, a radial gradient (a spline in the distance from the focal
plane's centre) and a low-order Chebyshev gradient are fitted away, and each amp's ratio
to a reference amp is the median of its bins; the gains are divided by the median of each
amp's ratios over the flats, normalised so that the sensor's median gain stays put.

Everything here is on the host in NumPy: the binned flats are small (made in the
measuring pass, :mod:`gpuptc.measuring.binning`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.polynomial import chebyshev
from scipy.interpolate import CubicSpline

from gpuptc.config import GainRatiosConfig
from gpuptc.raws.camera import focal_plane_mm
from gpuptc.schema import GAIN_RATIO_COLUMNS, BinnedFlats

__all__ = [
    "GainRatios",
    "adjust_gain_ratios",
    "adjusted_ptc",
    "amp_ratios",
    "flat_gain_ratios",
    "radial_terms",
    "reference_amp",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GainRatios:
    """What the adjustment did to a sensor.

    Attributes
    ----------
    adjustment : numpy.ndarray
        ``(amps,)`` each gain is divided by this (1 where not adjusted).
    reference : int
        The reference amp's index (-1: no adjustment, too few good amps).
    median_correction : float
        The median of the amps' median ratios that ``adjustment`` is normalised by.
    per_flat : pandas.DataFrame
        One row per flat used: ``pair``, ``mean_adu`` and ``ratio_<amp index>``.
    """

    adjustment: np.ndarray
    reference: int
    median_correction: float
    per_flat: pd.DataFrame


def reference_amp(
    gain: np.ndarray,
    noise: np.ndarray,
    turnoff: np.ndarray,
    max_noise: float,
    turnoff_percentile: float,
) -> int:
    """The reference amp: the median gain among quiet amps of high turnoff.

    An amp whose read noise (e-) is above ``max_noise`` or whose turnoff is below the
    ``turnoff_percentile`` percentile of the sensor's is not a candidate; of the rest (with
    a finite gain) the one at the middle of the gains' order (the upper of two) is chosen.

    Returns
    -------
    int
        Its index, or -1 when fewer than two amps are candidates.

    Examples
    --------
    >>> reference_amp(np.array([1.0, 1.2, 1.1, 0.9]), np.array([6.0, 6.0, 20.0, 6.0]),
    ...               np.full(4, 9e4), 12.0, 25.0)
    0
    """
    candidates = np.asarray(gain, float).copy()
    candidates[np.asarray(noise, float) > max_noise] = np.nan
    with np.errstate(invalid="ignore"):
        threshold = np.nanpercentile(turnoff, turnoff_percentile)
        candidates[np.asarray(turnoff, float) < threshold] = np.nan
    good = np.flatnonzero(np.isfinite(candidates))
    if len(good) <= 1:
        return -1
    return int(good[np.argsort(candidates[good])[len(good) // 2]])


def radial_terms(radius: np.ndarray, n_nodes: int) -> np.ndarray:
    """A natural cubic spline in ``radius`` as ``n_nodes`` basis functions (columns).

    The nodes are evenly spaced from the smallest radius to the largest; column ``k`` is
    the spline that is 1 at node ``k`` and 0 at the others, so a spline is the terms times
    its values at the nodes.

    Examples
    --------
    >>> r = np.linspace(30.0, 70.0, 9)
    >>> terms = radial_terms(r, 5)
    >>> terms.shape, bool(np.allclose(terms.sum(axis=1), 1.0))
    ((9, 5), True)
    """
    nodes = np.linspace(radius.min(), radius.max(), n_nodes)
    if nodes[-1] == nodes[0]:
        return np.ones((len(radius), 1))
    return CubicSpline(nodes, np.eye(n_nodes), bc_type="natural")(radius)


def _chebyshev_terms(
    x: np.ndarray, y: np.ndarray, shape: tuple[int, int], order: int
) -> np.ndarray:
    """The products of Chebyshev polynomials in x and y up to ``order`` each (not triangular).

    x and y are mapped to [-1, 1] over the CCD's pixels' full extent (centres at 0 .. n-1).
    """
    ny, nx = shape
    u = 2.0 * (x + 0.5) / nx - 1.0
    v = 2.0 * (y + 0.5) / ny - 1.0
    return chebyshev.chebvander2d(u, v, [order, order])


def _amp_medians(ratio: np.ndarray, amp: np.ndarray, n_amps: int) -> np.ndarray:
    """The median of ``ratio`` over each amp's points (1 for an amp without any)."""
    medians = np.ones(n_amps)
    for a in np.unique(amp):
        medians[a] = np.median(ratio[amp == a])
    return medians


def _normal_equations(
    terms: np.ndarray,
    levelled: np.ndarray,
    weight: np.ndarray,
    starts: np.ndarray,
    steps: np.ndarray,
) -> np.ndarray:
    """Least squares of ``levelled`` by the smooth terms and a step per amp of ``steps``.

    The points are sorted by amp (each amp's run begins at ``starts``); the normal
    equations are built from the terms' products and their sums per amp (a step's column
    is 1 on its amp's points), so no design matrix of the steps is made. Returns the
    smooth terms' coefficients.
    """
    weighted = terms * weight[:, None]
    per_amp = np.add.reduceat(weighted, starts, axis=0)[steps]
    counts = np.add.reduceat(weight, starts)[steps]
    sums = np.add.reduceat(weight * levelled, starts)[steps]
    n = terms.shape[1]
    normal = np.zeros((n + len(counts), n + len(counts)))
    normal[:n, :n] = weighted.T @ terms
    normal[n:, :n] = per_amp
    normal[:n, n:] = per_amp.T
    normal[n:, n:] = np.diag(counts)
    right = np.concatenate([weighted.T @ levelled, sums])
    return np.linalg.lstsq(normal, right, rcond=None)[0][:n]


def _gradient(
    terms: np.ndarray,
    value: np.ndarray,
    amp: np.ndarray,
    reference: int,
    n_rounds: int,
    n_sigma: float,
) -> np.ndarray:
    """The smooth gradient of ``value`` fitted together with a step for each amp but one.

    Each round fits, by least squares, the flat divided by the amps' ratios so far as the
    smooth ``terms`` plus a constant per amp (the reference's held at 0: what is left of
    the steps), takes the amps' ratios over the gradient (medians) and leaves out the
    points further than ``n_sigma`` normal-scaled MADs from their amp's ratio; the steps
    are dropped and the gradient is evaluated at every point.
    """
    order = np.argsort(amp, kind="stable")
    terms, value, amp = terms[order], value[order], amp[order]
    starts = np.flatnonzero(np.concatenate([[True], amp[1:] != amp[:-1]]))
    steps = amp[starts] != reference
    n_amps = int(amp.max()) + 1
    ratios = np.ones(n_amps)
    kept = np.ones(len(value), bool)
    gradient = np.ones(len(value))
    for _ in range(n_rounds):
        coefficients = _normal_equations(terms, value / ratios[amp], kept * 1.0, starts, steps)
        gradient = terms @ coefficients
        ratio = value / gradient
        ratios = _amp_medians(ratio, amp, n_amps)
        residual = ratio / ratios[amp] - 1.0
        spread = 1.4826 * np.median(np.abs(residual[kept]))
        if spread > 0:
            kept = np.abs(residual) <= n_sigma * spread
    unsorted = np.empty_like(gradient)
    unsorted[order] = gradient
    return unsorted


def amp_ratios(
    x: np.ndarray,
    y: np.ndarray,
    amp: np.ndarray,
    value: np.ndarray,
    n_amps: int,
    reference: int,
    ccd_shape: tuple[int, int],
    order: int = 1,
    radius: np.ndarray | None = None,
    radial_nodes: int = 20,
    n_rounds: int = 4,
    n_sigma: float = 5.0,
) -> np.ndarray:
    """Each amp's ratio to the reference amp over a smooth gradient.

    The gradient is a Chebyshev polynomial of ``order`` in x and in y over the CCD and,
    with ``radius``, a radial spline (:func:`radial_terms`), fitted to the flat together
    with a step per amp, ``n_rounds`` times (:func:`_gradient`); each amp's ratio is the
    median of its values over the gradient, relative to the reference amp's. An amp
    without values gets 1.

    cp_pipe fits its radial spline (by least absolute deviations) before the amp ratios,
    to the flat with the amps' steps still in it, and its Chebyshev gradient to the flat
    as it is in each round; a spline of many nodes then takes up part of the steps of the
    amps its radii run along, and the ratios are biased (by up to 2 % on a sensor 40 mm
    from the centre with its default 20 nodes). Fitting the steps with the gradients
    leaves them to the amps.

    Examples
    --------
    A plane, with amp 1 two per mille high:

    >>> x, y = np.meshgrid(np.arange(40.0), np.arange(10.0))
    >>> amp = (x >= 20).astype(int).ravel()
    >>> value = ((1 + 1e-3 * x) * (1 + 2e-3 * amp.reshape(x.shape))).ravel()
    >>> ratios = amp_ratios(x.ravel(), y.ravel(), amp, value, 2, 0, (10, 40))
    >>> bool(abs(ratios[1] / ratios[0] - 1.002) < 1e-9)
    True
    """
    terms = _chebyshev_terms(x, y, ccd_shape, order)
    if radius is not None:
        terms = np.concatenate([terms, radial_terms(radius, radial_nodes)], axis=1)
    ratio = value / _gradient(terms, value, amp, reference, n_rounds, n_sigma)
    ratio /= np.median(ratio[amp == reference])
    return _amp_medians(ratio, amp, n_amps)


def flat_gain_ratios(
    x: np.ndarray,
    y: np.ndarray,
    amp: np.ndarray,
    value: np.ndarray,
    radius: np.ndarray | None,
    n_amps: int,
    reference: int,
    ccd_shape: tuple[int, int],
    config: GainRatiosConfig,
) -> np.ndarray:
    """One flat's amp ratios (in electrons), gradients removed, odd amps left out.

    :func:`amp_ratios`, with the radial gradient when ``radius`` is given and the config
    removes it; while an amp's ratio is further than ``config.max_fractional_gain_ratio``
    from 1 the worst such amp is dropped and the fit made again (at most ``n_amps // 2``
    times). A dropped amp's ratio is 1.
    """
    keep = np.ones(len(value), bool)
    use_radius = radius is not None and config.remove_radial_gradient
    ratios = np.ones(n_amps)
    for _ in range(max(n_amps // 2, 1)):
        ratios = amp_ratios(
            x[keep], y[keep], amp[keep], value[keep], n_amps, reference, ccd_shape,
            config.chebyshev_order, radius[keep] if use_radius else None, config.radial_nodes,
        )  # fmt: skip
        worst = int(np.argmax(np.abs(ratios - 1.0)))
        if abs(ratios[worst] - 1.0) <= config.max_fractional_gain_ratio:
            break
        log.warning(
            "amp %d is off by a ratio of %.3f: left out of the gain ratios", worst, ratios[worst]
        )
        keep &= amp != worst
    return ratios


def _flat_points(
    values: np.ndarray, gains: np.ndarray, binned: BinnedFlats, radius: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """One flat's bins in electrons as flat arrays (x, y, amp, value, radius), clipped.

    Values outside [0.8 x 5th percentile, 1.2 x 95th percentile] (unmasked defects) and
    non-finite ones are dropped.
    """
    electrons = (values * gains[:, None, None]).ravel()
    amp = np.broadcast_to(np.arange(len(gains))[:, None, None], values.shape).ravel()
    with np.errstate(invalid="ignore"):
        low, high = np.nanpercentile(electrons, [5.0, 95.0])
        keep = np.isfinite(electrons) & (electrons >= 0.8 * low) & (electrons <= 1.2 * high)
    kept_radius = None if radius is None else radius.ravel()[keep]
    return binned.x.ravel()[keep], binned.y.ravel()[keep], amp[keep], electrons[keep], kept_radius


def _chosen_flats(means: np.ndarray, config: GainRatiosConfig) -> np.ndarray:
    """Indices of the flats whose mean is inside the window, ``n_flat`` of them at most.

    A seeded draw without replacement (NumPy's legacy ``RandomState``, as cp_pipe), in the
    flats' order.
    """
    inside = np.flatnonzero((means > config.min_adu) & (means < config.max_adu))
    if len(inside) > config.n_flat:
        rng = np.random.RandomState(seed=config.random_seed)
        inside = np.sort(rng.choice(inside, size=config.n_flat, replace=False))
    return inside


def adjust_gain_ratios(
    binned: BinnedFlats,
    gains: np.ndarray,
    noise: np.ndarray,
    turnoff: np.ndarray,
    means: np.ndarray,
    config: GainRatiosConfig,
    focal_plane: tuple[np.ndarray, np.ndarray] | None = None,
) -> GainRatios:
    """The adjustment of a sensor's gains that makes its flats seamless.

    Parameters
    ----------
    binned : BinnedFlats
        The sensor's binned flats.
    gains, noise, turnoff : numpy.ndarray
        ``(amps,)`` the PTC's gains (e-/ADU; NaN for a bad amp), read noise (e-), turnoff.
    means : numpy.ndarray
        ``(n,)`` each flat's mean signal over its amps' pairs the PTC kept (ADU, NaN if
        none kept it).
    config : GainRatiosConfig
        The adjustment's settings.
    focal_plane : tuple of numpy.ndarray, optional
        Each bin's focal-plane ``(x, y)`` (mm, like ``binned.x``); without it no radial
        gradient is removed.

    Returns
    -------
    GainRatios
        The adjustment (divide the gains by it), the reference and the per-flat ratios.
    """
    n_amps = len(gains)
    reference = reference_amp(
        gains, noise, turnoff, config.max_noise_reference, config.turnoff_percentile_reference
    )
    chosen = _chosen_flats(means, config) if reference >= 0 else np.zeros(0, int)
    if reference < 0 or not len(chosen):
        log.warning("too few good amps or flats for the gain ratio adjustment: gains unchanged")
        unchanged = _per_flat(binned, chosen[:0], means, np.ones((0, n_amps)))
        return GainRatios(np.ones(n_amps), reference, math.nan, unchanged)
    radius = None if focal_plane is None else np.hypot(*focal_plane)
    ratios = np.ones((len(chosen), n_amps))
    for row, k in enumerate(chosen):
        x, y, amp, value, kept_radius = _flat_points(binned.values[k], gains, binned, radius)
        ratios[row] = flat_gain_ratios(
            x, y, amp, value, kept_radius, n_amps, reference, binned.ccd_shape, config
        )
    corrections = np.median(ratios, axis=0)
    median_correction = float(np.median(corrections))
    return GainRatios(
        corrections / median_correction,
        reference,
        median_correction,
        _per_flat(binned, chosen, means, ratios),
    )


def _per_flat(
    binned: BinnedFlats, chosen: np.ndarray, means: np.ndarray, ratios: np.ndarray
) -> pd.DataFrame:
    frame = pd.DataFrame({"pair": binned.pairs[chosen], "mean_adu": means[chosen]})
    for a in range(ratios.shape[1]):
        frame[f"ratio_{a}"] = ratios[:, a]
    return frame


def _flat_means(pairs: pd.DataFrame, binned: BinnedFlats, good: np.ndarray) -> np.ndarray:
    """Each binned flat's signal: its good amps' mean over those the PTC kept.

    cp_pipe's average of ``finalMeans``; NaN where no amp kept the pair.
    """
    kept = pairs[pairs["used"].fillna(False).astype(bool) & pairs["amp"].isin(good)]
    table = kept.pivot_table(index="pair", columns="amp", values="mean", aggfunc="mean")
    return table.mean(axis=1).reindex(binned.pairs).to_numpy(float)


def adjusted_ptc(
    ptc: pd.DataFrame,
    pairs: pd.DataFrame,
    binned: BinnedFlats,
    config: GainRatiosConfig,
    model: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One sensor's ``ptc`` with ``model``'s gains adjusted, and the flats' ratios.

    Parameters
    ----------
    ptc, pairs : pandas.DataFrame
        The sensor's rows of the ``ptc`` and ``pairs`` tables (``used`` filled).
    binned : BinnedFlats
        Its binned flats (:func:`gpuptc.measure_sensor` with a preset that adjusts); with
        no place in the focal plane (``centre_mm`` None) no radial gradient is removed.
    config : GainRatiosConfig
        The adjustment's settings.
    model : str
        The PTC model whose gains are adjusted (the preset's ``ptc_fit_type``); its
        noise and turnoff choose the reference amp.

    Returns
    -------
    ptc : pandas.DataFrame
        ``gain`` of ``model``'s rows divided by ``gain_adjustment``; ``gain_unadjusted``
        keeps the fit's.
    ratios : pandas.DataFrame
        :data:`gpuptc.schema.GAIN_RATIO_COLUMNS`.
    """
    rows = ptc[ptc["model"] == model].set_index("amp").reindex(binned.amps)
    gains = rows["gain_unadjusted"].to_numpy(float)
    good = binned.amps[np.isfinite(gains)]
    focal_plane = None
    if binned.centre_mm is not None:
        focal_plane = focal_plane_mm(binned.x, binned.y, binned.ccd_shape, binned.centre_mm)
    else:
        log.warning("no place in the focal plane (RAFTBAY/CCDSLOT): no radial gradient removed")
    result = adjust_gain_ratios(
        binned,
        gains,
        rows["noise"].to_numpy(float),
        rows["turnoff"].to_numpy(float),
        _flat_means(pairs, binned, good),
        config,
        focal_plane,
    )
    adjustment = pd.Series(result.adjustment, index=binned.amps)
    out = ptc.copy()
    chosen = out["model"] == model
    factor = out.loc[chosen, "amp"].map(adjustment).fillna(1.0).to_numpy(float)
    out.loc[chosen, "gain_adjustment"] = factor
    out.loc[chosen, "gain"] = out.loc[chosen, "gain_unadjusted"] / factor
    return out, _ratio_rows(result, binned, rows)


def _ratio_rows(result: GainRatios, binned: BinnedFlats, rows: pd.DataFrame) -> pd.DataFrame:
    """The per-flat ratios as :data:`gpuptc.schema.GAIN_RATIO_COLUMNS` rows."""
    per_flat = result.per_flat
    sensor = str(rows["sensor"].dropna().iloc[0]) if rows["sensor"].notna().any() else ""
    frames = [
        pd.DataFrame(
            {
                "sensor": sensor,
                "pair": per_flat["pair"].to_numpy(np.int64),
                "amp": np.int64(amp),
                "segment": rows["segment"].iloc[a],
                "mean_adu": per_flat["mean_adu"].to_numpy(float),
                "ratio": per_flat[f"ratio_{a}"].to_numpy(float),
                "reference": a == result.reference,
            }
        )
        for a, amp in enumerate(binned.amps)
    ]
    return pd.concat(frames, ignore_index=True).reindex(columns=list(GAIN_RATIO_COLUMNS))

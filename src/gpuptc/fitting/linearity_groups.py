"""Which flat pairs share one illumination: the groups of a sensor's linearity fit.

A linearity series often changes the lamp (or a filter) between exposure-time ramps; each
such group of pairs has its own proportionality between signal and exposure time (or
photodiode charge), and the turnoff's lines and the ``Spline`` fit give each group a slope
of its own. As cp_pipe's ``LinearitySolveTask`` decides them:

- by a column of the pairs table (``spline_grouping_column``, cp_pipe's
  ``splineGroupingColumn``): one group per distinct value;
- automatically (``do_auto_grouping``): the sensor's signal over exposure time (or over
  photodiode charge), relative to its median, sorted; a jump larger than
  ``auto_grouping_threshold`` starts a new group. Pairs brighter than
  ``auto_grouping_max_signal_fraction`` of the brightest join the group of the brightest
  pair below that (beyond the turnoff their ratio drops); pairs without an abscissa get
  group -1;
- otherwise one group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpuptc.config import LinearityConfig

__all__ = ["automatic_groups", "pair_groups"]


def pair_groups(
    pairs: pd.DataFrame, signal: np.ndarray, config: LinearityConfig
) -> np.ndarray | None:
    """Each pair's group for a sensor's linearity, or None for one group.

    Parameters
    ----------
    pairs : pandas.DataFrame
        One row per pair, in the fit's order (``exptime``, ``photo_charge`` and the
        grouping column).
    signal : numpy.ndarray
        Each pair's signal in electrons, averaged over the sensor's amps.
    config : LinearityConfig
        The preset's linearity section.

    Returns
    -------
    numpy.ndarray or None
        An integer group per pair.

    Raises
    ------
    ValueError
        A grouping column the pairs do not have, or a ``Spline`` grouped by a column with
        fewer pairs than ``spline_grouping_min_points`` (too few to fit a slope per group).
    """
    column = config.spline_grouping_column
    if config.do_auto_grouping:
        use_exptime = config.auto_grouping_use_exptime
        abscissa = pairs["exptime" if use_exptime else "photo_charge"].to_numpy(float)
        if not use_exptime:
            abscissa = np.where(abscissa < config.min_photodiode_current, np.nan, abscissa)
        return automatic_groups(
            signal,
            abscissa,
            config.auto_grouping_threshold,
            config.auto_grouping_max_signal_fraction,
        )
    if not column:
        return None
    if column not in pairs:
        raise ValueError(f"spline_grouping_column {column!r}: the pairs have no such column")
    if config.linearity_type == "Spline" and len(pairs) < config.spline_grouping_min_points:
        raise ValueError(
            f"{len(pairs)} pairs, fewer than spline_grouping_min_points "
            f"({config.spline_grouping_min_points}), to fit a spline with a slope per "
            f"{column} group: set spline_grouping_column to '' or lower the minimum"
        )
    _, groups = np.unique(pairs[column].to_numpy(), return_inverse=True)
    return groups.reshape(-1).astype(np.int64)


def automatic_groups(
    signal: np.ndarray, abscissa: np.ndarray, threshold: float, max_signal_fraction: float
) -> np.ndarray:
    """Groups of pairs by jumps in their signal per unit abscissa (cp_pipe's clustering).

    Parameters
    ----------
    signal : numpy.ndarray
        Each pair's signal (electrons, averaged over amps).
    abscissa : numpy.ndarray
        Its exposure time or photodiode charge (NaN where unusable: group -1).
    threshold : float
        The smallest jump of the sorted relative ratios that starts a group.
    max_signal_fraction : float
        Pairs above this fraction of the brightest signal join the brightest pair's
        group below it.

    Returns
    -------
    numpy.ndarray
        An integer group per pair, numbered from the lowest ratio.

    Examples
    --------
    >>> t = np.array([1.0, 2.0, 3.0, 1.0, 2.0, 3.0])
    >>> automatic_groups(np.r_[100 * t[:3], 300 * t[3:]], t, 0.1, 0.9).tolist()
    [0, 0, 0, 1, 1, 1]
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = signal / abscissa
        ratio = ratio / np.nanmedian(ratio)
        above = signal > max_signal_fraction * np.nanmax(signal)
    below = np.flatnonzero(~above)
    brightest = below[np.nanargmax(signal[below])]
    ratio[above] = ratio[brightest]
    ordered = np.sort(ratio)
    jumps = np.flatnonzero(np.diff(ordered) > threshold)
    cuts = ordered[jumps] + threshold / 2.0
    groups = np.searchsorted(cuts, ratio).astype(np.int64)
    groups[np.isnan(ratio)] = 0  # no signal: left in the first group, as cp_pipe leaves it
    groups[~np.isfinite(abscissa)] = -1
    groups[above] = groups[brightest]
    return groups

"""A sensor's tables as arrays of amps x pairs, the shape the batched fits take."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["covariance_cube", "pair_grid"]


def pair_grid(table: pd.DataFrame, column: str, amps, order, fill) -> np.ndarray:
    """``column`` of a sensor's pairs table as an (amps, pairs) array, ``fill`` where none."""
    wide = table.pivot_table(index="amp", columns="pair", values=column, aggfunc="first")
    return wide.reindex(index=amps, columns=order).fillna(fill).to_numpy()


def covariance_cube(covariances: pd.DataFrame, amps, order) -> np.ndarray:
    """(amps, pairs, n, n) covariances, NaN where missing."""
    size = int(max(covariances["i"].max(), covariances["j"].max())) + 1
    cube = np.full((len(amps), len(order), size, size), np.nan)
    amp_index = {int(a): k for k, a in enumerate(amps)}
    pair_index = {int(p): k for k, p in enumerate(order)}
    rows = covariances[covariances["amp"].isin(amp_index) & covariances["pair"].isin(pair_index)]
    a = rows["amp"].map(amp_index).to_numpy(int)
    p = rows["pair"].map(pair_index).to_numpy(int)
    cube[a, p, rows["i"].to_numpy(int), rows["j"].to_numpy(int)] = rows["cov"].to_numpy(float)
    return cube

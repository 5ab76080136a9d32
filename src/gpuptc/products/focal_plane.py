"""One row per amp of the run: where it is in the camera, its numbers and its verdict.

``focal_plane.parquet`` gathers what the camera team reads off the focal plane: each
amp's sensor, vendor, raft and slot, the adopted PTC model's numbers and the verdict's
flags (:mod:`gpuptc.products.verdict`, the one place that judges amps), the PTC noise
over the overscan's (cp_pipe's 5 % warning), and the linearity and brighter-fatter numbers
where the run measured them. The focal-plane page's maps and histograms are drawn from it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from gpuptc.fitting.bf_sensor import DETECTOR_SEGMENT, kernel_centres
from gpuptc.products.verdict import HELD_AT_ZERO, fitted_value

__all__ = ["FOCAL_PLANE_COLUMNS", "amp_kernels", "focal_plane_table"]

_PLACE_COLUMNS = ("vendor", "raftbay", "ccdslot")
_VERDICT_COLUMNS = (
    "segment",
    "model",
    "status",
    "verdict",
    "flags",
    "gain",
    "gain_err",
    "noise",
    "noise_err",
    "read_noise",
    "overscan_noise",
    "turnoff",
    "full_well",
    "a00",
    "a00_err",
)
_LINEARITY_COLUMNS = {
    "max_frac_dev": "max_frac_dev",
    "eo_linearity_turnoff": "eo_linearity_turnoff",
    "turnoff": "linearity_turnoff",
}
"""``linearity`` columns kept, and their names here."""
_BF_COLUMNS = ("k00", "bf_slope_x", "bf_slope_y")

FOCAL_PLANE_COLUMNS: tuple[str, ...] = (
    "sensor",
    *_PLACE_COLUMNS,
    "amp",
    *_VERDICT_COLUMNS,
    "noise_over_overscan",
    *_LINEARITY_COLUMNS.values(),
    *_BF_COLUMNS,
)
"""The table's columns before the verdict's ``flag_*`` columns, which follow them."""


def focal_plane_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every amp of the run at its place, with its numbers and its flags.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        The run's tables: ``verdict`` (required), ``manifest``, ``linearity`` and
        ``bf_kernel`` where there are.

    Returns
    -------
    pandas.DataFrame
        One row per row of ``verdict``, in its order: :data:`FOCAL_PLANE_COLUMNS` and
        the verdict's ``flag_*`` columns. Places are empty and numbers NaN where the
        run lacks them; the PTC noise and a00 are NaN where the fit held them at zero
        (``status`` and the ``held`` flag say so).

    Examples
    --------
    >>> verdict = pd.DataFrame({"sensor": ["S", "S"], "amp": [1, 2], "gain": [1.5, 1.6],
    ...                         "noise": [6.3, 6.0], "overscan_noise": [6.0, 6.0],
    ...                         "flag_chi2": [False, True]})
    >>> manifest = pd.DataFrame({"sensor": ["S"], "vendor": ["itl"], "raftbay": ["R01"],
    ...                          "ccdslot": ["S10"]})
    >>> table = focal_plane_table({"verdict": verdict, "manifest": manifest})
    >>> table[["raftbay", "ccdslot", "amp", "noise_over_overscan", "flag_chi2"]]
      raftbay ccdslot  amp  noise_over_overscan  flag_chi2
    0     R01     S10    1                 1.05      False
    1     R01     S10    2                 1.00       True
    """
    verdict = tables["verdict"]
    keys = verdict[["sensor", "amp"]]
    out = keys.merge(_places(tables.get("manifest")), on="sensor", how="left")
    for column in _VERDICT_COLUMNS:
        out[column] = verdict[column].to_numpy() if column in verdict else np.nan
    if "status" in verdict:
        for column in HELD_AT_ZERO:
            out[column] = fitted_value(out, column)
    out["noise_over_overscan"] = out["noise"] / out["overscan_noise"]
    for numbers in (_linearity(tables.get("linearity")), _brighter_fatter(tables.get("bf_kernel"))):
        out = _joined(out, numbers)
    flags = [column for column in verdict.columns if column.startswith("flag_")]
    for column in flags:
        out[column] = verdict[column].to_numpy()
    return out.reindex(columns=[*FOCAL_PLANE_COLUMNS, *flags])


def _places(manifest: pd.DataFrame | None) -> pd.DataFrame:
    """Each sensor's vendor, raft and slot from its files (empty columns without them)."""
    columns = ["sensor", *_PLACE_COLUMNS]
    if manifest is None or "sensor" not in manifest:
        return pd.DataFrame(columns=columns)
    known = manifest.reindex(columns=columns).dropna(subset=["sensor"])
    return known.groupby("sensor", as_index=False).first()


def _joined(out: pd.DataFrame, numbers: pd.DataFrame) -> pd.DataFrame:
    """``out`` with ``numbers`` (``sensor``, ``amp`` and numbers) by amp; NaN where none."""
    if numbers.empty:
        return out.assign(**{column: np.nan for column in numbers.columns[2:]})
    numbers = numbers.astype({"amp": out["amp"].dtype})
    return out.merge(numbers, on=["sensor", "amp"], how="left")


def _linearity(linearity: pd.DataFrame | None) -> pd.DataFrame:
    if linearity is None or linearity.empty:
        return pd.DataFrame(columns=["sensor", "amp", *_LINEARITY_COLUMNS.values()])
    columns = ["sensor", "amp", *_LINEARITY_COLUMNS]
    return linearity.reindex(columns=columns).rename(columns=_LINEARITY_COLUMNS)


def amp_kernels(kernels: pd.DataFrame) -> pd.DataFrame:
    """The amps' rows of a ``bf_kernel`` table with each kernel's centre ``k00``.

    The detectors' rows are left out; ``k00`` is in 1/e-, NaN without a kernel. An empty
    table comes back as it is.

    Examples
    --------
    >>> kernels = pd.DataFrame({"segment": ["Segment10", "DETECTOR"], "size": [3, 3],
    ...                         "kernel": [[0, 0, 0, 0, -2e-6, 0, 0, 0, 0]] * 2})
    >>> amp_kernels(kernels)[["segment", "k00"]]
         segment       k00
    0  Segment10 -0.000002
    """
    if kernels.empty:
        return kernels
    amps = kernels[kernels["segment"] != DETECTOR_SEGMENT]
    return amps.assign(k00=kernel_centres(amps))


def _brighter_fatter(kernels: pd.DataFrame | None) -> pd.DataFrame:
    columns = ["sensor", "amp", *_BF_COLUMNS]
    if kernels is None or kernels.empty:
        return pd.DataFrame(columns=columns)
    return amp_kernels(kernels).reindex(columns=columns)

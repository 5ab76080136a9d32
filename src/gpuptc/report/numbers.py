"""Every number of one sensor as its page shows them, folded: compact enough for 400 pairs.

The per-amp tables are in :mod:`gpuptc.report.amp_table`; here the long tables are cut to a
row per pair (the per-amp values are in the charts' hover and in ``pairs.parquet``) and to
a row per amp and method for the comparison (each reference's definition said once).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from gpuptc.fitting.bf_check import CHECK_MODES, MET_REDUCTION, MET_SIGMA, check_met

__all__ = ["bf_check_line", "bf_check_table", "comparison_ratios", "pair_summary", "sensor_numbers"]

_UNITS = {
    "gain": "gain (e-/ADU)",
    "gain_err": "gain_err (e-/ADU)",
    "noise": "noise (e-)",
    "noise_err": "noise_err (e-)",
    "turnoff": "turnoff (ADU)",
    "turnoff_err": "turnoff_err (ADU)",
    "turnoff_electrons": "turnoff (e-)",
    "full_well": "full_well (e-)",
    "a00": "a00 (1/e-)",
    "a00_err": "a00_err (1/e-)",
}
"""Column names of the PTC table with their units."""


def pair_summary(pairs: pd.DataFrame, gain_column: str) -> pd.DataFrame:
    """One row per pair: its files and exposure time, medians over its amps, amps used.

    Parameters
    ----------
    pairs : pandas.DataFrame
        One sensor's ``pairs``.
    gain_column : str
        The preset's per-pair gain.

    Returns
    -------
    pandas.DataFrame
        ``pair``, ``exptime``, ``file1``, ``file2``, the medians over amps of ``mean``,
        ``var``, the per-pair gain and ``read_noise_adu``, ``amps used`` and the amps'
        statuses (each with its count where not every amp has it).

    Examples
    --------
    >>> pairs = pd.DataFrame({"pair": [0, 0], "exptime": 1.0, "file1": "/a/f1.fits",
    ...     "file2": "/a/f2.fits", "mean": [100.0, 102.0], "var": [80.0, 82.0],
    ...     "g": [1.2, 1.3], "read_noise_adu": [5.0, 5.0], "used": [True, False],
    ...     "status": ["ok", "ok"]})
    >>> pair_summary(pairs, "g").iloc[0].to_dict()["amps used"]
    1
    """
    grouped = pairs.groupby("pair", sort=True)
    out = pd.DataFrame(index=pd.Index(sorted(pairs["pair"].unique()), name="pair"))
    for column in ("exptime", "file1", "file2"):
        if column in pairs:
            out[column] = grouped[column].first()
    for column in ("mean", "var", gain_column, "read_noise_adu"):
        if column in pairs:
            out[f"median {column}"] = grouped[column].median()
    if "used" in pairs:
        out["amps used"] = grouped["used"].agg(lambda u: int(u.fillna(False).astype(bool).sum()))
    if "status" in pairs:
        out["status"] = grouped["status"].agg(_statuses)
    for name in ("file1", "file2"):
        if name in out:
            out[name] = [str(f).replace("\\", "/").rsplit("/", 1)[-1] for f in out[name]]
    return out.reset_index()


def _statuses(statuses: pd.Series) -> str:
    counts = statuses.astype(str).value_counts()
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{status} ({count})" for status, count in counts.items())


def comparison_ratios(comparison: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ratios to each reference, a row per amp and method, and each definition once.

    Parameters
    ----------
    comparison : pandas.DataFrame
        One sensor's ``comparison``.

    Returns
    -------
    ratios : pandas.DataFrame
        ``amp``, ``method`` and a column ``<quantity> / <reference>`` per pair compared.
    definitions : pandas.DataFrame
        ``reference``, ``quantity``, ``definition``: what each reference's number is.
    """
    compared = comparison[comparison["ratio"].notna()]
    if compared.empty:
        return pd.DataFrame(), pd.DataFrame()
    named = compared.assign(column=compared["quantity"] + " / " + compared["reference"])
    ratios = named.pivot_table(
        index=["amp", "method"], columns="column", values="ratio", aggfunc="first", sort=True
    )
    ratios.columns.name = None
    compared = compared.assign(definition=compared.get("definition", "")).fillna({"definition": ""})
    defined = compared["definition"].astype(str) != ""
    definitions = compared.loc[defined, ["reference", "quantity", "definition"]]
    return ratios.reset_index(), definitions.drop_duplicates().reset_index(drop=True)


def bf_check_table(kernels: pd.DataFrame) -> pd.DataFrame:
    """The brighter-fatter check of one sensor's amps, a row per amp checked.

    Parameters
    ----------
    kernels : pandas.DataFrame
        One sensor's ``bf_kernel`` rows.

    Returns
    -------
    pandas.DataFrame
        ``amp``, the kernel that corrected it, the amp kernel's validity, the per-pair
        gain's slope against the mean before and after (1/ADU, with errors), the fraction
        removed and whether the check is met; empty where nothing was checked.

    Examples
    --------
    >>> kernels = pd.DataFrame({"amp": [1], "check_kernel": ["amp"], "valid": [True],
    ...     "gain_slope": [2e-6], "gain_slope_err": [1e-7], "gain_slope_corrected": [1e-7],
    ...     "gain_slope_corrected_err": [1e-7]})
    >>> round(float(bf_check_table(kernels).iloc[0]["removed"]), 3)
    0.95
    """
    if "check_kernel" not in kernels:
        return pd.DataFrame()
    checked = kernels[kernels["check_kernel"].isin([*CHECK_MODES, "none"])]
    if checked.empty:
        return pd.DataFrame()
    return pd.DataFrame(
        {
            "amp": checked["amp"].to_numpy(),
            "corrected by": checked["check_kernel"].to_numpy(),
            "amp kernel valid": checked["valid"].astype(bool).to_numpy(),
            "gain slope (1/ADU)": checked["gain_slope"].to_numpy(),
            "gain slope err": checked["gain_slope_err"].to_numpy(),
            "corrected slope (1/ADU)": checked["gain_slope_corrected"].to_numpy(),
            "corrected slope err": checked["gain_slope_corrected_err"].to_numpy(),
            "removed": (1.0 - checked["gain_slope_corrected"] / checked["gain_slope"]).to_numpy(),
            "met": check_met(checked).to_numpy(),
        }
    )


def bf_check_line(table: pd.DataFrame) -> str:
    """The check of one sensor in a sentence (:func:`bf_check_table`'s rows).

    Examples
    --------
    >>> table = pd.DataFrame({"corrected by": ["detector"] * 2, "removed": [0.9, 0.5],
    ...                       "met": [True, False]})
    >>> bf_check_line(table)[:60]
    "Each amp's flats corrected by the detector's kernel: the per"
    """
    if table.empty:
        return ""
    corrected = table[table["corrected by"] != "none"]
    if corrected.empty:
        return "Not checked: no valid kernel to correct the flats by."
    by = corrected["corrected by"].iloc[0]
    kernel = "the detector's kernel" if by == "detector" else "its own kernel"
    met = int(table["met"].fillna(False).astype(bool).sum())
    left = len(table) - len(corrected)
    unchecked = f" ({left} amps without a kernel left uncorrected)" if left else ""
    return (
        f"Each amp's flats corrected by {kernel}{unchecked}: the per-pair gain's slope "
        f"against the mean falls by a median {corrected['removed'].median():.0%}; the check "
        f"is met on {met} of {len(table)} amps (at least {MET_REDUCTION:.0%} of the slope "
        f"removed, or what is left within {MET_SIGMA:g} standard errors of zero)."
    )


def sensor_numbers(
    tables: Mapping[str, pd.DataFrame], sensor: str, gain_column: str
) -> dict[str, pd.DataFrame]:
    """Every number of ``sensor`` as its page's folded tables show them.

    On the sensor's page its name is the heading's, not a column's.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        The run's ``ptc``, ``pairs``, ``rejected`` and (if any) ``comparison``.
    sensor : str
        The sensor.
    gain_column : str
        The preset's per-pair gain.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``ptc``, ``comparison``, ``definitions``, ``pairs``, ``rejected`` and
        ``bf_check`` (:func:`bf_check_table`; empty without ``bf_kernel`` or its check).
    """

    def mine(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame[frame["sensor"] == sensor] if "sensor" in frame else frame
        return frame.drop(columns=["sensor"]) if "sensor" in frame else frame

    empty = pd.DataFrame(columns=["sensor", "ratio"])
    ratios, definitions = comparison_ratios(mine(tables.get("comparison", empty)))
    rejected = tables["rejected"]
    return {
        "ptc": mine(tables["ptc"]).rename(columns=_UNITS),
        "comparison": ratios,
        "definitions": definitions,
        "pairs": pair_summary(mine(tables["pairs"]), gain_column),
        "rejected": rejected[rejected["sensor"] == sensor] if "sensor" in rejected else rejected,
        "bf_check": bf_check_table(mine(tables.get("bf_kernel", empty))),
    }

"""Every number of one sensor as its page shows them, folded: compact enough for 400 pairs.

The per-amp tables are in :mod:`gpuptc.report.amp_table`; here the long tables are cut to a
row per pair (the per-amp values are in the charts' hover and in ``pairs.parquet``) and to
a row per amp and method for the comparison (each reference's definition said once).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

__all__ = ["comparison_ratios", "pair_summary", "sensor_numbers"]

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
        ``ptc``, ``comparison``, ``definitions``, ``pairs``, ``rejected``.
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
    }

"""Gain methods side by side, and against EOTEST results.

``compare(ptc, eotest_files)`` gives, per sensor, amp and method, the gain, EOTEST's
PTC_GAIN for that amp and their ratio. ``write_eotest_files`` writes gpuptc's results in
EOTEST's formats (marked ORIGIN = 'gpuptc', so they are never taken back as references).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from gpuptc.fitting.turnoff import FULL_WELL_DEFINITION, TURNOFF_DEFINITIONS
from gpuptc.formats.eotest import (
    eotest_results_columns,
    read_eotest_results,
    sensor_from_eotest_name,
    write_eotest_results,
    write_ptc_stats,
)
from gpuptc.formats.outputs import rows_by
from gpuptc.schema import COMPARISON_COLUMNS, FileStatus, eotest_file_names

__all__ = [
    "COMPARISON_COLUMNS",
    "QUANTITIES",
    "REFERENCE_DEFINITIONS",
    "compare",
    "eotest_references",
    "references",
    "write_eotest_files",
]

log = logging.getLogger(__name__)


EotestInputs = (
    pd.DataFrame | Mapping[str, str | os.PathLike[str]] | Iterable[str | os.PathLike[str]]
)


def eotest_references(
    eotest_files: EotestInputs, sensors: Iterable[str]
) -> dict[str, pd.DataFrame]:
    """Read EOTEST results files and tell which sensor each belongs to.

    Parameters
    ----------
    eotest_files : manifest, mapping or iterable of paths
        A manifest (rows with status ``eotest`` and their sensor), ``{sensor: path}``, or
        paths. A path's sensor is LSST_NUM in its header, else the file-name prefix before
        ``_eotest_results``, else the only sensor in ``sensors``.
    sensors : iterable of str
        Sensors of the run.

    Returns
    -------
    dict of str to pandas.DataFrame
        AMPLIFIER_RESULTS table per sensor. Files written by gpuptc are skipped.
    """
    sensors = sorted(set(sensors))
    if isinstance(eotest_files, pd.DataFrame):
        rows = eotest_files[eotest_files["status"] == FileStatus.EOTEST]
        items = [(row.sensor, row.path) for row in rows.itertuples()]
    elif isinstance(eotest_files, Mapping):
        items = list(eotest_files.items())
    else:
        items = [(None, path) for path in eotest_files]
    references: dict[str, pd.DataFrame] = {}
    for sensor, path in items:
        table = read_eotest_results(path)
        if str(table.attrs.get("origin", "")).lower() == "gpuptc":
            log.warning("%s: written by gpuptc, not used as an EOTEST reference", path)
            continue
        sensor = sensor or table.attrs.get("lsst_num") or sensor_from_eotest_name(path)
        if sensor is None and len(sensors) == 1:
            sensor = sensors[0]
        if sensor is None:
            raise ValueError(f"{path}: cannot tell which sensor these EOTEST results belong to")
        references[str(sensor)] = table
    return references


QUANTITIES: tuple[str, ...] = ("gain", "noise", "turnoff", "a00", "full_well")
"""What :func:`compare` compares, per amp and method (gain e-/ADU, noise e-, turnoff ADU,
a00 1/e-, full well e-)."""

REFERENCE_DEFINITIONS: dict[tuple[str, str], str] = {
    ("eotest", "turnoff"): "PTC_TURNOFF: " + TURNOFF_DEFINITIONS["eotest"],
    ("eotest", "full_well"): "FULL_WELL: " + FULL_WELL_DEFINITION,
    ("cp_pipe", "turnoff"): "PTC_TURNOFF: " + TURNOFF_DEFINITIONS["cp_pipe"],
}
"""What each reference's number is, where the tools' words differ (the ``definition``
column of :func:`compare`); gpuptc's own follow its preset's selection."""


def _eotest_values(table: pd.DataFrame) -> pd.DataFrame:
    """EOTEST's PTC numbers per amp, a00 in gpuptc's (cp_pipe's) sign: EOTEST's is -a00."""
    values = pd.DataFrame(
        {
            "gain": table["PTC_GAIN"].astype(float),
            "noise": table["PTC_NOISE"].astype(float) if "PTC_NOISE" in table else np.nan,
            "turnoff": table["PTC_TURNOFF"].astype(float) if "PTC_TURNOFF" in table else np.nan,
            "a00": -table["PTC_A00"].astype(float) if "PTC_A00" in table else np.nan,
            "full_well": table["FULL_WELL"].astype(float) if "FULL_WELL" in table else np.nan,
        }
    )
    return values.set_index(table["AMP"].astype(int).to_numpy())


def _cp_pipe_values(ptc: pd.DataFrame) -> pd.DataFrame:
    """A PTC dataset's numbers per amp; its gain before cp_pipe's flat-based adjustment."""
    values = ptc.set_index("amp")[["gain_unadjusted", "noise", "turnoff", "a00"]]
    return values.rename(columns={"gain_unadjusted": "gain"}).assign(full_well=np.nan)


def references(
    inputs: EotestInputs, sensors: Iterable[str]
) -> dict[str, list[tuple[str, str, pd.DataFrame]]]:
    """Per sensor, each reference: (``eotest`` or ``cp_pipe``, its file, numbers per amp).

    Parameters
    ----------
    inputs : manifest, mapping or iterable of paths
        A manifest (its ``eotest`` and ``ptc_dataset`` rows), or EOTEST results files as
        :func:`eotest_references` takes them.
    sensors : iterable of str
        Sensors of the run.
    """
    from gpuptc.products.cp_pipe_ptc import read_ptc_dataset

    found: dict[str, list[tuple[str, str, pd.DataFrame]]] = {}
    for sensor, table in eotest_references(inputs, sensors).items():
        path = str(table.attrs.get("path", ""))
        found.setdefault(sensor, []).append(("eotest", path, _eotest_values(table)))
    if isinstance(inputs, pd.DataFrame):
        for row in inputs[inputs["status"] == FileStatus.PTC_DATASET].itertuples():
            tables = read_ptc_dataset(row.path, sensor=row.sensor)
            found.setdefault(str(row.sensor), []).append(
                ("cp_pipe", str(row.path), _cp_pipe_values(tables["ptc"]))
            )
    return found


def compare(ptc: pd.DataFrame, eotest_files: EotestInputs = ()) -> pd.DataFrame:
    """Each method's gain, noise, turnoff and a00 per amp, next to each reference's.

    Parameters
    ----------
    ptc : pandas.DataFrame
        From :func:`gpuptc.fit`.
    eotest_files : manifest, mapping or iterable of paths
        References: a manifest's EOTEST results and cp_pipe PTC datasets, or EOTEST results
        files (see :func:`eotest_references`).

    Returns
    -------
    pandas.DataFrame
        :data:`COMPARISON_COLUMNS`: one row per sensor, amp, method, quantity and reference
        (``eotest``: PTC_GAIN, PTC_NOISE, PTC_TURNOFF, -PTC_A00, FULL_WELL; ``cp_pipe``:
        GAIN_UNADJUSTED, NOISE, PTC_TURNOFF, the fit's a00, no full well),
        ``ratio = value / reference_value``, and the reference's ``definition`` of the
        turnoff and the full well (:data:`REFERENCE_DEFINITIONS`). Without any reference,
        one row per quantity with reference ``none`` and NaN references.

    Examples
    --------
    The fit of a small simulated sensor's measurements ``pairs`` and ``covariances``
    (:func:`gpuptc.measure` of the raws made by :func:`gpuptc.simulate`), next to the
    EOTEST results file the simulation wrote (``simulated.eotest_path``):

    >>> from gpuptc import fit
    >>> ptc, _, _ = fit(pairs, covariances, models=["expapprox"])
    >>> comparison = compare(ptc, [simulated.eotest_path])
    >>> comparison.columns.tolist()
    ['sensor', 'amp', 'method', 'quantity', 'value', 'reference', 'reference_file',
     'reference_value', 'ratio', 'definition']
    >>> comparison.groupby("quantity").size().to_dict()
    {'a00': 16, 'full_well': 16, 'gain': 16, 'noise': 16, 'turnoff': 16}
    >>> gain = comparison[comparison.quantity == "gain"]
    >>> bool(gain.ratio.between(0.9, 1.1).all())
    True
    >>> compare(ptc).reference.unique().tolist()  # without a reference
    ['none']
    """
    found = references(eotest_files, ptc["sensor"].unique()) if len(ptc) else {}
    long = ptc.melt(
        id_vars=["sensor", "amp", "model"],
        value_vars=list(QUANTITIES),
        var_name="quantity",
        value_name="value",
    ).rename(columns={"model": "method"})
    frames = []
    for sensor, rows in long.groupby("sensor", sort=False):
        for reference, path, values in found.get(str(sensor), [("none", "", None)]):
            mine = rows.assign(reference=reference, reference_file=path)
            if values is None:
                mine["reference_value"] = np.nan
            else:
                stacked = values.stack()
                keys = pd.MultiIndex.from_arrays([mine["amp"], mine["quantity"]])
                mine["reference_value"] = stacked.reindex(keys).to_numpy(float)
            frames.append(mine)
    frame = pd.concat(frames, ignore_index=True) if frames else long.iloc[:0]
    frame = frame.reindex(columns=list(COMPARISON_COLUMNS))
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["ratio"] = frame["value"].astype(float) / frame["reference_value"].astype(float)
    keys = zip(frame["reference"], frame["quantity"], strict=True)
    frame["definition"] = [REFERENCE_DEFINITIONS.get(key, "") for key in keys]
    order = {q: k for k, q in enumerate(QUANTITIES)}
    frame = frame.sort_values(
        ["sensor", "amp", "method", "quantity", "reference"],
        key=lambda c: c.map(order) if c.name == "quantity" else c,
        kind="stable",
    )
    return frame.reset_index(drop=True)


def write_eotest_files(
    directory: str | os.PathLike[str],
    ptc: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    model: str = "expapprox",
    manifest: pd.DataFrame | None = None,
) -> list[Path]:
    """Write ``<sensor>_eotest_results.fits`` and ``<sensor>_ptc.fits`` for every sensor.

    Parameters
    ----------
    directory : path-like
        Where to write.
    ptc, pairs : pandas.DataFrame
        From :func:`gpuptc.fit`.
    model : str
        Which fit fills the PTC_* columns.
    manifest : pandas.DataFrame, optional
        For SEQNUM and DAYOBS of each pair.

    Returns
    -------
    list of pathlib.Path
        The files written.

    Examples
    --------
    The fit of a small simulated sensor's measurements ``pairs`` and ``covariances``
    (:func:`gpuptc.measure` of the raws made by :func:`gpuptc.simulate`), written as
    EOTEST would into the empty directory ``tmp``:

    >>> from gpuptc import fit
    >>> ptc, _, fitted = fit(pairs, covariances, models=["expapprox"])
    >>> [path.name for path in write_eotest_files(tmp, ptc, fitted)]
    ['E2V-CCD250-101_eotest_results.fits', 'E2V-CCD250-101_ptc.fits']
    >>> from gpuptc.formats.eotest import read_eotest_results
    >>> results = read_eotest_results(tmp / "E2V-CCD250-101_eotest_results.fits")
    >>> results.columns[:3].tolist(), len(results)
    (['AMP', 'PTC_GAIN', 'PTC_GAIN_ERROR'], 16)
    >>> bool(abs(results.PTC_GAIN - ptc.gain.to_numpy()).max() < 1e-6)
    True
    """
    out = Path(directory)
    ptc_of, pairs_of = rows_by(ptc, "sensor"), rows_by(pairs, "sensor")  # split once
    written = []
    for sensor in sorted(ptc["sensor"].unique()):
        results_name, ptc_name = eotest_file_names(sensor)
        written.append(
            write_eotest_results(
                out / results_name,
                eotest_results_columns(ptc_of(sensor), sensor, model),
                primary={"ORIGIN": "gpuptc", "LSST_NUM": sensor},
            )
        )
        stats = write_ptc_stats(out / ptc_name, pairs_of(sensor), sensor, manifest=manifest)
        written.append(stats)
    return written

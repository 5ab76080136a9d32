"""gpuptc's tables as Rubin's PTC calibration, and back.

:func:`write_ptc_dataset` fills every column of an ip_isr ``PhotonTransferCurveDataset``
(schema 2.6, :mod:`gpuptc.formats.ptc_dataset`) for one sensor from what gpuptc measured and
fitted, for one model (EXPAPPROXIMATION, FULLCOVARIANCE or FULLCOVARIANCE_NO_B), the
pairs' photodiode charges where measured; what gpuptc does not measure (the charges'
deltas, histogram and KS tests, amp offsets, row-mean variances, the rolloff) is NaN, as
cp_pipe writes it with those steps off.
:func:`read_ptc_dataset` turns such a file (gpuptc's or cp_pipe's) into gpuptc's
``pairs``, ``covariances``, ``ptc`` and ``fullcov`` tables.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuptc._version import __version__
from gpuptc.config import PTC_FIT_MODELS
from gpuptc.fitting._common import covariance_weights, normal_mad
from gpuptc.fitting.ptc import eq16
from gpuptc.fitting.solve import covariance_cubes, fit_matrices, model_covariances
from gpuptc.formats.outputs import rows_by
from gpuptc.formats.ptc_dataset import (
    AUX_COLUMN_PREFIX,
    PtcDatasetError,
    PtcTable,
    read_ptc_table,
    write_ptc_table,
)
from gpuptc.inputs.manifest import AUX_PREFIX
from gpuptc.raws.layout import segment_name
from gpuptc.schema import MISMATCH_THRESHOLD, PAIR_COLUMNS, FitStatus, PairStatus, typed

__all__ = [
    "FIT_TYPES",
    "PtcDatasetError",
    "amplifier_name",
    "detector_header",
    "detector_number",
    "read_ptc_dataset",
    "segment_of",
    "write_ptc_dataset",
]

FIT_TYPES: dict[str, str] = dict(
    zip(PTC_FIT_MODELS, ("EXPAPPROXIMATION", "FULLCOVARIANCE", "FULLCOVARIANCE_NO_B"), strict=True)
)
"""gpuptc's models that a PTC dataset can hold, and their ``PTC_FIT_TYPE``."""

_SCIENCE_RAFTS = [
    f"R{row}{col}"
    for row in range(5)
    for col in range(5)
    if (row, col) not in {(0, 0), (0, 4), (4, 0), (4, 4)}
]


def amplifier_name(segment: str) -> str:
    """The camera's amplifier name of a segment: ``Segment10`` -> ``C10``."""
    return f"C{segment.removeprefix('Segment')}"


def segment_of(amplifier: str) -> str:
    """The segment of a camera's amplifier name: ``C10`` -> ``Segment10``."""
    return f"Segment{amplifier.removeprefix('C')}"


def _amp_of(name: str, names: list[str]) -> int:
    """The amp number (HDU order, 1-based) of an amplifier name such as ``C10``."""
    standard = [amplifier_name(segment_name(k)) for k in range(1, 17)]
    return standard.index(name) + 1 if name in standard else names.index(name) + 1


def detector_number(raft: str | None, slot: str | None) -> int | None:
    """LSSTCam's detector number of a science sensor (R22 S11 -> 94), None if not one."""
    if raft not in _SCIENCE_RAFTS or not slot or len(slot) != 3 or not slot[1:].isdigit():
        return None
    row, col = int(slot[1]), int(slot[2])
    if row > 2 or col > 2:
        return None
    return 9 * _SCIENCE_RAFTS.index(raft) + 3 * row + col


# -- writing ---------------------------------------------------------------------------


def _exposure_ids(pairs: pd.DataFrame, manifest: pd.DataFrame | None) -> np.ndarray:
    """(N, 2) LSSTCam exposure ids (DAYOBS x 100000 + SEQNUM) of each pair's files, else -1.

    Files read from a PTC dataset are named ``FILE#EXPOSURE_ID`` and keep their ids.
    """
    known = pd.DataFrame(columns=["dayobs", "seqnum"])
    if manifest is not None and len(manifest):
        known = manifest.dropna(subset=["dayobs", "seqnum"]).set_index("path")
    ids = np.full((len(pairs), 2), -1, dtype=np.int64)
    for column, file_column in enumerate(("file1", "file2")):
        for row, path in enumerate(pairs[file_column]):
            if path in known.index:
                entry = known.loc[path]
                ids[row, column] = int(entry["dayobs"]) * 100000 + int(entry["seqnum"])
            elif isinstance(path, str) and path.rpartition("#")[2].lstrip("-").isdigit():
                ids[row, column] = int(path.rpartition("#")[2])
    return ids


def _model_variances(fit: Any, model: str, mean: np.ndarray, cube: np.ndarray) -> np.ndarray:
    if model == "expapprox":
        noise2 = fit.noise**2 if np.isfinite(fit.noise) else 0.0
        return eq16(mean, fit.a00, fit.gain, noise2)
    return cube[:, 0, 0]


def _unadjusted_gain(fit: Any) -> float:
    """The fit's own gain: ``gain_unadjusted`` where the row has a finite one, else ``gain``."""
    unadjusted = getattr(fit, "gain_unadjusted", math.nan)
    return float(unadjusted) if np.isfinite(unadjusted) else float(fit.gain)


def _amp_row(
    amp_pairs: pd.DataFrame,
    amp_covariances: pd.DataFrame,
    fit: Any,
    matrices: dict[str, np.ndarray],
    context: dict[str, Any],
) -> dict[str, Any]:
    """Every column of one amplifier's row.

    ``GAIN`` is the adjusted gain where the gain ratios were adjusted; the model's
    parameters, covariances and variances are those of the fit (``GAIN_UNADJUSTED``).
    """
    adjusted, fit = fit.gain, fit._replace(gain=_unadjusted_gain(fit))
    model, sides, pair_ids = context["model"], context["sides"], context["pairs"]
    n = len(pair_ids)
    mean, var = amp_pairs["mean"].to_numpy(float), amp_pairs["var"].to_numpy(float)
    used = amp_pairs["used"].fillna(False).to_numpy(bool)
    covariances, npix = covariance_cubes(amp_covariances, pair_ids, sides[0])
    fitted = model != "expapprox" and np.isfinite(fit.gain)
    cube = np.full((n, sides[1], sides[1]), np.nan)
    if fitted:
        cube = model_covariances(matrices, fit.gain, np.nan_to_num(mean))
        cube[~np.isfinite(mean)] = np.nan
    nan = np.full(n, np.nan)
    overscan = amp_pairs["overscan_level"].to_numpy(float)
    chosen = overscan[used & np.isfinite(overscan)]
    expapprox = model == "expapprox"
    pars = [fit.a00, fit.gain, fit.noise**2] if expapprox else [math.nan]
    errors = [fit.a00_err, fit.gain_err, 2 * fit.noise * fit.noise_err] if expapprox else [math.nan]
    with np.errstate(invalid="ignore"):
        model_vars = _model_variances(fit, model, mean, cube)
    return {
        "AMPLIFIER_NAME": amplifier_name(context["segment"]),
        "PTC_FIT_TYPE": FIT_TYPES[model],
        "COV_MATRIX_SIDE": sides[0],
        "COV_MATRIX_SIDE_FULL_COV_FIT": sides[1],
        "INPUT_EXP_ID_PAIRS": context["ids"],
        "INPUT_EXP_PAIR_MJD_START": amp_pairs["mjd"].to_numpy(float),
        "EXP_ID_MASK": used,
        "EXP_ID_ROLLOFF_MASK": _rolloff_mask(amp_pairs),
        "RAW_EXP_TIMES": amp_pairs["exptime"].to_numpy(float),
        "RAW_MEANS": mean,
        "RAW_VARS": var,
        "RAW_DELTAS": (amp_pairs["mean2"] - amp_pairs["mean1"]).to_numpy(float),
        "ROW_MEAN_VARIANCE": _column(amp_pairs, "row_mean_variance", math.nan),
        "GAIN": adjusted,
        "GAIN_ERR": fit.gain_err,
        "GAIN_UNADJUSTED": fit.gain,
        "GAIN_LIST": amp_pairs["cp_pipe_gain"].to_numpy(float),
        "OVERSCAN_MEDIAN_LIST": overscan,
        "OVERSCAN_MEDIAN": float(np.median(chosen)) if len(chosen) else math.nan,
        "OVERSCAN_MEDIAN_SIGMA": normal_mad(chosen),
        "NOISE_LIST": amp_pairs["read_noise_adu"].to_numpy(float),
        "NOISE": fit.noise,
        "NOISE_ERR": fit.noise_err,
        "HIST_VARS": _column(amp_pairs, "hist_var", math.nan),
        "HIST_CHI2_DOFS": _column(amp_pairs, "hist_chi2_dof", math.nan),
        "KS_PVALUES": _column(amp_pairs, "ks_pvalue", 1.0),
        "PTC_FIT_PARS": np.array(pars, float),
        "PTC_FIT_PARS_ERROR": np.array(errors, float),
        "PTC_FIT_CHI_SQ": fit.chi2_dof,
        "PTC_TURNOFF": fit.turnoff,
        "PTC_TURNOFF_SAMPLING_ERROR": fit.turnoff_err,
        **{name: getattr(fit, key, math.nan) for key, name in _ROLLOFF_COLUMNS.items()},
        **_aux_values(amp_pairs),
        "A_MATRIX": matrices["a"].ravel(),
        "B_MATRIX": matrices["b"].ravel(),
        "NOISE_MATRIX": matrices["noise"].ravel(),
        "BAD_AMPS": context["bad_amps"],
        "PHOTO_CHARGE": amp_pairs.get("photo_charge", amp_pairs["mean"] * math.nan).to_numpy(float),
        "PHOTO_CHARGE_DELTAS": _column(amp_pairs, "photo_charge_delta", math.nan),
        "AMP_OFFSETS": nan,
        "NPIXEL_COVARIANCES": context["npixel"],
        "COVARIANCES": covariances.ravel(),
        "COVARIANCES_MODEL": cube.ravel(),
        "COVARIANCES_SQRT_WEIGHTS": covariance_weights(npix, var).ravel(),
        "FINAL_VARS": np.where(used, var, np.nan),
        "FINAL_MODEL_VARS": np.where(used, model_vars, np.nan),
        "FINAL_MEANS": np.where(used, mean, np.nan),
    }


def _header(sensor: str, pairs: pd.DataFrame, model: str, manifest: pd.DataFrame | None) -> dict:
    return {"PTC_FIT_TYPE": FIT_TYPES[model], **detector_header(sensor, pairs, manifest)}


def detector_header(sensor: str, pairs: pd.DataFrame, manifest: pd.DataFrame | None) -> dict:
    """The detector keywords of a calibration of ``sensor`` made from ``pairs``.

    DET_SER (the sensor), and from the manifest rows of the pairs' files: RAFTNAME,
    SLOTNAME, DET_NAME, FILTER, INSTRUME and DETECTOR (LSSTCam's number of the raft and
    slot), CALIB_ID; CALIBDATE, the time of the last pair. Unknown values are left out.
    """
    header: dict[str, Any] = {"DET_SER": sensor}
    files = set(pairs["file1"]) | set(pairs["file2"])
    rows = manifest[manifest["path"].isin(files)] if manifest is not None else pd.DataFrame()
    if len(rows):
        first = rows.iloc[0]
        raft, slot = first.get("raftbay"), first.get("ccdslot")
        detector = detector_number(raft, slot)
        header |= {"RAFTNAME": raft, "SLOTNAME": slot, "FILTER": first.get("filter")}
        if raft and slot:
            header["DET_NAME"] = f"{raft}_{slot}"
        if detector is not None:
            header |= {"INSTRUME": "LSSTCam", "DETECTOR": detector}
        header["CALIB_ID"] = " ".join(
            f"{k}={v}"
            for k, v in (
                ("raftName", raft),
                ("detectorName", slot),
                ("detector", detector),
                ("filter", first.get("filter")),
            )
            if v is not None
        )
    mjd = pairs["mjd"].dropna()
    if len(mjd):
        from astropy.time import Time

        header["CALIBDATE"] = Time(float(mjd.max()), format="mjd").isot
    return {k: v for k, v in header.items() if v is not None and not pd.isna(v)}


def _amp_rows(
    fits: pd.DataFrame,
    pairs: pd.DataFrame,
    covariances: pd.DataFrame,
    fullcov: pd.DataFrame,
    context: dict[str, Any],
) -> list[dict[str, Any]]:
    """One row of the PTC dataset per amp fitted, in amp order (``context`` updated)."""
    pair_ids, fit_side = context["pairs"], context["sides"][1]
    pairs_of, covariances_of, fullcov_of = (
        rows_by(table, "amp") for table in (pairs, covariances, fullcov)
    )
    rows = []
    for fit in fits.sort_values("amp").itertuples():
        mine = pairs_of(fit.amp).set_index("pair").reindex(pair_ids)
        measured = mine[mine["status"].isin(PairStatus.MEASURED)]
        npixel = int(measured["cov_pixels"].max()) if len(measured) else -1
        context |= {"segment": fit.segment, "npixel": npixel}
        matrices = fit_matrices(fullcov_of(fit.amp), fit_side)
        rows.append(_amp_row(mine, covariances_of(fit.amp), fit, matrices, context))
    return rows


def write_ptc_dataset(
    path: str | os.PathLike[str],
    tables: Mapping[str, pd.DataFrame],
    sensor: str,
    model: str = "expapprox",
    manifest: pd.DataFrame | None = None,
) -> Path:
    """Write one sensor's results as a cp_pipe PTC dataset (schema 2.6), atomically.

    Parameters
    ----------
    path : path-like
        Destination (``DIR/cp_pipe/<sensor>_ptc.fits`` in a run).
    tables : mapping of str to pandas.DataFrame
        gpuptc's ``pairs``, ``covariances``, ``ptc`` and ``fullcov`` (other sensors' rows
        ignored).
    sensor : str
        The sensor.
    model : {'expapprox', 'fullcov', 'fullcov_nob'}
        The fit written as the calibration (``PTC_FIT_TYPE``).
    manifest : pandas.DataFrame, optional
        The run's manifest: exposure ids, raft, slot and filter of the pairs' files.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        If ``model`` cannot be written or the sensor has no fit of it.

    Examples
    --------
    The fit of a small simulated sensor's measurements ``pairs`` and ``covariances``
    (:func:`gpuptc.measure` of the raws made by :func:`gpuptc.simulate`), written into
    the empty directory ``tmp``:

    >>> from gpuptc import fit
    >>> ptc, fullcov, fitted = fit(pairs, covariances, models=["expapprox"])
    >>> tables = {"pairs": fitted, "covariances": covariances, "ptc": ptc, "fullcov": fullcov}
    >>> path = write_ptc_dataset(tmp / "E2V-CCD250-101_ptc.fits", tables, "E2V-CCD250-101")
    >>> path.name
    'E2V-CCD250-101_ptc.fits'
    >>> read_ptc_dataset(path)["ptc"].attrs["ptc_fit_type"]
    'EXPAPPROXIMATION'
    >>> write_ptc_dataset(tmp / "x.fits", tables, "E2V-CCD250-101", model="fullcov")
    Traceback (most recent call last):
    ...
    ValueError: E2V-CCD250-101: no fullcov fit to write as a PTC dataset
    """
    if model not in FIT_TYPES:
        raise ValueError(f"model {model!r} cannot be a PTC dataset; use {', '.join(FIT_TYPES)}")
    pairs = tables["pairs"][tables["pairs"]["sensor"] == sensor]
    fits = tables["ptc"][(tables["ptc"]["sensor"] == sensor) & (tables["ptc"]["model"] == model)]
    if fits.empty:
        raise ValueError(f"{sensor}: no {model} fit to write as a PTC dataset")
    covariances = tables["covariances"][tables["covariances"]["sensor"] == sensor]
    sensor_fullcov = tables["fullcov"][tables["fullcov"]["sensor"] == sensor]
    fullcov = sensor_fullcov[sensor_fullcov["model"] == model]
    pair_ids = sorted(pairs["pair"].unique())
    side = int(covariances["i"].max()) + 1 if len(covariances) else 1
    # the full-covariance fits' side, as cp_pipe writes it for every fit type
    fit_side = int(sensor_fullcov["i"].max()) + 1 if len(sensor_fullcov) else side
    bad = fits[~fits["status"].isin(FitStatus.FITTED)]  # a term held at zero is no bad amp
    bad_amps = [amplifier_name(s) for s in bad["segment"]]
    first = pairs.sort_values("pair").drop_duplicates("pair")
    context: dict[str, Any] = {
        "model": model,
        "sides": (side, fit_side),
        "pairs": pair_ids,
        "ids": _exposure_ids(first, manifest),
        "bad_amps": bad_amps,
    }
    rows = _amp_rows(fits, pairs, covariances, fullcov, context)
    header = _header(sensor, pairs, model, manifest)
    primary = {"ORIGIN": "gpuptc", "CREATOR": f"gpuptc {__version__}"}
    return write_ptc_table(path, rows, header, primary)


# -- reading ---------------------------------------------------------------------------


def read_ptc_dataset(
    path: str | os.PathLike[str], sensor: str | None = None
) -> dict[str, pd.DataFrame]:
    """A PTC dataset file as gpuptc tables.

    Parameters
    ----------
    path : path-like
        A PTC dataset (cp_pipe's or gpuptc's), any PTC_VERSION from 1.0.
    sensor : str, optional
        Sensor name for the tables; default DET_SER, else DET_NAME, else the file name.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``pairs`` (gpuptc's columns: mean, var, exptime, cp_pipe's per-pair gain, ...
        per pair and amp, NaN where the file has no such number; ``file1`` and ``file2``
        are ``FILE#EXPOSURE_ID``; ``used`` from EXP_ID_MASK; ``status`` ``not_measurable``
        where the mean is NaN), ``covariances`` (pixel counts from the weights), ``ptc``
        (one row per amp, the file's fit, ``status`` ``bad_amp`` for BAD_AMPS) and
        ``fullcov`` (a, b, noise per lag for the full-covariance fit types). The file's
        metadata, version and the columns its version lacks are in ``attrs``.

    Raises
    ------
    gpuptc.formats.ptc_dataset.PtcDatasetError
        If the file is not a readable PTC dataset (the message names the file and why).

    Examples
    --------
    A PTC dataset of a small simulated sensor, written (into the empty directory
    ``tmp``) from the fit of its measurements ``pairs`` and ``covariances``
    (:func:`gpuptc.measure` of the raws made by :func:`gpuptc.simulate`), read back:

    >>> from gpuptc import fit
    >>> ptc, fullcov, fitted = fit(pairs, covariances, models=["expapprox"])
    >>> tables = {"pairs": fitted, "covariances": covariances, "ptc": ptc, "fullcov": fullcov}
    >>> path = write_ptc_dataset(tmp / "ptc.fits", tables, "E2V-CCD250-101")
    >>> dataset = read_ptc_dataset(path)
    >>> {name: table.shape for name, table in dataset.items()}
    {'pairs': (96, 35), 'covariances': (9600, 7), 'ptc': (16, 25), 'fullcov': (0, 10)}
    >>> dataset["ptc"].attrs["det_ser"], dataset["ptc"].attrs["ptc_version"]
    ('E2V-CCD250-101', 2.6)
    >>> bool(abs(dataset["ptc"].gain - ptc.gain).max() < 1e-6)
    True
    """
    table = read_ptc_table(path)
    header = table.header
    name = sensor or header.get("DET_SER") or header.get("DET_NAME") or Path(path).stem
    fit_type = str(header.get("PTC_FIT_TYPE", table.rows[0]["PTC_FIT_TYPE"])).strip()
    model = {v: k for k, v in FIT_TYPES.items()}.get(fit_type, fit_type.lower())
    names = [row["AMPLIFIER_NAME"] for row in table.rows]
    bad = set(table.rows[0]["BAD_AMPS"])
    pairs, covariances, ptc, fullcov = [], [], [], []
    for row in table.rows:
        amp = _amp_of(row["AMPLIFIER_NAME"], names)
        segment = segment_of(row["AMPLIFIER_NAME"])
        pairs.append(_pairs_of(row, str(name), amp, segment, Path(path)))
        covariances.append(_covariances_of(row, str(name), amp))
        ptc.append(_fit_of(row, str(name), amp, segment, model, row["AMPLIFIER_NAME"] in bad))
        if model in ("fullcov", "fullcov_nob"):
            fullcov.append(_fullcov_of(row, str(name), amp, model))
    tables = {
        "pairs": pd.concat(pairs, ignore_index=True),
        "covariances": pd.concat(covariances, ignore_index=True),
        "ptc": pd.DataFrame(ptc),
        "fullcov": pd.concat(fullcov, ignore_index=True) if fullcov else _no_fullcov(),
    }
    for frame in tables.values():
        frame.attrs = _attrs(table, path)
    return tables


def _attrs(table: PtcTable, path: Any) -> dict[str, Any]:
    keys = ("PTC_VERSION", "PTC_FIT_TYPE", "DET_NAME", "DET_SER", "DETECTOR", "CALIBDATE")
    return {
        "path": str(path),
        "missing_columns": list(table.missing),
        **{k.lower(): table.header[k] for k in keys if k in table.header},
    }


def _pairs_of(row: dict, sensor: str, amp: int, segment: str, path: Path) -> pd.DataFrame:
    mean = np.asarray(row["RAW_MEANS"], float)
    n = len(mean)
    delta = np.asarray(row["RAW_DELTAS"], float)
    ids = np.asarray(row["INPUT_EXP_ID_PAIRS"]).reshape(n, 2)
    status = np.where(np.isfinite(mean), PairStatus.OK, PairStatus.NOT_MEASURABLE)
    frame = pd.DataFrame(
        {
            "sensor": sensor,
            "pair": np.arange(n),
            "amp": amp,
            "segment": segment,
            "exptime": np.asarray(row["RAW_EXP_TIMES"], float),
            "photo_charge": np.broadcast_to(np.asarray(row["PHOTO_CHARGE"], float), (n,)),
            "photo_charge_delta": np.broadcast_to(
                np.asarray(row["PHOTO_CHARGE_DELTAS"], float), (n,)
            ),
            "mjd": np.asarray(row["INPUT_EXP_PAIR_MJD_START"], float),
            "file1": [f"{path}#{i}" for i in ids[:, 0]],
            "file2": [f"{path}#{i}" for i in ids[:, 1]],
            "mean1": mean - delta / 2,
            "mean2": mean + delta / 2,
            "mean": mean,
            "var": np.asarray(row["RAW_VARS"], float),
            "npix": row["NPIXEL_COVARIANCES"],
            "cp_pipe_gain": np.asarray(row["GAIN_LIST"], float),
            "read_noise_adu": np.asarray(row["NOISE_LIST"], float),
            "overscan_level": np.asarray(row["OVERSCAN_MEDIAN_LIST"], float),
            "level_mismatch": delta / (mean - delta / 2),
            "hist_var": np.asarray(row["HIST_VARS"], float),
            "hist_chi2_dof": np.asarray(row["HIST_CHI2_DOFS"], float),
            "ks_pvalue": np.asarray(row["KS_PVALUES"], float),
            "row_mean_variance": np.asarray(row["ROW_MEAN_VARIANCE"], float),
            "cov_pixels": row["NPIXEL_COVARIANCES"],
            "pixels": row["NPIXEL_COVARIANCES"],
            "used": np.asarray(row["EXP_ID_MASK"], bool),
            "rolloff_fit": np.asarray(row["EXP_ID_ROLLOFF_MASK"], bool),
            "status": status,
        }
    )
    frame["mismatched"] = frame["level_mismatch"].abs() > MISMATCH_THRESHOLD
    return typed(frame.reindex(columns=list(PAIR_COLUMNS))).assign(**_aux_columns(row, n))


def _aux_columns(row: dict, n: int) -> dict[str, np.ndarray]:
    """A dataset row's auxiliary values per pair (``PTCAUX_<KEYWORD>``) as ``aux_`` columns."""
    found = {}
    for name, values in row.items():
        if name.startswith(AUX_COLUMN_PREFIX):
            array = np.asarray(values).reshape(n)
            text = array.dtype.kind in "USO"
            key = AUX_PREFIX + name[len(AUX_COLUMN_PREFIX) :]
            found[key] = array.astype(str) if text else array.astype(float)
    return found


def _covariances_of(row: dict, sensor: str, amp: int) -> pd.DataFrame:
    side = int(row["COV_MATRIX_SIDE"])
    cube = np.asarray(row["COVARIANCES"], float).reshape(-1, side, side)
    n = cube.shape[0]
    pair, i, j = np.meshgrid(np.arange(n), np.arange(side), np.arange(side), indexing="ij")
    weights = np.asarray(row["COVARIANCES_SQRT_WEIGHTS"], float).reshape(n, side, side)
    var = np.asarray(row["RAW_VARS"], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        npix = (weights * var[:, None, None]) ** 2  # inverts cp_pipe's weights
    npix[:, 0, 0] *= 2
    return pd.DataFrame(
        {
            "sensor": sensor,
            "pair": pair.ravel(),
            "amp": amp,
            "i": i.ravel(),
            "j": j.ravel(),
            "cov": cube.ravel(),
            "npix": np.rint(np.nan_to_num(npix.ravel())).astype(np.int64),
        }
    )


def _fit_of(row: dict, sensor: str, amp: int, segment: str, model: str, bad: bool) -> dict:
    pars = np.atleast_1d(np.asarray(row["PTC_FIT_PARS"], float))
    errors = np.atleast_1d(np.asarray(row["PTC_FIT_PARS_ERROR"], float))
    a_matrix = np.asarray(row["A_MATRIX"], float)
    a00 = pars[0] if model == "expapprox" and len(pars) == 3 else a_matrix.ravel()[0]
    a00_err = errors[0] if model == "expapprox" and len(errors) == 3 else math.nan
    return {
        "sensor": sensor,
        "amp": amp,
        "segment": segment,
        "model": model,
        "gain": float(row["GAIN"]),
        "gain_unadjusted": float(row["GAIN_UNADJUSTED"]),
        "gain_adjustment": float(row["GAIN_UNADJUSTED"]) / float(row["GAIN"]),
        "gain_err": float(row["GAIN_ERR"]),
        "noise": float(row["NOISE"]),
        "noise_err": float(row["NOISE_ERR"]),
        "a00": float(a00),
        "a00_err": float(a00_err),
        "turnoff": float(row["PTC_TURNOFF"]),
        "turnoff_err": float(row["PTC_TURNOFF_SAMPLING_ERROR"]),
        "turnoff_electrons": float(row["PTC_TURNOFF"]) * float(row["GAIN_UNADJUSTED"]),
        "full_well": math.nan,
        "n_used": int(np.sum(np.asarray(row["EXP_ID_MASK"], bool))),
        "chi2_dof": float(row["PTC_FIT_CHI_SQ"]),
        "status": "bad_amp" if bad else FitStatus.OK,
        "powerlaw_amplitude": math.nan,
        "powerlaw_index": math.nan,
        **{key: _float(row, name) for key, name in _ROLLOFF_COLUMNS.items()},
    }


def _rolloff_mask(amp_pairs: pd.DataFrame) -> np.ndarray:
    """The pairs cp_pipe's rolloff model was fitted to (none where it did not run)."""
    if "rolloff_fit" not in amp_pairs:
        return np.zeros(len(amp_pairs), dtype=bool)
    return amp_pairs["rolloff_fit"].fillna(False).to_numpy(bool)


def _column(amp_pairs: pd.DataFrame, name: str, missing: float) -> np.ndarray:
    """A pairs column as floats, ``missing`` where the table has none (an older one)."""
    if name not in amp_pairs:
        return np.full(len(amp_pairs), missing)
    return amp_pairs[name].to_numpy(float)


def _aux_values(amp_pairs: pd.DataFrame) -> dict[str, np.ndarray]:
    """The pairs' auxiliary header values (``aux_<KEYWORD>``) as ``PTCAUX_<KEYWORD>``."""
    return {
        AUX_COLUMN_PREFIX + name[len(AUX_PREFIX) :]: amp_pairs[name].to_numpy()
        for name in amp_pairs.columns
        if name.startswith(AUX_PREFIX)
    }


_ROLLOFF_COLUMNS = {
    "rolloff": "PTC_ROLLOFF",
    "rolloff_err": "PTC_ROLLOFF_ERROR",
    "rolloff_tau": "PTC_ROLLOFF_TAU",
    "rolloff_tau_err": "PTC_ROLLOFF_TAU_ERROR",
}
"""The ``ptc`` table's rolloff columns and the dataset's (PTC_VERSION 2.6 on)."""


def _float(row: dict, name: str) -> float:
    """A number of the row, NaN where its version has no such column."""
    value = row.get(name)
    return math.nan if value is None else float(value)


def _fullcov_of(row: dict, sensor: str, amp: int, model: str) -> pd.DataFrame:
    side = int(row["COV_MATRIX_SIDE_FULL_COV_FIT"])
    i, j = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    values = {
        name: np.asarray(row[column], float).ravel()
        for name, column in (("a", "A_MATRIX"), ("b", "B_MATRIX"), ("noise", "NOISE_MATRIX"))
    }
    return pd.DataFrame(
        {
            "sensor": sensor,
            "amp": amp,
            "model": model,
            "i": i.ravel(),
            "j": j.ravel(),
            "a": values["a"],
            "a_err": np.nan,
            "b": values["b"],
            "b_err": np.nan,
            "noise": values["noise"],
        }
    )


def _no_fullcov() -> pd.DataFrame:
    from gpuptc.schema import FULLCOV_COLUMNS

    return pd.DataFrame(columns=list(FULLCOV_COLUMNS))

"""A run measures each amp's linearity from the same pairs: photodiode charges, the
abscissa each sensor used and why, and linearizers that are the identity on linear data."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gpuptc
from gpuptc.config import LinearityConfig, get_preset
from gpuptc.fitting.linearity_sensor import sensor_abscissa, sensor_linearity
from gpuptc.inputs.photodiode import integrate, pair_charges, read_photodiode
from gpuptc.raws.exposure import read_raw
from gpuptc.running import sensor as sensor_pipeline
from gpuptc.running.sensor import SensorTask

MODELS = ["expapprox"]


@pytest.fixture(scope="module")
def photodiode_sensor(tmp_path_factory):
    """A small linear sensor with the camera's photodiode readings beside its flats."""
    folder = tmp_path_factory.mktemp("photodiode")
    return gpuptc.simulate(folder / "raw", size="small", pairs=16, seed=8, photodiode=True)


@pytest.fixture(scope="module")
def lsstcam_run(photodiode_sensor, tmp_path_factory):
    """``gpuptc run`` of it with the LSSTCam preset (photodiode on): its tables."""
    out = tmp_path_factory.mktemp("lsstcam") / "out"
    gpuptc.run(
        photodiode_sensor.directory,
        out,
        backend="numpy",
        models=MODELS,
        report=False,
        preset="cp_pipe_lsstcam",
    )
    names = ("pairs", "linearity", "ptc", "manifest")
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in names}


def test_each_pair_has_the_mean_charge_of_its_flats_readings(photodiode_sensor, lsstcam_run):
    first = lsstcam_run["pairs"].drop_duplicates("pair").set_index("pair")
    for pair, row in first.iterrows():
        charges = []
        for path in (row.file1, row.file2):
            info = read_raw(path).info
            name = f"Photodiode_Readings_{info.dayobs}_{int(info.seqnum):06d}.txt"
            readings = read_photodiode(photodiode_sensor.directory / name)
            charges.append(integrate(readings, "TRIMMED_SUM", 1.0))  # the preset's
        assert row.photo_charge == pytest.approx(np.mean(charges), rel=1e-12), pair
    linearity = lsstcam_run["linearity"]
    assert (linearity.abscissa == "photodiode").all() and len(linearity) == 16
    assert (linearity.abscissa_reason == "").all()


def test_a_sensor_without_every_reading_falls_back_to_exposure_time(
    photodiode_sensor, lsstcam_run, copy_of
):
    raw = copy_of(photodiode_sensor)
    sorted(raw.glob("Photodiode_Readings_*.txt"))[5].unlink()
    pairs = lsstcam_run["pairs"].copy()  # the copy's files: same names, another folder
    for column in ("file1", "file2"):
        pairs[column] = [str(raw / name.rsplit("/", 1)[-1]) for name in pairs[column]]
    manifest = gpuptc.ingest([raw])
    charges, missing = pair_charges(pairs, manifest, "TRIMMED_SUM", 1.0)
    (lacking,) = charges.index[charges.isna()]  # the pair of the flat without readings
    assert len(missing) == 1 and "no photodiode readings beside it" in next(iter(missing.values()))
    with_charges = pairs.assign(photo_charge=pairs["pair"].map(charges))
    abscissa, reason = sensor_abscissa(with_charges, LinearityConfig(use_photodiode=True))
    assert abscissa == "exptime"
    assert reason == f"1 of 16 pairs without a photodiode charge (pairs {lacking})"


def test_the_cp_pipe_preset_fits_against_exposure_time(lsstcam_run):
    abscissa, reason = sensor_abscissa(lsstcam_run["pairs"], get_preset("cp_pipe").linearity)
    assert abscissa == "exptime" and reason.endswith("(use_photodiode false)")


def test_charges_of_the_wrong_sign_fall_back_to_exposure_time(lsstcam_run):
    """cp_pipe's current scale (-1) on the camera's positive currents: MEAN's charges come
    out negative and the sensor says so instead of fitting against them; DIRECT_SUM ignores
    the scale, as Rubin's does."""
    pairs, manifest = lsstcam_run["pairs"], lsstcam_run["manifest"]
    config = LinearityConfig(use_photodiode=True)
    for method, expected in (("DIRECT_SUM", "photodiode"), ("MEAN", "exptime")):
        charges, _ = pair_charges(pairs, manifest, method, -1.0)
        signed = pairs.assign(photo_charge=pairs["pair"].map(charges))
        abscissa, reason = sensor_abscissa(signed, config)
        assert abscissa == expected, method
    assert reason.startswith("16 of 16 pairs with a photodiode charge of 0 or less")


@pytest.mark.parametrize("kind", ["Squared", "Polynomial"])
def test_on_a_linear_sensor_every_linearizer_is_the_identity_within_its_errors(lsstcam_run, kind):
    """No coefficient beyond the linear term further from zero than its error allows: a
    two-sided 1e-4 quantile of Student's t for the fit's degrees of freedom (a cubic
    through the 8 pairs of 30-20 000 ADU has 4: its errors are themselves uncertain)."""
    config = LinearityConfig(linearity_type=kind, use_photodiode=True)
    linearity = sensor_linearity(lsstcam_run["pairs"], lsstcam_run["ptc"], config)
    solved = linearity[linearity.status == "ok"]
    assert len(solved) >= 14 and (solved.type == kind).all()
    assert set(linearity.status) <= {"ok", "no_ptc_pairs"}  # an amp whose PTC fit failed
    for row in solved.itertuples():
        k, errors = np.asarray(row.fit_params), np.asarray(row.fit_params_err)
        allowed = stats.t.ppf(1 - 0.5e-4, row.n_used - len(k))
        assert (np.abs(k[2:]) < allowed * errors[2:]).all(), (row.amp, k, errors)


def test_a_linearity_that_fails_costs_the_linearity_only(photodiode_sensor, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no convergence")

    monkeypatch.setattr(sensor_pipeline, "sensor_linearity", broken)
    out = tmp_path / "out"
    gpuptc.run(photodiode_sensor.directory, out, backend="numpy", models=MODELS, report=False)
    assert pd.read_parquet(out / "ptc.parquet").gain.notna().sum() >= 14  # the PTC stands
    assert pd.read_parquet(out / "linearity.parquet").empty
    rejected = pd.read_csv(out / "rejected.csv")
    (row,) = rejected[rejected.stage == "linearity"].itertuples()
    assert row.reason == "linearity not solved: RuntimeError: no convergence"


def test_readings_files_are_part_of_what_makes_a_stored_sensor_stale(photodiode_sensor, copy_of):
    raw = copy_of(photodiode_sensor)
    task = SensorTask(
        photodiode_sensor.sensor,
        gpuptc.ingest([raw]),
        get_preset("cp_pipe"),
        "numpy",
        ("expapprox",),
    )
    before = task.fingerprint()
    sorted(raw.glob("Photodiode_Readings_*.txt"))[3].unlink()
    assert task.fingerprint() != before

"""A run measures each amp's linearity from the same pairs: photodiode charges, the
abscissa each sensor used and why, and linearizers that are the identity on linear data."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gpuptc
from gpuptc.inputs.photodiode import integrate, read_photodiode
from gpuptc.raws.exposure import read_raw

MODELS = ["expapprox"]


@pytest.fixture(scope="module")
def photodiode_sensor(tmp_path_factory):
    """A small linear sensor with the camera's photodiode readings beside its flats, and
    no cosmic rays (a track through one flat of a pair moves its mean by 0.05 %: with 8
    pairs in the fit range, that alone would be a curvature of 3 errors)."""
    folder = tmp_path_factory.mktemp("photodiode")
    return gpuptc.simulate(
        folder / "raw", size="small", pairs=16, seed=8, photodiode=True, cosmic_rays=False
    )


def _run(raw, out, **options):
    gpuptc.run(raw, out, backend="numpy", models=MODELS, report=False, **options)
    return (pd.read_parquet(out / name) for name in ("pairs.parquet", "linearity.parquet"))


def test_each_pair_has_the_mean_charge_of_its_flats_readings(photodiode_sensor, tmp_path):
    pairs, linearity = _run(photodiode_sensor.directory, tmp_path / "out", preset="cp_pipe_lsstcam")
    first = pairs.drop_duplicates("pair").set_index("pair")
    for pair, row in first.iterrows():
        charges = []
        for path in (row.file1, row.file2):
            info = read_raw(path).info
            name = f"Photodiode_Readings_{info.dayobs}_{int(info.seqnum):06d}.txt"
            readings = read_photodiode(photodiode_sensor.directory / name)
            charges.append(integrate(readings, "TRIMMED_SUM", -1.0))  # cp_pipe's defaults
        assert row.photo_charge == pytest.approx(np.mean(charges), rel=1e-12), pair
    assert (linearity.abscissa == "photodiode").all() and len(linearity) == 16
    assert (linearity.abscissa_reason == "").all()


def test_a_sensor_without_every_reading_falls_back_to_exposure_time(
    photodiode_sensor, copy_of, tmp_path
):
    raw = copy_of(photodiode_sensor)
    lost = sorted(raw.glob("Photodiode_Readings_*.txt"))[5]
    lost.unlink()
    pairs, linearity = _run(raw, tmp_path / "out", preset="cp_pipe_lsstcam")
    assert (linearity.abscissa == "exptime").all()
    lacking = pairs.loc[~np.isfinite(pairs.photo_charge), "pair"].unique()
    assert len(lacking) == 1  # the pair of the flat without readings
    expected = f"1 of 16 pairs without a photodiode charge (pairs {lacking[0]})"
    assert (linearity.abscissa_reason == expected).all()


def test_the_cp_pipe_preset_fits_against_exposure_time(photodiode_sensor, tmp_path):
    _, linearity = _run(photodiode_sensor.directory, tmp_path / "out")
    assert (linearity.abscissa == "exptime").all()
    assert linearity.abscissa_reason.iloc[0].endswith("(use_photodiode false)")


@pytest.mark.parametrize("kind", ["Squared", "Polynomial"])
def test_on_a_linear_sensor_every_linearizer_is_the_identity_within_its_errors(
    photodiode_sensor, tmp_path, kind
):
    """No coefficient beyond the linear term further from zero than its error allows: a
    two-sided 1e-4 quantile of Student's t for the fit's degrees of freedom (a cubic
    through the 8 pairs of 30-20 000 ADU has 4: its errors are themselves uncertain)."""
    _, linearity = _run(
        photodiode_sensor.directory,
        tmp_path / "out",
        preset="cp_pipe_lsstcam",
        linearity_type=kind,
    )
    solved = linearity[linearity.status == "ok"]
    assert len(solved) >= 14 and (solved.type == kind).all()
    assert set(linearity.status) <= {"ok", "no_ptc_pairs"}  # an amp whose PTC fit failed
    for row in solved.itertuples():
        k, errors = np.asarray(row.fit_params), np.asarray(row.fit_params_err)
        allowed = stats.t.ppf(1 - 0.5e-4, row.n_used - len(k))
        assert (np.abs(k[2:]) < allowed * errors[2:]).all(), (row.amp, k, errors)

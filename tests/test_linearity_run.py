"""A run measures each amp's linearity from the same pairs: photodiode charges, the
abscissa each sensor used and why, linearizers that are the identity on linear data, a
spline that follows a known non-linearity, and the PTC measured on linearized pixels."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gpuptc
from gpuptc.config import LinearityConfig, get_preset
from gpuptc.fitting.linearity_sensor import sensor_abscissa, sensor_linearity
from gpuptc.inputs.photodiode import integrate, pair_charges, read_photodiode
from gpuptc.kernels.linearize import apply_linearizer
from gpuptc.products.linearizer import LinearizerError, read_linearizer, write_linearizer
from gpuptc.raws.exposure import read_primary_header, read_raw
from gpuptc.running import sensor as sensor_pipeline
from gpuptc.running.sensor import SensorTask
from gpuptc.simulation.nonlinearity import response

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
    """And the difference of its flats' charges, and the mean of their monitoring-diode
    currents, as their headers give them."""
    first = lsstcam_run["pairs"].drop_duplicates("pair").set_index("pair")
    for pair, row in first.iterrows():
        charges, currents = [], []
        for path in (row.file1, row.file2):
            info = read_raw(path).info
            name = f"Photodiode_Readings_{info.dayobs}_{int(info.seqnum):06d}.txt"
            readings = read_photodiode(photodiode_sensor.directory / name)
            charges.append(integrate(readings, "TRIMMED_SUM", 1.0))  # the preset's
            currents.append(float(read_primary_header(path)["MONDIODE"]))
        assert row.photo_charge == pytest.approx(np.mean(charges), rel=1e-12), pair
        delta = charges[1] - charges[0]  # cp_pipe's photoChargeDelta: second less first
        assert row.photo_charge_delta == pytest.approx(delta, rel=1e-9, abs=1e-12 * charges[0])
        assert row.mondiode == pytest.approx(np.mean(currents), rel=1e-12), pair
        assert row.mondiode < 0  # the meter's sign, as the headers carry it
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


@pytest.fixture(scope="module")
def nonlinear_runs(tmp_path_factory):
    """A small sensor with the simulator's non-linearity, 30 pairs evenly spaced in signal
    (a linearity series: a spline's evenly spaced nodes each need pairs) and photodiode
    readings; run plain, with its Spline linearity solved first, and linearized by the
    linearizer file that run wrote. The eotest preset: its PTC keeps these amps' pairs to
    their turnoff (cp_pipe's initial outlier fit leaves few of a series this sparse at low
    signal), which bounds the linearity's turnoff."""
    folder = tmp_path_factory.mktemp("nonlinear")
    sim = gpuptc.simulate(
        folder / "raw", size="small", pairs=30, biases=0, seed=21, nonlinearity=True,
        photodiode=True, spacing="linear",
    )  # fmt: skip
    options = {
        "backend": "numpy", "models": MODELS, "report": False, "preset": "eotest",
        "linearity__linearity_type": "Spline", "linearity__use_photodiode": True,
    }  # fmt: skip
    outs = {name: folder / name for name in ("plain", "first", "given")}
    gpuptc.run(sim.directory, outs["plain"], **options)
    gpuptc.run(sim.directory, outs["first"], linearizer="first", **options)
    gpuptc.run(sim.directory, outs["given"], linearizer=outs["first"] / "cp_pipe", **options)
    return sim, outs


def _read(out, name):
    frame = pd.read_parquet(out / f"{name}.parquet")
    keys = [key for key in ("pair", "amp", "model") if key in frame]
    return frame.sort_values(keys, ignore_index=True)


def test_the_spline_follows_the_simulated_response(nonlinear_runs):
    """The linearizer applied to the simulator's response, over the linear signal, is flat
    within 1e-3 from 5 000 ADU to the turnoff (or 90 % of the full well, where bright
    pixels start to clip): measured 1.2e-4 to 5.5e-4 on these 30 small pairs, whose means
    are good to about 1e-4 (the 5e-4 the Spline reaches on medium sensors is in
    benchmarks/linearity.py). Without it the response deviates by 0.4-1.6 %."""
    sim, outs = nonlinear_runs
    linearity = pd.read_parquet(outs["first"] / "linearity.parquet")
    solved = linearity[linearity.status == "ok"]
    assert len(solved) >= 14 and (solved.type == "Spline").all()
    assert (solved.abscissa == "photodiode").all()
    truth = sim.truth.set_index("amp")
    for row in solved.itertuples():
        amp = truth.loc[row.amp]
        top = min(row.turnoff, 0.9 * amp.full_well_adu)
        linear = np.linspace(5000.0, top, 2000)
        measured = response(linear, amp, float(amp.full_well_adu))
        corrected = apply_linearizer("Spline", np.asarray(row.coefficients), measured)
        ratio = corrected / linear
        assert np.max(np.abs(ratio / np.median(ratio) - 1)) < 1e-3, row.amp
        raw = measured / linear
        assert np.max(np.abs(raw / np.median(raw) - 1)) > 3e-3  # what it corrects


def test_pixels_are_linearized_before_the_statistics(nonlinear_runs):
    """Each pair's mean in the run that solved its linearity first is the linearizer
    applied to the plain run's mean, to within the pixels' spread through its curvature:
    1e-4 below 80 % of the turnoff (measured: up to 3e-5 in the step; beyond, the
    brightest pixels pass the spline's last node, where it stops)."""
    _, outs = nonlinear_runs
    plain, first = _read(outs["plain"], "pairs"), _read(outs["first"], "pairs")
    linearity = pd.read_parquet(outs["first"] / "linearity.parquet").set_index("amp")
    for amp, rows in plain.groupby("amp"):
        if linearity.at[amp, "type"] != "Spline":
            continue
        rows = rows[rows["mean"] < 0.8 * linearity.at[amp, "turnoff"]]
        expected = apply_linearizer(
            "Spline", np.asarray(linearity.at[amp, "coefficients"]), rows["mean"].to_numpy()
        )
        np.testing.assert_allclose(first.loc[rows.index, "mean"], expected, rtol=1e-4)
        assert not np.allclose(rows["mean"], expected, rtol=1e-4)  # it did correct them


def test_a_run_linearized_by_a_file_equals_the_run_that_solved_it_first(nonlinear_runs):
    _, outs = nonlinear_runs
    for name in ("pairs", "ptc"):
        first, given = _read(outs["first"], name), _read(outs["given"], name)
        for column in ("mean", "var") if name == "pairs" else ("gain", "noise", "turnoff"):
            np.testing.assert_allclose(given[column], first[column], rtol=1e-12)
    runs = {name: json.loads((outs[name] / "run.json").read_text()) for name in outs}
    assert runs["plain"]["linearized_by"] is None
    assert runs["first"]["linearized_by"].startswith("each sensor's linearity")
    assert runs["given"]["linearized_by"] == str((outs["first"] / "cp_pipe").resolve())


def test_a_sensor_without_a_linearizer_is_rejected_with_why(nonlinear_runs, tmp_path):
    sim, _ = nonlinear_runs
    with pytest.raises(LinearizerError, match="no such linearizer file or folder"):
        gpuptc.run(sim.directory, tmp_path / "none", linearizer=tmp_path / "missing")
    assert not (tmp_path / "none").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = gpuptc.run(
        sim.directory, tmp_path / "out", linearizer=empty, backend="numpy", report=False
    )
    assert result.exit_code == 1
    (reason,) = result.tables["rejected"]["reason"]
    assert reason.endswith(f"{empty}: none of the linearizer files is of {sim.sensor}")


def test_pairs_under_two_lamp_settings_are_grouped_and_written_so(lsstcam_run, tmp_path):
    """The same pairs as if every other one were taken with the lamp at 0.7 of the others
    (their exposure times longer by 1/0.7 for the same signal): automatic grouping on
    exposure time finds the two settings (the dimmer first; pairs above 0.9 of the
    brightest signal join the brightest one's below, as cp_pipe puts them), each amp's
    row and its linearizer file say which pair had which."""
    pairs, ptc = lsstcam_run["pairs"], lsstcam_run["ptc"]
    dimmer = pairs["pair"] % 2 == 1
    relit = pairs.assign(exptime=np.where(dimmer, pairs["exptime"] / 0.7, pairs["exptime"]))
    config = LinearityConfig(do_auto_grouping=True)
    linearity = sensor_linearity(relit, ptc, config)
    order = relit.drop_duplicates("pair").sort_values(["exptime", "pair"]).pair.to_numpy()
    signal = relit.groupby("pair")["mean"].mean().reindex(order).to_numpy()
    below = signal <= 0.9 * signal.max()
    for row in linearity.itertuples():
        assert row.input_pairs == order.tolist()
        groups = np.asarray(row.input_groups)
        assert set(groups) == {0, 1}
        assert (groups[below] == (order[below] % 2 == 0)).all()
        assert (groups[~below] == groups[below][np.argmax(signal[below])]).all()
    path = write_linearizer(tmp_path / "linearizer.fits", linearity, ptc, linearity.sensor[0])
    for amp in read_linearizer(path).itertuples():
        np.testing.assert_array_equal(amp.input_groups, linearity.input_groups[0])

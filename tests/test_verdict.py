"""The verdict: which amps fail a requirement or need a look, and one line per sensor.

The tables here are made by hand so that each test's expected flags follow from the
thresholds' definitions; the runs at the end check the verdict where users find it.
"""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import gpuptc
from gpuptc.cli import main
from gpuptc.products.verdict import (
    VERDICT_COLUMNS,
    Thresholds,
    Verdict,
    amp_verdicts,
    sensor_verdicts,
)
from gpuptc.report.sensor_table import sensor_summary
from gpuptc.schema import FitStatus, PairStatus


def _ptc(sensor="S", amps=16, **columns):
    """A sensor's EXPAPPROXIMATION rows: every amp alike unless ``columns`` says otherwise."""
    frame = pd.DataFrame(
        {
            "sensor": sensor,
            "amp": range(1, amps + 1),
            "segment": [f"Segment{a:02d}" for a in range(1, amps + 1)],
            "model": "expapprox",
            "gain": 1.0,
            "gain_err": 0.001,
            "noise": 6.0,
            "noise_err": 0.05,
            "a00": -2e-6,
            "a00_err": 1e-8,
            "turnoff": 9e4,
            "turnoff_err": 5e3,
            "turnoff_electrons": 9e4,
            "full_well": 1.5e5,
            "chi2_dof": 1.0,
            "status": FitStatus.OK,
        }
    )
    for name, values in columns.items():
        for amp, value in values.items():
            frame.loc[frame["amp"] == amp, name] = value
    return frame


def _pairs(ptc, read_noise, isr_noise=0.0):
    """Two used pairs per amp whose per-pixel read noise (ADU) is ``read_noise[amp]`` or 6,
    with ``isr_noise`` added by the ISR, and a third pair not measured."""
    rows = [
        {
            "sensor": row.sensor,
            "amp": row.amp,
            "pair": pair,
            "status": PairStatus.MEASURED[0] if pair < 2 else "flats_disagree",
            "used": pair < 2,
            "read_noise_pixel_adu": read_noise.get(row.amp, 6.0) if pair < 2 else 99.0,
            "isr_noise_adu": isr_noise,
            "read_noise_adu": 0.97 * read_noise.get(row.amp, 6.0),  # the overscan's own
        }
        for row in ptc.itertuples()
        for pair in range(3)
    ]
    return pd.DataFrame(rows)


def _flagged(verdicts, flag):
    return verdicts.loc[verdicts[f"flag_{flag}"], "amp"].tolist()


def test_requirements_fail_the_amp():
    ptc = _ptc(full_well={4: 1.8e5}, status={7: FitStatus.NO_CONVERGENCE})
    verdicts = amp_verdicts({"ptc": ptc, "pairs": _pairs(ptc, {2: 8.5})})
    assert list(verdicts.columns) == list(VERDICT_COLUMNS)
    assert _flagged(verdicts, "read_noise") == [2]  # 8.5 ADU x gain 1: CCD-007's 8 e-
    assert _flagged(verdicts, "full_well") == [4]  # CCD-008's 175 000 e-
    assert _flagged(verdicts, "fit") == [7]
    failing = verdicts.loc[verdicts.verdict == Verdict.FAIL, "amp"].tolist()
    assert failing == [2, 4, 7]
    assert verdicts.set_index("amp").at[2, "flags"].startswith("read noise 8.50 e-")
    # the pairs not measured do not count: their 99 ADU would fail every amp
    assert verdicts.read_noise.drop(index=1).eq(6.0).all()


def test_checks_need_the_difference_to_be_significant():
    """PTC noise 7 e- against 6 e- expected: 17 %, but flagged only where the PTC noise's
    error makes it more than 3 errors."""
    ptc = _ptc(noise={1: 7.0, 2: 7.0}, noise_err={1: 0.2, 2: 0.5})
    verdicts = amp_verdicts({"ptc": ptc, "pairs": _pairs(ptc, {})})
    assert _flagged(verdicts, "noise_agreement") == [1]  # 1 e- = 5 errors; amp 2: 2 errors
    assert verdicts.set_index("amp").at[1, "verdict"] == Verdict.CHECK
    loose = amp_verdicts({"ptc": ptc, "pairs": _pairs(ptc, {})}, Thresholds(significance=1.0))
    assert _flagged(loose, "noise_agreement") == [1, 2]


def test_the_isrs_own_noise_explains_a_ptc_noise_above_the_overscans():
    """Read noise 6 e-, ISR noise 3.6 e-: the PTC noise of 7 e- is what they make (no
    check), though 20 % above the overscan's own number (cp_pipe's warning)."""
    ptc = _ptc(noise=dict.fromkeys(range(1, 17), 7.0))
    verdicts = amp_verdicts({"ptc": ptc, "pairs": _pairs(ptc, {}, isr_noise=3.6)})
    assert verdicts.expected_noise.to_numpy() == pytest.approx(np.hypot(6.0, 3.6))
    assert not verdicts.flag_noise_agreement.any() and verdicts.cp_pipe_noise_warning.all()
    assert verdicts.overscan_noise.to_numpy() == pytest.approx(0.97 * 6.0)


def test_a_held_parameter_and_a_poor_ptc_fit_are_checks():
    ptc = _ptc(status={3: FitStatus.NOISE_AT_ZERO}, chi2_dof={5: 2.4})
    notebook = _ptc(chi2_dof={6: 30.0}).assign(model="quadratic")
    verdicts = amp_verdicts({"ptc": pd.concat([ptc, notebook])})
    assert _flagged(verdicts, "held") == [3] and _flagged(verdicts, "fit") == []
    assert _flagged(verdicts, "chi2") == [5]  # the notebook fit's chi^2 is shown, not judged
    assert verdicts.set_index("amp").at[5, "flags"] == "expapprox chi2/dof 2.40"
    assert set(verdicts.loc[verdicts.amp.isin([3, 5]), "verdict"]) == {Verdict.CHECK}


def test_the_full_covariance_gain_and_the_references_are_held_against_the_adopted_one():
    ptc = _ptc()
    fullcov = _ptc(gain={8: 1.02}).assign(model="fullcov")
    comparison = pd.DataFrame(
        {
            "sensor": "S",
            "amp": [9, 9, 10],
            "method": "expapprox",
            "quantity": "gain",
            "reference": ["eotest", "cp_pipe", "eotest"],
            "ratio": [1.01, 0.96, 1.015],
        }
    )
    tables = {"ptc": pd.concat([ptc, fullcov]), "comparison": comparison}
    verdicts = amp_verdicts(tables).set_index("amp")
    assert verdicts.loc[verdicts.flag_models].index.tolist() == [8]
    assert verdicts.at[8, "model_spread"] == pytest.approx(0.02)
    assert verdicts.at[9, "reference_ratio"] == 0.96  # the farthest reference
    assert verdicts.loc[verdicts.flag_reference].index.tolist() == [9]


def test_outlying_amps_are_checks_but_a_spread_of_gains_is_not():
    """Gains spread by 10 % over the amps (as real sensors' are) flag nothing; one amp far
    from the others' robust spread, a noise of twice the median and a low turnoff do."""
    gains = dict(zip(range(1, 17), np.linspace(0.95, 1.05, 16), strict=True))
    spread = amp_verdicts({"ptc": _ptc(gain=gains)})
    assert not spread.flag_gain_outlier.any()
    gains[16] = 1.3
    odd = amp_verdicts({"ptc": _ptc(gain=gains, noise={3: 12.0}, turnoff={4: 5e4})})
    assert _flagged(odd, "gain_outlier") == [16]
    assert _flagged(odd, "noise_outlier") == [3]
    assert _flagged(odd, "turnoff_outlier") == [4]


def test_a_poor_fit_is_one_its_degrees_of_freedom_make_improbable():
    """chi^2/dof 2.4 over 6 pairs (3 degrees of freedom: a chance of 6.6 %) is not flagged,
    over 24 pairs (21: 3e-4) it is, as is a full-covariance fit's 2.4 (many points); an
    EXPAPPROXIMATION table without its pairs' count judges the ratio alone."""
    ptc = _ptc(chi2_dof={5: 2.4, 6: 2.4}).assign(n_used=24)
    ptc.loc[ptc.amp == 5, "n_used"] = 6
    fullcov = _ptc(chi2_dof={7: 2.4}).assign(model="fullcov", n_used=6)
    verdicts = amp_verdicts({"ptc": pd.concat([ptc, fullcov])})
    assert _flagged(verdicts, "chi2") == [6, 7]
    assert stats.chi2.sf(2.4 * 3, 3) > stats.norm.sf(3) > stats.chi2.sf(2.4 * 21, 21)


def test_a_noise_held_at_zero_and_a_sparsely_sampled_turnoff_are_not_outliers():
    """On a sparse series (8 pairs): a quarter of the amps with their noise held at zero
    are flagged ``held`` only (not a disagreement with the read noise, nor a lower median
    that makes the others' noises outlying), and a turnoff one pair lower, within three of
    its sampling errors, is not low; one beyond them is."""
    held = {amp: FitStatus.NOISE_AT_ZERO for amp in (1, 2, 3, 4, 5, 6, 7, 8)}
    zero = dict.fromkeys(held, 0.0)
    ptc = _ptc(status=held, noise=zero, noise_err=dict.fromkeys(held, np.nan))
    ptc.loc[ptc.amp == 9, "noise"] = 6.2  # 3 % from the read noise, like the others
    ptc.loc[ptc.amp.isin([10, 11]), ["turnoff", "turnoff_err"]] = [4e4, 2e4]
    ptc.loc[ptc.amp == 12, ["turnoff", "turnoff_err"]] = [4e4, 1e4]
    verdicts = amp_verdicts({"ptc": ptc, "pairs": _pairs(ptc, {})})
    assert _flagged(verdicts, "held") == list(held)
    assert _flagged(verdicts, "noise_agreement") == []
    assert _flagged(verdicts, "noise_outlier") == []
    assert _flagged(verdicts, "turnoff_outlier") == [12]


def test_one_line_per_sensor_names_the_gravest_amps_first():
    noises = {amp: 7.0 if amp == 2 else 4.0 for amp in range(1, 17)}  # 1.75 x the median
    ptc = pd.concat(
        [
            _ptc("S", full_well={9: 2e5}, noise=noises, status={12: FitStatus.A00_AT_ZERO}),
            _ptc("T"),
        ]
    )
    verdicts = amp_verdicts({"ptc": ptc})
    lines = sensor_verdicts(verdicts, most=2).set_index("sensor")
    assert lines.at["S", "verdict"] == Verdict.FAIL and lines.at["T", "verdict"] == Verdict.PASS
    assert (lines.at["S", "failing"], lines.at["S", "to_check"]) == (1, 2)
    line = lines.at["S", "line"]
    # without the overscan's noise the PTC's stands in
    assert line.startswith("FAIL: 16/16 amps fitted (expapprox); read noise 4.00-7.00 e-")
    assert line.endswith("amp 9 (full well 200,000 e-), amp 2 (PTC noise 7.00 e-) and 1 more")
    summary = sensor_summary(verdicts, most=2)
    assert summary.loc["S", "verdict"] == "fail" and summary.loc["T", "amps to check"] == 0
    assert summary.loc["S", "worst amps"].splitlines()[0] == (
        "amp 9 (Segment09): full well 200,000 e-"
    )
    assert "worst max. frac. dev. (amp)" not in summary  # no linearity measured
    deviations = {"sensor": "S", "amp": [1, 2, 3], "segment": ["C10", "C11", "C12"]}
    linearity = pd.DataFrame({**deviations, "max_frac_dev": [2e-3, np.nan, 5e-3]})
    worst = sensor_summary(verdicts, linearity=linearity)["worst max. frac. dev. (amp)"]
    assert worst.to_dict() == {"S": "5.00e-03 (C12)", "T": ""}  # T: none measured


def test_thresholds_of_a_config_file_judge_the_run_without_making_it_stale(
    small_e2v, tmp_path, capsys
):
    out = tmp_path / "out"
    arguments = ["run", str(small_e2v.directory), "--out", str(out), "--no-report", "--quiet"]
    assert main(arguments) == 0
    verdicts = pd.read_parquet(out / "verdict.parquet")
    assert list(verdicts.columns) == list(VERDICT_COLUMNS) and len(verdicts) == 16
    assert not verdicts.flag_read_noise.any()
    strict = tmp_path / "strict.toml"
    strict.write_text("[verdict]\nread_noise_max = 1.0\n")
    assert main([*arguments, "--config", str(strict)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["thresholds"]["read_noise_max"] == 1.0
    assert "measure (sensors)" not in run["seconds_by_stage"]  # the stored sensor reused
    assert pd.read_parquet(out / "verdict.parquet").flag_read_noise.all()
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[verdict]\nread_noise = 1.0\n")
    assert main([*arguments, "--config", str(wrong)]) == 2
    assert "unknown threshold(s) ['read_noise']" in capsys.readouterr().err


def test_a_run_returns_the_verdict_with_its_tables(small_e2v, tmp_path):
    result = gpuptc.run([small_e2v.directory], tmp_path / "out", report=False)
    verdicts = result.tables["verdict"]
    adopted = result.tables["ptc"].query("model == 'expapprox'").set_index("amp")
    np.testing.assert_array_equal(verdicts.set_index("amp").gain, adopted.gain)
    assert set(verdicts.verdict) <= set(Verdict.ORDER)

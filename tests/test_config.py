import dataclasses

import pytest

from gpuptc.config import PRESETS, counterparts, get_preset


def test_every_field_names_its_counterparts():
    rows = counterparts()
    preset = PRESETS["cp_pipe"]
    for section in ("isr", "extract", "solve"):
        names = {f.name for f in dataclasses.fields(getattr(preset, section))}
        assert {r["field"] for r in rows if r["section"] == section} == names
    for field in (
        f for s in ("isr", "extract", "solve") for f in dataclasses.fields(getattr(preset, s))
    ):
        assert set(field.metadata) == {"cp_pipe", "eotest"}, field.name
    named = {(r["section"], r["field"]): r["cp_pipe"] for r in rows}
    assert named["solve", "sigma_cut"] == "PhotonTransferCurveSolveConfig.sigmaCutPtcOutliers"


def test_an_override_names_its_section_when_several_have_the_field():
    with pytest.raises(ValueError, match="'method' is in extract and solve: name the section"):
        get_preset("cp_pipe", method="eotest")
    chosen = get_preset("cp_pipe", solve__method="eotest", cov_size=4)
    assert chosen.solve.method == "eotest" and chosen.extract.method == "cp_pipe"
    assert chosen.extract.cov_size == 4  # one section has it: the bare name is enough


def test_an_exposure_time_tolerance_that_would_pair_a_ptcs_steps_is_refused():
    assert get_preset(extract__exptime_tolerance=0.02).extract.exptime_tolerance == 0.02
    with pytest.raises(ValueError, match=r"exptime_tolerance 0\.2 not in"):
        get_preset(extract__exptime_tolerance=0.2)

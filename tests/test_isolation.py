"""One bad amplifier never costs the sensor: damage becomes statuses and rejected rows."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from gpuptc.cli import main
from gpuptc.schema import EXIT_REJECTED, EXIT_USAGE, FitStatus, PairStatus
from gpuptc.simulation.simulate import simulate
from rawfiles import rewrite

RUN = ["--backend", "numpy", "-q"]
"""The job with its defaults: every model and the report."""


@pytest.fixture(scope="module")
def sensor(tmp_path_factory):
    """A small e2v sensor of 8 pairs, no biases."""
    return simulate(tmp_path_factory.mktemp("iso"), size="small", pairs=8, biases=0, seed=41)


@pytest.fixture(scope="module")
def clean(sensor, tmp_path_factory):
    """The undamaged sensor's tables (the report, not compared, is left out)."""
    out = tmp_path_factory.mktemp("clean") / "out"
    assert main(["run", str(sensor.directory), "--out", str(out), *RUN, "--no-report"]) == 0
    return _tables(out)


def _tables(out):
    tables = {name: pd.read_parquet(out / f"{name}.parquet") for name in ("pairs", "ptc")}
    tables["rejected"] = pd.read_csv(out / "rejected.csv")
    return tables


DAMAGES = {
    "dead": lambda seg: seg.fill(0),
    "constant": lambda seg: seg.fill(21000),
    "nan": lambda seg: seg.fill(np.nan),
    "saturated": lambda seg: seg.fill(262143),
    "negative": lambda seg: seg.__isub__(seg.max() + 5000),
    "tiny": lambda seg: seg.__imul__(1e-3),
    "hot": lambda seg: seg.__iadd__(1e6 * (np.arange(seg.size).reshape(seg.shape) % 97 == 0)),
}
"""Ways an amplifier's segment can be broken in a flat."""


def _damage(directory, sensor, plan):
    """Apply ``plan``: (amp, kind, pairs) to the flats of a copy of the sensor."""
    flats = sorted(directory.glob("MC_C_*.fits"))
    by_name = {p.name: p for p in flats}
    for amp, kind, pairs in plan:
        for pair in pairs:
            for flat in sensor.flats[2 * pair : 2 * pair + 2]:
                rewrite(by_name[flat.name], lambda px, a=amp, k=kind: DAMAGES[k](px[a - 1]))


def _check(clean, out, damaged_amps, report=True):
    """Untouched amps exactly as in the clean run; every damaged amp with a status."""
    got = _tables(out)
    for name in ("pairs", "ptc"):
        keys = ["amp", "pair"] if name == "pairs" else ["amp", "model"]
        columns = [c for c in clean[name].columns if c not in ("file1", "file2")]
        a = clean[name][~clean[name].amp.isin(damaged_amps)].sort_values(keys)[columns]
        b = got[name][~got[name].amp.isin(damaged_amps)].sort_values(keys)[columns]
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    assert set(got["ptc"].amp) == set(range(1, 17))
    assert got["pairs"].groupby("amp").size().eq(8).all()
    rejected = got["rejected"]
    assert set(rejected.stage) <= {"measure", "fit"}
    for amp in damaged_amps:
        rows = got["pairs"][got["pairs"].amp == amp]
        unmeasured = rows[~rows.status.isin(PairStatus.MEASURED)]
        listed = rejected[(rejected.amp == amp) & rejected.pair.notna()]
        assert set(listed.pair.astype(int)) == set(unmeasured.pair)
        expapprox = got["ptc"][(got["ptc"].amp == amp) & (got["ptc"].model == "expapprox")]
        if (~expapprox.status.isin(FitStatus.FITTED)).any():
            assert ((rejected.amp == amp) & (rejected.stage == "fit")).any()
    assert (out / "report" / "index.html").exists() == report


def test_one_dead_amplifier_costs_only_itself(sensor, clean, copy_of, tmp_path, capsys):
    """Amp 3 reads zero in every flat: 15 amps of results, the dead one rejected, exit 3."""
    directory = copy_of(sensor)
    _damage(directory, sensor, [(3, "dead", range(8))])
    out = tmp_path / "out"
    assert main(["run", str(directory), "--out", str(out), *RUN]) == EXIT_REJECTED
    assert "Traceback" not in capsys.readouterr().err
    _check(clean, out, [3])
    ptc = pd.read_parquet(out / "ptc.parquet")
    good = ptc[(ptc.amp != 3) & (ptc.model == "expapprox")]
    assert len(good) == 15 and good.status.isin(FitStatus.FITTED).all()
    rejected = pd.read_csv(out / "rejected.csv")
    assert ((rejected.amp == 3) & (rejected.stage == "fit")).any()


damage_plans = st.lists(
    st.tuples(
        st.integers(1, 16),
        st.sampled_from(sorted(DAMAGES)),
        st.sets(st.integers(0, 7), min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda step: step[0],
)


@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a whole run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(damage_plans)
def test_random_damage_stays_with_its_amplifiers(sensor, clean, tmp_path_factory, plan):
    import shutil

    directory = tmp_path_factory.mktemp("damaged")
    shutil.rmtree(directory)
    shutil.copytree(sensor.directory, directory)
    _damage(directory, sensor, [(amp, kind, sorted(pairs)) for amp, kind, pairs in plan])
    out = directory.parent / f"{directory.name}-out"
    # the numbers are what is checked; the report of a damaged amp is drawn by the dead-amp
    # test and the bad-input tests (three reports here would cost 20 s of CPU)
    code = main(["run", str(directory), "--out", str(out), *RUN, "--no-report"])
    assert code in (0, EXIT_REJECTED)
    _check(clean, out, [amp for amp, _, _ in plan], report=False)


@pytest.mark.parametrize("name", ["cupy", "nosuch"])
def test_unavailable_backend_is_a_usage_error(sensor, tmp_path, capsys, name):
    out = tmp_path / "out"
    try:
        import cupy  # noqa: F401

        if name == "cupy":
            pytest.skip("CuPy imports here")
    except ImportError:
        pass
    code = main(["run", str(sensor.directory), "--out", str(out), "--backend", name, "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "Traceback" not in err and name in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_run_that_writes_nothing_leaves_no_output_directory(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    assert main(["run", str(empty), "--out", str(out), *RUN]) == 1
    assert not out.exists()
    assert main(["run", str(tmp_path / "missing"), "--out", str(out), *RUN]) == 1
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    assert main(["run", str(empty), "--out", str(existing), *RUN]) == 1
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_workers_must_be_positive(sensor, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(sensor.directory), "--out", str(out), "--workers", "0"]) == EXIT_USAGE
    assert "--workers" in capsys.readouterr().err


def test_one_backend_line_and_a_summary_of_what_was_written(sensor, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    arguments = ["run", str(sensor.directory), "--out", str(out), "--backend", "auto"]
    with caplog.at_level("INFO"):
        assert main([*arguments, "--no-report", "--models", "expapprox"]) == 0
    assert sum("array backend" in record.getMessage() for record in caplog.records) == 1
    outputs = next(line for line in capsys.readouterr().out.splitlines() if "Outputs:" in line)
    assert "report" not in outputs and "eotest/" in outputs and "rejected.csv" in outputs

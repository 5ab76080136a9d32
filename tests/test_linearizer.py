"""The linearity as ip_isr's Linearizer file (version 1.8), read back as written."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gpuptc
from gpuptc.config import LinearityConfig
from gpuptc.fitting.linearity import lookup_table
from gpuptc.fitting.linearity_sensor import sensor_linearity
from gpuptc.products.linearizer import LinearizerError, read_linearizer, write_linearizer
from gpuptc.schema import linearizer_name


@pytest.fixture(scope="module")
def run(tmp_path_factory, small_e2v):
    """A run of the small e2v sensor (its fit range widened to 1e5 ADU: 8 pairs)."""
    out = tmp_path_factory.mktemp("linearizer")
    gpuptc.run(
        small_e2v.directory,
        out,
        backend="numpy",
        models=["expapprox"],
        report=False,
        max_linear_adu=1e5,
    )
    return out


@pytest.fixture(scope="module")
def run_of(run, small_e2v, tmp_path_factory):
    """``run_of(kind)``: a folder with the run's tables and its linearizer of that type
    (the run's own for ``Squared``, written from the run's pairs for the others)."""

    def of(kind):
        if kind == "Squared":
            return run
        out = tmp_path_factory.mktemp(f"linearizer-{kind}")
        tables = {n: pd.read_parquet(run / f"{n}.parquet") for n in ("pairs", "ptc", "manifest")}
        config = LinearityConfig(linearity_type=kind, max_linear_adu=1e5)
        linearity = sensor_linearity(tables["pairs"], tables["ptc"], config)
        linearity.to_parquet(out / "linearity.parquet")
        tables["ptc"].to_parquet(out / "ptc.parquet")
        path = out / linearizer_name(small_e2v.sensor)
        path.parent.mkdir(parents=True)
        write_linearizer(
            path,
            linearity,
            tables["ptc"],
            small_e2v.sensor,
            tables["pairs"],
            tables["manifest"],
            2**12,
        )
        return out

    return of


@pytest.mark.parametrize("kind", ["Squared", "Polynomial", "LookupTable"])
def test_each_amp_reads_back_as_written(run_of, small_e2v, kind):
    out = run_of(kind)
    table = pd.read_parquet(out / "linearity.parquet").sort_values("amp")
    back = read_linearizer(out / linearizer_name(small_e2v.sensor))
    assert back.attrs["header"]["LINEARIZER_VERSION"] == 1.8
    assert back.attrs["header"]["OBSTYPE"] == "LINEARIZER"
    assert back.attrs["header"]["HAS_TABLE"] == (kind == "LookupTable")
    assert len(back) == len(table) == 16
    ptc = pd.read_parquet(out / "ptc.parquet").query("model == 'expapprox'").set_index("amp")
    for (_, row), amp in zip(table.iterrows(), back.itertuples(), strict=True):
        assert amp.amplifier == "C" + row.segment.removeprefix("Segment")
        assert amp.type == row.type
        np.testing.assert_array_equal(amp.input_ordinate, row.input_ordinate)
        np.testing.assert_array_equal(amp.input_mask, row.input_mask)
        np.testing.assert_array_equal(amp.residuals, row.residuals)
        np.testing.assert_array_equal(amp.fit_params[: len(row.fit_params)], row.fit_params)
        assert (amp.turnoff, amp.max_signal) == (row.turnoff, row.max_signal)
        assert amp.input_gain == ptc.gain[row.amp] and amp.input_turnoff == ptc.turnoff[row.amp]
        if row.type == "LookupTable":
            expected = lookup_table(np.asarray(row.fit_params), 2**12).astype(np.float32)
            np.testing.assert_array_equal(amp.table, expected)  # float32, as cp_pipe's
        elif row.type != "None":
            np.testing.assert_array_equal(
                amp.coefficients[: len(row.coefficients)], row.coefficients
            )


def test_every_lookup_table_has_its_own_row(run_of, small_e2v):
    back = read_linearizer(run_of("LookupTable") / linearizer_name(small_e2v.sensor))
    tables = back[back.type == "LookupTable"]
    assert len(tables) >= 12
    assert sorted(int(c[0]) for c in tables.coefficients) == list(range(len(tables)))


def test_the_amps_boxes_tile_the_assembled_e2v_sensor(run_of, small_e2v):
    back = read_linearizer(run_of("Squared") / linearizer_name(small_e2v.sensor))
    boxes = set(back.bbox)
    assert len(boxes) == 16 and all(b[2:] == (512, 2002) for b in boxes)
    assert {(b[0], b[1]) for b in boxes} == {(512 * c, 2002 * r) for r in (0, 1) for c in range(8)}


def test_a_file_that_is_not_a_linearizer_is_named_with_why(tmp_path, run_of, small_e2v):
    text = tmp_path / "not.fits"
    text.write_text("SIMPLE = T")
    with pytest.raises(LinearizerError, match="not a readable linearizer") as failure:
        read_linearizer(text)
    assert str(text) in str(failure.value)
    ptc = run_of("Squared") / f"cp_pipe/{small_e2v.sensor}_ptc.fits"
    with pytest.raises(LinearizerError, match="OBSTYPE is 'PTC'"):
        read_linearizer(ptc)


DATA = Path(__file__).parent / "data" / "linearity"


@pytest.mark.parametrize("kind", ["squared", "lookup_table"])
def test_a_linearizer_written_by_ip_isr_reads_as_gpuptc_wrote_it(kind):
    """ip_isr's own readFits and writeFits of gpuptc's file (tests/data/linearity/README.md)
    give back every amplifier, type, coefficient, table, input and residual."""
    ours = read_linearizer(DATA / f"gpuptc_{kind}.fits")
    theirs = read_linearizer(DATA / f"ip_isr_{kind}.fits")
    assert theirs.attrs["header"]["CALIBCLS"] == "lsst.ip.isr.linearize.Linearizer"
    assert len(ours) == len(theirs) == 16
    for column in ours.columns:
        for a, b in zip(ours[column], theirs[column], strict=True):
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b, err_msg=column)
            elif a is None or isinstance(a, str | tuple):
                assert a == b, column
            else:
                assert a == b or (np.isnan(a) and np.isnan(b)), column

"""Bad input and faults: a clear error naming the file and reason, nothing lost."""

import shutil

import fitsio
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuptc
from gpuptc.cli import main
from gpuptc.formats.writer import write_raw
from gpuptc.raws.exposure import RawReadError, read_raw
from gpuptc.raws.header import exposure_info
from gpuptc.schema import FitStatus
from gpuptc.simulation.simulate import simulate
from rawfiles import rewrite

RUN = ["--backend", "numpy", "--no-report", "--models", "expapprox,rhl", "-q"]


def test_corrupt_rice_tile_names_the_file(small_itl, tmp_path):
    data = bytearray(small_itl.flats[0].read_bytes())
    with fitsio.FITS(str(small_itl.flats[0])) as f:
        start = f[1].get_offsets()["data_start"]
    for k in range(200):
        data[start + 3000 + k] ^= 0xFF
    path = tmp_path / "corrupt.fits"
    path.write_bytes(bytes(data))
    with pytest.raises(RawReadError, match=r"corrupt\.fits: cannot read pixels"):
        read_raw(path)


def test_wrong_bitpix_and_extra_segment(small_e2v, tmp_path):
    path = tmp_path / "bitpix.fits"
    shutil.copy(small_e2v.flats[0], path)
    with fitsio.FITS(str(path), "rw") as f:
        f[1].write_key("BITPIX", 64)
    with pytest.raises(RawReadError, match=r"bitpix\.fits"):
        read_raw(path)
    extra = tmp_path / "extra.fits"
    segments = [{"EXTNAME": f"Segment{i:02d}", "DATASEC": "[3:20,1:15]"} for i in range(17)]
    write_raw(
        extra, np.zeros((17, 20, 30), np.int32), {"IMGTYPE": "FLAT", "EXPTIME": 1.0}, segments
    )
    with pytest.raises(RawReadError, match="found 17 amplifier image extensions"):
        read_raw(extra)


def test_nan_and_inf_pixels_are_masked(small_e2v, tmp_path):
    manifest = gpuptc.ingest([small_e2v.directory])
    clean, _ = gpuptc.measure(manifest, backend="numpy", cov_size=0)
    # a float copy of one pair with NaN and inf pixels in amp 3
    directory = tmp_path / "nan"
    shutil.copytree(small_e2v.directory, directory)
    for path in sorted(directory.glob("MC_C_*.fits")):
        raw = read_raw(path)
        pixels = raw.pixels.astype(np.float32)
        pixels[2, 10:12, 20:30] = np.nan
        pixels[2, 30, 30] = np.inf
        with fitsio.FITS(str(path)) as f:
            primary = {
                k: v
                for k, v in ((k, f[0].read_header()[k]) for k in f[0].read_header().keys())
                if k not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND")
            }
        headers = [
            {
                "EXTNAME": g.segment,
                "CHANNEL": g.amp,
                "DATASEC": str(g.datasec),
                "DETSEC": str(g.detsec),
            }
            for g in raw.geometry.amps
        ]
        write_raw(path, pixels, primary, headers)
    damaged, _ = gpuptc.measure(gpuptc.ingest([directory]), backend="numpy", cov_size=0)
    amp3 = damaged[damaged.amp == 3].sort_values("pair")
    reference = clean[clean.amp == 3].sort_values("pair")
    assert (amp3.status == "ok").all()
    assert (amp3.npix.to_numpy() < reference.npix.to_numpy()).all()
    np.testing.assert_allclose(amp3["mean"], reference["mean"], rtol=2e-3)


def test_datasec_differs_between_the_flats_of_a_pair(small_e2v, copy_of, tmp_path):
    directory = copy_of(small_e2v)
    flats = sorted(directory.glob("MC_C_*.fits"))
    victim = [p for p in flats if fitsio.read_header(str(p))["IMGTYPE"] == "FLAT"][3]
    with fitsio.FITS(str(victim), "rw") as f:
        for i in range(1, 17):
            f[i].write_key("DATASEC", "[11:70,1:90]")
    out = tmp_path / "out"
    assert main(["run", str(directory), "--out", str(out), *RUN]) == 3
    rejected = pd.read_csv(out / "rejected.csv")
    row = rejected[rejected.path == str(victim)].iloc[0]
    assert "differ" in row.reason and row.pair == 1
    assert pd.read_parquet(out / "pairs.parquet").pair.nunique() == 7


def test_dead_saturated_and_flat_amps(small_e2v, copy_of, tmp_path, capsys):
    directory = copy_of(small_e2v)
    flats = [
        p
        for p in sorted(directory.glob("MC_C_*.fits"))
        if fitsio.read_header(str(p))["IMGTYPE"] == "FLAT"
    ]

    def damage(raw):
        raw[4] = 20000  # amp 5: a constant level, zero variance everywhere (dead)
        raw[5, :96, 10:74] = 262143  # amp 6: saturated imaging area

    for path in flats:
        rewrite(path, damage)
    out = tmp_path / "out"
    assert main(["run", str(directory), "--out", str(out), *RUN]) == 3
    rejected = pd.read_csv(out / "rejected.csv")
    assert set(rejected.amp.dropna().astype(int)) == {5, 6}
    assert rejected.reason.str.contains("zero variance|PTC fit failed|not measurable").all()
    ptc = pd.read_parquet(out / "ptc.parquet")
    good = ptc[(ptc.model == "expapprox") & ~ptc.amp.isin([5, 6])]
    assert good.status.isin(FitStatus.FITTED).all()
    assert "Traceback" not in capsys.readouterr().out


def test_too_few_pairs_and_a_sensor_with_every_pair_rejected(small_e2v, small_itl, tmp_path):
    few = tmp_path / "few"
    simulate(few, vendor="e2v", size="small", pairs=2, biases=0, seed=40)
    broken = tmp_path / "broken"
    shutil.copytree(small_itl.directory, broken)
    for path in broken.glob("MC_C_*.fits"):
        path.write_bytes(path.read_bytes()[:4000])
    out = tmp_path / "out"
    assert (
        main(["run", str(few), str(broken), str(small_e2v.directory), "--out", str(out), *RUN]) == 3
    )
    rejected = pd.read_csv(out / "rejected.csv")
    assert rejected.reason.str.contains("too few points").any()
    assert rejected.path.str.contains("broken").sum() >= 8
    ptc = pd.read_parquet(out / "ptc.parquet")
    assert small_e2v.sensor in set(ptc.sensor) and small_itl.sensor not in set(ptc.sensor)


def test_output_path_that_is_a_file(small_itl, tmp_path, capsys):
    out = tmp_path / "a-file"
    out.write_text("not a directory")
    assert main(["run", str(small_itl.directory), "--out", str(out), *RUN]) == 1
    assert "cannot write the output directory" in capsys.readouterr().err
    assert out.read_text() == "not a directory"


@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError])
def test_interrupted_run_keeps_previous_results(small_itl, tmp_path, monkeypatch, capsys, fault):
    out = tmp_path / "out"
    assert main(["run", str(small_itl.directory), "--out", str(out), *RUN]) == 0
    before = pd.read_parquet(out / "ptc.parquet")

    def explode(*args, **kwargs):
        raise fault("disk full") if fault is OSError else fault()

    monkeypatch.setattr("gpuptc.running.job.write_eotest_files", explode)
    code = main(["run", str(small_itl.directory), "--out", str(out), *RUN])
    assert code == (130 if fault is KeyboardInterrupt else 1)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "ptc.parquet"), before)
    assert not list(out.glob(".gpuptc-*"))
    err = capsys.readouterr().err
    assert ("Interrupted" in err) if fault is KeyboardInterrupt else ("disk full" in err)


header_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.binary(max_size=10),
)


@settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "IMGTYPE",
                "TESTTYPE",
                "EXPTIME",
                "SEQNUM",
                "DAYOBS",
                "MJD-OBS",
                "MJD",
                "DATE-OBS",
                "LSST_NUM",
                "RAFTBAY",
                "CCDSLOT",
                "CCD_MANU",
                "FILTER",
                "ORIGIN",
            ]
        ),
        header_values,
    )
)
def test_header_parser_never_fails(header):
    info = exposure_info(header)
    assert info.exptime is None or np.isfinite(info.exptime)
    assert info.seqnum is None or isinstance(info.seqnum, int)
    assert info.sensor is None or isinstance(info.sensor, str)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=20))
def test_reader_fuzz_on_mutated_files(tmp_path, flips):
    """Random byte changes: the reader either reads or raises RawReadError, nothing else."""
    source = tmp_path / "source.fits"
    if not source.exists():
        segments = [
            {"EXTNAME": f"Segment{i:02d}", "DATASEC": "[3:12,1:8]", "CHANNEL": i + 1}
            for i in range(16)
        ]
        write_raw(
            source,
            np.arange(16 * 10 * 14, dtype=np.int32).reshape(16, 10, 14),
            {"IMGTYPE": "FLAT", "EXPTIME": 1.0},
            segments,
            storage="rice",
        )
    data = bytearray(source.read_bytes())
    for position, value in flips:
        data[position % len(data)] = value
    mutated = tmp_path / "mutated.fits"
    mutated.write_bytes(bytes(data))
    try:
        read_raw(mutated)
    except RawReadError as exc:
        assert "mutated.fits" in str(exc)


def test_two_layouts_in_one_directory(small_e2v, small_itl, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for sensor in (small_e2v, small_itl):
        for path in sensor.directory.glob("MC_C_*.fits"):
            shutil.copy(path, mixed / f"{sensor.sensor}-{path.name}")
    out = tmp_path / "out"
    assert main(["run", str(mixed), "--out", str(out), *RUN]) == 0
    ptc = pd.read_parquet(out / "ptc.parquet")
    assert set(ptc.sensor) == {small_e2v.sensor, small_itl.sensor}

"""Hostile and broken inputs never cost the good results."""

import os
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest
from astropy.io import fits
from hypothesis import given
from hypothesis import strategies as st

from gpuptc import ingest
from gpuptc.cli import main
from gpuptc.raws.names import on_disk
from gpuptc.schema import EXIT_OK, FileStatus, file_stem
from rawfiles import files_under, set_primary

RUN = ["--backend", "numpy", "--models", "expapprox,rhl", "-q"]

TIME_LIMIT = 120
"""Seconds any test here may take: a hang (a pipe opened, a lock never released) fails it."""


@pytest.fixture(autouse=True)
def _time_limit():
    """Fail the test, instead of hanging the suite, once it has run :data:`TIME_LIMIT` s."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {TIME_LIMIT} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TIME_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


HOSTILE_IDS = ("../../../../../../escaped", "..")
"""Sensor ids a header may carry that are paths, not names (an absolute one, ``/x``, is a
relative one's separators: :func:`test_any_identifier_becomes_one_plain_name_of_its_own`)."""


def test_header_ids_that_name_paths_stay_names(small_itl, copy_of, tmp_path):
    """Every writer (sensor store, EOTEST and cp_pipe files, report pages and figures) keeps
    each sensor inside ``--out``; each sensor keeps its results under its own id."""
    inputs = [copy_of(small_itl)]
    for number, sensor in enumerate(HOSTILE_IDS):
        inputs.append(shutil.copytree(small_itl.directory, tmp_path / f"bad{number}"))
        set_primary(inputs[-1].glob("*.fits"), LSST_NUM=sensor)
    before = files_under(tmp_path)
    out = tmp_path / "out"
    assert main(["run", *map(str, inputs), "--out", str(out), *RUN]) == EXIT_OK
    written = files_under(tmp_path) - before
    assert written and all(path.startswith(f"{out}{os.sep}") for path in written)
    ptc = pd.read_parquet(out / "ptc.parquet")
    assert set(ptc.sensor) == {small_itl.sensor, *HOSTILE_IDS}
    good = ptc[ptc.sensor == small_itl.sensor].drop(columns="sensor").reset_index(drop=True)
    for sensor in HOSTILE_IDS:
        same = ptc[ptc.sensor == sensor].drop(columns="sensor").reset_index(drop=True)
        pd.testing.assert_frame_equal(same, good)  # the same pixels, the same results
    assert len(list((out / "sensors").glob("*/done.json"))) == 1 + len(HOSTILE_IDS)
    assert len(list((out / "eotest").glob("*_ptc.fits"))) == 1 + len(HOSTILE_IDS)
    assert len(list((out / "report").glob("sensor_*.html"))) == 1 + len(HOSTILE_IDS)


hostile_text = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(["..", ".", "/", "\\", "<", ">", '"', "&", "~", " ", "\x00", "é"])
    ).map("".join),
)


@given(hostile_text, hostile_text)
def test_any_identifier_becomes_one_plain_name_of_its_own(first, second):
    """Whatever a header holds, its name is one path component of plain characters, never
    ``.`` or ``..``, at most 53 characters past 64 plain ones, and two values never share
    a name; a plain camera id is its own name."""
    name = file_stem(first)
    assert name not in ("", ".", "..") and not name.startswith(".")
    assert all(c.isascii() and (c.isalnum() or c in "._+-~") for c in name)
    assert len(name) <= 64
    assert (name == first) == (file_stem(name) == name and "~" not in name)
    if first != second:
        assert file_stem(second) != name


def test_camera_ids_are_their_own_names():
    for sensor in ("E2V-CCD250-101", "ITL-3800C-102", "R22_S11", "ITL-3800C-102.v2"):
        assert file_stem(sensor) == sensor


def _run_in_time(arguments, seconds=TIME_LIMIT):
    """``gpuptc`` in a child process that must finish within ``seconds`` (no hang)."""
    command = [sys.executable, "-m", "gpuptc", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=seconds, check=False)


def test_a_named_pipe_among_the_inputs_is_passed_over(small_e2v, clean_run, copy_of, tmp_path):
    """A FIFO named like a raw file, in the folder and given by name and by pattern, is
    never opened (opening one waits for a writer): it is listed with its reason, and the
    sensor's tables are those of the clean run."""
    directory = copy_of(small_e2v)
    os.mkfifo(directory / "stream.fits")
    os.mkfifo(tmp_path / "alone.fits")
    out = tmp_path / "out"
    arguments = [str(directory), str(tmp_path / "alone.fits"), str(tmp_path / "a*.fits")]
    done = _run_in_time(["run", *arguments, "--out", str(out), "--no-report", *RUN])
    assert done.returncode == 3, done.stderr  # results written, inputs rejected
    assert "Traceback" not in done.stderr
    rejected = pd.read_csv(out / "rejected.csv")
    pipes = rejected[rejected.reason.str.contains("not a regular file")]
    assert {os.path.basename(p) for p in pipes.path} == {"stream.fits", "alone.fits"}
    pd.testing.assert_frame_equal(_pairs(out), _pairs(clean_run))


def _exposure_times(directory, change):
    """Rewrite each flat's EXPTIME as ``change(member, exptime)`` (member 1 or 2 of its
    pair, by time order)."""
    flats = sorted(directory.glob("MC_C_*.fits"))
    for number, path in enumerate(flats):
        with fits.open(path, mode="update") as hdus:
            header = hdus[0].header
            if header.get("IMGTYPE") == "FLAT":
                header["EXPTIME"] = change(1 + number % 2, float(header["EXPTIME"]))


def test_shutter_jitter_pairs_and_a_step_of_the_ptc_does_not(small_e2v, clean_run, tmp_path):
    """The second flat of every pair 0.1 % longer, as shutters jitter (5 ms is less than
    0.1 % from 5 s up): every pair still pairs, with the numbers of the clean run; a second
    flat 20 % longer never pairs."""
    jittered = tmp_path / "jittered"
    shutil.copytree(small_e2v.directory, jittered)
    _exposure_times(jittered, lambda member, t: t * 1.001 if member == 2 else t)
    jittered_out = tmp_path / "out"
    assert main(["run", str(jittered), "--out", str(jittered_out), "--no-report", *RUN]) == 0
    clean, jitter = (pd.read_parquet(o / "ptc.parquet") for o in (clean_run, jittered_out))
    assert len(jitter) == len(clean) and (jitter.status == clean.status).all()
    assert jitter.gain.to_numpy() == pytest.approx(clean.gain.to_numpy(), rel=1e-9)
    assert pd.read_parquet(jittered_out / "pairs.parquet").pair.nunique() == 8

    stepped = tmp_path / "stepped"
    shutil.copytree(small_e2v.directory, stepped)
    _exposure_times(stepped, lambda member, t: t * 1.2 if member == 2 else t)
    manifest = ingest(stepped)
    flats = manifest[manifest.imgtype == "FLAT"]
    assert (flats.status == FileStatus.UNPAIRED).all()


def _halved(path):
    """Cut a file to half its size, as an interrupted copy or a failing disk leaves it."""
    os.truncate(path, path.stat().st_size // 2)


def _pairs(out, but=None):
    """The pairs table without its file paths (and without pair ``but`` and the fit's
    selection, which one pair fewer may change)."""
    pairs = pd.read_parquet(out / "pairs.parquet").drop(columns=["file1", "file2"])
    if but is None:
        return pairs
    return pairs[pairs.pair != but].drop(columns=["used"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def clean_run(small_e2v, tmp_path_factory):
    """The small e2v sensor's tables, undamaged."""
    out = tmp_path_factory.mktemp("clean") / "out"
    assert main(["run", str(small_e2v.directory), "--out", str(out), "--no-report", *RUN]) == 0
    return out


def test_a_file_cut_short_after_it_was_listed_rejects_its_pair(
    small_e2v, clean_run, copy_of, tmp_path, monkeypatch, capsys
):
    """The last flat halved after the inputs were listed (the run is reading them): that
    pair is a `read` rejection naming the file, the other pairs as in the clean run."""
    import gpuptc.running.job as job

    directory = copy_of(small_e2v)
    last = directory / small_e2v.flats[-1].name
    listed = job._select

    def then_cut(*args, **kwargs):
        selection = listed(*args, **kwargs)
        _halved(last)
        return selection

    monkeypatch.setattr(job, "_select", then_cut)
    out = tmp_path / "out"
    assert main(["run", str(directory), "--out", str(out), "--no-report", *RUN]) == 3
    assert "Traceback" not in capsys.readouterr().err
    rejected = pd.read_csv(out / "rejected.csv")
    cut = rejected[rejected.path.str.endswith(last.name)]
    assert set(cut.stage) == {"read"} and cut.reason.str.len().gt(0).all()
    last_pair = pd.read_parquet(clean_run / "pairs.parquet").pair.max()
    pd.testing.assert_frame_equal(_pairs(out, last_pair), _pairs(clean_run, last_pair))


def test_a_partial_copy_never_wins_over_the_complete_file(small_e2v, clean_run, copy_of, tmp_path):
    """A half-size copy of a flat beside it, named to sort first: the complete file is
    kept, the copy rejected as the duplicate, every pair as in the clean run."""
    directory = copy_of(small_e2v)
    original = directory / small_e2v.flats[3].name
    partial = directory / "00_partial_copy.fits"
    shutil.copy(original, partial)
    _halved(partial)
    out = tmp_path / "out"
    assert main(["run", str(directory), "--out", str(out), "--no-report", *RUN]) == 3
    rejected = pd.read_csv(out / "rejected.csv")
    assert list(rejected.path.map(os.path.basename)) == ["00_partial_copy.fits"]
    assert rejected.reason.iloc[0].startswith(f"duplicate of {original}")
    pd.testing.assert_frame_equal(_pairs(out), _pairs(clean_run))


def test_a_shutter_that_stayed_shut_costs_only_its_pair(small_e2v, tmp_path):
    """The second flat of pair 3 holds a bias frame's pixels: that pair is a `measure`
    rejection on every amp (its flats disagree), and every fit is the fit of the sensor
    without that pair: the same pairs used, the same numbers."""
    from gpuptc.raws.exposure import read_raw
    from rawfiles import rewrite

    damaged, without = tmp_path / "damaged", tmp_path / "without"
    for directory in (damaged, without):
        shutil.copytree(small_e2v.directory, directory)
    shut = small_e2v.flats[7].name  # the second flat of pair 3
    bias = read_raw(small_e2v.biases[0]).pixels

    def to_bias(pixels):
        pixels[...] = bias

    rewrite(damaged / shut, to_bias)
    for flat in small_e2v.flats[6:8]:
        (without / flat.name).unlink()
    runs = {}
    for directory in (damaged, without):
        out = tmp_path / f"{directory.name}-out"
        code = main(["run", str(directory), "--out", str(out), "--no-report", *RUN])
        runs[directory.name] = (code, out)
    assert runs["damaged"][0] == 3 and runs["without"][0] == 0
    rejected = pd.read_csv(runs["damaged"][1] / "rejected.csv")
    assert set(rejected.stage) == {"measure"} and set(rejected.pair) == {3}
    assert rejected.reason.str.contains("flats disagree").all() and len(rejected) == 16
    ptc = {name: pd.read_parquet(out / "ptc.parquet") for name, (_, out) in runs.items()}
    pd.testing.assert_frame_equal(ptc["damaged"], ptc["without"])


def test_file_names_that_are_not_utf8_are_read_and_shown_losslessly(
    small_e2v, clean_run, copy_of, tmp_path
):
    """Latin-1 bytes in the names of one pair's flats (as old file systems and transfers
    leave them): the files are read, the tables give their names with the bytes as \\xNN,
    and every number is the clean run's."""
    directory = copy_of(small_e2v)
    for flat in small_e2v.flats[2:4]:
        latin = os.fsencode(directory / flat.name).replace(b"MC_C_", b"MC_\xe9_")
        os.rename(directory / flat.name, latin)
    out = tmp_path / "out"
    assert main(["run", str(directory), "--out", str(out), *RUN]) == EXIT_OK
    pairs = pd.read_parquet(out / "pairs.parquet")
    shown = pairs[pairs.pair == 1].file1.iloc[0]
    assert "MC_\\xe9_" in shown  # the byte, written out
    assert os.path.exists(on_disk(shown)) and on_disk(shown) != shown  # and back
    pd.testing.assert_frame_equal(_pairs(out), _pairs(clean_run))
    assert pd.read_csv(out / "rejected.csv").empty

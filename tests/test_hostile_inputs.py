"""Hostile and broken inputs never cost the good results."""

import os
import shutil

import pandas as pd
from astropy.io import fits
from hypothesis import given
from hypothesis import strategies as st

from gpuptc.cli import main
from gpuptc.schema import EXIT_OK, file_stem

RUN = ["--backend", "numpy", "--models", "expapprox,rhl", "-q"]

HOSTILE_IDS = ("../../../../../../escaped", "/tmp/absolute-escape", "..")
"""Sensor ids a header may carry that are paths, not names."""


def _with_sensor_id(source, target, sensor):
    """A copy of a sensor's raws whose LSST_NUM says ``sensor``."""
    shutil.copytree(source, target)
    for path in target.glob("*.fits"):
        with fits.open(path, mode="update") as hdus:
            hdus[0].header["LSST_NUM"] = sensor
    return target


def _files_under(folder):
    return {os.path.join(root, name) for root, _, names in os.walk(folder) for name in names}


def test_header_ids_that_name_paths_stay_names(small_itl, tmp_path):
    """Every writer (sensor store, EOTEST and cp_pipe files, report pages and figures) keeps
    each sensor inside ``--out``; each sensor keeps its results under its own id."""
    inputs = [_with_sensor_id(small_itl.directory, tmp_path / "good", small_itl.sensor)]
    for number, sensor in enumerate(HOSTILE_IDS):
        inputs.append(_with_sensor_id(small_itl.directory, tmp_path / f"bad{number}", sensor))
    before = _files_under(tmp_path)
    out = tmp_path / "out"
    assert main(["run", *map(str, inputs), "--out", str(out), *RUN]) == EXIT_OK
    written = _files_under(tmp_path) - before
    assert written and all(path.startswith(f"{out}{os.sep}") for path in written)
    assert not os.path.exists("/tmp/absolute-escape_ptc.fits")
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


def _run_in_time(arguments, seconds=120):
    """``gpuptc`` in a child process that must finish within ``seconds`` (no hang)."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "gpuptc", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=seconds, check=False)


def test_a_named_pipe_among_the_inputs_is_passed_over(small_itl, tmp_path):
    """A FIFO named like a raw file, in the folder and given by name and by pattern, is
    never opened (opening one waits for a writer): it is listed with its reason."""
    directory = tmp_path / "raws"
    shutil.copytree(small_itl.directory, directory)
    os.mkfifo(directory / "stream.fits")
    os.mkfifo(tmp_path / "alone.fits")
    out = tmp_path / "out"
    arguments = [str(directory), str(tmp_path / "alone.fits"), str(tmp_path / "a*.fits")]
    done = _run_in_time(["run", *arguments, "--out", str(out), "--no-report", *RUN], 120)
    assert done.returncode == 3, done.stderr  # results written, inputs rejected
    assert "Traceback" not in done.stderr
    rejected = pd.read_csv(out / "rejected.csv")
    pipes = rejected[rejected.reason.str.contains("not a regular file")]
    assert {os.path.basename(p) for p in pipes.path} == {"stream.fits", "alone.fits"}
    assert set(pd.read_parquet(out / "ptc.parquet").sensor) == {small_itl.sensor}

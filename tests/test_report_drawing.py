"""Report figures drawn where each sensor is measured, stored with it, and redrawn alike."""

import concurrent.futures
import json
import shutil

import pandas as pd
import pytest

import gpuptc
from gpuptc import distributed
from gpuptc.cli import main
from gpuptc.config import get_preset
from gpuptc.report.sensor import draw
from gpuptc.schema import DrawnFigure

MODELS = ["expapprox", "rhl", "fullcov_nob"]


def _figures(out):
    return {p.name: p.read_bytes() for p in (out / "report" / "figures").glob("*.png")}


@pytest.fixture(scope="module")
def two_sensor_run(small_e2v, small_itl, tmp_path_factory):
    """Two sensors in process: the second is measured while the first one's figures are drawn."""
    out = tmp_path_factory.mktemp("drawing") / "out"
    result = gpuptc.run(
        [small_e2v.directory, small_itl.directory], out, backend="numpy", models=MODELS
    )
    assert result.exit_code == 0
    return out


def test_figures_drawn_beside_the_run_equal_a_redraw(two_sensor_run, tmp_path):
    stages = json.loads((two_sensor_run / "run.json").read_text())["seconds_by_stage"]
    assert stages["figures (sensors)"] > 0
    copy = tmp_path / "copy"
    shutil.copytree(two_sensor_run, copy)
    shutil.rmtree(copy / "report")
    shutil.copytree(two_sensor_run / "report" / "data", copy / "report" / "data")
    assert main(["report", str(copy)]) == 0  # two sensors: two drawing processes
    drawn, redrawn = _figures(two_sensor_run), _figures(copy)
    assert len(drawn) == 2 * 12 + 1  # 12 per sensor (no a_ij: no covariances), focal plane
    assert drawn == redrawn
    page = (copy / "report" / "index.html").read_text()
    assert all(f"figures/{name}" in page for name in drawn)


def test_stored_sensors_keep_their_figures(two_sensor_run, small_e2v, small_itl, monkeypatch):
    before = _figures(two_sensor_run)
    drawn = []
    original = distributed.with_figures

    def counting(task, result):
        drawn.append(task.sensor)
        return original(task, result)

    monkeypatch.setattr(distributed, "with_figures", counting)
    inputs = [small_e2v.directory, small_itl.directory]
    assert gpuptc.run(inputs, two_sensor_run, backend="numpy", models=MODELS).exit_code == 0
    assert drawn == [] and _figures(two_sensor_run) == before


def test_sensors_stored_without_figures_are_drawn_with_the_report(small_e2v, tmp_path):
    out = tmp_path / "out"
    gpuptc.run(small_e2v.directory, out, backend="numpy", models=MODELS, report=False)
    assert not (out / "report").exists()
    gpuptc.run(small_e2v.directory, out, backend="numpy", models=MODELS)
    names = set(_figures(out))
    assert f"ptc_log_{small_e2v.sensor}.png" in names and len(names) == 12


def test_a_failed_drawing_process_leaves_the_figures_to_the_report(small_e2v):
    task = distributed.SensorTask(
        small_e2v.sensor, pd.DataFrame(), get_preset("cp_pipe"), "numpy", ("rhl",)
    )
    result = {"pairs": pd.DataFrame(), "rejected": pd.DataFrame()}
    future = concurrent.futures.Future()
    future.set_exception(concurrent.futures.process.BrokenProcessPool("killed"))
    finished = []

    class Books:
        def finished(self, task, fingerprint, result):
            finished.append((task.sensor, fingerprint, result))

    waiting = [distributed._Drawing(task, "f" * 64, result, [future])]
    assert distributed._collect_drawn(waiting, Books(), wait=True) == []
    assert finished == [(small_e2v.sensor, "f" * 64, result)]  # no figures: drawn later


def test_a_figure_that_cannot_be_drawn_is_a_note():
    def broken():
        raise ValueError("no finite mean")

    assert draw("x.png", "a figure", broken) == DrawnFigure(
        "x.png", "a figure", failure="ValueError: no finite mean"
    )
    assert draw("x.png", "nothing to show", lambda: None) is None


def test_dask_workers_draw_the_same_figures(two_sensor_run, small_e2v, small_itl, tmp_path):
    out = tmp_path / "out"
    inputs = [small_e2v.directory, small_itl.directory]
    result = gpuptc.run(inputs, out, backend="numpy", models=MODELS, workers=2)
    assert result.exit_code == 0
    stages = json.loads((out / "run.json").read_text())["seconds_by_stage"]
    assert stages["figures (sensors)"] > 0  # drawn on the workers
    assert _figures(out) == _figures(two_sensor_run)

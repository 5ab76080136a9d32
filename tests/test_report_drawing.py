"""Report figures drawn where each sensor is measured, stored with it, and redrawn alike."""

import concurrent.futures
import json
import re
import shutil
from decimal import Decimal
from html.parser import HTMLParser

import pandas as pd
import pytest
from matplotlib.text import Text

import gpuptc
from gpuptc.cli import main
from gpuptc.config import get_preset
from gpuptc.formats.eotest import read_eotest_results
from gpuptc.formats.outputs import read_outputs
from gpuptc.report import draw_report, figures
from gpuptc.report.focal_plane import (
    MAP_QUANTITIES,
    bf_maps,
    focal_plane_maps,
    linearity_maps,
    vendor_histograms,
)
from gpuptc.report.sensor import draw
from gpuptc.running import schedulers as distributed
from gpuptc.running import sensor as sensor_pipeline
from gpuptc.schema import DrawnFigure, sensor_page_name
from shared_inputs import reported_run_arguments

MODELS = ["expapprox", "rhl", "fullcov_nob"]


def _figure_files(out, sensor=""):
    """The report's figure files (of one sensor: those whose name holds it), by name."""
    return sorted(p for p in (out / "report" / "figures").glob("*.png") if sensor in p.name)


def _figures(out, sensor=""):
    return {p.name: p.read_bytes() for p in _figure_files(out, sensor)}


def _pages(out):
    """Every page of the report, the index first."""
    report = out / "report"
    return [report / "index.html", *sorted(report.glob("sensor_*.html"))]


@pytest.fixture(scope="module")
def two_sensor_run(reported_run):
    """Two sensors in process, the second measured while the first one's figures are drawn
    (the run of the whole test run, read-only)."""
    code, out = reported_run
    assert code == 0
    return out


FIGURES_PER_SENSOR = 1
"""PNG figures of a sensor: its binned CCD images (every other figure is a chart)."""

CHARTS_PER_SENSOR = 12
"""Charts of a small sensor measured with covariances and compared with EOTEST: the amp
map, the PTC, its residuals, the per-amp summary, the comparison, the gain against
exposure time, the gain histograms, the flats' mismatch, the covariances, the a and b
matrices and the linearity."""


def test_figures_drawn_beside_the_run_equal_a_redraw(two_sensor_run, tmp_path):
    """``gpuptc report`` on the run's tables alone, no raw data, in two drawing processes,
    draws the same figures as the run did and links every one."""
    stages = json.loads((two_sensor_run / "run.json").read_text())["seconds_by_stage"]
    assert stages["figures (sensors)"] > 0
    copy = tmp_path / "copy"
    shutil.copytree(two_sensor_run, copy)
    shutil.rmtree(copy / "report")
    shutil.copytree(two_sensor_run / "report" / "data", copy / "report" / "data")
    assert main(["report", str(copy), "-q", "--png"]) == 0  # two drawing processes
    drawn, redrawn = _figures(two_sensor_run), _figures(copy)
    assert len(drawn) == 2 * FIGURES_PER_SENSOR + 4  # and the focal plane's four
    assert drawn == redrawn
    pages = "".join(page.read_text() for page in _pages(copy))
    assert all(f"figures/{name}" in pages for name in drawn)
    before = "".join(page.read_text() for page in _pages(two_sensor_run))
    for kind in ("spec", "data"):
        held = re.compile(rf'<script type="application/json" class="vega-{kind}">(.*?)</script>')
        assert held.findall(pages) == held.findall(before)
        assert len(held.findall(pages)) == 2 * CHARTS_PER_SENSOR
    charts = sorted((copy / "report" / "charts").glob("*.png"))  # --png: no browser
    assert len(charts) == 2 * CHARTS_PER_SENSOR
    assert all(c.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for c in charts)


def test_stored_sensors_keep_their_figures(
    two_sensor_run, small_e2v, small_itl, monkeypatch, tmp_path
):
    """The same job run again over the finished run: no sensor's figures drawn again."""
    out = tmp_path / "out"
    shutil.copytree(two_sensor_run, out)
    before = _figures(out)
    drawn = []
    original = sensor_pipeline.with_figures

    def counting(task, result):
        drawn.append(task.sensor)
        return original(task, result)

    monkeypatch.setattr(sensor_pipeline, "with_figures", counting)
    inputs = [str(small_e2v.directory), str(small_itl.directory)]
    assert main(["run", *inputs, "--out", str(out), *reported_run_arguments(tmp_path)]) == 0
    assert drawn == [] and _figures(out) == before


def test_sensors_stored_without_figures_are_drawn_with_the_report(small_e2v, tmp_path):
    out = tmp_path / "out"
    gpuptc.run(small_e2v.directory, out, backend="numpy", models=MODELS, report=False)
    assert not (out / "report").exists()
    gpuptc.run(small_e2v.directory, out, backend="numpy", models=MODELS)
    assert set(_figures(out)) == {f"images_{small_e2v.sensor}.png"}


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


def test_dask_workers_draw_the_same_figures(two_sensor_run, small_itl, tmp_path):
    """A sensor measured on a Dask worker has its figures drawn there, as in process."""
    out = tmp_path / "out"
    arguments = [*reported_run_arguments(tmp_path), "--workers", "2"]
    assert main(["run", str(small_itl.directory), "--out", str(out), *arguments]) == 0
    stages = json.loads((out / "run.json").read_text())["seconds_by_stage"]
    assert stages["figures (sensors)"] > 0  # drawn on the workers
    run = _figures(two_sensor_run, small_itl.sensor)
    assert _figures(out) == run


class _Tables(HTMLParser):
    """Every table of a page as rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _shows(cell, value):
    """Whether the cell shows ``value`` to the precision it is printed with."""
    text = cell.split("±")[0].strip()
    last_digit = 10.0 ** Decimal(text).as_tuple().exponent
    return abs(float(text) - value) <= 0.5 * last_digit * (1 + 1e-9)


def test_the_page_gives_every_amps_numbers(two_sensor_run, small_e2v):
    """Read back from the rendered page: each amp's gains, noise, turnoff and a00, a01, a10."""
    out = two_sensor_run
    parser = _Tables()
    parser.feed((out / "report" / sensor_page_name(small_e2v.sensor)).read_text())
    table = next(t for t in parser.tables if "noise (e-)" in t[0])  # every model's
    header, rows = table[0], {int(r[0]): dict(zip(table[0], r, strict=True)) for r in table[1:]}
    ptc = pd.read_parquet(out / "ptc.parquet")
    ptc = ptc[ptc.sensor == small_e2v.sensor].set_index(["model", "amp"])
    ptc_reference = read_eotest_results(small_e2v.eotest_path).set_index("AMP")["PTC_GAIN"]
    fullcov = pd.read_parquet(out / "fullcov.parquet")
    fullcov = fullcov[fullcov.sensor == small_e2v.sensor].set_index(["model", "amp", "i", "j"])
    assert sorted(rows) == list(range(1, 17))
    for amp, row in rows.items():
        for model in ("expapprox", "fullcov", "rhl"):
            gain = ptc.loc[(model, amp), "gain"]
            assert _shows(row[f"gain {model} (e-/ADU)"], gain)
            error = ptc.loc[(model, amp), "gain_err"]
            assert ("±" in row[f"gain {model} (e-/ADU)"]) == (error > 0)  # with its error
        fit = ptc.loc[("expapprox", amp)]
        assert _shows(row["noise (e-)"], fit.noise) and _shows(row["turnoff (ADU)"], fit.turnoff)
        for name, (i, j) in {"a00": (0, 0), "a01": (0, 1), "a10": (1, 0)}.items():
            a = fullcov.loc[("fullcov", amp, i, j), "a"]
            assert _shows(row[f"{name} fullcov (1/e-)"], a)
        reference = fit.gain / ptc_reference[amp]
        assert _shows(row["expapprox gain / eotest"], reference)
    assert "chi2/dof expapprox" in header


def test_the_page_opens_with_each_amps_verdict(two_sensor_run, small_e2v):
    """The first table of a sensor's page, read back: each amp's verdict, adopted gain,
    per-pixel read noise, expected and fitted PTC noise, turnoff, full well, a00 and failed
    tests."""
    out = two_sensor_run
    parser = _Tables()
    parser.feed((out / "report" / sensor_page_name(small_e2v.sensor)).read_text())
    header, *rows = parser.tables[0]
    assert header[:3] == ["amp", "verdict", "gain expapprox (e-/ADU)"]
    verdicts = pd.read_parquet(out / "verdict.parquet")
    verdicts = verdicts[verdicts.sensor == small_e2v.sensor].set_index("amp")
    assert sorted(int(r[0]) for r in rows) == list(range(1, 17))
    for cells in rows:
        row, amp = dict(zip(header, cells, strict=True)), int(cells[0])
        expected = verdicts.loc[amp]
        assert row["verdict"] == expected.verdict and row["flags"] == expected["flags"]
        assert _shows(row["gain expapprox (e-/ADU)"], expected.gain)
        assert _shows(row["read noise (e-)"], expected.read_noise)
        expected_noise, ptc_noise = row["PTC noise (e-): expected / fitted"].split(" / ")
        assert _shows(expected_noise, expected.expected_noise)
        assert _shows(ptc_noise.rstrip(" *"), expected.noise)
        assert ptc_noise.endswith(" *") == expected.cp_pipe_noise_warning
        assert _shows(row["turnoff ADU (e-)"].split(" (")[0], expected.turnoff)
        assert _shows(row["full well (e-)"].replace(",", ""), expected.full_well)
        assert _shows(row["a00 (1/e-)"], expected.a00)


def test_every_figure_is_labelled(two_sensor_run, small_itl, monkeypatch, tmp_path):
    """Each figure, as it is made: every panel has x and y labels (its own or the grid's).

    Made in this process, not rendered (that the figures drawn equal the run's is
    ``test_figures_drawn_beside_the_run_equal_a_redraw``): one sensor's report (every
    sensor has the same figures) and the focal-plane maps of both (results, linearity and
    brighter-fatter).
    """
    unlabelled, checked_figures = [], []

    def checked(fig):
        checked_figures.append(fig)
        for ax in fig.axes:
            if not ax.axison or ax.get_label() == "<colorbar>":
                continue
            xlabel = ax.get_xlabel() or (fig._supxlabel and fig._supxlabel.get_text())
            ylabel = ax.get_ylabel() or (fig._supylabel and fig._supylabel.get_text())
            if not (xlabel and ylabel):
                unlabelled.append(fig.texts[0].get_text() if fig.texts else ax.get_title())
        return b"\x89PNG"

    monkeypatch.setattr(figures, "png", checked)
    tables = read_outputs(two_sensor_run)
    itl = {
        name: frame[frame.sensor == small_itl.sensor] if "sensor" in frame else frame
        for name, frame in tables.items()
    }
    provenance = json.loads((two_sensor_run / "run.json").read_text())
    shutil.copytree(two_sensor_run / "report" / "data", tmp_path / "report" / "data")
    draw_report(tmp_path / "report", itl, provenance, workers=1)
    checked(focal_plane_maps(tables["focal_plane"], tables["manifest"]))
    checked(vendor_histograms(tables["focal_plane"]))
    checked(linearity_maps(tables["linearity"], tables["manifest"]))
    checked(bf_maps(tables["bf_kernel"], tables["manifest"]))
    assert unlabelled == []
    run = [path.name for path in _figure_files(two_sensor_run, small_itl.sensor)]
    assert [path.name for path in _figure_files(tmp_path)] == run  # every figure checked
    assert len(checked_figures) == len(run) + 4


def test_header_values_in_figures_draw_as_written_escapes(two_sensor_run):
    """Sensor ids that hold ``$``, a control character or a glyph the font lacks: every
    figure still draws (a warning is an error here), and shows them as escapes."""
    summary = read_outputs(two_sensor_run)["focal_plane"]
    odd = {name: f"{name}$x$\r\U00046945" for name in summary["sensor"].unique()}
    summary = summary.assign(sensor=summary["sensor"].map(odd))
    shown = []
    fig = focal_plane_maps(summary, None)
    figures.png(fig)
    shown += [text.get_text() for text in fig.findobj(Text)]
    shown += [label.get_text() for ax in fig.axes for label in ax.get_yticklabels()]
    for name in odd:
        assert any(f"{name}\\$x\\$\\r\\U00046945" in text for text in shown)
    assert figures.drawable("R22_S11 σ²\nE2V") == "R22_S11 σ²\nE2V"  # the font has them


def test_a_quantity_without_values_is_said_in_its_histogram(two_sensor_run):
    """A quantity no amp has (full well where no pair reached it, say) leaves its panel
    saying so, without a warning about an empty legend (warnings are errors here)."""
    summary = read_outputs(two_sensor_run)["focal_plane"].copy()
    column, _ = MAP_QUANTITIES[0]
    summary[column] = float("nan")
    fig = vendor_histograms(summary)
    first = fig.axes[0]
    assert first.get_legend() is None
    assert [t.get_text() for t in first.texts] == ["no values"]
    assert all(ax.get_legend() is not None for ax in fig.axes[1 : len(MAP_QUANTITIES)])

"""The main job end to end through the command line, as a user runs it."""

import json
import os
import re
import shutil
import subprocess
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gpuptc.cli import main
from gpuptc.fitting.bf_sensor import BF_KERNEL_COLUMNS
from gpuptc.fitting.ptc import MODELS
from gpuptc.inputs.manifest import MANIFEST_COLUMNS
from gpuptc.products.bf_kernel_file import read_bf_kernel
from gpuptc.products.compare import COMPARISON_COLUMNS
from gpuptc.schema import (
    COVARIANCE_COLUMNS,
    FULLCOV_COLUMNS,
    PAIR_COLUMNS,
    PTC_COLUMNS,
    REJECTED_COLUMNS,
)


def test_run_writes_every_table(reported_run, small_e2v, small_itl):
    code, out = reported_run  # the test run's run of both small sensors, read-only
    assert code == 0  # saturated pairs left out of fits are not rejections
    contract = {
        "manifest.parquet": MANIFEST_COLUMNS,
        "pairs.parquet": PAIR_COLUMNS,
        "covariances.parquet": COVARIANCE_COLUMNS,
        "ptc.parquet": PTC_COLUMNS,
        "fullcov.parquet": FULLCOV_COLUMNS,
        "comparison.parquet": COMPARISON_COLUMNS,
        "bfk.parquet": BF_KERNEL_COLUMNS,
    }
    for name, columns in contract.items():
        frame = pd.read_parquet(out / name)
        assert set(columns) <= set(frame.columns), name
        assert len(frame), name
    rejected = pd.read_csv(out / "rejected.csv")
    assert list(rejected.columns) == list(REJECTED_COLUMNS) and rejected.empty
    ptc = pd.read_parquet(out / "ptc.parquet")
    assert set(ptc.sensor) == {small_e2v.sensor, small_itl.sensor}
    assert set(ptc.model) == set(MODELS)  # every model by default
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert pairs.used.notna().all() and not pairs[pairs.pair == pairs.pair.max()].used.all()
    comparison = pd.read_parquet(out / "comparison.parquet")
    gains = comparison[comparison.quantity == "gain"]
    assert (gains.reference == "eotest").all() and gains.reference_value.notna().all()
    provenance = json.loads((out / "run.json").read_text())
    assert provenance["preset"] == "cp_pipe" and provenance["exit_code"] == 0
    assert provenance["configuration"]["extract"]["cov_size"] == 4
    stages = provenance["seconds_by_stage"]
    expected = {"ingest", "sensors", "tables and comparison", "write tables", "report"}
    in_sensors = ("measure", "fit", "linearity", "bf kernel", "bf check", "display images")
    in_sensors = (*in_sensors, "figures")
    expected |= {f"{s} (sensors)" for s in in_sensors}
    assert set(stages) == expected and all(v >= 0 for v in stages.values())
    inside = sum(stages[f"{s} (sensors)"] for s in in_sensors)
    # sensors measured in this process while one drawing process per core draws figures
    assert 0 < inside <= stages["sensors"] * (1 + (os.cpu_count() or 1)) + 0.05
    assert sum(stages.values()) - inside <= provenance["seconds"] + 0.05
    assert sorted(p.name for p in (out / "eotest").iterdir()) == sorted(
        f"{s}_{kind}.fits"
        for s in (small_e2v.sensor, small_itl.sensor)
        for kind in ("eotest_results", "ptc")
    )
    report = out / "report"
    index = (report / "index.html").read_text()
    sensors = {s: report / f"sensor_{s}.html" for s in (small_e2v.sensor, small_itl.sensor)}
    pages = {name: path.read_text() for name, path in sensors.items()}
    everything = index + "".join(pages.values())
    for image in report.joinpath("figures").glob("*.png"):
        assert f"figures/{image.name}" in everything
    assert "figures/focal_plane.png" in index  # two sensors: the focal-plane summary
    assert "figures/focal_plane_linearity.png" in index and 'href="#linearity"' in index
    assert "figures/focal_plane_bf.png" in index and 'href="#brighter-fatter"' in index
    assert "worst max. frac. dev. (amp)" in index
    for sensor in sensors:
        assert f'href="sensor_{sensor}.html"' in index
    assert len(list((report / "data").glob("*_images.npz"))) == 2
    for sensor, page in pages.items():
        assert f'<h2 id="{sensor}">' in page and 'href="index.html"' in page
        others = set(sensors) - {sensor}
        assert not any(f"_{other}" in page for other in others)  # its own figures and charts
        assert "<th>noise (e-)</th>" in page and "<th>turnoff (ADU)</th>" in page  # units
        assert "<details><summary>Per-pair measurements" in page  # collapsed
        assert "<th>model</th>" not in page.split('id="numbers"')[0]  # no stray pivot header
        charts = page.count('<figure class="chart"')
        assert page.count("<figcaption>") == page.count("<img ") + charts and charts >= 3
    assert not list(out.glob(".gpuptc-*"))


def test_summary_on_the_terminal(small_e2v, tmp_path, capsys):
    code = main(
        [
            "run",
            str(small_e2v.directory),
            "--out",
            str(tmp_path / "o"),
            "--backend",
            "numpy",
            "--models",
            "expapprox,rhl",
            "--no-report",
            "-q",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert small_e2v.sensor in out and "gain_expapprox" in out and "worst_amp" in out
    assert "Outputs:" in out


def test_rejections_give_exit_code_three(small_e2v, copy_of, tmp_path, capsys):
    directory = copy_of(small_e2v)
    (directory / "broken.fits").write_bytes(b"SIMPLE  = T garbage")
    flats = sorted(directory.glob("MC_C_*.fits"))
    (flats[-1]).unlink()  # a flat loses its partner
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(directory),
            "--out",
            str(out),
            "--backend",
            "numpy",
            "--no-report",
            "--models",
            "expapprox",
            "-q",
        ]
    )
    assert code == 3
    rejected = pd.read_csv(out / "rejected.csv")
    reasons = " ".join(rejected.reason)
    assert "not a readable FITS file" in reasons and "single flat" in reasons
    printed = capsys.readouterr().out
    assert "broken.fits" in printed and "Traceback" not in printed


def test_nothing_usable_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.fits").write_text("not fits")
    out = tmp_path / "out"
    assert main(["run", str(empty), "--out", str(out), "-q"]) == 1
    assert not (out / "run.json").exists() and not list(out.glob("*.parquet"))
    assert "nothing written" in capsys.readouterr().err


def test_second_run_replaces_outputs_and_keeps_foreign_files(small_itl, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "my_notes.txt").write_text("keep me")
    args = [
        "run",
        str(small_itl.directory),
        "--out",
        str(out),
        "--backend",
        "numpy",
        "--no-report",
        "-q",
    ]
    assert main([*args, "--models", "expapprox,rhl"]) == 0
    assert main([*args, "--models", "quadratic"]) == 0
    assert set(pd.read_parquet(out / "ptc.parquet").model) == {"quadratic"}
    assert (out / "my_notes.txt").read_text() == "keep me"
    assert not (out / "report").exists()


def test_config_show_round_trips(tmp_path, capsys):
    assert main(["config", "show", "--preset", "cp_pipe_lsstcam"]) == 0
    text = capsys.readouterr().out
    assert "edge_mask = 20" in text and "rolloff = true" in text
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert main(["config", "show", "--preset", "cp_pipe_lsstcam", "--config", str(path)]) == 0
    assert capsys.readouterr().out == text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_in_a_real_browser(reported_run, tmp_path):
    """On every page of the report (the focal-plane summary and each sensor's), in headless
    Chromium at 1280 x 800: every image loads, every chart is drawn (offline: the chart
    library is a file of the report), the page fits that width, every link resolves, and
    a sensor's page shows its verdict and every amp's adopted numbers on the first
    screen."""
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium package)")
    _, out = reported_run
    shutil.copytree(out, tmp_path / "out")  # the probe page is written beside the pages
    report = tmp_path / "out" / "report"
    pages = [report / "index.html", *sorted(report.glob("sensor_*.html"))]
    assert len(pages) == 3
    for number, path in enumerate(pages):
        page = path.read_text()
        result = _rendered(browser, report, page, tmp_path / f"profile{number}")
        assert result["images"] >= 1, path.name  # the focal plane; a sensor's CCD
        # every chart drawn by the library the report ships, with no network
        assert result["drawn"] == result["charts"], path.name
        assert result["charts"] == 0 if number == 0 else result["charts"] >= 9
        assert result["broken"] == [], path.name
        assert result["viewport"] == 1280 and result["width"] <= 1280, path.name  # fits a laptop
        if number > 0:
            _assert_verdict_first(result, path)
        for href in re.findall(r'href="([^"#][^"]*)"', page):
            assert (report / unquote(href)).exists(), (path.name, href)


def _assert_verdict_first(result: dict, path) -> None:
    """The verdict line and all 16 amps' rows, with the adopted gain, above 800 px."""
    verdict = result["verdict"]
    assert verdict is not None and verdict["bottom"] <= 800, path.name
    assert re.match(r"(PASS|CHECK|FAIL): 16/16 amps fitted \(expapprox\)", verdict["text"])
    assert result["rows"] == 16 and result["last_row"] <= 800, path.name
    assert re.fullmatch(r"gain expapprox \(e-/ADU\)", result["gain_header"]), result
    assert all(re.fullmatch(r"\d\.\d+ ± \d\.\d+", gain) for gain in result["gains"]), result


def _rendered(browser: str, report, page: str, profile) -> dict:
    """What headless Chromium finds once ``page`` (placed in ``report``) has loaded."""
    probe = report / "browser_check.html"
    script = (
        "<script>window.addEventListener('load', () => setTimeout(() => {"
        "const images = [...document.images];"
        "const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);"
        "const result = document.createElement('pre'); result.id = 'result';"
        "const width = document.documentElement.scrollWidth;"
        "const v = document.getElementById('verdict');"
        "const rows = [...document.querySelectorAll('#per-amp tbody tr')];"
        "const header = [...document.querySelectorAll('#per-amp thead th')];"
        "result.textContent = JSON.stringify({images: images.length, broken: broken,"
        " width: width, viewport: window.innerWidth,"
        " verdict: v && {text: v.textContent, bottom: v.getBoundingClientRect().bottom},"
        " rows: rows.length,"
        " last_row: rows.length ? rows[rows.length - 1].getBoundingClientRect().bottom : null,"
        " gain_header: header.length > 2 ? header[2].textContent : null,"
        " gains: rows.map(r => r.cells[2].textContent),"
        " charts: document.querySelectorAll('figure.chart').length,"
        " drawn: document.querySelectorAll('figure.chart svg.marks').length});"
        "document.body.appendChild(result);}, 3000));</script>"
    )
    probe.write_text(page.replace("</body>", script + "</body>"))
    try:
        completed = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                "--window-size=1280,800",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        probe.unlink()
    return json.loads(completed.stdout.split('<pre id="result">')[-1].split("</pre>")[0])


def test_each_amp_has_a_brighter_fatter_kernel(reported_run):
    """Each amp of both sensors: a 9 x 9 kernel (covariances to lag 3, a ring added) whose
    discrete Laplacian is its pre-kernel, which sums to zero, and valid exactly when cp_pipe's
    three checks hold (these small amps' few pairs leave many kernels noisy and invalid)."""
    _, out = reported_run
    kernels = pd.read_parquet(out / "bfk.parquet")
    assert len(kernels) == 32 and (kernels.groupby("sensor").size() == 16).all()
    solved = kernels[kernels.status == "ok"]
    assert len(solved) >= 30 and (solved["size"] == 9).all() and solved.converged.all()
    for row in solved.itertuples():
        kernel = np.reshape(row.kernel, (9, 9))
        pre = np.reshape(row.pre_kernel, (9, 9))
        assert abs(pre.sum()) < 1e-12 * np.abs(pre).sum()
        padded = np.pad(kernel, 1)
        laplacian = (
            padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
            - 4 * kernel
        )  # fmt: skip
        np.testing.assert_allclose(laplacian, pre, atol=1e-10 * np.abs(pre).max())
        ring = np.r_[kernel[0], kernel[-1], kernel[:, 0], kernel[:, -1]]
        checks = (
            np.all(np.abs(ring) <= 1e-8)
            and kernel[4, 4] == kernel.min()
            and kernel.max() <= 0.025 * abs(kernel[4, 4])
        )
        assert row.valid == checks, row.amp
    pairs = pd.read_parquet(out / "pairs.parquet")
    covariances = pd.read_parquet(out / "covariances.parquet")
    for row in kernels.itertuples():  # eo_pipe's statistics, by scipy's linregress
        used = pairs[(pairs.sensor == row.sensor) & (pairs.amp == row.amp) & pairs.used]
        mine = covariances[(covariances.sensor == row.sensor) & (covariances.amp == row.amp)]
        lag = mine.set_index(["pair", "i", "j"])["cov"]
        used = used.sort_values("mean")
        x = used["mean"].to_numpy()
        for column, (i, j) in (("bf_slope_x", (1, 0)), ("bf_slope_y", (0, 1))):
            y = np.array([lag[(p, i, j)] for p in used.pair])
            fit = stats.linregress(x, y)
            assert getattr(row, column) == pytest.approx(fit.slope, rel=1e-9)
            assert getattr(row, f"{column}_err") == pytest.approx(fit.stderr, rel=1e-9)
        assert row.bf_xcorr == lag[(used.pair.iloc[0], 1, 0)] and row.bf_mean == x[0]
        gains = used["rhl_gain"].to_numpy() / np.median(used["rhl_gain"])
        fit = stats.linregress(x, gains)  # the per-pair gain's relative slope
        assert row.gain_slope == pytest.approx(fit.slope, rel=1e-9)
        assert row.gain_slope_err == pytest.approx(fit.stderr, rel=1e-9)
    checked = kernels.status == "ok"  # --bf-check amp: each solved amp by its own kernel
    assert (kernels.check_kernel == np.where(checked, "amp", "none")).all()
    moved = kernels[checked & kernels.gain_slope.notna()]
    assert moved.gain_slope_corrected.notna().all() and len(moved) >= 30
    assert (moved.gain_slope_corrected != moved.gain_slope).all()
    for sensor, mine in kernels.groupby("sensor"):  # and as Rubin's ISR reads them
        written = read_bf_kernel(out / "cp_pipe" / f"{sensor}_bfk.fits")
        assert written.attrs["header"]["KERNEL_DX"] == 9 and len(written) == 16
        mine = mine.sort_values("amp")
        np.testing.assert_array_equal(
            np.stack(written.kernel).reshape(16, -1), np.stack(mine.kernel)
        )
        assert written.valid.tolist() == mine.valid.tolist()

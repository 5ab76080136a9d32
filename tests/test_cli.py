import subprocess
import sys

import pandas as pd
import pytest

from gpuptc import __version__
from gpuptc.cli import main
from gpuptc.schema import EXIT_FATAL, EXIT_OK, EXIT_REJECTED, EXIT_USAGE


def test_version(capsys):
    assert main(["--version"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == f"gpuptc {__version__}"


@pytest.mark.parametrize("command", [[], ["ingest"], ["simulate"], ["demo"]])
def test_help_everywhere(capsys, command):
    assert main([*command, "--help"]) == EXIT_OK
    assert "usage: gpuptc" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == EXIT_USAGE
    assert main(["ingest"]) == EXIT_USAGE
    assert "INPUT" in capsys.readouterr().err


def test_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "gpuptc", "--version"], capture_output=True, text=True, check=True
    )
    assert __version__ in out.stdout


def test_simulate_then_ingest(tmp_path, capsys):
    directory = tmp_path / "sim"
    code = main(
        [
            "simulate",
            str(directory),
            "--vendor",
            "itl",
            "--pairs",
            "3",
            "--size",
            "small",
            "--compress",
            "--seed",
            "7",
            "-q",
        ]
    )
    assert code == EXIT_OK
    out = capsys.readouterr().out
    assert "ITL-3800C-107" in out and "rice" in out
    manifest_path = tmp_path / "manifest.parquet"
    assert main(["ingest", str(directory), "--write", str(manifest_path), "-q"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "ITL-3800C-107" in out and "Skipped 2 non-FITS" in out
    manifest = pd.read_parquet(manifest_path)
    assert (manifest.status == "paired").sum() == 6


def test_ingest_exit_codes(tmp_path, small_e2v, copy_of, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["ingest", str(empty), "-q"]) == EXIT_FATAL
    assert "No usable" in capsys.readouterr().err
    directory = copy_of(small_e2v)
    (directory / "broken.fits").write_bytes(b"SIMPLE  = nonsense")
    assert main(["ingest", str(directory), "-q"]) == EXIT_REJECTED
    out = capsys.readouterr().out
    assert "broken.fits: not a readable FITS file" in out
    assert "Traceback" not in out


def test_demo_on_a_small_sensor(tmp_path, capsys):
    code = main(
        [
            "demo",
            str(tmp_path / "demo"),
            "--size",
            "small",
            "--pairs",
            "10",
            "--backend",
            "numpy",
            "--workers",
            "1",
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code in (0, 3)
    assert "E2V-CCD250-100" in out and "truth" in out and "EOTEST" in out
    medians = out.split("Median gain / truth per method:")[1].splitlines()[0]
    expapprox = float(medians.split("expapprox")[1].split(",")[0])
    assert abs(expapprox - 1) < 0.03
    assert (tmp_path / "demo" / "results" / "report" / "index.html").exists()


def test_progress_lines_when_not_a_terminal():
    import io

    from gpuptc._progress import Progress

    stream = io.StringIO()
    progress = Progress("pairs", 0, stream=stream)
    progress(1, 3)
    progress(3, 3)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("pairs: 1/3") and lines[-1].startswith("pairs: 3/3")
    assert "ETA" in lines[0]
    quiet = io.StringIO()
    Progress("pairs", 0, stream=quiet, enabled=False)(1, 1)
    assert quiet.getvalue() == ""

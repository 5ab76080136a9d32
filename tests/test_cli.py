import subprocess
import sys

import numpy as np
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

    from gpuptc._shared.progress import Progress

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


def test_simulate_storage_and_no_brighter_fatter(tmp_path):
    import fitsio

    directory = tmp_path / "sim"
    arguments = ["--size", "small", "--pairs", "2", "--biases", "1", "--seed", "3", "-q"]
    assert main(["simulate", str(directory), "--storage", "uint16", "--no-bf", *arguments]) == 0
    truth = pd.read_parquet(next(directory.glob("*_truth.parquet")))
    assert (truth.a00 == 0).all()
    flat = sorted(directory.glob("MC_C_*.fits"))[-1]
    with fitsio.FITS(str(flat)) as f:
        header = f[1].read_header()
        assert header["BITPIX"] == 16 and header["BZERO"] == 32768
    assert main(["simulate", str(tmp_path / "gz"), "--storage", "gzip", *arguments]) == 0
    assert sorted((tmp_path / "gz").glob("MC_C_*.fits.gz"))


def test_run_with_sensors_eotest_and_bias_options(small_e2v, small_itl, tmp_path):
    """--sensors keeps one sensor; --eotest names a results file that is not among the
    inputs; --bias gives the master bias of the seed preset instead of bias frames."""
    from gpuptc.measuring.masterbias import make_master_bias, write_master_bias

    run = ["--backend", "numpy", "--no-report", "--models", "expapprox,rhl", "-q"]
    both = tmp_path / "both"
    args = [str(small_e2v.directory), str(small_itl.directory), "--out", str(both)]
    assert main(["run", *args, "--sensors", small_itl.sensor, *run]) == 0
    assert set(pd.read_parquet(both / "ptc.parquet").sensor) == {small_itl.sensor}

    flats = [str(p) for p in small_e2v.flats]
    alone = tmp_path / "alone"
    assert main(["run", *flats, "--out", str(alone), *run]) == 0
    assert pd.read_parquet(alone / "comparison.parquet").reference_value.isna().all()
    named = tmp_path / "named"
    eotest = ["--eotest", str(small_e2v.eotest_path)]
    assert main(["run", *flats, "--out", str(named), *eotest, *run]) == 0
    named_comparison = pd.read_parquet(named / "comparison.parquet")
    assert named_comparison.query("quantity == 'gain'").reference_value.notna().all()

    with_frames = tmp_path / "frames"
    inputs = [str(small_e2v.directory), "--preset", "seed"]
    assert main(["run", *inputs, "--out", str(with_frames), *run]) == 0
    bias = write_master_bias(tmp_path / "bias.fits", make_master_bias(small_e2v.biases))
    given = tmp_path / "given"
    seed = ["--preset", "seed", "--bias", str(bias)]
    assert main(["run", *flats, "--out", str(given), *seed, *run]) == 0
    a = pd.read_parquet(with_frames / "pairs.parquet")["mean"]
    b = pd.read_parquet(given / "pairs.parquet")["mean"]
    np.testing.assert_allclose(a, b, rtol=1e-6)
    unbiased = tmp_path / "unbiased"
    assert main(["run", *flats, "--out", str(unbiased), "--preset", "seed", *run]) == 0
    assert (pd.read_parquet(unbiased / "pairs.parquet")["mean"] - a).abs().min() > 0.01

"""Inputs made once per test run and shared by every pytest-xdist worker.

With ``pytest -n N`` the controller process names one folder for the run
(``$GPUPTC_TEST_SHARED``, inside the run's own pytest base temporary folder, so nothing
outlives the run's temporary files) and starts ``tests/warm_up.py``, which simulates the
session's small sensors into it and compiles the numba kernels once, into the numba
cache beside the sources, while the workers start (``make``'s test environment ran the
same script once already, so the kernels are usually there and it only simulates).
Every worker then:

- takes simulated sensors from :func:`simulated`: one folder per simulation, keyed by the
  simulation's parameters and the simulator's version, built under a file lock by the
  first process that asks and reused read-only by the others (a test that damages files
  damages a copy, the ``copy_of`` fixture);
- finds the kernels compiled when it first measures, since the files handed out first
  (``HEAVIEST_FIRST`` in ``conftest.py``) begin by simulating; a worker that needs a
  kernel sooner compiles it for itself, as it would without the warm-up.

Without workers (plain ``pytest``) the shared folder is the process's own base
temporary folder and there is no warm-up.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from filelock import FileLock

import gpuptc
from gpuptc import __version__
from gpuptc.simulation import simulate as simulator
from gpuptc.simulation.simulate import SimulatedSensor, SimulationConfig

SHARED_ENV = "GPUPTC_TEST_SHARED"
"""The environment variable that names the run's shared folder to the workers."""

SMALL_E2V: dict[str, Any] = {"vendor": "e2v", "size": "small", "pairs": 8, "seed": 11}
"""The session's small e2v sensor: 8 pairs and 5 biases, int32, brighter-fatter on."""

SMALL_ITL: dict[str, Any] = {
    "vendor": "itl",
    "size": "small",
    "pairs": 4,
    "biases": 2,
    "seed": 12,
    "storage": "rice",
}
"""The session's small ITL sensor, RICE-compressed."""

REPORTED_RUN_CONFIG = """
[extract]
min_pixels_covariance = 100
cov_size = 4

[solve]
fullcov_size = 3
"""
"""The configuration of the ``reported_run`` fixture: small sensors, covariances to lag 3."""


def reported_run_arguments(folder: Path) -> list[str]:
    """The command-line options of the ``reported_run`` fixture (its configuration file written
    into ``folder``), for a test that runs the same job again."""
    config = folder / "config.toml"
    config.write_text(REPORTED_RUN_CONFIG)
    return ["--backend", "numpy", "--config", str(config), "--bf-check", "amp", "-q"]


_SIMULATOR = Path(simulator.__file__).parent


def _simulator_version() -> str:
    """gpuptc's version and a digest of the simulator's sources."""
    digest = hashlib.sha256(__version__.encode())
    for source in sorted(_SIMULATOR.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _key(config: SimulationConfig) -> str:
    record = simulator._config_record(config) + _simulator_version()
    return hashlib.sha256(record.encode()).hexdigest()[:16]


def shared_folder(factory: pytest.TempPathFactory | None = None) -> Path:
    """The folder this test run's processes share (made when first asked for)."""
    named = os.environ.get(SHARED_ENV)
    if named:
        folder = Path(named)
    elif factory is not None:
        folder = factory.getbasetemp() / "shared"
    else:
        raise RuntimeError(f"${SHARED_ENV} is not set and no pytest temporary folder given")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def simulated(factory: pytest.TempPathFactory | None = None, **options: Any) -> SimulatedSensor:
    """The sensor ``simulate(**options)`` makes, simulated once per test run.

    Rendered in this process alone: the test run keeps every core busy already.
    """
    config = SimulationConfig(**options)
    folder = shared_folder(factory) / "simulated" / f"{config.sensor}-{_key(config)}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        return simulator.simulate(folder, config, reuse=True, workers=1)


def made_once(
    name: str, make: Callable[[Path], None], factory: pytest.TempPathFactory | None = None
) -> Path:
    """The folder ``make(folder)`` fills, made once per test run by whichever process asks
    first (the others wait for it); a failed ``make`` leaves nothing and raises."""
    folder = shared_folder(factory) / name
    done = folder / ".made"
    with FileLock(f"{folder}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


TRUTH_SEEDS = {"e2v": 31, "itl": 32}
"""The seeds of the medium truth sensors, per vendor."""


def measured_truth_sensor(
    vendor: str, factory: pytest.TempPathFactory | None = None
) -> tuple[SimulatedSensor, pd.DataFrame, pd.DataFrame]:
    """A medium sensor of 24 flat pairs and its pairs and covariances (the ``cp_pipe``
    preset on NumPy), simulated and measured once per test run.

    Medium, not small: the truth tests that use it compare gains, a00 and errors with the
    simulation at a few tenths of a percent, which a small amplifier's 6 000 pixels per
    pair cannot resolve.
    """
    options = {"size": "medium", "pairs": 24, "biases": 0, "seed": TRUTH_SEEDS[vendor]}
    sensor = simulated(factory, vendor=vendor, **options)

    def measure(folder: Path) -> None:
        pairs, covariances = gpuptc.measure(gpuptc.ingest([sensor.directory]), backend="numpy")
        pairs.to_parquet(folder / "pairs.parquet")
        covariances.to_parquet(folder / "covariances.parquet")

    folder = made_once(f"measured-{sensor.directory.name}", measure, factory)
    tables = (pd.read_parquet(folder / f"{name}.parquet") for name in ("pairs", "covariances"))
    return sensor, *tables


LINEAR_ALGEBRA_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""The variables that set how many threads NumPy's and SciPy's linear algebra starts."""


def share_the_cores(workers: int) -> None:
    """Give each of ``workers`` test processes its share of the cores for linear algebra.

    Set in the controller before the workers start, so that they and every process they
    start inherit it (a variable already set is left alone). Left to its default, OpenBLAS
    starts a thread per core in every worker, and its threads spin while they wait for
    work: with two workers on two cores the batched fits (``numpy.linalg.solve``) of one
    worker took the other's core. Measured on the 2-core VM: the whole suite 348 s ->
    270 s, its CPU time 20 % less. Dask's workers set the same variables to 1 themselves.
    """
    share = str(max(1, (os.cpu_count() or 1) // max(workers, 1)))
    for name in LINEAR_ALGEBRA_THREADS:
        os.environ.setdefault(name, share)


def start_warm_up(config: pytest.Config) -> subprocess.Popen | None:
    """In the pytest-xdist controller: share the cores between the workers, name the
    shared folder and start the warm-up."""
    workers = config.getoption("numprocesses", None)  # pytest-xdist made "auto" a number
    if hasattr(config, "workerinput") or not workers:
        return None
    share_the_cores(int(workers))
    folder = shared_folder(config._tmp_path_factory)  # the workers' base folders' parent
    os.environ[SHARED_ENV] = str(folder)
    script = Path(__file__).with_name("warm_up.py")
    with (folder / "warm-up.log").open("w") as log:
        return subprocess.Popen([sys.executable, str(script)], stdout=log, stderr=subprocess.STDOUT)


def stop_warm_up(process: subprocess.Popen | None) -> None:
    """At the end of the run: the warm-up is over (killed if it is somehow not)."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()

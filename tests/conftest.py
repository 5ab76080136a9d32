"""Shared fixtures: small simulated sensors made once per test run, and the run's order.

:mod:`shared_inputs` says how the processes of one run share their inputs and the
compiled kernels.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import shared_inputs
from gpuptc.simulation.simulate import SimulatedSensor

HEAVIEST_FIRST = (
    "test_gain_robustness.py",
    "test_ptc.py",
    "test_report_drawing.py",
    "test_distributed.py",
    "test_isolation.py",
    "test_hostile_inputs.py",
    "test_measure.py",
    "test_fullcov.py",
    "test_cli.py",
    "test_butler.py",
    "test_raw.py",
    "test_gpu_path.py",
    "test_ptc_dataset.py",
    "test_bad_input.py",
    "test_run.py",
)
"""The test files that take longest, longest first (``make profile-tests`` measures
them): pytest-xdist hands out whole files in collection order, and a long file started
last keeps one worker busy while the other waits. The first two begin by simulating
medium sensors, which needs no compiled kernels: the warm-up compiles them meanwhile."""


@pytest.hookimpl(trylast=True)  # after pytest's temporary folders are set up
def pytest_configure(config: pytest.Config) -> None:
    config._gpuptc_warm_up = shared_inputs.start_warm_up(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    shared_inputs.stop_warm_up(getattr(config, "_gpuptc_warm_up", None))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The heaviest files first, then the others as collected."""
    rank = {name: order for order, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def small_e2v(tmp_path_factory: pytest.TempPathFactory) -> SimulatedSensor:
    """A small e2v sensor: 8 pairs and 5 biases, int32, brighter-fatter on (read-only)."""
    return shared_inputs.simulated(tmp_path_factory, **shared_inputs.SMALL_E2V)


@pytest.fixture(scope="session")
def small_itl(tmp_path_factory: pytest.TempPathFactory) -> SimulatedSensor:
    """A small ITL sensor, RICE-compressed (read-only)."""
    return shared_inputs.simulated(tmp_path_factory, **shared_inputs.SMALL_ITL)


@pytest.fixture(scope="session")
def reported_run(
    small_e2v: SimulatedSensor, small_itl: SimulatedSensor, tmp_path_factory
) -> tuple[int, Path]:
    """``gpuptc run`` on both small sensors with every model and the report, made once
    per test run and inspected by the tests of the run, its tables and its report:
    (exit code, output folder). Read-only: a test that changes it changes a copy."""
    from gpuptc.cli import main

    def make(folder: Path) -> None:
        inputs = [str(small_e2v.directory), str(small_itl.directory)]
        code = main(
            [
                "run",
                *inputs,
                "--out",
                str(folder / "out"),
                *shared_inputs.reported_run_arguments(folder),
            ]
        )
        (folder / "exit_code").write_text(str(code))

    folder = shared_inputs.made_once("reported_run", make, tmp_path_factory)
    return int((folder / "exit_code").read_text()), folder / "out"


@pytest.fixture
def copy_of(tmp_path: Path):
    """Copy a simulated sensor's directory so a test may damage it."""

    def copy(sensor: SimulatedSensor) -> Path:
        target = tmp_path / f"copy-{sensor.sensor}"
        shutil.copytree(sensor.directory, target)
        return target

    return copy


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``backend`` over every array backend importable here."""
    if "backend" in metafunc.fixturenames:
        from backends import available_backends

        metafunc.parametrize("backend", available_backends(), indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """An array backend: numpy (fused and generic kernels), array_api_strict on a second
    device, torch, and CuPy (the real one with a GPU, else the NumPy-backed stand-in)."""
    from backends import make_backend

    return make_backend(request.param, monkeypatch)

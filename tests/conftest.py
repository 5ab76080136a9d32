"""Shared fixtures: small simulated sensors written once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gpuptc.simulation.simulate import SimulatedSensor, simulate


@pytest.fixture(scope="session")
def small_e2v(tmp_path_factory: pytest.TempPathFactory) -> SimulatedSensor:
    """A small e2v sensor: 8 pairs and 5 biases, int32, brighter-fatter on."""
    return simulate(tmp_path_factory.mktemp("e2v"), vendor="e2v", size="small", pairs=8, seed=11)


@pytest.fixture(scope="session")
def small_itl(tmp_path_factory: pytest.TempPathFactory) -> SimulatedSensor:
    """A small ITL sensor, RICE-compressed."""
    return simulate(
        tmp_path_factory.mktemp("itl"),
        vendor="itl",
        size="small",
        pairs=4,
        biases=2,
        seed=12,
        storage="rice",
    )


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

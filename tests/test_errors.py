"""Every error gpuptc raises on purpose is a GpuptcError, and the CLI's exit codes follow."""

import importlib
import inspect
import pkgutil

import pytest

import gpuptc
from gpuptc.cli import main
from gpuptc.errors import GpuptcError
from gpuptc.schema import EXIT_FATAL, EXIT_USAGE

BUILTIN_BASES = {
    "gpuptc.backend.BackendError": RuntimeError,
    "gpuptc.formats.ptc_dataset.PtcDatasetError": ValueError,
    "gpuptc.products.butler_output.ButlerOutputError": OSError,
    "gpuptc.inputs.butler.ButlerInputError": ValueError,
    "gpuptc.raws.geometry.GeometryError": ValueError,
    "gpuptc.raws.rice.RiceError": ValueError,
    "gpuptc.raws.exposure.RawReadError": OSError,
}
"""The builtin base each error had before GpuptcError, which callers may still catch."""


def gpuptc_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of gpuptc, by its dotted name."""
    found = {}
    for info in pkgutil.walk_packages(gpuptc.__path__, "gpuptc."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # runs the CLI on import
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__.split(".")[0] == "gpuptc"
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


EXCEPTIONS = gpuptc_exceptions()


def test_the_walk_finds_the_known_errors():
    assert set(BUILTIN_BASES) <= set(EXCEPTIONS)
    assert "gpuptc.cli._UsageError" in EXCEPTIONS


@pytest.mark.parametrize("name", sorted(EXCEPTIONS))
def test_every_error_is_a_gpuptc_error(name):
    assert issubclass(EXCEPTIONS[name], GpuptcError), f"{name} is not based on GpuptcError"


@pytest.mark.parametrize("name", sorted(BUILTIN_BASES))
def test_errors_keep_their_builtin_base(name):
    assert issubclass(EXCEPTIONS[name], BUILTIN_BASES[name])


def test_gpuptc_error_is_exported():
    assert gpuptc.GpuptcError is GpuptcError
    assert "GpuptcError" in gpuptc.__all__


def test_unknown_backend_is_a_usage_error(small_e2v, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", str(small_e2v.directory), "--out", str(out), "--backend", "nosuch"])
    assert code == EXIT_USAGE
    assert "nosuch" in capsys.readouterr().err


class _Deliberate(GpuptcError):
    """A gpuptc error that is neither an OSError nor a ValueError."""


def test_a_gpuptc_error_in_a_command_is_fatal(monkeypatch, tmp_path, capsys):
    def failing_run(*args, **kwargs):
        raise _Deliberate("the sensor's tables disagree")

    monkeypatch.setattr("gpuptc.running.job.run", failing_run)
    code = main(["run", str(tmp_path / "in.fits"), "--out", str(tmp_path / "out"), "-q"])
    assert code == EXIT_FATAL
    err = capsys.readouterr().err
    assert "gpuptc run: error: the sensor's tables disagree" in err
    assert "Traceback" not in err


def test_a_plain_os_error_is_still_fatal(monkeypatch, tmp_path, capsys):
    def failing_run(*args, **kwargs):
        raise PermissionError("no room")

    monkeypatch.setattr("gpuptc.running.job.run", failing_run)
    code = main(["run", str(tmp_path / "in.fits"), "--out", str(tmp_path / "out"), "-q"])
    assert code == EXIT_FATAL
    assert "no room" in capsys.readouterr().err

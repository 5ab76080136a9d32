import inspect
import re

import pytest

import gpuptc

PENDING: set[str] = set()
"""Public names still without an example (none)."""
"""Public functions and classes whose docstrings do not have their examples yet."""

_SECTION = re.compile(r"^Examples\n-{8,}\n(.*?)(?=^\w[\w ]*\n-{3,}\n|\Z)", re.M | re.S)


def _has_examples(obj: object) -> bool:
    """Whether the docstring has an Examples section with a line that doctest runs."""
    section = _SECTION.search(inspect.getdoc(obj) or "")
    lines = section.group(1).splitlines() if section else []
    return any(line.startswith(">>> ") and "+SKIP" not in line for line in lines)


def test_public_names_exist_and_are_documented():
    for name in gpuptc.__all__:
        obj = getattr(gpuptc, name)
        if callable(obj):
            assert obj.__doc__, name


def test_public_functions_and_classes_have_examples():
    documented = [
        name
        for name in gpuptc.__all__
        if inspect.isfunction(getattr(gpuptc, name)) or inspect.isclass(getattr(gpuptc, name))
    ]
    missing = [n for n in documented if n not in PENDING and not _has_examples(getattr(gpuptc, n))]
    assert not missing, f"no Examples section with >>> lines in the docstrings of {missing}"
    done = sorted(n for n in PENDING if n in documented and _has_examples(getattr(gpuptc, n)))
    assert not done, f"{done} have their examples now: take them out of PENDING"
    assert PENDING <= set(gpuptc.__all__), PENDING - set(gpuptc.__all__)


def test_importing_gpuptc_imports_only_what_is_used():
    """The public names come from their modules when first used: ``import gpuptc`` in a
    reading process or ``gpuptc --help`` does not pay for the fits (SciPy), the tables
    (pandas) or the kernels (numba)."""
    import subprocess
    import sys

    heavy = ["scipy", "pandas", "numba", "matplotlib", "astropy", "gpuptc.fitting"]
    probe = f"import sys, gpuptc; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.stdout.strip() == "[]", loaded.stderr
    assert gpuptc.measure.__module__ == "gpuptc.measuring.sensor"
    assert "measure" in dir(gpuptc)
    with pytest.raises(AttributeError, match="no attribute 'measured'"):
        gpuptc.measured  # noqa: B018

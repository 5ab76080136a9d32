"""The GPUPTC_* settings: one registry, read in one module, documented in the guide."""

import ast
import re
from pathlib import Path

import pytest

from gpuptc import settings

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "gpuptc"
NAMES = [s.name for s in settings.SETTINGS]

STILL_READING: set[str] = set()
"""Modules other than settings.py allowed to read GPUPTC_* variables themselves (none)."""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)


def guide_table() -> dict[str, str]:
    """``variable -> changes numbers`` from the guide's table of environment settings."""
    section = (ROOT / "docs" / "guide" / "environment.md").read_text()
    rows = re.findall(r"^\| `(GPUPTC_\w+)` \|.*\| (yes|no) \|$", section, flags=re.M)
    return dict(rows)


def other_value(entry: settings.Setting) -> str:
    """A valid value of ``entry`` other than its default."""
    if entry.kind == "switch":
        return "0" if entry.default else "1"
    if entry.kind == "path":
        return "/somewhere/else"
    return str((entry.default or 0) + entry.minimum + 3)


def test_the_guide_lists_exactly_the_registered_settings():
    table = guide_table()
    assert sorted(table) == sorted(NAMES)
    for entry in settings.SETTINGS:
        assert table[entry.name] == ("yes" if entry.changes_numbers else "no"), entry.name


def test_names_are_unique_and_documented():
    assert len(set(NAMES)) == len(NAMES)
    for entry in settings.SETTINGS:
        assert entry.name.startswith("GPUPTC_") and entry.help
        assert entry.default is not None or entry.default_text, entry.name


def test_fingerprint_holds_the_settings_that_change_numbers():
    changing = {s.name for s in settings.SETTINGS if s.changes_numbers}
    assert set(settings.fingerprint()) == changing
    assert changing == {"GPUPTC_NUMBA", "GPUPTC_CUDA"}


@pytest.mark.parametrize("entry", settings.SETTINGS, ids=NAMES)
def test_fingerprint_changes_with_exactly_the_number_changing_settings(monkeypatch, entry):
    before = settings.fingerprint()
    monkeypatch.setenv(entry.name, other_value(entry))
    assert (settings.fingerprint() != before) is entry.changes_numbers


def test_a_default_given_explicitly_keeps_the_fingerprint(monkeypatch):
    before = settings.fingerprint()
    monkeypatch.setenv("GPUPTC_NUMBA", "1")
    monkeypatch.setenv("GPUPTC_CUDA", " 0 ")
    assert settings.fingerprint() == before == {"GPUPTC_NUMBA": "1", "GPUPTC_CUDA": "0"}


@pytest.mark.parametrize(
    "entry", [s for s in settings.SETTINGS if s.kind != "path"], ids=lambda s: s.name
)
def test_an_invalid_value_is_an_error_naming_the_variable(monkeypatch, entry):
    monkeypatch.setenv(entry.name, "two")
    with pytest.raises(ValueError, match=entry.name):
        settings.value(entry.name)
    if entry.changes_numbers:
        with pytest.raises(ValueError, match=entry.name):
            settings.fingerprint()


def test_a_switch_is_0_or_1(monkeypatch):
    monkeypatch.setenv("GPUPTC_RICE", "2")
    with pytest.raises(ValueError, match="GPUPTC_RICE must be 0 or 1, not '2'"):
        settings.rice()


def test_accessors(monkeypatch, tmp_path):
    assert settings.threads() >= 1
    assert settings.readers(5) == 5
    assert settings.rice() and settings.gpu_rice() and settings.numba()
    assert not settings.cuda()
    assert settings.cache() == Path.home() / ".cache" / "gpuptc"
    assert (settings.cache_mb(), settings.fetch_threads()) == (4096, 8)
    assert not settings.is_set("GPUPTC_THREADS")
    for name, text in [
        ("GPUPTC_THREADS", "0"),  # raised to the least of 1
        ("GPUPTC_READERS", "2"),
        ("GPUPTC_RICE", "0"),
        ("GPUPTC_CUDA", "1"),
        ("GPUPTC_CACHE", str(tmp_path)),
        ("GPUPTC_FETCH_THREADS", "3"),
    ]:
        monkeypatch.setenv(name, text)
    assert (settings.threads(), settings.readers(5)) == (1, 2)
    assert not settings.rice() and settings.cuda()
    assert settings.cache() == tmp_path and settings.fetch_threads() == 3
    assert settings.is_set("GPUPTC_THREADS")
    monkeypatch.setenv("GPUPTC_READERS", "  ")
    assert settings.readers(5) == 5  # blank: the default


def test_unknown_names_are_refused():
    with pytest.raises(KeyError, match="GPUPTC_NOSUCH"):
        settings.value("GPUPTC_NOSUCH")


def environment_reads(source: str) -> list[int]:
    """Lines that read a ``GPUPTC_*`` variable themselves (``os.environ``, ``whole_number``)."""
    lines = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call | ast.Subscript | ast.Compare):
            continue
        named = any(
            isinstance(c, ast.Constant) and str(c.value).startswith("GPUPTC_")
            for c in ast.walk(node)
        )
        if named and re.search(r"environ|getenv|whole_number", ast.unparse(node)):
            lines.add(node.lineno)
    return sorted(lines)


def test_the_detector_finds_reads():
    source = (
        'import os\na = os.environ.get("GPUPTC_X", "1")\nb = "GPUPTC_Y" in os.environ\n'
        'c = os.environ["GPUPTC_Z"]\nd = whole_number("GPUPTC_W", 1)\n'
        'e = {"GPUPTC_THREADS": "2"}\nf = os.getenv(f"GPUPTC_{a}")\n'
    )
    assert environment_reads(source) == [2, 3, 4, 5, 7]


def test_only_settings_reads_the_environment():
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative == "settings.py" or relative in STILL_READING:
            continue
        found = environment_reads(path.read_text())
        if found:
            offenders[relative] = found
    assert not offenders, f"read GPUPTC_* through gpuptc.settings instead: {offenders}"

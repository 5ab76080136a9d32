"""The documentation site's sources: the API reference covers every public name.

``make docs`` builds the site with every warning an error (CI runs it after the tests);
this checks, without building, that the reference lists exactly ``gpuptc.__all__``.
"""

import re
from pathlib import Path

import gpuptc

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _documented(module: str) -> set[str]:
    """The names the API page's autosummary tables list under ``module``."""
    text = (DOCS / "api.md").read_text()
    names: set[str] = set()
    for block in re.findall(r"```\{eval-rst\}\n(.*?)```", text, flags=re.S):
        if f".. currentmodule:: {module}\n" in block:
            names |= set(re.findall(r"^   (\w+)$", block, flags=re.M))
    return names


def test_the_api_reference_lists_every_public_name():
    public = {name for name in gpuptc.__all__ if not name.startswith("__")}
    assert _documented("gpuptc") == public
    assert "`gpuptc.__version__`" in (DOCS / "api.md").read_text()


def test_every_page_is_in_the_table_of_contents():
    """A page left out of every toctree is a warning, hence a failed ``make docs``: caught
    here before the build."""
    index = (DOCS / "index.md").read_text()
    listed = set(re.findall(r"^([\w/]+)$", index, flags=re.M))
    pages = {p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.md")}
    pages -= {"index"}
    pages = {p for p in pages if not p.startswith(("_build/", "_generated/", "generated/"))}
    assert pages <= listed, sorted(pages - listed)

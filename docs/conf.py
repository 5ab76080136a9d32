"""Sphinx configuration of gpuptc's documentation (``make docs``).

The configuration reference is generated here, at each build, from
:func:`gpuptc.config.counterparts` and the presets, so that it cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

import gpuptc
from gpuptc.config import PRESETS, counterparts

project = "gpuptc"
author = "the gpuptc developers"
release = version = gpuptc.__version__
copyright = "the gpuptc developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "myst_nb",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
exclude_patterns = ["_build", "_generated/*.md.tmp", "**.ipynb_checkpoints"]
autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "force"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_merge_streams = True
html_theme = "pydata_sphinx_theme"
html_title = f"gpuptc {release}"
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2}

_GENERATED = Path(__file__).parent / "_generated"


def _shown(value: object) -> str:
    """A preset field's value as the table shows it (long tuples by their length)."""
    if isinstance(value, tuple) and len(value) > 4:
        return f"({len(value)} numbers)"
    text = repr(value)
    return f"`{text}`".replace("|", "\\|")


def _configuration_table() -> str:
    """Every preset field: its value per preset and its cp_pipe and EOTEST counterparts."""
    names = list(PRESETS)
    head = "| field | " + " | ".join(f"`{n}`" for n in names) + " | cp_pipe | EOTEST |"
    lines = [head, "|---|" + "---|" * len(names) + "---|---|"]
    for row in counterparts():
        section, name = row["section"], row["field"]
        values = [_shown(getattr(getattr(PRESETS[p], section), name)) for p in names]
        cp_pipe, eotest = (row[k] or "" for k in ("cp_pipe", "eotest"))
        lines.append(f"| `{section}.{name}` | " + " | ".join(values) + f" | {cp_pipe} | {eotest} |")
    return "\n".join(lines) + "\n"


def _write_generated() -> None:
    _GENERATED.mkdir(exist_ok=True)
    target = _GENERATED / "configuration_table.md"
    text = _configuration_table()
    if not target.exists() or target.read_text() != text:  # keep Sphinx's cache valid
        target.write_text(text)


_write_generated()

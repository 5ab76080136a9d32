"""Imports flow one way: no module of gpuptc imports from a layer above its own.

The layers are those of ``docs/design.md``, bottom first. A module may import from its own
layer's package and from any layer below; packages that share a layer may not import each
other.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gpuptc"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("_version", "schema", "errors", "settings", "_shared"),
    ("config",),
    ("kernels",),
    ("backend",),
    ("formats", "raws"),
    ("inputs",),
    ("measuring", "fitting"),
    ("products", "simulation"),
    ("report",),
    ("running",),
    ("cli", "__init__"),
    ("__main__",),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """The layer unit of a dotted gpuptc module: its subpackage, or the root module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    relative = path.relative_to(SRC.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1] if len(parts) > 2 else [*parts[:-1], "__init__"]
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every gpuptc import in a file, lazy ones included."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("gpuptc")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "gpuptc":
                found += [(node.lineno, f"gpuptc.{a.name}") for a in node.names]
            elif node.module.startswith("gpuptc."):
                found.append((node.lineno, node.module))
    return found


def violations(path: Path, source_module: str) -> list[str]:
    """Imports of ``path`` that run against the layering."""
    own = unit_of(source_module)
    problems = []
    for line, target in imported_modules(path):
        other = unit_of(target)
        if other == own or (other not in RANK and own not in RANK):
            continue
        if other not in RANK or own not in RANK:
            problems.append(f"{path}:{line}: {target} is in no layer")
        elif RANK[other] >= RANK[own]:
            problems.append(f"{path}:{line}: {source_module} imports {target}")
    return problems


def test_every_module_has_a_layer():
    units = {unit_of(module_name(p)) for p in SRC.rglob("*.py")}
    assert units <= set(RANK), sorted(units - set(RANK))


def test_imports_flow_downwards():
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        problems += violations(path, module_name(path))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "planted"),
    [
        ("gpuptc.measuring.isr", "from gpuptc.running.job import run"),
        ("gpuptc.fitting.ptc", "import gpuptc.measuring.stats"),
        ("gpuptc.raws.exposure", "from gpuptc import formats"),
        ("gpuptc.schema", "from gpuptc.config import Preset"),
    ],
)
def test_a_planted_upward_import_is_caught(tmp_path, module, planted):
    path = tmp_path / "planted.py"
    path.write_text(f'"""Planted."""\n\n{planted}\n')
    assert violations(path, module), planted


def test_the_root_keeps_few_modules():
    root = {p.stem for p in SRC.glob("*.py")} - {"__init__", "__main__", "_version"}
    assert len(root) <= 8, sorted(root)

"""The shape of the source: no function in ``src/gpuptc`` is longer than a screen."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gpuptc"
MAX_LINES = 80

KNOWN_LONG: set[str] = set()
"""``path:function`` of functions allowed over the limit for now; empty it as they shrink."""


def _functions(path: Path):
    """Every function and method of one file, nested ones included: (node, its length)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node, node.end_lineno - node.lineno + 1


def test_no_function_over_80_lines():
    offenders, allowed = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for node, length in _functions(path):
            if length <= MAX_LINES:
                continue
            key = f"{relative}:{node.name}"
            if key in KNOWN_LONG:
                allowed.add(key)
                continue
            offenders.append(f"{relative}:{node.lineno} {node.name} ({length} lines)")
    assert not offenders, f"functions over {MAX_LINES} lines:\n" + "\n".join(offenders)
    shrunk = KNOWN_LONG - allowed
    assert not shrunk, f"no longer over {MAX_LINES} lines, drop from KNOWN_LONG: {sorted(shrunk)}"

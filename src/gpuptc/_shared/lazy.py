"""Lazy public names of a package, listed once in its stub (``__init__.pyi``)."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["attach_stub"]


def attach_stub(
    package: str, init_file: str
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package`` from its stub.

    Every ``from <module> import <name>`` of the stub beside ``init_file`` becomes an
    attribute of the package that imports its module when first asked for, so importing
    the package costs only what is used (a reading process needs the readers, not the
    fits). Type checkers read the same stub.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    init_file : str
        Its ``__file__``; the stub is the file of that name ending in ``.pyi``.

    Returns
    -------
    tuple
        ``(__getattr__, __dir__, __all__)``.
    """
    stub = Path(init_file).with_suffix(".pyi")
    tree = ast.parse(stub.read_text(encoding="utf-8"), filename=str(stub))
    where = {
        alias.asname or alias.name: node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    names = sorted(where)

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return list(names)

    return __getattr__, __dir__, names

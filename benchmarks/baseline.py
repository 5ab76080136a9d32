"""Timing this checkout against a baseline commit, in the same process's machine state.

A baseline is a detached git worktree of the commit, made for the measurement and removed
after it; each timing runs in a subprocess that imports the package of the tree it times.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""This checkout."""


@contextlib.contextmanager
def baseline_tree(commit: str, folder: Path) -> Iterator[Path]:
    """A worktree of ``commit`` in ``folder / "baseline"``, removed on leaving."""
    tree = folder / "baseline"
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "add", "-q", "--detach", str(tree), commit], check=True)
    try:
        yield tree
    finally:
        subprocess.run([*git, "remove", "--force", str(tree)], check=True)


def measure_seconds(source: Path, raws: Path, options: str = "") -> float:
    """Seconds of ``gpuptc.measure`` on NumPy by the package of ``source``, in a subprocess.

    The second of two measurements (the first compiles numba's kernels for that source
    tree and reads the raws into the page cache); ``options`` is appended to the call's
    arguments (``", extract__ks_test=True"``).
    """
    run = f"gpuptc.measure(inventory, backend='numpy'{options})"
    code = (
        f"import time, gpuptc; inventory = gpuptc.ingest([{str(raws)!r}]); {run}; "
        f"t = time.perf_counter(); {run}; print(time.perf_counter() - t)"
    )
    environment = {**os.environ, "PYTHONPATH": str(source / "src")}
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment, check=True, capture_output=True, text=True
    )
    return float(done.stdout.split()[-1])


def measure_against(commit: str, raws: Path, folder: Path) -> tuple[float, float]:
    """:func:`measure_seconds` of ``commit`` and of this checkout, back to back."""
    with baseline_tree(commit, folder) as tree:
        before = measure_seconds(tree, raws)
    return before, measure_seconds(ROOT, raws)

"""Worker processes for CPU-bound work that holds the GIL (simulating, drawing)."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor

__all__ = ["process_pool"]


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, forked when that is safe, else spawned.

    Forking needs no import guard in the caller's script; it is safe only while this
    process runs no other thread.
    """
    safe_fork = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    context = multiprocessing.get_context("fork" if safe_fork else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)

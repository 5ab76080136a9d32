"""Worker processes for CPU-bound work that holds the GIL (simulating, drawing)."""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor

__all__ = ["PRELOADED", "process_pool"]

PRELOADED = ("gpuptc.report.sensor", "gpuptc.simulation.simulate")
"""What the pools' tasks import (drawing, simulating), imported once by the fork server."""


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes, forked when that is safe, else forked by a server.

    Forking is safe only while this process runs no other thread. Otherwise the processes
    are forked from a single-threaded server that this process starts once, with
    :data:`PRELOADED` imported: a pool started later costs a fork, not a new interpreter
    importing gpuptc (about 1.5 s of CPU per process). Where neither exists, they are
    spawned. Like spawned ones, served processes need the import guard in a script, and
    they are given this process's environment as it is now, not the server's.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOADED))
        # forked and spawned processes inherit this process's environment; served ones not
        return ProcessPoolExecutor(
            workers, mp_context=context, initializer=_environment, initargs=(dict(os.environ),)
        )
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _environment(environ: dict[str, str]) -> None:
    """In a pool's process: the environment of the process that started the pool."""
    os.environ.clear()
    os.environ.update(environ)

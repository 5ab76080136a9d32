"""Wall time per stage of a run, for ``run.json`` and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

__all__ = ["Stopwatch", "summed"]


class Stopwatch:
    """Seconds spent in named stages; a stage entered twice adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def summed(timings: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Seconds per stage over several stopwatches' ``seconds`` (e.g. one per sensor)."""
    total: dict[str, float] = {}
    for seconds in timings.values():
        for name, value in seconds.items():
            total[name] = total.get(name, 0.0) + value
    return total

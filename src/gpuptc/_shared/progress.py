"""Progress reporting: a live bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Count work done and show rate and ETA.

    Parameters
    ----------
    label : str
        What is being counted ("exposures", "headers", ...).
    total : int
        Units of work expected.
    stream : file-like, optional
        Where to write; default standard error.
    enabled : bool
        False silences it (``-q``).
    """

    def __init__(
        self, label: str, total: int, *, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.start = time.monotonic()
        self._last_line = -1.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def _line(self, done: int) -> str:
        elapsed = time.monotonic() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        eta_text = f"{eta:5.0f} s" if eta == eta else "    ?"
        return f"{self.label}: {done}/{self.total} ({rate:.2f}/s, ETA {eta_text})"

    def __call__(self, done: int, total: int | None = None) -> None:
        """Report ``done`` units finished (of ``total``, when it changed)."""
        if total is not None:
            self.total = total
        if not self.enabled or self.total <= 0:
            return
        now = time.monotonic()
        finished = done >= self.total
        if self._tty:
            width = 30
            filled = int(width * done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {self._line(done)}")
            if finished:
                self.stream.write("\n")
            self.stream.flush()
        elif finished or now - self._last_line >= 5.0:
            self._last_line = now
            self.stream.write(self._line(done) + "\n")
            self.stream.flush()

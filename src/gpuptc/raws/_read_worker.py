"""A reading process of :class:`gpuptc.raws.readers.FileReaders`.

Reads JSON requests, one per line, from stdin: ``buffer`` (a memory-mapped file),
``shape``, ``slot``, ``member`` and ``path``; reads the raw file into its place in the
buffer and answers ``{"layout": ..., "reason": ...}`` on stdout; ``{"release": buffer}``
unmaps a buffer. Ends when stdin closes; ignores Ctrl-C (SIGINT goes to the whole
terminal process group, and the parent decides what happens).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import IO

import numpy as np

from gpuptc.raws.readers import read_into


def serve(requests: IO[str], replies: IO[str]) -> None:
    """Answer read requests until ``requests`` ends."""
    mapped: dict[str, np.memmap] = {}
    for line in requests:
        request = json.loads(line)
        if "release" in request:
            mapped.pop(request["release"], None)
            replies.write("{}\n")
            replies.flush()
            continue
        name = request["buffer"]
        if name not in mapped:
            shape = tuple(request["shape"])
            mapped[name] = np.memmap(name, dtype=np.float32, mode="r+", shape=shape)
        layout, reason = read_into(
            mapped[name], request["slot"], request["member"], request["path"]
        )
        replies.write(json.dumps({"layout": layout, "reason": reason}) + "\n")
        replies.flush()


def _replies_apart() -> IO[str]:
    """The parent's pipe, kept for replies alone.

    Anything else written to stdout (a library's message, say) goes to stderr instead
    of into the answers.
    """
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return replies


if __name__ == "__main__":
    # Ctrl-C is the parent's to handle; a reader ends when its requests end
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin, _replies_apart())

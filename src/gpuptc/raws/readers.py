"""Reading raw files into host buffers, in threads or in worker processes.

fitsio (cfitsio) holds the GIL while it decompresses a RICE or gzip image, so threads
cannot decompress in parallel. :class:`FileReaders` therefore reads compressed raws in
worker processes (``python -m gpuptc.raws._read_worker``, started with :mod:`subprocess`, so
they work from any main module and inside daemonic Dask workers): the host buffers are
memory-mapped files (in ``/dev/shm`` when it has room) that the workers open by name and
fill in place, so no pixels travel through pipes. Uncompressed files (a memory copy from
the page cache) are read in threads of this process.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

import numpy as np

from gpuptc import settings
from gpuptc.raws.exposure import RawReadError, read_raw
from gpuptc.raws.names import on_disk

__all__ = [
    "FileReaders",
    "Outcome",
    "is_compressed",
    "read_into",
    "reader_processes",
    "start_reader_processes",
    "stop_reader_processes",
]

log = logging.getLogger(__name__)

_COMPRESSED_FRACTION = 0.7
"""A raw file smaller than this fraction of its pixel bytes is compressed."""

_PROCESS_MIN_BYTES = 8 * 2**20
"""Files with fewer pixel bytes are read in threads whatever their compression."""

Outcome = tuple[str | None, str | None]
"""``(layout, None)`` for a file read, ``(None, reason)`` for one that could not be."""


def is_compressed(path: str, pixel_bytes: int) -> bool:
    """Whether a raw file is (tile- or gzip-) compressed, judged by its size on disk.

    Parameters
    ----------
    path : str
        The file.
    pixel_bytes : int
        Bytes of its pixels uncompressed (segments x NAXIS1 x NAXIS2 x |BITPIX| / 8).
    """
    try:
        return os.path.getsize(on_disk(path)) < _COMPRESSED_FRACTION * pixel_bytes
    except OSError:
        return False


def reader_processes(compressed: bool, files_per_batch: int, pixel_bytes: int) -> int:
    """Worker processes to read with: 0 (threads of this process) unless files are compressed.

    Small files (under 8 MB of pixels) decompress faster than a process starts, so
    they are read in threads too. ``GPUPTC_READERS`` overrides the count (0 forces
    threads).
    """
    default = min(os.cpu_count() or 1, files_per_batch)
    if not compressed or pixel_bytes < _PROCESS_MIN_BYTES:
        default = 0
    return settings.readers(default)


def read_into(buffer: np.ndarray, slot: int, member: int, path: str) -> Outcome:
    """Read one raw file into ``buffer[slot, member]``; unreadable files give a reason."""
    try:
        raw = read_raw(path, out=buffer[slot, member])
    except RawReadError as exc:
        return None, exc.reason
    return raw.geometry.layout, None


def _buffer_directory(nbytes: int) -> str:
    shm = "/dev/shm"
    if os.path.isdir(shm) and shutil.disk_usage(shm).free > 2 * nbytes:
        return shm
    return tempfile.gettempdir()


class _Worker:
    """One reading process and its pipes."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gpuptc.raws._read_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        try:
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
            reply = stdout.readline()
        except (BrokenPipeError, OSError):
            reply = ""
        if not reply:
            raise ChildProcessError(f"reader process {self.process.pid} died")
        try:
            return json.loads(reply)
        except ValueError:
            self.process.kill()
            raise ChildProcessError(
                f"reader process {self.process.pid} answered {reply[:80]!r}"
            ) from None

    def stop(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:  # a dead worker's pipe
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class _WorkerPool:
    """Reading processes shared by every :class:`FileReaders` of this process.

    Started on first use (about half a second each, importing gpuptc), kept between
    sensors, stopped at exit.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._workers: list[_Worker] = []

    def ensure(self, count: int) -> None:
        with self._lock:
            self._workers = [w for w in self._workers if w.process.poll() is None]
            for _ in range(count - len(self._workers)):
                worker = _Worker()
                self._workers.append(worker)
                self._idle.put(worker)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request to an idle worker; a worker that died is replaced.

        Raises
        ------
        ChildProcessError
            If the worker died while it handled this request.
        """
        worker = self._idle.get()
        if worker.process.poll() is not None:  # died while idle: not this request's fault
            worker = self._replace(worker)
        try:
            reply = worker.ask(request)
        except ChildProcessError:
            self._idle.put(self._replace(worker))
            raise
        self._idle.put(worker)
        return reply

    def _replace(self, worker: _Worker) -> _Worker:
        worker.stop()
        replacement = _Worker()
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
            self._workers.append(replacement)
        return replacement

    def release(self, buffer_file: str) -> None:
        """Every worker unmaps ``buffer_file`` (call when no read is in flight)."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            try:
                worker.ask({"release": buffer_file})
            except ChildProcessError:
                continue

    def stop(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.stop()


_workers = _WorkerPool()
atexit.register(_workers.stop)


def start_reader_processes(count: int) -> None:
    """Start (at least) ``count`` reading processes now rather than at the first read."""
    _workers.ensure(count)


def stop_reader_processes() -> None:
    """Stop the reading processes (they also stop when this process exits)."""
    _workers.stop()


class FileReaders:
    """Host buffers and the readers that fill them.

    Parameters
    ----------
    shape : tuple of int
        ``(pairs, 2, amps, naxis2, naxis1)`` of each buffer.
    count : int
        Number of buffers (two: one computing while the next is read).
    processes : int
        Worker processes; 0 reads in ``threads`` threads of this process.
    threads : int
        Reading threads when ``processes`` is 0.
    allocate : callable, optional
        ``allocate(shape)`` for in-process buffers (pinned memory on a GPU, say).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        count: int = 2,
        processes: int = 0,
        threads: int = 2,
        allocate: Any = None,
    ) -> None:
        self.shape = tuple(shape)
        self.processes = processes
        self._files: list[str] = []
        if processes > 0:
            nbytes = int(np.prod(self.shape)) * 4
            directory = _buffer_directory(nbytes)
            self.buffers: list[np.ndarray] = []
            for _ in range(count):
                name = os.path.join(directory, f"gpuptc-{os.getpid()}-{uuid.uuid4().hex}.buf")
                self._files.append(name)
                self.buffers.append(np.memmap(name, dtype=np.float32, mode="w+", shape=shape))
            try:
                _workers.ensure(processes)
            except BaseException:
                self._remove_files()
                raise
            threads = processes
        else:
            make = allocate or (lambda s: np.empty(s, dtype=np.float32))
            self.buffers = [make(self.shape) for _ in range(count)]
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gpuptc-file")

    @staticmethod
    def _read_in_worker(request: dict[str, Any]) -> Outcome:
        try:
            reply = _workers.ask(request)
        except ChildProcessError as exc:
            log.warning("%s while reading %s; started another", exc, request["path"])
            return None, "the reading process died while this file was read"
        return reply["layout"], reply["reason"]

    def submit(self, buffer: int, slot: int, member: int, path: str) -> Future[Outcome]:
        """Read ``path`` into ``buffers[buffer][slot, member]``.

        The future gives ``(layout, None)``, or ``(None, reason)`` for a file that
        could not be read.
        """
        if self.processes > 0:
            request = {
                "buffer": self._files[buffer],
                "shape": list(self.shape),
                "slot": slot,
                "member": member,
                "path": path,
            }
            return self._threads.submit(self._read_in_worker, request)
        return self._threads.submit(read_into, self.buffers[buffer], slot, member, path)

    def close(self) -> None:
        """Stop the readers and remove the buffer files (mappings live on until unused)."""
        self._threads.shutdown(wait=True, cancel_futures=True)
        for name in self._files:
            _workers.release(name)
        self._remove_files()

    def _remove_files(self) -> None:
        for name in self._files:
            try:
                os.unlink(name)
            except OSError as exc:  # gone already, or still mapped where that forbids it
                log.debug("could not remove %s: %s", name, exc)

    def __enter__(self) -> FileReaders:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Raw files known by URI: headers read in place, pixels fetched ahead of their reading.

A manifest row's ``path`` is a local path or, for a file on object storage or a web
server, its URI (``s3://...``, ``https://...``; read through lsst-resources). Ingest reads
only a remote file's primary header, with ranged reads (:func:`read_remote_header`).
Measuring reads through :class:`InputFiles`: local files where they are, remote ones
copied by several threads at once, in the order they will be read, into a folder of their
own under the cache, holding at most a budget of bytes not yet read, each file deleted
once read. Fetching overlaps measuring: while one batch of pairs is measured, the next
ones are being fetched.

Settings: ``GPUPTC_CACHE`` (the cache folder, default ``~/.cache/gpuptc``),
``GPUPTC_CACHE_MB`` (the most megabytes of fetched files one measurement holds, default
4096), ``GPUPTC_FETCH_THREADS`` (files fetched at once, default 8).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuptc import settings
from gpuptc.raws.exposure import FITS_MAGIC, RawReadError, header_dict

__all__ = ["InputFiles", "is_remote", "read_remote_header"]

log = logging.getLogger(__name__)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_CARD = 80
_BLOCK = 2880
_FIRST_READ = 16 * _BLOCK
_UNKNOWN_SIZE = 64 * 2**20
"""Bytes reserved for a file whose size is not known yet."""


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a URI of a file that is not on a local file system."""
    match = _SCHEME.match(os.fspath(path))
    return match is not None and match.group(1).lower() != "file"


def _resource(path: str) -> Any:
    try:
        from lsst.resources import ResourcePath
    except ImportError as exc:
        raise RawReadError(
            path, f"reading by URI needs lsst-resources ({exc}); pip install 'gpuptc[butler]'"
        ) from None
    return ResourcePath(path, forceDirectory=False)


def _end_of_header(data: bytes) -> int | None:
    """The length of the header blocks in ``data`` up to its END card, or None."""
    for start in range(0, len(data) - _CARD + 1, _CARD):
        if data[start : start + 3] == b"END" and not data[start + 3 : start + _CARD].strip():
            blocks = -(-(start + _CARD) // _BLOCK)
            return blocks * _BLOCK
    return None


def read_remote_header(path: str) -> dict[str, Any]:
    """The primary header of a remote FITS file, from ranged reads of its first blocks.

    Parameters
    ----------
    path : str
        The file's URI.

    Returns
    -------
    dict
        Keyword -> value, as :func:`gpuptc.raws.exposure.read_primary_header` gives them.

    Raises
    ------
    RawReadError
        If the file cannot be read or does not start with a FITS primary header.
    """
    from astropy.io import fits

    resource = _resource(path)
    size = _FIRST_READ
    while True:
        try:
            data = resource.read(size)
        except Exception as exc:
            raise RawReadError(path, f"cannot be read ({type(exc).__name__}: {exc})") from exc
        if not data.startswith(FITS_MAGIC):
            raise RawReadError(path, "not a FITS file (no SIMPLE card at its start)")
        end = _end_of_header(data)
        if end is not None:
            break
        if len(data) < size:
            raise RawReadError(path, "its primary header has no END card")
        size *= 4
    return header_dict(fits.Header.fromstring(data[:end].decode("ascii", errors="replace")))


def _fetch(path: str, target: Path) -> int:
    """Copy the file at URI ``path`` to ``target`` (atomically); its size in bytes."""
    from lsst.resources import ResourcePath

    ResourcePath(str(target)).transfer_from(_resource(path), transfer="copy", overwrite=True)
    return target.stat().st_size


_PENDING, _FETCHING, _FETCHED, _FAILED, _RELEASED = range(5)


@dataclass
class _Entry:
    path: str
    local: Path
    state: int = _PENDING
    reserved: int = 0
    error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)


class InputFiles:
    """The input files of one measurement, remote ones fetched ahead of their reading.

    Parameters
    ----------
    order : sequence of str
        Every file the measurement will read, in the order it reads them (local paths
        and URIs; only the URIs of remote files are fetched).
    cache : path-like, optional
        The cache folder (default ``GPUPTC_CACHE``, :func:`gpuptc.settings.cache`); the
        files go into a folder of their own inside it, removed on :meth:`close`.
    budget_mb : int, optional
        The most megabytes of fetched files held at once (default ``GPUPTC_CACHE_MB``,
        4096); at least one file is always fetched.
    threads : int, optional
        Files fetched at once (default ``GPUPTC_FETCH_THREADS``, 8).

    Notes
    -----
    :meth:`local` gives the local path of a file, waiting for it to be fetched (or
    fetching it at once when it was not planned or was already released);
    :meth:`release` deletes fetched files once read and makes room for the next ones.
    Use it as a context manager; nothing is fetched when every file is local.
    """

    def __init__(
        self,
        order: Sequence[str],
        *,
        cache: str | os.PathLike[str] | None = None,
        budget_mb: int | None = None,
        threads: int | None = None,
    ) -> None:
        remote = [str(p) for p in dict.fromkeys(order) if is_remote(p)]
        self._order = remote
        self._cache = Path(cache) if cache is not None else settings.cache()
        mb = budget_mb if budget_mb is not None else settings.cache_mb()
        self._budget = max(1, mb) * 2**20
        self._threads = threads or settings.fetch_threads()
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Condition()
        self._held = 0
        self._expected: int | None = None
        """Bytes reserved for a file not yet fetched: the largest fetched so far."""
        self._closed = False
        self._folder: Path | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.fetched_bytes = 0
        """Bytes fetched so far."""
        self.peak_bytes = 0
        """The most bytes of fetched files held at once."""

    def __enter__(self) -> InputFiles:
        if self._order:
            self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self._cache.mkdir(parents=True, exist_ok=True)
        self._folder = Path(tempfile.mkdtemp(prefix="fetch-", dir=self._cache))
        for path in self._order:
            self._entry(path)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="gpuptc-fetch")
        threading.Thread(target=self._dispatch, name="gpuptc-fetch-plan", daemon=True).start()

    def _entry(self, path: str) -> _Entry:
        entry = self._entries.get(path)
        if entry is None:
            assert self._folder is not None
            name = f"{len(self._entries):06d}-{Path(_resource(path).path).name or 'file'}"
            entry = self._entries[path] = _Entry(path, self._folder / name)
        return entry

    def _estimate(self, path: str) -> None:
        """Expect files of this one's size until one has been fetched."""
        if self._expected is not None:
            return
        try:
            size = int(_resource(path).size())
        except Exception:
            size = _UNKNOWN_SIZE
        with self._lock:
            self._expected = size if self._expected is None else self._expected

    def _over_budget(self) -> bool:
        """Whether one more file would exceed the budget (never while nothing is held)."""
        return bool(self._held) and self._held + (self._expected or 0) > self._budget

    def _dispatch(self) -> None:
        """Start the planned fetches in reading order, within the budget."""
        for path in self._order:
            self._estimate(path)
            with self._lock:
                while not self._closed and self._over_budget():
                    self._lock.wait()
                if self._closed:
                    return
                entry = self._entries[path]
                if entry.state != _PENDING:
                    continue
                self._reserve(entry)
            assert self._pool is not None
            self._pool.submit(self._fetch_entry, entry)

    def _reserve(self, entry: _Entry) -> None:
        entry.state, entry.reserved = _FETCHING, self._expected or _UNKNOWN_SIZE
        entry.ready.clear()
        self._held += entry.reserved
        self.peak_bytes = max(self.peak_bytes, self._held)

    def _fetch_entry(self, entry: _Entry) -> None:
        try:
            size, error = _fetch(entry.path, entry.local), None
        except Exception as exc:
            size, error = 0, f"cannot be fetched ({type(exc).__name__}: {exc})"
            entry.local.unlink(missing_ok=True)
        with self._lock:
            self._held += size - entry.reserved
            entry.reserved = size
            self.peak_bytes = max(self.peak_bytes, self._held)
            if error is None:
                self.fetched_bytes += size
                self._expected = max(self._expected or 0, size)
                entry.state = _FETCHED
            else:
                entry.state, entry.error = _FAILED, error
                self._held -= entry.reserved
                entry.reserved = 0
                log.warning("%s: %s", entry.path, error)
            self._lock.notify_all()
        entry.ready.set()

    def local(self, path: str | os.PathLike[str]) -> str:
        """The local path of an input file, once it is there.

        Raises
        ------
        RawReadError
            If a remote file cannot be fetched (the reason from lsst-resources).
        """
        path = os.fspath(path)
        if not is_remote(path):
            return path
        if self._folder is None:
            self._start()
        self._estimate(path)
        with self._lock:
            if self._closed:
                raise RawReadError(path, "read after its measurement finished")
            entry = self._entry(path)
            now = entry.state in (_PENDING, _RELEASED, _FAILED)
            if now:
                entry.error = None
                self._reserve(entry)
        if now:
            self._fetch_entry(entry)
        entry.ready.wait()
        if entry.error is not None:
            raise RawReadError(path, entry.error)
        return str(entry.local)

    def release(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Done with these files: fetched ones are deleted, planned ones not fetched."""
        with self._lock:
            for path in map(os.fspath, paths):
                entry = self._entries.get(path)
                if entry is None or entry.state == _FETCHING:
                    continue
                if entry.state == _FETCHED:
                    entry.local.unlink(missing_ok=True)
                    self._held -= entry.reserved
                    entry.reserved = 0
                entry.state = _RELEASED
            self._lock.notify_all()

    def close(self) -> None:
        """Stop fetching and delete every fetched file."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for entry in self._entries.values():
            entry.ready.set()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
        self._pool = None

r"""File names as the operating system gives them, and as tables and pages can hold them.

A POSIX file name is bytes. Python gives names that are not UTF-8 as text with surrogate
escapes, which Parquet, CSV, HTML and cfitsio cannot take. :func:`printable` is the form
that every table and page holds: the name itself when it is UTF-8, else each byte that is
not written ``\xNN``, losslessly; :func:`on_disk` turns that text back into the name the
operating system knows, and :func:`c_name` gives a C library (cfitsio) a name it can open.
"""

from __future__ import annotations

import codecs
import contextlib
import os
from collections.abc import Iterator

__all__ = ["c_name", "on_disk", "printable"]


def printable(path: str | os.PathLike[str]) -> str:
    r"""The path as UTF-8 text: itself when it is UTF-8, else its other bytes as ``\xNN``.

    Examples
    --------
    >>> printable("MC_C_20250604_000002_R22_S01.fits")
    'MC_C_20250604_000002_R22_S01.fits'
    >>> printable(os.fsdecode(b"MC_\xe9.fits"))
    'MC_\\xe9.fits'
    """
    text = os.fsdecode(os.fspath(path))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def on_disk(text: str | os.PathLike[str]) -> str:
    r"""The name the operating system knows for a :func:`printable` path.

    The text itself when a file has that name (or when it holds no ``\xNN``); else the
    name whose bytes the escapes stand for, where that file exists.
    """
    text = os.fsdecode(os.fspath(text))
    if "\\x" not in text or os.path.lexists(text):
        return text
    try:
        name = os.fsdecode(codecs.escape_decode(text.encode("utf-8"))[0])
    except ValueError:
        return text
    return name if os.path.lexists(name) else text


@contextlib.contextmanager
def c_name(path: str) -> Iterator[str]:
    """A name a C library can open for ``path`` while the block runs.

    ``path`` as the operating system or :func:`printable` gives it. The name itself when
    it is UTF-8; else ``/dev/fd/N`` of a descriptor opened on it and closed after the
    block (a library that opened the file keeps its own).
    """
    path = on_disk(path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            yield f"/dev/fd/{descriptor}"
        finally:
            os.close(descriptor)
        return
    yield path

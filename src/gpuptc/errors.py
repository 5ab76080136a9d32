"""The base of the errors gpuptc raises on purpose."""

from __future__ import annotations

__all__ = ["GpuptcError"]


class GpuptcError(Exception):
    """The base of every error gpuptc raises on purpose; catching it catches them all.

    Each of gpuptc's errors also keeps the builtin base it had before this class existed
    (:class:`ValueError`, :class:`OSError` or :class:`RuntimeError`), so code that catches
    those still catches it. An error that is not a :class:`GpuptcError` is a bug or a
    failure outside gpuptc (a library, the file system).

    Examples
    --------
    A file that is not there (in the empty directory ``tmp``), read as a raw exposure:

    >>> from gpuptc import read_raw
    >>> try:
    ...     read_raw(tmp / "missing.fits")
    ... except GpuptcError as error:
    ...     print(type(error).__name__, isinstance(error, OSError))
    RawReadError True
    """

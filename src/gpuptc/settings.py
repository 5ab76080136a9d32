"""Every setting read from an environment variable (``GPUPTC_*``), and the one place read.

:data:`SETTINGS` lists them: name, kind, default, whether the setting changes the numbers a
run produces, and what it does. Other modules call the typed accessors (:func:`threads`,
:func:`rice`, ...) or :func:`value` instead of reading ``os.environ``; :func:`fingerprint`
gives the values of the settings that change numbers, for checking that a resumed run
computes what the interrupted one did. A value of the wrong kind is a :class:`ValueError`
naming the variable; an unset or blank variable means the default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "SETTINGS",
    "Setting",
    "cache",
    "cache_mb",
    "cuda",
    "fetch_threads",
    "fingerprint",
    "gpu_rice",
    "is_set",
    "numba",
    "readers",
    "rice",
    "setting",
    "threads",
    "value",
]

Kind = Literal["whole number", "switch", "path"]
"""A whole number (at least the setting's minimum), 0 or 1, or a folder."""


@dataclass(frozen=True)
class Setting:
    """One environment setting.

    Parameters
    ----------
    name : str
        The variable, ``GPUPTC_...``.
    kind : {'whole number', 'switch', 'path'}
        How its text is read: a whole number (raised to ``minimum``), ``0`` or ``1``, or
        a folder.
    default : int, bool, str or None
        The value when the variable is unset or blank; None where the code that uses it
        decides (``default_text`` says how).
    changes_numbers : bool
        Whether two runs that differ only in this setting can produce different numbers
        (even in the last bits); such settings are in :func:`fingerprint`.
    help : str
        What it does, and why it does or does not change the numbers.
    default_text : str
        The default in words, for a default of None (else empty).
    minimum : int
        The least whole number used (a smaller one is raised to it).
    """

    name: str
    kind: Kind
    default: int | bool | str | None
    changes_numbers: bool
    help: str
    default_text: str = ""
    minimum: int = 0


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "GPUPTC_THREADS",
        "whole number",
        None,
        False,
        "Amplifier groups measured in parallel threads on NumPy. Amplifiers are measured "
        "independently, so the count does not change the numbers.",
        default_text="the number of cores",
        minimum=1,
    ),
    Setting(
        "GPUPTC_READERS",
        "whole number",
        None,
        False,
        "Reader processes (0: threads of the main process). Where a file is read does not "
        "change its pixels.",
        default_text="0 for uncompressed, RICE_1 or small files, else one per file of a "
        "batch up to the number of cores",
    ),
    Setting(
        "GPUPTC_RICE",
        "switch",
        True,
        False,
        "0 leaves RICE_1 tiles to cfitsio (in reader processes) instead of gpuptc's own "
        "decoder (threads). RICE_1 is lossless: both give the same pixels.",
    ),
    Setting(
        "GPUPTC_GPU_RICE",
        "switch",
        True,
        False,
        "0 decodes RICE_1 raws on the host on CuPy too, instead of sending the compressed "
        "tiles to the device. Lossless either way: the same pixels.",
    ),
    Setting(
        "GPUPTC_NUMBA",
        "switch",
        True,
        True,
        "0 runs the generic array-API kernels on NumPy instead of the fused numba ones. "
        "They agree to about 1e-10 relative, not bit for bit (the numba sums are "
        "reassociated), so this changes the last bits of the numbers.",
    ),
    Setting(
        "GPUPTC_CUDA",
        "switch",
        False,
        True,
        "1 runs the fused CUDA kernels on CuPy (radix-selected quartiles, one-pass "
        "clipping, shared-memory row medians) instead of the array-API ones. They agree "
        "to about 1e-9 relative, not bit for bit, so this changes the last bits of the "
        "numbers.",
    ),
    Setting(
        "GPUPTC_CACHE",
        "path",
        "~/.cache/gpuptc",
        False,
        "The folder remote raw files are fetched into (each measurement's in a folder of "
        "its own, deleted after). Where files are kept does not change them.",
    ),
    Setting(
        "GPUPTC_CACHE_MB",
        "whole number",
        4096,
        False,
        "The most megabytes of fetched remote files one measurement holds at once (at "
        "least one file). Changes when files are fetched, not what they hold.",
    ),
    Setting(
        "GPUPTC_FETCH_THREADS",
        "whole number",
        8,
        False,
        "Remote files fetched at once. Changes when files are fetched, not what they hold.",
        minimum=1,
    ),
)
"""Every ``GPUPTC_*`` setting; docs/guide/environment.md's table lists the same."""

_BY_NAME = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    """The registered setting called ``name``.

    Raises
    ------
    KeyError
        If no setting has that name.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name} is not a gpuptc setting (see gpuptc.settings.SETTINGS)") from None


def _text(name: str) -> str | None:
    """The variable's text, stripped; None when it is unset or blank."""
    text = os.environ.get(name)
    return text.strip() if text is not None and text.strip() else None


def _parsed_whole(name: str, text: str, minimum: int) -> int:
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}") from None
    return max(minimum, number)


def _parsed(entry: Setting, text: str) -> int | bool | str:
    """The value of ``text`` for ``entry``; ValueError naming the variable if it is not one."""
    if entry.kind == "whole number":
        return _parsed_whole(entry.name, text, entry.minimum)
    if entry.kind == "switch":
        if text not in ("0", "1"):
            raise ValueError(f"{entry.name} must be 0 or 1, not {text!r}")
        return text == "1"
    return text


def value(name: str) -> int | bool | str | None:
    """The value of a registered setting: as set, else its default (None: the caller's).

    Parameters
    ----------
    name : str
        The variable, one of :data:`SETTINGS`.

    Returns
    -------
    int, bool, str or None
        A whole number, a switch's bool, a path's text, or the default.

    Raises
    ------
    KeyError
        If ``name`` is not a registered setting.
    ValueError
        If the variable is set to a value of the wrong kind, naming it.
    """
    entry = setting(name)
    text = _text(name)
    return entry.default if text is None else _parsed(entry, text)


def is_set(name: str) -> bool:
    """Whether the user set a registered setting (to something not blank)."""
    setting(name)
    return _text(name) is not None


def _whole(name: str, default: int | None = None) -> int:
    """A whole-number setting: as set, else its registered default, else ``default``.

    Never below the setting's minimum; ``default`` is for the settings whose default the
    caller decides.
    """
    chosen = value(name)
    if chosen is None:
        chosen = default
    assert chosen is not None, f"{name} has no default of its own: the caller gives one"
    return max(setting(name).minimum, int(chosen))


def _switch(name: str) -> bool:
    return bool(value(name))


def threads() -> int:
    """``GPUPTC_THREADS``: amplifier groups measured at once on NumPy (default: cores)."""
    return _whole("GPUPTC_THREADS", os.cpu_count() or 1)


def readers(default: int) -> int:
    """``GPUPTC_READERS``: reader processes, else ``default`` (0: threads)."""
    return _whole("GPUPTC_READERS", default)


def rice() -> bool:
    """``GPUPTC_RICE``: whether gpuptc's own decoder reads RICE_1 tiles."""
    return _switch("GPUPTC_RICE")


def gpu_rice() -> bool:
    """``GPUPTC_GPU_RICE``: whether RICE_1 tiles are decoded on the device on CuPy."""
    return _switch("GPUPTC_GPU_RICE")


def numba() -> bool:
    """``GPUPTC_NUMBA``: whether NumPy runs the fused numba kernels (when numba imports)."""
    return _switch("GPUPTC_NUMBA")


def cuda() -> bool:
    """``GPUPTC_CUDA``: whether CuPy runs the fused CUDA kernels."""
    return _switch("GPUPTC_CUDA")


def cache() -> Path:
    """``GPUPTC_CACHE``: the folder remote files are fetched into."""
    return Path(str(value("GPUPTC_CACHE"))).expanduser()


def cache_mb() -> int:
    """``GPUPTC_CACHE_MB``: the most megabytes of fetched files held at once."""
    return _whole("GPUPTC_CACHE_MB")


def fetch_threads() -> int:
    """``GPUPTC_FETCH_THREADS``: remote files fetched at once."""
    return _whole("GPUPTC_FETCH_THREADS")


def _fingerprint_text(chosen: int | bool | str | None) -> str | None:
    if chosen is None or isinstance(chosen, str):
        return chosen
    return str(int(chosen))


def fingerprint() -> dict[str, str | None]:
    """The current values of the settings that change numbers, as text, by name.

    Defaults count as values, so an unset variable and one set to its default give the
    same fingerprint; a switch is ``'0'`` or ``'1'``.

    Returns
    -------
    dict of str to str or None
        One entry per setting whose ``changes_numbers`` is true (None: the default is
        decided by the code that uses it).

    Raises
    ------
    ValueError
        If one of them is set to a value of the wrong kind, naming it.
    """
    return {s.name: _fingerprint_text(value(s.name)) for s in SETTINGS if s.changes_numbers}

"""Settings read from environment variables (``GPUPTC_*``)."""

from __future__ import annotations

import os

__all__ = ["whole_number"]


def whole_number(name: str, default: int, *, minimum: int = 0) -> int:
    """A whole-number setting from the environment, at least ``minimum``.

    Raises
    ------
    ValueError
        If the variable is set to something other than a whole number, naming it.
    """
    setting = os.environ.get(name)
    if setting is None or not setting.strip():
        return max(minimum, default)
    try:
        value = int(setting)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {setting!r}") from None
    return max(minimum, value)

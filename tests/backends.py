"""The array backends the compute core is tested on."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from gpuptc.backend import Backend, get_backend


def available_backends() -> list[str]:
    """numpy (fused kernels where numba imports), numpy-generic (the array-API reference
    kernels on NumPy), array_api_strict, and torch and cupy where they run."""
    names = ["numpy-generic", "array_api_strict"]
    if importlib.util.find_spec("numba") is not None:
        names.insert(0, "numpy")
    if importlib.util.find_spec("torch") is not None:
        names.append("torch")
    try:
        get_backend("cupy")
        names.append("cupy")
    except Exception:
        pass
    return names


def make_backend(name: str) -> Backend:
    if name == "numpy":
        return get_backend("numpy", fused=True)
    if name == "numpy-generic":
        return get_backend("numpy", fused=False)
    if name == "array_api_strict":
        strict = pytest.importorskip("array_api_strict")
        strict.set_array_api_strict_flags(api_version="2024.12")
        # a second device catches hidden host copies and device mix-ups
        return get_backend("array_api_strict", device=strict.Device("device1"))
    return get_backend(name)


def host(x) -> np.ndarray:
    from gpuptc.backend import to_host

    return to_host(x)

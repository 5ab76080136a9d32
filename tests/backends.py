"""The array backends the compute core is tested on."""

from __future__ import annotations

import importlib.util
import warnings

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
    names.append("cupy" if real_cupy_with_gpu() else "cupy-stand-in")
    return names


def real_cupy_with_gpu() -> bool:
    """Whether a real CuPy imports and sees a GPU (then the CuPy tests use it)."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        get_backend("cupy")
    except Exception as exc:  # CuPy installed but unusable: the GPU tests must say so
        warnings.warn(
            f"CuPy is installed but unusable, tests use the stand-in: {exc}", stacklevel=2
        )
        return False
    return True


def make_backend(name: str, monkeypatch: pytest.MonkeyPatch | None = None) -> Backend:
    if name == "cupy-stand-in":
        import cupy_stand_in

        assert monkeypatch is not None
        cupy_stand_in.install(monkeypatch)
        return get_backend("cupy")
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

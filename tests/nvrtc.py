"""Compiling CUDA sources with NVRTC (the nvidia-cuda-nvrtc wheel of the test extra)."""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os

import pytest


def _library() -> ctypes.CDLL | None:
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations) if spec else []
    for root in roots:
        found = sorted(glob.glob(os.path.join(root, "**", "libnvrtc.so*"), recursive=True))
        found = [f for f in found if "builtins" not in f]
        if found:
            return ctypes.CDLL(found[0])
    return None


def compile_for_sm90(source: str, names: tuple[str, ...]) -> None:
    """Compile ``source`` for sm_90; assert it compiles to a cubin exporting ``names``
    under those names (``extern "C"``, as CuPy looks them up). Skips without NVRTC."""
    nvrtc = _library()
    if nvrtc is None:
        pytest.skip("NVRTC is not installed (pip install nvidia-cuda-nvrtc)")
    program = ctypes.c_void_p()
    created = nvrtc.nvrtcCreateProgram(
        ctypes.byref(program), source.encode(), b"g.cu", 0, None, None
    )
    assert created == 0
    for name in names:
        assert nvrtc.nvrtcAddNameExpression(program, name.encode()) == 0
    options = (ctypes.c_char_p * 2)(b"--gpu-architecture=sm_90", b"-std=c++17")
    status = nvrtc.nvrtcCompileProgram(program, 2, options)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    assert status == 0, log.value.decode()
    cubin = ctypes.c_size_t()
    assert nvrtc.nvrtcGetCUBINSize(program, ctypes.byref(cubin)) == 0 and cubin.value > 1000
    for name in names:
        lowered = ctypes.c_char_p()
        assert nvrtc.nvrtcGetLoweredName(program, name.encode(), ctypes.byref(lowered)) == 0
        assert lowered.value.decode() == name

"""The test run's warm-up: the session's small sensors simulated, numba's kernels compiled.

Started by the pytest-xdist controller (:func:`shared_inputs.start_warm_up`) while the
workers start. Measuring both small sensors under every preset compiles every fused
kernel the suite uses into numba's cache beside the sources, once, instead of once in
every worker; the simulations land in the run's shared folder, where the session
fixtures find them. It ends by printing how long it took and how it ended (into
``warm-up.log`` in the shared folder); the workers do not wait for it.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from pathlib import Path
from typing import Any

import gpuptc
import shared_inputs
from gpuptc.config import PRESETS


def _kernels() -> dict[str, Any]:
    """numba's cached kernels by name."""
    from numba.core.dispatcher import Dispatcher

    from gpuptc.kernels import numba_cpu

    return {name: k for name, k in vars(numba_cpu).items() if isinstance(k, Dispatcher)}


def _compiled_list() -> Path:
    """Where the last warm-up listed the kernels its measuring compiled: beside numba's
    cache of them (``__pycache__``, ignored by git)."""
    from gpuptc.kernels import numba_cpu

    return Path(numba_cpu.__file__).parent / "__pycache__" / "warm-up.txt"


def _compiled(kernel: Any) -> bool:
    """Whether numba's cache index holds the kernel compiled from its source as it is
    (numba's own check of its version and the source's stamp)."""
    return bool(kernel._cache._cache_file._load_index())


def kernels_compiled() -> bool:
    """Whether the kernels the last warm-up compiled are in numba's cache, compiled from
    the source as it is: then ``make kernels`` (or an earlier run) compiled them since the
    source last changed, and measuring only to compile would cost the run about 5 s of CPU
    for nothing."""
    listed = _compiled_list()
    if not listed.exists():
        return False
    kernels = _kernels()
    names = listed.read_text().split()
    try:
        return bool(names) and all(n in kernels and _compiled(kernels[n]) for n in names)
    except AttributeError:  # numba's cache laid out otherwise: compile to be sure
        return False


def _list_compiled() -> None:
    with contextlib.suppress(AttributeError, OSError):
        names = [name for name, kernel in _kernels().items() if _compiled(kernel)]
        _compiled_list().write_text("\n".join(names) + "\n")


def warm_up() -> None:
    """Simulate the session's sensors and, unless the kernels are compiled already,
    measure them under every preset (and the KS test)."""
    sensors = [
        shared_inputs.simulated(**shared_inputs.SMALL_E2V),
        shared_inputs.simulated(**shared_inputs.SMALL_ITL),
    ]
    if kernels_compiled():
        print("the kernels were compiled already")
        return
    inventory = gpuptc.ingest([sensor.directory for sensor in sensors])
    for preset in PRESETS:
        gpuptc.measure(inventory, preset=preset, backend="numpy")
    # the Gaussianity test's kernels (off in every preset, on in some tests), and the
    # direct lag products of short covariance ranges (the presets' are long)
    gpuptc.measure(inventory, preset="cp_pipe", backend="numpy", extract__ks_test=True, cov_size=2)
    _list_compiled()


def main() -> None:
    started = time.perf_counter()
    outcome = "ok"
    try:
        warm_up()
    except BaseException:  # the workers compile for themselves
        outcome = traceback.format_exc()
    finally:
        seconds = time.perf_counter() - started
        print(f"{seconds:.1f} s\n{outcome}")


if __name__ == "__main__":
    main()

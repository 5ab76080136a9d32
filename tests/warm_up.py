"""The test run's warm-up: the session's small sensors simulated, numba's kernels compiled.

Started by the pytest-xdist controller (:func:`shared_inputs.start_warm_up`) while the
workers start. Measuring both small sensors under every preset compiles every fused
kernel the suite uses into numba's cache beside the sources, once, instead of once in
every worker; the simulations land in the run's shared folder, where the session
fixtures find them. It ends by printing how long it took and how it ended (into
``warm-up.log`` in the shared folder); the workers do not wait for it.
"""

from __future__ import annotations

import time
import traceback

import gpuptc
import shared_inputs
from gpuptc.config import PRESETS


def kernels_compiled() -> bool:
    """Whether numba's cache holds every kernel, compiled from the kernels' source as it is.

    Then ``make kernels`` (or an earlier run) compiled them since the source last changed,
    and measuring only to compile would cost the run about 5 s of CPU for nothing. Asked
    of numba's own cache index (its version and the source's stamp), as numba asks it; a
    signature missing from a valid index is compiled by the worker that needs it.
    """
    from numba.core.dispatcher import Dispatcher

    from gpuptc.kernels import numba_cpu

    kernels = [k for k in vars(numba_cpu).values() if isinstance(k, Dispatcher)]
    try:
        return bool(kernels) and all(k._cache._cache_file._load_index() for k in kernels)
    except AttributeError:  # numba's cache laid out otherwise: compile to be sure
        return False


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
    # the Gaussianity test's kernels: off in every preset, on in some tests
    gpuptc.measure(inventory, preset="cp_pipe", backend="numpy", extract__ks_test=True)


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

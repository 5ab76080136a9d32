"""Worker-process pools: forked, or forked by a server when this process runs threads."""

import os
import sys
import threading

from gpuptc._shared.processes import PRELOADED, process_pool


def _state(name: str) -> tuple[str | None, bool]:
    """In a pool's process: an environment variable and whether gpuptc's drawing is loaded."""
    return os.environ.get(name), PRELOADED[0] in sys.modules


def test_a_pool_started_beside_threads_is_served_with_the_environment_of_now(monkeypatch):
    """Beside a thread, pools come from a fork server with the drawing already imported,
    and each pool's processes see the environment as it is when the pool starts."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        monkeypatch.setenv("GPUPTC_TEST_MARK", "first")
        with process_pool(1) as pool:
            assert pool._mp_context.get_start_method() == "forkserver"
            assert pool.submit(_state, "GPUPTC_TEST_MARK").result() == ("first", True)
        monkeypatch.setenv("GPUPTC_TEST_MARK", "second")
        with process_pool(1) as pool:
            assert pool.submit(_state, "GPUPTC_TEST_MARK").result() == ("second", True)
        monkeypatch.delenv("GPUPTC_TEST_MARK")
        with process_pool(1) as pool:
            assert pool.submit(_state, "GPUPTC_TEST_MARK").result() == (None, True)
    finally:
        stop.set()
        thread.join()

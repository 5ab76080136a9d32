"""Where the test suite's time goes: seconds by kind of work, per pytest-xdist worker, summed.

A pytest plugin. ``python -m pytest -p suite_profile ...`` with ``benchmarks`` on
``PYTHONPATH`` (``make profile-tests`` does both) wraps the functions that do each kind of
work and adds up their wall time in every test process, each second counted once, for the
innermost kind running (a run that measures inside a test counts as measuring, its
figures as drawing):

- simulating: ``gpuptc.simulation.simulate.simulate``;
- measuring: ``gpuptc.measuring.sensor.measure_sensor``;
- fitting: ``gpuptc.fitting.solve.fit`` and ``gpuptc.fitting.curves.model_curves``;
- drawing: the report's figures and pages (``report.sensor.sensor_figures``,
  ``report.sensor.draw_sensors``, ``report.html.draw_report``, and the in-process run's
  wait for its drawing processes, ``running.schedulers._collect_drawn``);
- Dask start-up and shut-down: ``distributed.LocalCluster`` made and closed;
- browser: Chromium run by a test (``subprocess.run`` of a command naming chromium);
- other: the rest of the test processes' wall time (reading files, pandas, pytest).

At the end each worker writes ``suite_profile-<worker>.json`` into ``$SUITE_PROFILE_DIR``
(default the current folder) with its seconds by kind and its process CPU time (its own and
its children's: the drawing processes, Dask workers, reader processes);
``python benchmarks/suite_profile.py DIR`` sums the workers' files into a table.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

KINDS = ("simulating", "measuring", "fitting", "drawing", "dask", "browser")
_TARGETS = {
    "simulating": [("gpuptc.simulation.simulate", "simulate")],
    "measuring": [("gpuptc.measuring.sensor", "measure_sensor")],
    "fitting": [("gpuptc.fitting.solve", "fit"), ("gpuptc.fitting.curves", "model_curves")],
    "drawing": [
        ("gpuptc.report.sensor", "sensor_figures"),
        ("gpuptc.report.sensor", "draw_sensors"),
        ("gpuptc.report.html", "draw_report"),
        ("gpuptc.running.schedulers", "_collect_drawn"),
    ],
}


class _Clock:
    """Wall time by kind, each second given to the innermost kind of the main thread."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.stack: list[tuple[str, float]] = []
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def kind(self, name: str):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        now = time.perf_counter()
        if self.stack:
            outer, since = self.stack[-1]
            self.seconds[outer] += now - since
        self.stack.append((name, now))
        try:
            yield
        finally:
            _, since = self.stack.pop()
            now = time.perf_counter()
            self.seconds[name] += now - since
            if self.stack:
                self.stack[-1] = (self.stack[-1][0], now)


CLOCK = _Clock()


def _timed(kind: str, function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with CLOCK.kind(kind):
            return function(*args, **kwargs)

    wrapper.__wrapped_by_suite_profile__ = True  # type: ignore[attr-defined]
    return wrapper


def _wrap_everywhere(module_name: str, attribute: str, kind: str) -> None:
    """Replace the function in its module and wherever a gpuptc module imported it."""
    import importlib

    module = importlib.import_module(module_name)
    original = getattr(module, attribute)
    wrapped = _timed(kind, original)
    for name, loaded in list(sys.modules.items()):
        if (name == "gpuptc" or name.startswith("gpuptc.")) and getattr(
            loaded, attribute, None
        ) is original:
            setattr(loaded, attribute, wrapped)


SIMULATED: list[dict[str, Any]] = []
"""Each simulation of the session: its configuration, seconds and the test that asked."""


def _wrap_simulate() -> None:
    """Also record what each simulation was (to find the same sensor made twice)."""
    import gpuptc.simulation.simulate as module

    timed = module.simulate

    @functools.wraps(timed)
    def recorded(directory: Any, config: Any = None, **options: Any) -> Any:
        started = time.perf_counter()
        result = timed(directory, config, **options)
        SIMULATED.append(
            {
                "config": repr(result.config),
                "seconds": time.perf_counter() - started,
                "test": os.environ.get("PYTEST_CURRENT_TEST", ""),
            }
        )
        return result

    for name, loaded in list(sys.modules.items()):
        if (name == "gpuptc" or name.startswith("gpuptc.")) and getattr(
            loaded, "simulate", None
        ) is timed:
            loaded.simulate = recorded


def _wrap_dask() -> None:
    from distributed import LocalCluster

    for method in ("__init__", "close"):
        setattr(LocalCluster, method, _timed("dask", getattr(LocalCluster, method)))


def _wrap_browser() -> None:
    import subprocess

    run = subprocess.run

    @functools.wraps(run)
    def watched(command: Any, *args: Any, **kwargs: Any) -> Any:
        if "chromium" in str(command):
            with CLOCK.kind("browser"):
                return run(command, *args, **kwargs)
        return run(command, *args, **kwargs)

    subprocess.run = watched


def pytest_configure(config: Any) -> None:
    import gpuptc
    import gpuptc.report.html
    import gpuptc.running.schedulers  # noqa: F401

    for kind, targets in _TARGETS.items():
        for module_name, attribute in targets:
            _wrap_everywhere(module_name, attribute, kind)
    _wrap_simulate()
    _wrap_dask()
    _wrap_browser()
    CLOCK.started = time.perf_counter()


def pytest_sessionfinish(session: Any) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - CLOCK.started
    record = {
        "worker": worker,
        "wall": wall,
        "seconds": {k: CLOCK.seconds.get(k, 0.0) for k in KINDS},
        "cpu_self": own.ru_utime + own.ru_stime,
        "cpu_children": children.ru_utime + children.ru_stime,
        "simulated": SIMULATED,
    }
    folder = Path(os.environ.get("SUITE_PROFILE_DIR", "."))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"suite_profile-{worker}.json").write_text(json.dumps(record, indent=1))


def summary(folder: Path) -> str:
    """The workers' records summed: a Markdown table of seconds by kind."""
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("suite_profile-*.json"))]
    records = [r for r in records if r["worker"] != "main"] or records
    wall = sum(r["wall"] for r in records)
    by_kind = {k: sum(r["seconds"][k] for r in records) for k in KINDS}
    by_kind["other"] = wall - sum(by_kind.values())
    lines = ["| kind | seconds (summed over workers) | share |", "|---|---|---|"]
    for kind, seconds in by_kind.items():
        lines.append(f"| {kind} | {seconds:.0f} | {seconds / wall:.0%} |")
    cpu_self = sum(r["cpu_self"] for r in records)
    cpu_children = sum(r["cpu_children"] for r in records)
    lines.append(f"| all ({len(records)} workers' wall time) | {wall:.0f} | 100% |")
    lines.append("")
    lines.append(
        f"CPU time: {cpu_self:.0f} s in the test processes, {cpu_children:.0f} s in their "
        "children (drawing processes, Dask workers, reader processes, Chromium)."
    )
    made: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for sim in record.get("simulated", []):
            made[sim["config"]].append(sim["seconds"])
    again = sum(sum(sorted(times)[:-1]) for times in made.values() if len(times) > 1)
    lines.append(
        f"Simulations: {sum(len(t) for t in made.values())} of {len(made)} different sensors; "
        f"{again:.0f} s spent making a sensor made before."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))

"""How crooked the data path is: gpuptc modules entered, and re-entered, along two paths.

The two paths, on a small simulated e2v sensor with one flat pair (``size="small"``):

(a) one pair from the manifest to the ``pairs`` table: ``gpuptc.measure(manifest, "cp_pipe",
    "numpy")``;
(b) one sensor task to its tables: ``process_sensor(task)`` (``gpuptc.distributed`` before the
    reorganisation, ``gpuptc.running.schedulers`` or ``gpuptc.running.sensor`` after), the
    task a :class:`SensorTask` built as the job builds it (the manifest's rows of the
    sensor, the ``cp_pipe`` preset, NumPy, every model, no bias, figures off).

How it is traced: ``sys.setprofile`` and ``threading.setprofile`` (threads started while
tracing, e.g. the readers' and the measuring threads) see every Python call. A call event
counts when its frame's code file is under the package (its module is the file's dotted
name, ``__init__`` dropped) and is not module-level code (``<module>``: imports, which
happen once); a generator resumed is a call event too, as the profiler reports it. Each
thread has its own path; the counts are summed over threads. Threads started before the
tracing and other processes (reader processes, if any) are not seen.

The counting rule (``RULE`` below; ``--variants`` prints the others next to it):

1. Take each thread's call events in time order. Keep only *entries*: calls whose module
   differs from the caller's, the caller being the innermost gpuptc frame on that thread's
   stack (a call from outside gpuptc, such as a thread pool starting a gpuptc function, is
   an entry). Calls within a module are not entries, and returns never are: coming back to
   the caller's module is not a visit.
2. Count only the stages of the data path. Left out: the foundation every layer uses by
   design (``schema``, ``config``, ``settings``, ``errors``, ``_shared``), the array
   dispatch layer (``backend``, ``kernels``), and reading a value (a call of a property or
   a dunder method of a class, such as ``SensorGeometry.namps``).
3. The modules of the remaining entries, consecutive repeats collapsed, are the *visits*.
4. A loop counts once: where a block of 1 to 6 visits repeats back to back (scanning from
   the left, the block that covers the most visits; ``(_common > ptc) x16`` for a loop
   over 16 amps), the block is kept once; consecutive repeats are collapsed again.
5. A *re-entry* is a visit to a module the thread's path has visited before. The count of a
   path is the sum over its threads.

So ``a > b > a > c > b`` has 2 re-entries (the second ``a``, the second ``b``); ``a``
calling ``b`` five times (``a > b``, return, ``a > b`` ...) is one visit to ``b``; and
``a > (b > c) x16 > b`` has 1 (the last ``b``).

Measured (benchmarks/RESULTS.md): before the reorganisation 6 and 16 by this rule (15 and 30
when the foundation and value reads count, the variant closest to the 12 and 27 an issue
reported); after it 3 and 6 (14 and 26 by that variant: the per-sensor pipeline still reads
settings, times its stages and reads geometry properties on the way).

Usage: ``python benchmarks/call_paths.py [--variants] [--keep DIR]``; the same script runs
on the layout before the reorganisation (``PYTHONPATH=old/src``).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gpuptc

PACKAGE = Path(gpuptc.__file__).resolve().parent
HELPERS = ("gpuptc.schema", "gpuptc.config")


@dataclass(frozen=True)
class Call:
    """One call event into a gpuptc frame."""

    thread: int
    module: str
    caller: str | None
    """The module of the innermost gpuptc frame below it on the stack, None if none."""
    qualname: str = ""
    """The called function's qualified name (``SensorGeometry.namps``)."""

    @property
    def reads_a_value(self) -> bool:
        """Whether the call is a property or a dunder method of a class: reading a value."""
        if "." not in self.qualname or "<locals>" in self.qualname:
            return False
        owner, name = self.qualname.rsplit(".", 1)
        if name.startswith("__") and name.endswith("__"):
            return True
        try:
            cls: Any = importlib.import_module(self.module)
            for part in owner.split("."):
                cls = getattr(cls, part)
            return isinstance(
                inspect.getattr_static(cls, name), property | functools.cached_property
            )
        except (AttributeError, ImportError):
            return False


class Tracer:
    """Records the gpuptc call events of every thread while it is active."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._modules: dict[str, str | None] = {}
        self._stacks: dict[int, list[str]] = {}
        self._lock = threading.Lock()

    def _module(self, filename: str) -> str | None:
        known = self._modules.get(filename, "")
        if known != "":
            return known
        module = None
        try:
            relative = Path(filename).resolve().relative_to(PACKAGE)
        except ValueError:
            pass
        else:
            parts = ["gpuptc", *relative.with_suffix("").parts]
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        self._modules[filename] = module
        return module

    def _profile(self, frame: Any, event: str, _arg: Any) -> None:
        if event not in ("call", "return"):
            return
        code = frame.f_code
        module = self._module(code.co_filename)
        if module is None or code.co_name == "<module>":
            return
        thread = threading.get_ident()
        stack = self._stacks.setdefault(thread, [])
        if event == "call":
            call = Call(thread, module, stack[-1] if stack else None, code.co_qualname)
            with self._lock:
                self.calls.append(call)
            stack.append(module)
        elif stack:
            stack.pop()

    def run(self, function: Callable[[], Any]) -> Any:
        """``function()``, traced."""
        threading.setprofile(self._profile)
        sys.setprofile(self._profile)
        try:
            return function()
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]


def _visits(modules: list[str]) -> list[str]:
    """Consecutive repeats collapsed."""
    return [m for k, m in enumerate(modules) if k == 0 or modules[k - 1] != m]


def _runs(visits: list[str]) -> list[tuple[list[str], int]]:
    """The visits as (block, times): at each place, the block of 1 to 6 visits repeated
    back to back that covers the most visits (the first such, from the left), else one visit.
    """
    runs, k = [], 0
    while k < len(visits):
        best = (1, 1)
        for width in range(1, 7):
            block = visits[k : k + width]
            times = 1
            while visits[k + times * width : k + (times + 1) * width] == block:
                times += 1
            if times > 1 and width * times > best[0] * best[1]:
                best = (width, times)
        width, times = best
        runs.append((visits[k : k + width], times))
        k += width * times
    return runs


def _once(visits: list[str]) -> list[str]:
    """Every repeated run kept once (a loop is one step), consecutive repeats collapsed."""
    return _visits([module for block, _ in _runs(visits) for module in block])


def _reentries(visits: list[str]) -> int:
    seen: set[str] = set()
    count = 0
    for module in visits:
        count += module in seen
        seen.add(module)
    return count


@dataclass(frozen=True)
class Rule:
    """A way to count: which calls are visits, and whether loops count once."""

    skip: tuple[str, ...] = ()
    """Modules (and their submodules) whose calls are left out."""
    entries: bool = True
    """Only calls from another module (else every call)."""
    loops_once: bool = True
    """A run repeated back to back counts once (else every repeat)."""
    values: bool = True
    """Reading a value (a property, a dunder method) counts as a visit (else not)."""

    def skipped(self, module: str) -> bool:
        return any(module == s or module.startswith(s + ".") for s in self.skip)

    def paths(self, calls: list[Call]) -> dict[int, list[str]]:
        """Each thread's visits."""
        threads: dict[int, list[str]] = {}
        for call in calls:
            if self.skipped(call.module) or (self.entries and call.module == call.caller):
                continue
            if not self.values and call.reads_a_value:
                continue
            threads.setdefault(call.thread, []).append(call.module)
        once = _once if self.loops_once else (lambda visits: visits)
        return {thread: once(_visits(modules)) for thread, modules in threads.items()}


DISPATCH = ("gpuptc.kernels", "gpuptc.backend")
FOUNDATION = ("gpuptc.settings", "gpuptc.errors", "gpuptc._shared", "gpuptc._timing")
VARIANTS = {
    "every call": Rule(entries=False, loops_once=False),
    "entries": Rule(loops_once=False),
    "entries, no schema/config": Rule(HELPERS, loops_once=False),
    "entries, no schema/config/kernels/backend": Rule(HELPERS + DISPATCH, loops_once=False),
    "entries, loops once": Rule(),
    "entries, loops once, no schema/config": Rule(HELPERS),
    "entries, loops once, no kernels/backend": Rule(DISPATCH),
    "entries, loops once, no schema/config/kernels/backend": Rule(HELPERS + DISPATCH),
    "the rule: stages only (no foundation, no dispatch, no value reads), loops once": Rule(
        HELPERS + DISPATCH + FOUNDATION, values=False
    ),
}
RULE = VARIANTS["the rule: stages only (no foundation, no dispatch, no value reads), loops once"]


def _short(module: str) -> str:
    return module.removeprefix("gpuptc.")


def _compressed(visits: list[str]) -> str:
    """The visits, a repeated run written once with its count: ``(a > b) x16``."""
    out = []
    for block, times in _runs(visits):
        names = " > ".join(_short(m) for m in block)
        out.append(f"({names}) x{times}" if times > 1 else names)
    return " > ".join(out)


def report(title: str, calls: list[Call], variants: bool) -> int:
    """Print one path under the rule (and every variant); its re-entries."""
    main = threading.main_thread().ident
    shown = Rule(RULE.skip, RULE.entries, loops_once=False, values=RULE.values)
    threads = shown.paths(calls)
    count = sum(_reentries(_once(v)) for v in threads.values())
    print(f"\n{title}: {count} re-entries (summed over {len(threads)} thread(s))")
    for thread, visits in threads.items():
        label = "main thread" if thread == main else f"thread {thread}"
        print(f"  {label}: {_reentries(_once(visits))} re-entries; {len(visits)} visits:")
        print(f"    {_compressed(visits)}")
    entries = Counter(m for visits in threads.values() for m in visits)
    print("  visits per module (loops not collapsed):")
    for module, n in entries.most_common():
        print(f"    {n:4d}  {module}")
    if variants:
        print("  re-entries by variant (all threads | main thread only):")
        for name, rule in VARIANTS.items():
            paths = rule.paths(calls)
            total = sum(_reentries(v) for v in paths.values())
            print(f"    {total:5d} | {_reentries(paths.get(main, [])):5d}  {name}")
    return count


def _process_sensor() -> tuple[Callable[..., Any], type]:
    """``process_sensor`` and ``SensorTask`` of whichever layout this is."""
    for name in ("gpuptc.running.sensor", "gpuptc.running.schedulers", "gpuptc.distributed"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        function = getattr(module, "process_sensor", None)
        task = getattr(module, "SensorTask", None)
        if task is None:
            task = importlib.import_module("gpuptc.running.schedulers").SensorTask
        if function is not None:
            print(f"process_sensor from {name}")
            return function, task
    raise ImportError("no process_sensor in this layout")


def _models() -> tuple[str, ...]:
    for name in ("gpuptc.fitting.ptc", "gpuptc.ptc"):
        try:
            return tuple(importlib.import_module(name).MODELS)
        except ImportError:
            continue
    raise ImportError("no MODELS in this layout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", action="store_true", help="every counting rule too")
    parser.add_argument("--keep", type=Path, help="simulate into (and reuse) this directory")
    args = parser.parse_args()
    from gpuptc.config import get_preset

    with tempfile.TemporaryDirectory() as tmp:
        directory = args.keep or Path(tmp) / "sensor"
        config = gpuptc.SimulationConfig(vendor="e2v", size="small", pairs=1, seed=11)
        gpuptc.simulate(directory, config, reuse=args.keep is not None)
        manifest = gpuptc.ingest(directory)
        print(f"gpuptc at {PACKAGE}")

        tracer = Tracer()
        pairs, _ = tracer.run(lambda: gpuptc.measure(manifest, "cp_pipe", "numpy"))
        assert len(pairs), "no pair measured"
        a = report("(a) one pair, manifest -> pairs table", tracer.calls, args.variants)

        process_sensor, sensor_task = _process_sensor()
        sensor = str(manifest["sensor"].dropna().iloc[0])
        task = sensor_task(
            sensor,
            manifest[manifest["sensor"] == sensor],
            get_preset("cp_pipe"),
            "numpy",
            _models(),
            None,
            figures=False,
        )
        tracer = Tracer()
        result = tracer.run(lambda: process_sensor(task))
        fields = sorted(result) if isinstance(result, dict) else sorted(vars(result))
        print(f"\nsensor task result ({type(result).__name__}): {', '.join(fields)}")
        b = report("(b) one sensor task -> its tables", tracer.calls, args.variants)
        print(f"\nre-entries: (a) {a}, (b) {b}")


if __name__ == "__main__":
    main()

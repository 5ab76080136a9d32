"""Many sensors: Dask fan-out, per-sensor results, resuming after interruptions."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import gpuptc
import gpuptc.running.sensor
from gpuptc.cli import main
from gpuptc.simulation.simulate import simulate

RUN = ["--backend", "numpy", "--no-report", "--models", "expapprox,rhl,quadratic", "-q"]


@pytest.fixture(scope="module")
def three_sensors(tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    for seed, vendor in ((61, "e2v"), (62, "itl"), (63, "e2v")):
        simulate(root / f"s{seed}", vendor=vendor, size="small", pairs=6, biases=0, seed=seed)
    return root


def _tables(out):
    tables = {}
    for name in ("pairs", "covariances", "ptc"):
        frame = pd.read_parquet(out / f"{name}.parquet")
        keys = [c for c in ("sensor", "pair", "amp", "model", "i", "j") if c in frame]
        tables[name] = frame.sort_values(keys).reset_index(drop=True)
    return tables


def _run_on(client, inputs, out, on_sensor=None):
    return gpuptc.run(
        [inputs],
        out,
        backend="numpy",
        report=False,
        models=["expapprox", "rhl", "quadratic"],
        client=client,
        on_sensor=on_sensor,
    )


def _same(a, b):
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_dtype=False)


@pytest.fixture(scope="module")
def serial(three_sensors, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "out"
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 0
    return out


def test_local_cluster_matches_serial(three_sensors, serial, tmp_path):
    out = tmp_path / "cluster"
    assert main(["run", str(three_sensors), "--out", str(out), "--workers", "2", *RUN]) == 0
    _same(_tables(serial), _tables(out))
    assert sorted(p.name for p in (out / "sensors").iterdir()) == sorted(
        p.name for p in (serial / "sensors").iterdir()
    )


@pytest.fixture(scope="module")
def one_worker_cluster():
    """A cluster of one worker, started once for the tests that bring their own cluster
    and leave its worker alive (a start costs about 3 s: the worker imports gpuptc)."""
    from distributed import LocalCluster

    # its HTTP server on a port of its own: the clusters the other tests start meanwhile
    # take the default one
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster:
        yield cluster


def test_existing_client_is_reused(three_sensors, serial, one_worker_cluster, tmp_path):
    from distributed import Client

    held = []

    def on_sensor(sensor, done, total, pairs_done, pairs_total):
        if done == total:  # every result fetched, the run not yet over
            held.extend(_held_until(client, lambda keys: not keys))

    with Client(one_worker_cluster) as client:
        result = _run_on(client, three_sensors, tmp_path / "out", on_sensor=on_sensor)
    assert result.exit_code == 0
    _same(_tables(serial), _tables(tmp_path / "out"))
    assert held == [], "the workers still hold results the run has fetched"


def _held_until(client, done, seconds=10.0):
    """The cluster's gpuptc task keys once ``done(keys)`` or ``seconds`` have passed (the
    client tells the scheduler it released a result a moment after it does)."""
    deadline = time.monotonic() + seconds
    while True:
        keys = client.run_on_scheduler(
            lambda dask_scheduler: sorted(k for k in dask_scheduler.tasks if "gpuptc-" in str(k))
        )
        if done(keys) or time.monotonic() > deadline:
            return keys
        time.sleep(0.05)


def test_resume_reuses_complete_sensors(three_sensors, serial, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(serial, out)  # a finished run of the same job
    first = _tables(out)
    calls = []
    original = gpuptc.running.schedulers.process_sensor

    def counting(task, progress=None):
        calls.append(task.sensor)
        return original(task, progress)

    monkeypatch.setattr(gpuptc.running.schedulers, "process_sensor", counting)
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 0
    assert calls == []
    _same(first, _tables(out))
    assert main(["run", str(three_sensors), "--out", str(out), "--force", *RUN]) == 0
    assert len(calls) == 3
    calls.clear()
    assert main(["run", str(three_sensors), "--out", str(out), "--cov-size", "3", *RUN]) == 0
    assert len(calls) == 3  # another configuration is another result
    calls.clear()
    monkeypatch.setenv("GPUPTC_THREADS", "1")  # speed only: the stored sensors stand
    assert main(["run", str(three_sensors), "--out", str(out), "--cov-size", "3", *RUN]) == 0
    assert calls == []
    monkeypatch.setenv("GPUPTC_NUMBA", "0")  # other kernels, other last digits: recomputed
    assert main(["run", str(three_sensors), "--out", str(out), "--cov-size", "3", *RUN]) == 0
    assert len(calls) == 3


def test_a_failing_sensor_does_not_stop_the_others(three_sensors, tmp_path, monkeypatch):
    original = gpuptc.running.sensor.measure_sensor

    def flaky(sensor, *args, **kwargs):
        if sensor.startswith("ITL"):
            raise RuntimeError("the sensor's disk went away")
        return original(sensor, *args, **kwargs)

    monkeypatch.setattr(gpuptc.running.sensor, "measure_sensor", flaky)
    out = tmp_path / "out"
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 3
    rejected = pd.read_csv(out / "rejected.csv")
    assert rejected.reason.str.contains(
        "sensor failed: RuntimeError: the sensor's disk went away"
    ).any()
    assert pd.read_parquet(out / "ptc.parquet").sensor.nunique() == 2


_PAUSE_AFTER_FIRST_SENSOR = """
import pathlib, signal, sys, time
# Ctrl-C as at a terminal, even where this test runs with SIGINT ignored (a background job)
signal.signal(signal.SIGINT, signal.default_int_handler)
import gpuptc.running.schedulers as distributed
from gpuptc.cli import main
save = distributed.SensorStore.save
def save_then_wait(self, *args, **kwargs):
    save(self, *args, **kwargs)
    pathlib.Path(sys.argv[1]).write_text("one sensor stored")
    time.sleep(600)
distributed.SensorStore.save = save_then_wait
sys.exit(main(sys.argv[2:]))
"""
"""``python -c`` program: ``gpuptc`` that stops, mid-run, once its first sensor is stored
(a barrier: the test interrupts it there for certain, whatever the machine's speed)."""


def _paused_run(arguments, marker, **options):
    command = [sys.executable, "-c", _PAUSE_AFTER_FIRST_SENSOR, str(marker), *arguments]
    process = subprocess.Popen(command, **options)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert process.poll() is None, "the run ended before storing a sensor"
        assert time.monotonic() < deadline, "no sensor stored within 120 s"
        time.sleep(0.02)
    return process


def test_kill_minus_nine_then_resume(three_sensors, serial, tmp_path):
    out = tmp_path / "out"
    arguments = ["run", str(three_sensors), "--out", str(out), *RUN]
    process = _paused_run(
        arguments, tmp_path / "stored", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (out / "run.json").exists()
    assert len(list((out / "sensors").glob("*/done.json"))) == 1
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 0
    _same(_tables(serial), _tables(out))
    assert not list(out.glob(".gpuptc-*")) and not list((out / "sensors").glob(".*"))


def _reader_processes_of(pid):
    """Reader processes (``gpuptc.raws._read_worker``) whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except OSError:
            continue
        if parent == pid and b"gpuptc.raws._read_worker" in command:
            found.append(int(entry))
    return found


def test_ctrl_c_with_reader_processes(three_sensors, serial, tmp_path):
    """SIGINT to the terminal's process group: exit 130, no traceback, nothing left over."""
    out = tmp_path / "out"
    process = _paused_run(
        ["run", str(three_sensors), "--out", str(out), *RUN],
        tmp_path / "stored",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=dict(os.environ, GPUPTC_READERS="2"),
    )
    readers = _reader_processes_of(process.pid)
    os.killpg(process.pid, signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # never leave it running into other tests
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert readers, "the run read in threads, not in reader processes"
    assert process.returncode == 130, output
    assert "Traceback" not in output
    assert "Interrupted" in output and (out / "interrupted.json").exists()
    for pid in readers:
        assert (
            not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]
        )
    assert not glob.glob(f"/dev/shm/gpuptc-{process.pid}-*")
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 0
    _same(_tables(serial), _tables(out))


def _hold_sensors_until_released(directory):
    """Run on each worker: each sensor task says it started, then waits for ``release``."""
    import pathlib

    import gpuptc.running.sensor as pipeline

    process_sensor = pipeline.process_sensor

    def held(task, *args, **kwargs):
        root = pathlib.Path(directory)
        (root / f"started-{os.getpid()}").write_text(task.sensor)
        deadline = time.monotonic() + 120
        while not (root / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return process_sensor(task, *args, **kwargs)

    pipeline.process_sensor = held


def test_a_lost_worker_is_retried(three_sensors, serial, tmp_path):
    """A worker is killed while it is inside a sensor task (a barrier holds the task until
    the kill); the sensor is retried elsewhere and the results are those of a serial run."""
    import threading

    from distributed import Client, LocalCluster

    barrier = tmp_path / "barrier"
    barrier.mkdir()
    killed = []
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.run(_hold_sensors_until_released, str(barrier))

        def kill_a_busy_worker():
            deadline = time.monotonic() + 120
            while not list(barrier.glob("started-*")) and time.monotonic() < deadline:
                time.sleep(0.01)
            started = sorted(barrier.glob("started-*"))
            if started:
                pid = int(started[0].name.split("-")[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            (barrier / "release").write_text("go")

        killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
        killer.start()
        result = _run_on(client, three_sensors, tmp_path / "out")
        killer.join()
    assert killed, "no sensor task started"
    assert result.exit_code == 0
    _same(_tables(serial), _tables(tmp_path / "out"))


def test_ctrl_c_marks_partial_results_and_resumes(
    three_sensors, serial, tmp_path, monkeypatch, capsys
):
    original = gpuptc.running.schedulers.process_sensor
    seen = []

    def interrupted(task, progress=None):
        seen.append(task.sensor)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return original(task, progress)

    monkeypatch.setattr(gpuptc.running.schedulers, "process_sensor", interrupted)
    out = tmp_path / "out"
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    note = json.loads((out / "interrupted.json").read_text())
    assert note["partial"] and note["finished_sensors"] == [seen[0]]
    assert not (out / "ptc.parquet").exists()
    monkeypatch.setattr(gpuptc.running.schedulers, "process_sensor", original)
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 0
    assert not (out / "interrupted.json").exists()
    _same(_tables(serial), _tables(out))


def test_existing_scheduler_address(three_sensors, serial, one_worker_cluster, tmp_path):
    out = tmp_path / "out"
    address = one_worker_cluster.scheduler_address
    assert main(["run", str(three_sensors), "--out", str(out), "--scheduler", address, *RUN]) == 0
    _same(_tables(serial), _tables(out))


def test_local_workers_share_the_cores(monkeypatch):
    from gpuptc.running.schedulers import _share_of_cores

    monkeypatch.delenv("GPUPTC_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert _share_of_cores(4) == {"GPUPTC_THREADS": "4"}
    assert _share_of_cores(32) == {"GPUPTC_THREADS": "1"}
    monkeypatch.setenv("GPUPTC_THREADS", "3")
    assert _share_of_cores(4) == {}


def test_local_workers_keep_glibc_allocation_defaults():
    """Dask's MALLOC_TRIM_THRESHOLD_ made every large array a fresh mapping (1.6x slower)."""
    from distributed import Client, LocalCluster

    from gpuptc.running.schedulers import _glibc_allocation

    with (
        _glibc_allocation(),
        LocalCluster(n_workers=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        settings = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert list(settings.values()) == [None]


def test_two_local_runs_side_by_side_do_not_collide():
    """Each local cluster serves its dashboard on a port of its own: a second run on the
    same node (or two test processes) starts without a warning that a port is taken."""
    from gpuptc.running.schedulers import dask_client

    with dask_client(1, None) as first, dask_client(1, None) as second:
        assert first.dashboard_link != second.dashboard_link

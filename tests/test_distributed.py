"""Many sensors: Dask fan-out, per-sensor results, resuming after interruptions."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import gpuptc
from gpuptc.cli import main
from gpuptc.simulate import simulate

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


def _run_on(client, inputs, out):
    return gpuptc.run(
        [inputs],
        out,
        backend="numpy",
        report=False,
        models=["expapprox", "rhl", "quadratic"],
        client=client,
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


def test_existing_client_is_reused(three_sensors, serial, tmp_path):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        result = _run_on(client, three_sensors, tmp_path / "out")
    assert result.exit_code == 0
    _same(_tables(serial), _tables(tmp_path / "out"))


def test_resume_reuses_complete_sensors(three_sensors, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 0
    first = _tables(out)
    calls = []
    original = gpuptc.distributed.process_sensor

    def counting(task, progress=None):
        calls.append(task.sensor)
        return original(task, progress)

    monkeypatch.setattr(gpuptc.distributed, "process_sensor", counting)
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 0
    assert calls == []
    _same(first, _tables(out))
    assert main(["run", str(three_sensors), "--out", str(out), "--force", *RUN]) == 0
    assert len(calls) == 3
    calls.clear()
    assert main(["run", str(three_sensors), "--out", str(out), "--cov-size", "3", *RUN]) == 0
    assert len(calls) == 3  # another configuration is another result


def test_a_failing_sensor_does_not_stop_the_others(three_sensors, tmp_path, monkeypatch):
    original = gpuptc.distributed.measure

    def flaky(manifest, *args, sensors=None, **kwargs):
        if sensors and sensors[0].startswith("ITL"):
            raise RuntimeError("the sensor's disk went away")
        return original(manifest, *args, sensors=sensors, **kwargs)

    monkeypatch.setattr(gpuptc.distributed, "measure", flaky)
    out = tmp_path / "out"
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 3
    rejected = pd.read_csv(out / "rejected.csv")
    assert rejected.reason.str.contains(
        "sensor failed: RuntimeError: the sensor's disk went away"
    ).any()
    assert pd.read_parquet(out / "ptc.parquet").sensor.nunique() == 2


def test_kill_minus_nine_then_resume(three_sensors, serial, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gpuptc", "run", str(three_sensors), "--out", str(out), *RUN]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if list((out / "sensors").glob("*/done.json")) if (out / "sensors").exists() else []:
            break
        time.sleep(0.05)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "run.json").exists() or process.returncode == 0
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 0
    _same(_tables(serial), _tables(out))
    assert not list(out.glob(".gpuptc-*")) and not list((out / "sensors").glob(".*"))


def _reader_processes_of(pid):
    """Reader processes (``gpuptc.io._read_worker``) whose parent is ``pid`` (Linux /proc)."""
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
        if parent == pid and b"gpuptc.io._read_worker" in command:
            found.append(int(entry))
    return found


def test_ctrl_c_with_reader_processes(three_sensors, serial, tmp_path):
    """SIGINT to the terminal's process group: exit 130, no traceback, nothing left over."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "gpuptc", "run", str(three_sensors), "--out", str(out), *RUN]
    environment = dict(os.environ, GPUPTC_READERS="2")
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=environment,
    )
    readers = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        readers = readers or _reader_processes_of(process.pid)
        if readers and list(out.glob("sensors/*/done.json")):
            os.killpg(process.pid, signal.SIGINT)
            break
        time.sleep(0.02)
    output, _ = process.communicate(timeout=120)
    assert readers, "the run read in threads, not in reader processes"
    assert process.returncode in (0, 130), output
    assert "Traceback" not in output
    if process.returncode == 130:
        assert "Interrupted" in output and (out / "interrupted.json").exists()
    for pid in readers:
        assert (
            not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]
        )
    assert not glob.glob(f"/dev/shm/gpuptc-{process.pid}-*")
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 0
    _same(_tables(serial), _tables(out))


def test_a_lost_worker_is_retried(three_sensors, serial, tmp_path):
    import threading

    from distributed import Client, LocalCluster

    killed = []
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):

        def kill_a_busy_worker():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                busy = [address for address, keys in client.processing().items() if keys]
                if busy:
                    try:
                        client.run(os._exit, 1, workers=[busy[0]], wait=False)
                    except Exception:
                        pass
                    killed.append(busy[0])
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
        killer.start()
        result = _run_on(client, three_sensors, tmp_path / "out")
        killer.join()
    assert killed, "no worker was busy to be killed"
    assert result.exit_code == 0
    _same(_tables(serial), _tables(tmp_path / "out"))


def test_ctrl_c_marks_partial_results_and_resumes(
    three_sensors, serial, tmp_path, monkeypatch, capsys
):
    original = gpuptc.distributed.process_sensor
    seen = []

    def interrupted(task, progress=None):
        seen.append(task.sensor)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return original(task, progress)

    monkeypatch.setattr(gpuptc.distributed, "process_sensor", interrupted)
    out = tmp_path / "out"
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    note = json.loads((out / "interrupted.json").read_text())
    assert note["partial"] and note["finished_sensors"] == [seen[0]]
    assert not (out / "ptc.parquet").exists()
    monkeypatch.setattr(gpuptc.distributed, "process_sensor", original)
    assert main(["run", str(three_sensors), "--out", str(out), *RUN]) == 0
    assert not (out / "interrupted.json").exists()
    _same(_tables(serial), _tables(out))


def test_existing_scheduler_address(three_sensors, serial, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        out = tmp_path / "out"
        assert (
            main(
                [
                    "run",
                    str(three_sensors),
                    "--out",
                    str(out),
                    "--scheduler",
                    cluster.scheduler_address,
                    *RUN,
                ]
            )
            == 0
        )
    _same(_tables(serial), _tables(out))


def test_local_workers_share_the_cores(monkeypatch):
    from gpuptc.distributed import _share_of_cores

    monkeypatch.delenv("GPUPTC_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert _share_of_cores(4) == {"GPUPTC_THREADS": "4"}
    assert _share_of_cores(32) == {"GPUPTC_THREADS": "1"}
    monkeypatch.setenv("GPUPTC_THREADS", "3")
    assert _share_of_cores(4) == {}


def test_local_workers_keep_glibc_allocation_defaults():
    """Dask's MALLOC_TRIM_THRESHOLD_ made every large array a fresh mapping (1.6x slower)."""
    from distributed import Client, LocalCluster

    from gpuptc.distributed import _glibc_allocation

    with (
        _glibc_allocation(),
        LocalCluster(n_workers=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        settings = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert list(settings.values()) == [None]

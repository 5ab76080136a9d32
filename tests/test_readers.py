"""Reading raw files into host buffers in threads and in worker processes."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import gpuptc
from gpuptc.raws import readers as readers_module
from gpuptc.raws.readers import FileReaders, is_compressed, reader_processes


def _flats(sensor):
    manifest = gpuptc.ingest([sensor.directory])
    paired = manifest[manifest["status"] == "paired"].sort_values(["pair", "member"])
    return list(paired["path"])


@pytest.mark.parametrize("processes", [0, 2])
def test_readers_fill_buffers_as_read_raw_does(small_itl, processes):
    paths = _flats(small_itl)[:4]
    first = gpuptc.read_raw(paths[0])
    shape = (2, 2, first.geometry.namps, *first.geometry.segment_shape)
    with FileReaders(shape, processes=processes) as readers:
        futures = [readers.submit(1, k // 2, k % 2, path) for k, path in enumerate(paths)]
        outcomes = [future.result() for future in futures]
        buffer = np.array(readers.buffers[1])
        mapped = list(readers._files)
        assert len(mapped) == (2 if processes else 0)
        assert all(os.path.exists(name) for name in mapped)
    assert outcomes == [(first.geometry.layout, None)] * 4
    for k, path in enumerate(paths):
        np.testing.assert_array_equal(buffer[k // 2, k % 2], gpuptc.read_raw(path).pixels)
    assert not any(os.path.exists(name) for name in mapped)


def test_an_unreadable_file_is_a_reason_not_an_exception(small_itl, tmp_path):
    junk = tmp_path / "junk.fits"
    junk.write_text("SIMPLE  =  not really")
    first = gpuptc.read_raw(_flats(small_itl)[0])
    shape = (1, 2, first.geometry.namps, *first.geometry.segment_shape)
    with FileReaders(shape, processes=1) as readers:
        layout, reason = readers.submit(0, 0, 0, str(junk)).result()
    assert layout is None and "FITS" in reason


def test_a_reader_process_that_dies_is_replaced(small_itl, tmp_path):
    paths = _flats(small_itl)
    first = gpuptc.read_raw(paths[0])
    shape = (1, 2, first.geometry.namps, *first.geometry.segment_shape)
    stuck = tmp_path / "stuck.fits"
    os.mkfifo(stuck)
    with FileReaders(shape, processes=1) as readers:
        assert readers.submit(0, 0, 0, paths[0]).result()[1] is None
        pending = readers.submit(0, 0, 1, str(stuck))
        writer = _open_when_read(stuck)  # the worker is now waiting for bytes that never come
        try:
            killed = list(readers_module._workers._workers)
            for worker in killed:
                os.kill(worker.process.pid, signal.SIGKILL)
            for worker in killed:
                worker.process.wait(timeout=60)
            layout, reason = pending.result(timeout=60)
        finally:
            os.close(writer)
        assert layout is None and "died" in reason
        assert readers.submit(0, 0, 1, paths[1]).result() == (first.geometry.layout, None)


def _open_when_read(fifo, timeout=60.0):
    """Open ``fifo`` for writing as soon as some process has opened it for reading."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_measure_reads_the_same_in_processes_and_threads(small_itl, monkeypatch):
    manifest = gpuptc.ingest([small_itl.directory])
    results = {}
    for setting in ("0", "2"):
        monkeypatch.setenv("GPUPTC_READERS", setting)
        results[setting] = gpuptc.measure(manifest, preset="cp_pipe", cov_size=3)
    for mine, theirs in zip(results["0"], results["2"], strict=True):
        pd.testing.assert_frame_equal(mine, theirs)
    assert not glob.glob(os.path.join("/dev/shm", f"gpuptc-{os.getpid()}-*"))


def test_only_large_compressed_files_go_to_processes(small_itl, small_e2v, monkeypatch):
    monkeypatch.delenv("GPUPTC_READERS", raising=False)
    rice = _flats(small_itl)[0]
    plain = _flats(small_e2v)[0]
    full_size = 16 * 2048 * 576 * 4
    small = gpuptc.read_raw(rice).pixels.nbytes
    assert is_compressed(rice, small) and not is_compressed(plain, small)
    assert reader_processes(True, files_per_batch=2, pixel_bytes=full_size) >= 1
    assert reader_processes(True, files_per_batch=2, pixel_bytes=small) == 0
    assert reader_processes(False, files_per_batch=2, pixel_bytes=full_size) == 0
    monkeypatch.setenv("GPUPTC_READERS", "3")
    assert reader_processes(False, files_per_batch=2, pixel_bytes=small) == 3


def test_a_setting_that_is_not_a_number_is_named(monkeypatch):
    monkeypatch.setenv("GPUPTC_READERS", "two")
    with pytest.raises(ValueError, match="GPUPTC_READERS must be a whole number, not 'two'"):
        reader_processes(True, files_per_batch=2, pixel_bytes=2**30)


def test_stray_output_of_a_reader_does_not_reach_the_replies():
    script = (
        "from gpuptc.raws._read_worker import _replies_apart\n"
        "replies = _replies_apart()\n"
        "print('a library talking')\n"
        "replies.write('{}\\n'); replies.flush()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "{}\n"
    assert "a library talking" in done.stderr


def test_measure_reads_in_threads_when_processes_cannot_start(small_itl, monkeypatch, caplog):
    manifest = gpuptc.ingest([small_itl.directory])
    monkeypatch.setenv("GPUPTC_READERS", "0")
    expected = gpuptc.measure(manifest, preset="cp_pipe", cov_size=0)[0]
    readers_module.stop_reader_processes()

    def refuse(*args, **kwargs):
        raise OSError("no more processes")

    monkeypatch.setattr(readers_module.subprocess, "Popen", refuse)
    monkeypatch.setenv("GPUPTC_READERS", "2")
    got = gpuptc.measure(manifest, preset="cp_pipe", cov_size=0)[0]
    pd.testing.assert_frame_equal(got, expected)
    assert "cannot start reader processes (no more processes); reading in threads" in caplog.text
    assert not glob.glob(os.path.join("/dev/shm", f"gpuptc-{os.getpid()}-*"))

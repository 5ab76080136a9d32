"""Batches of flat pairs read ahead into two host buffers while the other is measured.

On CuPy, RICE_1 raws that gpuptc decodes are read as their compressed tiles instead, packed
into pinned memory, copied to the device and decoded there (``GPUPTC_GPU_RICE=0``: decoded
on the host like any other file).

:func:`read_batches` yields, batch after batch, the pairs that could be read (moved to
the front of the buffer, in order), their pixels copied to the backend's device, and
the rejections of the pairs that could not. While the caller measures batch k, batch
k + 1 is read into the other buffer.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gpuptc.backend import Backend
from gpuptc.inputs.manifest import PairFiles
from gpuptc.inputs.remote import InputFiles
from gpuptc.raws.exposure import RawReadError, native_reason, read_tiles
from gpuptc.raws.geometry import SensorGeometry
from gpuptc.raws.readers import FileReaders, is_compressed, reader_processes
from gpuptc.raws.rice import RiceError
from gpuptc.raws.rice_gpu import FileTiles, decode_on_device, pack
from gpuptc.schema import Stage, rejected_row

__all__ = ["Batch", "read_batches"]

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One batch of pairs ready to measure.

    Attributes
    ----------
    pairs : list of PairFiles
        The pairs read, in the order of the stack.
    raw : array or None
        ``(len(pairs), 2, amps, naxis2, naxis1)`` on the backend's device (None when no
        pair of the batch could be read).
    rejected : list of dict
        :func:`gpuptc.schema.rejected_row` rows of the pairs that could not be read.
    """

    pairs: list[PairFiles]
    raw: Any
    rejected: list[dict[str, Any]]


def _submit(
    readers: FileReaders, files: InputFiles, where: tuple[int, int, int], path: str
) -> Future[tuple[str | None, str | None]]:
    """Read one file into its place of a buffer (``(buffer, slot, member)``), once local."""
    try:
        local = files.local(path)
    except RawReadError as exc:
        failed: Future[tuple[str | None, str | None]] = Future()
        failed.set_result((None, exc.reason))
        return failed
    return readers.submit(*where, local)


def _read_batch(
    sensor: str,
    chunk: list[PairFiles],
    readers: FileReaders,
    index: int,
    geometry: SensorGeometry,
    files: InputFiles,
) -> tuple[list[PairFiles], list[dict[str, Any]]]:
    """Read a batch of pairs into the front of buffer ``index``; unreadable pairs are listed.

    Every file of the batch is read at once by ``readers`` (threads, or processes for
    compressed raws), each as soon as ``files`` has it locally, and released once read.
    """
    buffer = readers.buffers[index]
    futures = [
        [
            _submit(readers, files, (index, slot, member), path)
            for member, path in enumerate(pair.paths)
        ]
        for slot, pair in enumerate(chunk)
    ]
    kept: list[PairFiles] = []
    rejected: list[dict[str, Any]] = []
    for slot, (pair, reads) in enumerate(zip(chunk, futures, strict=True)):
        problem = None
        for path, future in zip(pair.paths, reads, strict=True):
            layout, reason = future.result()
            files.release([path])
            if reason is None and layout != geometry.layout:
                reason = f"layout {layout} differs from {geometry.layout}"
            if reason is not None and problem is None:
                problem = (path, reason)
        if problem is not None:
            rejected.append(
                rejected_row(
                    problem[1], stage=Stage.READ, path=problem[0], sensor=sensor, pair=pair.pair
                )
            )
            continue
        if len(kept) != slot:
            buffer[len(kept)] = buffer[slot]
        kept.append(pair)
    return kept, rejected


def _cfitsio_reason(path: str) -> str | None:
    """Why cfitsio decompresses this file (None: gpuptc decodes it in threads)."""
    try:
        return native_reason(path)
    except RawReadError as exc:  # reported when the file itself is read
        return exc.reason


def _how_read(processes: int, fallback: str | None) -> str:
    if fallback is None:
        return "RICE_1 decoded by gpuptc in threads"
    where = f"{processes} processes" if processes else "threads"
    return f"decompressed by cfitsio in {where} ({fallback})"


def _file_readers(
    first: str, geometry: SensorGeometry, shape: tuple[int, ...], backend: Backend
) -> FileReaders:
    """Readers for a sensor whose files are like ``first``: threads, or reader processes.

    Processes only for raws cfitsio decompresses: gpuptc's RICE_1 decoder and the copy
    of uncompressed pixels release the GIL; cfitsio (gzip files, other compressions)
    does not.
    """
    pixel_bytes = geometry.namps * math.prod(geometry.segment_shape) * 4
    compressed = is_compressed(first, pixel_bytes)
    fallback = _cfitsio_reason(first) if compressed else None
    processes = reader_processes(
        fallback is not None, files_per_batch=2 * shape[0], pixel_bytes=pixel_bytes
    )
    threads = min(os.cpu_count() or 1, 2 * shape[0])
    if compressed:
        log.debug("%s: %s", first, _how_read(processes, fallback))
    if processes:
        try:
            return FileReaders(shape, processes=processes)
        except OSError as exc:
            log.warning("cannot start reader processes (%s); reading in threads", exc)
    return FileReaders(shape, threads=threads, allocate=backend.host_buffer)


def read_batches(
    sensor: str,
    pairs: list[PairFiles],
    geometry: SensorGeometry,
    batch: int,
    backend: Backend,
    files: InputFiles | None = None,
) -> Iterator[Batch]:
    """Read ``pairs`` in batches of ``batch``, one batch ahead of the caller.

    Parameters
    ----------
    sensor : str
        For the rejections.
    pairs : list of PairFiles
        The sensor's pairs, in order.
    geometry : SensorGeometry
        Layout every file must have (others are rejected).
    batch : int
        Pairs per batch.
    backend : Backend
        Where the pixels go (its host buffers are pinned on a GPU).
    files : InputFiles, optional
        Gives each file's local path (remote raws fetched ahead); every file is
        released once read. Default: the paths as they are.

    Yields
    ------
    Batch
        The next batch; its device array stays valid until the next one is asked for.
    """
    files = files or InputFiles(())
    shape = (batch, 2, geometry.namps, *geometry.segment_shape)
    chunks = [pairs[i : i + batch] for i in range(0, len(pairs), batch)]
    first = _first_local(pairs, files)
    if first is not None and _decoded_on_device(first, geometry, backend):
        yield from _device_decoded_batches(sensor, chunks, geometry, backend, files)
        return
    with (
        _file_readers(first or pairs[0].file1, geometry, shape, backend) as readers,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpuptc-read") as reader,
    ):
        pending = reader.submit(_read_batch, sensor, chunks[0], readers, 0, geometry, files)
        for index in range(len(chunks)):
            kept, rejected = pending.result()
            buffer = readers.buffers[index % 2]
            raw = backend.asarray(buffer[: len(kept)]) if kept else None
            if index + 1 < len(chunks):
                # the other buffer's last copy finished when its results came back
                pending = reader.submit(
                    _read_batch,
                    sensor,
                    chunks[index + 1],
                    readers,
                    (index + 1) % 2,
                    geometry,
                    files,
                )
            yield Batch(kept, raw, rejected)


def _first_local(pairs: list[PairFiles], files: InputFiles) -> str | None:
    """The local path of the sensor's first flat (what its reading is chosen by)."""
    try:
        return files.local(pairs[0].file1)
    except RawReadError:
        return None


def _decoded_on_device(first: str, geometry: SensorGeometry, backend: Backend) -> bool:
    """Whether this sensor's RICE_1 tiles cross the bus compressed and are decoded there."""
    if not backend.decodes_rice:
        return False
    pixel_bytes = geometry.namps * math.prod(geometry.segment_shape) * 4
    return is_compressed(first, pixel_bytes) and _cfitsio_reason(first) is None


def _tiles_of(path: str, files: InputFiles) -> tuple[FileTiles | None, str | None, str | None]:
    """``(tiles, None, layout)`` of a file, or ``(None, reason, None)``; the file released."""
    try:
        tiles, geometry = read_tiles(files.local(path))
    except RawReadError as exc:
        return None, exc.reason, None
    finally:
        files.release([path])
    return tiles, None, geometry.layout


def _read_tiles_batch(
    sensor: str,
    chunk: list[PairFiles],
    threads: ThreadPoolExecutor,
    geometry: SensorGeometry,
    files: InputFiles,
) -> tuple[list[PairFiles], list[dict[str, Any]], list[FileTiles]]:
    """The compressed tiles of a batch's files, read in threads; unreadable pairs listed."""
    futures = [[threads.submit(_tiles_of, path, files) for path in pair.paths] for pair in chunk]
    kept: list[PairFiles] = []
    rejected: list[dict[str, Any]] = []
    tiles: list[FileTiles] = []
    for pair, reads in zip(chunk, futures, strict=True):
        found, problem = [], None
        for path, future in zip(pair.paths, reads, strict=True):
            read, reason, layout = future.result()
            if reason is None and layout != geometry.layout:
                reason = f"layout {layout} differs from {geometry.layout}"
            if reason is not None and problem is None:
                problem = (path, reason)
            found.append(read)
        if problem is not None:
            rejected.append(
                rejected_row(
                    problem[1], stage=Stage.READ, path=problem[0], sensor=sensor, pair=pair.pair
                )
            )
            continue
        kept.append(pair)
        tiles.extend(found)
    return kept, rejected, tiles


def _on_device(
    sensor: str,
    read: tuple[list[PairFiles], list[dict[str, Any]], list[FileTiles]],
    geometry: SensorGeometry,
    backend: Backend,
    files: InputFiles,
) -> Batch:
    """One batch's tiles packed into pinned memory, copied and decoded on the device.

    A corrupt tile (found by the kernel) sends the batch to the CPU decoder, which rejects
    the pair with the bad file and reads the others (remote ones fetched again).
    """
    kept, rejected, tiles = read
    if not kept:
        return Batch(kept, None, rejected)
    per_file = geometry.namps * math.prod(geometry.segment_shape)

    def pinned(nbytes: int) -> Any:
        return backend.host_buffer(((nbytes + 3) // 4,)).view("uint8")[:nbytes]

    packed = pack(tiles, [k * per_file for k in range(len(tiles))], allocate=pinned)
    device = backend.native
    raw = device.empty((len(kept), 2, geometry.namps, *geometry.segment_shape), dtype="float32")
    try:
        decode_on_device(device, packed, raw)
    except RiceError as exc:
        log.warning("%s; this batch is decoded on the CPU instead", exc)
        shape = (len(kept), 2, geometry.namps, *geometry.segment_shape)
        threads = min(os.cpu_count() or 1, 2 * len(kept))
        with FileReaders(shape, count=1, threads=threads) as readers:
            more, bad = _read_batch(sensor, kept, readers, 0, geometry, files)
            raw = backend.asarray(readers.buffers[0][: len(more)]) if more else None
        return Batch(more, raw, rejected + bad)
    return Batch(kept, raw, rejected)


def _device_decoded_batches(
    sensor: str,
    chunks: list[list[PairFiles]],
    geometry: SensorGeometry,
    backend: Backend,
    files: InputFiles,
) -> Iterator[Batch]:
    """Batches whose compressed tiles are read ahead in threads and decoded on the device."""
    count = min(os.cpu_count() or 1, 2 * len(chunks[0]))
    log.debug("%s: RICE_1 tiles decoded on the device", sensor)
    with (
        ThreadPoolExecutor(max_workers=count, thread_name_prefix="gpuptc-file") as threads,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpuptc-read") as reader,
    ):
        pending = reader.submit(_read_tiles_batch, sensor, chunks[0], threads, geometry, files)
        for index in range(len(chunks)):
            read = pending.result()
            if index + 1 < len(chunks):
                pending = reader.submit(
                    _read_tiles_batch, sensor, chunks[index + 1], threads, geometry, files
                )
            yield _on_device(sensor, read, geometry, backend, files)

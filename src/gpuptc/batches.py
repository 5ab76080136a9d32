"""Batches of flat pairs read ahead into two host buffers while the other is measured.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gpuptc.backend import Backend
from gpuptc.io.geometry import SensorGeometry
from gpuptc.io.manifest import PairFiles
from gpuptc.io.readers import FileReaders, is_compressed, reader_processes
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


def _read_batch(
    sensor: str,
    chunk: list[PairFiles],
    readers: FileReaders,
    index: int,
    geometry: SensorGeometry,
) -> tuple[list[PairFiles], list[dict[str, Any]]]:
    """Read a batch of pairs into the front of buffer ``index``; unreadable pairs are listed.

    Every file of the batch is read at once by ``readers`` (threads, or processes for
    compressed raws).
    """
    buffer = readers.buffers[index]
    futures = [
        [readers.submit(index, slot, member, path) for member, path in enumerate(pair.paths)]
        for slot, pair in enumerate(chunk)
    ]
    kept: list[PairFiles] = []
    rejected: list[dict[str, Any]] = []
    for slot, (pair, reads) in enumerate(zip(chunk, futures, strict=True)):
        problem = None
        for path, future in zip(pair.paths, reads, strict=True):
            layout, reason = future.result()
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


def _file_readers(
    pairs: list[PairFiles], geometry: SensorGeometry, shape: tuple[int, ...], backend: Backend
) -> FileReaders:
    """Readers for this sensor: processes for compressed raws, threads otherwise."""
    pixel_bytes = geometry.namps * math.prod(geometry.segment_shape) * 4
    compressed = is_compressed(pairs[0].file1, pixel_bytes)
    processes = reader_processes(compressed, files_per_batch=2 * shape[0], pixel_bytes=pixel_bytes)
    threads = min(os.cpu_count() or 1, 2 * shape[0])
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

    Yields
    ------
    Batch
        The next batch; its device array stays valid until the next one is asked for.
    """
    shape = (batch, 2, geometry.namps, *geometry.segment_shape)
    chunks = [pairs[i : i + batch] for i in range(0, len(pairs), batch)]
    with (
        _file_readers(pairs, geometry, shape, backend) as readers,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpuptc-read") as reader,
    ):
        pending = reader.submit(_read_batch, sensor, chunks[0], readers, 0, geometry)
        for index in range(len(chunks)):
            kept, rejected = pending.result()
            buffer = readers.buffers[index % 2]
            raw = backend.asarray(buffer[: len(kept)]) if kept else None
            if index + 1 < len(chunks):
                # the other buffer's last copy finished when its results came back
                pending = reader.submit(
                    _read_batch, sensor, chunks[index + 1], readers, (index + 1) % 2, geometry
                )
            yield Batch(kept, raw, rejected)

"""Write raw-format multi-extension FITS files, atomically.

Storage variants mirror what real data come in: ``int32`` (uncompressed), ``rice``
(RICE_1 tile compression, one row per tile, as the camera writes), ``uint16`` (legacy
BITPIX 16, BZERO 32768) and ``gzip`` (a whole int32 file gzip-compressed).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["STORAGES", "Storage", "atomic_path", "raw_suffix", "replace_folder", "write_raw"]

Storage = Literal["int32", "rice", "uint16", "gzip"]
STORAGES: tuple[str, ...] = ("int32", "rice", "uint16", "gzip")


def raw_suffix(storage: str) -> str:
    """File-name suffix for a storage variant (``.fits`` or ``.fits.gz``)."""
    return ".fits.gz" if storage == "gzip" else ".fits"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary name next to ``path``; rename it to ``path`` on success.

    Parameters
    ----------
    path : path-like
        Final destination.

    Yields
    ------
    pathlib.Path
        Where to write. Removed if the block raises, so no half-written file is left.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(handle)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def replace_folder(staging: Path, folder: Path) -> None:
    """Put a completely written folder ``staging`` in the place of ``folder``.

    The old folder is moved aside first and deleted last, so ``folder`` is at every
    moment either the old complete one or the new complete one.
    """
    previous = folder.with_name(f"{folder.name}.old-{uuid.uuid4().hex[:8]}")
    if folder.exists():
        os.replace(folder, previous)
    os.replace(staging, folder)
    shutil.rmtree(previous, ignore_errors=True)


def _records(header: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"name": key, "value": value} for key, value in header.items()]


def write_raw(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    primary: Mapping[str, Any],
    segments: Sequence[Mapping[str, Any]],
    *,
    storage: Storage = "int32",
    tables: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write one raw exposure as a multi-extension FITS file.

    Parameters
    ----------
    path : path-like
        Destination; written under a temporary name and renamed when complete.
    pixels : numpy.ndarray
        ``(amps, naxis2, naxis1)`` integer pixels (or float for a master bias).
    primary : mapping
        Primary-header keywords.
    segments : sequence of mapping
        One header per amplifier (EXTNAME, DATASEC, DETSEC, ...).
    storage : {'int32', 'rice', 'uint16', 'gzip'}
        How pixels are stored. ``uint16`` clips to 0..65535.
    tables : mapping of str to structured array, optional
        Conditions tables written after the segments (REB_COND, ...).

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import fitsio

    if storage not in STORAGES:
        raise ValueError(f"unknown storage {storage!r}; use one of {', '.join(STORAGES)}")
    if len(segments) != pixels.shape[0]:
        raise ValueError(f"{len(segments)} segment headers for {pixels.shape[0]} segments")
    if np.issubdtype(pixels.dtype, np.floating):
        data = pixels.astype(np.float32, copy=False)
    elif storage == "uint16":
        data = np.clip(pixels, 0, 65535).astype(np.uint16)
    else:
        data = pixels.astype(np.int32, copy=False)
    final = Path(path)
    with atomic_path(final) as tmp:
        target = tmp.with_name(tmp.name + ".fits") if storage == "gzip" else tmp
        try:
            with fitsio.FITS(str(target), "rw", clobber=True) as out:
                out.write(None, header=_records(primary))
                for seg, header in zip(data, segments, strict=True):
                    kwargs: dict[str, Any] = {}
                    if storage == "rice":
                        kwargs = {"compress": "RICE", "tile_dims": [1, seg.shape[1]]}
                    extname = header.get("EXTNAME")
                    out.write(seg, header=_records(header), extname=extname, **kwargs)
                for name, table in (tables or {}).items():
                    out.write(table, extname=name)
            if storage == "gzip":
                with open(target, "rb") as raw, gzip.open(tmp, "wb", compresslevel=1) as packed:
                    shutil.copyfileobj(raw, packed, length=1 << 22)
        finally:
            if target != tmp and target.exists():
                target.unlink()
    return final

"""Flats and biases selected from a Rubin data repository (a Gen3 Butler) by a query.

:func:`ingest_butler` asks the repository for the ``raw`` datasets of flats and biases
(``exposure.observation_type``; a user's ``where`` narrows it) with their exposure and
detector records, reads each file's primary header through its URI (a local path
directly; s3://, https:// and other remote files by ranged reads, their pixels fetched only
when they are measured, see :mod:`gpuptc.inputs.remote`), and gives the manifest
:func:`gpuptc.inputs.manifest.ingest` would give for the same files, after checking each
file's header against its records: a file whose header disagrees (exposure time,
observation type, sequence number, day, obs_id, detector) is rejected with the reason.
Pixels are never read through the Butler, so no formatter (obs_lsst) is needed. Each
exposure's ``photodiode`` dataset in the same collections, where there is one, is named in
the manifest's ``photodiode`` column: its readings give the flat's photodiode charge
(:mod:`gpuptc.inputs.photodiode`) in place of a file beside the raw.

Needs ``lsst-daf-butler`` (``pip install gpuptc[butler]``).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gpuptc.errors import GpuptcError
from gpuptc.inputs.manifest import (
    DEFAULT_PAIRING,
    EXPTIME_TOLERANCE,
    Inventory,
    PairingRule,
    classify_file,
    manifest_of,
)
from gpuptc.schema import FileStatus

__all__ = [
    "BUTLER_COLUMNS",
    "ButlerInputError",
    "ButlerQuery",
    "butler_inventory",
    "butler_module",
    "ingest_butler",
]

log = logging.getLogger(__name__)

BUTLER_COLUMNS: tuple[str, ...] = ("dataset_id", "uri", "detector", "exposure", "photodiode")
"""What a manifest made from a repository has beyond the usual columns (``photodiode``: the
file of the exposure's ``photodiode`` dataset, where the collections hold one)."""

_OBSERVATION_TYPES = ("flat", "bias")
_DETECTOR_NAME = re.compile(r"^R\d\d_S\d\d$")


class ButlerInputError(GpuptcError, ValueError):
    """A repository, collection or query that gives no usable input; says which and why."""


@dataclass(frozen=True)
class ButlerQuery:
    """Which raws of a repository to measure.

    Attributes
    ----------
    repo : str
        The repository (a path or URI of its root, or a label Butler knows).
    collections : tuple of str
        Collections searched, in order.
    where : str
        A Butler query expression narrowing the selection ("" for none).
    bind : dict
        Values for identifiers of ``where``.
    detectors : tuple of int or str
        Only these detectors (numbers, or names such as ``R22_S11``).
    instrument : str
        The instrument.

    Examples
    --------
    The flats and biases of two detectors of a day, from two collections (nothing is
    opened until the query is run by :func:`ingest_butler` or :func:`gpuptc.run`):

    >>> query = ButlerQuery.of(
    ...     "/repo/main", "LSSTCam/raw/all, LSSTCam/calib",
    ...     where="exposure.day_obs = 20250601", detectors=[94, "R22_S11"],
    ... )
    >>> query.collections
    ('LSSTCam/raw/all', 'LSSTCam/calib')
    >>> query.expression()[0].split(" AND ")[-2:]
    ["(detector IN (94) OR detector.full_name IN ('R22_S11'))", '(exposure.day_obs = 20250601)']
    >>> ButlerQuery.of("/repo/main", "")
    Traceback (most recent call last):
    ...
    gpuptc.inputs.butler.ButlerInputError: give the collections to search (--collections)
    """

    repo: str
    collections: tuple[str, ...]
    where: str = ""
    bind: Mapping[str, Any] = field(default_factory=dict)
    detectors: tuple[int | str, ...] = ()
    instrument: str = "LSSTCam"

    @classmethod
    def of(
        cls,
        repo: str | os.PathLike[str],
        collections: str | Sequence[str],
        *,
        where: str = "",
        bind: Mapping[str, Any] | None = None,
        detectors: Sequence[int | str] = (),
        instrument: str = "LSSTCam",
    ) -> ButlerQuery:
        """A query from arguments as a user gives them (collections comma-separated or not).

        Raises
        ------
        ButlerInputError
            Without collections.
        """
        if isinstance(collections, str):
            collections = [c.strip() for c in collections.split(",") if c.strip()]
        if not collections:
            raise ButlerInputError("give the collections to search (--collections)")
        return cls(
            os.fspath(repo),
            tuple(collections),
            where,
            dict(bind or {}),
            tuple(detectors),
            instrument,
        )

    def expression(self) -> tuple[str, dict[str, Any]]:
        """The full query expression and its bind values."""
        bind = {"gpuptc_instrument": self.instrument, **dict(self.bind)}
        types = ", ".join(f"'{t}'" for t in _OBSERVATION_TYPES)
        parts = [f"instrument = gpuptc_instrument AND exposure.observation_type IN ({types})"]
        numbers = [int(d) for d in self.detectors if str(d).isdigit()]
        names = [str(d).upper() for d in self.detectors if not str(d).isdigit()]
        for name in names:
            if not _DETECTOR_NAME.match(name):
                raise ButlerInputError(f"detector {name!r}: give a number or a name like R22_S11")
        chosen = [f"detector IN ({', '.join(map(str, numbers))})"] if numbers else []
        chosen += [f"detector.full_name IN ({', '.join(repr(n) for n in names)})"] if names else []
        if chosen:
            parts.append("(" + " OR ".join(chosen) + ")")
        if self.where.strip():
            parts.append(f"({self.where})")
        return " AND ".join(parts), bind

    def provenance(self) -> dict[str, Any]:
        """What ``run.json`` records of the query."""
        where, bind = self.expression()
        return {
            "repo": self.repo,
            "collections": list(self.collections),
            "where": where,
            "bind": {k: v if isinstance(v, int | float | str) else str(v) for k, v in bind.items()},
        }

    def __fspath__(self) -> str:  # so that a query is listed among a run's inputs
        return f"butler:{self.repo}"


def butler_module() -> Any:
    """``lsst.daf.butler``, or a :class:`ButlerInputError` saying how to install it."""
    try:
        butler = importlib.import_module("lsst.daf.butler")
    except ImportError as exc:
        raise ButlerInputError(
            f"reading from a data repository needs lsst-daf-butler ({exc}); "
            "pip install 'gpuptc[butler]'"
        ) from None
    return butler


def _open(query: ButlerQuery) -> Any:
    butler = butler_module()
    try:
        return butler.Butler.from_config(query.repo, collections=list(query.collections))
    except Exception as exc:
        raise ButlerInputError(f"{query.repo}: not a data repository ({exc})") from exc


def _refs(query: ButlerQuery, repository: Any) -> list[Any]:
    butler = butler_module()
    where, bind = query.expression()
    missing = [c for c in query.collections if not _collection_exists(repository, c)]
    if missing:
        raise ButlerInputError(f"{query.repo}: no collection {', '.join(missing)}")
    try:
        refs = repository.query_datasets(
            "raw",
            collections=list(query.collections),
            where=where,
            bind=bind,
            with_dimension_records=True,
            explain=False,
        )
    except butler.MissingDatasetTypeError:
        raise ButlerInputError(f"{query.repo}: no 'raw' dataset type") from None
    except Exception as exc:
        raise ButlerInputError(f"{query.repo}: the query failed ({exc}): {where}") from exc
    if not refs:
        raise ButlerInputError(
            f"{query.repo}: no flat or bias raws in {', '.join(query.collections)} for {where}"
        )
    return list(refs)


def _photodiodes(query: ButlerQuery, repository: Any) -> dict[int, str]:
    """Each exposure's ``photodiode`` dataset in the query's collections: its file by exposure.

    None of them (no such dataset type, or none of the instrument) is an empty mapping: the
    flats then look for readings beside their raw files.
    """
    butler = butler_module()
    try:
        refs = repository.query_datasets(
            "photodiode",
            collections=list(query.collections),
            where="instrument = instrument_name",
            bind={"instrument_name": query.instrument},
            find_first=True,
            explain=False,
        )
    except butler.MissingDatasetTypeError:
        return {}
    return {int(ref.dataId["exposure"]): _path(repository.getURI(ref)) for ref in refs}


def _collection_exists(repository: Any, name: str) -> bool:
    try:
        repository.collections.get_info(name)
    except Exception:
        return False
    return True


def _records(ref: Any) -> dict[str, Any]:
    exposure = ref.dataId.records["exposure"]
    detector = ref.dataId.records["detector"]
    return {
        "dataset_id": str(ref.id),
        "detector": int(ref.dataId["detector"]),
        "detector_name": detector.full_name,
        "exposure": int(ref.dataId["exposure"]),
        "exposure_time": exposure.exposure_time,
        "observation_type": exposure.observation_type,
        "seq_num": exposure.seq_num,
        "day_obs": exposure.day_obs,
        "obs_id": exposure.obs_id,
        "physical_filter": exposure.physical_filter,
    }


def _disagreement(row: Mapping[str, Any], record: Mapping[str, Any]) -> str | None:
    """How a file's header disagrees with its dataset's records, or None."""
    found = []
    if row.get("exptime") is not None and record["exposure_time"] is not None:
        if abs(float(row["exptime"]) - float(record["exposure_time"])) > EXPTIME_TOLERANCE:
            found.append(f"EXPTIME {row['exptime']} s, record {record['exposure_time']} s")
    if row.get("imgtype") and str(row["imgtype"]).strip().lower() != record["observation_type"]:
        found.append(f"IMGTYPE {row['imgtype']}, record {record['observation_type']}")
    if row.get("seqnum") is not None and record["seq_num"] is not None:
        if int(row["seqnum"]) != int(record["seq_num"]):
            found.append(f"SEQNUM {row['seqnum']}, record {record['seq_num']}")
    if row.get("dayobs") and record["day_obs"] is not None:
        if str(row["dayobs"]).replace("-", "") != str(record["day_obs"]):
            found.append(f"DAYOBS {row['dayobs']}, record {record['day_obs']}")
    if row.get("obsid") and record["obs_id"] and str(row["obsid"]) != record["obs_id"]:
        found.append(f"OBSID {row['obsid']}, record {record['obs_id']}")
    if row.get("raftbay") and row.get("ccdslot") and record["detector_name"]:
        name = f"{row['raftbay']}_{row['ccdslot']}"
        if name != record["detector_name"]:
            found.append(f"RAFTBAY_CCDSLOT {name}, record {record['detector_name']}")
    return "header disagrees with its Butler records: " + "; ".join(found) if found else None


def _path(uri: Any) -> str:
    """What the manifest calls a dataset's file: a local path, or a remote file's URI."""
    return uri.ospath if uri.isLocal else str(uri)


def _row(record: Mapping[str, Any], uri: Any, header_keys: Sequence[str] = ()) -> dict[str, Any]:
    """The manifest row of one dataset: its file classified by header, checked by records."""
    path = _path(uri)
    extra = {name: record[name] for name in ("dataset_id", "detector", "exposure")}
    extra["uri"] = str(uri)
    if uri.isLocal and not os.path.exists(path):
        return {"path": path, "status": FileStatus.REJECTED, "reason": "file missing", **extra}
    row = classify_file(path, header_keys)
    problem = _disagreement(row, record) if row["status"] != FileStatus.REJECTED else None
    if problem is not None:
        row.update(status=FileStatus.REJECTED, reason=problem)
    return {**row, **extra}


def _rows(
    refs: Sequence[Any], repository: Any, threads: int, header_keys: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Every dataset's manifest row, the headers read in ``threads`` threads."""
    records = [_records(ref) for ref in refs]
    uris = [repository.getURI(ref) for ref in refs]
    keys = [header_keys] * len(refs)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gpuptc-header") as pool:
        return list(pool.map(_row, records, uris, keys))


def ingest_butler(
    repo: str | os.PathLike[str] | ButlerQuery,
    collections: str | Sequence[str] = (),
    *,
    where: str = "",
    bind: Mapping[str, Any] | None = None,
    detectors: Sequence[int | str] = (),
    instrument: str = "LSSTCam",
    threads: int = 8,
) -> pd.DataFrame:
    """The manifest of the flats and biases a repository query selects.

    Parameters
    ----------
    repo : path-like, str or ButlerQuery
        The repository (or a whole query, the other arguments then ignored).
    collections : str or sequence of str
        Collections searched (comma-separated in one string, or a sequence).
    where : str
        A Butler query expression narrowing the selection, such as
        ``"exposure.day_obs = 20250601"``.
    bind : mapping, optional
        Values for identifiers used in ``where``.
    detectors : sequence of int or str
        Only these detectors (numbers or names such as ``R22_S11``).
    instrument : str
        The instrument (default LSSTCam).
    threads : int
        Headers read at once.

    Returns
    -------
    pandas.DataFrame
        The manifest of :func:`gpuptc.ingest` (one row per dataset; ``path`` the local
        file, or the URI of a remote one, fetched when it is measured: see
        :mod:`gpuptc.inputs.remote`) with :data:`BUTLER_COLUMNS` (:func:`butler_inventory` gives
        the query's provenance with the dataset ids too).

    Raises
    ------
    ButlerInputError
        Without lsst-daf-butler, for a repository that cannot be opened, a missing
        collection or a query that selects nothing.

    Examples
    --------
    A repository that cannot be opened is an error that names it (``tmp`` is an empty
    directory); with a real repository, the manifest's flats come paired per detector:

    >>> ingest_butler(tmp / "no-repo", "LSSTCam/raw/all")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gpuptc.inputs.butler.ButlerInputError: ...no-repo...
    """
    query = (
        repo
        if isinstance(repo, ButlerQuery)
        else ButlerQuery.of(
            repo, collections, where=where, bind=bind, detectors=detectors, instrument=instrument
        )
    )
    return butler_inventory(query, threads=threads).manifest


def butler_inventory(
    query: ButlerQuery, *, threads: int = 8, pairing: PairingRule = DEFAULT_PAIRING
) -> Inventory:
    """:func:`ingest_butler`'s manifest with the query's provenance and its dataset ids.

    ``pairing`` is :func:`gpuptc.inputs.manifest.pair_flats`'s.
    """
    repository = _open(query)
    refs = _refs(query, repository)
    log.info("%s: %d raws selected in %s", query.repo, len(refs), ", ".join(query.collections))
    frame = manifest_of(_rows(refs, repository, threads, pairing.keys), pairing=pairing)
    readings = _photodiodes(query, repository)
    frame["photodiode"] = frame["exposure"].map(readings).astype(object)
    log.info("%s: photodiode readings for %d exposures", query.repo, len(readings))
    provenance = {**query.provenance(), "datasets": sorted(frame["dataset_id"])}
    return Inventory(frame, queries=(provenance,))

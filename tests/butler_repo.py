"""A Gen3 data repository made from simulated raws, as a user without obs_lsst makes one.

The dimension records come from each file's own header (what obs_lsst's translator would
put there); files are ingested in place (``transfer="direct"``) with daf_butler's
typeless formatter, so the repository answers queries and ``getURI`` without the stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from gpuptc.products.cp_pipe_ptc import detector_number
from gpuptc.raws.exposure import read_primary_header

INSTRUMENT = "LSSTCam"
FORMATTER = "lsst.daf.butler.formatters.typeless.TypelessFormatter"


def exposure_id(header: Mapping) -> int:
    return int(str(header["DAYOBS"]).replace("-", "")) * 100000 + int(header["SEQNUM"])


def make_repository(
    root: Path,
    collections: Mapping[str, Iterable[Path | str]],
    headers: Mapping[str, Path] | None = None,
) -> Path:
    """A repository at ``root`` with each collection (a RUN) holding the files given.

    Files may be URIs; ``headers`` maps a URI to a local copy its records are read from.
    """
    from lsst.daf.butler import Butler, CollectionType, DatasetRef, DatasetType, FileDataset

    Butler.makeRepo(str(root))
    butler = Butler.from_config(str(root), writeable=True)
    registry = butler.registry
    registry.insertDimensionData(
        "instrument",
        {
            "name": INSTRUMENT,
            "detector_max": 1000,
            "visit_max": 10**12,
            "exposure_max": 10**12,
            "class_name": "lsst.obs.lsst.LsstCam",
        },
    )
    raw = DatasetType(
        "raw", ("instrument", "detector", "exposure"), "Exposure", universe=butler.dimensions
    )
    registry.registerDatasetType(raw)
    known: dict[str, set] = {"detector": set(), "filter": set(), "day": set(), "exposure": set()}
    for collection, files in collections.items():
        registry.registerCollection(collection, CollectionType.RUN)
        for path in files:
            header = read_primary_header((headers or {}).get(str(path), path))
            data_id = _records(registry, header, known)
            ref = DatasetRef(raw, data_id, run=collection)
            butler.ingest(
                FileDataset(path=str(path), refs=[ref], formatter=FORMATTER), transfer="direct"
            )
    return root


def _records(registry, header: Mapping, known: dict[str, set]) -> dict:
    raft, slot = header["RAFTBAY"], header["CCDSLOT"]
    detector = detector_number(raft, slot)
    if detector not in known["detector"]:
        registry.insertDimensionData(
            "detector",
            {
                "instrument": INSTRUMENT,
                "id": detector,
                "full_name": f"{raft}_{slot}",
                "name_in_raft": slot,
                "raft": raft,
                "purpose": "SCIENCE",
            },
        )
        known["detector"].add(detector)
    band = str(header.get("FILTER") or "empty")
    if band not in known["filter"]:
        registry.insertDimensionData(
            "physical_filter", {"instrument": INSTRUMENT, "name": band, "band": "white"}
        )
        known["filter"].add(band)
    day = int(str(header["DAYOBS"]).replace("-", ""))
    if day not in known["day"]:
        registry.insertDimensionData("day_obs", {"instrument": INSTRUMENT, "id": day})
        registry.insertDimensionData("group", {"instrument": INSTRUMENT, "name": str(day)})
        known["day"].add(day)
    exposure = exposure_id(header)
    if exposure not in known["exposure"]:
        registry.insertDimensionData(
            "exposure",
            {
                "instrument": INSTRUMENT,
                "id": exposure,
                "day_obs": day,
                "group": str(day),
                "physical_filter": band,
                "obs_id": header.get("OBSID"),
                "exposure_time": float(header["EXPTIME"]),
                "dark_time": float(header.get("DARKTIME", header["EXPTIME"])),
                "observation_type": str(header["IMGTYPE"]).strip().lower(),
                "seq_num": int(header["SEQNUM"]),
            },
        )
        known["exposure"].add(exposure)
    return {"instrument": INSTRUMENT, "detector": detector, "exposure": exposure}


def add_photodiodes(root: Path, collection: str, readings: Mapping[int, Path]) -> None:
    """Each exposure's photodiode readings file, as its ``photodiode`` dataset in a RUN."""
    from lsst.daf.butler import Butler, CollectionType, DatasetRef, DatasetType, FileDataset

    butler = Butler.from_config(str(root), writeable=True)
    kind = DatasetType(
        "photodiode", ("instrument", "exposure"), "IsrCalib", universe=butler.dimensions
    )
    butler.registry.registerDatasetType(kind)
    butler.registry.registerCollection(collection, CollectionType.RUN)
    for exposure, path in readings.items():
        ref = DatasetRef(kind, {"instrument": INSTRUMENT, "exposure": exposure}, run=collection)
        butler.ingest(
            FileDataset(path=str(path), refs=[ref], formatter=FORMATTER), transfer="direct"
        )

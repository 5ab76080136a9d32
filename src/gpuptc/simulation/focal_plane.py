"""A simulated LSSTCam focal plane: every science sensor, every exposure shared, in seconds.

LSSTCam's 21 science rafts hold 189 sensors, ITL in rafts R01, R02, R03, R10, R20, R41,
R42 and R43 and e2v in the other 13 (obs_lsst's camera description); every exposure is
read by all of them at once, so its files share one OBSID, DAYOBS, SEQNUM, exposure time
and date, and each carries its own RAFTBAY, CCDSLOT and serial number. The camera writes
them as ``<DAYOBS>/<OBSID>/<OBSID>_<RAFTBAY>_<CCDSLOT>.fits``.

Simulating 189 sensors pixel by pixel would take minutes; here a few sensors per vendor are
simulated (:func:`gpuptc.simulation.simulate.simulate`, their signal ladders matched so
that every exposure has one exposure time) and each detector's files are copies of one
of them with the primary header's cards rewritten in place: its place, its serial, and
the exposure's identity from the first e2v source. The pixels of detectors that share a
source are the same; what the benchmarks and tests of scale need is the camera's layout,
the shared exposures and the number of files.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from astropy.io import fits

from gpuptc.simulation.simulate import SimulatedSensor, SimulationConfig, sensor_truth, simulate

__all__ = [
    "ITL_RAFTS",
    "SCIENCE_RAFTS",
    "FocalPlane",
    "focal_plane_detectors",
    "simulate_focal_plane",
]

SCIENCE_RAFTS: tuple[str, ...] = tuple(
    f"R{row}{column}"
    for row in range(5)
    for column in range(5)
    if (row, column) not in ((0, 0), (0, 4), (4, 0), (4, 4))
)
"""The 21 science rafts (the corners hold the wavefront and guide sensors)."""
ITL_RAFTS = frozenset({"R01", "R02", "R03", "R10", "R20", "R41", "R42", "R43"})
"""The science rafts of ITL sensors; the others are e2v's."""
SLOTS: tuple[str, ...] = tuple(f"S{row}{column}" for row in range(3) for column in range(3))
EXPOSURE_KEYS = ("OBSID", "SEQNUM", "DAYOBS", "DATE", "DATE-OBS", "MJD", "MJD-OBS",
                 "EXPTIME", "DARKTIME", "MONDIODE", "IMAGETAG", "FILENAME")  # fmt: skip
"""Primary-header keywords an exposure shares across the focal plane."""


def focal_plane_detectors(
    count: int | None = None, *, slots_per_raft: int | None = None
) -> pd.DataFrame:
    """The science detectors in raft and slot order: ``raftbay, ccdslot, vendor``.

    ``count`` takes the first ones, spread over rafts of both vendors: whole rafts in the
    order R22 (e2v), R20 (ITL), R21 (e2v), R10 (ITL), then the rest; ``slots_per_raft``
    keeps only the first slots of each raft (a few sensors of both vendors).

    Examples
    --------
    >>> detectors = focal_plane_detectors()
    >>> len(detectors), int((detectors.vendor == "itl").sum())
    (189, 72)
    >>> focal_plane_detectors(10).raftbay.unique().tolist()
    ['R22', 'R20']
    >>> focal_plane_detectors(4, slots_per_raft=2).vendor.tolist()
    ['e2v', 'e2v', 'itl', 'itl']
    """
    first = ("R22", "R20", "R21", "R10")
    rafts = [*first, *(r for r in SCIENCE_RAFTS if r not in first)]
    rows = [
        {"raftbay": raft, "ccdslot": slot, "vendor": "itl" if raft in ITL_RAFTS else "e2v"}
        for raft in rafts
        for slot in SLOTS[:slots_per_raft]
    ]
    return pd.DataFrame(rows[:count] if count is not None else rows)


@dataclass
class FocalPlane:
    """What :func:`simulate_focal_plane` wrote.

    Attributes
    ----------
    directory : pathlib.Path
        The top folder (``<DAYOBS>/<OBSID>/`` below it).
    detectors : pandas.DataFrame
        One row per detector: ``sensor`` (LSST_NUM), ``raftbay``, ``ccdslot``, ``vendor``,
        ``source`` (the simulated sensor its pixels come from).
    truth : pandas.DataFrame
        Each detector's amps' truth (its source's, under its own sensor name).
    files : int
        Raw files written.
    """

    directory: Path
    detectors: pd.DataFrame
    truth: pd.DataFrame
    files: int


def _sources(
    folder: Path, per_vendor: int, seed: int, **options: object
) -> dict[str, list[SimulatedSensor]]:
    """A few sensors of each vendor whose exposures have the same exposure times.

    The e2v sources' ladder sets the signals (``max_signal_over_full_well`` of the first
    e2v's median full well); the others reach the same top signal, whatever their own full
    wells, so that every pair's exposure time is the same on all of them.
    """
    reference = SimulationConfig(vendor="e2v", seed=seed, **options)  # type: ignore[arg-type]
    top = reference.max_signal_over_full_well * _median_well(reference)
    sources: dict[str, list[SimulatedSensor]] = {"e2v": [], "itl": []}
    for number, vendor in enumerate(v for v in ("e2v", "itl") for _ in range(per_vendor)):
        # seeds 7 apart: the same start date, other gains, noise and patterns
        config = SimulationConfig(vendor=vendor, seed=seed + 7 * number, **options)  # type: ignore[arg-type]
        config = replace(config, max_signal_over_full_well=top / _median_well(config))
        sources[vendor].append(simulate(folder / f"{vendor}-{number}", config))
    return sources


def _median_well(config: SimulationConfig) -> float:
    return float(sensor_truth(config)["full_well"].median())


def _card(key: str, value: object) -> bytes:
    return fits.Card(key, value).image.encode("ascii")


def _rewritten(raw: bytearray, values: dict[str, object]) -> bytearray:
    """The file's bytes with the primary header's cards for ``values`` replaced in place."""
    end = raw.find(b"END" + b" " * 77)
    for offset in range(0, end, 80):
        key = raw[offset : offset + 8].decode("ascii").strip()
        if key in values:
            raw[offset : offset + 80] = _card(key, values[key])
    return raw


def _exposure_values(path: Path) -> dict[str, object]:
    header = fits.getheader(path, 0)
    return {key: header[key] for key in EXPOSURE_KEYS if key in header}


def _serial(vendor: str, index: int) -> str:
    return f"E2V-CCD250-{500 + index:03d}" if vendor == "e2v" else f"ITL-3800C-{500 + index:03d}"


def _copies(
    detectors: pd.DataFrame, sources: dict[str, list[SimulatedSensor]]
) -> Iterator[tuple[int, pd.Series, SimulatedSensor]]:
    for index, detector in detectors.iterrows():
        chosen = sources[detector["vendor"]]
        yield int(index), detector, chosen[int(index) % len(chosen)]


def simulate_focal_plane(
    directory: str | os.PathLike[str],
    sensors: int | None = None,
    *,
    sources_per_vendor: int = 2,
    slots_per_raft: int | None = None,
    seed: int = 0,
    size: str = "small",
    pairs: int = 8,
    biases: int = 2,
    **options: object,
) -> FocalPlane:
    """Write a simulated focal plane (or its first ``sensors`` detectors) into ``directory``.

    Parameters
    ----------
    directory : path-like
        An empty or new folder.
    sensors : int, optional
        How many of the 189 science detectors (:func:`focal_plane_detectors`'s order).
    sources_per_vendor : int
        Sensors simulated per vendor; detector ``k`` of a vendor copies source ``k mod n``.
    slots_per_raft : int, optional
        Only the first slots of each raft (:func:`focal_plane_detectors`).
    seed, size, pairs, biases, **options
        The sources' :class:`gpuptc.simulation.simulate.SimulationConfig` fields.

    Returns
    -------
    FocalPlane
        The folder, the detectors and their truth.

    Examples
    --------
    >>> plane = simulate_focal_plane(tmp / "plane", 4, pairs=2, biases=0, sources_per_vendor=1)
    >>> plane.files, sorted(p.name for p in plane.directory.iterdir())
    (16, ['20250601'])
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    detectors = focal_plane_detectors(sensors, slots_per_raft=slots_per_raft)
    settings = dict(size=size, pairs=pairs, biases=biases, **options)
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        sources = _sources(Path(scratch), sources_per_vendor, seed, **settings)
        reference = sources["e2v"][0]
        shared = [_exposure_values(p) for p in (*reference.biases, *reference.flats)]
        rows, truths, written = [], [], 0
        for index, detector, source in _copies(detectors, sources):
            serial = _serial(detector["vendor"], index)
            own = {"LSST_NUM": serial, "RAFTBAY": detector["raftbay"],
                   "CCDSLOT": detector["ccdslot"], "CCD_SERN": serial}  # fmt: skip
            for raw_path, identity in zip((*source.biases, *source.flats), shared, strict=True):
                folder = out / str(identity["DAYOBS"]) / str(identity["OBSID"])
                folder.mkdir(parents=True, exist_ok=True)
                name = f"{identity['OBSID']}_{detector['raftbay']}_{detector['ccdslot']}.fits"
                data = _rewritten(bytearray(raw_path.read_bytes()), {**identity, **own})
                (folder / name).write_bytes(data)
                written += 1
            rows.append({"sensor": serial, **detector.to_dict(), "source": source.sensor})
            truths.append(source.truth.assign(sensor=serial))
    truth = pd.concat(truths, ignore_index=True) if truths else pd.DataFrame()
    return FocalPlane(out, pd.DataFrame(rows), truth, written)

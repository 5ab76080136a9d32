"""The simulated focal plane: LSSTCam's layout, exposures shared, and a run over it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

import gpuptc
from gpuptc.raws.camera import grid_place
from gpuptc.report.focal_plane import sensor_places
from gpuptc.schema import SENSORS_DIR, FileStatus
from gpuptc.simulation.focal_plane import (
    EXPOSURE_KEYS,
    ITL_RAFTS,
    focal_plane_detectors,
    simulate_focal_plane,
)


def test_the_camera_has_189_science_detectors_of_two_vendors() -> None:
    detectors = focal_plane_detectors()
    assert len(detectors) == 189 and not detectors.duplicated(["raftbay", "ccdslot"]).any()
    assert set(detectors.raftbay) == {f"R{r}{c}" for r in range(5) for c in range(5)} - {
        "R00", "R04", "R40", "R44"
    }  # fmt: skip
    by_vendor = detectors.groupby("vendor").raftbay.unique()
    assert set(by_vendor["itl"]) == ITL_RAFTS and len(by_vendor["e2v"]) == 13


def test_a_reduced_focal_plane_shares_its_exposures_and_runs(tmp_path) -> None:
    """Nine detectors of two rafts, both vendors (copies of one source per vendor): every
    exposure one identity in every detector's file, the camera's file names and folders,
    and a run that measures every detector, each placed at its raft and slot; detectors
    copied from one source give that source's numbers; a run killed halfway and run again
    gives the uninterrupted run's tables."""
    plane = simulate_focal_plane(
        tmp_path / "plane", 9, slots_per_raft=5, pairs=5, biases=0, sources_per_vendor=1
    )
    assert set(plane.detectors.vendor) == {"e2v", "itl"}
    assert plane.detectors.raftbay.nunique() == 2
    assert plane.files == 9 * 10
    identities: dict[str, set] = {}
    for path in sorted(plane.directory.rglob("*.fits")):
        header = fits.getheader(path, 0)
        obsid = header["OBSID"]
        assert path.parent.name == obsid and path.parent.parent.name == str(header["DAYOBS"])
        assert path.name == f"{obsid}_{header['RAFTBAY']}_{header['CCDSLOT']}.fits"
        identities.setdefault(obsid, set()).add(tuple(header.get(k) for k in EXPOSURE_KEYS))
    assert len(identities) == 10 and all(len(values) == 1 for values in identities.values())

    out = tmp_path / "out"
    result = gpuptc.run(plane.directory, out, models=["expapprox"], report=False)
    manifest = pd.read_parquet(out / "manifest.parquet")
    paired = manifest[manifest.status == FileStatus.PAIRED]
    assert set(paired.sensor) == set(plane.detectors.sensor)
    places = paired.groupby("sensor")[["raftbay", "ccdslot"]].first()
    expected = plane.detectors.set_index("sensor")[["raftbay", "ccdslot"]]
    pd.testing.assert_frame_equal(places.sort_index(), expected.sort_index())
    on_map = sensor_places(sorted(expected.index), manifest)  # the focal-plane maps' places
    assert on_map == {s: grid_place(*expected.loc[s]) for s in expected.index}
    summary = pd.read_parquet(out / "focal_plane.parquet").set_index(["sensor", "amp"])
    ptc = pd.read_parquet(out / "ptc.parquet").set_index(["sensor", "amp"])["gain"]
    pd.testing.assert_series_equal(summary.gain.sort_index(), ptc.sort_index())
    verdicts = pd.read_parquet(out / "verdict.parquet").set_index(["sensor", "amp"])
    flags = [column for column in verdicts if column.startswith("flag_")]
    pd.testing.assert_frame_equal(summary[flags].sort_index(), verdicts[flags].sort_index())
    by_sensor = summary.groupby("sensor")[["vendor", "raftbay", "ccdslot"]].first()
    truth = plane.detectors.set_index("sensor")[["vendor", "raftbay", "ccdslot"]]
    pd.testing.assert_frame_equal(by_sensor.sort_index(), truth.sort_index())
    same_source = plane.detectors.groupby("source").sensor.apply(list)
    for sensors in same_source:
        first = ptc.loc[sensors[0]].to_numpy()
        for other in sensors[1:]:
            np.testing.assert_array_equal(ptc.loc[other].to_numpy(), first)
    assert result.exit_code == 0

    # killed halfway (4 of 9 sensors stored), then run again: the same tables
    killed = tmp_path / "killed"
    _kill_after(plane.directory, killed, stored=4)
    stored = {p: p.stat().st_mtime_ns for p in (killed / SENSORS_DIR).glob("*/done.json")}
    assert 4 <= len(stored) < 9
    gpuptc.run(plane.directory, killed, models=["expapprox"], report=False)
    assert all(p.stat().st_mtime_ns == t for p, t in stored.items())  # reused, not redone
    for name in ("pairs", "covariances", "ptc"):
        pd.testing.assert_frame_equal(_table(killed, name), _table(out, name))


def _kill_after(inputs: Path, out: Path, stored: int) -> None:
    """``gpuptc run`` in a process killed (SIGKILL) once ``stored`` sensors are stored."""
    command = [sys.executable, "-m", "gpuptc", "run", str(inputs), "--out", str(out),
               "--models", "expapprox", "--no-report", "-q"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if len(list((out / SENSORS_DIR).glob("*/done.json"))) >= stored:
                break
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()


def _table(out: Path, name: str) -> pd.DataFrame:
    frame = pd.read_parquet(out / f"{name}.parquet")
    keys = [c for c in ("sensor", "pair", "amp", "model", "i", "j") if c in frame]
    return frame.sort_values(keys).reset_index(drop=True)


def _half_sensor(source, folder, slot: str) -> None:
    """A wavefront half-sensor's files: an ITL sensor's first row of 8 amps (Segment10-17)
    with its DETSIZE halved, in slot ``slot`` of corner raft R00 (obs_lsst's ITL_WF: 8
    amps, 4072 x 2000 pixels at full size)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in source.flats:
        with fits.open(path) as hdus:
            kept = [hdus[0].copy()]
            kept += [h.copy() for h in hdus[1:] if h.header["EXTNAME"].startswith("Segment1")]
        header = kept[0].header
        ny = int(str(header["DETSIZE"]).strip("[]").split(",")[1].split(":")[1]) // 2
        header["DETSIZE"] = str(header["DETSIZE"]).replace(f":{2 * ny}]", f":{ny}]")
        header["RAFTBAY"], header["CCDSLOT"] = "R00", slot
        header["LSST_NUM"] = f"ITL-3800C-9{slot[-1]}0"
        fits.HDUList(kept).writeto(folder / f"{header['OBSID']}_R00_{slot}.fits")


def _guider_mode_file(path: Path, imgtype: str, sequence: int) -> None:
    """A guider's file as the camera writes it in guider mode (laid out as the guider files
    of obs_lsst's test data): its primary header names the region of interest (ROICOL,
    ROIROW, ROICOLS, ROIROWS, ROISEG) and N_STAMPS, and each stamp is an IMAGE extension
    of ROIROWS x ROICOLS int32 pixels."""
    primary = fits.PrimaryHDU()
    primary.header.update(
        IMGTYPE=imgtype, OBSID=f"MC_C_20240918_{sequence:06d}", DAYOBS=20240918,
        SEQNUM=sequence, RAFTBAY="R00", CCDSLOT="SG0", LSST_NUM="ITL-3800C-397",
        CCD_MANU="ITL", INSTRUME="lsstCam", ROICOL=100, ROIROW=200, ROICOLS=50,
        ROIROWS=100, ROISEG="Segment03", N_STAMPS=3,
    )  # fmt: skip
    if imgtype == "FLAT":
        primary.header["EXPTIME"] = 15.0
    stamps = [fits.ImageHDU(np.full((100, 50), 20_000, np.int32), name="IMAGE") for _ in range(3)]
    fits.HDUList([primary, *stamps]).writeto(path)


def test_corner_raft_half_sensors_are_measured_and_placed(tmp_path) -> None:
    """The wavefront half-sensors of a corner raft beside a science sensor: measured like
    it (8 amps each) and placed in the slot they stand in, SW1 above SW0; a guider's files
    in guider mode (stamps, not segments) are passed over with the reason."""
    from gpuptc.report.focal_plane import focal_plane_maps
    from gpuptc.simulation.simulate import simulate

    source = simulate(tmp_path / "itl", vendor="itl", size="small", pairs=6, biases=0, seed=2)
    for slot in ("SW0", "SW1"):
        _half_sensor(source, tmp_path / "raw", slot)
    guiders = [tmp_path / "raw" / f"MC_C_20240918_00001{k}_R00_SG0_guider.fits" for k in (3, 4)]
    _guider_mode_file(guiders[0], "UNKNOWN", 13)
    _guider_mode_file(guiders[1], "FLAT", 14)  # even one that calls itself a flat
    out = tmp_path / "out"
    result = gpuptc.run(
        [tmp_path / "raw", source.directory], out, models=["expapprox"], report=False
    )
    ptc = pd.read_parquet(out / "ptc.parquet")
    amps = ptc.groupby("sensor")["amp"].nunique().to_dict()
    assert amps == {"ITL-3800C-900": 8, "ITL-3800C-910": 8, source.sensor: 16}
    half = ptc[ptc.sensor == "ITL-3800C-900"].set_index("segment")["gain"]
    full = ptc[ptc.sensor == source.sensor].set_index("segment")["gain"]
    np.testing.assert_array_equal(half.to_numpy(), full.loc[half.index].to_numpy())
    manifest = pd.read_parquet(out / "manifest.parquet")
    passed_over = manifest[manifest.path.isin([str(g) for g in guiders])]
    assert len(passed_over) == 2 and (passed_over.status == FileStatus.IGNORED).all()
    assert passed_over.reason.str.startswith("a guider-mode file (3 stamps of 50 x 100").all()
    places = sensor_places(sorted(amps), manifest)
    assert places["ITL-3800C-900"] == (0, 0) and places["ITL-3800C-910"] == (0.5, 0)
    assert result.exit_code == 0
    summary = pd.read_parquet(out / "focal_plane.parquet")
    assert focal_plane_maps(summary, manifest) is not None

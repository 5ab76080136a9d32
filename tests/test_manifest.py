import json
import os
import shutil

import fitsio
import numpy as np
import pandas as pd
import pytest

from gpuptc.inputs.manifest import (
    MANIFEST_COLUMNS,
    PairingRule,
    ingest,
    inventory,
    pair_flats,
    summarize,
)


def _by_obsid(manifest):
    raw = manifest[manifest["obsid"].notna()]
    return raw.set_index("obsid")[["sensor", "status", "pair", "member", "exptime"]].sort_index()


def test_pairs_every_flat_of_a_clean_sensor(small_e2v):
    manifest = ingest([small_e2v.directory])
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    flats = manifest[manifest.imgtype == "FLAT"]
    assert (flats.status == "paired").all()
    assert sorted(flats.pair.unique()) == list(range(8))
    for _, pair in flats.groupby("pair"):
        assert sorted(pair.member) == [1, 2]
        assert pair.exptime.nunique() == 1
    # pair numbers follow time
    first = flats[flats.member == 1].sort_values("mjd")
    assert list(first.pair) == list(range(8))
    assert (manifest.status == "bias").sum() == 5
    eotest = manifest[manifest.status == "eotest"]
    assert list(eotest.sensor) == [small_e2v.sensor]
    assert len(inventory([small_e2v.directory]).skipped) == 2  # the truth and exposure tables


def test_file_names_carry_no_meaning(small_e2v, tmp_path):
    rng = np.random.default_rng(3)
    scrambled = tmp_path / "scrambled" / "deeper"
    scrambled.mkdir(parents=True)
    for path in small_e2v.flats + small_e2v.biases:
        name = "".join(rng.choice(list("abcdefghij0123456789"), 12)) + ".fits"
        shutil.copy(path, scrambled / name)
    (scrambled / "notes.txt").write_text("log")
    (scrambled / "run.json").write_text("{}")
    nice = ingest([small_e2v.directory])
    messy = inventory([tmp_path / "scrambled"])
    pd.testing.assert_frame_equal(_by_obsid(nice), _by_obsid(messy.manifest))
    assert len(messy.skipped) == 2


def _set_keys(path, **keys):
    with fitsio.FITS(str(path), "rw") as f:
        for key, value in keys.items():
            if value is None:
                f[0].delete_key(key)
            else:
                f[0].write_key(key, value)


def _flat_rows(manifest):
    return manifest[manifest.imgtype == "FLAT"].sort_values("mjd").reset_index(drop=True)


def test_third_exposure_single_flat_and_mismatch(small_e2v, copy_of):
    directory = copy_of(small_e2v)
    manifest0 = _flat_rows(ingest([directory]))
    paths = list(manifest0.path)
    # third flat at the exposure time of pair 2, taken right after it (its sequence number
    # the same, its name sorting after: the camera's order puts it next)
    extra = directory / "extra.fits"
    shutil.copy(paths[5], extra)
    mjd = manifest0.loc[5, "mjd"] + 1e-5
    seqnum = int(manifest0.loc[5, "seqnum"])
    _set_keys(extra, **{"OBSID": "MC_C_EXTRA", "MJD-OBS": mjd, "SEQNUM": seqnum})
    # pair 5 loses one flat: its partner is single
    os.remove(paths[10])
    # pair 6: the second flat gets another exposure time
    _set_keys(paths[13], EXPTIME=manifest0.loc[13, "exptime"] + 0.5)
    manifest = ingest([directory])
    by_path = manifest.set_index("path")
    assert by_path.loc[str(extra), "status"] == "unpaired"
    assert "extra flat" in by_path.loc[str(extra), "reason"]
    assert by_path.loc[paths[11], "status"] == "unpaired"
    assert "single flat" in by_path.loc[paths[11], "reason"]
    for path in (paths[12], paths[13]):
        assert by_path.loc[path, "status"] == "unpaired"
    assert (manifest.status == "paired").sum() == 2 * 6


def test_rejections_and_ignored_files_have_reasons(small_e2v, copy_of, tmp_path):
    directory = copy_of(small_e2v)
    source = small_e2v.flats[0]
    cases = {
        "no_exptime.fits": {"EXPTIME": None, "OBSID": "X1"},
        "no_imgtype.fits": {"IMGTYPE": None, "OBSID": "X2"},
        "dark.fits": {"IMGTYPE": "DARK", "OBSID": "X3"},
        "sflat.fits": {"TESTTYPE": "SFLAT_500", "OBSID": "X4"},
        "ours.fits": {"ORIGIN": "gpuptc", "OBSID": "X5"},
        "no_sensor.fits": {"LSST_NUM": None, "RAFTBAY": None, "OBSID": "X6"},
    }
    for name, keys in cases.items():
        shutil.copy(source, directory / name)
        _set_keys(directory / name, **keys)
    shutil.copy(source, directory / "copy_of_first.fits")
    (directory / "text.fits").write_text("not fits at all")
    manifest = ingest([directory, tmp_path / "does-not-exist"])
    by_name = {os.path.basename(p): row for p, row in manifest.set_index("path").iterrows()}
    expected = {
        "no_exptime.fits": ("rejected", "EXPTIME"),
        "no_imgtype.fits": ("rejected", "IMGTYPE"),
        "dark.fits": ("ignored", "DARK"),
        "sflat.fits": ("ignored", "SFLAT_500"),
        "ours.fits": ("ignored", "gpuptc"),
        "no_sensor.fits": ("rejected", "LSST_NUM"),
        "text.fits": ("rejected", "not a readable FITS file"),
        "does-not-exist": ("rejected", "no such file"),
    }
    for name, (status, words) in expected.items():
        assert by_name[name]["status"] == status, name
        assert words in by_name[name]["reason"], (name, by_name[name]["reason"])
    duplicates = [
        r
        for n, r in by_name.items()
        if r["status"] == "rejected" and "duplicate" in str(r["reason"])
    ]
    assert len(duplicates) == 1
    assert (manifest.status == "paired").sum() == 16  # the good data still pair


def test_same_file_twice_is_listed_once(small_e2v):
    manifest = ingest(
        [small_e2v.directory, small_e2v.flats[0], str(small_e2v.directory / "*.fits")]
    )
    assert manifest.path.map(os.path.realpath).is_unique
    assert (manifest.status == "rejected").sum() == 0


def test_symlink_loop_and_output_directory_are_not_followed(small_e2v, copy_of):
    directory = copy_of(small_e2v)
    os.symlink(directory, directory / "loop")
    out = directory / "results"
    out.mkdir()
    shutil.copy(small_e2v.flats[0], out / "product.fits")
    manifest = ingest([directory], exclude=[out])
    assert (manifest.status == "paired").sum() == 16
    assert not manifest.path.str.contains("product.fits").any()


def test_two_sensors_two_vendors(small_e2v, small_itl):
    manifest = ingest([small_e2v.directory, small_itl.directory])
    summary = summarize(manifest).set_index("sensor")
    assert summary.loc[small_e2v.sensor, "vendor"] == "e2v"
    assert summary.loc[small_itl.sensor, "vendor"] == "itl"
    assert summary.loc[small_e2v.sensor, "pairs"] == 8
    assert summary.loc[small_itl.sensor, "pairs"] == 4
    assert summary.loc[small_itl.sensor, "biases"] == 2
    assert summary.loc[small_itl.sensor, "eotest"] == 1


def test_renamed_eotest_file_takes_the_only_sensor(small_e2v, copy_of):
    directory = copy_of(small_e2v)
    (directory / f"{small_e2v.sensor}_eotest_results.fits").rename(directory / "results.fits")
    manifest = ingest([directory])
    row = manifest[manifest.status == "eotest"].iloc[0]
    assert row.sensor == small_e2v.sensor
    assert "only sensor" in row.reason


def test_pairing_without_mjd_uses_dayobs_then_seqnum():
    """SEQNUM restarts every day: day 2's seqnum 1 comes after day 1's seqnum 7."""
    rows = []
    for path, dayobs, seqnum, exptime in [
        ("d", "20250602", 1, 2.0),
        ("a", "20250601", 6, 1.0),
        ("b", "20250601", 7, 1.0),
        ("c", "20250601", 8, 2.0),
        ("e", "20250602", 2, 3.0),
    ]:
        row = dict.fromkeys(MANIFEST_COLUMNS)
        row.update(
            path=path,
            sensor="S",
            imgtype="FLAT",
            dayobs=dayobs,
            seqnum=seqnum,
            exptime=exptime,
            mjd=np.nan,
            filter="r",
        )
        rows.append(row)
    manifest = pair_flats(pd.DataFrame(rows))
    by_path = manifest.set_index("path")
    assert by_path.loc["a", "pair"] == by_path.loc["b", "pair"] == 0
    assert by_path.loc["c", "pair"] == by_path.loc["d", "pair"] == 1
    assert by_path.loc["e", "status"] == "unpaired"


def test_exptime_tolerance_is_five_ms_or_half_a_percent():
    """Two flats pair within 5 ms (cp_pipe's tolerance) or 0.5 % of the longer, whichever
    is larger; ``exptime_tolerance`` sets the fraction."""
    rows = []
    times = [(1.000, 1.004), (2.0, 2.012), (10.0, 10.04), (20.0, 20.2)]
    for n, exptime in enumerate(t for pair in times for t in pair):
        row = dict.fromkeys(MANIFEST_COLUMNS)
        row.update(path=f"f{n}", sensor="S", imgtype="FLAT", mjd=float(n), exptime=exptime)
        rows.append(row)
    frame = pd.DataFrame(rows)
    paired = pair_flats(frame).status.eq("paired").to_numpy().reshape(4, 2)
    assert paired.all(axis=1).tolist() == [True, False, True, False]
    assert not paired.any(axis=1)[[1, 3]].any()
    looser = pair_flats(frame, pairing=PairingRule(exptime_tolerance=0.02))
    looser = looser.status.eq("paired").to_numpy()
    assert looser.reshape(4, 2).all(axis=1).tolist() == [True, True, True, True]


@pytest.mark.parametrize("pattern_kind", ["glob", "file"])
def test_glob_and_explicit_files(small_itl, pattern_kind):
    if pattern_kind == "glob":
        inputs = [str(small_itl.directory / "MC_C_*.fits")]
    else:
        inputs = [str(p) for p in small_itl.flats]
    manifest = ingest(inputs)
    assert (manifest.status == "paired").sum() == 8


def _frame(rows):
    frame = pd.DataFrame([dict.fromkeys(MANIFEST_COLUMNS) | row for row in rows])
    return frame.astype({"exptime": float, "mjd": float})


def test_pairs_follow_the_exposure_order_not_the_clock():
    """Two 14.446 s flats, SEQNUM 61 and 62, whose DATE-OBS say 01:59 and 01:00 with other
    flats between: in the camera's exposure order (DAYOBS, SEQNUM), as cp_pipe pairs by
    exposure id, they are neighbours and pair; pair numbers follow the sequence."""
    times = {60: 5.0, 61: 14.446, 62: 14.446, 63: 20.0, 64: 20.0, 59: 5.0}
    clock = {59: 0.01, 60: 0.02, 61: 0.0825, 62: 0.0417, 63: 0.09, 64: 0.1}  # 62 at 01:00
    rows = [
        {"path": f"s{n}", "sensor": "S", "imgtype": "FLAT", "dayobs": 20261207, "seqnum": n,
         "mjd": 61381.0 + clock[n], "exptime": t}
        for n, t in times.items()
    ]  # fmt: skip
    paired = pair_flats(_frame(rows)).set_index("seqnum")
    assert (paired.status == "paired").all()
    assert paired.pair.to_dict() == {59: 0, 60: 0, 61: 1, 62: 1, 63: 2, 64: 2}
    assert paired.loc[[61, 62], "member"].tolist() == [1, 2]


def test_pairing_by_exposure_id_and_by_flux_keyword():
    """EXPID: two by two in exposure order whatever the exposure times (the odd last one
    left, saying why); FLUX: consecutive flats of one value of the keyword, exactly, a flat
    without it unpaired (cp_pipe's matchExposuresType EXPID and FLUX)."""
    flux = [100.0, 100.0, 250.0, 250.0, 250.0, None, 400.0]
    rows = []
    for n, value in enumerate(flux):
        values = json.dumps({} if value is None else {"CCOBFLUX": value})
        rows.append({"path": f"f{n}", "sensor": "S", "imgtype": "FLAT", "dayobs": 1,
                     "seqnum": n, "exptime": 1.0 + n, "header_values": values})  # fmt: skip
    frame = _frame(rows)
    by_id = pair_flats(frame, pairing=PairingRule(match="EXPID")).set_index("seqnum")
    assert by_id.pair.tolist()[:6] == [0, 0, 1, 1, 2, 2]
    assert by_id.loc[6, "status"] == "unpaired" and "odd number" in by_id.loc[6, "reason"]
    by_flux = pair_flats(frame, pairing=PairingRule(match="FLUX")).set_index("seqnum")
    assert by_flux.loc[[0, 1, 2, 3], "pair"].tolist() == [0, 0, 1, 1]
    assert by_flux.loc[4, "reason"].startswith("extra flat at CCOBFLUX 250")
    assert "without the CCOBFLUX keyword" in by_flux.loc[5, "reason"]
    assert by_flux.loc[6, "reason"].startswith("single flat at CCOBFLUX 400")
    by_time = pair_flats(frame).set_index("seqnum")  # every exposure time differs
    assert (by_time.status == "unpaired").all()
    with pytest.raises(ValueError, match="unknown exposure matching 'SEQ'"):
        PairingRule(match="SEQ")


def test_header_values_and_flux_pairing_from_real_files(small_e2v, copy_of):
    """The flats' own headers: a CCOBFLUX written into each (its pair's exposure time
    times 1000) pairs them as their exposure times do; the values of the keywords asked
    for are kept per file, those a file lacks left out."""
    directory = copy_of(small_e2v)
    plain = _flat_rows(ingest([directory]))
    for row in plain.itertuples():
        _set_keys(row.path, CCOBFLUX=round(row.exptime * 1000.0, 3), TEMP6=-101.5)
    _set_keys(plain.path[3], TEMP6=None)
    rule = PairingRule(match="FLUX", header_keys=("TEMP6", "NOSUCHKEY"))
    manifest = _flat_rows(ingest([directory], pairing=rule))
    assert manifest.pair.tolist() == plain.pair.tolist()
    values = manifest.set_index("path").header_values.map(json.loads)
    assert values[plain.path[0]] == {"CCOBFLUX": round(plain.exptime[0] * 1000.0, 3),
                                     "TEMP6": -101.5}  # fmt: skip
    assert "TEMP6" not in values[plain.path[3]]


def test_a_sequencer_change_is_a_warning_in_the_provenance(
    small_e2v, copy_of, tmp_path, caplog, reported_run
):
    """Flats of one PTC taken with two sequencer files (SEQFILE changes after the fourth
    pair; SEQNAME the same throughout): the run warns, naming the sensor and both files in
    order, and ``run.json`` records them; a run whose flats agree records nothing."""
    import logging

    import gpuptc

    directory = copy_of(small_e2v)
    flats = ingest([directory])
    flats = flats[flats.status == "paired"].sort_values(["pair", "member"])
    for row in flats.itertuples():
        seqfile = "FP_E2V_2s_v26.seq" if row.pair < 4 else "FP_E2V_2s_v27.seq"
        _set_keys(row.path, SEQFILE=seqfile, SEQNAME="ptc")
    caplog.set_level(logging.WARNING)
    options = {"backend": "numpy", "models": ["expapprox"], "report": False}
    gpuptc.run(directory, tmp_path / "out", **options)
    provenance = json.loads((tmp_path / "out" / "run.json").read_text())
    expected = {"SEQFILE": ["FP_E2V_2s_v26.seq", "FP_E2V_2s_v27.seq"]}
    assert provenance["sequencer_changes"] == {small_e2v.sensor: expected}
    said = [r.getMessage() for r in caplog.records if "sequencer" in r.getMessage()]
    assert said == [
        f"{small_e2v.sensor}: the flats' sequencer changes during the PTC: "
        "SEQFILE FP_E2V_2s_v26.seq then FP_E2V_2s_v27.seq"
    ]
    _, plain = reported_run  # the session's run of flats that agree
    assert json.loads((plain / "run.json").read_text())["sequencer_changes"] == {}

"""Input from a real Gen3 data repository: the same tables as from its files' directory."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import fitsio
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lsst.daf.butler")

from astropy.io import fits

import gpuptc
import shared_inputs
from butler_repo import add_photodiodes, exposure_id, make_repository
from gpuptc.cli import main
from gpuptc.inputs.butler import ButlerInputError, ingest_butler
from gpuptc.inputs.photodiode import pair_charges, photodiode_file_name
from gpuptc.inputs.remote import InputFiles, read_remote_header
from gpuptc.raws.exposure import RawReadError
from gpuptc.schema import FileStatus
from rawfiles import files_under, set_primary

COLLECTIONS = "LSSTCam/raw/e2v,LSSTCam/raw/itl"
OPTIONS = ["--backend", "numpy", "--models", "expapprox,rhl", "--no-report", "-q"]


def _raws(sensor, into: Path) -> list[Path]:
    into.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in sorted(sensor.directory.glob("MC_*.fits")):
        copies.append(into / path.name)
        shutil.copy(path, copies[-1])
    return copies


def _dark(bias: Path) -> Path:
    dark = bias.with_name(bias.stem + "_dark.fits")
    shutil.copy(bias, dark)
    with fitsio.FITS(str(dark), "rw") as opened:
        opened[0].write_key("IMGTYPE", "DARK")
        opened[0].write_key("SEQNUM", 999)
        opened[0].write_key("OBSID", "MC_C_DARK_000999")
    return dark


@pytest.fixture(scope="module")
def repository(small_e2v, small_itl, tmp_path_factory):
    """Two detectors' flats and biases and a dark, in two collections; the raws' folder."""
    base = tmp_path_factory.mktemp("butler")
    raws = base / "raws"
    e2v, itl = _raws(small_e2v, raws / "e2v"), _raws(small_itl, raws / "itl")
    bias = next(p for p in e2v if fitsio.read_header(str(p), 0)["IMGTYPE"] == "BIAS")
    dark = _dark(bias)
    repo = make_repository(base / "repo", {"LSSTCam/raw/e2v": [*e2v, dark], "LSSTCam/raw/itl": itl})
    dark.rename(base / dark.name)  # the directory run must not see the dark either
    return repo, raws


def test_a_run_from_a_repository_equals_the_run_from_its_files(repository, tmp_path):
    repo, raws = repository
    from_repo, from_files = tmp_path / "repo", tmp_path / "files"
    argv = ["run", "--butler", str(repo), "--collections", COLLECTIONS, "--out", str(from_repo)]
    assert main([*argv, *OPTIONS]) == 0
    assert main(["run", str(raws), "--out", str(from_files), *OPTIONS]) == 0
    for table in ("pairs.parquet", "ptc.parquet", "covariances.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(from_repo / table), pd.read_parquet(from_files / table)
        )
    manifest = pd.read_parquet(from_repo / "manifest.parquet")
    assert manifest["dataset_id"].notna().all() and manifest["detector"].nunique() == 2
    assert not manifest["imgtype"].str.upper().eq("DARK").any()  # the query left it out
    provenance = json.loads((from_repo / "run.json").read_text())
    (butler,) = provenance["butler"]
    assert butler["repo"] == str(repo) and butler["collections"] == COLLECTIONS.split(",")
    assert "observation_type IN ('flat', 'bias')" in butler["where"]
    assert sorted(butler["datasets"]) == sorted(manifest["dataset_id"])


def test_detectors_and_where_narrow_the_selection(repository, small_itl):
    repo, _ = repository
    header = fitsio.read_header(str(sorted(small_itl.directory.glob("MC_*.fits"))[0]), 0)
    name = f"{header['RAFTBAY']}_{header['CCDSLOT']}"
    itl = ingest_butler(repo, COLLECTIONS, detectors=[name])
    assert set(itl["sensor"]) == {small_itl.sensor}
    biases = ingest_butler(repo, COLLECTIONS, where="exposure.observation_type = 'bias'")
    assert set(biases["imgtype"].str.upper()) == {"BIAS"}
    days = ingest_butler(repo, COLLECTIONS, where="exposure.seq_num < limit", bind={"limit": 3})
    assert (days["seqnum"] < 3).all() and len(days)


def test_queries_that_give_nothing_are_clear_errors(repository, tmp_path, capsys):
    repo, _ = repository
    with pytest.raises(ButlerInputError, match="no flat or bias raws"):
        ingest_butler(repo, COLLECTIONS, where="exposure.seq_num > 100000")
    with pytest.raises(ButlerInputError, match="no collection LSSTCam/raw/none"):
        ingest_butler(repo, "LSSTCam/raw/e2v,LSSTCam/raw/none")
    with pytest.raises(ButlerInputError, match="not a data repository"):
        ingest_butler(tmp_path / "nowhere", COLLECTIONS)
    out = tmp_path / "out"
    argv = ["run", "--butler", str(repo), "--collections", "x/y", "--out", str(out), "-q"]
    assert main(argv) == 2
    assert "no collection x/y" in capsys.readouterr().err and not out.exists()
    assert main(["run", "--butler", str(repo), "--out", str(out), "-q"]) == 2
    assert "--butler needs --collections" in capsys.readouterr().err


def test_a_record_that_disagrees_and_a_missing_file_are_rejected(small_e2v, tmp_path):
    """Headers changed after the repository recorded them: beyond 5 ms of exposure time,
    another obs_id or another detector slot are rejected with both values; a file gone."""
    files = _raws(small_e2v, tmp_path / "raws")
    repo = make_repository(tmp_path / "repo", {"LSSTCam/raw/e2v": files})
    flats = [p for p in files if fitsio.read_header(str(p), 0)["IMGTYPE"] == "FLAT"]
    exptime = float(fitsio.read_header(str(flats[0]), 0)["EXPTIME"])
    changes = {
        flats[0]: ("EXPTIME", exptime + 0.05),
        flats[1]: ("OBSID", "MC_C_20990101_000001"),
        flats[2]: ("CCDSLOT", "S00"),
        flats[3]: ("EXPTIME", float(fitsio.read_header(str(flats[3]), 0)["EXPTIME"]) + 0.001),
    }
    for path, (key, value) in changes.items():
        with fitsio.FITS(str(path), "rw") as opened:  # the header now says otherwise
            opened[0].write_key(key, value)
    flats[-1].unlink()
    manifest = ingest_butler(repo, "LSSTCam/raw/e2v").set_index("path")
    reasons = manifest["reason"].fillna("")
    assert f"EXPTIME {exptime + 0.05:.3f} s, record {exptime} s" in reasons[str(flats[0])]
    assert "OBSID MC_C_20990101_000001, record MC_C_" in reasons[str(flats[1])]
    assert "RAFTBAY_CCDSLOT R22_S00, record R22_S" in reasons[str(flats[2])]
    assert manifest.loc[str(flats[3]), "status"] != FileStatus.REJECTED  # within 5 ms
    missing = manifest[reasons.str.contains("file missing")]
    assert len(missing) == 1 and missing.iloc[0]["uri"].endswith(flats[-1].name)
    assert (manifest.loc[[str(p) for p in flats[:3]], "status"] == FileStatus.REJECTED).all()


def test_without_the_butler_package_the_option_is_a_usage_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "lsst.daf.butler", None)
    argv = ["run", "--butler", "repo", "--collections", "a", "--out", str(tmp_path / "o"), "-q"]
    assert main(argv) == 2
    assert "pip install 'gpuptc[butler]'" in capsys.readouterr().err


def test_the_ptc_datasets_go_into_the_repository(repository, tmp_path, capsys):
    """``--output-run``: one ``ptc``, one ``linearizer`` and one ``bfk`` dataset per detector
    in that RUN collection, the run's own files; a second run into the same collection
    fails, writing no outputs."""
    from lsst.daf.butler import Butler

    repo, _ = repository
    out = tmp_path / "out"
    argv = ["run", "--butler", str(repo), "--collections", COLLECTIONS, *OPTIONS]
    assert main([*argv, "--output-run", "u/someone/ptc", "--out", str(out)]) == 0
    butler = Butler.from_config(str(repo))
    dataset_type = butler.get_dataset_type("ptc")
    assert dataset_type.storageClass_name == "PhotonTransferCurveDataset"
    assert set(dataset_type.dimensions.required) == {"instrument", "detector"}
    refs = butler.query_datasets("ptc", collections="u/someone/ptc")
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert sorted(r.dataId["detector"] for r in refs) == sorted(manifest.detector.unique())
    ptc = pd.read_parquet(out / "ptc.parquet")
    recorded = json.loads((out / "run.json").read_text())["butler_output"]
    assert recorded["run"] == "u/someone/ptc"
    for ref in refs:
        sensor = manifest[manifest.detector == ref.dataId["detector"]].sensor.iloc[0]
        stored = Path(butler.getURI(ref).ospath)
        assert stored.read_bytes() == (out / "cp_pipe" / f"{sensor}_ptc.fits").read_bytes()
        assert recorded["datasets"][sensor] == str(ref.id)
        gains = gpuptc.read_ptc_dataset(stored)["ptc"].set_index("amp")["gain"]
        mine = ptc[(ptc.sensor == sensor) & (ptc.model == "expapprox")].set_index("amp")["gain"]
        np.testing.assert_allclose(gains.sort_index(), mine.sort_index(), rtol=1e-12)
    if importlib.util.find_spec("lsst.ip") is None:  # butler.get reaches gpuptc's formatter
        with pytest.raises(ValueError, match="needs the Rubin stack's ip_isr"):
            butler.get(refs[0])
    linearizers = butler.query_datasets("linearizer", collections="u/someone/ptc")
    assert butler.get_dataset_type("linearizer").storageClass_name == "Linearizer"
    assert sorted(r.dataId["detector"] for r in linearizers) == sorted(
        r.dataId["detector"] for r in refs
    )
    for ref in linearizers:
        sensor = manifest[manifest.detector == ref.dataId["detector"]].sensor.iloc[0]
        stored = Path(butler.getURI(ref).ospath)
        written = out / "cp_pipe" / f"{sensor}_linearizer.fits"
        assert stored.read_bytes() == written.read_bytes()
        assert recorded["linearizers"][sensor] == str(ref.id)
        assert (
            gpuptc.read_linearizer(stored).type.tolist()
            == gpuptc.read_linearizer(written).type.tolist()
        )
    if importlib.util.find_spec("lsst.ip") is None:
        with pytest.raises(ValueError, match=r"as lsst\.ip\.isr\.Linearizer needs"):
            butler.get(linearizers[0])
    kernels = butler.query_datasets("bfk", collections="u/someone/ptc")
    assert butler.get_dataset_type("bfk").storageClass_name == "BrighterFatterKernel"
    assert len(kernels) == len(refs)
    for ref in kernels:
        sensor = manifest[manifest.detector == ref.dataId["detector"]].sensor.iloc[0]
        stored = Path(butler.getURI(ref).ospath)
        assert stored.read_bytes() == (out / "cp_pipe" / f"{sensor}_bfk.fits").read_bytes()
        assert recorded["bf_kernels"][sensor] == str(ref.id)
    again = tmp_path / "again"
    assert main([*argv, "--output-run", "u/someone/ptc", "--out", str(again)]) == 1
    assert "could not be put into u/someone/ptc" in capsys.readouterr().err
    assert sorted(p.name for p in again.iterdir()) == ["sensors"]  # kept for the next run
    assert len(butler.query_datasets("ptc", collections="u/someone/ptc")) == len(refs)


def test_output_run_needs_a_repository(tmp_path, capsys, small_e2v):
    out = tmp_path / "out"
    argv = ["run", str(small_e2v.directory), "--output-run", "u/x", "--out", str(out), "-q"]
    assert main(argv) == 2
    assert "--output-run need --butler" in capsys.readouterr().err and not out.exists()


@pytest.fixture
def bucket(monkeypatch):
    """An S3 server on the loopback address (moto) with an empty bucket ``raws``."""
    pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="raws")
    yield s3
    server.stop()


def _uploaded(s3, files: list[Path], folder: str) -> list[str]:
    for path in files:
        s3.upload_file(str(path), "raws", f"{folder}/{path.name}")
    return [f"s3://raws/{folder}/{path.name}" for path in files]


def _bucket_repository(s3, sensor, tmp_path: Path, folder: str) -> Path:
    """A repository of ``sensor``'s raws uploaded to ``s3://raws/<folder>/`` (copies of
    them under ``tmp_path / 'raws'``)."""
    local = _raws(sensor, tmp_path / "raws")
    remote = _uploaded(s3, local, folder)
    headers = dict(zip(remote, local, strict=True))
    return make_repository(tmp_path / "repo", {"LSSTCam/raw/itl": remote}, headers=headers)


def test_a_run_from_object_storage_equals_the_run_from_local_files(
    bucket, small_itl, tmp_path, monkeypatch
):
    """Raws in an S3 bucket: headers read in place, pixels fetched while measuring into a
    cache of one file's size at most, deleted once read; the numbers of the local files."""
    repo = _bucket_repository(bucket, small_itl, tmp_path, "itl")
    cache = tmp_path / "cache"
    monkeypatch.setenv("GPUPTC_CACHE", str(cache))
    monkeypatch.setenv("GPUPTC_CACHE_MB", "1")  # smaller than one file: one at a time
    monkeypatch.setenv("GPUPTC_FETCH_THREADS", "3")
    from_s3, from_files = tmp_path / "s3", tmp_path / "files"
    argv = ["run", "--butler", str(repo), "--collections", "LSSTCam/raw/itl"]
    assert main([*argv, "--out", str(from_s3), *OPTIONS]) == 0
    assert main(["run", str(tmp_path / "raws"), "--out", str(from_files), *OPTIONS]) == 0
    pairs = pd.read_parquet(from_s3 / "pairs.parquet")
    assert pairs["file1"].str.startswith("s3://raws/itl/").all()
    same = pd.read_parquet(from_files / "pairs.parquet")
    pd.testing.assert_frame_equal(
        pairs.drop(columns=["file1", "file2"]), same.drop(columns=["file1", "file2"])
    )
    for table in ("ptc.parquet", "covariances.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(from_s3 / table), pd.read_parquet(from_files / table)
        )
    manifest = pd.read_parquet(from_s3 / "manifest.parquet")
    assert manifest["path"].str.startswith("s3://").all()
    assert not any(cache.rglob("*.fits"))  # every fetched file deleted once read


def test_remote_files_are_fetched_in_order_within_the_budget(bucket, small_itl, tmp_path):
    # the flats, more than twice the budget between them: all fetched at once they exceed
    # it by far (the first six files, biases among them, held 4 % more than the bound
    # below, and a budget that was ignored could pass)
    local = sorted(small_itl.flats)
    remote = _uploaded(bucket, local, "budget")
    assert sum(p.stat().st_size for p in local) > 2 * 2**20
    size = max(p.stat().st_size for p in local)
    with InputFiles(remote, cache=tmp_path, budget_mb=1, threads=4) as files:
        for uri, path in zip(remote, local, strict=True):
            fetched = Path(files.local(uri))
            assert fetched.read_bytes() == path.read_bytes()
            files.release([uri])
            assert not fetched.exists()
        # each file is smaller than the budget: at most 1 MiB plus one file held at once
        assert files.fetched_bytes == sum(p.stat().st_size for p in local)
        assert files.peak_bytes <= 2**20 + size
        again = Path(files.local(remote[0]))  # released files are fetched again when asked
        assert again.read_bytes() == local[0].read_bytes()
    assert not again.exists() and list(tmp_path.iterdir()) == []


def test_a_missing_remote_file_is_a_rejected_pair(bucket, small_itl, tmp_path, monkeypatch):
    repo = _bucket_repository(bucket, small_itl, tmp_path, "gone")
    manifest = ingest_butler(repo, "LSSTCam/raw/itl")
    flats = manifest[manifest.status == FileStatus.PAIRED].sort_values(["pair", "member"])
    gone = flats.iloc[-1]["path"]
    bucket.delete_object(Bucket="raws", Key=gone.removeprefix("s3://raws/"))
    monkeypatch.setenv("GPUPTC_CACHE", str(tmp_path / "cache"))
    measured = gpuptc.measure(manifest, backend="numpy", cov_size=1)  # gone since ingest
    pairs = measured.pairs
    (row,) = measured.rejected.itertuples()
    assert row.path == gone and row.stage == "read" and "cannot be fetched" in row.reason
    assert pairs["pair"].nunique() == len(flats) // 2 - 1
    out = tmp_path / "out"
    argv = ["run", "--butler", str(repo), "--collections", "LSSTCam/raw/itl", "--out", str(out)]
    assert main([*argv, *OPTIONS]) == 3  # found missing at ingest this time
    rejected = pd.read_csv(out / "rejected.csv").set_index("path")
    assert "cannot be read (FileNotFoundError" in rejected.loc[gone, "reason"]
    with pytest.raises(RawReadError, match="cannot be read"):
        read_remote_header(gone)


def test_a_sensor_id_that_names_a_path_goes_into_the_repository_as_a_name(small_itl, tmp_path):
    """A detector whose raws say LSST_NUM ``../../../../../../escaped``: its PTC dataset goes
    into the repository as any other's, and nothing is written outside ``--out`` and the
    repository (the Butler names its files by data id, gpuptc its own by ``file_stem``)."""
    import os

    from lsst.daf.butler import Butler

    hostile_id = "../../../../../../escaped"
    good, hostile = _raws(small_itl, tmp_path / "good"), _raws(small_itl, tmp_path / "bad")
    set_primary(hostile, LSST_NUM=hostile_id, CCDSLOT="S12")  # another detector
    repo = make_repository(tmp_path / "repo", {"LSSTCam/raw/x": [*good, *hostile]})
    before = files_under(tmp_path.parent)
    out = tmp_path / "out"
    argv = ["run", "--butler", str(repo), "--collections", "LSSTCam/raw/x", *OPTIONS]
    assert main([*argv, "--output-run", "u/x/ptc", "--out", str(out)]) == 0
    written = files_under(tmp_path.parent) - before
    assert all(p.startswith((f"{out}{os.sep}", f"{repo}{os.sep}")) for p in written)
    refs = Butler.from_config(str(repo)).query_datasets("ptc", collections="u/x/ptc")
    assert len(refs) == 2
    assert set(pd.read_parquet(out / "ptc.parquet").sensor) == {small_itl.sensor, hostile_id}


def _as_readings_table(text: Path, into: Path) -> Path:
    """The camera's readings file as the table of a repository's ``photodiode`` dataset."""
    time, current = np.loadtxt(text, unpack=True)
    columns = [fits.Column(name="TIME", format="D", array=time)]
    columns.append(fits.Column(name="CURRENT", format="D", array=current))
    path = into / f"{text.stem}.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)]).writeto(path)
    return path


def test_photodiode_datasets_give_the_charges_of_the_files_beside_the_raws(
    tmp_path, tmp_path_factory
):
    """The repository's raws have no readings beside them; the charges come from its
    ``photodiode`` datasets, equal to those the camera's files beside the originals give;
    a flat whose exposure has no dataset falls back to looking beside its raw."""
    sensor = shared_inputs.simulated(
        tmp_path_factory, vendor="e2v", size="small", pairs=3, biases=0, seed=41, photodiode=True
    )
    raws = _raws(sensor, tmp_path / "raws")
    (tmp_path / "photodiode").mkdir()
    readings = {}
    for raw in raws[1:]:  # the first flat's exposure has no dataset
        header = fitsio.read_header(str(raw), 0)
        text = sensor.directory / photodiode_file_name(header["DAYOBS"], header["SEQNUM"])
        readings[exposure_id(header)] = _as_readings_table(text, tmp_path / "photodiode")
    repo = make_repository(tmp_path / "repo", {"LSSTCam/raw/all": raws})
    add_photodiodes(repo, "LSSTCam/photodiode", readings)
    manifest = ingest_butler(repo, "LSSTCam/raw/all,LSSTCam/photodiode")
    named = manifest.set_index("exposure")["photodiode"]
    assert named.drop(exposure_id(fitsio.read_header(str(raws[0]), 0))).to_dict() == {
        exposure: str(path) for exposure, path in readings.items()
    }
    pairs = _pairs_of(manifest)
    charges, missing = pair_charges(pairs, manifest, "TRIMMED_SUM", 1.0)
    original = pairs.assign(
        file1=[str(sensor.directory / Path(p).name) for p in pairs.file1],
        file2=[str(sensor.directory / Path(p).name) for p in pairs.file2],
    )
    expected, _ = pair_charges(original, gpuptc.ingest([sensor.directory]), "TRIMMED_SUM", 1.0)
    assert list(missing) == [str(raws[0])]
    assert "no photodiode readings beside it" in missing[str(raws[0])]
    first = pairs.pair[(pairs.file1 == str(raws[0])) | (pairs.file2 == str(raws[0]))].item()
    assert np.isnan(charges[first])
    np.testing.assert_allclose(charges.drop(first), expected.drop(first), rtol=1e-12)


def _pairs_of(manifest):
    """One row per pair: its two files and exposure time."""
    flats = manifest[manifest.status == FileStatus.PAIRED].sort_values(["pair", "member"])
    grouped = flats.groupby("pair")
    return pd.DataFrame(
        {
            "pair": list(grouped.groups),
            "file1": grouped.path.first().to_numpy(),
            "file2": grouped.path.last().to_numpy(),
            "exptime": grouped.exptime.first().to_numpy(),
        }
    )

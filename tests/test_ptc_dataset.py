"""cp_pipe's PTC calibration: written by a run, read back, recognised, refitted."""

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

import gpuptc
from gpuptc.cli import main
from gpuptc.formats.ptc_dataset import PtcDatasetError
from gpuptc.inputs.manifest import ingest
from gpuptc.products.cp_pipe_ptc import detector_number, read_ptc_dataset, write_ptc_dataset
from gpuptc.schema import FileStatus, PairStatus, ptc_dataset_name

SMALL = {"extract__cov_size": 4, "extract__min_pixels_covariance": 100, "solve__fullcov_size": 3}
MODELS = ["expapprox", "fullcov", "fullcov_nob"]

# ip_isr python/lsst/ip/isr/ptcDataset.py (PhotonTransferCurveDataset, _VERSION 2.6),
# toTable and fromTable: every column of a schema-2.6 file, and its shape per amplifier
# row (N pairs, M = COV_MATRIX_SIDE, F = COV_MATRIX_SIDE_FULL_COV_FIT, P fit parameters)
SCHEMA_26 = {
    "AMPLIFIER_NAME": ("str", ()),
    "PTC_FIT_TYPE": ("str", ()),
    "COV_MATRIX_SIDE": ("int64", ()),
    "COV_MATRIX_SIDE_FULL_COV_FIT": ("int64", ()),
    "NPIXEL_COVARIANCES": ("int64", ()),
    **dict.fromkeys(
        [
            "GAIN",
            "GAIN_ERR",
            "GAIN_UNADJUSTED",
            "NOISE",
            "NOISE_ERR",
            "OVERSCAN_MEDIAN",
            "OVERSCAN_MEDIAN_SIGMA",
            "PTC_FIT_CHI_SQ",
            "PTC_TURNOFF",
            "PTC_TURNOFF_SAMPLING_ERROR",
            "PTC_ROLLOFF",
            "PTC_ROLLOFF_ERROR",
            "PTC_ROLLOFF_TAU",
            "PTC_ROLLOFF_TAU_ERROR",
        ],
        ("float64", ()),
    ),
    **dict.fromkeys(
        [
            "INPUT_EXP_PAIR_MJD_START",
            "RAW_EXP_TIMES",
            "RAW_MEANS",
            "RAW_VARS",
            "RAW_DELTAS",
            "ROW_MEAN_VARIANCE",
            "GAIN_LIST",
            "OVERSCAN_MEDIAN_LIST",
            "NOISE_LIST",
            "HIST_VARS",
            "HIST_CHI2_DOFS",
            "KS_PVALUES",
            "PHOTO_CHARGE",
            "PHOTO_CHARGE_DELTAS",
            "AMP_OFFSETS",
            "FINAL_VARS",
            "FINAL_MODEL_VARS",
            "FINAL_MEANS",
        ],
        ("float64", ("N",)),
    ),
    "EXP_ID_MASK": ("bool", ("N",)),
    "EXP_ID_ROLLOFF_MASK": ("bool", ("N",)),
    "INPUT_EXP_ID_PAIRS": ("int64", ("N", 2)),
    "COVARIANCES": ("float64", ("N*M*M",)),
    "COVARIANCES_SQRT_WEIGHTS": ("float64", ("N*M*M",)),
    "COVARIANCES_MODEL": ("float64", ("N*F*F",)),
    "A_MATRIX": ("float64", ("F*F",)),
    "B_MATRIX": ("float64", ("F*F",)),
    "NOISE_MATRIX": ("float64", ("F*F",)),
    "PTC_FIT_PARS": ("float64", ("P",)),
    "PTC_FIT_PARS_ERROR": ("float64", ("P",)),
    "BAD_AMPS": ("str", None),
}
HEADER_26 = {
    "OBSTYPE": "PTC",
    "PTC_SCHEMA": "Gen3 Photon Transfer Curve",
    "PTC_VERSION": 2.6,
    "CALIBCLS": "lsst.ip.isr.ptcDataset.PhotonTransferCurveDataset",
}
AMP_NAMES = [f"C1{k}" for k in range(8)] + [f"C0{k}" for k in range(7, -1, -1)]


@pytest.fixture(scope="module")
def run_out(small_e2v, tmp_path_factory):
    out = tmp_path_factory.mktemp("ptc") / "out"
    result = gpuptc.run(
        small_e2v.directory, out, backend="numpy", models=MODELS, report=False, **SMALL
    )
    assert result.exit_code == 0
    return out, result.tables


@pytest.fixture(scope="module")
def fullcov_file(run_out, small_e2v):
    out, tables = run_out
    path = out.parent / "fullcov_ptc.fits"
    return write_ptc_dataset(path, tables, small_e2v.sensor, "fullcov", tables["manifest"])


def _sizes(n, m, f, p):
    return {"N": n, "M": m, "F": f, "P": p}


def _expected_length(shape, sizes):
    length = 1
    for part in shape:
        length *= eval(part, {}, sizes) if isinstance(part, str) else part
    return length


@pytest.mark.parametrize(
    "model, fit_type, parameters",
    [("expapprox", "EXPAPPROXIMATION", 3), ("fullcov", "FULLCOVARIANCE", 1)],
)
def test_the_file_has_schema_26(run_out, small_e2v, model, fit_type, parameters, tmp_path):
    out, tables = run_out
    path = (
        out / ptc_dataset_name(small_e2v.sensor)
        if model == "expapprox"
        else write_ptc_dataset(
            tmp_path / "f.fits", tables, small_e2v.sensor, model, tables["manifest"]
        )
    )
    with fits.open(path) as hdus:
        assert len(hdus) == 2 and hdus[0].data is None
        assert hdus[0].header["ORIGIN"] == "gpuptc"
        header, data = hdus[1].header, hdus[1].data
        assert {k: header[k] for k in HEADER_26} == HEADER_26
        assert isinstance(header["PTC_VERSION"], float)
        assert header["PTC_FIT_TYPE"] == fit_type and header["DET_SER"] == small_e2v.sensor
        assert set(data.columns.names) == set(SCHEMA_26)
        assert list(data["AMPLIFIER_NAME"]) == AMP_NAMES
        n = small_e2v.config.pairs
        sizes = _sizes(n, 4, 3, parameters)
        assert set(data["COV_MATRIX_SIDE"]) == {4} and set(
            data["COV_MATRIX_SIDE_FULL_COV_FIT"]
        ) == {3}
        for name, (dtype, shape) in SCHEMA_26.items():
            column = np.asarray(data[name])
            if dtype == "str":
                assert column.dtype.kind in "SU", name
                continue
            assert column.dtype.newbyteorder("=") == np.dtype(dtype), name
            assert column.shape[0] == 16, name
            assert int(np.prod(column.shape[1:])) == _expected_length(shape, sizes), name


def test_round_trip_gives_the_same_tables(run_out, fullcov_file, small_e2v):
    _, tables = run_out
    back = read_ptc_dataset(fullcov_file)
    keys = ["pair", "amp"]
    mine = tables["pairs"].sort_values(keys).reset_index(drop=True)
    read = back["pairs"].sort_values(keys).reset_index(drop=True)
    for column in (
        "exptime",
        "mjd",
        "mean",
        "var",
        "cp_pipe_gain",
        "read_noise_adu",
        "overscan_level",
    ):
        np.testing.assert_array_equal(read[column], mine[column], err_msg=column)
    np.testing.assert_allclose(read["mean1"], mine["mean1"], rtol=1e-12)
    assert (read["used"] == mine["used"]).all()
    lag = ["pair", "amp", "i", "j"]
    cov = tables["covariances"].sort_values(lag).reset_index(drop=True)
    cov_back = back["covariances"].sort_values(lag).reset_index(drop=True)
    np.testing.assert_array_equal(cov_back["cov"], cov["cov"])
    assert (cov_back["npix"] == cov["npix"]).all()  # from the weights
    fit = tables["ptc"][tables["ptc"]["model"] == "fullcov"].set_index("amp")
    fit_back = back["ptc"].set_index("amp")
    for column in ("gain", "gain_err", "noise", "noise_err", "a00", "turnoff", "chi2_dof"):
        np.testing.assert_array_equal(fit_back[column], fit[column], err_msg=column)
    matrices = tables["fullcov"][tables["fullcov"]["model"] == "fullcov"]
    a = matrices.sort_values(["amp", "i", "j"])["a"].to_numpy()
    np.testing.assert_array_equal(back["fullcov"].sort_values(["amp", "i", "j"])["a"], a)


def test_exposure_ids_and_detector(run_out, fullcov_file):
    _, tables = run_out
    with fits.open(fullcov_file) as hdus:
        ids = np.asarray(hdus[1].data["INPUT_EXP_ID_PAIRS"][0])
        header = hdus[1].header
    manifest = tables["manifest"].set_index("path")
    first = tables["pairs"][tables["pairs"]["amp"] == 1].sort_values("pair")
    for column, files in enumerate((first["file1"], first["file2"])):
        rows = manifest.loc[list(files)]
        expected = rows["dayobs"].astype(int) * 100000 + rows["seqnum"].astype(int)
        np.testing.assert_array_equal(ids[:, column], expected)
    assert header["DET_NAME"] == f"{header['RAFTNAME']}_{header['SLOTNAME']}"
    assert header["DETECTOR"] == detector_number(header["RAFTNAME"], header["SLOTNAME"])


def test_detector_numbers_follow_lsstcam():
    assert detector_number("R22", "S11") == 94
    assert detector_number("R01", "S00") == 0
    assert detector_number("R43", "S22") == 188
    assert detector_number("R00", "SG0") is None  # a corner raft's guider


def test_refit_reproduces_the_original_fit(run_out, fullcov_file, tmp_path):
    _, tables = run_out
    result = gpuptc.refit(fullcov_file, tmp_path / "refit", models=MODELS, report=False, **SMALL)
    assert result.exit_code == 0
    original = tables["ptc"].set_index(["model", "amp"])
    refitted = result.tables["ptc"].set_index(["model", "amp"])
    for model in MODELS:
        ratio = refitted.loc[model, "gain"] / original.loc[model, "gain"]
        np.testing.assert_allclose(ratio, 1, atol=1e-9, err_msg=model)
    keys = ["model", "amp", "i", "j"]
    a0 = tables["fullcov"].set_index(keys)
    a1 = result.tables["fullcov"].set_index(keys)
    pulls = ((a1["a"] - a0["a"]) / a0["a_err"]).abs()
    assert pulls.max() < 0.01
    rewritten = next((tmp_path / "refit" / "cp_pipe").glob("*_ptc.fits"))
    with fits.open(rewritten) as new, fits.open(fullcov_file) as old:
        ids = [np.asarray(h[1].data["INPUT_EXP_ID_PAIRS"]) for h in (new, old)]
    np.testing.assert_array_equal(ids[0], ids[1])  # the exposure ids survive a refit
    # the kernels come from the refitted PTC as from the run's own
    kernels = result.tables["bf_kernel"].set_index("amp")
    assert (kernels.status == "ok").all() and len(kernels) == 16
    for amp, row in tables["bf_kernel"].set_index("amp").iterrows():
        scale = np.abs(row.kernel).max()
        np.testing.assert_allclose(kernels.kernel[amp], row.kernel, rtol=0, atol=1e-6 * scale)
    assert next((tmp_path / "refit" / "cp_pipe").glob("*_bfk.fits")).exists()


def _older(path, target, version, drop, bad_amps=(), nan_pair=None):
    """The file as an older PTC_VERSION would have it: columns dropped, bad amps, NaNs."""
    with fits.open(path) as hdus:
        data = hdus[1].data
        columns = []
        for column in data.columns:
            if column.name in drop or column.name == "BAD_AMPS":
                continue
            array = np.array(data[column.name])
            if column.name == "RAW_MEANS" and nan_pair is not None:
                array[:, nan_pair] = np.nan
            columns.append(
                fits.Column(name=column.name, format=column.format, dim=column.dim, array=array)
            )
        names = np.array([list(bad_amps)] * len(data), dtype="U3")
        width = max(1, len(bad_amps))
        columns.append(
            fits.Column(
                name="BAD_AMPS",
                format=f"{3 * width}A",
                dim=f"(3,{width})",
                array=names if bad_amps else np.full((len(data), 1), ""),
            )
        )
        table = fits.BinTableHDU.from_columns(columns)
        for key in ("OBSTYPE", "PTC_FIT_TYPE", "DET_SER"):
            table.header[f"HIERARCH {key}" if len(key) > 8 else key] = hdus[1].header[key]
        table.header["HIERARCH PTC_VERSION"] = version
        fits.HDUList([fits.PrimaryHDU(), table]).writeto(target)
    return target


def test_an_older_cp_pipe_file_with_bad_amps_and_nans(fullcov_file, tmp_path):
    newer = [
        "RAW_DELTAS",
        "PHOTO_CHARGE_DELTAS",
        "NPIXEL_COVARIANCES",
        "OVERSCAN_MEDIAN",
        "OVERSCAN_MEDIAN_SIGMA",
        "PTC_ROLLOFF",
        "PTC_ROLLOFF_ERROR",
        "PTC_ROLLOFF_TAU",
        "PTC_ROLLOFF_TAU_ERROR",
        "EXP_ID_ROLLOFF_MASK",
        "INPUT_EXP_PAIR_MJD_START",
        "OVERSCAN_MEDIAN_LIST",
    ]
    path = _older(fullcov_file, tmp_path / "old.fits", 2.1, newer, bad_amps=["C11"], nan_pair=2)
    tables = read_ptc_dataset(path)
    ptc = tables["ptc"].set_index("amp")
    assert ptc.loc[2, "status"] == "bad_amp" and (ptc.drop(2)["status"] == "ok").all()
    pairs = tables["pairs"]
    assert (pairs.loc[pairs["pair"] == 2, "status"] == PairStatus.NOT_MEASURABLE).all()
    assert pairs["overscan_level"].isna().all() and pairs["mjd"].isna().all()
    assert set(tables["ptc"].attrs["missing_columns"]) == set(newer)
    assert tables["ptc"].attrs["ptc_version"] == 2.1
    refit = gpuptc.refit(path, tmp_path / "refit", models=["expapprox"], report=False)
    used = refit.tables["pairs"]
    assert not used.loc[used["pair"] == 2, "used"].any()  # the NaN pair is never fitted


def test_an_old_file_missing_a_column_of_its_own_version_is_rejected(fullcov_file, tmp_path):
    path = _older(fullcov_file, tmp_path / "broken.fits", 2.6, ["RAW_DELTAS"])
    with pytest.raises(
        PtcDatasetError, match=r"broken.fits: PTC_VERSION 2.6 table lacks RAW_DELTAS"
    ):
        read_ptc_dataset(path)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda raw, p: p.write_bytes(raw.read_bytes()), "not a PTC dataset \\(OBSTYPE"),
        (lambda raw, p: p.write_bytes(b"SIMPLE  = T" + b" " * 100), "not a readable FITS table"),
    ],
)
def test_a_file_that_is_not_a_ptc_dataset_is_rejected(small_e2v, tmp_path, make, reason):
    raw = sorted(small_e2v.directory.glob("*.fits"))[0]
    path = tmp_path / "not_a_ptc.fits"
    make(raw, path)
    with pytest.raises(PtcDatasetError, match=f"not_a_ptc.fits: {reason}"):
        read_ptc_dataset(path)


def test_ingest_recognises_cp_pipe_files_not_gpuptc_ones(run_out, fullcov_file, tmp_path):
    out, _ = run_out
    cp_pipe = tmp_path / "from_cp_pipe.fits"
    with fits.open(fullcov_file) as hdus:
        del hdus[0].header["ORIGIN"]
        hdus.writeto(cp_pipe)
    manifest = ingest([cp_pipe, out / "cp_pipe"])
    status = manifest.set_index("path")["status"]
    assert status[str(cp_pipe)] == FileStatus.PTC_DATASET
    assert manifest.set_index("path").loc[str(cp_pipe), "sensor"] == "E2V-CCD250-111"
    ours = [p for p in status.index if p.startswith(str(out))]
    assert ours and all(status[p] == FileStatus.IGNORED for p in ours)


def test_gpuptc_fit_from_the_command_line(fullcov_file, tmp_path, capsys):
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not fits")
    out = tmp_path / "out"
    code = main(
        [
            "fit",
            str(fullcov_file),
            str(junk),
            "--out",
            str(out),
            "--models",
            "expapprox,fullcov",
            "--ptc-model",
            "fullcov",
            "-q",
        ]
    )
    assert code == 3  # written, one file rejected
    assert "junk.fits" in pd.read_csv(out / "rejected.csv")["path"].iloc[0]
    assert (out / "report" / "index.html").exists()
    written = read_ptc_dataset(next((out / "cp_pipe").glob("*_ptc.fits")))
    assert written["ptc"]["model"].eq("fullcov").all()
    assert "Outputs:" in capsys.readouterr().out


def test_a_run_compares_with_a_cp_pipe_product_among_its_inputs(run_out, small_e2v, tmp_path):
    out, _ = run_out
    product = tmp_path / "cp_pipe_product.fits"
    with fits.open(out / ptc_dataset_name(small_e2v.sensor)) as hdus:
        del hdus[0].header["ORIGIN"]  # as cp_pipe writes it
        hdus.writeto(product)
    inputs = [small_e2v.directory, product]
    result = gpuptc.run(
        inputs, tmp_path / "out", backend="numpy", models=MODELS, report=False, **SMALL
    )
    comparison = result.tables["comparison"]
    assert set(comparison.reference) == {"eotest", "cp_pipe"}
    mine = comparison[(comparison.reference == "cp_pipe") & (comparison.method == "expapprox")]
    assert set(mine.reference_file) == {str(product)}
    for quantity in ("gain", "noise", "turnoff", "a00"):
        ratios = mine[mine.quantity == quantity].ratio
        np.testing.assert_allclose(ratios, 1, rtol=1e-12, err_msg=quantity)  # the same fit


def test_auxiliary_header_values_reach_the_pairs_and_the_dataset(small_e2v, copy_of, tmp_path):
    """``auxiliary_header_keys`` (cp_pipe's auxiliaryHeaderKeys; LSSTCam: TEMP6): each
    pair keeps its first flat's value (NaN where that flat has none), in ``pairs.parquet``
    as ``aux_TEMP6`` and in the PTC dataset as ip_isr's ``PTCAUX_TEMP6`` per amp."""
    import fitsio

    directory = copy_of(small_e2v)
    flats = ingest([directory])
    flats = flats[flats.status == "paired"].sort_values(["pair", "member"])
    temperature = {}
    for k, row in enumerate(flats.itertuples()):
        with fitsio.FITS(row.path, "rw") as f:
            if (row.pair, row.member) == (3, 1):
                continue  # this pair's first flat says nothing
            temperature[(row.pair, row.member)] = -101.0 - 0.25 * k
            f[0].write_key("TEMP6", temperature[(row.pair, row.member)])
    out = tmp_path / "out"
    options = {**SMALL, "extract__auxiliary_header_keys": ("TEMP6",)}
    result = gpuptc.run(directory, out, backend="numpy", models=["expapprox"], report=False,
                        **options)  # fmt: skip
    assert result.exit_code == 0
    pairs = pd.read_parquet(out / "pairs.parquet")
    expected = [temperature.get((p, 1), np.nan) for p in range(8)]
    for _, mine in pairs.groupby("amp"):
        np.testing.assert_array_equal(mine.sort_values("pair").aux_TEMP6, expected)
    with fits.open(out / ptc_dataset_name(small_e2v.sensor)) as hdus:
        written = np.asarray(hdus[1].data["PTCAUX_TEMP6"])
    assert written.shape == (16, 8)
    np.testing.assert_array_equal(written, np.tile(expected, (16, 1)))
    back = read_ptc_dataset(out / ptc_dataset_name(small_e2v.sensor))["pairs"]
    for _, mine in back.groupby("amp"):  # and read back as the pairs' aux_TEMP6
        np.testing.assert_array_equal(mine.sort_values("pair").aux_TEMP6, expected)

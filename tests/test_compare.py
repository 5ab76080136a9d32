import numpy as np
import pytest
from astropy.io import fits

import gpuptc
from gpuptc.formats.eotest import read_eotest_results
from gpuptc.products.compare import COMPARISON_COLUMNS, QUANTITIES, eotest_references


@pytest.fixture(scope="module")
def results(small_e2v):
    manifest = gpuptc.ingest([small_e2v.directory])
    pairs, covs = gpuptc.measure(
        manifest, backend="numpy", cov_size=3, extract__min_pixels_covariance=100
    )
    ptc, _, fitted = gpuptc.fit(
        pairs, covs, preset="eotest", models=["expapprox", "rhl", "quadratic"]
    )
    return manifest, ptc, fitted


def _gains(comparison):
    return comparison[comparison.quantity == "gain"].reset_index(drop=True)


def test_comparison_table(small_e2v, results):
    manifest, ptc, _ = results
    comparison = gpuptc.compare(ptc, manifest)
    assert list(comparison.columns) == list(COMPARISON_COLUMNS)
    assert len(comparison) == 16 * 3 * len(QUANTITIES)  # amps x methods x quantities, 1 ref
    assert set(comparison.reference) == {"eotest"}
    assert set(comparison.reference_file) == {str(small_e2v.eotest_path)}
    reference = read_eotest_results(small_e2v.eotest_path).set_index("AMP")
    mine = comparison[(comparison.amp == 5) & (comparison.method == "expapprox")]
    row = mine.set_index("quantity")
    assert row.loc["gain", "reference_value"] == pytest.approx(float(reference.PTC_GAIN[5]))
    assert row.loc["noise", "reference_value"] == pytest.approx(float(reference.PTC_NOISE[5]))
    assert row.loc["a00", "reference_value"] == pytest.approx(-float(reference.PTC_A00[5]))
    fit = ptc[(ptc.amp == 5) & (ptc.model == "expapprox")].iloc[0]
    assert row.loc["turnoff", "value"] == fit.turnoff and row.loc["a00", "value"] == fit.a00
    assert row.loc["gain", "ratio"] == pytest.approx(fit.gain / float(reference.PTC_GAIN[5]))
    expapprox = _gains(comparison[comparison.method == "expapprox"])
    assert np.abs(expapprox.ratio - 1).median() < 0.03  # 1 % EOTEST scatter, small images
    a00 = comparison[(comparison.method == "expapprox") & (comparison.quantity == "a00")]
    assert (a00.reference_value < 0).all() and a00.ratio.median() > 0  # EOTEST sign undone
    by_path = _gains(gpuptc.compare(ptc, [small_e2v.eotest_path]))
    np.testing.assert_allclose(by_path.reference_value, _gains(comparison).reference_value)
    alone = gpuptc.compare(ptc)
    assert set(alone.reference) == {"none"} and alone.reference_value.isna().all()
    assert _gains(alone).value.notna().all()
    by_mapping = _gains(gpuptc.compare(ptc, {small_e2v.sensor: small_e2v.eotest_path}))
    np.testing.assert_allclose(by_mapping.reference_value, _gains(comparison).reference_value)
    elsewhere = gpuptc.compare(ptc, {"OTHER-SENSOR": small_e2v.eotest_path})
    assert elsewhere.reference_value.isna().all()


def test_eotest_files_written_and_read_back(small_e2v, results, tmp_path):
    manifest, ptc, fitted = results
    paths = gpuptc.write_eotest_files(tmp_path, ptc, fitted, manifest=manifest)
    names = sorted(p.name for p in paths)
    assert names == [f"{small_e2v.sensor}_eotest_results.fits", f"{small_e2v.sensor}_ptc.fits"]
    amplifier = read_eotest_results(tmp_path / names[0])
    expapprox = ptc[ptc.model == "expapprox"].sort_values("amp")
    np.testing.assert_allclose(amplifier.PTC_GAIN, expapprox.gain, rtol=1e-6)
    np.testing.assert_allclose(amplifier.PTC_A00, -expapprox.a00, rtol=1e-6)
    with fits.open(tmp_path / names[0]) as hdus:
        formats = {c.name: c.format for c in hdus["AMPLIFIER_RESULTS"].columns}
        assert formats["AMP"] == "I" and formats["PTC_TURNOFF"] == "E"
        assert hdus[0].header["ORIGIN"] == "gpuptc"
    with fits.open(tmp_path / names[1]) as hdus:
        table = hdus["PTC_STATS"]
        assert hdus[0].header["NAMPS"] == 16
        formats = {c.name: c.format for c in table.columns}
        assert formats["EXPOSURE"] == "E" and formats["AMP01_DISCARD"] == "J"
        assert formats["SEQNUM"] == "J" and formats["DAYOBS"] == "J"
        assert len(table.data) == 8
        first = fitted[(fitted.pair == 0) & (fitted.amp == 16)].iloc[0]
        assert table.data["AMP16_MEAN"][0] == pytest.approx(first["mean"], rel=1e-6)
        assert table.data["SEQNUM"][0] == manifest.set_index("path").loc[first.file1, "seqnum"]
        assert table.data["DAYOBS"][0] > 20250000
    # our own files are never taken back as inputs or references
    assert set(gpuptc.ingest([tmp_path]).status) == {"ignored"}
    assert eotest_references([tmp_path / names[0]], [small_e2v.sensor]) == {}

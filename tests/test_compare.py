import numpy as np
import pytest
from astropy.io import fits

import gpuptc
from gpuptc.compare import COMPARISON_COLUMNS, eotest_references
from gpuptc.io.eotest import read_eotest_results


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


def test_comparison_table(small_e2v, results):
    manifest, ptc, _ = results
    comparison = gpuptc.compare(ptc, manifest)
    assert list(comparison.columns) == list(COMPARISON_COLUMNS)
    assert len(comparison) == 16 * 3
    reference = read_eotest_results(small_e2v.eotest_path).set_index("AMP")["PTC_GAIN"]
    row = comparison[(comparison.amp == 5) & (comparison.method == "expapprox")].iloc[0]
    assert row.eotest_gain == pytest.approx(float(reference[5]))
    assert row.ratio == pytest.approx(row.gain / row.eotest_gain)
    expapprox = comparison[comparison.method == "expapprox"]
    assert np.abs(expapprox.ratio - 1).median() < 0.03  # 1 % EOTEST scatter, small images
    by_path = gpuptc.compare(ptc, [small_e2v.eotest_path])
    np.testing.assert_allclose(by_path.eotest_gain, comparison.eotest_gain)
    alone = gpuptc.compare(ptc)
    assert alone.eotest_gain.isna().all() and alone.gain.notna().all()
    by_mapping = gpuptc.compare(ptc, {small_e2v.sensor: small_e2v.eotest_path})
    np.testing.assert_allclose(by_mapping.eotest_gain, comparison.eotest_gain)
    elsewhere = gpuptc.compare(ptc, {"OTHER-SENSOR": small_e2v.eotest_path})
    assert elsewhere.eotest_gain.isna().all()


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

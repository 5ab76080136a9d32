"""cp_pipe's Gaussianity test of each pair's difference image (``extract.ks_test``).

Against a straightforward reading of cp_pipe's ``computeGaussianHistogramParameters``
(``cpPtcExtract.py`` at f029a3f2): NumPy's histogram, lmfit's ``GaussianModel`` fitted by
least squares with 1/sqrt(count) weights, SciPy's ``ks_1samp`` against the fitted normal;
on every backend. And on the simulator: a pair with a planted burst of cosmic rays is cut
by the test, and by nothing else.
"""

import numpy as np
import pandas as pd
from scipy import special, stats

import gpuptc
from backends import host
from gpuptc.config import ExtractConfig
from gpuptc.kernels.generic import normal_cdf
from gpuptc.measuring.gaussianity import gaussianity


def _reference(diff: np.ndarray, mu1: float, mu2: float, config: ExtractConfig):
    """cp_pipe's steps for one amp's difference (its good pixels)."""
    from lmfit.models import GaussianModel

    if len(diff) < config.ks_min_values:
        return np.nan, np.nan, 0.0
    limit = config.ks_limit_multiplier * np.sqrt((mu1 + mu2) / 2.0)
    counts, edges = np.histogram(diff, bins=config.ks_bins, range=[-limit, limit])
    counts = counts.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2.0
    errors = np.sqrt(counts)
    errors[errors == 0.0] = 1.0
    model = GaussianModel()
    out = model.fit(
        counts, model.guess(counts, x=centres), x=centres, weights=1.0 / errors,
        method="least_squares",
    )  # fmt: skip
    chi2 = np.sum(out.residual**2) / (len(counts) - 3)
    sigma = out.params["sigma"].value
    pvalue = stats.ks_1samp(diff, stats.norm.cdf, (out.params["center"].value, sigma)).pvalue
    return sigma**2, chi2, 0.0 if pvalue < 1e-15 else pvalue


def _differences(rng):
    """Three amps of two pairs: Gaussian, a burst of cosmic rays in one flat, a light
    leak across one flat; the last amp of the second pair with too few good pixels."""
    level = 5000.0
    flats = rng.poisson(level, (2, 2, 3, 3000)).astype(np.float64)
    hits = rng.random(3000) < 0.06
    flats[0, 0, 1, hits] += 60.0 * np.sqrt(level)  # the burst
    flats[1, 1, 2] += np.linspace(0.0, 6.0 * np.sqrt(level), 3000)  # the leak
    good = np.ones(flats.shape, bool)
    good[1, :, 0, 60:] = False  # 60 good pixels: too few
    return flats, good


def test_the_test_is_cp_pipes_on_every_backend(backend):
    rng = np.random.default_rng(7)
    flats, good = _differences(rng)
    both = good[:, 0] & good[:, 1]
    mean1 = np.array([[np.mean(flats[p, 0, a][both[p, a]]) for a in range(3)] for p in range(2)])
    mean2 = np.array([[np.mean(flats[p, 1, a][both[p, a]]) for a in range(3)] for p in range(2)])
    config = ExtractConfig(ks_test=True)
    xp, device = backend.xp, backend.device
    on = [xp.asarray(a, device=device) for a in (flats[:, 0], flats[:, 1], both, mean1, mean2)]
    found = {k: host(v) for k, v in gaussianity(*on, config, backend).items()}
    for p in range(2):
        for a in range(3):
            diff = (flats[p, 0, a] - flats[p, 1, a])[both[p, a]]
            var, chi2, pvalue = _reference(diff, mean1[p, a], mean2[p, a], config)
            where = f"pair {p}, amp {a}"
            np.testing.assert_allclose(found["hist_var"][p, a], var, rtol=1e-6, err_msg=where)
            np.testing.assert_allclose(found["hist_chi2_dof"][p, a], chi2, rtol=1e-5,
                                       err_msg=where)  # fmt: skip
            np.testing.assert_allclose(found["ks_pvalue"][p, a], pvalue, rtol=1e-3, atol=1e-12,
                                       err_msg=where)  # fmt: skip
    passed = found["ks_pvalue"] >= 0.01
    assert passed.tolist() == [[True, False, True], [False, True, False]]  # too few: p = 0
    assert np.isnan(found["hist_var"][1, 0]) and found["ks_pvalue"][1, 0] == 0.0


def test_the_normal_distribution_function_is_scipys():
    z = np.linspace(-9.0, 9.0, 20001)
    np.testing.assert_allclose(normal_cdf(z, np), special.ndtr(z), rtol=1.2e-7, atol=1e-15)


def test_a_burst_of_cosmic_rays_is_cut_by_the_test_and_nothing_else(small_e2v, copy_of, tmp_path):
    """One flat of pair 4 of a small simulated sensor hit on 6 % of its pixels in every
    amp (60 sqrt(mean) ADU each): with the test on, that pair, and only it, is
    ``not_gaussian`` on every amp and left out of the fits, beside the saturated pair 7
    (above full well, never fitted anyway); every other pair passes, those below it keeping
    their place in the fits; with the test off, pair 4 is measured and fitted like its
    neighbours (the clipped statistics shrug the hits off)."""
    import fitsio

    directory = copy_of(small_e2v)
    manifest = gpuptc.ingest([directory])
    target = manifest[(manifest.pair == 4) & (manifest.member == 1)].path.iloc[0]
    rng = np.random.default_rng(3)
    with fitsio.FITS(target, "rw") as f:
        for hdu in range(1, 17):
            pixels = f[hdu].read()
            hit = rng.random(pixels.shape) < 0.06
            pixels[hit] += int(60 * np.sqrt(np.median(pixels)))
            f[hdu].write(pixels)
    runs = {}
    for ks_test in (True, False):
        out = tmp_path / f"ks_{ks_test}"
        gpuptc.run(directory, out, backend="numpy", models=["expapprox"], report=False,
                   extract__ks_test=ks_test)  # fmt: skip
        runs[ks_test] = pd.read_parquet(out / "pairs.parquet")
    tested, plain = runs[True], runs[False]
    cut = tested[tested.status == "not_gaussian"]
    assert (cut.pair == 4).sum() == 16 and not cut.used.any()
    saturated = cut[cut.pair != 4]  # above full well: not Gaussian either, never fitted
    assert set(saturated.pair) == {7}
    key = ["pair", "amp"]
    assert not plain.set_index(key).loc[saturated.set_index(key).index, "used"].any()
    others = tested[~tested.pair.isin([4, 7])]
    assert (others.ks_pvalue >= 0.01).all() and (others.status != "not_gaussian").all()
    below = [0, 1, 2, 3]  # the pairs above 4 near the turnoff may be selected otherwise
    kept = plain[plain.pair.isin(below)].set_index(key).used
    assert (tested[tested.pair.isin(below)].set_index(key).used == kept).all()
    assert (plain.ks_pvalue == 1.0).all() and plain.hist_var.isna().all()
    hit = plain[plain.pair == 4]
    neighbour = plain[plain.pair == 3]
    assert hit.status.tolist() == neighbour.status.tolist() and hit.used.sum() >= 12
    rejected = pd.read_csv(tmp_path / "ks_True" / "rejected.csv")
    assert rejected.reason.str.contains("not Gaussian").sum() == len(cut)

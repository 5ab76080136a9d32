"""cp_pipe's ``test_lsstcam_samples``: six LSSTCam amplifiers' PTCs (``tests/data/ptc``),
solved with cp_pipe's default configuration with and without its rolloff model.

Asserted as there (cp_pipe ``tests/test_ptc.py`` at f029a3f2): the turnoff cp_pipe expects
for each curve, exactly; with the rolloff model, on the dense curves a rolloff below the
turnoff and within 10 % of it, on the sparse curves (no pair past the turnoff to fit) the
rolloff equal to the turnoff; no pair the fit keeps above the turnoff (or the rolloff); the
turnoff's sampling error half the gap between the pairs around it. Beyond cp_pipe's test:
where the model ran, tau inside cp_pipe's bounds and every error finite and positive.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gpuptc

DATA = Path(__file__).parent / "data" / "ptc" / "lsstcam_samples.csv"

EXPECTED_TURNOFF = {
    ("sparse", "normal"): 92173.9596,
    ("sparse", "upturn"): 71832.2986,
    ("sparse", "dip"): 87557.8289,
    ("dense", "normal"): 92239.4794,
    ("dense", "upturn"): 86917.0045,
    ("dense", "dip"): 78592.643,
}
"""cp_pipe's ``ptcTurnoff`` of each curve (``_getSampleMeanAndVar``)."""

CASES = [(*key, rolloff) for key in EXPECTED_TURNOFF for rolloff in (False, True)]


def _curve(run: str, shape: str) -> tuple[np.ndarray, np.ndarray]:
    table = pd.read_csv(DATA)
    mine = table[(table.run == run) & (table["shape"] == shape)].sort_values("index")
    return mine["mean"].to_numpy(), mine["var"].to_numpy()


def _solved(mean: np.ndarray, var: np.ndarray, rolloff: bool):
    """cp_pipe's test weighs each variance by sqrt(var): npix = 2 var^3 here."""
    return gpuptc.fit_ptc(mean, var, preset="cp_pipe", npix=2 * var**3, rolloff=rolloff)


@pytest.mark.parametrize(("run", "shape", "rolloff"), CASES)
def test_lsstcam_samples(run, shape, rolloff):
    mean, var = _curve(run, shape)
    result = _solved(mean, var, rolloff)
    assert result.status == "ok"
    assert result.turnoff == EXPECTED_TURNOFF[(run, shape)]
    highest = result.turnoff
    if rolloff:
        found = result.extra["rolloff"]
        if run == "dense":
            assert found < result.turnoff
            assert abs(found - result.turnoff) <= 0.1 * result.turnoff
            assert -10000.0 <= result.extra["rolloff_tau"] <= -100.0
            assert result.extra["rolloff_err"] > 0 and result.extra["rolloff_tau_err"] > 0
        else:
            assert found == result.turnoff
            assert np.isnan(result.extra["rolloff_tau"])
        highest = found
    assert not np.any(mean[result.mask] > highest)
    (k,) = np.flatnonzero(mean == result.turnoff)
    expected = (mean[k + 1] - mean[k - 1]) / 2.0
    assert result.extra["turnoff_sampling_error"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("preset", "deviation"), [("cp_pipe", 0.01), ("cp_pipe_lsstcam", 0.005)])
def test_planted_exponential_rolloff_is_found_where_it_was_put(preset, deviation):
    """Truth: a PTC of eq. 16 less cp_pipe's own rolloff term, ``exp((m - m0) / |tau|) - 1``
    from ``m0`` = 90 000 ADU with tau -1500 ADU, 200 pairs, 0.05 % noise on the variances.

    Where it was put, by the model's definition: the signal at which the term reaches
    ``deviation`` of eq. 16 (solved here by Brent's method). The rolloff is found within 2 %
    of it and tau within 1 % of the planted one. (The simulator's pixel-level soft
    saturation is another shape: ``benchmarks/rolloff_truth.py``.)
    """
    from scipy.optimize import brentq

    from gpuptc.fitting.ptc import eq16

    rng = np.random.default_rng(3)
    mean = np.linspace(1000.0, 110000.0, 200)
    a00, gain, noise2, m0, tau = -1.2e-6, 1.4, 30.0, 90000.0, -1500.0
    term = np.where(mean < m0, 0.0, np.exp(-(mean - m0) / tau) - 1.0)
    var = (eq16(mean, a00, gain, noise2) - term) * (1 + 5e-4 * rng.standard_normal(len(mean)))
    result = gpuptc.fit_ptc(mean, var, preset=preset, npix=2 * var**3, rolloff=True)
    assert result.status == "ok"

    def excess(m: float) -> float:
        return (np.exp(-(m - m0) / tau) - 1.0) / eq16(m, a00, gain, noise2) - deviation

    planted = brentq(excess, m0, 2 * m0)
    assert abs(result.extra["rolloff"] / planted - 1) < 0.02
    assert abs(result.extra["rolloff_tau"] / tau - 1) < 0.01
    assert result.extra["rolloff"] <= result.turnoff

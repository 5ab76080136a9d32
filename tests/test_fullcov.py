"""The batched full-covariance solver against MINPACK on the dense Jacobian (the reference).

The reference (``tests/reference_fullcov.py``) is the straightforward fit: ``leastsq`` on
every pair and lag, one amplifier at a time. The batched solver must reach the same minimum:
gains within 1e-6 relative, a and b within their quoted errors / 100, the same errors.
"""

import numpy as np
import pytest

import reference_fullcov
import shared_inputs
from gpuptc.fitting.fullcov import fit_fullcov, fit_fullcov_batch
from gpuptc.schema import FitStatus

SIZE = 5  # lags fitted per axis: enough for b to matter, small enough for MINPACK


@pytest.fixture(scope="module")
def amplifiers(tmp_path_factory):
    """A medium e2v sensor's per-amp inputs to eq. 20, as ``gpuptc.fit`` selects them (the
    truth tests' sensor: medium, so that b is measured well enough for MINPACK and the batch
    to share one minimum)."""
    _, pairs, covariances = shared_inputs.measured_truth_sensor("e2v", tmp_path_factory)
    inputs = reference_fullcov.fullcov_inputs(pairs, covariances)
    common = min(len(mean) for mean, *_ in inputs)  # pairs below every amp's turnoff
    return [tuple(array[:common] for array in amp) for amp in inputs]


def _stacked(inputs):
    return [np.stack(arrays) for arrays in zip(*inputs, strict=True)]


def _assert_same_minimum(new, old, with_b):
    assert new.status == old.status == FitStatus.OK
    assert new.gain == pytest.approx(old.gain, rel=1e-6)
    assert np.all(np.abs(new.a - old.a) <= old.a_err / 100)
    np.testing.assert_allclose(new.a_err, old.a_err, rtol=1e-3)
    assert new.gain_err == pytest.approx(old.gain_err, rel=1e-3)
    assert new.chi2_dof == pytest.approx(old.chi2_dof, rel=1e-8)
    if with_b:
        assert np.all(np.abs(new.b - old.b) <= old.b_err / 100)
    np.testing.assert_allclose(new.noise_matrix, old.noise_matrix, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("with_b", [False, True], ids=["fullcov_nob", "fullcov"])
def test_the_batch_reaches_minpacks_minimum(amplifiers, with_b):
    """Four amplifiers with MINPACK (tight tolerances) and the batched solver."""
    chosen = amplifiers[:4]
    batch = fit_fullcov_batch(*_stacked(chosen), with_b=with_b, size=SIZE)
    for new, inputs in zip(batch, chosen, strict=True):
        old = reference_fullcov.fit_fullcov(*inputs, with_b=with_b, size=SIZE)
        _assert_same_minimum(new, old, with_b)


def test_the_jacobian_is_the_models_derivative():
    """Against central differences of the model, at parameters where every term matters
    (the cubic term of a is a truncated convolution of a truncated one: its derivative is
    not 3 K(a x a))."""
    from gpuptc.fitting.fullcov import _coefficients, _jacobian_blocks, _Layout, _terms

    layout = _Layout(3, with_b=True)
    params = np.random.default_rng(1).normal(size=(1, layout.size))
    params[0, -1] = 1.3
    blocks = _jacobian_blocks(layout, _terms(layout, params, np), np)
    groups = ["a", "c", "noise", "gain"]
    widths = {"a": 9, "c": 9, "noise": 9, "gain": 1}
    for k, block in enumerate(blocks):
        dense = np.concatenate(
            [
                (np.eye(9) * block[g].value[0] if block[g].diagonal else block[g].value[0])
                if g in block
                else np.zeros((9, widths[g]))
                for g in groups
            ],
            axis=1,
        )
        for j in range(layout.size):
            step = np.zeros_like(params)
            step[0, j] = 1e-6

            def coefficient(p, k=k):
                return _coefficients(layout, _terms(layout, p, np), np)[k][0]

            numeric = (coefficient(params + step) - coefficient(params - step)) / 2e-6
            np.testing.assert_allclose(dense[:, j], numeric, atol=1e-6)


def test_an_amplifier_does_not_change_another(amplifiers):
    """Fitted alone, in a batch of 16, or next to an amplifier whose data are garbage
    (zero variances: infinite weights), each amplifier gets the same numbers."""
    mean, cov, npix, var = _stacked(amplifiers[:6])
    together = fit_fullcov_batch(mean, cov, npix, var, with_b=True, size=SIZE)
    var_bad = var.copy()
    var_bad[2] = 0.0
    cov_bad = cov.copy()
    cov_bad[4, 3] = np.nan  # one pair of amp 4 unusable: fitted without it
    damaged = fit_fullcov_batch(mean, cov_bad, npix, var_bad, with_b=True, size=SIZE)
    assert damaged[2].status == FitStatus.TOO_FEW_POINTS
    assert damaged[4].n_used == together[4].n_used - 1
    for k in (0, 1, 3, 5):
        alone = fit_fullcov(mean[k], cov[k], npix[k], var[k], size=SIZE)
        for other in (together[k], damaged[k]):
            assert other.gain == alone.gain
            np.testing.assert_array_equal(other.a, alone.a)
            np.testing.assert_array_equal(other.b, alone.b)


def test_ragged_selections_in_one_batch(amplifiers):
    """Amplifiers with different pairs used (padding, ``used``) fit as they would alone."""
    mean, cov, npix, var = _stacked(amplifiers[:3])
    used = np.ones(mean.shape, bool)
    used[1, -3:] = False
    batch = fit_fullcov_batch(mean, cov, npix, var, used, with_b=False, size=SIZE)
    alone = fit_fullcov(
        mean[1, :-3], cov[1, :-3], npix[1, :-3], var[1, :-3], with_b=False, size=SIZE
    )
    assert batch[1].n_used == alone.n_used == mean.shape[1] - 3
    assert batch[1].gain == pytest.approx(alone.gain, rel=1e-12)
    assert batch[1].turnoff == alone.turnoff


def test_the_batch_runs_on_every_array_backend(amplifiers, backend):
    """The same numbers from the array API on each backend (CuPy: the stand-in without GPU)."""
    mean, cov, npix, var = _stacked(amplifiers[:3])
    expected = fit_fullcov_batch(mean, cov, npix, var, with_b=True, size=4)
    got = fit_fullcov_batch(mean, cov, npix, var, with_b=True, size=4, backend=backend)
    for new, old in zip(got, expected, strict=True):
        assert new.status == old.status == FitStatus.OK
        assert new.gain == pytest.approx(old.gain, rel=1e-9)
        np.testing.assert_allclose(new.a, old.a, rtol=1e-6, atol=1e-14)

"""Linearizers applied as Rubin's ISR applies them: each type against a straightforward
implementation of ip_isr's functor (``linearize.py`` at d2a69bfd), Akima's spline against
SciPy's, and in the ISR on every backend, each amp by its own."""

import numpy as np
import pytest
from scipy.interpolate import Akima1DInterpolator

from backends import host
from gpuptc.config import IsrConfig
from gpuptc.kernels.linearize import AmpLinearizer, akima, apply_linearizer, linearize
from gpuptc.measuring.compute import isr_regions
from gpuptc.measuring.isr import run_isr
from gpuptc.raws.geometry import SensorGeometry, amp_geometry

VALUES = np.array([-50.0, 0.0, 12.5, 999.9, 25000.0, 74999.0, 80000.0, 1.2e5])
NODES = np.linspace(0.0, 1e5, 8)
HEIGHTS = np.array([0.0, -9.0, 1.5, -7.0, -68.0, -78.0, 80.0, 185.0])


def test_akima_is_scipys_akima_spline():
    rng = np.random.default_rng(4)
    nodes = np.sort(rng.uniform(0, 1e5, 12))
    values = rng.normal(0, 50, 12)
    values[4:7] = values[4]  # a flat stretch: the slopes' weights vanish there
    x = rng.uniform(-1e4, 1.1e5, 5000)
    expected = Akima1DInterpolator(nodes, values, method="akima", extrapolate=True)(x)
    np.testing.assert_allclose(akima(x, nodes, values), expected, rtol=1e-12, atol=1e-9)


def _spline_by_hand(values, nodes, heights):
    """ip_isr's Spline functor: values shifted to start at 0, a node at 0 put first,
    the image clipped to the nodes (0.1 ADU below the last) and the spline subtracted."""
    heights = heights - heights[0]
    if nodes[0] != 0:
        nodes, heights = np.r_[0.0, nodes], np.r_[0.0, heights]
    spline = Akima1DInterpolator(nodes, heights, method="akima")
    return values - spline(np.clip(values, nodes[0], nodes[-1] - 0.1))


@pytest.mark.parametrize(
    "kind, coefficients, expected",
    [
        ("Polynomial", [2e-6, -1e-11], VALUES + 2e-6 * VALUES**2 - 1e-11 * VALUES**3),
        ("Squared", [3e-7], VALUES * (1 + 3e-7 * VALUES)),
        ("Spline", np.r_[NODES, HEIGHTS], _spline_by_hand(VALUES, NODES, HEIGHTS)),
        (
            "Spline",  # no node at zero and a first value that is not: both fixed as Rubin's
            np.r_[NODES[1:], HEIGHTS[1:] + 5.0],
            _spline_by_hand(VALUES, NODES[1:], HEIGHTS[1:] + 5.0),
        ),
        ("None", [], VALUES),
    ],
)
def test_each_type_is_applied_as_rubins_functor(kind, coefficients, expected):
    corrected = apply_linearizer(kind, np.asarray(coefficients, float), VALUES)
    np.testing.assert_allclose(corrected, expected, rtol=1e-13, atol=1e-9)


def test_a_lookup_table_is_indexed_by_the_truncated_value_and_clamped():
    table = np.arange(3 * 1000, dtype=float).reshape(3, 1000) * 0.01
    row, offset = 2, 3.0
    corrected = apply_linearizer("LookupTable", np.array([row, offset]), VALUES, table)
    columns = np.clip([int(offset + v) for v in VALUES], 0, 999)  # C++'s int(): toward zero
    np.testing.assert_allclose(corrected, VALUES + table[row, columns])


def test_a_spline_with_a_missing_value_gives_nan_as_rubins_does():
    heights = HEIGHTS.copy()
    heights[3] = np.nan
    assert np.isnan(apply_linearizer("Spline", np.r_[NODES, heights], VALUES)).all()


def test_unknown_types_and_wrong_amp_counts_are_refused():
    with pytest.raises(ValueError, match="unknown linearizer type 'Cubic'"):
        apply_linearizer("Cubic", np.zeros(1), VALUES)
    with pytest.raises(ValueError, match="2 linearizers for 3 amps"):
        linearize(np.zeros((3, 4, 4)), [AmpLinearizer("None", np.zeros(0))] * 2)


def test_the_isr_linearizes_each_amp_by_its_own_on_every_backend(backend):
    """The ISR's images with linearizers equal its images without them, each amp then
    corrected by its own linearizer on the host."""
    amps = tuple(amp_geometry(a, f"S{a}", 40, 60, "[3:28,1:50]") for a in (1, 2, 3))
    geometry = SensorGeometry(amps, "e2v")
    rng = np.random.default_rng(7)
    raw = 1000.0 + rng.uniform(0, 9e4, (2, 3, 60, 40))
    linearizers = (
        AmpLinearizer("Squared", np.array([4e-7])),
        AmpLinearizer("Spline", np.r_[NODES, HEIGHTS]),
        AmpLinearizer("None", np.zeros(0)),
    )
    config = IsrConfig(parallel_overscan="NONE", dtype="float64")

    def images(chosen):
        result = run_isr(
            backend.asarray(raw), isr_regions(geometry), config, linearizers=chosen,
            backend=backend,
        )  # fmt: skip
        return host(result.images)

    plain, linearized = images(None), images(linearizers)
    for a, linearizer in enumerate(linearizers):
        expected = apply_linearizer(linearizer.kind, linearizer.coefficients, plain[:, a])
        np.testing.assert_allclose(linearized[:, a], expected, rtol=1e-12, err_msg=str(a))

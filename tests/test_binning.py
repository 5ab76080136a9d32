"""Flats binned in the measuring pass: the bins, where they lie, and the pair images written.

cp_pipe's ``doOutputBinnedImages`` keeps both flats of every pair binned; here they are
checked against the flats corrected by the reference ISR (``tests/reference.py``),
assembled as the report assembles a CCD and binned by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gpuptc
import reference
from gpuptc.config import get_preset
from gpuptc.measuring.binning import BinSpec, bin_amps
from gpuptc.raws.exposure import read_raw
from gpuptc.raws.geometry import assemble_ccd
from gpuptc.schema import BINNED_PAIRS_FILE, SENSORS_DIR, file_stem


def test_bins_are_means_of_good_pixels() -> None:
    """Against a loop over the bins, with bad pixels, a boundary and a partial last bin."""
    rng = np.random.default_rng(1)
    images = rng.normal(100.0, 5.0, (2, 3, 23, 18))
    good = rng.random(images.shape) > 0.2
    spec = BinSpec(4, 2)
    binned = bin_amps(images, good, spec, np)
    assert binned.shape == (2, 3, 4, 3)
    for index in np.ndindex(binned.shape):
        *lead, by, bx = index
        rows = slice(2 + 4 * by, 6 + 4 * by)
        cols = slice(2 + 4 * bx, 6 + 4 * bx)
        block, mask = images[(*lead, rows, cols)], good[(*lead, rows, cols)]
        expected = block[mask].mean() if mask.any() else np.nan
        np.testing.assert_allclose(binned[index], expected, rtol=1e-6)


def test_binned_pairs_are_the_assembled_flats_binned(small_e2v, tmp_path) -> None:
    """``extract.output_binned_images``: both flats of every pair, each bin at its place on
    the CCD, equal to the reference ISR's flats assembled and binned 4 x 4."""
    out = tmp_path / "out"
    gpuptc.run(
        small_e2v.directory, out, preset="cp_pipe", models=["expapprox"], report=False,
        extract__output_binned_images=True, extract__binned_images_factor=4,
        isr__dtype="float64",
    )  # fmt: skip
    table = pd.read_parquet(out / SENSORS_DIR / file_stem(small_e2v.sensor) / BINNED_PAIRS_FILE)
    assert table["pair"].nunique() == 8
    assert set(table.columns) == {"sensor", "pair", "amp", "x", "y", "value1", "value2"}
    pair = 3
    mine = table[table["pair"] == pair]
    assert len(mine) == 16 * (96 // 4) * (64 // 4)
    flats = small_e2v.flats[2 * pair : 2 * pair + 2]
    for flat, column in zip(flats, ("value1", "value2"), strict=True):
        raw = read_raw(flat)
        box = raw.geometry.imaging
        datasec = (box.y0, box.y1, box.x0, box.x1)
        amps = [reference.isr_amp(pixels, datasec, "cp_pipe") for pixels in raw.pixels]
        ccd = assemble_ccd(np.stack(amps), raw.geometry.amps)
        ny, nx = ccd.shape[0] // 4, ccd.shape[1] // 4
        expected = ccd[: 4 * ny, : 4 * nx].reshape(ny, 4, nx, 4).mean(axis=(1, 3))
        rows = ((mine["y"] - 1.5) / 4).round().astype(int)
        cols = ((mine["x"] - 1.5) / 4).round().astype(int)
        np.testing.assert_allclose(mine[column], expected[rows, cols], rtol=1e-5)


def test_no_binned_pairs_unless_asked(small_e2v, tmp_path) -> None:
    out = tmp_path / "out"
    gpuptc.run(small_e2v.directory, out, preset="cp_pipe", models=["expapprox"], report=False)
    assert not (out / SENSORS_DIR / file_stem(small_e2v.sensor) / BINNED_PAIRS_FILE).exists()


@pytest.mark.parametrize("factor", [0, -1])
def test_a_bin_factor_below_one_is_refused(factor: int) -> None:
    with pytest.raises(ValueError, match="binned_images_factor"):
        get_preset("cp_pipe", extract__binned_images_factor=factor)

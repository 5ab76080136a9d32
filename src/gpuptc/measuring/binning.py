"""Corrected flats binned per amplifier, in the measuring pass, and where their bins lie.

Later steps that look at the flats' large-scale shape (the gain ratio adjustment,
:mod:`gpuptc.fitting.gain_ratios`) need the pixels only binned: each amp's imaging
region, less ``boundary`` pixels at its edges, in squares of ``factor`` pixels, each the
mean of its good pixels. The binning runs on the compute device beside the pair
statistics (one read of the pixels) and only the bins come back to the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.config import Preset
from gpuptc.raws.geometry import AmpGeometry, ccd_places

__all__ = [
    "bin_amps",
    "bin_centres",
    "bin_spec",
    "binned_pair_rows",
    "output_spec",
]


@dataclass(frozen=True)
class BinSpec:
    """How flats are binned: ``factor`` pixels a side, ``boundary`` pixels of each edge out."""

    factor: int
    boundary: int

    def grid(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Bins ``(rows, columns)`` of an amp image of ``shape``."""
        return tuple(max((n - 2 * self.boundary) // self.factor, 0) for n in shape)  # type: ignore[return-value]


def bin_spec(preset: Preset) -> BinSpec | None:
    """The binning of the gain ratio adjustment's flats, None when it is off."""
    ratios = preset.gain_ratios
    return BinSpec(ratios.bin_factor, ratios.amp_boundary) if ratios.adjust else None


def output_spec(preset: Preset) -> BinSpec | None:
    """The binning of the pair images written out, None when none are.

    cp_pipe's ``doOutputBinnedImages``: its factor, and the edge mask as the boundary.
    """
    extract = preset.extract
    if not extract.output_binned_images:
        return None
    return BinSpec(extract.binned_images_factor, preset.isr.edge_mask)


def binned_pair_rows(
    sensor: str,
    pairs: np.ndarray,
    values: np.ndarray,
    amps: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
) -> pd.DataFrame:
    """Pairs' binned flats as rows: ``sensor, pair, amp, x, y, value1, value2``.

    ``values`` is ``(pairs, 2, amps, by, bx)``; ``x`` and ``y`` (:func:`bin_centres`) each
    bin's centre on the CCD. The sensor is a categorical column (one name, many rows).
    """
    n, per_pair = len(pairs), x.size
    return pd.DataFrame(
        {
            "sensor": pd.Categorical.from_codes(np.zeros(n * per_pair, np.int8), [sensor]),
            "pair": np.repeat(np.asarray(pairs, np.int64), per_pair),
            "amp": np.tile(np.repeat(amps, per_pair // len(amps)), n),
            "x": np.tile(x.ravel().astype(np.float32), n),
            "y": np.tile(y.ravel().astype(np.float32), n),
            "value1": values[:, 0].reshape(-1),
            "value2": values[:, 1].reshape(-1),
        }
    )


def bin_amps(images: Any, good: Any, spec: BinSpec, xp: Any) -> Any:
    """The mean of the good pixels of each bin of each amp image, on the images' device.

    Parameters
    ----------
    images, good : array
        ``(..., amps, ny, nx)`` corrected pixels and where they are good.
    spec : BinSpec
        The binning.
    xp : module
        The array namespace.

    Returns
    -------
    array
        ``(..., amps, by, bx)`` float32, NaN where a bin has no good pixel.

    Examples
    --------
    >>> image = np.arange(36.0).reshape(1, 6, 6)
    >>> good = np.ones_like(image, dtype=bool)
    >>> good[0, 1, 1] = False  # the first bin is the mean of 8, 13 and 14
    >>> bin_amps(image, good, BinSpec(2, 1), np)
    array([[[11.666667, 12.5     ],
            [22.5     , 24.5     ]]], dtype=float32)
    """
    by, bx = spec.grid(tuple(images.shape[-2:]))
    f, b = spec.factor, spec.boundary
    lead = tuple(images.shape[:-2])
    window = (..., slice(b, b + by * f), slice(b, b + bx * f))
    kept = good[window]
    pixels = xp.where(kept, images[window], xp.zeros((), dtype=images.dtype))
    shape = (*lead, by, f, bx, f)
    # a bin's rows summed in the images' type (a few values), the rows in float64
    rows = xp.sum(xp.reshape(pixels, shape), axis=-1)
    total = xp.sum(xp.astype(rows, xp.float64), axis=-2)
    count = xp.sum(xp.sum(xp.reshape(xp.astype(kept, xp.int32), shape), axis=-1), axis=-2)
    safe = xp.where(count > 0, count, 1)
    return xp.astype(xp.where(count > 0, total / safe, xp.nan), xp.float32)


def bin_centres(amps: tuple[AmpGeometry, ...], spec: BinSpec) -> tuple[np.ndarray, np.ndarray]:
    """Each bin's centre on the assembled CCD (pixels; amp 1 at the lower left).

    Bins are made in each amp's readout orientation; an amp whose DETSEC runs backwards
    along an axis has its bins' places reversed along it, as
    :func:`gpuptc.raws.geometry.assemble_ccd` places its pixels.

    Returns
    -------
    tuple of numpy.ndarray
        ``x`` and ``y``, each ``(amps, by, bx)``.
    """
    by, bx = spec.grid(amps[0].imaging.shape)
    rows = spec.boundary + spec.factor * np.arange(by) + (spec.factor - 1) / 2
    cols = spec.boundary + spec.factor * np.arange(bx) + (spec.factor - 1) / 2
    return ccd_places(amps, rows, cols)

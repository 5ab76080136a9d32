"""Which pixels of a sensor are measured, beyond the ISR's own masks: its place decides.

Two of cp_pipe's selections depend on where a pixel sits on the detector or in the focal
plane, not on its value, so they are made once per sensor on the host and travel with
the calibrations to the device (:class:`gpuptc.measuring.isr.Calibrations` ``excluded``):

- ``isr.edge_mask`` pixels along the detector's outer edges only (``edge_mask_level``
  ``DETECTOR``, cp_pipe's default; at ``AMP`` level the ISR masks every amp's borders);
- the vignetting function's region (``extract.vignette_selection``): per amp, the pixels
  where the camera's vignetting function is within ``vignette_percent`` of the amp's
  highest, the percentage raised by 1 until ``vignette_min_pixels`` are kept (cp_pipe's
  ``doVignetteFunctionRegionSelection``).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from gpuptc.config import Preset
from gpuptc.raws.camera import focal_plane_mm
from gpuptc.raws.geometry import SensorGeometry, ccd_places, ccd_shape

__all__ = ["detector_edges", "excluded_pixels", "vignetting_selection"]

log = logging.getLogger(__name__)


def detector_edges(geometry: SensorGeometry, width: int) -> np.ndarray:
    """``(amps, ny, nx)`` True for pixels within ``width`` of the detector's outer edges.

    Examples
    --------
    >>> from gpuptc.raws.layout import small_layout
    >>> geometry = small_layout("e2v", nx=8, ny=6).sensor_geometry()
    >>> edges = detector_edges(geometry, 2)
    >>> edges.shape, int(edges[0].sum()), int(edges[1].sum())  # a corner amp, then the next
    ((16, 6, 8), 24, 16)
    """
    x, y = ccd_places(geometry.amps)
    ny, nx = ccd_shape(geometry.amps)
    return (x < width) | (x >= nx - width) | (y < width) | (y >= ny - width)


def _polynomial(coefficients: tuple[float, ...], x: np.ndarray) -> np.ndarray:
    """``numpy.polyval(coefficients, x)`` by Horner's rule in place (no array per term)."""
    value = np.full_like(x, coefficients[0] if coefficients else 0.0)
    for coefficient in coefficients[1:]:
        value *= x
        value += coefficient
    return value


def _selection_percent(values: np.ndarray, percent: float, min_pixels: int) -> float:
    """The first of ``percent``, ``percent + 1``, ... (at most 100) that keeps ``min_pixels``.

    cp_pipe's search, one threshold at a time, answered at once: a threshold keeps
    ``min_pixels`` values when it lies below the ``min_pixels``-th largest, so the step is
    guessed from that value (a partition) and settled by counting around it.
    """
    top = values.max()

    def enough(steps: int) -> bool:
        chosen = percent + steps
        return chosen >= 100.0 or int(np.sum(values > top * (1 - chosen / 100))) >= min_pixels

    if values.size < min_pixels:  # only the last step keeps them all
        steps = math.ceil(100.0 - percent)
    else:
        wanted = np.partition(values, values.size - min_pixels)[values.size - min_pixels]
        steps = max(0, math.ceil(100.0 * (1.0 - wanted / top) - percent)) if top > 0 else 0
    while steps > 0 and enough(steps - 1):
        steps -= 1
    while not enough(steps):
        steps += 1
    return percent + steps


def vignetting_selection(
    geometry: SensorGeometry,
    coefficients: tuple[float, ...],
    percent: float,
    min_pixels: int,
    centre_mm: tuple[float, float],
) -> np.ndarray:
    """``(amps, ny, nx)`` True for the pixels the vignetting selection leaves out.

    Per amp, the pixels where ``polyval(coefficients, r)`` (r the focal-plane radius in
    metres) is above its highest value on the amp times ``1 - percent / 100``; the
    percentage is raised by 1 until ``min_pixels`` are kept or it reaches 100 (one warning
    names the amps that needed more than ``percent``).
    """
    x, y = ccd_places(geometry.amps)
    fx, fy = focal_plane_mm(x, y, ccd_shape(geometry.amps), centre_mm)
    throughput = _polynomial(coefficients, np.hypot(fx, fy) / 1000.0)
    excluded = np.ones(throughput.shape, bool)
    raised = {}
    for a, amp in enumerate(geometry.amps):
        chosen = _selection_percent(throughput[a].ravel(), percent, min_pixels)
        if chosen > percent:
            raised[amp.segment] = chosen
        excluded[a] = ~(throughput[a] > throughput[a].max() * (1 - chosen / 100))
    if raised:
        log.warning(
            "the vignetting selection needed up to %.1f %% to keep %d pixels on %s",
            max(raised.values()), min_pixels, ", ".join(raised),
        )  # fmt: skip
    return excluded


def excluded_pixels(
    geometry: SensorGeometry, preset: Preset, centre_mm: tuple[float, float] | None
) -> np.ndarray | None:
    """``(amps, ny, nx)`` True for the pixels the preset leaves out by their place, or None.

    The detector's edges (``edge_mask`` at ``DETECTOR`` level) and the vignetting
    selection; a sensor whose place in the focal plane is not known (``centre_mm`` None)
    gets no vignetting selection, with a warning.
    """
    masks = []
    if preset.isr.edge_mask > 0 and preset.isr.edge_mask_level == "DETECTOR":
        masks.append(detector_edges(geometry, preset.isr.edge_mask))
    extract = preset.extract
    if extract.vignette_selection and centre_mm is None:
        log.warning("no RAFTBAY/CCDSLOT: no vignetting selection")
    elif extract.vignette_selection:
        selection = vignetting_selection(
            geometry, extract.vignette_coefficients, extract.vignette_percent,
            extract.vignette_min_pixels, centre_mm,
        )  # fmt: skip
        masks.append(selection)
    return np.logical_or.reduce(masks) if masks else None

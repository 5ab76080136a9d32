"""Linearizers applied as Rubin's ISR applies them, on any array library.

A linearizer maps an amp's measured signal (ADU, bias removed) to the signal a linear
amplifier would have given. Its types, with ``v`` the measured value:

- ``Polynomial``: ``v + sum_i c_i v^(i+2)``;
- ``Squared``: ``v + c_0 v^2``;
- ``LookupTable``: ``v + table[row, int(offset + v)]``, the column clamped to the table
  (coefficients: row, offset);
- ``Spline``: ``v - S(v)``, ``S`` the Akima spline through the nodes and values that
  make up the coefficients (first half nodes, second half values), ``v`` clipped to the
  nodes' range for ``S``; a spline whose first value is not zero is shifted to it, and a
  node at zero is added where the first is not;
- ``None``: unchanged.

:func:`linearize` corrects a stack's amps, each by its own, on the stack's own array
library (NumPy or CuPy): the ISR calls it after the bias is removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj

__all__ = [
    "LINEARIZER_KINDS",
    "AmpLinearizer",
    "akima",
    "akima_slopes",
    "apply_linearizer",
    "hermite_weights",
    "linearize",
    "spline_parts",
]

LINEARIZER_KINDS = ("Polynomial", "Squared", "LookupTable", "Spline", "None")
"""The linearizer types Rubin's ISR applies (and gpuptc with it)."""

SPLINE_TOP_MARGIN = 0.1
"""A spline is evaluated at most this far (ADU) below its last node (Rubin's ISR)."""


def akima_slopes(nodes: Any, values: Any) -> Any:
    """The derivatives at the nodes of Akima's spline (1970) through ``values``.

    Each node's slope weighs its neighbouring secants by how much the secants beyond
    them change; two secants are extrapolated linearly past each end. Where both
    weights vanish (locally straight data) the slope is the mean of the two secants.

    Parameters
    ----------
    nodes : array
        Strictly increasing along the last axis, at least two.
    values : array
        The spline's values at the nodes; a leading axis holds several splines (``nodes``
        then shaped alike, or 1-D and shared), on any array library.

    Returns
    -------
    array
        One slope per node, shaped as ``values``.

    Examples
    --------
    >>> akima_slopes(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0, 3.0])).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    xp = array_namespace(values)
    x = xp.asarray(nodes, dtype=xp.float64, device=getattr(values, "device", None))
    y = xp.asarray(values, dtype=xp.float64)
    inner = (y[..., 1:] - y[..., :-1]) / (x[..., 1:] - x[..., :-1])
    before1 = 2.0 * inner[..., :1] - inner[..., 1:2]
    before0 = 2.0 * before1 - inner[..., :1]
    after1 = 2.0 * inner[..., -1:] - inner[..., -2:-1]
    after2 = 2.0 * after1 - inner[..., -1:]
    secant = xp.concat([before0, before1, inner, after1, after2], axis=-1)
    change = xp.abs(secant[..., 1:] - secant[..., :-1])
    after, before = change[..., 2:], change[..., :-2]
    total = after + before
    mean = 0.5 * (secant[..., 3:] + secant[..., :-3])
    weighted = total > 1e-9 * xp.max(total, axis=-1, keepdims=True)
    blended = (after * secant[..., 1:-2] + before * secant[..., 2:-1]) / xp.where(
        weighted, total, 1.0
    )
    return xp.where(weighted, blended, mean)


def akima(x: Any, nodes: np.ndarray, values: np.ndarray, slopes: np.ndarray | None = None) -> Any:
    """Akima's spline through ``(nodes, values)`` at ``x``, on ``x``'s array library.

    A cubic Hermite polynomial between each two nodes, with :func:`akima_slopes`; beyond
    the nodes, the first or last polynomial continued.

    Parameters
    ----------
    x : array
        Where to evaluate (any shape; NumPy or CuPy).
    nodes, values : numpy.ndarray
        The spline.
    slopes : numpy.ndarray, optional
        Its slopes at the nodes, if known.

    Returns
    -------
    array
        Shaped as ``x``, in its floating type.

    Examples
    --------
    >>> nodes = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    >>> akima(np.array([0.5, 2.0]), nodes, nodes**2).tolist()
    [0.25, 4.0]
    """
    xp = array_namespace(x)
    slopes = akima_slopes(nodes, values) if slopes is None else slopes
    device = getattr(x, "device", None)
    knots, heights, tangents = (
        xp.asarray(np.asarray(a, float), dtype=x.dtype, device=device)
        for a in (nodes, values, slopes)
    )
    segment, (value_left, slope_left, value_right, slope_right) = hermite_weights(
        xp.reshape(x, (-1,)), knots
    )
    result = (
        value_left * xp.take(heights, segment)
        + slope_left * xp.take(tangents, segment)
        + value_right * xp.take(heights, segment + 1)
        + slope_right * xp.take(tangents, segment + 1)
    )
    return xp.reshape(result, x.shape)


def hermite_weights(x: Any, nodes: Any) -> tuple[Any, tuple[Any, Any, Any, Any]]:
    """Where each of ``x`` falls between the nodes, and its cubic Hermite weights there.

    ``S(x) = a * v[i] + b * t[i] + c * v[i+1] + d * t[i+1]`` for a spline of values ``v``
    and slopes ``t`` at ``nodes``, ``i`` the interval (the first or last beyond the
    nodes); on ``x``'s array library (``nodes`` on the same). With 2-D ``nodes`` (one
    spline per row) ``x`` is 2-D too, row for row.

    Returns
    -------
    interval : array of int
        ``i`` for each of ``x`` (1-D).
    weights : tuple of array
        ``a, b, c, d``.

    Examples
    --------
    >>> interval, weights = hermite_weights(np.array([0.5]), np.array([0.0, 1.0]))
    >>> interval.tolist(), [float(w[0]) for w in weights]
    ([0], [0.5, 0.125, 0.5, -0.125])
    """
    xp = array_namespace(x)
    if nodes.ndim == 1:
        interval = xp.clip(xp.searchsorted(nodes, x, side="right") - 1, 0, nodes.shape[0] - 2)
        left, right = xp.take(nodes, interval), xp.take(nodes, interval + 1)
    else:  # one spline per row: how many of its inner nodes lie at or below each x
        inner = nodes[..., None, 1:-1] <= x[..., None]
        interval = xp.sum(xp.astype(inner, xp.int64), axis=-1)
        left = xp.take_along_axis(nodes, interval, axis=-1)
        right = xp.take_along_axis(nodes, interval + 1, axis=-1)
    width = right - left
    s = (x - left) / width
    s2, s3 = s * s, s * s * s
    return interval, (
        2 * s3 - 3 * s2 + 1,
        (s3 - 2 * s2 + s) * width,
        3 * s2 - 2 * s3,
        (s3 - s2) * width,
    )


def spline_parts(coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ``Spline`` linearizer's nodes and values as the ISR uses them.

    The coefficients hold the nodes then the values; the values are shifted so that the
    first is zero, and a node at zero (value zero) is put first where there is none.
    """
    coefficients = np.asarray(coefficients, float)
    half = len(coefficients) // 2
    nodes, values = coefficients[:half].copy(), coefficients[half:].copy()
    if values[0] != 0.0:
        values -= values[0]
    if nodes[0] != 0.0:
        nodes, values = np.concatenate([[0.0], nodes]), np.concatenate([[0.0], values])
    return nodes, values


def apply_linearizer(
    kind: str, coefficients: np.ndarray, values: Any, table: np.ndarray | None = None
) -> Any:
    """Values corrected by one amp's linearizer, as Rubin's ISR applies it.

    Parameters
    ----------
    kind : str
        One of :data:`LINEARIZER_KINDS` (see the module's description).
    coefficients : numpy.ndarray
        The linearizer's coefficients for the amp.
    values : array
        Signals (ADU, bias removed): a NumPy or CuPy array, or a sequence.
    table : numpy.ndarray, optional
        The lookup tables (rows), for ``LookupTable``.

    Returns
    -------
    array
        On ``values``' array library, float.

    Examples
    --------
    >>> apply_linearizer("Squared", np.array([1e-5]), np.array([1000.0, 20000.0])).tolist()
    [1010.0, 24000.0]
    """
    if not is_array_api_obj(values) or isinstance(values, np.generic):
        values = np.asarray(values, float)
    xp = array_namespace(values)
    if not xp.isdtype(values.dtype, "real floating"):
        values = xp.astype(values, xp.float64)
    coefficients = np.asarray(coefficients, float)
    if kind == "Polynomial":
        corrected = xp.asarray(values, copy=True)
        for power, coefficient in enumerate(coefficients, start=2):
            corrected += float(coefficient) * values**power
        return corrected
    if kind == "Squared":
        return values * (1.0 + float(coefficients[0]) * values)
    if kind == "LookupTable":
        return values + _looked_up(values, coefficients, table, xp)
    if kind == "Spline":
        return _spline_corrected(values, coefficients, xp)
    if kind == "None":
        return xp.asarray(values, copy=True)
    raise ValueError(f"unknown linearizer type {kind!r}")


def _looked_up(values: Any, coefficients: np.ndarray, table: np.ndarray | None, xp: Any) -> Any:
    if table is None:
        raise ValueError("a LookupTable linearizer needs its table")
    row = np.asarray(table, float)[int(coefficients[0])]
    entries = xp.asarray(row, dtype=values.dtype, device=getattr(values, "device", None))
    columns = xp.astype(xp.trunc(float(coefficients[1]) + values), xp.int64)
    columns = xp.clip(columns, 0, row.shape[0] - 1)
    return xp.reshape(xp.take(entries, xp.reshape(columns, (-1,))), values.shape)


def _spline_corrected(values: Any, coefficients: np.ndarray, xp: Any) -> Any:
    nodes, heights = spline_parts(coefficients)
    if not (np.isfinite(nodes).all() and np.isfinite(heights).all()):
        return xp.full_like(values, xp.nan)
    clipped = xp.clip(values, float(nodes[0]), float(nodes[-1]) - SPLINE_TOP_MARGIN)
    return values - akima(clipped, nodes, heights)


@dataclass(frozen=True)
class AmpLinearizer:
    """One amp's linearizer, as the ISR applies it.

    Attributes
    ----------
    kind : str
        One of :data:`LINEARIZER_KINDS`.
    coefficients : numpy.ndarray
        Its coefficients.
    table : numpy.ndarray or None
        The lookup tables, for ``LookupTable``.
    """

    kind: str
    coefficients: np.ndarray
    table: np.ndarray | None = None


def linearize(images: Any, linearizers: list[AmpLinearizer]) -> Any:
    """A stack's amps each corrected by its own linearizer.

    Parameters
    ----------
    images : array
        ``(..., amps, ny, nx)`` signals (ADU, bias removed), NumPy or CuPy.
    linearizers : list of AmpLinearizer
        One per amp, in the stack's order.

    Returns
    -------
    array
        ``images``, each amp corrected in place (the stack's own memory: no copy of it).

    Examples
    --------
    >>> stack = np.full((2, 3, 3), 1000.0)
    >>> squared = [AmpLinearizer("Squared", np.array([c])) for c in (0.0, 1e-5)]
    >>> linearize(stack, squared)[:, 0, 0].tolist()
    [1000.0, 1010.0]
    """
    xp = array_namespace(images)
    if images.shape[-3] != len(linearizers):
        raise ValueError(f"{len(linearizers)} linearizers for {images.shape[-3]} amps")
    for a, lin in enumerate(linearizers):
        corrected = apply_linearizer(lin.kind, lin.coefficients, images[..., a, :, :], lin.table)
        images[..., a, :, :] = xp.astype(corrected, images.dtype)
    return images

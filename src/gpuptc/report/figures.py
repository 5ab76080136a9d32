"""The report's images: the binned CCD of one pair, drawn with matplotlib.

Every other figure is a chart the browser draws (:mod:`gpuptc.report.charts`). The
functions return :class:`matplotlib.figure.Figure` objects made without pyplot (no global
state, so figures can be drawn in threads); :func:`png` renders one with Agg, every text
as :func:`drawable`.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FixedFormatter
from PIL import Image

__all__ = ["DPI", "drawable", "images_figure", "png"]

DPI = 120
"""Resolution of every PNG of the report."""


def _single(width: float = 9.0, height: float = 4.5, ncols: int = 1) -> tuple[Figure, Any]:
    """A figure of one row of panels, laid out tight when it is drawn."""
    fig = Figure(figsize=(width, height), layout="tight")
    return fig, fig.subplots(1, ncols)


def png(fig: Figure) -> bytes:
    """The figure rendered as PNG bytes at :data:`DPI`, every text as :func:`drawable`.

    Stored in the fewest channels that hold it exactly (:func:`_fewest_channels`).
    """
    _drawable_texts(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return _fewest_channels(buffer.getvalue())


def _fewest_channels(rendered: bytes) -> bytes:
    """A PNG without the channels it does not need.

    No alpha where every pixel is opaque, one grey channel where red, green and blue agree
    everywhere (the CCD images). Lossless: the same pixels, less than half the bytes for a
    grey figure.
    """
    pixels = np.asarray(Image.open(io.BytesIO(rendered)))
    if pixels.ndim != 3 or pixels.shape[2] != 4 or not (pixels[..., 3] == 255).all():
        return rendered
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    grey = bool((red == green).all() and (green == blue).all())
    image = Image.fromarray(red) if grey else Image.fromarray(pixels[..., :3])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def drawable(text: str) -> str:
    r"""The text as a figure can show it: what the font lacks, and ``$``, written as escapes.

    Header values (sensor ids, segment names) reach titles and labels. A ``$`` would make
    matplotlib parse them as mathematics, and a character without a glyph (a control
    character, a script the font lacks) draws as an empty box; both are written as their
    Python escapes instead, so that every figure draws and tells its values apart.

    Examples
    --------
    >>> drawable("R22_S11: gain per method")
    'R22_S11: gain per method'
    >>> drawable("E2V\r$x$")
    'E2V\\r\\$x\\$'
    """
    return "".join(_drawable_character(char) for char in text)


@functools.cache
def _drawable_character(char: str) -> str:
    if char == "\n":
        return char
    if char == "$":
        return r"\$"
    font = font_manager.get_font(font_manager.findfont(font_manager.FontProperties()))
    if char.isprintable() and font.get_char_index(ord(char)):
        return char
    return char.encode("unicode_escape").decode("ascii")


def _drawable_texts(fig: Figure) -> None:
    """Every text of the figure, and every fixed tick label, made :func:`drawable`."""
    for text in _texts(fig):
        shown = text.get_text()
        written = drawable(shown)
        if written != shown:
            text.set_text(written)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            formatter = axis.get_major_formatter()
            if isinstance(formatter, FixedFormatter):
                formatter.seq = [drawable(str(label)) for label in formatter.seq]


def _texts(fig: Figure) -> Iterator[Text]:
    """The figure's titles, labels, texts and legends (a tenth of the cost of ``findobj``)."""
    yield from fig.texts
    yield from (t for t in (fig._suptitle, fig._supxlabel, fig._supylabel) if t is not None)
    legends = list(fig.legends)
    for ax in fig.axes:
        yield from ax.texts
        yield from (ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label)
        legends += [ax.get_legend()] if ax.get_legend() is not None else []
    for legend in legends:
        yield from (*legend.texts, legend.get_title())


def images_figure(images: dict[str, Any] | Path | None, sensor: str) -> Figure | None:
    """The assembled flat and difference image (a dict of arrays or the ``.npz`` saved)."""
    if images is None or (isinstance(images, Path) and not images.exists()):
        return None
    if isinstance(images, Path):
        with np.load(images) as saved:
            images = {key: saved[key] for key in saved.files}
    pair, exptime, factor = int(images["pair"]), float(images["exptime"]), int(images["bin"])
    fig, axes = _single(11, 5.5, ncols=2)
    for ax, key in zip(axes, ("flat", "difference"), strict=True):
        low, high = np.nanpercentile(images[key], [1, 99])
        shown = ax.imshow(images[key], origin="lower", cmap="gray", vmin=low, vmax=high)
        fig.colorbar(shown, ax=ax, shrink=0.8, label="ADU")
        ax.set_title(f"{key}, pair {pair} ({exptime:g} s), binned {factor}x{factor}")
        ax.set_xlabel(f"serial pixel / {factor}")
        ax.set_ylabel(f"parallel pixel / {factor}")
    fig.suptitle(f"{sensor}: assembled CCD (amp 1 lower left)")
    return fig

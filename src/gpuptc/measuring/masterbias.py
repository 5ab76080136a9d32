"""Master bias: the per-pixel median of overscan-corrected bias frames."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.backend import get_backend
from gpuptc.formats.writer import write_raw
from gpuptc.measuring.compute import isr_regions
from gpuptc.measuring.isr import subtract_serial_overscan
from gpuptc.raws.exposure import RawReadError, read_raw
from gpuptc.raws.geometry import SensorGeometry
from gpuptc.schema import FileStatus

__all__ = [
    "MasterBias",
    "make_master_bias",
    "master_biases",
    "read_master_bias",
    "resolve_biases",
    "write_master_bias",
]


@dataclass
class MasterBias:
    """A master bias in raw-segment layout.

    Attributes
    ----------
    pixels : numpy.ndarray
        ``(amps, naxis2, naxis1)`` float32 residual bias after the serial overscan.
    geometry : SensorGeometry
        Geometry it applies to.
    sensor : str or None
        Sensor id.
    sources : list of str
        Bias frames combined (or the file read).

    Examples
    --------
    The master bias of the small simulated sensor ``simulated`` (made by
    :func:`gpuptc.simulate`), one float32 plane per amplifier in raw-segment layout:

    >>> bias = make_master_bias(simulated.biases)
    >>> bias.sensor, len(bias.sources)
    ('E2V-CCD250-101', 3)
    >>> bias.pixels.shape, bias.pixels.dtype
    ((16, 108, 98), dtype('float32'))
    >>> bias.geometry.amps[0].segment
    'Segment10'
    """

    pixels: np.ndarray
    geometry: SensorGeometry
    sensor: str | None
    sources: list[str]


def make_master_bias(
    paths: Sequence[str | os.PathLike[str]], *, skip: tuple[int, int] = (3, 3)
) -> MasterBias:
    """Combine bias frames into a master bias.

    Each frame has its per-row serial overscan median subtracted, then the per-pixel
    median over frames is taken.

    Parameters
    ----------
    paths : sequence of path-like
        Bias frames of one sensor, all with one layout.
    skip : (int, int)
        Leading and trailing overscan columns left out of the row median.

    Returns
    -------
    MasterBias
        The combined bias.

    Raises
    ------
    ValueError
        If no frame is given or the frames differ in layout or sensor.

    Examples
    --------
    The bias frames of the small simulated sensor ``simulated`` (made by
    :func:`gpuptc.simulate`); after the overscan the residual bias is near zero:

    >>> import numpy as np
    >>> bias = make_master_bias(simulated.biases)
    >>> bias.pixels.shape
    (16, 108, 98)
    >>> bool(abs(np.median(bias.pixels)) < 5)
    True
    >>> make_master_bias([])
    Traceback (most recent call last):
    ...
    ValueError: no bias frame to combine
    """
    if not paths:
        raise ValueError("no bias frame to combine")
    frames = []
    geometry: SensorGeometry | None = None
    sensor = None
    for path in paths:
        raw = read_raw(path)
        if geometry is None:
            geometry, sensor = raw.geometry, raw.info.sensor
        elif raw.geometry.layout != geometry.layout or raw.info.sensor != sensor:
            raise RawReadError(
                path,
                f"bias layout {raw.geometry.layout} of {raw.info.sensor} does not match "
                f"{geometry.layout} of {sensor}",
            )
        corrected = subtract_serial_overscan(
            raw.pixels.astype(np.float32),
            isr_regions(raw.geometry),
            skip=skip,
            backend=get_backend("numpy"),
        )
        frames.append(corrected)
    assert geometry is not None
    combined = np.median(np.stack(frames), axis=0).astype(np.float32)
    return MasterBias(combined, geometry, sensor, [os.fspath(p) for p in paths])


def write_master_bias(path: str | os.PathLike[str], bias: MasterBias) -> Path:
    """Write a master bias as a raw-layout float32 file marked ORIGIN = 'gpuptc'."""
    primary = {"ORIGIN": "gpuptc", "IMGTYPE": "MASTER_BIAS", "NCOMBINE": len(bias.sources)}
    if bias.sensor:
        primary["LSST_NUM"] = bias.sensor
    segments = [
        {
            "EXTNAME": g.segment,
            "CHANNEL": g.amp,
            "DATASEC": str(g.datasec),
            **({"DETSEC": str(g.detsec)} if g.detsec else {}),
        }
        for g in bias.geometry.amps
    ]
    return write_raw(path, bias.pixels, primary, segments)


def read_master_bias(path: str | os.PathLike[str]) -> MasterBias:
    """Read a master bias in raw-segment layout (ours, or an EOTEST superbias).

    Files without ORIGIN = 'gpuptc' (an EOTEST superbias keeps its overscan) get their
    serial overscan subtracted per row.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    MasterBias
        Its pixels, geometry and sensor; ``sources`` is the file.

    Examples
    --------
    A master bias of the simulated sensor ``simulated``, written into the empty
    directory ``tmp`` and read back unchanged:

    >>> import numpy as np
    >>> from gpuptc.measuring.masterbias import write_master_bias
    >>> bias = make_master_bias(simulated.biases)
    >>> path = write_master_bias(tmp / "master_bias.fits", bias)
    >>> again = read_master_bias(path)
    >>> again.sensor, again.pixels.shape
    ('E2V-CCD250-101', (16, 108, 98))
    >>> bool(np.array_equal(again.pixels, bias.pixels))
    True
    """
    raw = read_raw(path)
    pixels = raw.pixels.astype(np.float32)
    if (raw.info.origin or "").lower() != "gpuptc":
        pixels = subtract_serial_overscan(
            pixels, isr_regions(raw.geometry), backend=get_backend("numpy")
        )
    return MasterBias(pixels, raw.geometry, raw.info.sensor, [os.fspath(path)])


def master_biases(manifest: pd.DataFrame) -> dict[str, MasterBias]:
    """Combine the bias frames of each sensor in a manifest.

    Parameters
    ----------
    manifest : pandas.DataFrame
        From :func:`gpuptc.ingest`; rows with status ``bias`` are used.

    Returns
    -------
    dict of str to MasterBias
        One master bias per sensor that has bias frames.

    Examples
    --------
    The manifest of the directory ``raw_dir`` of a small simulated sensor's raws:

    >>> from gpuptc import ingest
    >>> biases = master_biases(ingest(raw_dir))
    >>> list(biases)
    ['E2V-CCD250-101']
    >>> len(biases["E2V-CCD250-101"].sources)
    3
    """
    biases = manifest[manifest["status"] == FileStatus.BIAS]
    return {
        str(sensor): make_master_bias(list(group["path"]))
        for sensor, group in biases.groupby("sensor", sort=True)
    }


def resolve_biases(
    manifest: pd.DataFrame,
    bias: MasterBias | str | os.PathLike[str] | Sequence[Any] | dict[str, MasterBias] | None,
    sensors: list[str],
) -> dict[str, MasterBias]:
    """The master bias of each sensor: given, read from files, or built from the manifest.

    Parameters
    ----------
    manifest : pandas.DataFrame
        From :func:`gpuptc.ingest`; its bias frames are combined when ``bias`` is None.
    bias : MasterBias, path(s), dict or None
        One master bias for every sensor, files of master biases (each names its
        sensor, or the run has one), or a mapping sensor -> master bias.
    sensors : list of str
        The sensors measured.

    Returns
    -------
    dict of str to MasterBias
        Sensor -> master bias (sensors without one are absent).

    Raises
    ------
    ValueError
        If a master bias file names no sensor and the run has several.
    """
    if bias is None:
        return master_biases(manifest[manifest["sensor"].isin(sensors)])
    if isinstance(bias, MasterBias):
        return {s: bias for s in sensors}
    if isinstance(bias, dict):
        return dict(bias)
    paths = [bias] if isinstance(bias, str | os.PathLike) else list(bias)
    biases = {}
    for path in paths:
        master = read_master_bias(path)
        key = master.sensor or (sensors[0] if len(sensors) == 1 else None)
        if key is None:
            raise ValueError(f"{path}: master bias names no sensor and the run has several")
        biases[key] = master
    return biases

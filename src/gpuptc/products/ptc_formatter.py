"""Reads gpuptc's calibrations from a data repository as the stack's own types.

The datastore records these formatters for the PTC datasets and linearizers gpuptc puts
into a repository where the stack's obs_base is not installed
(:mod:`gpuptc.products.butler_output`); ``butler.get`` then needs gpuptc and ip_isr
importable. Without ip_isr, :func:`gpuptc.read_ptc_dataset` and
:func:`gpuptc.read_linearizer` read the same files into gpuptc's tables.
"""

from __future__ import annotations

from typing import Any

from lsst.daf.butler import FormatterV2

__all__ = ["LinearizerFormatter", "PtcFormatter"]


class PtcFormatter(FormatterV2):
    """A PTC dataset FITS file read by ``lsst.ip.isr.PhotonTransferCurveDataset.readFits``."""

    default_extension = ".fits"
    supported_extensions = frozenset({".fits"})
    can_read_from_local_file = True

    def read_from_local_file(
        self, path: str, component: str | None = None, expected_size: int = -1
    ) -> Any:
        """The dataset in ``path`` as the storage class's type (ip_isr's)."""
        try:
            from lsst.ip.isr import PhotonTransferCurveDataset
        except ImportError as exc:
            raise ImportError(
                f"{path}: reading a PTC dataset as lsst.ip.isr.PhotonTransferCurveDataset "
                f"needs the Rubin stack's ip_isr ({exc}); gpuptc.read_ptc_dataset(path) reads "
                "it into gpuptc's tables without it"
            ) from exc
        return PhotonTransferCurveDataset.readFits(path)


class LinearizerFormatter(FormatterV2):
    """A linearizer FITS file read by ``lsst.ip.isr.Linearizer.readFits``."""

    default_extension = ".fits"
    supported_extensions = frozenset({".fits"})
    can_read_from_local_file = True

    def read_from_local_file(
        self, path: str, component: str | None = None, expected_size: int = -1
    ) -> Any:
        """The linearizer in ``path`` as the storage class's type (ip_isr's)."""
        try:
            from lsst.ip.isr import Linearizer
        except ImportError as exc:
            raise ImportError(
                f"{path}: reading a linearizer as lsst.ip.isr.Linearizer needs the Rubin "
                f"stack's ip_isr ({exc}); gpuptc.read_linearizer(path) reads it into "
                "gpuptc's tables without it"
            ) from exc
        return Linearizer.readFits(path)

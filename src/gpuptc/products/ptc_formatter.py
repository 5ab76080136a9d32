"""Reads a gpuptc PTC dataset from a data repository as the stack's PhotonTransferCurveDataset.

The datastore records this formatter for the PTC files gpuptc puts into a repository
where the stack's obs_base is not installed (:mod:`gpuptc.products.butler_output`);
``butler.get`` then needs gpuptc and ip_isr importable. Without ip_isr,
:func:`gpuptc.read_ptc_dataset` reads the same file into gpuptc's tables.
"""

from __future__ import annotations

from typing import Any

from lsst.daf.butler import FormatterV2

__all__ = ["PtcFormatter"]


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

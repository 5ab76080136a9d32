"""Reads gpuptc's calibrations from a data repository as the stack's own types.

The datastore records these formatters for the PTC datasets and linearizers gpuptc puts
into a repository where the stack's obs_base is not installed
(:mod:`gpuptc.products.butler_output`); ``butler.get`` then needs gpuptc and ip_isr
importable. Without ip_isr, :func:`gpuptc.read_ptc_dataset` and
:func:`gpuptc.read_linearizer` read the same files into gpuptc's tables.
"""

from __future__ import annotations

import importlib
from typing import Any

from lsst.daf.butler import FormatterV2

__all__ = ["LinearizerFormatter", "PtcFormatter"]


class _IsrCalibrationFormatter(FormatterV2):
    """A calibration FITS file read by ``lsst.ip.isr.<calibration>.readFits``."""

    default_extension = ".fits"
    supported_extensions = frozenset({".fits"})
    can_read_from_local_file = True
    calibration = ""
    """The ip_isr class."""
    what = ""
    """The calibration in words."""
    reader = ""
    """gpuptc's reader of the same file."""

    def read_from_local_file(
        self, path: str, component: str | None = None, expected_size: int = -1
    ) -> Any:
        """The calibration in ``path`` as the storage class's type (ip_isr's)."""
        try:
            isr = importlib.import_module("lsst.ip.isr")
        except ImportError as exc:
            raise ImportError(
                f"{path}: reading a {self.what} as lsst.ip.isr.{self.calibration} needs the "
                f"Rubin stack's ip_isr ({exc}); gpuptc.{self.reader}(path) reads it into "
                "gpuptc's tables without it"
            ) from exc
        return getattr(isr, self.calibration).readFits(path)


class PtcFormatter(_IsrCalibrationFormatter):
    """A PTC dataset FITS file read by ``lsst.ip.isr.PhotonTransferCurveDataset.readFits``."""

    calibration, what, reader = "PhotonTransferCurveDataset", "PTC dataset", "read_ptc_dataset"


class LinearizerFormatter(_IsrCalibrationFormatter):
    """A linearizer FITS file read by ``lsst.ip.isr.Linearizer.readFits``."""

    calibration, what, reader = "Linearizer", "linearizer", "read_linearizer"


class BfKernelFormatter(_IsrCalibrationFormatter):
    """A brighter-fatter kernel file read by ``lsst.ip.isr.BrighterFatterKernel.readFits``."""

    calibration, what, reader = "BrighterFatterKernel", "brighter-fatter kernel", "read_bf_kernel"

"""A run's cp_pipe PTC datasets put into a Rubin data repository, where cp_pipe puts its own.

Each sensor's ``cp_pipe/<sensor>_ptc.fits`` is ingested (copied into the datastore) as a
``ptc`` dataset (dimensions instrument and detector, storage class
``PhotonTransferCurveDataset``) into a RUN collection the user names, in one transaction.
Which formatter the datastore records for reading it back is decided by
:func:`ptc_formatter`: the stack's generic FITS formatter where obs_base is installed,
else gpuptc's own (:class:`gpuptc.products.ptc_formatter.PtcFormatter`), so that
``butler.get`` returns an ``lsst.ip.isr.PhotonTransferCurveDataset`` wherever ip_isr is.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gpuptc.errors import GpuptcError
from gpuptc.inputs.butler import ButlerInputError, butler_module
from gpuptc.products.cp_pipe_ptc import detector_number

__all__ = [
    "PTC_DATASET_TYPE",
    "ButlerOutput",
    "ButlerOutputError",
    "ptc_formatter",
    "sensor_detectors",
]

log = logging.getLogger(__name__)

PTC_DATASET_TYPE = "ptc"
"""The dataset type cp_pipe's PTC task writes (dimensions instrument and detector)."""

_STORAGE_CLASS = "PhotonTransferCurveDataset"
_STACK_FORMATTER = "lsst.obs.base.formatters.fitsGeneric.FitsGenericFormatter"
_OWN_FORMATTER = "gpuptc.products.ptc_formatter.PtcFormatter"


def ptc_formatter() -> str:
    """The formatter recorded for the PTC files: the stack's where obs_base imports."""
    try:
        importlib.import_module(_STACK_FORMATTER.rsplit(".", 1)[0])
    except ImportError:
        return _OWN_FORMATTER
    return _STACK_FORMATTER


def sensor_detectors(manifest: pd.DataFrame) -> dict[str, int]:
    """Each sensor's detector id: the repository's, else LSSTCam's number of its slot.

    The repository's is the manifest's ``detector`` column, where it came from a query.
    """
    found: dict[str, int] = {}
    for sensor, rows in manifest.dropna(subset=["sensor"]).groupby("sensor"):
        if "detector" in rows and rows["detector"].notna().any():
            found[str(sensor)] = int(rows["detector"].dropna().iloc[0])
            continue
        number = detector_number(rows["raftbay"].iloc[0], rows["ccdslot"].iloc[0])
        if number is not None:
            found[str(sensor)] = number
    return found


class ButlerOutputError(GpuptcError, OSError):
    """The results could not be put into the repository (the run's outputs abandoned)."""


@dataclass(frozen=True)
class ButlerOutput:
    """Where a run puts its PTC datasets: a RUN collection of a data repository.

    Attributes
    ----------
    repo : str
        The repository (a path or URI of its root, or a label Butler knows).
    run : str
        The RUN collection (created if it does not exist).
    instrument : str
        The instrument of the datasets' data ids.

    Examples
    --------
    A new, empty repository (made with lsst-daf-butler in the empty directory ``tmp``)
    can take a run's results; one that does not exist cannot:

    >>> from lsst.daf.butler import Butler
    >>> _ = Butler.makeRepo(str(tmp / "repo"))
    >>> output = ButlerOutput(str(tmp / "repo"), run="u/me/ptc")
    >>> output.instrument
    'LSSTCam'
    >>> output.check()  # nothing raised: gpuptc.run(..., publish=output) may put them there
    >>> ButlerOutput(str(tmp / "nowhere"), run="u/me/ptc").check()
    Traceback (most recent call last):
    ...
    gpuptc.inputs.butler.ButlerInputError: .../nowhere: cannot be written into RUN u/me/ptc (...)
    """

    repo: str
    run: str
    instrument: str = "LSSTCam"

    def _butler(self) -> Any:
        butler = butler_module()
        try:
            return butler.Butler.from_config(self.repo, writeable=True, run=self.run)
        except Exception as exc:
            raise ButlerInputError(
                f"{self.repo}: cannot be written into RUN {self.run} ({exc})"
            ) from exc

    def check(self) -> None:
        """Fail now, before anything is measured, if the repository cannot take the results.

        Raises
        ------
        ButlerInputError
            Without lsst-daf-butler, for a repository that cannot be opened for writing,
            or a dataset type ``ptc`` defined otherwise than cp_pipe's.
        """
        self._dataset_type(self._butler(), register=False)

    def _dataset_type(self, repository: Any, *, register: bool) -> Any:
        butler = butler_module()
        wanted = butler.DatasetType(
            PTC_DATASET_TYPE,
            ("instrument", "detector"),
            _STORAGE_CLASS,
            universe=repository.dimensions,
        )
        try:
            existing = repository.get_dataset_type(PTC_DATASET_TYPE)
        except butler.MissingDatasetTypeError:
            existing = None
        if existing is not None and not existing.is_compatible_with(wanted):
            raise ButlerInputError(
                f"{self.repo}: dataset type {PTC_DATASET_TYPE!r} is {existing}, not {wanted}"
            )
        if existing is None and register:
            repository.registry.registerDatasetType(wanted)
        return existing or wanted

    def ingest(self, files: Mapping[str, Path], detectors: Mapping[str, int]) -> dict[str, Any]:
        """Ingest each sensor's PTC file (copied) into the RUN collection, all or none.

        Parameters
        ----------
        files : mapping of str to Path
            Sensor -> its PTC dataset file.
        detectors : mapping of str to int
            Sensor -> detector id (:func:`sensor_detectors`).

        Returns
        -------
        dict
            What ``run.json`` records: repository, run, formatter and each sensor's
            dataset id.

        Raises
        ------
        ButlerOutputError
            For a sensor without a detector id or one the repository does not know, or a
            detector that already has a ``ptc`` dataset in the run.
        """
        butler = butler_module()
        repository = self._butler()
        dataset_type = self._dataset_type(repository, register=True)
        repository.registry.registerCollection(self.run, butler.CollectionType.RUN)
        formatter = ptc_formatter()
        datasets, ids = [], {}
        for sensor, path in sorted(files.items()):
            if sensor not in detectors:
                raise ButlerOutputError(f"{sensor}: no detector id for the repository")
            data_id = {"instrument": self.instrument, "detector": detectors[sensor]}
            ref = butler.DatasetRef(dataset_type, data_id, run=self.run)
            datasets.append(butler.FileDataset(path=str(path), refs=[ref], formatter=formatter))
            ids[sensor] = str(ref.id)
        try:
            repository.ingest(*datasets, transfer="copy")
        except Exception as exc:
            raise ButlerOutputError(
                f"{self.repo}: the PTC datasets could not be put into {self.run} ({exc})"
            ) from exc
        log.info("%d PTC datasets put into %s of %s", len(ids), self.run, self.repo)
        return {"repo": self.repo, "run": self.run, "formatter": formatter, "datasets": ids}

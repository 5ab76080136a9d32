"""A run's cp_pipe calibrations put into a Rubin data repository, where cp_pipe puts its own.

Each sensor's ``cp_pipe/<sensor>_ptc.fits`` is ingested (copied into the datastore) as a
``ptc`` dataset (dimensions instrument and detector, storage class
``PhotonTransferCurveDataset``) and its ``cp_pipe/<sensor>_linearizer.fits`` as a
``linearizer`` dataset (storage class ``Linearizer``), into a RUN collection the user
names, in one transaction. Which formatter the datastore records for reading them back is
decided by :func:`calibration_formatter`: the stack's generic FITS formatter where obs_base is
installed, else gpuptc's own (:mod:`gpuptc.products.ptc_formatter`), so that
``butler.get`` returns ip_isr's ``PhotonTransferCurveDataset`` or ``Linearizer`` wherever
ip_isr is.
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
    "BF_KERNEL_DATASET_TYPE",
    "DATASET_TYPES",
    "LINEARIZER_DATASET_TYPE",
    "PTC_DATASET_TYPE",
    "ButlerOutput",
    "ButlerOutputError",
    "calibration_formatter",
    "sensor_detectors",
]

log = logging.getLogger(__name__)

PTC_DATASET_TYPE = "ptc"
"""The dataset type cp_pipe's PTC task writes (dimensions instrument and detector)."""
LINEARIZER_DATASET_TYPE = "linearizer"
"""The dataset type cp_pipe's linearity task writes in its LSSTCam pipelines."""
BF_KERNEL_DATASET_TYPE = "bfk"
"""The dataset type of brighter-fatter kernels Rubin's ISR reads."""

DATASET_TYPES = {
    PTC_DATASET_TYPE: ("PhotonTransferCurveDataset", "gpuptc.products.ptc_formatter.PtcFormatter"),
    LINEARIZER_DATASET_TYPE: (
        "Linearizer",
        "gpuptc.products.ptc_formatter.LinearizerFormatter",
    ),
    BF_KERNEL_DATASET_TYPE: (
        "BrighterFatterKernel",
        "gpuptc.products.ptc_formatter.BfKernelFormatter",
    ),
}
"""Each dataset type a run publishes: its storage class and gpuptc's own formatter."""

_STACK_FORMATTER = "lsst.obs.base.formatters.fitsGeneric.FitsGenericFormatter"


def calibration_formatter(dataset_type: str = PTC_DATASET_TYPE) -> str:
    """The formatter recorded for a dataset type's files: the stack's where obs_base imports."""
    try:
        importlib.import_module(_STACK_FORMATTER.rsplit(".", 1)[0])
    except ImportError:
        return DATASET_TYPES[dataset_type][1]
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
            or a dataset type ``ptc`` or ``linearizer`` defined otherwise than cp_pipe's.
        """
        repository = self._butler()
        for name in DATASET_TYPES:
            self._dataset_type(repository, name, register=False)

    def _dataset_type(self, repository: Any, name: str, *, register: bool) -> Any:
        butler = butler_module()
        wanted = butler.DatasetType(
            name,
            ("instrument", "detector"),
            DATASET_TYPES[name][0],
            universe=repository.dimensions,
        )
        try:
            existing = repository.get_dataset_type(name)
        except butler.MissingDatasetTypeError:
            existing = None
        if existing is not None and not existing.is_compatible_with(wanted):
            raise ButlerInputError(
                f"{self.repo}: dataset type {name!r} is {existing}, not {wanted}"
            )
        if existing is None and register:
            repository.registry.registerDatasetType(wanted)
        return existing or wanted

    def ingest(
        self, files: Mapping[str, Mapping[str, Path]], detectors: Mapping[str, int]
    ) -> dict[str, Any]:
        """Ingest each sensor's calibration files (copied) into the RUN collection, all or none.

        Parameters
        ----------
        files : mapping of str to mapping of str to Path
            Dataset type (``ptc``, ``linearizer``) -> sensor -> its file.
        detectors : mapping of str to int
            Sensor -> detector id (:func:`sensor_detectors`).

        Returns
        -------
        dict
            What ``run.json`` records: repository, run, the PTC datasets' formatter and each
            sensor's dataset id (``datasets``), and the linearizers' (``linearizers``).

        Raises
        ------
        ButlerOutputError
            For a sensor without a detector id or one the repository does not know, or a
            detector that already has such a dataset in the run.
        """
        butler = butler_module()
        repository = self._butler()
        repository.registry.registerCollection(self.run, butler.CollectionType.RUN)
        datasets, ids = [], {}
        for name, per_sensor in files.items():
            dataset_type = self._dataset_type(repository, name, register=True)
            formatter = calibration_formatter(name)
            ids[name] = {}
            for sensor, path in sorted(per_sensor.items()):
                if sensor not in detectors:
                    raise ButlerOutputError(f"{sensor}: no detector id for the repository")
                data_id = {"instrument": self.instrument, "detector": detectors[sensor]}
                ref = butler.DatasetRef(dataset_type, data_id, run=self.run)
                datasets.append(butler.FileDataset(path=str(path), refs=[ref], formatter=formatter))
                ids[name][sensor] = str(ref.id)
        try:
            repository.ingest(*datasets, transfer="copy")
        except Exception as exc:
            raise ButlerOutputError(
                f"{self.repo}: the PTC datasets could not be put into {self.run} ({exc})"
            ) from exc
        log.info("%d calibrations put into %s of %s", len(datasets), self.run, self.repo)
        return {
            "repo": self.repo,
            "run": self.run,
            "formatter": calibration_formatter(),
            "datasets": ids.get(PTC_DATASET_TYPE, {}),
            "linearizers": ids.get(LINEARIZER_DATASET_TYPE, {}),
            "bf_kernels": ids.get(BF_KERNEL_DATASET_TYPE, {}),
        }

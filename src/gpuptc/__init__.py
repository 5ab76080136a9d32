"""gpuptc: photon transfer curves of LSST camera CCDs on NumPy or CuPy."""

from gpuptc._version import __version__
from gpuptc.errors import GpuptcError
from gpuptc.fitting.solve import fit, fit_ptc
from gpuptc.inputs.butler import ButlerQuery, ingest_butler
from gpuptc.inputs.manifest import ingest
from gpuptc.measuring.masterbias import (
    MasterBias,
    make_master_bias,
    master_biases,
    read_master_bias,
)
from gpuptc.measuring.sensor import measure
from gpuptc.products.bf_kernel_file import read_bf_kernel, write_bf_kernel
from gpuptc.products.butler_output import ButlerOutput
from gpuptc.products.compare import compare, write_eotest_files
from gpuptc.products.cp_pipe_ptc import read_ptc_dataset, write_ptc_dataset
from gpuptc.products.linearizer import read_linearizer, write_linearizer
from gpuptc.products.verdict import Thresholds, amp_verdicts, sensor_verdicts
from gpuptc.raws.exposure import RawExposure, RawReadError, read_raw
from gpuptc.running.job import run
from gpuptc.running.refit import refit
from gpuptc.simulation.simulate import SimulationConfig, simulate

__all__ = [
    "ButlerOutput",
    "ButlerQuery",
    "GpuptcError",
    "MasterBias",
    "RawExposure",
    "RawReadError",
    "SimulationConfig",
    "Thresholds",
    "__version__",
    "amp_verdicts",
    "compare",
    "fit",
    "fit_ptc",
    "ingest",
    "ingest_butler",
    "make_master_bias",
    "master_biases",
    "measure",
    "read_bf_kernel",
    "read_linearizer",
    "read_master_bias",
    "read_ptc_dataset",
    "read_raw",
    "refit",
    "run",
    "sensor_verdicts",
    "simulate",
    "write_bf_kernel",
    "write_eotest_files",
    "write_linearizer",
    "write_ptc_dataset",
]

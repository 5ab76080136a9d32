"""gpuptc: photon transfer curves of LSST camera CCDs on NumPy or CuPy."""

from gpuptc._version import __version__
from gpuptc.compare import compare, write_eotest_files
from gpuptc.cp_pipe_ptc import read_ptc_dataset, write_ptc_dataset
from gpuptc.io.butler import ButlerQuery, ingest_butler
from gpuptc.io.butler_output import ButlerOutput
from gpuptc.io.manifest import ingest
from gpuptc.io.raw import RawExposure, RawReadError, read_raw
from gpuptc.job import run
from gpuptc.masterbias import MasterBias, make_master_bias, master_biases, read_master_bias
from gpuptc.pipeline import measure
from gpuptc.refit import refit
from gpuptc.simulate import SimulationConfig, simulate
from gpuptc.solve import fit, fit_ptc

__all__ = [
    "ButlerOutput",
    "ButlerQuery",
    "MasterBias",
    "RawExposure",
    "RawReadError",
    "SimulationConfig",
    "__version__",
    "compare",
    "fit",
    "fit_ptc",
    "ingest",
    "ingest_butler",
    "make_master_bias",
    "master_biases",
    "measure",
    "read_master_bias",
    "read_ptc_dataset",
    "read_raw",
    "refit",
    "run",
    "simulate",
    "write_eotest_files",
    "write_ptc_dataset",
]

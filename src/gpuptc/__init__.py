"""gpuptc: photon transfer curves of LSST camera CCDs on NumPy or CuPy."""

from importlib.metadata import PackageNotFoundError, version

from gpuptc.compare import compare, write_eotest_files
from gpuptc.io.manifest import ingest
from gpuptc.io.raw import RawExposure, RawReadError, read_raw
from gpuptc.masterbias import MasterBias, make_master_bias, master_biases, read_master_bias
from gpuptc.pipeline import measure
from gpuptc.simulate import SimulationConfig, simulate
from gpuptc.solve import fit, fit_ptc

try:
    __version__ = version("gpuptc")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = [
    "MasterBias",
    "RawExposure",
    "RawReadError",
    "SimulationConfig",
    "__version__",
    "compare",
    "fit",
    "fit_ptc",
    "ingest",
    "make_master_bias",
    "master_biases",
    "measure",
    "read_master_bias",
    "read_raw",
    "simulate",
    "write_eotest_files",
]

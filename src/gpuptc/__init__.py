"""gpuptc: photon transfer curves of LSST camera CCDs on NumPy or CuPy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gpuptc")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]

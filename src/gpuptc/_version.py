"""The installed version of gpuptc."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gpuptc")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

"""gpuptc: photon transfer curves of LSST camera CCDs on NumPy or CuPy.

The public names (listed in ``__init__.pyi``) are imported from their modules when first
used: ``import gpuptc`` itself costs nothing more than the modules it is asked for.
"""

from gpuptc._shared.lazy import attach_stub

__getattr__, __dir__, __all__ = attach_stub(__name__, __file__)

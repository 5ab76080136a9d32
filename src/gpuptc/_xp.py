"""Array-namespace helpers: the pieces of array work the array API standard lacks.

Every function takes ``xp`` (an array-API namespace) explicitly; NumPy and CuPy get
their native fast path, any other namespace a generic sort-based one.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_compat

__all__ = ["median", "namespace", "to_host"]


def namespace(*arrays: Any) -> ModuleType:
    """The array-API namespace of ``arrays`` (array-api-compat wrapped)."""
    return array_api_compat.array_namespace(*arrays)


def median(x: Any, /, *, axis: int, xp: ModuleType) -> Any:
    """Median along one axis (the mean of the two middle values for even counts).

    Parameters
    ----------
    x : array
        Input values; NaNs propagate.
    axis : int
        Axis to reduce.
    xp : module
        Array namespace of ``x``.

    Returns
    -------
    array
        ``x`` reduced along ``axis``.
    """
    if array_api_compat.is_numpy_namespace(xp):
        import numpy as np

        return np.median(x, axis=axis)
    if array_api_compat.is_cupy_namespace(xp):
        import cupy

        return cupy.median(x, axis=axis)
    ordered = xp.sort(x, axis=axis)
    n = ordered.shape[axis]
    lower = xp.take(ordered, xp.asarray([(n - 1) // 2]), axis=axis)
    upper = xp.take(ordered, xp.asarray([n // 2]), axis=axis)
    return xp.squeeze((lower + upper) / 2, axis=axis)


def to_host(x: Any) -> Any:
    """Copy an array of any namespace to a NumPy array (the one explicit host copy)."""
    import numpy as np

    if array_api_compat.is_numpy_array(x):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)

"""Each amp's brighter-fatter kernel as an image, on a sensor's page."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gpuptc.fitting.bf_sensor import DETECTOR_SEGMENT, kernel_centres
from gpuptc.report.charts.spec import Chart, grid, rounded, tooltip
from gpuptc.schema import file_stem

__all__ = ["bf_kernel_chart"]


def _cells(row: Any) -> pd.DataFrame:
    """One amp's kernel as cells: serial lag ``i``, parallel lag ``j``, value (1/e-)."""
    size = int(row.size)
    kernel = np.asarray(row.kernel, float).reshape(size, size)
    half = size // 2
    lags = np.arange(size) - half
    i, j = np.meshgrid(lags, lags, indexing="ij")
    return pd.DataFrame(
        {"amp": int(row.amp), "i": i.ravel(), "j": j.ravel(), "value": kernel.ravel()}
    )


def _layers(top: float) -> list[dict[str, Any]]:
    cell = {
        "x": {"field": "j", "type": "ordinal", "title": "j (parallel lag)"},
        "y": {"field": "i", "type": "ordinal", "title": "i (serial lag)", "sort": "descending"},
    }
    colour = {"scheme": "redblue", "reverse": True, "domain": [-top, top], "clamp": True}
    return [
        {
            "kind": "kernel",
            "mark": "rect",
            "encoding": {
                **cell,
                "color": {
                    "field": "value",
                    "type": "quantitative",
                    "title": "1/e-",
                    "scale": colour,
                    "legend": {"format": ".1e"},
                },
                "tooltip": tooltip("amp", "i", "j", "value"),
            },
        },
        {
            "kind": "summary",
            "mark": {"type": "text", "align": "left", "baseline": "top", "x": 4, "y": 4},
            "encoding": {"text": {"field": "label", "type": "nominal"}},
        },
    ]


def bf_kernel_chart(kernels: pd.DataFrame, sensor: str) -> Chart | None:
    """Each amp's brighter-fatter kernel, on one symmetric colour scale.

    Parameters
    ----------
    kernels : pandas.DataFrame
        The run's ``bf_kernel`` table (``bfk.parquet``).
    sensor : str
        The sensor.

    Returns
    -------
    Chart or None
        None where the sensor has no kernel.
    """
    mine = kernels[(kernels["sensor"] == sensor) & (kernels["size"] > 0)]
    mine = mine[mine["segment"] != DETECTOR_SEGMENT]
    if mine.empty:
        return None
    rows = list(mine.itertuples())
    centres = kernel_centres(mine).to_numpy()
    cells = pd.concat([_cells(r) for r in rows], ignore_index=True)
    off_centre = cells.loc[(cells["i"] != 0) | (cells["j"] != 0), "value"].abs()
    top = rounded(float(off_centre.max())) if off_centre.gt(0).any() else 1.0
    labels = [
        f"{r.method}, {'valid' if r.valid else 'not valid'} ({r.status}), K00 {k00:.2e}"
        for r, k00 in zip(rows, centres, strict=True)
    ]
    summary = pd.DataFrame({"amp": [int(r.amp) for r in rows], "label": labels})
    spec, data = grid({"kernel": cells, "summary": summary}, _layers(top))
    spec["title"] = f"{sensor}: brighter-fatter kernels (per amp)"
    caption = (
        "Each amp's brighter-fatter kernel (1/e-; i serial, j parallel lag, as the "
        "covariances and cp_pipe index it), on a symmetric colour scale set by the lags "
        "other than the centre, whose far larger value is held at the scale's end and "
        "given in the panel's note with the method, validity and status. A valid kernel "
        "has its minimum at the centre and falls to zero at its edge."
    )
    return Chart(f"bf_kernel_{file_stem(sensor)}", caption, spec, data)

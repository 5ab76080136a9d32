"""The brighter-fatter kernels of a sensor from its tables: the rows of ``bfk.parquet``.

Every amp of the sensor goes to :func:`gpuptc.fitting.bf_kernel.solve_kernels` at once:
its pairs' covariances (``covariances``), means and the PTC's selection (``pairs``), the
adopted model's gain (``ptc``), and, where the preset asks for them, the full covariance
fit's ``a`` matrix or its model sampled at each pair's mean (``fullcov``). One row per amp
(and, at ``level = "DETECTOR"``, one for the detector, amp 0).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from gpuptc.backend import Backend
from gpuptc.config import BrighterFatterConfig
from gpuptc.fitting.bf_kernel import BfKernels, solve_kernels
from gpuptc.fitting.bf_metrics import BF_STAT_COLUMNS, CHECK_COLUMNS, bf_statistics
from gpuptc.fitting.fullcov import evaluate
from gpuptc.fitting.linearity_sensor import adopted_gains
from gpuptc.fitting.pair_arrays import covariance_cube, pair_grid

__all__ = [
    "BF_KERNEL_COLUMNS",
    "DETECTOR_SEGMENT",
    "kernel_centres",
    "kernel_method",
    "sensor_bf_kernels",
]

BF_KERNEL_COLUMNS: tuple[str, ...] = (
    "sensor",
    "amp",
    "segment",
    "level",
    "method",
    "gain",
    "n_pairs",
    "status",
    "valid",
    "converged",
    "size",
    "kernel",
    "pre_kernel",
    "input_pairs",
    "input_mask",
    *BF_STAT_COLUMNS,
    *CHECK_COLUMNS,
)
"""One row per amp of ``bfk.parquet``: the method (:func:`kernel_method`), the gain
(e-/ADU), the pairs that entered the kernel, status and validity, the kernel's side
``size`` and the kernel and pre-kernel (cp_pipe's MEAN_XCORRS) flattened row by row
(``size x size``, lag 0 at the centre, rows the covariances' first lag index), and per pair
in the PTC's order its number and whether it entered; eo_pipe's statistics of the amp's
covariances (:data:`gpuptc.fitting.bf_metrics.BF_STAT_COLUMNS`) and the ``--bf-check``
(:data:`gpuptc.fitting.bf_metrics.CHECK_COLUMNS`, empty and NaN until it runs). The
detector kernel, where solved, is a row of amp 0, segment ``DETECTOR``."""

DETECTOR_SEGMENT = "DETECTOR"
"""The segment name of a detector kernel's row."""
MIN_LAGS = 3
"""Covariance lags per axis a kernel needs: a 7 x 7 kernel is the smallest cp_pipe checks
(fewer, ``extract.cov_size`` below 3: every amp's status ``too_few_lags``)."""


def sensor_bf_kernels(
    pairs: pd.DataFrame,
    covariances: pd.DataFrame,
    ptc: pd.DataFrame,
    fullcov: pd.DataFrame,
    config: BrighterFatterConfig,
    model: str = "expapprox",
    backend: str | Backend = "numpy",
) -> pd.DataFrame:
    """Every amp's brighter-fatter kernel of one sensor.

    Parameters
    ----------
    pairs, covariances, ptc, fullcov : pandas.DataFrame
        The sensor's tables (``used`` filled by the PTC fit).
    config : BrighterFatterConfig
        The preset's ``[brighter_fatter]`` section.
    model : str
        The adopted PTC model (its gains; EXPAPPROXIMATION's where it has none).
    backend : str or Backend
        Where the kernels are solved.

    Returns
    -------
    pandas.DataFrame
        :data:`BF_KERNEL_COLUMNS`.
    """
    if pairs.empty or covariances.empty:
        return pd.DataFrame(columns=list(BF_KERNEL_COLUMNS))
    order = np.sort(pairs["pair"].unique())
    amps = np.sort(pairs["amp"].unique())
    mean = pair_grid(pairs, "mean", amps, order, np.nan)
    used = pair_grid(pairs.assign(used=pairs["used"].fillna(False)), "used", amps, order, False)
    cov = covariance_cube(covariances, amps, order)
    pair_gains = (
        pair_grid(pairs, "rhl_gain", amps, order, np.nan)
        if "rhl_gain" in pairs
        else [None] * len(amps)
    )
    gain = adopted_gains(ptc, model).reindex(amps).to_numpy(float)
    segments = pairs.drop_duplicates("amp").set_index("amp")["segment"].reindex(amps)
    sensor = str(pairs["sensor"].iloc[0])
    if cov.shape[-1] < MIN_LAGS:
        rows = _too_few_lags(sensor, amps, segments, gain, order, config)
        return _table(rows)
    extra = _fullcov_inputs(fullcov, config, amps, mean, gain, cov.shape[-1])
    solved = solve_kernels(
        cov, mean, gain, used.astype(bool), config, amp_names=list(segments), backend=backend,
        **extra,
    )  # fmt: skip
    method = kernel_method(config)
    rows = [
        _row(sensor, int(amp), str(segments[amp]), k, solved, gain[k], order, config.level, method)
        | bf_statistics(mean[k], used[k].astype(bool), cov[k], pair_gains[k])
        for k, amp in enumerate(amps)
    ]
    if solved.detector_kernel is not None:
        rows.append(_detector_row(sensor, solved, order, method))
    return _table(rows)


def _table(rows: list[dict]) -> pd.DataFrame:
    """The rows as :data:`BF_KERNEL_COLUMNS`, not checked yet."""
    table = pd.DataFrame(rows, columns=list(BF_KERNEL_COLUMNS))
    table["check_kernel"] = ""
    return table


def _too_few_lags(sensor, amps, segments, gain, order, config) -> list[dict]:
    """Every amp's row when the covariances have too few lags for a kernel."""
    none = {"n_pairs": 0, "status": "too_few_lags", "valid": False, "converged": False}
    empty = {"size": 0, "kernel": [], "pre_kernel": [], "input_pairs": [int(p) for p in order]}
    rows = [
        {"sensor": sensor, "amp": int(amp), "segment": str(segments[amp]), "level": config.level}
        | {"method": kernel_method(config)}
        | {"gain": float(g), **none, **empty, "input_mask": [False] * len(order)}
        for amp, g in zip(amps, gain, strict=True)
    ]
    return rows


def kernel_centres(kernels: pd.DataFrame) -> pd.Series:
    """Each row's kernel centre K_00 (1/e-), on the table's index; NaN without a kernel.

    Examples
    --------
    >>> table = pd.DataFrame({"size": [3, 0], "kernel": [[0.0, 0, 0, 0, -2e-6, 0, 0, 0, 0], []]})
    >>> kernel_centres(table).tolist()
    [-2e-06, nan]
    """
    centres = [
        float(np.asarray(kernel, float)[(int(size) ** 2) // 2]) if size else np.nan
        for kernel, size in zip(kernels["kernel"], kernels["size"], strict=True)
    ]
    return pd.Series(centres, index=kernels.index, dtype=float)


def kernel_method(config: BrighterFatterConfig) -> str:
    """The pre-kernel a configuration asks for, by name.

    Examples
    --------
    >>> kernel_method(BrighterFatterConfig(use_amatrix=True))
    'amatrix'
    """
    if config.use_amatrix:
        return "amatrix"
    if config.correlation_quadratic_fit:
        return "quadratic"
    if config.use_cov_model_sample:
        return "cov_model_sample"
    return "averaged"


def _fullcov_inputs(fullcov, config, amps, mean, gain, size) -> dict[str, np.ndarray]:
    """The full covariance fit's ``a`` matrix, or its model at each pair and its noise."""
    if not (config.use_amatrix or config.use_cov_model_sample):
        return {}
    fitted = fullcov[fullcov["model"] == "fullcov"]
    if fitted.empty:
        raise ValueError("use_amatrix and use_cov_model_sample need the fullcov model fitted")
    side = int(fitted["i"].max()) + 1
    parameters = {name: np.full((len(amps), side, side), np.nan) for name in ("a", "b", "noise")}
    for k, amp in enumerate(amps):
        mine = fitted[fitted["amp"] == amp]
        for name, values in parameters.items():
            values[k, mine["i"].to_numpy(int), mine["j"].to_numpy(int)] = mine[name].to_numpy()
    if config.use_amatrix:
        return {"a_matrix": parameters["a"]}
    if side < size:
        raise ValueError(f"the fullcov fit has {side} lags, the covariances {size}")
    a, c, noise = parameters["a"], parameters["a"] * parameters["b"], parameters["noise"]
    model = np.stack(
        [
            evaluate(mean[k], a[k], c[k], noise[k], gain[k])[:, :size, :size]
            for k in range(len(amps))
        ]
    )
    return {"cov_model": model, "noise_matrix": noise[:, :size, :size]}


def _row(sensor, amp, segment, k, solved: BfKernels, gain, order, level, method) -> dict:
    size = solved.kernels.shape[-1]
    return {
        "sensor": sensor,
        "amp": amp,
        "segment": segment,
        "level": level,
        "method": method,
        "gain": float(gain) if math.isfinite(gain) else math.nan,
        "n_pairs": int(solved.kept[k].sum()),
        "status": solved.status[k],
        "valid": bool(solved.valid[k]),
        "converged": bool(solved.converged[k]),
        "size": size,
        "kernel": solved.kernels[k].ravel().tolist(),
        "pre_kernel": solved.pre_kernels[k].ravel().tolist(),
        "input_pairs": [int(p) for p in order],
        "input_mask": solved.kept[k].tolist(),
    }


def _detector_row(sensor: str, solved: BfKernels, order, method: str) -> dict[str, object]:
    kernel = np.asarray(solved.detector_kernel)
    return {
        "sensor": sensor,
        "amp": 0,
        "segment": DETECTOR_SEGMENT,
        "level": "DETECTOR",
        "method": method,
        "gain": math.nan,
        "n_pairs": int(solved.kept.sum()),
        "status": "ok",
        "valid": solved.detector_valid,
        "converged": solved.detector_converged,
        "size": kernel.shape[-1],
        "kernel": kernel.ravel().tolist(),
        "pre_kernel": [],
        "input_pairs": [int(p) for p in order],
        "input_mask": solved.kept.any(axis=0).tolist(),
    }

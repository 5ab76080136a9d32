"""Table-level PTC fits: every model for every amplifier, and the ``used`` selection.

``fit(pairs, covariances, preset=...)`` turns the tables of :func:`gpuptc.measure` into
the ``ptc`` table (one row per sensor, amp and model) and fills ``used`` in ``pairs``;
``fit_ptc(mean, var, ...)`` fits one PTC for users who already have measurements. Both
go through :data:`MODEL_REGISTRY`: each model's name, what it needs and how it is fitted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from gpuptc.backend import Backend, get_backend
from gpuptc.config import Preset, SolveConfig, get_preset
from gpuptc.fitting._common import variance_weights
from gpuptc.fitting.fullcov import FullCovFit, evaluate, fit_fullcov, fit_fullcov_batch
from gpuptc.fitting.long_range import subtract_long_range
from gpuptc.fitting.ptc import (
    MODELS,
    ROLLOFF_KEYS,
    PtcFit,
    fit_expapprox_cp_pipe,
    fit_expapprox_eotest,
    fit_linear,
    fit_powerlaw,
    fit_quadratic,
    fit_rhl,
    notebook_selection,
)
from gpuptc.fitting.turnoff import eotest_full_well, turnoff_with_sampling_error
from gpuptc.schema import (
    FULLCOV_COLUMNS,
    PTC_COLUMNS,
    FitStatus,
    PairStatus,
    Stage,
    rejected_frame,
    rejected_row,
    words,
)

__all__ = [
    "MODEL_REGISTRY",
    "Model",
    "amp_rejections",
    "covariance_cubes",
    "fit",
    "fit_matrices",
    "fit_ptc",
    "model_covariances",
    "per_pair_gain_column",
]

log = logging.getLogger(__name__)


@dataclass
class AmpData:
    """One amplifier's measurements, in pair order, as the models take them.

    Attributes
    ----------
    mean, var : numpy.ndarray
        ``(n,)`` per-pair means (ADU) and per-image variances (ADU^2).
    counts : numpy.ndarray
        ``(n,)`` pixels behind each variance (the weights of cp_pipe's fits).
    solve : SolveConfig
        The preset's fit settings.
    cov, npix : numpy.ndarray or None
        ``(n, L, L)`` covariances and their pixel pairs.
    gains : numpy.ndarray or None
        ``(n,)`` per-pair gains.
    flux : numpy.ndarray or None
        ``(n,)`` exposure times (s): the abscissa of EOTEST's full well.
    select_gains : bool
        Whether ``rhl`` takes the median over the ``used`` pairs only (else all gains).
    """

    mean: np.ndarray
    var: np.ndarray
    counts: np.ndarray
    solve: SolveConfig
    cov: np.ndarray | None = None
    npix: np.ndarray | None = None
    gains: np.ndarray | None = None
    flux: np.ndarray | None = None
    select_gains: bool = True

    @cached_property
    def expapprox(self) -> PtcFit:
        """The preset's EXPAPPROXIMATION fit (it selects the pairs of other models)."""
        weights = variance_weights(self.counts, self.var)
        if self.solve.method == "eotest":
            return fit_expapprox_eotest(
                self.mean,
                self.var,
                initial_max_mean=self.solve.eotest_initial_max_mean,
                sigma_cut=self.solve.sigma_cut,
            )
        return fit_expapprox_cp_pipe(self.mean, self.var, weights, settings=self.solve)

    @cached_property
    def used(self) -> np.ndarray:
        """The ``used`` selection: every pair for ``seed``, else the EXPAPPROXIMATION mask."""
        if self.solve.method == "seed":
            return np.ones(len(self.mean), bool)
        return self.expapprox.mask


def _fullcov_mask(data: AmpData) -> np.ndarray:
    """Pairs for the full-covariance fits: the EXPAPPROXIMATION selection, optionally cut."""
    expapprox, solve = data.expapprox, data.solve
    mask = (
        expapprox.mask if len(expapprox.mask) == len(data.mean) else np.zeros(len(data.mean), bool)
    )
    if solve.fullcov_max_signal is not None and np.isfinite(expapprox.gain):
        mask = mask & (data.mean * expapprox.gain <= solve.fullcov_max_signal)
    return mask


def _as_ptc_fit(result: FullCovFit, used: np.ndarray) -> PtcFit:
    """Summarise a full-covariance fit in the common shape; matrices go to ``extra``."""
    if result.status != FitStatus.OK:
        return PtcFit(result.model, mask=np.zeros(len(used), bool), status=result.status)
    return PtcFit(
        result.model,
        gain=result.gain,
        gain_err=result.gain_err,
        noise=result.noise,
        noise_err=result.noise_err,
        a00=float(result.a[0, 0]),
        a00_err=float(result.a_err[0, 0]),
        turnoff=result.turnoff,
        mask=used,
        chi2_dof=result.chi2_dof,
        extra={"fullcov": result},
    )


def _fit_covariances(
    cov: np.ndarray, npix: np.ndarray, var: np.ndarray, solve: SolveConfig
) -> np.ndarray:
    """The covariances the full model is fitted to.

    Less their long-range background where the preset asks
    (:func:`gpuptc.fitting.long_range.subtract_long_range`).
    """
    if not solve.subtract_long_range:
        return cov
    return subtract_long_range(cov, npix, var, solve.long_range_start, solve.long_range_degree)


def _fullcov(data: AmpData, *, with_b: bool) -> PtcFit:
    assert data.cov is not None and data.npix is not None
    mask = _fullcov_mask(data)
    result = fit_fullcov(
        data.mean[mask],
        _fit_covariances(data.cov[mask], data.npix[mask], data.var[mask], data.solve),
        data.npix[mask],
        data.var[mask],
        with_b=with_b,
        size=data.solve.fullcov_size,
    )
    return _as_ptc_fit(result, mask)


def _fullcov_batch(batch: Sequence[AmpData], backend: Backend, *, with_b: bool) -> list[PtcFit]:
    """The full-covariance fits of a sensor's amplifiers in one array computation.

    Each amplifier keeps its own pairs (its EXPAPPROXIMATION selection), convergence and
    status; one whose selection fails is ``failed`` without entering the batch.
    """
    name = "fullcov" if with_b else "fullcov_nob"
    masks = [
        _guarded(_fullcov_mask, data, f"amp {k + 1}: {name} selection", None)
        for k, data in enumerate(batch)
    ]
    fitted = [k for k, mask in enumerate(masks) if mask is not None]
    results = [
        PtcFit(name, mask=np.zeros(len(d.mean), bool), status=FitStatus.FAILED) for d in batch
    ]
    if not fitted:
        return results
    pairs = max(len(batch[k].mean) for k in fitted)
    size = batch[fitted[0]].cov.shape[-1]

    def padded(values: np.ndarray, fill: float) -> np.ndarray:
        out = np.full((pairs, *values.shape[1:]), fill)
        out[: len(values)] = values
        return out

    arrays = [
        np.stack([padded(getattr(batch[k], field), fill) for k in fitted])
        for field, fill in (("mean", np.nan), ("cov", np.nan), ("npix", 0.0), ("var", np.nan))
    ]
    used = np.stack([padded(masks[k], False).astype(bool) for k in fitted])
    solve = batch[fitted[0]].solve
    arrays[1] = _fit_covariances(*arrays[1:], solve)
    size = min(solve.fullcov_size or size, size)
    fits = fit_fullcov_batch(*arrays, used, with_b=with_b, size=size, backend=backend)
    for k, result in zip(fitted, fits, strict=True):
        results[k] = _as_ptc_fit(result, masks[k])
    return results


def _rhl(data: AmpData) -> PtcFit:
    assert data.gains is not None
    selected = data.select_gains and len(data.used) == len(data.gains)
    return fit_rhl(data.gains, data.used if selected else None)


@dataclass(frozen=True)
class Model:
    """One PTC model of the registry.

    Attributes
    ----------
    name : str
        As in ``ptc.model``.
    fit : callable
        ``fit(data: AmpData) -> PtcFit``.
    fit_batch : callable or None
        ``fit_batch(amps: Sequence[AmpData], backend) -> list[PtcFit]``: all amplifiers of
        a sensor in one computation on the :class:`~gpuptc.backend.Backend`, where the model
        has one;
        :func:`fit` uses it.
    needs_covariances : bool
        Whether it fits the covariance matrices (``cov=...``).
    needs_gains : bool
        Whether it takes the per-pair gains (``gains=...``).
    """

    name: str
    fit: Callable[[AmpData], PtcFit]
    needs_covariances: bool = False
    needs_gains: bool = False
    fit_batch: Callable[[Sequence[AmpData], ModuleType], list[PtcFit]] | None = None


def _notebook_points(data: AmpData, model: str) -> np.ndarray:
    """The pairs of a notebook fit (:func:`gpuptc.fitting.ptc.notebook_selection`)."""
    return notebook_selection(
        data.mean,
        data.var,
        data.expapprox.turnoff,
        getattr(data.solve, f"{model}_range"),
        getattr(data.solve, f"{model}_points"),
    )


MODEL_REGISTRY: dict[str, Model] = {
    model.name: model
    for model in (
        Model("expapprox", lambda d: d.expapprox),
        Model(
            "fullcov",
            lambda d: _fullcov(d, with_b=True),
            needs_covariances=True,
            fit_batch=lambda batch, backend: _fullcov_batch(batch, backend, with_b=True),
        ),
        Model(
            "fullcov_nob",
            lambda d: _fullcov(d, with_b=False),
            needs_covariances=True,
            fit_batch=lambda batch, backend: _fullcov_batch(batch, backend, with_b=False),
        ),
        Model("linear", lambda d: fit_linear(d.mean, d.var, points=_notebook_points(d, "linear"))),
        Model(
            "quadratic",
            lambda d: fit_quadratic(d.mean, d.var, points=_notebook_points(d, "quadratic")),
        ),
        Model(
            "powerlaw",
            lambda d: fit_powerlaw(d.mean, d.var, points=_notebook_points(d, "powerlaw")),
        ),
        Model("rhl", _rhl, needs_gains=True),
    )
}
"""Every PTC model by name, in the order of :data:`gpuptc.fitting.ptc.MODELS`."""


def _check_models(models: Sequence[str]) -> None:
    unknown = [m for m in models if m not in MODEL_REGISTRY]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")


def fit_ptc(
    mean: Sequence[float] | np.ndarray,
    var: Sequence[float] | np.ndarray,
    model: str = "expapprox",
    preset: str | Preset = "cp_pipe",
    *,
    cov: np.ndarray | None = None,
    npix: np.ndarray | None = None,
    gains: np.ndarray | None = None,
    **options: Any,
) -> PtcFit:
    """Fit one PTC from measurements you already have.

    Parameters
    ----------
    mean, var : array-like
        Per-pair mean (ADU) and per-image variance (ADU^2), in exposure order.
    model : str
        ``expapprox``, ``fullcov``, ``fullcov_nob``, ``linear``, ``quadratic``,
        ``powerlaw`` or ``rhl``.
    preset : str or Preset
        Fixes the fit procedure (``eotest``, ``cp_pipe``, ``cp_pipe_lsstcam``, ``seed``).
    cov : array, optional
        ``(n, L, L)`` covariances ``[i, j]``, for ``fullcov`` and ``fullcov_nob`` (fitted
        on the pairs the EXPAPPROXIMATION selection keeps).
    npix : array, optional
        Pixels behind each variance, ``(n,)``, or behind each covariance, ``(n, L, L)``
        for the full-covariance models: the weights of cp_pipe's fits (default equal).
    gains : array, optional
        Per-pair gains, for ``rhl`` (all of them: no selection is applied).
    **options
        Preset field overrides (``sigma_cut=4``, ``linear_points=(2, None)``, ...).

    Returns
    -------
    PtcFit
        gain, gain_err, noise, noise_err, a00, a00_err, turnoff, mask, status.

    Examples
    --------
    >>> import numpy as np
    >>> from gpuptc.fitting.ptc import eq16
    >>> mu = np.linspace(1e3, 9e4, 20)
    >>> result = fit_ptc(mu, eq16(mu, -1.2e-6, 0.75, 1.5))
    >>> round(result.gain, 6), result.status
    (0.75, 'ok')
    """
    config = get_preset(preset, **options)
    mean = np.asarray(mean, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    if mean.shape != var.shape or mean.ndim != 1:
        raise ValueError(f"mean {mean.shape} and var {var.shape} must be 1-D and of one length")
    _check_models([model])
    entry = MODEL_REGISTRY[model]
    if entry.needs_covariances and cov is None:
        raise ValueError(f"model {model!r} needs the covariances (cov=..., npix=...)")
    if entry.needs_gains and gains is None:
        raise ValueError(f"model {model!r} needs the per-pair gains (gains=...)")
    counts = np.ones_like(mean) if npix is None else np.asarray(npix, dtype=np.float64)
    data = AmpData(
        mean,
        var,
        counts[:, 0, 0] if counts.ndim == 3 else counts,
        config.solve,
        cov=None if cov is None else np.asarray(cov, float),
        npix=None if cov is None else (np.ones_like(cov) if npix is None else counts),
        gains=None if gains is None else np.asarray(gains, float),
        select_gains=False,
    )
    return entry.fit(data)


def _fullcov_rows(sensor: str, amp: int, result: PtcFit) -> list[dict[str, Any]]:
    matrices = result.extra.get("fullcov")
    if matrices is None:
        return []
    size = matrices.a.shape[0]
    return [
        {
            "sensor": sensor,
            "amp": amp,
            "model": result.model,
            "i": i,
            "j": j,
            "a": matrices.a[i, j],
            "a_err": matrices.a_err[i, j],
            "b": matrices.b[i, j],
            "b_err": matrices.b_err[i, j],
            "noise": matrices.noise_matrix[i, j],
        }
        for i in range(size)
        for j in range(size)
    ]


_RESPONSE_COLUMNS = ("turnoff_err", "turnoff_electrons", "full_well")
"""``ptc`` columns derived from a fit and the amp's pairs (:func:`_response`)."""
_ADJUSTMENT_COLUMNS = ("gain_unadjusted", "gain_adjustment")
"""``ptc`` columns of the gain ratio adjustment (:mod:`gpuptc.fitting.gain_ratios`): the
fit's own gain and the factor it was divided by (1 until adjusted)."""
_DERIVED_COLUMNS = (*_RESPONSE_COLUMNS, *ROLLOFF_KEYS, *_ADJUSTMENT_COLUMNS)
"""``ptc`` columns that are not a fit's attributes: its response and its rolloff model
(cp_pipe's, where it ran: NaN otherwise)."""


def _row(sensor: str, amp: int, segment: str, result: PtcFit, data: AmpData) -> dict[str, Any]:
    values = {
        name: getattr(result, name) for name in PTC_COLUMNS[4:] if name not in _DERIVED_COLUMNS
    }
    values.update(_response(result, data))
    values.update({key: float(result.extra.get(key, math.nan)) for key in ROLLOFF_KEYS})
    values.update(gain_unadjusted=result.gain, gain_adjustment=1.0)
    return {"sensor": sensor, "amp": amp, "segment": segment, "model": result.model, **values}


def _response(result: PtcFit, data: AmpData) -> dict[str, float]:
    """The turnoff's sampling error, the turnoff in electrons and EOTEST's full well.

    The sampling error is cp_pipe's own where its fit gives one (of its first pass), else
    that of the fit's selection (none without a turnoff); the electrons are the fit's
    gain times ADU.
    """
    sampling = result.extra.get("turnoff_sampling_error")
    if not math.isfinite(result.turnoff):
        sampling = math.nan
    elif sampling is None and len(result.mask) == len(data.mean):
        sampling = turnoff_with_sampling_error(data.mean, result.mask)[1]
    full_well = math.nan
    if data.flux is not None and result.status in FitStatus.FITTED:
        full_well = eotest_full_well(data.flux, data.mean, result.gain)
    return {
        "turnoff_err": math.nan if sampling is None else float(sampling),
        "turnoff_electrons": result.turnoff * result.gain,
        "full_well": full_well,
    }


def covariance_cubes(
    table: pd.DataFrame, pairs: Any, size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(n, L, L)`` covariance and pixel-count arrays of one amp's rows, for ``pairs`` in order.

    ``L`` is ``size`` (lags beyond it dropped) or the table's own; covariances are NaN and
    pixel counts 0 where the table has no row.
    """
    size = size if size is not None else int(table["i"].max()) + 1
    cov = np.full((len(pairs), size, size), np.nan)
    npix = np.zeros((len(pairs), size, size))
    position = {int(p): k for k, p in enumerate(pairs)}
    rows = table[table["pair"].isin(position) & (table["i"] < size) & (table["j"] < size)]
    k = rows["pair"].map(position).to_numpy(dtype=np.int64)
    cov[k, rows["i"].to_numpy(), rows["j"].to_numpy()] = rows["cov"].to_numpy()
    npix[k, rows["i"].to_numpy(), rows["j"].to_numpy()] = rows["npix"].to_numpy()
    return cov, npix


def fit_matrices(rows: pd.DataFrame, size: int) -> dict[str, np.ndarray]:
    """``a``, ``b`` and ``noise`` (``size x size``) of one amp's ``fullcov`` rows, NaN if absent."""
    kept = rows[(rows["i"] < size) & (rows["j"] < size)]
    matrices = {}
    for name in ("a", "b", "noise"):
        matrix = np.full((size, size), np.nan)
        matrix[kept["i"].to_numpy(), kept["j"].to_numpy()] = kept[name].to_numpy(float)
        matrices[name] = matrix
    return matrices


def model_covariances(matrices: dict[str, np.ndarray], gain: float, mean: np.ndarray) -> np.ndarray:
    """Eq. 20 covariances ``(n, L, L)`` at ``mean`` from :func:`fit_matrices` (absent lags 0)."""
    a, b, noise = (np.nan_to_num(matrices[name]) for name in ("a", "b", "noise"))
    return evaluate(mean, a, a * b, noise, gain)


class _CovarianceLookup:
    """The covariances table grouped by amplifier, and its lag-0 pixel counts."""

    def __init__(self, covariances: pd.DataFrame | None) -> None:
        self.npix00 = None
        self.groups = None
        self.size = 0
        if covariances is not None and len(covariances):
            origin = covariances[(covariances["i"] == 0) & (covariances["j"] == 0)]
            self.npix00 = origin.set_index(["sensor", "pair", "amp"])["npix"]
            self.groups = covariances.groupby(["sensor", "amp"], sort=False)
            self.size = int(covariances["i"].max()) + 1

    def counts(self, measured: pd.DataFrame) -> np.ndarray:
        """Pixels behind each variance: lag-0 covariance pairs where known, else ``npix``."""
        counts = measured["npix"].to_numpy(float)
        if self.npix00 is None:
            return counts
        keys = pd.MultiIndex.from_arrays([measured["sensor"], measured["pair"], measured["amp"]])
        return self.npix00.reindex(keys).fillna(pd.Series(counts, index=keys)).to_numpy(float)

    def cubes(self, sensor: Any, amp: Any, pairs: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """``(n, L, L)`` covariances and pixel pairs of one amplifier (NaN where absent)."""
        assert self.groups is not None
        if (sensor, amp) not in self.groups.groups:
            shape = (len(pairs), self.size, self.size)
            return np.full(shape, np.nan), np.zeros(shape)
        return covariance_cubes(self.groups.get_group((sensor, amp)), pairs)


def _guarded(compute: Callable[[AmpData], Any], data: AmpData, what: str, failed: Any) -> Any:
    """``compute(data)``, or ``failed`` when it raises: one amplifier's bad data stay its own.

    The error is logged (its traceback at debug level) and becomes a status.
    """
    try:
        return compute(data)
    except Exception as exc:
        log.warning("%s failed: %s: %s", what, type(exc).__name__, exc)
        log.debug("%s", what, exc_info=True)
        return failed


def per_pair_gain_column(method: str) -> str:
    """The ``pairs`` column whose median is ``rhl`` under a preset's solve ``method``.

    The notebook's number for ``seed``, else the robust, read-noise-corrected per-pair gain.
    """
    return "notebook_gain" if method == "seed" else "rhl_gain_corrected"


def _amp_data(
    key: tuple[Any, Any],
    measured: pd.DataFrame,
    lookup: _CovarianceLookup,
    solve: SolveConfig,
    with_cov: bool,
) -> AmpData:
    """The measured pairs of amplifier ``key = (sensor, amp)`` as the models take them."""
    cube = npix = None
    if with_cov:
        cube, npix = lookup.cubes(*key, measured["pair"])
    return AmpData(
        measured["mean"].to_numpy(float),
        measured["var"].to_numpy(float),
        lookup.counts(measured),
        solve,
        cov=cube,
        npix=npix,
        gains=measured[per_pair_gain_column(solve.method)].to_numpy(float),
        flux=measured["exptime"].to_numpy(float),
    )


def _sensor_amps(
    sensor: str,
    members: pd.DataFrame,
    lookup: _CovarianceLookup,
    solve: SolveConfig,
    with_cov: bool,
    out: pd.DataFrame,
) -> list[tuple[int, str, AmpData]]:
    """``(amp, segment, data)`` for each amplifier of a sensor; fills ``out.used``."""
    amps = []
    for amp, group in members.groupby("amp", sort=True):
        group = group.sort_values("pair")
        measured = group[group["status"].isin(PairStatus.MEASURED)]
        data = _amp_data((sensor, amp), measured, lookup, solve, with_cov)
        used = _guarded(lambda d: d.used, data, f"{sensor} amp {amp}: pair selection", None)
        if used is not None and len(used) == len(measured):
            out.loc[measured.index, "used"] = used
        points = data.expapprox.extra.get("rolloff_points") if used is not None else None
        if points is not None and len(points) == len(measured):
            out.loc[measured.index, "rolloff_fit"] = points
        amps.append((int(amp), str(group["segment"].iloc[0]), data))
    return amps


def _fit_model(model: str, amps: list[tuple[int, str, AmpData]], backend: Backend) -> list[PtcFit]:
    """One model for every amplifier of a sensor.

    In one batch where the model has one (redone amplifier by amplifier if the batch
    raises), else amplifier by amplifier.
    """
    entry = MODEL_REGISTRY[model]
    batch = [data for _, _, data in amps]
    if entry.fit_batch is not None:
        results = _guarded(
            lambda b: entry.fit_batch(b, backend), batch, f"{model} fit of the sensor", None
        )
        if results is not None:
            return results
    return [
        _guarded(
            entry.fit,
            data,
            f"amp {amp}: {model} fit",
            PtcFit(model, mask=np.zeros(len(data.mean), bool), status=FitStatus.FAILED),
        )
        for amp, _, data in amps
    ]


def fit(
    pairs: pd.DataFrame,
    covariances: pd.DataFrame | None = None,
    preset: str | Preset = "cp_pipe",
    models: Sequence[str] | None = None,
    *,
    backend: str | Backend = "numpy",
    **options: Any,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Fit every requested model to every amplifier's PTC.

    Parameters
    ----------
    pairs : pandas.DataFrame
        From :func:`gpuptc.measure`.
    covariances : pandas.DataFrame, optional
        From :func:`gpuptc.measure`; their lag-0 pixel counts weight cp_pipe's final fit.
        Needed by the full-covariance models.
    preset : str or Preset
        Fit procedure and ``used`` selection: ``eotest`` (final 5-sigma selection),
        ``cp_pipe`` / ``cp_pipe_lsstcam`` (outlier and turnoff mask, after rolloff for
        lsstcam), ``seed`` (every measured pair).
    models : sequence of str, optional
        Default every model of :data:`gpuptc.fitting.ptc.MODELS` (``expapprox``, ``fullcov``,
        ``fullcov_nob``, ``linear``, ``quadratic``, ``powerlaw``, ``rhl``).
    backend : str or Backend
        Where the full-covariance fits run (a sensor's amplifiers in one batch): NumPy by
        default, ``cupy`` to fit on the GPU; the other fits run on the host.
    **options
        Preset field overrides.

    Returns
    -------
    ptc : pandas.DataFrame
        One row per sensor, amp and model (columns :data:`gpuptc.schema.PTC_COLUMNS`).
    fullcov : pandas.DataFrame
        Full-covariance matrices (columns :data:`gpuptc.schema.FULLCOV_COLUMNS`).
    pairs : pandas.DataFrame
        A copy of ``pairs`` with ``used`` filled.

    Examples
    --------
    Measure the flat pairs of a small simulated sensor's raws in ``raw_dir`` (made by
    :func:`gpuptc.simulate`), then fit its 16 amplifiers' PTCs with two models:

    >>> from gpuptc import ingest, measure
    >>> pairs, covariances = measure(ingest(raw_dir), backend="numpy")
    >>> ptc, fullcov, pairs = fit(pairs, covariances, models=["expapprox", "linear"])
    >>> ptc.groupby("model").size().to_dict()
    {'expapprox': 16, 'linear': 16}
    >>> ptc.columns[:8].tolist()
    ['sensor', 'amp', 'segment', 'model', 'gain', 'gain_err', 'noise', 'noise_err']
    >>> gain = ptc[ptc.model == "expapprox"].set_index("amp").gain
    >>> truth = simulated.truth.set_index("amp").gain
    >>> bool((gain / truth).between(0.9, 1.1).all())
    True
    >>> int(pairs.used.sum()), len(pairs)  # pairs kept by cp_pipe's selection, of all
    (68, 96)
    """
    config = get_preset(preset, **options)
    wanted = list(models) if models is not None else list(MODELS)
    _check_models(wanted)
    lookup = _CovarianceLookup(covariances)
    with_cov = any(MODEL_REGISTRY[m].needs_covariances for m in wanted)
    if with_cov and lookup.groups is None:
        raise ValueError("the full-covariance models need the covariances table")
    return _fitted(pairs, lookup, config.solve, wanted, with_cov, get_backend(backend))


def _gaussianity_cut(pairs: pd.DataFrame, min_pvalue: float) -> pd.DataFrame:
    """The pairs with those whose difference image fails the Gaussianity test cut.

    Measured pairs with a KS p-value below ``min_pvalue`` (cp_pipe's ``ksTestMinPvalue``)
    become ``not_gaussian``; a table without p-values is left as it is.
    """
    if "ks_pvalue" not in pairs:
        return pairs
    failed = pairs["status"].isin(PairStatus.MEASURED) & (pairs["ks_pvalue"] < min_pvalue)
    pairs.loc[failed, "status"] = PairStatus.NOT_GAUSSIAN
    return pairs


def _fitted(
    pairs: pd.DataFrame,
    lookup: _CovarianceLookup,
    solve: SolveConfig,
    wanted: list[str],
    with_cov: bool,
    backend: Backend,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:func:`fit`'s tables, sensor by sensor, once its arguments are checked."""
    out = _gaussianity_cut(pairs.copy(), solve.ks_min_pvalue)
    out["used"] = pd.array([False] * len(out), dtype="boolean")
    out["rolloff_fit"] = pd.array([False] * len(out), dtype="boolean")
    rows: list[dict[str, Any]] = []
    cov_rows: list[dict[str, Any]] = []
    for sensor, members in out.groupby("sensor", sort=True):
        amps = _sensor_amps(str(sensor), members, lookup, solve, with_cov, out)
        results = {model: _fit_model(model, amps, backend) for model in wanted}
        for k, (amp, segment, data) in enumerate(amps):
            for model in wanted:
                rows.append(_row(str(sensor), amp, segment, results[model][k], data))
                cov_rows.extend(_fullcov_rows(str(sensor), amp, results[model][k]))
    ptc = pd.DataFrame(rows, columns=list(PTC_COLUMNS)).astype({"amp": "int64", "n_used": "int64"})
    fullcov = pd.DataFrame(cov_rows, columns=list(FULLCOV_COLUMNS)).astype(
        {"amp": "int64", "i": "int64", "j": "int64"}
    )
    return ptc, fullcov, out


def _pair_reason(row: Any) -> str:
    """Why a pair of an amp was not fitted, in words."""
    if row.status == PairStatus.NOT_GAUSSIAN:
        pvalue = f"KS p-value {row.ks_pvalue:.2g}"
        return f"pair not fitted: its difference image is not Gaussian ({pvalue})"
    return f"pair not measurable: {words(row.status)}"


def amp_rejections(pairs: pd.DataFrame, ptc: pd.DataFrame) -> pd.DataFrame:
    """Rejected rows of pair-amps not measurable and amps whose EXPAPPROXIMATION fit failed."""
    rows = [
        rejected_row(
            _pair_reason(row),
            stage=Stage.MEASURE,
            path=row.file1,
            sensor=row.sensor,
            pair=row.pair,
            amp=row.amp,
        )
        for row in pairs[~pairs["status"].isin(PairStatus.MEASURED)].itertuples()
    ]
    failed = ptc[(ptc["model"] == "expapprox") & ~ptc["status"].isin(FitStatus.FITTED)]
    rows.extend(
        rejected_row(
            f"PTC fit failed: {words(row.status)}", stage=Stage.FIT, sensor=row.sensor, amp=row.amp
        )
        for row in failed.itertuples()
    )
    return rejected_frame(rows)

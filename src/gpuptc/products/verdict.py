"""Is this sensor good? Each amp's adopted numbers, the tests it fails, one verdict per sensor.

The one place that decides what marks an amp (:data:`AMP_FLAGS`): the sensor pages, the
focal-plane page and ``verdict.parquet`` all read :func:`amp_verdicts`. Two kinds of test:

- **requirements** (a failed one makes the amp ``fail``): the LSST camera's sensor
  requirements as EOTEST applies them to its results (``CcdSpecs`` in EOTEST's
  ``python/lsst/eotest/sensor/EOTestPlots.py``: CCD-007, read noise below 8 e- rms;
  CCD-008, blooming full well below 175 000 e-), and a PTC fit that failed;
- **checks** (``check``: look before signing off): a PTC noise more than 5 % from the
  one the read noise and the ISR's own noise make (cp_pipe warns at 5 % from the
  overscan noise alone; ``cp_pipe_noise_warning`` keeps its word), a fit parameter
  held at zero, a poor fit, models or references that disagree on the gain, and an amp
  far from its sensor's others.

The read noise is the per-pixel one (the overscan's, its estimator's bias undone:
:mod:`gpuptc.measuring.isr_noise`), and the PTC noise is held against it with the noise
the ISR adds.

The limits are :class:`Thresholds`, set per run (``[verdict]`` in a ``--config`` file);
they judge numbers without changing them, so a stored sensor is not stale when they
change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from gpuptc.fitting.ptc import EXPAPPROX_PARAMETERS
from gpuptc.schema import PTC_COLUMNS, FitStatus, PairStatus

__all__ = [
    "AMP_FLAGS",
    "CP_PIPE_NOISE_TOLERANCE",
    "HELD_AT_ZERO",
    "JUDGED_CHI2_MODELS",
    "VERDICT_COLUMNS",
    "AmpFlag",
    "Thresholds",
    "Verdict",
    "adopted_model",
    "amp_verdicts",
    "amps_to_look_at",
    "fitted_value",
    "sensor_verdicts",
    "verdict_tests",
]


class Verdict:
    """An amp's or a sensor's verdict, worst first."""

    FAIL = "fail"
    CHECK = "check"
    PASS = "pass"
    ORDER = (FAIL, CHECK, PASS)


@dataclass(frozen=True)
class Thresholds:
    """The limits the verdict applies; defaults are the sources' own.

    Attributes
    ----------
    read_noise_max : float
        e- rms; an amp at or above fails (CCD-007, EOTEST ``CcdSpecs``: ``< 8``).
    full_well_max : float
        e-; an amp at or above fails (CCD-008, EOTEST ``CcdSpecs``: ``< 175000``).
    noise_agreement : float
        PTC noise further than this fraction from the one the read noise and the ISR's
        added noise make, and beyond ``significance`` errors: check (cp_pipe warns at 5 %
        against the overscan noise alone, which the ISR's own noise puts 3-15 % below
        the PTC noise; ``cp_pipe_noise_warning`` says where it would). A noise held at
        zero is not judged here: the ``held`` flag says so.
    chi2_max : float
        chi^2 per degree of freedom of a PTC model (EXPAPPROXIMATION, full covariance)
        above this, and less probable for its degrees of freedom than ``significance``
        standard deviations: check. The notebook fits' chi^2 weigh every point alike, so they are
        shown, not judged.
    model_spread : float
        Gain of the full-covariance fits further than this fraction from the adopted
        model's: check (they agree within 0.1-0.4 % on simulated sensors).
    reference_spread : float
        Adopted gain further than this fraction from a reference's (EOTEST, cp_pipe), and
        beyond ``significance`` errors of the gain: check.
    outlier_sigma : float
        Gain further from the sensor's median than this many robust standard deviations
        (1.4826 x the median absolute deviation) of its amps: check.
    noise_factor : float
        PTC noise above this multiple of the sensor's median (of the noises the fits
        measured; one held at zero is the ``held`` flag's): check.
    turnoff_factor : float
        Turnoff below this fraction of the sensor's median, and by more than
        ``significance`` of its sampling error: check.
    significance : float
        How many of its own errors a difference must also exceed to be flagged, so that
        a small amp's noisy numbers do not flag every amp.

    Examples
    --------
    >>> Thresholds().read_noise_max, Thresholds(chi2_max=3).chi2_max
    (8.0, 3)
    >>> Thresholds.from_mapping({"read_noise_max": 9})
    Thresholds(read_noise_max=9.0, ...)
    >>> Thresholds.from_mapping({"noise": 9})
    Traceback (most recent call last):
    ...
    ValueError: [verdict]: unknown threshold(s) ['noise']; known: [...]
    """

    read_noise_max: float = 8.0
    full_well_max: float = 175_000.0
    noise_agreement: float = 0.05
    chi2_max: float = 2.0
    model_spread: float = 0.01
    reference_spread: float = 0.02
    outlier_sigma: float = 5.0
    noise_factor: float = 1.5
    turnoff_factor: float = 0.8
    significance: float = 3.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, object], source: str = "[verdict]") -> Thresholds:
        """Thresholds from a ``[verdict]`` table; unknown names are an error naming them."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown threshold(s) {unknown}; known: {sorted(known)}")
        return cls(**{name: float(value) for name, value in values.items()})  # type: ignore[arg-type]


@dataclass(frozen=True)
class AmpFlag:
    """A test an amp can fail: its column, what it tests, how grave and on whose word."""

    key: str
    severity: str
    describe: str
    source: str

    @property
    def column(self) -> str:
        """Its boolean column in ``verdict.parquet``."""
        return f"flag_{self.key}"


def verdict_tests(thresholds: Thresholds | None = None) -> tuple[AmpFlag, ...]:
    """Every test at the given limits, in the order the pages list them.

    Examples
    --------
    >>> [flag.key for flag in verdict_tests() if flag.severity == "fail"]
    ['fit', 'read_noise', 'full_well']
    >>> verdict_tests(Thresholds(read_noise_max=9))[2].describe
    'read noise (per pixel, e-) at or above 9'
    """
    limits = thresholds or Thresholds()
    return (
        AmpFlag("fit", Verdict.FAIL, "the adopted PTC fit failed", "gpuptc"),
        AmpFlag(
            "held",
            Verdict.CHECK,
            "a parameter of the adopted fit held at zero, or its covariance singular (the "
            "status says which)",
            "gpuptc",
        ),
        AmpFlag(
            "read_noise",
            Verdict.FAIL,
            f"read noise (per pixel, e-) at or above {limits.read_noise_max:g}",
            "CCD-007, EOTEST CcdSpecs",
        ),
        AmpFlag(
            "full_well",
            Verdict.FAIL,
            f"full well at or above {limits.full_well_max:,.0f} e-",
            "CCD-008, EOTEST CcdSpecs",
        ),
        AmpFlag(
            "noise_agreement",
            Verdict.CHECK,
            f"PTC noise more than {limits.noise_agreement:.0%} from the read noise and the "
            "ISR's added noise together",
            "cp_pipe PTC solve warning",
        ),
        AmpFlag(
            "chi2",
            Verdict.CHECK,
            f"a PTC model's chi^2/dof above {limits.chi2_max:g}, improbable for its degrees "
            "of freedom",
            "gpuptc",
        ),
        AmpFlag(
            "models",
            Verdict.CHECK,
            f"full-covariance gain more than {limits.model_spread:.0%} from the adopted one",
            "gpuptc",
        ),
        AmpFlag(
            "reference",
            Verdict.CHECK,
            f"gain more than {limits.reference_spread:.0%} from a reference's",
            "gpuptc",
        ),
        AmpFlag(
            "gain_outlier",
            Verdict.CHECK,
            f"gain more than {limits.outlier_sigma:g} robust sigma from the sensor's median",
            "gpuptc",
        ),
        AmpFlag(
            "noise_outlier",
            Verdict.CHECK,
            f"PTC noise above {limits.noise_factor:g} x the sensor's median",
            "gpuptc",
        ),
        AmpFlag(
            "turnoff_outlier",
            Verdict.CHECK,
            f"turnoff below {limits.turnoff_factor:g} x the sensor's median, beyond its "
            "sampling error",
            "gpuptc",
        ),
    )


AMP_FLAGS: tuple[AmpFlag, ...] = verdict_tests()
"""Every test, in the order the pages list them (texts at the default thresholds)."""

CP_PIPE_NOISE_TOLERANCE = 0.05
"""cp_pipe's PTC solve warns when the PTC and overscan noise differ by more (fixed)."""

_COMPARED_MODELS = ("fullcov", "fullcov_nob")
"""Models whose gain is held against the adopted one (they model the same physics)."""
JUDGED_CHI2_MODELS = ("expapprox", "fullcov", "fullcov_nob")
"""Models whose chi^2 weighs each point by its error, so that its size means something."""

VERDICT_COLUMNS: tuple[str, ...] = (
    "sensor",
    "amp",
    "segment",
    "model",
    "status",
    "gain",
    "gain_err",
    "gain_unadjusted",
    "gain_adjustment",
    "noise",
    "noise_err",
    "read_noise",
    "isr_noise",
    "expected_noise",
    "overscan_noise",
    "cp_pipe_noise_warning",
    "turnoff",
    "turnoff_err",
    "turnoff_electrons",
    "full_well",
    "a00",
    "a00_err",
    "chi2_dof",
    "worst_chi2_model",
    "worst_chi2_dof",
    "model_spread",
    "reference_ratio",
    *(flag.column for flag in AMP_FLAGS),
    "flags",
    "verdict",
)
"""``verdict.parquet``: per amp the adopted model, its fit status and numbers (gain
e-/ADU; noise, from the PTC; read_noise, the per-pixel read noise from the overscan;
isr_noise, what the ISR adds; expected_noise, the PTC noise they make; overscan_noise,
the overscan's own number, and cp_pipe_noise_warning, whether cp_pipe would warn that
the PTC noise is more than 5 % from it; all in e-; turnoff ADU and e-, full well e-, a00
1/e-), the worst chi^2/dof of the PTC models (EXPAPPROXIMATION, full covariance), the
full-covariance gains' largest relative difference from the adopted one, the adopted
gain over the reference farthest from it, one boolean per test, the failed tests as
text and the amp's verdict."""


def adopted_model(ptc: pd.DataFrame, preferred: str | None = None) -> str:
    """The model whose numbers stand for an amp.

    ``preferred`` (the preset's PTC model) when it fitted some amp, else EXPAPPROXIMATION,
    else the first of the full-covariance and notebook fits that did (or, when none did,
    that is present).

    Parameters
    ----------
    ptc : pandas.DataFrame
        The ``ptc`` table.
    preferred : str, optional
        The preset's ``ptc_fit_type``.

    Returns
    -------
    str
    """
    fitted = set(ptc.loc[ptc["status"].isin(FitStatus.FITTED), "model"])
    present = set(ptc["model"])
    order = (preferred, "expapprox", "fullcov", "fullcov_nob", "quadratic", "linear")
    for candidates in (fitted, present):
        for model in order:
            if model in candidates:
                return str(model)
    return str(ptc["model"].iloc[0])


def amp_verdicts(
    tables: Mapping[str, pd.DataFrame],
    thresholds: Thresholds | None = None,
    model: str | None = None,
) -> pd.DataFrame:
    """Every amp's adopted numbers, the tests it fails and its verdict.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        The run's ``ptc``, and where present ``pairs`` (the overscan read noise of the
        pairs used) and ``comparison`` (the references).
    thresholds : Thresholds, optional
        The limits (default the sources').
    model : str, optional
        The adopted model (default :func:`adopted_model`: the preset's, EXPAPPROXIMATION).

    Returns
    -------
    pandas.DataFrame
        :data:`VERDICT_COLUMNS`, one row per sensor and amp.

    Examples
    --------
    The fit of a small simulated sensor's measurements ``pairs`` and ``covariances``
    (:func:`gpuptc.measure` of the raws made by :func:`gpuptc.simulate`), whose read noise
    and full well meet the requirements, next to the EOTEST file the simulation wrote:

    >>> from gpuptc import compare, fit
    >>> ptc, _, fitted = fit(pairs, covariances, models=["expapprox"])
    >>> comparison = compare(ptc, [simulated.eotest_path])
    >>> verdicts = amp_verdicts({"ptc": ptc, "pairs": fitted, "comparison": comparison})
    >>> len(verdicts), verdicts.model.unique().tolist()
    (16, ['expapprox'])
    >>> bool(verdicts.flag_read_noise.any()), bool(verdicts.flag_fit.any())
    (False, False)
    >>> strict = amp_verdicts({"ptc": ptc, "pairs": fitted}, Thresholds(read_noise_max=1.0))
    >>> strict.verdict.unique().tolist()
    ['fail']
    """
    limits = thresholds or Thresholds()
    ptc = tables["ptc"].reset_index(drop=True)
    model = adopted_model(ptc, model)
    adopted = ptc[ptc["model"] == model].sort_values(["sensor", "amp"]).reset_index(drop=True)
    out = adopted.reindex(columns=[c for c in VERDICT_COLUMNS if c in PTC_COLUMNS])
    keys = pd.MultiIndex.from_frame(adopted[["sensor", "amp"]])
    noises = _noises(tables.get("pairs"), adopted, keys)
    for name in noises:
        out[name] = noises[name].to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = out["noise"] / out["overscan_noise"] - 1
    out["cp_pipe_noise_warning"] = (ratio.abs() > CP_PIPE_NOISE_TOLERANCE).to_numpy(bool)
    _fit_quality(out, ptc, keys)
    out["reference_ratio"] = _worst_reference(tables.get("comparison"), model, keys)
    for flag in verdict_tests(limits):
        out[flag.column] = _FLAG_TESTS[flag.key](out, limits).fillna(False).to_numpy(bool)
    return _with_verdicts(out, limits)


_PAIR_NOISES = {
    "read_noise": "read_noise_pixel_adu",
    "isr_noise": "isr_noise_adu",
    "overscan_noise": "read_noise_adu",
}
"""The verdict's noises (e-) and the pairs' columns (ADU) whose median over the pairs used
they are: the per-pixel read noise, the noise the ISR adds, the overscan's own number."""


def _noises(pairs: pd.DataFrame | None, adopted: pd.DataFrame, keys: pd.Index) -> pd.DataFrame:
    """Each amp's noises in electrons (NaN where the pairs lack them).

    And the PTC noise the ISR's model expects from them.
    """
    out = pd.DataFrame(index=range(len(adopted)), columns=list(_PAIR_NOISES), dtype=float)
    if pairs is not None and "status" in pairs:
        measured = pairs[pairs["status"].isin(PairStatus.MEASURED)]
        used = (
            measured[measured["used"].fillna(False).astype(bool)]
            if "used" in measured
            else measured
        )
        gain = adopted["gain"].to_numpy(float)
        for name, column in _PAIR_NOISES.items():
            if column not in measured:
                continue
            median = used.groupby(["sensor", "amp"])[column].median().reindex(keys)
            fallback = measured.groupby(["sensor", "amp"])[column].median().reindex(keys)
            out[name] = median.fillna(fallback).to_numpy(float) * gain
    out["expected_noise"] = np.hypot(out["read_noise"], out["isr_noise"])
    return out


def _fit_quality(out: pd.DataFrame, ptc: pd.DataFrame, keys: pd.Index) -> None:
    """The worst chi^2/dof of the PTC models, and the full-covariance gains' spread."""
    fitted = ptc[ptc["status"].isin(FitStatus.FITTED)]
    judged = fitted[fitted["model"].isin(JUDGED_CHI2_MODELS) & fitted["chi2_dof"].notna()]
    worst = judged.loc[judged.groupby(["sensor", "amp"])["chi2_dof"].idxmax()]
    worst = worst.set_index(["sensor", "amp"]).reindex(keys)
    out["worst_chi2_model"] = worst["model"].fillna("").to_numpy(str)
    out["worst_chi2_dof"] = worst["chi2_dof"].to_numpy(float)
    out["worst_chi2_n_used"] = worst["n_used"].to_numpy(float) if "n_used" in worst else math.nan
    gains = fitted.pivot_table(index=["sensor", "amp"], columns="model", values="gain")
    gains = gains.reindex(keys)
    adopted = out["gain"].to_numpy(float)
    compared = [m for m in _COMPARED_MODELS if m in gains.columns and m != out["model"].iloc[0]]
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = pd.DataFrame({m: np.abs(gains[m].to_numpy(float) / adopted - 1) for m in compared})
    out["model_spread"] = spread.max(axis=1).to_numpy(float) if compared else math.nan


def _worst_reference(comparison: pd.DataFrame | None, model: str, keys: pd.Index) -> np.ndarray:
    """The adopted gain over the reference farthest from it, per amp (NaN without one)."""
    if comparison is None or comparison.empty:
        return np.full(len(keys), math.nan)
    gains = comparison[
        (comparison["quantity"] == "gain")
        & (comparison["method"] == model)
        & comparison["ratio"].notna()
    ]
    if gains.empty:
        return np.full(len(keys), math.nan)
    worst = (gains["ratio"] - 1).abs().groupby([gains["sensor"], gains["amp"]]).idxmax()
    ratios = gains.loc[worst.to_numpy(), "ratio"].set_axis(worst.index)
    return ratios.reindex(keys).to_numpy(float)


def _robust_deviation(out: pd.DataFrame) -> pd.Series:
    """Each amp's gain from its sensor's median, in robust standard deviations."""
    median = out.groupby("sensor")["gain"].transform("median")
    spread = (out["gain"] - median).abs().groupby(out["sensor"]).transform("median") * 1.4826
    return (out["gain"] - median).abs() / spread.where(spread > 0)


def _best_read_noise(out: pd.DataFrame) -> pd.Series:
    """The per-pixel read noise; the overscan's own, else the PTC's, where it is unknown."""
    return out["read_noise"].fillna(out["overscan_noise"]).fillna(out["noise"])


def _beyond(difference: pd.Series, limit: pd.Series, noise: pd.Series) -> pd.Series:
    """``|difference|`` above ``limit`` and above ``noise`` (an unknown error: the limit alone)."""
    size = difference.abs()
    return (size > limit) & ~(size <= noise.fillna(0.0))


def _poor_fit(out: pd.DataFrame, limits: Thresholds) -> pd.Series:
    """A PTC fit's chi^2/dof above ``chi2_max`` and improbable for its degrees of freedom.

    Improbable: below the one-sided normal tail of ``significance`` (1.3e-3 at 3). A fit
    of few pairs exceeds 2 by chance one time in ten; a full-covariance fit's many points
    make any such excess improbable, so only the EXPAPPROXIMATION fit's degrees of freedom
    are counted (where its pairs are known).
    """
    from scipy import stats

    ratio = out["worst_chi2_dof"]
    dof = (out["worst_chi2_n_used"] - EXPAPPROX_PARAMETERS).clip(lower=1)
    expapprox = (out["worst_chi2_model"] == "expapprox") & dof.notna()
    chance = pd.Series(0.0, index=out.index)
    chance[expapprox] = stats.chi2.sf(ratio[expapprox] * dof[expapprox], dof[expapprox])
    return (ratio > limits.chi2_max) & (chance < stats.norm.sf(limits.significance))


def _sensor_median(out: pd.DataFrame, values: pd.Series) -> pd.Series:
    """Each amp's sensor's median of ``values`` (one per row of ``out``)."""
    return values.groupby(out["sensor"]).transform("median")


HELD_AT_ZERO: dict[str, str] = {"noise": FitStatus.NOISE_AT_ZERO, "a00": FitStatus.A00_AT_ZERO}
"""The parameters a PTC fit may hold at zero, and the status that says it did."""


def fitted_value(table: pd.DataFrame, column: str) -> pd.Series:
    """``column`` where the fit measured it: NaN where it was held at zero.

    The ``held`` flag says so; such a value is neither a disagreement (with the read
    noise), nor a low value of its sensor's median, nor a value to map.

    Examples
    --------
    >>> table = pd.DataFrame({"noise": [6.1, 0.0], "status": ["ok", "noise_at_zero"]})
    >>> fitted_value(table, "noise")
    0    6.1
    1    NaN
    Name: noise, dtype: float64
    """
    held = HELD_AT_ZERO.get(column)
    return table[column] if held is None else table[column].where(table["status"] != held)


def _high_noise(noise: pd.Series, out: pd.DataFrame, limits: Thresholds) -> pd.Series:
    """A fitted PTC noise above ``noise_factor`` of its sensor's median fitted noise."""
    return noise > limits.noise_factor * _sensor_median(out, noise)


def _low_turnoff(out: pd.DataFrame, limits: Thresholds) -> pd.Series:
    """Turnoff below ``turnoff_factor`` of its sensor's median, beyond its sampling error.

    By more than ``significance`` of its sampling error: a sparse series puts a healthy
    amp's turnoff one pair lower.
    """
    median = _sensor_median(out, out["turnoff"])
    return _beyond(
        (out["turnoff"] - median).clip(upper=0.0),
        (1.0 - limits.turnoff_factor) * median,
        limits.significance * out["turnoff_err"],
    )


_FLAG_TESTS = {
    "fit": lambda out, _: ~out["status"].isin(FitStatus.FITTED),
    "held": lambda out, _: out["status"].isin(FitStatus.FITTED) & (out["status"] != FitStatus.OK),
    "read_noise": lambda out, t: _best_read_noise(out) >= t.read_noise_max,
    "full_well": lambda out, t: out["full_well"] >= t.full_well_max,
    "noise_agreement": lambda out, t: _beyond(
        fitted_value(out, "noise") - out["expected_noise"],
        t.noise_agreement * out["expected_noise"],
        t.significance * out["noise_err"],
    ),
    "chi2": _poor_fit,
    "models": lambda out, t: out["model_spread"] > t.model_spread,
    "reference": lambda out, t: _beyond(
        out["reference_ratio"] - 1,
        pd.Series(t.reference_spread, index=out.index),
        t.significance * out["gain_err"] / out["gain"],
    ),
    "gain_outlier": lambda out, t: _robust_deviation(out) > t.outlier_sigma,
    "noise_outlier": lambda out, t: _high_noise(fitted_value(out, "noise"), out, t),
    "turnoff_outlier": _low_turnoff,
}
"""Each flag's test on the verdict table (True: the amp fails it); NaN never fails."""


def _with_verdicts(out: pd.DataFrame, limits: Thresholds) -> pd.DataFrame:
    flags = verdict_tests(limits)
    texts, verdicts = [], []
    for _, row in out.iterrows():
        failed = [flag for flag in flags if row[flag.column]]
        texts.append("; ".join(_flag_text(flag, row) for flag in failed))
        severities = {flag.severity for flag in failed}
        verdicts.append(next((v for v in Verdict.ORDER if v in severities), Verdict.PASS))
    out["flags"] = texts
    out["verdict"] = verdicts
    return out.reindex(columns=list(VERDICT_COLUMNS))


def _flag_text(flag: AmpFlag, row: pd.Series) -> str:
    """One failed test with the amp's value, as the pages list it."""
    value = {
        "fit": lambda: f"fit {row['status']}",
        "held": lambda: f"fit {row['status']}",
        "read_noise": lambda: f"read noise {_best_read_noise(row.to_frame().T).iloc[0]:.2f} e-",
        "full_well": lambda: f"full well {row['full_well']:,.0f} e-",
        "noise_agreement": lambda: f"PTC/expected noise {row['noise'] / row['expected_noise']:.3f}",
        "chi2": lambda: f"{row['worst_chi2_model']} chi2/dof {row['worst_chi2_dof']:.2f}",
        "models": lambda: f"full-covariance gain {100 * row['model_spread']:.1f} % off",
        "reference": lambda: f"gain/reference {row['reference_ratio']:.3f}",
        "gain_outlier": lambda: f"gain {row['gain']:.4f} outlying",
        "noise_outlier": lambda: f"PTC noise {row['noise']:.2f} e-",
        "turnoff_outlier": lambda: f"turnoff {row['turnoff']:.0f} ADU",
    }[flag.key]
    return value()


def sensor_verdicts(
    verdicts: pd.DataFrame, thresholds: Thresholds | None = None, most: int = 3
) -> pd.DataFrame:
    """One line per sensor: its verdict, its ranges, and the amps to look at.

    Parameters
    ----------
    verdicts : pandas.DataFrame
        From :func:`amp_verdicts`.
    thresholds : Thresholds, optional
        The limits the amps were judged by, quoted in the line.
    most : int
        Amps named per sensor, the gravest first.

    Returns
    -------
    pandas.DataFrame
        ``sensor``, ``verdict`` (the worst of its amps'), ``amps`` (how many), ``failing``
        and ``to_check`` (how many amps), ``line`` (one sentence for the page).

    Examples
    --------
    A small simulated sensor's fit (``pairs`` and ``covariances`` measured from the raws
    made by :func:`gpuptc.simulate`), judged with a read-noise limit it cannot meet:

    >>> from gpuptc import fit
    >>> ptc, _, fitted = fit(pairs, covariances, models=["expapprox"])
    >>> limits = Thresholds(read_noise_max=1.0)
    >>> line = sensor_verdicts(amp_verdicts({"ptc": ptc, "pairs": fitted}, limits), limits)
    >>> line.verdict.tolist(), line.failing.tolist()
    (['fail'], [16])
    >>> line.line.iloc[0].startswith("FAIL: 16/16 amps fitted (expapprox); read noise")
    True
    """
    limits = thresholds or Thresholds()
    rows = []
    for sensor, amps in verdicts.groupby("sensor", sort=True):
        counts = amps["verdict"].value_counts()
        verdict = next((v for v in Verdict.ORDER if counts.get(v, 0)), Verdict.PASS)
        rows.append(
            {
                "sensor": sensor,
                "verdict": verdict,
                "amps": len(amps),
                "failing": int(counts.get(Verdict.FAIL, 0)),
                "to_check": int(counts.get(Verdict.CHECK, 0)),
                "line": _sentence(verdict, amps, limits, most),
            }
        )
    return pd.DataFrame(rows, columns=["sensor", "verdict", "amps", "failing", "to_check", "line"])


def _span(values: pd.Series, digits: int, unit: str) -> str:
    finite = values[np.isfinite(values.to_numpy(float))]
    if finite.empty:
        return "not measured"
    low, high = finite.min(), finite.max()
    return f"{low:,.{digits}f}-{high:,.{digits}f} {unit}"


def _sentence(verdict: str, amps: pd.DataFrame, limits: Thresholds, most: int) -> str:
    fitted = int((~amps["flag_fit"]).sum())
    parts = [
        f"{verdict.upper()}: {fitted}/{len(amps)} amps fitted ({amps['model'].iloc[0]})",
        f"read noise {_span(_best_read_noise(amps), 2, 'e-')}"
        f" (CCD-007: < {limits.read_noise_max:g})",
        f"full well {_span(amps['full_well'], 0, 'e-')} (CCD-008: < {limits.full_well_max:,.0f})",
    ]
    flagged = amps_to_look_at(amps)
    if len(flagged):
        listed = ", ".join(f"amp {r.amp} ({r.flags})" for r in flagged.head(most).itertuples())
        more = f" and {len(flagged) - most} more" if len(flagged) > most else ""
        parts.append(f"look at {listed}{more}")
    return "; ".join(parts)


def amps_to_look_at(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The amps that do not pass, gravest first (failing before checks, then by amp).

    Parameters
    ----------
    verdicts : pandas.DataFrame
        Rows of :func:`amp_verdicts` (one sensor's, usually).

    Returns
    -------
    pandas.DataFrame
        Those rows, ordered.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"amp": [1, 2, 3], "verdict": ["check", "pass", "fail"]})
    >>> amps_to_look_at(rows).amp.tolist()
    [3, 1]
    """
    flagged = verdicts[verdicts["verdict"] != Verdict.PASS]
    rank = flagged["verdict"].map({v: k for k, v in enumerate(Verdict.ORDER)})
    return flagged.assign(_rank=rank).sort_values(["_rank", "amp"]).drop(columns="_rank")

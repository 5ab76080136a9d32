"""Configuration dataclasses and the named presets.

A preset fixes how pixels are corrected (:class:`IsrConfig`) and how pair statistics
are measured (:class:`ExtractConfig`), so that results compare like for like with the
tool it is named after:

``eotest``
    EOTEST's sensor PTC task: per-row mean of the serial overscan skipping 5 leading
    and 2 trailing columns, no parallel overscan, no bias frame; masked means,
    symmetric flux weights, a 14.826 x mad_std cut, ``var = np.var(d) / 2``.
``cp_pipe``
    cp_pipe defaults: MEDIAN_PER_ROW serial then parallel overscan skipping 3 + 3
    columns/rows; afw clipped means and variance (5.5 sigma, 3 passes); flux-matched
    difference; FFT covariances, cov_size 10; read-noise-corrected per-pair gain.
``cp_pipe_lsstcam``
    cp_pipe with the LSSTCam production overrides (20-pixel amplifier borders masked, the
    vignetting function's region selection, the roll-off model, the full-covariance fit,
    the gain ratio adjustment).
``seed``
    The original notebook: constant median overscan and master bias, plain means,
    ``mean = mean(I1)``, ``var = var(I1 - I2 m1/m2) / 2``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BF_LEVELS",
    "INTEGRATION_METHODS",
    "LINEARITY_TYPES",
    "LSSTCAM_VIGNETTING",
    "PRESETS",
    "BrighterFatterConfig",
    "ExtractConfig",
    "GainRatiosConfig",
    "IsrConfig",
    "LinearityConfig",
    "Preset",
    "SolveConfig",
    "counterparts",
    "get_preset",
    "setting",
]

OVERSCAN_METHODS = ("NONE", "MEAN", "MEDIAN", "MEAN_PER_ROW", "MEDIAN_PER_ROW", "POLY")
PARALLEL_METHODS = ("NONE", "MEAN_PER_ROW", "MEDIAN_PER_ROW")
PAIR_METHODS = ("cp_pipe", "eotest", "seed")
PTC_FIT_MODELS = ("expapprox", "fullcov", "fullcov_nob")
"""The models a cp_pipe PTC dataset can hold (``SolveConfig.ptc_fit_type``)."""
LINEARITY_TYPES = ("Polynomial", "Squared", "LookupTable", "Spline")
"""The linearizer types gpuptc solves (the names of Rubin's ``Linearizer``)."""
INTEGRATION_METHODS = ("DIRECT_SUM", "TRIMMED_SUM", "CHARGE_SUM", "MEAN")
"""The ways photodiode readings integrate to a charge, Rubin's names."""


def setting(default: Any, *, cp_pipe: str | None = None, eotest: str | None = None) -> Any:
    """A configuration field with ``default`` and its counterparts in cp_pipe and EOTEST.

    The counterparts are the field's metadata (``cp_pipe``, ``eotest``: the option or the
    behaviour of that tool this field reproduces; None where the tool has none), listed by
    :func:`counterparts`.
    """
    return field(default=default, metadata={"cp_pipe": cp_pipe, "eotest": eotest})


def counterparts() -> list[dict[str, Any]]:
    """Every field of every section with its default and its cp_pipe and EOTEST counterparts.

    Examples
    --------
    >>> rows = {(r["section"], r["field"]): r for r in counterparts()}
    >>> rows["extract", "cov_size"]["cp_pipe"]
    'PhotonTransferCurveExtractPairConfig.maximumRangeCovariancesAstier'
    """
    rows = []
    for section, kind in _SECTIONS.items():
        for f in dataclasses.fields(kind):
            rows.append(
                {
                    "section": section,
                    "field": f.name,
                    "default": f.default,
                    "cp_pipe": f.metadata.get("cp_pipe"),
                    "eotest": f.metadata.get("eotest"),
                }
            )
    return rows


@dataclass(frozen=True)
class IsrConfig:
    """Instrument-signature removal.

    Parameters
    ----------
    serial_overscan : str
        ``MEAN`` or ``MEDIAN`` (one value per amp), ``MEAN_PER_ROW``, ``MEDIAN_PER_ROW``,
        ``POLY`` (polynomial of ``poly_order`` along rows fitted to the row means), or
        ``NONE``.
    serial_skip : (int, int)
        Leading and trailing serial-overscan columns left out.
    poly_order : int
        Order of the ``POLY`` fit.
    parallel_overscan : str
        ``NONE``, or ``MEAN_PER_ROW`` / ``MEDIAN_PER_ROW`` applied per column of the
        parallel overscan after the serial correction.
    parallel_skip : (int, int)
        Leading and trailing parallel-overscan rows left out.
    use_bias : bool
        Subtract a master bias when one is available.
    saturation : float or None
        Raw level (ADU) at or above which pixels are masked; None: no saturation mask.
    edge_mask : int
        Pixels masked along the borders: of each amplifier's imaging area
        (``edge_mask_level`` ``AMP``), or only those on the detector's outer edges
        (``DETECTOR``, cp_pipe's default level).
    edge_mask_level : {'DETECTOR', 'AMP'}
        Where ``edge_mask`` applies.
    dtype : {'float32', 'float64'}
        Floating type of the corrected pixels (sums are always float64).
    """

    serial_overscan: str = setting(
        "MEDIAN_PER_ROW",
        cp_pipe="ip_isr OverscanCorrectionConfig.fitType",
        eotest="per-row mean of the serial overscan",
    )
    serial_skip: tuple[int, int] = setting(
        (3, 3),
        cp_pipe="ip_isr OverscanCorrectionConfig.leadingToSkip, trailingToSkip",
        eotest="5 leading, 2 trailing columns",
    )
    poly_order: int = setting(1, cp_pipe="ip_isr OverscanCorrectionConfig.order")
    parallel_overscan: str = setting(
        "MEDIAN_PER_ROW",
        cp_pipe="ip_isr IsrTaskConfig.doParallelOverscan",
    )
    parallel_skip: tuple[int, int] = setting(
        (3, 3),
        cp_pipe="ip_isr parallelOverscan leadingToSkip, trailingToSkip",
    )
    use_bias: bool = setting(
        False,
        cp_pipe="ip_isr IsrTaskConfig.doBias",
        eotest="bias frames (superbias)",
    )
    saturation: float | None = setting(None, cp_pipe="ip_isr IsrTaskConfig.doSaturation")
    edge_mask: int = setting(0, cp_pipe="PhotonTransferCurveExtractPairConfig.numEdgeSuspect")
    edge_mask_level: str = setting(
        "DETECTOR", cp_pipe="PhotonTransferCurveExtractPairConfig.edgeMaskLevel"
    )
    dtype: str = setting("float32")

    def __post_init__(self) -> None:
        if self.serial_overscan not in OVERSCAN_METHODS:
            raise ValueError(
                f"serial_overscan {self.serial_overscan!r} not in {', '.join(OVERSCAN_METHODS)}"
            )
        if self.parallel_overscan not in PARALLEL_METHODS:
            raise ValueError(
                f"parallel_overscan {self.parallel_overscan!r} not in {', '.join(PARALLEL_METHODS)}"
            )
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype {self.dtype!r} must be 'float32' or 'float64'")
        if self.edge_mask < 0 or self.poly_order < 0:
            raise ValueError("edge_mask and poly_order must be non-negative")
        if self.edge_mask_level not in ("DETECTOR", "AMP"):
            raise ValueError(f"edge_mask_level {self.edge_mask_level!r} not DETECTOR or AMP")


@dataclass(frozen=True)
class ExtractConfig:
    """Pair statistics.

    Parameters
    ----------
    method : {'cp_pipe', 'eotest', 'seed'}
        Which tool's definitions of means, difference and variance.
    nsigma, niter : float, int
        afw clipping of means, variance and the covariance cut (``cp_pipe``).
    eotest_mad_cut : float
        EOTEST rejects ``|d| >= eotest_mad_cut * mad_std(d)``.
    cov_size : int
        Covariances for serial and parallel lags 0..cov_size-1 (0 switches them off).
    min_pixels_covariance : int
        Fewest good pixels for covariances of an amp (cp_pipe: 10 000).
    gain_correction : {'FULL', 'SIMPLE', 'NONE'}
        Read-noise correction of the robust per-pair gain ``rhl_gain_corrected``
        (``cp_pipe_gain`` is always FULL, as cp_pipe's default).
    exptime_tolerance : float
        Two flats pair when their exposure times differ by at most this fraction of the
        longer one (always within 5 ms, cp_pipe's absolute tolerance): real shutters
        jitter by about a millisecond. Below 0.1: a PTC's steps never pair.
    photodiode_integration : {'DIRECT_SUM', 'TRIMMED_SUM', 'CHARGE_SUM', 'MEAN'}
        How each flat's photodiode readings integrate to its charge
        (:func:`gpuptc.inputs.photodiode.integrate`); a pair's is the mean of its flats'.
    photodiode_current_scale : float
        Multiplies the readings' current: 1 for the camera's two-column files, whose
        current is positive (cp_pipe's default -1 is for meters that read it negative,
        and makes ``TRIMMED_SUM`` of such a file a third of its charge).
    match_exposures : {'TIME', 'FLUX', 'EXPID'}
        How flats pair, in the camera's exposure order (DAYOBS, SEQNUM): consecutive flats
        of one exposure time, of one value of ``match_flux_keyword``, or two by two
        (:class:`gpuptc.inputs.manifest.PairingRule`).
    match_flux_keyword : str
        The primary-header keyword ``FLUX`` pairs by.
    auxiliary_header_keys : tuple of str
        Primary-header keywords whose values each pair keeps (its first flat's), as the
        PTC dataset's ``PTCAUX_<KEYWORD>`` columns (LSSTCam: the temperature TEMP6).
    bin_size : int
        ``cp_pipe`` method: the difference image binned by this factor before its variance,
        covariances and row-mean variance (a bin the mean of its pixels, bad where any is;
        the means and per-pair gains stay unbinned); the covariance pixel minimum is
        divided by its square.
    var_cov00_threshold : float
        A warning names the sensors where a pair's clipped variance and its Cov[0,0]
        differ by this many per cent or more.
    ks_test : bool
        Test each pair's difference image for Gaussianity (a histogram fit and a KS test:
        :mod:`gpuptc.measuring.gaussianity`); off, every p-value is 1 (cp_pipe's default).
    ks_bins, ks_limit_multiplier, ks_min_values : int, float, int
        The test's histogram: bins, half range in ``sqrt(mean)`` (ADU), fewest pixels.
    vignette_selection : bool
        Measure only each amp's pixels where the camera's vignetting function is within
        ``vignette_percent`` of the amp's highest (:mod:`gpuptc.measuring.selection`).
    vignette_coefficients : tuple of float
        The vignetting function, a polynomial in the focal-plane radius in metres
        (``numpy.polyval`` order).
    vignette_min_pixels, vignette_percent : int, float
        The percentage is raised by 1 at a time until the selection holds this many pixels.
    output_binned_images : bool
        Keep both flats of every pair binned by ``binned_images_factor`` (each bin the mean
        of its good pixels, ``isr.edge_mask`` pixels of each amp's edges out), written as
        ``sensors/<sensor>/binned_pairs.parquet`` (:mod:`gpuptc.measuring.binning`).
    binned_images_factor : int
        Pixels per side of those bins.
    """

    method: str = setting("cp_pipe")
    nsigma: float = setting(5.5, cp_pipe="PhotonTransferCurveExtractPairConfig.nSigmaClipPtc")
    niter: int = setting(3, cp_pipe="PhotonTransferCurveExtractPairConfig.nIterSigmaClipPtc")
    eotest_mad_cut: float = setting(14.826, eotest="ptcTask: |d| < 14.826 mad_std")
    cov_size: int = setting(
        10,
        cp_pipe="PhotonTransferCurveExtractPairConfig.maximumRangeCovariancesAstier",
    )
    min_pixels_covariance: int = setting(
        10000,
        cp_pipe="PhotonTransferCurveExtractPairConfig.minNumberGoodPixelsForCovariance",
    )
    gain_correction: str = setting(
        "FULL",
        cp_pipe="PhotonTransferCurveExtractPairConfig.gainCorrectionType",
    )
    exptime_tolerance: float = setting(
        0.005,
        cp_pipe="PhotonTransferCurveExtractTask: matchExposuresType TIME, within 5 ms",
        eotest="flat pairs by file name (flat1, flat2)",
    )
    photodiode_integration: str = setting(
        "TRIMMED_SUM",
        cp_pipe="PhotonTransferCurveExtractPairConfig.photodiodeIntegrationMethod",
    )
    photodiode_current_scale: float = setting(
        1.0, cp_pipe="PhotonTransferCurveExtractPairConfig.photodiodeCurrentScale (-1)"
    )
    match_exposures: str = setting(
        "TIME",
        cp_pipe="PhotonTransferCurveExtractConfig.matchExposuresType",
        eotest="flat pairs by file name (flat1, flat2)",
    )
    match_flux_keyword: str = setting(
        "CCOBFLUX", cp_pipe="PhotonTransferCurveExtractConfig.matchExposuresByFluxKeyword"
    )
    auxiliary_header_keys: tuple[str, ...] = setting(
        (), cp_pipe="PhotonTransferCurveExtractPairConfig.auxiliaryHeaderKeys"
    )
    bin_size: int = setting(1, cp_pipe="PhotonTransferCurveExtractPairConfig.binSize")
    var_cov00_threshold: float = setting(
        1.0, cp_pipe="PhotonTransferCurveExtractPairConfig.thresholdDiffAfwVarVsCov00"
    )
    ks_test: bool = setting(
        False, cp_pipe="PhotonTransferCurveExtractPairConfig.doKsHistMeasurement"
    )
    ks_bins: int = setting(100, cp_pipe="PhotonTransferCurveExtractPairConfig.ksHistNBins")
    ks_limit_multiplier: float = setting(
        8.0, cp_pipe="PhotonTransferCurveExtractPairConfig.ksHistLimitMultiplier"
    )
    ks_min_values: int = setting(
        100, cp_pipe="PhotonTransferCurveExtractPairConfig.ksHistMinDataValues"
    )
    vignette_selection: bool = setting(
        False, cp_pipe="PhotonTransferCurveExtractPairConfig.doVignetteFunctionRegionSelection"
    )
    vignette_coefficients: tuple[float, ...] = setting(
        (), cp_pipe="PhotonTransferCurveExtractPairConfig.vignetteFunctionPolynomialCoeffs"
    )
    vignette_min_pixels: int = setting(
        250_000,
        cp_pipe="PhotonTransferCurveExtractPairConfig.vignetteFunctionRegionSelectionMinimumPixels",
    )
    vignette_percent: float = setting(
        2.0, cp_pipe="PhotonTransferCurveExtractPairConfig.vignetteFunctionRegionSelectionPercent"
    )
    output_binned_images: bool = setting(
        False, cp_pipe="PhotonTransferCurveExtractPairConfig.doOutputBinnedImages"
    )
    binned_images_factor: int = setting(
        8, cp_pipe="PhotonTransferCurveExtractPairConfig.outputBinnedImagesBinFactor"
    )

    def __post_init__(self) -> None:
        if self.bin_size < 1 or (self.bin_size > 1 and self.method != "cp_pipe"):
            raise ValueError(f"bin_size {self.bin_size}: 1, or more with the cp_pipe method")
        if self.match_exposures not in ("TIME", "FLUX", "EXPID"):
            raise ValueError(f"match_exposures {self.match_exposures!r} not TIME, FLUX or EXPID")
        object.__setattr__(self, "auxiliary_header_keys", tuple(self.auxiliary_header_keys))
        object.__setattr__(self, "vignette_coefficients", tuple(self.vignette_coefficients))
        if self.vignette_selection and not self.vignette_coefficients:
            raise ValueError("vignette_selection needs vignette_coefficients")
        if self.binned_images_factor < 1:
            raise ValueError(f"binned_images_factor {self.binned_images_factor} below 1")
        if self.photodiode_integration not in INTEGRATION_METHODS:
            raise ValueError(
                f"photodiode_integration {self.photodiode_integration!r} not in "
                f"{', '.join(INTEGRATION_METHODS)}"
            )
        if self.method not in PAIR_METHODS:
            raise ValueError(f"method {self.method!r} not in {', '.join(PAIR_METHODS)}")
        if self.gain_correction not in ("FULL", "SIMPLE", "NONE"):
            raise ValueError(f"gain_correction {self.gain_correction!r} not FULL, SIMPLE or NONE")
        if self.cov_size < 0 or self.niter < 1:
            raise ValueError("cov_size must be >= 0 and niter >= 1")
        if not 0 <= self.exptime_tolerance < 0.1:
            raise ValueError(f"exptime_tolerance {self.exptime_tolerance} not in [0, 0.1)")


@dataclass(frozen=True)
class SolveConfig:
    """PTC fits.

    Parameters
    ----------
    method : {'cp_pipe', 'eotest', 'seed'}
        Which tool's EXPAPPROXIMATION fit and point selection (``used``): cp_pipe's
        outlier loop and turnoff, EOTEST's 5-sigma re-selection, or every measured pair.
    sigma_cut : float
        Outlier threshold in units of sqrt(var) (cp_pipe and EOTEST: 5).
    max_iterations : int
        cp_pipe's outlier-loop iterations (2).
    max_signal_initial, max_delta_initial : float
        cp_pipe's initial signal cut and jump threshold: electrons when
        ``scale_initial_by_gain``, else ADU.
    scale_initial_by_gain : bool
        Convert the two thresholds with the median mean/var (cp_pipe default True).
    min_mean, max_mean : float
        Points outside (min_mean, max_mean) ADU are never used.
    rolloff : bool
        Model the PTC rolloff past the turnoff (LSSTCam production).
    max_rolloff_deviation : float
        Largest relative deviation of the rolloff model kept.
    rolloff_search_adu : float
        How far past the turnoff (ADU) the rolloff search extends.
    ks_min_pvalue : float
        Pairs whose difference image's Gaussianity p-value is lower are not fitted
        (status ``not_gaussian``; every p-value is 1 unless ``extract.ks_test``).
    bin_size : int
        The extract's ``bin_size`` (the two must agree): with binned variances the
        EXPAPPROXIMATION fit's first passes run without their parameter bounds, as
        cp_pipe's.
    fit_bootstrap : bool
        The EXPAPPROXIMATION fit's parameters and errors from 100 refits of perturbed
        variances (cp_pipe's ``fitBootstrap``, seeded; ``gpuptc.fitting.ptc._bootstrapped``).
    subtract_long_range, long_range_start, long_range_degree : bool, int, int
        Subtract each pair's long-range covariance background (a polynomial of this degree
        in the lags, fitted beyond this lag) before the full-covariance fit
        (:mod:`gpuptc.fitting.long_range`).
    eotest_initial_max_mean : float
        Mean cut of EOTEST's first fit (4e4 ADU).
    fullcov_size : int
        Lags per axis in the full-covariance fits (cp_pipe: 10), at most the measured
        ``cov_size``.
    fullcov_max_signal : float or None
        Electrons (converted with the EXPAPPROXIMATION gain) above which pairs are left
        out of the full-covariance fits, as Astier's code does (1e5 e-); None, as
        cp_pipe, keeps every pair of the EXPAPPROXIMATION selection.
    linear_range, quadratic_range, powerlaw_range : (float, float)
        The pairs of the notebook's fits, by their mean as a fraction of the amp's
        turnoff (the EXPAPPROXIMATION selection's highest mean): the straight line and the
        power law up to a tenth of it (where brighter-fatter lowers the variance by 1-2 %
        on the camera's sensors: it biases a straight line's gain by as much), the
        quadratic, which bends with it, up to half of it (beyond, eq. 16's higher terms
        bias it). They work for any number of pairs; the notebook's own index slices did
        not (below).
    linear_points, quadratic_points, powerlaw_points : (int or None, int or None) or None
        Index slices (exposure order) instead: the notebook's ``[6:-15]``, ``[:-3]``,
        ``[:-15]`` under ``seed``, which reproduces the notebook on its own data set (on
        16 pairs ``[6:-15]`` leaves nothing); None elsewhere.
    ptc_fit_type : {'expapprox', 'fullcov', 'fullcov_nob'}
        The fit written as each sensor's cp_pipe PTC dataset (its ``PTC_FIT_TYPE``):
        EXPAPPROXIMATION as cp_pipe's default, FULLCOVARIANCE for LSSTCam production.
    """

    method: str = setting("cp_pipe")
    sigma_cut: float = setting(
        5.0,
        cp_pipe="PhotonTransferCurveSolveConfig.sigmaCutPtcOutliers",
        eotest="ptcTask 5-sigma re-selection",
    )
    max_iterations: int = setting(
        2,
        cp_pipe="PhotonTransferCurveSolveConfig.maxIterationsPtcOutliers",
    )
    max_signal_initial: float = setting(
        50000.0,
        cp_pipe="PhotonTransferCurveSolveConfig.maxSignalInitialPtcOutlierFit",
    )
    max_delta_initial: float = setting(
        9000.0,
        cp_pipe="PhotonTransferCurveSolveConfig.maxDeltaInitialPtcOutlierFit",
    )
    scale_initial_by_gain: bool = setting(
        True,
        cp_pipe="PhotonTransferCurveSolveConfig.scaleMaxSignalInitialPtcOutlierFit",
    )
    min_mean: float = setting(0.0, cp_pipe="PhotonTransferCurveSolveConfig.minMeanSignal")
    max_mean: float = setting(1e6, cp_pipe="PhotonTransferCurveSolveConfig.maxMeanSignal")
    rolloff: bool = setting(False, cp_pipe="PhotonTransferCurveSolveConfig.doModelPtcRolloff")
    max_rolloff_deviation: float = setting(
        0.01,
        cp_pipe="PhotonTransferCurveSolveConfig.maxPtcRolloffDeviation",
    )
    rolloff_search_adu: float = setting(5000.0)
    ks_min_pvalue: float = setting(0.01, cp_pipe="PhotonTransferCurveSolveConfig.ksTestMinPvalue")
    fit_bootstrap: bool = setting(False, cp_pipe="PhotonTransferCurveSolveConfig.doFitBootstrap")
    bin_size: int = setting(1, cp_pipe="PhotonTransferCurveSolveConfig.binSize")
    subtract_long_range: bool = setting(
        False, cp_pipe="PhotonTransferCurveSolveConfig.doSubtractLongRangeCovariances"
    )
    long_range_start: int = setting(
        4, cp_pipe="PhotonTransferCurveSolveConfig.startLongRangeCovariances"
    )
    long_range_degree: int = setting(
        1, cp_pipe="PhotonTransferCurveSolveConfig.polyDegLongRangeCovariances"
    )
    eotest_initial_max_mean: float = setting(4e4, eotest="ptcTask: first fit below 4e4 ADU")
    fullcov_size: int = setting(
        10,
        cp_pipe="PhotonTransferCurveSolveConfig.maximumRangeCovariancesAstierFullCovFit",
    )
    fullcov_max_signal: float | None = setting(None)
    linear_range: tuple[float, float] = setting((0.0, 0.1))
    quadratic_range: tuple[float, float] = setting((0.0, 0.5))
    powerlaw_range: tuple[float, float] = setting((0.0, 0.1))
    linear_points: tuple[int | None, int | None] | None = setting(None)
    quadratic_points: tuple[int | None, int | None] | None = setting(None)
    powerlaw_points: tuple[int | None, int | None] | None = setting(None)
    ptc_fit_type: str = setting("expapprox", cp_pipe="PhotonTransferCurveSolveConfig.ptcFitType")

    def __post_init__(self) -> None:
        if self.method not in PAIR_METHODS:
            raise ValueError(f"solve method {self.method!r} not in {', '.join(PAIR_METHODS)}")
        if self.ptc_fit_type not in PTC_FIT_MODELS:
            raise ValueError(
                f"ptc_fit_type {self.ptc_fit_type!r} not in {', '.join(PTC_FIT_MODELS)}"
            )


@dataclass(frozen=True)
class LinearityConfig:
    """Each amp's linearizer from the same flat pairs (cp_pipe's ``LinearitySolveTask``).

    Parameters
    ----------
    linearity_type : {'Squared', 'Polynomial', 'LookupTable', 'Spline'}
        The linearizer's type.
    polynomial_order : int
        Order of the polynomial of the signal in the linear flux (``Polynomial``).
    min_linear_adu, max_linear_adu : float
        The signal range (ADU) of the fits.
    n_sigma_clip_linear : float
        Pairs beyond this many sqrt(signal) of the straight line are left out.
    max_frac_linearity_deviation : float
        The linearity turnoff: the highest signal within this fraction of the line.
    min_signal_fit_linearity_turnoff : float
        Pairs below it (ADU) are not fitted for the turnoff.
    max_lookup_table_adu : int
        Entries of a lookup table.
    use_photodiode : bool
        Fit against each pair's photodiode charge (when every one of the sensor's pairs
        has one; otherwise the sensor falls back to exposure time, said in the table).
    min_photodiode_current : float
        Pairs with less photodiode charge than this are left out.
    spline_knots : int
        Nodes of a ``Spline`` linearizer, evenly spaced from 0 to the brightest fitted pair.
    do_spline_fit_offset : bool
        Fit a signal offset with the spline.
    spline_fit_min_iter, spline_fit_max_iter : int
        The spline's rounds of fitting and outlier rejection: at least, at most.
    spline_fit_max_rejection_per_iteration : int
        Fewer than this many pairs are rejected a round.
    do_auto_grouping : bool
        Find the groups of pairs that share an illumination from jumps in their signal
        per unit abscissa (:mod:`gpuptc.fitting.linearity_groups`); each group has its own
        slope in the turnoff's lines and the spline.
    auto_grouping_use_exptime : bool
        Group by signal over exposure time (else over photodiode charge).
    auto_grouping_threshold : float
        The smallest jump of the sorted relative ratios that starts a group.
    auto_grouping_max_signal_fraction : float
        Pairs above this fraction of the brightest signal join the group of the brightest
        pair below it.
    spline_grouping_column : str
        Group by the distinct values of this column of the pairs table instead ("" for
        none; not with ``do_auto_grouping``).
    spline_grouping_min_points : int
        A ``Spline`` grouped by a column needs at least this many pairs.
    """

    linearity_type: str = setting("Squared", cp_pipe="LinearitySolveConfig.linearityType")
    polynomial_order: int = setting(3, cp_pipe="LinearitySolveConfig.polynomialOrder")
    min_linear_adu: float = setting(30.0, cp_pipe="LinearitySolveConfig.minLinearAdu")
    max_linear_adu: float = setting(20000.0, cp_pipe="LinearitySolveConfig.maxLinearAdu")
    n_sigma_clip_linear: float = setting(5.0, cp_pipe="LinearitySolveConfig.nSigmaClipLinear")
    max_frac_linearity_deviation: float = setting(
        0.01, cp_pipe="LinearitySolveConfig.maxFracLinearityDeviation"
    )
    min_signal_fit_linearity_turnoff: float = setting(
        1000.0, cp_pipe="LinearitySolveConfig.minSignalFitLinearityTurnoff"
    )
    max_lookup_table_adu: int = setting(2**18, cp_pipe="LinearitySolveConfig.maxLookupTableAdu")
    use_photodiode: bool = setting(False, cp_pipe="LinearitySolveConfig.usePhotodiode")
    min_photodiode_current: float = setting(
        0.0, cp_pipe="LinearitySolveConfig.minPhotodiodeCurrent"
    )
    spline_knots: int = setting(10, cp_pipe="LinearitySolveConfig.splineKnots")
    do_spline_fit_offset: bool = setting(True, cp_pipe="LinearitySolveConfig.doSplineFitOffset")
    spline_fit_min_iter: int = setting(3, cp_pipe="LinearitySolveConfig.splineFitMinIter")
    spline_fit_max_iter: int = setting(20, cp_pipe="LinearitySolveConfig.splineFitMaxIter")
    spline_fit_max_rejection_per_iteration: int = setting(
        5, cp_pipe="LinearitySolveConfig.splineFitMaxRejectionPerIteration"
    )
    do_auto_grouping: bool = setting(False, cp_pipe="LinearitySolveConfig.doAutoGrouping")
    auto_grouping_use_exptime: bool = setting(
        True, cp_pipe="LinearitySolveConfig.autoGroupingUseExptime"
    )
    auto_grouping_threshold: float = setting(
        0.1, cp_pipe="LinearitySolveConfig.autoGroupingThreshold"
    )
    auto_grouping_max_signal_fraction: float = setting(
        0.9, cp_pipe="LinearitySolveConfig.autoGroupingMaxSignalFraction"
    )
    spline_grouping_column: str = setting(
        "", cp_pipe="LinearitySolveConfig.splineGroupingColumn (None)"
    )
    spline_grouping_min_points: int = setting(
        100, cp_pipe="LinearitySolveConfig.splineGroupingMinPoints"
    )

    def __post_init__(self) -> None:
        if self.linearity_type not in LINEARITY_TYPES:
            raise ValueError(
                f"linearity_type {self.linearity_type!r} not in {', '.join(LINEARITY_TYPES)}"
            )
        if self.polynomial_order < 2:
            raise ValueError(f"polynomial_order {self.polynomial_order} below 2")
        if self.spline_knots < 3:
            raise ValueError(f"spline_knots {self.spline_knots} below 3")
        if self.do_auto_grouping and self.spline_grouping_column:
            raise ValueError("do_auto_grouping and spline_grouping_column exclude each other")
        if self.do_auto_grouping and not (self.auto_grouping_use_exptime or self.use_photodiode):
            raise ValueError(
                "do_auto_grouping by photodiode charge (auto_grouping_use_exptime false) "
                "needs use_photodiode"
            )


BF_LEVELS = ("AMP", "DETECTOR")
"""Where brighter-fatter kernels are solved: per amplifier, or one per detector."""


@dataclass(frozen=True)
class BrighterFatterConfig:
    """Each amp's brighter-fatter kernel from its PTC.

    cp_pipe's ``BrighterFatterKernelSolveTask``; :mod:`gpuptc.fitting.bf_kernel`.

    Parameters
    ----------
    level : {'AMP', 'DETECTOR'}
        A kernel per amp, and with ``DETECTOR`` one for the detector from every amp's pairs.
    ignore_amps_for_averaging : tuple of str
        Amps left out of the detector kernel (by segment name).
    xcorr_check_reject_level : float
        A pair whose correlations have ``|sum| / sum|.|`` above this is left out.
    n_sigma_clip : float
        The sigma clip of the average over pairs.
    force_zero_sum : bool
        Take the grid's sum (and a power-law tail) from its centre.
    use_amatrix : bool
        The kernel of the full covariance fit's ``a`` matrix.
    use_cov_model_sample : bool
        The kernel of the full covariance model sampled at ``cov_model_flux_sample`` e-.
    cov_model_flux_sample : float
        The flux (e-) at which the model is sampled.
    correlation_quadratic_fit : bool
        The correlations' slope against the flux squared, per lag, instead of the average.
    correlation_model_radius : int
        The power-law tail of the zero sum applies beyond this radius (pixels).
    correlation_model_slope : float
        The tail's slope.
    max_iter_sor : int
        Sweeps of the successive over-relaxation at most.
    e_level_sor : float
        It stops when the residuals fall below this fraction of the first ones.
    do_check_validity : bool
        Check each kernel (edges zero, centre the minimum, nothing above
        ``fraction_k00_for_kernel_max`` of ``|K_00|``).
    n_sigma_tol_for_valid_edge : float
        cp_pipe's edge tolerance in units of the edge's spread (it compares with a relative
        tolerance of zero, so only its absolute 1e-8 counts; kept for the record).
    fraction_k00_for_kernel_max : float
        See ``do_check_validity``.
    """

    level: str = setting("AMP", cp_pipe="BrighterFatterKernelSolveConfig.level")
    ignore_amps_for_averaging: tuple[str, ...] = setting(
        (), cp_pipe="BrighterFatterKernelSolveConfig.ignoreAmpsForAveraging"
    )
    xcorr_check_reject_level: float = setting(
        2.0, cp_pipe="BrighterFatterKernelSolveConfig.xcorrCheckRejectLevel"
    )
    n_sigma_clip: float = setting(5.0, cp_pipe="BrighterFatterKernelSolveConfig.nSigmaClip")
    force_zero_sum: bool = setting(True, cp_pipe="BrighterFatterKernelSolveConfig.forceZeroSum")
    use_amatrix: bool = setting(False, cp_pipe="BrighterFatterKernelSolveConfig.useAmatrix")
    use_cov_model_sample: bool = setting(
        False, cp_pipe="BrighterFatterKernelSolveConfig.useCovModelSample"
    )
    cov_model_flux_sample: float = setting(
        25000.0, cp_pipe="BrighterFatterKernelSolveConfig.covModelFluxSample (ALL_AMPS)"
    )
    correlation_quadratic_fit: bool = setting(
        False, cp_pipe="BrighterFatterKernelSolveConfig.correlationQuadraticFit"
    )
    correlation_model_radius: int = setting(
        100, cp_pipe="BrighterFatterKernelSolveConfig.correlationModelRadius"
    )
    correlation_model_slope: float = setting(
        -1.35, cp_pipe="BrighterFatterKernelSolveConfig.correlationModelSlope"
    )
    max_iter_sor: int = setting(
        10000, cp_pipe="BrighterFatterKernelSolveConfig.maxIterSuccessiveOverRelaxation"
    )
    e_level_sor: float = setting(
        5.0e-14, cp_pipe="BrighterFatterKernelSolveConfig.eLevelSuccessiveOverRelaxation"
    )
    do_check_validity: bool = setting(
        True, cp_pipe="BrighterFatterKernelSolveConfig.doCheckValidity"
    )
    n_sigma_tol_for_valid_edge: float = setting(
        5.0, cp_pipe="BrighterFatterKernelSolveConfig.nSigmaTolForValidEdge"
    )
    fraction_k00_for_kernel_max: float = setting(
        0.025, cp_pipe="BrighterFatterKernelSolveConfig.fractionK00ForKernelMax"
    )

    def __post_init__(self) -> None:
        if self.level not in BF_LEVELS:
            raise ValueError(f"level {self.level!r} not in {', '.join(BF_LEVELS)}")
        chosen = [self.use_amatrix, self.use_cov_model_sample, self.correlation_quadratic_fit]
        if sum(chosen) > 1:
            raise ValueError(
                "use_amatrix, use_cov_model_sample and correlation_quadratic_fit: one at most"
            )


@dataclass(frozen=True)
class GainRatiosConfig:
    """The PTC's gains adjusted so that the flats are seamless across amplifier boundaries.

    cp_pipe's ``PhotonTransferCurveAdjustGainRatiosTask`` (run by the LSSTCam pipeline
    after the PTC solve); :mod:`gpuptc.fitting.gain_ratios`. The first flat of each of
    up to ``n_flat`` pairs between ``min_adu`` and ``max_adu`` is binned (in the measuring
    pass), put in electrons by the PTC's gains, cleared of a radial gradient (about the
    focal plane's centre) and a Chebyshev gradient; each amp's ratio to a reference amp is
    the median over the flats, and the gains are divided by those ratios (normalised so
    that their median is 1). The PTC's own gains are kept as ``gain_unadjusted``.

    Parameters
    ----------
    adjust : bool
        Adjust the gains (off in ``cp_pipe``, whose default pipeline does not run the task).
    remove_radial_gradient : bool
        Fit and divide out a radial spline before the amp ratios.
    radial_nodes : int
        Nodes of the radial (Akima) spline, evenly spaced over the sensor's radii.
    chebyshev_order : int
        Order in x and in y of the Chebyshev gradient fitted with the amp ratios.
    min_adu, max_adu : float
        The pairs whose mean signal (averaged over the good amps) is between these.
    max_noise_reference : float
        A reference amp has a PTC read noise (e-) at most this.
    turnoff_percentile_reference : float
        ... and a turnoff at or above this percentile of the sensor's amps'.
    n_flat : int
        At most this many flats, drawn at random (seeded by ``random_seed``).
    random_seed : int
        The draw's seed.
    bin_factor : int
        Pixels per side of a bin.
    amp_boundary : int
        Pixels at each amp's edges left out of the bins.
    max_fractional_gain_ratio : float
        An amp whose ratio is further than this from 1 is left out of the gradient fits,
        one at a time, and gets no adjustment.
    """

    adjust: bool = setting(False, cp_pipe="cpPtcAdjustGainRatios in the pipeline")
    remove_radial_gradient: bool = setting(
        True, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.do_remove_radial_gradient"
    )
    radial_nodes: int = setting(
        20, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.radial_gradient_n_spline_nodes"
    )
    chebyshev_order: int = setting(
        1, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.chebyshev_gradient_order"
    )
    min_adu: float = setting(1000.0, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.min_adu")
    max_adu: float = setting(20000.0, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.max_adu")
    max_noise_reference: float = setting(
        12.0, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.max_noise_reference"
    )
    turnoff_percentile_reference: float = setting(
        25.0, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.turnoff_percentile_reference"
    )
    n_flat: int = setting(50, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.n_flat")
    random_seed: int = setting(
        12345, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.random_seed"
    )
    bin_factor: int = setting(8, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.bin_factor")
    amp_boundary: int = setting(
        20, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.amp_boundary"
    )
    max_fractional_gain_ratio: float = setting(
        0.05, cp_pipe="PhotonTransferCurveAdjustGainRatiosConfig.max_fractional_gain_ratio"
    )

    def __post_init__(self) -> None:
        if self.bin_factor < 1 or self.amp_boundary < 0 or self.n_flat < 1:
            raise ValueError("bin_factor and n_flat must be >= 1, amp_boundary >= 0")
        if self.radial_nodes < 2 or self.chebyshev_order < 0:
            raise ValueError("radial_nodes must be >= 2 and chebyshev_order >= 0")
        if not self.min_adu < self.max_adu:
            raise ValueError(f"min_adu {self.min_adu} not below max_adu {self.max_adu}")


_SECTIONS: dict[str, type] = {
    "isr": IsrConfig,
    "extract": ExtractConfig,
    "solve": SolveConfig,
    "linearity": LinearityConfig,
    "brighter_fatter": BrighterFatterConfig,
    "gain_ratios": GainRatiosConfig,
}
"""A preset's sections, in the order of :class:`Preset`'s fields."""
_FIELDS: dict[str, frozenset[str]] = {
    section: frozenset(f.name for f in dataclasses.fields(kind))
    for section, kind in _SECTIONS.items()
}


@dataclass(frozen=True)
class Preset:
    """A named, complete configuration."""

    name: str
    isr: IsrConfig = field(default_factory=IsrConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    solve: SolveConfig = field(default_factory=SolveConfig)
    linearity: LinearityConfig = field(default_factory=LinearityConfig)
    brighter_fatter: BrighterFatterConfig = field(default_factory=BrighterFatterConfig)
    gain_ratios: GainRatiosConfig = field(default_factory=GainRatiosConfig)

    def __post_init__(self) -> None:
        if self.extract.bin_size != self.solve.bin_size:
            raise ValueError(
                f"extract.bin_size {self.extract.bin_size} and solve.bin_size "
                f"{self.solve.bin_size} differ: set both (cp_pipe's pipelines require them equal)"
            )

    def replace(self, **overrides: Any) -> Preset:
        """A copy with fields overridden, given as ``section__field=value`` or ``field=value``.

        A bare field name is accepted where one section has it; a name that several
        sections share (``method``) must name its section (``solve__method``).
        """
        sections: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
        for key, value in overrides.items():
            section, name = key.split("__", 1) if "__" in key else (_section_of(key), key)
            if name not in _FIELDS.get(section, ()):
                raise ValueError(f"unknown configuration field {key!r}")
            sections[section][name] = value
        changed = (dataclasses.replace(getattr(self, s), **sections[s]) for s in _SECTIONS)
        return Preset(self.name, *changed)


LSSTCAM_VIGNETTING: tuple[float, ...] = (
    -2.04748298e12,
    4.62036195e12,
    -4.55318392e12,
    2.55519946e12,
    -8.86592878e11,
    1.89254514e11,
    -2.11087631e10,
    -2.68228152e08,
    4.87993883e08,
    -8.03764403e07,
    6.99808127e06,
    -3.58577957e05,
    1.05491604e04,
    -1.60565953e02,
    9.96009337e-01,
    9.98941038e-01,
)
"""LSSTCam's vignetting function (relative throughput) as a polynomial in the focal-plane
radius in metres, highest power first: cp_pipe's LSSTCam PTC pipeline's
``vignetteFunctionPolynomialCoeffs``."""

PRESETS: dict[str, Preset] = {
    "eotest": Preset(
        "eotest",
        IsrConfig(serial_overscan="MEAN_PER_ROW", serial_skip=(5, 2), parallel_overscan="NONE"),
        ExtractConfig(method="eotest"),
        SolveConfig(method="eotest", fullcov_max_signal=1e5),
    ),
    "cp_pipe": Preset("cp_pipe"),
    "cp_pipe_lsstcam": Preset(
        "cp_pipe_lsstcam",
        IsrConfig(edge_mask=20, edge_mask_level="AMP"),
        ExtractConfig(
            auxiliary_header_keys=("TEMPAVG", "BSSVBS"),
            vignette_selection=True,
            vignette_coefficients=LSSTCAM_VIGNETTING,
        ),
        SolveConfig(
            max_signal_initial=20000.0,
            max_delta_initial=1000.0,
            scale_initial_by_gain=False,
            rolloff=True,
            max_rolloff_deviation=0.005,
            ptc_fit_type="fullcov",
        ),
        LinearityConfig(use_photodiode=True),
        gain_ratios=GainRatiosConfig(adjust=True),
    ),
    "seed": Preset(
        "seed",
        IsrConfig(
            serial_overscan="MEDIAN", serial_skip=(0, 0), parallel_overscan="NONE", use_bias=True
        ),
        ExtractConfig(method="seed", gain_correction="NONE"),
        SolveConfig(
            method="seed",
            fullcov_max_signal=1e5,
            linear_points=(6, -15),
            quadratic_points=(None, -3),
            powerlaw_points=(None, -15),
        ),
    ),
}


def get_preset(preset: str | Preset = "cp_pipe", **overrides: Any) -> Preset:
    """Look up a preset by name and apply overrides.

    Parameters
    ----------
    preset : str or Preset
        ``eotest``, ``cp_pipe`` (default), ``cp_pipe_lsstcam``, ``seed``, or a Preset.
    **overrides
        Field overrides, see :meth:`Preset.replace`.

    Returns
    -------
    Preset
        The configuration.

    Raises
    ------
    ValueError
        For an unknown preset or field.
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    return preset.replace(**overrides) if overrides else preset


def _section_of(key: str) -> str:
    """The one section that has a field ``key`` ("" if none); an error if several have it."""
    having = [section for section, names in _FIELDS.items() if key in names]
    if len(having) > 1:
        raise ValueError(
            f"configuration field {key!r} is in {' and '.join(having)}: name the section "
            f"({having[0]}__{key}=...)"
        )
    return having[0] if having else ""

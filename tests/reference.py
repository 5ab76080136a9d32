"""Deliberately simple per-amp implementations, written independently of gpuptc's core.

Loops over amplifiers, boolean indexing, float64 everywhere: slow and obvious.
"""

from __future__ import annotations

import math

import numpy as np


def afw_clip(values, nsigma=5.5, niter=3):
    """afw MEANCLIP / VARIANCECLIP: median/IQR pass, then mean/sigma passes, inclusive."""
    x = values[np.isfinite(values)].astype(np.float64)
    q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    centre, half = q50, nsigma * 0.741301109252802 * (q75 - q25)
    kept = x
    for _ in range(niter):
        keep = np.abs(x - centre) <= half
        kept = x[keep]
        centre, var = kept.mean(), kept.var(ddof=1)
        half = nsigma * math.sqrt(var)
    return centre, var, kept.size


def clip_factor(n):
    phi = math.exp(-n * n / 2) / math.sqrt(2 * math.pi)
    return 1 / (1 - 2 * n * phi / math.erf(n / math.sqrt(2)))


def isr_amp(segment, datasec, preset, bias=None):
    """Correct one raw segment (naxis2 x naxis1) and trim it. datasec = (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = datasec
    seg = segment.astype(np.float64)
    naxis2, naxis1 = seg.shape
    if preset in ("cp_pipe", "cp_pipe_lsstcam"):
        cols = seg[:, x1 + 3 : naxis1 - 3]
        seg = seg - np.array([np.median(row) for row in cols])[:, None]
        image = seg[y0:y1, x0:x1]
        parallel = seg[y1 + 3 : naxis2 - 3, x0:x1]
        image = (
            image - np.array([np.median(parallel[:, c]) for c in range(parallel.shape[1])])[None, :]
        )
        return image
    if preset == "eotest":
        cols = seg[:, x1 + 5 : naxis1 - 2]
        seg = seg - np.array([row.mean() for row in cols])[:, None]
        return seg[y0:y1, x0:x1]
    if preset == "seed":
        seg = seg - np.median(seg[:, x1:])
        if bias is not None:
            seg = seg - bias
        return seg[y0:y1, x0:x1]
    raise ValueError(preset)


def pair_amp(i1, i2, preset):
    """Means, variance, per-pixel gain of one amp of one pair, per preset."""
    out = {}
    if preset.startswith("cp_pipe"):
        m1 = afw_clip(i1.ravel())[0]
        m2 = afw_clip(i2.ravel())[0]
        mean = (m1 + m2) / 2
        d = (m2 * i1 - m1 * i2) / mean
        dmean, dvar, n = afw_clip(d.ravel())
        out.update(mean1=m1, mean2=m2, mean=mean, var=0.5 * dvar * clip_factor(5.5), npix=n)
        weights = np.abs(d) <= dmean + 5.5 * math.sqrt(dvar)
    elif preset == "eotest":
        m1, m2 = i1.mean(), i2.mean()
        f = (m1 + m2) / 2
        r1, r2 = i1 * m2 / f, i2 * m1 / f
        d = r1 - r2
        mad_std = 1.482602218505602 * np.median(np.abs(d - np.median(d)))
        keep = np.abs(d) < 14.826 * mad_std
        m1b, m2b = r1[keep].mean(), r2[keep].mean()
        fb = (m1b + m2b) / 2
        d = r1 * m2b / fb - r2 * m1b / fb
        out.update(mean1=m1, mean2=m2, mean=fb, var=np.var(d[keep]) / 2, npix=keep.sum())
        weights = keep
    elif preset == "seed":
        m1, m2 = i1.mean(), i2.mean()
        d = i1 - i2 * m1 / m2
        out.update(mean1=m1, mean2=m2, mean=m1, var=np.var(d) / 2, npix=d.size)
        weights = np.ones_like(d, bool)
    else:
        raise ValueError(preset)
    out["rhl_gain"] = 1 / np.mean((i1 - i2) ** 2 / (i1 + i2))
    out["d"], out["weights"] = d, weights
    return out


def direct_cov(d, w, dx, dy):
    """Pair-restricted covariance of lag (dx, dy >= 0), averaged with (dx, -dy), halved."""

    def one(dx, dy):
        ny, nx = d.shape
        if dy >= 0:
            a, b, wa, wb = (
                d[: ny - dy, : nx - dx],
                d[dy:, dx:],
                w[: ny - dy, : nx - dx],
                w[dy:, dx:],
            )
        else:
            a, b, wa, wb = (
                d[-dy:, : nx - dx],
                d[: ny + dy, dx:],
                w[-dy:, : nx - dx],
                w[: ny + dy, dx:],
            )
        both = wa & wb
        n = both.sum()
        return (a[both] * b[both]).sum() / n - a[both].sum() * b[both].sum() / n**2

    c = one(dx, dy)
    if dx > 0 and dy > 0:
        c = 0.5 * (c + one(dx, -dy))
    return 0.5 * c

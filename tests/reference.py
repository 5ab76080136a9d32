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
    out["notebook_gain"] = 1 / np.mean((i1 - i2) ** 2 / (i1 + i2))
    s = out["mean1"] / out["mean2"]  # the second flat at the first one's level
    expected = i1 + s * s * i2  # what the squared difference is in Poisson electrons
    keep = weights & (expected > 0)
    out["rhl_gain"] = 1 / np.mean(((i1 - s * i2) ** 2 / expected)[keep])
    out["d"], out["weights"] = d, weights
    out["row_mean_variance"] = afw_clip(d[:-1].mean(axis=1))[1]  # every row but the last
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


def eq16(mu, a00, gain, n00):
    """Astier et al. (2019) eq. 16, written out: C00 in ADU^2 at mean mu (ADU), n00 in e-^2."""
    mu = np.asarray(mu, dtype=np.float64)
    return np.expm1(2 * a00 * gain * mu) / (2 * a00 * gain**2) + n00 / gain**2


def _mirrored(m):
    """An r x r lag array [i, j >= 0] extended to lags -(r-1)..r-1 by a_ij = a_|i||j|."""
    r = m.shape[0]
    index = np.abs(np.arange(-r + 1, r))
    return m[np.ix_(index, index)]


def _convolve(x, y):
    """(x * y)_ij for lags 0 <= i, j < r of two mirrored lag arrays, by explicit sums."""
    r = x.shape[0]
    big_x, big_y = _mirrored(x), _mirrored(y)
    out = np.zeros((r, r))
    for i in range(r):
        for j in range(r):
            total = 0.0
            for k in range(-r + 1, r):
                for m in range(-r + 1, r):
                    u, v = i - k, j - m
                    if abs(u) < r and abs(v) < r:
                        total += big_x[k + r - 1, m + r - 1] * big_y[u + r - 1, v + r - 1]
            out[i, j] = total
    return out


def eq20(mu, a, b, noise, gain):
    """Astier et al. (2019) eq. 20, term by term: C_ij (ADU^2) for each mean mu (ADU).

    C = mu/g delta + a mu^2 + 2/3 (a*a + ab) g mu^3 + (1/3 a*a*a + 5/6 a*ab) g^2 mu^4 + n/g^2,
    with * the 2-D convolution over mirrored lags and ab the element-wise product.
    """
    ab = a * b
    a2 = _convolve(a, a)
    a3 = _convolve(a2, a)
    a_ab = _convolve(a, ab)
    out = []
    for m in np.atleast_1d(np.asarray(mu, dtype=np.float64)):
        c = (
            a * m**2
            + (2 / 3) * (a2 + ab) * gain * m**3
            + (a3 / 3 + (5 / 6) * a_ab) * gain**2 * m**4
        )
        c = c + noise / gain**2
        c[0, 0] += m / gain
        out.append(c)
    return np.array(out)


def gain_full(c, mu, sigma):
    """cp_pipe's FULL read-noise correction of the per-pixel gain.

    c = <(I1 - I2)^2 / (I1 + I2)> (ADU), mu the pair's mean (ADU), sigma the read noise
    (ADU): g = (mu + sqrt(mu^2 - 2 mu c + 2 sigma^2)) / (2 c mu - 2 sigma^2).
    """
    return (mu + np.sqrt(mu * mu - 2 * mu * c + 2 * sigma**2)) / (2 * c * mu - 2 * sigma**2)


def gain_simple(c, mu, sigma):
    """The first-order read-noise correction: 1/g = c - sigma^2 / mu."""
    return 1 / (c - sigma**2 / mu)

"""Fused CPU kernels (numba) for the pixel work on NumPy arrays.

The array-API kernels (:class:`gpuptc.kernels.ArrayApiKernels`) are the reference and
what every other backend runs; these compute the same numbers in fewer passes over the
pixels when numba is installed (:class:`gpuptc.kernels.FusedCpuKernels` calls them):

- order statistics by histogram narrowing instead of ``np.partition`` of a filled copy: a
  histogram over a range taken from a strided sample, one pass gathering the few bins that
  hold the ranks wanted, then the same on those values until a handful is left to sort;
- each afw clipping iteration as one pass accumulating count, sum and sum of squares,
  with the same float32 offsets and float64 sums as the reference;
- per-row medians by counting (whole-number rows) or in-place selection;
- the imaging-section ISR, the flux-matched difference and the per-pixel gain sums, one
  pass each, with the reference's arithmetic;
- partner sums and pair counts of the covariances without transforms, for images with
  few masked pixels.

Every kernel releases the GIL, so amplifier groups run in parallel threads. Set
``GPUPTC_NUMBA=0`` to use the reference path.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from gpuptc import settings

UNAVAILABLE = ""
"""Why numba could not be used ("" when it imports)."""

try:
    import numba
except ImportError as exc:  # pragma: no cover - exercised where numba is absent
    numba = None
    UNAVAILABLE = f"numba is not installed ({exc})"
except Exception as exc:  # a numba that does not work with this NumPy must not break gpuptc
    numba = None
    UNAVAILABLE = f"numba does not import: {type(exc).__name__}: {exc}"
    logging.getLogger(__name__).warning("%s; the array-API kernels run instead", UNAVAILABLE)

__all__ = [
    "KsCells",
    "available",
    "clipped_moments",
    "compiled",
    "correct_imaging",
    "flux_matched_difference",
    "ks_histogram",
    "ks_statistic",
    "masked_lag_sums",
    "masked_mean",
    "masked_quantiles",
    "masked_variance",
    "median_last_axis",
    "squared_difference_ratio",
]

_BINS = 4096
_SORT_BELOW = 512
_SAMPLE = 2048
_COUNTING_SPAN = 1024
_FASTMATH = {"reassoc"}


def available() -> bool:
    """True when numba imports and ``GPUPTC_NUMBA`` is not ``0``."""
    return numba is not None and settings.numba()


def compiled(**options: object):
    """``numba.njit`` with an on-disk cache where one can be written.

    Without numba, the function as it is: callers check :func:`available` first.
    """

    def decorate(function):
        if numba is None:
            return function
        try:
            return numba.njit(cache=True, **options)(function)
        except RuntimeError:  # no writable cache location
            return numba.njit(cache=False, **options)(function)

    return decorate


if numba is not None:
    _jit = compiled(nogil=True, error_model="numpy")
    _jit_reassociating = compiled(nogil=True, fastmath=_FASTMATH, error_model="numpy")

    @_jit
    def _bin_of(value, low, scale, bins):
        # clamped before the integer conversion, which is undefined out of range
        return int(min(max((value - low) * scale, 0.0), bins - 1.0))

    @_jit
    def _select_in(buffer, rank):
        """Value of ``rank`` (0-based) among the values of ``buffer``."""
        values = buffer
        while values.size > _SORT_BELOW:
            low = values[0]
            high = values[0]
            for v in values:
                low = min(low, v)
                high = max(high, v)
            if low == high:
                return low
            scale = _BINS / (np.float64(high) - np.float64(low))
            counts = np.zeros(_BINS, np.int64)
            for v in values:
                counts[_bin_of(np.float64(v), np.float64(low), scale, _BINS)] += 1
            below = 0
            wanted = 0
            for b in range(_BINS):
                if below + counts[b] > rank:
                    wanted = b
                    break
                below += counts[b]
            narrowed = np.empty(counts[wanted], values.dtype)
            k = 0
            for v in values:
                if _bin_of(np.float64(v), np.float64(low), scale, _BINS) == wanted:
                    narrowed[k] = v
                    k += 1
            values = narrowed
            rank -= below
        return np.sort(values)[rank]

    @_jit
    def _count_and_range(x, good):
        n = 0
        low = np.inf
        high = -np.inf
        for i in range(x.size):
            v = x[i]
            if good[i] and math.isfinite(v):
                n += 1
                low = min(low, np.float64(v))
                high = max(high, np.float64(v))
        return n, low, high

    @_jit
    def _histogram_range(x, good):
        """Range for the histogram: central 98 % of a strided sample, widened by half.

        Values outside fall into the end bins, so any range gives exact results; a
        range that hugs the bulk of the values keeps the bins holding the ranks small.
        Returns an empty range (low >= high) when the sample cannot tell.
        """
        step = max(1, x.size // _SAMPLE)
        sample = np.empty((x.size + step - 1) // step, np.float64)
        m = 0
        for i in range(0, x.size, step):
            v = x[i]
            if good[i] and math.isfinite(v):
                sample[m] = v
                m += 1
        if m < 16:
            return np.inf, -np.inf
        ordered = np.sort(sample[:m])
        low = ordered[m // 100]
        high = ordered[m - 1 - m // 100]
        pad = 0.25 * (high - low)
        return low - pad, high + pad

    @_jit
    def _row_quantiles(x, good, quantiles, out):
        """``out[k]``: quantile ``quantiles[k]`` of the good finite values of ``x``.

        Returns the number of good finite values.
        """
        low, high = _histogram_range(x, good)
        if not low < high:
            n, low, high = _count_and_range(x, good)
            if n == 0:
                out[:] = np.nan
                return 0
            if low == high:
                out[:] = low
                return n
        scale = _BINS / (high - low)
        counts = np.zeros(_BINS, np.int64)
        for i in range(x.size):
            v = x[i]
            if good[i] and math.isfinite(v):
                counts[_bin_of(np.float64(v), low, scale, _BINS)] += 1
        starts = np.zeros(_BINS + 1, np.int64)
        for b in range(_BINS):
            starts[b + 1] = starts[b] + counts[b]
        n = starts[_BINS]
        if n == 0:
            out[:] = np.nan
            return 0
        ranks = _quantile_ranks(n, quantiles)
        bin_of_rank = np.searchsorted(starts, ranks, side="right") - 1
        slot = np.full(_BINS, -1, np.int64)
        offsets = np.zeros(ranks.size + 1, np.int64)
        nslots = 0
        for b in bin_of_rank:
            if slot[b] < 0:
                slot[b] = nslots
                offsets[nslots + 1] = offsets[nslots] + counts[b]
                nslots += 1
        gathered = np.empty(offsets[nslots], x.dtype)
        filled = offsets[:nslots].copy()
        for i in range(x.size):
            v = x[i]
            if good[i] and math.isfinite(v):
                s = slot[_bin_of(np.float64(v), low, scale, _BINS)]
                if s >= 0:
                    gathered[filled[s]] = v
                    filled[s] += 1
        picked = np.empty(ranks.size, np.float64)
        for k in range(ranks.size):
            b = bin_of_rank[k]
            s = slot[b]
            picked[k] = _select_in(gathered[offsets[s] : offsets[s + 1]], ranks[k] - starts[b])
        for k in range(quantiles.size):
            out[k] = _quantile(picked[2 * k : 2 * k + 2], n, quantiles[k])
        return n

    @_jit_reassociating
    def _clip_pass(x, good, centre, half):
        """Count, sum and sum of squares of the float32/64 offsets kept by one pass."""
        count = 0
        total = 0.0
        squares = 0.0
        for i in range(x.size):
            offset = x[i] - centre
            if good[i] and abs(offset) <= half:
                count += 1
                total += np.float64(offset)
                squares += np.float64(offset * offset)
        return count, total, squares

    @_jit_reassociating
    def _rows_rhl(i1, i2, scale, good, out):
        for row in range(i1.shape[0]):
            count = 0
            total = 0.0
            s = scale[row]
            s2 = s * s
            for i in range(i1.shape[1]):
                a = i1[row, i]
                b = i2[row, i] * s
                both = a + i2[row, i] * s2
                if good[row, i] and both > 0:
                    count += 1
                    total += np.float64((a - b) * (a - b) / both)
            out[row] = total / count if count > 0 else np.nan

    @_jit
    def _smallest_in_place(a, k):
        """Move the ``k``-th smallest value of ``a`` to ``a[k]``, smaller ones before it."""
        left = 0
        right = a.size - 1
        while left < right:
            pivot = a[k]
            i = left
            j = right
            while True:
                while a[i] < pivot:
                    i += 1
                while pivot < a[j]:
                    j -= 1
                if i <= j:
                    a[i], a[j] = a[j], a[i]
                    i += 1
                    j -= 1
                if i > j:
                    break
            if j < k:
                left = i
            if k < i:
                right = j
        return a[k]

    @_jit
    def _median_by_selection(buffer, half):
        for v in buffer:
            if math.isnan(v):
                return buffer.dtype.type(np.nan)
        n = buffer.size
        upper = _smallest_in_place(buffer, n // 2)
        if n % 2:
            return upper
        lower = buffer[0]
        for i in range(1, n // 2):
            lower = max(lower, buffer[i])
        return (lower + upper) * half

    @_jit_reassociating
    def _rows_median(x, out):
        """Median of each row; whole-number rows of small span by counting."""
        n = x.shape[1]
        buffer = np.empty(n, x.dtype)
        counts = np.zeros(_COUNTING_SPAN, np.int64)
        half = x.dtype.type(0.5)
        upper_rank = n // 2
        lower_rank = (n - 1) // 2
        for row in range(x.shape[0]):
            low = x[row, 0]
            high = low
            fraction = x.dtype.type(0.0)  # NaN for NaN or infinite values
            for i in range(n):
                v = x[row, i]
                buffer[i] = v
                low = min(low, v)
                high = max(high, v)
                fraction += v - np.floor(v)
            if not (fraction == 0 and high - low < _COUNTING_SPAN):
                out[row] = _median_by_selection(buffer, half)
                continue
            span = int(high - low) + 1
            for v in buffer:
                counts[int(v - low)] += 1
            seen = 0
            lower = upper = low
            for offset in range(span):
                if seen <= lower_rank < seen + counts[offset]:
                    lower = low + offset
                if seen <= upper_rank < seen + counts[offset]:
                    upper = low + offset
                seen += counts[offset]
                counts[offset] = 0
            out[row] = upper if n % 2 else (lower + upper) * half

    @_jit
    def _ks_cell(value, low, step, cells):
        """The cell of ``value``: 0 below ``low``, then 1 .. ``cells``, then ``cells + 1``.

        Cell ``k`` holds ``[low + (k - 1) step, low + k step)``, decided by comparing with
        those edges as computed (the division only guesses).
        """
        k = math.floor((value - low) / step)
        k = min(max(k, -1), cells)
        while k >= 0 and value < low + k * step:
            k -= 1
        while k < cells and value >= low + (k + 1) * step:
            k += 1
        return k + 1

    @_jit
    def _row_ks(values, centre, width, counts, low, step):
        """One row's exact KS statistic from its values' counts in cells (unsorted).

        ``counts`` has the tail below ``low`` first, then the cells of width ``step``,
        then the tail above; see :func:`ks_statistic`.
        """
        cells = counts.shape[0] - 2
        scale = width * math.sqrt(2.0)
        below = np.zeros(cells + 3, np.int64)
        for k in range(cells + 2):
            below[k + 1] = below[k] + counts[k]
        n = below[cells + 2]
        if n == 0:
            return 0.0
        edge_cdf = np.empty(cells + 1)
        bound = 0.0
        for j in range(cells + 1):
            edge_cdf[j] = 0.5 * math.erfc(-(low + j * step - centre) / scale)
            bound = max(bound, abs(below[j + 1] / n - edge_cdf[j]))
        start = np.full(cells + 2, -1, np.int64)
        taken = 0
        for k in range(cells + 2):
            if counts[k] > 0:
                f_low = 0.0 if k == 0 else edge_cdf[k - 1]
                f_high = 1.0 if k == cells + 1 else edge_cdf[k]
                if max(below[k + 1] / n - f_low, f_high - below[k] / n) > bound:
                    start[k] = taken
                    taken += counts[k]
        gathered = np.empty(taken)
        filled = np.zeros(cells + 2, np.int64)
        for i in range(values.shape[0]):
            v = np.float64(values[i])
            if math.isfinite(v):
                k = _ks_cell(v, low, step, cells)
                if start[k] >= 0:
                    gathered[start[k] + filled[k]] = v
                    filled[k] += 1
        statistic = bound
        for k in range(cells + 2):
            if start[k] >= 0:
                segment = np.sort(gathered[start[k] : start[k] + counts[k]])
                for j in range(segment.shape[0]):
                    i = below[k] + j
                    cdf = 0.5 * math.erfc(-(segment[j] - centre) / scale)
                    statistic = max(statistic, (i + 1) / n - cdf, cdf - i / n)
        return statistic

    @_jit
    def _count_cells(values, low, step, counts):
        cells = counts.shape[0] - 2
        for i in range(values.shape[0]):
            v = np.float64(values[i])
            if math.isfinite(v):
                counts[_ks_cell(v, low, step, cells)] += 1

    @_jit
    def _rows_ks(rows, centre, width, counts, low, step, out):
        for row in range(rows.shape[0]):
            out[row] = _row_ks(rows[row], centre[row], width[row], counts[row], low[row], step[row])

    @_jit
    def _rows_histogram(rows, edges, out, cells, fine_low, fine_step):
        bins = edges.shape[1] - 1
        count_cells = cells.shape[1] > 0
        for row in range(rows.shape[0]):
            low = edges[row, 0]
            step = (edges[row, bins] - low) / bins
            for i in range(rows.shape[1]):
                v = np.float64(rows[row, i])
                if count_cells and math.isfinite(v):
                    cells[row, _ks_cell(v, fine_low[row], fine_step[row], cells.shape[1] - 2)] += 1
                if not (low <= v <= edges[row, bins]):
                    continue
                k = min(max(math.floor((v - low) / step), 0), bins - 1)
                while k > 0 and v < edges[row, k]:
                    k -= 1
                while k < bins - 1 and v >= edges[row, k + 1]:
                    k += 1
                out[row, k] += 1

    @_jit_reassociating
    def _rows_masked_mean(x, good, out):
        for row in range(x.shape[0]):
            count = 0
            total = 0.0
            for i in range(x.shape[1]):
                if good[row, i]:
                    count += 1
                    total += np.float64(x[row, i])
            out[row] = total / count if count > 0 else np.nan

    @_jit_reassociating
    def _rows_masked_var0(x, good, mean, out):
        for row in range(x.shape[0]):
            centre = x.dtype.type(mean[row])
            count = 0
            total = 0.0
            for i in range(x.shape[1]):
                if good[row, i]:
                    offset = x[row, i] - centre
                    count += 1
                    total += np.float64(offset * offset)
            out[row] = total / count if count > 0 else np.nan

    @_jit
    def _rows_difference(f1, f2, scale1, scale2, norm, out):
        for row in range(f1.shape[0]):
            a = scale2[row]
            b = scale1[row]
            c = norm[row]
            for i in range(f1.shape[1]):
                out[row, i] = (a * f1[row, i] - b * f2[row, i]) / c

    @_jit
    def _correct_imaging(pixels, model, bias, levels, y0, x0, bound, images, good):
        """One pass: subtract row model, bias and column levels; finite and unsaturated."""
        namps = bias.shape[0]
        nx = images.shape[2]
        for p in range(images.shape[0]):
            for y in range(images.shape[1]):
                level = model[p, y + y0 if model.shape[1] > 1 else 0]
                raw = pixels[p, y + y0, x0 : x0 + nx]
                out = images[p, y]
                for x in range(nx):  # simple loops, each vectorised
                    out[x] = raw[x] - level
                if namps:
                    offsets = bias[p % namps, y + y0, x0 : x0 + nx]
                    for x in range(nx):
                        out[x] -= offsets[x]
                if levels.shape[0]:
                    columns = levels[p]
                    for x in range(nx):
                        out[x] -= columns[x]
                mask = good[p, y]
                for x in range(nx):
                    mask[x] = math.isfinite(out[x]) and raw[x] < bound

    @_jit
    def _lag_of(index, size):
        """Lag at position ``index`` of ``0..size-1, -1..-(size-1)``."""
        return index if index < size else size - 1 - index

    @_jit_reassociating
    def _edge_tables(values, good, width):
        """Prefix sums over rows, of ``values`` and of masked pixels (``~good``).

        For each: ``rows[y]`` sums whole rows ``< y``; ``left[y, c]`` column ``c`` over
        rows ``< y``; ``right[y, c]`` column ``nx - 1 - c`` likewise.
        """
        ny, nx = values.shape
        tables = np.zeros((2, 3, ny + 1, max(width, 1)), np.float64)
        rows = np.zeros((2, ny + 1), np.float64)
        for y in range(ny):
            total = 0.0
            masked = 0
            for x in range(nx):
                total += values[y, x]
                masked += 0 if good[y, x] else 1
            rows[0, y + 1] = rows[0, y] + total
            rows[1, y + 1] = rows[1, y] + masked
            for c in range(width):
                tables[0, 0, y + 1, c] = tables[0, 0, y, c] + values[y, c]
                tables[0, 1, y + 1, c] = tables[0, 1, y, c] + values[y, nx - 1 - c]
                tables[1, 0, y + 1, c] = tables[1, 0, y, c] + (0.0 if good[y, c] else 1.0)
                tables[1, 1, y + 1, c] = tables[1, 1, y, c] + (0.0 if good[y, nx - 1 - c] else 1.0)
        return rows, tables

    @_jit
    def _window_sum(rows, left, right, nx, y0, y1, x0, x1):
        """Sum over ``[y0, y1) x [x0, x1)`` from the edge tables (``x0``, ``nx - x1`` small)."""
        inside = rows[y1] - rows[y0]
        for c in range(x0):
            inside -= left[y1, c] - left[y0, c]
        for c in range(nx - x1):
            inside -= right[y1, c] - right[y0, c]
        return inside

    @_jit
    def _masked_lag_sums(values, good, size, out_mean, out_count):
        ny, nx = values.shape
        width = min(size - 1, nx)
        rows, tables = _edge_tables(values, good, width)
        nmasked = int(rows[1, ny])
        ys = np.empty(nmasked, np.int64)
        xs = np.empty(nmasked, np.int64)
        k = 0
        for y in range(ny):
            if rows[1, y + 1] == rows[1, y]:
                continue
            for x in range(nx):
                if not good[y, x]:
                    ys[k] = y
                    xs[k] = x
                    k += 1
        v_left, v_right = tables[0, 0], tables[0, 1]
        m_left, m_right = tables[1, 0], tables[1, 1]
        positions = 2 * size - 1
        # masked pixel by masked pixel (its neighbourhood stays in cache), every lag
        for m in range(nmasked):
            y = ys[m]
            x = xs[m]
            for i in range(positions):
                dy = _lag_of(i, size)
                if not 0 <= y + dy < ny:
                    continue
                for j in range(positions):
                    dx = _lag_of(j, size)
                    if 0 <= x + dx < nx:
                        out_mean[i, j] -= values[y + dy, x + dx]
                        if not good[y + dy, x + dx]:
                            out_count[i, j] += 1.0
        for i in range(positions):
            dy = _lag_of(i, size)
            oy0, oy1 = max(0, -dy), ny - max(0, dy)
            for j in range(positions):
                dx = _lag_of(j, size)
                ox0, ox1 = max(0, -dx), nx - max(0, dx)
                if oy1 <= oy0 or ox1 <= ox0:
                    out_mean[i, j] = 0.0
                    out_count[i, j] = 0.0
                    continue
                py0, py1, px0, px1 = oy0 + dy, oy1 + dy, ox0 + dx, ox1 + dx
                out_mean[i, j] += _window_sum(rows[0], v_left, v_right, nx, py0, py1, px0, px1)
                first_masked = _window_sum(rows[1], m_left, m_right, nx, oy0, oy1, ox0, ox1)
                partner_masked = _window_sum(rows[1], m_left, m_right, nx, py0, py1, px0, px1)
                area = (oy1 - oy0) * (ox1 - ox0)
                out_count[i, j] += area - first_masked - partner_masked

    @_jit_reassociating
    def _lag_products(values, size, out):
        """``out[i, j] = sum v(x) v(x + lag)``, row by row.

        Summed for the lags with ``dy >= 0``; those with ``dy < 0`` are their mirror
        images (the sum is symmetric).
        """
        ny, nx = values.shape
        for y in range(ny):
            for dy in range(min(size, ny - y)):
                for j in range(2 * size - 1):
                    dx = _lag_of(j, size)
                    x0, x1 = max(0, -dx), nx - max(0, dx)
                    total = 0.0
                    for x in range(x0, x1):
                        total += values[y, x] * values[y + dy, x + dx]
                    out[dy, j] += total
        for i in range(size, 2 * size - 1):
            for j in range(2 * size - 1):
                out[i, j] = out[_mirrored(i, size), _mirrored(j, size)]

    @_jit
    def _mirrored(index, size):
        """Position of the opposite lag: ``-lag`` for the lag at ``index``."""
        if index == 0:
            return 0
        return index + size - 1 if index < size else index - size + 1

    @_jit
    def _quantile(values, n, q):
        """NumPy's linear quantile from the order statistics at floor and floor + 1."""
        position = max(q * (np.float64(n) - 1.0), 0.0)
        return values[0] + (position - math.floor(position)) * (values[1] - values[0])

    @_jit
    def _quantile_ranks(n, quantiles):
        ranks = np.empty(2 * quantiles.size, np.int64)
        for k in range(quantiles.size):
            position = max(quantiles[k] * (np.float64(n) - 1.0), 0.0)
            lower = math.floor(position)
            ranks[2 * k] = lower
            ranks[2 * k + 1] = min(lower + 1, max(n - 1, 0))
        return ranks

    @_jit
    def _rows_quantiles(x, good, quantiles, out):
        for row in range(x.shape[0]):
            _row_quantiles(x[row], good[row], quantiles, out[row])

    @_jit
    def _rows_clipped(x, good, nsigma, niter, iqr_to_sigma, mean, var, kept):
        quartiles = np.array([0.25, 0.5, 0.75])
        q = np.empty(3, np.float64)
        for row in range(x.shape[0]):
            values = x[row]
            usable = good[row]
            if _row_quantiles(values, usable, quartiles, q) == 0:
                mean[row] = np.nan
                var[row] = np.nan
                kept[row] = 0
                continue
            q25, q50, q75 = q[0], q[1], q[2]
            centre = q50
            half = nsigma * iqr_to_sigma * (q75 - q25)
            m = np.nan
            v = np.nan
            count = 0
            for _ in range(niter):
                centre_x = values.dtype.type(centre)
                count, total, squares = _clip_pass(
                    values, usable, centre_x, values.dtype.type(half)
                )
                safe = np.float64(count) if count > 1 else 2.0
                m = total / (np.float64(count) if count > 0 else 1.0)
                v = (squares - total * total / safe) / (safe - 1.0)
                m = m + np.float64(centre_x) if count > 0 else np.nan
                if count <= 1:
                    v = np.nan
                centre = m
                half = nsigma * math.sqrt(v)
            mean[row] = m
            var[row] = v
            kept[row] = count


def _rows(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.reshape(-1, x.shape[-1]))


def masked_quantiles(
    x: np.ndarray, good: np.ndarray, quantiles: tuple[float, ...]
) -> list[np.ndarray]:
    """Quantiles of the good finite values of each row (NumPy's linear interpolation).

    Parameters
    ----------
    x : numpy.ndarray
        ``(..., n)`` float32 or float64 values.
    good : numpy.ndarray of bool
        ``(..., n)`` which values count.
    quantiles : tuple of float
        Quantiles in [0, 1].

    Returns
    -------
    list of numpy.ndarray
        One float64 ``(...)`` array per quantile; NaN for rows without good values.
    """
    rows, masks = _rows(x), _rows(good)
    out = np.empty((rows.shape[0], len(quantiles)), np.float64)
    _rows_quantiles(rows, masks, np.asarray(quantiles, np.float64), out)
    return [out[:, k].reshape(x.shape[:-1]) for k in range(len(quantiles))]


def clipped_moments(
    x: np.ndarray, good: np.ndarray, *, nsigma: float, niter: int, iqr_to_sigma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """afw-style clipped mean, variance and kept count of each row, fused.

    Same definition and arithmetic as the reference
    :meth:`gpuptc.kernels.ArrayApiKernels.clipped_stats`: median and IQR first pass, then
    mean and standard deviation passes, inclusive tests, float32 offsets for float32 input,
    float64 sums.

    Returns
    -------
    mean, variance : numpy.ndarray
        ``(...)`` float64; NaN where fewer than two values survive.
    count : numpy.ndarray
        ``(...)`` int64 values kept by the last pass.
    """
    rows, masks = _rows(x), _rows(good)
    mean = np.empty(rows.shape[0], np.float64)
    var = np.empty(rows.shape[0], np.float64)
    kept = np.empty(rows.shape[0], np.int64)
    _rows_clipped(rows, masks, float(nsigma), int(niter), float(iqr_to_sigma), mean, var, kept)
    lead = x.shape[:-1]
    return mean.reshape(lead), var.reshape(lead), kept.reshape(lead)


def squared_difference_ratio(
    i1: np.ndarray, i2: np.ndarray, good: np.ndarray, scale: np.ndarray | None = None
) -> np.ndarray:
    """Mean of ``(I1 - s I2)**2 / (I1 + s**2 I2)`` over good pixels with a positive divisor.

    Per row, with ``s`` the row's ``scale`` (1 by default), rounded to the images' dtype;
    per-pixel arithmetic in that dtype, float64 sums; NaN for rows without such pixels
    (the per-pixel gains of :func:`gpuptc.measuring.stats.pair_statistics`).
    """
    out = np.empty(math.prod(i1.shape[:-1]), np.float64)
    rows = _rows(i1)
    factors = np.ones(rows.shape[0], i1.dtype) if scale is None else scale
    _rows_rhl(
        rows, _rows(i2), np.ascontiguousarray(factors, i1.dtype).reshape(-1), _rows(good), out
    )
    return out.reshape(i1.shape[:-1])


def median_last_axis(x: np.ndarray) -> np.ndarray:
    """``np.median(x, axis=-1)``, the same numbers (NaN when a row holds one).

    Rows of whole numbers spanning under 1024 values (raw ADU) are counted; others are
    selected in place. ``x`` may be any strided view; rows are copied one at a time
    into a small buffer.
    """
    rows = x.reshape(-1, x.shape[-1])
    out = np.empty(rows.shape[0], x.dtype)
    if x.shape[-1] == 0:
        out[:] = np.nan
    else:
        _rows_median(rows, out)
    return out.reshape(x.shape[:-1])


def masked_lag_sums(
    values: np.ndarray, good: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Lag sums of one masked image without transforms, for images with few masked pixels.

    For lags ``(dy, dx)`` in ``0..size-1, -1..-(size-1)`` (rows dy, columns dx):
    ``mean[dy, dx] = sum_x good(x) values(x + lag)`` and
    ``count[dy, dx] = sum_x good(x) good(x + lag)``, over pixels ``x`` whose partner is
    inside the image. ``values`` must be zero where ``good`` is False. Work is one pass
    over the image plus (masked pixels x lags), so it pays while masked pixels are few.

    Returns
    -------
    mean, count : numpy.ndarray
        ``(2 size - 1, 2 size - 1)`` float64.
    """
    positions = 2 * size - 1
    mean = np.zeros((positions, positions), np.float64)
    count = np.zeros((positions, positions), np.float64)
    _masked_lag_sums(
        np.ascontiguousarray(values, np.float64), np.ascontiguousarray(good), size, mean, count
    )
    return mean, count


def lag_products(values: np.ndarray, size: int) -> np.ndarray:
    """``sum v(x) v(x + lag)`` of one image by direct sums, for small ``size``.

    For lags ``(dy, dx)`` in ``0..size-1, -1..-(size-1)`` (rows dy, columns dx), over
    pixels ``x`` whose partner is inside the image: the products term of
    :func:`gpuptc.kernels.fft.lag_sums` without transforms. Work is one pass over the
    image per lag, so it pays over a transform while lags are few.

    Returns
    -------
    numpy.ndarray
        ``(2 size - 1, 2 size - 1)`` float64.
    """
    positions = 2 * size - 1
    out = np.zeros((positions, positions), np.float64)
    _lag_products(np.ascontiguousarray(values, np.float64), size, out)
    return out


def flux_matched_difference(
    f1: np.ndarray, f2: np.ndarray, mean1: np.ndarray, mean2: np.ndarray, mean: np.ndarray
) -> np.ndarray:
    """``(mean2 I1 - mean1 I2) / mean`` per row in one pass, in the images' dtype.

    The means (``(...)`` float64) are first rounded to that dtype, as the generic form
    does, so both give the same numbers.
    """
    dtype = f1.dtype
    out = np.empty(f1.shape, dtype)
    _rows_difference(
        _rows(f1),
        _rows(f2),
        np.ascontiguousarray(mean1, dtype).reshape(-1),
        np.ascontiguousarray(mean2, dtype).reshape(-1),
        np.ascontiguousarray(mean, dtype).reshape(-1),
        out.reshape(-1, f1.shape[-1]),
    )
    return out


def correct_imaging(
    pixels: np.ndarray,
    model: np.ndarray,
    bias: np.ndarray | None,
    levels: np.ndarray | None,
    rows: slice,
    cols: slice,
    bound: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Trimmed, corrected imaging pixels and their finite-and-unsaturated mask, one pass.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(..., amps, naxis2, naxis1)`` raw pixels.
    model : numpy.ndarray
        Serial-overscan model, ``(..., amps, naxis2 or 1, 1)``.
    bias : numpy.ndarray or None
        ``(amps, naxis2, naxis1)`` master bias in the pixels' dtype.
    levels : numpy.ndarray or None
        Parallel-overscan levels, ``(..., amps, 1, nx)``.
    rows, cols : slice
        The imaging section.
    bound : float
        Pixels must be below this raw value (``inf`` for none), in the pixels' dtype.

    Returns
    -------
    images : numpy.ndarray
        ``(..., amps, ny, nx)``: ``pixels - model - bias - levels``, in this order, in
        the pixels' dtype (the generic code's arithmetic).
    good : numpy.ndarray of bool
        Finite and below ``bound``.
    """
    lead = pixels.shape[:-2]
    ny, nx = rows.stop - rows.start, cols.stop - cols.start
    flat = pixels.reshape(-1, *pixels.shape[-2:])
    count = flat.shape[0]
    images = np.empty((count, ny, nx), pixels.dtype)
    good = np.empty((count, ny, nx), np.bool_)
    empty = np.zeros((0, 1, 1), pixels.dtype)
    _correct_imaging(
        flat,
        np.ascontiguousarray(np.broadcast_to(model, (*lead, *model.shape[-2:]))).reshape(count, -1),
        empty if bias is None else np.ascontiguousarray(bias, pixels.dtype),
        empty[:, 0]
        if levels is None
        else np.ascontiguousarray(np.broadcast_to(levels, (*lead, 1, nx))).reshape(count, nx),
        rows.start,
        cols.start,
        pixels.dtype.type(bound),
        images,
        good,
    )
    return images.reshape(*lead, ny, nx), good.reshape(*lead, ny, nx)


KS_CELLS = 65536
"""Cells of the KS statistic's counting pass over the histogram's range (about +- 5 to
7 widths of the difference's distribution), and the two tails: fine enough that few cells
can hold the maximum (each cell's normal probability is at most about 7e-5)."""


@dataclass(frozen=True)
class KsCells:
    """Each row's values counted in :data:`KS_CELLS` cells (and two tails), for the statistic.

    Attributes
    ----------
    counts : numpy.ndarray
        ``(r, KS_CELLS + 2)``: below ``low``, the cells, at or above the top.
    low, step : numpy.ndarray
        ``(r,)`` where the cells start and their width.
    """

    counts: np.ndarray
    low: np.ndarray
    step: np.ndarray


def ks_histogram(rows: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, KsCells]:
    """Each row's count of values in each bin between its ascending ``edges`` (last closed).

    One pass per row: a value's bin is guessed by division and settled by comparing with
    the edges as given, so a value on an edge falls where a comparison puts it. The same
    pass counts the row's finite values in :data:`KS_CELLS` cells over the edges' range,
    which :func:`ks_statistic` starts from.
    """
    rows = np.ascontiguousarray(rows)
    edges = np.ascontiguousarray(edges, np.float64)
    out = np.zeros((rows.shape[0], edges.shape[1] - 1), np.int64)
    low = edges[:, 0].copy()
    step = (edges[:, -1] - low) / KS_CELLS
    cells = KsCells(np.zeros((rows.shape[0], KS_CELLS + 2), np.int64), low, step)
    _rows_histogram(rows, edges, out, cells.counts, low, step)
    return out, cells


def ks_statistic(
    rows: np.ndarray,
    count: np.ndarray,
    centre: np.ndarray,
    width: np.ndarray,
    cells: KsCells | None = None,
) -> np.ndarray:
    """The two-sided KS statistic of each row's sample against its normal, without a sort.

    The sample is each row's finite values (``count`` of them), in any order, counted in
    fine cells (``cells``, from :func:`ks_histogram`'s pass; counted here over the
    normal's +- 8 widths when not given). The statistic at the cells' edges is a bound
    below it, and each cell's counts and distribution function bound what it can reach
    inside; only the values of the cells that can exceed the bound are gathered and
    sorted, and the statistic over them, with their ranks from the counts below, is the
    exact one: the same ranks and the same ``max(i/n - F(x_i), F(x_i) - (i-1)/n)`` as
    over the whole row sorted, in float64 with an exact erfc, for a few per cent of the
    values.
    """
    rows = np.ascontiguousarray(rows)
    centre = np.ascontiguousarray(centre, np.float64)
    width = np.ascontiguousarray(width, np.float64)
    if cells is None:
        low = centre - 8.0 * width
        cells = KsCells(
            np.zeros((rows.shape[0], KS_CELLS + 2), np.int64), low, 16.0 * width / KS_CELLS
        )
        for row in range(rows.shape[0]):
            _count_cells(rows[row], cells.low[row], cells.step[row], cells.counts[row])
    out = np.empty(rows.shape[0], np.float64)
    _rows_ks(rows, centre, width, cells.counts, cells.low, cells.step, out)
    return out


def masked_mean(x: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Mean of the good values of each row (float64 sums); NaN for rows without any."""
    out = np.empty(math.prod(x.shape[:-1]), np.float64)
    _rows_masked_mean(_rows(x), _rows(good), out)
    return out.reshape(x.shape[:-1])


def masked_variance(x: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Population variance of the good values of each row, about their mean.

    Two passes, like the generic form: the mean (rounded to the dtype of ``x``), then
    the squared offsets in that dtype summed in float64.
    """
    mean = masked_mean(x, good)
    out = np.empty(mean.size, np.float64)
    _rows_masked_var0(_rows(x), _rows(good), mean.reshape(-1), out)
    return out.reshape(x.shape[:-1])

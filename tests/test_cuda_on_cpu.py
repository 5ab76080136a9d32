"""Every CUDA kernel of gpuptc executed from its own source on the CPU (``tests/cuda_cpu``).

Each kernel runs its hard cases under several schedules (seeds of the order in which the
blocks and the threads of a block resume after a barrier or an atomic), with one block and
with several, and must give the same bits under every schedule and equal its NumPy
reference (``REFERENCES`` beside the source):

- ``select_*``, ``row_median_*`` and ``rice_decode_f32`` exactly (equal values; ``-0.0``
  and ``0.0`` are equal, NaN where the reference has NaN);
- ``clip_pass_*``: the count exactly, the float64 sums within 1e-12 of the sum of their
  terms' magnitudes (the kernel adds in another order than NumPy).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import cupy_stand_in
import gpuptc
from cuda_cpu import BUILTINS, HEADER, LAUNCHED, CpuKernel, builtins_used, kernels_in
from gpuptc.kernels import ArrayApiKernels, cuda
from gpuptc.raws import rice_gpu
from rice_writer import rice_encode

SOURCES = {name: source for source in (cuda.SOURCE, rice_gpu.SOURCE) for name in kernels_in(source)}
"""Each kernel's CUDA source, by kernel name."""
REFERENCES = {**cuda.REFERENCES, **rice_gpu.REFERENCES}
SEEDS = (0, 1, 5, 12)
"""Schedules: each a seed of the order of blocks and of threads after every yield."""


def _kernels_in_src() -> set[str]:
    found = set()
    for path in Path(gpuptc.__file__).parent.rglob("*.py"):
        found |= set(re.findall(r"__global__\s+void\s+(\w+)", path.read_text()))
    return found


@dataclass(frozen=True)
class Case:
    """One launch: its grid and block, and a function making fresh arguments."""

    what: str
    grid: tuple[int, ...]
    block: tuple[int, ...]
    arguments: Callable[[], tuple]
    outputs: tuple[int, ...]


# -- rows: select, clip_pass, row_median ----------------------------------------------


def _hard_rows(n: int, dtype: type, rng: np.random.Generator) -> np.ndarray:
    """Rows with NaN, +-0, infinities, the largest finite values, ties, negatives, all
    equal, none finite."""
    rows = rng.normal(0.0, 50.0, (9, n))
    rows[1] = np.round(rows[1] / 20.0) * 20.0  # ties
    rows[2] = -3.5  # all equal
    rows[3, ::3] = np.nan
    extremes = [np.finfo(dtype).min, np.finfo(dtype).max]  # keys of the extreme bytes
    specials = [0.0, -0.0, np.inf, -np.inf, -0.0, 0.0, -1e-30, 1e-30, *extremes][:n]
    rows[4, : len(specials)] = specials
    rows[5] = np.nan  # no finite value
    rows[6] = np.where(rng.random(n) < 0.5, np.inf, -np.inf)  # none finite either
    rows[7] = -np.abs(rows[7]) - 1e6  # negatives only, large
    rows[8, rng.random(n) < 0.05] = 1e30  # outliers
    return rows.astype(dtype)


LENGTHS = (1, 3, 200, 257, 1000)
"""Row lengths: shorter than a warp, not a multiple of the block, longer than the block."""


def _select_cases(dtype: type, suffix: str) -> list[Case]:
    cases = []
    for n in LENGTHS:
        rows = _hard_rows(n, dtype, np.random.default_rng(n))
        wanted = (
            [0, n // 4, n // 2, n - 1, n, n + 5, -1, (3 * n) // 4] if n > 3 else [0, n - 1, n, -1]
        )
        count = len(wanted)  # ranks past the finite values and negative ones give NaN
        ranks = np.tile(np.array(wanted), (len(rows), 1)).astype(np.int64)
        for grid in (1, len(rows)):  # one block, and one per row

            def arguments(rows=rows[:grid], ranks=ranks[:grid], count=count):
                out = np.full((len(rows), count), 12345.0, dtype)
                return rows.copy(), np.int64(rows.shape[1]), ranks.copy(), np.int32(count), out

            cases.append(
                Case(f"select_{suffix} n={n} rows={grid}", (grid,), (256,), arguments, (4,))
            )
    return cases


def _clip_cases(dtype: type, suffix: str) -> list[Case]:
    cases = []
    for n in LENGTHS:
        rng = np.random.default_rng(100 + n)
        rows = _hard_rows(n, dtype, rng)
        good = rng.random(rows.shape) > 0.1
        good[2] = False  # nothing to use
        finite = [row[np.isfinite(row)] for row in rows]
        centre = np.array([np.median(f) if f.size else 0.0 for f in finite], dtype)
        half = np.full(len(rows), 60.0, dtype)
        rows[0, 0] = centre[0] + half[0]  # exactly at the edge: kept
        for grid, threads in ((1, 256), (len(rows), 256), (len(rows), 64)):

            def arguments(rows=rows[:grid], good=good[:grid], c=centre[:grid], h=half[:grid]):
                outputs = (np.full(len(rows), -1, np.int64), *np.full((2, len(rows)), np.nan))
                return (
                    rows.copy(),
                    good.copy(),
                    c.copy(),
                    h.copy(),
                    np.int64(rows.shape[1]),
                    *outputs,
                )

            what = f"clip_pass_{suffix} n={n} rows={grid} threads={threads}"
            cases.append(Case(what, (grid,), (threads,), arguments, (5, 6, 7)))
    return cases


def _median_cases(dtype: type, suffix: str) -> list[Case]:
    cases = []
    for n in (*LENGTHS, 1024):
        rows = _hard_rows(n, dtype, np.random.default_rng(200 + n))
        rows = rows[[0, 1, 2, 3, 4, 7, 8]]  # NaN propagates: one row with NaN is enough
        wrapper = min(256, 1 << max(1, (n - 1).bit_length()))  # as FusedCupyKernels launches
        for grid, threads in ((1, wrapper), (len(rows), wrapper), (len(rows), 32)):

            def arguments(rows=rows[:grid]):
                out = np.full(len(rows), 12345.0, dtype)
                return rows.copy(), np.int64(rows.shape[1]), out

            what = f"row_median_{suffix} n={n} rows={grid} threads={threads}"
            cases.append(Case(what, (grid,), (threads,), arguments, (2,)))
    return cases


# -- RICE tiles --------------------------------------------------------------------------


def _rice_arguments(
    tiles: list[tuple[bytes, int, int, int, int]], shape: tuple[int, int], code: int, zero: float
) -> Callable[[], tuple]:
    """Kernel arguments for ``tiles`` (bytes, row0, col0, rows, cols) of one image."""
    data = np.frombuffer(b"".join(t[0] for t in tiles), np.uint8)
    sizes = np.array([len(t[0]) for t in tiles], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    ny, nx = shape

    def arguments() -> tuple:
        ints = {
            "out_starts": np.array([r0 * nx + c0 for _, r0, c0, _, _ in tiles], np.int64),
            "rows": np.array([t[3] for t in tiles], np.int32),
            "cols": np.array([t[4] for t in tiles], np.int32),
            "strides": np.full(len(tiles), nx, np.int32),
            "codes": np.full(len(tiles), code, np.int32),
        }
        return (
            data.copy(), starts, sizes.copy(), *ints.values(),
            np.ones(len(tiles)), np.full(len(tiles), zero),
            np.full(ny * nx, np.nan, np.float32), np.full(len(tiles), -1, np.int32),
            np.int32(len(tiles)),
        )  # fmt: skip

    return arguments


def _tiled(image: np.ndarray, tile: tuple[int, int], blocksize: int, bytepix: int, mode):
    ny, nx = image.shape
    tiles = []
    for r0 in range(0, ny, tile[0]):
        for c0 in range(0, nx, tile[1]):
            part = image[r0 : r0 + tile[0], c0 : c0 + tile[1]]
            encoded = rice_encode(part.ravel(), blocksize, bytepix, mode)
            tiles.append((encoded, r0, c0, *part.shape))
    return tiles


def _rice_images(rng: np.random.Generator) -> dict[int, np.ndarray]:
    """Per BYTEPIX: compressible, constant (zero-entropy blocks), random (raw blocks)."""
    images = {}
    for bytepix, (low, high) in {
        1: (0, 255),
        2: (-(2**15), 2**15 - 1),
        4: (-(2**31), 2**31 - 1),
    }.items():
        image = rng.integers(low, high, (9, 70), endpoint=True)  # raw-bits blocks
        image[2] = rng.poisson(30, 70) + max(low, -10)  # low-entropy blocks
        image[4] = 42  # zero-entropy blocks
        image[6, :35] = rng.poisson(3000, 35) if bytepix > 1 else 7
        images[bytepix] = image
    return images


def _rice_cases() -> list[Case]:
    cases = []
    for bytepix, image in _rice_images(np.random.default_rng(9)).items():
        for blocksize, mode, tile in (
            (32, None, (2, 16)),
            (16, None, (1, 70)),
            (32, "raw", (4, 70)),
        ):
            tiles = _tiled(image, tile, blocksize, bytepix, mode)  # last tiles short
            code = (blocksize << 8) | bytepix
            zero = 32768.0 if bytepix == 2 else 0.0
            arguments = _rice_arguments(tiles, image.shape, code, zero)
            for threads in (128, 4):  # one block, several
                what = f"rice bytepix={bytepix} blocksize={blocksize} {mode} {tile} x{threads}"
                grid = -(-len(tiles) // threads)
                cases.append(Case(what, (grid,), (threads,), arguments, (10, 11)))
    image = _rice_images(np.random.default_rng(10))[4]
    tiles = _tiled(image, (1, 70), 32, 4, None)
    tiles[3] = (tiles[3][0][:4] + b"\xff" * (len(tiles[3][0]) - 4), *tiles[3][1:])  # corrupt
    tiles[5] = (tiles[5][0][: len(tiles[5][0]) // 2], *tiles[5][1:])  # cut short
    tiles[6] = (tiles[6][0][:2], *tiles[6][1:])  # shorter than its first value
    arguments = _rice_arguments(tiles, image.shape, (32 << 8) | 4, 0.0)
    cases.append(Case("rice damaged tiles", (3,), (4,), arguments, (10, 11)))
    return cases


CASES: dict[str, list[Case]] = {
    "select_f32": _select_cases(np.float32, "f32"),
    "select_f64": _select_cases(np.float64, "f64"),
    "clip_pass_f32": _clip_cases(np.float32, "f32"),
    "clip_pass_f64": _clip_cases(np.float64, "f64"),
    "row_median_f32": _median_cases(np.float32, "f32"),
    "row_median_f64": _median_cases(np.float64, "f64"),
    "rice_decode_f32": _rice_cases(),
}
"""The hard cases of every kernel, by kernel name."""


def test_every_kernel_in_the_sources_has_hard_cases():
    """A new ``__global__`` function fails here until it has cases (and so is launched)."""
    assert _kernels_in_src() == set(CASES)
    assert set(kernels_in(cuda.SOURCE)) == set(cuda.KERNELS)
    assert set(kernels_in(rice_gpu.SOURCE)) == {rice_gpu.KERNEL}


def test_the_header_gives_every_builtin_the_sources_use():
    used = builtins_used(cuda.SOURCE) | builtins_used(rice_gpu.SOURCE)
    assert used - set(BUILTINS) == set(), "add them to tests/cuda_cpu/runtime.h and BUILTINS"
    header = HEADER.read_text()
    missing = [name for name in BUILTINS if not re.search(rf"\b{name}\b", header)]
    assert missing == []


def _bits(values: np.ndarray) -> np.ndarray:
    return values.view(f"u{values.dtype.itemsize}") if values.dtype.kind == "f" else values


def _outputs(name: str, case: Case, args: tuple) -> tuple:
    """The outputs a kernel defines: a failed RICE tile's pixels are not (an error is)."""
    got = tuple(args[i].copy() for i in case.outputs)
    if name == rice_gpu.KERNEL:
        out, status = got
        out_starts, rows, cols, strides = args[3:7]
        for t in np.flatnonzero(status):
            k = np.arange(int(rows[t]) * int(cols[t]))
            out[out_starts[t] + (k // cols[t]) * strides[t] + k % cols[t]] = -1.0
    return got


def _compare(name: str, args: tuple, got: tuple, expected: tuple, what: str) -> None:
    """Exactly, but the clip-pass sums: within 1e-12 of the sum of their terms' magnitudes."""
    if not name.startswith("clip_pass"):
        for value, reference in zip(got, expected, strict=True):
            np.testing.assert_array_equal(value, reference, err_msg=what)
        return
    rows, good, centre, half = args[:4]
    with np.errstate(all="ignore"):
        offsets = rows - centre[:, None]
        kept = good & np.isfinite(rows) & (np.abs(offsets) <= half[:, None])
        magnitude = np.where(kept, np.abs(offsets), 0).sum(axis=1, dtype=np.float64)
    np.testing.assert_array_equal(got[0], expected[0], err_msg=what)
    assert (np.abs(got[1] - expected[1]) <= 1e-12 * magnitude).all(), what
    assert (np.abs(got[2] - expected[2]) <= 1e-12 * expected[2]).all(), what


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_kernel_equals_its_reference_under_every_schedule(name):
    kernel, reference = CpuKernel(SOURCES[name], name), REFERENCES[name]
    before = LAUNCHED[name]
    for case in CASES[name]:
        expected_args = case.arguments()
        with np.errstate(all="ignore"):
            reference(*expected_args)
        expected = _outputs(name, case, expected_args)
        first = None
        for seed in SEEDS:
            args = case.arguments()
            kernel(case.grid, case.block, args, seed=seed)
            got = _outputs(name, case, args)
            what = f"{case.what}, schedule {seed}"
            _compare(name, args, got, expected, what)
            if first is None:
                first = got
            for a, b in zip(got, first, strict=True):  # the same bits under every schedule
                np.testing.assert_array_equal(_bits(a), _bits(b), err_msg=what)
    assert LAUNCHED[name] - before == len(CASES[name]) * len(SEEDS)


# -- the dispatch before the kernels ---------------------------------------------------------


@pytest.fixture
def fused(monkeypatch):
    cupy = cupy_stand_in.install(monkeypatch)
    from gpuptc.backend import get_backend

    backend = get_backend("cupy", fused=True)
    return cupy, backend


def test_more_than_eight_ranks_and_rows_over_1024_values_fall_back(fused):
    _, backend = fused
    rng = np.random.default_rng(6)
    values = rng.normal(0.0, 1.0, (3, 500))
    x = backend.asarray(values)
    nine = backend.asarray(np.tile(np.arange(0, 450, 50), (3, 1)))
    launched = LAUNCHED.copy()
    got = backend.kernels.order_statistics(x, None, nine)
    np.testing.assert_array_equal(got.get(), np.sort(values, axis=1)[:, ::50][:, :9])
    long = rng.normal(0.0, 1.0, (3, 1025))
    np.testing.assert_array_equal(
        backend.kernels.median(backend.asarray(long), axis=-1).get(), np.median(long, axis=-1)
    )
    assert LAUNCHED == launched  # neither reached a kernel
    eight = backend.asarray(np.tile(np.arange(0, 400, 50), (3, 1)))
    backend.kernels.order_statistics(x, None, eight)
    backend.kernels.median(backend.asarray(long[:, :1024]), axis=-1)
    assert LAUNCHED["select_f64"] == launched["select_f64"] + 1
    assert LAUNCHED["row_median_f64"] == launched["row_median_f64"] + 1
    assert isinstance(backend.kernels, ArrayApiKernels)


def test_without_a_compiler_the_tests_say_what_to_install(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(RuntimeError, match=r"install g\+\+ \(Debian and Ubuntu: apt-get"):
        CpuKernel(cuda.SOURCE + "\n// not compiled before", "select_f32")

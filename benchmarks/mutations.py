"""Mutation check: plant plausible bugs one at a time and see whether the suite catches them.

Each mutation replaces a piece of source text with a wrong one (a bug someone could really
write), in a copy of the repository; the suite then runs on that copy (the tests most
likely to notice first, then all of them, stopping at the first failure). A mutation the
suite does not catch is a hole in the tests. Not part of ``make test``: every mutation runs
the suite, so the whole check takes several minutes per surviving mutation.

    python benchmarks/mutations.py             # every mutation
    python benchmarks/mutations.py M05 M12     # some of them
    python benchmarks/mutations.py --list

When a bug is found that the suite missed, add it here as a mutation, then the test.
Results are recorded in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    """One planted bug: ``old`` becomes ``new`` in ``path`` (every occurrence if ``every``)."""

    key: str
    area: str
    what: str
    path: str
    old: str
    new: str
    first: tuple[str, ...]
    every: bool = False


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "M01",
        "ISR",
        "one leading overscan column fewer skipped",
        "src/gpuptc/measuring/isr.py",
        "first, last = lines.start + skip[0], lines.stop - skip[1]",
        "first, last = lines.start + skip[0] - 1, lines.stop - skip[1]",
        ("tests/test_isr.py",),
    ),
    Mutation(
        "M02",
        "ISR",
        "one trailing overscan column fewer skipped",
        "src/gpuptc/measuring/isr.py",
        "first, last = lines.start + skip[0], lines.stop - skip[1]",
        "first, last = lines.start + skip[0], lines.stop - skip[1] + 1",
        ("tests/test_isr.py",),
    ),
    Mutation(
        "M03",
        "ISR",
        "per-row serial overscan by mean instead of median",
        "src/gpuptc/measuring/isr.py",
        'return _statistic(region, -1, method.split("_")[0].lower(), kernels=kernels)',
        'return _statistic(region, -1, "mean", kernels=kernels)',
        ("tests/test_isr.py", "tests/test_measure.py"),
    ),
    Mutation(
        "M04",
        "ISR",
        "parallel overscan levels by mean instead of median",
        "src/gpuptc/measuring/isr.py",
        'how = "median" if method == "MEDIAN_PER_ROW" else "mean"',
        'how = "mean"',
        ("tests/test_isr.py", "tests/test_measure.py"),
    ),
    Mutation(
        "M05",
        "statistics",
        "cp_pipe's clip correction of the variance left out",
        "src/gpuptc/measuring/stats.py",
        "var = 0.5 * d_var * clip_correction(config.nsigma)",
        "var = 0.5 * d_var",
        ("tests/test_measure.py", "tests/test_cp_pipe_golden.py"),
    ),
    Mutation(
        "M06",
        "statistics",
        "factor 2 in the FULL read-noise correction of the per-pair gain",
        "src/gpuptc/measuring/stats.py",
        "corrected = (mean + xp.sqrt(disc)) / (2.0 * c * mean - 2.0 * sigma2)",
        "corrected = (mean + xp.sqrt(disc)) / (2.0 * c * mean - 4.0 * sigma2)",
        ("tests/test_measure.py",),
    ),
    Mutation(
        "M07",
        "statistics",
        "SIMPLE read-noise correction with the wrong sign",
        "src/gpuptc/measuring/stats.py",
        "corrected = 1.0 / (c - sigma2 / mean)",
        "corrected = 1.0 / (c + sigma2 / mean)",
        ("tests/test_measure.py",),
    ),
    Mutation(
        "M08",
        "statistics",
        "EOTEST variance over every pixel, not those the MAD cut keeps",
        "src/gpuptc/measuring/stats.py",
        "var = 0.5 * kernels.masked_variance(d, weights)",
        "var = 0.5 * kernels.masked_variance(d, pair.both)",
        ("tests/test_measure.py",),
    ),
    Mutation(
        "M09",
        "statistics",
        "seed preset's mean taken from the second flat",
        "src/gpuptc/measuring/stats.py",
        "return _Measured(mean1, mean2, mean1, var, npix, d, pair.both)",
        "return _Measured(mean1, mean2, mean2, var, npix, d, pair.both)",
        ("tests/test_measure.py",),
    ),
    Mutation(
        "M10",
        "covariances",
        "serial and parallel lags swapped in the covariance matrix",
        "src/gpuptc/measuring/stats.py",
        "return xp.matrix_transpose(cov), xp.matrix_transpose(npix)",
        "return cov, npix",
        ("tests/test_covariances.py", "tests/test_measure.py"),
    ),
    Mutation(
        "M11",
        "covariances",
        "per-image covariance not halved",
        "src/gpuptc/measuring/stats.py",
        "cov = 0.5 * cov\n",
        "cov = 1.0 * cov\n",
        ("tests/test_measure.py",),
    ),
    Mutation(
        "M12",
        "batching",
        "pairs after a rejected one not moved up in the batch buffer",
        "src/gpuptc/measuring/batches.py",
        "buffer[len(kept)] = buffer[slot]",
        "pass",
        ("tests/test_bad_input.py", "tests/test_measure.py"),
    ),
    Mutation(
        "M13",
        "fit: fullcov",
        "serial and parallel lags swapped before the full-covariance fit",
        "src/gpuptc/fitting/solve.py",
        'cov[k, rows["i"].to_numpy(), rows["j"].to_numpy()] = rows["cov"].to_numpy()',
        'cov[k, rows["j"].to_numpy(), rows["i"].to_numpy()] = rows["cov"].to_numpy()',
        ("tests/test_ptc.py",),
    ),
    Mutation(
        "M14",
        "fit: fullcov",
        "eq. 20's 2/3 coefficient changed in the model and its Jacobian alike",
        "src/gpuptc/fitting/fullcov.py",
        "(2.0 / 3.0)",
        "(3.0 / 4.0)",
        ("tests/test_ptc.py",),
        every=True,
    ),
    Mutation(
        "M15",
        "fit: expapprox",
        "the rolloff point kept instead of dropped",
        "src/gpuptc/fitting/ptc.py",
        "return candidates & (mean < rolloff), found",
        "return candidates & (mean <= rolloff), found",
        ("tests/test_ptc.py",),
    ),
    Mutation(
        "M16",
        "fit: expapprox",
        "EOTEST's re-selection at twice the sigma cut",
        "src/gpuptc/fitting/ptc.py",
        "selection = np.abs(all_residuals) < sigma_cut",
        "selection = np.abs(all_residuals) < 2 * sigma_cut",
        ("tests/test_ptc.py",),
    ),
    Mutation(
        "M17",
        "fit: notebook",
        "the quadratic fit's a00 multiplied by the gain",
        "src/gpuptc/fitting/ptc.py",
        "a00=float(c2),",
        "a00=float(c2 * gain),",
        ("tests/test_ptc.py",),
    ),
    Mutation(
        "M18",
        "fit: notebook",
        "the notebook fits' noise (line and quadratic) not converted to electrons",
        "src/gpuptc/fitting/ptc.py",
        "    noise = math.sqrt(c0) * gain\n",
        "    noise = math.sqrt(c0)\n",
        ("tests/test_ptc.py",),
    ),
    Mutation(
        "M19",
        "fit: notebook",
        "the power law's gain taken at the mean, not the median, of the used means",
        "src/gpuptc/fitting/ptc.py",
        "pivot = float(np.median(mean[mask]))",
        "pivot = float(np.mean(mean[mask]))",
        ("tests/test_ptc.py",),
    ),
    Mutation(
        "M20",
        "fit: rhl",
        "per-pair gains of unused pairs in the median",
        "src/gpuptc/fitting/solve.py",
        "return fit_rhl(data.gains, data.used if selected else None)",
        "return fit_rhl(data.gains, None)",
        ("tests/test_ptc.py",),
    ),
    Mutation(
        "M21",
        "presets",
        "cp_pipe_lsstcam masks 10 border pixels instead of 20",
        "src/gpuptc/config.py",
        'IsrConfig(edge_mask=20, edge_mask_level="AMP"),',
        'IsrConfig(edge_mask=10, edge_mask_level="AMP"),',
        ("tests/test_measure.py", "tests/test_ptc.py"),
    ),
    Mutation(
        "M22",
        "presets",
        "cp_pipe_lsstcam's initial jump limit doubled",
        "src/gpuptc/config.py",
        "max_delta_initial=1000.0,",
        "max_delta_initial=2000.0,",
        ("tests/test_ptc.py",),
    ),
    Mutation(
        "M23",
        "outputs",
        "file1 and file2 exchanged in the pairs table",
        "src/gpuptc/measuring/sensor.py",
        '"file1": pair.file1,\n            "file2": pair.file2,',
        '"file1": pair.file2,\n            "file2": pair.file1,',
        ("tests/test_run.py", "tests/test_measure.py"),
    ),
    Mutation(
        "M24",
        "outputs",
        "the comparison's ratio inverted",
        "src/gpuptc/products/compare.py",
        'frame["value"].astype(float) / frame["reference_value"].astype(float)',
        'frame["reference_value"].astype(float) / frame["value"].astype(float)',
        ("tests/test_compare.py",),
    ),
    Mutation(
        "M25",
        "outputs",
        "a failed PTC fit not listed in rejected.csv",
        "src/gpuptc/fitting/solve.py",
        'failed = ptc[(ptc["model"] == "expapprox") & ~ptc["status"].isin(FitStatus.FITTED)]',
        'failed = ptc[(ptc["model"] == "expapprox") & (ptc["status"] == "none")]',
        ("tests/test_bad_input.py",),
    ),
    Mutation(
        "M26",
        "fit: fullcov",
        "the cubic term's derivative taken as 3 K(a x a), as if truncated convolutions associated",
        "src/gpuptc/fitting/fullcov.py",
        "cubic = (1.0 / 3.0) * t.k_a2 + (2.0 / 3.0) * xp.matmul(t.k_a, t.k_a)",
        "cubic = t.k_a2",
        ("tests/test_fullcov.py",),
        every=True,
    ),
    Mutation(
        "M27",
        "fit: fullcov",
        "an amplifier's fit stopped as soon as the batch's first one converges",
        "src/gpuptc/fitting/fullcov.py",
        "leaving = _host(finished | stopped)",
        "leaving = _host(finished | stopped) | bool(_host(finished).any())",
        ("tests/test_fullcov.py",),
    ),
    Mutation(
        "M28",
        "input: repository",
        "a header whose exposure time disagrees with its record goes unnoticed",
        "src/gpuptc/inputs/butler.py",
        "> EXPTIME_TOLERANCE:",
        "> 1000 * EXPTIME_TOLERANCE:",
        ("tests/test_butler.py",),
    ),
    Mutation(
        "M29",
        "input: remote files",
        "remote files fetched with no regard for the cache budget",
        "src/gpuptc/inputs/remote.py",
        "return bool(self._held) and self._held + (self._expected or 0) > self._budget",
        "return False",
        ("tests/test_butler.py",),
    ),
    Mutation(
        "M30",
        "input: remote files",
        "a fetched file kept on disk after it was read",
        "src/gpuptc/inputs/remote.py",
        "entry.local.unlink(missing_ok=True)\n                    self._held",
        "self._held",
        ("tests/test_butler.py",),
    ),
    Mutation(
        "M31",
        "CUDA kernels",
        "radix selection: a pass histograms the digit one bit off (wrong shift)",
        "src/gpuptc/kernels/cuda.py",
        "atomicAdd(&histogram[r][(unsigned int)((key >> shift) & 255)], 1u);",
        "atomicAdd(&histogram[r][(unsigned int)((key >> (shift + 1)) & 255)], 1u);",
        ("tests/test_cuda_on_cpu.py",),
    ),
    Mutation(
        "M32",
        "CUDA kernels",
        "clip pass: the barrier after the per-thread sums are stored removed",
        "src/gpuptc/kernels/cuda.py",
        "    s_n[threadIdx.x] = kept;\n    __syncthreads();\n",
        "    s_n[threadIdx.x] = kept;\n",
        ("tests/test_cuda_on_cpu.py",),
    ),
    Mutation(
        "M33",
        "CUDA kernels",
        "row median: the barrier between bitonic compare-exchange steps removed",
        "src/gpuptc/kernels/cuda.py",
        "                }\n            }\n            __syncthreads();\n        }\n    }\n",
        "                }\n            }\n        }\n    }\n",
        ("tests/test_cuda_on_cpu.py",),
    ),
    Mutation(
        "M34",
        "CUDA kernels",
        "clip pass: the shared-memory reduction starts at a quarter of the block (wrong stride)",
        "src/gpuptc/kernels/cuda.py",
        "for (int stride = blockDim.x / 2; stride > 0; stride >>= 1)",
        "for (int stride = blockDim.x / 4; stride > 0; stride >>= 1)",
        ("tests/test_cuda_on_cpu.py",),
    ),
    Mutation(
        "M35",
        "CUDA kernels",
        "RICE on the GPU: each tile's last pixel not decoded (off by one at the tile's end)",
        "src/gpuptc/raws/rice_gpu.py",
        "const long long n = (long long)rows[t] * cols[t];",
        "const long long n = (long long)rows[t] * cols[t] - 1;",
        ("tests/test_cuda_on_cpu.py",),
    ),
    Mutation(
        "M36",
        "fit: errors",
        "EXPAPPROXIMATION's errors NaN when three points leave no degree of freedom",
        "src/gpuptc/fitting/ptc.py",
        "scale = chi2 if dof > 0 else 1.0",
        "scale = chi2",
        ("tests/test_fit_errors.py",),
    ),
    Mutation(
        "M37",
        "fit: errors",
        "the power law's gain error with the index's share of the wrong sign",
        "src/gpuptc/fitting/ptc.py",
        "np.array([-1.0, -math.log10(pivot)])",
        "np.array([-1.0, math.log10(pivot)])",
        ("tests/test_fit_errors.py",),
    ),
    Mutation(
        "M38",
        "fit: errors",
        "a read-noise term at zero not held: its singular covariance kept (NaN errors)",
        "src/gpuptc/fitting/ptc.py",
        "    if not held:\n        return np.full((3, 3), np.nan), FitStatus.SINGULAR",
        "    if held:\n        return np.full((3, 3), np.nan), FitStatus.OK",
        ("tests/test_fit_errors.py",),
    ),
)


def _copy_repository(target: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in files:
        source = ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def _apply(copy: Path, mutation: Mutation) -> str:
    """Plant the mutation; return the original text to restore."""
    path = copy / mutation.path
    text = path.read_text()
    count = text.count(mutation.old)
    if count == 0 or (count > 1 and not mutation.every):
        raise SystemExit(f"{mutation.key}: {mutation.path} holds {count} copies of its text")
    path.write_text(text.replace(mutation.old, mutation.new))
    return text


def _pytest(copy: Path, tests: list[str]) -> tuple[bool, str]:
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return done.returncode == 0, (failed[0] if failed else done.stdout.strip().splitlines()[-1])


def run(mutations: list[Mutation]) -> list[tuple[Mutation, bool, str, float]]:
    """Plant each mutation in a copy of the repository and run the suite on it."""
    results = []
    with tempfile.TemporaryDirectory(prefix="gpuptc-mutations-") as tmp:
        copy = Path(tmp)
        _copy_repository(copy)
        for mutation in mutations:
            start = time.perf_counter()
            original = _apply(copy, mutation)
            try:
                passed, detail = _pytest(copy, list(mutation.first))
                if passed:
                    passed, detail = _pytest(copy, ["tests"])
            finally:
                (copy / mutation.path).write_text(original)
            seconds = time.perf_counter() - start
            results.append((mutation, not passed, detail, seconds))
            verdict = "caught" if not passed else "SURVIVED"
            print(f"{mutation.key} {verdict:8s} {seconds:6.0f} s  {mutation.what}: {detail}")
            sys.stdout.flush()
    return results


def _plantable(mutation: Mutation) -> bool:
    """Whether the source holds the mutation's text as often as it expects."""
    count = (ROOT / mutation.path).read_text().count(mutation.old)
    return count == 1 or (count > 1 and mutation.every)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keys", nargs="*", help="mutations to run (default all)")
    parser.add_argument("--list", action="store_true", help="list the mutations")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.keys or m.key in args.keys]
    if args.list:
        for m in chosen:
            print(f"{m.key}  {m.area:14s} {m.what}")
        return 0
    unplantable = [m.key for m in chosen if not _plantable(m)]
    if unplantable:  # say all of them before running any, not one per aborted pass
        print(f"text no longer in the source (re-anchor them): {', '.join(unplantable)}")
        return 2
    results = run(chosen)
    caught = sum(1 for _, hit, _, _ in results if hit)
    print(f"\n{caught} of {len(results)} mutations caught")
    print("\n| mutation | area | bug | caught by |\n|---|---|---|---|")
    for mutation, hit, detail, _ in results:
        verdict = detail if hit else "**survived**"
        print(f"| {mutation.key} | {mutation.area} | {mutation.what} | {verdict} |")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The whole job against a straightforward script, on the same full-size files, in one process.

``gpuptc run`` with its defaults (every model, covariances, the report) on one simulated
full-size e2v sensor, its time split by stage from ``run.json``, next to the script a careful
user would write from the notebook: astropy's reader, a loop over amplifiers (median serial
overscan, master bias, trim, means, variance of the scaled difference, per-pixel gain), then
an EXPAPPROXIMATION fit and a linear fit per amplifier. No covariances and no report.

With ``--sensors N`` (N > 1) the run measures N such sensors in one process: what the fits,
the figures (drawn by a second process while the next sensor is measured) and the writing
add to the wall time of measuring them. Then ``gpuptc report DIR`` redraws the report, timed
against measuring 8 pairs of one sensor.

Usage: ``python benchmarks/job.py [--pairs 16] [--compress] [--sensors 1]``; the files are
made once under ``benchmarks/data/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.optimize import curve_fit

import gpuptc
import gpuptc.report

DATA = Path(__file__).parent / "data"


def _files(pairs: int, compress: bool, seed: int = 21) -> Path:
    storage = "rice" if compress else "int32"
    suffix = "" if seed == 21 else f"-seed{seed}"
    directory = DATA / f"job-e2v-{storage}-{pairs}{suffix}"
    gpuptc.simulate(directory, vendor="e2v", pairs=pairs, seed=seed, storage=storage, reuse=True)
    return directory


def _amplifiers(path: str, bias: list[np.ndarray] | None) -> list[np.ndarray]:
    """Overscan- and bias-corrected imaging pixels of each amplifier of one file."""
    out = []
    with fits.open(path) as hdus:
        for k, hdu in enumerate(h for h in hdus[1:] if h.name.upper().startswith("SEGMENT")):
            data = hdu.data.astype(np.float32)
            x0, x1, y0, y1 = _datasec(hdu.header["DATASEC"])
            image = data[y0:y1, x0:x1] - np.median(data[:, x1 + 2 :])
            out.append(image if bias is None else image - bias[k])
    return out


def _datasec(text: str) -> tuple[int, int, int, int]:
    x, y = text.strip("[]").split(",")
    (x0, x1), (y0, y1) = (map(int, part.split(":")) for part in (x, y))
    return x0 - 1, x1, y0 - 1, y1


def _expapprox(mu, a00, gain, noise):
    return 0.5 / (a00 * gain * gain) * (np.exp(2 * a00 * mu * gain) - 1) + noise / gain**2


def baseline(directory: Path) -> float:
    """The script a user would write, timed from listing the files to the last fit."""
    started = time.perf_counter()
    flats, biases = [], []
    for path in sorted(directory.glob("*.fits*")):
        kind = fits.getheader(path).get("IMGTYPE")
        (flats if kind == "FLAT" else biases if kind == "BIAS" else []).append(path)
    bias = None
    if biases:
        stack = [_amplifiers(str(p), None) for p in biases]
        bias = [np.median(np.stack(frames), axis=0) for frames in zip(*stack, strict=True)]
    means, variances = [], []
    for first, second in zip(flats[::2], flats[1::2], strict=True):
        row_mean, row_var = [], []
        for a1, a2 in zip(
            _amplifiers(str(first), bias), _amplifiers(str(second), bias), strict=True
        ):
            m1, m2 = float(a1.mean()), float(a2.mean())
            row_mean.append(0.5 * (m1 + m2))
            row_var.append(float(np.var(a1 - a2 * (m1 / m2))) / 2)
            _ = 1.0 / np.mean((a1 - a2) ** 2 / (a1 + a2))
        means.append(row_mean)
        variances.append(row_var)
    mean, var = np.array(means).T, np.array(variances).T
    if mean.size == 0:
        raise SystemExit(f"no flat pair with segments found in {directory}")
    for mu, v in zip(mean, var, strict=True):
        keep = mu < 0.8 * mu.max()
        curve_fit(_expapprox, mu[keep], v[keep], p0=(-1e-6, 1.0, 25.0), maxfev=5000)
        np.polyfit(mu[keep], v[keep], 1)
    return time.perf_counter() - started


def _stages(stages: dict[str, float]) -> None:
    for name, seconds in stages.items():
        print(f"  {name:28s} {seconds:7.2f} s")


def _many(pairs: int, compress: bool, sensors: int) -> None:
    """N sensors in one run: wall time against the measuring alone, then a redraw."""
    directories = [_files(pairs, compress, seed) for seed in range(21, 21 + sensors)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        started = time.perf_counter()
        gpuptc.run(directories, out, backend="numpy")
        whole = time.perf_counter() - started
        stages = json.loads((out / "run.json").read_text())["seconds_by_stage"]
        started = time.perf_counter()
        gpuptc.report.redraw_report(out)
        redraw = time.perf_counter() - started
    measure = stages["measure (sensors)"]
    print(f"{platform.machine()}, {platform.python_version()}, {sensors} sensors x {pairs}")
    print(f"full-size e2v pairs, {'RICE' if compress else 'int32'}; gpuptc run {whole:.1f} s:")
    _stages(stages)
    print(f"wall / measuring = {whole / measure:.2f} (the rest adds {whole / measure - 1:.0%})")
    per_pair = measure / (sensors * pairs)
    print(f"report redraw ({sensors} sensors) {redraw:.1f} s = {redraw / per_pair:.1f} pairs of")
    print(f"measuring ({per_pair:.2f} s per pair)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--compress", action="store_true")
    parser.add_argument("--sensors", type=int, default=1)
    args = parser.parse_args()
    if args.sensors > 1:
        _many(args.pairs, args.compress, args.sensors)
        return
    directory = _files(args.pairs, args.compress)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        gpuptc.run(directory, Path(tmp) / "out", backend="numpy")
        whole = time.perf_counter() - started
        provenance = json.loads((Path(tmp) / "out" / "run.json").read_text())
        started = time.perf_counter()
        gpuptc.report.redraw_report(Path(tmp) / "out")
        redraw = time.perf_counter() - started
        shutil.rmtree(Path(tmp) / "out")
    script = baseline(directory)
    stages = provenance["seconds_by_stage"]
    print(f"{platform.machine()}, {platform.python_version()}, {args.pairs} full-size e2v pairs,")
    print(f"{'RICE' if args.compress else 'int32'}; gpuptc run (defaults) {whole:.1f} s:")
    _stages(stages)
    measure = stages["measure (sensors)"]
    print(f"everything but measuring adds {whole / measure - 1:.0%} to measuring")
    pairs = redraw / (measure / args.pairs)
    print(f"report redraw {redraw:.1f} s = {pairs:.1f} pairs of measuring")
    print(f"straightforward script {script:.1f} s; script / gpuptc = {script / whole:.2f}")


if __name__ == "__main__":
    main()

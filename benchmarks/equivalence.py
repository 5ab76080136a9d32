"""Behaviour unchanged across a refactoring: the outputs of a 4-preset run, compared.

``python benchmarks/equivalence.py make DIR`` simulates the inputs (an e2v medium sensor of
12 pairs with a truncated duplicate of one flat; an ITL small RICE sensor of 10 pairs) and runs
every preset on them into ``DIR/<preset>``. ``python benchmarks/equivalence.py compare A B``
compares two such folders: every Parquet table frame-equal, ``rejected.csv`` equal, the EOTEST
and cp_pipe FITS files equal in data and in headers apart from dates and versions (input paths
made relative to each side's inputs). A file of A missing from B is a difference; a file only B
has (a new output) is listed, not compared.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

PRESETS = ("eotest", "cp_pipe", "cp_pipe_lsstcam", "seed")
VOLATILE_KEYS = {"DATE", "DATE-OBS", "CREATED", "GPUPTCV", "VERSION", "CHECKSUM", "DATASUM"}


def _gpuptc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "gpuptc", args[0], "-q", *args[1:]], check=True)


def make(root: Path) -> None:
    """Simulate the inputs once and run each preset on them."""
    inputs = root / "inputs"
    if not inputs.exists():
        _gpuptc(
            "simulate",
            str(inputs / "e2v"),
            "--vendor",
            "e2v",
            "--size",
            "medium",
            "--pairs",
            "12",
            "--seed",
            "3",
        )
        _gpuptc(
            "simulate",
            str(inputs / "itl"),
            "--vendor",
            "itl",
            "--size",
            "small",
            "--pairs",
            "10",
            "--storage",
            "rice",
            "--seed",
            "4",
        )
        raws = sorted((inputs / "e2v").glob("MC_C_*.fits"))
        data = raws[-3].read_bytes()  # a flat (the biases come first)
        (inputs / "e2v" / "00_partial_copy.fits").write_bytes(data[: len(data) // 2])
    for preset in PRESETS:
        out = root / preset
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "gpuptc",
                "run",
                "-q",
                str(inputs),
                "--out",
                str(out),
                "--preset",
                preset,
                "--no-report",
                "--force",
            ],
            check=False,
        )
        print(preset, "exit", result.returncode)


def _header(hdu: fits.hdu.base.ExtensionHDU) -> dict[str, object]:
    return {k: v for k, v in hdu.header.items() if k not in VOLATILE_KEYS and "DATE" not in k}


def _rooted(frame: pd.DataFrame, old: Path, new: Path) -> pd.DataFrame:
    """The frame with the inputs' folder ``old`` named ``new`` in its text columns."""
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_string_dtype(frame[column]) or frame[column].dtype == object:
            frame[column] = frame[column].map(
                lambda v: v.replace(str(old), str(new)) if isinstance(v, str) else v
            )
    return frame


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal arrays, NaN equal to NaN where the values are numbers."""
    a, b = np.asarray(a), np.asarray(b)
    numeric = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=numeric))


def _same_fits(a: Path, b: Path) -> list[str]:
    problems = []
    with fits.open(a) as ha, fits.open(b) as hb:
        if len(ha) != len(hb):
            return [f"{a.name}: {len(ha)} vs {len(hb)} HDUs"]
        for i, (x, y) in enumerate(zip(ha, hb, strict=True)):
            if _header(x) != _header(y):
                diff = set(_header(x).items()) ^ set(_header(y).items())
                problems.append(f"{a.name}[{i}] header: {sorted(map(str, diff))[:6]}")
            if x.data is None or y.data is None:
                if (x.data is None) != (y.data is None):
                    problems.append(f"{a.name}[{i}] data presence")
                continue
            if hasattr(x.data, "columns"):
                for name in x.data.columns.names:
                    if not _same_values(x.data[name], y.data[name]):
                        problems.append(f"{a.name}[{i}] column {name}")
            elif not _same_values(x.data, y.data):
                problems.append(f"{a.name}[{i}] data")
    return problems


def compare(a_root: Path, b_root: Path) -> int:
    """Compare two folders made by :func:`make`; print what differs; return the count."""
    problems: list[str] = []
    checked = 0
    for preset in PRESETS:
        a, b = a_root / preset, b_root / preset
        files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
        files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
        for rel in sorted(files_a - files_b):
            if rel.parts[0] != "sensors":
                problems.append(f"{preset}: {rel} lost")
        for rel in sorted(files_b - files_a):
            if rel.parts[0] != "sensors":
                print(f"{preset}: {rel} new (not compared)")
        for rel in sorted(files_a & files_b):
            pa, pb = a / rel, b / rel
            if rel.parts[0] == "sensors":
                continue
            if rel.suffix == ".parquet":
                checked += 1
                try:
                    pd.testing.assert_frame_equal(
                        _rooted(pd.read_parquet(pa), a_root, b_root), pd.read_parquet(pb)
                    )
                except AssertionError as error:
                    problems.append(f"{preset}/{rel}: {str(error).splitlines()[:3]}")
            elif rel.name == "rejected.csv":
                checked += 1
                if pa.read_text().replace(str(a_root), str(b_root)) != pb.read_text():
                    problems.append(f"{preset}/{rel} differs")
            elif rel.suffix == ".fits":
                checked += 1
                problems += [f"{preset}/{p}" for p in _same_fits(pa, pb)]
    for line in problems:
        print(line)
    print(f"{checked} files compared, {len(problems)} differences")
    return len(problems)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(Path(sys.argv[2]))
    else:
        sys.exit(1 if compare(Path(sys.argv[2]), Path(sys.argv[3])) else 0)

"""Which gain method to trust: the seed notebook's open question, answered on simulated data.

The notebook saw its per-pixel ("Welcome to PTC") gains and its PTC-slope gains disagree.
This script simulates sensors with known truth and changes one thing at a time (cosmic-ray
rate, level mismatch between the two flats of a pair, brighter-fatter, read noise, preset,
fit range). For every method it reports the gain over the true gain and, against the same
sensor simulated clean (no cosmic rays, no mismatch; the simulator keeps the pixel noise of
the two the same), how far the method moved. The tables replace this size's section of
``benchmarks/GAIN_METHODS.md``; the discussion around them is kept.

Usage: ``python benchmarks/gain_methods.py [--size medium|full] [--pairs 24]
[--vendors e2v,itl]`` (or ``make study``); about five minutes on two cores at the medium
size and one vendor, about an hour at full size.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import gpuptc
from gpuptc.simulation.simulate import SimulationConfig

RESULTS = Path(__file__).parent / "GAIN_METHODS.md"

LAB_RATE = SimulationConfig.cosmic_ray_rate
LAB_MISMATCH = 0.0035  # RMS per flat: pairs differ by up to ~1 %
CLEAN = {"cosmic_rays": False, "pair_mismatch": 0.0}
LABORATORY = {"cosmic_ray_rate": LAB_RATE, "pair_mismatch": LAB_MISMATCH}


NO_BF_CLEAN = "no brighter-fatter, clean"


def _cosmic_rays(rate: float) -> dict[str, Any]:
    return {"cosmic_rays": True, "cosmic_ray_rate": rate, "pair_mismatch": 0.0}


@dataclass(frozen=True)
class Case:
    """One simulated sensor and how it is measured and fitted."""

    label: str
    simulation: dict[str, Any]
    preset: str = "cp_pipe"
    overrides: dict[str, Any] = field(default_factory=dict)
    clean: str = "clean: no cosmic rays, no mismatch"  # label of the case it is compared with


CASES = [
    Case("clean: no cosmic rays, no mismatch", CLEAN),
    Case("laboratory: cosmic rays x 1, mismatch up to 1 %", LABORATORY),
    Case("cosmic rays x 1, no mismatch", _cosmic_rays(LAB_RATE)),
    Case("cosmic rays x 10", _cosmic_rays(10 * LAB_RATE)),
    Case("cosmic rays x 100", _cosmic_rays(100 * LAB_RATE)),
    Case("mismatch up to 1 % (RMS 0.35 % per flat)", {**CLEAN, "pair_mismatch": LAB_MISMATCH}),
    Case("mismatch up to 3 % (RMS 1 % per flat)", {**CLEAN, "pair_mismatch": 0.01}),
    Case("laboratory, eotest preset", LABORATORY, "eotest", clean="clean, eotest preset"),
    Case("clean, eotest preset", CLEAN, "eotest", clean="clean, eotest preset"),
    Case("laboratory, seed preset (the notebook)", LABORATORY, "seed", clean="clean, seed preset"),
    Case("clean, seed preset", CLEAN, "seed", clean="clean, seed preset"),
    Case(NO_BF_CLEAN, {**CLEAN, "brighter_fatter": False}, clean=NO_BF_CLEAN),
    Case(
        "no brighter-fatter, laboratory",
        {**LABORATORY, "brighter_fatter": False},
        clean=NO_BF_CLEAN,
    ),
    Case("laboratory, read noise x 3 (12-24 e-)", {**LABORATORY, "read_noise_scale": 3.0}),
    Case("laboratory, linear fit on [12:-4]", LABORATORY, overrides={"linear_points": (12, -4)}),
    Case("laboratory, linear fit on [2:8]", LABORATORY, overrides={"linear_points": (2, 8)}),
]
FULL_SIZE_CASES = [0, 1, 7, 8, 11, 12]
"""The cases run at full size: the comparison of the issue and the truth without BF."""


FITS = ["expapprox", "fullcov_nob", "linear", "quadratic", "powerlaw", "rhl"]
PER_PAIR = {
    "notebook_gain (used pairs)": "notebook_gain",
    "cp_pipe_gain (used pairs)": "cp_pipe_gain",
}


def _gains(directory: Path, vendor: str, size: str, pairs: int, case: Case) -> pd.DataFrame:
    """Gain per amp (rows) and method (columns), with the truth as ``truth``."""
    sensor = gpuptc.simulate(
        directory, vendor=vendor, size=size, pairs=pairs, biases=0, seed=5, **case.simulation
    )
    manifest = gpuptc.ingest([directory])
    measured, covariances = gpuptc.measure(manifest, preset=case.preset, backend="numpy")
    ptc, _, fitted = gpuptc.fit(
        measured,
        covariances,
        preset=case.preset,
        models=FITS,
        fullcov_size=5,
        **{f"solve__{k}": v for k, v in case.overrides.items()},
    )
    gains = ptc.pivot(index="amp", columns="model", values="gain")[FITS]
    used = fitted[fitted.used.astype(bool)]
    for label, column in PER_PAIR.items():
        gains[label] = used.groupby("amp")[column].median()
    gains["truth"] = sensor.truth.set_index("amp")["gain"]
    gains.attrs["mismatch"] = float(measured.level_mismatch.abs().max())
    gains.attrs["pairs"] = fitted.join(gains["truth"], on="amp")
    return gains


def _cell(ratio: pd.Series, digits: int = 3) -> str:
    return f"{ratio.median():.{digits}f} ({ratio.min():.{digits}f} to {ratio.max():.{digits}f})"


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _per_pair(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per-pair gains over the truth against signal (median over amplifiers)."""
    table = pairs.assign(
        signal_e=pairs["mean"] * pairs["truth"],
        rhl=pairs["rhl_gain_corrected"] / pairs["truth"],
        notebook=pairs["notebook_gain"] / pairs["truth"],
        mismatch=pairs["level_mismatch"].abs(),
        used=pairs["used"].astype(float),
    )
    columns = ["signal_e", "rhl", "notebook", "mismatch", "used"]
    summary = table.groupby("pair")[columns].median().reset_index()
    summary["used"] = table.groupby("pair")["used"].mean().to_numpy()
    return summary.round({"signal_e": 0, "rhl": 4, "notebook": 4, "mismatch": 4, "used": 2})


def _run(vendor: str, size: str, pairs: int, cases: list[int]) -> tuple[list, list, dict]:
    results: dict[int, pd.DataFrame] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for k in cases:
            results[k] = _gains(Path(tmp) / f"case{k}", vendor, size, pairs, CASES[k])
            print(f"{vendor} {CASES[k].label}: {time.monotonic() - started:.0f} s", flush=True)
    methods = [*FITS, *PER_PAIR]
    truth_rows, moved_rows = [], []
    for k, gains in results.items():
        case = CASES[k]
        truth_rows.append(
            {
                "vendor": vendor,
                "case": case.label,
                "max mismatch": f"{gains.attrs['mismatch']:.4f}",
                **{m: _cell(gains[m] / gains["truth"]) for m in methods},
            }
        )
        reference = next((r for j, r in results.items() if CASES[j].label == case.clean), None)
        if reference is not None and reference is not gains:
            moved_rows.append(
                {
                    "vendor": vendor,
                    "case": case.label,
                    **{m: _cell(100 * (gains[m] / reference[m] - 1), 2) for m in methods},
                }
            )
    return truth_rows, moved_rows, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="medium", choices=["small", "medium", "full"])
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--vendors", default="e2v", help="comma-separated: e2v,itl")
    args = parser.parse_args()
    cases = FULL_SIZE_CASES if args.size == "full" else list(range(len(CASES)))
    started = time.monotonic()
    truth_rows, moved_rows, examples = [], [], {}
    for vendor in args.vendors.split(","):
        truth, moved, results = _run(vendor, args.size, args.pairs, cases)
        truth_rows += truth
        moved_rows += moved
        examples[vendor] = results
    first = next(iter(examples.values()))
    text = [
        f"## Results at {args.size} size",
        "",
        f"`python benchmarks/gain_methods.py --size {args.size} --pairs {args.pairs} "
        f"--vendors {args.vendors}`, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{time.monotonic() - started:.0f} s. One sensor per case and vendor (seed 5, "
        f"{args.size} amplifiers, {args.pairs} pairs from 1 000 e- to 1.3 x full well, "
        "brighter-fatter on unless the case says otherwise), measured and fitted with the "
        "`cp_pipe` preset unless the case names another. `rhl` is the robust per-pair gain "
        "with the preset's read-noise correction (the notebook's form under `seed`), "
        "median over the pairs the fit uses; `notebook_gain` and `cp_pipe_gain` are the "
        "unscaled, unclipped forms, medians over the same pairs. Cosmic rays x 1 is the "
        f"simulator's sea-level laboratory rate, {LAB_RATE:.3f} events per cm^2 per second.",
        "",
        "### Gain / true gain",
        "",
        "Median over the amplifiers (smallest to largest in brackets):",
        "",
        _markdown(pd.DataFrame(truth_rows)),
        "",
        "### How far each method moves, in per cent, against the clean sensor",
        "",
        "Same seed, same pixel noise; the eotest and seed cases against the clean sensor "
        "measured with their own preset, the no-brighter-fatter case against its clean twin:",
        "",
        _markdown(pd.DataFrame(moved_rows)),
        "",
        "### Per-pair gain / true gain against signal, laboratory sensor",
        "",
        "Median over amplifiers of `rhl_gain_corrected` and `notebook_gain`; `mismatch` "
        "is the median |mean2/mean1 - 1|, `used` the fraction of amplifiers whose fit kept "
        "the pair:",
        "",
        _markdown(_per_pair(first[1].attrs["pairs"])),
        "",
    ]
    _write_section(args.size, "\n".join(text))
    print("\n".join(text))


def _write_section(size: str, text: str) -> None:
    """Replace this size's section of the results, keeping the rest of the page."""
    begin, end = f"<!-- results: {size} -->", f"<!-- end of results: {size} -->"
    page = RESULTS.read_text() if RESULTS.exists() else ""
    section = f"{begin}\n{text}\n{end}"
    if begin in page and end in page:
        head, rest = page.split(begin, 1)
        page = head + section + rest.split(end, 1)[1]
    else:
        page = page.rstrip("\n") + ("\n\n" if page else "") + section + "\n"
    RESULTS.write_text(page)


if __name__ == "__main__":
    main()

"""Photodiode readings integrate to the charges Rubin's ISR computes from them."""

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from gpuptc.inputs.photodiode import (
    PhotodiodeReadings,
    exposure_charge,
    integrate,
    photodiode_file_name,
    read_photodiode,
    read_readings,
)

REAL = Path(__file__).parent / "data" / "photodiode" / "Photodiode_Readings_20211212_000310.txt"

RUBIN_CHARGES = {
    ("DIRECT_SUM", 1.0): 1.57947426825e-08,
    ("DIRECT_SUM", -1.0): 1.57947426825e-08,
    ("TRIMMED_SUM", 1.0): 1.5793608902224138e-08,
    ("TRIMMED_SUM", -1.0): 5.823146128069593e-09,
    ("CHARGE_SUM", 1.0): 9.457257147368421e-07,
    ("MEAN", 1.0): 1.1413230237077352e-08,
    ("MEAN", -1.0): -1.1413230237077352e-08,
}
"""The real file's charge by each method and current scale, from lsst/ip_isr's
``PhotodiodeCalib.integrate(exposureTime=7.83172)`` at d2a69bfd (tests/data/photodiode/README.md
says how). CHARGE_SUM with scale -1 is NaN there (no sample above its threshold's margin)."""


def test_the_camera_file_is_read_with_its_exposure():
    readings = read_photodiode(REAL)
    assert (readings.dayobs, readings.seqnum) == (20211212, 310)
    assert len(readings.time) == len(readings.current) == 649
    assert readings.time[1] == pytest.approx(0.0167) and readings.current.max() == 1.99852e-09
    assert photodiode_file_name(20211212, 310) == REAL.name


@pytest.mark.parametrize(("method", "scale"), list(RUBIN_CHARGES))
def test_the_camera_file_integrates_as_rubins_isr_does(method, scale):
    charge = integrate(read_photodiode(REAL), method, scale, exptime=7.83172)
    assert charge == pytest.approx(RUBIN_CHARGES[method, scale], rel=1e-12)


def test_a_reading_without_signal_margins_gives_no_charge_sum():
    """Scale -1 turns the file's plateau into the minimum: Rubin's answer is NaN too."""
    assert np.isnan(integrate(read_photodiode(REAL), "CHARGE_SUM", -1.0))


# lsst/ip_isr tests/test_photodiode.py (d2a69bfd): a short electrometer series and the
# charges its tests expect (there at rtol 1e-14), to the digits Rubin's code gives them
UNIT_TIME = [
    0.0,
    0.08496094,
    0.1689453,
    0.2529297,
    0.3378906,
    0.421875,
    0.5068359,
    0.5908203,
    0.6757813,
    0.7597656,
    0.84375,
    0.9287109,
    1.012695,
    1.097656,
    1.181641,
    1.266602,
]
UNIT_CURRENT = [
    -1.350031e-12,
    1.598721e-13,
    -1.456613e-13,
    -1.385558e-13,
    -3.517187e-13,
    -3.375078e-13,
    3.597549e-10,
    3.591616e-10,
    3.599823e-10,
    3.597158e-10,
    3.606893e-10,
    3.602736e-10,
    3.582272e-10,
    3.59293e-10,
    3.602878e-10,
    3.588703e-10,
]


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("DIRECT_SUM", 2.884140493882639e-10),
        ("TRIMMED_SUM", 2.8887078659721477e-10),
        ("CHARGE_SUM", 3.5960649138773593e-09),
    ],
)
def test_rubins_own_test_series_integrates_to_its_numbers(method, expected):
    readings = PhotodiodeReadings(np.array(UNIT_TIME), np.array(UNIT_CURRENT), 0, 0)
    assert integrate(readings, method) == pytest.approx(expected, rel=1e-12)


def test_the_mean_integration_needs_the_exposure_time():
    with pytest.raises(ValueError, match="exposure time"):
        integrate(read_photodiode(REAL), "MEAN")
    with pytest.raises(ValueError, match="unknown photodiode integration 'SUM'"):
        integrate(read_photodiode(REAL), "SUM")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("readings.txt", "0 1\n1 2\n", "not a photodiode readings file"),
        ("Photodiode_Readings_20240101_000001.txt", "0 1 2\n1 2 3\n", "two columns"),
        ("Photodiode_Readings_20240101_000002.txt", "0 1\n", "two columns and two samples"),
        ("Photodiode_Readings_20240101_000003.txt", "0 1\nx y\n", "unreadable"),
        ("Photodiode_Readings_20240101_000004.txt", "1 1\n0 2\n", "times not increasing"),
    ],
)
def test_a_bad_readings_file_is_named_with_why(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=reason) as failure:
        read_photodiode(path)
    assert str(path) in str(failure.value)


def test_a_flat_current_has_no_charge_sum_and_says_why(tmp_path):
    """A dead meter or no light: no sample above the background."""
    path = tmp_path / "Photodiode_Readings_20240101_000007.txt"
    path.write_text("".join(f"{k} 1e-13\n" for k in range(50)))  # equal steps, exactly
    with pytest.raises(ValueError, match="no signal above the readings' background"):
        integrate(read_photodiode(path), "CHARGE_SUM")
    raw = tmp_path / "MC_C_20240101_000007_R22_S11.fits"
    charge, reason = exposure_charge(str(raw), "20240101", 7, 1.0, "CHARGE_SUM", 1.0)
    assert np.isnan(charge) and "no signal above" in reason
    charge, reason = exposure_charge(str(raw), "20240101", 8, 1.0, "DIRECT_SUM", 1.0)
    assert np.isnan(charge) and reason == (
        "no photodiode readings beside it (Photodiode_Readings_20240101_000008.txt)"
    )


def _readings_table(path, columns: dict, header: dict | None = None):
    """A repository's ``photodiode`` dataset: an empty primary HDU and a table of samples."""
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name=name, format="D", array=values) for name, values in columns.items()]
    )
    table.header.update(header or {})
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    return path


def test_a_repositorys_readings_table_integrates_as_the_camera_file(tmp_path):
    """ip_isr's ``PhotodiodeCalib.writeFits`` layout (TIME, CURRENT) of the camera's file."""
    text = read_photodiode(REAL)
    header = {"HIERARCH INTEGRATION_METHOD": "DIRECT_SUM", "DAY_OBS": 20211212, "SEQNUM": 310}
    path = _readings_table(
        tmp_path / "photodiode.fits", {"TIME": text.time, "CURRENT": text.current}, header
    )
    table = read_readings(path)
    assert (table.dayobs, table.seqnum) == (20211212, 310)
    for method, scale in RUBIN_CHARGES:
        charge = integrate(table, method, scale, exptime=7.83172)
        assert charge == pytest.approx(RUBIN_CHARGES[method, scale], rel=1e-12)


def test_an_electrometer_table_takes_its_times_in_seconds(tmp_path):
    """The electrometer's own file: sample counts (Elapsed Time) and seconds (RNUM); as in
    Rubin's reader, the last time column found wins."""
    columns = {
        "Elapsed Time": np.arange(len(UNIT_TIME), dtype=float),
        "RNUM": np.array(UNIT_TIME),
        "Signal": np.array(UNIT_CURRENT),
    }
    table = read_readings(_readings_table(tmp_path / "electrometer.fits", columns))
    assert table.dayobs is None
    assert integrate(table, "DIRECT_SUM") == pytest.approx(2.884140493882639e-10, rel=1e-12)


def test_a_bad_readings_table_is_named_with_why(tmp_path):
    path = _readings_table(tmp_path / "bad.fits", {"TIME": np.arange(3.0), "VOLTS": np.ones(3)})
    with pytest.raises(ValueError, match="no time and current columns") as failure:
        read_readings(path)
    assert str(path) in str(failure.value)
    (tmp_path / "cut.fits").write_bytes(path.read_bytes()[:3000])
    charge, reason = exposure_charge(
        "raw.fits", None, None, 1.0, "DIRECT_SUM", 1.0, str(tmp_path / "cut.fits")
    )
    assert np.isnan(charge) and str(tmp_path / "cut.fits") in reason

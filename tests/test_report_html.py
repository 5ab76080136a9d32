"""The report pages show every value that comes from the data as text, never as markup."""

import contextlib
import re
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuptc.report import html as report_html
from gpuptc.schema import DrawnFigure, FitStatus, file_stem, sensor_page_name

HOSTILE = '<script>alert(1)</script>"onload='
"""A sensor name as a hostile FITS header could give it."""
ALSO_HOSTILE = '<img src=x onerror=alert(1)>"onload=x'
"""Another, without the slash a file name may not hold (several sensors: one page each)."""

TAGS = {
    *("html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "b", "nav"),
    *("a", "div", "table", "thead", "tbody", "tr", "th", "td", "figure", "img", "figcaption"),
    *("details", "summary", "pre", "ul", "li", "br", "script"),
}
"""Every element the pages are made of."""
ATTRIBUTES = {"lang", "charset", "href", "id", "class", "style", "src", "alt", "type"}


class _Page(HTMLParser):
    """The elements and attributes of a page, and its text (character references decoded)."""

    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.elements, self.text, self.ids, self.hrefs, self.images = [], [], [], [], []
        with path.open(encoding="utf-8", newline="") as page:  # as written: "\r" kept
            self.feed(page.read())
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, [name for name, _ in attrs]))
        attributes = dict(attrs)
        self.ids += [attributes["id"]] if "id" in attributes else []
        self.hrefs += [attributes["href"]] if "href" in attributes else []
        self.images += [attributes] if tag == "img" else []

    def handle_data(self, data):
        self.text.append(data)


def _tables(sensors: list[str], segment: str = "Segment10") -> dict[str, pd.DataFrame]:
    """The smallest tables a page is drawn from: 4 amps per sensor, two of them far off."""
    ptc = pd.DataFrame(
        {
            "sensor": sensor,
            "amp": amp,
            "segment": segment if amp == 1 else f"Segment1{amp}",
            "model": "expapprox",
            "gain": 1.5 if amp == 1 else 1.0,
            "gain_err": 0.01,
            "noise": 12.0 if amp == 2 else 6.0,
            "noise_err": 0.1,
            "turnoff": 9e4,
            "a00": -2.5e-6,
            "chi2_dof": 1.0,
            "status": FitStatus.OK,
        }
        for sensor in sensors
        for amp in range(1, 5)
    )
    fullcov = pd.DataFrame(columns=["sensor", "model", "amp", "i", "j", "a", "a_err"])
    comparison = pd.DataFrame(
        {
            "sensor": row.sensor,
            "amp": row.amp,
            "method": "expapprox",
            "quantity": "gain",
            "reference": "<b>eotest</b>",
            "value": row.gain,
            "reference_value": 1.0,
            "ratio": row.gain,
        }
        for row in ptc.itertuples()
    )
    pairs = ptc[["sensor", "amp"]].assign(
        pair=0,
        file1=f"{HOSTILE}.fits",
        file2="b.fits",
        exptime=1.0,
        mean=1e4,
        level_mismatch=0.001,
        used=True,
        status=f"{HOSTILE}&amp;",
    )
    rejected = pd.DataFrame(
        {"sensor": sensors, "path": f"/raw/{HOSTILE}.fits", "stage": "ingest", "reason": HOSTILE}
    )
    return {
        "ptc": ptc,
        "fullcov": fullcov,
        "comparison": comparison,
        "pairs": pairs,
        "rejected": rejected,
    }


def _figures(sensor: str) -> list[DrawnFigure]:
    """A figure (its file name made to break out of the attribute) and a note."""
    name = f'ptc_{sensor.count("<")}_"onload=x.png'
    return [
        DrawnFigure(name, f"The PTC of {sensor} & {HOSTILE}", png=b"\x89PNG"),
        DrawnFigure(f"bf_{sensor}.png", "Not drawn", failure=f"{HOSTILE}: oops"),
    ]


PROVENANCE = {"preset": HOSTILE, "backend": "numpy", "gpuptc": "0.1.0", "inputs": [HOSTILE]}


def _assert_inert(page: _Page) -> None:
    """No element or attribute of the page comes from the data.

    (Quotes are left as they are in text, where they are not markup: pandas escapes only
    ``&``, ``<`` and ``>`` in its tables.)
    """
    assert {tag for tag, _ in page.elements} <= TAGS
    assert {name for _, names in page.elements for name in names} <= ATTRIBUTES
    assert all(set(image) == {"src", "alt"} for image in page.images)


def test_a_hostile_sensor_name_is_text_on_its_page(tmp_path):
    root = tmp_path / "report"
    (root / "figures").mkdir(parents=True)
    drawn = {HOSTILE: _figures(HOSTILE)}
    index = report_html._write_pages(root, _tables([HOSTILE]), PROVENANCE, drawn)
    source = index.read_text(encoding="utf-8")
    assert "<script>" not in source and not re.search(r'<[^>]*"onload=', source)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in source
    page = _Page(index)
    _assert_inert(page)
    text = "".join(page.text)
    assert HOSTILE in page.ids and f"#{HOSTILE}" in page.hrefs  # the heading and its link
    assert f"gpuptc report{HOSTILE}" not in text  # the title is the report's
    assert f"preset {HOSTILE}" in text  # run facts in the header
    assert f"The PTC of {HOSTILE} & {HOSTILE}" in text  # caption
    assert f"Not drawn: not drawn ({HOSTILE.split(':')[0]})" in text  # failure
    assert f"/raw/{HOSTILE}.fits" in text and f"{HOSTILE}&amp;" in text  # table cells
    assert "<b>eotest</b>" in text  # a column header from the data
    assert [image["alt"] for image in page.images] == [f"The PTC of {HOSTILE} & {HOSTILE}"]
    assert [image["src"] for image in page.images] == ['figures/ptc_2_"onload=x.png']
    assert (root / "figures" / 'ptc_2_"onload=x.png').read_bytes() == b"\x89PNG"


def test_hostile_names_are_text_on_the_focal_plane_summary(tmp_path, monkeypatch):
    monkeypatch.setattr(report_html, "focal_plane_maps", lambda ptc, manifest: None)
    monkeypatch.setattr(report_html, "vendor_histograms", lambda summary: None)
    root = tmp_path / "report"
    (root / "figures").mkdir(parents=True)
    sensors = [ALSO_HOSTILE, "R22_S11"]
    drawn = {sensor: _figures(sensor) for sensor in sensors}
    segment = "Segment<i>10</i>"  # the worst amp's segment, listed in the sensors' table
    index = report_html._write_pages(root, _tables(sensors, segment), PROVENANCE, drawn)
    pages = [index, *(root / sensor_page_name(sensor) for sensor in sensors)]
    assert pages[1].parent == root and "<" not in pages[1].name  # a name, not markup
    for path in pages:
        source = path.read_text(encoding="utf-8")
        assert "<script>" not in source and "<img src=x" not in source, path.name
        assert not re.search(r'<[^>]*"onload=', source) and "<i>" not in source, path.name
        _assert_inert(_Page(path))
    summary = _Page(index)
    text = "".join(summary.text)
    assert f"amp 1 ({segment}): gain" in text  # the worst amps, one per line
    assert ("br", []) in summary.elements
    assert pages[1].name in summary.hrefs  # plain characters: nothing to quote
    assert f"sensor_{ALSO_HOSTILE}.html" not in summary.hrefs
    assert f"{ALSO_HOSTILE}R22_S11" not in text and ALSO_HOSTILE in text
    assert HOSTILE in text  # provenance
    page = _Page(pages[1])
    assert ALSO_HOSTILE in page.ids and "index.html" in page.hrefs
    assert f"gpuptc report: {ALSO_HOSTILE}" in "".join(page.text)


@pytest.mark.parametrize("sensors", [[HOSTILE], ["A", "B"]])
def test_the_pages_have_their_sections(sensors, tmp_path, monkeypatch):
    monkeypatch.setattr(report_html, "focal_plane_maps", lambda ptc, manifest: None)
    monkeypatch.setattr(report_html, "vendor_histograms", lambda summary: None)
    root = tmp_path / "report"
    (root / "figures").mkdir(parents=True)
    (tmp_path / "ptc.parquet").touch()
    drawn = {sensor: _figures(sensor) for sensor in sensors}
    index = report_html._write_pages(root, _tables(sensors), PROVENANCE, drawn)
    page = _Page(index)
    if len(sensors) == 1:
        charts = [f"{chart}_{file_stem(HOSTILE)}" for chart in CHARTS]
        ids = [HOSTILE, "verdict", "per-amp", "tests", "figure-index", *charts]
        ids += ['ptc_2_"onload=x', f"bf_{HOSTILE}", "numbers", "rejected", "tables"]
        assert page.ids == [*ids, "provenance"]
        figure_links = [f"#{c}" for c in [*charts, 'ptc_2_"onload=x', f"bf_{HOSTILE}"]]
        expected = [f"#{HOSTILE}", "#numbers", "#provenance", *figure_links, "../ptc.parquet"]
        assert page.hrefs == expected
    else:
        assert page.ids == ["sensors", "tables", "rejected", "provenance"]
        assert page.hrefs[-3:] == ["sensor_A.html", "sensor_B.html", "../ptc.parquet"]
        sensor_page = _Page(root / "sensor_A.html")
        charts = [f"{chart}_A" for chart in CHARTS]
        ids = ["A", "verdict", "per-amp", "tests", "figure-index", *charts, 'ptc_0_"onload=x']
        assert sensor_page.ids == [*ids, "bf_A", "numbers", "rejected"]
        links = [f"#{c}" for c in [*charts, 'ptc_0_"onload=x', "bf_A"]]
        assert sensor_page.hrefs == ["index.html", "#numbers", "#rejected", *links]


CHARTS = ("amp_map", "amp_summary", "comparison", "mismatch")
"""The charts of the smallest tables (no curves, covariances or per-pair gains)."""


header_values = st.text(
    alphabet=st.one_of(
        st.sampled_from([*"<>&\"'/\\.~ =", "\n", "\t", "\x00", "é", "\u202e"]),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    min_size=1,
    max_size=120,
)
"""What a header may hold: markup, quotes, separators, dots, control characters, any
Unicode (``..`` arises from two dots)."""


@contextlib.contextmanager
def no_focal_plane_figure():
    """The focal-plane summary without its PNG maps and histograms (a test of markup need
    not draw them)."""
    with (
        mock.patch.object(report_html, "focal_plane_maps", lambda summary, manifest: None),
        mock.patch.object(report_html, "vendor_histograms", lambda summary: None),
    ):
        yield


@settings(max_examples=25, deadline=None)
@given(sensor=header_values, segment=header_values, preset=header_values)
def test_any_header_values_stay_text_and_every_page_stays_in_its_folder(sensor, segment, preset):
    """Drawn sensor ids, segment names and run facts (path separators, ``..``, control
    characters, markup, non-ASCII, long): every page is inert markup, in the report
    folder, and shows the sensor id as text."""
    sensors = sorted({sensor, "R22_S11"})
    provenance = {**PROVENANCE, "preset": preset}
    # the focal plane's PNG is an image, not markup (its texts: test_report_drawing.py)
    with tempfile.TemporaryDirectory() as folder, no_focal_plane_figure():
        root = Path(folder) / "report"
        (root / "figures").mkdir(parents=True)
        drawn = {name: _figures(name) for name in sensors}
        index = report_html._write_pages(root, _tables(sensors, segment), provenance, drawn)
        pages = [index, *(root / sensor_page_name(name) for name in sensors)]
        for page in pages:
            assert page.parent == root and page.exists()
            _assert_inert(_Page(page))
        shown = "".join(_Page(pages[1 + sensors.index(sensor)]).text)
        assert sensor.strip() in shown or not sensor.strip()

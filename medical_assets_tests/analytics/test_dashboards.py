"""Dashboards: the real numbers of the analytics tables, suppressed cells never drawn as zero, no
identifier, and a page that renders in Chromium with the network off."""

import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from medical_assets.analytics import tables
from medical_assets.analytics.chart_data import DASHBOARD_FILE, PNG_SIZES, REPORT_GROUPS
from medical_assets.analytics.dashboard_html import build_dashboard_html
from medical_assets.analytics.figures_png import build_png_figures
from medical_assets.analytics.html_charts import CHART_IDS
from medical_assets.analytics.previews import MAX_PREVIEWS
from medical_assets.dicom.tables import DEID_DICOM_IMAGES, DEID_DICOM_THUMBNAILS
from medical_assets_tests.analytics.dashboard_samples import (
    IMAGES,
    METADATA,
    chart_data,
    images_table,
    sample_analytics,
    thumbnails_table,
    uid,
)
from medical_assets_tests.browser import artifact_path, headless_chromium


@pytest.fixture
def analytics() -> dict[str, pa.Table]:
    built = sample_analytics()
    assert set(built) == set(tables.ANALYTICS_TABLES)
    return built


@pytest.fixture
def images() -> pa.Table:
    return images_table()


@pytest.fixture
def thumbnails() -> pa.Table:
    return thumbnails_table(len(IMAGES))


@pytest.fixture
def page(analytics, thumbnails, images) -> str:
    return build_dashboard_html(analytics, thumbnails, images, METADATA)


def test_charts_hold_the_real_numbers(page):
    utilization = chart_data(page, "chart-utilization")
    messages = {trace["name"]: trace["y"] for trace in utilization if trace["xaxis"] == "x"}
    assert messages["ST_MARYS_HOSP"] == [4817, 4522, 4963]
    assert messages["NORTHSIDE_CLINIC"] == [388, 402, 377]
    labs = chart_data(page, "chart-labs")[0]
    assert dict(zip(labs["y"], labs["x"]))["Glucose (mg/dL)"] == 3120
    imaging = {trace["name"]: dict(zip(trace["x"], trace["y"])) for trace in chart_data(page, "chart-imaging")}
    assert imaging["Images"]["CT"] == 2940 and imaging["Studies"]["CR"] == 97
    demographics = {trace["name"]: trace["y"] for trace in chart_data(page, "chart-demographics")}
    assert demographics["Female"] == [412, 530, 688, 902, 764, 41]
    quality = chart_data(page, "chart-quality-facilities")[0]
    assert dict(zip(quality["x"], quality["y"]))["CITY_GENERAL"] == pytest.approx(118 / 7166)


def test_suppressed_cells_are_gaps_and_counted_never_zero_nor_named(page):
    admissions = {
        trace["name"]: trace["y"] for trace in chart_data(page, "chart-utilization") if trace["xaxis"] == "x2"
    }
    discharges = {
        trace["name"]: trace["y"] for trace in chart_data(page, "chart-utilization") if trace["xaxis"] == "x3"
    }
    assert admissions["CITY_GENERAL"] == [141, None, 152]
    assert discharges["CITY_GENERAL"] == [137, 0, 149]  # a true zero stays zero
    assert "2 cells suppressed (counts from 1 to 10, and cells that would reveal them): not drawn." in page
    assert "CITY_GENERAL 2024-02" not in page and "Admissions (ADT^A01)</" not in page
    demographics = {trace["name"]: trace["y"] for trace in chart_data(page, "chart-demographics")}
    assert demographics["Male"][-1] is None and demographics["Unknown"][1] == 0
    assert chart_data(page, "chart-labs"), "the labs chart is drawn"
    assert "C reactive protein" not in page  # every count of the test is suppressed: not even its name
    pharmacy = chart_data(page, "chart-pharmacy")
    assert "Onasemnogene" not in page and {trace["name"] for trace in pharmacy} == {"IV", "SC", "PO"}
    imaging = {trace["name"]: dict(zip(trace["x"], trace["y"])) for trace in chart_data(page, "chart-imaging")}
    assert imaging["Studies"]["US"] is None and imaging["Images"]["US"] == 14


def test_threshold_in_the_labels_comes_from_the_metadata(analytics):
    page = build_dashboard_html(analytics, None, None, {**METADATA, "deid.suppression_threshold": "11"})
    assert "counts from 1 to 11," in page and "counts from 1 to 10," not in page


class _Sources(HTMLParser):
    """Every URL the page's markup would load: script src, link href, img/iframe/source src."""

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in ("src", "href", "data", "poster"):
            if attributes.get(name) and tag != "a":
                self.urls.append((tag, attributes[name]))
        if tag == "script" and "src" not in attributes:
            self.inline_scripts += 1


def test_page_is_self_contained(page):
    sources = _Sources()
    sources.feed(page)
    remote = [(tag, url) for tag, url in sources.urls if not url.startswith("data:")]
    assert remote == [], "the page must load nothing: no script, style sheet or font from elsewhere"
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=[\"']?https?://", page, re.IGNORECASE)
    assert "@import" not in page and "url(http" not in page
    assert sources.inline_scripts >= 1 + len(CHART_IDS)  # plotly.js itself, then one per chart
    assert "plotly.js v" in page  # the library's banner: inlined, not fetched


def test_header_shows_the_compliance_metadata(page):
    header = page[page.index("<header>") : page.index("</header>")]
    for label, value in [
        ("De-identification profile", "safe_harbor"),
        ("Key id", "k-2f9c41"),
        ("Suppression threshold", "10"),
        ("Run id", "3c1e0b5a-run"),
        ("Created", "2025-03-04T05:06:07Z"),
    ]:
        assert f"<dt>{label}</dt><dd>{value}</dd>" in header


def test_metadata_and_labels_are_escaped(analytics):
    hostile = analytics["hospital_utilization"].to_pylist()
    hostile[4]["sending_facility"] = "<img src=x onerror=alert(1)>"
    analytics["hospital_utilization"] = pa.Table.from_pylist(hostile, schema=tables.HOSPITAL_UTILIZATION)
    page = build_dashboard_html(analytics, None, None, {"deid.run_id": "<script>alert(1)</script>"})
    assert "<img src=x" not in page and "<script>alert(1)" not in page


def test_no_identifier_reaches_the_dashboards(analytics, thumbnails, images):
    page = build_dashboard_html(analytics, thumbnails, images, METADATA)
    figures = build_png_figures(analytics, thumbnails, images)
    identifiers = images.column("sop_instance_uid").to_pylist() + images.column("patient_token").to_pylist()
    identifiers += images.column("study_instance_uid").to_pylist() + images.column("deid_file").to_pylist()
    for identifier in identifiers:
        assert identifier not in page
        assert all(identifier.encode() not in png for png in figures.values())
    preview = json.dumps(chart_data(page, "chart-dicom-preview"))
    assert preview.count("data:image/png;base64,") == sum(risk is None for _, risk in IMAGES)
    assert re.search(r'"text":\s*"CT 1"', page) and '"US 1"' not in page  # US is not cleared for export


def test_preview_shows_at_most_max_previews_from_every_modality(analytics):
    count = MAX_PREVIEWS + 6
    images = pa.Table.from_pylist(
        [{"sop_instance_uid": uid(index), "modality": "CT" if index else "MR"} for index in range(count)],
        schema=DEID_DICOM_IMAGES,
    )
    page = build_dashboard_html(analytics, thumbnails_table(count), images, METADATA)
    assert json.dumps(chart_data(page, "chart-dicom-preview")).count("data:image/png;base64,") == MAX_PREVIEWS
    assert re.search(r'"text":\s*"MR 1"', page)  # the only MR image is not crowded out by the CTs


def test_empty_inputs_say_so_without_charts():
    empty = {name: schema.empty_table() for name, schema in tables.ANALYTICS_TABLES.items()}
    for analytics, thumbnails in [({}, None), (empty, DEID_DICOM_THUMBNAILS.empty_table())]:
        page = build_dashboard_html(analytics, thumbnails, None, {})
        assert "No DICOM images yet" in page and "No images cleared for export yet" in page
        assert "No HL7 messages yet" in page
        assert "Plotly.newPlot" not in page
        figures = build_png_figures(analytics, thumbnails, None)
        assert set(figures) == set(PNG_SIZES)
        for name, png in figures.items():
            _assert_drawn_png(png, PNG_SIZES[name])


def test_png_figures_have_their_sizes_content_and_are_deterministic(analytics, thumbnails, images):
    first = build_png_figures(analytics, thumbnails, images)
    second = build_png_figures(analytics, thumbnails, images)
    assert set(first) == {"utilization.png", "demographics.png", "labs.png", "imaging_workload.png", "dicom_preview.png"}
    for name, png in first.items():
        _assert_drawn_png(png, PNG_SIZES[name])
        assert png == second[name], f"{name} differs between two calls"
        assert b"tIME" not in png and b"Software" not in png  # no timestamp, no version stamp


def test_figures_drawn_apart_equal_those_drawn_together(analytics, thumbnails, images):
    together = build_png_figures(analytics, thumbnails, images)
    for group in REPORT_GROUPS:
        figures = [name for name in group if name != DASHBOARD_FILE]
        assert build_png_figures(analytics, thumbnails, images, only=figures) == {n: together[n] for n in figures}


def test_report_groups_draw_every_file_once():
    drawn = [name for group in REPORT_GROUPS for name in group]
    assert sorted(drawn) == sorted([DASHBOARD_FILE, *PNG_SIZES])


def test_an_unknown_figure_is_named_in_the_error(analytics):
    with pytest.raises(ValueError, match="no such figure: census.png"):
        build_png_figures(analytics, None, None, only=["labs.png", "census.png"])


def _assert_drawn_png(png: bytes, size: tuple[int, int]) -> None:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.verify()
    image = Image.open(io.BytesIO(png))
    assert image.size == size
    assert np.asarray(image.convert("L"), dtype=np.float32).var() > 10, "a blank figure"


@pytest.mark.slow
def test_page_renders_in_chromium_with_the_network_off(page, tmp_path):
    page_file = tmp_path / "dashboard.html"
    page_file.write_text(page, encoding="utf-8")
    attempted, errors = [], []
    with headless_chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.route("**/*", lambda route: _file_only(route, attempted))
        tab = context.new_page()
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        tab.goto(page_file.as_uri(), wait_until="load")
        for chart in CHART_IDS.values():
            tab.wait_for_selector(f"#{chart}.js-plotly-plot .main-svg", timeout=30_000)
        drawn = tab.evaluate(
            "ids => ids.map(id => { const chart = document.getElementById(id);"
            " const box = chart.getBoundingClientRect();"
            " return [id, chart._fullData.length, box.width, box.height]; })",
            list(CHART_IDS.values()),
        )
        tab.screenshot(path=str(artifact_path("dashboard.png")), full_page=True)
    assert attempted == [], f"the page tried the network: {attempted}"
    assert errors == []
    for chart, traces, width, height in drawn:
        assert traces > 0 and width > 300 and height > 200, f"{chart} did not render"


def _file_only(route, attempted: list[str]) -> None:
    url = route.request.url
    if url.startswith(("file:", "data:")):
        route.continue_()
    else:
        attempted.append(url)
        route.abort()


def test_a_hundred_lab_tests_fit_in_the_value_distribution_chart(analytics):
    """The tutorial's corpus has 100 test codes: 25 rows of small charts, which plotly must accept."""
    glucose = analytics["lab_results"].slice(0, 1).to_pylist()[0]
    many = [{**glucose, "observation_code": f"T{n:03d}", "observation_name": f"Test {n}"} for n in range(100)]
    tables_with_many = {**analytics, "lab_results": pa.Table.from_pylist(many, schema=analytics["lab_results"].schema)}
    page = build_dashboard_html(tables_with_many, None, None, {})
    assert "Test 99" in page


def test_colours_are_neither_words_nor_numbers_a_leak_check_could_take_for_an_identifier(page):
    """A named colour is a word ("white" is a family name); a hex code of digits alone ("#276419",
    from plotly's colour scales) reads as a number that a numeric patient ID can equal: at a
    million messages one did, and the reports' leak check failed on a colour."""
    import plotly.offline

    ours = page.replace(plotly.offline.get_plotlyjs(), "")
    assert not re.findall(r"#[0-9]{6}\b", ours)
    colours = re.findall(r'"(?:color|bgcolor|fillcolor|bordercolor|gridcolor|linecolor|zerolinecolor)":\s*"([^"]+)"', ours)
    assert colours, "the page should set colours"
    assert not [colour for colour in colours if colour.isalpha()]

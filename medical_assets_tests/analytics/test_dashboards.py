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
from medical_assets.analytics.dashboards import (
    CHART_IDS,
    MAX_PREVIEWS,
    PNG_SIZES,
    build_dashboard_html,
    build_png_figures,
)
from medical_assets.analytics.figures import DASHBOARD_FILE, REPORT_GROUPS
from medical_assets.dicom.deidentify import DEID_DICOM_IMAGES
from medical_assets.dicom.tables import DEID_DICOM_THUMBNAILS
from medical_assets_tests.browser import artifact_path, headless_chromium

METADATA = {
    "deid.profile": "safe_harbor",
    "deid.key_id": "k-2f9c41",
    "deid.suppression_threshold": "10",
    "medical_assets.run_id": "3c1e0b5a-run",
    "medical_assets.created_at": "2025-03-04T05:06:07Z",
}

# (facility, month, messages, admissions, discharges, lab_results, pharmacy_orders); None: suppressed
UTILIZATION = [
    ("ST_MARYS_HOSP", "2024-01", 4817, 312, 298, 2210, 640),
    ("ST_MARYS_HOSP", "2024-02", 4522, 287, 301, 2088, 612),
    ("ST_MARYS_HOSP", "2024-03", 4963, 330, 319, 2301, 655),
    ("CITY_GENERAL", "2024-01", 2391, 141, 137, 1023, 288),
    ("CITY_GENERAL", "2024-02", 2207, None, 0, 998, 270),  # admissions suppressed, a true zero of discharges
    ("CITY_GENERAL", "2024-03", 2450, 152, 149, 1110, 301),
    ("NORTHSIDE_CLINIC", "2024-01", 388, 23, 19, 160, None),
    ("NORTHSIDE_CLINIC", "2024-02", 402, 26, 22, 171, 44),
    ("NORTHSIDE_CLINIC", "2024-03", 377, 21, 24, 149, 39),
]


def _table(schema: pa.Schema, rows: list[dict]) -> pa.Table:
    for row in rows:
        row.setdefault("suppressed_cells", sum(value is None for value in row.values()))
    return pa.Table.from_pylist(rows, schema=schema)


def _utilization() -> pa.Table:
    names = ("sending_facility", "month", "messages", "admissions", "discharges", "lab_results", "pharmacy_orders")
    return _table(tables.HOSPITAL_UTILIZATION, [dict(zip(names, row)) for row in UTILIZATION])


def _demographics() -> pa.Table:
    counts = {"F": (412, 530, 688, 902, 764, 41), "M": (398, 471, 602, 877, 701, None), "U": (12, 0, 14, 19, 11, 0)}
    rows = [
        {"patient_gender": gender, "age_band": band, "patients": patients}
        for gender, values in counts.items()
        for band, patients in zip(("0-17", "18-29", "30-44", "45-64", "65-89", "90+"), values)
    ]
    return _table(tables.PATIENT_DEMOGRAPHICS, rows)


def _message_types() -> pa.Table:
    rows = [
        ("ADT^A01", 1102),
        ("ADT^A03", 1074),
        ("ADT^A08", 2931),
        ("ORU^R01", 12104),
        ("RDE^O11", 2853),
        ("ADT^A04", None),
    ]
    total = 20071
    return _table(
        tables.MESSAGE_TYPES,
        [
            {
                "message_type": kind,
                "hl7_version": "2.5.1",
                "messages": count,
                "share": None if count is None else count / total,
            }
            for kind, count in rows
        ],
    )


def _lab_results() -> pa.Table:
    # code, name, units, results, abnormal, p05, p25, median, p75, p95, mean
    rows = [
        ("2345-7", "Glucose", "mg/dL", 3120, 811, 72.0, 88.0, 101.0, 128.0, 212.0, 112.4),
        ("2823-3", "Potassium", "mmol/L", 2877, 402, 3.3, 3.8, 4.1, 4.5, 5.3, 4.15),
        ("718-7", "Hemoglobin", "g/dL", 2650, 538, 9.1, 11.8, 13.2, 14.6, 16.1, 13.0),
        ("2160-0", "Creatinine", "mg/dL", 2411, 365, 0.55, 0.74, 0.92, 1.21, 2.4, 1.07),
        ("2951-2", "Sodium", "mmol/L", 2398, 210, 131.0, 137.0, 139.0, 141.0, 145.0, 138.8),
        ("1988-5", "C reactive protein", "mg/L", None, None, None, None, None, None, None, None),
    ]
    return _table(
        tables.LAB_RESULTS,
        [
            {
                "observation_code": code,
                "observation_name": name,
                "units": units,
                "results": results,
                "abnormal_results": abnormal,
                "numeric_results": results,
                "abnormal_rate": None if abnormal is None else abnormal / results,
                "value_p05": p05,
                "value_p25": p25,
                "value_median": median,
                "value_p75": p75,
                "value_p95": p95,
                "value_mean": mean,
            }
            for code, name, units, results, abnormal, p05, p25, median, p75, p95, mean in rows
        ],
    )


def _pharmacy() -> pa.Table:
    rows = [
        ("00409-4888", "Heparin sodium", "IV", 733, 1),
        ("00409-4888", "Heparin sodium", "SC", 402, 1),
        ("00143-9876", "Ceftriaxone", "IV", 688, 2),
        ("00093-0311", "Metformin", "PO", 640, 3),
        ("00378-0018", "Furosemide", "PO", 301, 4),
        ("00378-0018", "Furosemide", "IV", 259, 4),
        ("00054-4297", "Ondansetron", "IV", 312, 5),
        ("00054-4297", "Ondansetron", "PO", None, None),
        ("50242-0134", "Onasemnogene abeparvovec", "IV", None, None),  # every count suppressed: never named
    ]
    return _table(
        tables.PHARMACY,
        [
            {"give_code": code, "give_name": name, "route": route, "orders": orders, "rank": rank}
            for code, name, route, orders, rank in rows
        ],
    )


def _imaging() -> pa.Table:
    rows = [
        ("CT", 58, 2940, 2940, 412.5, 611.0, -2048.0, 3071.0),
        ("MR", 31, 1876, 1876, 287.1, 301.9, 0.0, 4095.0),
        ("CR", 97, 143, 143, 1733.0, 802.4, 0.0, 4095.0),
        ("US", None, 14, 406, None, None, None, None),
    ]
    names = ("modality", "studies", "images", "frames", "pixel_mean_avg", "pixel_std_avg", "pixel_min", "pixel_max")
    return _table(tables.IMAGING, [dict(zip(names, row)) for row in rows])


def _transfer_syntaxes() -> pa.Table:
    rows = [
        ("CT", "1.2.840.10008.1.2.1", "Explicit VR Little Endian", 2811),
        ("CT", "1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order Prediction", 129),
        ("MR", "1.2.840.10008.1.2.1", "Explicit VR Little Endian", 1876),
        ("CR", "1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)", 143),
        ("US", "1.2.840.10008.1.2.5", "RLE Lossless", None),
    ]
    names = ("modality", "transfer_syntax_uid", "transfer_syntax_name", "images")
    return _table(tables.IMAGING_TRANSFER_SYNTAXES, [dict(zip(names, row)) for row in rows])


def _quality_files() -> pa.Table:
    rows = [
        ("f_9b1c2e77a0d4", "ST_MARYS_HOSP", 4817, 12, 12 / 4829, 0.97),
        ("f_41d0c5e2b913", "CITY_GENERAL", 2391, 118, 118 / 2509, 0.88),
        ("f_c07aa1f3e265", "NORTHSIDE_CLINIC", 388, None, None, 0.91),
        ("f_5e2d90b1c8aa", None, 0, 37, 1.0, None),
    ]
    names = ("source_file_token", "sending_facility", "messages", "errors", "error_rate", "mean_validation_score")
    return _table(tables.DATA_QUALITY_FILES, [dict(zip(names, row)) for row in rows])


def _quality_facilities() -> pa.Table:
    rows = [
        ("ST_MARYS_HOSP", 14302, 12, 12 / 14314, 0.97),
        ("CITY_GENERAL", 7048, 118, 118 / 7166, 0.88),
        ("NORTHSIDE_CLINIC", 1167, None, None, 0.91),
        (None, 0, 37, 1.0, None),
    ]
    names = ("sending_facility", "messages", "errors", "error_rate", "mean_validation_score")
    return _table(tables.DATA_QUALITY_FACILITIES, [dict(zip(names, row)) for row in rows])


@pytest.fixture
def analytics() -> dict[str, pa.Table]:
    built = {
        "hospital_utilization": _utilization(),
        "patient_demographics": _demographics(),
        "message_types": _message_types(),
        "lab_results": _lab_results(),
        "pharmacy": _pharmacy(),
        "imaging": _imaging(),
        "imaging_transfer_syntaxes": _transfer_syntaxes(),
        "data_quality_files": _quality_files(),
        "data_quality_facilities": _quality_facilities(),
    }
    assert set(built) == set(tables.ANALYTICS_TABLES)
    return built


def _uid(index: int) -> str:
    return f"2.25.{318274019283746501928374650192837 + index}"


def _phantom(index: int) -> np.ndarray:
    """A 64 x 64 image in [0, 1]: a bright disc off centre over a gradient, different per index."""
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    disc = ((x - 24 - index % 5 * 4) ** 2 + (y - 30 - index % 3 * 5) ** 2 < (10 + index % 4 * 3) ** 2).astype(
        np.float32
    )
    image = 0.35 * x / 63 + 0.6 * disc + 0.05 * np.sin(index + y / 5)
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


# (modality, burned_in_risk) of each de-identified image; the US one is not cleared for export
IMAGES = [("CT", None)] * 4 + [("MR", None)] * 3 + [("CR", None)] * 2 + [("US", "Burned In Annotation is YES")]


@pytest.fixture
def images() -> pa.Table:
    rows = [
        {
            "deid_file": f"{_uid(100)}/{_uid(200)}/{_uid(index)}.dcm",
            "sop_instance_uid": _uid(index),
            "study_instance_uid": _uid(100 + index // 3),
            "series_instance_uid": _uid(200 + index // 2),
            "patient_token": f"pt_7f3a9c{index:02d}e1",
            "modality": modality,
            "study_year": 2024,
            "rows": 512,
            "columns": 512,
            "burned_in_risk": risk,
        }
        for index, (modality, risk) in enumerate(IMAGES)
    ]
    return pa.Table.from_pylist(rows, schema=DEID_DICOM_IMAGES)


@pytest.fixture
def thumbnails() -> pa.Table:
    return _thumbnails(len(IMAGES))


def _thumbnails(count: int) -> pa.Table:
    pixels = np.stack([_phantom(index) for index in range(count)])
    return pa.table(
        {
            "sop_instance_uid": pa.array([_uid(index) for index in range(count)], pa.string()),
            "frame_index": pa.array([0] * count, pa.int32()),
            "thumbnail": pa.FixedShapeTensorArray.from_numpy_ndarray(pixels),
        },
        schema=DEID_DICOM_THUMBNAILS,
    )


@pytest.fixture
def page(analytics, thumbnails, images) -> str:
    return build_dashboard_html(analytics, thumbnails, images, METADATA)


def chart_data(page: str, chart: str) -> list[dict]:
    """The traces plotly draws in the chart with element id `chart`, as the page passes them."""
    call = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(chart) + r'",\s*', page)
    assert call, f"no chart {chart}"
    traces, _ = json.JSONDecoder().raw_decode(page, call.end())
    return traces


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
    labs = chart_data(page, "chart-labs")[0]
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
        [{"sop_instance_uid": _uid(index), "modality": "CT" if index else "MR"} for index in range(count)],
        schema=DEID_DICOM_IMAGES,
    )
    page = build_dashboard_html(analytics, _thumbnails(count), images, METADATA)
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
    assert set(first) == {"utilization.png", "demographics.png", "labs.png", "imaging.png", "dicom_preview.png"}
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

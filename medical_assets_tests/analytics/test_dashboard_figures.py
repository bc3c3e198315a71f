"""Dashboard figures a reader can trust at a glance: charts side by side share their rows, a note
stays inside its image, month labels clear the titles below them, and a chart with nothing to draw
says so in words instead of showing empty axes."""

import math

import pyarrow as pa
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from medical_assets.analytics import tables
from medical_assets.analytics.dashboard_html import build_dashboard_html
from medical_assets.analytics.figures_png import draw_figure
from medical_assets_tests.analytics.dashboard_samples import (
    METADATA,
    chart_data,
    chart_layout,
    lab_results_table,
    sample_analytics,
    utilization_table,
)
from medical_assets_tests.browser import artifact_path, headless_chromium

SUPPRESSED = "All counts are suppressed (counts from 1 to 10, and cells that would reveal them)."
ALL_ZERO = "No data: every count is zero."


@pytest.fixture
def analytics() -> dict[str, pa.Table]:
    return sample_analytics()


def _labs_with_a_suppressed_rate() -> pa.Table:
    """The sample lab table with the abnormal count of the second most frequent test suppressed."""
    rows = lab_results_table().to_pylist()
    for row in rows:
        if row["observation_name"] == "Potassium":
            row.update(abnormal_results=None, abnormal_rate=None, suppressed_cells=2)
    return pa.Table.from_pylist(rows, schema=tables.LAB_RESULTS)


def test_the_two_lab_bar_charts_of_the_page_share_their_rows(analytics):
    analytics["lab_results"] = _labs_with_a_suppressed_rate()
    page = build_dashboard_html(analytics, None, None, METADATA)
    volumes, rates = chart_data(page, "chart-labs")
    assert volumes["y"] == rates["y"] and "Potassium (mmol/L)" in rates["y"]
    rate_of = dict(zip(rates["y"], rates["x"]))
    assert rate_of["Potassium (mmol/L)"] is None  # left blank: neither dropped nor drawn as zero
    assert rate_of["Glucose (mg/dL)"] == pytest.approx(811 / 3120)
    assert dict(zip(volumes["y"], volumes["x"]))["Potassium (mmol/L)"] == 2877
    layout = chart_layout(page, "chart-labs")
    assert layout["yaxis"]["categoryarray"] == layout["yaxis2"]["categoryarray"] == volumes["y"]
    assert "Abnormal rate suppressed for 1 test shown: its row is left blank, not drawn as zero." in page


def test_the_two_lab_bar_charts_of_the_png_share_their_rows(analytics):
    analytics["lab_results"] = _labs_with_a_suppressed_rate()
    figure = draw_figure("labs.png", analytics, None, None)
    FigureCanvasAgg(figure).draw()
    by_title = {axes.get_title(): axes for axes in figure.axes}
    volumes, rates = by_title["Results per test"], by_title["Abnormal rate per test (%)"]
    rows = _tick_rows(volumes)
    assert rows == _tick_rows(rates) and "Potassium (mmol/L)" in rows
    assert _bars(volumes)[rows["Potassium (mmol/L)"]] == 2877
    assert rows["Potassium (mmol/L)"] not in _bars(rates)
    assert _bars(rates)[rows["Glucose (mg/dL)"]] == pytest.approx(100 * 811 / 3120)
    assert any("Abnormal rate suppressed for 1 test" in text for text in _texts(figure))


def _tick_rows(axes) -> dict[str, float]:
    """The row of each tick label of the y axis, shown or not (the right chart hides the shared labels)."""
    return {tick.label1.get_text(): float(tick.get_loc()) for tick in axes.yaxis.get_major_ticks()}


def _bars(axes) -> dict[float, float]:
    """Width of each drawn horizontal bar by the row it sits on."""
    return {
        float(bar.get_y() + bar.get_height() / 2): bar.get_width()
        for bar in axes.patches
        if math.isfinite(bar.get_width())
    }


def _many_facilities(count: int) -> pa.Table:
    """Two years of months for `count` facilities with long names, every third cell suppressed."""
    rows = []
    for facility in range(count):
        for month in range(24):
            counts = [None if (facility + month + measure) % 3 == 0 else 100 + 7 * month for measure in range(5)]
            names = ("messages", "admissions", "discharges", "lab_results", "pharmacy_orders")
            rows.append(
                {
                    "sending_facility": f"REGIONAL_MEDICAL_CENTRE_{facility:02d}",
                    "month": f"{2023 + month // 12}-{month % 12 + 1:02d}",
                    **dict(zip(names, counts)),
                }
            )
    return pa.Table.from_pylist(rows, schema=tables.HOSPITAL_UTILIZATION)


@pytest.mark.parametrize(
    ("name", "case"),
    [
        ("utilization.png", "sample"),
        ("utilization.png", "forty facilities"),
        ("labs.png", "suppressed rate"),
        ("imaging_workload.png", "sample"),
        ("demographics.png", "sample"),
        ("demographics.png", "a note wider than the image"),
    ],
)
def test_a_footnote_lies_inside_the_image_clear_of_the_charts(analytics, name, case):
    if case == "forty facilities":
        analytics["hospital_utilization"] = _many_facilities(40)
    if case == "suppressed rate":
        analytics["lab_results"] = _labs_with_a_suppressed_rate()
    threshold = 10**250 if case == "a note wider than the image" else 10
    figure = draw_figure(name, analytics, None, None, suppression_threshold=threshold)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    notes = [text for text in figure.texts if "suppressed" in text.get_text()]
    assert len(notes) == 1
    extent = notes[0].get_window_extent(renderer)
    assert extent.x0 >= 0 and extent.y0 >= 0
    assert extent.x1 <= figure.bbox.width and extent.y1 <= figure.bbox.height
    for axes in figure.axes:
        assert not extent.overlaps(axes.get_tightbbox(renderer)), axes.get_title()


@pytest.mark.slow
def test_month_labels_of_the_page_clear_the_titles_of_the_row_below(analytics, tmp_path):
    analytics["hospital_utilization"] = _many_facilities(4)
    page_file = tmp_path / "dashboard.html"
    page_file.write_text(build_dashboard_html(analytics, None, None, METADATA), encoding="utf-8")
    with headless_chromium() as browser:
        tab = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        tab.goto(page_file.as_uri(), wait_until="load")
        tab.wait_for_selector("#chart-utilization .main-svg", timeout=30_000)
        labels, titles = tab.evaluate(
            "() => { const chart = document.getElementById('chart-utilization');"
            " const boxes = selector => [...chart.querySelectorAll(selector)].map(element => {"
            " const box = element.getBoundingClientRect(); return [box.left, box.top, box.right, box.bottom]; });"
            " return [boxes('.xaxislayer-above text'), boxes('.annotation-text')]; }"
        )
        tab.locator("#chart-utilization").screenshot(path=str(artifact_path("utilization_chart.png")))
    assert len(labels) >= 5 * 6 and len(titles) == 5
    overlaps = [(label, title) for label in labels for title in titles if _intersect(label, title)]
    assert overlaps == []


def _intersect(one, other) -> bool:
    return one[0] < other[2] and other[0] < one[2] and one[1] < other[3] and other[1] < one[3]


def _every_count(analytics: dict[str, pa.Table], value) -> dict[str, pa.Table]:
    """Each table with every number in it (counts and what depends on them) set to `value`."""
    changed = {}
    for name, table in analytics.items():
        numbers = [
            field.name
            for field in table.schema
            if (pa.types.is_integer(field.type) or pa.types.is_floating(field.type)) and field.name != "suppressed_cells"
        ]
        rows = [{**row, **dict.fromkeys(numbers, value)} for row in table.to_pylist()]
        changed[name] = pa.Table.from_pylist(rows, schema=table.schema)
    return changed


@pytest.mark.parametrize(("value", "sentence", "charts"), [(None, SUPPRESSED, 9), (0, ALL_ZERO, 8)])
def test_a_page_with_every_count_suppressed_or_zero_says_so(analytics, value, sentence, charts):
    page = build_dashboard_html(_every_count(analytics, value), None, None, METADATA)
    assert "Plotly.newPlot" not in page
    assert page.count(sentence) == charts
    if value is None:
        for label in ("ST_MARYS_HOSP", "Glucose", "Heparin", "Female", "ADT^A08", "Explicit VR", "f_9b1c2e77a0d4"):
            assert label not in page
    else:
        assert "No file has a parse error." in page


@pytest.mark.parametrize(("value", "sentence"), [(None, SUPPRESSED), (0, ALL_ZERO), ("empty", "yet")])
@pytest.mark.parametrize("name", ["utilization.png", "demographics.png", "labs.png", "imaging_workload.png"])
def test_a_png_with_every_count_suppressed_zero_or_none_says_so(analytics, name, value, sentence):
    if value == "empty":
        drawn = {table: schema.empty_table() for table, schema in tables.ANALYTICS_TABLES.items()}
    else:
        drawn = _every_count(analytics, value)
    figure = draw_figure(name, drawn, None, None)
    assert any(sentence in text for text in _texts(figure))
    assert not [axes for axes in figure.axes if axes.axison or axes.lines or axes.patches or axes.collections]
    assert all(axes.get_legend() is None for axes in figure.axes)


def test_a_utilization_measure_whose_every_count_is_suppressed_says_so(analytics):
    rows = utilization_table().to_pylist()
    for row in rows:
        row["pharmacy_orders"] = None
    analytics["hospital_utilization"] = pa.Table.from_pylist(rows, schema=tables.HOSPITAL_UTILIZATION)
    page = build_dashboard_html(analytics, None, None, METADATA)
    assert not [trace for trace in chart_data(page, "chart-utilization") if trace["xaxis"] == "x5"]
    notes = chart_layout(page, "chart-utilization")["annotations"]
    said = [note for note in notes if note["text"] == "All counts are suppressed."]
    assert [(note["xref"], note["yref"]) for note in said] == [("x5 domain", "y5 domain")]
    figure = draw_figure("utilization.png", analytics, None, None)
    pharmacy = next(axes for axes in figure.axes if axes.get_title() == "Pharmacy orders (RXE)")
    assert not pharmacy.axison and not pharmacy.lines
    assert [text.get_text() for text in pharmacy.texts] == ["All counts are suppressed."]


def _texts(figure) -> list[str]:
    """Every text drawn in `figure`, its subfigures and axes, with wrapped lines joined again."""
    artists = list(figure.texts)
    for subfigure in figure.subfigs:
        artists += subfigure.texts
    for axes in figure.axes:
        artists += axes.texts
    return [artist.get_text().replace("\n", " ") for artist in artists]

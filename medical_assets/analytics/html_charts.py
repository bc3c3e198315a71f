"""The plotly charts of the HTML dashboard's HL7 sections, one function per section body, and the
helpers every section uses: each body is a fragment of markup, the chart's div and script and the
notes under it, or a sentence when there is nothing to draw."""

from __future__ import annotations

import functools
import html
import math
import re
from collections.abc import Mapping

import plotly.graph_objects as go
import plotly.io as pio
import pyarrow as pa
from matplotlib.colors import CSS4_COLORS, to_rgb
from plotly.subplots import make_subplots

from medical_assets.analytics import chart_data as data

# Element ids of the HTML charts, by section, in page order.
CHART_IDS = {
    "utilization": "chart-utilization",
    "demographics": "chart-demographics",
    "message_types": "chart-message-types",
    "labs": "chart-labs",
    "lab_values": "chart-lab-values",
    "pharmacy": "chart-pharmacy",
    "imaging": "chart-imaging",
    "pixel_statistics": "chart-pixel-statistics",
    "transfer_syntaxes": "chart-transfer-syntaxes",
    "quality_facilities": "chart-quality-facilities",
    "quality_files": "chart-quality-files",
    "dicom_preview": "chart-dicom-preview",
}

_FONT = "Liberation Sans, DejaVu Sans, Arial, sans-serif"
_CONFIG = {"displaylogo": False, "responsive": True}
_HEX_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_UTILIZATION_HEIGHT = 780
# Room between the two rows of utilization charts for the upper row's slanted month labels and
# the lower row's titles, as a fraction of the plotting area.
_UTILIZATION_SPACING = 130 / (_UTILIZATION_HEIGHT - 90 - 50)


def utilization_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    rows = data.rows_of(analytics, "hospital_utilization")
    empty = data.nothing_to_draw(
        rows, data.UTILIZATION_MEASURES, suppressed, "No HL7 messages yet: the utilization table is empty."
    )
    if empty:
        return empty_html(empty)
    drawn = data.utilization(rows)
    figure = make_subplots(
        rows=2, cols=3, subplot_titles=list(data.UTILIZATION_MEASURES.values()), vertical_spacing=_UTILIZATION_SPACING
    )
    in_legend: set[str] = set()
    for position, measure in enumerate(data.UTILIZATION_MEASURES):
        row, col = position // 3 + 1, position % 3 + 1
        series = drawn.series[measure]
        if not series:
            _say_in_subplot(figure, position + 1, data.nothing_to_draw(rows, [measure]))
        for facility, values in series.items():
            figure.add_trace(
                go.Scatter(
                    x=drawn.months,
                    y=values,
                    name=facility,
                    legendgroup=facility,
                    showlegend=facility not in in_legend,
                    mode="lines+markers",
                    line_color=_colour(drawn.facilities.index(facility)),
                    hovertemplate=f"{html.escape(facility)}<br>%{{x}}: %{{y}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
            in_legend.add(facility)
    # Slanted and thinned, the month labels stay within the room left above the next row's titles.
    figure.update_xaxes(type="category", tickangle=-45, tickfont_size=10, nticks=13)
    figure.update_yaxes(rangemode="tozero")
    figure.update_layout(height=_UTILIZATION_HEIGHT, title="Per facility and month")
    cells = data.suppressed_cells(rows, data.UTILIZATION_MEASURES)
    return chart_html(figure, "utilization", top=90) + note_html(cells, suppressed)


def demographics_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    rows = data.rows_of(analytics, "patient_demographics")
    empty = data.nothing_to_draw(rows, ["patients"], suppressed, "No patients yet: the demographics table is empty.")
    if empty:
        return empty_html(empty)
    bands, series = data.patients_by_gender(rows)
    figure = go.Figure([go.Bar(x=bands, y=values, name=gender) for gender, values in series.items()])
    figure.update_layout(
        height=420,
        barmode="group",
        title="Patients by gender and age band",
        xaxis_title="Age band (at the latest message)",
        yaxis_title="Patients",
    )
    cells = data.suppressed_cells(rows, ["patients"])
    return chart_html(figure, "demographics") + note_html(cells, suppressed)


def message_types_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    rows = data.rows_of(analytics, "message_types")
    no_rows = "No HL7 messages yet: the message-type table is empty."
    empty = data.nothing_to_draw(rows, ["messages"], suppressed, no_rows)
    if empty:
        return empty_html(empty)
    shown = list(reversed(data.ranked(rows, "messages")))
    figure = go.Figure(
        go.Bar(
            y=[data.message_type_label(row) for row in shown],
            x=[row["messages"] for row in shown],
            orientation="h",
            text=[data.percent(row.get("share")) for row in shown],
            textposition="auto",
            hovertemplate="%{y}: %{x} messages (%{text})<extra></extra>",
        )
    )
    figure.update_layout(
        height=max(300, 32 * len(shown) + 120), title="Messages by type and HL7 version", xaxis_title="Messages"
    )
    cells = data.suppressed_cells(rows, ["messages"])
    return chart_html(figure, "message_types") + note_html(cells, suppressed)


def labs_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    rows = data.rows_of(analytics, "lab_results")
    empty = data.nothing_to_draw(rows, ["results"], suppressed, "No lab results yet: the lab table is empty.")
    if empty:
        return empty_html(empty)
    bars = data.lab_bars(rows)
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["Results per test", "Abnormal rate per test"],
        shared_yaxes=True,
        horizontal_spacing=0.06,
    )
    figure.add_trace(
        go.Bar(
            y=bars.tests,
            x=bars.results,
            orientation="h",
            name="results",
            hovertemplate="%{y}: %{x} results<extra></extra>",
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Bar(
            y=bars.tests,
            x=bars.abnormal_rates,
            orientation="h",
            name="abnormal rate",
            marker_color="#d62728",
            hovertemplate="%{y}: %{x:.1%} abnormal<extra></extra>",
        ),
        row=1,
        col=2,
    )
    if bars.rates_missing == len(bars.tests):
        _say_in_subplot(figure, 2, "Every abnormal rate is suppressed.")
    figure.update_yaxes(type="category", categoryorder="array", categoryarray=bars.tests)
    figure.update_xaxes(tickformat=".0%", row=1, col=2)
    figure.update_layout(
        height=max(320, 28 * len(bars.tests) + 140), showlegend=False, title="Volume and abnormal rate"
    )
    notes = note_html(data.suppressed_cells(rows, data.LAB_COUNTS), suppressed)
    if bars.rates_missing:
        notes += f'<p class="note">{html.escape(data.rates_missing_sentence(bars.rates_missing))}</p>'
    return chart_html(figure, "labs", top=90) + notes + _lab_values_html(rows)


def pharmacy_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    rows = data.rows_of(analytics, "pharmacy")
    empty = data.nothing_to_draw(rows, ["orders"], suppressed, "No pharmacy orders yet: the pharmacy table is empty.")
    if empty:
        return empty_html(empty)
    medications = data.top_medications(rows)
    series = data.pivot(rows, medications, data.route, data.medication, "orders")
    figure = go.Figure(
        [go.Bar(y=medications[::-1], x=values[::-1], name=route, orientation="h") for route, values in series.items()]
    )
    figure.update_layout(
        height=max(320, 28 * len(medications) + 140),
        barmode="stack",
        title=f"Top {len(medications)} medications by orders, by route",
        xaxis_title="Orders",
        legend_title="Route",
    )
    cells = data.suppressed_cells(rows, ["orders"])
    return chart_html(figure, "pharmacy") + note_html(cells, suppressed)


def quality_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    facilities = _quality_facilities_html(data.rows_of(analytics, "data_quality_facilities"), suppressed)
    return facilities + _quality_files_html(data.rows_of(analytics, "data_quality_files"), suppressed)


def empty_html(message: str) -> str:
    return f'<p class="empty">{html.escape(message)}</p>'


def note_html(cells: int, suppressed: str) -> str:
    if not cells:
        return ""
    return f'<p class="note">{html.escape(data.suppressed_sentence(cells, suppressed))}</p>'


def chart_html(figure: go.Figure, key: str, top: int = 60) -> str:
    """The chart's div and script; `top` is the margin above the plot, wider when subplots have titles."""
    figure.update_layout(
        template=_template(),
        font_family=_FONT,
        margin={"l": 60, "r": 20, "t": top, "b": 50},
        legend_traceorder="normal",
    )
    return pio.to_html(figure, full_html=False, include_plotlyjs=False, div_id=CHART_IDS[key], config=_CONFIG)


def _colour(index: int) -> str:
    return data.COLOURS[index % len(data.COLOURS)]


def _say_in_subplot(figure: go.Figure, subplot: int, message: str) -> None:
    """Writes `message` in the middle of subplot number `subplot` (1 first) and hides its empty axes."""
    suffix = "" if subplot == 1 else str(subplot)
    figure.add_annotation(
        text=html.escape(message),
        xref=f"x{suffix} domain",
        yref=f"y{suffix} domain",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 14, "color": "#7b8794"},
    )
    figure.update_layout({f"xaxis{suffix}": {"visible": False}, f"yaxis{suffix}": {"visible": False}})


def _lab_values_html(rows: list[dict]) -> str:
    numeric = data.numeric_lab_tests(rows)
    if not numeric:
        return empty_html("No numeric lab values to show a distribution of.")
    columns = min(4, len(numeric))
    rows_of_charts = math.ceil(len(numeric) / columns)
    height = 260 * rows_of_charts + 80
    figure = make_subplots(
        rows=rows_of_charts,
        cols=columns,
        subplot_titles=[data.lab_label(row) for row in numeric],
        # About 60 px between rows, whatever their number (plotly refuses a spacing that, times
        # the rows, exceeds the figure: 100 tests made 25 rows).
        vertical_spacing=min(0.12, 60 / height),
    )
    for position, row in enumerate(numeric):
        figure.add_trace(
            go.Box(
                x=[data.lab_label(row)],
                q1=[row.get("value_p25")],
                median=[row["value_median"]],
                q3=[row.get("value_p75")],
                lowerfence=[row.get("value_p05")],
                upperfence=[row.get("value_p95")],
                mean=[row.get("value_mean")],
                name=data.lab_label(row),
                marker_color=_colour(position),
            ),
            row=position // columns + 1,
            col=position % columns + 1,
        )
    figure.update_xaxes(showticklabels=False)
    figure.update_layout(
        height=height,
        showlegend=False,
        title="Value distribution per test: whiskers 5th-95th percentile, box quartiles, dashed line mean",
    )
    figure.update_traces(boxmean=True)
    return chart_html(figure, "lab_values", top=90)


def _quality_facilities_html(rows: list[dict], suppressed: str) -> str:
    shown = ["error_rate", "mean_validation_score"]
    empty = data.nothing_to_draw(rows, shown, suppressed, "No data-quality figures per facility yet.")
    if empty:
        return empty_html(empty)
    cells = data.suppressed_cells(rows, data.QUALITY_COUNTS)
    rows = data.published(rows, shown)
    facilities = [data.quality_facility(row) for row in rows]
    figure = make_subplots(rows=1, cols=2, subplot_titles=["Parse-error rate", "Mean validation score"])
    figure.add_trace(
        go.Bar(
            x=facilities,
            y=[row.get("error_rate") for row in rows],
            name="error rate",
            marker_color="#d62728",
            hovertemplate="%{x}: %{y:.2%}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Bar(
            x=facilities,
            y=[row.get("mean_validation_score") for row in rows],
            name="validation score",
            marker_color="#2ca02c",
            hovertemplate="%{x}: %{y:.3f}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    figure.update_yaxes(tickformat=".1%", rangemode="tozero", row=1, col=1)
    figure.update_yaxes(range=[0, 1], row=1, col=2)
    figure.update_layout(height=400, showlegend=False, title="Per sending facility")
    return chart_html(figure, "quality_facilities", top=90) + note_html(cells, suppressed)


def _quality_files_html(rows: list[dict], suppressed: str) -> str:
    empty = data.nothing_to_draw(
        rows, ["error_rate"], suppressed, "No data-quality figures per file yet.", "No file has a parse error."
    )
    if empty:
        return empty_html(empty)
    worst = data.worst_files(rows)
    figure = go.Figure(
        go.Bar(
            y=[data.text(row.get("source_file_token"), "no token") for row in worst],
            x=[row["error_rate"] for row in worst],
            orientation="h",
            marker_color="#d62728",
            customdata=[data.facility(row) for row in worst],
            hovertemplate="file %{y} (%{customdata}): %{x:.2%}<extra></extra>",
        )
    )
    figure.update_xaxes(tickformat=".1%", rangemode="tozero")
    figure.update_layout(
        height=max(320, 24 * len(worst) + 140),
        title=f"Parse-error rate of the {len(worst)} worst source files (keyed file tokens)",
    )
    cells = data.suppressed_cells(rows, data.QUALITY_COUNTS)
    return chart_html(figure, "quality_files") + note_html(cells, suppressed)


@functools.cache
def _template() -> go.layout.Template:
    """plotly_white with its colours written as rgb(r,g,b). The leak check reads every word of the
    page: a named colour is a word ("white" is also a family name), and a hex code of digits alone
    ("#276419", in plotly's colour scales) reads as a number that a numeric patient ID can equal."""

    def rgb_colours(value):
        if isinstance(value, dict):
            return {key: rgb_colours(item) for key, item in value.items()}
        if isinstance(value, list):
            return [rgb_colours(item) for item in value]
        if isinstance(value, str) and (value in CSS4_COLORS or _HEX_COLOUR.match(value)):
            red, green, blue = (round(channel * 255) for channel in to_rgb(value))
            return f"rgb({red},{green},{blue})"
        return value

    return go.layout.Template(rgb_colours(pio.templates["plotly_white"].to_plotly_json()))

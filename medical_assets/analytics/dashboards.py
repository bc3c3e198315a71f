"""Dashboards of the de-identified zone: one interactive HTML page (plotly) and PNG figures (matplotlib).

Everything drawn comes from the analytics tables (`medical_assets.analytics.tables`, small cells
already suppressed) and from the thumbnails of the DICOM images cleared for export. No identifier
is drawn: a preview is labelled by its modality and a short index, never by its UID.

A suppressed count (null) is never drawn as zero: charts leave a gap, and a note under the chart
says how many cells were suppressed, never which: no label (facility, medication, test, month) is
written for a suppressed cell, in a note, a legend, an axis or hover text, and a category whose
every count is suppressed is not drawn at all. An empty table (a site that sends no DICOM yet) gives a section that
says so. The HTML page inlines plotly.js and uses no font, style sheet or image from elsewhere, so
it opens and renders offline.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline
import pyarrow as pa
from matplotlib.colors import CSS4_COLORS, to_rgb
from matplotlib.figure import Figure
from PIL import Image
from plotly.subplots import make_subplots

from medical_assets.analytics.figures import PNG_DPI, PNG_SIZES
from medical_assets.analytics.suppression import DEFAULT_THRESHOLD as DEFAULT_SUPPRESSION_THRESHOLD

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

MAX_PREVIEWS = 24  # thumbnails drawn; more would make the page heavy without telling more
HISTOGRAM_BINS = 32
MAX_BARS = 25  # rows of a ranked bar chart (medications, files)
_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

AGE_BANDS = ("0-17", "18-29", "30-44", "45-64", "65-89", "90+")
GENDERS = {"F": "Female", "M": "Male", "O": "Other", "U": "Unknown"}
_LAB_COUNTS = ("results", "abnormal_results")
_QUALITY_COUNTS = ("messages", "errors")
_IMAGING_COUNTS = ("studies", "images", "frames")
UTILIZATION_MEASURES = {
    "messages": "Messages",
    "admissions": "Admissions (ADT^A01)",
    "discharges": "Discharges (ADT^A03)",
    "lab_results": "Lab results (OBX)",
    "pharmacy_orders": "Pharmacy orders (RXE)",
}

# Labels of the compliance metadata, by the last dotted part of its key (`deid.key_id` -> key_id).
METADATA_LABELS = {
    "profile": "De-identification profile",
    "standard": "Standard",
    "key_id": "Key id",
    "suppression_threshold": "Suppression threshold",
    "code_version": "Code version",
    "run_id": "Run id",
    "created": "Created",
    "created_at": "Created",
    "created_time": "Created",
}


def build_dashboard_html(
    analytics: Mapping[str, pa.Table],
    thumbnails: pa.Table | None,
    images: pa.Table | None,
    metadata: Mapping[str, str],
) -> str:
    """The dashboard as one self-contained HTML page with plotly.js inlined.

    `analytics` maps table names of `ANALYTICS_TABLES` to their tables (a missing one counts as
    empty); `thumbnails` has the `DEID_DICOM_THUMBNAILS` schema and `images` the
    `DEID_DICOM_IMAGES` one (None: no DICOM); `metadata` is the compliance metadata shown in the
    header. The suppression threshold in the labels is read from the metadata key ending in
    `threshold`, else DEFAULT_SUPPRESSION_THRESHOLD.
    """
    threshold = _threshold(metadata)
    suppressed = _suppressed_label(threshold)
    sections = [
        _section("utilization", "Hospital utilization", _utilization_html(analytics, suppressed)),
        _section("demographics", "Patient demographics", _demographics_html(analytics, suppressed)),
        _section("message-types", "Message types", _message_types_html(analytics, suppressed)),
        _section("labs", "Lab results", _labs_html(analytics, suppressed)),
        _section("pharmacy", "Pharmacy", _pharmacy_html(analytics, suppressed)),
        _section("imaging", "Imaging", _imaging_html(analytics, suppressed)),
        _section("data-quality", "Data quality", _quality_html(analytics, suppressed)),
        _section("dicom-preview", "De-identified DICOM preview", _preview_html(_previews(thumbnails, images))),
    ]
    return _page(_header_html(metadata, threshold), sections)


def build_png_figures(
    analytics: Mapping[str, pa.Table],
    thumbnails: pa.Table | None,
    images: pa.Table | None,
    *,
    suppression_threshold: int = DEFAULT_SUPPRESSION_THRESHOLD,
    only: Iterable[str] | None = None,
) -> dict[str, bytes]:
    """The PNG figures by file name (the keys of PNG_SIZES, or those of them in `only`), rendered
    with Agg at PNG_DPI.

    The same inputs give the same bytes: no timestamp or software version is written.
    """
    suppressed = _suppressed_label(suppression_threshold)
    drawings = {
        "utilization.png": lambda: _utilization_png(analytics, suppressed),
        "demographics.png": lambda: _demographics_png(analytics, suppressed),
        "labs.png": lambda: _labs_png(analytics, suppressed),
        "imaging.png": lambda: _imaging_png(analytics, suppressed),
        "dicom_preview.png": lambda: _preview_png(_previews(thumbnails, images)),
    }
    wanted = set(drawings if only is None else only)
    unknown = wanted - set(drawings)
    if unknown:
        raise ValueError(f"no such figure: {', '.join(sorted(unknown))}; the figures are {', '.join(drawings)}")
    return {name: _png_bytes(draw()) for name, draw in drawings.items() if name in wanted}


# Shared: rows, suppression and previews


def _rows(analytics: Mapping[str, pa.Table], name: str) -> list[dict]:
    table = analytics.get(name)
    return table.to_pylist() if table is not None else []


def _threshold(metadata: Mapping[str, str]) -> int:
    for key, value in metadata.items():
        if key.rsplit(".", 1)[-1].endswith("threshold"):
            try:
                return int(value)
            except (TypeError, ValueError):
                break
    return DEFAULT_SUPPRESSION_THRESHOLD


def _suppressed_label(threshold: int) -> str:
    return f"(counts from 1 to {threshold}, and cells that would reveal them)"


def _suppressed_cells(rows: Sequence[dict], columns: Iterable[str]) -> int:
    """How many counts of `columns` are null (suppressed): the notes say how many, never which."""
    columns = list(columns)
    return sum(row.get(column) is None for row in rows for column in columns)


def _published(rows: Sequence[dict], columns: Iterable[str]) -> list[dict]:
    """The rows with at least one of `columns` published and not zero: a row whose every count is
    suppressed gives no label (facility, medication, month) to a chart, nor does one whose only
    published counts are zeros beside suppressed ones (a facility with 3 messages, 0 lab results)."""
    columns = list(columns)
    return [row for row in rows if any(row.get(column) not in (None, 0) for column in columns)]


def _pivot(
    rows: Sequence[dict],
    index: Sequence[str],
    series_of: Callable[[dict], str],
    index_of: Callable[[dict], str],
    value: str,
) -> dict[str, list]:
    """For each series in first-seen order, its values along `index`; None where suppressed or absent.
    Only a series with a published count other than zero is drawn: no legend entry or hover text
    names a category whose counts are all suppressed (or zeros beside suppressed ones)."""
    series: dict[str, dict[str, object]] = {}
    for row in rows:
        if row.get(value) is not None:
            series.setdefault(series_of(row), {})[index_of(row)] = row[value]
    return {
        name: [cells.get(position) for position in index]
        for name, cells in series.items()
        if any(cells.get(position) for position in index)
    }


def _text(value: object, missing: str = "not recorded") -> str:
    return missing if value is None or value == "" else str(value)


def _facility(row: dict) -> str:
    return _text(row.get("sending_facility"), "no facility")


def _facility_month(row: dict) -> str:
    return f"{_facility(row)} {_text(row.get('month'))}"


def _gender(row: dict) -> str:
    code = row.get("patient_gender")
    return GENDERS.get(code, _text(code))


def _gender_age(row: dict) -> str:
    return f"{_gender(row)} {_text(row.get('age_band'))}"


def _age_bands(rows: Sequence[dict]) -> list[str]:
    present = {_text(row.get("age_band")) for row in _published(rows, ["patients"])}
    return [band for band in AGE_BANDS if band in present] + sorted(present - set(AGE_BANDS))


def _lab_label(row: dict) -> str:
    name = row.get("observation_name") or row.get("observation_code") or "unnamed test"
    return f"{name} ({row['units']})" if row.get("units") else name


def _message_type_label(row: dict) -> str:
    return f"{_text(row.get('message_type'), 'no type')} v{_text(row.get('hl7_version'), '?')}"


def _medication(row: dict) -> str:
    return row.get("give_name") or row.get("give_code") or "unnamed medication"


def _modality(row: dict) -> str:
    return _text(row.get("modality"), "no modality")


def _ranked(rows: Sequence[dict], value: str) -> list[dict]:
    """Rows with a count, largest first; ties keep the table's order, so the charts are stable."""
    return sorted((row for row in rows if row.get(value) is not None), key=lambda row: -row[value])


@dataclass(frozen=True)
class _Preview:
    label: str  # modality and index, e.g. "CT 2": never the UID
    pixels: np.ndarray  # THUMBNAIL_SIZE x THUMBNAIL_SIZE in [0, 1]
    histogram: np.ndarray  # pixel counts in HISTOGRAM_BINS bins over [0, 1]


def _previews(thumbnails: pa.Table | None, images: pa.Table | None) -> list[_Preview]:
    """Up to MAX_PREVIEWS thumbnails, taken in turn from each modality so every modality shows.

    With `images`, a thumbnail is drawn only when its image row is there and names no burned-in
    risk: the thumbnails table should hold cleared images only, and this keeps a stray one out.
    """
    if thumbnails is None or thumbnails.num_rows == 0:
        return []
    uids = thumbnails.column("sop_instance_uid").to_pylist()
    pixels = thumbnails.column("thumbnail").combine_chunks().to_numpy_ndarray()
    cleared = _cleared_modalities(images)
    by_modality: dict[str, list[tuple[str, np.ndarray]]] = {}
    for uid, image in zip(uids, pixels):
        if cleared is not None and uid not in cleared:
            continue
        modality = cleared[uid] if cleared is not None else "image"
        by_modality.setdefault(modality, []).append((uid or "", image))
    chosen = _round_robin(
        {modality: sorted(items, key=lambda item: item[0]) for modality, items in sorted(by_modality.items())}
    )
    return [
        _preview(f"{modality} {index}", image)
        for modality, items in chosen.items()
        for index, (_, image) in enumerate(items, start=1)
    ]


def _cleared_modalities(images: pa.Table | None) -> dict[str, str] | None:
    if images is None:
        return None
    columns = [name for name in ("sop_instance_uid", "modality", "burned_in_risk") if name in images.column_names]
    return {
        row["sop_instance_uid"]: _modality(row)
        for row in images.select(columns).to_pylist()
        if row.get("sop_instance_uid") and row.get("burned_in_risk") is None
    }


def _round_robin(groups: dict[str, list]) -> dict[str, list]:
    chosen: dict[str, list] = {name: [] for name in groups}
    taken = 0
    for position in range(max((len(items) for items in groups.values()), default=0)):
        for name, items in groups.items():
            if position < len(items) and taken < MAX_PREVIEWS:
                chosen[name].append(items[position])
                taken += 1
    return {name: items for name, items in chosen.items() if items}


def _preview(label: str, image: np.ndarray) -> _Preview:
    pixels = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float32)), 0.0, 1.0)
    histogram, _ = np.histogram(pixels, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    return _Preview(label, pixels, histogram)


def _grid_shape(count: int) -> tuple[int, int]:
    """Rows and columns of a preview grid: a little wider than square, as an image sits on its histogram."""
    columns = min(count, 6, math.ceil(math.sqrt(count * 1.3)))
    return math.ceil(count / columns), columns


# HTML page


_CONFIG = {"displaylogo": False, "responsive": True}
_FONT = "Liberation Sans, DejaVu Sans, Arial, sans-serif"

_STYLE = """
body { font-family: Liberation Sans, DejaVu Sans, Arial, sans-serif; margin: 0; color: #1f2933; background: #f5f7fa; }
header { background: #1f3a5f; color: #fff; padding: 16px 32px; }
header h1 { margin: 0 0 8px; font-size: 22px; }
header dl { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 0; font-size: 13px; }
header dt { opacity: 0.8; }
header dd { margin: 0; font-family: DejaVu Sans Mono, monospace; }
header p { margin: 8px 0 0; font-size: 13px; }
nav { padding: 8px 32px; background: #e4e9f0; font-size: 14px; }
nav a { margin-right: 16px; color: #1f3a5f; }
main { max-width: 1280px; margin: 0 auto; padding: 8px 32px 32px; }
section { background: #fff; border-radius: 6px; padding: 12px 20px; margin: 16px 0; box-shadow: 0 1px 2px rgba(0,0,0,0.08); }
section h2 { font-size: 18px; margin: 4px 0 8px; }
.note { font-size: 13px; color: #52606d; }
.empty { font-size: 15px; color: #7b8794; font-style: italic; padding: 24px 0; }
"""

_SECTION_TITLES = {
    "utilization": "Utilization",
    "demographics": "Demographics",
    "message-types": "Message types",
    "labs": "Labs",
    "pharmacy": "Pharmacy",
    "imaging": "Imaging",
    "data-quality": "Data quality",
    "dicom-preview": "DICOM preview",
}


def _page(header: str, sections: list[str]) -> str:
    nav = "".join(f'<a href="#section-{anchor}">{title}</a>' for anchor, title in _SECTION_TITLES.items())
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>medical-assets: de-identified analytics</title>\n"
        f"<style>{_STYLE}</style>\n"
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>\n'
        "</head>\n<body>\n"
        f"{header}\n<nav>{nav}</nav>\n<main>\n" + "\n".join(sections) + "\n</main>\n</body>\n</html>\n"
    )


def _header_html(metadata: Mapping[str, str], threshold: int) -> str:
    entries = "".join(
        f"<dt>{html.escape(label)}</dt><dd>{html.escape(str(value))}</dd>"
        for label, value in _metadata_entries(metadata)
    )
    return (
        "<header><h1>De-identified analytics</h1>"
        f"<dl>{entries or '<dt>Compliance metadata</dt><dd>none given</dd>'}</dl>"
        f"<p>Counts from 1 to {threshold} are suppressed, and so are the cells that would let them be derived "
        "from a total: charts leave them out and a note under each chart says how many. They are never drawn "
        "as zero; a zero shown is a true zero.</p></header>"
    )


def _metadata_entries(metadata: Mapping[str, str]) -> list[tuple[str, str]]:
    """Known keys first in METADATA_LABELS order, then the others by key."""
    order = list(METADATA_LABELS)

    def rank(key: str) -> tuple[int, str]:
        short = key.rsplit(".", 1)[-1]
        return (order.index(short) if short in order else len(order), key)

    return [(METADATA_LABELS.get(key.rsplit(".", 1)[-1], key), metadata[key]) for key in sorted(metadata, key=rank)]


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="section-{anchor}"><h2>{html.escape(title)}</h2>\n{body}\n</section>'


def _empty_html(message: str) -> str:
    return f'<p class="empty">{html.escape(message)}</p>'


def _note_html(cells: int, suppressed: str) -> str:
    if not cells:
        return ""
    return f'<p class="note">{html.escape(_suppressed_sentence(cells, suppressed))}</p>'


def _suppressed_sentence(cells: int, suppressed: str) -> str:
    return f"{cells} {'cell' if cells == 1 else 'cells'} suppressed {suppressed}: not drawn."


def _chart_html(figure: go.Figure, key: str, top: int = 60) -> str:
    """The chart's div and script; `top` is the margin above the plot, wider when subplots have titles."""
    figure.update_layout(
        template=_template(),
        font_family=_FONT,
        margin={"l": 60, "r": 20, "t": top, "b": 50},
        legend_traceorder="normal",
    )
    return pio.to_html(figure, full_html=False, include_plotlyjs=False, div_id=CHART_IDS[key], config=_CONFIG)


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


_HEX_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")


def _utilization_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    rows = _rows(analytics, "hospital_utilization")
    if not rows:
        return _empty_html("No HL7 messages yet: the utilization table is empty.")
    months = _utilization_months(rows)
    figure = make_subplots(rows=2, cols=3, subplot_titles=list(UTILIZATION_MEASURES.values()), vertical_spacing=0.14)
    in_legend: set[str] = set()
    for position, measure in enumerate(UTILIZATION_MEASURES):
        series = _pivot(rows, months, _facility, lambda row: _text(row.get("month")), measure)
        for colour, (facility, values) in enumerate(series.items()):
            figure.add_trace(
                go.Scatter(
                    x=months,
                    y=values,
                    name=facility,
                    legendgroup=facility,
                    showlegend=facility not in in_legend,
                    mode="lines+markers",
                    line_color=_COLOURS[colour % len(_COLOURS)],
                    hovertemplate=f"{html.escape(facility)}<br>%{{x}}: %{{y}}<extra></extra>",
                ),
                row=position // 3 + 1,
                col=position % 3 + 1,
            )
            in_legend.add(facility)
    figure.update_xaxes(type="category")
    figure.update_yaxes(rangemode="tozero")
    figure.update_layout(height=650, title="Per facility and month")
    cells = _suppressed_cells(rows, UTILIZATION_MEASURES)
    return _chart_html(figure, "utilization", top=90) + _note_html(cells, suppressed)


def _utilization_months(rows: Sequence[dict]) -> list[str]:
    """The months with a published count: a month whose every count is suppressed is not shown."""
    return sorted({_text(row.get("month")) for row in _published(rows, UTILIZATION_MEASURES)})


def _demographics_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    rows = _rows(analytics, "patient_demographics")
    if not rows:
        return _empty_html("No patients yet: the demographics table is empty.")
    bands = _age_bands(rows)
    figure = go.Figure(
        [
            go.Bar(x=bands, y=values, name=gender)
            for gender, values in _pivot(
                rows, bands, _gender, lambda row: _text(row.get("age_band")), "patients"
            ).items()
        ]
    )
    figure.update_layout(
        height=420,
        barmode="group",
        title="Patients by gender and age band",
        xaxis_title="Age band (at the latest message)",
        yaxis_title="Patients",
    )
    cells = _suppressed_cells(rows, ["patients"])
    return _chart_html(figure, "demographics") + _note_html(cells, suppressed)


def _message_types_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    rows = _rows(analytics, "message_types")
    if not rows:
        return _empty_html("No HL7 messages yet: the message-type table is empty.")
    shown = list(reversed(_ranked(rows, "messages")))
    figure = go.Figure(
        go.Bar(
            y=[_message_type_label(row) for row in shown],
            x=[row["messages"] for row in shown],
            orientation="h",
            text=[_percent(row.get("share")) for row in shown],
            textposition="auto",
            hovertemplate="%{y}: %{x} messages (%{text})<extra></extra>",
        )
    )
    figure.update_layout(
        height=max(300, 32 * len(shown) + 120), title="Messages by type and HL7 version", xaxis_title="Messages"
    )
    cells = _suppressed_cells(rows, ["messages"])
    return _chart_html(figure, "message_types") + _note_html(cells, suppressed)


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share:.1%}"


def _labs_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    rows = _rows(analytics, "lab_results")
    if not rows:
        return _empty_html("No lab results yet: the lab table is empty.")
    by_volume = list(reversed(_ranked(rows, "results")))
    with_rate = [row for row in by_volume if row.get("abnormal_rate") is not None]
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=["Results per test", "Abnormal rate per test"], horizontal_spacing=0.25
    )
    figure.add_trace(
        go.Bar(
            y=[_lab_label(row) for row in by_volume],
            x=[row["results"] for row in by_volume],
            orientation="h",
            name="results",
            hovertemplate="%{y}: %{x} results<extra></extra>",
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Bar(
            y=[_lab_label(row) for row in with_rate],
            x=[row["abnormal_rate"] for row in with_rate],
            orientation="h",
            name="abnormal rate",
            marker_color="#d62728",
            hovertemplate="%{y}: %{x:.1%} abnormal<extra></extra>",
        ),
        row=1,
        col=2,
    )
    figure.update_xaxes(tickformat=".0%", row=1, col=2)
    figure.update_layout(height=max(320, 28 * len(by_volume) + 140), showlegend=False, title="Volume and abnormal rate")
    cells = _suppressed_cells(rows, _LAB_COUNTS)
    return _chart_html(figure, "labs", top=90) + _note_html(cells, suppressed) + _lab_values_html(rows)


def _lab_values_html(rows: list[dict]) -> str:
    numeric = [row for row in _ranked(rows, "numeric_results") if row.get("value_median") is not None]
    if not numeric:
        return _empty_html("No numeric lab values to show a distribution of.")
    columns = min(4, len(numeric))
    rows_of_charts = math.ceil(len(numeric) / columns)
    height = 260 * rows_of_charts + 80
    figure = make_subplots(
        rows=rows_of_charts,
        cols=columns,
        subplot_titles=[_lab_label(row) for row in numeric],
        # About 60 px between rows, whatever their number (plotly refuses a spacing that, times
        # the rows, exceeds the figure: 100 tests made 25 rows).
        vertical_spacing=min(0.12, 60 / height),
    )
    for position, row in enumerate(numeric):
        figure.add_trace(
            go.Box(
                x=[_lab_label(row)],
                q1=[row.get("value_p25")],
                median=[row["value_median"]],
                q3=[row.get("value_p75")],
                lowerfence=[row.get("value_p05")],
                upperfence=[row.get("value_p95")],
                mean=[row.get("value_mean")],
                name=_lab_label(row),
                marker_color=_COLOURS[position % len(_COLOURS)],
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
    return _chart_html(figure, "lab_values", top=90)


def _pharmacy_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    rows = _rows(analytics, "pharmacy")
    if not rows:
        return _empty_html("No pharmacy orders yet: the pharmacy table is empty.")
    medications = _top_medications(rows)
    if not medications:
        note = _note_html(_suppressed_cells(rows, ["orders"]), suppressed)
        return _empty_html("Every pharmacy count is suppressed.") + note
    series = _pivot(rows, medications, lambda row: _text(row.get("route"), "no route"), _medication, "orders")
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
    cells = _suppressed_cells(rows, ["orders"])
    return _chart_html(figure, "pharmacy") + _note_html(cells, suppressed)


def _top_medications(rows: Sequence[dict]) -> list[str]:
    """Medications by their published rank (1 first), at most MAX_BARS; a suppressed row has no rank
    and names no medication."""
    ranks: dict[str, int] = {}
    for row in _published(rows, ["orders"]):
        rank = row.get("rank") if row.get("rank") is not None else 1 << 30
        ranks[_medication(row)] = min(rank, ranks.get(_medication(row), rank))
    return sorted(ranks, key=lambda name: (ranks[name], name))[:MAX_BARS]


def _imaging_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    rows = _imaging_rows(analytics)
    if not rows:
        return _empty_html("No DICOM images yet, or every imaging count is suppressed.")
    modalities = [_modality(row) for row in rows]
    figure = go.Figure(
        [
            go.Bar(x=modalities, y=[row.get(measure) for row in rows], name=measure.title())
            for measure in ("studies", "images", "frames")
        ]
    )
    figure.update_layout(
        height=400, barmode="group", title="Studies, images and frames per modality", yaxis_title="Count"
    )
    return (
        _chart_html(figure, "imaging")
        + _note_html(_suppressed_cells(_rows(analytics, "imaging"), _IMAGING_COUNTS), suppressed)
        + _pixel_statistics_html(rows)
        + _transfer_syntaxes_html(_rows(analytics, "imaging_transfer_syntaxes"), suppressed)
    )


def _imaging_rows(analytics: Mapping[str, pa.Table]) -> list[dict]:
    """Imaging rows with a published count, by modality (the order the transfer-syntax chart uses too)."""
    return sorted(_published(_rows(analytics, "imaging"), _IMAGING_COUNTS), key=_modality)


def _pixel_statistics_html(rows: list[dict]) -> str:
    shown = [row for row in rows if row.get("pixel_mean_avg") is not None]
    if not shown:
        return _empty_html("No pixel statistics to show (no decoded pixels, or every modality suppressed).")
    modalities = [_modality(row) for row in shown]
    figure = go.Figure(
        [
            go.Bar(
                x=modalities,
                y=[row["pixel_mean_avg"] for row in shown],
                name="mean (± mean std)",
                error_y={"type": "data", "array": [row.get("pixel_std_avg") for row in shown]},
            ),
            go.Scatter(
                x=modalities,
                y=[row.get("pixel_min") for row in shown],
                name="minimum",
                mode="markers",
                marker={"symbol": "triangle-down", "size": 11},
            ),
            go.Scatter(
                x=modalities,
                y=[row.get("pixel_max") for row in shown],
                name="maximum",
                mode="markers",
                marker={"symbol": "triangle-up", "size": 11},
            ),
        ]
    )
    figure.update_layout(
        height=400, title="Stored pixel values per modality (before rescale)", yaxis_title="Stored value"
    )
    return _chart_html(figure, "pixel_statistics")


def _transfer_syntaxes_html(rows: list[dict], suppressed: str) -> str:
    if not rows:
        return _empty_html("No transfer syntaxes to show.")
    modalities = sorted({_modality(row) for row in _published(rows, ["images"])})
    series = _pivot(rows, modalities, _syntax, _modality, "images")
    figure = go.Figure([go.Bar(x=modalities, y=values, name=syntax) for syntax, values in series.items()])
    figure.update_layout(
        height=420,
        barmode="stack",
        title="Images per transfer syntax and modality",
        yaxis_title="Images",
        legend_title="Transfer syntax",
    )
    cells = _suppressed_cells(rows, ["images"])
    return _chart_html(figure, "transfer_syntaxes") + _note_html(cells, suppressed)


def _syntax(row: dict) -> str:
    return row.get("transfer_syntax_name") or _text(row.get("transfer_syntax_uid"), "no transfer syntax")


def _modality_syntax(row: dict) -> str:
    return f"{_modality(row)} {_syntax(row)}"


def _quality_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    return _quality_facilities_html(_rows(analytics, "data_quality_facilities"), suppressed) + _quality_files_html(
        _rows(analytics, "data_quality_files"), suppressed
    )


def _quality_facilities_html(rows: list[dict], suppressed: str) -> str:
    if not rows:
        return _empty_html("No data-quality figures per facility yet.")
    cells = _suppressed_cells(rows, _QUALITY_COUNTS)
    rows = _published(rows, ["error_rate", "mean_validation_score"])
    facilities = [_quality_facility(row) for row in rows]
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
    return _chart_html(figure, "quality_facilities", top=90) + _note_html(cells, suppressed)


def _quality_facility(row: dict) -> str:
    return _text(row.get("sending_facility"), "files without a parsed message")


def _quality_files_html(rows: list[dict], suppressed: str) -> str:
    if not rows:
        return _empty_html("No data-quality figures per file yet.")
    worst = [row for row in rows if row.get("error_rate") is not None]
    worst = sorted(worst, key=lambda row: (-row["error_rate"], _text(row.get("source_file_token"))))[:MAX_BARS][::-1]
    figure = go.Figure(
        go.Bar(
            y=[_text(row.get("source_file_token"), "no token") for row in worst],
            x=[row["error_rate"] for row in worst],
            orientation="h",
            marker_color="#d62728",
            customdata=[_facility(row) for row in worst],
            hovertemplate="file %{y} (%{customdata}): %{x:.2%}<extra></extra>",
        )
    )
    figure.update_xaxes(tickformat=".1%", rangemode="tozero")
    figure.update_layout(
        height=max(320, 24 * len(worst) + 140),
        title=f"Parse-error rate of the {len(worst)} worst source files (keyed file tokens)",
    )
    cells = _suppressed_cells(rows, _QUALITY_COUNTS)
    return _chart_html(figure, "quality_files") + _note_html(cells, suppressed)


def _preview_html(previews: list[_Preview]) -> str:
    if not previews:
        return _empty_html("No images cleared for export yet: nothing to preview.")
    rows, columns = _grid_shape(len(previews))
    titles = [preview.label for preview in previews] + [""] * (rows * columns - len(previews))
    subplot_titles = [
        title for start in range(0, len(titles), columns) for title in titles[start : start + columns] + [""] * columns
    ]
    figure = make_subplots(
        rows=2 * rows,
        cols=columns,
        subplot_titles=subplot_titles,
        row_heights=[3, 1] * rows,
        vertical_spacing=0.12 / rows,
        horizontal_spacing=0.03,
    )
    centres = ((np.arange(HISTOGRAM_BINS) + 0.5) / HISTOGRAM_BINS).round(4).tolist()
    for position, preview in enumerate(previews):
        row, column = 2 * (position // columns) + 1, position % columns + 1
        figure.add_trace(go.Image(source=_png_data_uri(preview.pixels), hoverinfo="skip"), row=row, col=column)
        figure.add_trace(
            go.Bar(
                x=centres,
                y=preview.histogram.tolist(),
                marker_color="#52606d",
                width=1 / HISTOGRAM_BINS,
                hovertemplate="intensity %{x:.2f}: %{y} pixels<extra></extra>",
            ),
            row=row + 1,
            col=column,
        )
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False)
    figure.update_layout(
        height=300 * rows + 60,
        showlegend=False,
        bargap=0,
        title="Middle frame of each image (64 x 64, normalised) and its intensity histogram",
    )
    note = '<p class="note">Only images cleared for export are shown, labelled by modality and index.</p>'
    return _chart_html(figure, "dicom_preview", top=90) + note


def _png_data_uri(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).round().astype(np.uint8), mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# PNG figures


def _new_figure(name: str) -> Figure:
    width, height = PNG_SIZES[name]
    return Figure(figsize=(width / PNG_DPI, height / PNG_DPI), dpi=PNG_DPI, layout="constrained")


def _empty_png(name: str, title: str, message: str) -> Figure:
    figure = _new_figure(name)
    figure.suptitle(title, fontsize=16)
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=15, color="#52606d")
    return figure


def _png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # Software would embed matplotlib's version; PNG gets no timestamp from matplotlib otherwise.
    figure.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _footnote(figure: Figure, cells: int, suppressed: str) -> None:
    """Says how many cells were suppressed under the figure (supxlabel: constrained layout makes room for it)."""
    if cells:
        figure.supxlabel(_suppressed_sentence(cells, suppressed), x=0.01, ha="left", fontsize=9, color="#52606d")


def _utilization_png(analytics: Mapping[str, pa.Table], suppressed: str) -> Figure:
    rows = _rows(analytics, "hospital_utilization")
    if not rows:
        return _empty_png("utilization.png", "Hospital utilization", "No HL7 messages yet")
    months = _utilization_months(rows)
    figure = _new_figure("utilization.png")
    figure.suptitle("Hospital utilization per facility and month", fontsize=15)
    grid = figure.subplots(2, 3)
    for axes, measure in zip(grid.flat, UTILIZATION_MEASURES):
        series = _pivot(rows, months, _facility, lambda row: _text(row.get("month")), measure)
        for colour, (facility, values) in enumerate(series.items()):
            axes.plot(months, _floats(values), marker="o", label=facility, color=_COLOURS[colour % len(_COLOURS)])
        axes.set_title(UTILIZATION_MEASURES[measure])
        axes.set_ylim(bottom=0)
        axes.tick_params(axis="x", labelrotation=45, labelsize=8)
        axes.grid(alpha=0.3)
    legend_axes = grid.flat[-1]
    legend_axes.set_axis_off()
    handles, labels = grid.flat[0].get_legend_handles_labels()
    legend_axes.legend(handles, labels, loc="center", title="Sending facility", frameon=False)
    _footnote(figure, _suppressed_cells(rows, UTILIZATION_MEASURES), suppressed)
    return figure


def _floats(values: Sequence) -> list[float]:
    """NaN where a count is suppressed or absent: matplotlib leaves a gap there, never a zero."""
    return [math.nan if value is None else float(value) for value in values]


def _demographics_png(analytics: Mapping[str, pa.Table], suppressed: str) -> Figure:
    rows = _rows(analytics, "patient_demographics")
    if not rows:
        return _empty_png("demographics.png", "Patient demographics", "No patients yet")
    bands = _age_bands(rows)
    series = _pivot(rows, bands, _gender, lambda row: _text(row.get("age_band")), "patients")
    if not series:
        return _empty_png("demographics.png", "Patient demographics", "Every count is suppressed")
    figure = _new_figure("demographics.png")
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    for position, (gender, values) in enumerate(series.items()):
        offsets = np.arange(len(bands)) + (position - (len(series) - 1) / 2) * width
        axes.bar(offsets, _floats(values), width, label=gender, color=_COLOURS[position % len(_COLOURS)])
    axes.set_xticks(np.arange(len(bands)), bands)
    axes.set_xlabel("Age band (at the latest message)")
    axes.set_ylabel("Patients")
    axes.set_title("Patients by gender and age band", fontsize=14)
    axes.legend(title="Gender")
    axes.grid(axis="y", alpha=0.3)
    _footnote(figure, _suppressed_cells(rows, ["patients"]), suppressed)
    return figure


def _labs_png(analytics: Mapping[str, pa.Table], suppressed: str) -> Figure:
    rows = _rows(analytics, "lab_results")
    if not rows:
        return _empty_png("labs.png", "Lab results", "No lab results yet")
    figure = _new_figure("labs.png")
    figure.suptitle("Lab results", fontsize=15)
    top, bottom = figure.subfigures(2, 1, height_ratios=[1, 1])
    volume_axes, rate_axes = top.subplots(1, 2)
    by_volume = list(reversed(_ranked(rows, "results")))[-MAX_BARS:]
    volume_axes.barh([_lab_label(row) for row in by_volume], [row["results"] for row in by_volume], color=_COLOURS[0])
    volume_axes.set_title("Results per test")
    with_rate = [row for row in by_volume if row.get("abnormal_rate") is not None]
    rate_axes.barh(
        [_lab_label(row) for row in with_rate], [100 * row["abnormal_rate"] for row in with_rate], color="#d62728"
    )
    rate_axes.set_title("Abnormal rate per test (%)")
    for axes in (volume_axes, rate_axes):
        axes.tick_params(axis="y", labelsize=8)
        axes.grid(axis="x", alpha=0.3)
    _lab_boxes_png(bottom, rows)
    _footnote(
        figure,
        _suppressed_cells(rows, _LAB_COUNTS),
        suppressed,
    )
    return figure


def _lab_boxes_png(subfigure, rows: list[dict]) -> None:
    numeric = [row for row in _ranked(rows, "numeric_results") if row.get("value_median") is not None][:8]
    if not numeric:
        axes = subfigure.add_subplot()
        axes.set_axis_off()
        axes.text(0.5, 0.5, "No numeric lab values", ha="center", va="center", fontsize=13, color="#52606d")
        return
    subfigure.suptitle(
        "Value distribution of the most frequent numeric tests (whiskers 5th-95th percentile)", fontsize=11
    )
    grid = subfigure.subplots(1, len(numeric), squeeze=False)[0]
    for axes, row in zip(grid, numeric):
        axes.bxp([_box_stats(row)], showmeans=row.get("value_mean") is not None, showfliers=False)
        axes.set_xticks([])
        axes.set_title(_lab_label(row), fontsize=8, wrap=True)
        axes.grid(axis="y", alpha=0.3)


def _box_stats(row: dict) -> dict:
    median = row["value_median"]
    stats = {
        "med": median,
        "q1": _or(row.get("value_p25"), median),
        "q3": _or(row.get("value_p75"), median),
        "whislo": _or(row.get("value_p05"), median),
        "whishi": _or(row.get("value_p95"), median),
    }
    if row.get("value_mean") is not None:
        stats["mean"] = row["value_mean"]
    return stats


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _imaging_png(analytics: Mapping[str, pa.Table], suppressed: str) -> Figure:
    rows = _imaging_rows(analytics)
    if not rows:
        return _empty_png("imaging.png", "Imaging", "No DICOM images yet")
    figure = _new_figure("imaging.png")
    figure.suptitle("Imaging per modality", fontsize=15)
    counts_axes, pixels_axes, syntax_axes = figure.subplots(1, 3)
    modalities = [_modality(row) for row in rows]
    positions = np.arange(len(modalities))
    for offset, measure in zip((-0.2, 0.2), ("studies", "images")):
        counts_axes.bar(positions + offset, _floats([row.get(measure) for row in rows]), 0.4, label=measure.title())
    counts_axes.set_xticks(positions, modalities)
    counts_axes.set_title("Studies and images")
    counts_axes.legend()
    _pixel_statistics_png(pixels_axes, rows)
    syntaxes = _rows(analytics, "imaging_transfer_syntaxes")
    _transfer_syntaxes_png(syntax_axes, syntaxes)
    cells = _suppressed_cells(_rows(analytics, "imaging"), ["studies", "images"])
    cells += _suppressed_cells(syntaxes, ["images"])
    _footnote(figure, cells, suppressed)
    return figure


def _pixel_statistics_png(axes, rows: list[dict]) -> None:
    shown = [row for row in rows if row.get("pixel_mean_avg") is not None]
    axes.set_title("Stored pixel values (mean ± std, min, max)")
    if not shown:
        axes.text(0.5, 0.5, "No pixel statistics", ha="center", va="center", transform=axes.transAxes)
        return
    positions = np.arange(len(shown))
    axes.errorbar(
        positions,
        [row["pixel_mean_avg"] for row in shown],
        yerr=_floats([row.get("pixel_std_avg") for row in shown]),
        fmt="o",
        capsize=5,
        label="mean ± std",
    )
    axes.scatter(positions, _floats([row.get("pixel_min") for row in shown]), marker="v", label="minimum")
    axes.scatter(positions, _floats([row.get("pixel_max") for row in shown]), marker="^", label="maximum")
    axes.set_xticks(positions, [_modality(row) for row in shown])
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)


def _transfer_syntaxes_png(axes, rows: list[dict]) -> None:
    axes.set_title("Images per transfer syntax")
    if not rows:
        axes.text(0.5, 0.5, "No transfer syntaxes", ha="center", va="center", transform=axes.transAxes)
        return
    modalities = sorted({_modality(row) for row in _published(rows, ["images"])})
    bottom = np.zeros(len(modalities))
    for colour, (syntax, values) in enumerate(_pivot(rows, modalities, _syntax, _modality, "images").items()):
        heights = np.nan_to_num(_floats(values))  # a suppressed part adds nothing to the stack
        axes.bar(modalities, heights, bottom=bottom, label=syntax, color=_COLOURS[colour % len(_COLOURS)])
        bottom += heights
    # Transfer syntax names are long: below the bars they hide nothing.
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08))


def _preview_png(previews: list[_Preview]) -> Figure:
    if not previews:
        return _empty_png("dicom_preview.png", "De-identified DICOM preview", "No images cleared for export")
    figure = _new_figure("dicom_preview.png")
    figure.suptitle("De-identified DICOM preview: middle frame and intensity histogram", fontsize=14)
    rows, columns = _grid_shape(len(previews))
    grid = figure.add_gridspec(2 * rows, columns, height_ratios=[3, 1] * rows)
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    for position, preview in enumerate(previews):
        row, column = 2 * (position // columns), position % columns
        image_axes = figure.add_subplot(grid[row, column])
        image_axes.imshow(preview.pixels, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        image_axes.set_title(preview.label, fontsize=10)
        image_axes.set_axis_off()
        histogram_axes = figure.add_subplot(grid[row + 1, column])
        histogram_axes.stairs(preview.histogram, edges, fill=True, color="#52606d")
        histogram_axes.set_xlim(0.0, 1.0)
        histogram_axes.set_yticks([])
        histogram_axes.tick_params(axis="x", labelsize=7)
    return figure

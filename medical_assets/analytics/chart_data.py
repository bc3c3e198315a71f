"""What the dashboards show, shared by the HTML page and the PNG figures: the report files, the
categories of each chart in their order, the labels, and the words for what is suppressed or empty.

Everything drawn comes from the analytics tables (`medical_assets.analytics.tables`, small cells
already suppressed) and from the thumbnails of the DICOM images cleared for export. No identifier
is drawn: a preview is labelled by its modality and a short index, never by its UID.

A suppressed count (null) is never drawn as zero: charts leave a gap, and a note under the chart
says how many cells were suppressed, never which: no label (facility, medication, test, month) is
written for a suppressed cell, in a note, a legend, an axis or hover text, and a category whose
every count is suppressed is not drawn at all. A chart with nothing to draw (an empty table, or
every count suppressed or zero) is replaced by a sentence that says so.

The two renderers import plotly and matplotlib, which take a second; this module imports neither,
so the report files can be listed cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from medical_assets.analytics.suppression import DEFAULT_THRESHOLD as DEFAULT_SUPPRESSION_THRESHOLD

DASHBOARD_FILE = "dashboard.html"
PNG_DPI = 100
# Width and height in pixels of each PNG figure.
PNG_SIZES = {
    "utilization.png": (1500, 850),
    "demographics.png": (1000, 600),
    "labs.png": (1500, 1100),
    "imaging_workload.png": (1500, 600),
    "dicom_preview.png": (1200, 1000),
}

# The files drawn together in one worker task, in groups of about equal drawing time, so that the
# workers draw them side by side.
REPORT_GROUPS = (
    (DASHBOARD_FILE,),
    ("dicom_preview.png",),
    ("labs.png", "imaging_workload.png"),
    ("utilization.png", "demographics.png"),
)

MAX_BARS = 25  # rows of a ranked bar chart (medications, files, lab tests in a PNG)
COLOURS = (
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
LAB_COUNTS = ("results", "abnormal_results")
QUALITY_COUNTS = ("messages", "errors")
IMAGING_COUNTS = ("studies", "images", "frames")
UTILIZATION_MEASURES = {
    "messages": "Messages",
    "admissions": "Admissions (ADT^A01)",
    "discharges": "Discharges (ADT^A03)",
    "lab_results": "Lab results (OBX)",
    "pharmacy_orders": "Pharmacy orders (RXE)",
}


def suppression_threshold(metadata: Mapping[str, str]) -> int:
    """The threshold in the compliance metadata (the key ending in `threshold`), else the default."""
    for key, value in metadata.items():
        if key.rsplit(".", 1)[-1].endswith("threshold"):
            try:
                return int(value)
            except (TypeError, ValueError):
                break
    return DEFAULT_SUPPRESSION_THRESHOLD


def suppressed_label(threshold: int) -> str:
    return f"(counts from 1 to {threshold}, and cells that would reveal them)"


def suppressed_sentence(cells: int, suppressed: str) -> str:
    """The note under a chart: how many cells were suppressed, never which."""
    return f"{cells} {'cell' if cells == 1 else 'cells'} suppressed {suppressed}: not drawn."


def nothing_to_draw(
    rows: Sequence[dict],
    columns: Iterable[str],
    suppressed: str = "",
    no_rows: str = "No data.",
    all_zero: str = "No data: every count is zero.",
) -> str | None:
    """Why a chart of `columns` has nothing to draw, in words; None when one of them is published
    and not zero. `no_rows` words an empty table, `all_zero` one of zeros only; `suppressed`
    (`suppressed_label`) follows a sentence about suppressed counts."""
    columns = list(columns)
    if not rows:
        return no_rows
    if published(rows, columns):
        return None
    cells = suppressed_cells(rows, columns)
    if not cells:
        return all_zero
    words = "All counts are suppressed" if cells == len(rows) * len(columns) else "Every count is zero or suppressed"
    return f"{words} {suppressed}".rstrip() + "."


def rows_of(analytics: Mapping[str, pa.Table], name: str) -> list[dict]:
    table = analytics.get(name)
    return table.to_pylist() if table is not None else []


def suppressed_cells(rows: Sequence[dict], columns: Iterable[str]) -> int:
    """How many counts of `columns` are null (suppressed): the notes say how many, never which."""
    columns = list(columns)
    return sum(row.get(column) is None for row in rows for column in columns)


def published(rows: Sequence[dict], columns: Iterable[str]) -> list[dict]:
    """The rows with at least one of `columns` published and not zero: a row whose every count is
    suppressed gives no label (facility, medication, month) to a chart, nor does one whose only
    published counts are zeros beside suppressed ones (a facility with 3 messages, 0 lab results)."""
    columns = list(columns)
    return [row for row in rows if any(row.get(column) not in (None, 0) for column in columns)]


def pivot(
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


def ranked(rows: Sequence[dict], value: str) -> list[dict]:
    """Rows with a count, largest first; ties keep the table's order, so the charts are stable."""
    return sorted((row for row in rows if row.get(value) is not None), key=lambda row: -row[value])


@dataclass(frozen=True)
class Utilization:
    """Each measure's series per facility along `months`. A facility keeps its place in
    `facilities` (and so its colour) in every measure, also where it has no series."""

    months: list[str]
    facilities: list[str]
    series: dict[str, dict[str, list]]  # by measure of UTILIZATION_MEASURES, then by facility


def utilization(rows: Sequence[dict]) -> Utilization:
    months = utilization_months(rows)
    series = {
        measure: pivot(rows, months, facility, lambda row: text(row.get("month")), measure)
        for measure in UTILIZATION_MEASURES
    }
    facilities = list(dict.fromkeys(name for by_facility in series.values() for name in by_facility))
    return Utilization(months, facilities, series)


def utilization_months(rows: Sequence[dict]) -> list[str]:
    """The months with a published count: a month whose every count is suppressed is not shown."""
    return sorted({text(row.get("month")) for row in published(rows, UTILIZATION_MEASURES)})


def patients_by_gender(rows: Sequence[dict]) -> tuple[list[str], dict[str, list]]:
    """The age bands shown, and the patients of each gender along them."""
    bands = age_bands(rows)
    return bands, pivot(rows, bands, gender, lambda row: text(row.get("age_band")), "patients")


def age_bands(rows: Sequence[dict]) -> list[str]:
    present = {text(row.get("age_band")) for row in published(rows, ["patients"])}
    return [band for band in AGE_BANDS if band in present] + sorted(present - set(AGE_BANDS))


@dataclass(frozen=True)
class LabBars:
    """The two lab bar charts drawn side by side, on one list of tests in one order (the most
    frequent last, so that it is drawn on top): a test whose abnormal rate is suppressed keeps its
    row there, left blank, so that every row of one chart faces the same test in the other."""

    tests: list[str]
    results: list[int]
    abnormal_rates: list[float | None]

    @property
    def rates_missing(self) -> int:
        return sum(rate is None for rate in self.abnormal_rates)


def lab_bars(rows: Sequence[dict], limit: int | None = None) -> LabBars:
    """The tests with a published result count, the `limit` most frequent."""
    shown = ranked(rows, "results")[:limit][::-1]
    return LabBars(
        distinct_labels([lab_label(row) for row in shown], [row.get("observation_code") for row in shown]),
        [row["results"] for row in shown],
        [row.get("abnormal_rate") for row in shown],
    )


def rates_missing_sentence(missing: int) -> str:
    rows = "test shown: its row is" if missing == 1 else "tests shown: their rows are"
    return f"Abnormal rate suppressed for {missing} {rows} left blank, not drawn as zero."


def distinct_labels(labels: Sequence[str], codes: Sequence[str | None]) -> list[str]:
    """`labels`, each repeated one followed by its code: a chart's category axis would otherwise
    merge two tests of the same name and units into one row."""
    repeated = {label for label in labels if labels.count(label) > 1}
    return [f"{label} [{code}]" if label in repeated else label for label, code in zip(labels, codes)]


def numeric_lab_tests(rows: Sequence[dict], limit: int | None = None) -> list[dict]:
    """The tests with a value distribution, most numeric results first."""
    return [row for row in ranked(rows, "numeric_results") if row.get("value_median") is not None][:limit]


def top_medications(rows: Sequence[dict]) -> list[str]:
    """Medications by their published rank (1 first), at most MAX_BARS; a suppressed row has no rank
    and names no medication."""
    ranks: dict[str, int] = {}
    for row in published(rows, ["orders"]):
        rank = row.get("rank") if row.get("rank") is not None else 1 << 30
        ranks[medication(row)] = min(rank, ranks.get(medication(row), rank))
    return sorted(ranks, key=lambda name: (ranks[name], name))[:MAX_BARS]


def imaging_rows(analytics: Mapping[str, pa.Table]) -> list[dict]:
    """Imaging rows with a published count, by modality (the order the transfer-syntax chart uses too)."""
    return sorted(published(rows_of(analytics, "imaging"), IMAGING_COUNTS), key=modality)


def with_pixel_statistics(rows: Sequence[dict]) -> list[dict]:
    return [row for row in rows if row.get("pixel_mean_avg") is not None]


def images_by_syntax(rows: Sequence[dict]) -> tuple[list[str], dict[str, list]]:
    """The modalities with a published image count, and the images of each transfer syntax along them."""
    modalities = sorted({modality(row) for row in published(rows, ["images"])})
    return modalities, pivot(rows, modalities, syntax, modality, "images")


def worst_files(rows: Sequence[dict]) -> list[dict]:
    """The MAX_BARS files with the highest published parse-error rate, the worst last (drawn on top)."""
    rated = [row for row in rows if row.get("error_rate") is not None]
    return sorted(rated, key=lambda row: (-row["error_rate"], text(row.get("source_file_token"))))[:MAX_BARS][::-1]


def text(value: object, missing: str = "not recorded") -> str:
    return missing if value is None or value == "" else str(value)


def facility(row: dict) -> str:
    return text(row.get("sending_facility"), "no facility")


def quality_facility(row: dict) -> str:
    return text(row.get("sending_facility"), "files without a parsed message")


def gender(row: dict) -> str:
    code = row.get("patient_gender")
    return GENDERS.get(code, text(code))


def lab_label(row: dict) -> str:
    name = row.get("observation_name") or row.get("observation_code") or "unnamed test"
    return f"{name} ({row['units']})" if row.get("units") else name


def message_type_label(row: dict) -> str:
    return f"{text(row.get('message_type'), 'no type')} v{text(row.get('hl7_version'), '?')}"


def medication(row: dict) -> str:
    return row.get("give_name") or row.get("give_code") or "unnamed medication"


def route(row: dict) -> str:
    return text(row.get("route"), "no route")


def modality(row: dict) -> str:
    return text(row.get("modality"), "no modality")


def syntax(row: dict) -> str:
    return row.get("transfer_syntax_name") or text(row.get("transfer_syntax_uid"), "no transfer syntax")


def percent(share: float | None) -> str:
    return "" if share is None else f"{share:.1%}"

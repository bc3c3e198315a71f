"""The interactive dashboard: one self-contained HTML page of plotly charts over the analytics tables.

The page inlines plotly.js and uses no font, style sheet or image from elsewhere, so it opens and
renders offline. Its header shows the compliance metadata of the run.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import plotly.offline
import pyarrow as pa

from medical_assets.analytics import html_charts as charts
from medical_assets.analytics import html_imaging as imaging
from medical_assets.analytics.chart_data import suppressed_label, suppression_threshold
from medical_assets.analytics.previews import previews

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
    threshold = suppression_threshold(metadata)
    suppressed = suppressed_label(threshold)
    sections = [
        _section("utilization", "Hospital utilization", charts.utilization_html(analytics, suppressed)),
        _section("demographics", "Patient demographics", charts.demographics_html(analytics, suppressed)),
        _section("message-types", "Message types", charts.message_types_html(analytics, suppressed)),
        _section("labs", "Lab results", charts.labs_html(analytics, suppressed)),
        _section("pharmacy", "Pharmacy", charts.pharmacy_html(analytics, suppressed)),
        _section("imaging", "Imaging", imaging.imaging_html(analytics, suppressed)),
        _section("data-quality", "Data quality", charts.quality_html(analytics, suppressed)),
        _section("dicom-preview", "De-identified DICOM preview", imaging.preview_html(previews(thumbnails, images))),
    ]
    return _page(_header_html(metadata, threshold), sections)


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

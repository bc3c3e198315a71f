"""The imaging sections of the HTML dashboard: DICOM counts per modality, pixel statistics, transfer
syntaxes, and the preview of the images cleared for export."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
from PIL import Image
from plotly.subplots import make_subplots

from medical_assets.analytics import chart_data as data
from medical_assets.analytics import html_charts as charts
from medical_assets.analytics.previews import HISTOGRAM_BINS, Preview, grid_shape


def imaging_html(analytics: Mapping[str, pa.Table], suppressed: str) -> str:
    syntaxes = _transfer_syntaxes_html(data.rows_of(analytics, "imaging_transfer_syntaxes"), suppressed)
    counted = data.rows_of(analytics, "imaging")
    no_rows = "No DICOM images yet: the imaging table is empty."
    empty = data.nothing_to_draw(counted, data.IMAGING_COUNTS, suppressed, no_rows)
    if empty:
        return charts.empty_html(empty) + syntaxes
    rows = data.imaging_rows(analytics)
    modalities = [data.modality(row) for row in rows]
    figure = go.Figure(
        [
            go.Bar(x=modalities, y=[row.get(measure) for row in rows], name=measure.title())
            for measure in data.IMAGING_COUNTS
        ]
    )
    figure.update_layout(
        height=400, barmode="group", title="Studies, images and frames per modality", yaxis_title="Count"
    )
    note = charts.note_html(data.suppressed_cells(counted, data.IMAGING_COUNTS), suppressed)
    return charts.chart_html(figure, "imaging") + note + _pixel_statistics_html(rows) + syntaxes


def preview_html(previews: list[Preview]) -> str:
    if not previews:
        return charts.empty_html("No images cleared for export yet: nothing to preview.")
    rows, columns = grid_shape(len(previews))
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
    return charts.chart_html(figure, "dicom_preview", top=90) + note


def _pixel_statistics_html(rows: list[dict]) -> str:
    shown = data.with_pixel_statistics(rows)
    if not shown:
        return charts.empty_html("No pixel statistics to show (no decoded pixels, or every modality suppressed).")
    modalities = [data.modality(row) for row in shown]
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
    return charts.chart_html(figure, "pixel_statistics")


def _transfer_syntaxes_html(rows: list[dict], suppressed: str) -> str:
    empty = data.nothing_to_draw(rows, ["images"], suppressed, "No transfer syntaxes to show.")
    if empty:
        return charts.empty_html(empty)
    modalities, series = data.images_by_syntax(rows)
    figure = go.Figure([go.Bar(x=modalities, y=values, name=syntax) for syntax, values in series.items()])
    figure.update_layout(
        height=420,
        barmode="stack",
        title="Images per transfer syntax and modality",
        yaxis_title="Images",
        legend_title="Transfer syntax",
    )
    cells = data.suppressed_cells(rows, ["images"])
    return charts.chart_html(figure, "transfer_syntaxes") + charts.note_html(cells, suppressed)


def _png_data_uri(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).round().astype(np.uint8), mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

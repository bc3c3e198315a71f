"""The PNG figures of the dashboards, drawn with matplotlib (Agg) at PNG_DPI, one per file of PNG_SIZES."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from medical_assets.analytics import chart_data as data
from medical_assets.analytics.chart_data import PNG_DPI, PNG_SIZES
from medical_assets.analytics.previews import HISTOGRAM_BINS, Preview, grid_shape, previews
from medical_assets.analytics.suppression import DEFAULT_THRESHOLD as DEFAULT_SUPPRESSION_THRESHOLD

_GREY = "#52606d"
_FOOTNOTE_SIZE = 9  # points
_EM = 0.62  # a generous mean width of a DejaVu Sans character, in ems: wrapped lines then fit
_LEGEND_ROWS = 14  # facilities per column of the utilization legend


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
    wanted = set(PNG_SIZES if only is None else only)
    unknown = wanted - set(PNG_SIZES)
    if unknown:
        raise ValueError(f"no such figure: {', '.join(sorted(unknown))}; the figures are {', '.join(PNG_SIZES)}")
    return {
        name: _png_bytes(draw_figure(name, analytics, thumbnails, images, suppression_threshold=suppression_threshold))
        for name in PNG_SIZES
        if name in wanted
    }


def draw_figure(
    name: str,
    analytics: Mapping[str, pa.Table],
    thumbnails: pa.Table | None,
    images: pa.Table | None,
    *,
    suppression_threshold: int = DEFAULT_SUPPRESSION_THRESHOLD,
) -> Figure:
    """The matplotlib figure of the file `name` of PNG_SIZES, not yet rendered."""
    suppressed = data.suppressed_label(suppression_threshold)
    if name == "utilization.png":
        return _utilization_png(analytics, suppressed)
    if name == "demographics.png":
        return _demographics_png(analytics, suppressed)
    if name == "labs.png":
        return _labs_png(analytics, suppressed)
    if name == "imaging_workload.png":
        return _imaging_png(analytics, suppressed)
    if name == "dicom_preview.png":
        return _preview_png(previews(thumbnails, images))
    raise ValueError(f"no such figure: {name}; the figures are {', '.join(PNG_SIZES)}")


def _new_figure(name: str) -> Figure:
    width, height = PNG_SIZES[name]
    return Figure(figsize=(width / PNG_DPI, height / PNG_DPI), dpi=PNG_DPI, layout="constrained")


def _empty_png(name: str, title: str, message: str) -> Figure:
    figure = _new_figure(name)
    figure.suptitle(title, fontsize=16)
    axes = figure.add_subplot()
    _say(axes, message, fontsize=15)
    return figure


def _say(axes, message: str, fontsize: float = 12) -> None:
    """Writes `message` across the middle of `axes`, wrapped to its width, instead of a chart."""
    axes.set_axis_off()
    width = axes.get_position().width * axes.get_figure(root=True).get_figwidth() * PNG_DPI
    message = _wrap(message, width, fontsize)
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=fontsize, color=_GREY, transform=axes.transAxes)


def _wrap(text: str, width: float, fontsize: float) -> str:
    """`text` broken into lines of at most `width` pixels at `fontsize` points."""
    return textwrap.fill(text, max(20, int(width / (_EM * fontsize * PNG_DPI / 72))))


def _png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # Software would embed matplotlib's version; PNG gets no timestamp from matplotlib otherwise.
    figure.savefig(buffer, format="png", dpi=PNG_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _footnote(figure: Figure, sentences: Sequence[str]) -> None:
    """Writes `sentences` under the figure in a band kept free of axes, each wrapped to the figure's
    width: the layout never places it, so neither a long note nor slanted tick labels push it off."""
    sentences = [sentence for sentence in sentences if sentence]
    if not sentences:
        return
    width, height = (size * PNG_DPI for size in figure.get_size_inches())
    lines = "\n".join(_wrap(sentence, 0.96 * width, _FOOTNOTE_SIZE) for sentence in sentences)
    margin = 6  # pixels below the text and above it
    band = (lines.count("\n") + 1) * 1.3 * _FOOTNOTE_SIZE * PNG_DPI / 72 + 2 * margin
    figure.get_layout_engine().set(rect=(0, band / height, 1, 1 - band / height))
    figure.text(0.01, margin / height, lines, ha="left", va="bottom", fontsize=_FOOTNOTE_SIZE, color=_GREY)


def _suppressed_note(cells: int, suppressed: str) -> str:
    return data.suppressed_sentence(cells, suppressed) if cells else ""


def _floats(values: Sequence) -> list[float]:
    """NaN where a count is suppressed or absent: matplotlib leaves a gap there, never a zero."""
    return [math.nan if value is None else float(value) for value in values]


def _colour(index: int) -> str:
    return data.COLOURS[index % len(data.COLOURS)]


def _utilization_png(analytics: Mapping[str, pa.Table], suppressed: str) -> Figure:
    rows = data.rows_of(analytics, "hospital_utilization")
    empty = data.nothing_to_draw(rows, data.UTILIZATION_MEASURES, suppressed, "No HL7 messages yet")
    if empty:
        return _empty_png("utilization.png", "Hospital utilization", empty)
    drawn = data.utilization(rows)
    figure = _new_figure("utilization.png")
    figure.suptitle("Hospital utilization per facility and month", fontsize=15)
    grid = figure.subplots(2, 3)
    for axes, measure in zip(grid.flat, data.UTILIZATION_MEASURES):
        axes.set_title(data.UTILIZATION_MEASURES[measure])
        if not drawn.series[measure]:
            _say(axes, data.nothing_to_draw(rows, [measure]))
            continue
        for facility, values in drawn.series[measure].items():
            colour = _colour(drawn.facilities.index(facility))
            axes.plot(drawn.months, _floats(values), marker="o", label=facility, color=colour)
        axes.set_ylim(bottom=0)
        axes.tick_params(axis="x", labelrotation=45, labelsize=8)
        axes.grid(alpha=0.3)
    legend_axes = grid.flat[-1]
    legend_axes.set_axis_off()
    handles = [Line2D([], [], marker="o", color=_colour(index)) for index in range(len(drawn.facilities))]
    legend_axes.legend(
        handles,
        drawn.facilities,
        loc="center",
        title="Sending facility",
        frameon=False,
        ncols=math.ceil(len(handles) / _LEGEND_ROWS),
        fontsize=10 if len(handles) <= _LEGEND_ROWS else 7,
    )
    _footnote(figure, [_suppressed_note(data.suppressed_cells(rows, data.UTILIZATION_MEASURES), suppressed)])
    return figure


def _demographics_png(analytics: Mapping[str, pa.Table], suppressed: str) -> Figure:
    rows = data.rows_of(analytics, "patient_demographics")
    empty = data.nothing_to_draw(rows, ["patients"], suppressed, "No patients yet")
    if empty:
        return _empty_png("demographics.png", "Patient demographics", empty)
    bands, series = data.patients_by_gender(rows)
    figure = _new_figure("demographics.png")
    axes = figure.add_subplot()
    width = 0.8 / len(series)
    for position, (gender, values) in enumerate(series.items()):
        offsets = np.arange(len(bands)) + (position - (len(series) - 1) / 2) * width
        axes.bar(offsets, _floats(values), width, label=gender, color=_colour(position))
    axes.set_xticks(np.arange(len(bands)), bands)
    axes.set_xlabel("Age band (at the latest message)")
    axes.set_ylabel("Patients")
    axes.set_title("Patients by gender and age band", fontsize=14)
    axes.legend(title="Gender")
    axes.grid(axis="y", alpha=0.3)
    _footnote(figure, [_suppressed_note(data.suppressed_cells(rows, ["patients"]), suppressed)])
    return figure


def _labs_png(analytics: Mapping[str, pa.Table], suppressed: str) -> Figure:
    rows = data.rows_of(analytics, "lab_results")
    empty = data.nothing_to_draw(rows, ["results"], suppressed, "No lab results yet")
    if empty:
        return _empty_png("labs.png", "Lab results", empty)
    figure = _new_figure("labs.png")
    figure.suptitle("Lab results", fontsize=15)
    top, bottom = figure.subfigures(2, 1, height_ratios=[1, 1])
    # One y axis for both: every row of the rates faces the same test among the volumes.
    volume_axes, rate_axes = top.subplots(1, 2, sharey=True)
    bars = data.lab_bars(rows, data.MAX_BARS)
    positions = np.arange(len(bars.tests))
    volume_axes.barh(positions, bars.results, color=data.COLOURS[0])
    volume_axes.set_title("Results per test")
    rates = [None if rate is None else 100 * rate for rate in bars.abnormal_rates]
    rate_axes.barh(positions, _floats(rates), color="#d62728")
    rate_axes.set_title("Abnormal rate per test (%)")
    volume_axes.set_yticks(positions, bars.tests)
    for axes in (volume_axes, rate_axes):
        axes.tick_params(axis="y", labelsize=8)
        axes.grid(axis="x", alpha=0.3)
    if bars.rates_missing == len(bars.tests):
        _say(rate_axes, "Every abnormal rate is suppressed.")
    _lab_boxes_png(bottom, rows)
    _footnote(
        figure,
        [
            _suppressed_note(data.suppressed_cells(rows, data.LAB_COUNTS), suppressed),
            data.rates_missing_sentence(bars.rates_missing) if bars.rates_missing else "",
        ],
    )
    return figure


def _lab_boxes_png(subfigure, rows: list[dict]) -> None:
    numeric = data.numeric_lab_tests(rows, 8)
    if not numeric:
        _say(subfigure.add_subplot(), "No numeric lab values", fontsize=13)
        return
    subfigure.suptitle(
        "Value distribution of the most frequent numeric tests (whiskers 5th-95th percentile)", fontsize=11
    )
    grid = subfigure.subplots(1, len(numeric), squeeze=False)[0]
    for axes, row in zip(grid, numeric):
        axes.bxp([_box_stats(row)], showmeans=row.get("value_mean") is not None, showfliers=False)
        axes.set_xticks([])
        axes.set_title(data.lab_label(row), fontsize=8, wrap=True)
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
    counted = data.rows_of(analytics, "imaging")
    syntaxes = data.rows_of(analytics, "imaging_transfer_syntaxes")
    empty = data.nothing_to_draw(counted, ["studies", "images"], suppressed, "No DICOM images yet")
    if empty and data.nothing_to_draw(syntaxes, ["images"]):
        return _empty_png("imaging_workload.png", "Imaging", empty)
    rows = data.imaging_rows(analytics)
    figure = _new_figure("imaging_workload.png")
    figure.suptitle("Imaging per modality", fontsize=15)
    counts_axes, pixels_axes, syntax_axes = figure.subplots(1, 3)
    counts_axes.set_title("Studies and images")
    if empty:
        _say(counts_axes, empty)
    else:
        modalities = [data.modality(row) for row in rows]
        positions = np.arange(len(modalities))
        for offset, measure in zip((-0.2, 0.2), ("studies", "images")):
            counts = _floats([row.get(measure) for row in rows])
            counts_axes.bar(positions + offset, counts, 0.4, label=measure.title())
        counts_axes.set_xticks(positions, modalities)
        counts_axes.legend()
    _pixel_statistics_png(pixels_axes, rows)
    _transfer_syntaxes_png(syntax_axes, syntaxes, suppressed)
    cells = data.suppressed_cells(counted, ["studies", "images"]) + data.suppressed_cells(syntaxes, ["images"])
    _footnote(figure, [_suppressed_note(cells, suppressed)])
    return figure


def _pixel_statistics_png(axes, rows: list[dict]) -> None:
    shown = data.with_pixel_statistics(rows)
    axes.set_title("Stored pixel values (mean ± std, min, max)")
    if not shown:
        _say(axes, "No pixel statistics")
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
    axes.set_xticks(positions, [data.modality(row) for row in shown])
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)


def _transfer_syntaxes_png(axes, rows: list[dict], suppressed: str) -> None:
    axes.set_title("Images per transfer syntax")
    empty = data.nothing_to_draw(rows, ["images"], suppressed, "No transfer syntaxes")
    if empty:
        _say(axes, empty)
        return
    modalities, series = data.images_by_syntax(rows)
    bottom = np.zeros(len(modalities))
    for colour, (syntax, values) in enumerate(series.items()):
        heights = np.nan_to_num(_floats(values))  # a suppressed part adds nothing to the stack
        axes.bar(modalities, heights, bottom=bottom, label=syntax, color=_colour(colour))
        bottom += heights
    # Transfer syntax names are long: below the bars they hide nothing.
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08))


def _preview_png(shown: list[Preview]) -> Figure:
    if not shown:
        return _empty_png("dicom_preview.png", "De-identified DICOM preview", "No images cleared for export")
    figure = _new_figure("dicom_preview.png")
    figure.suptitle("De-identified DICOM preview: middle frame and intensity histogram", fontsize=14)
    rows, columns = grid_shape(len(shown))
    grid = figure.add_gridspec(2 * rows, columns, height_ratios=[3, 1] * rows)
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    for position, preview in enumerate(shown):
        row, column = 2 * (position // columns), position % columns
        image_axes = figure.add_subplot(grid[row, column])
        image_axes.imshow(preview.pixels, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        image_axes.set_title(preview.label, fontsize=10)
        image_axes.set_axis_off()
        histogram_axes = figure.add_subplot(grid[row + 1, column])
        histogram_axes.stairs(preview.histogram, edges, fill=True, color=_GREY)
        histogram_axes.set_xlim(0.0, 1.0)
        histogram_axes.set_yticks([])
        histogram_axes.tick_params(axis="x", labelsize=7)
    return figure

"""Sample inputs of the dashboards: analytics tables with real-looking numbers and suppressed cells,
de-identified image rows and thumbnails; and a reader of the charts a page passes to plotly."""

import json
import re

import numpy as np
import pyarrow as pa

from medical_assets.analytics import tables
from medical_assets.dicom.tables import DEID_DICOM_IMAGES, DEID_DICOM_THUMBNAILS

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


def utilization_table() -> pa.Table:
    names = ("sending_facility", "month", "messages", "admissions", "discharges", "lab_results", "pharmacy_orders")
    return _table(tables.HOSPITAL_UTILIZATION, [dict(zip(names, row)) for row in UTILIZATION])


def demographics_table() -> pa.Table:
    counts = {"F": (412, 530, 688, 902, 764, 41), "M": (398, 471, 602, 877, 701, None), "U": (12, 0, 14, 19, 11, 0)}
    rows = [
        {"patient_gender": gender, "age_band": band, "patients": patients}
        for gender, values in counts.items()
        for band, patients in zip(("0-17", "18-29", "30-44", "45-64", "65-89", "90+"), values)
    ]
    return _table(tables.PATIENT_DEMOGRAPHICS, rows)


def message_types_table() -> pa.Table:
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


def lab_results_table() -> pa.Table:
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


def pharmacy_table() -> pa.Table:
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


def imaging_table() -> pa.Table:
    rows = [
        ("CT", 58, 2940, 2940, 412.5, 611.0, -2048.0, 3071.0),
        ("MR", 31, 1876, 1876, 287.1, 301.9, 0.0, 4095.0),
        ("CR", 97, 143, 143, 1733.0, 802.4, 0.0, 4095.0),
        ("US", None, 14, 406, None, None, None, None),
    ]
    names = ("modality", "studies", "images", "frames", "pixel_mean_avg", "pixel_std_avg", "pixel_min", "pixel_max")
    return _table(tables.IMAGING, [dict(zip(names, row)) for row in rows])


def transfer_syntaxes_table() -> pa.Table:
    rows = [
        ("CT", "1.2.840.10008.1.2.1", "Explicit VR Little Endian", 2811),
        ("CT", "1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order Prediction", 129),
        ("MR", "1.2.840.10008.1.2.1", "Explicit VR Little Endian", 1876),
        ("CR", "1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)", 143),
        ("US", "1.2.840.10008.1.2.5", "RLE Lossless", None),
    ]
    names = ("modality", "transfer_syntax_uid", "transfer_syntax_name", "images")
    return _table(tables.IMAGING_TRANSFER_SYNTAXES, [dict(zip(names, row)) for row in rows])


def quality_files_table() -> pa.Table:
    rows = [
        ("f_9b1c2e77a0d4", "ST_MARYS_HOSP", 4817, 12, 12 / 4829, 0.97),
        ("f_41d0c5e2b913", "CITY_GENERAL", 2391, 118, 118 / 2509, 0.88),
        ("f_c07aa1f3e265", "NORTHSIDE_CLINIC", 388, None, None, 0.91),
        ("f_5e2d90b1c8aa", None, 0, 37, 1.0, None),
    ]
    names = ("source_file_token", "sending_facility", "messages", "errors", "error_rate", "mean_validation_score")
    return _table(tables.DATA_QUALITY_FILES, [dict(zip(names, row)) for row in rows])


def quality_facilities_table() -> pa.Table:
    rows = [
        ("ST_MARYS_HOSP", 14302, 12, 12 / 14314, 0.97),
        ("CITY_GENERAL", 7048, 118, 118 / 7166, 0.88),
        ("NORTHSIDE_CLINIC", 1167, None, None, 0.91),
        (None, 0, 37, 1.0, None),
    ]
    names = ("sending_facility", "messages", "errors", "error_rate", "mean_validation_score")
    return _table(tables.DATA_QUALITY_FACILITIES, [dict(zip(names, row)) for row in rows])


def sample_analytics() -> dict[str, pa.Table]:
    """Every analytics table, by name."""
    return {
        "hospital_utilization": utilization_table(),
        "patient_demographics": demographics_table(),
        "message_types": message_types_table(),
        "lab_results": lab_results_table(),
        "pharmacy": pharmacy_table(),
        "imaging": imaging_table(),
        "imaging_transfer_syntaxes": transfer_syntaxes_table(),
        "data_quality_files": quality_files_table(),
        "data_quality_facilities": quality_facilities_table(),
    }


def uid(index: int) -> str:
    return f"2.25.{318274019283746501928374650192837 + index}"


def phantom(index: int) -> np.ndarray:
    """A 64 x 64 image in [0, 1]: a bright disc off centre over a gradient, different per index."""
    y, x = np.mgrid[0:64, 0:64].astype(np.float32)
    disc = ((x - 24 - index % 5 * 4) ** 2 + (y - 30 - index % 3 * 5) ** 2 < (10 + index % 4 * 3) ** 2).astype(
        np.float32
    )
    image = 0.35 * x / 63 + 0.6 * disc + 0.05 * np.sin(index + y / 5)
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


# (modality, burned_in_risk) of each de-identified image; the US one is not cleared for export
IMAGES = [("CT", None)] * 4 + [("MR", None)] * 3 + [("CR", None)] * 2 + [("US", "Burned In Annotation is YES")]


def images_table() -> pa.Table:
    """The de-identified image rows of IMAGES, by index."""
    rows = [
        {
            "deid_file": f"{uid(100)}/{uid(200)}/{uid(index)}.dcm",
            "sop_instance_uid": uid(index),
            "study_instance_uid": uid(100 + index // 3),
            "series_instance_uid": uid(200 + index // 2),
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


def thumbnails_table(count: int) -> pa.Table:
    pixels = np.stack([phantom(index) for index in range(count)])
    return pa.table(
        {
            "sop_instance_uid": pa.array([uid(index) for index in range(count)], pa.string()),
            "frame_index": pa.array([0] * count, pa.int32()),
            "thumbnail": pa.FixedShapeTensorArray.from_numpy_ndarray(pixels),
        },
        schema=DEID_DICOM_THUMBNAILS,
    )


def chart_data(page: str, chart: str) -> list[dict]:
    """The traces plotly draws in the chart with element id `chart`, as the page passes them."""
    return _new_plot_arguments(page, chart)[0]


def chart_layout(page: str, chart: str) -> dict:
    """The layout plotly is given for the chart with element id `chart`."""
    return _new_plot_arguments(page, chart)[1]


def _new_plot_arguments(page: str, chart: str) -> tuple[list[dict], dict]:
    call = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(chart) + r'",\s*', page)
    assert call, f"no chart {chart}"
    decoder = json.JSONDecoder()
    traces, end = decoder.raw_decode(page, call.end())
    layout, _ = decoder.raw_decode(page, re.compile(r",\s*").match(page, end).end())
    return traces, layout

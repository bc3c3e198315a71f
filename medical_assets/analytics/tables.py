"""Arrow schemas of the analytics tables published in `deid/analytics/<table>/`.

Every count column is nullable: null means suppressed (a count from 1 to the suppression
threshold, or a cell suppressed so that it cannot be derived from a total). A zero stays zero.
Each table also has `suppressed_cells` (int32): how many cells of the row were suppressed.
Statistics over values (means, quantiles) are null whenever the row's count is suppressed.
"""

import pyarrow as pa

_SUPPRESSED = pa.field("suppressed_cells", pa.int32())

HOSPITAL_UTILIZATION = pa.schema(
    [
        pa.field("sending_facility", pa.string()),  # MSH-4.1
        pa.field("month", pa.string()),  # YYYY-MM of MSH-7 (an aggregate: months are not published per record)
        pa.field("messages", pa.int64()),
        pa.field("admissions", pa.int64()),  # ADT^A01
        pa.field("discharges", pa.int64()),  # ADT^A03
        pa.field("lab_results", pa.int64()),  # OBX rows
        pa.field("pharmacy_orders", pa.int64()),  # RXE rows
        _SUPPRESSED,
    ]
)

PATIENT_DEMOGRAPHICS = pa.schema(
    [
        pa.field("patient_gender", pa.string()),  # PID-8 (F, M, O, U, or null)
        pa.field("age_band", pa.string()),  # 0-17, 18-29, 30-44, 45-64, 65-89, 90+ (at the patient's latest message)
        pa.field("patients", pa.int64()),  # distinct patient tokens
        _SUPPRESSED,
    ]
)

MESSAGE_TYPES = pa.schema(
    [
        pa.field("message_type", pa.string()),  # e.g. ADT^A01
        pa.field("hl7_version", pa.string()),
        pa.field("messages", pa.int64()),
        pa.field("share", pa.float64()),  # of all messages; null when messages is suppressed
        _SUPPRESSED,
    ]
)

LAB_RESULTS = pa.schema(
    [
        pa.field("observation_code", pa.string()),  # OBX-3.1
        pa.field("observation_name", pa.string()),  # OBX-3.2
        pa.field("units", pa.string()),  # OBX-6.1
        pa.field("results", pa.int64()),
        pa.field("abnormal_results", pa.int64()),  # OBX-8 set and not N
        pa.field("abnormal_rate", pa.float64()),
        pa.field("numeric_results", pa.int64()),  # rows with numeric_value
        pa.field("value_mean", pa.float64()),
        pa.field("value_p05", pa.float64()),
        pa.field("value_p25", pa.float64()),
        pa.field("value_median", pa.float64()),
        pa.field("value_p75", pa.float64()),
        pa.field("value_p95", pa.float64()),
        _SUPPRESSED,
    ]
)

PHARMACY = pa.schema(
    [
        pa.field("give_code", pa.string()),  # RXE-2.1
        pa.field("give_name", pa.string()),  # RXE-2.2
        pa.field("route", pa.string()),  # RXR-1.1
        pa.field("orders", pa.int64()),
        pa.field("rank", pa.int32()),  # by orders of the medication over all routes, 1 = most ordered
        _SUPPRESSED,
    ]
)

IMAGING = pa.schema(
    [
        pa.field("modality", pa.string()),
        pa.field("studies", pa.int64()),  # distinct (de-identified) study UIDs
        pa.field("images", pa.int64()),
        pa.field("frames", pa.int64()),
        pa.field("pixel_mean_avg", pa.float64()),  # mean over images of pixel_mean
        pa.field("pixel_std_avg", pa.float64()),
        pa.field("pixel_min", pa.float64()),  # the smallest pixel_min
        pa.field("pixel_max", pa.float64()),  # the largest pixel_max
        _SUPPRESSED,
    ]
)

IMAGING_TRANSFER_SYNTAXES = pa.schema(
    [
        pa.field("modality", pa.string()),
        pa.field("transfer_syntax_uid", pa.string()),
        pa.field("transfer_syntax_name", pa.string()),  # pydicom's name for the UID
        pa.field("images", pa.int64()),
        _SUPPRESSED,
    ]
)

DATA_QUALITY_FILES = pa.schema(
    [
        pa.field("source_file_token", pa.string()),  # keyed token of the file name, as in deid hl7_messages
        pa.field("sending_facility", pa.string()),  # most frequent MSH-4.1 among the file's parsed messages
        pa.field("messages", pa.int64()),  # parsed
        pa.field("errors", pa.int64()),  # rows of hl7_errors
        pa.field("error_rate", pa.float64()),  # errors / (messages + errors)
        pa.field("mean_validation_score", pa.float64()),
        _SUPPRESSED,
    ]
)

DATA_QUALITY_FACILITIES = pa.schema(
    [
        pa.field("sending_facility", pa.string()),  # null: files with no parsed message to tell
        pa.field("messages", pa.int64()),
        pa.field("errors", pa.int64()),
        pa.field("error_rate", pa.float64()),
        pa.field("mean_validation_score", pa.float64()),
        _SUPPRESSED,
    ]
)

ANALYTICS_TABLES = {
    "hospital_utilization": HOSPITAL_UTILIZATION,
    "patient_demographics": PATIENT_DEMOGRAPHICS,
    "message_types": MESSAGE_TYPES,
    "lab_results": LAB_RESULTS,
    "pharmacy": PHARMACY,
    "imaging": IMAGING,
    "imaging_transfer_syntaxes": IMAGING_TRANSFER_SYNTAXES,
    "data_quality_files": DATA_QUALITY_FILES,
    "data_quality_facilities": DATA_QUALITY_FACILITIES,
}

# HL7 message validation, one row per parsed message (joins deid hl7_messages on the three keys).
MESSAGE_VALIDATION = pa.schema(
    [
        pa.field("message_token", pa.string()),
        pa.field("source_file_token", pa.string()),
        pa.field("message_index", pa.int32()),
        pa.field("validation_score", pa.float64()),  # required items present / required items, in [0, 1]
        pa.field("validation_issues", pa.list_(pa.string())),  # e.g. "PV1 missing", "PID-7 empty"; never values
    ]
)

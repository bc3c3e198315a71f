"""Arrow schemas of the analytics tables published in `deid/analytics/<table>/`.

Every count column is nullable: null means suppressed (a count from 1 to the suppression
threshold, or a cell suppressed so that it cannot be derived from a total). A zero stays zero.
Each table also has `suppressed_cells` (int32): how many cells of the row were suppressed.
Statistics over values (means, quantiles) are null whenever the row's count is suppressed.
"""

import pyarrow as pa

from medical_assets.columns import column

_SUPPRESSED = column("suppressed_cells", pa.int32(), "derived", "How many cells of the row were suppressed.")
_IF_SUPPRESSED = "null when from 1 to the suppression threshold, or suppressed so that it cannot be derived from a total"


def _count(name: str, what: str) -> pa.Field:
    """A count column: `what` it counts, null when suppressed."""
    return column(name, pa.int64(), "derived", f"{what}; {_IF_SUPPRESSED}.")


def _statistic(name: str, what: str, count: str) -> pa.Field:
    """A statistic nulled with the count it describes."""
    return column(name, pa.float64(), "derived", f"{what}; null when {count} is suppressed.")


_FACILITY = column("sending_facility", pa.string(), "MSH-4.1", "Sending facility, as in the de-identified hl7_messages.")

HOSPITAL_UTILIZATION = pa.schema(
    [
        _FACILITY,
        # An aggregate: months are not published per record
        column("month", pa.string(), "MSH-7", "YYYY-MM of the message date/time, read from the PHI zone."),
        _count("messages", "Messages of the facility and month"),
        _count("admissions", "ADT^A01 messages"),
        _count("discharges", "ADT^A03 messages"),
        _count("lab_results", "OBX rows, under their message's facility and month"),
        _count("pharmacy_orders", "RXE rows (cancellations included), under their message's facility and month"),
        _SUPPRESSED,
    ]
)

PATIENT_DEMOGRAPHICS = pa.schema(
    [
        column("patient_gender", pa.string(), "PID-8",
               "Administrative sex (F, M, O, U, or null) at the patient's latest message."),
        column("age_band", pa.string(), "PID-7 at MSH-7",
               "0-17, 18-29, 30-44, 45-64, 65-89 or 90+ at the patient's latest message."),
        _count("patients", "Count of distinct patient tokens per gender and age band"),
        _SUPPRESSED,
    ]
)

MESSAGE_TYPES = pa.schema(
    [
        column("message_type", pa.string(), "MSH-9.1^MSH-9.2", "E.g. ADT^A01."),
        column("hl7_version", pa.string(), "MSH-12.1"),
        _count("messages", "Messages of the type and version"),
        _statistic("share", "messages over the sum of the published messages", "messages"),
        _SUPPRESSED,
    ]
)

LAB_RESULTS = pa.schema(
    [
        column("observation_code", pa.string(), "OBX-3.1"),
        column("observation_name", pa.string(), "OBX-3.2"),
        column("units", pa.string(), "OBX-6.1"),
        _count("results", "OBX rows of the test"),
        _count("abnormal_results", "OBX rows whose abnormal flag (OBX-8) is set and not N"),
        _statistic("abnormal_rate", "abnormal_results / results", "results or abnormal_results"),
        _count("numeric_results", "OBX rows with a numeric value (OBX-5 of type NM or SN)"),
        _statistic("value_mean", "Mean of the numeric values", "numeric_results"),
        _statistic("value_p05", "5th percentile of the numeric values (linear interpolation)", "numeric_results"),
        _statistic("value_p25", "25th percentile of the numeric values", "numeric_results"),
        _statistic("value_median", "Median of the numeric values", "numeric_results"),
        _statistic("value_p75", "75th percentile of the numeric values", "numeric_results"),
        _statistic("value_p95", "95th percentile of the numeric values", "numeric_results"),
        _SUPPRESSED,
    ]
)

PHARMACY = pa.schema(
    [
        column("give_code", pa.string(), "RXE-2.1", "Medication code."),
        column("give_name", pa.string(), "RXE-2.2", "Medication name."),
        column("route", pa.string(), "RXR-1.1", "Route of administration."),
        _count("orders", "RXE rows of the medication and route (cancellations included)"),
        column("rank", pa.int32(), "derived",
               "Rank of the medication (its give code, else its name) by its published orders over all routes, "
               "1 = most ordered, ties sharing the best rank; null when orders is suppressed."),
        _SUPPRESSED,
    ]
)

_MODALITY = column("modality", pa.string(), "(0008,0060) Modality")

IMAGING = pa.schema(
    [
        _MODALITY,
        _count("studies", "Distinct (de-identified) study UIDs"),
        _count("images", "Rows of the de-identified dicom_images"),
        _count("frames", "Sum of NumberOfFrames (0028,0008) over the images; also null when images is"),
        _statistic("pixel_mean_avg", "Mean over the images of pixel_mean", "images"),
        _statistic("pixel_std_avg", "Mean over the images of pixel_std", "images"),
        _statistic("pixel_min", "The smallest pixel_min", "images"),
        _statistic("pixel_max", "The largest pixel_max", "images"),
        _SUPPRESSED,
    ]
)

IMAGING_TRANSFER_SYNTAXES = pa.schema(
    [
        _MODALITY,
        column("transfer_syntax_uid", pa.string(), "(0002,0010) TransferSyntaxUID"),
        column("transfer_syntax_name", pa.string(), "derived",
               "pydicom's name for the UID, e.g. Explicit VR Little Endian; null for a UID it does not know."),
        _count("images", "Images of the modality and transfer syntax"),
        _SUPPRESSED,
    ]
)

_ERROR_RATE = _statistic("error_rate", "errors / (messages + errors)", "messages or errors")
_MEAN_VALIDATION_SCORE = _statistic(
    "mean_validation_score", "Mean validation_score of the messages (required items present, in [0, 1])", "messages"
)

DATA_QUALITY_FILES = pa.schema(
    [
        column("source_file_token", pa.string(), "file name",
               "Keyed token of the file name, as in the de-identified hl7_messages."),
        column("sending_facility", pa.string(), "MSH-4.1",
               "The most frequent sending facility among the file's parsed messages (ties: the first name in order)."),
        _count("messages", "Parsed messages of the file"),
        _count("errors", "Rows of hl7_errors of the file: messages or whole files not parsed"),
        _ERROR_RATE,
        _MEAN_VALIDATION_SCORE,
        _SUPPRESSED,
    ]
)

DATA_QUALITY_FACILITIES = pa.schema(
    [
        column("sending_facility", pa.string(), "MSH-4.1",
               "Messages go by their own MSH-4.1, errors by their file's facility; null: files with no parsed message to tell."),
        _count("messages", "Parsed messages of the facility"),
        _count("errors", "Rows of hl7_errors of the facility's files"),
        _ERROR_RATE,
        _MEAN_VALIDATION_SCORE,
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
        column("message_token", pa.string(), "MSH-10",
               "Keyed token of the message control ID, as in the de-identified hl7_messages."),
        column("source_file_token", pa.string(), "file name",
               "Keyed token of the landing file, as in the de-identified hl7_messages."),
        column("message_index", pa.int32(), "derived", "0-based position of the message in its file."),
        column("validation_score", pa.float64(), "derived", "Required items present / required items assessed, in [0, 1]."),
        column("validation_issues", pa.list_(pa.string()), "derived",
               "Each failed item, e.g. \"PV1 missing\", \"PID-7 empty\"; never a value."),
    ]
)

"""The analytics tables of `deid/analytics/` (`tables.ANALYTICS_TABLES`), and the suppression policy of each.

Every table is computed from the de-identified tables, unsuppressed (`compute`, `compute_all`);
`publishable` then applies the table's `SUPPRESSION_POLICIES` entry. The PHI zone is read only
where the de-identified tables cannot answer:

- the month of MSH-7 for hospital utilization (Safe Harbor keeps only the year per record),
  taken from PHI `hl7_messages` and joined on the message's key;
- parse errors for data quality: PHI `hl7_errors`, whose rows have no de-identified counterpart.

A message's key is (source file token, message_index), as in the de-identified tables; PHI rows
get their file's token from the caller's `source_file_token(path)`, the function that made the
de-identified tokens, so no file name reaches an output. Child rows (OBX, RXE) find their
message, and so its facility and month, through that key; a child whose message is absent counts
under a null facility and month. Every group-by keeps nulls as a group of their own.

Choices where the issue is silent:

- Utilization counts a message by its own MSH-4 and the month of its own MSH-7; admissions and
  discharges are ADT^A01 and ADT^A03 messages; lab results and pharmacy orders are OBX and RXE
  rows (cancellations included), under their message's facility and month.
- Demographics count distinct patient tokens (rows without one are left out) under the gender
  and age band of each patient's latest message by message year; among messages of that year the
  last row wins.
- Pharmacy rows are (give code, give name, route); a medication is its give code (its name when
  the code is missing), ranked by its orders over all routes, ties sharing the best rank (1, 2,
  2, 4).
- Imaging counts every image of the de-identified `dicom_images`, exported or not (the workload,
  not the export); frames are the sum of NumberOfFrames.
- Data quality per file attributes a file to the most frequent MSH-4 among its parsed messages
  (ties: the first name in order). Per facility, messages and their mean validation score go by
  each message's own MSH-4 (the same counts as utilization), while errors, which have no MSH-4,
  go to their file's facility (null when the file has no parsed message).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydicom.uid import UID_dictionary

from medical_assets.analytics import tables
from medical_assets.analytics.suppression import DEFAULT_THRESHOLD, SUPPRESSED_CELLS, suppress
from medical_assets.dicom.deidentify import DEID_DICOM_IMAGES
from medical_assets.hl7 import tables as phi_tables
from medical_assets.privacy.hl7_deid import DEID_HL7_TABLES
from medical_assets.privacy.safe_harbor import AGE_BANDS, AGE_OVER_89

# A message's key in both zones: the file (as its token) and the position in it.
MESSAGE_KEY = ["source_file_token", "message_index"]
# The columns of each de-identified table the builders read (the validation score included): the
# analytics job reads only these, a third of hl7_messages' width.
DEID_COLUMNS_READ = {
    "hl7_messages": [
        *MESSAGE_KEY, "sending_facility", "message_type", "hl7_version", "message_year",
        "patient_token", "patient_gender", "age_band", "validation_score",
    ],
    "hl7_lab_results": [*MESSAGE_KEY, "observation_code", "observation_name", "units", "abnormal_flag", "numeric_value"],
    "hl7_pharmacy_orders": [*MESSAGE_KEY, "give_code", "give_name", "route"],
    "dicom_images": [
        "modality", "study_instance_uid", "number_of_frames", "transfer_syntax_uid",
        "pixel_mean", "pixel_std", "pixel_min", "pixel_max",
    ],
}  # fmt: skip
ADMISSION = "ADT^A01"
DISCHARGE = "ADT^A03"
# OBX-8 for a result within its reference range; an empty flag says the same.
NORMAL_FLAG = "N"
QUANTILES = {"value_p05": 0.05, "value_p25": 0.25, "value_median": 0.5, "value_p75": 0.75, "value_p95": 0.95}
AGE_BAND_ORDER = [band for _, _, band in AGE_BANDS] + [AGE_OVER_89]

SourceFileToken = Callable[[str], str]


@dataclass(frozen=True)
class SuppressionPolicy:
    """How one table is suppressed: the arguments of `suppression.suppress` but the threshold."""

    count_columns: tuple[str, ...]
    group_by: tuple[str, ...] | None = None  # rows sharing a total published elsewhere; None: the column total
    dependent: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # count -> columns nulled with it
    sub_counts: Mapping[str, str] = field(default_factory=dict)  # count -> the count it is part of


_LAB_VALUE_STATISTICS = ("value_mean", *QUANTILES)
_QUALITY = SuppressionPolicy(
    count_columns=("messages", "errors"),
    dependent={"messages": ("error_rate", "mean_validation_score"), "errors": ("error_rate",)},
)

SUPPRESSION_POLICIES: dict[str, SuppressionPolicy] = {
    # Facility totals are published in data_quality_facilities (the same messages by MSH-4).
    "hospital_utilization": SuppressionPolicy(
        count_columns=("messages", "admissions", "discharges", "lab_results", "pharmacy_orders"),
        group_by=("sending_facility",),
        sub_counts={"admissions": "messages", "discharges": "messages"},
    ),
    "patient_demographics": SuppressionPolicy(count_columns=("patients",)),
    # Totals per message type are published in utilization (admissions, discharges).
    "message_types": SuppressionPolicy(
        count_columns=("messages",), group_by=("message_type",), dependent={"messages": ("share",)}
    ),
    "lab_results": SuppressionPolicy(
        count_columns=("results", "abnormal_results", "numeric_results"),
        dependent={
            "results": ("abnormal_rate",),
            "abnormal_results": ("abnormal_rate",),
            "numeric_results": _LAB_VALUE_STATISTICS,
        },
        sub_counts={"abnormal_results": "results", "numeric_results": "results"},
    ),
    "pharmacy": SuppressionPolicy(count_columns=("orders",)),
    # Frames and pixel statistics of a few images describe those images.
    "imaging": SuppressionPolicy(
        count_columns=("studies", "images", "frames"),
        dependent={"images": ("frames", "pixel_mean_avg", "pixel_std_avg", "pixel_min", "pixel_max")},
    ),
    # Totals per modality are published in imaging.
    "imaging_transfer_syntaxes": SuppressionPolicy(count_columns=("images",), group_by=("modality",)),
    # Error totals per facility are published in data_quality_facilities (errors go by the file's facility).
    "data_quality_files": SuppressionPolicy(
        count_columns=_QUALITY.count_columns, group_by=("sending_facility",), dependent=_QUALITY.dependent
    ),
    "data_quality_facilities": _QUALITY,
}


def compute_all(
    deid: Mapping[str, pa.Table],
    phi: Mapping[str, pa.Table],
    validation: pa.Table | None,
    source_file_token: SourceFileToken,
) -> dict[str, pa.Table]:
    """Every analytics table, unsuppressed, keyed by its name in `ANALYTICS_TABLES`.

    `deid`: de-identified hl7_messages, hl7_lab_results, hl7_pharmacy_orders and dicom_images
    (an absent table counts as empty). `phi`: PHI hl7_messages and hl7_errors. `validation`:
    `MESSAGE_VALIDATION` rows (`validation.validate_messages`).
    """
    return {name: compute(name, deid, phi, validation, source_file_token) for name in tables.ANALYTICS_TABLES}


def publish_all(
    deid: Mapping[str, pa.Table],
    phi: Mapping[str, pa.Table],
    source_file_token: SourceFileToken,
    threshold: int = DEFAULT_THRESHOLD,
) -> dict[str, pa.Table]:
    """Every analytics table as published: `compute_all`, then `publishable`. The validation scores
    are the de-identified messages' own `validation_score` column."""
    messages = deid.get("hl7_messages")
    validation = None if messages is None else messages.select([*MESSAGE_KEY, "validation_score"])
    computed = compute_all(deid, phi, validation, source_file_token)
    return {name: publishable(name, table, threshold) for name, table in computed.items()}


def compute(
    name: str,
    deid: Mapping[str, pa.Table],
    phi: Mapping[str, pa.Table],
    validation: pa.Table | None,
    source_file_token: SourceFileToken,
) -> pa.Table:
    """One analytics table, unsuppressed, from the same inputs as `compute_all`."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown analytics table {name!r}; choose one of {', '.join(tables.ANALYTICS_TABLES)}")
    inputs = _Inputs(
        messages=_table(deid, "hl7_messages", DEID_HL7_TABLES["hl7_messages"]),
        observations=_table(deid, "hl7_lab_results", DEID_HL7_TABLES["hl7_lab_results"]),
        orders=_table(deid, "hl7_pharmacy_orders", DEID_HL7_TABLES["hl7_pharmacy_orders"]),
        images=_table(deid, "dicom_images", DEID_DICOM_IMAGES),
        phi_messages=_table(phi, "hl7_messages", phi_tables.HL7_MESSAGES),
        errors=_table(phi, "hl7_errors", phi_tables.HL7_ERRORS),
        validation=tables.MESSAGE_VALIDATION.empty_table() if validation is None else validation,
        source_file_token=source_file_token,
    )
    return _BUILDERS[name](inputs)


def publishable(name: str, table: pa.Table, threshold: int = DEFAULT_THRESHOLD) -> pa.Table:
    """`table` suppressed under its policy, ready for `deid/analytics/<name>/`."""
    if name not in SUPPRESSION_POLICIES:
        raise ValueError(f"unknown analytics table {name!r}; choose one of {', '.join(SUPPRESSION_POLICIES)}")
    policy = SUPPRESSION_POLICIES[name]
    return suppress(
        table,
        list(policy.count_columns),
        threshold=threshold,
        group_by=list(policy.group_by) if policy.group_by else None,
        dependent={count: list(columns) for count, columns in policy.dependent.items()},
        sub_counts=dict(policy.sub_counts),
    )


def hospital_utilization(
    messages: pa.Table,
    observations: pa.Table,
    orders: pa.Table,
    phi_messages: pa.Table,
    source_file_token: SourceFileToken,
) -> pa.Table:
    """Messages, admissions, discharges, OBX and RXE rows per facility and month of MSH-7."""
    per_message = _frame(messages, [*MESSAGE_KEY, "sending_facility", "message_type"])
    per_message = per_message.merge(_months(phi_messages, source_file_token), how="left", on=MESSAGE_KEY)
    places = per_message[[*MESSAGE_KEY, "sending_facility", "month"]].drop_duplicates(MESSAGE_KEY)
    counted = ["messages", "admissions", "discharges", "lab_results", "pharmacy_orders"]
    events = pd.concat(
        [
            _events(
                per_message,
                counted,
                messages=1,
                admissions=per_message["message_type"].eq(ADMISSION),
                discharges=per_message["message_type"].eq(DISCHARGE),
            ),
            _events(_children_at(observations, places), counted, lab_results=1),
            _events(_children_at(orders, places), counted, pharmacy_orders=1),
        ]
    )
    keys = ["sending_facility", "month"]
    grouped = events.groupby(keys, dropna=False)[counted].sum().reset_index()
    return _to_table(grouped.sort_values(keys, na_position="last"), tables.HOSPITAL_UTILIZATION)


def patient_demographics(messages: pa.Table) -> pa.Table:
    """Distinct patients by gender and age band, each at their latest message (by year; ties: the last row)."""
    frame = _frame(messages, ["patient_token", "message_year", "patient_gender", "age_band"])
    frame = frame[frame["patient_token"].notna()]
    latest = frame.sort_values("message_year", kind="stable", na_position="first").drop_duplicates(
        "patient_token", keep="last"
    )
    keys = ["patient_gender", "age_band"]
    grouped = latest.groupby(keys, dropna=False).size().rename("patients").reset_index()
    band_order = grouped["age_band"].map({band: order for order, band in enumerate(AGE_BAND_ORDER)})
    grouped = grouped.assign(_band_order=band_order).sort_values(
        ["patient_gender", "_band_order", "age_band"], na_position="last"
    )
    return _to_table(grouped, tables.PATIENT_DEMOGRAPHICS)


def message_types(messages: pa.Table) -> pa.Table:
    """Messages per type and HL7 version, and each one's share of all messages."""
    keys = ["message_type", "hl7_version"]
    grouped = _frame(messages, keys).groupby(keys, dropna=False).size().rename("messages").reset_index()
    grouped["share"] = grouped["messages"] / grouped["messages"].sum()
    return _to_table(grouped.sort_values(keys, na_position="last"), tables.MESSAGE_TYPES)


def lab_results(observations: pa.Table) -> pa.Table:
    """Per test (code, name, units): OBX rows, abnormal ones, and the distribution of numeric values."""
    keys = ["observation_code", "observation_name", "units"]
    frame = _frame(observations, [*keys, "abnormal_flag", "numeric_value"])
    flags = frame["abnormal_flag"].str.strip().str.upper()
    frame["abnormal"] = flags.notna() & flags.ne("") & flags.ne(NORMAL_FLAG)
    by_test = frame.groupby(keys, dropna=False)
    grouped = by_test.agg(
        results=("abnormal", "size"),
        abnormal_results=("abnormal", "sum"),
        numeric_results=("numeric_value", "count"),
        value_mean=("numeric_value", "mean"),
    )
    for column, quantile in QUANTILES.items():
        grouped[column] = by_test["numeric_value"].quantile(quantile)
    grouped = grouped.reset_index()
    grouped["abnormal_rate"] = grouped["abnormal_results"] / grouped["results"]
    return _to_table(grouped.sort_values(keys, na_position="last"), tables.LAB_RESULTS)


def pharmacy(orders: pa.Table) -> pa.Table:
    """RXE rows per medication and route, with the medication's rank by its orders over all routes."""
    keys = ["give_code", "give_name", "route"]
    grouped = _frame(orders, keys).groupby(keys, dropna=False).size().rename("orders").reset_index()
    medication = grouped["give_code"].where(grouped["give_code"].notna(), "name\x1f" + grouped["give_name"])
    medication = medication.fillna("\x1f")  # neither code nor name: one unknown medication
    totals = grouped.groupby(medication)["orders"].sum()
    grouped["rank"] = medication.map(totals.rank(method="min", ascending=False))
    return _to_table(grouped.sort_values(["rank", *keys], na_position="last"), tables.PHARMACY)


def imaging(images: pa.Table) -> pa.Table:
    """Studies, images, frames and pixel statistics per modality."""
    frame = _frame(
        images,
        ["modality", "study_instance_uid", "number_of_frames", "pixel_mean", "pixel_std", "pixel_min", "pixel_max"],
    )
    grouped = (
        frame.groupby("modality", dropna=False)
        .agg(
            studies=("study_instance_uid", "nunique"),
            images=("study_instance_uid", "size"),
            frames=("number_of_frames", "sum"),
            pixel_mean_avg=("pixel_mean", "mean"),
            pixel_std_avg=("pixel_std", "mean"),
            pixel_min=("pixel_min", "min"),
            pixel_max=("pixel_max", "max"),
        )
        .reset_index()
    )
    return _to_table(grouped.sort_values("modality", na_position="last"), tables.IMAGING)


def imaging_transfer_syntaxes(images: pa.Table) -> pa.Table:
    """Images per modality and transfer syntax, with the syntax's name from pydicom's UID dictionary."""
    keys = ["modality", "transfer_syntax_uid"]
    grouped = _frame(images, keys).groupby(keys, dropna=False).size().rename("images").reset_index()
    grouped["transfer_syntax_name"] = grouped["transfer_syntax_uid"].map(transfer_syntax_name)
    return _to_table(grouped.sort_values(keys, na_position="last"), tables.IMAGING_TRANSFER_SYNTAXES)


def transfer_syntax_name(uid: str | None) -> str | None:
    """pydicom's name for a UID (e.g. "Explicit VR Little Endian"); None for a UID it does not know."""
    if not isinstance(uid, str):
        return None
    entry = UID_dictionary.get(uid.strip())
    return entry[0] if entry else None


def data_quality_files(
    messages: pa.Table, errors: pa.Table, validation: pa.Table, source_file_token: SourceFileToken
) -> pa.Table:
    """Per source file (as its token): parsed messages, parse errors, error rate, mean validation score."""
    failed = _error_files(errors, source_file_token)
    grouped = _quality(_scored_messages(messages, validation), failed, "source_file_token")
    grouped = grouped.merge(_file_facilities(messages), how="left", on="source_file_token")
    return _to_table(grouped.sort_values("source_file_token", na_position="last"), tables.DATA_QUALITY_FILES)


def data_quality_facilities(
    messages: pa.Table, errors: pa.Table, validation: pa.Table, source_file_token: SourceFileToken
) -> pa.Table:
    """Per facility: parsed messages (by their MSH-4), errors (by their file's facility), rate and mean score."""
    failed = _error_files(errors, source_file_token).merge(
        _file_facilities(messages), how="left", on="source_file_token"
    )
    grouped = _quality(_scored_messages(messages, validation), failed, "sending_facility")
    return _to_table(grouped.sort_values("sending_facility", na_position="last"), tables.DATA_QUALITY_FACILITIES)


@dataclass(frozen=True)
class _Inputs:
    messages: pa.Table
    observations: pa.Table
    orders: pa.Table
    images: pa.Table
    phi_messages: pa.Table
    errors: pa.Table
    validation: pa.Table
    source_file_token: SourceFileToken


_BUILDERS: dict[str, Callable[[_Inputs], pa.Table]] = {
    "hospital_utilization": lambda i: hospital_utilization(
        i.messages, i.observations, i.orders, i.phi_messages, i.source_file_token
    ),
    "patient_demographics": lambda i: patient_demographics(i.messages),
    "message_types": lambda i: message_types(i.messages),
    "lab_results": lambda i: lab_results(i.observations),
    "pharmacy": lambda i: pharmacy(i.orders),
    "imaging": lambda i: imaging(i.images),
    "imaging_transfer_syntaxes": lambda i: imaging_transfer_syntaxes(i.images),
    "data_quality_files": lambda i: data_quality_files(i.messages, i.errors, i.validation, i.source_file_token),
    "data_quality_facilities": lambda i: data_quality_facilities(
        i.messages, i.errors, i.validation, i.source_file_token
    ),
}


def _months(phi_messages: pa.Table, source_file_token: SourceFileToken) -> pd.DataFrame:
    """YYYY-MM of each PHI message's MSH-7, keyed like the de-identified rows (one row per key).

    Tokens and months are made in Arrow, once per distinct value: at 2,000,000 messages, pandas'
    strftime and a mapped Series took 1.3 s of the analytics job."""
    keyed = pa.table(
        {
            "source_file_token": _file_token_array(phi_messages.column("source_file"), source_file_token),
            "message_index": phi_messages.column("message_index"),
            "month": _month_texts(phi_messages.column("message_datetime")),
        }
    )
    return _frame(keyed, [*MESSAGE_KEY, "month"]).drop_duplicates(MESSAGE_KEY)


def _month_texts(moments: pa.ChunkedArray) -> pa.Array:
    """YYYY-MM of each timestamp, formatted once per distinct month (strftime costs 0.5 us a value)."""
    months = pc.dictionary_encode(pc.floor_temporal(moments.combine_chunks(), unit="month"))
    return pc.strftime(months.dictionary, "%Y-%m").take(months.indices)


def _file_token_array(source_files: pa.ChunkedArray, source_file_token: SourceFileToken) -> pa.Array:
    """The token of each file name (null for none), computed once per distinct file."""
    encoded = pc.dictionary_encode(source_files.combine_chunks())
    tokens = pa.array([source_file_token(name) for name in encoded.dictionary.to_pylist()], pa.string())
    return tokens.take(encoded.indices)


def _children_at(children: pa.Table, places: pd.DataFrame) -> pd.DataFrame:
    """Each child row (OBX, RXE) with its message's facility and month."""
    return _frame(children, MESSAGE_KEY).merge(places, how="left", on=MESSAGE_KEY)


def _scored_messages(messages: pa.Table, validation: pa.Table) -> pd.DataFrame:
    """Each de-identified message's file, facility and validation score (NaN when it has none)."""
    frame = _frame(messages, [*MESSAGE_KEY, "sending_facility"])
    scores = _frame(validation, [*MESSAGE_KEY, "validation_score"]).drop_duplicates(MESSAGE_KEY)
    return frame.merge(scores, how="left", on=MESSAGE_KEY)


def _error_files(errors: pa.Table, source_file_token: SourceFileToken) -> pd.DataFrame:
    """One row per hl7_errors row, with its file's token."""
    tokens = _file_token_array(errors.column("source_file"), source_file_token)
    return _frame(pa.table({"source_file_token": tokens}), ["source_file_token"])


def _file_facilities(messages: pa.Table) -> pd.DataFrame:
    """Each file's most frequent MSH-4 among its parsed messages (ties: the first name in order)."""
    frame = _frame(messages, ["source_file_token", "sending_facility"]).dropna(subset=["sending_facility"])
    counts = frame.groupby(["source_file_token", "sending_facility"], dropna=False).size().rename("n").reset_index()
    counts = counts.sort_values(["source_file_token", "n", "sending_facility"], ascending=[True, False, True])
    return counts.drop_duplicates("source_file_token")[["source_file_token", "sending_facility"]]


def _quality(scored: pd.DataFrame, failed: pd.DataFrame, key: str) -> pd.DataFrame:
    """Parsed messages, errors, error rate and mean validation score per `key` (a file or a facility)."""
    counted = ["messages", "errors"]
    events = pd.concat([_events(scored, counted, messages=1), _events(failed, counted, errors=1)])
    grouped = (
        events.groupby(key, dropna=False)
        .agg(messages=("messages", "sum"), errors=("errors", "sum"), mean_validation_score=("validation_score", "mean"))
        .reset_index()
    )
    grouped["error_rate"] = grouped["errors"] / (grouped["messages"] + grouped["errors"])
    return grouped


def _events(frame: pd.DataFrame, counted: list[str], **values) -> pd.DataFrame:
    """`frame`'s rows as events: every counted column 0 unless given (a constant or a per-row Series)."""
    columns = {name: values.get(name, 0) for name in counted}
    keys = frame.drop(columns=[name for name in counted if name in frame.columns])
    return keys.assign(
        **{name: pd.Series(value, index=frame.index).astype(np.int64) for name, value in columns.items()}
    )


def _frame(table: pa.Table, columns: list[str]) -> pd.DataFrame:
    frame = table.select(columns).to_pandas()
    if "message_index" in frame.columns:
        frame["message_index"] = frame["message_index"].astype("Int64")  # nullable, so both zones' keys match
    return frame


def _table(tables_by_name: Mapping[str, pa.Table], name: str, schema: pa.Schema) -> pa.Table:
    table = tables_by_name.get(name)
    return schema.empty_table() if table is None else table


def _to_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """`frame` as an unsuppressed analytics table: its columns in schema order, suppressed_cells 0."""
    frame = frame.assign(**{SUPPRESSED_CELLS: 0})
    arrays = [pa.array(frame[name].to_numpy(), type=schema.field(name).type, from_pandas=True) for name in schema.names]
    return pa.Table.from_arrays(arrays, schema=schema)

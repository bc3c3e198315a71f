"""The analytics tables of `deid/analytics/` (`tables.ANALYTICS_TABLES`), and the suppression policy of each.

Every table is computed from the de-identified tables, unsuppressed (`compute`, `compute_all`);
`publishable` then applies the table's `SUPPRESSION_POLICIES` entry. The HL7 tables are computed
in two steps (`summaries`): small partial aggregates per part group, then their combination, so
the analytics job never holds every row in one process. The PHI zone is read only
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

from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
from pydicom.uid import UID_dictionary

from medical_assets.analytics import summaries, tables
from medical_assets.analytics.summaries import MESSAGE_KEY, QUANTILES, SourceFileToken
from medical_assets.analytics.summaries import to_analytics_table as _to_table
from medical_assets.analytics.suppression import DEFAULT_THRESHOLD, suppress
from medical_assets.dicom.tables import DEID_DICOM_IMAGES
from medical_assets.hl7 import tables as phi_tables
from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES

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


@dataclass(frozen=True)
class SuppressionPolicy:
    """How one table is suppressed: the arguments of `suppression.suppress` but the threshold."""

    count_columns: tuple[str, ...]
    # Groupings of the rows whose totals are (or may be) published: a two-way table has one per
    # dimension, and the empty grouping is the whole table (the column total).
    margins: tuple[tuple[str, ...], ...] = ((),)
    dependent: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # count -> columns nulled with it
    sub_counts: Mapping[str, str] = field(default_factory=dict)  # count -> the count it is part of


_LAB_VALUE_STATISTICS = ("value_mean", *QUANTILES)
_QUALITY = SuppressionPolicy(
    count_columns=("messages", "errors"),
    dependent={"messages": ("error_rate", "mean_validation_score"), "errors": ("error_rate",)},
)

# Two-way tables list both dimensions: a margin not published today (the month totals of
# utilization, say) is one subtraction away for anyone who sums the table another way, and the
# dashboard draws each table along both.
SUPPRESSION_POLICIES: dict[str, SuppressionPolicy] = {
    # Facility totals are published in data_quality_facilities (the same messages by MSH-4);
    # column totals in message_types, lab_results and pharmacy.
    "hospital_utilization": SuppressionPolicy(
        count_columns=("messages", "admissions", "discharges", "lab_results", "pharmacy_orders"),
        margins=(("sending_facility",), ("month",)),
        sub_counts={"admissions": "messages", "discharges": "messages"},
    ),
    "patient_demographics": SuppressionPolicy(
        count_columns=("patients",), margins=(("patient_gender",), ("age_band",))
    ),
    # Totals per message type are published in utilization (admissions, discharges).
    "message_types": SuppressionPolicy(
        count_columns=("messages",),
        margins=(("message_type",), ("hl7_version",)),
        dependent={"messages": ("share",)},
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
    # Medication x route; a medication is its code, or its name when the code is missing.
    "pharmacy": SuppressionPolicy(
        count_columns=("orders",),
        margins=(("give_code", "give_name"), ("give_code",), ("route",)),
        dependent={"orders": ("rank",)},
    ),
    # Frames and pixel statistics of a few images describe those images.
    "imaging": SuppressionPolicy(
        count_columns=("studies", "images", "frames"),
        dependent={"images": ("frames", "pixel_mean_avg", "pixel_std_avg", "pixel_min", "pixel_max")},
    ),
    # Totals per modality are published in imaging.
    "imaging_transfer_syntaxes": SuppressionPolicy(
        count_columns=("images",), margins=(("modality",), ("transfer_syntax_uid",))
    ),
    # Error totals per facility are published in data_quality_facilities (errors go by the file's facility).
    "data_quality_files": SuppressionPolicy(
        count_columns=_QUALITY.count_columns, margins=(("sending_facility",),), dependent=_QUALITY.dependent
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
    `MESSAGE_VALIDATION` rows (`validation.validate_messages`). All of it is taken as one part
    group: `summaries.summarize`, then `combine_all`.
    """
    summary = summarize_group(deid, phi, validation, source_file_token)
    return combine_all(summary, _table(deid, "dicom_images", DEID_DICOM_IMAGES))


def summarize_group(
    deid: Mapping[str, pa.Table],
    phi: Mapping[str, pa.Table],
    validation: pa.Table | None,
    source_file_token: SourceFileToken,
) -> dict[str, pa.Table]:
    """`summaries.summarize` of one part group, from the same inputs as `compute_all`; `validation`
    None takes the de-identified messages' own validation_score."""
    messages = _table(deid, "hl7_messages", DEID_HL7_TABLES["hl7_messages"])
    if validation is None:
        validation = messages.select([*MESSAGE_KEY, "validation_score"])
    return summaries.summarize(
        messages,
        _table(deid, "hl7_lab_results", DEID_HL7_TABLES["hl7_lab_results"]),
        _table(deid, "hl7_pharmacy_orders", DEID_HL7_TABLES["hl7_pharmacy_orders"]),
        _table(phi, "hl7_messages", phi_tables.HL7_MESSAGES),
        _table(phi, "hl7_errors", phi_tables.HL7_ERRORS),
        validation,
        source_file_token,
    )


def combine_all(
    summary: Mapping[str, pa.Table], images: pa.Table, one_row_per_patient: bool = False, patient_counts: pa.Table | None = None
) -> dict[str, pa.Table]:
    """Every analytics table, unsuppressed, from the concatenated summaries of every part group (or
    their reduction: `one_row_per_patient`, and `patient_counts`, see `summaries.combine`) and the
    de-identified dicom_images (a few thousand rows, taken whole)."""
    computed = summaries.combine(summary, one_row_per_patient, patient_counts) | {
        "imaging": imaging(images),
        "imaging_transfer_syntaxes": imaging_transfer_syntaxes(images),
    }
    return {name: computed[name] for name in tables.ANALYTICS_TABLES}


def publish_all(
    deid: Mapping[str, pa.Table],
    phi: Mapping[str, pa.Table],
    source_file_token: SourceFileToken,
    threshold: int = DEFAULT_THRESHOLD,
) -> dict[str, pa.Table]:
    """Every analytics table as published: `compute_all`, then `publishable`. The validation scores
    are the de-identified messages' own `validation_score` column."""
    return publish_combined(compute_all(deid, phi, None, source_file_token), threshold)


def publish_combined(computed: Mapping[str, pa.Table], threshold: int = DEFAULT_THRESHOLD) -> dict[str, pa.Table]:
    return {name: publishable(name, table, threshold) for name, table in computed.items()}


def compute(
    name: str,
    deid: Mapping[str, pa.Table],
    phi: Mapping[str, pa.Table],
    validation: pa.Table | None,
    source_file_token: SourceFileToken,
) -> pa.Table:
    """One analytics table, unsuppressed, from the same inputs as `compute_all`."""
    if name not in tables.ANALYTICS_TABLES:
        raise ValueError(f"unknown analytics table {name!r}; choose one of {', '.join(tables.ANALYTICS_TABLES)}")
    return compute_all(deid, phi, validation, source_file_token)[name]


def publishable(name: str, table: pa.Table, threshold: int = DEFAULT_THRESHOLD) -> pa.Table:
    """`table` suppressed under its policy, ready for `deid/analytics/<name>/`; its shares and
    ranks then come from the published counts alone (`_FROM_PUBLISHED_COUNTS`)."""
    if name not in SUPPRESSION_POLICIES:
        raise ValueError(f"unknown analytics table {name!r}; choose one of {', '.join(SUPPRESSION_POLICIES)}")
    policy = SUPPRESSION_POLICIES[name]
    published = suppress(
        table,
        list(policy.count_columns),
        threshold=threshold,
        margins=[list(grouping) for grouping in policy.margins],
        dependent={count: list(columns) for count, columns in policy.dependent.items()},
        sub_counts=dict(policy.sub_counts),
    )
    recompute = _FROM_PUBLISHED_COUNTS.get(name)
    return recompute(published) if recompute else published


def published_shares(table: pa.Table) -> pa.Table:
    """Message types: each published count's share of the published counts. A share over every
    message would give that total away (count / share), and the total minus the published counts
    is the sum of the suppressed ones."""
    frame = table.to_pandas()
    frame["share"] = frame["messages"] / frame["messages"].sum()  # pandas skips the nulls in sum
    frame.loc[frame["messages"].isna(), "share"] = None
    return _to_table(frame, table.schema, keep_suppressed_cells=True)


def published_ranks(table: pa.Table) -> pa.Table:
    """Pharmacy: ranks by the published orders of each medication (over its routes; ties share the
    best rank), rows in rank order. A suppressed row has no rank: a rank over every order would
    place the hidden count between its neighbours', and so would the row order."""
    frame = table.to_pandas()
    medication = summaries.medication_key(frame)
    published = frame["orders"].notna()
    totals = frame["orders"][published].groupby(medication[published]).sum()
    frame["rank"] = medication.map(totals.rank(method="min", ascending=False)).where(published)
    frame = frame.sort_values(["rank", *summaries.ORDER_KEYS], na_position="last")
    return _to_table(frame, table.schema, keep_suppressed_cells=True)


_FROM_PUBLISHED_COUNTS = {"message_types": published_shares, "pharmacy": published_ranks}


def patient_demographics(messages: pa.Table) -> pa.Table:
    """Distinct patients by gender and age band, each at their latest message (by year; ties: the last row)."""
    return summaries.patient_demographics(messages.select(["patient_token", "message_year", "patient_gender", "age_band"]))


def pharmacy(orders: pa.Table) -> pa.Table:
    """RXE rows per medication and route, with the medication's rank by its orders over all routes."""
    return summaries.combine({**summaries.empty_summary(), "pharmacy": summaries.order_counts(orders)})["pharmacy"]


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


def _frame(table: pa.Table, columns: list[str]) -> pd.DataFrame:
    return table.select(columns).to_pandas()


def _table(tables_by_name: Mapping[str, pa.Table], name: str, schema: pa.Schema) -> pa.Table:
    table = tables_by_name.get(name)
    return schema.empty_table() if table is None else table


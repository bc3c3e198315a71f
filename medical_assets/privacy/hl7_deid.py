"""The PHI zone's HL7 tables into the de-identified zone's record-level tables: pure Arrow transforms.

Two profiles; `safe_harbor` is the default.

- `safe_harbor`: HIPAA Safe Harbor, 45 CFR §164.514(b)(2); none of its 18 identifiers is left.
  The patient ID (PID-3) and the message control ID (MSH-10) become keyed tokens: the patient
  token is the one the DICOM tables derive from PatientID, so a patient's messages and images
  join, and the message token joins lab results, orders and encounters to their message. Names,
  street, city, phone, SSN, account and visit numbers, order numbers, doctors, room and bed and
  the source file name are dropped (the file becomes a token, for data-quality grouping). The
  ZIP code keeps its first three digits (000 where fewer than 20,000 people live); every date
  keeps only its year; the age at the message is given up to 89 and as "90+" beyond, with the
  birth year withheld from such patients. A lab value is kept only when it is a number or a code:
  free text (TX, FT, ST and any type not known to be safe) may name anyone. Kept as they are:
  state, gender, codes and names of observations and medications, units, reference ranges,
  flags, statuses, dose, route, frequency, dosage form, patient class, point of care (a unit),
  hospital service, admit source, discharge disposition, facilities and applications, message
  type and structure, HL7 version; and an encounter's length of stay, a duration, not a date.
- `date_shift`: for longitudinal research under a data use agreement; NOT Safe Harbor. The same
  as `safe_harbor` except for dates, which keep their full precision moved by the patient's keyed
  offset (1 to 365 days either way; the same for every record of the patient, child rows taking
  their message's patient, and for their DICOM studies), so the intervals between a patient's
  events stay exact; the year columns then hold the shifted dates' years, since true years would
  narrow the secret offset down. The birth date is shifted too (and withheld from patients over
  89); ages are computed from the real dates, so they are exact, and still pooled as "90+".

Both profiles write the same schemas (`DEID_HL7_TABLES`), so a dataset never changes shape with
the profile: each date has a year column and a shifted column, the latter null under Safe Harbor.
The profile and key are recorded in the Parquet schema metadata (`compliance_metadata`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import date
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.hl7 import tables as phi
from medical_assets.privacy import safe_harbor
from medical_assets.privacy.pseudonyms import PATIENT_DOMAIN, Pseudonymizer, ReversibleTokens, normalise

SAFE_HARBOR = "safe_harbor"
DATE_SHIFT = "date_shift"
PROFILES = (SAFE_HARBOR, DATE_SHIFT)

# What each profile complies with, as written into the Parquet schema metadata.
DEID_METADATA = {
    SAFE_HARBOR: "HIPAA Safe Harbor §164.514(b)(2)",
    DATE_SHIFT: (
        "Date-shifted research profile, not HIPAA Safe Harbor: Safe Harbor's rules except that dates keep "
        "full precision, shifted by a keyed per-patient offset of 1 to 365 days; share only under a data "
        "use agreement (§164.514(e)) or an expert determination (§164.514(b)(1))"
    ),
}

# Token domains: the patient domain is shared with DICOM PatientID so the two sides join.
MESSAGE_DOMAIN = "message"
SOURCE_FILE_DOMAIN = "source_file"

_MICROSECONDS_PER_DAY = 86_400_000_000
# OBX-2 types whose value cannot carry free text: numbers, and codes (of which only code^text^system
# is kept, since CWE goes on to alternate and original text, what a person typed).
_NUMERIC_VALUE_TYPES = pa.array(["NM", "SN", "NA"])
_CODED_VALUE_TYPES = pa.array(["CE", "CWE", "CNE"])
_CODE_VALUE_TYPES = pa.array(["ID", "IS"])
_CODED_COMPONENTS_KEPT = 3
# A numeric value is digits, signs, comparators and SN/NA separators only: no letter can pass.
_NUMERIC_TEXT = r"^[-0-9.+^:/<>= ]+$"


_RECORD_KEYS = [
    pa.field("message_token", pa.string()),  # keyed token of MSH-10; joins hl7_messages.message_token
    pa.field("source_file_token", pa.string()),  # keyed token of the file name, for data-quality grouping
    pa.field("message_index", pa.int32()),  # position in the file; with source_file_token, the message's key
    pa.field("patient_token", pa.string()),  # keyed token of PID-3 (the message's patient), as DICOM PatientID's
]
# Every date is a pair: its year, and (date_shift only, null under safe_harbor) the shifted value.
# Under date_shift the year is the shifted date's, since a true year would narrow the secret offset.

DEID_HL7_MESSAGES = pa.schema(
    [
        *_RECORD_KEYS,
        pa.field("patient_id_type", pa.string()),  # PID-3.5 of the identifier tokenised (MR, else the first's)
        pa.field("message_type", pa.string()),  # MSH-9.1^MSH-9.2, e.g. ADT^A01
        pa.field("message_structure", pa.string()),  # MSH-9.3, e.g. ADT_A01
        pa.field("message_year", pa.int16()),  # MSH-7
        pa.field("message_datetime_shifted", pa.timestamp("us")),  # MSH-7 moved by the patient's offset
        pa.field("sending_application", pa.string()),  # MSH-3.1: a system, not a person
        pa.field("sending_facility", pa.string()),  # MSH-4.1
        pa.field("receiving_application", pa.string()),  # MSH-5.1
        pa.field("receiving_facility", pa.string()),  # MSH-6.1
        pa.field("processing_id", pa.string()),  # MSH-11.1 (P production, T training, D debugging)
        pa.field("hl7_version", pa.string()),  # MSH-12.1
        pa.field("character_set", pa.string()),  # MSH-18 as declared
        pa.field("segment_count", pa.int32()),
        pa.field("patient_gender", pa.string()),  # PID-8
        pa.field("patient_state", pa.string()),  # PID-11.4: Safe Harbor allows the state
        pa.field("patient_zip3", pa.string()),  # PID-11.5's first three digits; 000 for areas under 20,000 people
        pa.field("age_at_message", pa.string()),  # from PID-7 at MSH-7, real dates: "0".."89", or "90+"
        pa.field("age_band", pa.string()),  # 0-17, 18-29, 30-44, 45-64, 65-89, 90+
        # PID-7's year, and (date_shift) PID-7 shifted with its precision (YYYY[MM[DD]]); both null when
        # the patient is or may be over 89 at any of their messages, or when the age is unknown.
        pa.field("birth_year", pa.int16()),
        pa.field("birth_date_shifted", pa.string()),
        # AES-SIV of PID-3 when reversible tokens are switched on (else null): only the key holder can
        # open it, with `python -m medical_assets.privacy reidentify`, which audits every use.
        pa.field("patient_reversible_token", pa.string()),
        # Per-message validation (`analytics.validation`): required segments and fields present / required,
        # in [0, 1], and the items that failed ("PV1 missing", "PID-7 empty"), never a value. The
        # de-identification job fills them; `deidentify_hl7_tables` alone leaves them null.
        pa.field("validation_score", pa.float64()),
        pa.field("validation_issues", pa.list_(pa.string())),
    ]
)

DEID_HL7_LAB_RESULTS = pa.schema(
    [
        *_RECORD_KEYS,
        pa.field("universal_service_id", pa.string()),  # OBR-4.1: the test or panel ordered
        pa.field("set_id", pa.string()),  # OBX-1
        pa.field("value_type", pa.string()),  # OBX-2
        pa.field("observation_code", pa.string()),  # OBX-3.1
        pa.field("observation_name", pa.string()),  # OBX-3.2
        pa.field("coding_system", pa.string()),  # OBX-3.3
        pa.field("value", pa.string()),  # OBX-5 for numeric and coded types only; null for text
        pa.field("numeric_value", pa.float64()),  # OBX-5 as a number (NM, SN)
        pa.field("units", pa.string()),  # OBX-6.1
        pa.field("reference_range", pa.string()),  # OBX-7
        pa.field("abnormal_flag", pa.string()),  # OBX-8
        pa.field("result_status", pa.string()),  # OBX-11
        pa.field("observation_year", pa.int16()),  # OBX-14
        pa.field("observation_datetime_shifted", pa.timestamp("us")),  # OBX-14 moved by the patient's offset
    ]
)

DEID_HL7_PHARMACY_ORDERS = pa.schema(
    [
        *_RECORD_KEYS,
        pa.field("message_type", pa.string()),  # e.g. RDE^O11
        pa.field("order_control", pa.string()),  # ORC-1 (NW new, CA cancel, ...)
        pa.field("give_code", pa.string()),  # RXE-2.1
        pa.field("give_name", pa.string()),  # RXE-2.2
        pa.field("give_coding_system", pa.string()),  # RXE-2.3
        pa.field("give_amount_minimum", pa.float64()),  # RXE-3
        pa.field("give_amount_maximum", pa.float64()),  # RXE-4
        pa.field("give_units", pa.string()),  # RXE-5.1
        pa.field("dosage_form", pa.string()),  # RXE-6.1
        pa.field("route", pa.string()),  # RXR-1.1
        pa.field("frequency", pa.string()),  # TQ1-3.1, else RXE-1.2
        pa.field("start_year", pa.int16()),  # TQ1-7, else RXE-1.4
        pa.field("start_datetime_shifted", pa.timestamp("us")),  # the start moved by the patient's offset
        pa.field("end_year", pa.int16()),  # TQ1-8, else RXE-1.5
        pa.field("end_datetime_shifted", pa.timestamp("us")),  # the end moved by the patient's offset
        pa.field("dispense_amount", pa.float64()),  # RXE-10
        pa.field("dispense_units", pa.string()),  # RXE-11.1
    ]
)

DEID_HL7_ENCOUNTERS = pa.schema(
    [
        *_RECORD_KEYS,
        pa.field("message_type", pa.string()),  # e.g. ADT^A01
        pa.field("event_type", pa.string()),  # EVN-1, else MSH-9.2
        pa.field("event_year", pa.int16()),  # EVN-2
        pa.field("event_datetime_shifted", pa.timestamp("us")),  # EVN-2 moved by the patient's offset
        pa.field("patient_class", pa.string()),  # PV1-2 (I inpatient, O outpatient, E emergency)
        pa.field("point_of_care", pa.string()),  # PV1-3.1: a unit, not a room
        pa.field("location_facility", pa.string()),  # PV1-3.4
        pa.field("hospital_service", pa.string()),  # PV1-10
        pa.field("admit_source", pa.string()),  # PV1-14
        pa.field("discharge_disposition", pa.string()),  # PV1-36
        pa.field("admit_year", pa.int16()),  # PV1-44
        pa.field("admit_datetime_shifted", pa.timestamp("us")),  # PV1-44 moved by the patient's offset
        pa.field("discharge_year", pa.int16()),  # PV1-45
        pa.field("discharge_datetime_shifted", pa.timestamp("us")),  # PV1-45 moved by the patient's offset
        pa.field("length_of_stay_days", pa.float64()),  # PV1-45 minus PV1-44 in days (2 decimals): a duration
    ]
)

# The same tables (and names) as the PHI zone's, hl7_errors aside. A schema is also the list of
# columns allowed out: a column not derived here is copied from the PHI column of its name.
DEID_HL7_TABLES: dict[str, pa.Schema] = {
    "hl7_messages": DEID_HL7_MESSAGES,
    "hl7_lab_results": DEID_HL7_LAB_RESULTS,
    "hl7_pharmacy_orders": DEID_HL7_PHARMACY_ORDERS,
    "hl7_encounters": DEID_HL7_ENCOUNTERS,
}

# PHI timestamp column -> its year column and its shifted column.
_DATE_COLUMNS = {
    phi_column: (f"{phi_column.removesuffix('_datetime')}_year", f"{phi_column}_shifted")
    for phi_column in (
        "message_datetime",
        "observation_datetime",
        "start_datetime",
        "end_datetime",
        "event_datetime",
        "admit_datetime",
        "discharge_datetime",
    )
}


def compliance_metadata(profile: str, key_id: str) -> dict[bytes, bytes]:
    """Parquet schema metadata saying which profile made a table, with which key, and what it complies with."""
    _check_profile(profile)
    return {
        b"deid.profile": profile.encode(),
        b"deid.key_id": key_id.encode(),
        b"deid.standard": DEID_METADATA[profile].encode(),
    }


def deidentify_hl7_tables(
    tables: Mapping[str, pa.Table],
    pseudonymizer: Pseudonymizer,
    profile: str = SAFE_HARBOR,
    reversible: ReversibleTokens | None = None,
    patients_over_89: Collection[str] = frozenset(),
) -> dict[str, pa.Table]:
    """The four de-identified HL7 tables (`DEID_HL7_TABLES`) from PHI-zone tables.

    `tables` may hold any subset of rows, as long as the hl7_messages rows of their files are
    there: child rows find their patient through their message, on (source_file, message_index).
    A missing table counts as empty; hl7_errors is not exported (its rows hold no clinical data).
    Rows keep their input order, one output row per input row.

    A patient who is 90 or older at any message loses the birth date in every message. Those of
    `tables` are found here; `patients_over_89` (`patients_over_89(...)` of every other batch of
    the same output) names the rest, so that a batch does not show the birth year of a patient whom
    another batch shows as 90+.
    """
    _check_profile(profile)
    messages = _phi_table(tables, "hl7_messages")
    patients = _Patients(messages, pseudonymizer, patients_over_89)
    output = {}
    for name, derive in _DERIVED_COLUMNS.items():
        table = messages if name == "hl7_messages" else _phi_table(tables, name)
        rows = patients.message_rows_of(table)
        derived = (
            _record_keys(table, rows, patients, pseudonymizer)
            | _date_columns(table, patients.offsets_of(rows), profile)
            | derive(table, patients, profile)
        )
        if name == "hl7_messages" and reversible is not None:
            derived["patient_reversible_token"] = _per_distinct(
                patients.ids, partial(reversible.seal, PATIENT_DOMAIN), pa.string()
            )
        output[name] = _assemble(DEID_HL7_TABLES[name], table, derived)
    return output


class _Patients:
    """Each message's patient (PID-3), token and date offset: what child rows look up through their message."""

    def __init__(
        self, messages: pa.Table, pseudonymizer: Pseudonymizer, over_89_elsewhere: Collection[str] = frozenset()
    ):
        self._pseudonymizer = pseudonymizer
        self.over_89_elsewhere = over_89_elsewhere  # normalised patient IDs
        self._messages = messages
        self._files = pc.unique(_column(messages, "source_file"))
        self._keys = self._message_keys(messages)
        self._message_tokens = _tokens(pseudonymizer, MESSAGE_DOMAIN, _column(messages, "message_control_id"))
        self.ids = _column(messages, "patient_id")
        self.tokens = _tokens(pseudonymizer, PATIENT_DOMAIN, self.ids)
        self.offsets = _per_distinct(self.ids, pseudonymizer.date_offset_days, pa.int32())
        # Rows whose message is missing get the offset of an unknown patient: still secret, never zero.
        self._unknown_offset = pseudonymizer.date_offset_days(None)

    def message_rows_of(self, table: pa.Table) -> pa.Array:
        """For each row of `table`, the row of its message in hl7_messages (null when it is not there)."""
        if table is self._messages:
            return pa.array(np.arange(len(table)))  # a message is its own row, even when its key repeats
        return pc.index_in(self._message_keys(table), value_set=self._keys, skip_nulls=True)

    def _message_keys(self, table: pa.Table) -> pa.Array:
        """(source_file, message_index) as one integer: the file's place among the messages' files, then
        the index (null when the file has no message here). Joined strings cost three times as much."""
        files = pc.index_in(_column(table, "source_file"), value_set=self._files, skip_nulls=True).cast(pa.int64())
        return pc.add(pc.multiply(files, 1 << 32), _column(table, "message_index").cast(pa.int64()))

    def offsets_of(self, rows: pa.Array) -> pa.Array:
        return self.offsets.take(rows).fill_null(self._unknown_offset)

    def message_tokens_of(self, table: pa.Table, rows: pa.Array) -> pa.Array:
        """The token of each row's MSH-10: its message's, computed afresh only for rows without their
        message (a token costs an HMAC, and child rows outnumber messages)."""
        found = self._message_tokens.take(rows)
        orphans = pc.if_else(pc.is_null(rows), _column(table, "message_control_id"), pa.scalar(None, pa.string()))
        return pc.coalesce(found, _tokens(self._pseudonymizer, MESSAGE_DOMAIN, orphans))


def _record_keys(table: pa.Table, rows: pa.Array, patients: _Patients, pseudonymizer: Pseudonymizer) -> dict:
    return {
        "message_token": patients.message_tokens_of(table, rows),
        "source_file_token": _tokens(pseudonymizer, SOURCE_FILE_DOMAIN, _column(table, "source_file")),
        "patient_token": patients.tokens.take(rows),
    }


def _message_columns(messages: pa.Table, patients: _Patients, profile: str) -> dict:
    """ZIP3, the age at the message and its band, and the birth year or shifted birth date."""
    birth_dates = _column(messages, "patient_birth_date").to_pylist()
    ages = _ages_at(birth_dates, _days_of(_column(messages, "message_datetime")))
    withheld = _birth_withheld(patients.ids.to_pylist(), ages, patients.over_89_elsewhere)
    if profile == SAFE_HARBOR:
        shifted = [None] * len(birth_dates)
        years = [None if hidden else safe_harbor.year_of(born) for born, hidden in zip(birth_dates, withheld)]
    else:
        shifted = _shifted_birth_dates(birth_dates, patients.offsets.to_pylist(), withheld)
        years = [safe_harbor.year_of(born) for born in shifted]
    return {
        "patient_zip3": _per_distinct(_column(messages, "patient_zip"), safe_harbor.zip3, pa.string()),
        "age_at_message": pa.array(ages, pa.string()),
        "age_band": pa.array([safe_harbor.age_band(age) for age in ages], pa.string()),
        "birth_year": pa.array(years, pa.int16()),
        "birth_date_shifted": pa.array(shifted, pa.string()),
    }


def _lab_result_columns(lab_results: pa.Table, patients: _Patients, profile: str) -> dict:
    """The value, where its type rules out free text."""
    return {"value": _observation_values(_column(lab_results, "value_type"), _column(lab_results, "value"))}


def _pharmacy_order_columns(orders: pa.Table, patients: _Patients, profile: str) -> dict:
    """Nothing beyond the record keys and the dates: every other column is kept or dropped as it is."""
    return {}


def _encounter_columns(encounters: pa.Table, patients: _Patients, profile: str) -> dict:
    """The length of stay, from the real dates (a shift would cancel out anyway)."""
    admitted, discharged = _column(encounters, "admit_datetime"), _column(encounters, "discharge_datetime")
    return {"length_of_stay_days": _duration_days(admitted, discharged)}


_DERIVED_COLUMNS: dict[str, Callable[[pa.Table, _Patients, str], dict]] = {
    "hl7_messages": _message_columns,
    "hl7_lab_results": _lab_result_columns,
    "hl7_pharmacy_orders": _pharmacy_order_columns,
    "hl7_encounters": _encounter_columns,
}


def _ages_at(birth_dates: list[str | None], days: list[date | None]) -> list[str | None]:
    """Safe Harbor ages at each message's own date; a patient recurs, so a (birth, day) pair is computed once."""
    cache: dict[tuple, str | None] = {}
    ages = []
    for key in zip(birth_dates, days):
        if key not in cache:
            cache[key] = safe_harbor.safe_harbor_age(*key)
        ages.append(cache[key])
    return ages


def _days_of(moments: pa.Array) -> list[date | None]:
    """The date of each timestamp. Messages share few days: a Python date is made once per day, where
    one datetime per message took 0.2 s for 250,000 of them."""
    days = pc.dictionary_encode(pc.floor_temporal(moments, unit="day"), null_encoding="encode")
    distinct = [None if moment is None else moment.date() for moment in days.dictionary.to_pylist()]
    distinct = np.array(distinct, dtype=object)
    return distinct[days.indices.to_numpy(zero_copy_only=False)].tolist()


def _birth_withheld(
    patient_ids: list[str | None], ages: list[str | None], over_89_elsewhere: Collection[str] = frozenset()
) -> list[bool]:
    """Whether a row's birth date must go: its age is unknown or 90+, or the patient is 90+ in another
    row (here or in `over_89_elsewhere`), since the token would link this row's birth year to that
    one and give the age away. Patients compare as their tokens do, after `normalise`."""
    over_89 = safe_harbor.AGE_OVER_89
    patients = [normalise(patient) for patient in patient_ids]
    old_patients = {patient for patient, age in zip(patients, ages) if patient is not None and age == over_89}
    return [
        age is None or age == over_89 or patient in old_patients or patient in over_89_elsewhere
        for patient, age in zip(patients, ages)
    ]


def patients_over_89(messages: pa.Table) -> set[str]:
    """The patients (PID-3, normalised) who are 90 or older at one of these hl7_messages rows.

    Only rows whose birth year is at least 90 before the message's year can be such; the exact
    Safe Harbor age is computed for those alone.
    """
    if not {"patient_id", "patient_birth_date", "message_datetime"} <= set(messages.column_names):
        return set()
    born = pc.utf8_trim_whitespace(_column(messages, "patient_birth_date"))
    has_year = pc.fill_null(pc.match_substring_regex(born, r"^[0-9]{4}"), False)
    year_text = pc.if_else(has_year, pc.utf8_slice_codeunits(born, 0, 4), pa.scalar(None, pa.string()))
    birth_year = year_text.cast(pa.int32())
    moments = _column(messages, "message_datetime")
    candidates = pc.fill_null(pc.less_equal(birth_year, pc.subtract(pc.year(moments), 90)), False)
    rows = messages.filter(candidates)
    ages = _ages_at(_column(rows, "patient_birth_date").to_pylist(), _days_of(_column(rows, "message_datetime")))
    ids = _column(rows, "patient_id").to_pylist()
    found = {normalise(patient) for patient, age in zip(ids, ages) if age == safe_harbor.AGE_OVER_89}
    found.discard(None)
    return found


def _shifted_birth_dates(birth_dates: list[str | None], offsets: list[int], withheld: list[bool]) -> list[str | None]:
    """Each birth date moved by its patient's offset; a patient recurs, so each pair is shifted once."""
    cache: dict[tuple, str | None] = {}
    shifted = []
    for born, offset, hidden in zip(birth_dates, offsets, withheld):
        if hidden:
            shifted.append(None)
            continue
        if (born, offset) not in cache:
            cache[born, offset] = safe_harbor.shift_hl7_date(born, offset)
        shifted.append(cache[born, offset])
    return shifted


def _observation_values(value_types: pa.Array, values: pa.Array) -> pa.Array:
    """OBX-5 where its type rules out free text: numbers as written, codes as code^text^system; else null."""
    value_types = pc.utf8_upper(pc.utf8_trim_whitespace(value_types))
    components = pc.split_pattern(values, "^")
    is_numeric = pc.and_(pc.is_in(value_types, _NUMERIC_VALUE_TYPES), pc.match_substring_regex(values, _NUMERIC_TEXT))
    conditions = pc.make_struct(
        is_numeric.fill_null(False),
        pc.is_in(value_types, _CODED_VALUE_TYPES).fill_null(False),
        pc.is_in(value_types, _CODE_VALUE_TYPES).fill_null(False),
    )
    return pc.case_when(
        conditions,
        values,
        pc.binary_join(pc.list_slice(components, 0, _CODED_COMPONENTS_KEPT), "^"),
        pc.binary_join(pc.list_slice(components, 0, 1), "^"),
    )


def _duration_days(start: pa.Array, end: pa.Array) -> pa.Array:
    microseconds = pc.subtract(end.cast(pa.int64()), start.cast(pa.int64())).cast(pa.float64())
    return pc.round(pc.divide(microseconds, _MICROSECONDS_PER_DAY), 2)


def _date_columns(table: pa.Table, offsets: pa.Array, profile: str) -> dict:
    """Each timestamp's year, and under date shift its value moved by the row's patient offset."""
    columns = {}
    for phi_column, (year_column, shifted_column) in _DATE_COLUMNS.items():
        if phi_column not in table.column_names:
            continue
        moments = _column(table, phi_column)
        if profile == SAFE_HARBOR:
            shifted = pa.nulls(len(moments), pa.timestamp("us"))
            columns[year_column] = pc.year(moments).cast(pa.int16())
        else:
            shifted = pc.add(moments, _days(offsets))
            columns[year_column] = pc.year(shifted).cast(pa.int16())
        columns[shifted_column] = shifted
    return columns


def _days(offsets: pa.Array) -> pa.Array:
    return pa.array(offsets.to_numpy(zero_copy_only=False).astype(np.int64) * _MICROSECONDS_PER_DAY, pa.duration("us"))


def _assemble(schema: pa.Schema, table: pa.Table, derived: dict) -> pa.Table:
    """The output table in schema order: the derived columns, and the rest copied from the PHI table."""
    arrays = [
        derived[name] if name in derived
        else _column(table, name) if name in table.column_names
        else pa.nulls(len(table), schema.field(name).type)  # an option that is off
        for name in schema.names
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _tokens(pseudonymizer: Pseudonymizer, domain: str, values: pa.Array) -> pa.Array:
    return _per_distinct(values, partial(pseudonymizer.token, domain), pa.string())


def _per_distinct(values: pa.Array, function: Callable, type: pa.DataType) -> pa.Array:
    """`function` of each value, called once per distinct value (null included) rather than per row."""
    encoded = pc.dictionary_encode(values, null_encoding="encode")
    results = pa.array([function(value) for value in encoded.dictionary.to_pylist()], type=type)
    return results.take(encoded.indices)


def _phi_table(tables: Mapping[str, pa.Table], name: str) -> pa.Table:
    """The PHI table `name` with exactly its PHI schema; an absent one is empty."""
    schema = phi.TABLES[name]
    table = tables.get(name)
    if table is None:
        return schema.empty_table()
    return table.select(schema.names).cast(schema)


def _column(table: pa.Table, name: str) -> pa.Array:
    return table.column(name).combine_chunks()


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown de-identification profile {profile!r}; choose one of {', '.join(PROFILES)}")

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
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medical_assets.hl7 import tables as phi
from medical_assets.privacy import safe_harbor, vocabulary
from medical_assets.privacy.declarations import vocabulary_columns
from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES
from medical_assets.privacy.hl7_patients import (
    AGE_CODE_90_PLUS,
    AGE_CODE_NONE,
    age_bands,
    age_codes,
    age_texts,
    first_years_over_89,
    over_89_somewhere,
    patient_identities,
    without_ages_of_the_oldest,
)
from medical_assets.privacy.lab_values import NUMERIC_VALUE_TYPES, observation_values
from medical_assets.privacy.pseudonyms import ISSUER_SCOPE, PATIENT_DOMAIN, Pseudonymizer, ReversibleTokens
from medical_assets.privacy.us_states import is_us_state

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

# Why a value was withheld, as the privacy report shows it.
NOT_VOCABULARY = "not vocabulary (fewer distinct patients than the threshold, or a structured identifier)"
NOT_A_STATE = "not a US state or territory"
NOT_A_NUMBER = "typed as a number but not one"
FREE_TEXT = "free-text value type"

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


# With reversible tokens on, the key holder can re-identify: the output is pseudonymised, whatever the profile.
PSEUDONYMISED = (
    "Pseudonymised, not de-identified: reversible patient tokens (AES-SIV) let the key holder re-identify; "
    "handle as PHI under the data use agreement"
)


def compliance_metadata(profile: str, key_id: str, reversible: bool = False) -> dict[bytes, bytes]:
    """Parquet schema metadata saying which profile made a table, with which key, and what it complies with."""
    _check_profile(profile)
    return {
        b"deid.profile": profile.encode(),
        b"deid.key_id": key_id.encode(),
        b"deid.standard": (PSEUDONYMISED if reversible else DEID_METADATA[profile]).encode(),
    }


def deidentify_hl7_tables(
    tables: Mapping[str, pa.Table],
    pseudonymizer: Pseudonymizer,
    profile: str = SAFE_HARBOR,
    reversible: ReversibleTokens | None = None,
    patients_over_89: Mapping[str, int | None] | Collection[str] = frozenset(),
    vocabulary_of: vocabulary.Vocabulary | None = None,
    min_patients: int = 11,
    scope: str = ISSUER_SCOPE,
    withheld: dict[tuple[str, str, str], int] | None = None,
) -> dict[str, pa.Table]:
    """The four de-identified HL7 tables (`DEID_HL7_TABLES`) from PHI-zone tables.

    `tables` may hold any subset of rows, as long as the hl7_messages rows of their files are
    there: child rows find their patient through their message, on (source_file, message_index).
    A missing table counts as empty; hl7_errors is not exported (its rows hold no clinical data).
    Rows keep their input order, one output row per input row.

    A patient is `patient_identities` of the message: the MRN with its assigning authority (or
    the MRN alone under the `shared` scope).

    A patient who is 90 or older at any event shows no numeric age and no birth year anywhere:
    their ages read 90+ from the year of their first such event on, and are null before it.
    Those of `tables` are found here; `patients_over_89` (identity -> that year, from
    `census_of_ages` over every batch and the DICOM images) names the rest.

    Text columns (declared CODE or VOCABULARY) keep a value only when it is in `vocabulary_of`
    (`privacy.vocabulary`); when that is None, the vocabulary is that of `tables` themselves,
    at `min_patients` distinct patients. Withheld values become `vocabulary.WITHHELD`, and their
    number is added to `withheld` by (table, column, reason).
    """
    _check_profile(profile)
    withheld = {} if withheld is None else withheld
    messages = _phi_table(tables, "hl7_messages")
    over_89 = first_years_over_89(messages, scope, patients_over_89)
    patients = _Patients(messages, pseudonymizer, scope, over_89)
    inputs = {name: messages if name == "hl7_messages" else _phi_table(tables, name) for name in _DERIVED_COLUMNS}
    if vocabulary_of is None:
        found = vocabulary.merge([vocabulary_evidence(inputs, min_patients, scope)], min_patients)
        vocabulary_of = vocabulary.without_identifiers(found)
    output = {}
    for name, derive in _DERIVED_COLUMNS.items():
        table = inputs[name]
        rows = patients.message_rows_of(table)
        derived = (
            _record_keys(table, rows, patients, pseudonymizer)
            | _date_columns(table, patients.offsets_of(rows), profile)
            | derive(table, patients, profile, withheld)
        )
        if name == "hl7_messages" and reversible is not None:
            derived["patient_reversible_token"] = _per_distinct(
                patients.identities, partial(reversible.seal, PATIENT_DOMAIN), pa.string()
            )
        assembled = _assemble(DEID_HL7_TABLES[name], table, derived)
        output[name] = _only_vocabulary(name, assembled, vocabulary_of, withheld)
    return output


def vocabulary_evidence(tables: Mapping[str, pa.Table], min_patients: int, scope: str = ISSUER_SCOPE) -> pa.Table:
    """What these PHI tables (one part group) know of the vocabulary of every text column of the
    de-identified tables: the values as they would be published, each with its patients."""
    messages = _phi_table(tables, "hl7_messages")
    identities = patient_identities(messages, scope)
    keys = _MessageKeys(messages)
    parts = []
    for name, schema in DEID_HL7_TABLES.items():
        table = messages if name == "hl7_messages" else _phi_table(tables, name)
        patients = identities.take(keys.rows_of(table, table is messages))
        candidates = _candidate_texts(name, table)
        for column in vocabulary_columns(schema):
            if column in candidates:
                parts.append(vocabulary.evidence(vocabulary.column_key(name, column), candidates[column], patients, min_patients))
    return pa.concat_tables(parts) if parts else vocabulary.EVIDENCE_SCHEMA.empty_table()


def _candidate_texts(name: str, table: pa.Table) -> dict[str, pa.Array]:
    """The text columns of de-identified table `name` before the vocabulary rule: copied from the
    PHI column of the same name, but for a lab value, which keeps only what its type allows."""
    texts = {column: _column(table, column) for column in vocabulary_columns(DEID_HL7_TABLES[name]) if column in table.column_names}
    if name == "hl7_lab_results":
        texts["value"] = observation_values(_column(table, "value_type"), _column(table, "value"))
    return texts


def _only_vocabulary(name: str, table: pa.Table, vocabulary_of: vocabulary.Vocabulary, withheld: dict) -> pa.Table:
    """`table` with each value of its vocabulary columns that is not vocabulary withheld."""
    original = table
    for column in vocabulary_columns(table.schema):
        if column == "value" and name == "hl7_lab_results":
            # Numbers are not text: a lab value passes the vocabulary rule only when it is a code.
            values = _column(table, column)
            value_types = pc.utf8_upper(pc.utf8_trim_whitespace(_column(original, "value_type")))
            numeric = pc.fill_null(pc.is_in(value_types, NUMERIC_VALUE_TYPES), False)
            coded = pc.if_else(numeric, pa.scalar(None, pa.string()), values)
            kept, count = vocabulary.published(coded, vocabulary_of.get(vocabulary.column_key(name, column), ()))
            kept = pc.if_else(numeric, values, kept)
        else:
            kept, count = vocabulary.published(
                _column(table, column), vocabulary_of.get(vocabulary.column_key(name, column), ())
            )
        if count:
            _add(withheld, name, column, NOT_VOCABULARY, count)
            table = table.set_column(table.schema.get_field_index(column), table.schema.field(column), kept)
    return table


def _add(withheld: dict, table: str, column: str, reason: str, count: int) -> None:
    if count:
        withheld[table, column, reason] = withheld.get((table, column, reason), 0) + count


class _MessageKeys:
    """(source_file, message_index) of hl7_messages as one integer: the file's place among the
    messages' files, then the index. Joined strings cost three times as much."""

    def __init__(self, messages: pa.Table):
        self._files = pc.unique(_column(messages, "source_file"))
        self._keys = self.keys_of(messages)

    def keys_of(self, table: pa.Table) -> pa.Array:
        files = pc.index_in(_column(table, "source_file"), value_set=self._files, skip_nulls=True).cast(pa.int64())
        return pc.add(pc.multiply(files, 1 << 32), _column(table, "message_index").cast(pa.int64()))

    def rows_of(self, table: pa.Table, is_messages: bool = False) -> pa.Array:
        """For each row of `table`, the row of its message (null when it is not there)."""
        if is_messages:
            return pa.array(np.arange(len(table)))  # a message is its own row, even when its key repeats
        return pc.index_in(self.keys_of(table), value_set=self._keys, skip_nulls=True)


class _Patients:
    """Each message's patient (identity), token and date offset: what child rows look up through their message."""

    def __init__(self, messages: pa.Table, pseudonymizer: Pseudonymizer, scope: str, over_89: Mapping[str, int | None]):
        self._pseudonymizer = pseudonymizer
        self.over_89 = over_89  # identity -> first year at 90+ (None: unknown, so no numeric age at all)
        self._messages = messages
        self._keys = _MessageKeys(messages)
        self._message_tokens = _tokens(pseudonymizer, MESSAGE_DOMAIN, _column(messages, "message_control_id"))
        self.identities = patient_identities(messages, scope)
        self.tokens = _tokens(pseudonymizer, PATIENT_DOMAIN, self.identities)
        self.offsets = _per_distinct(self.identities, pseudonymizer.date_offset_days, pa.int32())
        # Rows whose message is missing get the offset of an unknown patient: still secret, never zero.
        self._unknown_offset = pseudonymizer.date_offset_days(None)

    def message_rows_of(self, table: pa.Table) -> pa.Array:
        """For each row of `table`, the row of its message in hl7_messages (null when it is not there)."""
        return self._keys.rows_of(table, table is self._messages)

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


def _message_columns(messages: pa.Table, patients: _Patients, profile: str, withheld: dict) -> dict:
    """ZIP3, the state, the age at the message and its band, and the birth year or shifted birth date."""
    born, moments = _column(messages, "patient_birth_date"), _column(messages, "message_datetime")
    ages = without_ages_of_the_oldest(age_codes(born, moments), patients.identities, pc.year(moments), patients.over_89)
    withheld_birth = (ages == AGE_CODE_NONE) | (ages == AGE_CODE_90_PLUS) | over_89_somewhere(patients.identities, patients.over_89)
    if profile == SAFE_HARBOR:
        shifted = pa.nulls(len(born), pa.string())
        # An age is known only where the birth date is one: its year is then there to take.
        birth_years = pc.if_else(pa.array(withheld_birth), pa.scalar(None, pa.int16()),
                                 _per_distinct(born, safe_harbor.year_of, pa.int16()))
    else:
        shifted = pa.array(_shifted_birth_dates(born.to_pylist(), patients.offsets.to_pylist(), withheld_birth.tolist()), pa.string())
        birth_years = pa.array([safe_harbor.year_of(value) for value in shifted.to_pylist()], pa.int16())
    states = _column(messages, "patient_state")
    is_state = _per_distinct(states, is_us_state, pa.bool_())
    _add(withheld, "hl7_messages", "patient_state", NOT_A_STATE, pc.sum(pc.invert(is_state).cast(pa.int64())).as_py() or 0)
    not_null = pc.and_(pc.invert(is_state), pc.is_valid(states))
    return {
        "patient_zip3": _per_distinct(_column(messages, "patient_zip"), safe_harbor.zip3, pa.string()),
        "patient_state": pc.if_else(not_null, pa.scalar(vocabulary.WITHHELD), pc.utf8_trim_whitespace(states)),
        "age_at_message": age_texts(ages),
        "age_band": age_bands(ages),
        "birth_year": birth_years,
        "birth_date_shifted": shifted,
    }


def _lab_result_columns(lab_results: pa.Table, patients: _Patients, profile: str, withheld: dict) -> dict:
    """The value and its number, where its type rules out free text and the number is one."""
    value_types = pc.utf8_upper(pc.utf8_trim_whitespace(_column(lab_results, "value_type")))
    raw = _column(lab_results, "value")
    values = observation_values(value_types, raw)
    numeric_type = pc.fill_null(pc.is_in(value_types, NUMERIC_VALUE_TYPES), False)
    present = pc.is_valid(raw)
    not_a_number = pc.and_(pc.and_(numeric_type, present), pc.is_null(values))
    free_text = pc.and_(pc.and_(pc.invert(numeric_type), present), pc.is_null(values))
    _add(withheld, "hl7_lab_results", "value", NOT_A_NUMBER, _true_count(not_a_number))
    _add(withheld, "hl7_lab_results", "value", FREE_TEXT, _true_count(free_text))
    # The parsed number goes with the value: none where the value was not a number, or read as a date.
    numbers = pc.if_else(pc.and_(numeric_type, pc.is_valid(values)), _column(lab_results, "numeric_value"), pa.scalar(None, pa.float64()))
    return {"value": values, "numeric_value": numbers}


def _true_count(mask: pa.Array) -> int:
    return pc.sum(mask.cast(pa.int64())).as_py() or 0


def _pharmacy_order_columns(orders: pa.Table, patients: _Patients, profile: str, withheld: dict) -> dict:
    """Nothing beyond the record keys and the dates: every other column is kept (as number or
    vocabulary) or dropped as declared."""
    return {}


def _encounter_columns(encounters: pa.Table, patients: _Patients, profile: str, withheld: dict) -> dict:
    """The length of stay in whole days, from the real dates (a shift would cancel out anyway);
    null across a year boundary, where with the two years it would date both ends."""
    admitted, discharged = _column(encounters, "admit_datetime"), _column(encounters, "discharge_datetime")
    same_year = pc.equal(pc.year(admitted), pc.year(discharged))
    return {"length_of_stay_days": pc.if_else(same_year, _duration_days(admitted, discharged), pa.scalar(None, pa.float64()))}


_DERIVED_COLUMNS: dict[str, Callable[[pa.Table, _Patients, str, dict], dict]] = {
    "hl7_messages": _message_columns,
    "hl7_lab_results": _lab_result_columns,
    "hl7_pharmacy_orders": _pharmacy_order_columns,
    "hl7_encounters": _encounter_columns,
}


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


def _duration_days(start: pa.Array, end: pa.Array) -> pa.Array:
    """Whole days: hours would date a short stay's ends to the hour within its year."""
    microseconds = pc.subtract(end.cast(pa.int64()), start.cast(pa.int64())).cast(pa.float64())
    return pc.floor(pc.divide(microseconds, _MICROSECONDS_PER_DAY))


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

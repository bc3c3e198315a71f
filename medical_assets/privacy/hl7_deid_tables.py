"""The de-identified zone's four HL7 tables: each column declared with its treatment and its HL7 source."""

import pyarrow as pa

from medical_assets.privacy.declarations import Treatment, declared

T = Treatment
_RECORD_KEYS = [
    declared("message_token", pa.string(), T.TOKENISE, "MSH-10", "Keyed token of the message control ID; joins the child tables to hl7_messages."),
    declared("source_file_token", pa.string(), T.TOKENISE, "file name", "Keyed token of the landing file, for data-quality grouping."),
    declared("message_index", pa.int32(), T.DERIVED, "position in file", "Position of the message in its file; with source_file_token, the message's key."),
    declared("patient_token", pa.string(), T.TOKENISE, "PID-3.1 + PID-3.4", "Keyed token of the patient (MRN with its assigning authority), the same as the DICOM images'."),
]
# Every date is a pair: its year, and (date_shift only, null under safe_harbor) the shifted value.
# Under date_shift the year is the shifted date's, since a true year would narrow the secret offset.


def _date_pair(stem: str, source: str, what: str) -> list[pa.Field]:
    return [
        declared(f"{stem}_year", pa.int16(), T.YEAR, source, f"Year of {what}."),
        declared(f"{stem}_datetime_shifted", pa.timestamp("us"), T.SHIFT, source,
                 f"{what[0].upper()}{what[1:]} moved by the patient's secret offset (date_shift profile only; null under Safe Harbor)."),
    ]


DEID_HL7_MESSAGES = pa.schema(
    [
        *_RECORD_KEYS,
        declared("patient_id_type", pa.string(), T.CODE, "PID-3.5", "Identifier type of the MRN tokenised (MR, PI, ...)."),
        declared("message_type", pa.string(), T.CODE, "MSH-9.1^MSH-9.2", "Message type and trigger event, e.g. ADT^A01."),
        declared("message_structure", pa.string(), T.CODE, "MSH-9.3", "Abstract message structure, e.g. ADT_A01."),
        *_date_pair("message", "MSH-7", "the message"),
        declared("sending_application", pa.string(), T.VOCABULARY, "MSH-3.1", "Sending system (a system, not a person)."),
        declared("sending_facility", pa.string(), T.VOCABULARY, "MSH-4.1", "Sending facility."),
        declared("receiving_application", pa.string(), T.VOCABULARY, "MSH-5.1", "Receiving system."),
        declared("receiving_facility", pa.string(), T.VOCABULARY, "MSH-6.1", "Receiving facility."),
        declared("processing_id", pa.string(), T.CODE, "MSH-11.1", "P production, T training, D debugging."),
        declared("hl7_version", pa.string(), T.CODE, "MSH-12.1", "HL7 version of the message."),
        declared("character_set", pa.string(), T.CODE, "MSH-18", "Character set as declared."),
        declared("segment_count", pa.int32(), T.DERIVED, "segments", "Number of segments in the message."),
        declared("patient_gender", pa.string(), T.CODE, "PID-8", "Administrative sex."),
        declared("patient_state", pa.string(), T.STATE, "PID-11.4", "US state or territory (USPS code as sent, or name); anything else withheld."),
        declared("patient_zip3", pa.string(), T.GENERALISE, "PID-11.5", "First three ZIP digits; 000 for areas under 20,000 people."),
        declared("age_at_message", pa.string(), T.GENERALISE, "PID-7 at MSH-7",
                 "Age at the message, 0 to 89; 90+ for a patient 90 or older at any event (from the year they first are), else null."),
        declared("age_band", pa.string(), T.GENERALISE, "PID-7 at MSH-7", "0-17, 18-29, 30-44, 45-64, 65-89 or 90+, by the same rule."),
        declared("birth_year", pa.int16(), T.YEAR, "PID-7", "Year of birth; null for a patient who is 90 or older at any event, HL7 or DICOM."),
        declared("birth_date_shifted", pa.string(), T.SHIFT, "PID-7", "Birth date shifted with its precision (date_shift only), with the same exception."),
        declared("patient_reversible_token", pa.string(), T.TOKENISE, "PID-3",
                 "AES-SIV of the patient identity when reversible tokens are on (else null); opened only by the audited reidentify command."),
        declared("validation_score", pa.float64(), T.DERIVED, "message shape", "Share of required segments and fields present, in [0, 1]."),
        declared("validation_issues", pa.list_(pa.string()), T.DERIVED, "message shape",
                 "What failed validation (\"PV1 missing\", \"PID-7 empty\"), never a value."),
    ]
)

DEID_HL7_LAB_RESULTS = pa.schema(
    [
        *_RECORD_KEYS,
        declared("universal_service_id", pa.string(), T.CODE, "OBR-4.1", "The test or panel ordered."),
        declared("set_id", pa.string(), T.CODE, "OBX-1", "Position of the OBX in its group."),
        declared("value_type", pa.string(), T.CODE, "OBX-2", "HL7 data type of the value (NM, CWE, ST, ...)."),
        declared("observation_code", pa.string(), T.CODE, "OBX-3.1", "Observation code (e.g. LOINC)."),
        declared("observation_name", pa.string(), T.VOCABULARY, "OBX-3.2", "Observation name as the sender wrote it."),
        declared("coding_system", pa.string(), T.CODE, "OBX-3.3", "Coding system of the observation code."),
        declared("value", pa.string(), T.VOCABULARY, "OBX-5",
                 "Numbers as written (NM, SN); codes as code^text^system (CE/CWE/CNE) or code (ID/IS), kept when vocabulary; free text never."),
        declared("numeric_value", pa.float64(), T.NUMBER, "OBX-5", "The value as a number (NM, SN) when it is one."),
        declared("units", pa.string(), T.VOCABULARY, "OBX-6.1", "Units."),
        declared("reference_range", pa.string(), T.VOCABULARY, "OBX-7", "Reference range as written."),
        declared("abnormal_flag", pa.string(), T.CODE, "OBX-8", "Abnormal flag (H, L, N, ...)."),
        declared("result_status", pa.string(), T.CODE, "OBX-11", "Result status (F final, P preliminary, ...)."),
        *_date_pair("observation", "OBX-14", "the observation"),
    ]
)

DEID_HL7_PHARMACY_ORDERS = pa.schema(
    [
        *_RECORD_KEYS,
        declared("message_type", pa.string(), T.CODE, "MSH-9", "Message type, e.g. RDE^O11."),
        declared("order_control", pa.string(), T.CODE, "ORC-1", "Order control (NW new, CA cancel, ...)."),
        declared("give_code", pa.string(), T.CODE, "RXE-2.1", "Medication code."),
        declared("give_name", pa.string(), T.VOCABULARY, "RXE-2.2", "Medication name."),
        declared("give_coding_system", pa.string(), T.CODE, "RXE-2.3", "Coding system of the medication code."),
        declared("give_amount_minimum", pa.float64(), T.NUMBER, "RXE-3", "Give amount, minimum."),
        declared("give_amount_maximum", pa.float64(), T.NUMBER, "RXE-4", "Give amount, maximum."),
        declared("give_units", pa.string(), T.VOCABULARY, "RXE-5.1", "Give units."),
        declared("dosage_form", pa.string(), T.VOCABULARY, "RXE-6.1", "Dosage form."),
        declared("route", pa.string(), T.VOCABULARY, "RXR-1.1", "Route of administration."),
        declared("frequency", pa.string(), T.VOCABULARY, "TQ1-3.1, else RXE-1.2", "Frequency."),
        *_date_pair("start", "TQ1-7, else RXE-1.4", "the start"),
        *_date_pair("end", "TQ1-8, else RXE-1.5", "the end"),
        declared("dispense_amount", pa.float64(), T.NUMBER, "RXE-10", "Dispense amount."),
        declared("dispense_units", pa.string(), T.VOCABULARY, "RXE-11.1", "Dispense units."),
    ]
)

DEID_HL7_ENCOUNTERS = pa.schema(
    [
        *_RECORD_KEYS,
        declared("message_type", pa.string(), T.CODE, "MSH-9", "Message type, e.g. ADT^A01."),
        declared("event_type", pa.string(), T.CODE, "EVN-1, else MSH-9.2", "Event type (A01 admission, A03 discharge, ...)."),
        *_date_pair("event", "EVN-2", "the event"),
        declared("patient_class", pa.string(), T.CODE, "PV1-2", "Patient class (I inpatient, O outpatient, E emergency)."),
        declared("point_of_care", pa.string(), T.VOCABULARY, "PV1-3.1", "Unit (not room or bed)."),
        declared("location_facility", pa.string(), T.VOCABULARY, "PV1-3.4", "Facility of the location."),
        declared("hospital_service", pa.string(), T.CODE, "PV1-10", "Hospital service."),
        declared("admit_source", pa.string(), T.CODE, "PV1-14", "Admit source."),
        declared("discharge_disposition", pa.string(), T.CODE, "PV1-36", "Discharge disposition."),
        *_date_pair("admit", "PV1-44", "admission"),
        *_date_pair("discharge", "PV1-45", "discharge"),
        declared("length_of_stay_days", pa.float64(), T.GENERALISE, "PV1-45 - PV1-44",
                 "Whole days between admission and discharge; null when the stay crosses a year boundary (it would date both ends)."),
    ]
)

# The same tables (and names) as the PHI zone's, hl7_errors aside. A schema is also the list of
# columns allowed out, each with its declared treatment: a column `hl7_deid` does not derive is copied
# from the PHI column of its name, and text columns then pass the vocabulary rule.
DEID_HL7_TABLES: dict[str, pa.Schema] = {
    "hl7_messages": DEID_HL7_MESSAGES,
    "hl7_lab_results": DEID_HL7_LAB_RESULTS,
    "hl7_pharmacy_orders": DEID_HL7_PHARMACY_ORDERS,
    "hl7_encounters": DEID_HL7_ENCOUNTERS,
}

"""Arrow schemas of the HL7 tables in the PHI zone (README: The asset graph).

Every block the parser yields carries one of these schemas explicitly, so an
empty block (a file without OBX segments, say) never infers `list<null>`.
"""

import pyarrow as pa

from medical_assets.columns import column

_SOURCE_FILE = column("source_file", pa.string(), "landing file", "Path of the landing file, as in the landing manifest.")
_MESSAGE_INDEX = column("message_index", pa.int32(), "derived", "0-based position of the message in its file.")
# In the child tables: the message the row belongs to (with source_file and message_index, its key).
_PARENT_CONTROL_ID = column(
    "message_control_id", pa.string(), "MSH-10", "Message control ID of the message the row belongs to."
)
_PARENT_MESSAGE_TYPE = column("message_type", pa.string(), "MSH-9.1^MSH-9.2", "As in hl7_messages, e.g. RDE^O11 or ADT^A01.")

HL7_MESSAGES = pa.schema(
    [
        column("message_control_id", pa.string(), "MSH-10", "Message control ID."),
        column("message_type", pa.string(), "MSH-9.1^MSH-9.2",
               "Message code and trigger event, e.g. ADT^A01 (the code alone without an event)."),
        column("message_structure", pa.string(), "MSH-9.3", "Message structure, e.g. ADT_A01."),
        column("message_datetime", pa.timestamp("us"), "MSH-7", "Date/time of the message, wall clock as sent."),
        column("sending_application", pa.string(), "MSH-3.1"),
        column("sending_facility", pa.string(), "MSH-4.1"),
        column("receiving_application", pa.string(), "MSH-5.1"),
        column("receiving_facility", pa.string(), "MSH-6.1"),
        column("processing_id", pa.string(), "MSH-11.1", "P production, T training, D debugging."),
        column("hl7_version", pa.string(), "MSH-12.1", "HL7 version ID."),
        column("character_set", pa.string(), "MSH-18", "Character set as declared; null when not declared."),
        column("patient_id", pa.string(), "PID-3.1",
               "Patient identifier (MRN) of the MR repetition of PID-3, else the first."),
        # Not filled from MSH-4: a faithful copy, the fallback is the de-identification's to make
        column("patient_id_issuer", pa.string(), "PID-3.4.1",
               "Assigning authority (HD namespace ID) of that PID-3 repetition; null when absent."),
        column("patient_id_type", pa.string(), "PID-3.5", "Identifier type code of that PID-3 repetition (MR, PI, ...)."),
        column("patient_family_name", pa.string(), "PID-5.1.1"),
        column("patient_given_name", pa.string(), "PID-5.2"),
        column("patient_middle_name", pa.string(), "PID-5.3", "Second and further given names or initials."),
        column("patient_birth_date", pa.string(), "PID-7.1", "Date of birth as written, precision kept (YYYY[MM[DD...]])."),
        column("patient_gender", pa.string(), "PID-8", "Administrative sex."),
        column("patient_street", pa.string(), "PID-11.1", "Street address."),
        column("patient_city", pa.string(), "PID-11.3"),
        column("patient_state", pa.string(), "PID-11.4", "State or province."),
        column("patient_zip", pa.string(), "PID-11.5", "ZIP or postal code."),
        column("patient_phone", pa.string(), "PID-13.1", "Home phone number."),
        column("patient_account_number", pa.string(), "PID-18.1"),
        column("patient_ssn", pa.string(), "PID-19", "Social security number."),
        column("segment_count", pa.int32(), "derived", "Number of segments in the message."),
        _SOURCE_FILE,
        _MESSAGE_INDEX,
    ]
)

HL7_LAB_RESULTS = pa.schema(
    [
        _PARENT_CONTROL_ID,
        _SOURCE_FILE,
        _MESSAGE_INDEX,
        column("placer_order_number", pa.string(), "OBR-2.1", "Placer order number of the OBR this OBX follows."),
        column("filler_order_number", pa.string(), "OBR-3.1", "Filler order number of that OBR."),
        column("universal_service_id", pa.string(), "OBR-4.1", "The test or panel ordered, from that OBR."),
        column("set_id", pa.string(), "OBX-1", "Position of the OBX in its group."),
        column("value_type", pa.string(), "OBX-2", "HL7 data type of the value (NM, SN, CWE, ST, ...)."),
        column("observation_code", pa.string(), "OBX-3.1", "Observation code (e.g. LOINC)."),
        column("observation_name", pa.string(), "OBX-3.2", "Observation name as the sender wrote it."),
        column("coding_system", pa.string(), "OBX-3.3", "Coding system of the observation code."),
        column("value", pa.string(), "OBX-5", "Observation value: first repetition, components joined by ^."),
        column("numeric_value", pa.float64(), "OBX-5", "The value as a number when value_type is NM or SN."),
        column("units", pa.string(), "OBX-6.1"),
        column("reference_range", pa.string(), "OBX-7", "Reference range as written."),
        column("abnormal_flag", pa.string(), "OBX-8", "Abnormal flag (H, L, N, ...)."),
        column("result_status", pa.string(), "OBX-11", "Result status (F final, P preliminary, ...)."),
        column("observation_datetime", pa.timestamp("us"), "OBX-14", "Date/time of the observation."),
    ]
)

HL7_ERRORS = pa.schema(
    [
        _SOURCE_FILE,
        column("message_index", pa.int32(), "derived",
               "0-based position of the bad message in its file; null when the whole file is unreadable."),
        column("byte_offset", pa.int64(), "derived", "Where the bad message starts in the file, in bytes."),
        column("error", pa.string(), "derived",
               "Why the message or file was not parsed: a reason a person can act on; never message content."),
    ]
)

HL7_PHARMACY_ORDERS = pa.schema(
    [
        _PARENT_CONTROL_ID,
        _SOURCE_FILE,
        _MESSAGE_INDEX,
        _PARENT_MESSAGE_TYPE,
        column("order_control", pa.string(), "ORC-1", "Order control of the ORC this RXE follows (NW new, CA cancel, ...)."),
        column("placer_order_number", pa.string(), "ORC-2.1", "Placer order number of that ORC."),
        column("filler_order_number", pa.string(), "ORC-3.1", "Filler order number of that ORC."),
        column("give_code", pa.string(), "RXE-2.1", "Medication code."),
        column("give_name", pa.string(), "RXE-2.2", "Medication name."),
        column("give_coding_system", pa.string(), "RXE-2.3", "Coding system of the medication code."),
        column("give_amount_minimum", pa.float64(), "RXE-3"),
        column("give_amount_maximum", pa.float64(), "RXE-4"),
        column("give_units", pa.string(), "RXE-5.1"),
        column("dosage_form", pa.string(), "RXE-6.1"),
        column("route", pa.string(), "RXR-1.1", "Route of administration, from the first RXR after this RXE."),
        column("frequency", pa.string(), "TQ1-3.1, else RXE-1.2",
               "Repeat pattern of the TQ1 after this RXE, else the interval of RXE-1 (TQ)."),
        column("start_datetime", pa.timestamp("us"), "TQ1-7, else RXE-1.4", "Start date/time of the order."),
        column("end_datetime", pa.timestamp("us"), "TQ1-8, else RXE-1.5", "End date/time of the order."),
        column("dispense_amount", pa.float64(), "RXE-10"),
        column("dispense_units", pa.string(), "RXE-11.1"),
    ]
)

HL7_ENCOUNTERS = pa.schema(
    [
        _PARENT_CONTROL_ID,
        _SOURCE_FILE,
        _MESSAGE_INDEX,
        _PARENT_MESSAGE_TYPE,
        column("event_type", pa.string(), "EVN-1, else MSH-9.2", "Event type (A01 admission, A03 discharge, ...)."),
        column("event_datetime", pa.timestamp("us"), "EVN-2", "Recorded date/time of the event."),
        column("patient_class", pa.string(), "PV1-2", "Patient class (I inpatient, O outpatient, E emergency)."),
        column("point_of_care", pa.string(), "PV1-3.1", "Unit of the assigned patient location."),
        column("room", pa.string(), "PV1-3.2", "Room of the assigned patient location."),
        column("bed", pa.string(), "PV1-3.3", "Bed of the assigned patient location."),
        column("location_facility", pa.string(), "PV1-3.4", "Facility of the assigned patient location."),
        column("attending_doctor_id", pa.string(), "PV1-7.1"),
        column("attending_doctor_family_name", pa.string(), "PV1-7.2"),
        column("attending_doctor_given_name", pa.string(), "PV1-7.3"),
        column("hospital_service", pa.string(), "PV1-10"),
        column("admit_source", pa.string(), "PV1-14"),
        column("visit_number", pa.string(), "PV1-19.1"),
        column("discharge_disposition", pa.string(), "PV1-36"),
        column("admit_datetime", pa.timestamp("us"), "PV1-44", "Admission date/time."),
        column("discharge_datetime", pa.timestamp("us"), "PV1-45", "Discharge date/time."),
    ]
)

TABLES = {
    "hl7_messages": HL7_MESSAGES,
    "hl7_lab_results": HL7_LAB_RESULTS,
    "hl7_pharmacy_orders": HL7_PHARMACY_ORDERS,
    "hl7_encounters": HL7_ENCOUNTERS,
    "hl7_errors": HL7_ERRORS,
}

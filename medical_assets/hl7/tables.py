"""Arrow schemas of the HL7 tables in the PHI zone (README: The asset graph).

Every block the parser yields carries one of these schemas explicitly, so an
empty block (a file without OBX segments, say) never infers `list<null>`.
"""

import pyarrow as pa

HL7_MESSAGES = pa.schema(
    [
        pa.field("message_control_id", pa.string()),  # MSH-10
        pa.field("message_type", pa.string()),  # MSH-9.1 ^ MSH-9.2, e.g. ADT^A01
        pa.field("message_structure", pa.string()),  # MSH-9.3, e.g. ADT_A01
        pa.field("message_datetime", pa.timestamp("us")),  # MSH-7, wall clock as sent
        pa.field("sending_application", pa.string()),  # MSH-3.1
        pa.field("sending_facility", pa.string()),  # MSH-4.1
        pa.field("receiving_application", pa.string()),  # MSH-5.1
        pa.field("receiving_facility", pa.string()),  # MSH-6.1
        pa.field("processing_id", pa.string()),  # MSH-11.1
        pa.field("hl7_version", pa.string()),  # MSH-12.1
        pa.field("character_set", pa.string()),  # MSH-18 as declared (null: not declared)
        pa.field("patient_id", pa.string()),  # PID-3.1 of the MR repetition, else the first
        # PID-3.4.1 of that repetition (assigning authority, HD namespace ID); null when absent, not
        # filled from MSH-4: a faithful copy, the fallback is the de-identification's to make
        pa.field("patient_id_issuer", pa.string()),
        pa.field("patient_id_type", pa.string()),  # PID-3.5 of that repetition
        pa.field("patient_family_name", pa.string()),  # PID-5.1.1
        pa.field("patient_given_name", pa.string()),  # PID-5.2
        pa.field("patient_middle_name", pa.string()),  # PID-5.3
        pa.field("patient_birth_date", pa.string()),  # PID-7.1, precision kept (YYYY[MM[DD...]])
        pa.field("patient_gender", pa.string()),  # PID-8
        pa.field("patient_street", pa.string()),  # PID-11.1
        pa.field("patient_city", pa.string()),  # PID-11.3
        pa.field("patient_state", pa.string()),  # PID-11.4
        pa.field("patient_zip", pa.string()),  # PID-11.5
        pa.field("patient_phone", pa.string()),  # PID-13.1
        pa.field("patient_account_number", pa.string()),  # PID-18.1
        pa.field("patient_ssn", pa.string()),  # PID-19
        pa.field("segment_count", pa.int32()),
        pa.field("source_file", pa.string()),
        pa.field("message_index", pa.int32()),  # 0-based position of the message in its file
    ]
)

HL7_LAB_RESULTS = pa.schema(
    [
        pa.field("message_control_id", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("message_index", pa.int32()),
        pa.field("placer_order_number", pa.string()),  # OBR-2.1 of the OBR this OBX follows
        pa.field("filler_order_number", pa.string()),  # OBR-3.1
        pa.field("universal_service_id", pa.string()),  # OBR-4.1
        pa.field("set_id", pa.string()),  # OBX-1
        pa.field("value_type", pa.string()),  # OBX-2
        pa.field("observation_code", pa.string()),  # OBX-3.1
        pa.field("observation_name", pa.string()),  # OBX-3.2
        pa.field("coding_system", pa.string()),  # OBX-3.3
        pa.field("value", pa.string()),  # OBX-5, first repetition, components joined by ^
        pa.field("numeric_value", pa.float64()),  # OBX-5 as a number when value_type is NM/SN
        pa.field("units", pa.string()),  # OBX-6.1
        pa.field("reference_range", pa.string()),  # OBX-7
        pa.field("abnormal_flag", pa.string()),  # OBX-8
        pa.field("result_status", pa.string()),  # OBX-11
        pa.field("observation_datetime", pa.timestamp("us")),  # OBX-14
    ]
)

HL7_ERRORS = pa.schema(
    [
        pa.field("source_file", pa.string()),
        pa.field("message_index", pa.int32()),  # null when the whole file is unreadable
        pa.field("byte_offset", pa.int64()),  # where the bad message starts in the file
        pa.field("error", pa.string()),  # a reason a person can act on; never message content
    ]
)

HL7_PHARMACY_ORDERS = pa.schema(
    [
        pa.field("message_control_id", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("message_index", pa.int32()),
        pa.field("message_type", pa.string()),  # as in hl7_messages, e.g. RDE^O11
        pa.field("order_control", pa.string()),  # ORC-1 of the ORC this RXE follows (NW, CA, ...)
        pa.field("placer_order_number", pa.string()),  # ORC-2.1
        pa.field("filler_order_number", pa.string()),  # ORC-3.1
        pa.field("give_code", pa.string()),  # RXE-2.1
        pa.field("give_name", pa.string()),  # RXE-2.2
        pa.field("give_coding_system", pa.string()),  # RXE-2.3
        pa.field("give_amount_minimum", pa.float64()),  # RXE-3
        pa.field("give_amount_maximum", pa.float64()),  # RXE-4
        pa.field("give_units", pa.string()),  # RXE-5.1
        pa.field("dosage_form", pa.string()),  # RXE-6.1
        pa.field("route", pa.string()),  # RXR-1.1 of the first RXR after this RXE
        pa.field("frequency", pa.string()),  # TQ1-3.1 when a TQ1 follows, else RXE-1.2 (TQ interval)
        pa.field("start_datetime", pa.timestamp("us")),  # TQ1-7, else RXE-1.4
        pa.field("end_datetime", pa.timestamp("us")),  # TQ1-8, else RXE-1.5
        pa.field("dispense_amount", pa.float64()),  # RXE-10
        pa.field("dispense_units", pa.string()),  # RXE-11.1
    ]
)

HL7_ENCOUNTERS = pa.schema(
    [
        pa.field("message_control_id", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("message_index", pa.int32()),
        pa.field("message_type", pa.string()),  # as in hl7_messages, e.g. ADT^A01
        pa.field("event_type", pa.string()),  # EVN-1, else MSH-9.2 (A01 admission, A03 discharge, ...)
        pa.field("event_datetime", pa.timestamp("us")),  # EVN-2
        pa.field("patient_class", pa.string()),  # PV1-2 (I inpatient, O outpatient, E emergency)
        pa.field("point_of_care", pa.string()),  # PV1-3.1
        pa.field("room", pa.string()),  # PV1-3.2
        pa.field("bed", pa.string()),  # PV1-3.3
        pa.field("location_facility", pa.string()),  # PV1-3.4
        pa.field("attending_doctor_id", pa.string()),  # PV1-7.1
        pa.field("attending_doctor_family_name", pa.string()),  # PV1-7.2
        pa.field("attending_doctor_given_name", pa.string()),  # PV1-7.3
        pa.field("hospital_service", pa.string()),  # PV1-10
        pa.field("admit_source", pa.string()),  # PV1-14
        pa.field("visit_number", pa.string()),  # PV1-19.1
        pa.field("discharge_disposition", pa.string()),  # PV1-36
        pa.field("admit_datetime", pa.timestamp("us")),  # PV1-44
        pa.field("discharge_datetime", pa.timestamp("us")),  # PV1-45
    ]
)

TABLES = {
    "hl7_messages": HL7_MESSAGES,
    "hl7_lab_results": HL7_LAB_RESULTS,
    "hl7_pharmacy_orders": HL7_PHARMACY_ORDERS,
    "hl7_encounters": HL7_ENCOUNTERS,
    "hl7_errors": HL7_ERRORS,
}

"""The values the fast path takes from each segment, by the PHI table column they fill."""

# The values each table takes from a segment: (column, field, component), component being that
# component's first subcomponent in the field's first repetition.
CAPTURES = {
    "MSH": (
        ("sending_application", 3, 1),
        ("sending_facility", 4, 1),
        ("receiving_application", 5, 1),
        ("receiving_facility", 6, 1),
        ("message_datetime", 7, 1),
        ("message_code", 9, 1),
        ("trigger_event", 9, 2),
        ("message_structure", 9, 3),
        ("message_control_id", 10, 1),
        ("processing_id", 11, 1),
        ("hl7_version", 12, 1),
    ),
    "PID": (
        ("patient_family_name", 5, 1),
        ("patient_given_name", 5, 2),
        ("patient_middle_name", 5, 3),
        ("patient_birth_date", 7, 1),
        ("patient_gender", 8, 1),
        ("patient_street", 11, 1),
        ("patient_city", 11, 3),
        ("patient_state", 11, 4),
        ("patient_zip", 11, 5),
        ("patient_phone", 13, 1),
        ("patient_account_number", 18, 1),
        ("patient_ssn", 19, 1),
    ),
    "OBR": (("placer_order_number", 2, 1), ("filler_order_number", 3, 1), ("universal_service_id", 4, 1)),
    "OBX": (
        ("set_id", 1, 1),
        ("value_type", 2, 1),
        ("observation_code", 3, 1),
        ("observation_name", 3, 2),
        ("coding_system", 3, 3),
        ("units", 6, 1),
        ("reference_range", 7, 1),
        ("abnormal_flag", 8, 1),
        ("result_status", 11, 1),
        ("observation_datetime", 14, 1),
    ),
    "ORC": (("order_control", 1, 1), ("placer_order_number", 2, 1), ("filler_order_number", 3, 1)),
    "RXE": (
        ("interval", 1, 2),
        ("start", 1, 4),
        ("end", 1, 5),
        ("give_code", 2, 1),
        ("give_name", 2, 2),
        ("give_coding_system", 2, 3),
        ("give_amount_minimum", 3, 1),
        ("give_amount_maximum", 4, 1),
        ("give_units", 5, 1),
        ("dosage_form", 6, 1),
        ("dispense_amount", 10, 1),
        ("dispense_units", 11, 1),
    ),
    "RXR": (("route", 1, 1),),
    "TQ1": (("frequency", 3, 1), ("start", 7, 1), ("end", 8, 1)),
    "EVN": (("event_type", 1, 1), ("event_datetime", 2, 1)),
    "PV1": (
        ("patient_class", 2, 1),
        ("point_of_care", 3, 1),
        ("room", 3, 2),
        ("bed", 3, 3),
        ("location_facility", 3, 4),
        ("attending_doctor_id", 7, 1),
        ("attending_doctor_family_name", 7, 2),
        ("attending_doctor_given_name", 7, 3),
        ("hospital_service", 10, 1),
        ("admit_source", 14, 1),
        ("visit_number", 19, 1),
        ("discharge_disposition", 36, 1),
        ("admit_datetime", 44, 1),
        ("discharge_datetime", 45, 1),
    ),
}
# The hl7_messages columns taken from the PID-3 repetition that identifies the patient (MR, else the first).
IDENTIFIER_COMPONENTS = {"patient_id": 1, "patient_id_issuer": 4, "patient_id_type": 5}
MESSAGE_HEADER_STRINGS = (
    "message_type",
    "message_control_id",
    "message_structure",
    "sending_application",
    "sending_facility",
    "receiving_application",
    "receiving_facility",
    "processing_id",
    "hl7_version",
)
GIVE_STRINGS = ("give_code", "give_name", "give_coding_system", "give_units", "dosage_form", "dispense_units")
GIVE_AMOUNTS = ("give_amount_minimum", "give_amount_maximum", "dispense_amount")
OBSERVATION_STRINGS = tuple(column for column, _, _ in CAPTURES["OBX"] if column != "observation_datetime")
VISIT_STRINGS = tuple(column for column, _, _ in CAPTURES["PV1"] if not column.endswith("_datetime"))
# The highest field and component any capture reads, for the padding of the lookups.
MOST_FIELDS = max(field for captures in CAPTURES.values() for _, field, _ in captures)
MOST_COMPONENTS = max(component for captures in CAPTURES.values() for _, _, component in captures)

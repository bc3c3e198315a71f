"""The general reader's rows: one parsed message's row of each PHI table, read field by field in Python."""

from __future__ import annotations

from operator import itemgetter

from medical_assets.hl7 import datatypes, er7
from medical_assets.hl7.encoding import Separators

_NUMERIC_VALUE_TYPES = frozenset({"NM", "SN"})
# Fields read as component 1 only, fetched together in one C call.
_MSH_FIRST_COMPONENTS = itemgetter(3, 4, 5, 6, 7, 10, 11, 12)
_PID_FIRST_COMPONENTS = itemgetter(7, 8, 13, 18, 19)
_OBR_FIRST_COMPONENTS = itemgetter(2, 3, 4)
_OBX_FIRST_COMPONENTS = itemgetter(1, 2, 6, 7, 8, 11, 14)
_ORC_FIRST_COMPONENTS = itemgetter(1, 2, 3)
_RXE_FIRST_COMPONENTS = itemgetter(3, 4, 5, 6, 10, 11)
_TQ1_FIRST_COMPONENTS = itemgetter(3, 7, 8)
_EVN_FIRST_COMPONENTS = itemgetter(1, 2)
_PV1_FIRST_COMPONENTS = itemgetter(2, 10, 14, 19, 36, 44, 45)
# Segments shorter than this many elements are padded with empty fields, so the getters never miss.
_MSH_WIDTH = 13
_PID_WIDTH = 20
_OBR_WIDTH = 5
_OBX_WIDTH = 15
_ORC_WIDTH = 4
_RXE_WIDTH = 12
_RXR_WIDTH = 2
_TQ1_WIDTH = 9
_EVN_WIDTH = 3
_PV1_WIDTH = 46
_PADDING = ["", "", "", ""]
_NO_PATIENT = (None,) * 15
_NO_ORDER_CONTROL = (None, None, None)


def message_row(message: er7.Message, source_file: str) -> tuple:
    """The message's row of hl7_messages; ER7Error when its MSH lacks MSH-9, MSH-10 or MSH-12."""
    separators = message.separators
    codec = message.codec
    only_components = message.only_components
    header = message.fields[0]
    last = len(header) - 1  # header[n] is MSH-n
    if last < 10:
        raise er7.ER7Error(
            f"MSH segment is truncated after MSH-{last}: "
            "MSH-9 (message type) and MSH-10 (message control ID) are required"
        )
    if last < _MSH_WIDTH - 1:
        header = header + [""] * (_MSH_WIDTH - 1 - last)
    (
        sending_application,
        sending_facility,
        receiving_application,
        receiving_facility,
        sent,
        control_id,
        processing_id,
        version,
    ) = er7.first_components(_MSH_FIRST_COMPONENTS(header), separators, codec, only_components)
    message_type = _components(header[9], separators, codec, only_components)
    if not header[9]:
        raise er7.ER7Error("MSH-9 (message type) is empty")
    if not message_type[0]:
        raise er7.ER7Error("MSH-9.1 (message code) is empty")
    if not control_id:
        raise er7.ER7Error("MSH-10 (message control ID) is empty")
    if not version:
        raise er7.ER7Error("MSH-12 (version ID) is missing")
    names = message.names
    patient = _patient(message.fields[names.index("PID")], message) if "PID" in names else _NO_PATIENT
    return (
        control_id,
        f"{message_type[0]}^{message_type[1]}" if message_type[1] else message_type[0],
        message_type[2] or None,
        datatypes.parse_datetime(sent, separators.component),
        sending_application or None,
        sending_facility or None,
        receiving_application or None,
        receiving_facility or None,
        processing_id or None,
        version,
        message.charset,
        *patient,
        len(names),
        source_file,
        message.index,
    )


def lab_rows(message: er7.Message, control_id: str, source_file: str) -> list[tuple]:
    """One row per OBX, carrying OBR-2, OBR-3 and OBR-4 of the OBR it follows (None before any OBR)."""
    separators = message.separators
    codec = message.codec
    only_components = message.only_components
    component = separators.component
    index = message.index
    rows = []
    placer = filler = service = None
    for fields in message.fields:
        name = fields[0]
        if name == "OBR":
            if len(fields) < _OBR_WIDTH:
                fields = fields + [""] * (_OBR_WIDTH - len(fields))
            placer, filler, service = er7.first_components(
                _OBR_FIRST_COMPONENTS(fields), separators, codec, only_components
            )
        elif name == "OBX":
            if len(fields) < _OBX_WIDTH:
                fields = fields + [""] * (_OBX_WIDTH - len(fields))
            set_id, value_type, units, reference_range, abnormal_flag, status, observed = er7.first_components(
                _OBX_FIRST_COMPONENTS(fields), separators, codec, only_components
            )
            observation = _components(fields[3], separators, codec, only_components)
            written = fields[5]
            if only_components or not _beyond_components(written, separators):
                components = written.split(component)
                value = written if component == "^" else "^".join(components)
            else:
                components = er7.whole_components(written, separators, codec)
                value = "^".join(components)
            rows.append(
                (
                    control_id,
                    source_file,
                    index,
                    placer or None,
                    filler or None,
                    service or None,
                    set_id or None,
                    value_type or None,
                    observation[0] or None,
                    observation[1] or None,
                    observation[2] or None,
                    value or None,
                    datatypes.parse_numeric_value(components) if value_type in _NUMERIC_VALUE_TYPES else None,
                    units or None,
                    reference_range or None,
                    abnormal_flag or None,
                    status or None,
                    datatypes.parse_datetime(observed, component),
                )
            )
    return rows


def pharmacy_rows(message: er7.Message, message_row: tuple, source_file: str) -> list[tuple]:
    """One row per RXE, with the ORC before it and the first RXR and TQ1 after it (before the next RXE)."""
    # Each order group: [ORC fields or None, RXE fields, RXR fields or None, TQ1 fields or None].
    groups = []
    order_control = None
    for fields in message.fields:
        name = fields[0]
        if name == "ORC":
            order_control = fields
        elif name == "RXE":
            groups.append([order_control, fields, None, None])
        elif name == "RXR" and groups and groups[-1][2] is None:
            groups[-1][2] = fields
        elif name == "TQ1" and groups and groups[-1][3] is None:
            groups[-1][3] = fields
    return [_pharmacy_row(message, message_row, source_file, *group) for group in groups]


def encounter_row(message: er7.Message, message_row: tuple, source_file: str) -> tuple:
    """The first PV1's visit, with the first EVN's event when there is one (else MSH-9.2 as the event type)."""
    separators = message.separators
    codec = message.codec
    only_components = message.only_components
    component = separators.component
    names = message.names
    visit = _padded(message.fields[names.index("PV1")], _PV1_WIDTH)
    if "EVN" in names:
        event_type, recorded = er7.first_components(
            _EVN_FIRST_COMPONENTS(_padded(message.fields[names.index("EVN")], _EVN_WIDTH)),
            separators,
            codec,
            only_components,
        )
    else:
        event_type, recorded = "", ""
    if not event_type:
        header = message.fields[0]
        event_type = _components(header[9], separators, codec, only_components)[1]
    patient_class, service, admit_source, visit_number, disposition, admitted, discharged = er7.first_components(
        _PV1_FIRST_COMPONENTS(visit), separators, codec, only_components
    )
    location = _components(visit[3], separators, codec, only_components)
    doctor = _components(visit[7], separators, codec, only_components)
    return (
        message_row[0],
        source_file,
        message.index,
        message_row[1],
        event_type or None,
        datatypes.parse_datetime(recorded, component),
        patient_class or None,
        location[0] or None,
        location[1] or None,
        location[2] or None,
        location[3] or None,
        doctor[0] or None,
        doctor[1] or None,
        doctor[2] or None,
        service or None,
        admit_source or None,
        visit_number or None,
        disposition or None,
        datatypes.parse_datetime(admitted, component),
        datatypes.parse_datetime(discharged, component),
    )


def _patient(fields: list[str], message: er7.Message) -> tuple:
    """PID columns from patient_id to patient_ssn; the identifier and its issuer are PID-3's MR repetition's, else its first's."""
    separators = message.separators
    codec = message.codec
    only_components = message.only_components
    if len(fields) < _PID_WIDTH:
        fields = fields + [""] * (_PID_WIDTH - len(fields))
    birth_date, gender, phone, account, ssn = er7.first_components(
        _PID_FIRST_COMPONENTS(fields), separators, codec, only_components
    )
    identifiers = fields[3]
    identifier = _components(identifiers, separators, codec, only_components)
    if not only_components and identifier[4] != "MR" and separators.repetition in identifiers:
        for repetition in range(2, identifiers.count(separators.repetition) + 2):
            candidate = er7.leaf_components(identifiers, separators, codec, repetition) + _PADDING
            if candidate[4] == "MR":
                identifier = candidate
                break
    name = _components(fields[5], separators, codec, only_components)
    address = _components(fields[11], separators, codec, only_components)
    return (
        identifier[0] or None,
        identifier[3] or None,  # PID-3.4, the assigning authority's first subcomponent
        identifier[4] or None,
        name[0] or None,
        name[1] or None,
        name[2] or None,
        birth_date or None,
        gender or None,
        address[0] or None,
        address[2] or None,
        address[3] or None,
        address[4] or None,
        phone or None,
        account or None,
        ssn or None,
    )


def _pharmacy_row(
    message: er7.Message,
    message_row: tuple,
    source_file: str,
    order_control: list[str] | None,
    give: list[str],
    route: list[str] | None,
    timing: list[str] | None,
) -> tuple:
    separators = message.separators
    codec = message.codec
    only_components = message.only_components
    component = separators.component
    if order_control is None:
        control, placer, filler = _NO_ORDER_CONTROL
    else:
        control, placer, filler = er7.first_components(
            _ORC_FIRST_COMPONENTS(_padded(order_control, _ORC_WIDTH)), separators, codec, only_components
        )
    give = _padded(give, _RXE_WIDTH)
    minimum, maximum, give_units, dosage_form, dispense_amount, dispense_units = er7.first_components(
        _RXE_FIRST_COMPONENTS(give), separators, codec, only_components
    )
    give_code = _components(give[2], separators, codec, only_components)
    route_code = (
        er7.first_components((_padded(route, _RXR_WIDTH)[1],), separators, codec, only_components)[0] if route else ""
    )
    if timing is None:
        # RXE-1 is a TQ: component 2 the interval, 4 the start, 5 the end.
        quantity_timing = _components(give[1], separators, codec, only_components)
        frequency, start, end = quantity_timing[1], quantity_timing[3], quantity_timing[4]
    else:
        frequency, start, end = er7.first_components(
            _TQ1_FIRST_COMPONENTS(_padded(timing, _TQ1_WIDTH)), separators, codec, only_components
        )
    return (
        message_row[0],
        source_file,
        message.index,
        message_row[1],
        control or None,
        placer or None,
        filler or None,
        give_code[0] or None,
        give_code[1] or None,
        give_code[2] or None,
        datatypes.parse_number(minimum),
        datatypes.parse_number(maximum),
        give_units or None,
        dosage_form or None,
        route_code or None,
        frequency or None,
        datatypes.parse_datetime(start, component),
        datatypes.parse_datetime(end, component),
        datatypes.parse_number(dispense_amount),
        dispense_units or None,
    )


def _padded(fields: list[str], width: int) -> list[str]:
    """Fields padded with empty ones to `width` elements, so getters never miss."""
    if len(fields) < width:
        return fields + [""] * (width - len(fields))
    return fields


def _components(value: str, separators: Separators, codec: str | None, only_components: bool) -> list[str]:
    """A field's first-repetition components, each its first subcomponent, unescaped; at least five items."""
    if not only_components and _beyond_components(value, separators):
        return er7.leaf_components(value, separators, codec) + _PADDING
    return value.split(separators.component) + _PADDING


def _beyond_components(value: str, separators: Separators) -> bool:
    repetition, subcomponent, escape = separators.beyond_components
    return repetition in value or subcomponent in value or escape in value

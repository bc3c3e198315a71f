"""hl7_pharmacy_orders and hl7_encounters: every column from the HL7 field its schema comment names."""

from datetime import datetime

import pytest

from medical_assets.hl7 import message_rows, parse_hl7_file, reader, tables
from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_file

RDE_WITH_TQ1 = (
    "MSH|^~\\&|PHARM|GHH|EMR|WARD|20240301101500||RDE^O11^RDE_O11|RX-1|P|2.5.1",
    "PID|1||P100^^^GHH^MR||DOE^JANE",
    "ORC|NW|PL-77^EMR|FI-88^PHARM",
    "RXE|1^BID^^20240301120000^20240308120000|310965^IBUPROFEN 200 MG ORAL TABLET^RXNORM|200|400|mg^milligram|TAB"
    "||||28|TAB^tablet",
    "TQ1|1||Q6H&every six hours^Every 6 hours||||202403011300|202403101300",
    "RXR|PO^ORAL^HL70162",
    "RXR|IV^INTRAVENOUS^HL70162",
)
RDE_TWO_ORDERS = (
    "MSH|^~\\&|PHARM|GHH|EMR|WARD|20240302||RDE^O11|RX-2|P|2.5",
    "PID|1||P200^^^GHH^MR||ROE^RICHARD",
    "ORC|NW|PL-1",
    "RXE|1^QD^^20240302^20240305+0100|1191^ASPIRIN 81\\T\\CHEW^RXNORM|81||mg|TAB||||30",
    "RXR|PO",
    "ORC|CA|PL-2|FI-2",
    "RXE|^^^202403|2^HEPARIN^RXNORM|not a number|inf|U|INJ||||1_000|EA",
    "TQ1|1||Q8H",
)
RDE_WITHOUT_ORC = (
    "MSH|^~\\&|PHARM|GHH|EMR|WARD|20240303||RDE^O11|RX-3|P|2.5",
    "RXE",
)
ADT_A01 = (
    "MSH|^~\\&|ADT|GHH|EMR|WARD|20240115093000||ADT^A01^ADT_A01|ADT-1|P|2.5",
    "EVN|A01|20240115092500",
    "PID|1||P300^^^GHH^MR||EVERYMAN^ADAM",
    "PV1|1|I|4N^401^B^GHH&1.2.3&ISO||||1234^ATTEND\\T\\SON^AARON^A~5678^OTHER^OTTO|||MED||||7|||||V-9^^^GHH"
    "|||||||||||||||||||||||||20240115090000",
)
ADT_A03 = (
    "MSH|^~\\&|ADT|GHH|EMR|WARD|20240120170000||ADT^A03|ADT-2|P|2.5",
    "EVN||20240120165500",
    "PID|1||P300^^^GHH^MR||EVERYMAN^ADAM",
    "PV1|1|I|4N^401^B^GHH||||1234^ATTENDSON^AARON|||MED||||7|||||V-9|||||||||||||||||01||||||||20240115090000"
    "|202401201650~202401201700",
    "PV1|2|O|SECOND",
)


def _file(*messages: tuple[str, ...]) -> bytes:
    return "".join("\r".join(segments) + "\r" for segments in messages).encode()


def test_pharmacy_row_with_tq1_takes_timing_from_it_and_route_from_the_first_rxr():
    parsed = parse_hl7_file(_file(RDE_WITH_TQ1), "rde.hl7")
    (row,) = parsed.pharmacy_orders.to_pylist()
    assert row == {
        "message_control_id": "RX-1",
        "source_file": "rde.hl7",
        "message_index": 0,
        "message_type": "RDE^O11",
        "order_control": "NW",
        "placer_order_number": "PL-77",
        "filler_order_number": "FI-88",
        "give_code": "310965",
        "give_name": "IBUPROFEN 200 MG ORAL TABLET",
        "give_coding_system": "RXNORM",
        "give_amount_minimum": 200.0,
        "give_amount_maximum": 400.0,
        "give_units": "mg",
        "dosage_form": "TAB",
        "route": "PO",
        "frequency": "Q6H",
        "start_datetime": datetime(2024, 3, 1, 13, 0),
        "end_datetime": datetime(2024, 3, 10, 13, 0),
        "dispense_amount": 28.0,
        "dispense_units": "TAB",
    }


def test_two_order_groups_in_one_message():
    parsed = parse_hl7_file(_file(RDE_TWO_ORDERS), "rde.hl7")
    first, second = parsed.pharmacy_orders.to_pylist()
    assert (first["order_control"], first["placer_order_number"], first["filler_order_number"]) == ("NW", "PL-1", None)
    assert first["give_name"] == "ASPIRIN 81&CHEW"  # unescaped
    assert (first["route"], first["frequency"]) == ("PO", "QD")  # no TQ1: RXE-1.2
    assert first["start_datetime"] == datetime(2024, 3, 2)
    assert first["end_datetime"] == datetime(2024, 3, 5)  # the offset is checked, not applied
    assert (first["give_amount_maximum"], first["dispense_amount"], first["dispense_units"]) == (None, 30.0, None)
    assert (second["order_control"], second["placer_order_number"], second["filler_order_number"]) == (
        "CA",
        "PL-2",
        "FI-2",
    )
    assert second["route"] is None  # the RXR of the first group is not this one's
    assert second["frequency"] == "Q8H"  # from the TQ1 after this RXE
    assert second["start_datetime"] is None and second["end_datetime"] is None  # TQ1-7/8 empty, RXE-1 not used
    # Amounts that are not finite HL7 numbers are null, as numeric_value is.
    assert (second["give_amount_minimum"], second["give_amount_maximum"], second["dispense_amount"]) == (
        None,
        None,
        None,
    )


def test_rxe_without_orc_or_any_field():
    parsed = parse_hl7_file(_file(RDE_WITHOUT_ORC), "rde.hl7")
    assert parsed.errors.num_rows == 0
    (row,) = parsed.pharmacy_orders.to_pylist()
    assert row["message_control_id"] == "RX-3" and row["message_type"] == "RDE^O11"
    identity = {"message_control_id", "source_file", "message_index", "message_type"}
    assert all(value is None for name, value in row.items() if name not in identity)


def test_admission_encounter_columns():
    parsed = parse_hl7_file(_file(ADT_A01), "adt.hl7")
    (row,) = parsed.encounters.to_pylist()
    assert row == {
        "message_control_id": "ADT-1",
        "source_file": "adt.hl7",
        "message_index": 0,
        "message_type": "ADT^A01",
        "event_type": "A01",
        "event_datetime": datetime(2024, 1, 15, 9, 25),
        "patient_class": "I",
        "point_of_care": "4N",
        "room": "401",
        "bed": "B",
        "location_facility": "GHH",  # its first subcomponent
        "attending_doctor_id": "1234",  # the first repetition
        "attending_doctor_family_name": "ATTEND&SON",
        "attending_doctor_given_name": "AARON",
        "hospital_service": "MED",
        "admit_source": "7",
        "visit_number": "V-9",
        "discharge_disposition": None,
        "admit_datetime": datetime(2024, 1, 15, 9, 0),
        "discharge_datetime": None,
    }


def test_discharge_encounter_uses_the_first_pv1_and_msh_event_when_evn_1_is_empty():
    parsed = parse_hl7_file(_file(ADT_A01, ADT_A03), "adt.hl7")
    assert parsed.encounters.column("message_index").to_pylist() == [0, 1]
    row = parsed.encounters.to_pylist()[1]
    assert (row["event_type"], row["event_datetime"]) == ("A03", datetime(2024, 1, 20, 16, 55))
    assert (row["patient_class"], row["point_of_care"]) == ("I", "4N")
    assert row["discharge_disposition"] == "01"
    assert row["admit_datetime"] == datetime(2024, 1, 15, 9, 0)
    assert row["discharge_datetime"] == datetime(2024, 1, 20, 16, 50)  # first repetition, minute precision


def test_encounter_without_evn_and_messages_without_pv1_or_rxe():
    oru_with_visit = (
        "MSH|^~\\&|LAB|GHH|EMR|WARD|20240101||ORU^R01|L-1|P|2.5",
        "PV1|1|E",
        "OBX|1|NM|GLU||5",
    )
    parsed = parse_hl7_file(_file(oru_with_visit, RDE_WITHOUT_ORC), "f.hl7")
    (row,) = parsed.encounters.to_pylist()
    assert (row["message_index"], row["event_type"], row["event_datetime"], row["patient_class"]) == (
        0,
        "R01",
        None,
        "E",
    )
    assert parsed.pharmacy_orders.column("message_index").to_pylist() == [1]


def test_schemas_are_exact_even_when_empty():
    for data in (b"", _file(("MSH|^~\\&|A|B|C|D|20240101||ACK|A1|P|2.4",)), _file(RDE_WITH_TQ1, ADT_A01)):
        parsed = parse_hl7_file(data, "f.hl7")
        assert list(parsed.tables()) == list(tables.TABLES)
        for name, table in parsed.tables().items():
            assert table.schema.equals(tables.TABLES[name], check_metadata=True), name


def test_a_message_in_errors_has_no_rows_anywhere_else(monkeypatch):
    def failing(message, message_row, source_file):
        raise ValueError("bug")

    monkeypatch.setattr(message_rows, "encounter_row", failing)
    oru_visit_rde = (
        "MSH|^~\\&|PHARM|GHH|EMR|WARD|20240303||RDE^O11|RX-4|P|2.5",
        "PV1|1|I",
        "ORC|NW|1",
        "RXE|1^QD|X^Y",
        "OBX|1|NM|GLU||5",
    )
    parsed = reader.parse_general(_file(RDE_WITH_TQ1, oru_visit_rde), "f.hl7")
    assert parsed.errors.column("message_index").to_pylist() == [1]
    for name in ("hl7_messages", "hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters"):
        assert 1 not in parsed.tables()[name].column("message_index").to_pylist(), name
    assert parsed.pharmacy_orders.column("message_index").to_pylist() == [0]


@pytest.fixture(scope="module")
def synthetic():
    settings = HL7CorpusSettings(total_messages=800, messages_per_file=400, seed=7)
    return [parse_hl7_file(render_file(settings, index), f"synthetic_{index}.hl7") for index in range(2)]


def test_synthetic_corpus_has_one_pharmacy_row_per_rde_message(synthetic):
    for parsed in synthetic:
        assert parsed.errors.num_rows == 0
        types = dict(zip(parsed.messages["message_index"].to_pylist(), parsed.messages["message_type"].to_pylist()))
        orders = parsed.pharmacy_orders.to_pylist()
        assert [row["message_index"] for row in orders] == [i for i, kind in types.items() if kind == "RDE^O11"]
        for row in orders:
            assert row["message_type"] == "RDE^O11"
            for column in ("give_code", "give_name", "route", "frequency", "start_datetime", "end_datetime"):
                assert row[column] is not None, column


def test_synthetic_corpus_has_one_encounter_row_per_adt_message(synthetic):
    for parsed in synthetic:
        types = dict(zip(parsed.messages["message_index"].to_pylist(), parsed.messages["message_type"].to_pylist()))
        admissions = [row for row in parsed.encounters.to_pylist() if row["message_type"].startswith("ADT")]
        assert [row["message_index"] for row in admissions] == [i for i, kind in types.items() if kind.startswith("ADT")]
        for row in admissions:
            assert row["event_type"] == row["message_type"][4:] in {"A01", "A03"}
            assert row["event_datetime"] is not None and row["admit_datetime"] is not None
            assert (row["discharge_datetime"] is not None) == (row["event_type"] == "A03")

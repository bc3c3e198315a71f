"""python-hl7 as an oracle: every field the tables take from a message must match what it reads there.

python-hl7 parses one message given with carriage-return segment separators; our reader gets the
whole corpus as one file, with each message in its own framing. The corpus keeps to the escapes
both define alike: python-hl7 turns \\H\\ and \\N\\ into "_", \\.br\\ into "\\r", drops unknown
escapes, and assumes & and \\ when MSH-2 omits them, where this reader follows the brief instead.
"""

import hl7
import pytest

from medical_assets.hl7 import parse_hl7_file

# python-hl7 logs the character-set escapes it skips through a deprecated logging call.
pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")

CORPUS = {
    "adt, MR second, alias names, two addresses": (
        "MSH|^~\\&|ADT1|GOOD HEALTH HOSPITAL|GHH LAB, INC.|GOOD HEALTH HOSPITAL|198808181126|SECURITY|"
        "ADT^A01^ADT_A01|MSG00001|P|2.5.1",
        "EVN|A01|200708181123",
        "PID|1||PATID1234^^^GOOD HEALTH HOSPITAL^SS~PATID5678^5^M11^ADT1^MR^GOOD HEALTH HOSPITAL||"
        "EVERYMAN^ADAM^A^III~EVERY^AD||19610615|M||C|"
        "2222 HOME STREET^^GREENSBORO^NC^27401-1020~1 WORK ROAD^^DURHAM^NC^27701||555-555-2004~555-555-2005|||S||"
        "PATID12345001^2^M10^ADT1^AN^A|444333333|987654^NC",
        "PV1|1|I|2000^2012^01||||004777^ATTEND^AARON^A|||SUR",
    ),
    "oru, escapes and subcomponents": (
        "MSH|^~\\&|LAB\\T\\CO|NORTH \\F\\ SOUTH|EHR|CLINIC|20240315093015.12+0100||"
        "ORU^R01|CTRL\\E\\42|P|2.6",
        "PID|1||X1^^^H^PI~X2^^^H^MR||O\\S\\BRIEN&O&BRIEN^MARY\\R\\ANN^C||19800229|F|||"
        "5 MAIN ST\\T\\APT 2^^SPRING\\F\\FIELD^IL^62701",
        "ORC|RE|ORD1",
        "OBR|1|PL\\S\\1^EHR|FI\\T\\1^LAB|CBC^COMPLETE BLOOD COUNT^L",
        "OBX|1|NM|718-7^HEMOGLOBIN\\T\\HB^LN||13.2|g/dL|12.0-16.0|N|||F|||20240315080000",
        "OBX|2|ST|NOTE^REMARK^L||high \\T\\ rising^see \\S\\ note&more~second repetition|"
        "\\X6D67\\/dL|< 5\\R\\6|H\\F\\L|||C",
        "OBX|3|CE|GRP^BLOOD GROUP^L||A^A POS^L\\C2842\\|||\\M244222\\N|||F",
    ),
    "other encoding characters": (
        "MSH#$*@!#APP@F@X#FAC$1$ISO#RCV#RFAC#20240101120000##ORU$R01$ORU_R01#C9#T#2.7",
        "PID#1##ID1$$$H$SS*ID7$$$H$MR##DOE!VAN$JANE@S@Q$Q##19700101#U####12 HIGH ST$$TOWN$ST$99999",
        "OBR#1#P1$E#F1$L#GLU$GLUCOSE",
        "OBX#1#SN#GLU$Glucose@T@level$LN##>$5@S@x!y#mg@R@dL#3-6#H###F",
    ),
    "v2.3, two encoding characters and no subcomponents": (
        "MSH|^~|OLD|SITE|NEW|SITE|19990101||ADT^A04|OLD-1|P|2.3",
        "PID|1||990^^^OLD^MR||PLAIN^NAME||19500505|F|||ROAD 1^^VILLAGE^ST^11111",
    ),
    "v2.7 with a truncation character, no PID": (
        "MSH|^~\\&#|SYS|FAC|SYS2|FAC2|20240101||ORM^O01^ORM_O01|T-1|P|2.7",
        "ORC|NW|123",
        "OBR|1|123^SYS||XR^CHEST X-RAY",
        "OBX|1|TX|IMP^IMPRESSION||no acute findings#||||||P",
    ),
    "OBX before any OBR and components with empties": (
        "MSH|^~\\&|A|B|C|D|20240202||ORU^R01|E-1|P|2.4",
        "PID|||^^^^MR~777^^^^PI||^GIVENONLY",
        "OBX|1|NM|^NAME ONLY||^^||||||",
        "OBX|2|ST|CODE||a^^c|u^unit name|rr|flag||||",
    ),
    "rde, two order groups, escapes and a TQ1": (
        "MSH|^~\\&|PHARM|GHH|EMR|WARD|20240301101500||RDE^O11^RDE_O11|RX-1|P|2.5.1",
        "PID|1||P100^^^GHH^MR||DOE^JANE",
        "ORC|NW|PL\\T\\77^EMR|FI-88^PHARM",
        "RXE|1^BID^^20240301120000|310965^IBUPROFEN \\F\\ 200 MG^RXNORM|200||mg&x^milligram|TAB||||28|TAB",
        "RXR|PO^ORAL^HL70162",
        "ORC|CA|PL-2",
        "RXE|1^QD|2^HEPARIN~3^OTHER^RXNORM|5000||U|INJ",
        "TQ1|1||Q8H^every 8 hours",
        "RXR|SC",
    ),
    "adt discharge, repeated doctor, escaped location": (
        "MSH|^~\\&|ADT|GHH|EMR|WARD|20240120170000||ADT^A03|ADT-2|P|2.5",
        "EVN|A03|20240120165500",
        "PID|1||P300^^^GHH^MR||EVERYMAN^ADAM",
        "PV1|1|I|4N\\S\\W^401^B^GHH&1.2&ISO||||1234^ATTEND^AARON~99^OTHER|||MED||||7|||||V-9^^^GHH"
        "|||||||||||||||||01",
    ),
    "identifier issuers: escaped, with subcomponents, absent from the MR repetition": (
        "MSH|^~\\&|ADT|GHH|EMR|WARD|20240121080000||ADT^A08|ADT-3|P|2.5",
        "PID|1||A\\T\\1^^^GEN\\T\\HOSP&1.2.840.1&ISO^PI~0042^^^ST\\F\\MARY&2.16.1&ISO^MR~0043^^^OTHER^MR||DOE^JANE",
    ),
    "identifier issuers: MR repetition without one, the first with one": (
        "MSH|^~\\&|ADT|GHH|EMR|WARD|20240121080500||ADT^A08|ADT-4|P|2.5",
        "PID|1||S1^^^SSA^SS~0044^^^&2.16.1&ISO^MR||ROE^RICHARD",
    ),
}

MESSAGE_COLUMNS = {
    "message_control_id": ("MSH", 10, 1, 1, 1),
    "message_structure": ("MSH", 9, 1, 3, 1),
    "sending_application": ("MSH", 3, 1, 1, 1),
    "sending_facility": ("MSH", 4, 1, 1, 1),
    "receiving_application": ("MSH", 5, 1, 1, 1),
    "receiving_facility": ("MSH", 6, 1, 1, 1),
    "processing_id": ("MSH", 11, 1, 1, 1),
    "hl7_version": ("MSH", 12, 1, 1, 1),
    "patient_family_name": ("PID", 5, 1, 1, 1),
    "patient_given_name": ("PID", 5, 1, 2, 1),
    "patient_middle_name": ("PID", 5, 1, 3, 1),
    "patient_birth_date": ("PID", 7, 1, 1, 1),
    "patient_gender": ("PID", 8, 1, 1, 1),
    "patient_street": ("PID", 11, 1, 1, 1),
    "patient_city": ("PID", 11, 1, 3, 1),
    "patient_state": ("PID", 11, 1, 4, 1),
    "patient_zip": ("PID", 11, 1, 5, 1),
    "patient_phone": ("PID", 13, 1, 1, 1),
    "patient_account_number": ("PID", 18, 1, 1, 1),
    "patient_ssn": ("PID", 19, 1, 1, 1),
}

PHARMACY_COLUMNS = {  # from the RXE itself: (field, component)
    "give_code": (2, 1),
    "give_name": (2, 2),
    "give_coding_system": (2, 3),
    "give_units": (5, 1),
    "dosage_form": (6, 1),
    "dispense_units": (11, 1),
}

ENCOUNTER_COLUMNS = {
    "patient_class": (2, 1),
    "point_of_care": (3, 1),
    "room": (3, 2),
    "bed": (3, 3),
    "location_facility": (3, 4),
    "attending_doctor_id": (7, 1),
    "attending_doctor_family_name": (7, 2),
    "attending_doctor_given_name": (7, 3),
    "hospital_service": (10, 1),
    "admit_source": (14, 1),
    "visit_number": (19, 1),
    "discharge_disposition": (36, 1),
}

OBX_COLUMNS = {
    "set_id": 1,
    "value_type": 2,
    "units": 6,
    "reference_range": 7,
    "abnormal_flag": 8,
    "result_status": 11,
}


@pytest.fixture(scope="module")
def parsed():
    """The corpus as one file: MLLP frames, line feeds and CRLF mixed, as feeds deliver it."""
    framings = [("", "\r", ""), ("\x0b", "\r", "\x1c\r"), ("", "\n", ""), ("", "\r\n", "")]
    parts = []
    for number, segments in enumerate(CORPUS.values()):
        start, separator, end = framings[number % len(framings)]
        parts.append(start + separator.join(segments) + separator + end)
    return parse_hl7_file("".join(parts).encode(), "corpus.hl7")


@pytest.mark.parametrize("number", range(len(CORPUS)), ids=list(CORPUS))
def test_message_columns_match_python_hl7(parsed, number):
    assert parsed.errors.num_rows == 0
    ours = parsed.messages.to_pylist()[number]
    oracle = _Oracle(list(CORPUS.values())[number])
    for column, path in MESSAGE_COLUMNS.items():
        assert ours[column] == oracle.get(*path), column
    code, trigger = oracle.get("MSH", 9, 1, 1, 1), oracle.get("MSH", 9, 1, 2, 1)
    assert ours["message_type"] == (f"{code}^{trigger}" if trigger else code)
    repetition = oracle.medical_record_repetition()
    assert ours["patient_id"] == oracle.get("PID", 3, repetition, 1, 1)
    assert ours["patient_id_type"] == oracle.get("PID", 3, repetition, 5, 1)
    assert ours["patient_id_issuer"] == oracle.get("PID", 3, repetition, 4, 1)


@pytest.mark.parametrize("number", range(len(CORPUS)), ids=list(CORPUS))
def test_lab_columns_match_python_hl7(parsed, number):
    ours = [row for row in parsed.lab_results.to_pylist() if row["message_index"] == number]
    oracle = _Oracle(list(CORPUS.values())[number])
    assert len(ours) == oracle.count("OBX")
    for occurrence, row in enumerate(ours, start=1):
        for column, field in OBX_COLUMNS.items():
            assert row[column] == oracle.get("OBX", field, 1, 1, 1, occurrence), column
        assert row["observation_code"] == oracle.get("OBX", 3, 1, 1, 1, occurrence)
        assert row["observation_name"] == oracle.get("OBX", 3, 1, 2, 1, occurrence)
        assert row["coding_system"] == oracle.get("OBX", 3, 1, 3, 1, occurrence)
        assert row["value"] == oracle.value(occurrence)


@pytest.mark.parametrize("number", range(len(CORPUS)), ids=list(CORPUS))
def test_pharmacy_columns_match_python_hl7(parsed, number):
    ours = [row for row in parsed.pharmacy_orders.to_pylist() if row["message_index"] == number]
    oracle = _Oracle(list(CORPUS.values())[number])
    assert len(ours) == oracle.count("RXE")
    for occurrence, row in enumerate(ours, start=1):
        for column, (field, component) in PHARMACY_COLUMNS.items():
            assert row[column] == oracle.get("RXE", field, 1, component, 1, occurrence), column
        # Each order group here has its own ORC and RXR, and the TQ1 (when any) is the only one.
        assert row["order_control"] == oracle.get("ORC", 1, 1, 1, 1, occurrence)
        assert row["placer_order_number"] == oracle.get("ORC", 2, 1, 1, 1, occurrence)
        assert row["filler_order_number"] == oracle.get("ORC", 3, 1, 1, 1, occurrence)
        assert row["route"] == oracle.get("RXR", 1, 1, 1, 1, occurrence)
        timing = ("TQ1", 3, 1, 1, 1) if occurrence == 2 and oracle.count("TQ1") else ("RXE", 1, 1, 2, 1, occurrence)
        assert row["frequency"] == oracle.get(*timing)


@pytest.mark.parametrize("number", range(len(CORPUS)), ids=list(CORPUS))
def test_encounter_columns_match_python_hl7(parsed, number):
    ours = [row for row in parsed.encounters.to_pylist() if row["message_index"] == number]
    oracle = _Oracle(list(CORPUS.values())[number])
    assert len(ours) == min(1, oracle.count("PV1"))
    for row in ours:
        for column, (field, component) in ENCOUNTER_COLUMNS.items():
            assert row[column] == oracle.get("PV1", field, 1, component, 1), column
        assert row["event_type"] == (oracle.get("EVN", 1, 1, 1, 1) or oracle.get("MSH", 9, 1, 2, 1))


def test_the_corpus_exercises_what_it_claims(parsed):
    """Guards the oracle comparison against vacuous passes: the tricky values really are there."""
    messages = parsed.messages.to_pylist()
    labs = parsed.lab_results.to_pylist()
    assert messages[0]["patient_id"] == "PATID5678"
    assert messages[0]["patient_id_issuer"] == "ADT1"  # the MR repetition's, not the first's
    assert [(row["patient_id"], row["patient_id_issuer"]) for row in messages[-2:]] == [("0042", "ST|MARY"), ("0044", None)]
    assert messages[1]["patient_family_name"] == "O^BRIEN"
    assert messages[1]["sending_facility"] == "NORTH | SOUTH"
    assert messages[2]["sending_application"] == "APP#X"
    assert labs[1]["value"] == "high & rising^see ^ note&more"
    assert labs[1]["units"] == "mg/dL"
    assert labs[3]["value"] == ">^5$x!y"
    orders = parsed.pharmacy_orders.to_pylist()
    assert [order["placer_order_number"] for order in orders] == ["PL&77", "PL-2"]
    assert orders[0]["give_name"] == "IBUPROFEN | 200 MG" and orders[1]["frequency"] == "Q8H"
    encounters = parsed.encounters.to_pylist()
    assert [encounter["event_type"] for encounter in encounters] == ["A01", "A03"]
    assert encounters[1]["point_of_care"] == "4N^W" and encounters[1]["location_facility"] == "GHH"


class _Oracle:
    """python-hl7's reading of one message, None where it finds nothing, as in the tables."""

    def __init__(self, segments: tuple[str, ...]) -> None:
        self.message = hl7.parse("\r".join(segments))

    def get(self, segment, field, repetition, component, subcomponent, occurrence=1):
        try:
            value = self.message.extract_field(segment, occurrence, field, repetition, component, subcomponent)
        except (IndexError, KeyError):  # python-hl7's way of saying absent
            return None
        return value or None

    def count(self, segment) -> int:
        try:
            return len(self.message.segments(segment))
        except KeyError:
            return 0

    def medical_record_repetition(self) -> int:
        try:
            repetitions = len(self.message.segment("PID")(3))
        except (IndexError, KeyError):
            return 1
        for repetition in range(1, repetitions + 1):
            if self.get("PID", 3, repetition, 5, 1) == "MR":
                return repetition
        return 1

    def value(self, occurrence):
        """OBX-5, first repetition, its components unescaped one by one and joined by ^."""
        field = self.message.segments("OBX")(occurrence)(5)
        first = field(1)
        components = [first] if isinstance(first, str) else [str(component) for component in first]
        return "^".join(self.message.unescape(component) for component in components) or None

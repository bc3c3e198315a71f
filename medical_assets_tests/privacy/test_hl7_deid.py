"""HL7 tables through the de-identification profiles, from ER7 read by the real parser.

The planted feed hides an identifier in every place one is known to travel (PID-3 repetitions,
PID-13 repetitions, PID-19, NK1, OBX free text, escaped values, doctors, rooms, order numbers, the
file name): none may come out, in any cell of any table.
"""

import time
from datetime import date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medical_assets.hl7 import parse_hl7_file
from medical_assets.privacy import safe_harbor
from medical_assets.privacy.hl7_deid import DEID_METADATA, PROFILES, compliance_metadata, deidentify_hl7_tables
from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES
from medical_assets.privacy.hl7_patients import census_of_ages
from medical_assets.privacy.keys import parse_key_ring
from medical_assets.privacy.pseudonyms import Pseudonymizer, patient_identity
from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_file

TEST_KEY = "e6c_RnVCBXidrmsWnAdfchXlFioZwR9OtTu1CNlJ-is"
OTHER_KEY = "1syHPW6gjAgs6LorssV821ScdK9GugIZ17IS9TrVWmI"
CHILD_TABLES = ("hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters")
PLANTED_FILE = "ward7_zebediah_feed.hl7"
MRN = "MRNQX4417"
OTHER_MRN = "MRNQX5000"


def deidentify(*args, **kwargs):
    """The tables of a few hand-written messages: every text value is vocabulary from one patient on,
    so these tests see the other rules at work (the vocabulary rule has its own tests)."""
    kwargs.setdefault("min_patients", 1)
    return deidentify_hl7_tables(*args, **kwargs)


def segment(name: str, fields: dict[int, str]) -> str:
    values = [""] * (max(fields) + 1)
    values[0] = name
    for sequence, value in fields.items():
        values[sequence] = value
    return "|".join(values)


def message(control_id: str, message_type: str, sent: str, *segments: str) -> str:
    header = f"MSH|^~\\&|APP|GENERAL_HOSPITAL|EMR|CARDIOLOGY|{sent}||{message_type}|{control_id}|P|2.5"
    return "\r".join([header, *segments]) + "\r"


def pid(identifiers: str, birth_date: str, address: str = "1 MAIN ST^^SPRINGFIELD^MA^01101", **more: str) -> str:
    return segment(
        "PID",
        {
            1: "1",
            3: identifiers,
            5: more.get("name", "DOE^JANE"),
            7: birth_date,
            8: "F",
            11: address,
            13: more.get("phone", ""),
            18: more.get("account", ""),
            19: more.get("ssn", ""),
        },
    )


# The planted patient: the MR identifier is PID-3's second repetition, between a visit number and an SSN.
PLANTED_PID = pid(
    f"VISITQX771^^^GH^VN~{MRN}^^^GH^MR~SSNREPQX99^^^SSA^SS",
    "19300115",
    "77 PLANTAGENET WAY^APT 9^XANADUVILLE^MA^02115-4321",
    name="O\\T\\BRIEN^ZEBEDIAH^QUILL",
    phone="(617)555-0142^PRN^PH~^NET^Internet^zebediah@example.org",
    account="ACCTQX555",
    ssn="987-65-4329",
)
NEXT_OF_KIN = "NK1|1|KINFAMILY^KINGIVEN|SPO^SPOUSE^HL70063|12 KINSTREET RD^^KINTOWN^MA^02116|(617)555-0199"
VISIT = {
    1: "1",
    2: "I",
    3: "CARD^ROOMQX12^BEDQX7^GH",
    7: "DOCQX99^DOCFAMILY^DOCGIVEN^^^DR",
    10: "CAR",
    14: "1",
    19: "VISITNUMQX1",
    44: "20250310080000",
}
OBSERVATIONS = [
    "OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|70-99|H|||F|||20250311091500",
    "OBX|2|TX|11492-6^History^LN||Seen with wife Hezekiah Plantagenet\\F\\call 555-0177||||||F",
    "OBX|3|FT|11506-3^Note^LN||FTSECRETQX\\.br\\Mr O\\T\\Brien||||||F",
    "OBX|4|ST|8251-1^Comment^LN||STSECRETQX||||||F",
    "OBX|5|CWE|LA6576-8^Result^LN||POS^Positive^L^^^^^^Positive per DOCQX99 ZEBEDIAH||||||F",
    "OBX|6|SN|1234-5^Ratio^LN||<^5||||||F",
    "OBX|7|XYZ|9999-9^Mystery^LN||MYSTERYQX||||||F",
    "OBX|8|NM|2951-2^Sodium^LN||NMJUNKQX||||||F",
    "OBX|9||1111-1^Untyped^LN||NOTYPEQX||||||F",
    "OBX|10|CE|5555-5^Organism^LN||ECOLI^Escherichia coli^SCT||||||F",
    "OBX|11|ID|6666-6^Flag^LN||Y||||||F",
]
PLANTED_FEED = "".join(
    [
        message(
            "CTRLPLANT01",
            "ADT^A01^ADT_A01",
            "20250310083000",
            "EVN|A01|20250310083000",
            PLANTED_PID,
            NEXT_OF_KIN,
            segment("PV1", VISIT),
        ),
        message(
            "CTRLPLANT02",
            "ORU^R01^ORU_R01",
            "20250311093000",
            PLANTED_PID,
            "OBR|1|PLACERQX1|FILLERQX1|24323-8^Panel^LN|||20250311090000",
            *OBSERVATIONS,
        ),
        message(
            "CTRLPLANT03",
            "RDE^O11^RDE_O11",
            "20250311100500",
            PLANTED_PID,
            "ORC|NW|RXPLACERQX|RXFILLERQX",
            "RXE|1^BID^^20250311110000^20250318110000|197361^Amlodipine^RXNORM|5||mg|TAB||||14|TAB",
            "RXR|PO^Oral^HL70162",
        ),
        message(
            "CTRLPLANT04",
            "ADT^A03^ADT_A03",
            "20250315110000",
            "EVN|A03|20250315104500",
            PLANTED_PID,
            segment("PV1", {**VISIT, 36: "01", 45: "20250315103000"}),
        ),
        message("CTRLPLANT05", "ADT^A08^ADT_A08", "20250316120000", pid(f"{OTHER_MRN}^^^GH^MR", "19800615")),
    ]
)
PLANTED = [
    MRN,
    "VISITQX771",
    "SSNREPQX99",
    "O&BRIEN",
    "BRIEN",
    "ZEBEDIAH",
    "QUILL",
    "PLANTAGENET",
    "XANADUVILLE",
    "02115",
    "555-0142",
    "zebediah@example.org",
    "ACCTQX555",
    "987-65-4329",
    "KINFAMILY",
    "KINGIVEN",
    "KINSTREET",
    "KINTOWN",
    "555-0199",
    "ROOMQX12",
    "BEDQX7",
    "DOCQX99",
    "DOCFAMILY",
    "DOCGIVEN",
    "VISITNUMQX1",
    "CTRLPLANT",
    "PLACERQX1",
    "FILLERQX1",
    "RXPLACERQX",
    "RXFILLERQX",
    "Hezekiah",
    "555-0177",
    "FTSECRETQX",
    "STSECRETQX",
    "MYSTERYQX",
    "NMJUNKQX",
    "NOTYPEQX",
    "ward7",
    "Plantagenet|call",
    "O\\T\\BRIEN",
    "19300115",
    "1930-01-15",
]


@pytest.fixture(scope="module")
def pseudonymizer() -> Pseudonymizer:
    return Pseudonymizer(parse_key_ring(TEST_KEY).current)


def phi_tables(er7: str | bytes, source_file: str = PLANTED_FILE) -> dict[str, pa.Table]:
    data = er7.encode() if isinstance(er7, str) else er7
    tables = parse_hl7_file(data, source_file).tables()
    assert tables["hl7_errors"].num_rows == 0, tables["hl7_errors"].to_pylist()
    return tables


def concatenated(*parts: dict[str, pa.Table]) -> dict[str, pa.Table]:
    return {name: pa.concat_tables([part[name] for part in parts]) for name in parts[0]}


def cell_texts(tables: dict[str, pa.Table]) -> str:
    """Every value of every column of every table as text, one per line, lower-cased."""
    texts = [str(value) for table in tables.values() for column in table.columns for value in column.to_pylist()]
    return "\n".join(texts).lower()


def found(values, tables: dict[str, pa.Table]) -> list[str]:
    text = cell_texts(tables)
    return [value for value in values if value.lower() in text]


def rows_by(table: pa.Table, column: str) -> dict:
    return {row[column]: row for row in table.to_pylist()}


@pytest.mark.parametrize("profile", PROFILES)
def test_no_planted_identifier_appears_in_any_cell_of_any_table(pseudonymizer, profile):
    phi = phi_tables(PLANTED_FEED)
    # The scan is real: it finds in the PHI tables what the parser read into them.
    assert set(found(PLANTED, phi)) >= {
        MRN,
        "O&BRIEN",
        "ZEBEDIAH",
        "987-65-4329",
        "Plantagenet|call",
        "PLACERQX1",
        "ward7",
    }
    output = deidentify(phi, pseudonymizer, profile)
    assert found(PLANTED, output) == []
    assert all(table.num_rows for table in output.values())


def test_no_date_leaves_safe_harbor_beyond_its_year(pseudonymizer):
    output = deidentify(phi_tables(PLANTED_FEED), pseudonymizer)
    for name, table in output.items():
        for field in table.schema:
            if pa.types.is_timestamp(field.type) or field.name == "birth_date_shifted":
                assert table.column(field.name).null_count == table.num_rows, (name, field.name)
    assert found(["2025-03-1", "202503"], output) == []


def test_date_shift_moves_every_full_date_away_from_the_real_one(pseudonymizer):
    output = deidentify(phi_tables(PLANTED_FEED), pseudonymizer, "date_shift")
    real_moments = [
        "2025-03-10 08:30:00",
        "2025-03-10 08:00:00",
        "2025-03-11 09:15:00",
        "2025-03-11 11:00:00",
        "2025-03-18 11:00:00",
        "2025-03-15 10:30:00",
        "2025-03-15 10:45:00",
        "1980-06-15",
        "19800615",
    ]
    assert found(real_moments, output) == []


def test_every_message_gives_exactly_one_deid_message(pseudonymizer):
    settings = HL7CorpusSettings(total_messages=120, messages_per_file=50)
    phi = concatenated(*(phi_tables(render_file(settings, i), f"feed_{i}.hl7") for i in range(settings.file_count())))
    messages = deidentify(phi, pseudonymizer)["hl7_messages"]
    assert messages.num_rows == phi["hl7_messages"].num_rows == 120
    keys = set(zip(messages.column("source_file_token").to_pylist(), messages.column("message_index").to_pylist()))
    assert len(keys) == 120
    expected = {pseudonymizer.token("message", c) for c in phi["hl7_messages"].column("message_control_id").to_pylist()}
    assert set(messages.column("message_token").to_pylist()) == expected


@pytest.mark.parametrize("profile", PROFILES)
def test_every_table_has_its_schema_and_errors_stay_behind(pseudonymizer, profile):
    output = deidentify(phi_tables(PLANTED_FEED), pseudonymizer, profile)
    assert (
        list(output)
        == list(DEID_HL7_TABLES)
        == ["hl7_messages", "hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters"]
    )
    for name, table in output.items():
        assert table.schema.equals(DEID_HL7_TABLES[name]), name


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("tables", [{}, "empty file", "messages only"])
def test_empty_input_gives_empty_tables_with_their_schemas(pseudonymizer, profile, tables):
    if tables == "empty file":
        tables = parse_hl7_file(b"", "empty.hl7").tables()
    elif tables == "messages only":
        tables = {"hl7_messages": parse_hl7_file(b"", "empty.hl7").tables()["hl7_messages"]}
    output = deidentify(tables, pseudonymizer, profile)
    assert set(output) == set(DEID_HL7_TABLES)
    for name, table in output.items():
        assert table.num_rows == 0
        assert table.schema.equals(DEID_HL7_TABLES[name])


def test_missing_child_tables_count_as_empty(pseudonymizer):
    phi = phi_tables(PLANTED_FEED)
    output = deidentify({"hl7_messages": phi["hl7_messages"]}, pseudonymizer)
    assert output["hl7_messages"].num_rows == 5
    assert [output[name].num_rows for name in CHILD_TABLES] == [0, 0, 0]


def test_the_patient_token_comes_from_the_mr_identifier_and_joins_dicom(pseudonymizer):
    messages = deidentify(phi_tables(PLANTED_FEED), pseudonymizer)["hl7_messages"]
    tokens = messages.column("patient_token").to_pylist()
    # PID-3's MR repetition, not its first (a visit number), with its assigning authority (PID-3.4):
    # the token DICOM makes of PatientID with IssuerOfPatientID.
    assert tokens[:4] == [pseudonymizer.token("patient", patient_identity(MRN, "GH"))] * 4
    assert tokens[:4] != [pseudonymizer.token("patient", patient_identity("VISITQX771", "GH"))] * 4
    assert tokens[4] == pseudonymizer.token("patient", patient_identity(OTHER_MRN, "GH")) != tokens[0]
    assert messages.column("patient_id_type").to_pylist() == ["MR"] * 5


def test_one_patient_has_one_token_across_message_types_and_tables(pseudonymizer):
    output = deidentify(phi_tables(PLANTED_FEED), pseudonymizer)
    messages = output["hl7_messages"]
    planted_types = messages.column("message_type").to_pylist()[:4]
    assert planted_types == ["ADT^A01", "ORU^R01", "RDE^O11", "ADT^A03"]
    token = pseudonymizer.token("patient", patient_identity(MRN, "GH"))
    for name in CHILD_TABLES:
        assert set(output[name].column("patient_token").to_pylist()) == {token}, name


def test_child_rows_join_their_deid_message_on_the_message_token(pseudonymizer):
    settings = HL7CorpusSettings(total_messages=200, messages_per_file=100)
    phi = concatenated(*(phi_tables(render_file(settings, i), f"feed_{i}.hl7") for i in range(2)))
    output = deidentify(phi, pseudonymizer)
    patients_by_message = dict(
        zip(
            output["hl7_messages"].column("message_token").to_pylist(),
            output["hl7_messages"].column("patient_token").to_pylist(),
        )
    )
    for name in CHILD_TABLES:
        table = output[name]
        assert table.num_rows > 0
        for message_token, patient_token in zip(
            table.column("message_token").to_pylist(), table.column("patient_token").to_pylist()
        ):
            assert patients_by_message[message_token] == patient_token


def test_child_rows_find_their_message_by_file_and_position_not_by_control_id(pseudonymizer):
    # Two feeds reuse control ID 1 at position 0 for different patients (counters restart per sender).
    first = message("1", "ORU^R01^ORU_R01", "20250101120000", pid("MRNQXAAA^^^GH^MR", "19800615"), OBSERVATIONS[0])
    second = message("1", "ORU^R01^ORU_R01", "20250101130000", pid("MRNQXBBB^^^GH^MR", "19700615"), OBSERVATIONS[0])
    phi = concatenated(phi_tables(first, "a.hl7"), phi_tables(second, "b.hl7"))
    labs = deidentify(phi, pseudonymizer)["hl7_lab_results"]
    assert labs.column("patient_token").to_pylist() == [
        pseudonymizer.token("patient", patient_identity("MRNQXAAA", "GH")),
        pseudonymizer.token("patient", patient_identity("MRNQXBBB", "GH")),
    ]


def test_tokens_are_deterministic_per_key_and_differ_between_keys(pseudonymizer):
    phi = phi_tables(PLANTED_FEED)
    first = deidentify(phi, pseudonymizer)
    same_key = deidentify(phi, Pseudonymizer(parse_key_ring(TEST_KEY).current))
    other_key = deidentify(phi, Pseudonymizer(parse_key_ring(OTHER_KEY).current))
    token_columns = ("message_token", "source_file_token", "patient_token")
    for name in DEID_HL7_TABLES:
        assert first[name].equals(same_key[name]), name
        for column in token_columns:
            ours, theirs = first[name].column(column).to_pylist(), other_key[name].column(column).to_pylist()
            assert not set(ours) & set(theirs), (name, column)


def test_a_file_gives_the_same_rows_alone_or_in_a_batch(pseudonymizer):
    settings = HL7CorpusSettings(total_messages=40, messages_per_file=20)
    first, second = (phi_tables(render_file(settings, i), f"feed_{i}.hl7") for i in range(2))
    for profile in PROFILES:
        alone = deidentify(first, pseudonymizer, profile)
        batch = deidentify(concatenated(first, second), pseudonymizer, profile)
        for name in ("hl7_lab_results", "hl7_pharmacy_orders", "hl7_encounters"):
            assert batch[name].slice(0, alone[name].num_rows).equals(alone[name]), (profile, name)


def test_zip3_comes_from_pid_11_component_5_not_the_street_line(pseudonymizer):
    feed = message(
        "Z1",
        "ADT^A08^ADT_A08",
        "20250101120000",
        pid("MRNQXZIP^^^GH^MR", "19800615", "90210 SUNSET BLVD^SUITE 30210^BEVERLY HILLS^CA^10001-2345"),
    )
    messages = deidentify(phi_tables(feed), pseudonymizer)["hl7_messages"]
    assert messages.column("patient_zip3").to_pylist() == ["100"]
    assert messages.column("patient_state").to_pylist() == ["CA"]
    assert found(["SUNSET", "BEVERLY", "90210", "10001"], {"m": messages}) == []


def test_every_restricted_zip3_is_written_000(pseudonymizer):
    prefixes = sorted(safe_harbor.RESTRICTED_ZIP3) + ["021"]
    feed = "".join(
        message(
            f"Z{n}",
            "ADT^A08^ADT_A08",
            "20250101120000",
            pid(f"MRNQX{n}^^^GH^MR", "19800615", f"1 MAIN ST^^TOWN^ST^{p}42"),
        )
        for n, p in enumerate(prefixes)
    )
    zips = deidentify(phi_tables(feed), pseudonymizer)["hl7_messages"].column("patient_zip3").to_pylist()
    assert zips == ["000"] * 17 + ["021"]


def test_a_patient_born_1930_seen_in_2025_is_90_plus_without_a_birth_year(pseudonymizer):
    messages = deidentify(phi_tables(PLANTED_FEED), pseudonymizer)["hl7_messages"]
    planted = messages.slice(0, 4)
    assert planted.column("age_at_message").to_pylist() == ["90+"] * 4
    assert planted.column("age_band").to_pylist() == ["90+"] * 4
    assert planted.column("birth_year").null_count == 4
    assert messages.column("message_year").to_pylist() == [2025] * 5


def test_ages_are_computed_at_each_message_date_not_today(pseudonymizer):
    patient = pid("MRNQXAGE^^^GH^MR", "19800615")
    twin = pid("MRNQXTWIN^^^GH^MR", "19800615")  # 90+ at the last message: a patient of their own
    feed = "".join(
        message(f"A{n}", "ADT^A08^ADT_A08", sent, patient if n < 3 else twin)
        for n, sent in enumerate(["20100614235959", "20100615000000", "20250101", "21700615"])
    )
    messages = deidentify(phi_tables(feed), pseudonymizer)["hl7_messages"]
    assert messages.column("age_at_message").to_pylist() == ["29", "30", "44", "90+"]
    assert messages.column("age_band").to_pylist() == ["18-29", "30-44", "30-44", "90+"]
    assert messages.column("message_year").to_pylist() == [2010, 2010, 2025, 2170]


def test_a_patient_turning_90_shows_no_numeric_age_and_no_birth_year(pseudonymizer):
    """Attack: under one token, age 89 in one message and 90+ in another of the same year give the
    birth year (year - 90), and a birth year shown at 89 dates the 90+ message too."""
    patient = pid("MRNQXOLD^^^GH^MR", "19351201")
    feed = message("O0", "ADT^A08^ADT_A08", "20201130", patient)  # 84: a year before the first 90+ one
    feed += message("O1", "ADT^A08^ADT_A08", "20251130", patient) + message("O2", "ADT^A08^ADT_A08", "20251202", patient)
    feed += message("Y1", "ADT^A08^ADT_A08", "20251130", pid("MRNQXYOUNG^^^GH^MR", "19351202"))
    messages = deidentify(phi_tables(feed), pseudonymizer)["hl7_messages"]
    assert messages.column("age_at_message").to_pylist() == [None, "90+", "90+", "89"]
    assert messages.column("age_band").to_pylist() == [None, "90+", "90+", "65-89"]
    assert messages.column("birth_year").to_pylist() == [None, None, None, 1935]
    old = [row for row in messages.to_pylist() if row["birth_year"] is None]
    # What the attacker sees of the old patient: no number to subtract from a year.
    assert not any(str(row["age_at_message"]).isdigit() for row in old)


def test_a_patient_90_plus_in_another_batch_shows_no_age_in_this_one(pseudonymizer):
    # Two batches of one output (two part files, say): at 89 here, 90+ only in the other.
    patient = pid("MRNQXOLD^^^GH^MR", "19351201")
    here = phi_tables(message("O1", "ADT^A08^ADT_A08", "20251130", patient))
    there = phi_tables(message("O2", "ADT^A08^ADT_A08", "20251202", patient))
    assert census_of_ages(here["hl7_messages"]) == {}
    assert census_of_ages(there["hl7_messages"]) == {"GH\x1eMRNQXOLD": 2025}

    alone = deidentify(here, pseudonymizer)["hl7_messages"]
    told = deidentify(here, pseudonymizer, patients_over_89={"GH\x1eMRNQXOLD": 2025})["hl7_messages"]
    assert alone.column("birth_year").to_pylist() == [1935]  # what a batch cannot know alone
    assert told.column("age_at_message").to_pylist() == ["90+"]  # same year as the first 90+ event
    assert told.column("birth_year").to_pylist() == [None]


def test_census_of_ages_checks_exact_ages_not_only_years(pseudonymizer):
    feed = (
        message("A", "ADT^A08^ADT_A08", "20251130", pid("MRNQX89^^^GH^MR", "19351201"))  # 89 and a day short of 90
        + message("B", "ADT^A08^ADT_A08", "20251201", pid(" MRNQX90 ^^^GH^MR", "19351201"))  # 90 that day
        + message("C", "ADT^A08^ADT_A08", "20251201", pid("MRNQXYEAR^^^GH^MR", "1935"))  # may be 90
        + message("D", "ADT^A08^ADT_A08", "20251201", pid("MRNQXBAD^^^GH^MR", "19XX"))  # no age at all
        + message("E", "ADT^A08^ADT_A08", "20251201", pid("MRNQXYOUNG^^^GH^MR", "19800101"))
    )
    assert census_of_ages(phi_tables(feed)["hl7_messages"]) == {"GH\x1eMRNQX90": 2025, "GH\x1eMRNQXYEAR": 2025}


def test_lab_values_are_kept_only_for_numbers_and_codes(pseudonymizer):
    labs = deidentify(phi_tables(PLANTED_FEED), pseudonymizer)["hl7_lab_results"]
    values = dict(zip(labs.column("set_id").to_pylist(), labs.column("value").to_pylist()))
    assert values == {
        "1": "105",
        "2": None,  # TX
        "3": None,  # FT
        "4": None,  # ST
        "5": "POS^Positive^L",  # CWE without its original text (CWE-9), what a person typed
        "6": "<^5",  # SN
        "7": None,  # a type not known to be safe
        "8": None,  # NM that is not a number
        "9": None,  # no type
        "10": "ECOLI^Escherichia coli^SCT",
        "11": "Y",
    }
    glucose = labs.to_pylist()[0]
    assert (glucose["numeric_value"], glucose["units"], glucose["reference_range"], glucose["abnormal_flag"]) == (
        105.0,
        "mg/dL",
        "70-99",
        "H",
    )
    assert (glucose["observation_code"], glucose["observation_name"], glucose["result_status"]) == (
        "2345-7",
        "Glucose",
        "F",
    )
    assert glucose["observation_year"] == 2025
    assert glucose["universal_service_id"] == "24323-8"


def test_clinical_and_administrative_codes_are_kept(pseudonymizer):
    output = deidentify(phi_tables(PLANTED_FEED), pseudonymizer)
    admission = output["hl7_messages"].to_pylist()[0]
    assert {
        k: admission[k]
        for k in (
            "message_type",
            "message_structure",
            "sending_facility",
            "hl7_version",
            "patient_gender",
            "patient_state",
            "patient_zip3",
        )
    } == {
        "message_type": "ADT^A01",
        "message_structure": "ADT_A01",
        "sending_facility": "GENERAL_HOSPITAL",
        "hl7_version": "2.5",
        "patient_gender": "F",
        "patient_state": "MA",
        "patient_zip3": "021",
    }
    order = output["hl7_pharmacy_orders"].to_pylist()[0]
    assert (order["give_code"], order["give_name"], order["route"], order["frequency"], order["dosage_form"]) == (
        "197361",
        "Amlodipine",
        "PO",
        "BID",
        "TAB",
    )
    assert (order["start_year"], order["end_year"], order["give_amount_minimum"], order["dispense_amount"]) == (
        2025,
        2025,
        5.0,
        14.0,
    )
    discharge = output["hl7_encounters"].to_pylist()[1]
    assert (
        discharge["patient_class"],
        discharge["point_of_care"],
        discharge["hospital_service"],
        discharge["admit_source"],
        discharge["discharge_disposition"],
    ) == ("I", "CARD", "CAR", "1", "01")
    assert (discharge["admit_year"], discharge["discharge_year"], discharge["event_year"]) == (2025, 2025, 2025)
    # 2025-03-10 08:00 to 2025-03-15 10:30: a duration in whole days, within one year.
    assert discharge["length_of_stay_days"] == 5.0


def test_date_shift_moves_all_of_a_patients_dates_by_one_keyed_offset(pseudonymizer):
    phi = phi_tables(PLANTED_FEED)
    output = deidentify(phi, pseudonymizer, "date_shift")
    offset = timedelta(days=pseudonymizer.date_offset_days(patient_identity(MRN, "GH")))
    assert offset != timedelta(0)
    pairs = [
        ("hl7_messages", "message_datetime"),
        ("hl7_lab_results", "observation_datetime"),
        ("hl7_pharmacy_orders", "start_datetime"),
        ("hl7_pharmacy_orders", "end_datetime"),
        ("hl7_encounters", "event_datetime"),
        ("hl7_encounters", "admit_datetime"),
        ("hl7_encounters", "discharge_datetime"),
    ]
    for table, column in pairs:
        real = phi[table].column(column).to_pylist()
        shifted = output[table].column(f"{column}_shifted").to_pylist()
        years = output[table].column(f"{column.removesuffix('_datetime')}_year").to_pylist()
        rows = range(4 if table == "hl7_messages" else len(real))  # the planted patient's rows
        for row in rows:
            assert (shifted[row] is None) == (real[row] is None), (table, column, row)
            if real[row] is not None:
                assert shifted[row] - real[row] == offset, (table, column, row)
                assert years[row] == shifted[row].year


def test_date_shift_keeps_intervals_and_exact_ages_and_still_pools_90_plus(pseudonymizer):
    patient = pid("MRNQXSHIFT^^^GH^MR", "19800615")
    feed = message("S1", "ADT^A08^ADT_A08", "20100614235959", patient) + message(
        "S2", "ADT^A08^ADT_A08", "20240301", patient
    )
    feed += PLANTED_FEED
    phi = phi_tables(feed)
    shifted = deidentify(phi, pseudonymizer, "date_shift")
    harbor = deidentify(phi, pseudonymizer, "safe_harbor")
    messages = shifted["hl7_messages"]
    moments = messages.column("message_datetime_shifted").to_pylist()
    assert moments[1] - moments[0] == datetime(2024, 3, 1) - datetime(2010, 6, 14, 23, 59, 59)
    assert messages.column("age_at_message").equals(harbor["hl7_messages"].column("age_at_message"))
    assert messages.column("age_at_message").to_pylist()[:6] == ["29", "43", "90+", "90+", "90+", "90+"]
    offset = pseudonymizer.date_offset_days(patient_identity("MRNQXSHIFT", "GH"))
    expected_birth = (date(1980, 6, 15) + timedelta(days=offset)).strftime("%Y%m%d")
    assert messages.column("birth_date_shifted").to_pylist()[:2] == [expected_birth] * 2
    assert messages.column("birth_year").to_pylist()[:2] == [int(expected_birth[:4])] * 2
    assert messages.slice(2, 4).column("birth_date_shifted").null_count == 4
    assert messages.slice(2, 4).column("birth_year").null_count == 4
    stays = [
        shifted["hl7_encounters"].column("length_of_stay_days"),
        harbor["hl7_encounters"].column("length_of_stay_days"),
    ]
    assert stays[0].equals(stays[1])


def test_date_shift_uses_the_same_offset_as_every_other_record_of_the_patient(pseudonymizer):
    # The DICOM side shifts with date_offset_days(PatientID): the HL7 side must use the same patient key.
    feed = message("D1", "ADT^A08^ADT_A08", "20250101120000", pid(f"VISITQX9^^^GH^VN~{OTHER_MRN}^^^GH^MR", "19800615"))
    messages = deidentify(phi_tables(feed), pseudonymizer, "date_shift")["hl7_messages"]
    shift = messages.column("message_datetime_shifted")[0].as_py() - datetime(2025, 1, 1, 12)
    assert shift == timedelta(days=pseudonymizer.date_offset_days(patient_identity(OTHER_MRN, "GH")))


def test_safe_harbor_is_the_default_profile_and_an_unknown_one_is_refused(pseudonymizer):
    phi = phi_tables(PLANTED_FEED)
    default = deidentify(phi, pseudonymizer)
    for name in DEID_HL7_TABLES:
        assert default[name].equals(deidentify(phi, pseudonymizer, "safe_harbor")[name])
    with pytest.raises(ValueError, match="safe_harbor, date_shift"):
        deidentify(phi, pseudonymizer, "limited_data_set")


def test_compliance_metadata_names_the_profile_the_key_and_the_rule():
    safe = compliance_metadata("safe_harbor", "k123")
    assert safe[b"deid.profile"] == b"safe_harbor"
    assert safe[b"deid.key_id"] == b"k123"
    assert "HIPAA Safe Harbor §164.514(b)(2)" in safe[b"deid.standard"].decode()
    shifted = compliance_metadata("date_shift", "k123")[b"deid.standard"].decode()
    assert "not HIPAA Safe Harbor" in shifted and "data use agreement" in shifted
    assert set(DEID_METADATA) == set(PROFILES)
    schema = DEID_HL7_TABLES["hl7_messages"].with_metadata(safe)
    assert schema.metadata[b"deid.profile"] == b"safe_harbor"
    with pytest.raises(ValueError):
        compliance_metadata("none", "k123")


def test_the_synthetic_corpus_leaves_none_of_its_identifiers(pseudonymizer):
    settings = HL7CorpusSettings(total_messages=400, messages_per_file=200)
    phi = concatenated(*(phi_tables(render_file(settings, i), f"site_feed_{i}.hl7") for i in range(2)))
    identifier_columns = {
        "hl7_messages": [
            "message_control_id",
            "patient_id",
            "patient_family_name",
            "patient_given_name",
            "patient_birth_date",
            "patient_street",
            "patient_city",
            "patient_zip",
            "patient_phone",
            "patient_account_number",
            "patient_ssn",
            "source_file",
        ],
        "hl7_lab_results": ["placer_order_number", "filler_order_number"],
        "hl7_pharmacy_orders": ["placer_order_number", "filler_order_number"],
        "hl7_encounters": [
            "attending_doctor_id",
            "attending_doctor_family_name",
            "attending_doctor_given_name",
            "visit_number",
        ],
    }
    # Rooms and beds ("12", "A") are left out: as numbers and letters they are in any table.
    identifiers = {
        value
        for table, columns in identifier_columns.items()
        for column in columns
        for value in pc.unique(phi[table].column(column)).to_pylist()
        if value
    }
    assert len(identifiers) > 500
    for profile in PROFILES:
        output = deidentify(phi, pseudonymizer, profile)
        cells = {str(value) for table in output.values() for column in table.columns for value in column.to_pylist()}
        assert identifiers & cells == set(), profile  # no cell is an identifier
        long_ones = [value for value in identifiers if len(value) >= 6]  # nor contains one long enough to be one
        assert found(long_ones, output) == [], profile
    ages = output["hl7_messages"].column("age_band").value_counts().to_pylist()
    assert {entry["values"] for entry in ages} >= {"0-17", "65-89", "90+"}


def test_fifty_thousand_messages_take_a_couple_of_seconds(pseudonymizer):
    settings = HL7CorpusSettings(total_messages=1_000, messages_per_file=1_000)
    one_file = phi_tables(render_file(settings, 0), "feed.hl7")
    copies = []
    for copy in range(50):  # 50 files of distinct messages, as a day's feed would bring
        copies.append(
            {
                name: table.set_column(
                    table.schema.get_field_index("source_file"),
                    "source_file",
                    pa.array([f"feed_{copy}.hl7"] * table.num_rows, pa.string()),
                ).set_column(
                    table.schema.get_field_index("message_control_id"),
                    "message_control_id",
                    pc.binary_join_element_wise(table.column("message_control_id"), pa.scalar(f"-{copy}"), ""),
                )
                for name, table in one_file.items()
                if name != "hl7_errors"
            }
        )
    phi = concatenated(*copies)
    assert phi["hl7_messages"].num_rows == 50_000
    for profile in PROFILES:
        started = time.perf_counter()
        output = deidentify(phi, pseudonymizer, profile)
        elapsed = time.perf_counter() - started
        assert output["hl7_messages"].num_rows == 50_000
        assert output["hl7_lab_results"].num_rows == phi["hl7_lab_results"].num_rows
        assert elapsed < 10, f"{profile}: {elapsed:.1f} s for 50,000 messages"


def test_reversible_patient_tokens_only_when_asked_and_they_open_with_the_key(tmp_path):
    import secrets as _secrets

    from medical_assets.hl7 import parse_hl7_file
    from medical_assets.privacy.keys import parse_key_ring
    from medical_assets.privacy.pseudonyms import PATIENT_DOMAIN, Pseudonymizer, ReversibleTokens
    from medical_assets.synthetic.hl7 import HL7CorpusSettings, file_name, render_file

    settings = HL7CorpusSettings(total_messages=40)
    phi = parse_hl7_file(render_file(settings, 0), file_name(0)).tables()
    ring = parse_key_ring(_secrets.token_urlsafe(32))
    pseudonymizer = Pseudonymizer(ring.current)
    plain = deidentify(phi, pseudonymizer)["hl7_messages"]
    assert plain["patient_reversible_token"].null_count == plain.num_rows
    sealed = deidentify(phi, pseudonymizer, reversible=ReversibleTokens(ring))["hl7_messages"]
    from medical_assets.privacy.audit import AuditLog
    from medical_assets.privacy.hl7_patients import patient_identities
    from medical_assets.privacy.reidentify import reveal_token
    from medical_assets.storage import resolve_location

    log = AuditLog(resolve_location(str(tmp_path / "audit")))
    opened = [
        reveal_token(ring, PATIENT_DOMAIN, t, purpose="test: tokens open with the key", audit=log)
        for t in sealed["patient_reversible_token"].to_pylist()
    ]
    # What a token seals is the patient: the MRN with its assigning authority.
    assert opened == patient_identities(phi["hl7_messages"]).to_pylist()

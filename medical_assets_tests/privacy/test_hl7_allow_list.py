"""The HL7 de-identified tables as an allow-list, attacked with feeds shaped like real hospital traffic.

Each test plants what a real feed carries (a comment in a coded value's text, an SSN in an NM
field, a next-of-kin's name in an IS field, a county for a state, a stay across New Year, one MRN at
two hospitals) and shows that the attack the docstring states fails: the value is withheld, or the
inference has nothing to work with. The hospital's own vocabulary, shared by many patients, survives.
"""

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from medical_assets.hl7 import parse_hl7_file
from medical_assets.hl7.tables import TABLES as PHI_TABLES
from medical_assets.privacy import vocabulary
from medical_assets.privacy.declarations import Treatment, treatment_of, undeclared
from medical_assets.privacy.hl7_deid import (
    NOT_A_NUMBER,
    NOT_A_STATE,
    NOT_VOCABULARY,
    deidentify_hl7_tables,
    vocabulary_evidence,
)
from medical_assets.privacy.hl7_deid_tables import DEID_HL7_TABLES
from medical_assets.privacy.hl7_patients import patient_identities
from medical_assets.privacy.keys import parse_key_ring
from medical_assets.privacy.pseudonyms import Pseudonymizer, patient_identity

TEST_KEY = "e6c_RnVCBXidrmsWnAdfchXlFioZwR9OtTu1CNlJ-is"
K = 11  # the default: more patients than the suppression threshold of 10
WITHHELD = vocabulary.WITHHELD


@pytest.fixture(scope="module")
def pseudonymizer():
    return Pseudonymizer(parse_key_ring(TEST_KEY).current)


def message(control_id: str, sent: str, pid: str, *segments: str, facility: str = "GENERAL_HOSPITAL") -> str:
    header = f"MSH|^~\\&|LAB|{facility}|EMR|CARDIOLOGY|{sent}||ORU^R01^ORU_R01|{control_id}|P|2.5.1"
    return "\r".join([header, pid, *segments]) + "\r"


def pid(mrn: str, issuer: str = "GH", state: str = "MA", born: str = "19700101") -> str:
    return f"PID|1||{mrn}^^^{issuer}^MR||DOE^JANE||{born}|F|||1 MAIN ST^^SPRINGFIELD^{state}^01101"


def ward(patients: int, *observations: str, first: int = 0, **pid_fields) -> str:
    """The same results for `patients` distinct patients, one message each: a hospital's vocabulary."""
    return "".join(
        message(f"W{first + n}", "20250311093000", pid(f"MRNW{first + n:05d}", **pid_fields), "OBR|1|||24323-8^Panel^LN", *observations)
        for n in range(patients)
    )


def tables(er7: str) -> dict[str, pa.Table]:
    parsed = parse_hl7_file(er7.encode(), "feed.hl7").tables()
    assert parsed["hl7_errors"].num_rows == 0, parsed["hl7_errors"].to_pylist()
    return parsed


def deid(er7: str, pseudonymizer, withheld=None, **options):
    return deidentify_hl7_tables(tables(er7), pseudonymizer, min_patients=K, withheld=withheld, **options)


COMMON = "OBX|1|CWE|5778-6^Color of Urine^LN||BRN^Brown^L||||||F"
GLUCOSE = "OBX|2|NM|2345-7^Glucose^LN||105|mg/dL|70-99|H|||F"


def test_a_comment_in_a_coded_values_text_is_withheld_while_the_common_code_survives(pseudonymizer):
    """Attack: CWE's text component carries a note typed for one patient; kept "as a code", the
    note (a doctor, a phone number, the patient's name) reaches deid/."""
    note = "OBX|1|CWE|5778-6^Color of Urine^LN||BRN^Called Dr Quill at 617-555-0142 re Jane Doe^L||||||F"
    withheld = {}
    labs = deid(ward(K, COMMON, GLUCOSE) + ward(1, note, first=K), pseudonymizer, withheld)["hl7_lab_results"]
    values = labs.column("value").to_pylist()
    assert values.count("BRN^Brown^L") == K  # a surname that is a colour, and a real result: vocabulary
    assert "Quill" not in " ".join(str(v) for v in values) and values[-1] == WITHHELD
    assert withheld[("hl7_lab_results", "value", NOT_VOCABULARY)] == 1


def test_numbers_that_are_not_numbers_are_withheld(pseudonymizer):
    """Attack: NM fields hold an SSN (123-45-6789), a date written with dashes, or one written as
    YYYYMMDD; digits and dashes used to pass as "numeric"."""
    planted = [
        "OBX|2|NM|2345-7^Glucose^LN||987-65-4329|mg/dL|70-99||||F",
        "OBX|2|NM|2345-7^Glucose^LN||2024-03-07|mg/dL|70-99||||F",
        "OBX|2|NM|2345-7^Glucose^LN||19350115|mg/dL|70-99||||F",
    ]
    feed = ward(K, GLUCOSE) + "".join(ward(1, obx, first=K + n) for n, obx in enumerate(planted))
    withheld = {}
    labs = deid(feed, pseudonymizer, withheld)["hl7_lab_results"]
    assert labs.column("value").to_pylist() == ["105"] * K + [None] * 3
    assert labs.column("numeric_value").to_pylist()[-3:] == [None] * 3
    assert withheld[("hl7_lab_results", "value", NOT_A_NUMBER)] == 3


def test_structured_numbers_still_pass(pseudonymizer):
    values = ["<^5", "^1^:^128", "^10^-^20", "-3.5", "7"]
    feed = "".join(ward(1, f"OBX|1|SN|1234-5^Ratio^LN||{v}||||||F", first=n) for n, v in enumerate(values))
    labs = deid(feed, pseudonymizer)["hl7_lab_results"]
    assert labs.column("value").to_pylist() == values


def test_a_name_in_an_is_field_and_in_names_and_ranges_is_withheld(pseudonymizer):
    """Attack: an IS value holds a next-of-kin's name; an observation name and a reference range
    carry a name or a phone number typed once; all were kept as written."""
    planted = "OBX|3|IS|8888-8^Contact Hezekiah Plantagenet^L||KIN HEZEKIAH|x|call 617 555 0199||||F"
    labs = deid(ward(K, COMMON, GLUCOSE) + ward(1, planted, first=K), pseudonymizer)["hl7_lab_results"]
    last = labs.to_pylist()[-1]
    assert (last["value"], last["observation_name"], last["reference_range"], last["units"]) == (WITHHELD,) * 4
    text = " ".join(str(v) for row in labs.to_pylist() for v in row.values())
    assert "HEZEKIAH" not in text.upper() and "0199" not in text
    # The common ones are the hospital's vocabulary.
    assert labs.column("observation_name").to_pylist()[:2] == ["Color of Urine", "Glucose"]
    assert labs.column("reference_range").to_pylist()[1] == "70-99"


def test_a_value_common_to_many_patients_but_holding_a_phone_number_is_withheld(pseudonymizer):
    """A hospital's own number in a common comment is still a phone number: the leak check would
    stop the run on it, so it never becomes vocabulary."""
    common_note = "OBX|1|CWE|9999-1^Note^L||CB^Call 617-555-0100 for results^L||||||F"
    labs = deid(ward(K, common_note), pseudonymizer)["hl7_lab_results"]
    assert set(labs.column("value").to_pylist()) == {WITHHELD}


def test_the_state_component_publishes_only_a_state(pseudonymizer):
    """Attack: PID-11.4 holds a county ("Hampden County") or a town for a small place."""
    feed = ward(1, GLUCOSE, state="Hampden County") + ward(1, GLUCOSE, first=1, state="Massachusetts")
    feed += ward(1, GLUCOSE, first=2, state=" ma ")
    withheld = {}
    states = deid(feed, pseudonymizer, withheld)["hl7_messages"].column("patient_state").to_pylist()
    assert states == [WITHHELD, "Massachusetts", "ma"]
    assert withheld[("hl7_messages", "patient_state", NOT_A_STATE)] == 1


def test_a_stay_across_new_year_does_not_date_its_ends(pseudonymizer):
    """Attack: admitted 31 Dec 22:00, discharged 1 Jan 06:00; published as admit year 2023, discharge
    year 2024 and 0.33 days, both exact dates follow (the stay must span midnight of New Year)."""
    fields = [""] * 46
    fields[:4] = ["PV1", "1", "I", "CARD^1^2^GH"]
    fields[44], fields[45] = "20231231220000", "20240101060000"
    visit = "|".join(fields)
    feed = message("E1", "20240101060000", pid("MRNE1"), "EVN|A03|20240101060000", visit)
    feed = feed.replace("ORU^R01^ORU_R01", "ADT^A03^ADT_A03")
    stay = deid(feed, pseudonymizer)["hl7_encounters"].to_pylist()[0]
    assert (stay["admit_year"], stay["discharge_year"]) == (2023, 2024)
    assert stay["length_of_stay_days"] is None
    # Within one year a stay is whole days: hours would pin a short stay's ends within the day.
    same_year = feed.replace("20231231220000", "20240103220000").replace("20240101060000", "20240105060000")
    assert deid(same_year, pseudonymizer)["hl7_encounters"].column("length_of_stay_days").to_pylist() == [1.0]


def test_one_mrn_at_two_hospitals_is_two_patients(pseudonymizer):
    """Attack surface: MRN 12345 at two hospitals became one pseudonymous patient, mixing their
    records, ages and 90+ status. The assigning authority (PID-3.4, else MSH-4) tells them apart."""
    feed = message("A", "20250101", pid("12345", issuer="HOSP_A", born="19300101"))
    feed += message("B", "20250101", pid("12345", issuer="HOSP_B", born="19800101"))
    feed += message("C", "20250101", "PID|1||12345^^^^MR||DOE^JOHN||19800101|M", facility="CLINIC_C")
    messages = deid(feed, pseudonymizer)["hl7_messages"]
    tokens = messages.column("patient_token").to_pylist()
    assert len(set(tokens)) == 3
    assert tokens[0] == pseudonymizer.token("patient", patient_identity("12345", "hosp_a"))
    assert tokens[2] == pseudonymizer.token("patient", patient_identity("12345", "CLINIC_C"))
    # The 90+ patient of hospital A does not take the birth year of hospital B's patient.
    assert messages.column("birth_year").to_pylist() == [None, 1980, 1980]
    shared = deid(feed, pseudonymizer, scope="shared")["hl7_messages"].column("patient_token").to_pylist()
    assert len(set(shared)) == 1  # a site that declares one MRN space


def test_identities_in_arrow_are_those_of_patient_identity():
    feed = message("A", "20250101", pid(" 12345 ", issuer=" hosp_a ")) + message(
        "B", "20250101", "PID|1||777^^^^MR||DOE^JOHN||19800101|M", facility="CLINIC_C"
    )
    messages = tables(feed)["hl7_messages"]
    assert patient_identities(messages).to_pylist() == [
        patient_identity("12345", "hosp_a"),
        patient_identity("777", "CLINIC_C"),
    ]


def test_vocabulary_across_parts_counts_each_patient_once():
    """A value seen by 6 patients in one part and by 6 others in another is vocabulary (12 >= 11);
    one seen by the same 6 patients in both parts is not."""
    def evidence(mrns, value):
        values = pa.array([value] * len(mrns))
        return vocabulary.evidence("t.c", values, pa.array(mrns), K)

    first = [f"P{n}" for n in range(6)]
    second = [f"P{n}" for n in range(6, 12)]
    merged = vocabulary.merge([evidence(first, "spread"), evidence(second, "spread"),
                               evidence(first, "same six"), evidence(first, "same six")], K)
    assert merged["t.c"] == {"spread"}
    common = vocabulary.merge([evidence([f"P{n}" for n in range(11)], "common")], K)
    assert common == {"t.c": frozenset({"common"})}


def test_vocabulary_evidence_is_computed_from_the_published_form(pseudonymizer):
    """The census sees lab values as they would be published (code^text^system), not as written."""
    obx = "OBX|1|CWE|5778-6^Color of Urine^LN||BRN^Brown^L^^^^^^typed once for this patient||||||F"
    found = vocabulary_evidence(tables(ward(K, obx)), K)
    values = found.filter(pc.equal(found.column("column"), "hl7_lab_results.value")).column("value").to_pylist()
    assert values == ["BRN^Brown^L"]


def test_every_published_column_is_declared_and_nothing_undeclared_leaves():
    for name, schema in DEID_HL7_TABLES.items():
        assert undeclared(schema) == [], name
        assert all(isinstance(treatment_of(field), Treatment) for field in schema)
    # PHI columns that no declaration names stay in the PHI zone (names, street, city, phone...).
    published = {column for schema in DEID_HL7_TABLES.values() for column in schema.names}
    for column in ("patient_family_name", "patient_city", "patient_street", "patient_phone", "patient_ssn",
                   "patient_account_number", "room", "bed", "attending_doctor_family_name", "visit_number",
                   "placer_order_number", "patient_id", "patient_id_issuer", "source_file"):
        assert column not in published
        assert any(column in schema.names for schema in PHI_TABLES.values())


def test_a_new_phi_column_does_not_leave_by_name(pseudonymizer):
    """A field parsed tomorrow (here: an extra PHI column) is not copied out because its name exists."""
    parsed = tables(ward(1, GLUCOSE))
    parsed["hl7_messages"] = parsed["hl7_messages"].append_column("patient_mothers_maiden_name", pa.array(["SECRETQX"]))
    output = deidentify_hl7_tables(parsed, pseudonymizer, min_patients=1)
    assert all("patient_mothers_maiden_name" not in table.column_names for table in output.values())


def test_a_realistic_vocabulary_survives(pseudonymizer):
    """The analytics stay intact: lab names, units, ranges, colours and facilities shared by many
    patients are published as written."""
    output = deid(ward(K, COMMON, GLUCOSE), pseudonymizer)
    labs, messages = output["hl7_lab_results"], output["hl7_messages"]
    assert WITHHELD not in labs.column("units").to_pylist() + labs.column("observation_name").to_pylist()
    assert set(messages.column("sending_facility").to_pylist()) == {"GENERAL_HOSPITAL"}
    assert labs.column("numeric_value").to_pylist()[1] == 105.0
    assert datetime  # imported for the stay test's readers


def test_every_phi_column_is_published_by_declaration_searched_or_explained():
    """Nothing is published because nothing said it must not be, and nothing is left unsearched
    because nobody thought of it: each PHI column is declared out by name, searched by the leak
    check, or named with the reason it is neither."""
    from medical_assets.dicom.tables import DEID_DICOM_IMAGES
    from medical_assets.dicom.tables import TABLES as DICOM_PHI_TABLES
    from medical_assets.privacy.identifier_forms import PHI_COLUMNS_NOT_SEARCHED, identifier_columns

    published = {**DEID_HL7_TABLES, "dicom_images": DEID_DICOM_IMAGES}
    for table, schema in {**PHI_TABLES, **DICOM_PHI_TABLES}.items():
        if table not in published:
            continue
        unclassified = set(schema.names) - set(published[table].names) - set(identifier_columns(table))
        assert unclassified <= set(PHI_COLUMNS_NOT_SEARCHED), (table, sorted(unclassified - set(PHI_COLUMNS_NOT_SEARCHED)))
    assert undeclared(DEID_DICOM_IMAGES) == []

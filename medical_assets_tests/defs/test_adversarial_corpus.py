"""A whole run on a hand-written feed that mixes the traps that used to stop runs with real leaks of
every kind: it must succeed, publish none of the planted values anywhere in deid/ (Parquet values
and metadata, DICOM elements at any depth, HTML, PNG text), and let no date or age be worked back.

The HL7 is written as an interface engine sends it (CR segment ends, one file per feed, MLLP-free);
the DICOM files are pydicom's own CT test file with the patient's attributes rewritten, as a PACS
export would carry them.
"""

import os
import re

import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from medical_assets.privacy.keys import parse_key_ring
from medical_assets.privacy.patients import dicom_patient_identity
from medical_assets.privacy.pseudonyms import Pseudonymizer, patient_identity
from medical_assets_tests.defs.pipeline import materialize_all

pytestmark = pytest.mark.slow

KEY = "e6c_RnVCBXidrmsWnAdfchXlFioZwR9OtTu1CNlJ-is"
FACILITY = "Springfield General Hospital"  # the patients' town is in the hospital's name: a trap
WARD = 24  # patients sharing the hospital's vocabulary: 12 per urine colour, over the default threshold of 11

# Real leaks of every kind, each planted where a real feed carries it. None may reach deid/.
LEAKS = {
    "third party": "Hezekiah Plantagenet",
    "phone": "617-555-0142",
    "ssn": "987-65-4329",
    "email": "zebediah.quill@example.org",
    "url": "https://portal.example.org/chart/77",
    "county": "Hampden County",
    "note": "Called Dr Obadiah",
    "kin": "KINFAMILYQX",
    "dicom text": "Marmaduke Fairweather",
    "dicom comment": "Ring Xanthippe at home",
    "dicom code meaning": "Abernathy protocol",
    "rt label": "PLAN FOR WILBERFORCE",
}


def segment(*fields: str) -> str:
    return "|".join(fields)


def msh(control_id: str, sent: str, kind: str) -> str:
    return f"MSH|^~\\&|LAB|{FACILITY}|EMR|WARD|{sent}||{kind}|{control_id}|P|2.5.1"


def pid(mrn: str, family: str, given: str, born: str, city: str = "Springfield", state: str = "MA") -> str:
    return f"PID|1||{mrn}^^^SGH^MR||{family}^{given}||{born}|F|||12 ELM ST^^{city}^{state}^01101||(413)555-0100"


def ward_feed() -> str:
    """The hospital's everyday traffic: 24 patients with the same tests, colours and units. Among
    them the traps: a surname White (White blood cells), Brown and Green (urine colours), a test
    patient named like common words, a patient named like words of our schema, a newborn born on 1 January."""
    # YEAR and SHAPE: words of our own schema's column descriptions and declared sources.
    names = [("WHITE", "ADA"), ("BROWN", "BEA"), ("GREEN", "CY"), ("TEST", "NORMAL"), ("NEWBORN", "BABY"),
             ("YEAR", "SHAPE")]
    names += [(f"FAMILY{chr(65 + n)}QX", f"GIVEN{chr(65 + n)}QX") for n in range(WARD - len(names))]
    messages = []
    for n, (family, given) in enumerate(names):
        born = "20240101" if family == "NEWBORN" else f"19{50 + n}0612"
        messages.append("\r".join([
            msh(f"W{n}", "20240315093000", "ORU^R01^ORU_R01"),
            pid(f"MRN{n:04d}", family, given, born),
            "OBR|1|||24323-8^Panel^LN",
            "OBX|1|NM|6690-2^White blood cells^LN||7.2|10*3/uL|4.5-11.0|N|||F",
            f"OBX|2|CWE|5778-6^Color of Urine^LN||{['BRN^Brown^L', 'GRN^Green^L'][n % 2]}||||||F",
            "OBX|3|CWE|5767-9^Appearance of Urine^LN||CLR^Normal^L||||||F",
        ]))
    return "\r".join(messages) + "\r"


def leaking_feed() -> str:
    """One patient's messages carrying every real leak, and the date traps."""
    patient = pid("MRN9001", "QUILLFAMILYQX", "ZEBEDIAHQX", "19341120")
    lab = "\r".join([
        msh("L1", "20240701120000", "ORU^R01^ORU_R01"), patient,
        "OBR|1|||24323-8^Panel^LN",
        f"OBX|1|CWE|5778-6^Color of Urine^LN||BRN^{LEAKS['note']} at {LEAKS['phone']} re {LEAKS['third party']}^L||||||F",
        f"OBX|2|NM|2345-7^Glucose^LN||{LEAKS['ssn']}|mg/dL|70-99||||F",
        f"OBX|3|IS|8888-8^Contact^L||{LEAKS['kin']}||||||F",
        f"OBX|4|ST|9999-9^Email {LEAKS['email']}^L||see {LEAKS['url']}||||||F",
    ])
    # Admitted on 31 December at 22:00, discharged on 1 January at 06:00.
    visit = [""] * 46
    visit[:4] = ["PV1", "1", "I", "CARD^1^2^SGH"]
    visit[44], visit[45] = "20231231220000", "20240101060000"
    stay = "\r".join([msh("A1", "20240101060000", "ADT^A03^ADT_A03"), "EVN|A03|20240101060000",
                      pid("MRN9001", "QUILLFAMILYQX", "ZEBEDIAHQX", "19341120", state=LEAKS["county"]), "|".join(visit)])
    # 89 in June 2024, 90 in November 2024 (born 20 November 1934): under one token.
    june = "\r".join([msh("J1", "20240610080000", "ADT^A08^ADT_A08"), patient])
    november = "\r".join([msh("N1", "20241125080000", "ADT^A08^ADT_A08"), patient])
    # 89 in HL7; the DICOM study below says 090Y for the same patient.
    dicom_old = pid("MRN9002", "ELDERFAMILYQX", "ELDERGIVENQX", "19350301")
    elder = "\r".join([msh("E1", "20240110080000", "ADT^A08^ADT_A08"), dicom_old])
    return "\r".join([lab, stay, june, november, elder]) + "\r"


def write_dicom(folder, name: str, mrn: str, patient_name: str, age: str, study_date: str, **attributes) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.IssuerOfPatientID, ds.PatientName = mrn, "SGH", patient_name
    ds.PatientAge, ds.StudyDate, ds.SeriesDate, ds.ContentDate = age, study_date, study_date, study_date
    ds.InstitutionName = FACILITY
    ds.PatientBirthDate = ""
    # Each file its own study, series and instance, as a PACS would send them.
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(folder / name, enforce_file_format=True)


def item(**attributes) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.fixture(scope="module")
def adversarial_run(shared_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("adversarial")
    hl7, dicom, data = root / "hl7", root / "dicom", root / "data"
    hl7.mkdir()
    dicom.mkdir()
    (hl7 / "ward.hl7").write_bytes(ward_feed().encode())
    (hl7 / "leaks.hl7").write_bytes(leaking_feed().encode())
    # The newborn's study of 2024: reduced to the year, its date reads 20240101, the birth date.
    write_dicom(dicom, "newborn.dcm", "MRN0004", "NEWBORN^BABY", "000D", "20240305")
    # The patient HL7 shows as 90+ (November): a PatientAge of 089Y from June would give the birth year.
    write_dicom(dicom, "june.dcm", "MRN9001", "QUILLFAMILYQX^ZEBEDIAHQX", "089Y", "20240612",
                ContentSequence=Sequence([item(ValueType="TEXT", TextValue=LEAKS["dicom text"])]),
                ScheduledProcedureStepSequence=Sequence([item(CommentsOnTheScheduledProcedureStep=LEAKS["dicom comment"])]),
                ProcedureCodeSequence=Sequence([item(CodeValue="X1", CodingSchemeDesignator="L", CodeMeaning=LEAKS["dicom code meaning"])]),
                RTPlanLabel=LEAKS["rt label"])
    # 090Y in DICOM for a patient HL7 shows at 89.
    write_dicom(dicom, "elder.dcm", "MRN9002", "ELDERFAMILYQX^ELDERGIVENQX", "090Y", "20240305")
    result = materialize_all(data, KEY, hl7_source=str(hl7), dicom_source=str(dicom))
    return data, result


def deid_texts(data) -> dict[str, str]:
    """Every file of deid/ as the text a reader could get out of it."""
    texts = {}
    for folder, _, files in os.walk(data / "deid"):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".parquet"):
                table = pq.read_table(path)
                texts[path] = f"{table.schema}\n{table.schema.metadata}\n{table.to_pylist()}"
            elif name.endswith(".dcm"):
                texts[path] = "\n".join(_elements(pydicom.dcmread(path)))
            else:
                texts[path] = open(path, "rb").read().decode("latin-1")
    return texts


def _elements(dataset) -> list[str]:
    found = []
    for element in dataset.iterall():
        if element.tag != 0x7FE00010:
            found.append(f"{element.keyword}={element.value!r}")
    return found


def test_the_run_succeeds_and_no_trap_stops_it(adversarial_run):
    data, result = adversarial_run
    failed = [(e.check_name, e.metadata.get("where")) for e in result.get_asset_check_evaluations() if not e.passed]
    assert result.success and not failed, failed
    assert not (data / "phi" / "quarantine").exists()


def test_no_planted_value_is_published_anywhere(adversarial_run):
    data, _ = adversarial_run
    texts = deid_texts(data)
    # Every image exported (none is a screen capture), so the DICOM leaks were really put to the test.
    assert sum(path.endswith(".dcm") for path in texts) == 3 and any(path.endswith(".html") for path in texts)
    planted = [*LEAKS.values(), "QUILLFAMILYQX", "ZEBEDIAHQX", "ELDERFAMILYQX", "MRN9001", "12 ELM ST", "(413)555-0100"]
    for path, text in texts.items():
        for value in planted:
            assert value.upper() not in text.upper(), (os.path.relpath(path, data), value)
        assert not re.search(r"\b617\W?555\W?0142\b", text), path


def test_the_hospitals_vocabulary_survives(adversarial_run):
    data, _ = adversarial_run
    labs = pq.read_table(data / "deid" / "hl7_lab_results").to_pylist()
    names = {row["observation_name"] for row in labs}
    assert {"White blood cells", "Color of Urine", "Appearance of Urine"} <= names
    assert {"BRN^Brown^L", "GRN^Green^L", "CLR^Normal^L"} <= {row["value"] for row in labs}
    facilities = set(pq.read_table(data / "deid" / "hl7_messages").column("sending_facility").to_pylist())
    assert facilities == {FACILITY}


def test_no_date_or_age_can_be_worked_back(adversarial_run):
    data, _ = adversarial_run
    pseudonymizer = Pseudonymizer(parse_key_ring(KEY).current)
    messages = pq.read_table(data / "deid" / "hl7_messages").to_pylist()
    turning = pseudonymizer.token("patient", patient_identity("MRN9001", "SGH"))
    elder = pseudonymizer.token("patient", patient_identity("MRN9002", "SGH"))
    for token in (turning, elder):
        rows = [row for row in messages if row["patient_token"] == token]
        assert rows
        # 90+ at some event: no numeric age, no birth year, anywhere.
        assert all(row["birth_year"] is None for row in rows)
        assert not any((row["age_at_message"] or "").isdigit() for row in rows)
        assert {row["age_band"] for row in rows} <= {"90+", None}
    # The New Year stay: no length of stay that would date its ends.
    stays = pq.read_table(data / "deid" / "hl7_encounters").to_pylist()
    crossing = [row for row in stays if (row["admit_year"], row["discharge_year"]) == (2023, 2024)]
    assert crossing and all(row["length_of_stay_days"] is None for row in crossing)
    # DICOM: no PatientAge for a patient who is 90+ anywhere; the 090Y one stays 090Y or goes.
    seen = set()
    for path in (data / "deid" / "dicom").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        patient = ds.get("PatientID")
        seen.add(patient)
        if patient == turning:
            assert "PatientAge" not in ds
        if patient == elder:
            assert ds.get("PatientAge") in (None, "090Y")
    assert {turning, elder} <= seen  # the images carry the patient token HL7 has: they join
    assert dicom_patient_identity("MRN9001", "SGH", FACILITY) == patient_identity("MRN9001", "SGH")

"""The leak check's engine: identifiers planted in Parquet, DICOM and HTML are found, named by where they
are and never by what they are; clean outputs give no finding."""

import struct
from collections import Counter
from io import BytesIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from medical_assets.privacy.identifier_forms import Identifiers, collect_identifiers, numbers_of
from medical_assets.privacy.identifier_index import IdentifierIndex
from medical_assets.privacy.leak_readers import cell_texts, distinct_cell_texts
from medical_assets.privacy.leak_scanner import Finding, LeakScanner
from medical_assets.storage import resolve_location

PATIENT = {
    "patient_id": "4827691",
    "patient_family_name": "NELSON",
    "patient_given_name": "CAROL",
    "patient_middle_name": "J",
    "patient_birth_date": "19951202",
    "patient_street": "8043 WALNUT ST",
    "patient_city": "BALTIMORE",
    "patient_phone": "(410)555-0181",
    "patient_account_number": "A000000001",
    "patient_ssn": "908-25-3223",
    "message_control_id": "MSG00000042",
}
DICOM_PATIENT = {
    "patient_id": "002895568",
    "patient_name": "PHILLIPS^AMY^Q",
    "patient_birth_date": "19450614",
    "accession_number": "ACC7731902",
    "sop_instance_uid": "1.2.826.0.1.3680043.8.498.1001",
    "study_instance_uid": "1.2.826.0.1.3680043.8.498.2002",
    "series_instance_uid": "1.2.826.0.1.3680043.8.498.3003",
    "institution_name": "REGIONAL CLINIC",
}
# Every planted value, in the forms the tests write it; none may appear in a finding.
PLANTED = [
    *PATIENT.values(),
    *DICOM_PATIENT.values(),
    "1995-12-02",
    "12/02/1995",
    "4105550181",
    "908253223",
    "PHILLIPS",
    "2895568",
    "Carol Nelson",
]


def _phi_tables() -> dict[str, pa.Table]:
    return {
        "hl7_messages": pa.Table.from_pylist([{**PATIENT, "patient_gender": "F", "patient_zip": "21253"}]),
        "hl7_encounters": pa.Table.from_pylist(
            [{"attending_doctor_id": "D90210", "attending_doctor_family_name": "LI", "visit_number": "V55501"}]
        ),
        "hl7_lab_results": pa.Table.from_pylist([{"placer_order_number": "PO-77812", "filler_order_number": None}]),
        "dicom_images": pa.Table.from_pylist([DICOM_PATIENT]),
    }


@pytest.fixture(scope="module")
def scanner() -> LeakScanner:
    return LeakScanner(collect_identifiers(_phi_tables()))


def _assert_no_values(findings: list[Finding]) -> None:
    assert findings, "the test expects findings to inspect"
    for finding in findings:
        for shown in (str(finding), repr(finding), finding.where, finding.kind):
            for value in PLANTED:
                assert value.lower() not in shown.lower(), f"{value!r} shown in {shown!r}"


def _kinds_at(findings: list[Finding], where: str) -> set[str]:
    return {finding.kind for finding in findings if finding.where == where}


def test_identifiers_are_collected_with_their_kinds_and_variants():
    identifiers = collect_identifiers(_phi_tables())

    assert identifiers["4827691"] == "patient_id"
    assert identifiers["NELSON"] == "patient_family_name"
    assert identifiers["CAROL NELSON"] == "patient_name"
    assert identifiers["NELSON, CAROL"] == "patient_name"
    for date in ("19951202", "1995-12-02", "12/02/1995"):
        assert identifiers[date] == "patient_birth_date"
    for phone in ("(410)555-0181", "4105550181", "410-555-0181", "(410) 555-0181"):
        assert identifiers[phone] == "patient_phone"
    for ssn in ("908-25-3223", "908253223"):
        assert identifiers[ssn] == "patient_ssn"
    assert identifiers["MSG00000042"] == "message_control_id"
    assert identifiers["D90210"] == "attending_doctor_id"
    assert identifiers["PO-77812"] == "placer_order_number"
    assert identifiers["V55501"] == "visit_number"


def test_control_ids_made_only_of_digits_are_skipped_and_counted_once_each():
    # A feed that numbers its messages: such IDs equal counts in any output, so they are not tested.
    controls = ["100001", " 100001 ", "100002", None, "MSG00000042", "\u0661\u0662\u0663\u0664\u0665\u0666"]
    messages = pa.table({"message_control_id": controls, "patient_id": ["4827691"] * len(controls)})

    identifiers = collect_identifiers({"hl7_messages": messages})

    assert identifiers["MSG00000042"] == "message_control_id"
    assert "100001" not in identifiers and "100002" not in identifiers
    # "100001" with spaces around it is the same ID; Arabic-Indic digits are digits to Python too.
    assert identifiers.skipped["message_control_id"] == 3
    assert identifiers["4827691"] == "patient_id"


def test_dicom_identifiers_include_name_components_and_numeric_ids_without_zeros():
    identifiers = collect_identifiers(_phi_tables())

    assert identifiers["PHILLIPS^AMY^Q"] == "patient_name"
    assert identifiers["PHILLIPS"] == "patient_name"
    assert identifiers["AMY PHILLIPS"] == "patient_name"
    assert identifiers["002895568"] == "patient_id"
    assert identifiers["2895568"] == "patient_id"
    assert identifiers["1945-06-14"] == "patient_birth_date"
    assert identifiers["ACC7731902"] == "accession_number"
    for uid in ("sop_instance_uid", "study_instance_uid", "series_instance_uid"):
        assert identifiers[DICOM_PATIENT[uid]] == uid
    assert "REGIONAL CLINIC" not in identifiers  # the hospital, not the patient


def test_short_values_are_skipped_and_counted_by_kind():
    identifiers = collect_identifiers(_phi_tables())

    assert isinstance(identifiers, Identifiers)
    assert "J" not in identifiers and "LI" not in identifiers and "AMY" not in identifiers
    assert identifiers.skipped == {"patient_middle_name": 1, "attending_doctor_family_name": 1}
    looser = collect_identifiers(_phi_tables(), min_length=2)
    assert looser["LI"] == "attending_doctor_family_name"


def test_numbers_too_short_to_tell_from_counts_are_skipped():
    tables = {"hl7_messages": pa.table({"patient_id": ["12345", "123456"], "patient_birth_date": ["1970", "197001"]})}
    identifiers = collect_identifiers(tables)
    assert set(identifiers) == {"123456"}
    assert identifiers.skipped == {"patient_id": 1, "patient_birth_date": 2}


def test_missing_tables_and_columns_give_what_is_there():
    assert collect_identifiers({}) == {}
    tables = {"hl7_messages": pa.table({"patient_city": ["BALTIMORE", None, " "]}), "dicom_images": pa.table({"x": [1]})}
    assert collect_identifiers(tables) == {"BALTIMORE": "patient_city"}


def test_non_text_columns_are_read_as_text():
    tables = {"hl7_messages": pa.table({"patient_id": pa.array([4827691], pa.int64())})}
    assert collect_identifiers(tables) == {"4827691": "patient_id"}


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("Annual report", []),
        ("Ann Smith", ["patient_given_name"]),
        ("ann", ["patient_given_name"]),
        ("912345", []),
        ("12345", []),
        ("MRN:1234.", ["patient_id"]),
        ("id_1234", ["patient_id"]),
        ("1234abc", []),
        ("call x(410)555-0181 now", ["patient_phone"]),
        ("İ ANN", ["patient_given_name"]),
        ("İANN", []),
    ],
)
def test_matches_are_whole_words_in_any_case(text, kinds):
    scanner = LeakScanner(
        {"Ann": "patient_given_name", "1234": "patient_id", "(410)555-0181": "patient_phone"}, patterns=False
    )
    assert scanner.scan_text(text) == kinds


def test_an_empty_identifier_set_finds_nothing():
    scanner = LeakScanner({})
    assert scanner.scan_text("NELSON 4827691") == []
    assert scanner.scan_table(pa.table({"a": ["NELSON"]}), "t.parquet") == []


def _leaky_parquet() -> bytes:
    table = pa.table(
        {
            "patient_token": ["Q2WJ5R", "Z7K4NA"],
            "notes": ["seen by Dr. Who", "Carol Nelson, follow up"],
            "aliases": pa.array([["x", "Baltimore"], None], pa.list_(pa.string())),
            "contact": pa.array([{"phone": "410-555-0181"}, {"phone": None}], pa.struct([("phone", pa.string())])),
            "mrn_as_number": pa.array([2895568, 1], pa.int64()),
            "visit": pa.array([None, "1995-12-02"]).cast(pa.date32()),
            "clean_value": [1.5, 2.5],
            "ssn_as_float": [908253223.0, None],
            "measurement": [0.4827691, 4827691.5],
        }
    ).replace_schema_metadata({"source": "export of SSN 908-25-3223"})
    sink = BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_identifiers_in_every_column_kind_of_a_parquet_file_are_found(scanner):
    findings = scanner.scan_file("deid/hl7_messages/part-0.parquet", _leaky_parquet())

    where = "deid/hl7_messages/part-0.parquet"
    assert _kinds_at(findings, f"{where}: column notes") == {
        "patient_name",
        "patient_family_name",
        "patient_given_name",
    }
    assert _kinds_at(findings, f"{where}: column aliases") == {"patient_city"}
    # The phone is known, and has a phone's shape too.
    assert _kinds_at(findings, f"{where}: column contact") == {"patient_phone", "phone pattern"}
    assert _kinds_at(findings, f"{where}: column mrn_as_number") == {"patient_id"}
    assert _kinds_at(findings, f"{where}: column visit") == {"patient_birth_date"}
    assert _kinds_at(findings, f"{where}: schema") == {"patient_ssn"}
    assert not _kinds_at(findings, f"{where}: column patient_token")
    assert not _kinds_at(findings, f"{where}: column clean_value")
    assert _kinds_at(findings, f"{where}: column ssn_as_float") == {"patient_ssn"}
    assert not _kinds_at(findings, f"{where}: column measurement")
    _assert_no_values(findings)


def test_dictionary_and_tensor_columns_are_read_value_by_value(scanner):
    tensor_type = pa.fixed_shape_tensor(pa.float64(), (2, 2))
    storage = pa.array([[0.5, 4827691.0, 0.25, 1.0]], pa.list_(pa.float64(), 4))
    table = pa.table(
        {
            "city": pa.array(["BALTIMORE", "BALTIMORE", None]).dictionary_encode(),
            "thumbnail": pa.ExtensionArray.from_storage(tensor_type, pa.concat_arrays([storage] * 3)),
        }
    )
    assert scanner.scan_table(table, "t.parquet") == [
        Finding("t.parquet: column city", "patient_city", 2),
        Finding("t.parquet: column thumbnail", "patient_id", 3),
    ]


def test_counts_are_occurrences(scanner):
    table = pa.table({"names": ["NELSON", "nelson", "Nelson and NELSON", "Nelsonville"]})
    assert scanner.scan_table(table, "t.parquet") == [Finding("t.parquet: column names", "patient_family_name", 4)]


def test_repeated_cells_are_searched_once_and_counted_each_time(scanner):
    # Each distinct text is searched once; a match counts once per cell holding it, and cells after
    # non-ASCII text (characters, not bytes) are told apart correctly.
    names = ["Müller", "Müller NELSON", "NELSON", "ÆØÅ", "NELSON", "Ω 4827691", "Ω 4827691", "Ω 4827691x"]
    table = pa.table({"names": names, "repeated": [["NELSON", "NELSON"], [], ["Ω"], ["NELSON"], None, [], [], []]})
    assert scanner.scan_table(table, "t.parquet") == [
        Finding("t.parquet: column names", "patient_family_name", 3),
        Finding("t.parquet: column names", "patient_id", 2),
        Finding("t.parquet: column repeated", "patient_family_name", 3),
    ]


def _dicom_bytes(dataset: Dataset, sop_instance_uid: str = "2.25.1") -> bytes:
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = CTImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.preamble = b"\x00" * 128
    buffer = BytesIO()
    # As written, not made consistent: a leaky file's meta may disagree with its data set.
    dataset.save_as(buffer, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def _clean_dataset() -> Dataset:
    dataset = Dataset()
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = "2.25.1"
    dataset.PatientName = "ANONYMOUS"
    dataset.PatientID = "Q2WJ5R7K4N"
    dataset.Modality = "CT"
    dataset.StudyDescription = "CHEST ROUTINE"
    return dataset


def _leaky_dicom() -> bytes:
    dataset = _clean_dataset()
    other_patient = Dataset()
    other_patient.PatientID = DICOM_PATIENT["patient_id"]
    study = Dataset()
    study.ReferencedSOPInstanceUID = DICOM_PATIENT["study_instance_uid"]
    study.OtherPatientIDsSequence = Sequence([other_patient])
    dataset.ReferencedStudySequence = Sequence([study])
    block = dataset.private_block(0x0011, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "PHILLIPS^AMY")
    return _dicom_bytes(dataset, sop_instance_uid=DICOM_PATIENT["sop_instance_uid"])


def test_identifiers_in_nested_private_and_file_meta_elements_are_found(scanner):
    findings = scanner.scan_file("deid/dicom/image.dcm", _leaky_dicom())

    nested = "deid/dicom/image.dcm: (0008,1110) ReferencedStudySequence[0]"
    assert _kinds_at(findings, f"{nested} > (0008,1155) ReferencedSOPInstanceUID") == {"study_instance_uid"}
    assert _kinds_at(findings, f"{nested} > (0010,1002) OtherPatientIDsSequence[0] > (0010,0020) PatientID") == {
        "patient_id"
    }
    assert _kinds_at(findings, "deid/dicom/image.dcm: (0011,1010) private") == {"patient_name"}
    assert _kinds_at(findings, "deid/dicom/image.dcm: file meta (0002,0003) MediaStorageSOPInstanceUID") == {
        "sop_instance_uid"
    }
    assert not any(finding.where.endswith("raw bytes") for finding in findings)
    _assert_no_values(findings)


def test_a_dicom_file_pydicom_cannot_parse_is_still_read_as_bytes(scanner):
    # A sequence of undefined length whose first item has no item tag: pydicom gives up on the file.
    broken_sequence = struct.pack("<HH2sHI", 0x0008, 0x1110, b"SQ", 0, 0xFFFFFFFF) + b"\x01\x02\x03\x04"
    damaged = _dicom_bytes(_clean_dataset()) + broken_sequence + b"PHILLIPS^AMY 002895568"

    findings = scanner.scan_file("deid/dicom/damaged.dcm", damaged)

    assert _kinds_at(findings, "deid/dicom/damaged.dcm: raw bytes") == {"patient_name", "patient_id"}
    _assert_no_values(findings)


def test_pixel_bytes_that_happen_to_spell_an_id_are_not_a_finding(scanner):
    dataset = _clean_dataset()
    dataset.Rows, dataset.Columns = 4, 8
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
    pixels = np.frombuffer(b" 002895568 ".ljust(32, b" "), np.uint8).reshape(4, 8)
    dataset.PixelData = pixels.tobytes()
    assert scanner.scan_file("image.dcm", _dicom_bytes(dataset)) == []


def test_bytes_after_the_pixel_data_are_still_read_when_the_pixels_are_cut_out(scanner):
    dataset = _clean_dataset()
    dataset.Rows, dataset.Columns = 4, 8
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
    dataset.PixelData = bytes(range(32))
    # Trailing bytes after the pixel data: pydicom reads the start as a private element whose value
    # holds the ID; the name sits where no element does, so only the raw scan past the cut finds it.
    damaged = _dicom_bytes(dataset) + b"\x01\x02\x03PHILLIPS^AMY 002895568"

    findings = scanner.scan_file("deid/dicom/trailing.dcm", damaged)

    assert {finding.kind for finding in findings} == {"patient_name", "patient_id"}
    assert _kinds_at(findings, "deid/dicom/trailing.dcm: raw bytes") == {"patient_name"}


def test_dicom_is_recognised_by_its_preamble_without_an_extension(scanner):
    findings = scanner.scan_file("deid/dicom/0001", _leaky_dicom())
    assert any("(0011,1010) private" in finding.where for finding in findings)


def test_identifiers_in_an_html_report_are_found_even_when_escaped(scanner):
    page = b"<html><body><h1>Cohort</h1><td>Nelson, Carol</td><td>born 12/02/1995</td><td>&#x27;8043 Walnut St&#x27;</td>"

    findings = scanner.scan_file(resolve_location("/reports/cohort.html"), page)

    assert _kinds_at(findings, "/reports/cohort.html: text") == {
        "patient_name",
        "patient_family_name",
        "patient_given_name",
        "patient_birth_date",
        "patient_street",
        "date pattern",
    }
    _assert_no_values(findings)


def test_library_code_inlined_in_a_report_is_not_scanned_but_the_rest_is():
    identifiers = collect_identifiers(_phi_tables())
    library = "var palette = {line: 'nelson', fill: 'white'};"  # a library that happens to use the word
    page = f"<html><script>{library}</script><td>Carol Nelson</td></html>".encode()

    findings = LeakScanner(identifiers, [library]).scan_file("/reports/dashboard.html", page)
    assert _kinds_at(findings, "/reports/dashboard.html: text") >= {"patient_family_name"}
    clean = f"<html><script>{library}</script><td>42</td></html>".encode()
    assert LeakScanner(identifiers, [library]).scan_file("/reports/dashboard.html", clean) == []
    assert LeakScanner(identifiers).scan_file("/reports/dashboard.html", clean) != []


def _png(text: dict[str, str] | None = None) -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    sink = BytesIO()
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(sink, format="PNG", pnginfo=info)
    return sink.getvalue()


def test_a_png_is_scanned_in_its_text_chunks_not_its_compressed_pixels(scanner):
    assert scanner.scan_file("/reports/labs.png", _png()) == []
    findings = scanner.scan_file("/reports/labs.png", _png({"Title": "Labs of Carol Nelson"}))
    assert _kinds_at(findings, "/reports/labs.png: PNG text") >= {"patient_family_name"}
    _assert_no_values(findings)


def test_a_file_named_by_an_identifier_is_found_without_showing_it(tmp_path, scanner):
    root = tmp_path / "deid"
    (root / "dicom").mkdir(parents=True)
    (root / "dicom" / f"{DICOM_PATIENT['sop_instance_uid']}.dcm").write_bytes(_dicom_bytes(_clean_dataset()))

    findings = scanner.scan_tree(resolve_location(str(root)))

    assert findings == [Finding("deid/dicom/[redacted].dcm: file name", "sop_instance_uid", 1)]


def test_a_tree_is_scanned_file_by_file(tmp_path, scanner):
    root = tmp_path / "deid"
    (root / "hl7_messages").mkdir(parents=True)
    (root / "dicom").mkdir()
    (root / "reports").mkdir()
    (root / "hl7_messages" / "part-0.parquet").write_bytes(_leaky_parquet())
    (root / "dicom" / "image.dcm").write_bytes(_leaky_dicom())
    (root / "reports" / "index.html").write_text("<p>Patient 002895568</p>")

    findings = scanner.scan_tree(resolve_location(str(root)))

    files = {finding.where.split(": ")[0] for finding in findings}
    assert files == {"deid/dicom/image.dcm", "deid/hl7_messages/part-0.parquet", "deid/reports/index.html"}
    assert _kinds_at(findings, "deid/reports/index.html: text") == {"patient_id"}
    _assert_no_values(findings)


def test_clean_outputs_give_no_finding(tmp_path, scanner):
    root = tmp_path / "deid"
    (root / "hl7_messages").mkdir(parents=True)
    (root / "reports").mkdir()
    clean = pa.table(
        {
            "patient_token": ["Q2WJ5R7K4N"],
            "birth_year": [1995],
            "zip3": ["212"],
            "message_type": ["ADT^A01"],
            "note": ["Annual review; Nelsonville site; 14105550181x"],
        }
    )
    pq.write_table(clean, root / "hl7_messages" / "part-0.parquet")
    (root / "dicom.dcm").write_bytes(_dicom_bytes(_clean_dataset()))
    (root / "reports" / "index.html").write_text("<h1>Admissions by month</h1><p>Carolina: 12</p>")
    (root / "reports" / "chart.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)

    assert scanner.scan_tree(resolve_location(str(root))) == []


def test_a_missing_tree_has_no_finding(tmp_path, scanner):
    assert scanner.scan_tree(resolve_location(str(tmp_path / "absent"))) == []


def test_redact_hides_identifiers_even_inside_words(scanner):
    assert scanner.redact("CarolNelson_2895568.html") == "[redacted]_[redacted].html"
    assert scanner.redact("nothing here") == "nothing here"


def test_fifty_thousand_messages_against_hundreds_of_thousands_of_cells_in_seconds():
    rows = 50_000
    messages = pa.table(
        {
            "patient_id": [f"{7_000_000 + n}" for n in range(rows)],
            "patient_family_name": [f"FAMILY{n:05d}" for n in range(rows)],
            "patient_birth_date": [f"19{40 + n % 60:02d}{1 + n % 12:02d}{1 + n % 28:02d}" for n in range(rows)],
            "patient_phone": [f"(410)555-{n % 10_000:04d}" for n in range(rows)],
            "message_control_id": [f"MSG{n:08d}" for n in range(rows)],
        }
    )
    output = pa.table(
        {
            "token": [f"TOKEN{n:09d}" for n in range(100_000)],
            "value": [f"{n * 0.37:.2f} mmol/L" for n in range(100_000)],
            "comment": ["within reference range, repeat in 3 months"] * 100_000,
        }
    )

    scanner = LeakScanner(collect_identifiers({"hl7_messages": messages}))
    findings = scanner.scan_table(output, "out.parquet")

    assert findings == []


def _deflated_dicom(dataset: Dataset) -> bytes:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = CTImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_deflated_file_is_scanned_as_what_it_encodes_not_as_its_compressed_bytes():
    """Regression: a compressed stream spelled a patient's family name by chance in a synthetic CT."""
    import re

    rng = np.random.default_rng(7)
    for _ in range(50):
        dataset = _clean_dataset()
        dataset.Rows, dataset.Columns, dataset.BitsAllocated, dataset.BitsStored = 64, 64, 16, 12
        dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
        dataset.HighBit, dataset.PixelRepresentation = 11, 0
        dataset.PixelData = rng.integers(0, 4096, (64, 64), dtype=np.uint16).tobytes()
        data = _deflated_dicom(dataset)
        chance = re.search(rb"(?<![A-Za-z0-9])[A-Za-z]{4}(?![A-Za-z0-9])", data[400:])
        if chance:
            break
    assert chance, "no four-letter word in 50 compressed streams"
    found_by_chance = LeakScanner({chance.group().decode(): "patient_family_name"})
    assert found_by_chance.scan_dicom(data, "deflated.dcm") == []

    dataset.ImageComments = "called PHILLIPS about it"
    planted = LeakScanner({"PHILLIPS": "patient_family_name"})
    findings = planted.scan_dicom(_deflated_dicom(dataset), "deflated.dcm")
    assert _kinds_at(findings, "deflated.dcm: (0020,4000) ImageComments") == {
        "patient_family_name"
    }


def test_a_numeric_message_control_id_is_not_searched_since_counts_would_match_it():
    messages = pa.table({"message_control_id": ["125000", "MSG00000042"], "patient_id": ["125001", "4827691"]})
    identifiers = collect_identifiers({"hl7_messages": messages})
    assert "125000" not in identifiers and identifiers["MSG00000042"] == "message_control_id"
    assert identifiers["125001"] == "patient_id"  # a numeric patient ID still is
    assert LeakScanner(identifiers).scan_table(pa.table({"messages": [125_000]}), "message_types.parquet") == []


def test_in_aggregates_a_count_equal_to_a_numeric_id_is_not_a_finding_but_the_id_as_text_is():
    """At a million messages some count equals some numeric ID; in an aggregate's number column
    that is a count, in its text columns (and anywhere in a row-level table) it is a leak."""
    identifiers = collect_identifiers(_phi_tables())
    aggregate = pa.table(
        {
            "facility": ["NORTH", "4827691"],
            "messages": pa.array([4827691, 20], pa.int64()),
            "abnormal_rate": [4827691.0, 0.5],
            "label": ["A000000001", "fine"],
        }
    )
    where = "analytics/hospital_utilization/part-0.parquet"
    findings = LeakScanner(identifiers, aggregates=True).scan_table(aggregate, where)
    assert {f.where: f.kind for f in findings} == {
        f"{where}: column facility": "patient_id",
        f"{where}: column label": "patient_account_number",
    }
    row_level = LeakScanner(identifiers).scan_table(aggregate, where)
    assert {f.where for f in row_level} == {f"{where}: column {c}" for c in aggregate.column_names}


def test_measurement_columns_of_row_level_tables_are_not_searched_for_digit_only_ids():
    """At 5,000,000 messages a 7-digit MRN equalled a DICOM file's size: a blocking check that fails
    on chance collisions with measurements cannot run nightly. Other columns are still searched."""
    table = pa.table(
        {
            "file_size_bytes": pa.array([4902978, 1200], pa.int64()),  # a measurement by contract
            "rows": pa.array([4902978, 512], pa.int64()),  # a number column not declared a measurement
            "series_description": ["patient 4902978", "CT"],
        }
    )
    scanner = LeakScanner({"4902978": "patient_id"}, measurements={"file_size_bytes"})
    where = "dicom_images/part-00000.parquet"
    assert {f.where for f in scanner.scan_table(table, where)} == {f"{where}: column rows", f"{where}: column series_description"}
    unrestricted = LeakScanner({"4902978": "patient_id"})
    assert f"{where}: column file_size_bytes" in {f.where for f in unrestricted.scan_table(table, where)}


def test_an_aggregate_exported_as_csv_or_json_lines_keeps_its_number_columns_apart(tmp_path):
    scanner = LeakScanner(collect_identifiers(_phi_tables()), aggregates=True)
    csv = b"facility,month,messages\nNORTH,2024-01,4827691\nBALTIMORE,2024-02,11\n"
    jsonl = b'{"facility": "NORTH", "messages": 4827691}\n{"facility": "4827691", "messages": 12}\n'
    csv_findings = scanner.scan_file("analytics/u/part-0.csv", csv)
    assert [(f.where, f.kind) for f in csv_findings] == [("analytics/u/part-0.csv: column facility", "patient_city")]
    json_findings = scanner.scan_file("analytics/u/part-0.jsonl", jsonl)
    assert [(f.where, f.kind) for f in json_findings] == [("analytics/u/part-0.jsonl: column facility", "patient_id")]
    # A file that does not parse as its suffix says is still scanned, as text.
    broken = scanner.scan_file("analytics/u/part-1.csv", b'"unclosed,4827691\nNELSON')
    assert {f.kind for f in broken} == {"patient_id", "patient_family_name"}


def test_a_report_may_show_the_counts_of_its_aggregates_but_no_other_numeric_id():
    identifiers = collect_identifiers(_phi_tables())
    aggregates = [pa.table({"facility": ["NORTH"], "messages": pa.array([4827691], pa.int64()), "rate": [0.25]})]
    numbers = numbers_of(aggregates)
    assert "4827691" in identifiers and "4827691" in numbers and "2895568" not in numbers
    report = "<div>messages: 4827691</div><div>patient 2895568</div>"
    assert LeakScanner(identifiers, excused_numbers=numbers).scan_text(report) == ["patient_id"]
    assert LeakScanner(identifiers).scan_text("<div>messages: 4827691</div>") == ["patient_id"]  # not excused
    # A count the report makes itself (rows withheld, say) may equal a numeric ID too: found in a run
    # of a million patients numbered 200000 and up, whose privacy report withheld 1000000 values.
    own = numbers_of(aggregates, counts=[2895568])
    assert LeakScanner(identifiers, excused_numbers=own).scan_text(report) == []


def test_the_digits_after_a_decimal_point_are_a_fraction_not_an_id():
    """Found at 5,000,000 distinct patients (IDs 200000 to 5199999): the dashboard's plotly layout
    placed an axis at "domain":[0.0,0.3984375], and the report's check failed on patient 3984375."""
    scanner = LeakScanner({"3984375": "patient_id", "200017": "patient_id"}, patterns=False)
    layout = '{"yaxis4":{"anchor":"x4","domain":[0.0,0.3984375]},"value":1.200017}'
    assert scanner.scan_text(layout) == []
    # The ID itself, as a number, after a dot that ends a sentence or a word, or in a CSV cell: found.
    # And as a part of a UID or another dotted sequence: a UID built from the patient's ID is a leak.
    for text in (
        "patient 3984375", "3984375.0", "seen.3984375", "MRN 3984375. Next", "a,3984375,b", "v2.3984375x 200017",
        "1.2.826.0.1.3984375", "2.25.3984375.1", "0.3984375.7",
    ):
        assert scanner.scan_text(text) == ["patient_id"], text


def test_a_shared_index_with_excusals_finds_what_a_scanner_of_the_identifiers_left_finds():
    """The reports' check reuses the index the run's other checks built: excusing the analytics'
    numbers and one-word names there must find what a scanner built without them finds."""
    identifiers = collect_identifiers(_phi_tables())
    aggregates = [pa.table({"facility": ["NORTH"], "messages": pa.array([4827691], pa.int64())})]
    one_word = {"patient_family_name", "patient_given_name"}
    numbers = numbers_of(aggregates, [12])
    left = {
        value: kind for value, kind in identifiers.items()
        if not (value.isdigit() and value in numbers)
        and not (kind in one_word and len(value.split()) == 1 and not any(c.isdigit() for c in value))
    }
    index = IdentifierIndex(identifiers)
    shared = LeakScanner(index, excused_numbers=numbers, one_word_kinds_excused=one_word)
    assert "NELSON" in identifiers and "NELSON" not in left and "4827691" not in left
    reports = [
        "<div>messages: 4827691 of 12</div>",  # the analytics' counts: excused
        "<p>Nelson's results</p>",  # a one-word family name: excused
        "<p>patient 2895568, born 06/14/1945</p>",  # an ID and a birth date: found
        "<p>Carol Nelson</p>",  # a full name: found
    ]
    for report in reports:
        assert shared.scan_text(report) == LeakScanner(left).scan_text(report), report
    assert shared.scan_text(reports[0]) == [] and shared.scan_text(reports[1]) == []
    assert shared.scan_text(reports[2]) and shared.scan_text(reports[3])
    assert LeakScanner(index).scan_text(reports[1]) == ["patient_family_name"]  # the same index, not excused


# --- Precision: values that only look like a patient's, and leaks the known identifiers miss ---

TRAP_PATIENTS = [
    # A newborn of 1 January, a patient whose town names the hospital, surnames that are lab words.
    {"patient_id": "7730418", "patient_family_name": "WHITE", "patient_given_name": "NORMAL",
     "patient_birth_date": "20240101", "patient_city": "SPRINGFIELD"},
    {"patient_id": "7730419", "patient_family_name": "BROWN", "patient_given_name": "TEST",
     "patient_birth_date": "19800101", "patient_city": "GREENVILLE"},
    {"patient_id": "7730420", "patient_family_name": "GREEN", "patient_given_name": "HARBOR",
     "patient_birth_date": "19770312", "patient_city": "DOVER"},
]
# What the de-identification published as vocabulary: each value shared by at least k patients.
VOCABULARY = ["Springfield General Hospital", "White blood cells", "Brown", "Green", "Normal", "Test"]


@pytest.fixture(scope="module")
def trap_scanner() -> LeakScanner:
    tables = {"hl7_messages": pa.Table.from_pylist(TRAP_PATIENTS)}
    return LeakScanner(collect_identifiers(tables), vocabulary=VOCABULARY)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _published_lab_table() -> pa.Table:
    description = pa.field("observation_name", pa.string(), metadata={b"description": b"OBX-3.2: Test name, White or Normal"})
    schema = pa.schema([
        pa.field("patient_token", pa.string()),
        description,
        pa.field("value", pa.string()),
        pa.field("abnormal_flag", pa.string()),
        pa.field("sending_facility", pa.string()),
        pa.field("birth_date_shifted", pa.string()),
        pa.field("observation_year", pa.int16()),
    ]).with_metadata({
        b"deid.standard": b"HIPAA Safe Harbor: Test data, Normal use",
        b"medical_assets.created": b"2025-03-04T10:00:00+00:00",
    })
    return pa.table(
        {
            "patient_token": ["Q2WJ5R", "Z7K4NA", "K9PL2M"],
            "observation_name": ["White blood cells", "Urine colour", "Urine colour"],
            "value": ["7.2", "Brown", "Green"],
            "abnormal_flag": ["Normal", "Test", None],
            "sending_facility": ["Springfield General Hospital"] * 3,
            "birth_date_shifted": ["20231120", None, "19770509"],
            "observation_year": [2024, 2024, 2024],
        },
        schema=schema,
    )


def test_vocabulary_lab_words_and_our_schema_text_are_not_leaks(trap_scanner):
    """Attack on precision: patients named White, Brown, Green, "Test", "Normal", "Harbor", one from
    Springfield. Before, each failed the run: "White blood cells", urine colours, the hospital's name,
    our own descriptions and metadata all matched whole words. Now none is a finding, and the
    date-shifted column's dates are the profile's output, not a date leak."""
    findings = trap_scanner.scan_file("deid/hl7_lab_results/part-0.parquet", _parquet_bytes(_published_lab_table()))

    assert findings == []


def test_the_same_words_outside_vocabulary_are_still_found(trap_scanner):
    """The attack the vocabulary must not open: a note naming the patient, in a cell that no k
    patients share, is found, and so is the full name. A word that is itself vocabulary ("Normal",
    "Brown": k patients share it) is no leak alone, but with the family name it is a full name."""
    table = pa.table({"note": ["seen by Dr White", "Normal White called", "Test Brown, Springfield"]})

    findings = trap_scanner.scan_table(table, "t.parquet")

    assert findings == [
        Finding("t.parquet: column note", "patient_city", 1),
        Finding("t.parquet: column note", "patient_family_name", 2),
        Finding("t.parquet: column note", "patient_name", 2),
    ]


def _trap_dicom(study_date: str, comments: str | None = None) -> bytes:
    dataset = _clean_dataset()
    dataset.StudyDate = study_date
    dataset.AcquisitionDateTime = f"{study_date}000000"
    dataset.InstitutionName = "Springfield General Hospital"
    if comments is not None:
        item = Dataset()
        item.ImageComments = comments
        dataset.ReferencedStudySequence = Sequence([item])
    return _dicom_bytes(dataset)


def test_a_year_only_dicom_date_of_a_newborn_of_1_january_is_not_a_birth_date(trap_scanner):
    """Attack on precision: a newborn born 2024-01-01; Safe Harbor writes the study's year as
    20240101, which equals the birth date. Before, every such file failed the run (element and raw bytes)."""
    assert trap_scanner.scan_file("deid/dicom/a.dcm", _trap_dicom("20240101")) == []


def test_a_full_birth_date_in_a_dicom_date_is_still_found(trap_scanner):
    """The leak: a study date equal to a birth date that is not the year-only form."""
    findings = trap_scanner.scan_file("deid/dicom/b.dcm", _trap_dicom("19770312"))

    assert {f.kind for f in findings} == {"patient_birth_date"}
    assert any("StudyDate" in f.where for f in findings)


def test_a_year_only_form_outside_a_date_element_is_still_a_birth_date(trap_scanner):
    """The leak: "born 20240101" written into a comment is the birth date, not a year."""
    findings = trap_scanner.scan_file("deid/dicom/c.dcm", _trap_dicom("20240101", comments="born 20240101"))

    assert {(f.kind) for f in findings if "ImageComments" in f.where} == {"patient_birth_date", "date pattern"}


def test_third_party_identifiers_in_nested_dicom_text_are_found(trap_scanner):
    """The leak the known identifiers miss: a relative's phone, email and a URL in a comment deep
    in a sequence. Before, none was found: nobody parsed them from the PHI tables."""
    comment = "mother: 410-555-0199, mom@example.org, https://example.org/family/photos"

    findings = trap_scanner.scan_file("deid/dicom/d.dcm", _trap_dicom("20240101", comments=comment))

    assert {f.kind for f in findings} == {"phone pattern", "email pattern", "url pattern"}
    assert all("ReferencedStudySequence[0] > (0020,4000) ImageComments" in f.where for f in findings)
    for finding in findings:
        assert "410" not in str(finding) and "example" not in str(finding)


def test_third_party_identifiers_in_table_cells_and_metadata_are_found(trap_scanner):
    """The leak: structured identifiers of anyone, in a published table's cells (even vocabulary
    ones) and in metadata that is not ours."""
    table = pa.table(
        {
            "note": ["call 410 555 0199", "SSN 219-09-9999", None, "seen 2023-07-14"],
            "sending_facility": ["Springfield General Hospital"] * 4,
            "visits": pa.array([["ok", "fax (410) 555-0100"], None, [], ["x"]]),
        }
    ).replace_schema_metadata({"exported_by": "jane.doe@example.org"})

    findings = trap_scanner.scan_file("deid/x/part-0.parquet", _parquet_bytes(table))

    where = "deid/x/part-0.parquet"
    assert _kinds_at(findings, f"{where}: column note") == {"phone pattern", "ssn pattern", "date pattern"}
    assert _kinds_at(findings, f"{where}: column visits") == {"phone pattern"}
    assert _kinds_at(findings, f"{where}: schema") == {"email pattern"}
    assert not _kinds_at(findings, f"{where}: column sending_facility")


def test_a_shifted_date_column_still_reveals_a_known_birth_date(trap_scanner):
    """The leak: the date-shift column exempt from the date pattern must still not carry the real birth date."""
    table = pa.table({"birth_date_shifted": ["19770312"]})

    assert {f.kind for f in trap_scanner.scan_table(table, "t.parquet")} == {"patient_birth_date"}


def test_a_report_shows_vocabulary_but_not_a_date_or_a_patient(trap_scanner):
    """Trap and leak in one HTML report: the hospital's name and lab words pass; a visit date and
    a patient's full name are found."""
    clean = b"<html><td>Springfield General Hospital</td><td>White blood cells</td><td>2024</td></html>"
    leaky = b"<html><td>Springfield General Hospital</td><td>Harbor Green</td><td>visit 03/12/2024</td></html>"

    assert trap_scanner.scan_file("reports/a.html", clean) == []
    assert {f.kind for f in trap_scanner.scan_file("reports/b.html", leaky)} == {
        "patient_name",
        "patient_given_name",
        "date pattern",
    }


def test_our_compliance_stamp_beside_a_csv_export_is_not_taken_for_a_date():
    """`_compliance.json` (our run id and creation time) is read as a one-row table: its columns are
    named like our metadata keys, and a creation time there is ours, not a patient's date."""
    import json

    stamp = {"medical_assets.run_id": "8bd06b1d", "medical_assets.created": "2026-12-06T21:00:50+00:00"}
    scanner = LeakScanner({"MRN4417": "patient_id"}, [])
    assert scanner.scan_file("analytics/x/_compliance.json", json.dumps(stamp, indent=2).encode()) == []
    # Shaped like our stamp, but carrying an identifier with digits: still found.
    planted = json.dumps({**stamp, "medical_assets.note": "MRN4417"}).encode()
    assert [f.kind for f in scanner.scan_file("analytics/x/_compliance.json", planted)] == ["patient_id"]
    leaked = json.dumps({"comment": "seen 2024-03-07 at 617-555-0142"}).encode()
    assert {f.kind for f in scanner.scan_file("analytics/x/notes.json", leaked)} >= {"phone pattern"}


def test_token_columns_are_searched_for_identifiers_but_not_read_by_the_patterns():
    """Our keyed tokens are hex digests: the patterns skip them (most of their cost at a million
    messages), while a known identifier copied into one is still found."""
    table = pa.table({
        "message_token": ["MRN4417", "5a6f0c3e9b2d41f08c7e6a1b", "617-555-0142"],
        "comment": [None, None, "617-555-0142"],
    })
    kinds = {(f.where.split(": ")[-1], f.kind) for f in LeakScanner({"MRN4417": "patient_id"}, []).scan_table(table, "t")}
    assert ("column message_token", "patient_id") in kinds
    assert ("column comment", "phone pattern") in kinds
    assert ("column message_token", "phone pattern") not in kinds


def test_a_rescan_of_carried_files_for_new_identifiers_skips_our_token_columns_only():
    """A carried file passed a check that searched its tokens for every identifier known then; the
    night's rescan (`token_columns=False`) searches every other column, declared or named."""
    table = pa.table(
        {"message_token": ["MRN4417"], "patient_ref": ["MRN4417"], "comment": ["MRN4417 seen"]},
        schema=pa.schema([
            pa.field("message_token", pa.string()),
            pa.field("patient_ref", pa.string(), metadata={"treatment": "tokenise"}),
            pa.field("comment", pa.string()),
        ]),
    )
    rescan = LeakScanner({"MRN4417": "patient_id"}, [], patterns=False, token_columns=False)
    assert [f.where for f in rescan.scan_table(table, "t")] == ["t: column comment"]
    # A Parquet file: the token columns are not even read; its whole schema is still searched.
    buffer = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata({b"note": b"MRN4417"}), buffer)
    found = rescan.scan_file("deid/t/part-0.parquet", buffer.getvalue().to_pybytes())
    assert sorted(f.where for f in found) == ["deid/t/part-0.parquet: column comment", "deid/t/part-0.parquet: schema"]
    full = LeakScanner({"MRN4417": "patient_id"}, [], patterns=False)
    assert len(full.scan_table(table, "t")) == 3


def test_distinct_values_are_counted_as_every_cell_spelled_out_would_count_them():
    """The scanner counts a column's distinct values before writing them out as text: the texts and
    their counts must be those of every cell written out, for every kind of column."""
    rng = np.random.default_rng(7)
    floats = rng.choice([0.0, -0.0, 1.5, 4827691.0, float("nan"), 1e16, 12.0], 500).tolist()
    columns = [
        pa.array(floats + [None]),
        pa.array(rng.choice(["BALTIMORE", "Ω 4827691", ""], 300).tolist() + [None]).dictionary_encode(),
        pa.array(rng.integers(1900, 1905, 300), pa.int16()),
        pa.array(rng.integers(0, 3, 200).astype("datetime64[D]").astype("datetime64[us]")),
        pa.array([[1, 2], None, [2, 2], []], pa.list_(pa.int64())),
        pa.array([{"a": "x", "b": 3.0}, {"a": "x", "b": None}, None]),
        pa.array([b"ab", b"\xff", b"ab", None]),
        pa.array([None, None], pa.null()),
    ]
    for column in columns:
        spelled_out = Counter(text for texts in cell_texts(column) for text in texts.to_pylist())
        counted: Counter[str] = Counter()
        for texts, occurrences in distinct_cell_texts(column):
            for text, times in zip(texts.to_pylist(), occurrences.tolist()):
                counted[text] += times
        assert counted == spelled_out, column.type


def test_a_short_library_text_cuts_nothing_out():
    """A stamp carries short values (a threshold "5", a version "0.1.0"): cut out of everything they
    would break a creation time into something else and hide a phone number (617-555-0142 without
    its 5s is no phone). Only texts long enough to be texts are cut, longest first."""
    page = "<dd>2026-12-06T22:08:05+00:00</dd> call 617-555-0142".encode()
    scanner = LeakScanner({}, ["5", "0.1.0", "2026-12-06T22:08:05+00:00"])
    assert [f.kind for f in scanner.scan_file("reports/page.html", page)] == ["phone pattern"]


def test_the_writing_librarys_implementation_uid_is_not_data_but_the_same_digits_elsewhere_are():
    """pydicom names itself in every file meta it writes (1.2.826.0.1.3680043.8.498.1): with 5,000,000
    patients, 3680043 was somebody's ID, and every exported file failed the DICOM check."""
    scanner = LeakScanner({"3680043": "patient_id"})

    def as_exported(dataset: Dataset) -> bytes:  # as the DICOM export writes
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        buffer = BytesIO()
        pydicom.dcmwrite(buffer, dataset, enforce_file_format=True)
        return buffer.getvalue()

    data = as_exported(_clean_dataset())
    assert b"1.2.826.0.1.3680043.8.498.1" in data and b"PYDICOM" in data
    assert scanner.scan_dicom(data, "exported.dcm") == []

    dataset = _clean_dataset()
    dataset.StudyInstanceUID = "1.2.826.0.1.3680043.5"  # a UID built from the ID, in the data set
    findings = scanner.scan_dicom(as_exported(dataset), "a.dcm")
    assert _kinds_at(findings, "a.dcm: (0020,000D) StudyInstanceUID") == {"patient_id"}

    dataset = _clean_dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.ImplementationClassUID = "1.2.826.0.1.3680043.9"  # another writer's UID: not excused
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = BytesIO()
    dataset.save_as(buffer, implicit_vr=False, little_endian=True)
    findings = scanner.scan_dicom(buffer.getvalue(), "b.dcm")
    assert _kinds_at(findings, "b.dcm: file meta (0002,0012) ImplementationClassUID") == {"patient_id"}

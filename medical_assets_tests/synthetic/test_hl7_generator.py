"""The synthetic HL7 corpus, read back with python-hl7: deterministic, valid ER7, realistic."""

import hashlib
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import date

import hl7
import pytest

from medical_assets.hl7 import parse_hl7_file
from medical_assets.synthetic.hl7 import HL7CorpusSettings, file_name, render_file, render_message
from medical_assets.synthetic.hl7_patients import PATIENT_POOL_SIZE, synthetic_patient

SAMPLE = HL7CorpusSettings(total_messages=2_000, messages_per_file=500)
SAFE_HARBOR_RESTRICTED_ZIP3 = {
    "036", "059", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890", "893",
}  # fmt: skip


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [render_message(SAMPLE, n) for n in range(SAMPLE.total_messages)]


@pytest.fixture(scope="module")
def messages(texts) -> list[hl7.Message]:
    return [hl7.parse(text) for text in texts]


def segments(message: hl7.Message, segment_id: str) -> list[hl7.Segment]:
    return [segment for segment in message if str(segment[0]) == segment_id]


def field(segment: hl7.Segment, sequence: int) -> str:
    return str(segment[sequence]) if len(segment) > sequence else ""


def components(segment: hl7.Segment, sequence: int, repetition: int = 0) -> list[str]:
    value = segment[sequence][repetition]
    return [value] if isinstance(value, str) else [str(component) for component in value]


def message_type(message: hl7.Message) -> str:
    return "^".join(components(message.segment("MSH"), 9)[:2])


def medical_record_number(pid: hl7.Segment) -> str:
    for repetition in range(len(pid[3])):
        identifier = components(pid, 3, repetition)
        if identifier[4] == "MR":
            return identifier[0]
    raise AssertionError(f"no MR identifier in PID-3: {field(pid, 3)}")


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_file_count_and_sizes():
    default = HL7CorpusSettings()
    assert default.file_count() == 100
    assert {default.messages_in_file(i) for i in range(100)} == {500}

    uneven = HL7CorpusSettings(total_messages=1_234, messages_per_file=500)
    assert uneven.file_count() == 3
    assert [uneven.messages_in_file(i) for i in range(3)] == [500, 500, 234]
    with pytest.raises(IndexError):
        uneven.messages_in_file(3)
    assert HL7CorpusSettings(total_messages=0).file_count() == 0


def test_file_names_are_stable_and_sort_in_order():
    assert file_name(42) == "adt_lab_pharm_00042.hl7"
    names = [file_name(i) for i in (0, 9, 10, 99, 100, 1234)]
    assert sorted(names) == names


def test_same_settings_render_the_same_bytes():
    assert render_file(SAMPLE, 1) == render_file(HL7CorpusSettings(total_messages=2_000, messages_per_file=500), 1)


def test_bytes_do_not_depend_on_the_process():
    program = (
        "import hashlib; from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_file; "
        "print(hashlib.sha256(render_file(HL7CorpusSettings(total_messages=2_000, messages_per_file=500), 2))"
        ".hexdigest())"
    )
    environment = {**os.environ, "PYTHONHASHSEED": "12345"}
    other_process = subprocess.run(
        [sys.executable, "-c", program], env=environment, capture_output=True, text=True, check=True
    )
    assert other_process.stdout.strip() == hashlib.sha256(render_file(SAMPLE, 2)).hexdigest()


def test_another_seed_renders_other_bytes():
    other_seed = HL7CorpusSettings(total_messages=2_000, messages_per_file=500, seed=7)
    assert render_file(other_seed, 0) != render_file(SAMPLE, 0)


def test_a_file_is_its_messages_back_to_back():
    uneven = HL7CorpusSettings(total_messages=1_234, messages_per_file=500)
    # Backwards, so nothing rendered earlier in this order can have helped.
    last_file = [render_message(uneven, n) for n in reversed(range(1_000, 1_234))][::-1]
    assert render_file(uneven, 2) == "".join(last_file).encode("utf-8")
    assert render_file(uneven, 1) == "".join(render_message(uneven, n) for n in range(500, 1_000)).encode("utf-8")


def test_every_segment_ends_with_a_carriage_return(texts):
    for text in texts:
        assert text.startswith("MSH|^~\\&|")
        assert text.endswith("\r")
        assert "\n" not in text and "\r\r" not in text


def test_the_four_message_types_come_in_equal_shares(messages):
    types = [message_type(message) for message in messages]
    assert Counter(types) == {"ADT^A01": 500, "ORU^R01": 500, "RDE^O11": 500, "ADT^A03": 500}
    assert {(n % 4, kind) for n, kind in enumerate(types)} == {
        (0, "ADT^A01"), (1, "ORU^R01"), (2, "RDE^O11"), (3, "ADT^A03"),
    }  # fmt: skip


def test_each_type_has_its_required_segments(messages):
    for message in messages:
        ids = [str(segment[0]) for segment in message]
        kind = message_type(message)
        assert ids[0] == "MSH" and ids.count("PID") == 1
        if kind.startswith("ADT"):
            assert ids[1:3] == ["EVN", "PID"]
            assert "PV1" in ids
            evn = message.segment("EVN")
            assert field(evn, 1) == kind.split("^")[1]
            assert re.fullmatch(r"\d{14}", field(evn, 2))
            pv1 = message.segment("PV1")
            assert field(pv1, 2) in {"I", "O", "E"}
            assert len(components(pv1, 3)) == 4
            assert components(pv1, 7)[5] == "DR"
            assert field(pv1, 10) in {"MED", "SURG", "PEDS", "OB", "PSYCH", "CAR"}
            assert field(pv1, 19)
            assert re.fullmatch(r"\d{14}", field(pv1, 44))
            if kind == "ADT^A03":
                assert field(pv1, 45) > field(pv1, 44)
            else:
                assert field(pv1, 45) == ""
        elif kind == "ORU^R01":
            obr_positions = [i for i, segment_id in enumerate(ids) if segment_id == "OBR"]
            assert obr_positions
            for group, start in enumerate(obr_positions):
                end = obr_positions[group + 1] if group + 1 < len(obr_positions) else len(ids)
                observations = [segment_id for segment_id in ids[start:end] if segment_id == "OBX"]
                assert 2 <= len(observations) <= 6
            for obr in segments(message, "OBR"):
                assert field(obr, 2) and field(obr, 3)
                assert components(obr, 4)[2] == "LN"
                assert re.fullmatch(r"\d{14}", field(obr, 7))
            for obx in segments(message, "OBX"):
                assert field(obx, 2) == "NM"
                assert re.fullmatch(r"\d{1,5}-\d", components(obx, 3)[0])
                assert components(obx, 3)[2] == "LN"
                assert field(obx, 11) == "F"
                assert re.fullmatch(r"\d{14}", field(obx, 14))
        else:
            assert ids[-3:] == ["ORC", "RXE", "RXR"]
            orc, rxe, rxr = message.segment("ORC"), message.segment("RXE"), message.segment("RXR")
            assert field(orc, 1) == "NW" and field(orc, 2)
            timing = components(rxe, 1)
            assert re.fullmatch(r"\d{14}", timing[3]) and timing[4] > timing[3]
            assert components(rxe, 2)[2] == "RXNORM"
            assert float(field(rxe, 3)) > 0 and field(rxe, 5)
            assert field(rxe, 6) in {"TAB", "CAP", "INJ", "SOL"}
            assert int(field(rxe, 10)) > 0
            assert components(rxr, 1)[0] in {"PO", "IV", "IM", "SC"}


def test_values_are_valid_er7(texts):
    for text in texts:
        for segment in text.rstrip("\r").split("\r"):
            body = segment.removeprefix("MSH|^~\\&|")
            # A literal & is escaped; the only subcomponents are an issuer's HD in PID-3.4 (namespace&OID&ISO).
            assert "&" not in re.sub(r"\^[A-Z]+&[0-9.]+&ISO\^(MR|VN)\b", "", body), segment
            if not segment.startswith("PID|"):
                assert "~" not in body, segment
            assert "\\" not in re.sub(r"\\[TFSRE]\\", "", body), segment


def test_escaped_ampersands_read_back_as_ampersands(messages):
    escaped = [
        (message, str(segment))
        for message in messages
        for segment in message
        if "\\T\\" in str(segment)
    ]
    assert escaped
    message, segment = escaped[0]
    assert "&" in message.unescape(segment)


def test_message_control_ids_are_unique(messages):
    control_ids = [field(message.segment("MSH"), 10) for message in messages]
    assert len(set(control_ids)) == len(control_ids)


def test_each_facility_sends_one_version_and_its_message_structure(messages):
    versions = defaultdict(set)
    for message in messages:
        msh = message.segment("MSH")
        facility, version = field(msh, 4), field(msh, 12)
        versions[facility].add(version)
        assert field(msh, 3) in {"ADT", "LAB", "PHARM"}
        assert field(msh, 11) == "P"
        assert re.fullmatch(r"202[45]\d{10}", field(msh, 7))
        # The message structure (MSH-9.3) exists from 2.3.1 on.
        expected_components = 3 if version_tuple(version) >= (2, 3, 1) else 2
        assert len(components(msh, 9)) == expected_components, str(msh)
        if expected_components == 3:
            assert components(msh, 9)[2] == message_type(message).replace("^", "_")
    assert 4 <= len(versions) <= 6
    assert all(len(sent) == 1 for sent in versions.values()), versions
    assert {version for (version,) in versions.values()} >= {"2.4", "2.5", "2.5.1", "2.6"}


def test_only_some_facilities_declare_utf8_and_only_they_send_it(messages, texts):
    declared = {field(message.segment("MSH"), 4): field(message.segment("MSH"), 18) for message in messages}
    assert "UNICODE UTF-8" in declared.values() and "" in declared.values()
    for message, text in zip(messages, texts):
        if not text.isascii():
            assert field(message.segment("MSH"), 18) == "UNICODE UTF-8"


def test_patient_identifiers_are_fictional(messages):
    for message in messages:
        pid = message.segment("PID")
        assert field(pid, 1) == "1"
        assert re.fullmatch(r"9\d\d-\d\d-\d{4}", field(pid, 19))
        assert re.fullmatch(r"\(\d{3}\)555-01\d\d", components(pid, 13)[0])
        assert re.fullmatch(r"\d{5}", components(pid, 11)[4])
        assert re.fullmatch(r"\d{8}", field(pid, 7))
        assert field(pid, 8) in {"M", "F", "O", "U"}
        assert field(pid, 18)
        assert len(components(pid, 5)) == 3


def test_addresses_include_restricted_zip3s(messages):
    zip3s = Counter(components(message.segment("PID"), 11)[4][:3] for message in messages)
    restricted = sum(count for zip3, count in zip3s.items() if zip3 in SAFE_HARBOR_RESTRICTED_ZIP3)
    assert 0 < restricted < len(messages) / 2


def test_genders_are_mostly_male_and_female(messages):
    genders = Counter(field(message.segment("PID"), 8) for message in messages)
    assert genders["M"] + genders["F"] > 0.9 * len(messages)


def test_the_medical_record_number_is_not_always_first(messages):
    first_types = Counter(components(message.segment("PID"), 3, 0)[4] for message in messages)
    assert first_types["MR"] > 0 and first_types["VN"] > 0
    for message in messages:
        medical_record_number(message.segment("PID"))


def medical_record_issuer(pid: hl7.Segment) -> str:
    """PID-3.4.1 (the HD namespace ID) of the MR identifier."""
    for repetition in range(len(pid[3])):
        identifier = components(pid, 3, repetition)
        if identifier[4] == "MR":
            return identifier[3].split("&")[0]
    raise AssertionError(f"no MR identifier in PID-3: {field(pid, 3)}")


def test_most_messages_name_the_issuer_each_facility_always_the_same(messages):
    issuers_by_facility = defaultdict(set)
    for message in messages:
        issuers_by_facility[field(message.segment("MSH"), 4)].add(medical_record_issuer(message.segment("PID")))
    assert all(len(issuers) == 1 for issuers in issuers_by_facility.values()), issuers_by_facility
    named = {facility: issuer for facility, (issuer,) in issuers_by_facility.items() if issuer}
    assert len(set(named.values())) == len(named)  # no two facilities share an issuer
    with_issuer = sum(1 for message in messages if medical_record_issuer(message.segment("PID")))
    assert 0.6 * len(messages) < with_issuer < len(messages)
    # Some feeds send the issuer as a full HD, its universal ID in subcomponents.
    assert any("&ISO^MR" in field(message.segment("PID"), 3) for message in messages)


def test_the_pool_knows_each_patients_issuer_and_facility(messages):
    """DICOM takes its patients from the pool: the pool must say what the HL7 feeds say."""
    pool = {patient.medical_record_number: patient for n in range(PATIENT_POOL_SIZE) if (
        patient := synthetic_patient(SAMPLE.seed, n))}  # fmt: skip
    for message in messages:
        pid = message.segment("PID")
        patient = pool[medical_record_number(pid)]
        assert patient.facility == field(message.segment("MSH"), 4)
        assert patient.issuer == (medical_record_issuer(pid) or None)


def test_the_parsed_issuer_is_pid_3_4_as_sent(texts, messages):
    parsed = parse_hl7_file("".join(texts[:400]).encode(), "sample.hl7").messages
    assert parsed.column("patient_id_issuer").to_pylist() == [
        medical_record_issuer(message.segment("PID")) or None for message in messages[:400]
    ]


def test_a_patient_is_the_same_person_wherever_they_appear(messages):
    people = defaultdict(set)
    types = defaultdict(set)
    for message in messages:
        pid = message.segment("PID")
        record = medical_record_number(pid)
        people[record].add((field(pid, 5), field(pid, 7), field(pid, 8), field(pid, 11), field(pid, 19)))
        types[record].add(message_type(message))
    assert all(len(person) == 1 for person in people.values())
    assert any(len(kinds) == 4 for kinds in types.values())
    # 500 visits drawn from the pool: some patients come back.
    visits = Counter(record for message in messages[::4] for record in [medical_record_number(message.segment("PID"))])
    assert max(visits.values()) >= 2


def test_some_patients_are_older_than_89(messages):
    ages = []
    for message in messages:
        born = field(message.segment("PID"), 7)
        sent = field(message.segment("MSH"), 7)
        ages.append((int(sent[:8]) - int(born)) // 10_000)
        assert date(int(born[:4]), int(born[4:6]), int(born[6:8])) < date(int(sent[:4]), int(sent[4:6]), int(sent[6:8]))
    assert min(ages) >= 0 and max(ages) <= 100
    assert any(age > 89 for age in ages)
    assert any(age < 18 for age in ages)


def test_abnormal_flags_agree_with_values_and_ranges(messages):
    flags = Counter()
    for message in messages:
        for obx in segments(message, "OBX"):
            low, high = (float(bound) for bound in field(obx, 7).split("-"))
            value = float(field(obx, 5))
            flag = field(obx, 8)
            if value < low:
                assert flag == "L", str(obx)
            elif value > high:
                assert flag == "H", str(obx)
            else:
                assert flag in {"N", ""}, str(obx)
            flags[flag] += 1
    assert flags["H"] and flags["L"] and flags["N"] and flags[""]
    assert flags["H"] + flags["L"] < sum(flags.values()) / 2


def test_optional_segments_appear_on_some_messages_only(messages):
    counts = Counter(str(segment[0]) for message in messages for segment in message)
    for segment_id in ("NK1", "PV2", "AL1", "DG1", "ORC", "NTE"):
        assert counts[segment_id] > 0, segment_id
    oru = [message for message in messages if message_type(message) == "ORU^R01"]
    assert 0 < sum(1 for message in oru if segments(message, "PV1")) < len(oru)
    assert any(len(segments(message, "OBR")) == 2 for message in oru)


def test_only_generated_names_count_as_synthetic():
    from medical_assets.synthetic.hl7 import file_name, is_synthetic_file_name

    assert is_synthetic_file_name(file_name(7))
    for name in ("adt_lab_pharm_00007.hl7.tmp", "adt_lab_pharm_x.hl7", "feed.hl7", "adt_lab_pharm_00007.txt"):
        assert not is_synthetic_file_name(name), name

"""`medical-assets listen hl7|dicom` as a user runs it, fed by clients we did not write: python-hl7's
`mllp_send` and pynetdicom's `storescu`, on 127.0.0.1."""

import re
import signal
import sys
from datetime import datetime, timezone

import pydicom
import pytest
from pydicom.data import get_testdata_file

from medical_assets.hl7 import parse_hl7_file
from medical_assets_tests.sources.listeners import (
    BIN,
    MEDICAL_ASSETS,
    listener_environment,
    run_client,
    running_listener,
)

pytestmark = pytest.mark.slow  # the console command in subprocesses

MLLP_SEND = BIN / "mllp_send"
# A patient of our invention whose name and MRN must never reach the listener's log.
PATIENT_FAMILY_NAME, PATIENT_MRN = "QUILLWORTHY", "MRN77001"
# As an interface engine sends them: every segment ended by a carriage return, one message after another.
MESSAGES = {
    "ADM0001": (
        "MSH|^~\\&|ADT|GENERAL_HOSPITAL|EMR|GENERAL_HOSPITAL|20240305083000||ADT^A01^ADT_A01|ADM0001|P|2.5\r"
        "EVN|A01|20240305083000\r"
        f"PID|1||{PATIENT_MRN}^^^GENERAL_HOSPITAL^MR||{PATIENT_FAMILY_NAME}^PRUDENCE^A||19710412|F|||12 ELM ST^^SPRINGFIELD^MA^01101\r"
        "PV1|1|I|4W^401^A^GENERAL_HOSPITAL||||D1234^HOUSE^GREGORY^^^DR|||MED\r"
    ),
    "LAB0001": (
        "MSH|^~\\&|LAB|GENERAL_HOSPITAL|EMR|GENERAL_HOSPITAL|20240305101500||ORU^R01^ORU_R01|LAB0001|P|2.5\r"
        f"PID|1||{PATIENT_MRN}^^^GENERAL_HOSPITAL^MR||{PATIENT_FAMILY_NAME}^PRUDENCE^A||19710412|F\r"
        "OBR|1|ORD100|FIL100|CBC^Complete blood count^L|||20240305094500\r"
        "OBX|1|NM|6690-2^Leukocytes^LN||7.2|10*3/uL|4.0-11.0|N|||F|||20240305100000\r"
        "OBX|2|NM|718-7^Hemoglobin^LN||13.1|g/dL|12.0-16.0|N|||F|||20240305100000\r"
    ),
    "ADM0002": (
        "MSH|^~\\&|ADT|GENERAL_HOSPITAL|EMR|GENERAL_HOSPITAL|20240305120000||ADT^A01^ADT_A01|ADM0002|P|2.5\r"
        "EVN|A01|20240305120000\r"
        "PID|1||MRN77002^^^GENERAL_HOSPITAL^MR||BRAMBLECOTT^OSWIN||19550101|M\r"
        "PV1|1|E|ED^12^B^GENERAL_HOSPITAL||||D5678^GREY^MEREDITH^^^DR|||EM\r"
    ),
}
_MSA = re.compile(rb"MSA\|([A-Z]{2})\|([^|\r]*)")


@pytest.fixture
def feed(tmp_path):
    path = tmp_path / "feed.hl7"
    path.write_bytes("".join(MESSAGES.values()).encode())
    return path


def send_feed(feed, port: int, env) -> list[tuple[str, str]]:
    """mllp_send's (acknowledgement code, control id) for each message of the feed, in order."""
    # --loose: a file of plain messages, each starting at MSH, rather than one of MLLP frames
    sent = run_client([str(MLLP_SEND), "--loose", "--file", str(feed), "--port", str(port), "127.0.0.1"], env, timeout=30)
    assert sent.returncode == 0, sent.stderr.decode(errors="replace")
    return [(code.decode(), control_id.decode()) for code, control_id in _MSA.findall(sent.stdout)]


def landed_control_ids(landing) -> tuple[list, list[str]]:
    segments = sorted((landing / "mllp" / "mllp").glob("*/*.hl7"))
    control_ids = []
    for segment in segments:
        parsed = parse_hl7_file(segment.read_bytes(), segment.name)
        assert parsed.errors.num_rows == 0
        control_ids += parsed.messages.column("message_control_id").to_pylist()
    return segments, control_ids


def test_hl7_listener_acknowledges_mllp_send_and_lands_the_segment_at_sigterm(tmp_path, feed):
    data = tmp_path / "data"
    env = listener_environment(tmp_path, MEDICAL_ASSETS_DATA_DIR=str(data))
    landing = data / "landing" / "hl7"  # the default landing folder, no source variable set
    before = datetime.now(timezone.utc).date()
    with running_listener("hl7", [], env, tmp_path) as listener:
        assert send_feed(feed, listener.port, env) == [("AA", control_id) for control_id in MESSAGES]
        assert listener.stop(signal.SIGTERM) == 0
    after = datetime.now(timezone.utc).date()

    segments, control_ids = landed_control_ids(landing)
    assert control_ids == list(MESSAGES)
    assert len(segments) == 1 and segments[0].parent.name in {before.isoformat(), after.isoformat()}
    assert not list((landing / "_mllp" / "mllp" / "open").iterdir())  # nothing left open
    log = listener.log()
    assert f"listening on 127.0.0.1:{listener.port}" in log and str(landing) in log
    assert "rolled a segment of 3 messages" in log
    for content in (PATIENT_FAMILY_NAME, "BRAMBLECOTT", PATIENT_MRN, "PID|", "ADM0001"):
        assert content not in log
    assert listener.stdout.read_text() == ""


def test_hl7_listener_writes_into_the_hl7_source_and_stops_at_sigint(tmp_path, feed):
    source = tmp_path / "feeds" / "hl7"
    env = listener_environment(tmp_path, MEDICAL_ASSETS_DATA_DIR=str(tmp_path / "data"), MEDICAL_ASSETS_HL7_SOURCE=str(source))
    with running_listener("hl7", ["--listener", "mllp"], env, tmp_path) as listener:
        assert [code for code, _ in send_feed(feed, listener.port, env)] == ["AA"] * len(MESSAGES)
        assert listener.stop(signal.SIGINT) == 0
    assert landed_control_ids(source)[1] == list(MESSAGES)
    assert not (tmp_path / "data" / "landing").exists()
    assert "Traceback" not in listener.log() and "KeyboardInterrupt" not in listener.log()


def test_dicom_listener_stores_what_storescu_sends(tmp_path):
    source = tmp_path / "feeds" / "dicom"
    env = listener_environment(tmp_path, MEDICAL_ASSETS_DATA_DIR=str(tmp_path / "data"), MEDICAL_ASSETS_DICOM_SOURCE=str(source))
    files = [get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")]
    with running_listener("dicom", ["--ae-title", "TESTSCP"], env, tmp_path) as listener:
        sent = run_client(
            [sys.executable, "-m", "pynetdicom", "storescu", "-aec", "TESTSCP", "-aet", "STORESCU", "127.0.0.1", str(listener.port), *files],
            env,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr.decode(errors="replace")
        assert listener.stop(signal.SIGTERM) == 0

    landed = sorted(source.glob("cstore/STORESCU/*/*.dcm"))
    expected = {dataset.SOPInstanceUID: dataset for dataset in map(pydicom.dcmread, files)}
    assert {path.stem for path in landed} == set(expected)
    for path in landed:
        stored = pydicom.dcmread(path)
        original = expected[path.stem]
        assert path.parent.name == original.StudyInstanceUID
        assert stored.PixelData == original.PixelData and stored.PatientName == original.PatientName
    log = listener.log()
    assert "DICOM storage service TESTSCP listening on 127.0.0.1" in log
    assert "2 instances stored" in log and "from senders STORESCU: 2" in log
    for path in files:  # the patients of the test files stay out of the log
        assert str(pydicom.dcmread(path).PatientName) not in log


@pytest.mark.parametrize(
    "kind, arguments, option",
    [
        ("hl7", ["--tls-cert", "server.pem"], "--tls-key"),
        ("dicom", ["--allow-peer", "notanaddress"], "--allow-peer"),
        ("hl7", ["--port", "70000"], "--port"),
        ("hl7", ["--segment-age", "0"], "--segment-age"),
        ("dicom", ["--max-associations", "0"], "--max-associations"),
        ("dicom", ["--ae-title", "A_TITLE_OF_17_CHR"], "--ae-title"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(tmp_path, kind, arguments, option):
    env = listener_environment(tmp_path, MEDICAL_ASSETS_DATA_DIR=str(tmp_path / "data"))
    result = run_client([str(MEDICAL_ASSETS), "listen", kind, "--port", "0", *arguments], env, timeout=15)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 2
    assert len(stderr.splitlines()) == 1 and option in stderr and "Traceback" not in stderr
    assert not (tmp_path / "data").exists()

"""The DICOM storage service against clients we did not write: pynetdicom's storescu and echoscu, dcmtk's
storescu, and pynetdicom's own AE; every instance lands whole, readable by our reader, before its success."""

import contextlib
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import CTImageStorage, Verification

from medical_assets.dicom import read_dicom_file
from medical_assets.sources import dicom_listener, folder
from medical_assets.sources.dicom_listener import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    SUCCESS,
    TRANSFER_SYNTAXES,
    DicomIntakeStats,
    DicomListenerConfig,
    serve_dicom,
)
from medical_assets.sources.dicom_listener_files import landing_path, sender_folder
from medical_assets.sources.network import ListenerConfigurationError, PeerAllowList
from medical_assets.storage import resolve_location
from medical_assets_tests.sources.certificates import self_signed_certificate

# pydicom's own test files: distinct instances over several SOP classes and every family of transfer syntax.
SENT_FILES = (
    "CT_small.dcm",  # Explicit VR Little Endian, CT
    "rtdose.dcm",  # Implicit VR Little Endian, RT Dose, multi-frame
    "SC_rgb_small_odd_big_endian.dcm",  # Explicit VR Big Endian
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline
    "JPGExtended.dcm",  # JPEG Extended, 12 bit
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG Lossless, first-order prediction
    "JPEGLSNearLossless_16.dcm",  # JPEG-LS near-lossless; it has no Study Instance UID
    "examples_jpeg2k.dcm",  # JPEG 2000 lossless, ultrasound
    "JPEG2000.dcm",  # JPEG 2000
    "MR_small_RLE.dcm",  # RLE Lossless, MR
    "reportsi.dcm",  # Basic Text SR: no pixel data
)
# dcmtk's storescu proposes a compressed transfer syntax only when told which one.
DCMTK_PROPOSALS = (
    ("-xe", "CT_small.dcm"),
    ("-xi", "rtdose.dcm"),
    ("-xb", "SC_rgb_small_odd_big_endian.dcm"),
    ("-xd", "image_dfl.dcm"),
    ("-xy", "SC_rgb_jpeg_dcmtk.dcm"),
    ("-xx", "JPGExtended.dcm"),
    ("-xs", "SC_rgb_jpeg_gdcm.dcm"),
    ("-xu", "JPEGLSNearLossless_16.dcm"),
    ("-xv", "examples_jpeg2k.dcm"),
    ("-xr", "MR_small_RLE.dcm"),
)
SECONDS = 60  # the bound on any one client run or wait


def test_every_file_pynetdicom_storescu_sends_lands_whole_and_readable(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="medical_assets")
    paths = [get_testdata_file(name) for name in SENT_FILES]
    with _service(tmp_path) as (port, stats):
        result = _run(
            [sys.executable, "-m", "pynetdicom", "storescu", "-v", "-cx", "-aet", "MODALITY_1", "127.0.0.1", str(port), *paths]
        )

    assert result.stderr.count("Status: 0x0000 - Success") == len(SENT_FILES), result.stderr[-3000:]
    for path in paths:
        _assert_landed(tmp_path, "MODALITY_1", path)
    assert stats.snapshot()["instances"] == {"MODALITY_1": len(SENT_FILES)}
    assert len(list((tmp_path / "cstore").rglob("*.dcm"))) == len(SENT_FILES)
    assert (tmp_path / "cstore" / "MODALITY_1" / "no-study").is_dir()
    _assert_no_identifiers_logged(caplog, paths)


def test_every_file_dcmtk_storescu_sends_lands_whole_and_readable(tmp_path):
    if shutil.which("storescu") is None:
        hint = "install dcmtk (apt-get install dcmtk) to test with dcmtk's storescu"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no storescu on PATH: {hint}")
        pytest.skip(hint)
    with _service(tmp_path) as (port, stats):
        for proposal, name in DCMTK_PROPOSALS:
            result = _run(["storescu", proposal, "-R", "-aet", "DCMTK", "127.0.0.1", str(port), get_testdata_file(name)])
            assert result.returncode == 0 and "Failed" not in result.stderr, (name, result.stderr[-2000:])

    for _, name in DCMTK_PROPOSALS:
        _assert_landed(tmp_path, "DCMTK", get_testdata_file(name))
    assert stats.snapshot()["instances"] == {"DCMTK": len(DCMTK_PROPOSALS)}


def test_the_same_instance_sent_twice_lands_once(tmp_path):
    path = get_testdata_file("CT_small.dcm")
    with _service(tmp_path) as (port, stats):
        assert _send(port, [path, path]) == [SUCCESS, SUCCESS]
        assert _send(port, [path]) == [SUCCESS]

    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{pydicom.dcmread(path).SOPInstanceUID}.dcm"]
    _assert_landed(tmp_path, "TESTSCU", path)
    assert stats.snapshot()["instances"] == {"TESTSCU": 3}


def test_echoscu_is_answered(tmp_path):
    with _service(tmp_path) as (port, stats):
        result = _run([sys.executable, "-m", "pynetdicom", "echoscu", "-v", "127.0.0.1", str(port)])

    assert "Received Echo Response (Status: 0x0000 - Success)" in result.stderr, result.stderr[-2000:]
    assert stats.snapshot()["echoes"] == 1


def test_a_calling_ae_title_not_allowed_is_refused(tmp_path, caplog):
    path = get_testdata_file("CT_small.dcm")
    with _service(tmp_path, calling_aets=("PACS",)) as (port, stats):
        refused = _associate(port, ae_title="INTRUDER")
        assert refused.is_rejected and not refused.is_established
        assert _send(port, [path], ae_title="PACS") == [SUCCESS]

    assert [p.parent.parent.name for p in tmp_path.rglob("*.dcm")] == ["PACS"]
    assert stats.snapshot()["refused_associations"] == 1
    assert "calling AE title is not allowed" in caplog.text


def test_a_peer_outside_the_allow_list_is_refused_before_anything_is_stored(tmp_path, caplog):
    with _service(tmp_path, allow=PeerAllowList.parse(["10.0.0.0/8", "192.168.1.7"])) as (port, stats):
        started = time.monotonic()
        refused = _associate(port)
        assert refused.is_rejected and not refused.is_established
        assert time.monotonic() - started < 5  # told at once, not left to time out
    with _service(tmp_path, allow=PeerAllowList.parse(["127.0.0.0/8"])) as (port, _):
        assert _send(port, [get_testdata_file("CT_small.dcm")]) == [SUCCESS]

    assert stats.snapshot()["refused_associations"] == 1
    assert "127.0.0.1" in caplog.text and "not in the peer allow-list (10.0.0.0/8, 192.168.1.7/32)" in caplog.text
    assert len(list(tmp_path.rglob("*.dcm"))) == 1


def test_associations_beyond_the_limit_are_refused(tmp_path):
    with _service(tmp_path, max_associations=1) as (port, stats):
        first = _associate(port)
        try:
            second = _associate(port)
            assert second.is_rejected
        finally:
            first.release()

    assert stats.snapshot()["refused_associations"] == 1


def test_tls_with_a_self_signed_certificate(tmp_path, monkeypatch):
    monkeypatch.setattr(dicom_listener, "TLS_HANDSHAKE_TIMEOUT_S", 0.5)
    tls = self_signed_certificate(tmp_path / "tls")
    client = ssl.create_default_context(cafile=tls.certificate)
    landing = tmp_path / "landing"
    path = get_testdata_file("CT_small.dcm")
    with _service(landing, tls=tls) as (port, _):
        plain = _associate(port)
        assert not plain.is_established
        # A peer that connects and never starts the handshake holds the accepting thread only briefly.
        with socket.create_connection(("127.0.0.1", port)):
            started = time.monotonic()
            assert _send(port, [path], tls_args=(client, "127.0.0.1")) == [SUCCESS]
            assert time.monotonic() - started < 10

    _assert_landed(landing, "TESTSCU", path)


def test_a_storage_failure_answers_out_of_resources_and_logs_no_identifiers(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="medical_assets")
    (tmp_path / "cstore").write_bytes(b"a file where the folder should be")
    path = get_testdata_file("CT_small.dcm")
    with _service(tmp_path) as (port, stats):
        assert _send(port, [path]) == [OUT_OF_RESOURCES]

    assert stats.snapshot()["storage_failures"] == 1 and stats.snapshot()["instances"] == {}
    assert "could not store a CT Image Storage instance" in caplog.text
    _assert_no_identifiers_logged(caplog, [path])


@pytest.mark.parametrize(
    "body",
    [b"\xff" * 64, b"\x10\x00\x10\x00PN\x08\x00Doe^Jane"],
    ids=["random bytes", "no SOP Class UID"],
)
def test_a_data_set_that_cannot_be_read_is_not_understood(tmp_path, monkeypatch, body):
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)  # the file's bytes as they are
    unreadable = tmp_path / "unreadable.dcm"
    dataset = pydicom.Dataset()
    dataset.file_meta = pydicom.dcmread(get_testdata_file("CT_small.dcm")).file_meta
    dataset.save_as(unreadable, enforce_file_format=True)
    unreadable.write_bytes(unreadable.read_bytes() + body)
    landing = tmp_path / "landing"
    with _service(landing) as (port, stats):
        assert _send(port, [str(unreadable)]) == [CANNOT_UNDERSTAND]

    assert stats.snapshot()["not_understood"] == 1
    assert not landing.exists() or not list(landing.rglob("*.dcm"))


def test_stop_finishes_the_store_in_flight_then_refuses_and_closes_what_is_left(tmp_path, monkeypatch):
    entered, original = threading.Event(), folder.deliver

    def slow_deliver(*args, **kwargs):
        entered.set()
        time.sleep(1.0)
        return original(*args, **kwargs)

    monkeypatch.setattr(folder, "deliver", slow_deliver)
    path = get_testdata_file("CT_small.dcm")
    stop, stats, ready, landing = threading.Event(), DicomIntakeStats(), [], resolve_location(str(tmp_path))
    config = DicomListenerConfig(port=0, shutdown_grace_s=3.0, idle_timeout_s=30)
    server = threading.Thread(
        target=serve_dicom, args=(config, landing, stop), kwargs={"ready": lambda h, p: ready.append(p), "stats": stats}
    )
    server.start()
    try:
        assert _wait_for(lambda: ready)
        assoc = _associate(ready[0], contexts=[(CTImageStorage, pydicom.dcmread(path).file_meta.TransferSyntaxUID)])
        statuses = []
        sender = threading.Thread(target=lambda: statuses.append(assoc.send_c_store(path).Status))
        sender.start()
        assert entered.wait(SECONDS)
        stop.set()
        sender.join(SECONDS)
        assert statuses == [SUCCESS]  # the store in flight when the stop came completed

        assert _wait_for(lambda: assoc.send_c_store(path).Status == OUT_OF_RESOURCES)
        server.join(SECONDS)
        assert not server.is_alive()
        assert _wait_for(lambda: not assoc.is_established)  # aborted once the grace period ended
    finally:
        stop.set()
        server.join(SECONDS)
    assert stats.snapshot()["instances"] == {"TESTSCU": 1} and stats.snapshot()["refused_while_stopping"] >= 1
    _assert_landed(tmp_path, "TESTSCU", path)


def test_an_idle_association_is_closed(tmp_path):
    with _service(tmp_path, idle_timeout_s=0.5) as (port, _):
        assoc = _associate(port)
        assert assoc.is_established
        assert _wait_for(lambda: not assoc.is_established, seconds=10)


def test_settings_that_cannot_work_are_refused_before_listening(tmp_path):
    landing, stop = resolve_location(str(tmp_path)), threading.Event()
    with pytest.raises(ListenerConfigurationError, match="--ae-title"):
        serve_dicom(DicomListenerConfig(port=0, ae_title="A" * 17), landing, stop)
    with pytest.raises(ListenerConfigurationError, match="--allow-calling-ae"):
        serve_dicom(DicomListenerConfig(port=0, calling_aets=("BACK\\SLASH",)), landing, stop)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        with pytest.raises(ListenerConfigurationError, match="cannot listen on 127.0.0.1"):
            serve_dicom(DicomListenerConfig(port=taken.getsockname()[1]), landing, stop)


def test_every_transfer_syntax_accepted_is_one_our_reader_decodes():
    for transfer_syntax in TRANSFER_SYNTAXES:
        decoder = get_decoder(transfer_syntax)
        assert decoder.is_available, transfer_syntax.name


def test_landing_paths_stay_inside_the_senders_folder():
    assert landing_path("PACS", "1.2.3", "1.2.3.4") == "cstore/PACS/1.2.3/1.2.3.4.dcm"
    assert landing_path("PACS", "..", "1.2.3.4") == "cstore/PACS/no-study/1.2.3.4.dcm"
    assert landing_path("PACS", None, "1.2.3.4") == "cstore/PACS/no-study/1.2.3.4.dcm"
    odd = landing_path("PACS", "1.2", "../1.2")
    assert odd == landing_path("PACS", "1.2", "../1.2") and odd.startswith("cstore/PACS/1.2/uid-") and odd.count("/") == 3
    assert "/uid-" in landing_path("PACS", "1.2", "1." + "2" * 63)  # longer than a UID may be
    assert [sender_folder(title) for title in ("CT SCANNER 1", "_hidden", "a/../b", "  ", "ÄRZTE")] == [
        "CT_SCANNER_1",
        "hidden",
        "a____b",
        "UNKNOWN",
        "RZTE",
    ]


def _assert_landed(landing: Path, sender: str, sent_path: str) -> None:
    sent = pydicom.dcmread(sent_path)
    study = sent.get("StudyInstanceUID") or "no-study"
    landed_path = landing / "cstore" / sender / study / f"{sent.SOPInstanceUID}.dcm"
    landed = pydicom.dcmread(landed_path)
    assert landed.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    assert landed.SOPInstanceUID == sent.SOPInstanceUID
    assert landed.get("PixelData") == sent.get("PixelData")
    for dataset in (sent, landed):  # padding at the end of a data set, which dcmtk drops before sending
        dataset.pop(0xFFFCFFFC, None)
    assert landed == sent  # every element of the data set, file meta aside
    parsed = read_dicom_file(landed_path.read_bytes(), str(landed_path))
    assert parsed.errors.num_rows == 0 and parsed.images.num_rows == 1, parsed.errors.to_pylist()
    assert parsed.images.column("pixel_error").to_pylist() == [None]


def _assert_no_identifiers_logged(caplog, paths) -> None:
    ours = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("medical_assets"))
    for path in paths:
        sent = pydicom.dcmread(path)
        for keyword in ("SOPInstanceUID", "StudyInstanceUID", "PatientName", "PatientID"):
            value = str(sent.get(keyword) or "")
            if len(value) > 3:
                assert value not in ours, keyword


@contextlib.contextmanager
def _service(landing: Path, **settings):
    """The service on an ephemeral loopback port in a thread; yields (port, stats); stopped on the way out."""
    config = DicomListenerConfig(port=0, shutdown_grace_s=1.0, **{"idle_timeout_s": 30.0, **settings})
    stop, stats, ready = threading.Event(), DicomIntakeStats(), []
    thread = threading.Thread(
        target=serve_dicom,
        args=(config, resolve_location(str(landing)), stop),
        kwargs={"ready": lambda host, port: ready.append(port), "stats": stats},
    )
    thread.start()
    try:
        assert _wait_for(lambda: ready or not thread.is_alive()) and ready, "the service did not start"
        yield ready[0], stats
    finally:
        stop.set()
        thread.join(SECONDS)
        assert not thread.is_alive(), "serve_dicom did not return after the stop"


def _associate(port: int, ae_title: str = "TESTSCU", contexts=None, tls_args=None):
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for abstract_syntax, transfer_syntax in contexts or [(Verification, None)]:
        ae.add_requested_context(abstract_syntax, transfer_syntax)
    return ae.associate("127.0.0.1", port, tls_args=tls_args)


def _send(port: int, paths: list[str], ae_title: str = "TESTSCU", tls_args=None) -> list[int]:
    """The statuses pynetdicom's AE receives for the files, sent over one association as they are stored."""
    contexts = {
        (str(ds.file_meta.MediaStorageSOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in map(pydicom.dcmread, paths)
    }
    assoc = _associate(port, ae_title, sorted(contexts), tls_args)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(path).Status) for path in paths]
    finally:
        assoc.release()


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=SECONDS)


def _wait_for(condition, seconds: float = SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.05) + 1):
        if condition():
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return False

"""What the listeners delivered, as the landing assets count it: by listener and sending system, from real segments."""

import asyncio

from medical_assets.sources.arrivals import dicom_arrivals, hl7_arrivals
from medical_assets.sources.folder import DICOM_EXTENSIONS, HL7_EXTENSIONS, deliver, list_landing_files
from medical_assets.sources.hl7_spool import HL7Spool
from medical_assets.storage import resolve_location


def _message(control_id: str, application: str, facility: str) -> bytes:
    return (
        f"MSH|^~\\&|{application}|{facility}|MEDASSETS|RESEARCH|20261207101500||ADT^A01^ADT_A01|{control_id}|P|2.5.1\r"
        f"PID|1||MRN{control_id}^^^HOSP^MR||DOE^JANE||19700101|F\r"
    ).encode()


def test_segments_of_two_listeners_are_counted_by_sender_and_files_dropped_by_hand_are_not(tmp_path):
    landing = resolve_location(str(tmp_path))

    async def receive(listener: str, messages: list[tuple[str, str, str]]) -> None:
        spool = HL7Spool(landing, listener)
        await spool.start()
        for control_id, application, facility in messages:
            assert await spool.append(_message(control_id, application, facility), f"{application}|{facility}")
        await spool.close()

    asyncio.run(receive("adt", [("1", "EPIC", "NORTH"), ("2", "EPIC", "NORTH"), ("3", "LAB", "SOUTH")]))
    asyncio.run(receive("lab", [("4", "LAB", "SOUTH")]))
    deliver(landing, "export/old.hl7", _message("5", "OLD", "ARCHIVE"))

    arrived = hl7_arrivals(landing, list_landing_files(landing, HL7_EXTENSIONS))
    assert arrived == {
        "adt": {"files": 1, "messages": 3, "senders": {"EPIC|NORTH": 2, "LAB|SOUTH": 1}},
        "lab": {"files": 1, "messages": 1, "senders": {"LAB|SOUTH": 1}},
    }
    assert "DOE" not in repr(arrived) and "MRN" not in repr(arrived)


def test_instances_received_by_the_storage_service_are_counted_by_calling_ae(tmp_path):
    landing = resolve_location(str(tmp_path))
    preamble = bytes(128) + b"DICM"
    for path in ("cstore/CT_ROOM1/1.2.3/1.2.3.1.dcm", "cstore/CT_ROOM1/1.2.3/1.2.3.2.dcm", "cstore/PACS/1.2.4/1.2.4.1.dcm", "scans/x.dcm"):
        deliver(landing, path, preamble)
    assert dicom_arrivals(list_landing_files(landing, DICOM_EXTENSIONS)) == {"CT_ROOM1": 2, "PACS": 1}

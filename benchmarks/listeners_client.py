"""What the live-intake measurements send: HL7 messages over MLLP connections, and DICOM files for storescu.

The MLLP sender is ours, lean on purpose (asyncio protocols on raw sockets, no HL7 library), since
it shares the machine's cores with the listener it measures: each connection keeps one message in
flight and sends the next when its ACK arrives, as an interface engine's MLLP sender does.
"""

from __future__ import annotations

import asyncio
import os
import time
from array import array
from collections.abc import Callable

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medical_assets.synthetic.hl7 import HL7CorpusSettings, render_message

START_BLOCK, END_BLOCK = b"\x0b", b"\x1c\x0d"
TEMPLATE_MESSAGES = 400  # synthetic messages rendered; their ADT and ORU are the templates the load cycles through
# Segments that real ADT and ORU feeds carry beyond the synthetic corpus's core ones (fictional
# values), bringing a message to the 1 to 2 KB an interface engine typically forwards.
_ADT_AFTER_PID = (
    "PD1|||REGIONAL CLINIC^^1001|D04184^RAMIREZ^DONNA^^^DR",
    "NK1|1|DOE^JAMIE^^^^|SPO^Spouse^HL70063|100 SAMPLE AVE^^BALTIMORE^MD^21201|(410)555-0150|||||||||||||||||||||||||",
    "NK1|2|DOE^ALEX^^^^|EMC^Emergency contact^HL70131|200 EXAMPLE RD^^TOWSON^MD^21204|(410)555-0151|||||||||||||||||||||||||",
)
_ADT_AFTER_PV1 = (
    "PV2|||^Abdominal pain, nausea||||||20250701|3|||||||||||||||N",
    "OBX|1|NM|8302-2^Body height^LN||172|cm^centimeter^UCUM|||||F",
    "OBX|2|NM|29463-7^Body weight^LN||74.5|kg^kilogram^UCUM|||||F",
    "AL1|1|DA|70618^Penicillin^RXNORM|MO|Hives|20150301",
    "AL1|2|FA|256349002^Peanut^SCT|SV|Anaphylaxis|20100515",
    "GT1|1|G000000001|DOE^JAMIE^^^^||100 SAMPLE AVE^^BALTIMORE^MD^21201|(410)555-0150||||SPO^Spouse^HL70063",
    "IN1|1|PLAN001^Commercial PPO^L|INS001|SAMPLE HEALTH PLAN|PO BOX 1000^^BALTIMORE^MD^21203||(800)555-0100|"
    "GRP12345||||20250101|20251231|||SEL^Self^HL70063|||||||||||||||||||||MEM000000001",
)
_ORU_TAIL = (
    "OBX|6|NM|785-6^MCH^LN||29.6|pg|27.0-33.0|N|||F|||20250629011024",
    "OBX|7|NM|786-4^MCHC^LN||33.8|g/dL|32.0-36.0|N|||F|||20250629011024",
    "OBX|8|NM|787-2^MCV^LN||88|fL|80-100|N|||F|||20250629011024",
    "OBX|9|NM|788-0^RDW^LN||13.1|%|11.5-14.5|N|||F|||20250629011024",
    "OBX|10|NM|770-8^Neutrophils/100 leukocytes^LN||62.1|%|40.0-75.0|N|||F|||20250629011024",
    "NTE|1|L|Specimen received in good condition. Results verified by the laboratory; reference ranges are adult.",
)


def hl7_templates(count: int = TEMPLATE_MESSAGES) -> list[tuple[bytes, bytes]]:
    """ADT and ORU messages as (everything before MSH-10, everything after it), segments ended by \\r."""
    settings = HL7CorpusSettings(total_messages=count)
    templates = []
    for number in range(count):
        segments = render_message(settings, number).rstrip("\r").split("\r")
        kind = segments[0].split("|")[8]
        if kind.startswith("ADT"):
            pid = next(i for i, s in enumerate(segments) if s.startswith("PID"))
            segments[pid + 1:pid + 1] = _ADT_AFTER_PID
            pv1 = next(i for i, s in enumerate(segments) if s.startswith("PV1"))
            segments[pv1 + 1:pv1 + 1] = _ADT_AFTER_PV1
        elif kind.startswith("ORU"):
            segments += _ORU_TAIL
        else:
            continue
        fields = segments[0].split("|")
        head = "|".join(fields[:9]) + "|"
        tail = "|" + "|".join(fields[10:]) + "\r" + "\r".join(segments[1:]) + "\r"
        templates.append((head.encode(), tail.encode()))
    return templates


class MllpLoad:
    """`connections` MLLP senders against host:port; when each message was sent and its ACK came back."""

    def __init__(self, templates: list[tuple[bytes, bytes]], run_tag: str):
        self.templates = templates
        self.run_tag = run_tag.encode()
        self.sent_ns, self.ack_ns = array("q"), array("q")
        self.message_bytes = 0
        self.not_accepted = 0  # ACKs other than AA/CA
        self.sent = 0
        self.stopping = False

    def next_message(self) -> bytes:
        head, tail = self.templates[self.sent % len(self.templates)]
        self.sent += 1
        message = head + self.run_tag + b"%010d" % self.sent + tail
        self.message_bytes += len(message)
        return START_BLOCK + message + END_BLOCK

    def acknowledged(self, sent_ns: int, ack: bytes) -> None:
        self.sent_ns.append(sent_ns)
        self.ack_ns.append(time.perf_counter_ns())
        if b"MSA|AA|" not in ack and b"MSA|CA|" not in ack:
            self.not_accepted += 1


async def run_mllp_load(
    host: str,
    port: int,
    connections: int,
    templates: list[tuple[bytes, bytes]],
    *,
    warmup_s: float,
    window_s: float,
    max_messages: int,
    mark: Callable[[str], None],
    run_tag: str = "LB",
) -> dict:
    """Send for `warmup_s`, then measure until `window_s` passed or `max_messages` ACKs came in the window.

    `mark("start")` and `mark("end")` are called at the window's edges (to sample CPU times there).
    Every connection then waits for the ACK of its last message and closes; nothing is left in flight.
    Returns the messages/s and ACK latencies of the window, and the totals sent and acknowledged."""
    loop = asyncio.get_running_loop()
    load = MllpLoad(templates, run_tag)
    senders = []
    for _ in range(connections):
        done = loop.create_future()
        _, sender = await loop.create_connection(lambda done=done: _Sender(load, done), host, port)
        senders.append(sender)
    await asyncio.sleep(warmup_s)
    first = len(load.ack_ns)
    mark("start")
    started = time.perf_counter_ns()
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline and len(load.ack_ns) - first < max_messages:
        await asyncio.sleep(0.05)
    ended = time.perf_counter_ns()
    mark("end")
    load.stopping = True
    await asyncio.wait_for(asyncio.gather(*(s.done for s in senders)), timeout=60)
    acks = np.frombuffer(load.ack_ns, dtype=np.int64)
    sends = np.frombuffer(load.sent_ns, dtype=np.int64)
    in_window = (acks >= started) & (acks <= ended)
    latency_ms = (acks[in_window] - sends[in_window]) / 1e6
    window = (ended - started) / 1e9
    percentiles = {"median": 50, "p99": 99, "p999": 99.9, "max": 100}
    return {
        "connections": connections,
        "messages": int(in_window.sum()),
        "seconds": window,
        "messages_per_s": float(in_window.sum()) / window,
        "latency_ms": {name: float(np.percentile(latency_ms, p)) for name, p in percentiles.items()} if len(latency_ms) else {},
        "sent": load.sent,
        "acknowledged": len(load.ack_ns),
        "not_accepted": load.not_accepted,
        "mean_message_bytes": load.message_bytes / max(load.sent, 1),
    }


class _Sender(asyncio.Protocol):
    """One MLLP connection: one message in flight, the next sent as soon as its ACK is read."""

    def __init__(self, load: MllpLoad, done: asyncio.Future):
        self.load = load
        self.done = done
        self.buffer = b""
        self.sent_ns = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._send()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(END_BLOCK)
        if end < 0:
            return
        self.load.acknowledged(self.sent_ns, self.buffer[:end])
        self.buffer = self.buffer[end + len(END_BLOCK):]
        if self.load.stopping:
            self.transport.close()
        else:
            self._send()

    def connection_lost(self, error: Exception | None) -> None:
        if not self.done.done():
            if error is None and self.load.stopping:
                self.done.set_result(None)
            else:
                self.done.set_exception(error or ConnectionError("the listener closed the connection"))

    def _send(self) -> None:
        message = self.load.next_message()
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(message)


def write_dicom_corpus(folder: str, files: int) -> list[str]:
    """`files` uncompressed CT instances of 1 to 2 MB (Explicit VR Little Endian), written once and kept."""
    os.makedirs(folder, exist_ok=True)
    sides = (736, 800, 864, 928, 992)  # 16-bit square images: 1.1 to 2.0 MB
    rng = np.random.default_rng(20240101)
    study = generate_uid()
    paths = []
    for index in range(files):
        path = os.path.join(folder, f"ct_{index:05d}.dcm")
        paths.append(path)
        if os.path.exists(path):
            continue
        side = sides[index % len(sides)]
        ramp = np.add.outer(np.arange(side), np.arange(side)).astype(np.uint16) % 2048
        pixels = ramp + rng.integers(0, 64, size=(side, side), dtype=np.uint16)
        _ct_dataset(study, index, pixels).save_as(path + ".tmp", enforce_file_format=True)
        os.replace(path + ".tmp", path)
    return paths


def _ct_dataset(study: str, index: int, pixels: np.ndarray) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyDate, ds.StudyTime = "CT", "20250101", "120000"
    ds.PatientName, ds.PatientID = "BENCH^SYNTHETIC", f"BENCH{index // 50:04d}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.InstanceNumber = index + 1
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = pixels.tobytes()
    return ds

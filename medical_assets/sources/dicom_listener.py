"""The DICOM storage service (C-STORE SCP): instances pushed by a PACS, a router or a modality, into the landing folder.

Each instance is written whole and flushed to the disk (`folder.deliver`, durable) before the
sender is told it was stored; any failure to store it answers Out of Resources, so the sender
keeps it and sends it again. Instances land as `cstore/<calling AE>/<study>/<instance>.dcm`
(`dicom_listener_files`), the file pynetdicom received, never decoded and written again.
"""

from __future__ import annotations

import errno
import logging
import os
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification

from medical_assets.sources import folder
from medical_assets.sources.dicom_listener_files import (
    DatasetNotUnderstood,
    landing_path,
    sender_folder,
    study_instance_uid,
)
from medical_assets.sources.network import (
    DEFAULT_HOST,
    ListenerConfigurationError,
    PeerAllowList,
    TlsFiles,
    server_tls_context,
)
from medical_assets.storage import Location

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # "Refused: Out of Resources": the sender keeps the instance and retries
CANNOT_UNDERSTAND = 0xC000  # a retry would send the same unreadable bytes

# The transfer syntaxes whose pixel data `medical_assets.dicom` decodes with the project's decoder
# plugins (pydicom; Pillow, pylibjpeg-openjpeg, pylibjpeg-rle, GDCM). A sender holding an image in
# another one converts it to one of these, typically Explicit VR Little Endian.
TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    HTJ2K,
    RLELossless,
)
# Larger P-DATA PDUs than pynetdicom's 16 KiB default: a sender cuts an image into fewer pieces.
MAXIMUM_PDU_SIZE = 1 << 20
# pynetdicom does the TLS handshake in the thread that accepts connections: a peer that connects and
# says nothing would otherwise hold every other connection, and the stop, for as long as it likes.
TLS_HANDSHAKE_TIMEOUT_S = 10.0
# What DicomIntakeStats counts besides the instances stored.
EVENTS = ("echoes", "not_understood", "storage_failures", "refused_while_stopping", "refused_associations")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DicomListenerConfig:
    """Where the service listens, under which AE title, and whom it serves."""

    host: str = DEFAULT_HOST
    port: int = 11112
    ae_title: str = "MEDASSETS"
    tls: TlsFiles | None = None
    allow: PeerAllowList = field(default_factory=PeerAllowList)
    calling_aets: tuple[str, ...] = ()  # empty: any calling AE title
    max_associations: int = 16
    idle_timeout_s: float = 600.0  # ACSE, DIMSE and network timeouts: an idle association is closed
    shutdown_grace_s: float = 10.0  # after the stop, how long open associations may take to finish


class DicomIntakeStats:
    """What the service received since it started, per calling AE title (as its landing folder names
    it): instances stored and their bytes, and counts of refusals. Safe to read while it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instances: Counter[str] = Counter()
        self._bytes: Counter[str] = Counter()
        self._events: Counter[str] = Counter()

    def stored(self, sender: str, size: int) -> None:
        with self._lock:
            self._instances[sender] += 1
            self._bytes[sender] += size

    def count(self, event: str) -> None:
        with self._lock:
            self._events[event] += 1

    def snapshot(self) -> dict:
        """{"instances": {sender: n}, "bytes": {sender: n}, "echoes": n, "not_understood": n,
        "storage_failures": n, "refused_while_stopping": n, "refused_associations": n}."""
        with self._lock:
            counts = {event: self._events[event] for event in EVENTS}
            return {"instances": dict(self._instances), "bytes": dict(self._bytes), **counts}

    def summary(self) -> str:
        counts = self.snapshot()
        senders = ", ".join(f"{sender}: {n}" for sender, n in sorted(counts["instances"].items())) or "none"
        megabytes = sum(counts["bytes"].values()) / 1e6
        events = ", ".join(f"{counts[event]} {event.replace('_', ' ')}" for event in EVENTS)
        return f"{sum(counts['instances'].values())} instances stored ({megabytes:.1f} MB) from senders {senders}; {events}"


def serve_dicom(
    config: DicomListenerConfig,
    landing: Location,
    stop: threading.Event,
    ready: Callable[[str, int], None] | None = None,
    stats: DicomIntakeStats | None = None,
) -> None:
    """Run the storage service until `stop` is set, then let open associations finish and return.

    `ready(host, port)` is called once the port listens (port 0 asks for a free one). After the
    stop no association is accepted and a C-STORE already being stored completes; a new one is
    answered Out of Resources, so each sender ends its association soon. Associations still open
    `shutdown_grace_s` later are aborted: what was not confirmed, the sender sends again.
    """
    stats = stats if stats is not None else DicomIntakeStats()
    service = _StorageService(config, landing, stats)
    ae = _application_entity(config)
    ssl_context = _tls_context(config.tls) if config.tls else None
    try:
        server = ae.start_server(
            (config.host, config.port), block=False, ssl_context=ssl_context, evt_handlers=service.handlers()
        )
    except OSError as error:
        raise ListenerConfigurationError(
            f"--host/--port: cannot listen on {config.host}:{config.port} ({error.strerror or error})"
        ) from None
    host, port = server.server_address[:2]
    log.info(
        "DICOM storage service %s on %s:%d: peers %s; calling AE titles %s; at most %d associations",
        config.ae_title,
        host,
        port,
        config.allow.describe(),
        ", ".join(config.calling_aets) or "any",
        config.max_associations,
    )
    try:
        if ready is not None:
            ready(host, port)
        while not stop.wait(1.0):
            pass
    finally:
        service.stopping.set()
        server.shutdown()
        _finish_associations(server, config.shutdown_grace_s)
        log.info("DICOM storage service %s stopped: %s", config.ae_title, stats.summary())


class _StorageService:
    """The event handlers of one running service, and what they share."""

    def __init__(self, config: DicomListenerConfig, landing: Location, stats: DicomIntakeStats):
        self.config = config
        self.landing = landing
        self.stats = stats
        self.stopping = threading.Event()

    def handlers(self) -> list:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_REJECTED, self.on_rejected),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
        ]

    def on_requested(self, event: evt.Event) -> None:
        """Refuse a peer outside the allow-list, as pynetdicom itself refuses a calling AE title:
        with an A-ASSOCIATE-RJ before anything is negotiated."""
        assoc = event.assoc
        address = assoc.requestor.address
        if self.stopping.is_set():
            reason, result = "the service is stopping", 0x02  # transient: try again later
        elif not self.config.allow.allows(address):
            reason, result = f"its address is not in the peer allow-list ({self.config.allow.describe()})", 0x01
        else:
            return
        sender = sender_folder(str(assoc.requestor.primitive.calling_ae_title or ""))
        log.warning("refused an association from %s (calling AE %s): %s", address, sender, reason)
        self.stats.count("refused_associations")
        assoc.acse.send_reject(result, 0x01, 0x01)  # source: service user; reason: none given
        assoc.kill()  # as pynetdicom does after its own rejections: waits until the reject is sent

    def on_rejected(self, event: evt.Event) -> None:
        """pynetdicom refused the association: a calling AE title not allowed, or too many associations."""
        requestor = event.assoc.requestor
        title = str(requestor.ae_title or "").strip()
        if self.config.calling_aets and title not in {allowed.strip() for allowed in self.config.calling_aets}:
            reason = "its calling AE title is not allowed"
        else:
            reason = f"{self.config.max_associations} associations are open already"
        log.warning("refused an association from %s (calling AE %s): %s", requestor.address, sender_folder(title), reason)
        self.stats.count("refused_associations")

    def on_echo(self, event: evt.Event) -> int:
        self.stats.count("echoes")
        return SUCCESS

    def on_store(self, event: evt.Event) -> int:
        sop_class = UID(str(event.request.AffectedSOPClassUID or ""))
        sender = sender_folder(str(event.assoc.requestor.ae_title or ""))
        if self.stopping.is_set():
            self.stats.count("refused_while_stopping")
            return OUT_OF_RESOURCES
        try:
            return self._store(event, sender, sop_class)
        except Exception as error:  # a fault of ours: the sender must still keep the instance
            log.error("could not store a %s instance from %s: unexpected %s", sop_class.name, sender, type(error).__name__)
            self.stats.count("storage_failures")
            return OUT_OF_RESOURCES

    def _store(self, event: evt.Event, sender: str, sop_class: UID) -> int:
        data = event.encoded_dataset()
        transfer_syntax = UID(event.context.transfer_syntax)
        try:
            study = study_instance_uid(event.request.DataSet, transfer_syntax)
        except DatasetNotUnderstood as problem:
            log.warning("refused a %s instance (%d bytes) from %s: %s", sop_class.name, len(data), sender, problem)
            self.stats.count("not_understood")
            return CANNOT_UNDERSTAND
        instance = str(event.request.AffectedSOPInstanceUID or "")
        relative_path = landing_path(str(event.assoc.requestor.ae_title or ""), study, instance)
        try:
            folder.deliver(self.landing, relative_path, data, durable=True)
        except Exception as error:
            log.error(
                "could not store a %s instance (%d bytes) from %s: %s; answered Out of Resources, so it comes again",
                sop_class.name,
                len(data),
                sender,
                _failure(error),
            )
            self.stats.count("storage_failures")
            return OUT_OF_RESOURCES
        self.stats.stored(sender, len(data))
        return SUCCESS


def _application_entity(config: DicomListenerConfig) -> AE:
    try:
        ae = AE(ae_title=config.ae_title)
    except ValueError as error:
        raise ListenerConfigurationError(f"--ae-title: {error}") from None
    try:
        ae.require_calling_aet = list(config.calling_aets)
    except ValueError as error:
        raise ListenerConfigurationError(f"--allow-calling-ae: {error}") from None
    ae.maximum_associations = config.max_associations
    ae.acse_timeout = config.idle_timeout_s
    ae.dimse_timeout = config.idle_timeout_s
    ae.network_timeout = config.idle_timeout_s
    ae.maximum_pdu_size = MAXIMUM_PDU_SIZE
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, list(TRANSFER_SYNTAXES))
    ae.add_supported_context(Verification)
    return ae


def _tls_context(files: TlsFiles) -> ssl.SSLContext:
    context = server_tls_context(files)
    context.sslsocket_class = _SocketWithHandshakeTimeout
    return context


class _SocketWithHandshakeTimeout(ssl.SSLSocket):
    """A server-side TLS socket whose handshake gives up after TLS_HANDSHAKE_TIMEOUT_S."""

    def do_handshake(self, block: bool = False) -> None:
        previous = self.gettimeout()
        self.settimeout(TLS_HANDSHAKE_TIMEOUT_S)
        try:
            super().do_handshake(block)
        finally:
            self.settimeout(previous)


def _finish_associations(server, grace_s: float) -> None:
    deadline = time.monotonic() + grace_s
    for assoc in server.active_associations:
        assoc.join(max(0.0, deadline - time.monotonic()))
    still_open = server.active_associations
    for assoc in still_open:
        assoc.abort()
    if still_open:
        log.warning(
            "aborted %d associations still open %.0f s after the stop; their senders send again what was not confirmed",
            len(still_open),
            grace_s,
        )


def _failure(error: Exception) -> str:
    """The kind of failure, without the path (it names a study and an instance)."""
    code = getattr(error, "errno", None)
    if isinstance(error, OSError) and code:
        return f"{type(error).__name__} ({errno.errorcode.get(code, code)}: {os.strerror(code)})"
    return type(error).__name__

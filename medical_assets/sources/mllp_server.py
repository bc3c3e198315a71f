"""The MLLP listener: HL7 v2 messages over TCP (optionally TLS) into the HL7 landing folder, acknowledged once on disk.

Each connection is served in order, one message at a time, as an MLLP sender waits for the ACK
of one message before it sends the next; connections run concurrently and their appends share
the spool's group commit. A message is acknowledged (AA, or CA in enhanced mode) only after
`HL7Spool.append` returned, so what the sender forgets is on disk; a storage failure is answered
AR (CR) and the sender keeps the message queued. Logs name peers and count messages; they never
hold message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from medical_assets.sources.hl7_acks import (
    ACCEPTED,
    ERROR,
    MESSAGE_TOO_LARGE,
    NOT_STORED,
    REJECTED,
    acknowledgement,
    from_header,
    read_header,
)
from medical_assets.sources.hl7_spool import HL7Spool, SpoolError
from medical_assets.sources.mllp_framing import Frame, FrameDecoder, FrameTooLarge, FramingError, encode_frame
from medical_assets.sources.network import (
    DEFAULT_HOST,
    ListenerConfigurationError,
    PeerAllowList,
    TlsFiles,
    server_tls_context,
)
from medical_assets.storage import Location

log = logging.getLogger(__name__)

READ_BYTES = 64 * 1024
TLS_HANDSHAKE_TIMEOUT_S = 30.0
# At stop, how long a connection may take to finish the message it is storing and send its ACK.
FINISH_TIMEOUT_S = 30.0
_CLOSE = object()  # what `_answer` returns for a frame that ends the connection instead of an ACK


@dataclass(frozen=True)
class MllpConfig:
    """Where the listener binds, who may connect, and its limits; segment settings go to the spool."""

    host: str = DEFAULT_HOST
    port: int = 2575  # IANA's port for HL7 over MLLP; 0 picks a free one
    listener: str = "mllp"  # the feed's name: its files land in mllp/<listener>/
    tls: TlsFiles | None = None
    allow: PeerAllowList = PeerAllowList()
    max_connections: int = 64
    max_frame_bytes: int = 4 * 2**20
    idle_timeout_s: float = 600.0
    max_segment_bytes: int = 64 * 2**20
    max_segment_age_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_frame_bytes", "idle_timeout_s", "max_segment_bytes", "max_segment_age_s"):
            if not getattr(self, name) > 0:
                raise ListenerConfigurationError(f"{name} must be positive, not {getattr(self, name)!r}")


async def serve_hl7(
    config: MllpConfig, landing: Location, stop: asyncio.Event, ready: Callable[[str, int], None] | None = None
) -> None:
    """Receive HL7 over MLLP into `landing` until `stop` is set.

    The spool recovers what a previous run left before the first connection is served; `ready`
    is called with the host and the port actually bound once connections are accepted. At stop,
    no new connection is accepted, messages being stored are stored and acknowledged, every
    connection is closed, and the spool rolls its open segment into the landing folder."""
    tls = server_tls_context(config.tls) if config.tls else None
    try:
        spool = HL7Spool(
            landing, config.listener, max_segment_bytes=config.max_segment_bytes, max_segment_age_s=config.max_segment_age_s
        )
    except ValueError as error:  # a landing folder not on a local disk, or a listener name that cannot be a folder
        raise ListenerConfigurationError(str(error)) from None
    listening = _listening_socket(config.host, config.port)
    try:
        await spool.start()
    except BaseException as error:
        listening.close()
        if isinstance(error, SpoolError):  # e.g. the same listener already running on this landing folder
            raise ListenerConfigurationError(str(error)) from None
        raise
    server = _Server(config, spool, tls)
    accepting = asyncio.create_task(server.accept(listening))
    stopping = asyncio.create_task(stop.wait())
    try:
        port = listening.getsockname()[1]
        log.info(
            "MLLP listener %r on %s:%d%s: peers %s, at most %d connections, frames up to %d bytes",
            config.listener,
            config.host,
            port,
            " with TLS" if tls else "",
            config.allow.describe(),
            config.max_connections,
            config.max_frame_bytes,
        )
        if ready is not None:
            ready(config.host, port)
        await asyncio.wait({accepting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if accepting.done():
            accepting.result()  # the accept loop only ends by failing: say why
    finally:
        accepting.cancel()
        stopping.cancel()
        listening.close()
        await server.close()
        await spool.close()
        log.info("MLLP listener %r stopped after %d connections", config.listener, server.connections_served)


@dataclass(eq=False)
class _Connection:
    peer: str
    sock: socket.socket
    task: asyncio.Task | None = None
    waiting_for_data: bool = True  # safe to cancel: no message is being stored or acknowledged
    counts: dict[str, int] = field(
        default_factory=lambda: {"messages": 0, "stored": 0, "duplicates": 0, "errors": 0, "rejected": 0, "too_large": 0}
    )


class _Server:
    def __init__(self, config: MllpConfig, spool: HL7Spool, tls: ssl.SSLContext | None) -> None:
        self.config = config
        self.spool = spool
        self.tls = tls
        self.connections: set[_Connection] = set()
        self.connections_served = 0
        self.stopping = False

    async def accept(self, listening: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, address = await loop.sock_accept(listening)
            except OSError as error:  # e.g. out of file descriptors: keep serving the open connections
                log.warning("MLLP listener: cannot accept a connection (%s); retrying", type(error).__name__)
                await asyncio.sleep(0.5)
                continue
            self._admit(sock, address)

    def _admit(self, sock: socket.socket, address: tuple) -> None:
        """Refusals happen here, before any byte is read or a TLS handshake is spent on the peer."""
        peer = _describe(address)
        if self.stopping:
            sock.close()
        elif not self.config.allow.allows(address[0]):
            log.warning("MLLP: refused %s: not in the peer allow-list (%s)", peer, self.config.allow.describe())
            sock.close()
        elif len(self.connections) >= self.config.max_connections:
            log.warning("MLLP: refused %s: %d connections open, the limit", peer, len(self.connections))
            sock.close()
        else:
            connection = _Connection(peer, sock)
            self.connections.add(connection)
            self.connections_served += 1
            connection.task = asyncio.create_task(self._serve(connection))

    async def close(self) -> None:
        """Stop every connection: those waiting for data at once, those storing a message once it is acknowledged."""
        self.stopping = True
        for connection in self.connections:
            if connection.waiting_for_data and connection.task is not None:
                connection.task.cancel()
        tasks = [connection.task for connection in self.connections if connection.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=FINISH_TIMEOUT_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for connection in list(self.connections):  # cancelled before their task ever ran
            connection.sock.close()
        self.connections.clear()

    async def _serve(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        writer: asyncio.StreamWriter | None = None
        try:
            reader = asyncio.StreamReader(limit=READ_BYTES)
            protocol = asyncio.StreamReaderProtocol(reader)
            try:
                transport, _ = await loop.connect_accepted_socket(
                    lambda: protocol,
                    connection.sock,
                    ssl=self.tls,
                    ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S if self.tls else None,
                )
            except (OSError, ssl.SSLError, TimeoutError) as error:
                log.warning("MLLP: %s: connection not established (%s)", connection.peer, type(error).__name__)
                return
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            log.info("MLLP: %s connected (%d open)", connection.peer, len(self.connections))
            await self._converse(connection, reader, writer)
        except (ConnectionError, OSError) as error:
            log.info("MLLP: %s: connection lost (%s)", connection.peer, type(error).__name__)
        except Exception:  # one connection's failure must not stop the others, nor go unnoticed
            log.exception("MLLP: %s: unexpected failure; closing the connection", connection.peer)
        finally:
            self.connections.discard(connection)
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 5.0)
            connection.sock.close()
            log.info(
                "MLLP: %s disconnected: %s", connection.peer, ", ".join(f"{n} {name}" for name, n in connection.counts.items())
            )

    async def _converse(self, connection: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder(self.config.max_frame_bytes)
        while not self.stopping:
            connection.waiting_for_data = True
            try:
                async with asyncio.timeout(self.config.idle_timeout_s):
                    data = await reader.read(READ_BYTES)
            except TimeoutError:
                log.info("MLLP: %s idle for %g s: closing", connection.peer, self.config.idle_timeout_s)
                return
            connection.waiting_for_data = False
            if not data:
                if decoder.in_frame:
                    log.info("MLLP: %s closed the connection in the middle of a frame", connection.peer)
                return
            try:
                for event in decoder.feed(data):
                    if self.stopping:
                        return  # frames not yet started stay unacknowledged: the sender sends them again
                    reply = await self._answer(connection, event)
                    if reply is _CLOSE:
                        return
                    if reply is not None:
                        writer.write(encode_frame(reply))
                        await writer.drain()
            except FramingError as error:
                log.warning("MLLP: %s: %s: closing", connection.peer, error)
                return
            if decoder.abandoned_frames:
                log.info("MLLP: %s started %d frames anew before ending them", connection.peer, decoder.abandoned_frames)
                decoder.abandoned_frames = 0

    async def _answer(self, connection: _Connection, event: Frame | FrameTooLarge) -> bytes | object | None:
        """The ACK for one frame (None when the sender asked for none), or _CLOSE."""
        counts = connection.counts
        if isinstance(event, FrameTooLarge):
            header = read_header(event.head)
            if header.problem is not None:
                log.warning("MLLP: %s sent a frame over %d bytes with no readable MSH: closing", connection.peer, event.limit)
                return _CLOSE
            counts["too_large"] += 1
            log.warning("MLLP: %s sent a frame over %d bytes: rejected", connection.peer, event.limit)
            return acknowledgement(header, REJECTED, MESSAGE_TOO_LARGE)
        counts["messages"] += 1
        message = from_header(event.message)
        header = read_header(message)
        if header.problem is not None:
            counts["errors"] += 1
            log.info("MLLP: %s sent a message that cannot be read (HL7 error %d)", connection.peer, header.problem.code)
            return acknowledgement(header, ERROR, header.problem)
        try:
            stored = await self.spool.append(message, header.sender)
        except (SpoolError, OSError) as error:
            counts["rejected"] += 1
            log.error("MLLP: a message from %s could not be stored (%s): rejected", connection.peer, type(error).__name__)
            return acknowledgement(header, REJECTED, NOT_STORED)
        counts["stored" if stored else "duplicates"] += 1
        return acknowledgement(header, ACCEPTED)


def _listening_socket(host: str, port: int) -> socket.socket:
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        listening = socket.create_server(address, family=family, backlog=128)
    except OSError as error:
        raise ListenerConfigurationError(
            f"--host/--port: cannot listen on {host}:{port} ({error.strerror or type(error).__name__})"
        ) from None
    listening.setblocking(False)
    return listening


def _describe(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

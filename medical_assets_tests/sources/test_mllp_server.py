"""The MLLP listener end to end: python-hl7's clients (asyncio and `mllp_send`) and raw sockets on 127.0.0.1,
the real spool underneath, and the landed segments read back by our HL7 parser."""

import asyncio
import contextlib
import logging
import resource
import ssl
import subprocess
import sys
from pathlib import Path

import hl7
import pytest
from hl7.mllp import open_hl7_connection

from medical_assets.hl7 import parse_hl7_file
from medical_assets.sources.mllp_server import MllpConfig, serve_hl7
from medical_assets.sources.network import ListenerConfigurationError, PeerAllowList
from medical_assets.storage import resolve_location
from medical_assets_tests.sources.certificates import self_signed_certificate

SERVER_LOG = "medical_assets.sources.mllp_server"


def message(control_id: str, sender: str = "ADT", ending: str = "\r", msh15_16: str = "") -> bytes:
    segments = [
        f"MSH|^~\\&|{sender}|GH|EMR|CARD|20240305083000||ADT^A01^ADT_A01|{control_id}|P|2.5{msh15_16}",
        "EVN|A01|20240305083000",
        f"PID|1||{control_id}^^^GH^MR||DOE^JANE",
    ]
    return (ending.join(segments) + ending).encode()


def run(scenario, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(scenario, timeout))


@contextlib.asynccontextmanager
async def listening(landing: Path, stop: asyncio.Event | None = None, **settings):
    """serve_hl7 on an ephemeral port; stopped (and awaited) on the way out, or by setting `stop`."""
    stop = stop or asyncio.Event()
    bound = asyncio.get_running_loop().create_future()
    config = MllpConfig(port=0, **settings)
    server = asyncio.create_task(
        serve_hl7(config, resolve_location(str(landing)), stop, ready=lambda host, port: bound.set_result(port))
    )
    await asyncio.wait({bound, server}, return_when=asyncio.FIRST_COMPLETED, timeout=10)
    if server.done():
        server.result()
    try:
        yield bound.result()
    finally:
        stop.set()
        await asyncio.wait_for(server, 15)


async def connect(port: int, **options):
    return await open_hl7_connection("127.0.0.1", port, **options)


async def ack(reader) -> hl7.Message:
    block = await asyncio.wait_for(reader.readblock(), 5)
    return hl7.parse(block.decode("latin-1"))


def msa(acknowledgement: hl7.Message) -> tuple[str, str]:
    segment = acknowledgement.segment("MSA")
    return str(segment[1]), str(segment[2])


async def closed_by_server(reader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        return True


def landed(landing: Path, listener: str = "mllp") -> list[str]:
    """Control ids of every message in the rolled segments, read by the pipeline's parser."""
    control_ids = []
    for path in sorted((landing / "mllp" / listener).glob("*/*.hl7")):
        parsed = parse_hl7_file(path.read_bytes(), path.name)
        assert parsed.errors.num_rows == 0
        control_ids += parsed.messages.column("message_control_id").to_pylist()
    return control_ids


def test_messages_over_several_connections_land_once_each_in_rolled_segments(tmp_path):
    async def sender(port: int, number: int) -> list[str]:
        reader, writer = await connect(port)
        acknowledged = []
        for index in range(60):
            writer.writemessage(hl7.parse(message(f"C{number}-{index}", sender=f"ADT{number}").decode()))
            await writer.drain()
            code, control_id = msa(await ack(reader))
            assert code == "AA"
            acknowledged.append(control_id)
        writer.close()
        return acknowledged

    async def scenario():
        async with listening(tmp_path, max_segment_bytes=8192) as port:
            results = await asyncio.gather(*(sender(port, number) for number in range(5)))
        return [control_id for result in results for control_id in result]

    acknowledged = run(scenario())

    expected = [f"C{number}-{index}" for number in range(5) for index in range(60)]
    assert sorted(acknowledged) == sorted(expected)
    assert sorted(landed(tmp_path)) == sorted(expected)
    assert len(list((tmp_path / "mllp" / "mllp").glob("*/*.hl7"))) >= 3  # rolled by size while sending, and at stop
    assert not list((tmp_path / "_mllp" / "mllp" / "open").glob("*.hl7"))


def test_mllp_send_console_command(tmp_path):
    feed = tmp_path / "feed.hl7"
    feed.write_bytes(b"".join(b"\x0b" + message(f"S{index}") + b"\x1c\r" for index in range(20)))
    mllp_send = Path(sys.executable).parent / "mllp_send"
    landing = tmp_path / "landing"

    async def scenario():
        async with listening(landing) as port:
            process = await asyncio.create_subprocess_exec(
                str(mllp_send), "--file", str(feed), "--port", str(port), "127.0.0.1", stdout=subprocess.PIPE
            )
            output, _ = await process.communicate()
            assert process.returncode == 0
            return output

    output = run(scenario())

    acks = [hl7.parse(line.strip(b"\x0b\x1c\r").decode()) for line in output.split(b"\x1c\r") if line.strip()]
    assert [msa(acknowledgement) for acknowledgement in acks] == [("AA", f"S{index}") for index in range(20)]
    assert landed(landing) == [f"S{index}" for index in range(20)]


def test_frames_split_across_reads_and_coalesced_in_one_read_with_any_line_ending(tmp_path):
    async def scenario():
        async with listening(tmp_path) as port:
            reader, writer = await connect(port)
            first = b"\x0b" + message("SPLIT") + b"\x1c\r"
            for start in range(0, len(first), 7):  # seven bytes per TCP segment
                writer.write(first[start : start + 7])
                await writer.drain()
                await asyncio.sleep(0.002)
            assert msa(await ack(reader)) == ("AA", "SPLIT")
            burst = [message(f"BURST{index}", ending=ending) for index, ending in enumerate(("\n", "\r\n", "\r"))]
            writer.write(b"\r\n".join(b"\x0b" + one + b"\x1c\r" for one in burst))  # one write, stray bytes between
            codes = [msa(await ack(reader)) for _ in range(3)]
            writer.close()
            return codes

    assert run(scenario()) == [("AA", f"BURST{index}") for index in range(3)]
    assert landed(tmp_path) == ["SPLIT", "BURST0", "BURST1", "BURST2"]  # the parser reads every line ending back


def test_ack_fields_and_errors_for_a_message_without_a_control_id(tmp_path):
    async def scenario():
        async with listening(tmp_path) as port:
            reader, writer = await connect(port)
            writer.writeblock(message("CTRL42", sender="REGADT"))
            accepted = await ack(reader)
            writer.writeblock(message(""))
            error = await ack(reader)
            writer.writeblock(b"PID|1||123^^^GH^MR\r")
            no_header = await ack(reader)
            writer.close()
            return accepted, error, no_header

    accepted, error, no_header = run(scenario())

    header = accepted.segment("MSH")
    assert msa(accepted) == ("AA", "CTRL42")
    assert [str(header[n]) for n in (3, 4, 5, 6, 9, 11, 12)] == ["EMR", "CARD", "REGADT", "GH", "ACK^A01^ACK", "P", "2.5"]
    assert str(header[10]) not in ("", "CTRL42")
    assert msa(error) == ("AE", "")
    assert str(error.segment("ERR")[3]) == "101^Required field missing^HL70357"
    assert msa(no_header)[0] == "AE" and str(no_header.segment("ERR")[3]).startswith("100^")
    assert landed(tmp_path) == ["CTRL42"]  # a message that cannot be read is answered, not landed


def test_enhanced_mode_commit_acks(tmp_path):
    async def scenario():
        async with listening(tmp_path) as port:
            reader, writer = await connect(port)
            writer.writeblock(message("ENH1", msh15_16="|||AL|NE"))
            first = msa(await ack(reader))
            writer.writeblock(message("ENH2", msh15_16="|||NE|AL"))  # no commit ACK asked for
            writer.writeblock(message("ENH3", msh15_16="|||ER|AL"))  # only on error
            writer.writeblock(message("ENH4", msh15_16="|||SU|AL"))
            next_one = msa(await ack(reader))
            writer.close()
            return first, next_one

    assert run(scenario()) == (("CA", "ENH1"), ("CA", "ENH4"))
    assert landed(tmp_path) == ["ENH1", "ENH2", "ENH3", "ENH4"]


def test_a_duplicate_is_acknowledged_and_lands_once(tmp_path):
    async def scenario():
        async with listening(tmp_path) as port:
            codes = []
            for _ in range(2):  # the second connection re-sends, as after a lost ACK
                reader, writer = await connect(port)
                for control_id in ("DUP1", "DUP1", "DUP2"):
                    writer.writeblock(message(control_id))
                    codes.append(msa(await ack(reader)))
                writer.close()
            return codes

    assert run(scenario()) == [("AA", "DUP1"), ("AA", "DUP1"), ("AA", "DUP2")] * 2
    assert landed(tmp_path) == ["DUP1", "DUP2"]


def test_a_storage_failure_is_rejected_and_the_resent_message_lands(tmp_path):
    """The disk refuses the write (the file-size limit, as a full quota would): AR, and the sender keeps the message."""

    async def scenario():
        async with listening(tmp_path) as port:
            reader, writer = await connect(port)
            big = message("BIG").replace(b"DOE^JANE", b"DOE^JANE" + b"X" * 4000)
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (2048, hard))
            try:
                writer.writeblock(big)
                refused = await ack(reader)
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            writer.writeblock(big)
            accepted = msa(await ack(reader))
            writer.close()
            return refused, accepted

    refused, accepted = run(scenario())

    assert msa(refused) == ("AR", "BIG")
    assert str(refused.segment("ERR")[3]).startswith("207^")
    assert accepted == ("AA", "BIG")
    assert landed(tmp_path) == ["BIG"]


def test_an_oversized_frame_is_refused(tmp_path):
    huge = message("HUGE").replace(b"DOE^JANE", b"DOE^JANE" + b"X" * 10_000)

    async def scenario():
        async with listening(tmp_path, max_frame_bytes=4096) as port:
            reader, writer = await connect(port)
            writer.writeblock(huge)
            refused = msa(await ack(reader))
            writer.writeblock(message("SMALL"))  # the connection is still in step
            after = msa(await ack(reader))
            unreadable_reader, unreadable = await connect(port)
            unreadable.writeblock(b"x" * 10_000)
            closed = await closed_by_server(unreadable_reader)
            writer.close()
            return refused, after, closed

    assert run(scenario()) == (("AR", "HUGE"), ("AA", "SMALL"), True)
    assert landed(tmp_path) == ["SMALL"]


def test_idle_connections_and_streams_that_are_not_mllp_are_closed(tmp_path):
    async def scenario():
        async with listening(tmp_path, idle_timeout_s=0.3, max_frame_bytes=1024) as port:
            idle_reader, _ = await connect(port)
            started = asyncio.get_running_loop().time()
            idle_closed = await closed_by_server(idle_reader)
            waited = asyncio.get_running_loop().time() - started
            http_reader, http = await connect(port)
            http.write(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n" * 40)
            return idle_closed, waited, await closed_by_server(http_reader)

    idle_closed, waited, http_closed = run(scenario())
    assert idle_closed and 0.2 < waited < 3
    assert http_closed


def test_peers_outside_the_allow_list_are_refused_and_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=SERVER_LOG)

    async def scenario():
        async with listening(tmp_path, allow=PeerAllowList.parse(["10.20.30.0/24"])) as port:
            reader, writer = await connect(port)
            writer.writeblock(message("NOPE"))
            return await closed_by_server(reader)

    assert run(scenario())
    assert any("refused 127.0.0.1" in record.getMessage() for record in caplog.records)
    assert landed(tmp_path) == []


def test_connections_beyond_the_limit_are_closed_at_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=SERVER_LOG)

    async def scenario():
        async with listening(tmp_path, max_connections=2) as port:
            open_ones = [await connect(port) for _ in range(2)]
            for number, (reader, writer) in enumerate(open_ones):
                writer.writeblock(message(f"LIM{number}"))
                assert msa(await ack(reader)) == ("AA", f"LIM{number}")
            third_reader, _ = await connect(port)
            refused = await closed_by_server(third_reader)
            open_ones[0][1].close()
            await closed_by_server(open_ones[0][0])
            for _ in range(100):  # the server notices the close within a few loop turns
                reader, writer = await connect(port)
                writer.writeblock(message("LIM2"))
                try:
                    return refused, msa(await ack(reader))
                except asyncio.IncompleteReadError:
                    await asyncio.sleep(0.02)
            return refused, None

    assert run(scenario()) == (True, ("AA", "LIM2"))
    assert any("connections open, the limit" in record.getMessage() for record in caplog.records)


def test_tls_with_a_self_signed_certificate(tmp_path):
    tls = self_signed_certificate(tmp_path / "tls")
    client = ssl.create_default_context(cafile=tls.certificate)

    async def scenario():
        async with listening(tmp_path / "landing", tls=tls) as port:
            reader, writer = await connect(port, ssl=client, server_hostname="localhost")
            writer.writeblock(message("TLS1"))
            accepted = msa(await ack(reader))
            writer.close()
            plain_reader, plain = await connect(port)  # a sender without TLS gets no ACK
            plain.writeblock(message("PLAIN"))
            return accepted, await closed_by_server(plain_reader)

    assert run(scenario()) == (("AA", "TLS1"), True)
    assert landed(tmp_path / "landing") == ["TLS1"]


def test_stop_in_the_middle_of_a_stream_keeps_every_acknowledged_message(tmp_path):
    """Senders keep sending while the stop event is set: all they were told AA is landed, once, and serve_hl7 returns."""

    async def sender(port: int, number: int, acknowledged: list[str]) -> None:
        reader, writer = await connect(port)
        for index in range(2000):
            writer.writeblock(message(f"STOP{number}-{index}"))
            try:
                code, control_id = msa(await ack(reader))
            except (asyncio.IncompleteReadError, ConnectionResetError):
                return  # closed by the stop: this message was not acknowledged
            assert code == "AA"
            acknowledged.append(control_id)

    async def scenario():
        stop = asyncio.Event()
        acknowledged: list[str] = []
        async with listening(tmp_path, stop, max_segment_age_s=3600) as port:
            senders = [asyncio.create_task(sender(port, number, acknowledged)) for number in range(4)]
            while len(acknowledged) < 200:
                await asyncio.sleep(0.005)
            assert landed(tmp_path) == []  # still in the open segment
            stop.set()
        await asyncio.wait_for(asyncio.gather(*senders), 5)  # serve_hl7 returned, and closed every connection
        return acknowledged

    acknowledged = run(scenario())

    control_ids = landed(tmp_path)
    assert len(control_ids) == len(set(control_ids))
    assert sorted(control_ids) == sorted(acknowledged)  # a message being stored at the stop is stored and acknowledged
    assert not list((tmp_path / "_mllp" / "mllp" / "open").glob("*.hl7"))


def test_settings_that_cannot_work_are_configuration_errors(tmp_path):
    async def second_listener(**settings):
        await serve_hl7(MllpConfig(**settings), resolve_location(str(tmp_path)), asyncio.Event())

    async def scenario():
        async with listening(tmp_path) as port:
            with pytest.raises(ListenerConfigurationError, match="already running"):
                await second_listener(port=0)  # the same listener on the same landing folder
            with pytest.raises(ListenerConfigurationError, match="cannot listen"):
                await second_listener(port=port, listener="other")
            with pytest.raises(ListenerConfigurationError, match="listener name"):
                await second_listener(port=0, listener="../up")

    run(scenario())
    with pytest.raises(ListenerConfigurationError, match="max_frame_bytes"):
        MllpConfig(max_frame_bytes=0)

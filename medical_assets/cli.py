"""`medical-assets`: the console command of the live intake (`listen hl7`, `listen dicom`).

Each listener writes into the landing folder the pipeline reads (MEDICAL_ASSETS_HL7_SOURCE /
MEDICAL_ASSETS_DICOM_SOURCE when set, else `landing/hl7` and `landing/dicom` under
MEDICAL_ASSETS_DATA_DIR) and acknowledges only what is on disk. It runs until SIGTERM or SIGINT,
then finishes what is in flight, rolls the open segment into the landing folder and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from medical_assets.config import ConfigurationError, load_settings
from medical_assets.sources.network import (
    DEFAULT_HOST,
    ListenerConfigurationError,
    PeerAllowList,
    TlsFiles,
    warn_if_not_loopback,
)

log = logging.getLogger("medical_assets.listen")

DEFAULT_HL7_PORT = 2575  # the port IANA registered for HL7 over MLLP
DEFAULT_DICOM_PORT = 11112  # the port IANA registered for DICOM (104 needs root)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # pynetdicom logs a line per instance at INFO and UIDs at DEBUG: our own log counts instead.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    try:
        if not 0 <= args.port <= 65535:  # getaddrinfo would take 70000 for 4464 without a word
            raise ListenerConfigurationError(f"--port: {args.port} is not a TCP port (0 to 65535; 0 picks a free one)")
        for option in args.positive:
            value = getattr(args, option.lstrip("-").replace("-", "_"))
            if not value > 0:
                raise ListenerConfigurationError(f"{option}: must be positive, got {value}")
        return args.run(args)
    except (ConfigurationError, ListenerConfigurationError) as error:
        print(f"medical-assets: {error}", file=sys.stderr)
        return 2


def _listen_hl7(args: argparse.Namespace) -> int:
    from medical_assets.sources.mllp_server import MllpConfig, serve_hl7

    landing = load_settings().source("hl7")
    config = MllpConfig(
        host=args.host,
        port=args.port,
        listener=args.listener,
        tls=_tls(args),
        allow=PeerAllowList.parse(args.allow_peer),
        max_connections=args.max_connections,
        max_frame_bytes=args.max_frame_bytes,
        idle_timeout_s=args.idle_timeout,
        max_segment_bytes=args.segment_bytes,
        max_segment_age_s=args.segment_age,
    )
    warn_if_not_loopback(config.host, "the HL7 MLLP listener")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_hl7(config, landing, stop, ready=_announce("HL7 MLLP listener", landing.uri, config.tls is not None))

    asyncio.run(run())
    log.info("HL7 MLLP listener stopped")
    return 0


def _listen_dicom(args: argparse.Namespace) -> int:
    from medical_assets.sources.dicom_listener import DicomListenerConfig, serve_dicom

    landing = load_settings().source("dicom")
    if not 0 < len(args.ae_title.strip()) <= 16:
        raise ListenerConfigurationError(f"--ae-title: an AE title has 1 to 16 characters, got {len(args.ae_title)}")
    config = DicomListenerConfig(
        host=args.host,
        port=args.port,
        ae_title=args.ae_title,
        tls=_tls(args),
        allow=PeerAllowList.parse(args.allow_peer),
        calling_aets=tuple(args.allow_calling_ae),
        max_associations=args.max_associations,
        idle_timeout_s=args.idle_timeout,
    )
    warn_if_not_loopback(config.host, "the DICOM storage service")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serve_dicom(config, landing, stop, ready=_announce(f"DICOM storage service {config.ae_title}", landing.uri, config.tls is not None))
    log.info("DICOM storage service stopped")
    return 0


def _announce(service: str, landing: str, tls: bool):
    def ready(host: str, port: int) -> None:
        # Tests and scripts read the port from this line when they asked for port 0.
        log.info("%s listening on %s:%d%s, writing into %s", service, host, port, " (TLS)" if tls else "", landing)

    return ready


def _tls(args: argparse.Namespace) -> TlsFiles | None:
    if not (args.tls_cert or args.tls_key):
        if args.tls_client_ca:
            raise ListenerConfigurationError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (args.tls_cert and args.tls_key):
        raise ListenerConfigurationError("TLS needs both --tls-cert and --tls-key (PEM files)")
    return TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medical-assets", description="medical-assets: live intake into the landing folders.")
    commands = parser.add_subparsers(dest="command", required=True)
    listen = commands.add_parser("listen", help="receive HL7 over MLLP or DICOM over C-STORE into the landing folder")
    kinds = listen.add_subparsers(dest="kind", required=True)

    hl7 = kinds.add_parser("hl7", help="MLLP listener: ACK only after the message is fsynced in the HL7 landing folder")
    _common(hl7, DEFAULT_HL7_PORT)
    hl7.add_argument("--listener", default="mllp", help="name of this feed: its files land in mllp/<name>/ (default: mllp)")
    hl7.add_argument("--max-connections", type=int, default=64, help="connections at once (default: 64)")
    hl7.add_argument("--max-frame-bytes", type=int, default=4 * 2**20, help="largest message accepted (default: 4 MiB)")
    hl7.add_argument("--segment-bytes", type=int, default=64 * 2**20, help="roll a landing file at this size (default: 64 MiB)")
    hl7.add_argument("--segment-age", type=float, default=60.0, help="roll a non-empty landing file after this many seconds (default: 60)")
    hl7.set_defaults(
        run=_listen_hl7,
        positive=("--idle-timeout", "--max-connections", "--max-frame-bytes", "--segment-bytes", "--segment-age"),
    )

    dicom = kinds.add_parser("dicom", help="C-STORE SCP: success only after the instance is fsynced in the DICOM landing folder")
    _common(dicom, DEFAULT_DICOM_PORT)
    dicom.add_argument("--ae-title", default="MEDASSETS", help="this service's AE title (default: MEDASSETS)")
    dicom.add_argument(
        "--allow-calling-ae", action="append", default=[], metavar="AE", help="accept associations only from these AE titles (repeatable)"
    )
    dicom.add_argument("--max-associations", type=int, default=16, help="associations at once (default: 16)")
    dicom.set_defaults(run=_listen_dicom, positive=("--idle-timeout", "--max-associations"))
    return parser


def _common(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default: {DEFAULT_HOST}; another one is logged as a warning)")
    parser.add_argument("--port", type=int, default=port, help=f"TCP port (default: {port}; 0 picks a free one)")
    parser.add_argument("--tls-cert", help="server certificate (PEM): turns TLS on, with --tls-key")
    parser.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    parser.add_argument("--tls-client-ca", help="require client certificates signed by these CAs (PEM)")
    parser.add_argument(
        "--allow-peer", action="append", default=[], metavar="NET", help="accept connections only from these addresses or networks (repeatable, or comma-separated)"
    )
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="close a connection idle this many seconds (default: 600)")


if __name__ == "__main__":
    sys.exit(main())

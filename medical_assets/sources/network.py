"""What the network listeners share: the address they bind, TLS, and which peers may connect."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("localhost",)

log = logging.getLogger(__name__)


class ListenerConfigurationError(ValueError):
    """A listener setting is wrong; the message names the setting and how to fix it."""


@dataclass(frozen=True)
class TlsFiles:
    """A server certificate and key (PEM), and optionally the CAs whose client certificates are required."""

    certificate: str
    key: str
    client_ca: str | None = None


@dataclass(frozen=True)
class PeerAllowList:
    """Addresses or networks that may connect; empty means anyone who reaches the port."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, entries: Iterable[str]) -> PeerAllowList:
        networks = []
        for entry in entries:
            for item in entry.split(","):
                item = item.strip()
                if not item:
                    continue
                try:
                    networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ListenerConfigurationError(
                        f"--allow-peer: {item!r} is not an IP address or network (e.g. 10.1.2.3 or 10.1.0.0/16)"
                    ) from None
        return cls(tuple(networks))

    def allows(self, address: str) -> bool:
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == network.version and ip in network for network in self.networks)

    def describe(self) -> str:
        return ", ".join(str(network) for network in self.networks) or "any peer"


def server_tls_context(files: TlsFiles) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or later); with `client_ca`, clients must present a certificate it signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(files.certificate, files.key)
    except (OSError, ssl.SSLError) as error:
        raise ListenerConfigurationError(
            f"--tls-cert/--tls-key: cannot load the certificate and key ({type(error).__name__}: {error})"
        ) from None
    if files.client_ca:
        try:
            context.load_verify_locations(cafile=files.client_ca)
        except (OSError, ssl.SSLError) as error:
            raise ListenerConfigurationError(
                f"--tls-client-ca: cannot load {files.client_ca} ({type(error).__name__}: {error})"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def warn_if_not_loopback(host: str, service: str) -> None:
    """A listener reachable beyond this machine is the user's explicit choice; say so in the log."""
    if host in LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    log.warning(
        "%s listens on %s, reachable from other machines: use TLS and a peer allow-list on a hospital network",
        service,
        host,
    )

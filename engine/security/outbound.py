"""Where Lockzero may send HTTP requests: dependents' webhooks, policy notify URLs and http-provider hooks.

Only http(s). Link-local and cloud-metadata addresses are never reachable (an operator who can register a
webhook must not be able to read the instance's credentials through it). Loopback, private and other
non-public addresses are refused unless ``LOCKZERO_OUTBOUND_ALLOW`` names the host or a network holding the
address. URLs are checked when registered (a clear error, nothing stored) and again on every connection:
the host is resolved once, every address is checked and the connection goes to a checked address, so a
name that answers differently the second time (DNS rebinding) cannot slip past. TLS still verifies the
certificate against the URL's host name (SNI), and the Host header is the URL's.

Stored URLs are shown redacted (``redact_url``): webhook and notify URLs often carry a token in the path or
query.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

if TYPE_CHECKING:
    import httpx


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Never reachable, whatever the allow-list says: link-local (169.254.169.254 is the AWS/GCP/Azure metadata
#: service), the other clouds' metadata addresses, "this host" and multicast/broadcast.
NEVER: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",
        "fe80::/10",
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "0.0.0.0/8",  # connecting to 0.0.0.0 reaches the local host
        "::/128",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_RESOLVE_TIMEOUT_S = 5.0


class OutboundRefused(Exception):
    """A target Lockzero will not connect to. The message names the host and the reason, never a path or query."""


class Unresolvable(OSError):
    """The name has no address (yet). The guarded transport turns it into httpx's ConnectError, like any
    connection that cannot be made."""


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…#<6 hex>``: where a URL points and which one it is, without its path or query.

    The suffix (a short hash) tells two URLs of one host apart. Idempotent: a redacted URL stays as it is.
    Userinfo is dropped too (``user:password@``)."""
    if _REDACTED.fullmatch(url):
        return url
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "(unparsable URL)"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.path in ("", "/") and not parts.query and not parts.fragment and not parts.username:
        return f"{parts.scheme}://{netloc}/"
    return f"{parts.scheme}://{netloc}/…#{hashlib.sha256(url.encode()).hexdigest()[:6]}"


# Exactly what redact_url makes (a URL that merely contains "/…#" is redacted like any other).
_REDACTED = re.compile(r"https?://[^/?#@\s]*/…#[0-9a-f]{6}")
_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>]+")


def redact_urls_in(text: str) -> str:
    """``text`` with every http(s) URL in it redacted (error messages recorded before URLs were sealed)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def _unmapped(ip: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped or NAT64 IPv6 address (both reach the IPv4 host)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _host_key(host: str) -> str:
    return host.strip().rstrip(".").lower()


@dataclass(frozen=True)
class OutboundPolicy:
    """The allow-list for non-public targets (hosts by name, networks by CIDR). Empty: public addresses only."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    _resolve_timeout_s: float = field(default=_RESOLVE_TIMEOUT_S, repr=False)

    @classmethod
    def parse(cls, text: str) -> OutboundPolicy:
        """``LOCKZERO_OUTBOUND_ALLOW``: comma list of host names, IPs and CIDRs (ValueError names a bad one)."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _host_key(item)
            labels = name.split(".")
            if "/" in item or not all(lbl and len(lbl) <= 63 and lbl.replace("-", "").isalnum() for lbl in labels):
                raise ValueError(f"{item!r} is neither a host name, an IP address nor a CIDR")
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks))

    @classmethod
    def allowing(cls, *items: str) -> OutboundPolicy:
        return cls.parse(",".join(items))

    def refusal(self, host: str, address: str) -> str | None:
        """Why ``address`` (one of ``host``'s) may not be reached, or None when it may."""
        try:
            ip = _unmapped(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return f"{host} resolved to something that is not an IP address"
        if any(ip in n for n in NEVER):
            return f"{host} is a link-local or cloud-metadata address ({ip}), which is never reachable"
        if ip.is_global:
            return None
        if _host_key(host) in self.hosts or any(ip in n for n in self.networks):
            return None
        kind = "loopback" if ip.is_loopback else "private or non-public"
        return f"{host} is a {kind} address ({ip}); allow it with LOCKZERO_OUTBOUND_ALLOW"

    def check_syntax(self, url: str, what: str) -> SplitResult:
        """Scheme and host of a target URL; OutboundRefused names ``what`` and never echoes the URL."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            raise OutboundRefused(f"{what} is not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise OutboundRefused(f"{what} must be an http:// or https:// URL")
        if not parts.hostname:
            raise OutboundRefused(f"{what} needs a host, e.g. https://svc.example/hooks/lockzero")
        if any(c.isspace() or ord(c) < 32 for c in url):
            raise OutboundRefused(f"{what} must not contain spaces or control characters")
        return parts

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, each checked; OutboundRefused if any is refused (a split answer is suspect)."""
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
                self._resolve_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            raise Unresolvable(f"cannot resolve {host} ({type(exc).__name__})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise Unresolvable(f"{host} has no address")
        for address in addresses:
            if (why := self.refusal(host, address)) is not None:
                raise OutboundRefused(why)
        return addresses

    async def check_url(self, url: str, what: str) -> None:
        """At registration: http(s), a host, and no refused address. A name that does not resolve yet passes
        (the service may come later); every connection checks again."""
        parts = self.check_syntax(url, what)
        host = parts.hostname or ""
        try:
            await self.resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        except OutboundRefused as exc:
            raise OutboundRefused(f"{what}: {exc}") from None
        except Unresolvable:
            pass

    def client(self, *, timeout: float, verify: ssl.SSLContext, follow_redirects: bool = False) -> httpx.AsyncClient:
        """An httpx client whose every connection goes through this policy."""
        # httpx costs ~0.1 s to import: only processes that send requests pay it (not every CLI command).
        import httpx

        from lockzero.engine.security.outbound_transport import GuardedTransport

        return httpx.AsyncClient(
            transport=GuardedTransport(self, verify=verify),
            timeout=timeout,
            follow_redirects=follow_redirects,
        )

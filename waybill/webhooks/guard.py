"""The SSRF guard: a webhook URL must name a public host, checked at creation and again at every delivery.

A URL is checked by resolving its host (every A and AAAA record) and refusing it when any address is private,
loopback, link-local, site-local (``fec0::/10``), multicast, reserved, unspecified, shared (CGNAT
``100.64.0.0/10``), not globally routable, a cloud metadata address (``169.254.169.254``, ``fd00:ec2::254``), or
an IPv4-mapped/-compatible IPv6 form of one of those. The delivery then connects to an address it checked
(:class:`Target`), never resolving the name again, so a DNS answer that changes between the check and the
connection (DNS rebinding) cannot point the request inward. ``WAYBILL_WEBHOOK_ALLOW_PRIVATE=1`` lifts the address
rule (development, tests, on-premises).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from waybill.errors import ValidationFailed

MAX_URL = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"),
                       ipaddress.ip_address("100.100.100.200")})  # Alibaba Cloud's metadata service
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(Exception):
    """The host resolves to an address deliveries may not reach (or does not resolve)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL's parts and the checked address to connect to."""

    scheme: str
    host: str  # the name, for the Host header and TLS SNI / certificate check
    port: int
    path: str  # path and query, as sent in the request line
    address: str  # the checked IP address the connection goes to


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached (``None``: a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        # IPv4-compatible ::a.b.c.d (deprecated) and NAT64 64:ff9b::a.b.c.d reach the embedded IPv4 address.
        if embedded is None and (address.packed[:12] == bytes(12) and int(address) > 1 or address in _NAT64):
            embedded = ipaddress.IPv4Address(address.packed[12:])
        if embedded is not None:
            inner = refusal(embedded)
            if inner is not None:
                return inner
        if address.scope_id:
            return "link_local"
    if address in _METADATA:
        return "metadata"
    checks = (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
              ("link_local", address.is_link_local), ("multicast", address.is_multicast),
              ("private", address.is_private), ("reserved", address.is_reserved),
              ("shared", isinstance(address, ipaddress.IPv4Address) and address in _SHARED),
              # fec0::/10, deprecated (RFC 3879) but still routed inside some networks; Python counts it global.
              ("site_local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
              ("not_global", not address.is_global))
    return next((name for name, hit in checks if hit), None)


def _split(url: object) -> SplitResult:
    """The URL's parts, or :class:`ValidationFailed` (field ``url``) for anything but a plain http(s) URL."""
    if not isinstance(url, str) or not 1 <= len(url) <= MAX_URL:
        raise ValidationFailed(f"url 须为 1-{MAX_URL} 个字符的 http(s) 地址", field="url")
    if any(ch.isspace() or ord(ch) < 0x21 or ord(ch) > 0x7e for ch in url):
        raise ValidationFailed("url 只能包含可见 ASCII 字符（非 ASCII 域名请用 punycode）", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationFailed("url 格式无效", field="url") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationFailed("url 须为 http 或 https 地址，并包含主机名", field="url")
    # Credentials in a URL would be a secret stored and shown in plaintext: the signature authenticates us instead.
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationFailed("url 不能包含用户名或密码", field="url")
    if parts.fragment or url.endswith("#"):
        raise ValidationFailed("url 不能包含片段（#）", field="url")
    if port == 0:
        raise ValidationFailed("url 端口无效", field="url")
    return parts


def check_url(url: object) -> str:
    """The URL, validated for its form only (scheme, length, no credentials, no fragment); field ``url``."""
    _split(url)
    assert isinstance(url, str)
    return url


def resolve(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> Target:
    """Resolve ``url``'s host and check every address; the first one is where to connect.

    Raises :class:`BlockedAddress` (``reason`` an enum-like code). ``allow_private`` skips the address rule.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = list(resolver(host, port))
        except (OSError, UnicodeError):
            raise BlockedAddress("unresolvable") from None
    if not addresses:
        raise BlockedAddress("unresolvable")
    if not allow_private:
        for raw in addresses:
            try:
                why = refusal(ipaddress.ip_address(raw))
            except ValueError:
                why = "unparsable"
            if why is not None:
                raise BlockedAddress(why)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme=parts.scheme, host=host, port=port, path=path, address=addresses[0])


def check_public(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
    """At creation: :class:`ValidationFailed` (field ``url``) when the host resolves to an address refused above."""
    try:
        resolve(url, allow_private=allow_private, resolver=resolver)
    except BlockedAddress as exc:
        message = "url 的主机名无法解析" if exc.reason == "unresolvable" else \
            "url 指向内网、回环、链路本地或元数据地址，不允许作为 webhook"
        raise ValidationFailed(message, field="url") from None

"""The client's address: the socket peer, or what trusted proxies say it is.

``X-Forwarded-For`` is believed only from a socket peer inside ``WAYBILL_TRUSTED_PROXIES`` (address ranges, not
a hop count as ProxyFix trusts): the header is read from the right, skipping every address that is itself a
trusted proxy, and the first other address is the client. Anything unparsable stops the walk at the last
trusted hop, so a client cannot choose its own address by sending the header itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def resolve_client(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str | None:
    """The client address for a request from ``peer`` carrying ``forwarded_for``."""
    if peer is None or not proxies or not _trusted(peer, proxies) or not forwarded_for:
        return peer
    client = peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        client = hop
        if not _trusted(hop, proxies):
            break
    return client

"""The client's address behind the load balancers we trust.

Why: per-address limits (widget connections and messages, failed logins) keyed by the TCP
peer would, behind a load balancer, put every visitor on one address: 20 widget connections
for the whole site, and 30 bad logins locking every agent out. The proxies' own
`X-Forwarded-For` / `Forwarded: for=` headers name the client, but anybody can send those
headers, so they are read only when the peer is a configured trusted proxy
(`careline.gateway.trusted_proxies`), walking from the nearest hop back to the first address
that is not one of ours.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FOR = re.compile(r'for="?\[?([^\]";,]+)\]?(?::\d+)?"?', re.IGNORECASE)


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """CIDRs or single addresses; ValueError names the bad entry."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address or network: {entry!r}") from None
    return tuple(out)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _trusted(value: str | None, trusted: Sequence[Network]) -> bool:
    ip = _ip(value or "")
    return ip is not None and any(ip in net for net in trusted)


def _hops(request: web.Request) -> list[str]:
    """The addresses the proxies recorded, nearest last."""
    forwarded = request.headers.getall("Forwarded", [])
    if forwarded:
        return [m.group(1) for h in forwarded for m in _FOR.finditer(h)]
    return [
        part.strip()
        for h in request.headers.getall("X-Forwarded-For", [])
        for part in h.split(",")
        if part.strip()
    ]


def client_address(request: web.Request, trusted: Sequence[Network]) -> str:
    """The address to key per-client limits by ("?" when unknown)."""
    peer = request.remote or "?"
    if not trusted or not _trusted(peer, trusted):
        return peer
    for hop in reversed(_hops(request)):
        if _ip(hop) is None:
            break  # a malformed hop: trust nothing further back
        if not _trusted(hop, trusted):
            return hop
    return peer


__all__ = ["Network", "client_address", "parse_networks"]

"""The client's address for rate limits and the session list (SPEC §3 "Sign-in, sessions").

`X-Forwarded-For` is believed only when the direct peer is a configured trusted proxy, and then
only as far as the chain of trusted proxies goes: walking the header from the right, the first
address that is not a trusted proxy is the client. Everything to its left was written by that
client and may be anything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

__all__ = ["UNKNOWN_ADDRESS", "TrustedProxies", "client_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN_ADDRESS = "unknown"  # no peer in the ASGI scope (e.g. some Unix-socket servers)
_FORWARDED_FOR = b"x-forwarded-for"


class TrustedProxies:
    """The `trusted_proxies` setting, parsed once: single addresses or CIDR networks, IPv4
    or IPv6. A malformed entry is a configuration error and raises `ValueError`."""

    __slots__ = ("_networks",)

    def __init__(self, entries: Iterable[str] = ()) -> None:
        networks: list[IPNetwork] = []
        for entry in entries:
            text = entry.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(
                    f"trusted proxy {entry!r} is not an IP address or network"
                ) from None
        self._networks = tuple(networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return any(address in network for network in self._networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self._networks]!r})"


@lru_cache(maxsize=8)
def _parsed(entries: tuple[str, ...]) -> TrustedProxies:
    return TrustedProxies(entries)


def client_address(scope_or_request: Any, trusted_proxies: TrustedProxies | Sequence[str]) -> str:
    """The address the request came from, as a normalised string.

    `scope_or_request` is an ASGI scope or anything with a `.scope` (Starlette's `Request`).
    """
    scope: Mapping[str, Any] = getattr(scope_or_request, "scope", scope_or_request)
    trusted = (
        trusted_proxies
        if isinstance(trusted_proxies, TrustedProxies)
        else _parsed(tuple(trusted_proxies))
    )
    client = scope.get("client")
    if not client or not client[0]:
        return UNKNOWN_ADDRESS
    peer_text = str(client[0])
    peer = parse_address(peer_text)
    if peer is None:
        return peer_text  # e.g. "testclient": not an IP, so never a trusted proxy
    if peer not in trusted:
        return str(peer)

    nearest = peer  # the left-most hop reached through trusted proxies only
    for entry in reversed(_forwarded_for(scope)):
        hop = parse_address(entry)
        if hop is None:
            continue  # garbage that no proxy of ours wrote
        if hop not in trusted:
            return str(hop)
        nearest = hop
    return str(nearest)


def parse_address(text: str) -> IPAddress | None:
    """An IP address from a peer or an `X-Forwarded-For` entry, or None when it is not one.

    Accepts the port forms some proxies write (`203.0.113.7:4711`, `[2001:db8::1]:443`) and
    folds IPv4-mapped IPv6 (`::ffff:203.0.113.7`) into IPv4 so that IPv4 networks match.
    """
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        text = host
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            return None
        text = host
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_for(scope: Mapping[str, Any]) -> list[str]:
    # Several X-Forwarded-For headers are one list, in order (RFC 9110 §5.3).
    entries: list[str] = []
    for name, value in scope.get("headers") or ():
        if name.lower() == _FORWARDED_FOR:
            entries.extend(value.decode("latin-1").split(","))
    return entries

"""Parsing and validating node addresses and ports."""

from __future__ import annotations

import ipaddress
import re

from pokan.errors import ConfigurationError

DEFAULT_PORT = 5555


def check_port(port: object, what: str = "port", allow_any: bool = False) -> int:
    """Return ``port`` as an int in 1..65535, or raise ConfigurationError.

    With ``allow_any``, 0 is accepted too: any free port, chosen when binding.
    """
    if isinstance(port, bool) or not isinstance(port, int):
        text = str(port)
        if not (text.isascii() and text.isdigit()):  # no sign, space or "_"
            raise ConfigurationError(
                f"{what} must be a number from 1 to 65535, got {port!r}"
            )
        port = int(text, 10)
    if allow_any and port == 0:
        return 0
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"{what} must be from 1 to 65535, got {port}")
    return port


def check_ip(address: object, what: str = "address") -> str:
    """Return ``address`` normalised if it is an IPv4/IPv6 literal.

    Peers send datagrams to the address a node advertises, so it must be an
    IP address they can reach, not a host name or a wildcard.
    """
    if not isinstance(address, str):
        raise ConfigurationError(f"{what} must be a string, got {address!r}")
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        raise ConfigurationError(
            f"{what} must be an IP address peers can reach (e.g. 10.0.0.8),"
            f" got {address!r}"
        ) from None
    if ip.is_unspecified:
        raise ConfigurationError(
            f"{what} {address!r} is a wildcard; give the IP address peers"
            " should use to reach this node"
        )
    return str(ip)


def parse_host_port(text: object, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[v6]:PORT`` for IPv6) into ``(host, port)``.

    The port may be left out (``HOST``), in which case ``default_port`` is used.
    HOST is an IP address or a host name; anything else (spaces, brackets,
    commas, an empty host) raises ConfigurationError.
    """
    expected = (
        f"expected HOST[:PORT] such as 10.0.0.9:{default_port} (port"
        f" {default_port} if left out)"
    )
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(f"{expected}, got {text!r}")
    text = text.strip()
    if "," in text:
        raise ConfigurationError(
            f"{text!r} holds several addresses: give one HOST:PORT per seed"
        )
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")) or not _is_ipv6(host):
            raise ConfigurationError(
                f"malformed [IPv6]:PORT address {text!r}; {expected}"
            )
        if rest == ":":
            raise ConfigurationError(f"missing port in {text!r}; {expected}")
        port_text = rest[1:]
    elif text.count(":") > 1:
        if not _is_ipv6(text):
            raise ConfigurationError(
                f"{text!r} is not HOST:PORT (an IPv6 address is written"
                f" [ADDRESS]:PORT); {expected}"
            )
        head, _, last = text.rpartition(":")
        if last.isdigit() and _is_ipv6(head):
            raise ConfigurationError(
                f"{text!r} is ambiguous: the IPv6 address {text}, or {head} port"
                f" {last}? Write [{head}]:{last} for the port, [{text}] for the"
                " address"
            )
        host, port_text = text, ""  # a bare IPv6 address
    else:
        host, colon, port_text = text.partition(":")
        if not host:
            raise ConfigurationError(f"missing host in {text!r}; {expected}")
        if host.isdigit():  # the resolver would take it for an IPv4 number
            raise ConfigurationError(
                f"{host!r} looks like a port, not a host; {expected}"
            )
        if not _is_host(host):
            where = "" if host == text else f" in {text!r}"
            raise ConfigurationError(
                f"{host!r}{where} is not an IP address or host name; {expected}"
            )
        if colon and not port_text:
            raise ConfigurationError(f"missing port in {text!r}; {expected}")
    port = check_port(port_text, f"port in {text!r}") if port_text else default_port
    return host, port


def parse_seeds(text: str, default_port: int = DEFAULT_PORT) -> list[tuple[str, int]]:
    """Parse ``HOST[:PORT],HOST[:PORT],...`` (see :func:`parse_host_port`)."""
    seeds = []
    for seed in text.split(","):
        if not seed.strip():
            raise ConfigurationError(
                f"empty seed in {text!r}; expected HOST[:PORT],... such as"
                f" 10.0.0.9:{default_port},10.0.0.10"
            )
        seeds.append(parse_host_port(seed, default_port))
    return seeds


#: a host name: dot-separated labels of letters, digits, '-' and '_'
_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_HOST_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _is_host(text: str) -> bool:
    """An IPv4 address or a host name (not checked to resolve)."""
    return len(text) <= 253 and _HOST_NAME.fullmatch(text) is not None


def format_host_port(host: str, port: int) -> str:
    """The inverse of parse_host_port."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def family(address: str) -> int:
    """The IP version (4 or 6) of an IP address literal."""
    return ipaddress.ip_address(address.strip("[]")).version


def family_name(address: str) -> str:
    return f"IPv{family(address)}"


def check_seed_family(seeds: list[tuple[str, int]], address: str) -> None:
    """Refuse a seed given as an IP address of the other family than ``address``.

    A node's UDP socket is bound to its own address: it cannot reach, nor be
    reached by, a peer of the other address family. Host names are left to
    resolve (their nodes of the other family are refused when learned).
    """
    mine = family(address)
    for host, port in seeds:
        try:
            theirs = family(host)
        except ValueError:
            continue  # a host name
        if theirs != mine:
            raise ConfigurationError(
                f"seed {format_host_port(host, port)} is an IPv{theirs} address,"
                f" and this node's address {address} is IPv{mine}: a node"
                " gossips with peers of its own address family only. Give every"
                " node of a cluster an address of the same family"
            )

"""Parsing and validating node addresses and ports."""

from __future__ import annotations

import ipaddress

from pokan.errors import ConfigurationError

DEFAULT_PORT = 5555


def check_port(port: object, what: str = "port", allow_any: bool = False) -> int:
    """Return ``port`` as an int in 1..65535, or raise ConfigurationError.

    With ``allow_any``, 0 is accepted too: any free port, chosen when binding.
    """
    if isinstance(port, bool) or not isinstance(port, int):
        try:
            port = int(str(port), 10)
        except ValueError:
            raise ConfigurationError(
                f"{what} must be a number from 1 to 65535, got {port!r}"
            ) from None
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
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(
            f"expected HOST:PORT such as 10.0.0.9:5555, got {text!r}"
        )
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigurationError(f"malformed [IPv6]:PORT address {text!r}")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif text.count(":") > 1:
        host, port_text = text, ""  # a bare IPv6 address
    else:
        host, port_text = text, ""
    if not host:
        raise ConfigurationError(f"missing host in {text!r}; expected HOST:PORT")
    port = check_port(port_text, f"port in {text!r}") if port_text else default_port
    return host, port


def format_host_port(host: str, port: int) -> str:
    """The inverse of parse_host_port."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

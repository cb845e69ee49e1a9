"""Where the control API listens: ``HOST:PORT`` or ``unix:/path``."""

from __future__ import annotations

import ipaddress

import attrs

from pokan.core.address import check_port, format_host_port, parse_host_port
from pokan.errors import ConfigurationError

#: the control port is the node's TCP port plus this: 5555 -> 7373 (Serf's port)
CONTROL_PORT_OFFSET = 1818
#: where ``twistd pokan`` serves it by default: loopback only
DEFAULT_CONTROL_HOST = "127.0.0.1"


@attrs.frozen
class ControlEndpoint:
    """A TCP host and port (0: any free port), or a Unix socket path."""

    host: str | None = None
    port: int = 0
    path: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    @property
    def loopback(self) -> bool:
        """Reachable from this host only: a loopback address, or a Unix socket."""
        if self.path is not None:
            return True
        return is_loopback(self.host or "")

    def describe(self, port: int | None = None) -> str:
        """``http://127.0.0.1:7373`` (the port bound, if given), or ``unix:/path``."""
        if self.path is not None:
            return f"unix:{self.path}"
        bound = self.port if port is None else port
        return "http://" + format_host_port(self.host or "", bound)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_control(tcp_port: int, option: str = "--control") -> ControlEndpoint:
    """127.0.0.1 on the node's TCP port + 1818 (0 stays 0: any free port)."""
    port = tcp_port + CONTROL_PORT_OFFSET if tcp_port else 0
    if port > 65535:
        raise ConfigurationError(
            f"the default control port, the TCP port {tcp_port} + "
            f"{CONTROL_PORT_OFFSET} = {port}, is over 65535: give {option} HOST:PORT"
            f" (or unix:/path), or --no-control"
        )
    return ControlEndpoint(DEFAULT_CONTROL_HOST, port)


def parse_control(text: object, option: str = "control=") -> ControlEndpoint:
    """``HOST:PORT`` (``[v6]:PORT``; port 0 is any) or ``unix:/absolute/path``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigurationError(
            f"{option} expected HOST:PORT such as 127.0.0.1:7373, or unix:/path,"
            f" got {text!r}"
        )
    text = text.strip()
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path.startswith("/") or "\0" in path or len(path.encode()) > 107:
            raise ConfigurationError(
                f"{option} unix: needs an absolute socket path of at most 107"
                f" bytes, such as unix:/run/pokan/control.sock, got {text!r}"
            )
        return ControlEndpoint(path=path)
    any_port = text.endswith(":0") and not text.endswith("::0")
    try:
        # port 0 (any free port) is not a seed's port: parse the host alone
        host, port = parse_host_port(text[:-2] if any_port else text, -1)
    except ConfigurationError as e:
        raise ConfigurationError(f"{option} {e}") from None
    if any_port:
        if port != -1:
            raise ConfigurationError(f"{option} malformed HOST:PORT {text!r}")
        port = 0
    if port == -1:
        raise ConfigurationError(
            f"{option} needs a port: HOST:PORT such as 127.0.0.1:7373, got {text!r}"
        )
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigurationError(
                f"{option} needs an IP address to listen on (or localhost), got"
                f" {host!r}"
            ) from None
    else:
        host = DEFAULT_CONTROL_HOST
    return ControlEndpoint(host, check_port(port, f"{option} port", allow_any=True))

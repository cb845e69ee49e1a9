"""Why a port could not be bound, and what to do: :class:`ListenError`."""

from __future__ import annotations

import errno
from collections.abc import Mapping

from pokan.core.address import format_host_port
from pokan.errors import NamesSettings, StartupError

#: how a ListenError names the settings: the Server's arguments
SERVER_ARGUMENTS = {
    "udp_port": "udp_port=",
    "tcp_port": "tcp_port=",
    "address": "address",
}


class ListenError(StartupError, NamesSettings):
    """A port could not be bound; the message says why and what to do.

    ``str()`` names the Server's arguments; :meth:`describe` takes other
    names (twistd's options).
    """

    def __init__(self, address: str, port: int, proto: str, reason: object) -> None:
        self.address = address
        self.port = port
        self.proto = proto
        self.errno = getattr(reason, "errno", None)
        self.reason = _socket_reason(reason)
        super().__init__(self.describe(SERVER_ARGUMENTS))

    def describe(self, names: Mapping[str, str]) -> str:
        """The message, naming the settings as ``names`` says (udp_port,
        tcp_port, address)."""
        where = f"{format_host_port(self.address, self.port)}/{self.proto}"
        address = names["address"]
        port = names[f"{self.proto}_port"]
        address = "address" if address == "address" else f"address ({address})"
        if self.errno == errno.EADDRNOTAVAIL:
            hint = (
                f"{self.address} is not an IP address of this host. Use one of"
                f" its own as the {address}; `ip address` lists them."
            )
        elif self.errno == errno.EADDRINUSE:
            hint = (
                "Is another node running there? Choose another port"
                f" ({port}) or {address}."
            )
        else:
            hint = f"Choose another port ({port}) or {address}."
        return f"cannot listen on {where}: {self.reason}. {hint}"


def _socket_reason(socket_error: object) -> str:
    reason = getattr(socket_error, "strerror", None) or str(socket_error)
    return reason.lower() if reason.startswith(("Address", "Cannot")) else reason

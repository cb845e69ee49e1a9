"""The ports a node listens on: UDP gossip, TCP syncs, the control API's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pokan import wire
from pokan.errors import StartupError
from pokan.net.badinput import BadInputReporter
from pokan.net.listen_errors import ListenError
from pokan.net.protocols import SyncServerFactory
from pokan.net.settings import Settings
from pokan.net.watch import Watches
from pokan.wire.envelope import Envelope

log = Logger()


class Ports:
    """Binds a node's ports, and closes every one it bound."""

    def __init__(self) -> None:
        #: the listening ports, in the order bound
        self.open: list[Any] = []

    def __bool__(self) -> bool:
        return bool(self.open)

    def listen(
        self,
        reactor: Any,
        address: str,
        udp_port: int,
        tcp_port: int,
        gossip: DatagramProtocol,
        syncs: IProtocolFactory,
    ) -> tuple[int, int]:
        """Bind UDP, then TCP; the UDP and TCP ports bound (0: any free one).

        :class:`ListenError` if one cannot be bound; any bound is closed again.
        """
        try:
            udp = reactor.listenUDP(
                udp_port,
                gossip,
                interface=address,
                maxPacketSize=wire.MAX_UDP_PAYLOAD + 1,
            )
            self.open.append(udp)
            tcp = reactor.listenTCP(tcp_port, syncs, interface=address)
            self.open.append(tcp)
        except error.CannotListenError as e:
            proto = "udp" if not self.open else "tcp"
            self.close()
            port = udp_port if proto == "udp" else tcp_port
            raise ListenError(address, port, proto, e.socketError) from None
        return udp.getHost().port, tcp.getHost().port

    def add(self, listen: Callable[[], Any]) -> None:
        """Keep the port ``listen()`` binds; if it raises StartupError, close all."""
        try:
            self.open.append(listen())
        except StartupError:
            self.close()
            raise

    def close(self) -> defer.Deferred[None]:
        """Close every port, even if closing one fails (logged)."""
        ports, self.open = self.open, []
        closing = [
            defer.maybeDeferred(p.stopListening).addErrback(_log_close_failure)
            for p in ports
        ]
        return defer.gatherResults(closing).addCallback(lambda _: None)


def sync_factory(
    settings: Settings,
    on_hello: Callable[..., Any],
    bad_input: BadInputReporter,
    envelope: Envelope,
    watches: Watches | None = None,
) -> SyncServerFactory:
    """What answers the TCP full syncs, within the node's limits."""
    return SyncServerFactory(
        on_hello,
        bad_input,
        settings.max_frame,
        settings.sync_timeout,
        settings.max_datagram,
        max_hello=settings.max_hello,
        max_connections=settings.max_sync_connections,
        max_per_host=settings.max_sync_per_host,
        envelope=envelope,
        watches=watches,
    )


def _log_close_failure(failure: Failure) -> None:
    log.failure("while stopping: {what} failed", failure, what="closing a port")

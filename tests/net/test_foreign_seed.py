"""A seed that is not pokan (an HTTP server): said at once, retried slowly."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from pokan.net.seeds import NOT_POKAN_DELAY
from tests.support import LogCatcher, global_reactor, start_server, wait_until


class TinyHttp(Protocol):
    """Answers whatever comes with a 400, as an HTTP server does."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n\r\n"
        )
        self.transport.loseConnection()


class ForeignSeedTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_an_http_seed_is_named_at_once_and_retried_slowly(self) -> Any:
        reactor = global_reactor()
        port = reactor.listenTCP(
            0, Factory.forProtocol(TinyHttp), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        http = f"127.0.0.1:{port.getHost().port}"
        logs = LogCatcher(self)
        started = reactor.seconds()
        node = yield start_server(self, gossip_with=http, sync_timeout=10.0)
        yield wait_until(
            lambda: logs.matching("does not answer as a pokan node"), timeout=5
        )
        # at once, not after the sync timeout
        self.assertLess(reactor.seconds() - started, 5)
        (line,) = logs.matching("does not answer as a pokan node")
        self.assertIn(
            f"seed {http}: {http} does not answer as a pokan node: it answered"
            " like an HTTP server ('HTTP/1.1 400 Bad Request')",
            line,
        )
        self.assertEqual(logs.matching("stalled"), [])
        sync = node._syncs.seed_sync
        assert sync is not None
        yield wait_until(lambda: sync._retry is not None, timeout=5)
        wait = sync._retry.getTime() - reactor.seconds()
        self.assertGreater(wait, NOT_POKAN_DELAY * 0.75 - 1)

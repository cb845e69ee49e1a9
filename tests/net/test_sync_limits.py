"""The caps of the TCP sync: Hello size, connections, buffered bytes, time."""

from __future__ import annotations

import socket
import struct
from typing import Any

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from pokan import wire
from pokan.core.state import Entry, NodeDelta, NodeInfo
from pokan.daemon.tap import Options
from pokan.errors import ConfigurationError
from pokan.net.badinput import BadInputReporter
from pokan.net.protocols import SyncClientProtocol, SyncServerFactory
from pokan.net.server import Server
from tests.net.test_protocols import DELTA, INFO, LogCapture, frame
from tests.support import LogCatcher, start_server, wait_until

WELCOME = wire.Welcome("10.0.0.1:5555", (DELTA,))


class ServerCapsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.reporter = BadInputReporter(self.clock)
        self.hellos: list[wire.Hello] = []
        self.factory = SyncServerFactory(
            self.on_hello,
            self.reporter,
            65536,
            5.0,
            max_hello=4096,
            max_connections=6,
            max_per_host=2,
            max_buffer=10_000,
        )

    def on_hello(
        self, hello: wire.Hello, host: str = ""
    ) -> defer.Deferred[wire.Welcome]:
        self.hellos.append(hello)
        return defer.succeed(WELCOME)

    def connect(self, host: str = "10.0.0.2", port: int = 4000) -> tuple[Any, Any]:
        peer = IPv4Address("TCP", host, port)
        proto = self.factory.buildProtocol(peer)
        proto.callLater = self.clock.callLater
        transport = StringTransport(peerAddress=peer)
        proto.makeConnection(transport)
        return proto, transport

    def test_a_hello_over_max_hello_is_refused_at_its_length(self) -> None:
        proto, transport = self.connect()
        proto.dataReceived(struct.pack(">I", 4097))
        self.assertTrue(transport.disconnected)
        self.assertEqual(dict(self.reporter.counts), {"oversized": 1})
        self.assertEqual(self.factory.budget.used, 0)

    def test_a_hello_up_to_max_hello_is_answered(self) -> None:
        big = NodeDelta(INFO, 0, 0, 1, (("k", Entry("v" * 3900, 1, 1.0)),))
        data = wire.encode(wire.Hello("a", (big,)))
        self.assertLess(len(data), 4096)
        proto, transport = self.connect()
        proto.dataReceived(frame(data))
        self.assertEqual(len(self.hellos), 1)
        self.assertTrue(transport.disconnecting)

    def test_more_after_the_hello_is_not_read(self) -> None:
        """One Hello per connection: a second is neither merged nor answered."""
        proto, _ = self.connect()
        hello = frame(wire.encode(wire.Hello("a", ())))
        proto.dataReceived(hello * 3)
        proto.dataReceived(hello + struct.pack(">I", 4000) + b"x" * 100)
        self.assertEqual(len(self.hellos), 1)
        self.assertEqual(self.factory.budget.used, 0)
        self.assertEqual(self.reporter.total, 0)

    def test_connections_over_the_per_host_cap_are_cut_at_once(self) -> None:
        kept = [self.connect(port=4000 + i) for i in range(2)]
        refused = [self.connect(port=5000 + i) for i in range(3)]
        self.assertFalse(any(t.disconnecting for _, t in kept))
        self.assertTrue(all(t.disconnected for _, t in refused))  # aborted
        self.assertEqual(dict(self.reporter.counts), {"too-many-connections": 3})
        self.assertEqual(self.factory.connections["10.0.0.2"], 2)
        # another host still gets in; a closed connection frees its slot
        _, other = self.connect(host="10.0.0.3")
        self.assertFalse(other.disconnecting)
        kept[0][0].connectionLost(Failure(ConnectionError("closed")))
        _, again = self.connect(port=6000)
        self.assertFalse(again.disconnecting)

    def test_connections_over_the_total_cap_are_cut_at_once(self) -> None:
        for i in range(6):
            _, transport = self.connect(host=f"10.0.1.{i}")
            self.assertFalse(transport.disconnecting)
        _, transport = self.connect(host="10.0.2.1")
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.reporter.counts["too-many-connections"], 1)
        self.assertEqual(sum(self.factory.connections.values()), 6)

    def test_frames_that_would_overflow_the_buffer_are_refused(self) -> None:
        protos = [self.connect(host=f"10.0.1.{i}") for i in range(3)]
        protos[0][0].dataReceived(struct.pack(">I", 4000) + b"x")
        protos[1][0].dataReceived(struct.pack(">I", 4000))
        self.assertEqual(self.factory.budget.used, 8000)
        protos[2][0].dataReceived(struct.pack(">I", 4000))
        self.assertTrue(protos[2][1].disconnected)
        self.assertEqual(dict(self.reporter.counts), {"buffer-full": 1})
        protos[0][0].connectionLost(Failure(ConnectionError("closed")))
        self.assertEqual(self.factory.budget.used, 4000)  # given back

    def test_the_whole_hello_must_come_within_the_timeout(self) -> None:
        """Bytes that trickle in do not hold a connection open."""
        proto, transport = self.connect()
        data = frame(wire.encode(wire.Hello("a", (DELTA,))))
        for byte in data[:49]:
            proto.dataReceived(bytes([byte]))
            self.clock.advance(0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)  # 5.1 s since the connection
        self.assertTrue(transport.disconnected)
        self.assertEqual(dict(self.reporter.counts), {"stalled": 1})
        self.assertEqual(self.hellos, [])
        proto.connectionLost(Failure(ConnectionError("aborted")))
        self.assertEqual(self.factory.connections, {})


class ClientHelloTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.log = LogCapture(self)

    def hello_sent(self, hello: wire.Hello, max_hello: int) -> bytes:
        proto = SyncClientProtocol(
            hello, BadInputReporter(self.clock), 65536, 5.0, max_hello=max_hello
        )
        proto.callLater = self.clock.callLater  # type: ignore[method-assign]
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 5555))
        proto.makeConnection(transport)
        return transport.value()

    def others(self, size: int) -> tuple[NodeDelta, ...]:
        return tuple(
            NodeDelta(
                NodeInfo(f"10.0.1.{i}:5555", 1, f"10.0.1.{i}", 5555, 5555, "peer"),
                1,
                0,
                1,
                (("k", Entry("v" * size, 1, 1.0)),),
            )
            for i in range(10)
        )

    def test_a_state_that_fits_goes_whole(self) -> None:
        hello = wire.Hello(INFO.id, (DELTA, *self.others(100)))
        self.assertEqual(self.hello_sent(hello, 4096), frame(wire.encode(hello)))
        self.assertEqual(self.log.warnings("this node's full state"), [])

    def test_over_max_hello_only_the_nodes_own_record_goes(self) -> None:
        hello = wire.Hello(INFO.id, (*self.others(500), DELTA))
        sent = self.hello_sent(hello, 4096)
        self.assertEqual(sent, frame(wire.encode(wire.Hello(INFO.id, (DELTA,)))))
        (line,) = self.log.warnings("this node's full state")
        self.assertEqual(line["limit"], 4096)
        self.assertEqual(line["carries"], "only this node's own record")

    def test_an_own_record_over_max_hello_goes_empty(self) -> None:
        big = NodeDelta(INFO, 0, 0, 1, (("k", Entry("v" * 5000, 1, 1.0)),))
        sent = self.hello_sent(wire.Hello(INFO.id, (big,)), 4096)
        self.assertEqual(sent, frame(wire.encode(wire.Hello(INFO.id, ()))))
        (line,) = self.log.warnings("this node's full state")
        self.assertEqual(line["carries"], "none of it")


class OptionsTests(unittest.TestCase):
    def test_server_checks_the_limits(self) -> None:
        for kwargs in [
            {"max_hello": 100},
            {"max_hello": 2**30},
            {"max_hello": "1000"},
            {"max_sync_connections": 0},
            {"max_sync_per_host": -1},
            {"max_sync_per_host": True},
        ]:
            with self.assertRaises(ConfigurationError, msg=str(kwargs)):
                Server("127.0.0.1", **kwargs)  # type: ignore[arg-type]
        # a small max_frame brings the default Hello limit down with it
        Server("127.0.0.1", max_frame=4096)

    def test_twistd_options(self) -> None:
        options = Options()
        options.parseOptions(
            [
                "--address=127.0.0.1",
                "--max-hello=65536",
                "--max-sync-connections=10",
                "--max-sync-per-host=2",
            ]
        )
        self.assertEqual(
            (
                options["max-hello"],
                options["max-sync-connections"],
                options["max-sync-per-host"],
            ),
            (65536, 10, 2),
        )
        defaults = Options()
        defaults.parseOptions(["--address=127.0.0.1"])
        self.assertEqual(defaults["max-hello"], 1024 * 1024)
        for bad, says in [
            ("--max-hello=12", "--max-hello must be from the max datagram"),
            ("--max-sync-connections=x", "--max-sync-connections must be a whole"),
            ("--max-sync-per-host=0", "--max-sync-per-host must be a whole"),
        ]:
            with self.assertRaises(Exception, msg=bad) as caught:
                Options().parseOptions(["--address=127.0.0.1", bad])
            self.assertIn(says, str(caught.exception))


def open_raw(port: int, source: str, count: int) -> list[socket.socket]:
    """``count`` TCP connections from ``source`` (a 127.0.0.x) that send nothing."""
    sockets = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        sockets.append(s)
    return sockets


def still_open(s: socket.socket) -> bool:
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


class HeldOpenConnectionsTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_100_idle_connections_neither_block_a_join_nor_gossip(self) -> Any:
        log = LogCatcher(self)
        seed = yield start_server(self, sync_timeout=3.0)
        sockets = open_raw(seed.tcp_port, "127.0.0.2", 100)
        self.addCleanup(lambda: [s.close() for s in sockets])
        yield wait_until(
            lambda: seed.bad_input.counts["too-many-connections"] == 96,
            timeout=5,
            message=lambda: f"refusals: {dict(seed.bad_input.counts)}",
        )
        yield wait_until(lambda: sum(map(still_open, sockets)) == 4, timeout=5)
        joiner = yield start_server(
            self, gossip_with=f"127.0.0.1:{seed.tcp_port}", sync_timeout=3.0
        )
        joiner.store("fresh", "1")
        yield wait_until(
            lambda: (
                seed.peer(joiner.id) is not None
                and seed.peer(joiner.id).value("fresh") == "1"
            ),
            timeout=4,
        )
        self.assertTrue(log.matching("joined the cluster through seed"))
        # the refusals were reported throttled: one line for the host
        self.assertLessEqual(len(log.matching("too-many-connections")), 2)

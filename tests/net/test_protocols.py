"""The UDP and TCP protocols, over fake transports and a Clock."""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from pokan import wire
from pokan.core import reconcile
from pokan.core.state import Entry, NodeDelta, NodeInfo
from pokan.errors import EncodeError
from pokan.net.badinput import BadInputReporter
from pokan.net.fullsync import join_pieces, too_big_to_gossip, welcome_frames
from pokan.net.protocols import (
    MAX_WELCOME_FRAMES,
    GossipProtocol,
    NotAPokanNode,
    SyncClientProtocol,
    SyncServerFactory,
    SyncServerProtocol,
)

INFO = NodeInfo("10.0.0.2:5555", 1, "10.0.0.2", 5555, 5555, "peer")
DELTA = NodeDelta(INFO, 3, 0, 1, (("k", Entry("v", 1, 1.0)),))
SOURCE = ("10.0.0.2", 5555)


class Boom(Exception):
    pass


class FakeDatagramTransport:
    """Records what a DatagramProtocol writes."""

    def __init__(self, error: Exception | None = None) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.error = error

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.error is not None:
            raise self.error
        self.written.append((data, addr))


class LogCapture:
    def __init__(self, test: unittest.TestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def warnings(self, containing: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("log_level") == LogLevel.warn
            and containing in e.get("log_format", "")
        ]


def frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def read_frames(data: bytes) -> list[bytes]:
    frames = []
    while data:
        (length,) = struct.unpack(">I", data[:4])
        frames.append(data[4 : 4 + length])
        data = data[4 + length :]
    return frames


def node_info(i: int) -> NodeInfo:
    return NodeInfo(f"10.0.1.{i}:5555", 1, f"10.0.1.{i}", 5555, 5555, "peer")


def big_state() -> tuple[NodeDelta, ...]:
    """Small nodes around two too big for one 4096-byte frame."""

    def entries(n: int, size: int) -> tuple[tuple[str, Entry], ...]:
        return tuple((f"k{v}", Entry("v" * size, v, 1.0)) for v in range(1, n + 1))

    return (
        NodeDelta(node_info(1), 5, 0, 3, entries(3, 100)),
        NodeDelta(node_info(2), 7, 0, 60, entries(50, 300), gc_point=55),
        NodeDelta(node_info(3), 1, 0, 2, entries(2, 50), left=True),
        NodeDelta(node_info(4), 9, 0, 40, entries(40, 200), left=True),
        NodeDelta(node_info(5), 1, 0, 0, ()),
    )


class GossipProtocolTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.reporter = BadInputReporter(self.clock, interval=10.0)
        self.received: list[tuple[wire.Message, tuple[str, int]]] = []
        self.proto = GossipProtocol(self.record, self.reporter, 1400)
        self.transport = FakeDatagramTransport()
        self.proto.makeConnection(self.transport)  # type: ignore[arg-type]
        self.log = LogCapture(self)

    def record(self, message: wire.Message, source: tuple[str, int], size: int) -> None:
        self.received.append((message, source))

    def test_good_datagram(self) -> None:
        message = wire.Ack("10.0.0.2:5555", (DELTA,))
        self.proto.datagramReceived(wire.encode(message), SOURCE)
        self.assertEqual(self.received, [(message, SOURCE)])
        self.assertEqual((self.proto.received, self.reporter.total), (1, 0))

    def test_bad_datagrams_counted_by_reason(self) -> None:
        good = wire.encode(wire.Goodbye("a", 1))
        for data in [
            b"",
            b"xx",
            b"XX" + good[2:],
            b"XX" + good[2:],
            good[:2] + b"\x09" + good[3:],
            good[:3] + b"\x70" + good[4:],
            good[:4] + b"\x01" + good[5:],
            good[:9] + b"\xc1",
            wire.encode(wire.Hello("a", ())),  # TCP only
        ]:
            self.proto.datagramReceived(data, SOURCE)
        self.assertEqual(self.received, [])
        self.assertEqual(
            dict(self.reporter.counts),
            {
                "truncated": 1,
                "bad-magic": 3,
                "wrong-version": 1,
                "unknown-type": 1,
                "sealed": 1,
                "bad-body": 1,
                "unexpected-type": 1,
            },
        )
        self.assertEqual(self.proto.received, 0)

    def test_oversized_dropped(self) -> None:
        message = wire.Ack(
            "x", (NodeDelta(INFO, 0, 0, 1, (("k", Entry("v" * 1500, 1, 1.0)),)),)
        )
        self.proto.datagramReceived(wire.encode(message), SOURCE)
        self.assertEqual(self.received, [])
        self.assertEqual(dict(self.reporter.counts), {"oversized": 1})

    def test_oversized_says_to_check_max_datagram(self) -> None:
        self.proto.datagramReceived(b"PK" + b"\x00" * 3113, SOURCE)
        (line,) = self.log.warnings("dropped bad")
        self.assertEqual(line["reason"], "oversized")
        self.assertIn("3115 > 1400 bytes", line["detail"])
        self.assertIn("sender's --max-datagram is probably larger", line["detail"])
        self.assertIn("same --max-datagram", line["detail"])

    def test_logged_once_per_host_per_interval(self) -> None:
        other = ("10.0.0.3", 5555)
        for port in range(2000, 4000):  # a new source port for every datagram
            self.proto.datagramReceived(b"junk", ("10.0.0.2", port))
        self.proto.datagramReceived(b"junk-junk", other)
        self.assertEqual(len(self.log.warnings("dropped bad")), 2)
        self.clock.advance(9.9)
        self.proto.datagramReceived(b"junk-junk", SOURCE)
        self.assertEqual(len(self.log.warnings("dropped bad")), 2)
        self.clock.advance(0.2)
        self.proto.datagramReceived(b"junk-junk", SOURCE)
        lines = self.log.warnings("dropped bad")
        self.assertEqual(len(lines), 3)
        self.assertEqual(lines[-1]["source"], "10.0.0.2:5555")
        self.assertEqual(lines[-1]["channel"], "udp")
        # the drops not logged are summed up in the new window
        (summary,) = self.log.warnings("more bad inputs without a line each")
        self.assertEqual(summary["count"], 2000)
        self.assertEqual(summary["reasons"], "bad-magic: 2000")
        self.assertEqual(summary["sources"], 1)
        self.assertEqual(self.reporter.total, 2003)

    def test_receive_callback_error_logged(self) -> None:
        def broken(message: wire.Message, source: tuple[str, int], size: int) -> None:
            raise Boom("core bug")

        self.proto.receive = broken
        goodbye = wire.Goodbye("10.0.0.2:5555", 1)
        self.proto.datagramReceived(wire.encode(goodbye), SOURCE)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)
        self.assertEqual(self.reporter.total, 0)

    def test_send(self) -> None:
        message = wire.Goodbye("a", 1)
        self.assertTrue(self.proto.send(SOURCE, message))
        self.assertEqual(self.transport.written, [(wire.encode(message), SOURCE)])
        self.assertEqual(self.proto.sent, 1)
        self.assertEqual(self.proto.bytes_sent, len(wire.encode(message)))

    def test_send_too_big(self) -> None:
        message = wire.Goodbye("x" * 1380, 1)  # fits 1400, not the seal headroom
        self.assertFalse(self.proto.send(SOURCE, message))
        self.assertEqual((self.transport.written, self.proto.send_errors), ([], 1))
        self.assertEqual(len(self.log.warnings("could not send")), 1)

    def test_send_os_error(self) -> None:
        self.transport.error = OSError(101, "Network is unreachable")
        self.assertFalse(self.proto.send(SOURCE, wire.Goodbye("a", 1)))
        self.assertEqual(self.proto.send_errors, 1)

    def test_one_bad_destination_does_not_stop_the_others(self) -> None:
        """Whatever a write raises for one peer, the round goes on."""
        from twisted.internet.error import InvalidAddressError

        bad = {
            ("not-an-ip", 5555): InvalidAddressError("not-an-ip", "not an IPv4"),
            ("::1", 5555): InvalidAddressError("::1", "IPv6 on an IPv4 port"),
            ("10.0.0.9", 70000): OverflowError("port must be 0-65535"),
            ("10.0.0.8", 5555): Boom("anything"),
        }

        class Picky(FakeDatagramTransport):
            def write(self, data: bytes, addr: tuple[str, int]) -> None:
                if addr in bad:
                    raise bad[addr]
                super().write(data, addr)

        transport = Picky()
        self.proto.transport = transport  # type: ignore[assignment]
        good = [("10.0.0.2", 5555), ("10.0.0.3", 5555)]
        message = wire.Goodbye("a", 1)
        results = [self.proto.send(a, message) for a in [*bad, *good]]
        self.assertEqual(results, [False] * 4 + [True] * 2)
        self.assertEqual([a for _, a in transport.written], good)
        self.assertEqual((self.proto.send_errors, self.proto.sent), (4, 2))
        lines = self.log.warnings("could not send {kind}")
        self.assertEqual(
            sorted(line["to"] for line in lines),
            ["10.0.0.8:5555", "10.0.0.9:70000", "[::1]:5555", "not-an-ip:5555"],
        )
        self.assertIn("InvalidAddressError", str(lines[0]["error"]))

    def test_send_of_an_unencodable_message_or_address(self) -> None:
        message = wire.Goodbye("a", 2**64)  # msgpack cannot pack it
        self.assertFalse(self.proto.send(SOURCE, message))
        self.transport.error = TypeError("not a (host, port) pair")
        self.assertFalse(self.proto.send("nonsense", wire.Goodbye("a", 1)))  # type: ignore[arg-type]
        self.assertEqual(self.proto.send_errors, 2)
        lines = self.log.warnings("could not send {kind}")
        self.assertEqual(lines[1]["to"], "'nonsense'")

    def test_failed_sends_are_logged_throttled(self) -> None:
        self.transport.error = OSError(101, "Network is unreachable")
        message = wire.Goodbye("a", 1)
        for i in range(1000):
            self.proto.send((f"10.0.{i % 3}.1", 5555), message)
        self.assertEqual(self.proto.send_errors, 1000)
        self.assertEqual(len(self.log.warnings("could not send {kind}")), 3)
        self.clock.advance(10)
        self.proto.send(SOURCE, message)
        (summary,) = self.log.warnings("more messages, without a line each")
        self.assertEqual(summary["count"], 997)
        self.assertEqual(summary["sources"], 3)
        self.assertEqual(summary["reasons"], "OSError: 997")
        self.assertEqual(len(self.log.warnings("could not send {kind}")), 4)

    def test_send_without_transport(self) -> None:
        proto = GossipProtocol(self.record, self.reporter, 1400)
        self.assertFalse(proto.send(SOURCE, wire.Goodbye("a", 1)))


class SyncServerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.reporter = BadInputReporter(self.clock)
        self.hellos: list[wire.Hello] = []
        self.answer: defer.Deferred[wire.Welcome] | None = None
        factory = SyncServerFactory(self.on_hello, self.reporter, 4096, 5.0)
        self.proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.2", 4000))
        self.proto.callLater = self.clock.callLater  # type: ignore[method-assign]
        self.transport = StringTransport(
            peerAddress=IPv4Address("TCP", "10.0.0.2", 4000)
        )
        self.proto.makeConnection(self.transport)

    def on_hello(
        self, hello: wire.Hello, host: str = ""
    ) -> defer.Deferred[wire.Welcome]:
        self.hellos.append(hello)
        if self.answer is not None:
            return self.answer
        return defer.succeed(wire.Welcome("10.0.0.1:5555", (DELTA,)))

    def test_hello_answered_with_welcome(self) -> None:
        hello = wire.Hello("10.0.0.2:5555", (DELTA,))
        self.proto.dataReceived(frame(wire.encode(hello)))
        self.assertEqual(self.hellos, [hello])
        data = self.transport.value()
        (length,) = struct.unpack(">I", data[:4])
        self.assertEqual(length, len(data) - 4)
        self.assertEqual(wire.decode(data[4:]), wire.Welcome("10.0.0.1:5555", (DELTA,)))
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.disconnected)  # a clean close, not abort

    def test_hello_in_pieces(self) -> None:
        data = frame(wire.encode(wire.Hello("a", (DELTA,))))
        for i in range(len(data)):
            self.proto.dataReceived(data[i : i + 1])
        self.assertEqual(len(self.hellos), 1)

    def test_slow_answer_does_not_time_out(self) -> None:
        self.answer = defer.Deferred()
        self.proto.dataReceived(frame(wire.encode(wire.Hello("a", ()))))
        self.clock.advance(60)
        self.assertFalse(self.transport.disconnecting)
        self.answer.callback(wire.Welcome("b", ()))
        self.assertTrue(self.transport.disconnecting)

    def test_state_over_the_frame_limit_goes_in_several_frames(self) -> None:
        log = LogCapture(self)
        welcome = wire.Welcome("10.0.0.1:5555", big_state())
        self.answer = defer.succeed(welcome)
        self.proto.dataReceived(frame(wire.encode(wire.Hello("joiner", ()))))
        frames = read_frames(self.transport.value())
        self.assertGreater(len(frames), 3)
        self.assertTrue(all(len(f) <= 4096 for f in frames))
        deltas = [d for f in frames for d in wire.decode(f).deltas]  # type: ignore[union-attr]
        self.assertEqual(join_pieces(deltas), welcome.deltas)
        self.assertTrue(self.transport.disconnecting)  # a clean close
        self.assertEqual(log.warnings(""), [])

    def test_write_over_the_frame_limit(self) -> None:
        """One write larger than a frame: one line, no traceback, no state."""
        log = LogCapture(self)
        big = NodeDelta(INFO, 0, 0, 1, (("k", Entry("v" * 5000, 1, 1.0)),))
        self.answer = defer.succeed(wire.Welcome("10.0.0.1:5555", (big,)))
        self.proto.dataReceived(frame(wire.encode(wire.Hello("joiner", ()))))
        self.assertEqual(self.transport.value(), b"")  # nothing sent
        self.assertTrue(self.transport.disconnecting)
        (line,) = log.warnings("cannot answer the full sync")
        self.assertEqual((line["sender"], line["limit"]), ("joiner", 4096))
        self.assertIn("more than a frame holds", str(line["error"]))
        self.assertIn("UDP gossip", line["log_format"])

    def test_stalls_logged_once_per_host(self) -> None:
        log = LogCapture(self)
        factory = SyncServerFactory(
            self.on_hello,
            self.reporter,
            4096,
            5.0,
            max_connections=1000,
            max_per_host=1000,
        )
        for port in range(4001, 4901):
            peer = IPv4Address("TCP", "10.0.0.2", port)
            proto = factory.buildProtocol(peer)
            proto.callLater = self.clock.callLater  # type: ignore[method-assign]
            proto.makeConnection(StringTransport(peerAddress=peer))
        self.clock.advance(5.1)
        self.assertEqual(self.reporter.counts["stalled"], 901)
        self.assertEqual(len(log.warnings("dropped bad")), 1)

    def test_values_too_big_for_this_nodes_datagrams(self) -> None:
        """A joiner with a larger --max-datagram: its big values stop here."""
        log = LogCapture(self)
        factory = SyncServerFactory(self.on_hello, self.reporter, 65536, 5.0, 1400)
        proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.2", 4001))
        proto.callLater = self.clock.callLater  # type: ignore[method-assign]
        proto.makeConnection(StringTransport())
        big = NodeDelta(
            INFO,
            0,
            0,
            3,
            (
                ("small", Entry("v" * 100, 1, 1.0)),
                ("big", Entry("v" * 3000, 2, 1.0)),
                ("bigger", Entry(b"v" * 3100, 3, 1.0)),
            ),
        )
        proto.dataReceived(frame(wire.encode(wire.Hello("joiner:1", (big,)))))
        (line,) = log.warnings("too big for this node's datagrams")
        self.assertEqual(line["peer"], "joiner:1")
        self.assertEqual(line["count"], 2)
        self.assertEqual((line["key"], line["node"]), ("bigger", INFO.id))
        self.assertEqual(line["max_datagram"], 1400)
        self.assertIn("same --max-datagram", line["log_format"])
        self.assertEqual(len(self.hellos), 1)  # merged all the same

    def test_values_that_fit_bring_no_warning(self) -> None:
        log = LogCapture(self)
        factory = SyncServerFactory(self.on_hello, self.reporter, 65536, 5.0, 1400)
        proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.2", 4001))
        proto.callLater = self.clock.callLater  # type: ignore[method-assign]
        proto.makeConnection(StringTransport())
        room = reconcile.message_budget(1400, "") - 16
        room -= wire.packed_size(wire.pack_delta_header(DELTA))
        # the longest value whose entry fits the room exactly (a 3-byte str header)
        fits = "v" * (
            room - wire.packed_size(wire.pack_entry("k", Entry("", 1, 1.0))) - 2
        )
        self.assertEqual(
            wire.packed_size(wire.pack_entry("k", Entry(fits, 1, 1.0))), room
        )
        delta = NodeDelta(INFO, 0, 0, 1, (("k", Entry(fits, 1, 1.0)),))
        self.assertEqual(too_big_to_gossip((delta,), 1400)[0], 0)
        over = NodeDelta(INFO, 0, 0, 1, (("k", Entry(fits + "v", 1, 1.0)),))
        self.assertEqual(too_big_to_gossip((over,), 1400)[0], 1)
        proto.dataReceived(frame(wire.encode(wire.Hello("joiner:1", (delta,)))))
        self.assertEqual(log.warnings("too big"), [])

    def test_answer_fails(self) -> None:
        self.answer = defer.fail(Boom("store down"))
        self.proto.dataReceived(frame(wire.encode(wire.Hello("a", ()))))
        self.assertTrue(self.transport.disconnected)  # aborted
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

    def test_garbage_frame(self) -> None:
        self.proto.dataReceived(frame(b"garbage!"))
        self.assertEqual(self.hellos, [])
        self.assertEqual(dict(self.reporter.counts), {"bad-magic": 1})
        self.assertTrue(self.transport.disconnected)

    def test_wrong_message_type(self) -> None:
        self.proto.dataReceived(frame(wire.encode(wire.Welcome("a", ()))))
        self.assertEqual(dict(self.reporter.counts), {"unexpected-type": 1})
        self.assertTrue(self.transport.disconnected)

    def test_oversized_length_prefix(self) -> None:
        self.proto.dataReceived(struct.pack(">I", 2**31) + b"PK")
        self.assertEqual(dict(self.reporter.counts), {"oversized": 1})
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.hellos, [])

    def test_stall_times_out(self) -> None:
        self.proto.dataReceived(b"\x00\x00")  # half a length prefix
        self.clock.advance(4.9)
        self.assertFalse(self.transport.disconnected)
        self.clock.advance(0.2)
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(dict(self.reporter.counts), {"stalled": 1})

    def test_silent_client_times_out(self) -> None:
        self.clock.advance(5.1)
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(dict(self.reporter.counts), {"stalled": 1})

    def test_connection_lost_cancels_timeout(self) -> None:
        self.proto.connectionLost(Failure(ConnectionError("gone")))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def watched(self, accept: bool) -> tuple[Any, list[str]]:
        """A factory whose node holds (or refuses) a Watch, and one connection."""

        class Holder:
            def __init__(self) -> None:
                self.lost: list[str] = []

            def accept(
                self, message: wire.Watch, host: str, protocol: Any
            ) -> tuple[str, str] | None:
                if accept and host == "10.0.0.2":
                    return None
                return ("watch-refused", "no member at 10.0.0.2")

            def watcher_lost(self, sender: str, protocol: Any) -> None:
                self.lost.append(sender)

        self.proto.connectionLost(Failure(ConnectionError("unused")))
        holder = Holder()
        factory = SyncServerFactory(
            self.on_hello,
            self.reporter,
            4096,
            5.0,
            watches=holder,  # type: ignore[arg-type]
        )
        peer = IPv4Address("TCP", "10.0.0.2", 4001)
        proto = factory.buildProtocol(peer)
        proto.callLater = self.clock.callLater  # type: ignore[attr-defined]
        transport = StringTransport(peerAddress=peer)
        proto.makeConnection(transport)
        proto.dataReceived(frame(wire.encode(wire.Watch("10.0.0.2:5555", 1))))
        return (factory, proto, transport, holder), holder.lost

    def test_a_watch_held_is_outside_the_sync_caps_and_never_times_out(self) -> None:
        (factory, proto, transport, _), lost = self.watched(accept=True)
        self.assertEqual(dict(factory.connections), {})  # its sync slot is free
        self.clock.advance(3600)
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(frame(wire.encode(wire.Hello("x", ()))))  # ignored
        self.assertEqual(self.hellos, [])
        proto.connectionLost(Failure(ConnectionError("gone")))
        self.assertEqual(lost, ["10.0.0.2:5555"])
        self.assertEqual(dict(self.reporter.counts), {})

    def test_a_watch_refused_is_closed_counted_and_logged(self) -> None:
        logged = LogCapture(self)
        (factory, proto, transport, _), lost = self.watched(accept=False)
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(Failure(ConnectionError("closed")))
        self.assertEqual(lost, [])
        self.assertEqual(dict(factory.connections), {})
        self.assertEqual(dict(self.reporter.counts), {"watch-refused": 1})
        (line,) = logged.warnings("dropped bad {channel} input")
        self.assertEqual(
            (line["reason"], line["detail"]), ("watch-refused", "no member at 10.0.0.2")
        )

    def test_server_protocol_type(self) -> None:
        self.assertIsInstance(self.proto, SyncServerProtocol)
        self.assertEqual(self.proto.MAX_LENGTH, 4096)


class SyncClientTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.reporter = BadInputReporter(self.clock)
        self.hello = wire.Hello("10.0.0.2:5555", (DELTA,))
        self.proto = SyncClientProtocol(self.hello, self.reporter, 4096, 5.0)
        self.proto.callLater = self.clock.callLater  # type: ignore[method-assign]
        self.transport = StringTransport(
            peerAddress=IPv4Address("TCP", "10.0.0.1", 5555)
        )
        self.proto.makeConnection(self.transport)

    def lose(self) -> None:
        self.proto.connectionLost(Failure(ConnectionError("closed")))

    def test_sends_hello_and_takes_welcome(self) -> None:
        self.assertEqual(self.transport.value(), frame(wire.encode(self.hello)))
        welcome = wire.Welcome("10.0.0.1:5555", (DELTA,))
        self.proto.dataReceived(frame(wire.encode(welcome)))
        self.assertNoResult(self.proto.welcome)  # more frames may follow
        self.lose()  # the seed closes after the last frame
        self.assertEqual(self.successResultOf(self.proto.welcome), welcome)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_welcome_in_several_frames(self) -> None:
        welcome = wire.Welcome("10.0.0.1:5555", big_state())
        frames = welcome_frames(welcome, 4096)
        self.proto.dataReceived(b"".join(frame(f) for f in frames))
        self.lose()
        self.assertEqual(self.successResultOf(self.proto.welcome), welcome)

    def test_cut_short_after_some_frames(self) -> None:
        """The frames that came are a valid state: merged, gossip does the rest."""
        welcome = wire.Welcome("10.0.0.1:5555", big_state())
        frames = welcome_frames(welcome, 4096)
        self.proto.dataReceived(b"".join(frame(f) for f in frames[:2]))
        self.lose()
        got = self.successResultOf(self.proto.welcome)
        self.assertEqual(
            got.deltas,
            join_pieces(d for f in frames[:2] for d in wire.decode(f).deltas),  # type: ignore[union-attr]
        )

    def test_an_http_server_is_named_at_once(self) -> None:
        self.proto.dataReceived(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.lose()
        error = self.failureResultOf(self.proto.welcome, NotAPokanNode).value
        self.assertEqual(
            str(error),
            "10.0.0.1:5555 does not answer as a pokan node: it answered like an"
            " HTTP server ('HTTP/1.1 400 Bad Request')",
        )
        self.assertEqual(dict(self.reporter.counts), {})

    def test_a_redis_server_is_named(self) -> None:
        self.proto.dataReceived(b"-ERR unknown command 'x'\r\n")
        self.lose()
        error = self.failureResultOf(self.proto.welcome, NotAPokanNode).value
        self.assertIn("like a Redis server (\"-ERR unknown command 'x'\")", str(error))

    def test_unknown_bytes_are_shown(self) -> None:
        self.proto.dataReceived(b"\x00\x00\x00\x05zzzzz")
        self.lose()
        error = self.failureResultOf(self.proto.welcome, NotAPokanNode).value
        self.assertIn("its first bytes were b'\\x00\\x00\\x00\\x05zz", str(error))

    def test_a_welcome_in_tiny_pieces_is_still_a_welcome(self) -> None:
        welcome = wire.Welcome("10.0.0.1:5555", (DELTA,))
        for byte in frame(wire.encode(welcome)):
            self.proto.dataReceived(bytes([byte]))
        self.lose()
        self.assertEqual(self.successResultOf(self.proto.welcome), welcome)

    def test_closed_before_welcome(self) -> None:
        self.lose()
        self.failureResultOf(self.proto.welcome, ConnectionError)

    def test_the_timeout_bounds_the_whole_welcome(self) -> None:
        """Frames that keep coming do not hold the sync open past the timeout."""
        piece = frame(wire.encode(wire.Welcome("10.0.0.1:5555", (DELTA,))))
        for _ in range(4):
            self.proto.dataReceived(piece)
            self.clock.advance(1.0)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(1.1)  # 5.1 s since the Hello
        self.assertTrue(self.transport.disconnecting)
        self.lose()  # the four frames that came are merged
        self.assertEqual(self.successResultOf(self.proto.welcome).deltas, (DELTA,) * 4)

    def test_a_seed_that_never_stops_is_cut_off(self) -> None:
        log = LogCapture(self)
        piece = frame(wire.encode(wire.Welcome("10.0.0.1:5555", (DELTA,))))
        self.proto.dataReceived(piece * (MAX_WELCOME_FRAMES - 1))
        self.assertFalse(self.transport.disconnecting)
        self.proto.dataReceived(piece * 3)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(len(self.proto.frames), MAX_WELCOME_FRAMES)
        (line,) = log.warnings("cut off after")
        self.assertEqual(line["peer"], "10.0.0.1:5555")
        self.lose()
        self.successResultOf(self.proto.welcome)

    def test_welcome_with_values_too_big_for_this_node(self) -> None:
        log = LogCapture(self)
        proto = SyncClientProtocol(self.hello, self.reporter, 65536, 5.0, 1400)
        proto.callLater = self.clock.callLater  # type: ignore[method-assign]
        proto.makeConnection(StringTransport())
        big = NodeDelta(INFO, 0, 0, 1, (("big", Entry("v" * 3000, 1, 1.0)),))
        proto.dataReceived(frame(wire.encode(wire.Welcome("seed:1", (big,)))))
        proto.connectionLost(Failure(ConnectionError("closed")))
        (line,) = log.warnings("too big for this node's datagrams")
        self.assertEqual(line["peer"], "seed:1")
        self.successResultOf(proto.welcome)

    def test_own_state_over_the_frame_limit(self) -> None:
        log = LogCapture(self)
        big = NodeDelta(INFO, 0, 0, 1, (("k", Entry("v" * 5000, 1, 1.0)),))
        proto = SyncClientProtocol(
            wire.Hello("10.0.0.2:5555", (big,)), self.reporter, 4096, 5.0
        )
        proto.callLater = self.clock.callLater  # type: ignore[method-assign]
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 5555))
        proto.makeConnection(transport)
        # the Hello goes without the state, so the Welcome can still come back
        self.assertEqual(
            transport.value(), frame(wire.encode(wire.Hello("10.0.0.2:5555", ())))
        )
        (line,) = log.warnings("this node's full state is")
        self.assertEqual(line["limit"], 4096)

    def test_garbage_then_close(self) -> None:
        self.proto.dataReceived(
            frame(wire.header(wire.MessageType.WELCOME, wire.DEFAULT_CLUSTER) + b"\xc1")
        )
        self.assertEqual(dict(self.reporter.counts), {"bad-body": 1})
        self.assertTrue(self.transport.disconnected)
        self.lose()
        self.failureResultOf(self.proto.welcome, ConnectionError)

    def test_stall(self) -> None:
        self.clock.advance(5.1)
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(dict(self.reporter.counts), {"stalled": 1})
        self.lose()
        self.failureResultOf(self.proto.welcome, ConnectionError)

    def test_oversized_frame(self) -> None:
        self.proto.dataReceived(struct.pack(">I", 4097))
        self.assertEqual(dict(self.reporter.counts), {"oversized": 1})
        self.assertTrue(self.transport.disconnected)


class WelcomeFramesTests(unittest.TestCase):
    def test_small_state_is_one_frame(self) -> None:
        welcome = wire.Welcome("s", (DELTA,))
        self.assertEqual(welcome_frames(welcome, 4096), [wire.encode(welcome)])
        empty = wire.Welcome("s", ())
        self.assertEqual(welcome_frames(empty, 4096), [wire.encode(empty)])

    def test_every_prefix_is_a_valid_state(self) -> None:
        """What a reader gets if the stream stops after any frame: for each
        node, exactly its writes up to the watermark it is told."""
        state = big_state()
        frames = welcome_frames(wire.Welcome("s", state), 4096)
        originals = {d.info.id: d for d in state}
        for n in range(1, len(frames) + 1):
            messages = [wire.decode(f) for f in frames[:n]]  # each one valid
            deltas = [d for m in messages for d in m.deltas]  # type: ignore[union-attr]
            for got in join_pieces(deltas):
                whole = originals[got.info.id]
                self.assertEqual(
                    got.entries,
                    tuple(e for e in whole.entries if e[1].version <= got.version),
                )
                self.assertEqual(got.gc_point, min(whole.gc_point, got.version))
                self.assertEqual((got.since, got.left), (0, whole.left))
        self.assertEqual(join_pieces(deltas), state)

    def test_write_bigger_than_a_frame(self) -> None:
        big = NodeDelta(INFO, 0, 0, 1, (("k", Entry("v" * 5000, 1, 1.0)),))
        with self.assertRaises(EncodeError):
            welcome_frames(wire.Welcome("s", (big,)), 4096)

    def test_unrelated_deltas_are_not_joined(self) -> None:
        again = NodeDelta(INFO, 3, 0, 1, (("k", Entry("w", 1, 1.0)),))
        self.assertEqual(join_pieces([DELTA, again]), (DELTA, again))


class BadInputReporterTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.reporter = BadInputReporter(self.clock, interval=10.0, max_lines=5)
        self.log = LogCapture(self)

    def lines(self) -> list[dict[str, Any]]:
        return self.log.warnings("dropped bad")

    def summaries(self) -> list[dict[str, Any]]:
        return self.log.warnings("more bad inputs without a line each")

    def test_first_line_says_nothing_of_more(self) -> None:
        self.reporter.report("udp", "10.0.0.1:1", "bad-magic", host="10.0.0.1")
        (line,) = self.lines()
        self.assertNotIn("more", line["log_format"])
        self.assertNotIn("suppressed", line)
        self.assertEqual(self.summaries(), [])

    def test_throttled_by_host_not_port(self) -> None:
        for port in range(1, 2001):
            self.reporter.report(
                "udp", f"10.0.0.1:{port}", "truncated", host="10.0.0.1"
            )
        self.assertEqual(len(self.lines()), 1)
        self.assertEqual(self.reporter.counts["truncated"], 2000)

    def test_lines_capped_across_hosts(self) -> None:
        for i in range(100):
            self.reporter.report(
                "udp", f"10.0.1.{i}:1", "bad-magic", host=f"10.0.1.{i}"
            )
        self.assertEqual(len(self.lines()), 5)
        self.assertEqual(self.reporter.total, 100)
        self.clock.advance(10)
        self.reporter.report("tcp", "10.0.2.1:1", "stalled", host="10.0.2.1")
        self.assertEqual(len(self.lines()), 6)  # a new window, a new line
        (summary,) = self.summaries()
        self.assertEqual(summary["count"], 95)
        self.assertEqual(summary["reasons"], "bad-magic: 95")
        self.assertEqual(summary["sources"], 95)
        self.assertEqual(summary["ago"], 10)

    def test_quiet_source_reported_at_the_next_report(self) -> None:
        for _ in range(4):
            self.reporter.report("udp", "10.0.0.1:1", "bad-magic", host="10.0.0.1")
        # 10.0.0.1 stops; another source, much later, brings the summary out
        self.clock.advance(3600)
        self.reporter.report("udp", "10.0.0.9:1", "truncated", host="10.0.0.9")
        (summary,) = self.summaries()
        self.assertEqual(summary["count"], 3)
        self.assertEqual(summary["sources"], 1)
        self.assertEqual(summary["ago"], 3600)
        self.clock.advance(10)
        self.reporter.report("udp", "10.0.0.9:1", "truncated", host="10.0.0.9")
        self.assertEqual(len(self.summaries()), 1)  # nothing more to sum up

    def test_source_table_is_bounded(self) -> None:
        from pokan.net import badinput

        self.patch(badinput, "MAX_SOURCES", 3)
        for i in range(100):
            source = f"10.0.0.{i}:1"
            self.reporter.report("udp", source, "bad-magic")
            self.reporter.report("udp", source, "bad-magic")  # suppressed
        self.assertEqual(self.reporter.counts["bad-magic"], 200)
        self.assertLessEqual(len(self.reporter._suppressed_hosts), 3)
        self.clock.advance(10)
        self.reporter.report("udp", "10.0.0.1:1", "bad-magic")
        (summary,) = self.summaries()
        self.assertEqual(summary["sources"], "3+")

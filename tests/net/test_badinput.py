"""Integration: hostile bytes on real sockets are dropped, counted, survived."""

from __future__ import annotations

import socket
import struct
from typing import Any

import msgpack
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import LogLevel
from twisted.trial import unittest

from pokan import Server, wire
from tests.support import (
    LogCatcher,
    global_reactor,
    make_server,
    start_cluster,
    start_server,
    stop_all,
    wait_until,
)

HEADER = wire.header(wire.MessageType.SYN, wire.DEFAULT_CLUSTER)

#: datagrams, each with the reason it must be counted under
BAD_DATAGRAMS = {
    "bad-magic": b"GET / HTTP/1.0\r\n\r\n",
    "truncated": b"PK\x02",
    "oversized": HEADER + b"\x00" * 2000,
    "wrong-version": wire.MAGIC + bytes((99, 1, 0)) + msgpack.packb(["x", []]),
    "wrong-cluster": wire.encode(wire.Goodbye("127.0.0.1:1", 1), cluster="other"),
    "unknown-type": wire.MAGIC
    + bytes((wire.PROTOCOL_VERSION, 77, 0))
    + msgpack.packb(["x"]),
    "bad-body": HEADER + b"\xc1\xc1\xc1",
    "bad-field": HEADER + msgpack.packb(["x", "not a digest", None, None]),
    "unexpected-type": wire.encode(wire.Hello("127.0.0.1:1", ())),
}


class Recorder(protocol.Protocol):
    """A TCP client that remembers what it got and when it was disconnected."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


def datagram_socket(test: unittest.TestCase) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    test.addCleanup(sock.close)
    return sock


@defer.inlineCallbacks
def connect(server: Server) -> Any:
    endpoint = TCP4ClientEndpoint(global_reactor(), "127.0.0.1", server.tcp_port)
    client = Recorder()
    yield connectProtocol(endpoint, client)
    return client


class DatagramTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_bad_datagrams_are_dropped_and_counted(self) -> Any:
        seed, peer = yield start_cluster(self, 2)
        sock = datagram_socket(self)
        for data in BAD_DATAGRAMS.values():
            sock.sendto(data, ("127.0.0.1", seed.udp_port))

        def counted() -> bool:
            reasons = seed.stats["dropped_by_reason"]
            return all(reasons.get(r) == 1 for r in BAD_DATAGRAMS)

        yield wait_until(
            counted,
            timeout=5,
            message=lambda: f"every drop counted: {seed.stats['dropped_by_reason']}",
        )
        self.assertEqual(seed.stats["dropped"], len(BAD_DATAGRAMS))

        # the node still gossips...
        yield seed.store("after", "garbage")
        yield wait_until(
            lambda: (
                (p := peer.peer(seed.id)) is not None and p.value("after") == "garbage"
            ),
            timeout=10,
            message="gossip to go on after the garbage",
        )
        # ...and still serves full syncs
        synced: list[str] = []
        joiner = make_server(gossip_with=f"127.0.0.1:{seed.tcp_port}")
        joiner.after("sync", lambda peer: synced.append(peer.value("after")))
        self.addCleanup(stop_all, [joiner])
        yield joiner.startService()
        yield wait_until(lambda: synced, timeout=10, message="a full sync")
        self.assertEqual(synced, ["garbage"])

    @defer.inlineCallbacks
    def test_log_lines_are_rate_limited_per_host(self) -> Any:
        """A new source port does not earn a new line: the host is what counts."""
        logs = LogCatcher(self)
        server = yield start_server(self)
        first, second = datagram_socket(self), datagram_socket(self)
        for _ in range(20):
            first.sendto(b"garbage", ("127.0.0.1", server.udp_port))
        second.sendto(b"garbage", ("127.0.0.1", server.udp_port))
        yield wait_until(
            lambda: server.stats["dropped"] == 21,
            timeout=5,
            message=lambda: f"21 drops, counted {server.stats['dropped']}",
        )
        lines = logs.matching("dropped bad udp input", "127.0.0.1:")
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("bad-magic", lines[0])
        self.assertNotIn("more", lines[0])

    @defer.inlineCallbacks
    def test_unlogged_drops_are_summed_up_after_the_interval(self) -> Any:
        logs = LogCatcher(self)
        server = yield start_server(self)
        assert server.bad_input is not None
        server.bad_input.interval = 0.2
        sock = datagram_socket(self)
        for _ in range(5):
            sock.sendto(b"garbage", ("127.0.0.1", server.udp_port))
        yield wait_until(lambda: server.stats["dropped"] == 5, timeout=5)
        later = global_reactor().seconds() + 0.25
        yield wait_until(lambda: global_reactor().seconds() >= later, timeout=5)
        sock.sendto(b"garbage", ("127.0.0.1", server.udp_port))
        yield wait_until(lambda: server.stats["dropped"] == 6, timeout=5)
        source = f"127.0.0.1:{sock.getsockname()[1]}"
        self.assertEqual(len(logs.matching("dropped bad udp input", source)), 2)
        (summary,) = logs.matching("dropped 4 more bad inputs without a line each")
        self.assertIn("bad-magic: 4; from 1 source address)", summary)


class StreamTests(unittest.TestCase):
    @defer.inlineCallbacks
    def assertDisconnected(
        self, server: Server, data: bytes, reason: str, timeout: float = 5
    ) -> Any:
        client = yield connect(server)
        if data:
            client.transport.write(data)
        yield wait_until(
            lambda: client.lost.called,
            timeout=timeout,
            message=f"the server to hang up on a client sending {data[:20]!r}",
        )
        self.assertEqual(client.received, b"")
        self.assertEqual(server.stats["dropped_by_reason"].get(reason), 1)

    @defer.inlineCallbacks
    def test_garbage_frame_disconnects(self) -> Any:
        server = yield start_server(self)
        frame = b"not a pokan message"
        yield self.assertDisconnected(
            server, struct.pack(">I", len(frame)) + frame, "bad-magic"
        )

    @defer.inlineCallbacks
    def test_unframed_garbage_disconnects(self) -> Any:
        """Text read as a length prefix is far over the frame limit."""
        server = yield start_server(self)
        yield self.assertDisconnected(server, b"GET / HTTP/1.1\r\n\r\n", "oversized")

    @defer.inlineCallbacks
    def test_wrong_message_type_disconnects(self) -> Any:
        server = yield start_server(self)
        syn = wire.encode(wire.Syn("127.0.0.1:1", ()))
        yield self.assertDisconnected(
            server, struct.pack(">I", len(syn)) + syn, "unexpected-type"
        )

    @defer.inlineCallbacks
    def test_stalled_client_is_disconnected_after_the_sync_timeout(self) -> Any:
        server = yield start_server(self, sync_timeout=0.3)
        start = global_reactor().seconds()
        yield self.assertDisconnected(server, b"", "stalled")
        self.assertGreaterEqual(global_reactor().seconds() - start, 0.25)

    @defer.inlineCallbacks
    def test_client_stalling_mid_frame_is_disconnected(self) -> Any:
        server = yield start_server(self, sync_timeout=0.3)
        yield self.assertDisconnected(server, b"\x00\x00\x01\x00PK", "stalled")

    @defer.inlineCallbacks
    def test_node_serves_syncs_after_bad_clients(self) -> Any:
        seed = yield start_server(self, sync_timeout=0.3)
        yield seed.store("k", "v")
        yield self.assertDisconnected(seed, b"\xff" * 64, "oversized")
        joiner = yield start_server(self, gossip_with=f"127.0.0.1:{seed.tcp_port}")
        yield wait_until(
            lambda: (p := joiner.peer(seed.id)) is not None and p.value("k") == "v",
            timeout=10,
            message="the joiner to sync with the seed",
        )


class StateOverFrameLimitTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_full_state_over_max_frame_goes_in_several_frames(self) -> Any:
        """12 writes of 1000 bytes and max_frame 4096: the full sync still
        brings every write, in several Welcome frames, without a warning."""
        logs = LogCatcher(self)
        seed = yield start_server(self, max_frame=4096, gossip_interval=60)
        for i in range(12):
            yield seed.store(f"key{i}", "v" * 1000)
        joiner = make_server(
            max_frame=4096,
            gossip_interval=60,  # no gossip: what the joiner holds came by TCP
            gossip_with=f"127.0.0.1:{seed.tcp_port}",
        )
        synced: list[int] = []
        joiner.after("sync", lambda peer: synced.append(len(peer.keys())))
        self.addCleanup(stop_all, [joiner])
        yield joiner.startService()
        yield wait_until(lambda: synced, timeout=10, message="a full sync")
        self.assertEqual(synced, [12])
        loud = [
            e for e in logs.events if e.get("log_level", LogLevel.info) > LogLevel.info
        ]
        self.assertEqual(loud, [])

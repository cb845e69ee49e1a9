"""Integration: forged datagrams and frames (built with pokan.wire, sent from a
plain socket on 127.0.0.1) against a live 3-node cluster change nothing that
lasts (issue 12, the table's rows about the merge)."""

from __future__ import annotations

import socket
import struct
from typing import Any

import attrs
from twisted.internet import defer, endpoints, protocol
from twisted.trial import unittest

from pokan import Server, wire
from pokan.core.state import MAX_COUNTER, Entry, NodeDelta, NodeInfo
from tests.support import (
    LogCatcher,
    everyone_knows,
    global_reactor,
    missing,
    start_cluster,
    wait_until,
)


def info_of(server: Server) -> NodeInfo:
    return server._state.me.info


def sane(servers: list[Server]) -> bool:
    """Every node tracks only the real nodes, each alive, counters in range."""
    ids = {s.id for s in servers}
    for server in servers:
        if set(server._state.nodes) != ids:
            return False
        for node in server._state.nodes.values():
            if max(node.info.generation, node.version, node.heartbeat) > MAX_COUNTER:
                return False
            if node.status != "alive":
                return False
            truth = next(s for s in servers if s.id == node.info.id)
            if node.info.generation != info_of(truth).generation:
                return False
    return True


def dropped(server: Server, reason: str) -> int:
    return int(server.stats["dropped_by_reason"].get(reason, 0))


class ForgeryTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.servers = yield start_cluster(self, 3)
        for i, server in enumerate(self.servers):
            yield server.store("k", f"true-{i}")
        yield wait_until(
            lambda: everyone_knows(self.servers, "k"),
            message=lambda: missing(self.servers, "k"),
        )
        self.log = LogCatcher(self)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.addCleanup(self.sock.close)
        self.forger = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def send(self, target: Server, message: wire.Message) -> int:
        data = wire.encode(message)
        self.sock.sendto(data, ("127.0.0.1", target.udp_port))
        return len(data)

    @defer.inlineCallbacks
    def still_whole(self, writer: Server) -> Any:
        """A fresh write of ``writer`` reaches every node; the state is true."""
        yield writer.store("k", "fresh")
        yield wait_until(
            lambda: everyone_knows(self.servers, "k"),
            message=lambda: missing(self.servers, "k"),
        )
        yield wait_until(lambda: sane(self.servers), message="a sane state")
        peers_lines = self.log.matching("peer ")
        self.assertLessEqual(len(peers_lines), 10)

    def forged_write(self, owner: Server, *entries: tuple[str, Entry]) -> wire.Ack:
        me = owner._state.me
        top = max(e.version for _, e in entries)
        delta = NodeDelta(me.info, me.heartbeat, me.version, top, entries)
        return wire.Ack(self.forger, (delta,))

    @defer.inlineCallbacks
    def test_forged_entries_are_undone_by_their_owner(self) -> Any:
        a, b, _ = self.servers
        v = b._state.me.version
        forged = self.forged_write(
            b, ("k", Entry("evil", v + 1, 1.0)), ("planted", Entry("x", v + 2, 1.0))
        )
        self.assertLess(self.send(a, forged), 200)
        yield wait_until(lambda: b.stats["reasserts"] >= 1, message="a re-assert")
        yield wait_until(
            lambda: all(
                s.peer(b.id).value("k") == "true-1"  # type: ignore[union-attr]
                and s.peer(b.id).value("planted") is None  # type: ignore[union-attr]
                for s in self.servers
                if s is not b
            ),
            message="the true values everywhere",
        )
        self.assertEqual(b.value("k"), "true-1")
        yield self.still_whole(b)

    @defer.inlineCallbacks
    def test_forged_tombstone_is_undone(self) -> Any:
        a, b, _ = self.servers
        v = b._state.me.version
        self.send(a, self.forged_write(b, ("k", Entry(None, v + 1, 1.0))))
        yield wait_until(lambda: b.stats["reasserts"] >= 1, message="a re-assert")
        yield wait_until(
            lambda: everyone_knows(self.servers, "k"), message="k back everywhere"
        )
        yield self.still_whole(b)

    @defer.inlineCallbacks
    def test_a_huge_version_locks_nothing(self) -> Any:
        a, b, _ = self.servers
        self.send(a, self.forged_write(b, ("k", Entry("evil", 2**64 - 1, 1.0))))
        self.send(a, self.forged_write(b, ("k", Entry("evil", 2**61, 1.0))))
        yield wait_until(lambda: b.stats["reasserts"] >= 1, message="a re-assert")
        self.assertGreaterEqual(a.stats["dropped"], 1)
        yield self.still_whole(b)

    @defer.inlineCallbacks
    def test_a_goodbye_from_elsewhere_is_not_believed(self) -> Any:
        a, b, _ = self.servers
        self.send(a, wire.Goodbye(b.id, info_of(b).generation))
        # the UDP edge drops it (its sender is not its source socket); the
        # core would too (forged-goodbye), were it handed one
        yield wait_until(
            lambda: dropped(a, "forged-goodbye") + dropped(a, "wrong-source") == 1
        )
        self.assertEqual(a.peer(b.id).status, "alive")  # type: ignore[union-attr]
        yield self.still_whole(b)

    @defer.inlineCallbacks
    def test_a_forged_heartbeat_convicts_nobody(self) -> Any:
        a, b, _ = self.servers
        generation = info_of(b).generation
        top = wire.DigestEntry(b.id, generation, 1, 2**64 - 1, False)
        self.send(a, wire.SynAck(self.forger, (), (top,)))
        high = wire.DigestEntry(b.id, generation, 1, MAX_COUNTER - 1, False)
        self.send(a, wire.SynAck(self.forger, (), (high,)))
        # b hears of its heartbeat far above its own: a new generation
        yield wait_until(lambda: info_of(b).generation > generation)
        yield self.still_whole(b)

    @defer.inlineCallbacks
    def test_our_own_record_at_the_top_generation_is_refused(self) -> Any:
        a = self.servers[0]
        generation = info_of(a).generation
        me = NodeDelta(
            attrs_evolve(info_of(a), 2**64 - 1), 1, 0, 1, (("k", Entry("x", 1, 1.0)),)
        )
        self.send(a, wire.Ack(self.forger, (me,)))
        yield wait_until(lambda: a.stats["dropped"] >= 1)
        self.assertEqual(info_of(a).generation, generation)
        yield self.still_whole(a)
        self.assertLess(len(self.log.lines()), 40)

    @defer.inlineCallbacks
    def test_garbage_and_newline_ids_are_never_tracked(self) -> Any:
        a = self.servers[0]
        bad = [
            NodeInfo("127.0>0.1:17102", 1, "127.0>0.1", 1, 17102),
            NodeInfo("127.0.0.1:9\nforged line", 1, "127.0.0.1", 9, 9),
            NodeInfo("not-an-ip:9", 1, "not-an-ip", 9, 9),
        ]
        self.send(
            a, wire.Ack(self.forger, tuple(NodeDelta(i, 1, 0, 0, ()) for i in bad))
        )
        yield wait_until(lambda: a.stats["dropped"] >= 3)
        for line in self.log.lines():
            self.assertNotIn("\nforged", line)
        yield self.still_whole(a)

    @defer.inlineCallbacks
    def test_a_stranger_draws_no_more_bytes_than_it_sends(self) -> Any:
        a = self.servers[0]
        replies: list[bytes] = []

        class Catch(protocol.DatagramProtocol):
            def datagramReceived(self, data: bytes, addr: Any) -> None:
                replies.append(data)

        port = global_reactor().listenUDP(0, Catch(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        me = f"127.0.0.1:{port.getHost().port}"  # a stranger's own socket
        small = wire.encode(wire.Syn(me, ()))
        port.write(small, ("127.0.0.1", a.udp_port))
        # then a larger one, whose (bounded) reply shows the first was handled
        big = wire.encode(wire.Syn(me, (wire.DigestEntry(me, 1, 1, 1),) * 8))
        port.write(big, ("127.0.0.1", a.udp_port))
        sent = len(small) + len(big)
        yield wait_until(lambda: replies, message="a reply to the large Syn")
        self.assertLessEqual(sum(map(len, replies)), sent)
        for reply in replies:
            self.assertLessEqual(len(reply), len(big))


class HelloFloodTests(unittest.TestCase):
    @defer.inlineCallbacks
    def flood(self, hellos: int) -> Any:
        """``hellos`` Hellos of 5,000 fake nodes each (all new) to a node."""
        servers = yield start_cluster(self, 3)
        a = servers[0]
        yield wait_until(lambda: all(len(s.peers()) == 2 for s in servers))
        for n in range(hellos):
            fakes = tuple(
                NodeDelta(
                    NodeInfo(
                        f"127.{n + 1}.{i // 250}.{i % 250 + 1}:5",
                        1,
                        f"127.{n + 1}.{i // 250}.{i % 250 + 1}",
                        5,
                        5,
                    ),
                    0,
                    0,
                    0,
                    (),
                )
                for i in range(5000)
            )
            body = wire.encode(wire.Hello("127.1.0.1:5", fakes), wire.DEFAULT_MAX_FRAME)
            frame = struct.pack(">I", len(body)) + body

            class Send(protocol.Protocol):
                data = frame

                def connectionMade(self) -> None:
                    self.transport.write(self.data)  # type: ignore[union-attr]

            endpoint = endpoints.TCP4ClientEndpoint(
                global_reactor(), "127.0.0.1", a.tcp_port
            )
            client = yield endpoints.connectProtocol(endpoint, Send())
            self.addCleanup(client.transport.loseConnection)
            yield wait_until(
                lambda n=n: a.stats["dropped"] >= (n + 1) * (5000 - 64), timeout=20
            )
        return servers

    @defer.inlineCallbacks
    def test_a_hello_of_5000_fake_nodes_adds_at_most_64(self) -> Any:
        servers = yield self.flood(1)
        a = servers[0]
        self.assertLessEqual(len(a.peers()), 2 + 64)
        for server in servers[1:]:
            self.assertLessEqual(len(server.peers()), 2 + 64 + 1)
        yield a.store("k", "fresh")
        yield wait_until(lambda: everyone_knows(servers, "k"))

    @defer.inlineCallbacks
    def test_hellos_from_one_host_add_at_most_64_a_minute(self) -> Any:
        servers = yield self.flood(4)
        a = servers[0]
        self.assertLessEqual(len(a.peers()), 2 + 64)
        self.assertGreaterEqual(
            a.stats["dropped_by_reason"]["too-many-new-nodes"], 4 * (5000 - 64)
        )


def attrs_evolve(info: NodeInfo, generation: int) -> NodeInfo:
    return attrs.evolve(info, generation=generation)

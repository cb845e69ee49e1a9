"""Peers of the other address family are refused: one warning each, no traceback."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pokan import Server, wire
from pokan.core.state import ClusterState, NodeDelta, NodeInfo
from pokan.errors import ConfigurationError
from pokan.store import MemoryStore, Snapshot
from tests.net.test_server_unit import ADDRESS, ServerTestCase, other_node
from tests.support import LogCatcher, start_cluster, start_server, wait_until

V6 = NodeInfo("[fd00::3]:5555", 7, "fd00::3", 5555, 5555, "peer")


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def tracebacks(logged: LogCatcher) -> list[str]:
    return [str(e.get("log_format")) for e in logged.events if "log_failure" in e]


class MergeTests(unittest.TestCase):
    def test_a_node_of_the_other_family_is_not_merged(self) -> None:
        state = ClusterState(other_node(1))
        state.merge([NodeDelta(V6, 1, 0, 0, ()), NodeDelta(other_node(2), 1, 0, 0, ())])
        self.assertEqual(sorted(state.nodes), ["10.0.0.1:5555", "10.0.0.2:5555"])
        self.assertEqual(state.drain_rejected(), (("other-family", V6.id),))


class SeedFamilyTests(unittest.TestCase):
    def test_a_seed_of_the_other_family_is_refused(self) -> None:
        for address, seed in (("127.0.0.1", "[::1]:5568"), ("::1", "127.0.0.1:5555")):
            with self.assertRaises(ConfigurationError) as caught:
                Server(address, gossip_with=seed)
            message = str(caught.exception)
            self.assertIn(f"seed {seed} is an IPv", message)
            self.assertIn("peers of its own address family only", message)

    def test_a_host_name_seed_is_left_to_resolve(self) -> None:
        Server("::1", gossip_with="localhost:5555")


class RefusedPeerTests(ServerTestCase):
    def test_a_peer_of_the_other_family_is_refused_with_one_warning(self) -> None:
        server = self.start()
        logged = LogCatcher(self)
        sender = other_node(2)
        for _ in range(3):
            deltas = (NodeDelta(sender, 1, 0, 0, ()), NodeDelta(V6, 1, 0, 0, ()))
            data = wire.encode(wire.Ack(sender.id, deltas))
            self.reactor.udpPorts[0].protocol.datagramReceived(
                data, (sender.address, sender.udp_port)
            )
            self.reactor.advance(30)  # past any throttle window
        self.assertEqual([p.id for p in server.peers()], [sender.id])
        self.assertIsNone(server.peer(V6.id))
        warned = logged.matching("refused peer [fd00::3]:5555")
        self.assertEqual(len(warned), 1)
        self.assertIn(f"this node ({ADDRESS}) gossips over IPv4 only", warned[0])
        self.assertEqual(server.stats["dropped_by_reason"]["other-family"], 3)
        self.assertFalse(logged.matching("dropped bad"))
        destinations = {addr[0] for _, addr in self.reactor.sent()}
        self.assertEqual(destinations, {sender.address})

    def test_a_stored_node_of_the_other_family_is_not_restored(self) -> None:
        from pokan.core.state import NodeRecord

        store = MemoryStore()
        snapshot = Snapshot(
            (NodeRecord(other_node(2), 1, "alive"), NodeRecord(V6, 1, "alive")), {}
        )
        store.open = lambda: defer.succeed(snapshot)  # type: ignore[method-assign]
        server = self.start(store=store)
        self.assertEqual([p.id for p in server.peers()], ["10.0.0.2:5555"])


class MixedClusterTests(unittest.TestCase):
    if not has_ipv6_loopback():
        skip = "this machine has no IPv6 loopback (::1) to bind"

    @defer.inlineCallbacks
    def test_an_ipv6_node_syncing_with_an_ipv4_cluster(self) -> Any:
        """The issue's case: a ::1 node joins a 127.0.0.1 cluster over TCP."""
        logged = LogCatcher(self)
        a, b = yield start_cluster(self, 2, gossip_interval=0.05)
        v6 = yield start_server(self, address="::1", udp_port=0, tcp_port=0)
        shutdowns: list[str] = []
        for server in (a, b, v6):
            server.on("shutdown", lambda s=server: shutdowns.append(s.id))
        # a TCP sync crosses families (as a --gossip-with host name can)
        yield v6._syncs.sync_with("127.0.0.1", a.tcp_port)
        # rounds go on: a and b still spread what they write
        yield a.store("after", "1")
        yield wait_until(
            lambda: (b.peer(a.id) or a).value("after") == "1",
            message="b to learn a's key",
        )
        self.assertIsNone(a.peer(v6.id))
        self.assertIsNone(b.peer(v6.id))
        self.assertEqual(v6.peers(), [])
        self.assertEqual(len(logged.matching(f"refused peer {v6.id}")), 1)
        self.assertEqual(len(logged.matching(f"refused peer {a.id}")), 1)
        self.assertEqual(tracebacks(logged), [])
        self.assertFalse(logged.matching("could not send"))
        for server in (v6, a, b):
            yield server.stopService()
        self.assertEqual(sorted(shutdowns), sorted([a.id, b.id, v6.id]))
        self.assertEqual(tracebacks(logged), [])

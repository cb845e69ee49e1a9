"""Membership settings: Server keywords, twistd options, docs example."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from twisted.internet import task
from twisted.python import usage
from twisted.trial import unittest

from pokan import ON_EVENTS, ConfigurationError, Peer, Server
from pokan.core.state import NodeState
from pokan.daemon import tap
from pokan.net.faults import Faults

DOCS = Path(__file__).resolve().parents[2] / "docs"


class ServerOptionTests(unittest.TestCase):
    def test_defaults(self) -> None:
        server = Server("127.0.0.1", reactor=task.Clock())
        membership = server._membership
        self.assertEqual(membership.detector.threshold, 8.0)
        self.assertEqual(membership.tombstone_ttl, 3600.0)
        self.assertEqual(membership.dead_node_ttl, 86400.0)
        self.assertEqual(server._node.fanout, 3)
        self.assertEqual(server.faults.drop_rate, 0.0)

    def test_bad_values_are_configuration_errors(self) -> None:
        for kwargs in (
            {"phi_threshold": 0},
            {"phi_threshold": "high"},
            {"tombstone_ttl": -1},
            {"dead_node_ttl": float("inf")},
            {"gossip_fanout": 0},
            {"gossip_fanout": 17},
            {"gossip_fanout": 1.5},
        ):
            self.assertRaises(ConfigurationError, Server, "127.0.0.1", **kwargs)
        self.assertRaises(ValueError, Server, "127.0.0.1", drop_rate=1.5)

    def test_interval_change_follows_into_the_detector(self) -> None:
        server = Server("127.0.0.1", reactor=task.Clock())
        server.gossip_every(0.2)
        self.assertEqual(server._membership.detector.interval, 0.2)

    def test_membership_events_are_known(self) -> None:
        for event in ("peer_joined", "peer_left", "peer_dead", "peer_alive"):
            self.assertIn(event, ON_EVENTS)

    def test_peers_by_left_status(self) -> None:
        server = Server("127.0.0.1", reactor=task.Clock())
        self.assertEqual(server.peers(status="left"), [])
        self.assertRaises(ValueError, server.peers, status="gone")

    def test_peer_predicates(self) -> None:
        peer = Peer.unknown_seed("127.0.0.1", 5555)
        self.assertTrue(peer.is_alive)
        self.assertFalse(peer.is_left)
        node: NodeState = peer._node
        node.status = "left"
        self.assertTrue(peer.is_left)
        self.assertFalse(peer.is_dead)


class FaultTests(unittest.TestCase):
    def test_drop_rate_is_seeded_and_counted(self) -> None:
        import random

        faults = Faults(0.2, random.Random(1))
        drops = sum(faults.drops(("127.0.0.1", 1)) for _ in range(10000))
        self.assertTrue(1800 < drops < 2200, drops)
        self.assertEqual(faults.dropped, drops)

    def test_blocked_addresses(self) -> None:
        faults = Faults()
        faults.blocked.add(("127.0.0.1", 7))
        self.assertTrue(faults.drops(("127.0.0.1", 7)))
        self.assertTrue(faults.blocks(("127.0.0.1", 7)))
        self.assertFalse(faults.drops(("127.0.0.1", 8)))


class TapOptionTests(unittest.TestCase):
    def parse(self, *args: str) -> Any:
        options = tap.Options()
        options.parseOptions(["--address", "127.0.0.1", *args])
        return options

    def test_membership_options(self) -> None:
        options = self.parse(
            "--phi-threshold", "10", "--tombstone-ttl", "60",
            "--dead-node-ttl", "120", "--gossip-fanout", "3", "--drop-rate", "0.1",
            "--failure-detector", "phi",
        )  # fmt: skip
        self.assertEqual(options["phi-threshold"], 10.0)
        self.assertEqual(options["tombstone-ttl"], 60.0)
        self.assertEqual(options["dead-node-ttl"], 120.0)
        self.assertEqual(options["gossip-fanout"], 3)
        self.assertEqual(options["drop-rate"], 0.1)
        service = tap.makeService(options)
        server = service.server  # type: ignore[attr-defined]
        self.assertEqual(server._membership.detector.threshold, 10.0)
        self.assertEqual(server._node.fanout, 3)

    def test_swim_is_the_default_detector(self) -> None:
        service = tap.makeService(self.parse())
        server = service.server  # type: ignore[attr-defined]
        self.assertEqual(server._engine.settings.failure_detector, "swim")
        self.assertEqual(server._engine.detector_view("x", 0.0)["kind"], "swim")
        self.assertFalse(server._engine.node.heartbeats)

    def test_bad_membership_options(self) -> None:
        for args in (
            ("--failure-detector", "gossip"),
            ("--phi-threshold", "-1"),
            ("--tombstone-ttl", "soon"),
            ("--dead-node-ttl", "0"),
            ("--gossip-fanout", "0"),
            ("--drop-rate", "2"),
        ):
            self.assertRaises(usage.UsageError, self.parse, *args)


class DocsTests(unittest.TestCase):
    def test_membership_example_runs(self) -> None:
        text = (DOCS / "membership.md").read_text()
        blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
        self.assertEqual(len(blocks), 1)
        printed: list[str] = []
        namespace: dict[str, Any] = {"print": printed.append}
        exec(compile(blocks[0], "docs/membership.md", "exec"), namespace)
        server = namespace["server"]
        peer = Peer.unknown_seed("127.0.0.1", 7000)
        for event in ("peer_joined", "peer_dead", "peer_alive", "peer_left"):
            server.events.fire(event, peer, peer=peer)
        self.assertEqual(len(printed), 4)
        self.assertIn("127.0.0.1:7000 is silent: dead", printed[1])


class ResetSyncTests(unittest.TestCase):
    """A peer behind our GC point gets a full sync, at most once in a while."""

    def test_behind_peer_gets_one_full_sync(self) -> None:
        from twisted.internet import defer

        from pokan import wire
        from pokan.core import gc
        from pokan.core.state import NodeDelta, NodeInfo

        clock = task.Clock()
        clock.advance(1000)
        server = Server("127.0.0.1", reactor=clock, gossip_interval=0.5)
        state = server._state
        state.write("k", "v", 1.0)
        state.write("k", None, 2.0)
        gc.collect_tombstones(state, 1000.0, ttl=10)
        self.assertEqual(state.me.gc_point, 2)
        peer = NodeInfo("127.0.0.9:7000", 1, "127.0.0.9", 7001, 7000)
        state.merge([NodeDelta(peer, 1, 0, 0, ())])
        calls: list[tuple[str, int]] = []

        def fake_sync(host: str, port: int) -> defer.Deferred[None]:
            calls.append((host, port))
            return defer.succeed(None)

        server._syncs.sync_with = fake_sync  # type: ignore[method-assign,assignment]
        me = state.me.info
        behind = wire.Syn(
            peer.id,
            (
                wire.DigestEntry(peer.id, 1, 0, 5),
                wire.DigestEntry(me.id, me.generation, 1, 0),
            ),
        )
        server._receive(behind, ("127.0.0.9", 7000))
        self.assertEqual(calls, [("127.0.0.9", 7001)])
        clock.advance(1)
        server._receive(behind, ("127.0.0.9", 7000))
        self.assertEqual(len(calls), 1)  # not again so soon
        clock.advance(10)
        server._receive(behind, ("127.0.0.9", 7000))
        self.assertEqual(len(calls), 2)
        # a peer up to date gets none
        current = wire.Syn(
            peer.id,
            (
                wire.DigestEntry(peer.id, 1, 0, 6),
                wire.DigestEntry(me.id, me.generation, 2, 0),
            ),
        )
        clock.advance(100)
        server._receive(current, ("127.0.0.9", 7000))
        self.assertEqual(len(calls), 2)


class SeedRetryTests(unittest.TestCase):
    """With no live peer left, the node syncs with its seeds again."""

    def test_restart_when_idle_only(self) -> None:
        from twisted.internet import defer

        from pokan.net.seeds import SeedSync

        clock = task.Clock()
        calls: list[tuple[str, int]] = []
        pending: list[defer.Deferred[None]] = []

        def sync(host: str, port: int) -> defer.Deferred[None]:
            calls.append((host, port))
            d: defer.Deferred[None] = defer.Deferred()
            pending.append(d)
            return d

        seeds = SeedSync(clock, [("127.0.0.1", 7001)], sync)
        seeds.start()
        self.assertFalse(seeds.idle)  # syncing
        seeds.restart()
        self.assertEqual(len(calls), 1)
        pending.pop().callback(None)
        self.assertTrue(seeds.idle)
        seeds.restart()
        self.assertEqual(len(calls), 2)
        pending.pop().errback(ConnectionError("refused"))
        self.assertFalse(seeds.idle)  # waiting to retry
        clock.advance(1.0)
        self.assertEqual(len(calls), 3)
        seeds.stop()
        self.assertFalse(seeds.idle)

    def test_server_resyncs_when_no_peer_is_alive(self) -> None:
        from pokan.core.state import NodeDelta, NodeInfo

        server = Server("127.0.0.1", reactor=task.Clock(), gossip_with="127.0.0.1:7001")
        restarts: list[bool] = []

        class FakeSync:
            idle = True

            def restart(self) -> None:
                restarts.append(True)

        server._syncs.seed_sync = FakeSync()  # type: ignore[assignment]
        other = NodeInfo("127.0.0.9:7000", 1, "127.0.0.9", 7001, 7000)
        server._state.merge([NodeDelta(other, 1, 0, 0, ())])
        server._syncs.rejoin()
        self.assertEqual(restarts, [])  # a live peer is known
        server._state.nodes[other.id].status = "dead"
        server._syncs.rejoin()
        self.assertEqual(restarts, [True])

"""Garbage collection and resets, sans-IO; the wire fields they use."""

from __future__ import annotations

from twisted.trial import unittest

from pokan import wire
from pokan.core import gc, reconcile
from pokan.core.membership import Membership
from pokan.core.state import Batch, ClusterState, Entry, NodeDelta, NodeInfo
from pokan.errors import DecodeError
from pokan.store import MemoryStore


def info(n: int, generation: int = 1) -> NodeInfo:
    return NodeInfo(f"10.0.0.{n}:5555", generation, f"10.0.0.{n}", 5555, 5555)


BUDGET = 1300


def exchange(a: ClusterState, b: ClusterState) -> None:
    """One Scuttlebutt exchange opened by ``a``, without loss."""
    syn, _ = reconcile.make_syn(a, 0, BUDGET)
    deltas, differing = reconcile.respond_to_syn(b, syn, BUDGET)
    a.merge(deltas)
    b.merge(reconcile.respond_to_syn_ack(a, differing, BUDGET))


class TombstoneTests(unittest.TestCase):
    def setUp(self) -> None:
        self.a = ClusterState(info(1))
        self.b = ClusterState(info(2))
        self.c = ClusterState(info(3))
        self.a.write("keep", "1", 10.0)
        self.a.write("gone", "2", 10.0)
        for other in (self.b, self.c):
            exchange(other, self.a)

    def test_old_tombstones_go_without_an_event(self) -> None:
        self.a.write("gone", None, 20.0)
        self.assertEqual(gc.collect_tombstones(self.a, 20.0 + 99, ttl=100), [])
        changes = gc.collect_tombstones(self.a, 20.0 + 100, ttl=100)
        self.assertEqual([(c.key, c.event) for c in changes], [("gone", None)])
        self.assertNotIn("gone", self.a.me.entries)
        self.assertEqual(self.a.me.gc_point, 3)
        store = MemoryStore()
        store.persist(Batch(tuple(changes)))
        self.assertEqual(store.entries.get("10.0.0.1:5555", {}), {})

    def test_no_resurrection_after_gc_and_a_reset(self) -> None:
        # b hears of the deletion, c does not (partitioned)
        self.a.write("gone", None, 20.0)
        exchange(self.b, self.a)
        for state in (self.a, self.b):
            gc.collect_tombstones(state, 200.0, ttl=100)
        self.assertEqual(self.b.nodes["10.0.0.1:5555"].gc_point, 3)
        # c comes back: it is behind the GC point, plain deltas are withheld
        syn, _ = reconcile.make_syn(self.c, 0, BUDGET)
        self.assertEqual(gc.behind(self.b, syn.digest), ["10.0.0.1:5555"])
        deltas, _ = reconcile.respond_to_syn(self.b, syn, BUDGET)
        self.assertNotIn("10.0.0.1:5555", [d.info.id for d in deltas])
        # and c's stale copy never flows back to a or b
        exchange(self.c, self.b)
        exchange(self.c, self.a)
        exchange(self.b, self.c)
        self.assertNotIn("gone", self.a.me.entries)
        self.assertNotIn("gone", self.b.nodes["10.0.0.1:5555"].entries)
        self.assertIn("gone", self.c.nodes["10.0.0.1:5555"].entries)
        # the full sync carries resets: c drops the key, key_removed fires once
        full = [
            wire.decode(wire.encode(wire.Welcome("b", tuple(self.b.full_deltas()))))
        ]
        batch = self.c.merge(full[0].deltas)  # type: ignore[union-attr]
        removed = [(c.key, c.event) for c in batch.changes if c.event]
        self.assertEqual(removed, [("gone", "key_removed")])
        node = self.c.nodes["10.0.0.1:5555"]
        self.assertEqual(set(node.entries), {"keep"})
        self.assertEqual(node.gc_point, 3)
        self.assertEqual(node.version, self.a.me.version)
        # now up to date: no longer behind, and a second reset changes nothing
        syn, _ = reconcile.make_syn(self.c, 0, BUDGET)
        self.assertEqual(gc.behind(self.b, syn.digest), [])
        self.assertFalse(self.c.merge(self.b.full_deltas()).changes)

    def test_reset_is_ignored_by_a_node_ahead(self) -> None:
        self.a.write("gone", None, 20.0)
        exchange(self.b, self.a)
        exchange(self.c, self.a)
        self.a.write("later", "3", 30.0)
        exchange(self.c, self.a)
        gc.collect_tombstones(self.b, 200.0, ttl=100)
        batch = self.c.merge(self.b.full_deltas())
        self.assertEqual(batch.changes, ())
        self.assertIn("later", self.c.nodes["10.0.0.1:5555"].entries)


class ForgetTests(unittest.TestCase):
    def setUp(self) -> None:
        self.state = ClusterState(info(1))
        self.membership = Membership(
            self.state, interval=1.0, tombstone_ttl=50, dead_node_ttl=100
        )
        self.stale = NodeDelta(info(2), 4, 0, 1, (("k", Entry("v", 1, 1.0)),))

    def run_ticks(self, start: float, end: float) -> Batch:
        batch = Batch()
        now = start
        while now < end:
            now += 1.0
            batch += self.membership.tick(now)
            self.membership.settle(batch, now)
        return batch

    def test_dead_node_forgotten_after_ttl_and_stays_forgotten(self) -> None:
        self.membership.settle(self.state.merge([self.stale]), 0.0)
        self.membership.observe(0.0)
        batch = self.run_ticks(0.0, 20.0)
        self.assertEqual(self.state.nodes["10.0.0.2:5555"].status, "dead")
        batch = self.run_ticks(20.0, 130.0)
        self.assertEqual(batch.forgotten, ("10.0.0.2:5555",))
        self.assertNotIn("10.0.0.2:5555", self.state.nodes)
        # no key_removed for the keys of a forgotten node
        self.assertEqual([c for c in batch.changes if c.event], [])
        # gossip about the same incarnation does not bring it back
        self.assertFalse(self.state.merge([self.stale]))
        # a newer generation does
        fresh = NodeDelta(info(2, 2), 1, 0, 0, ())
        events = self.membership.settle(self.state.merge([fresh]), 131.0)
        self.assertEqual([e for e, _ in events], ["peer_joined"])

    def test_forgotten_incarnation_is_let_go_after_another_ttl(self) -> None:
        self.membership.settle(self.state.merge([self.stale]), 0.0)
        self.run_ticks(0.0, 130.0)
        self.assertIn("10.0.0.2:5555", self.state.forgotten)
        self.run_ticks(130.0, 300.0)
        self.assertNotIn("10.0.0.2:5555", self.state.forgotten)

    def test_memory_store_drops_forgotten_nodes(self) -> None:
        store = MemoryStore()
        store.persist(self.state.merge([self.stale]))
        self.assertIn("10.0.0.2:5555", store.nodes)
        store.persist(Batch(forgotten=("10.0.0.2:5555",)))
        self.assertNotIn("10.0.0.2:5555", store.nodes)
        self.assertNotIn("10.0.0.2:5555", store.entries)

    def test_batch_addition_keeps_forgotten_last(self) -> None:
        record = self.state.merge([self.stale]).nodes
        combined = Batch((), record) + Batch(forgotten=("10.0.0.2:5555",))
        self.assertEqual(combined.nodes, ())
        self.assertTrue(combined)


class WireTests(unittest.TestCase):
    def roundtrip(self, message: wire.Message) -> wire.Message:
        return wire.decode(wire.encode(message))

    def test_left_and_gc_point_roundtrip(self) -> None:
        d = NodeDelta(info(2), 3, 0, 5, (("k", Entry("v", 5, 1.0)),), True, 4)
        plain = NodeDelta(info(3), 3, 1, 5, ())
        digest = (
            wire.DigestEntry("a", 1, 2, 3, left=True),
            wire.DigestEntry("b", 1, 2, 3),
        )
        self.assertEqual(
            self.roundtrip(wire.Ack("s", (d, plain))), wire.Ack("s", (d, plain))
        )
        syn = wire.Syn("s", digest)
        self.assertEqual(self.roundtrip(syn), syn)

    def test_plain_entries_keep_their_size(self) -> None:
        entry = wire.DigestEntry("a", 1, 2, 3)
        self.assertEqual(len(wire.pack_digest_entry(entry)), 4)
        plain = NodeDelta(info(3), 3, 1, 5, ())
        self.assertEqual(len(wire.pack_delta(plain)), 5)

    def bad(self, body: list[object], kind: wire.MessageType) -> None:
        import msgpack

        data = (
            wire.MAGIC + bytes((wire.PROTOCOL_VERSION, kind, 0)) + msgpack.packb(body)
        )
        self.assertRaises(DecodeError, wire.decode, data)

    def test_strict_validation(self) -> None:
        packed_info = wire.pack_info(info(2))
        ack = wire.MessageType.ACK
        syn = wire.MessageType.SYN
        self.bad(["s", [[packed_info, 1, 0, 5, [], 2, 0]]], ack)  # unknown flag
        self.bad(["s", [[packed_info, 1, 0, 5, [], 0, 0]]], ack)  # empty extras
        self.bad(["s", [[packed_info, 1, 1, 5, [], 0, 3]]], ack)  # reset not from 0
        self.bad(["s", [[packed_info, 1, 0, 5, [], 0, 6]]], ack)  # gc point > version
        self.bad(["s", [[packed_info, 1, 0, 5, [], 1]]], ack)  # six fields
        self.bad(["s", [["a", 1, 2, 3, 0]], None, None], syn)  # flag 0 written out
        self.bad(["s", [["a", 1, 2, 3, 2]], None, None], syn)  # unknown flag
        self.bad(["s", [["a", 1, 2, 3, 1, 1]], None, None], syn)  # six fields

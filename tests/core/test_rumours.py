"""Rumours: piggybacked fresh writes, eager pushes, retries, and the Syn field."""

from __future__ import annotations

import random

import attrs
import msgpack
from twisted.trial import unittest

from pokan import wire
from pokan.core import reconcile
from pokan.core.node import GossipNode
from pokan.core.rumours import RumourQueue
from pokan.core.state import ClusterState, Entry, NodeInfo, NodeState
from pokan.errors import DecodeError


def info(i: int) -> NodeInfo:
    return NodeInfo(f"10.0.0.{i}:5555", 1, f"10.0.0.{i}", 5555, 5555)


def cluster(n: int, push_fanout: int = 2) -> list[GossipNode]:
    """n nodes that all know each other."""
    nodes = []
    for i in range(n):
        state = ClusterState(info(i))
        for j in range(n):
            if j != i:
                state.nodes[info(j).id] = NodeState(info(j))
        state._sorted_ids = None
        nodes.append(
            GossipNode(
                state, random.Random(i), rumours=RumourQueue(push_fanout=push_fanout)
            )
        )
    return nodes


class RumourQueueTests(unittest.TestCase):
    def test_write_is_pushed_then_piggybacked_until_the_limit(self) -> None:
        a, _b, _c = cluster(3)
        pushes = a.wrote(a.state.write("k", "v", 1.0))
        self.assertEqual(
            {o.address for o in pushes}, {("10.0.0.1", 5555), ("10.0.0.2", 5555)}
        )
        push = pushes[0].message
        assert isinstance(push, wire.Ack)
        self.assertEqual(push.deltas[0].entries, (("k", Entry("v", 1, 1.0)),))
        # the next Syn carries it too, until the retransmit limit
        limit = a.rumours.limit(a.state)
        sent = 2
        while True:
            syn = a.gossip_round()[0].message
            assert isinstance(syn, wire.Syn)
            if not syn.deltas:
                break
            sent += 1
        self.assertEqual(sent, limit)

    def test_first_receipt_is_rumoured_onward_but_not_echoed(self) -> None:
        a, b, _c = cluster(3)
        pushes = a.wrote(a.state.write("k", "v", 1.0))
        to_b = next(o for o in pushes if o.address == ("10.0.0.1", 5555))
        result = b.receive(to_b.message, ("10.0.0.0", 5555))
        self.assertEqual(result.batch.changes[0].key, "k")
        self.assertEqual(len(b.rumours), 1)  # a was known: only its write is news
        # a Syn from a carrying the write: b's SynAck does not send it back
        syn, _ = reconcile.make_syn(a.state, 0, a.budget)
        syn = attrs.evolve(syn, deltas=to_b.message.deltas)
        reply = b.receive(syn, ("10.0.0.0", 5555)).outgoing[0].message
        assert isinstance(reply, wire.SynAck)
        self.assertNotIn("k", [k for d in reply.deltas for k, _ in d.entries])

    def test_join_is_rumoured(self) -> None:
        a, b = cluster(2)
        newcomer = ClusterState(info(9))
        a.merge_full(newcomer.full_deltas())
        syn = a.gossip_round()[0].message
        assert isinstance(syn, wire.Syn)
        self.assertIn(info(9).id, [d.info.id for d in syn.deltas])
        b.receive(syn, ("10.0.0.0", 5555))
        self.assertIn(info(9).id, b.state.nodes)

    def test_a_node_that_left_is_rumoured_as_left(self) -> None:
        """A node learning of it from the rumour never sees it join."""
        a, b = cluster(2)
        gone = ClusterState(info(9))
        delta = attrs.evolve(gone.full_deltas()[0], left=True)
        a.merge_full([delta])
        self.assertEqual(a.state.nodes[info(9).id].status, "left")
        syn = a.gossip_round()[0].message
        assert isinstance(syn, wire.Syn)
        (rumoured,) = [d for d in syn.deltas if d.info.id == info(9).id]
        self.assertTrue(rumoured.left)
        (record,) = b.receive(syn, ("10.0.0.0", 5555)).batch.nodes
        self.assertEqual(record.status, "left")

    def test_queue_is_bounded(self) -> None:
        queue = RumourQueue(max_rumours=4)
        for i in range(10):
            queue.add("n", f"k{i}")
        self.assertEqual(len(queue), 4)
        self.assertEqual(queue.evicted, 6)

    def test_pushes_are_paced(self) -> None:
        (a, *_) = cluster(5)
        sent = [len(a.wrote(a.state.write(f"k{i}", "v", 1.0))) for i in range(5)]
        self.assertEqual(sent, [2, 2, 2, 0, 0])
        a.gossip_round()
        self.assertEqual(len(a.wrote(a.state.write("k9", "v", 1.0))), 2)

    def test_retry_when_the_syn_ack_does_not_come(self) -> None:
        a, b, c = cluster(3, push_fanout=0)
        first = a.gossip_round()[0]
        retry = a.retry_round()
        self.assertEqual(len(retry), 1)
        self.assertNotEqual(retry[0].address, first.address)
        self.assertEqual(a.retry_round(), [])
        # answered: no retry
        first = a.gossip_round()[0]
        peer = b if first.address == ("10.0.0.1", 5555) else c
        ack = peer.receive(first.message, ("10.0.0.0", 5555)).outgoing[0]
        a.receive(ack.message, first.address)
        self.assertEqual(a.retry_round(), [])


class SynWireTests(unittest.TestCase):
    def test_syn_carries_deltas(self) -> None:
        a, _ = cluster(2)
        a.state.write("k", b"\x00", 2.5)
        delta = a.state.full_deltas()[0]
        syn = wire.Syn("x", (wire.DigestEntry("x", 1, 2, 3),), None, None, (delta,))
        self.assertEqual(wire.decode(wire.encode(syn)), syn)

    def test_syn_without_deltas_field_still_decodes(self) -> None:
        body = msgpack.packb(["x", [["x", 1, 2, 3]], None, None])
        syn = wire.decode(wire.header(wire.MessageType(1), wire.DEFAULT_CLUSTER) + body)
        self.assertEqual(syn, wire.Syn("x", (wire.DigestEntry("x", 1, 2, 3),)))

    def test_bad_syn_deltas_are_rejected(self) -> None:
        for deltas in (7, [[1]], [None]):
            body = msgpack.packb(["x", [], None, None, deltas])
            self.assertRaises(
                DecodeError,
                wire.decode,
                wire.header(wire.MessageType(1), wire.DEFAULT_CLUSTER) + body,
            )
        body = msgpack.packb(["x", [], None, None, [], "extra"])
        self.assertRaises(
            DecodeError,
            wire.decode,
            wire.header(wire.MessageType(1), wire.DEFAULT_CLUSTER) + body,
        )

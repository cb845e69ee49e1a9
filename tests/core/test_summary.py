"""Summary Syns: an idle exchange between nodes that agree is two small datagrams."""

from __future__ import annotations

import itertools
import random

from twisted.trial import unittest

from pokan import wire
from pokan.core import reconcile
from pokan.core.node import GossipNode, Outgoing, address_of
from pokan.core.state import ClusterState, Entry, NodeDelta, NodeInfo, NodeState


def info(i: int) -> NodeInfo:
    host = f"10.0.{i // 250}.{i % 250 + 1}"
    return NodeInfo(f"{host}:5555", 1, host, 5555, 5555)


def cluster(n: int, keys: int = 2) -> list[GossipNode]:
    """Two nodes of ``n`` that agree on everything, neither bumping its
    heartbeat; the other ``n - 2`` left (so the two only pick each other)."""
    infos = [info(i) for i in range(n)]
    nodes = []
    for i, me in enumerate(infos[:2]):
        state = ClusterState(me)
        for j, other in enumerate(infos):
            entries = {f"k{k}": Entry(f"v{k}", k + 1, 1.0) for k in range(keys)}
            if other == me:
                state.me.entries, state.me.version = entries, keys
            else:
                status = "alive" if j < 2 else "left"
                state.nodes[other.id] = NodeState(other, entries, keys, 0, status)
        state._sorted_ids = None
        node = GossipNode(state, random.Random(i))
        node.heartbeats = False
        nodes.append(node)
    return nodes


class Net:
    """Delivers messages through the codec and records every datagram."""

    def __init__(self, nodes: list[GossipNode]) -> None:
        self.nodes = {address_of(n.state.me): n for n in nodes}
        self.sent: list[tuple[wire.Message, int]] = []

    def deliver(self, outgoing: list[Outgoing], source: tuple[str, int]) -> None:
        queue = [(o, source) for o in outgoing]
        while queue:
            out, src = queue.pop(0)
            data = wire.encode(out.message)
            message = wire.decode(data, wire.DATAGRAM_TYPES)
            self.sent.append((message, len(data)))
            target = self.nodes[out.address]
            result = target.receive(message, src, len(data))
            queue.extend((o, out.address) for o in result.outgoing)

    def round(self, node: GossipNode) -> list[tuple[wire.Message, int]]:
        start = len(self.sent)
        self.deliver(node.gossip_round(), address_of(node.state.me))
        return self.sent[start:]


class IdleExchangeTests(unittest.TestCase):
    def test_agreeing_nodes_exchange_summaries_only(self) -> None:
        a, b = cluster(2)
        net = Net([a, b])
        first = net.round(a)  # no exchange found them equal yet: the digest
        self.assertTrue(first[0][0].digest)  # type: ignore[union-attr]
        self.assertEqual(len(first), 2)  # Syn and an empty SynAck: no Ack
        for _ in range(5):
            (syn, syn_size), (reply, reply_size) = net.round(a)
            assert isinstance(syn, wire.Syn) and isinstance(reply, wire.SynAck)
            self.assertEqual(syn.digest, ())
            self.assertIsNotNone(syn.summary)
            self.assertIs(reply.in_sync, True)
            self.assertEqual((reply.deltas, reply.digest), ((), ()))
            self.assertLess(syn_size, 50)
            self.assertLess(reply_size, 30)
        self.assertEqual(a.summaries_matched, 5)

    def test_one_differing_entry_flows(self) -> None:
        a, b = cluster(20)
        net = Net([a, b])
        net.round(a)
        net.round(a)
        self.assertEqual(a.summaries_matched, 1)
        b.state.write("fresh", "news", 2.0)  # not rumoured: only the digest finds it
        sent = net.round(a)
        kinds = [(type(m).__name__, getattr(m, "in_sync", None)) for m, _ in sent]
        self.assertEqual(
            kinds, [("Syn", None), ("SynAck", False), ("Syn", None), ("SynAck", None)]
        )
        self.assertIsNotNone(sent[0][0].summary)  # type: ignore[union-attr]
        self.assertIsNone(sent[2][0].summary)  # type: ignore[union-attr]
        self.assertEqual(
            a.state.nodes[b.state.me.info.id].entries["fresh"].value, "news"
        )
        # they differed: the next Syn lists the digest again, then summaries
        self.assertIsNone(net.round(a)[0][0].summary)  # type: ignore[union-attr]
        self.assertIsNotNone(net.round(a)[0][0].summary)  # type: ignore[union-attr]

    def test_every_nth_syn_lists_the_digest(self) -> None:
        a, b = cluster(3)
        net = Net([a, b])
        summaries = [
            net.round(a)[0][0].summary is not None for _ in range(3 * a.full_every)
        ]
        digests = [i for i, s in enumerate(summaries) if not s]
        self.assertEqual(digests[0], 0)
        gaps = {j - i for i, j in itertools.pairwise(digests)}
        self.assertEqual(gaps, {a.full_every})

    def test_heartbeats_keep_the_digest_exchange(self) -> None:
        a, b = cluster(5)
        a.heartbeats = b.heartbeats = True  # phi: the digest changes every round
        net = Net([a, b])
        for _ in range(10):
            for node in (a, b):
                sent = net.round(node)
                for message, _ in sent:
                    if isinstance(message, wire.Syn):
                        self.assertIsNone(message.summary)
        self.assertEqual(a.summaries_sent + b.summaries_sent, 0)


class RangeTests(unittest.TestCase):
    def test_partial_digest_summarises_its_range(self) -> None:
        a, b = cluster(300, keys=0)
        syn, cursor = reconcile.make_summary_syn(a.state, 0, a.budget - 5)
        self.assertIsNotNone(syn.low)
        self.assertGreater(cursor, 0)
        self.assertTrue(reconcile.summary_matches(b.state, syn))
        ids = b.state.sorted_ids()
        inside = next(
            i for i in ids if syn.covers(i) and i not in (a.state.me.info.id,)
        )
        outside = next(i for i in ids if not syn.covers(i) and i != a.state.me.info.id)
        b.state.nodes[outside].version += 1
        self.assertTrue(reconcile.summary_matches(b.state, syn))
        b.state.nodes[inside].version += 1
        self.assertFalse(reconcile.summary_matches(b.state, syn))

    def test_the_senders_entry_counts_wherever_it_is(self) -> None:
        a, b = cluster(300, keys=0)
        syn, _ = reconcile.make_summary_syn(a.state, 150, a.budget - 5)
        self.assertFalse(syn.covers(a.state.me.info.id))
        b.state.nodes[a.state.me.info.id].version += 1
        self.assertFalse(reconcile.summary_matches(b.state, syn))

    def test_a_node_only_one_side_knows_differs(self) -> None:
        a, b = cluster(4)
        syn, _ = reconcile.make_summary_syn(a.state, 0, a.budget - 5)
        self.assertTrue(reconcile.summary_matches(b.state, syn))
        b.state.merge([NodeDelta(info(99), 0, 0, 0, ())])
        self.assertFalse(reconcile.summary_matches(b.state, syn))

    def test_an_unknown_sender_never_matches(self) -> None:
        a, _ = cluster(2)
        stranger = ClusterState(info(50))
        syn, _ = reconcile.make_summary_syn(stranger, 0, 1000)
        self.assertFalse(reconcile.summary_matches(a.state, syn))

    def test_the_hash_is_of_the_entries_not_their_order(self) -> None:
        entries = [wire.DigestEntry(f"n{i}", 1, i, 0) for i in range(10)]
        self.assertEqual(
            reconcile.summary_hash(entries), reconcile.summary_hash(entries[::-1])
        )
        changed = [*entries[:-1], wire.DigestEntry("n9", 1, 9, 0, True)]
        self.assertNotEqual(
            reconcile.summary_hash(entries), reconcile.summary_hash(changed)
        )


class ForgedVerdictTests(unittest.TestCase):
    def setUp(self) -> None:
        self.a, self.b = cluster(2)
        self.net = Net([self.a, self.b])
        self.net.round(self.a)
        self.b_address = address_of(self.b.state.me)
        self.b_id = self.b.state.me.info.id

    def test_forged_in_sync_skips_one_exchange_only(self) -> None:
        self.b.state.write("hidden", "x", 2.0)
        forged = wire.SynAck(self.b_id, (), (), True)
        for _ in range(self.a.full_every):
            syn = self.a.gossip_round()[0].message
            assert isinstance(syn, wire.Syn)
            if syn.summary is None:
                break
            self.a.receive(forged, self.b_address, 30)  # a liar answers for b
        else:
            self.fail("no digest Syn within full_every rounds")
        self.net.deliver([Outgoing(self.b_address, syn)], address_of(self.a.state.me))
        self.assertIn("hidden", self.a.state.nodes[self.b_id].entries)

    def test_verdicts_from_elsewhere_are_ignored(self) -> None:
        self.a.gossip_round()
        for verdict in (True, False):
            result = self.a.receive(
                wire.SynAck(self.b_id, (), (), verdict), ("10.9.9.9", 5555), 30
            )
            self.assertEqual(result.outgoing, ())
        self.assertTrue(self.a.awaiting)
        self.assertEqual(self.a.summaries_matched, 0)

    def test_a_forged_differs_costs_one_digest_syn(self) -> None:
        self.a.gossip_round()
        differs = wire.SynAck(self.b_id, (), (), False)
        first = self.a.receive(differs, self.b_address, 30).outgoing
        self.assertEqual(len(first), 1)
        self.assertIsNone(first[0].message.summary)  # type: ignore[union-attr]
        self.assertEqual(self.a.receive(differs, self.b_address, 30).outgoing, ())

    def test_a_summary_from_a_stranger_is_never_in_sync(self) -> None:
        stranger = ClusterState(info(60))
        syn, _ = reconcile.make_summary_syn(stranger, 0, 1000)
        result = self.a.receive(syn, address_of(stranger.me), len(wire.encode(syn)))
        (reply,) = [o.message for o in result.outgoing]
        assert isinstance(reply, wire.SynAck)
        self.assertIs(reply.in_sync, False)
        self.assertLessEqual(len(wire.encode(reply)), len(wire.encode(syn)))

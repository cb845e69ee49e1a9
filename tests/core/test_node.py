"""GossipNode: peer selection and the messages each input produces."""

from __future__ import annotations

import random
from collections import Counter

from twisted.trial import unittest

from pokan import wire
from pokan.core.node import GossipNode, address_of
from pokan.core.state import ClusterState, Entry, NodeDelta, NodeInfo


def info(i: int, role: str = "peer", generation: int = 1) -> NodeInfo:
    host = f"10.0.0.{i}"
    return NodeInfo(f"{host}:5555", generation, host, 5555, 5555, role)  # type: ignore[arg-type]


def addr(i: int) -> tuple[str, int]:
    return (f"10.0.0.{i}", 5555)


def node(i: int = 1, seed: int = 0, **kwargs: object) -> GossipNode:
    return GossipNode(ClusterState(info(i)), random.Random(seed), **kwargs)  # type: ignore[arg-type]


def know(n: GossipNode, i: int, role: str = "peer", status: str = "alive") -> None:
    n.state.merge([NodeDelta(info(i, role), 0, 0, 0, ())])
    if status == "dead":
        n.state.mark(info(i).id, 1, "dead")


class PickTargetsTests(unittest.TestCase):
    def test_nobody(self) -> None:
        n = node()
        self.assertEqual(n.pick_targets(), [])
        self.assertEqual(n.gossip_round(), [])

    def test_seeds_when_no_live_peer(self) -> None:
        n = node(seeds=[addr(9), addr(1)])  # our own address is never a target
        for _ in range(20):
            self.assertEqual(n.pick_targets(), [(addr(9), None)])

    def test_known_seed_node_is_reported(self) -> None:
        n = node(seeds=[addr(9)])
        know(n, 9, role="seed", status="dead")
        targets = [t for _ in range(50) for t in n.pick_targets()]
        self.assertTrue(targets)
        for address, peer in targets:
            self.assertEqual(address, addr(9))
            self.assertIsNotNone(peer)

    def test_live_peer_always_chosen(self) -> None:
        n = node(seed=3)
        for i in (2, 3, 4):
            know(n, i)
        picked = Counter()
        for _ in range(300):
            targets = n.pick_targets()
            self.assertEqual(len(targets), 1)
            address, peer = targets[0]
            assert peer is not None
            self.assertEqual(address, address_of(peer))
            self.assertEqual(peer.status, "alive")
            picked[address] += 1
        self.assertEqual(set(picked), {addr(2), addr(3), addr(4)})

    def test_dead_peer_sometimes(self) -> None:
        n = node(seed=4)
        know(n, 2)
        know(n, 3, status="dead")
        dead = 0
        rounds = 1000
        for _ in range(rounds):
            targets = n.pick_targets()
            self.assertEqual(targets[0][0], addr(2))
            self.assertLessEqual(len(targets), 2)
            if len(targets) == 2:
                self.assertEqual(targets[1][0], addr(3))
                dead += 1
        # probability dead / (live + 1) = 1/2
        self.assertTrue(0.4 * rounds < dead < 0.6 * rounds, dead)

    def test_only_dead_peers(self) -> None:
        n = node(seed=5)
        know(n, 2, status="dead")
        # dead / (0 + 1) = 1: always tried, so a healed partition merges back
        for _ in range(20):
            self.assertEqual([a for a, _ in n.pick_targets()], [addr(2)])

    def test_seed_sometimes_besides_live_peer(self) -> None:
        n = node(seed=6, seeds=[addr(9)])
        for i in (2, 3, 4):
            know(n, i)
        with_seed = sum(
            1 for _ in range(1000) if addr(9) in [a for a, _ in n.pick_targets()]
        )
        # seeds / (live + dead + 1) = 1/4
        self.assertTrue(150 < with_seed < 350, with_seed)

    def test_seed_not_doubled(self) -> None:
        n = node(seed=7, seeds=[addr(2)])
        know(n, 2, role="seed")
        for _ in range(100):
            targets = [a for a, _ in n.pick_targets()]
            self.assertEqual(targets, [addr(2)])

    def test_seeded_randomness_is_reproducible(self) -> None:
        def run(seed: int) -> list[list[tuple[str, int]]]:
            n = node(seed=seed, seeds=[addr(9)])
            for i in range(2, 8):
                know(n, i, status="dead" if i % 3 == 0 else "alive")
            return [[a for a, _ in n.pick_targets()] for _ in range(50)]

        self.assertEqual(run(11), run(11))
        self.assertNotEqual(run(11), run(12))


class RoundTests(unittest.TestCase):
    def test_heartbeat_grows_each_round(self) -> None:
        n = node()
        beats = []
        for _ in range(3):
            n.gossip_round()
            beats.append(n.state.me.heartbeat)
        self.assertEqual(beats, [1, 2, 3])

    def test_round_sends_syn_to_targets(self) -> None:
        n = node(seeds=[addr(9)])
        n.state.write("k", "v", 1.0)
        (out,) = n.gossip_round()
        self.assertEqual(out.address, addr(9))
        self.assertIsNone(out.peer)
        assert isinstance(out.message, wire.Syn)
        self.assertEqual(out.message.sender, info(1).id)
        self.assertEqual(out.message.digest, (wire.DigestEntry(info(1).id, 1, 1, 1),))

    def test_budget_follows_max_datagram(self) -> None:
        self.assertLess(node(max_datagram=600).budget, node().budget)
        self.assertLess(node().budget, 1400 - wire.SEAL_HEADROOM)


class ExchangeTests(unittest.TestCase):
    """One full Syn -> SynAck -> Ack exchange between a and b."""

    def setUp(self) -> None:
        self.a = node(1, seeds=[addr(2)])
        self.b = node(2)
        self.a.state.write("from-a", "1", 1.0)
        self.b.state.write("from-b", b"2", 1.0)

    def test_exchange(self) -> None:
        (out,) = self.a.gossip_round()
        syn = out.message
        self.assertIsInstance(syn, wire.Syn)

        result = self.b.receive(syn, addr(1))
        # a Syn to a seed a does not know introduces a (its identity, no
        # writes), so b counts a a member
        self.assertFalse(result.batch.changes)
        self.assertEqual([r.info.id for r in result.batch.nodes], [info(1).id])
        self.assertIsNone(result.exchanged_with)
        (reply,) = result.outgoing
        self.assertEqual(reply.address, addr(1))
        syn_ack = reply.message
        assert isinstance(syn_ack, wire.SynAck)
        self.assertEqual([d.info.id for d in syn_ack.deltas], [info(2).id])
        # b holds none of a's writes: it asks for all of them
        [asked] = [e for e in syn_ack.digest if e.node_id == info(1).id]
        self.assertEqual((asked.generation, asked.version), (1, 0))

        result = self.a.receive(syn_ack, addr(2))
        self.assertEqual(
            [(c.node_id, c.key, c.event) for c in result.batch.changes],
            [(info(2).id, "from-b", "new_key")],
        )
        self.assertIs(result.exchanged_with, self.a.state.nodes[info(2).id])
        (reply,) = result.outgoing
        ack = reply.message
        assert isinstance(ack, wire.Ack)
        self.assertEqual(reply.address, addr(2))
        self.assertEqual([d.info.id for d in ack.deltas], [info(1).id])

        result = self.b.receive(ack, addr(1))
        self.assertEqual(result.outgoing, ())
        self.assertEqual(
            [(c.key, c.event) for c in result.batch.changes], [("from-a", "new_key")]
        )
        self.assertEqual(
            self.b.state.nodes[info(1).id].entries["from-a"], Entry("1", 1, 1.0)
        )
        self.assertIs(
            type(self.a.state.nodes[info(2).id].entries["from-b"].value), bytes
        )

    def test_no_ack_when_responder_lacks_nothing(self) -> None:
        self.b.state.merge(self.a.state.full_deltas())
        (out,) = self.a.gossip_round()
        syn_ack = self.b.receive(out.message, addr(1)).outgoing[0].message
        result = self.a.receive(syn_ack, addr(2))
        self.assertEqual(result.outgoing, ())
        self.assertTrue(result.batch)

    def test_goodbye_marks_left(self) -> None:
        self.b.state.merge(self.a.state.full_deltas())
        self.a.state.merge(self.b.state.full_deltas())
        (out,) = self.a.goodbye()
        self.assertEqual(out.address, addr(2))
        self.assertEqual(out.message, wire.Goodbye(info(1).id, 1))
        result = self.b.receive(out.message, addr(1))
        self.assertEqual(result.outgoing, ())
        (record,) = result.batch.nodes
        self.assertEqual((record.info.id, record.status), (info(1).id, "left"))
        self.assertEqual(self.b.state.nodes[info(1).id].status, "left")
        # again: nothing new
        self.assertFalse(self.b.receive(out.message, addr(1)).batch)

    def test_goodbye_from_old_generation_ignored(self) -> None:
        self.b.state.merge(self.a.state.full_deltas())
        result = self.b.receive(wire.Goodbye(info(1).id, 0), addr(1))
        self.assertFalse(result.batch)
        self.assertEqual(self.b.state.nodes[info(1).id].status, "alive")

    def test_stream_messages_ignored(self) -> None:
        result = self.b.receive(wire.Hello(info(1).id, ()), addr(1))
        self.assertEqual((result.outgoing, bool(result.batch)), ((), False))

    def test_goodbye_to_everyone_known_but_those_that_left(self) -> None:
        for i in (3, 4, 5, 6):
            know(self.a, i)
        self.a.state.mark(info(5).id, info(5).generation, "left")
        self.a.state.mark(info(6).id, info(6).generation, "dead")
        self.assertEqual(
            sorted(o.address for o in self.a.goodbye()), [addr(3), addr(4), addr(6)]
        )

    def test_full_sync(self) -> None:
        batch = self.b.merge_full(self.a.full_state())
        self.assertEqual([c.key for c in batch.changes], ["from-a"])
        self.assertEqual(
            {d.info.id for d in self.b.full_state()}, {info(1).id, info(2).id}
        )

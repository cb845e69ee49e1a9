"""Forged messages against the sans-IO core: refused, counted, or undone."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.trial import unittest

from pokan import wire
from pokan.core import plausible
from pokan.core.node import GossipNode
from pokan.core.state import MAX_COUNTER, ClusterState, Entry, NodeDelta, NodeInfo
from pokan.core.transitionlog import Seconds, TransitionLog
from pokan.errors import ConfigurationError
from pokan.net.badinput import BadInputReporter
from tests.core.test_node import addr, info, node

NOW = 1_700_000_000.0
GENERATION = int(NOW * 1_000_000)


def real(i: int, generation: int = GENERATION) -> NodeInfo:
    return info(i, generation=generation)


def reasons(n: GossipNode, result: object) -> list[str]:
    return [reason for reason, _ in result.rejected]


class CheckInfoTests(unittest.TestCase):
    def test_a_real_node_passes(self) -> None:
        self.assertIsNone(plausible.check_info(real(2)))
        v6 = NodeInfo("[::2]:5555", 1, "::2", 5555, 5555)
        self.assertIsNone(plausible.check_info(v6))

    def test_garbage_is_refused(self) -> None:
        cases = {
            NodeInfo("127.0>0.1:17102", 1, "127.0>0.1", 1, 17102): "invalid-address",
            NodeInfo("not-an-ip:1", 1, "not-an-ip", 1, 1): "invalid-address",
            NodeInfo("::02:1", 1, "::02", 1, 1): "invalid-address",
            NodeInfo("0.0.0.0:1", 1, "0.0.0.0", 1, 1): "invalid-address",
            NodeInfo("224.0.0.1:1", 1, "224.0.0.1", 1, 1): "invalid-address",
            NodeInfo("10.0.0.1:0", 1, "10.0.0.1", 1, 0): "invalid-port",
            NodeInfo("10.0.0.1:1", 1, "10.0.0.1", 70000, 1): "invalid-port",
            NodeInfo("10.0.0.1:1\nforged", 1, "10.0.0.1", 1, 1): "invalid-node-id",
            NodeInfo("10.0.0.2:1", 1, "10.0.0.1", 1, 1): "invalid-node-id",
            NodeInfo("::2:1", 1, "::2", 1, 1): "invalid-node-id",
        }
        for case, reason in cases.items():
            self.assertEqual(plausible.check_info(case), reason, case)

    def test_max_nodes_check(self) -> None:
        self.assertEqual(plausible.check_max_nodes(100), 100)
        for bad in (1, 0, True, "10", 2.5):
            with self.assertRaises(ConfigurationError):
                plausible.check_max_nodes(bad)


class MergeRefusesTests(unittest.TestCase):
    def setUp(self) -> None:
        self.state = ClusterState(real(1))
        self.state.max_generation = plausible.max_generation(NOW)
        self.state.merge([NodeDelta(real(2), 1, 0, 1, (("k", Entry("v", 1, 1.0)),))])
        self.state.drain_rejected()

    def refused(self, delta: NodeDelta, reason: str) -> None:
        before = {
            i: (n.info, n.version, n.heartbeat) for i, n in self.state.nodes.items()
        }
        batch = self.state.merge([delta])
        self.assertFalse(batch)
        self.assertEqual([r for r, _ in self.state.drain_rejected()], [reason])
        after = {
            i: (n.info, n.version, n.heartbeat) for i, n in self.state.nodes.items()
        }
        self.assertEqual(after, before)

    def test_counters_above_the_cap(self) -> None:
        top = MAX_COUNTER + 1
        for delta in (
            NodeDelta(real(2), top, 0, 1, ()),
            NodeDelta(real(2), 1, 0, top, ()),
            NodeDelta(real(2), 1, 0, 2, (("k", Entry("x", top, 1.0)),)),
            NodeDelta(real(2, generation=2**64 - 1), 1, 0, 1, ()),
            NodeDelta(real(1, generation=2**64 - 1), 1, 0, 1, ()),
        ):
            self.refused(delta, "counter-out-of-range")
        self.assertEqual(self.state.me.info.generation, GENERATION)

    def test_generation_from_the_future(self) -> None:
        ahead = GENERATION + plausible.MAX_FUTURE + 1
        self.refused(
            NodeDelta(real(2, generation=ahead), 1, 0, 1, ()), "generation-from-future"
        )
        self.refused(
            NodeDelta(real(1, generation=ahead), 1, 0, 1, ()), "generation-from-future"
        )
        self.assertEqual(self.state.me.info.generation, GENERATION)

    def test_a_plausible_newer_self_is_still_outlived(self) -> None:
        newer = GENERATION + 10
        self.state.merge([NodeDelta(real(1, generation=newer), 1, 0, 1, ())])
        self.assertEqual(self.state.me.info.generation, newer + 1)

    def test_garbage_node_never_tracked(self) -> None:
        bad = NodeInfo("127.0>0.1:17102", GENERATION, "127.0>0.1", 1, 17102)
        self.refused(NodeDelta(bad, 1, 0, 1, ()), "invalid-address")
        self.assertNotIn(bad.id, self.state.nodes)

    def test_a_new_generation_with_garbage_is_refused(self) -> None:
        bad = NodeInfo(real(2).id, GENERATION + 1, "10.0.0.2", 5555, 6666)
        self.refused(NodeDelta(bad, 1, 0, 1, ()), "invalid-node-id")

    def test_max_nodes(self) -> None:
        self.state.max_nodes = 3
        self.state.merge([NodeDelta(real(3), 1, 0, 0, ())])
        self.refused(NodeDelta(real(4), 1, 0, 0, ()), "too-many-nodes")
        self.assertEqual(len(self.state.nodes), 3)  # none evicted

    def test_new_limit(self) -> None:
        deltas = [NodeDelta(real(i), 1, 0, 0, ()) for i in range(3, 13)]
        self.state.merge(deltas, new_limit=4)
        self.assertEqual(len(self.state.nodes), 2 + 4)
        self.assertEqual(
            [r for r, _ in self.state.drain_rejected()], ["too-many-new-nodes"] * 6
        )

    def test_forged_heartbeat_in_a_digest(self) -> None:
        self.assertFalse(
            self.state.observe_heartbeat(real(2).id, GENERATION, MAX_COUNTER + 1)
        )
        self.assertEqual(self.state.nodes[real(2).id].heartbeat, 1)
        self.assertEqual(
            [r for r, _ in self.state.drain_rejected()], ["counter-out-of-range"]
        )

    def test_details_escape_what_a_peer_sent(self) -> None:
        bad = NodeInfo("10.0.0.9:1\nforged line", GENERATION, "10.0.0.9", 1, 1)
        self.state.merge([NodeDelta(bad, 1, 0, 0, ())])
        [(_, detail)] = self.state.drain_rejected()
        self.assertNotIn("\n", detail)


class ReassertTests(unittest.TestCase):
    def setUp(self) -> None:
        self.state = ClusterState(real(1))
        self.state.max_generation = plausible.max_generation(NOW)
        self.state.now = NOW
        self.state.write("a", "1", 10.0)
        self.state.write("b", "2", 11.0)

    def forge(
        self,
        *entries: tuple[str, Entry],
        version: int = 0,
        heartbeat: int = 0,
        left: bool = False,
    ) -> NodeDelta:
        top = max([version, *(e.version for _, e in entries)])
        return NodeDelta(self.state.me.info, heartbeat, 0, top, entries, left)

    def test_an_echo_of_our_own_writes_is_no_claim(self) -> None:
        me = self.state.me
        self.state.merge([self.forge(*me.entries.items(), version=me.version)])
        self.assertFalse(self.state.claims)
        self.assertFalse(self.state.reassert())

    def test_forged_value_is_written_over(self) -> None:
        self.state.merge([self.forge(("a", Entry("evil", 2, 10.0)))])  # ours is v1
        batch = self.state.reassert()
        me = self.state.me
        self.assertEqual(me.entries["a"].value, "1")
        self.assertGreater(me.entries["a"].version, 2)
        self.assertEqual(me.version, max(e.version for e in me.entries.values()))
        # same values: persisted and gossiped, but no event fires
        self.assertEqual([c.event for c in batch.changes], [None, None])
        self.assertEqual(batch.nodes[0].version, me.version)

    def test_same_version_other_value_is_forged(self) -> None:
        self.state.merge([self.forge(("b", Entry("evil", 2, 11.0)))])
        self.assertTrue(self.state.claims)
        self.state.merge([self.forge(("b", Entry("2", 2, 99.0)))])  # timestamp
        self.assertEqual(self.state.claims.keys, {"b"})

    def test_a_forged_key_gets_a_tombstone(self) -> None:
        self.state.merge([self.forge(("evil", Entry("x", 5, 1e12)))])
        batch = self.state.reassert()
        tomb = self.state.me.entries["evil"]
        self.assertTrue(tomb.deleted)
        self.assertGreater(tomb.version, 5)
        self.assertEqual(tomb.timestamp, NOW)  # not the forged one: writable again
        self.assertIn("evil", [c.key for c in batch.changes])
        self.assertTrue(self.state.write("evil", "mine", NOW + 1))

    def test_a_forged_version_cannot_lock_a_key(self) -> None:
        claimed = 2**40
        self.state.merge([self.forge(("a", Entry("evil", claimed, 10.0)))])
        self.state.reassert()
        self.state.write("a", "new", 20.0)
        self.assertGreater(self.state.me.entries["a"].version, claimed)

    def test_heartbeat_and_watermark_claims(self) -> None:
        self.state.merge([self.forge(version=1000, heartbeat=500)])
        self.state.reassert()
        self.assertGreater(self.state.me.version, 1000)
        self.assertGreater(self.state.me.heartbeat, 500)
        self.assertEqual(self.state.me.info.generation, GENERATION)

    def test_a_claim_past_half_the_cap_moves_to_a_new_generation(self) -> None:
        self.state.write("gone", "x", 12.0)
        self.state.write("gone", None, 13.0)
        for forged in (
            lambda: self.forge(version=MAX_COUNTER),
            lambda: self.forge(heartbeat=MAX_COUNTER // 2 + 1),
            lambda: self.forge(("a", Entry("evil", MAX_COUNTER, 1.0))),
            lambda: self.forge(left=True),
        ):
            generation = self.state.me.info.generation
            self.state.merge([forged()])
            self.state.reassert()
            me = self.state.me
            self.assertEqual(me.info.generation, generation + 1)
            self.assertLess(me.version, 10)
            self.assertLess(me.heartbeat, 10)
            self.assertEqual(
                {k: e.value for k, e in me.live_items()}, {"a": "1", "b": "2"}
            )
            self.assertNotIn("gone", me.entries)

    def test_repeated_forgeries_never_walk_a_counter_to_the_cap(self) -> None:
        rng = random.Random(5)
        for _ in range(300):
            me = self.state.me
            claim = min(MAX_COUNTER, me.version + rng.randrange(1, 2**61))
            self.state.merge([self.forge(version=claim, heartbeat=claim)])
            self.state.reassert()
        me = self.state.me
        self.assertLessEqual(me.version, MAX_COUNTER // 2 + 10)
        self.assertLessEqual(me.heartbeat, MAX_COUNTER // 2 + 10)
        self.assertLess(me.info.generation, GENERATION + 1000)


class NodeTests(unittest.TestCase):
    """GossipNode: goodbyes, amplification, rate limits, one re-assert a round."""

    def setUp(self) -> None:
        self.node = node(1)
        self.state = self.node.state
        self.state.merge([NodeDelta(info(2), 1, 0, 0, ())])
        self.me = self.state.me.info

    def test_goodbye_only_from_its_node(self) -> None:
        forged = self.node.receive(wire.Goodbye(info(2).id, 1), addr(3))
        self.assertEqual(reasons(self.node, forged), ["forged-goodbye"])
        self.assertEqual(self.state.nodes[info(2).id].status, "alive")
        real_bye = self.node.receive(wire.Goodbye(info(2).id, 1), addr(2))
        self.assertFalse(real_bye.rejected)
        self.assertEqual(self.state.nodes[info(2).id].status, "left")

    def big_state(self) -> None:
        entries = tuple((f"k{i}", Entry("v" * 40, i + 1, 1.0)) for i in range(30))
        self.state.merge([NodeDelta(info(2), 1, 0, 30, entries)])

    def test_a_stranger_gets_no_more_than_it_sent(self) -> None:
        self.big_state()
        syn = wire.Syn("10.0.0.7:5555", ())
        size = len(wire.encode(syn))
        result = self.node.receive(syn, addr(7), size=size)
        for out in result.outgoing:
            self.assertEqual(out.address, addr(7))  # no pushes
            self.assertLessEqual(len(wire.encode(out.message)), size)
        # a member gets a full reply
        member = self.node.receive(wire.Syn(info(2).id, ()), addr(2), size=size)
        self.assertGreater(len(wire.encode(member.outgoing[0].message)), 10 * size)

    def test_a_node_held_left_learns_it_even_from_a_small_syn(self) -> None:
        # a forged goodbye (e.g. from a spoofed source address) had us hold
        # node 2 left; its next Syn, small in a small cluster, must draw the
        # claim back to it, or it can never re-assert
        self.state.merge([NodeDelta(info(2), 1, 0, 0, (), left=True)])
        self.assertEqual(self.state.nodes[info(2).id].status, "left")
        own = wire.DigestEntry(info(2).id, info(2).generation, 0, 5)
        me = self.state.me
        ours = wire.DigestEntry(me.info.id, me.info.generation, me.version, 1)
        third = wire.DigestEntry(info(3).id, info(3).generation, 0, 3)
        syn = wire.Syn(info(2).id, (own, ours, third))  # a 3-node cluster's
        size = len(wire.encode(syn))
        (reply,) = self.node.receive(syn, addr(2), size=size).outgoing
        self.assertLessEqual(len(wire.encode(reply.message)), size)
        assert isinstance(reply.message, wire.SynAck)
        (claim,) = [e for e in reply.message.digest if e.node_id == info(2).id]
        self.assertTrue(claim.left)

    def test_replies_rate_limited_per_source(self) -> None:
        syn = wire.Syn(info(2).id, ())
        replied = [bool(self.node.receive(syn, addr(2)).outgoing) for _ in range(20)]
        self.assertEqual(replied.count(True), plausible.MAX_REPLIES_PER_SOURCE)
        self.assertIn(
            "rate-limited", reasons(self.node, self.node.receive(syn, addr(2)))
        )
        self.node.gossip_round()
        self.assertTrue(self.node.receive(syn, addr(2)).outgoing)

    def test_new_nodes_per_message_and_per_source(self) -> None:
        def ack(first: int) -> wire.Ack:
            deltas = tuple(
                NodeDelta(
                    NodeInfo(
                        f"10.1.{i // 250}.{i % 250 + 1}:5555",
                        1,
                        f"10.1.{i // 250}.{i % 250 + 1}",
                        5555,
                        5555,
                    ),
                    0,
                    0,
                    0,
                    (),
                )
                for i in range(first, first + 100)
            )
            return wire.Ack(info(2).id, deltas)

        self.node.receive(ack(0), addr(2))
        self.assertEqual(len(self.state.nodes), 2 + plausible.MAX_NEW_PER_MESSAGE)
        self.node.receive(ack(100), addr(2))
        self.node.receive(ack(200), addr(2))
        self.assertEqual(len(self.state.nodes), 2 + plausible.MAX_NEW_PER_SOURCE)
        self.node.gossip_round()
        self.node.receive(ack(300), addr(2))
        self.assertEqual(len(self.state.nodes), 2 + plausible.MAX_NEW_PER_SOURCE + 64)

    def test_one_reassert_per_round(self) -> None:
        def forge(version: int) -> wire.Ack:
            return wire.Ack(info(2).id, (NodeDelta(self.me, 0, 0, version, ()),))

        first = self.node.receive(forge(100), addr(2))
        self.assertTrue(first.reasserted)
        second = self.node.receive(forge(500), addr(2))
        self.assertFalse(second.reasserted)  # coalesced into the next round's
        self.node.gossip_round()
        third = self.node.receive(wire.Ack(info(2).id, ()), addr(2))
        self.assertTrue(third.reasserted)
        self.assertGreater(self.state.me.version, 500)

    def test_digest_claims(self) -> None:
        me = self.state.me
        digest = (wire.DigestEntry(me.info.id, me.info.generation, 77, 0, False),)
        result = self.node.receive(wire.Syn(info(2).id, digest), addr(2))
        self.assertTrue(result.reasserted)
        self.assertGreater(me.version, 77)


class TransitionLogTests(unittest.TestCase):
    def test_lines_throttled_then_summed_up(self) -> None:
        clock = task.Clock()
        lines: list[str] = []
        from twisted.logger import formatEvent, globalLogPublisher

        def observe(event: dict[str, object]) -> None:
            lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        log = TransitionLog(Seconds(clock.seconds), interval=10.0, max_lines=3)
        for i in range(50):
            log.line("joined" if i % 2 else "dead", f"10.0.0.{i}:1")
        self.assertEqual(len([x for x in lines if x.startswith("peer ")]), 3)
        clock.advance(10)
        log.line("left", "10.0.0.99:1")
        [summary] = [x for x in lines if "more peer transitions" in x]
        self.assertIn("47 more", summary)
        self.assertIn("joined: 24", summary)
        self.assertIn("dead: 23", summary)
        self.assertIn("peer 10.0.0.99:1 left", lines[-1])

    def test_bad_input_reporter_still_windows(self) -> None:
        clock = task.Clock()
        reporter = BadInputReporter(clock, interval=10.0, max_lines=2)
        for i in range(5):
            reporter.report("udp", f"10.0.0.{i}:1", "x", host=f"10.0.0.{i}")
        self.assertEqual(reporter.counts["x"], 5)


counters = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, MAX_COUNTER // 2, MAX_COUNTER - 1, MAX_COUNTER]),
    st.integers(GENERATION - 5, GENERATION + plausible.MAX_FUTURE + 5),
)
hosts = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0>0.1", "::1"])
ports = st.sampled_from([0, 1, 5555, 65536])


@st.composite
def forged_infos(draw: st.DrawFn) -> NodeInfo:
    host, port = draw(hosts), draw(ports)
    node_id = draw(st.sampled_from([f"{host}:{port}", f"{host}:5555", "x\ny"]))
    return NodeInfo(node_id, draw(counters), host, draw(ports), port)


@st.composite
def forged_deltas(draw: st.DrawFn) -> NodeDelta:
    entries = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "k"]),
                st.builds(
                    Entry,
                    st.sampled_from([None, "1", "evil"]),
                    counters,
                    st.sampled_from([0.0, 10.0, 1e12]),
                ),
            ),
            max_size=3,
        )
    )
    return NodeDelta(
        draw(forged_infos()),
        draw(counters),
        draw(counters),
        draw(counters),
        tuple(entries),
        draw(st.booleans()),
    )


class PropertyTests(unittest.TestCase):
    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(st.lists(st.lists(forged_deltas(), max_size=4), max_size=6))
    def test_no_forged_sequence_breaks_a_bound(self, messages: list) -> None:
        state = ClusterState(real(1))
        state.max_generation = plausible.max_generation(NOW)
        state.now = NOW
        state.write("a", "1", 10.0)
        for deltas in messages:
            state.merge(deltas)
            state.reassert()
            state.drain_rejected()
        me = state.me
        self.assertLessEqual(
            me.info.generation, state.max_generation + len(messages) + 1
        )
        self.assertEqual(me.entries["a"].value, "1")
        self.assertFalse(state.claims)
        for tracked in state.nodes.values():
            self.assertIsNone(plausible.check_info(tracked.info), tracked.info)
            for counter in (
                tracked.info.generation,
                tracked.version,
                tracked.heartbeat,
            ):
                self.assertLessEqual(counter, MAX_COUNTER)
            for entry in tracked.entries.values():
                self.assertLessEqual(entry.version, MAX_COUNTER)
        self.assertLessEqual(me.version, MAX_COUNTER // 2 + 16)
        self.assertLessEqual(me.heartbeat, MAX_COUNTER // 2 + 16)


class IntroductionTests(unittest.TestCase):
    def test_a_syn_to_a_node_that_may_not_know_us_introduces_us(self) -> None:
        n = node(1, seeds=[addr(9)])
        (out,) = n.gossip_round()  # the only target: an unknown seed
        assert isinstance(out.message, wire.Syn)
        [intro] = out.message.deltas
        self.assertEqual((intro.info, intro.version, intro.entries), (info(1), 0, ()))
        self.assertLessEqual(len(wire.encode(out.message)), n.max_datagram)

    def test_no_introduction_to_a_live_peer(self) -> None:
        n = node(1)
        n.state.merge([NodeDelta(info(2), 1, 0, 0, ())])
        (out,) = n.gossip_round()
        assert isinstance(out.message, wire.Syn)
        self.assertEqual(out.message.deltas, ())

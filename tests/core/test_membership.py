"""Statuses, transitions and membership events, sans-IO (virtual clock)."""

from __future__ import annotations

import random
from collections import Counter

import attrs
from twisted.trial import unittest

from pokan import wire
from pokan.core.membership import Membership
from pokan.core.node import GossipNode
from pokan.core.state import ClusterState, NodeDelta, NodeInfo
from tests.simnet import SimCluster, assert_convicted_once_by_all


def info(n: int, generation: int = 1) -> NodeInfo:
    return NodeInfo(f"10.0.0.{n}:5555", generation, f"10.0.0.{n}", 5555, 5555)


def delta(n: int, heartbeat: int, generation: int = 1, **kw: object) -> NodeDelta:
    return NodeDelta(info(n, generation), heartbeat, 0, 0, (), **kw)  # type: ignore[arg-type]


class TransitionTests(unittest.TestCase):
    """One node's view, fed by hand."""

    def setUp(self) -> None:
        self.state = ClusterState(info(1))
        self.membership = Membership(self.state, interval=1.0)
        self.now = 0.0

    def merge(self, *deltas: NodeDelta) -> list[tuple[str, str]]:
        batch = self.state.merge(deltas)
        batch += self.membership.observe(self.now)
        return self.settle(batch)

    def settle(self, batch: object) -> list[tuple[str, str]]:
        return [
            (e, n.info.id)
            for e, n in self.membership.settle(batch, self.now)  # type: ignore[arg-type]
        ]

    def advance(self, seconds: float) -> list[tuple[str, str]]:
        events = []
        for _ in range(round(seconds * 10)):
            self.now += 0.1
            events += self.settle(self.membership.tick(self.now))
        return events

    def beat_every_second(self, first: NodeDelta, last: int) -> None:
        """``first``'s node heard from now, then once a second up to ``last``."""
        self.merge(first)
        for hb in range(first.heartbeat + 1, last + 1):
            self.now += 1.0
            self.merge(attrs.evolve(first, heartbeat=hb))

    def test_new_node_joins_once(self) -> None:
        self.assertEqual(self.merge(delta(2, 1)), [("peer_joined", "10.0.0.2:5555")])
        self.assertEqual(self.merge(delta(2, 2)), [])

    def test_silence_convicts_then_fresh_heartbeats_revive(self) -> None:
        self.beat_every_second(delta(2, 1), 11)
        self.assertEqual(self.advance(7.5), [])
        self.assertEqual(self.advance(1.0), [("peer_dead", "10.0.0.2:5555")])
        self.assertEqual(self.state.nodes["10.0.0.2:5555"].status, "dead")
        # a late copy of its last heartbeat is not a sign of life
        self.assertEqual(self.merge(delta(2, 12)), [])
        self.assertEqual(self.merge(delta(2, 13)), [("peer_alive", "10.0.0.2:5555")])
        self.assertEqual(self.state.nodes["10.0.0.2:5555"].status, "alive")
        self.assertEqual(self.membership.convictions, 1)

    def test_goodbye_is_left_not_dead_and_stays_left(self) -> None:
        self.merge(delta(2, 1))
        self.assertEqual(
            self.settle(self.state.mark("10.0.0.2:5555", 1, "left")),
            [("peer_left", "10.0.0.2:5555")],
        )
        self.assertEqual(self.merge(delta(2, 50)), [])  # same generation
        self.assertEqual(self.advance(30), [])  # never convicted either
        self.assertEqual(self.state.nodes["10.0.0.2:5555"].status, "left")
        # a new generation comes back
        self.assertEqual(
            self.merge(delta(2, 1, generation=2)), [("peer_joined", "10.0.0.2:5555")]
        )

    def test_left_flag_in_a_delta_or_digest(self) -> None:
        self.merge(delta(2, 1))
        self.assertEqual(
            self.merge(delta(2, 2, left=True)), [("peer_left", "10.0.0.2:5555")]
        )
        self.merge(delta(3, 1))
        digest = [wire.DigestEntry("10.0.0.3:5555", 1, 0, 1, left=True)]
        batch = self.membership.observe(self.now, digest)
        self.assertEqual(self.settle(batch), [("peer_left", "10.0.0.3:5555")])

    def test_first_heard_of_as_left_gives_nothing(self) -> None:
        self.assertEqual(self.merge(delta(2, 5, left=True)), [])
        self.assertEqual(self.state.nodes["10.0.0.2:5555"].status, "left")

    def test_restart_is_a_join_of_the_new_generation(self) -> None:
        self.merge(delta(2, 9))
        self.assertEqual(
            self.merge(delta(2, 1, generation=2)), [("peer_joined", "10.0.0.2:5555")]
        )
        self.assertEqual(len(self.state.nodes), 2)

    def test_notes_say_why_for_the_log(self) -> None:
        node = "10.0.0.2:5555"
        self.assertEqual(self.merge(delta(2, 1)), [("peer_joined", node)])
        self.assertEqual(self.membership.note(node), "", "a first join needs none")
        self.beat_every_second(delta(2, 1), 11)
        self.assertEqual(self.advance(8.5), [("peer_dead", node)])
        # a 1 s mean interval: convicted at the first tick past 8 s of silence
        self.assertEqual(self.membership.note(node), "silent 8.0s, phi 8.01 > 8")
        self.assertEqual(self.membership.note(node), "", "each note is given once")
        self.assertEqual(self.merge(delta(2, 13)), [("peer_alive", node)])
        self.assertEqual(self.membership.note(node), "")
        self.assertEqual(self.merge(delta(2, 1, generation=2)), [("peer_joined", node)])
        self.assertEqual(self.membership.note(node), "restarted: new generation")

    def test_restored_statuses_are_adopted_silently(self) -> None:
        self.state.merge([delta(2, 1)])
        self.state.nodes["10.0.0.2:5555"].status = "dead"
        self.membership.adopt(self.now)
        self.assertEqual(self.merge(delta(2, 5)), [("peer_alive", "10.0.0.2:5555")])

    def test_pause_convicts_nobody(self) -> None:
        self.merge(delta(2, 1))
        self.advance(0.5)
        self.now += 60  # this node stalled for a minute
        self.assertEqual(self.settle(self.membership.tick(self.now)), [])
        self.assertEqual(self.membership.detector.pauses, 1)

    def test_a_late_first_round_convicts_nobody(self) -> None:
        """The guard holds from the first round: measured from start()."""
        self.membership.start(self.now)
        self.merge(*(delta(n, 1) for n in range(2, 7)))  # the join's sync
        self.now += 15  # a handler blocked the loop: no round ran
        self.assertEqual(self.settle(self.membership.tick(self.now)), [])
        self.assertEqual(self.membership.detector.pauses, 1)
        # silence from now on is silence: convicted after the threshold
        self.assertEqual(len(self.advance(9.0)), 5)

    def test_without_start_the_first_window_is_the_reference(self) -> None:
        self.merge(*(delta(n, 1) for n in range(2, 7)))
        self.now += 15
        self.assertEqual(self.settle(self.membership.tick(self.now)), [])
        self.assertEqual(self.membership.detector.pauses, 1)

    def test_a_first_round_on_time_is_no_pause(self) -> None:
        self.membership.start(self.now)
        self.merge(delta(2, 1))
        self.now += 1.0
        self.assertEqual(self.settle(self.membership.tick(self.now)), [])
        self.assertEqual(self.membership.detector.pauses, 0)

    def test_ticks_ask_about_nodes_only_when_one_could_be_dead(self) -> None:
        """Rounds skip the walk over the membership while every node was
        heard recently enough, yet convict a silent node on time."""
        asked = Counter[str]()
        is_dead = self.membership.detector.is_dead

        def counting(node_id: str, now: float) -> bool:
            asked[node_id] += 1
            return is_dead(node_id, now)

        self.membership.detector.is_dead = counting  # type: ignore[method-assign]
        for hb in range(1, 31):  # nodes 2 and 3 beat every second
            self.merge(delta(2, hb), delta(3, hb))
            self.assertEqual(self.advance(1.0), [])
        # 300 ticks; the floor of the mean (0.25 s) times the threshold (8)
        # is 2 s, so nobody needed asking more than once every 2 s or so
        self.assertLess(asked["10.0.0.2:5555"], 30)
        # node 4 arrives: it is given a window at the next tick
        self.merge(delta(4, 1))
        self.advance(0.1)
        self.assertIn("10.0.0.4:5555", self.membership.detector)
        # node 3, last heard at 29 s, falls silent: convicted at the first
        # tick after 8 mean intervals (1 s), as when every tick asked everyone
        for hb in range(31, 41):
            self.merge(delta(2, hb), delta(4, hb))
            events = self.advance(1.0)
            if events:
                break
        self.assertEqual(events, [("peer_dead", "10.0.0.3:5555")])
        self.assertAlmostEqual(self.now, 29 + 8 + 0.1, delta=0.15)

    def test_first_peer_heard_by_a_lone_node_is_still_convicted(self) -> None:
        """A node alone has nobody to bound its next check by: the first peer
        it hears (its window opened by a heartbeat, between two rounds) is
        asked about like any other."""
        self.assertEqual(self.advance(2.0), [])  # alone
        self.beat_every_second(delta(2, 1), 5)
        self.assertEqual(self.advance(7.5), [])
        self.assertEqual(self.advance(1.0), [("peer_dead", "10.0.0.2:5555")])


class ClusterTests(unittest.TestCase):
    """Whole clusters on a virtual clock and an in-memory network."""

    def test_kill_is_convicted_by_everyone_once(self) -> None:
        sim = SimCluster(10, interval=0.3, seed=3)
        sim.run(3)
        assert_convicted_once_by_all(self, sim, sim.nodes[4], 15)

    def test_no_false_conviction_with_loss_and_jitter(self) -> None:
        sim = SimCluster(10, interval=0.3, loss=0.2, jitter=0.1, seed=5)
        sim.run(40)
        self.assertEqual(sum(n.engine.convictions for n in sim.nodes), 0)
        self.assertTrue(
            all(
                n.status_of(m) == "alive"
                for n in sim.nodes
                for m in sim.nodes
                if m is not n
            )
        )

    def test_goodbye_reaches_everyone_within_three_intervals_despite_loss(self) -> None:
        for seed in range(5):
            sim = SimCluster(10, interval=0.3, loss=0.2, seed=seed)
            sim.run(3)
            leaving = sim.nodes[7]
            sim.leave(leaving)
            took = sim.run_until(
                lambda: all(n.status_of(leaving) == "left" for n in sim.live()),  # noqa: B023
                0.9,
            )
            self.assertIsNotNone(took, f"seed {seed}")
            sim.run(10)
            counts = sim.events_about(leaving)
            self.assertEqual(counts["peer_left"], 9)
            self.assertEqual(counts["peer_dead"], 0)

    def test_restart_replaces_the_old_generation_everywhere(self) -> None:
        sim = SimCluster(6, interval=0.3, seed=2)
        old = sim.nodes[3]
        old.carry_out(old.engine.write("old-key", "x", 1.0, sim.clock.seconds()))
        sim.run(4)
        self.assertTrue(
            all("old-key" in n.state.nodes[old.id].entries for n in sim.nodes)
        )
        new = sim.restart(old, generation=2)
        new.carry_out(new.engine.write("new-key", "y", 2.0, sim.clock.seconds()))
        took = sim.run_until(
            lambda: all(
                n.state.nodes[new.id].info.generation == 2
                and "new-key" in n.state.nodes[new.id].entries
                for n in sim.live()
            ),
            10,
        )
        self.assertIsNotNone(took)
        for n in sim.live():
            theirs = n.state.nodes[new.id]
            self.assertNotIn("old-key", theirs.entries)
            self.assertEqual(theirs.status, "alive")
            self.assertEqual(len([i for i in n.state.nodes if i == new.id]), 1)
        counts = sim.events_about(new)
        self.assertEqual(counts["peer_dead"], 0)
        # joined twice on every other node: the first and the new generation
        self.assertEqual(counts["peer_joined"], 5 * 2)

    def test_partition_heals(self) -> None:
        sim = SimCluster(8, interval=0.3, seed=9)
        sim.run(3)
        left, right = sim.nodes[:4], sim.nodes[4:]
        sim.partition(left, right)
        took = sim.run_until(
            lambda: (
                all(a.status_of(b) == "dead" for a in left for b in right)
                and all(b.status_of(a) == "dead" for a in left for b in right)
            ),
            20,
        )
        self.assertIsNotNone(took)
        sim.heal()
        took = sim.run_until(
            lambda: all(
                a.status_of(b) == "alive"
                for a in sim.nodes
                for b in sim.nodes
                if a is not b
            ),
            20,
        )
        self.assertIsNotNone(took)
        counts = Counter(e for n in sim.nodes for _, e, _ in n.events)
        self.assertEqual(counts["peer_dead"], counts["peer_alive"])
        self.assertEqual(counts["peer_dead"], 2 * 4 * 4)


class FanoutTests(unittest.TestCase):
    def test_fanout_picks_distinct_live_peers(self) -> None:
        state = ClusterState(info(1))
        state.merge([delta(n, 1) for n in range(2, 7)])
        node = GossipNode(state, random.Random(1))
        node.fanout = 3
        for _ in range(20):
            live = [t for t in node.pick_targets() if t[1] is not None]
            self.assertEqual(len({a for a, _ in live}), len(live))
            self.assertGreaterEqual(len(live), 3)


class TargetTests(unittest.TestCase):
    def test_left_nodes_are_not_contacted(self) -> None:
        state = ClusterState(info(1))
        state.merge([delta(2, 1), delta(3, 1)])
        state.mark(info(3).id, 1, "left")
        node = GossipNode(state, random.Random(2))
        for _ in range(50):
            targets = {a for a, _ in node.pick_targets()}
            self.assertEqual(targets, {("10.0.0.2", 5555)})

    def test_answering_a_syn_bumps_the_heartbeat(self) -> None:
        state = ClusterState(info(1))
        node = GossipNode(state, random.Random(2))
        node.receive(wire.Syn("10.0.0.2:5555", ()), ("10.0.0.2", 5555))
        self.assertEqual(state.me.heartbeat, 1)

"""What the simulator measures: spreads to every node, convictions sorted."""

from __future__ import annotations

from twisted.trial import unittest

from pokan.sim.watch import Convictions, Spreads, percentile


class SpreadsTests(unittest.TestCase):
    def test_rounds_until_every_waited_node_holds_it(self) -> None:
        held: set[int] = {0}
        spreads = Spreads(interval=2.0)
        spreads.start(("write", "k"), 10.0, [0, 1, 2], held.__contains__)
        self.assertEqual(spreads.pending, 1)
        held.add(1)
        spreads.check(1, 11.0)
        spreads.check(2, 12.0)  # not yet
        self.assertEqual(spreads.pending, 1)
        held.add(2)
        spreads.check(2, 13.0)
        self.assertEqual(spreads.pending, 0)
        self.assertEqual(spreads.rounds["write"], [1.5])

    def test_a_node_dropped_is_not_waited_for(self) -> None:
        spreads = Spreads(interval=1.0)
        spreads.start(("kill", 7), 0.0, [1, 2], lambda i: i == 1)
        spreads.drop(2, 4.0)
        self.assertEqual(spreads.rounds["kill"], [4.0])
        self.assertEqual(spreads.unfinished("kill"), 0)

    def test_already_known_everywhere_takes_no_time(self) -> None:
        spreads = Spreads(interval=1.0)
        spreads.start(("write", "k"), 5.0, [1, 2], lambda i: True)
        self.assertEqual(spreads.rounds["write"], [0.0])

    def test_unfinished_by_kind(self) -> None:
        spreads = Spreads(interval=1.0)
        spreads.start(("kill", 1), 0.0, [2], lambda i: False)
        spreads.start(("write", "a"), 0.0, [2], lambda i: False)
        self.assertEqual(spreads.unfinished("kill"), 1)
        self.assertEqual(spreads.unfinished("write"), 1)


class ConvictionsTests(unittest.TestCase):
    def test_sorted_by_what_the_node_was_doing(self) -> None:
        killed, stalled = {5}, {6}
        convictions = Convictions(killed, stalled.__contains__)
        convictions.transition(1, "peer_dead", 5, 1.0)
        convictions.transition(1, "peer_dead", 6, 1.0)
        convictions.transition(1, "peer_dead", 7, 2.0)
        convictions.transition(2, "peer_dead", 7, 2.5)
        convictions.transition(2, "peer_dead", 7, 3.0)  # the same pair again
        convictions.transition(3, "peer_joined", 7, 3.0)
        self.assertEqual(convictions.right, {(1, 5)})
        self.assertEqual(convictions.of_stalled, {(1, 6)})
        self.assertEqual(convictions.false, {(1, 7), (2, 7)})
        self.assertEqual(convictions.examples, [(1, 7, 2.0, None), (2, 7, 2.5, None)])
        self.assertEqual(convictions.false_after_stall, set())

    def test_a_node_convicted_after_its_stall_is_a_false_conviction(self) -> None:
        convictions = Convictions(set(), lambda i: False)
        convictions.resumed_at[6] = 10.0
        convictions.transition(1, "peer_dead", 6, 10.5)
        self.assertEqual(convictions.false, {(1, 6)})
        self.assertEqual(convictions.false_after_stall, {(1, 6)})
        self.assertEqual(convictions.examples, [(1, 6, 10.5, 0.5)])

    def test_a_killed_node_held_alive_again_is_counted(self) -> None:
        convictions = Convictions({5}, lambda i: False)
        convictions.transition(1, "peer_dead", 5, 1.0)
        convictions.transition(1, "peer_alive", 5, 2.0)
        convictions.transition(2, "peer_alive", 5, 2.0)  # never convicted by 2
        self.assertEqual(convictions.revived, 1)


class PercentileTests(unittest.TestCase):
    def test_nearest_rank(self) -> None:
        self.assertEqual(percentile([3, 1, 2], 50), 2)
        self.assertEqual(percentile(list(range(1, 101)), 99), 99)
        self.assertEqual(percentile([], 99), float("inf"))

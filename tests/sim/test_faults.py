"""The simulator's fault plans: who dies when, who stalls when."""

from __future__ import annotations

import itertools
import random

from twisted.trial import unittest

from pokan.sim.faults import parse_pause, plan_kills, plan_pauses


class PlanKillsTests(unittest.TestCase):
    def test_distinct_nodes_in_the_window_in_time_order(self) -> None:
        kills = plan_kills(random.Random(1), 50, 5, 3.0, 60.0, spare={0, 1})
        self.assertEqual(len({k.index for k in kills}), 5)
        self.assertFalse({k.index for k in kills} & {0, 1})
        self.assertTrue(all(3.0 <= k.at < 60.0 for k in kills))
        self.assertEqual([k.at for k in kills], sorted(k.at for k in kills))

    def test_one_node_stays_alive(self) -> None:
        plan_kills(random.Random(1), 5, 4, 0.0, 1.0)
        with self.assertRaises(ValueError):
            plan_kills(random.Random(1), 5, 5, 0.0, 1.0)

    def test_seeded(self) -> None:
        self.assertEqual(
            plan_kills(random.Random(3), 100, 5, 0.0, 10.0),
            plan_kills(random.Random(3), 100, 5, 0.0, 10.0),
        )


class PlanPausesTests(unittest.TestCase):
    def test_a_share_of_nodes_stall_again_and_again(self) -> None:
        pauses = plan_pauses(random.Random(2), 200, 0.05, 5.0, 3.0, 300.0)
        nodes = {p.index for p in pauses}
        self.assertEqual(len(nodes), 10)
        for index in nodes:
            mine = [p for p in pauses if p.index == index]
            self.assertGreater(len(mine), 1)
            for first, second in itertools.pairwise(mine):
                self.assertAlmostEqual(first.end - first.start, 5.0)
                # it runs at least one stall length between two stalls
                self.assertGreaterEqual(second.start - first.end, 5.0)
        self.assertTrue(all(3.0 <= p.start < 300.0 for p in pauses))
        self.assertEqual([p.start for p in pauses], sorted(p.start for p in pauses))

    def test_spared_nodes_never_stall(self) -> None:
        pauses = plan_pauses(random.Random(2), 10, 1.0, 1.0, 0.0, 20.0, spare={3})
        self.assertEqual({p.index for p in pauses}, set(range(10)) - {3})

    def test_no_fraction_no_pauses(self) -> None:
        self.assertEqual(plan_pauses(random.Random(2), 100, 0.0, 5.0, 0.0, 99.0), [])


class ParsePauseTests(unittest.TestCase):
    def test_fraction_and_rounds(self) -> None:
        self.assertEqual(parse_pause("0.01:5"), (0.01, 5.0))

    def test_refused_with_the_option_named(self) -> None:
        for bad in ("0.01", "x:5", "2:5", "0.1:0", "0.1:-1", "nan:5", "0.1:inf"):
            with self.assertRaises(ValueError) as caught:
                parse_pause(bad)
            self.assertIn("--pause", str(caught.exception))

"""The new nodes the Hellos of one host may bring."""

from __future__ import annotations

from twisted.trial import unittest

from pokan.core.joinbudget import JoinBudget


class JoinBudgetTests(unittest.TestCase):
    def test_a_host_gets_its_bucket_then_a_trickle(self) -> None:
        budget = JoinBudget(size=64, refill=60.0)
        self.assertEqual(budget.available("h", 0.0), 64)
        budget.spend("h", 64, 0.0)
        self.assertEqual(budget.available("h", 0.0), 0)
        self.assertEqual(budget.available("h", 30.0), 32)
        self.assertEqual(budget.available("h", 600.0), 64)  # never above the size

    def test_hosts_are_apart_and_bounded(self) -> None:
        budget = JoinBudget(size=10, max_hosts=100)
        budget.spend("a", 10, 0.0)
        self.assertEqual(budget.available("b", 0.0), 10)
        for i in range(1000):
            budget.spend(f"host{i}", 1, 0.0)
        self.assertLessEqual(len(budget._buckets), 100)

    def test_a_real_joiner_is_never_held_back(self) -> None:
        budget = JoinBudget()
        for second in range(60):  # one joiner a second, each bringing itself
            self.assertGreaterEqual(budget.available("h", float(second)), 1)
            budget.spend("h", 1, float(second))


class ThrottledLinesTests(unittest.TestCase):
    def test_a_few_lines_a_window_then_a_summary(self) -> None:
        from twisted.internet import task

        from pokan.core.transitionlog import Seconds, ThrottledLines
        from tests.support import LogCatcher

        clock = task.Clock()
        logs = LogCatcher(self)
        lines = ThrottledLines(Seconds(clock.seconds), "full syncs", max_lines=3)
        for i in range(300):
            lines.emit("full sync", "full sync with {peer}", peer=f"p{i}")
        self.assertEqual(len(logs.matching("full sync with")), 3)
        clock.advance(10)
        lines.emit("full sync", "full sync with {peer}", peer="late")
        (summary,) = logs.matching("more full syncs without a line each")
        self.assertIn("297 more", summary)
        self.assertEqual(len(logs.matching("full sync with")), 4)

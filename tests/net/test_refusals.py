"""Refusals under a task.Clock: counted once the node listens, logged throttled."""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from pokan.core.state import ClusterState, NodeInfo
from pokan.net.badinput import BadInputReporter
from pokan.net.refusals import Refusals
from tests.support import LogCatcher


class RefusalsTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.state = ClusterState(NodeInfo("10.0.0.1:5555", 1, "10.0.0.1", 5555, 5555))
        self.bad_input: BadInputReporter | None = None
        self.refusals = Refusals(self.state, lambda: self.bad_input, self.clock.seconds)
        self.logs = LogCatcher(self)

    def test_nothing_is_counted_before_the_node_listens(self) -> None:
        self.refusals.refused("udp", "10.0.0.2:5555", "10.0.0.2", [("stale", "x")])
        self.assertEqual(self.logs.lines(), [])

    def test_each_refusal_is_counted_and_reported(self) -> None:
        self.bad_input = BadInputReporter(self.clock)
        self.refusals.refused(
            "tcp", "10.0.0.2:5555", "10.0.0.2", [("stale", "a"), ("stale", "b")]
        )
        self.assertEqual(self.bad_input.counts["stale"], 2)
        (line,) = self.logs.matching("dropped bad tcp input from 10.0.0.2:5555")
        self.assertIn("stale (a)", line)

    def test_a_peer_of_the_other_family_is_warned_of_once(self) -> None:
        self.bad_input = BadInputReporter(self.clock)
        other = [("other-family", "[::2]:5555")]
        for _ in range(3):
            self.refusals.refused("udp", "10.0.0.3:5555", "10.0.0.3", other)
        self.assertEqual(self.bad_input.counts["other-family"], 3)
        (line,) = self.logs.matching("refused peer [::2]:5555")
        self.assertIn("not an IPv4 node", line)

    def test_a_reassert_says_how_many_so_far(self) -> None:
        self.state.reasserts = 2
        self.refusals.reasserted("10.0.0.4:5555")
        (line,) = self.logs.matching("a message from 10.0.0.4:5555")
        self.assertIn("(2 re-asserts so far)", line)

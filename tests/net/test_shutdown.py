"""A stop's goodbyes and steps: each runs, whatever an earlier one raised."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pokan import wire
from pokan.core.node import Outgoing
from pokan.net.shutdown import each_after, each_now, say_goodbye
from tests.support import LogCatcher


class Boom(Exception):
    pass


def boom() -> Any:
    raise Boom("step")


BYE = wire.Goodbye("10.0.0.1:5555", 1)


class SayGoodbyeTests(unittest.TestCase):
    def test_a_send_that_raises_does_not_cut_the_others(self) -> None:
        logs = LogCatcher(self)
        sent: list[tuple[str, int]] = []

        def send(address: tuple[str, int], message: wire.Message) -> None:
            if address[0] == "10.0.0.2":
                raise Boom("send")
            sent.append(address)

        byes = [Outgoing((f"10.0.0.{i}", 5555), BYE) for i in (2, 3, 4)]
        self.assertEqual(say_goodbye(lambda: byes, send), 2)
        self.assertEqual(sent, [("10.0.0.3", 5555), ("10.0.0.4", 5555)])
        (line,) = logs.matching("could not say goodbye to 10.0.0.2:5555")
        self.assertIn("Boom: send", line)

    def test_goodbyes_that_cannot_be_made_are_none_said(self) -> None:
        self.assertEqual(say_goodbye(boom, lambda a, m: None), 0)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)


class StepsTests(unittest.TestCase):
    def test_each_now_runs_past_a_step_that_raises(self) -> None:
        ran: list[str] = []
        each_now([("first", boom), ("second", lambda: ran.append("second"))])
        self.assertEqual(ran, ["second"])
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

    def test_each_after_runs_in_turn_and_never_fails(self) -> None:
        logs = LogCatcher(self)
        ran: list[str] = []
        later: defer.Deferred[None] = defer.Deferred()
        d = each_after(
            defer.succeed(None),
            [
                ("one", lambda: ran.append("one")),
                ("two", lambda: later),
                ("three", boom),
                ("four", lambda: ran.append("four")),
            ],
        )
        self.assertNoResult(d)
        self.assertEqual(ran, ["one"])
        later.callback(None)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(ran, ["one", "four"])
        self.assertEqual(len(logs.matching("while stopping: three failed")), 1)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

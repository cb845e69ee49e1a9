"""A second signal while stopping: armed, disarmed, and what it does."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from twisted.trial import unittest

from pokan.net.stopping import SIGNALS, SecondSignal
from tests.support import LogCatcher


class FakeReactor:
    def __init__(self) -> None:
        self.called: list[Callable[[], Any]] = []
        self.crashed = 0

    def callFromThread(self, f: Callable[[], Any]) -> None:
        self.called.append(f)

    def crash(self) -> None:
        self.crashed += 1


class SecondSignalTests(unittest.TestCase):
    def test_armed_a_signal_crashes_the_loop_once_then_disarmed(self) -> None:
        before = {n: signal.getsignal(n) for n in SIGNALS}
        reactor = FakeReactor()
        second = SecondSignal(reactor)
        self.addCleanup(second.disarm)
        logs = LogCatcher(self)
        second.arm()
        handler = signal.getsignal(signal.SIGTERM)
        self.assertEqual(signal.getsignal(signal.SIGINT), handler)
        assert callable(handler)
        handler(signal.SIGTERM, None)
        handler(signal.SIGINT, None)  # a third: nothing more
        self.assertEqual(second.received, signal.SIGTERM)
        (crash,) = reactor.called
        crash()  # in the reactor thread, as callFromThread runs it
        self.assertEqual(reactor.crashed, 1)
        self.assertEqual(len(logs.matching("SIGTERM while stopping: ending now")), 1)
        second.disarm()
        self.assertEqual({n: signal.getsignal(n) for n in SIGNALS}, before)

    def test_not_armed_nothing_changes(self) -> None:
        before = {n: signal.getsignal(n) for n in SIGNALS}
        SecondSignal(FakeReactor()).disarm()
        self.assertEqual({n: signal.getsignal(n) for n in SIGNALS}, before)

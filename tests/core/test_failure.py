"""The phi-accrual failure detector, on a virtual clock."""

from __future__ import annotations

import random

from twisted.internet import task
from twisted.trial import unittest

from pokan.core.failure import PhiAccrualDetector, check_threshold


def feed(detector: PhiAccrualDetector, clock: task.Clock, gaps: list[float]) -> None:
    for gap in gaps:
        clock.advance(gap)
        detector.tick(clock.seconds())
        detector.heartbeat("x", clock.seconds())


class DetectorTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.detector = PhiAccrualDetector(interval=1.0, threshold=8.0)

    def test_unknown_node_is_not_suspected(self) -> None:
        self.assertEqual(self.detector.phi("nobody", 100.0), 0.0)
        self.assertFalse(self.detector.is_dead("nobody", 100.0))

    def test_steady_arrivals_never_convict(self) -> None:
        for _ in range(500):
            self.clock.advance(1.0)
            now = self.clock.seconds()
            self.assertTrue(self.detector.tick(now))
            self.detector.heartbeat("x", now)
            self.assertFalse(self.detector.is_dead("x", now + 0.99))
        self.assertLess(self.detector.phi("x", self.clock.seconds() + 1), 1.01)

    def test_stop_convicts_after_threshold_mean_intervals(self) -> None:
        feed(self.detector, self.clock, [0.5] * 50)  # mean 0.5 s
        last = self.clock.seconds()
        self.assertFalse(self.detector.is_dead("x", last + 3.9))
        self.assertTrue(self.detector.is_dead("x", last + 4.1))
        self.assertEqual(self.detector.dead(["x", "y"], last + 4.1), ["x"])

    def test_adapts_to_slower_arrivals(self) -> None:
        feed(self.detector, self.clock, [2.0] * 100)
        last = self.clock.seconds()
        self.assertFalse(self.detector.is_dead("x", last + 15.0))
        self.assertTrue(self.detector.is_dead("x", last + 16.5))

    def test_jitter_does_not_convict(self) -> None:
        rng = random.Random(4)
        for _ in range(2000):
            gap = rng.uniform(0.2, 1.8)
            for _ in range(4):  # ask between arrivals too
                self.clock.advance(gap / 4)
                self.detector.tick(self.clock.seconds())
                self.assertFalse(self.detector.is_dead("x", self.clock.seconds()))
            self.detector.heartbeat("x", self.clock.seconds())

    def test_local_pause_resets_windows(self) -> None:
        feed(self.detector, self.clock, [1.0] * 20)
        self.clock.advance(30.0)  # our own event loop stalled for 30 s
        now = self.clock.seconds()
        self.assertFalse(self.detector.tick(now))
        self.assertEqual(self.detector.pauses, 1)
        self.assertFalse(self.detector.is_dead("x", now))
        # the node really is silent from now on: convicted after the threshold
        for _ in range(7):
            self.clock.advance(1.0)
            self.assertTrue(self.detector.tick(self.clock.seconds()))
            self.assertFalse(self.detector.is_dead("x", self.clock.seconds()))
        self.clock.advance(1.5)
        self.assertTrue(self.detector.is_dead("x", self.clock.seconds()))

    def test_long_gap_is_not_learnt(self) -> None:
        feed(self.detector, self.clock, [1.0] * 20)
        feed(self.detector, self.clock, [60.0])  # back after a partition
        last = self.clock.seconds()
        self.assertTrue(self.detector.is_dead("x", last + 8.5))

    def test_bursts_are_floored(self) -> None:
        feed(self.detector, self.clock, [0.001] * 100)
        last = self.clock.seconds()
        # the mean is floored at a quarter of the interval
        self.assertFalse(self.detector.is_dead("x", last + 1.9))
        self.assertTrue(self.detector.is_dead("x", last + 2.1))

    def test_first_heartbeat_starts_with_one_interval(self) -> None:
        self.detector.heartbeat("x", 0.0)
        self.assertFalse(self.detector.is_dead("x", 7.9))
        self.assertTrue(self.detector.is_dead("x", 8.1))

    def test_clock_going_back_is_ignored(self) -> None:
        feed(self.detector, self.clock, [1.0] * 5)
        self.detector.heartbeat("x", self.clock.seconds() - 3)
        self.assertAlmostEqual(self.detector.phi("x", self.clock.seconds()), 0.0)

    def test_forget(self) -> None:
        self.detector.heartbeat("x", 0.0)
        self.detector.forget("x")
        self.assertNotIn("x", self.detector)

    def test_threshold_checked(self) -> None:
        self.assertEqual(check_threshold("5"), 5.0)
        for bad in (0, -1, "x", float("nan"), float("inf"), True, None):
            self.assertRaises(ValueError, check_threshold, bad)

"""SeedSync: first seed that answers, retries with capped backoff, on a Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task
from twisted.internet.error import DNSLookupError
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from pokan.net.protocols import NotAPokanNode
from pokan.net.seeds import NOT_POKAN_DELAY, SeedIsSelf, SeedSync

A, B = ("10.0.0.1", 5555), ("10.0.0.2", 5555)
#: what a line says once the retries reach their slowest pace
REPEAT = ", then as often (said again in 10 minutes if nothing changes)"


class SeedSyncTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.calls: list[tuple[str, int]] = []
        self.answers: dict[tuple[str, int], Any] = {}
        self.log: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.log.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.log.append)

    def sync(self, host: str, port: int) -> defer.Deferred[Any]:
        self.calls.append((host, port))
        answer = self.answers.get((host, port), ConnectionRefusedError("refused"))
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)

    def warnings(self) -> list[dict[str, Any]]:
        return [e for e in self.log if e.get("log_level") == LogLevel.warn]

    def test_first_that_answers(self) -> None:
        self.answers[B] = "ok"
        seeds = SeedSync(self.clock, [A, B], self.sync)
        seeds.start()
        self.assertEqual(self.calls, [A, B])
        self.assertEqual(seeds.synced_with, "10.0.0.2:5555")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_seed_that_is_not_pokan_is_said_at_once_and_retried_slowly(
        self,
    ) -> None:
        self.answers[A] = NotAPokanNode("10.0.0.1:5555", "it answered like X")
        seeds = SeedSync(self.clock, [A], self.sync, first_delay=1, max_delay=60)
        seeds.start()
        (said,) = [w for w in self.warnings() if "not answer" in str(w.get("error"))]
        self.assertEqual(said["seed"], "10.0.0.1:5555")
        delays = []
        for _ in range(3):
            (call,) = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.clock.advance(delays[-1])
        self.assertEqual(delays, [NOT_POKAN_DELAY, 60, 60])
        # said once per seed, not at every retry
        told = [w for w in self.warnings() if "not answer" in str(w.get("error"))]
        self.assertEqual(len(told), 1)

    def test_one_seed_not_pokan_among_others_down_keeps_the_pace(self) -> None:
        self.answers[A] = NotAPokanNode("10.0.0.1:5555", "it answered like X")
        seeds = SeedSync(self.clock, [A, B], self.sync, first_delay=1, max_delay=60)
        seeds.start()
        (call,) = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime() - self.clock.seconds(), 1)

    def test_retry_with_capped_backoff(self) -> None:
        seeds = SeedSync(self.clock, [A, B], self.sync, first_delay=1, max_delay=4)
        seeds.start()
        delays = []
        for _ in range(5):
            (call,) = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.clock.advance(delays[-1])
        self.assertEqual(delays, [1, 2, 4, 4, 4])

        self.assertEqual(seeds.attempts, 6)
        self.assertEqual(len(self.calls), 12)
        warning = self.warnings()[0]
        self.assertIn("10.0.0.1:5555", warning["errors"])
        self.assertIn("10.0.0.2:5555", warning["errors"])
        self.assertIsNone(seeds.synced_with)
        # a seed comes up: the next try joins and the retries end
        self.answers[A] = "ok"
        self.clock.advance(4)
        self.assertEqual(seeds.synced_with, "10.0.0.1:5555")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_retries_are_spread_with_an_rng(self) -> None:
        import random

        spreads = []
        for seed in (1, 2):
            clock = task.Clock()
            seeds = SeedSync(
                clock,
                [A],
                self.sync,
                first_delay=1,
                max_delay=4,
                rng=random.Random(seed),
            )
            seeds.start()
            delays = []
            for _ in range(4):
                (call,) = clock.getDelayedCalls()
                delays.append(call.getTime() - clock.seconds())
                clock.advance(delays[-1])
            for delay, base in zip(delays, [1, 2, 4, 4], strict=True):
                self.assertTrue(0.75 * base <= delay <= 1.25 * base, delays)
            spreads.append(delays)
        self.assertNotEqual(spreads[0], spreads[1])

    def test_stop_cancels_retry(self) -> None:
        seeds = SeedSync(self.clock, [A], self.sync)
        seeds.start()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        seeds.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_during_a_sync(self) -> None:
        pending: defer.Deferred[Any] = defer.Deferred()
        seeds = SeedSync(self.clock, [A, B], lambda h, p: pending)
        seeds.start()
        seeds.stop()
        pending.errback(ConnectionRefusedError("late"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.warnings(), [])

    def test_a_seed_that_is_this_node_is_dropped(self) -> None:
        self.answers[A] = SeedIsSelf("10.0.0.1:5555")
        seeds = SeedSync(self.clock, [A, B], self.sync)
        seeds.start()
        (warning, retry) = self.warnings()
        self.assertEqual(warning["seed"], "10.0.0.1:5555")
        self.assertEqual(warning["rest"], "")  # B is left to try
        self.assertIn("10.0.0.2:5555", retry["errors"])
        self.assertNotIn("10.0.0.1", retry["errors"])
        self.clock.advance(1)
        self.assertEqual(self.calls, [A, B, B])  # never itself again

    def test_itself_as_the_only_seed_ends_the_tries(self) -> None:
        self.answers[A] = SeedIsSelf("10.0.0.1:5555")
        seeds = SeedSync(self.clock, [A], self.sync)
        seeds.start()
        (warning,) = self.warnings()
        self.assertIn("waits for others to join through it", warning["rest"])
        self.assertEqual(self.clock.getDelayedCalls(), [])  # no retries
        self.assertTrue(seeds.idle)
        seeds.restart()  # no live peer: nothing to sync with
        self.assertEqual(self.calls, [A])

    def test_an_unresolvable_seed_says_so(self) -> None:
        self.answers[A] = DNSLookupError("no results for hostname lookup: x")
        seeds = SeedSync(self.clock, [A], self.sync, first_delay=1, max_delay=60)
        seeds.start()
        (warning,) = self.warnings()
        self.assertEqual(
            formatEvent(warning),
            "could not sync with any seed (10.0.0.1:5555: cannot resolve the"
            " host name 10.0.0.1: check it, and this host's DNS); gossip goes"
            " on, next try in 1s",
        )

    def test_a_failure_unchanged_is_said_less_often_at_the_slowest_pace(
        self,
    ) -> None:
        seeds = SeedSync(self.clock, [A], self.sync, first_delay=1, max_delay=60)
        seeds.start()
        for _ in range(30):  # 1, 2, 4 ... 32 s, then every 60 s: half an hour
            (call,) = self.clock.getDelayedCalls()
            self.clock.advance(call.getTime() - self.clock.seconds())
        said = [formatEvent(w) for w in self.warnings()]
        # every try while the delay doubles (1 to 32 s), then one line in 10
        # minutes (the first try at 60 s, then each after 600 s or more)
        self.assertEqual(seeds.attempts, 31)
        self.assertEqual(
            [line.split("next try in ")[1] for line in said],
            ["1s", "2s", "4s", "8s", "16s", "32s"]
            + [f"60s{REPEAT}"]
            + [f"60s{REPEAT}; 9 tries since the last line failed as it said"] * 2,
        )
        # a new reason is said at once
        self.answers[A] = ConnectionRefusedError("another reason")
        self.clock.advance(60)
        self.assertIn("another reason", formatEvent(self.warnings()[-1]))
        self.assertEqual(len(self.warnings()), len(said) + 1)

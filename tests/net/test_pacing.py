"""Pacing under a task.Clock: rounds every interval, retries, idle pauses."""

from __future__ import annotations

import itertools

import attrs
from twisted.internet import task
from twisted.trial import unittest

from pokan import wire
from pokan.core.engine import Engine, Output
from pokan.core.node import Outgoing, address_of
from pokan.net.pacing import Pacing
from tests.core.test_engine import engine as any_engine
from tests.core.test_engine import joined, received


def engine(i: int, **settings: object) -> Engine:
    """An Engine whose detector has no timer of its own (phi): the gossip's
    pacing alone; DetectorTimerTests below run SWIM's."""
    settings.setdefault("failure_detector", "phi")
    return any_engine(i, **settings)


class Driver:
    """A Pacing over one Engine and a Clock; records what the rounds do."""

    def __init__(self, e: Engine, fail_commit: bool = False) -> None:
        self.clock = task.Clock()
        self.engine = e
        self.commits: list[float] = []  # when each round (or retry) ticked
        self.sends: list[tuple[float, str]] = []
        self.outgoing: list[Outgoing] = []
        self.opened: list[float] = []
        self.rejoins = 0
        self.fail_commit = fail_commit
        self.pacing = Pacing(
            lambda: self.clock,
            e,
            now=self.clock.seconds,
            running=lambda: True,
            commit=self.commit,
            send=self.send,
            opening=lambda out: self.opened.append(self.clock.seconds()),
            rejoin=self.rejoin,
        )

    def commit(self, output: Output) -> None:
        self.commits.append(self.clock.seconds())
        if self.fail_commit:
            raise ZeroDivisionError("a broken store")

    def send(self, address: tuple[str, int], message: wire.Message) -> None:
        self.sends.append((self.clock.seconds(), type(message).__name__))
        self.outgoing.append(Outgoing(address, message))

    def rejoin(self) -> None:
        self.rejoins += 1

    def run(self, seconds: float, step: float = 0.25) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)


def since(times: list[float], start: float) -> list[float]:
    return [t for t in times if t >= start]


class RoundTests(unittest.TestCase):
    def test_rounds_fire_every_gossip_interval(self) -> None:
        d = Driver(engine(1, gossip_interval=1.0))
        d.pacing.start()
        d.run(0.75)
        self.assertEqual(d.commits, [])  # the first round is one interval on
        self.assertIsNotNone(d.pacing.loop)
        d.run(4.25)
        self.assertEqual(d.commits, [1.0, 2.0, 3.0, 4.0, 5.0])
        self.assertEqual(d.engine.node.rounds, 5)
        self.assertEqual(d.rejoins, 5)  # the seeds are looked at every round

    def test_an_unanswered_exchange_is_retried_half_a_round_on(self) -> None:
        a = engine(1, gossip_interval=1.0, fanout=1)
        joined(a, engine(2))
        joined(a, engine(3))  # a retry asks another peer
        d = Driver(a)
        d.pacing.start()
        d.run(1.5)
        self.assertEqual(d.commits, [1.0, 1.5])  # the round, then its retry
        self.assertEqual([t for t, kind in d.sends if kind == "Syn"], [1.0, 1.5])
        self.assertEqual(set(d.opened), {1.0})  # before_gossip: the round's only

    def test_an_answered_exchange_is_not_retried(self) -> None:
        a, b = engine(1, gossip_interval=1.0), engine(2)
        joined(a, b)
        d = Driver(a)
        d.pacing.start()
        d.run(1.0)
        self.assertIsNotNone(d.pacing.retry)
        syns = tuple(o for o in d.outgoing if isinstance(o.message, wire.Syn))
        synack = received(b, a, Output(sends=syns), 1.1)
        received(a, b, synack, 1.2)  # a takes the SynAck: answered
        self.assertFalse(a.awaiting)
        d.pacing.answered()
        self.assertIsNone(d.pacing.retry)
        d.run(0.75)
        self.assertEqual(d.commits, [1.0])  # no retry at 1.5


class IdleTests(unittest.TestCase):
    def settled(self) -> Driver:
        """A node gossiping every second, every 5 s when idle, now idle."""
        a = engine(1, gossip_interval=1.0, idle_interval=5.0)
        joined(a, engine(2))
        d = Driver(a)
        d.pacing.start()
        d.run(12)
        self.assertTrue(a.idle)
        return d

    def test_an_idle_node_wakes_once_per_idle_interval(self) -> None:
        d = self.settled()
        start, rounds = d.clock.seconds(), d.engine.node.rounds
        d.run(20)
        wakeups = since(d.commits, start)
        self.assertEqual(len(wakeups), 4)
        self.assertEqual({b - a for a, b in itertools.pairwise(wakeups)}, {5.0})
        # the rounds slept through still count, as skipped
        self.assertEqual(d.engine.node.rounds, rounds + 20)

    def test_while_paused_the_only_timer_is_the_resume(self) -> None:
        d = self.settled()
        self.assertIsNotNone(d.pacing.resume)
        assert d.pacing.loop is not None
        self.assertFalse(d.pacing.loop.running)
        self.assertEqual(d.clock.getDelayedCalls(), [d.pacing.resume])

    def test_news_during_a_pause_brings_rounds_every_interval_back(self) -> None:
        d = self.settled()
        d.engine.write("k", "v", None, d.clock.seconds())
        self.assertFalse(d.engine.idle)
        start = d.clock.seconds()
        d.pacing.wake()
        self.assertIsNone(d.pacing.resume)
        d.run(3)
        rounds = [t for t in since(d.commits, start) if t == int(t)]
        self.assertEqual(rounds, [start + 1, start + 2, start + 3])

    def test_a_wake_without_news_keeps_the_pause(self) -> None:
        d = self.settled()
        resume = d.pacing.resume
        d.pacing.wake()
        self.assertIs(d.pacing.resume, resume)

    def test_a_new_interval_paces_rounds_anew(self) -> None:
        d = Driver(engine(1, gossip_interval=1.0))
        d.pacing.start()
        d.run(2)
        e = d.engine
        e.reconfigure(attrs.evolve(e.settings, gossip_interval=2.0))
        d.pacing.interval_changed()
        d.run(6)
        self.assertEqual(d.commits, [1.0, 2.0, 4.0, 6.0, 8.0])


class StopTests(unittest.TestCase):
    def test_stop_leaves_no_timer(self) -> None:
        a = engine(1, gossip_interval=1.0)
        joined(a, engine(2))
        d = Driver(a)
        d.pacing.start()
        d.run(1.0)  # a round: its retry is due
        self.assertIsNotNone(d.pacing.retry)
        d.pacing.stop()
        self.assertEqual(d.clock.getDelayedCalls(), [])
        d.run(5)
        self.assertEqual(d.commits, [1.0])

    def test_a_failing_commit_is_logged_and_the_round_still_gossips(self) -> None:
        a = engine(1, gossip_interval=1.0, fanout=1)
        joined(a, engine(2))
        joined(a, engine(3))
        d = Driver(a, fail_commit=True)
        d.pacing.start()
        d.run(2)
        # the rounds at 1 and 2 s, the retry at 1.5 s (which then sends nothing)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 3)
        self.assertEqual([t for t, kind in d.sends if kind == "Syn"], [1.0, 2.0])
        assert d.pacing.loop is not None
        self.assertTrue(d.pacing.loop.running)


class Answered(Driver):
    """A Driver whose one peer answers every probe at once (nothing else)."""

    def __init__(self, e: Engine, peer: Engine) -> None:
        super().__init__(e)
        self.peer = peer

    def send(self, address: tuple[str, int], message: wire.Message) -> None:
        super().send(address, message)
        me = address_of(self.engine.state.me)
        if isinstance(message, wire.Ping) and address == address_of(self.peer.state.me):
            now = self.clock.seconds()
            for out in self.peer.receive(message, me, None, now).sends:
                if isinstance(out.message, wire.PingAck) and out.address == me:
                    self.clock.callLater(0.001, self.acked, out.message)

    def acked(self, ack: wire.PingAck) -> None:
        """The ack arrives a millisecond on, as over loopback."""
        peer = address_of(self.peer.state.me)
        self.engine.receive(ack, peer, None, self.clock.seconds())
        self.pacing.wake()  # as the Server does after each datagram


class DetectorTimerTests(unittest.TestCase):
    """SWIM's probes keep their pace on the detector's own timer."""

    def test_probes_go_out_twice_an_interval_between_rounds(self) -> None:
        a = any_engine(1, gossip_interval=1.0, probe_interval=0.5)
        joined(a, any_engine(2))
        d = Driver(a)
        a.start(d.clock.seconds())
        d.pacing.start()
        d.run(4.0, step=0.05)
        pings = [t for t, kind in d.sends if kind == "Ping"]
        # one probe per half interval (none answered: the second engine is
        # not driven), each on the detector's timer, not only at rounds
        self.assertGreaterEqual(len(pings), 7)
        self.assertTrue(any(t % 1.0 not in (0.0,) for t in pings))
        self.assertIsNotNone(d.pacing.due)

    def test_an_idle_node_keeps_its_probe_pace(self) -> None:
        a = any_engine(1, gossip_interval=1.0, idle_interval=4.0, probe_interval=0.5)
        b = any_engine(2, gossip_interval=1.0, idle_interval=4.0, probe_interval=0.5)
        joined(a, b)
        d = Answered(a, b)
        a.start(d.clock.seconds())
        d.pacing.start()
        d.run(40.0, step=0.05)
        syns = [t for t, kind in d.sends if kind == "Syn" and t >= 20.0]
        pings = [t for t, kind in d.sends if kind == "Ping" and t >= 20.0]
        self.assertLessEqual(len(syns), 6)  # one exchange per idle interval
        # twice per gossip interval, on the detector's timer (the gossip
        # sleeps through the quiet rounds): no probe is skipped or slowed
        self.assertGreaterEqual(len(pings), 38)
        self.assertLessEqual(len(pings), 41)

    def test_an_answered_probe_leaves_no_wakeup_at_its_timeout(self) -> None:
        a = any_engine(1, gossip_interval=1.0, idle_interval=10.0, probe_interval=1.0)
        b = any_engine(2, gossip_interval=1.0, idle_interval=10.0, probe_interval=1.0)
        joined(a, b)
        d = Answered(a, b)
        polls: list[float] = []
        poll = a.poll
        a.poll = lambda now: polls.append(now) or poll(now)  # type: ignore[method-assign]
        a.start(d.clock.seconds())
        d.pacing.start()
        d.run(30.0, step=0.05)
        pings = [t for t, kind in d.sends if kind == "Ping" and t >= 10.0]
        woken = [t for t in polls if t >= 10.0]
        self.assertGreaterEqual(len(pings), 19)
        # one wakeup per probe: the timer set for the probe's timeout moved
        # on to the next probe when the ack came (it did not fire for nothing)
        self.assertLessEqual(len(woken), len(pings) + 1)

    def test_stop_leaves_no_detector_timer(self) -> None:
        a = any_engine(1, gossip_interval=1.0)
        joined(a, any_engine(2))
        d = Driver(a)
        a.start(d.clock.seconds())
        d.pacing.start()
        d.run(2.0)
        d.pacing.stop()
        self.assertEqual(d.clock.getDelayedCalls(), [])

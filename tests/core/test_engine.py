"""The Engine under plain values: messages, writes and ticks in, Outputs out."""

from __future__ import annotations

import random

from twisted.trial import unittest

from pokan import wire
from pokan.core.engine import Engine, Output
from pokan.core.membership import Membership
from pokan.core.node import address_of
from pokan.core.settings import EngineSettings
from pokan.core.state import NodeDelta, NodeInfo

#: a generation that a wall clock at 0 s would refuse: tests pass ``wall``
GENERATION = 1


def info(i: int) -> NodeInfo:
    host = f"10.0.0.{i}"
    return NodeInfo(f"{host}:5555", GENERATION, host, 5555, 5555)


def engine(i: int, seed: int = 0, **settings: object) -> Engine:
    return Engine(EngineSettings.checked(**settings), info(i), random.Random(seed))


def joined(a: Engine, b: Engine, now: float = 0.0) -> None:
    """A full sync between ``a`` and ``b``, both ways, as a join does."""
    a.merge_full(b.full_state(), now)
    b.merge_full(a.full_state(), now)


def source(e: Engine) -> tuple[str, int]:
    return address_of(e.state.me)


def received(to: Engine, sender: Engine, output: Output, now: float) -> Output:
    """What ``to`` makes of the first message ``output`` sends it."""
    (message,) = [o.message for o in output.sends if o.address == source(to)][:1]
    return to.receive(message, source(sender), None, now)


class WriteTests(unittest.TestCase):
    def test_a_write_gives_a_batch_and_pushes_it(self) -> None:
        a, b = engine(1), engine(2)
        joined(a, b)
        out = a.write("colour", "blue", None, 10.0)
        self.assertEqual(
            [(c.node_id, c.key, c.value) for c in out.batch.changes],
            [(a.id, "colour", "blue")],
        )
        self.assertEqual(a.state.me.entries["colour"].timestamp, 10.0)
        pushes = [o for o in out.sends if isinstance(o.message, wire.Ack)]
        self.assertEqual([o.address for o in pushes], [source(b)])
        # the peer takes the pushed write: a batch with it, no event of a peer
        got = received(b, a, out, 10.1)
        self.assertEqual([c.key for c in got.batch.changes], ["colour"])
        self.assertEqual(got.transitions, ())

    def test_an_older_timestamp_changes_nothing(self) -> None:
        a = engine(1)
        a.write("k", "new", 5.0, 5.0)
        out = a.write("k", "old", 1.0, 6.0)
        self.assertFalse(out.batch)
        self.assertEqual(out.sends, ())
        self.assertEqual(a.state.me.entries["k"].value, "new")

    def test_a_clock_that_stepped_back_still_writes_later(self) -> None:
        a = engine(1)
        a.write("k", "v1", None, 100.0)
        a.write("k", "v2", None, 50.0)  # the clock went back
        self.assertEqual(a.state.me.entries["k"].value, "v2")
        self.assertEqual(a.state.me.entries["k"].timestamp, 100.0)


class ExchangeTests(unittest.TestCase):
    def test_a_syn_gets_a_synack_and_completes_the_exchange(self) -> None:
        # phi: the round sends the Syn alone (SWIM adds its probe)
        a, b = engine(1, failure_detector="phi"), engine(2, failure_detector="phi")
        joined(a, b)
        b.write("k", "v", None, 1.0)
        syn = a.tick(2.0)
        self.assertEqual([type(o.message) for o in syn.sends], [wire.Syn])
        self.assertTrue(a.awaiting)
        reply = received(b, a, syn, 2.01)
        self.assertEqual([type(o.message) for o in reply.sends], [wire.SynAck])
        self.assertEqual(reply.sends[0].address, source(a))
        done = received(a, b, reply, 2.02)
        self.assertFalse(a.awaiting)
        self.assertIs(done.exchanged_with, a.state.nodes[b.id])
        self.assertEqual([c.key for c in done.batch.changes], ["k"])

    def test_a_retry_opens_another_exchange_only_if_unanswered(self) -> None:
        a = engine(1, fanout=1, failure_detector="phi")
        b, c = engine(2), engine(3)
        joined(a, b)
        joined(a, c)
        a.tick(1.0)
        retried = a.retry(1.5)
        self.assertEqual(len(retried.sends), 1)
        self.assertFalse(a.retry(1.6).sends)


class FailureTests(unittest.TestCase):
    """The phi detector (``failure_detector="phi"``); SWIM's: test_liveness."""

    def test_a_silent_peer_is_convicted_after_ticks(self) -> None:
        a, b = engine(1, failure_detector="phi"), engine(2, failure_detector="phi")
        joined(a, b)
        a.start(0.0)
        transitions = []
        for second in range(1, 30):
            out = a.tick(float(second))
            transitions += [
                (e, n.info.id, note)
                for (e, n), note in zip(out.transitions, out.notes, strict=True)
            ]
        self.assertEqual([t[:2] for t in transitions], [("peer_dead", b.id)])
        self.assertIn("phi", transitions[0][2])
        self.assertEqual(a.state.nodes[b.id].status, "dead")
        self.assertEqual(a.convictions, 1)
        self.assertEqual(a.detector_view(b.id, 30.0)["kind"], "phi")

    def test_a_peer_heard_is_not_convicted(self) -> None:
        a, b = engine(1, failure_detector="phi"), engine(2, failure_detector="phi")
        joined(a, b)
        a.start(0.0)
        for second in range(1, 30):
            syn = b.tick(float(second))
            for out in syn.sends:
                if out.address == source(a):
                    a.receive(out.message, source(b), None, second + 0.01)
            self.assertEqual(a.tick(second + 0.5).transitions, ())
        self.assertEqual(a.state.nodes[b.id].status, "alive")


class LostContactTests(unittest.TestCase):
    """A watch connection lost (pokan.net.watch): the detector probes at once."""

    def test_a_live_member_is_pinged_now(self) -> None:
        a, b, c = engine(1), engine(2), engine(3)
        joined(a, b)
        joined(a, c)
        a.start(0.0)
        out = a.lost_contact(c.id, 0.5)
        pings = [o for o in out.sends if isinstance(o.message, wire.Ping)]
        self.assertEqual(
            [(o.address, o.message.target) for o in pings], [(source(c), c.id)]
        )

    def test_nothing_for_a_stranger_this_node_or_a_dead_member(self) -> None:
        a, b = engine(1), engine(2)
        joined(a, b)
        a.start(0.0)
        a.state.set_status(a.state.nodes[b.id], "dead")
        for node_id in ("10.9.9.9:5555", a.id, b.id):
            self.assertEqual(a.lost_contact(node_id, 1.0).sends, ())

    def test_phi_takes_no_hint(self) -> None:
        a, b = engine(1, failure_detector="phi"), engine(2, failure_detector="phi")
        joined(a, b)
        a.start(0.0)
        self.assertEqual(a.lost_contact(b.id, 1.0).sends, ())


class ResetTests(unittest.TestCase):
    def setUp(self) -> None:
        self.a, self.b = engine(1), engine(2)
        joined(self.a, self.b)
        # a third node whose tombstones up to version 5 a collected
        self.a.merge_full([NodeDelta(info(3), 1, 0, 6, ())], 0.0)
        self.a.state.nodes[info(3).id].gc_point = 5

    def syn(self, version: int) -> wire.Syn:
        digest = (wire.DigestEntry(info(3).id, GENERATION, version, 1),)
        return wire.Syn(self.b.id, digest)

    def test_a_peer_behind_our_gc_point_gets_a_reset_sync_once(self) -> None:
        a, b = self.a, self.b
        out = a.receive(self.syn(2), source(b), None, 1.0)
        self.assertEqual(out.syncs, (("10.0.0.2", 5555),))
        self.assertEqual(out.behind, (b.id,))
        # asked again only after max(10 rounds, the sync timeout: 10 s)
        self.assertEqual(a.receive(self.syn(2), source(b), None, 5.0).syncs, ())
        self.assertEqual(len(a.receive(self.syn(2), source(b), None, 11.5).syncs), 1)

    def test_a_peer_past_our_gc_point_gets_none(self) -> None:
        out = self.a.receive(self.syn(6), source(self.b), None, 1.0)
        self.assertEqual(out.syncs, ())


class GoodbyeTests(unittest.TestCase):
    def test_goodbyes_go_to_every_peer_and_mark_us_left(self) -> None:
        a, b = engine(1), engine(2)
        joined(a, b)
        byes = a.goodbye(5.0)
        self.assertEqual([o.address for o in byes], [source(b)])
        self.assertIsInstance(byes[0].message, wire.Goodbye)
        out = b.receive(byes[0].message, source(a), None, 5.1)
        self.assertEqual(
            [(e, n.info.id) for e, n in out.transitions], [("peer_left", a.id)]
        )
        self.assertEqual(b.state.nodes[a.id].status, "left")

    def test_a_goodbye_from_another_socket_is_refused(self) -> None:
        a, b = engine(1), engine(2)
        joined(a, b)
        bye = a.goodbye()[0].message
        out = b.receive(bye, ("10.0.0.9", 5555), None, 1.0)
        self.assertEqual([r for r, _ in out.rejected], ["forged-goodbye"])
        self.assertEqual(b.state.nodes[a.id].status, "alive")


class SettingsTests(unittest.TestCase):
    def test_checked_names_the_option(self) -> None:
        from pokan.errors import ConfigurationError

        with self.assertRaisesRegex(ConfigurationError, "gossip_fanout="):
            EngineSettings.checked(fanout=0)
        with self.assertRaisesRegex(ConfigurationError, "--idle-interval"):
            EngineSettings.checked(
                {"idle_interval": "--idle-interval"}, idle_interval=0.001
            )

    def test_new_intervals_reach_the_node_and_the_detector(self) -> None:
        import attrs

        a = engine(1)
        a.reconfigure(attrs.evolve(a.settings, gossip_interval=0.5, idle_interval=2.0))
        self.assertEqual(a.node.idle_rounds, 4)
        assert isinstance(a.detector, Membership)
        self.assertEqual(a.detector.detector.interval, 2.0)


class ForgetTests(unittest.TestCase):
    """An operator's forget: the record goes, and stays gone unless told."""

    def cluster(self) -> tuple[Engine, Engine, Engine]:
        a, b, c = engine(1), engine(2, seed=1), engine(3, seed=2)
        for x, y in ((a, b), (a, c), (b, c)):
            joined(x, y)
        return a, b, c

    def test_forget_drops_the_record_and_ignores_its_old_gossip(self) -> None:
        a, b, c = self.cluster()
        out = a.forget(c.id, 10.0)
        self.assertEqual(out.batch.forgotten, (c.id,))
        self.assertNotIn(c.id, a.state.nodes)
        # b still gossips c's record of the same generation: not taken back
        a.merge_full(b.full_state(), 11.0)
        self.assertNotIn(c.id, a.state.nodes)
        # a restart of c (a newer generation) is a new node: welcome
        c2 = Engine(
            EngineSettings.checked(),
            NodeInfo(c.id, GENERATION + 1, "10.0.0.3", 5555, 5555),
            random.Random(3),
        )
        a.merge_full(c2.full_state(), 12.0)
        self.assertEqual(a.state.nodes[c.id].info.generation, GENERATION + 1)

    def test_without_remember_its_next_gossip_brings_it_back(self) -> None:
        a, b, c = self.cluster()
        a.forget(c.id, 10.0, remember=False)
        self.assertNotIn(c.id, a.state.nodes)
        a.merge_full(b.full_state(), 11.0)
        self.assertIn(c.id, a.state.nodes)

    def test_the_detector_forgets_its_suspicion_too(self) -> None:
        a, b, c = self.cluster()
        a.start(0.0)
        now = 0.0
        for step in range(1, 200):  # nobody answers: suspicions start
            now = step / 4
            (a.tick if step % 4 == 0 else a.retry)(now)
            if a.detector_view(c.id, now)["status"] == "suspect":
                break
        self.assertEqual(a.detector_view(c.id, now)["status"], "suspect")
        a.forget(c.id, now)
        self.assertNotIn(c.id, a.state.nodes)
        a.merge_full(b.full_state(), now)  # ignored: remembered as forgotten
        self.assertEqual(a.detector_view(c.id, now)["status"], "alive")

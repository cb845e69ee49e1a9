"""Watch connections under a memory reactor: whom a node watches, and the hints.

The real thing (a kill -9 noticed through them) is in test_watch_live.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from pokan import wire
from pokan.core.engine import Engine
from pokan.net import watch
from pokan.net.watch import Watches, ring_successors
from pokan.wire.envelope import Envelope
from pokan.wire.framing import PREFIX
from tests.core.test_engine import engine, joined


class RingTests(unittest.TestCase):
    def test_the_ids_after_me_wrapping_round(self) -> None:
        ids = ["a", "b", "c", "d", "e"]
        self.assertEqual(ring_successors(ids, "c", 2), ["d", "e"])
        self.assertEqual(ring_successors(ids, "d", 2), ["e", "a"])
        self.assertEqual(ring_successors(ids, "e", 3), ["a", "b", "c"])

    def test_me_is_never_my_own_successor(self) -> None:
        self.assertEqual(ring_successors(["b"], "a", 2), ["b"])
        self.assertEqual(ring_successors([], "a", 2), [])
        self.assertEqual(ring_successors(["a", "b"], "a", 2), ["b"])

    def test_each_node_is_watched_by_as_many_as_it_watches(self) -> None:
        ids = [f"n{i:02}" for i in range(10)]
        watchers = {i: 0 for i in ids}
        for me in ids:
            for watched in ring_successors(ids, me, 2):
                watchers[watched] += 1
        self.assertEqual(set(watchers.values()), {2})


class Fixture:
    """Node 1 of a cluster of ``n`` engines, its Watches on a memory reactor."""

    def __init__(self, n: int = 4) -> None:
        self.engines = [engine(i) for i in range(1, n + 1)]
        self.me: Engine = self.engines[0]
        for other in self.engines[1:]:
            joined(self.me, other)
        self.reactor = MemoryReactorClock()
        self.hints: list[str] = []
        self.watches = Watches(
            lambda: self.reactor,
            self.reactor.seconds,
            Envelope(),
            me=lambda: self.me.state.me,
            nodes=lambda: self.me.state.nodes,
            lost_contact=self.hints.append,
        )

    def id(self, i: int) -> str:
        return self.engines[i - 1].id

    def targets(self) -> list[tuple[str, int]]:
        return [(host, port) for host, port, *_ in self.reactor.tcpClients]

    def connect(self, node: int) -> tuple[Any, StringTransport]:
        """The last connection attempt to ``node`` succeeds."""
        host = self.engines[node - 1].state.me.info.address
        factory = next(
            f for h, _, f, *_ in reversed(self.reactor.tcpClients) if h == host
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def kill(self, node: int) -> None:
        """Node ``node`` is held dead now (the detector convicted it)."""
        state = self.me.state
        state.set_status(state.nodes[self.id(node)], "dead")


class WatchesTests(unittest.TestCase):
    def setUp(self) -> None:
        self.f = Fixture()
        self.f.watches.start()

    def test_it_watches_its_two_ring_successors(self) -> None:
        self.assertEqual(sorted(self.f.watches.out), [self.f.id(2), self.f.id(3)])
        self.assertEqual(self.f.targets(), [("10.0.0.2", 5555), ("10.0.0.3", 5555)])

    def test_the_first_frame_is_a_watch_and_nothing_follows(self) -> None:
        _, transport = self.f.connect(2)
        data = transport.value()
        (length,) = PREFIX.unpack(data[: PREFIX.size])
        message = wire.decode(data[PREFIX.size :])
        self.assertEqual(length, len(data) - PREFIX.size)
        self.assertEqual(
            message, wire.Watch(self.f.me.id, self.f.me.state.me.info.generation)
        )

    def test_a_dead_member_is_dropped_for_the_next_one(self) -> None:
        _, transport = self.f.connect(2)
        self.f.kill(2)
        self.f.watches.update()
        self.assertEqual(sorted(self.f.watches.out), [self.f.id(3), self.f.id(4)])
        self.assertTrue(transport.disconnecting)  # closed by us
        self.assertEqual(self.f.hints, [])

    def test_a_watch_lost_after_a_while_is_a_hint_then_retried(self) -> None:
        protocol, _ = self.f.connect(2)
        self.f.reactor.advance(watch.RETRY_AFTER + 1)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.f.hints, [self.f.id(2)])
        attempts = len(self.f.reactor.tcpClients)
        self.f.reactor.advance(watch.RETRY_AFTER)
        self.assertEqual(len(self.f.reactor.tcpClients), attempts + 1)

    def test_a_refused_connection_is_a_hint(self) -> None:
        _, _, factory, *_ = self.f.reactor.tcpClients[0]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertEqual(self.f.hints, [self.f.id(2)])

    def test_a_watch_closed_at_once_was_refused_no_hint_and_backs_off(self) -> None:
        protocol, _ = self.f.connect(2)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.f.hints, [])
        self.assertEqual(
            self.f.watches.out[self.f.id(2)].backoff, 2 * watch.RETRY_AFTER
        )
        attempts = len(self.f.reactor.tcpClients)
        self.f.reactor.advance(watch.RETRY_AFTER)
        self.assertEqual(len(self.f.reactor.tcpClients), attempts)
        self.f.reactor.advance(watch.RETRY_AFTER)
        self.assertEqual(len(self.f.reactor.tcpClients), attempts + 1)

    def test_hints_about_one_member_are_spaced(self) -> None:
        _, _, factory, *_ = self.f.reactor.tcpClients[0]
        for _ in range(5):
            factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.f.reactor.advance(watch.RETRY_AFTER)  # retried, refused again
        _, _, again, *_ = self.f.reactor.tcpClients[-1]
        again.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.assertEqual(self.f.hints, [self.f.id(2)] * 2)

    def test_stop_closes_everything_without_hints(self) -> None:
        protocol, transport = self.f.connect(2)
        held = self.accept(3)
        self.f.watches.stop()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(transport.disconnecting)
        self.assertTrue(held.transport.disconnecting)
        self.assertEqual(self.f.hints, [])
        self.assertEqual(self.f.watches.out, {})
        self.assertEqual(self.f.reactor.getDelayedCalls(), [])

    # -- inbound -----------------------------------------------------------------

    def accept(self, node: int, **change: Any) -> Any:
        info = self.f.engines[node - 1].state.me.info
        message = wire.Watch(
            change.get("sender", info.id), change.get("generation", info.generation)
        )
        protocol = FakeInbound()
        protocol.refused = self.f.watches.accept(
            message, change.get("host", info.address), protocol
        )
        return protocol

    def test_a_live_member_at_its_own_host_is_held(self) -> None:
        held = self.accept(4)
        self.assertIsNone(held.refused)
        self.f.watches.watcher_lost(self.f.id(4), held)
        self.assertEqual(self.f.hints, [self.f.id(4)])

    def test_impostors_are_refused_as_bad_input_with_the_reason(self) -> None:
        elsewhere = self.accept(4, host="10.9.9.9").refused
        self.assertEqual(elsewhere[0], "watch-refused")
        self.assertIn("names 10.0.0.4:5555, but came from 10.9.9.9", elsewhere[1])
        older = self.accept(4, generation=0).refused
        self.assertEqual(older[0], "watch-refused")
        self.assertIn("generation 0, older than 1", older[1])
        itself = self.accept(1).refused
        self.assertEqual(itself, ("watch-refused", "it names this node itself"))
        self.assertEqual(self.f.watches.watchers, {})
        self.assertEqual(self.f.watches.early, 0)

    def test_watches_before_their_member_is_known_alive_are_early(self) -> None:
        stranger = self.accept(4, sender="10.9.9.9:5555").refused
        self.assertEqual(stranger[0], watch.EARLY)
        self.assertIn("10.9.9.9:5555 is no member this node knows yet", stranger[1])
        restarted = self.accept(4, generation=99).refused
        self.assertEqual(restarted[0], watch.EARLY)
        self.assertIn("generation 99", restarted[1])
        self.f.kill(4)
        self.assertEqual(self.accept(4).refused[0], watch.EARLY)
        self.assertEqual(self.f.watches.watchers, {})
        self.assertEqual(self.f.watches.early, 3)

    def test_a_second_watch_of_one_member_replaces_the_first_quietly(self) -> None:
        first, second = self.accept(3), self.accept(3)
        self.assertTrue(first.transport.disconnecting)
        self.f.watches.watcher_lost(self.f.id(3), first)
        self.assertEqual(self.f.hints, [])
        self.assertIs(self.f.watches.watchers[self.f.id(3)], second)

    def test_at_most_max_watchers_are_held(self) -> None:
        f = Fixture(n=watch.MAX_WATCHERS + 3)
        f.watches.start()
        held = []
        for i in range(2, watch.MAX_WATCHERS + 4):
            info = f.engines[i - 1].state.me.info
            protocol = FakeInbound()
            message = wire.Watch(info.id, info.generation)
            held.append(f.watches.accept(message, info.address, protocol))
        self.assertEqual(held.count(None), watch.MAX_WATCHERS)
        self.assertEqual(
            [r[0] for r in held if r is not None], ["too-many-watchers"] * 2
        )
        self.assertEqual(len(f.watches.watchers), watch.MAX_WATCHERS)


class FakeInbound:
    """What Watches.accept holds of an inbound connection: its transport."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        #: what accept said: None (held), or the reason and detail of a refusal
        self.refused: tuple[str, str] | None = None

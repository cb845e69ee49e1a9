"""A library user's own store, clock and reactor reach the Server."""

from __future__ import annotations

from twisted.internet import defer, task
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from zope.interface import implementer

from pokan import IStore, Server
from pokan.core.state import Batch
from tests.handler_support import cluster, wait_until


@implementer(IStore)
class SlowStore:
    """Persists only when the test says so."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.pending: list[defer.Deferred[None]] = []

    def open(self) -> defer.Deferred[None]:
        return defer.succeed(None)

    def persist(self, batch: Batch) -> defer.Deferred[None]:
        self.batches.append(batch)
        d: defer.Deferred[None] = defer.Deferred()
        self.pending.append(d)
        return d

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)


class CollaboratorTests(unittest.TestCase):
    def test_own_store_persists_before_events(self) -> None:
        store = SlowStore()
        server = Server("127.0.0.1", store=store, reactor=MemoryReactorClock())
        seen: list[str] = []
        server.on("new_key", lambda key: seen.append(key))
        stored = server.store("k", "v")
        self.assertEqual(len(store.batches), 1)
        self.assertEqual(seen, [], "events wait for the store")
        store.pending[0].callback(None)
        self.successResultOf(stored)
        self.assertEqual(seen, ["k"])

    def test_clock_gives_timestamps(self) -> None:
        clock = task.Clock()
        clock.advance(1234.5)
        server = Server("127.0.0.1", reactor=MemoryReactorClock(), clock=clock)
        server.store("k", "v")
        self.assertEqual(server.timestamp("k"), 1234.5)

    def test_reactor_is_the_clock_by_default(self) -> None:
        reactor = MemoryReactorClock()
        reactor.advance(99)
        server = Server("127.0.0.1", reactor=reactor)
        server.store("k", "v")
        self.assertEqual(server.timestamp("k"), 99)

    @defer.inlineCallbacks
    def test_clock_drives_gossip_rounds_on_a_real_reactor(self) -> None:
        [seed] = yield cluster(self, 1)
        clock = task.Clock()
        node = Server(
            "127.0.0.1",
            tcp_port=0,
            udp_port=0,
            gossip_interval=1,
            gossip_with=f"127.0.0.1:{seed.tcp_port}",
            clock=clock,
            failure_detector="phi",  # the gossip's datagrams alone are counted
        )
        self.addCleanup(lambda: node.running and node.stopService())
        yield node.startService()
        yield wait_until(lambda: node.peer(seed.id) is not None, what="the sync")
        for _ in range(3):
            sent = node.stats["datagrams_sent"]
            clock.advance(0.999)
            self.assertEqual(node.stats["datagrams_sent"], sent, "not yet")
            clock.advance(0.001)  # one round, sent at once, on our clock
            self.assertGreater(node.stats["datagrams_sent"], sent)

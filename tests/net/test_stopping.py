"""Stopping a node always completes; start() and stop() refuse their misuse."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet import defer, error
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from pokan import Server, wire
from pokan.core.state import Batch
from pokan.errors import ConfigurationError
from pokan.store import MemoryStore
from tests.net.test_server_unit import (
    ADDRESS,
    Boom,
    ServerTestCase,
    UDPMemoryReactor,
    other_node,
)
from tests.support import LogCatcher


class RecordingStore(MemoryStore):
    """A MemoryStore that records its last writes and its close; can fail."""

    def __init__(self) -> None:
        super().__init__()
        self.persisted: list[Batch] = []
        self.closed = False
        self.fail_persist = False

    def persist(self, batch: Batch) -> defer.Deferred[None]:
        self.persisted.append(batch)
        if self.fail_persist:
            raise Boom("persist")
        return super().persist(batch)

    def close(self) -> defer.Deferred[None]:
        self.closed = True
        return super().close()


class StopAlwaysCompletesTests(ServerTestCase):
    def started(self) -> tuple[Server, RecordingStore, list[str]]:
        store = RecordingStore()
        server = self.start(store=store)
        seen: list[str] = []
        server.on("shutdown", lambda: seen.append("shutdown"))
        self.introduce(other_node(2))
        self.introduce(other_node(3))
        self.reactor.udpPorts[0].written.clear()
        return server, store, seen

    def assertStoppedCleanly(
        self, server: Server, store: RecordingStore, seen: list[str]
    ) -> None:
        self.assertFalse(server.running)
        self.assertEqual(seen, ["shutdown"])
        self.assertTrue(store.closed)
        self.assertFalse(self.reactor.udpPorts[0].listening)
        self.assertFalse(self.reactor.tcpPorts[0].listening)

    def test_a_goodbye_that_raises_does_not_cut_the_others(self) -> None:
        server, store, seen = self.started()
        assert server._gossip is not None
        send = server._gossip.send

        def send_or_raise(address: Any, message: wire.Message) -> bool:
            if address[0] == "10.0.0.2":
                raise Boom("send")
            return send(address, message)

        server._gossip.send = send_or_raise  # type: ignore[method-assign]
        logged = LogCatcher(self)
        self.assertIsNone(self.successResultOf(server.stopService()))
        self.assertEqual([a for _, a in self.reactor.sent()], [("10.0.0.3", 5555)])
        self.assertStoppedCleanly(server, store, seen)
        (record,) = store.persisted[-1].nodes
        self.assertEqual(record.status, "left")
        self.assertTrue(logged.matching("could not say goodbye to 10.0.0.2:5555"))

    def test_a_failing_step_does_not_cut_the_rest(self) -> None:
        server, store, seen = self.started()

        def boom() -> None:
            raise Boom("goodbye")

        server._node.goodbye = boom  # type: ignore[method-assign,assignment]
        server._syncs.seed_sync = SimpleNamespace(stop=boom)  # type: ignore[assignment]
        self.successResultOf(server.stopService())
        self.assertStoppedCleanly(server, store, seen)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 2)

    def test_a_store_that_fails_to_persist_is_closed_still(self) -> None:
        server, store, seen = self.started()
        store.fail_persist = True
        self.successResultOf(server.stopService())
        self.assertStoppedCleanly(server, store, seen)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

    def test_ports_that_fail_to_close_still_close_the_store(self) -> None:
        server, store, seen = self.started()

        def refuse() -> None:
            raise Boom("stopListening")

        self.reactor.udpPorts[0].stopListening = refuse  # type: ignore[method-assign]
        self.successResultOf(server.stopService())
        self.assertEqual(seen, ["shutdown"])
        self.assertTrue(store.closed)
        self.assertFalse(self.reactor.tcpPorts[0].listening)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

    def test_a_failing_shutdown_handler_does_not_keep_the_store_open(self) -> None:
        store = RecordingStore()
        server = self.start(store=store)

        def fail() -> None:
            raise Boom("handler")

        server.on("shutdown", fail)
        self.successResultOf(server.stopService())
        self.assertTrue(store.closed)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)


class RunningReactor(UDPMemoryReactor):
    """A memory reactor that runs already (as a host program's would)."""

    def __init__(self) -> None:
        super().__init__()
        self.running = True


class StartMisuseTests(unittest.TestCase):
    def test_start_while_the_reactor_runs(self) -> None:
        reactor = RunningReactor()
        server = Server(ADDRESS, reactor=reactor)
        with self.assertRaises(ConfigurationError) as caught:
            server.start()
        self.assertIn("the reactor is running already", str(caught.exception))
        self.assertIn("startService()", str(caught.exception))
        self.assertFalse(server.running)
        self.assertTrue(reactor.running)  # never stopped
        self.assertFalse(reactor.hasStopped)
        self.assertEqual(reactor.whenRunningHooks, [])

    def test_start_on_a_node_already_started(self) -> None:
        reactor = UDPMemoryReactor()
        server = Server(ADDRESS, reactor=reactor)
        self.successResultOf(server.startService())  # as its MultiService does
        self.addCleanup(server.stopService)
        with self.assertRaises(ConfigurationError) as caught:
            server.start()
        self.assertIn("already started", str(caught.exception))
        self.assertIn("stopService()", str(caught.exception))
        self.assertTrue(server.running)
        self.assertFalse(reactor.hasRun)
        self.assertFalse(reactor.hasStopped)

    def test_start_runs_and_stop_stops_the_reactor_once(self) -> None:
        reactor = UDPMemoryReactor()
        server = Server(ADDRESS, reactor=reactor)
        calls: list[bool] = []

        def started() -> None:
            calls.append(server.running)
            self.assertIsNone(server.stop())
            self.assertIsNone(server.stop())  # a repeated stop(): nothing more

        server.on("start", started)
        stops: list[int] = []
        real_stop = reactor.stop

        def count_stop() -> None:
            stops.append(1)
            real_stop()

        reactor.stop = count_stop  # type: ignore[method-assign]
        server.start()
        self.assertEqual(calls, [True])
        # once by the first stop(); MemoryReactor.run() stops itself after
        self.assertEqual(len(stops), 2)


class StrictReactor(UDPMemoryReactor):
    """Stopping fires the shutdown triggers; a reactor not running refuses."""

    def stop(self) -> None:
        if not self.running:
            raise error.ReactorNotRunning()
        self.running = False
        self.hasStopped = True
        for f, args, kwargs in self.triggers.get("before", {}).get("shutdown", []):
            f(*args, **kwargs)


class StopDuringShutdownTests(unittest.TestCase):
    def test_a_shutdown_handler_that_calls_stop_is_not_a_failure(self) -> None:
        reactor = StrictReactor()
        server = Server(ADDRESS, reactor=reactor)
        server.on("shutdown", server.stop)  # the reactor is stopping already
        server.start()  # MemoryReactor.run() stops the reactor once started
        self.assertEqual(server.events.failures, 0)
        self.assertFalse(server.running)
        self.assertEqual(self.flushLoggedErrors(), [])


class StopMisuseTests(ServerTestCase):
    def test_a_second_stop_is_a_no_op(self) -> None:
        store = RecordingStore()
        server = self.start(store=store)
        seen: list[str] = []
        server.on("shutdown", lambda: seen.append("shutdown"))
        first = server.stop()
        second = server.stop()
        assert first is not None and second is not None
        self.successResultOf(first)
        self.assertIsNone(self.successResultOf(second))
        self.assertEqual(seen, ["shutdown"])

    def test_stop_before_start_is_a_no_op(self) -> None:
        server = self.make()
        result = server.stop()
        assert result is not None
        self.assertIsNone(self.successResultOf(result))

    def test_stop_without_a_real_reactor_never_stops_one(self) -> None:
        reactor = MemoryReactorClock()
        reactor.running = True
        server = Server(ADDRESS, reactor=reactor)
        result = server.stop()
        assert result is not None
        self.successResultOf(result)
        self.assertFalse(reactor.hasStopped)

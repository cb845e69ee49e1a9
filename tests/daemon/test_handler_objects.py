"""Handler objects: Server.add_handler, IEventHandler, the log plugin."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from zope.interface import implementer

from pokan import Server
from pokan.daemon.handlers import HandlerPlugin, register_handler
from pokan.daemon.interfaces import HANDLER_METHODS, IEventHandler, IEventHandlerFactory
from pokan.daemon.logging_handler import LoggingHandler
from pokan.net.events import ALL_EVENTS, EventDispatcher


def server() -> Server:
    return Server("127.0.0.1", reactor=MemoryReactorClock())


@implementer(IEventHandler)
class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def new_key(self, key: str, value: Any, peer: Any) -> None:
        self.calls.append(("new_key", key, value, peer.id))

    def key_changed(self, key: str) -> None:  # fewer arguments are fine
        self.calls.append(("key_changed", key))

    def key_removed(self, key: str, value: Any) -> None:
        self.calls.append(("key_removed", key, value))

    def peer_joined(self, peer: Any) -> None:
        self.calls.append(("peer_joined", peer))


class AddHandlerTests(unittest.TestCase):
    def test_methods_registered_like_on(self) -> None:
        s = server()
        recorder = Recorder()
        self.assertIs(s.add_handler(recorder), recorder)
        self.successResultOf(s.store("k", "v1"))
        self.successResultOf(s.store("k", "v2"))
        self.successResultOf(s.delete("k"))
        self.assertEqual(
            recorder.calls,
            [
                ("new_key", "k", "v1", s.id),
                ("key_changed", "k"),
                ("key_removed", "k", "v2"),  # the value it had
            ],
        )

    def test_equivalent_to_on_registrations(self) -> None:
        by_object, by_on = server(), server()
        a, b = Recorder(), Recorder()
        by_object.add_handler(a)
        by_on.on("new_key", b.new_key)
        by_on.on("key_changed", b.key_changed)
        by_on.on("key_removed", b.key_removed)
        for s in (by_object, by_on):
            s.store("k", "v")
            s.store("k", b"w")
            s.delete("k")
        self.assertEqual([c[:3] for c in a.calls], [c[:3] for c in b.calls])

    def test_deferred_results_are_awaited(self) -> None:
        s = server()
        pending: defer.Deferred[None] = defer.Deferred()

        class Slow:
            def new_key(self, key: str) -> defer.Deferred[None]:
                return pending

        s.add_handler(Slow())
        stored = s.store("k", "v")
        self.assertNoResult(stored)
        pending.callback(None)
        self.successResultOf(stored)

    def test_failing_method_is_isolated(self) -> None:
        s = server()

        class Broken:
            def new_key(self) -> None:
                raise RuntimeError("boom")

        s.add_handler(Broken())
        self.successResultOf(s.store("k", "v"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(s.stats["handler_failures"], 1)

    def test_before_and_after_methods(self) -> None:
        s = server()
        seen: list[str] = []

        class Gossip:
            def before_gossip(self, peer: Any) -> None:
                seen.append(f"before_gossip {peer}")

            def after_sync(self) -> None:
                seen.append("after_sync")

            def start(self) -> None:
                seen.append("start")

        s.add_handler(Gossip())
        for event in ("before_gossip", "after_sync", "start"):
            self.assertTrue(s.events.has_handlers(event), event)
        s.events.fire("before_gossip", "the peer", peer="the peer")
        s.events.fire("after_sync", None, peer=None)
        s.events.fire("start")
        self.assertEqual(seen, ["before_gossip the peer", "after_sync", "start"])

    def test_peer_parameter_gets_the_peer(self) -> None:
        s = server()
        got: list[Any] = []
        s.before("gossip", lambda peer: got.append(peer))
        s.after("sync", lambda p, peer=None: got.append((p, peer)))
        s.on("new_key", lambda key, peer: got.append((key, peer.id)))
        s.events.fire("before_gossip", "P", peer="P")  # as the server fires it
        s.events.fire("after_sync", "S", peer="S")
        s.store("k", "v")
        self.assertEqual(got, ["P", ("S", "S"), ("k", s.id)])

    def test_membership_methods_only_when_the_dispatcher_has_them(self) -> None:
        recorder = Recorder()
        without = EventDispatcher(
            tuple(e for e in ALL_EVENTS if not e.startswith("peer_"))
        )
        names = register_handler(without, recorder)
        self.assertNotIn("peer_joined", names)
        with_membership = EventDispatcher((*without.known_events, "peer_joined"))
        names = register_handler(with_membership, recorder)
        self.assertIn("peer_joined", names)
        with_membership.fire("peer_joined", "a peer", peer="a peer")
        self.assertIn(("peer_joined", "a peer"), recorder.calls)

    def test_rejects_objects_that_handle_nothing(self) -> None:
        s = server()
        with self.assertRaises(TypeError) as caught:
            s.add_handler(object())
        self.assertIn("none of the handler methods", str(caught.exception))
        with self.assertRaises(TypeError) as caught:
            s.add_handler(Recorder)
        self.assertIn("is a class", str(caught.exception))

        class NotCallable:
            new_key = "oops"

        with self.assertRaises(TypeError):
            s.add_handler(NotCallable())

    def test_interface_lists_every_method(self) -> None:
        self.assertEqual(sorted(IEventHandler.names()), sorted(HANDLER_METHODS))
        for event in ALL_EVENTS:
            self.assertIn(event, HANDLER_METHODS)


class HandlerPluginTests(unittest.TestCase):
    def test_provides_the_factory_interface(self) -> None:
        plugin = HandlerPlugin("x", "does x", lambda server, arg: (server, arg))
        self.assertTrue(IEventHandlerFactory.providedBy(plugin))
        self.assertEqual(plugin.build("s", "a"), ("s", "a"))

    def test_name_is_checked(self) -> None:
        for bad in ("", "-x", "a b", "a=b", "a:b"):
            with self.assertRaises(ValueError):
                HandlerPlugin(bad, "", lambda server, arg: None)


class LoggingHandlerTests(unittest.TestCase):
    def test_logs_chosen_events(self) -> None:
        from twisted.logger import formatEvent, globalLogPublisher

        events: list[Any] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        s = server()
        s.add_handler(LoggingHandler.from_argument(s, "new_key"))
        s.store("k", "v")
        s.store("k", "w")
        s.add_handler(LoggingHandler.from_argument(s, "before_sync,after_gossip,start"))
        s.events.fire("start")
        s.events.fire("before_sync", "10.0.0.1:5555", peer="10.0.0.1:5555")
        s.events.fire("after_gossip", s.me, peer=s.me)
        lines = [formatEvent(e) for e in events if "event " in formatEvent(e)]
        self.assertEqual(
            lines,
            [
                f"event new_key: 'k', 'v' (node {s.id})",
                "event start",
                "event before_sync: '10.0.0.1:5555'",
                f"event after_gossip: {s.id}",
            ],
        )

    def test_unknown_event_rejected(self) -> None:
        with self.assertRaises(ValueError):
            LoggingHandler.from_argument(None, "new_key,nope")

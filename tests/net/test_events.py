"""The event dispatcher: registration, argument adaptation, isolation."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from pokan.net.events import (
    AFTER_EVENTS,
    ALL_EVENTS,
    BEFORE_EVENTS,
    ON_EVENTS,
    EventDispatcher,
    registrar,
)


class Boom(Exception):
    pass


class CapturedLog:
    """Collects log events published while a test runs."""

    def __init__(self, test: unittest.TestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def failures(self) -> list[dict[str, Any]]:
        return [e for e in self.events if "log_failure" in e]


class RegistrationTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dispatcher = EventDispatcher()
        self.on = registrar(self.dispatcher, "", ON_EVENTS)
        self.before = registrar(self.dispatcher, "before_", BEFORE_EVENTS)
        self.after = registrar(self.dispatcher, "after_", AFTER_EVENTS)

    def test_unknown_event_names_valid_ones(self) -> None:
        for register, valid in (
            (self.on, ON_EVENTS),
            (self.before, BEFORE_EVENTS),
            (self.after, AFTER_EVENTS),
        ):
            e = self.assertRaises(ValueError, register, "new_kye", print)
            self.assertIn("'new_kye'", str(e))
            for name in valid:
                self.assertIn(name, str(e))
        # before/after take gossip and sync only, not the key events
        self.assertRaises(ValueError, self.before, "new_key", print)
        self.assertRaises(ValueError, self.on, "gossip", print)
        self.assertRaises(ValueError, self.on, "new_kye")  # decorator form too
        e = self.assertRaises(ValueError, self.dispatcher.register, "x", print)
        for name in ALL_EVENTS:
            self.assertIn(name, str(e))

    def test_not_callable(self) -> None:
        self.assertRaises(TypeError, self.on, "new_key", "print")

    def test_direct_form_returns_handler(self) -> None:
        def handler() -> None:
            pass

        self.assertIs(self.on("start", handler), handler)
        self.assertTrue(self.dispatcher.has_handlers("start"))
        self.assertFalse(self.dispatcher.has_handlers("shutdown"))

    def test_decorator_form(self) -> None:
        calls = []

        @self.on("new_key")
        def handler(key: str, value: str) -> None:
            calls.append((key, value))

        @self.after("gossip")
        def gossiped(peer: Any) -> None:
            calls.append(("gossip", peer))

        self.assertTrue(callable(handler))
        self.dispatcher.fire("new_key", "k", "v", peer="P")
        # the server gives the peer both ways (see test_server_unit)
        self.dispatcher.fire("after_gossip", "P", peer="P")
        self.assertEqual(calls, [("k", "v"), ("gossip", "P")])

    def test_fire_without_handlers(self) -> None:
        self.assertIsNone(self.successResultOf(self.dispatcher.fire("start")))


class ArityTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dispatcher = EventDispatcher()
        self.calls: list[Any] = []

    def fire(self, handler: Any) -> Any:
        self.calls.clear()
        self.dispatcher = EventDispatcher()
        self.dispatcher.register("new_key", handler)
        self.successResultOf(self.dispatcher.fire("new_key", "k", "v", peer="P"))
        (call,) = self.calls
        return call

    def test_adaptation(self) -> None:
        calls = self.calls

        def none() -> None:
            calls.append(())

        def one(key: str) -> None:
            calls.append((key,))

        def two(key: str, value: str) -> None:
            calls.append((key, value))

        def with_peer(key: str, value: str, peer: Any) -> None:
            calls.append((key, value, peer))

        def peer_only(peer: Any) -> None:
            calls.append(("peer", peer))

        def keyword_peer(key: str, *, peer: Any = None) -> None:
            calls.append((key, peer))

        def var_kw(key: str, **kwargs: Any) -> None:
            calls.append((key, kwargs))

        def var_args(*args: Any) -> None:
            calls.append(args)

        def everything(*args: Any, **kwargs: Any) -> None:
            calls.append((args, kwargs))

        def defaults(key: str, value: str = "d", extra: int = 3) -> None:
            calls.append((key, value, extra))

        class Handler:
            def method(self, key: str, value: str) -> None:
                calls.append(("method", key, value))

            def __call__(self, key: str) -> None:
                calls.append(("callable", key))

        self.assertEqual(self.fire(none), ())
        self.assertEqual(self.fire(one), ("k",))
        self.assertEqual(self.fire(two), ("k", "v"))
        self.assertEqual(self.fire(with_peer), ("k", "v", "P"))
        self.assertEqual(self.fire(peer_only), ("peer", "P"))
        self.assertEqual(self.fire(keyword_peer), ("k", "P"))
        self.assertEqual(self.fire(var_kw), ("k", {"peer": "P"}))
        self.assertEqual(self.fire(var_args), ("k", "v"))
        self.assertEqual(self.fire(everything), (("k", "v"), {"peer": "P"}))
        self.assertEqual(self.fire(defaults), ("k", "v", 3))
        self.assertEqual(self.fire(Handler().method), ("method", "k", "v"))
        self.assertEqual(self.fire(Handler()), ("callable", "k"))
        self.assertEqual(self.fire(lambda k, v: calls.append((v, k))), ("v", "k"))

    def test_peer_parameter_anywhere(self) -> None:
        """``peer`` gets the peer wherever it stands; the others fill in order."""
        calls = self.calls
        self.assertEqual(
            self.fire(lambda peer, key: calls.append((peer, key))), ("P", "k")
        )
        self.assertEqual(
            self.fire(lambda key, peer, value: calls.append((key, peer, value))),
            ("k", "P", "v"),
        )
        self.assertEqual(
            self.fire(lambda peer, x=1: calls.append((peer, x))), ("P", "k")
        )
        self.assertEqual(
            self.fire(lambda a, b, c=0, peer=None: calls.append((a, b, c, peer))),
            ("k", "v", 0, "P"),
        )

    def test_builtin_without_signature(self) -> None:
        self.dispatcher.register("new_key", print)  # signature is known
        seen: list[Any] = []
        self.dispatcher.register("new_key", seen.append)  # one positional
        log = CapturedLog(self)
        self.successResultOf(self.dispatcher.fire("new_key", "k", "v", peer="P"))
        self.assertEqual(seen, ["k"])
        self.assertEqual(log.failures(), [])


class IsolationTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dispatcher = EventDispatcher()
        self.log = CapturedLog(self)

    def test_deferred_handlers_awaited(self) -> None:
        pending: defer.Deferred[None] = defer.Deferred()
        self.dispatcher.register("shutdown", lambda: pending)
        done = self.dispatcher.fire("shutdown")
        self.assertNoResult(done)
        pending.callback("ignored")
        self.assertIsNone(self.successResultOf(done))

    def test_raising_handler_isolated(self) -> None:
        calls = []

        def bad(key: str) -> None:
            raise Boom("handler bug")

        self.dispatcher.register("new_key", bad)
        self.dispatcher.register("new_key", lambda k, v: calls.append((k, v)))
        self.assertIsNone(
            self.successResultOf(self.dispatcher.fire("new_key", "k", "v"))
        )
        self.assertEqual(calls, [("k", "v")])
        self.assertEqual(self.dispatcher.failures, 1)
        # one line, and the traceback only at debug level
        (line,) = [e for e in self.log.events if e["log_level"] == LogLevel.warn]
        self.assertIs(line["handler"], bad)
        self.assertEqual(line["event"], "new_key")
        self.assertEqual(line["error"], "Boom: handler bug")
        self.assertNotIn("log_failure", line)
        (event,) = self.log.failures()
        self.assertEqual(event["log_level"], LogLevel.debug)
        self.assertTrue(event["log_failure"].check(Boom))
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

    def test_a_handler_failing_again_logs_one_line_each_time(self) -> None:
        def bad(key: str) -> None:
            raise Boom("handler bug")

        self.dispatcher.register("new_key", bad)
        for _ in range(7):
            self.dispatcher.fire("new_key", "k", "v")
        lines = [e for e in self.log.events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(lines), 7)
        self.assertTrue(all("log_failure" not in e for e in lines))
        # the traceback of its first failure, not of each
        self.assertEqual(len(self.log.failures()), 1)
        self.flushLoggedErrors(Boom)

    def test_failing_deferred_isolated(self) -> None:
        later: defer.Deferred[None] = defer.Deferred()
        calls = []
        self.dispatcher.register("start", lambda: defer.fail(Boom("at once")))
        self.dispatcher.register("start", lambda: later)
        self.dispatcher.register("start", lambda: calls.append("ran"))
        done = self.dispatcher.fire("start")
        self.assertEqual(calls, ["ran"])
        self.assertNoResult(done)
        later.errback(Boom("later"))
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(self.dispatcher.failures, 2)
        self.assertEqual(len(self.log.failures()), 2)
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 2)

    def test_handler_with_wrong_arity_is_logged(self) -> None:
        # needs more arguments than the event gives: a TypeError, isolated
        self.dispatcher.register("start", lambda a, b: None)
        self.assertIsNone(self.successResultOf(self.dispatcher.fire("start")))
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_base_exception_subclasses_of_exception_only(self) -> None:
        def cancelled() -> defer.Deferred[None]:
            d: defer.Deferred[None] = defer.Deferred()
            d.cancel()
            return d

        self.dispatcher.register("start", cancelled)
        self.assertIsNone(self.successResultOf(self.dispatcher.fire("start")))
        self.assertEqual(len(self.flushLoggedErrors(defer.CancelledError)), 1)


class PeerEventArgumentTests(unittest.TestCase):
    """Events whose argument is the peer: it is not given twice."""

    def setUp(self) -> None:
        self.dispatcher = EventDispatcher()
        self.calls: list[Any] = []

    def fire(self, event: str, handler: Any) -> Any:
        self.calls.clear()
        self.dispatcher = EventDispatcher()
        self.dispatcher.register(event, handler)
        peer = object()  # as the server fires them: the Peer both ways
        self.successResultOf(self.dispatcher.fire(event, peer, peer=peer))
        (call,) = self.calls
        return peer, call

    def test_a_default_after_peer_is_kept(self) -> None:
        def with_extra(peer: Any, extra: str = "x") -> None:
            self.calls.append((peer, extra))

        for event in ("peer_joined", "peer_dead", "after_gossip", "before_sync"):
            peer, call = self.fire(event, with_extra)
            self.assertEqual(call, (peer, "x"), event)

    def test_the_loop_idiom_keeps_its_bound_name(self) -> None:
        handlers = [
            lambda peer, _n=name: self.calls.append((_n, peer)) for name in ("a", "b")
        ]
        peer, call = self.fire("peer_left", handlers[1])
        self.assertEqual(call, ("b", peer))

    def test_a_parameter_not_named_peer_still_gets_it(self) -> None:
        peer, call = self.fire(
            "peer_alive", lambda p, extra=1: self.calls.append((p, extra))
        )
        self.assertEqual(call, (peer, 1))
        # a first parameter takes the argument; ``peer`` after it the peer
        peer, call = self.fire(
            "after_sync", lambda p, peer=None: self.calls.append((p, peer))
        )
        self.assertEqual(call, (peer, peer))

    def test_key_events_still_fill_defaults_from_arguments_left(self) -> None:
        """The owner is not one of a key event's arguments: a parameter after
        ``peer`` gets the key (an argument is left for it)."""
        self.dispatcher.register(
            "new_key",
            lambda peer, key, extra="x": self.calls.append((peer, key, extra)),
        )
        self.successResultOf(self.dispatcher.fire("new_key", "k", "v", peer="P"))
        self.assertEqual(self.calls, [("P", "k", "v")])


class TimeoutTests(unittest.TestCase):
    """A handler's Deferred is waited for at most the timeout."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.dispatcher = EventDispatcher(timeout=5.0, clock=lambda: self.clock)
        self.log = CapturedLog(self)

    def warnings(self) -> list[str]:
        return [
            formatEvent(e) for e in self.log.events if e["log_level"] == LogLevel.warn
        ]

    def test_a_late_handler_is_logged_by_name_and_cancelled(self) -> None:
        never: defer.Deferred[None] = defer.Deferred()
        cancelled: list[bool] = []
        pending: defer.Deferred[None] = defer.Deferred(lambda d: cancelled.append(True))

        class Plugin:
            def shutdown(self) -> defer.Deferred[None]:
                return pending

        self.dispatcher.register("shutdown", Plugin().shutdown, name="hang.shutdown")
        self.dispatcher.register("shutdown", lambda: never)
        done = self.dispatcher.fire("shutdown")
        self.clock.advance(4.9)
        self.assertNoResult(done)
        self.clock.advance(0.1)
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(cancelled, [True])
        self.assertEqual(self.dispatcher.timeouts, 2)
        self.assertEqual(self.dispatcher.failures, 0)
        self.assertEqual(self.log.failures(), [], "no traceback for a late handler")
        first, second = self.warnings()
        self.assertIn("handler hang.shutdown for event shutdown did not finish", first)
        self.assertIn("within 5 s; cancelled", first)
        self.assertIn("tests.net.test_events.TimeoutTests", second)
        self.assertIn("<lambda>", second)

    def test_a_handler_in_time_is_not_touched(self) -> None:
        later: defer.Deferred[str] = defer.Deferred()
        self.dispatcher.register("start", lambda: later)
        done = self.dispatcher.fire("start")
        self.clock.advance(4)
        later.callback("ok")
        self.successResultOf(done)
        self.clock.advance(10)
        self.assertEqual((self.dispatcher.timeouts, self.warnings()), (0, []))
        self.assertEqual(self.clock.getDelayedCalls(), [], "the timer was cancelled")

    def test_its_own_failure_is_still_a_failure(self) -> None:
        later: defer.Deferred[None] = defer.Deferred()
        self.dispatcher.register("start", lambda: later)
        done = self.dispatcher.fire("start")
        later.errback(Boom("late but failed"))
        self.successResultOf(done)
        self.assertEqual((self.dispatcher.failures, self.dispatcher.timeouts), (1, 0))
        self.assertEqual(len(self.flushLoggedErrors(Boom)), 1)

    def test_unbounded_handlers_are_waited_for(self) -> None:
        """A command handler bounds its own runs: it is not cancelled."""
        later: defer.Deferred[None] = defer.Deferred()
        self.dispatcher.register("shutdown", lambda: later, bounded=False)
        done = self.dispatcher.fire("shutdown")
        self.clock.advance(60)
        self.assertNoResult(done)
        later.callback(None)
        self.successResultOf(done)

"""The event dispatcher behind ``on``, ``before`` and ``after``.

A handler may take fewer arguments than an event offers: it receives as many
leading positional arguments as it accepts, and the owning ``peer`` as a
keyword when it has a ``peer`` parameter (or ``**kwargs``). Handlers may
return Deferreds. A handler that raises or fails is logged and isolated.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

log = Logger()

#: handlers whose first traceback is remembered, at most (then each is logged)
MAX_TRACED = 1024

ON_EVENTS = (
    "new_key",
    "key_changed",
    "key_removed",
    "start",
    "shutdown",
    "peer_joined",
    "peer_left",
    "peer_dead",
    "peer_alive",
)
#: membership events: handlers get the Peer
MEMBERSHIP_EVENTS = ("peer_joined", "peer_left", "peer_dead", "peer_alive")
BEFORE_EVENTS = ("gossip", "sync")
AFTER_EVENTS = ("gossip", "sync")

#: every event name the dispatcher knows, as registered internally
ALL_EVENTS = (
    *ON_EVENTS,
    *(f"before_{e}" for e in BEFORE_EVENTS),
    *(f"after_{e}" for e in AFTER_EVENTS),
)

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)


@attrs.frozen
class _Registered:
    """A handler and how to call it with the arguments it accepts."""

    handler: Handler
    #: per leading positional parameter: True where it is named ``peer``
    slots: tuple[bool, ...]
    takes_rest: bool  # has *args: gets every remaining argument
    peer_keyword: bool  # gets ``peer=`` as a keyword

    @classmethod
    def adapt(cls, handler: Handler) -> _Registered:
        try:
            params = list(inspect.signature(handler).parameters.values())
        except (TypeError, ValueError):  # builtins without a signature
            return cls(handler, (), True, False)
        positional = (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
        slots = tuple(p.name == "peer" for p in params if p.kind in positional)
        kinds = {p.kind for p in params}
        keyword_peer = any(
            p.name == "peer" and p.kind == inspect.Parameter.KEYWORD_ONLY
            for p in params
        )
        peer_keyword = not any(slots) and (
            keyword_peer or inspect.Parameter.VAR_KEYWORD in kinds
        )
        return cls(
            handler, slots, inspect.Parameter.VAR_POSITIONAL in kinds, peer_keyword
        )

    def call(self, args: tuple[Any, ...], peer: Any) -> Any:
        """Fill the positional parameters in order (``peer`` where it is
        named so, the event's arguments elsewhere), then the rest."""
        out: list[Any] = []
        rest = list(args)
        for is_peer in self.slots:
            if is_peer:
                out.append(peer)
            elif rest:
                out.append(rest.pop(0))
            else:  # out of arguments: the remaining parameters keep defaults
                break
        if self.takes_rest:
            out.extend(rest)
        if self.peer_keyword or (
            any(self.slots) and len(out) < self.slots.index(True) + 1
        ):
            return self.handler(*out, peer=peer)
        return self.handler(*out)


class EventDispatcher:
    """Holds handlers per event and fires them, isolating their failures."""

    def __init__(self, events: tuple[str, ...] = ALL_EVENTS) -> None:
        self._events = events
        self._handlers: dict[str, list[_Registered]] = {e: [] for e in events}
        self.failures = 0
        #: handlers whose traceback was logged (the first failure of each)
        self._traced: set[int] = set()

    def register(self, event: str, handler: Handler) -> Handler:
        if event not in self._handlers:
            raise ValueError(
                f"unknown event {event!r}; valid events are: {', '.join(self._events)}"
            )
        if not callable(handler):
            raise TypeError(f"handler for {event!r} must be callable, got {handler!r}")
        self._handlers[event].append(_Registered.adapt(handler))
        return handler

    @property
    def known_events(self) -> tuple[str, ...]:
        """Every event name this dispatcher fires, as ``register`` takes them."""
        return self._events

    def has_handlers(self, event: str) -> bool:
        return bool(self._handlers.get(event))

    def fire(self, event: str, *args: Any, peer: Any = None) -> defer.Deferred[None]:
        """Call every handler of ``event``; the Deferred fires when all are done.

        It never fails: a handler's exception or failed Deferred is logged.
        """
        pending = []
        for registered in self._handlers[event]:
            d = defer.maybeDeferred(registered.call, args, peer)
            d.addErrback(self._handler_failed, event, registered.handler)
            pending.append(d)
        if not pending:
            return defer.succeed(None)
        return defer.gatherResults(pending).addCallback(lambda _: None)

    def _handler_failed(self, failure: Failure, event: str, handler: Handler) -> None:
        """One line per failure; the traceback of a handler's first, at debug."""
        self.failures += 1
        log.warn(
            "handler {handler!r} for event {event} failed: {error}; gossip goes on",
            handler=handler,
            event=event,
            error=f"{type(failure.value).__name__}: {failure.getErrorMessage()}",
        )
        key = id(handler)
        if key in self._traced:
            return
        if len(self._traced) < MAX_TRACED:
            self._traced.add(key)
        log.failure(
            "traceback of handler {handler!r} for event {event} (its first failure)",
            failure,
            level=LogLevel.debug,
            handler=handler,
            event=event,
        )


def registrar(
    dispatcher: EventDispatcher, prefix: str, valid: tuple[str, ...]
) -> Callable[..., Any]:
    """Build ``on``/``before``/``after``: usable directly or as a decorator."""

    def register(event: str, handler: Handler | None = None) -> Any:
        if event not in valid:
            raise ValueError(
                f"unknown event {event!r}; valid events are: {', '.join(valid)}"
            )
        name = f"{prefix}{event}"
        if handler is None:

            def decorator(fn: H) -> H:
                dispatcher.register(name, fn)
                return fn

            return decorator
        return dispatcher.register(name, handler)

    return register

"""The event dispatcher behind ``on``, ``before`` and ``after``.

A handler may take fewer arguments than an event offers: a parameter named
``peer`` gets the event's peer, the other positional parameters the event's
arguments in order, as many as it accepts (a parameter with a default keeps
it once the event has no argument left for it); ``**kwargs`` gets ``peer=``.
For the events whose argument *is* the peer (membership, gossip, sync), a
``peer`` parameter takes that argument: ``def h(peer, extra="x")`` keeps
``extra``. Handlers may return Deferreds, which the dispatcher waits for at
most ``timeout`` seconds: a late one is logged and cancelled. A handler that
raises or fails is logged and isolated.
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
#: seconds a handler's Deferred may take (Python handlers and commands alike)
DEFAULT_HANDLER_TIMEOUT = 60.0
#: events whose one argument is the peer itself (also given as ``peer``)
PEER_EVENTS = (
    *MEMBERSHIP_EVENTS,
    *(f"before_{e}" for e in BEFORE_EVENTS),
    *(f"after_{e}" for e in AFTER_EVENTS),
)

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
    name: str = ""  # for the log: what the handler is
    bounded: bool = True  # waited for at most the dispatcher's timeout

    @classmethod
    def adapt(
        cls, handler: Handler, name: str = "", bounded: bool = True
    ) -> _Registered:
        name = name or handler_name(handler)
        try:
            params = list(inspect.signature(handler).parameters.values())
        except (TypeError, ValueError):  # builtins without a signature
            return cls(handler, (), True, False, name, bounded)
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
            handler,
            slots,
            inspect.Parameter.VAR_POSITIONAL in kinds,
            peer_keyword,
            name,
            bounded,
        )

    def call(self, args: tuple[Any, ...], peer: Any, peer_first: bool = False) -> Any:
        """Fill the positional parameters in order (``peer`` where it is
        named so, the event's arguments elsewhere), then the rest.

        ``peer_first``: the event's first argument is the peer itself, so a
        ``peer`` parameter reached before it was used takes it up.
        """
        out: list[Any] = []
        rest = list(args)
        for is_peer in self.slots:
            if is_peer:
                out.append(peer)
                if peer_first and len(rest) == len(args) and rest:
                    rest.pop(0)  # given already: not again to the next one
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


def handler_name(handler: Handler) -> str:
    """A readable name for the log: ``module.Class.method``, ``module.<lambda>``."""
    target = getattr(handler, "__func__", handler)
    if not hasattr(target, "__qualname__"):  # a callable object
        target = type(handler)
    qualname = str(target.__qualname__)
    module = getattr(target, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


class EventDispatcher:
    """Holds handlers per event and fires them, isolating their failures.

    With a ``timeout`` (seconds) and a ``clock`` (a zero-argument callable
    returning an IReactorTime, called at each event), a handler's Deferred
    still unfired after ``timeout`` is logged with the handler's name and
    the event, and cancelled: an event's Deferred fires by then at the latest.
    """

    def __init__(
        self,
        events: tuple[str, ...] = ALL_EVENTS,
        *,
        timeout: float | None = None,
        clock: Callable[[], Any] | None = None,
    ) -> None:
        self._events = events
        self._handlers: dict[str, list[_Registered]] = {e: [] for e in events}
        self.timeout = timeout
        self._clock = clock
        self.failures = 0
        #: handlers whose traceback was logged (the first failure of each)
        self._traced: set[int] = set()
        #: handlers cancelled because they ran over the timeout
        self.timeouts = 0
        #: handler calls made, every event and handler counted
        self.runs = 0

    def register(
        self,
        event: str,
        handler: Handler,
        *,
        name: str = "",
        bounded: bool = True,
    ) -> Handler:
        """Call ``handler`` on ``event``; ``name`` is for the log.

        ``bounded=False``: the handler bounds its own work (command handlers
        do, with their own timeout), so it is not cancelled.
        """
        if event not in self._handlers:
            raise ValueError(
                f"unknown event {event!r}; valid events are: {', '.join(self._events)}"
            )
        if not callable(handler):
            raise TypeError(f"handler for {event!r} must be callable, got {handler!r}")
        self._handlers[event].append(_Registered.adapt(handler, name, bounded))
        return handler

    @property
    def known_events(self) -> tuple[str, ...]:
        """Every event name this dispatcher fires, as ``register`` takes them."""
        return self._events

    def has_handlers(self, event: str) -> bool:
        return bool(self._handlers.get(event))

    def fire(self, event: str, *args: Any, peer: Any = None) -> defer.Deferred[None]:
        """Call every handler of ``event``; the Deferred fires when all are done.

        It never fails: a handler's exception or failed Deferred is logged; a
        handler late by the timeout is logged and cancelled.
        """
        pending = []
        peer_first = event in PEER_EVENTS
        for registered in self._handlers[event]:
            self.runs += 1
            d = defer.maybeDeferred(registered.call, args, peer, peer_first)
            if not d.called and registered.bounded:
                self._bound(d, event, registered)
            d.addErrback(self._handler_failed, event, registered.handler)
            pending.append(d)
        if not pending:
            return defer.succeed(None)
        return defer.gatherResults(pending).addCallback(lambda _: None)

    def _bound(
        self, d: defer.Deferred[Any], event: str, registered: _Registered
    ) -> None:
        if self.timeout is None or self._clock is None:
            return
        timeout = self.timeout

        def late(result: Any, _: float) -> None:
            self.timeouts += 1
            log.warn(
                "handler {handler} for event {event} did not finish within"
                " {timeout:g} s; cancelled (--handler-timeout, handler_timeout=)",
                handler=registered.name,
                event=event,
                timeout=timeout,
            )
            # whatever cancelling gave (CancelledError, as a rule): said above

        d.addTimeout(timeout, self._clock(), onTimeoutCancel=late)

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

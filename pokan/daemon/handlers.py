"""Handler objects: registering one on a dispatcher, and handler plugins."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from pokan.daemon.interfaces import HANDLER_METHODS, IEventHandlerFactory
from pokan.net.events import EventDispatcher

log = Logger()

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def handler_methods(handler: object) -> dict[str, Callable[..., Any]]:
    """The handler methods ``handler`` defines, by event name."""
    if isinstance(handler, type):
        raise TypeError(f"{handler.__name__} is a class; register an instance of it")
    found = {}
    for name in HANDLER_METHODS:
        method = getattr(handler, name, None)
        if method is not None:
            if not callable(method):
                raise TypeError(f"{handler!r}.{name} is not callable")
            found[name] = method
    return found


def register_handler(
    dispatcher: EventDispatcher, handler: object, name: str = ""
) -> list[str]:
    """Register every handler method of ``handler``; return the event names.

    ``name`` names it in the log: ``NAME (Class.shutdown)`` for its shutdown.

    Methods for events the dispatcher does not fire (membership events on a
    server without them) are skipped, and logged at debug level.
    """
    methods = handler_methods(handler)
    if not methods:
        raise TypeError(
            f"{handler!r} defines none of the handler methods"
            f" ({', '.join(HANDLER_METHODS)})"
        )
    known = dispatcher.known_events
    registered = []
    for event, method in methods.items():
        if event not in known:
            log.debug(
                "handler {handler!r}: this server fires no {event} event",
                handler=handler,
                event=event,
            )
            continue
        label = f"{name} ({type(handler).__name__}.{event})" if name else ""
        dispatcher.register(event, method, name=label)
        registered.append(event)
    return registered


@implementer(IPlugin, IEventHandlerFactory)
@attrs.frozen
class HandlerPlugin:
    """A handler plugin: put one in a module under a ``pokan/plugins/`` directory.

    ``factory(server, argument)`` makes the handler object; ``argument`` is
    what follows ``=`` in ``--handler NAME=ARGUMENT`` (None without ``=``).
    """

    name: str
    description: str
    factory: Callable[[Any, str | None], object]

    def __attrs_post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"handler plugin name {self.name!r}: use letters, digits, '_', '-'"
                " and '.' (not starting with '-' or '.')"
            )

    def build(self, server: Any, argument: str | None) -> object:
        return self.factory(server, argument)


__all__ = ["HandlerPlugin", "handler_methods", "register_handler"]

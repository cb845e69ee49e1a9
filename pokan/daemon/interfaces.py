"""Interfaces for extending pokan: handler objects and handler plugins."""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface

#: every method name a handler object may define, in the order they are listed
#: in the docs; :meth:`pokan.Server.add_handler` registers those the server's
#: dispatcher knows (the membership events only once the server fires them).
HANDLER_METHODS = (
    "new_key",
    "key_changed",
    "key_removed",
    "start",
    "shutdown",
    "before_gossip",
    "after_gossip",
    "before_sync",
    "after_sync",
    "peer_joined",
    "peer_left",
    "peer_dead",
    "peer_alive",
)


class IEventHandler(Interface):
    """An object handling pokan events; every method is optional.

    Define only the methods you need. Each is called as the matching
    ``on``/``before``/``after`` handler would be: with as many of the event's
    positional arguments as it accepts, and ``peer=`` when it has a ``peer``
    parameter. A method may return a Deferred; one that raises or fails is
    logged and isolated.
    """

    def new_key(key: str, value: str | bytes, peer: Any) -> Any:
        """A key appeared on a node (``peer``: the owner)."""

    def key_changed(key: str, value: str | bytes, peer: Any) -> Any:
        """A key of a node got a new value."""

    def key_removed(key: str, value: str | bytes, peer: Any) -> Any:
        """A key of a node was deleted; ``value`` is the value it had."""

    def start() -> Any:
        """This node listens and gossips."""

    def shutdown() -> Any:
        """This node is stopping; it waits for a returned Deferred."""

    def before_gossip(peer: Any) -> Any:
        """A gossip round is about to exchange digests with ``peer``."""

    def after_gossip(peer: Any) -> Any:
        """A gossip exchange with ``peer`` was merged."""

    def before_sync(seed: str) -> Any:
        """A full TCP sync with the seed at ``host:port`` begins."""

    def after_sync(peer: Any) -> Any:
        """A full sync ended; ``peer`` is the seed (None if unknown)."""

    def peer_joined(peer: Any) -> Any:
        """A node was seen for the first time (membership events)."""

    def peer_left(peer: Any) -> Any:
        """A node said goodbye."""

    def peer_dead(peer: Any) -> Any:
        """The failure detector declared a node dead."""

    def peer_alive(peer: Any) -> Any:
        """A node declared dead is heard from again."""


class IEventHandlerFactory(Interface):
    """A handler plugin: makes a handler object for a server.

    Plugin modules in a ``pokan/plugins/`` directory expose providers of this
    interface (and of ``twisted.plugin.IPlugin``); ``twistd pokan --handler
    NAME[=ARG]`` finds one by :attr:`name`. :class:`pokan.daemon.handlers.HandlerPlugin`
    is a ready-made provider.
    """

    name = Attribute("The name given to --handler: letters, digits, '_', '-', '.'")
    description = Attribute("One line saying what the handler does")

    def build(server: Any, argument: str | None) -> Any:
        """Return a handler object for ``server``; ``argument`` follows ``=``.

        Raise ValueError with a clear message on a bad argument.
        """


__all__ = ["HANDLER_METHODS", "IEventHandler", "IEventHandlerFactory"]

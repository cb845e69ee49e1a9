"""pokan: a gossip daemon and library on Twisted.

Every node owns a few key/value pairs; gossip spreads every node's pairs to
every node. ``from pokan import Server`` is the way in; handler authors
import ``HandlerPlugin``, ``IEventHandler`` and ``CommandHandler`` from here
too (their modules live in :mod:`pokan.daemon`).

The package is laid out by layer: :mod:`pokan.core` (sans-IO decisions),
:mod:`pokan.wire` (bytes), :mod:`pokan.net` (the Twisted edges),
:mod:`pokan.store`, :mod:`pokan.daemon` (``twistd pokan``),
:mod:`pokan.control` (operating a node) and :mod:`pokan.sim` (the simulator).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pokan.errors import ConfigurationError, DecodeError, PokanError, StartupError
from pokan.net.events import AFTER_EVENTS, BEFORE_EVENTS, ON_EVENTS
from pokan.net.server import Server
from pokan.peer import Peer
from pokan.store import IStore, MemoryStore

if TYPE_CHECKING:
    from pokan.daemon.commands import CommandHandler, CommandSpec
    from pokan.daemon.handlers import HandlerPlugin
    from pokan.daemon.interfaces import IEventHandler, IEventHandlerFactory

__version__ = "0.1.0"

#: names of the handler authors' API, imported on first use: an embedded
#: server does not load the plugin machinery (twisted.plugin, zipfile...)
_HANDLER_API = {
    "CommandHandler": "pokan.daemon.commands",
    "CommandSpec": "pokan.daemon.commands",
    "HandlerPlugin": "pokan.daemon.handlers",
    "IEventHandler": "pokan.daemon.interfaces",
    "IEventHandlerFactory": "pokan.daemon.interfaces",
}


def __getattr__(name: str) -> Any:
    module = _HANDLER_API.get(name)
    if module is None:
        raise AttributeError(f"module 'pokan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AFTER_EVENTS",
    "BEFORE_EVENTS",
    "ON_EVENTS",
    "CommandHandler",
    "CommandSpec",
    "ConfigurationError",
    "DecodeError",
    "HandlerPlugin",
    "IEventHandler",
    "IEventHandlerFactory",
    "IStore",
    "MemoryStore",
    "Peer",
    "PokanError",
    "Server",
    "StartupError",
]

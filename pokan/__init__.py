"""pokan: a gossip daemon and library on Twisted.

Every node owns a few key/value pairs; gossip spreads every node's pairs to
every node. ``from pokan import Server`` is the way in.
"""

from pokan.errors import ConfigurationError, DecodeError, PokanError, StartupError
from pokan.events import AFTER_EVENTS, BEFORE_EVENTS, ON_EVENTS
from pokan.peer import Peer
from pokan.server import Server
from pokan.store import IStore, MemoryStore

__version__ = "0.1.0"

__all__ = [
    "AFTER_EVENTS",
    "BEFORE_EVENTS",
    "ON_EVENTS",
    "ConfigurationError",
    "DecodeError",
    "IStore",
    "MemoryStore",
    "Peer",
    "PokanError",
    "Server",
    "StartupError",
]

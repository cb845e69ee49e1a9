"""Choosing the epoll reactor, for use_epoll() and twistd --epoll."""

from __future__ import annotations

import importlib
import select
import sys
from typing import Any

from pokan.errors import ConfigurationError


def epoll_available() -> bool:
    return hasattr(select, "epoll")


def installed_reactor() -> Any:
    """The global reactor if one is installed already, else None."""
    return sys.modules.get("twisted.internet.reactor")


def global_reactor() -> Any:
    """The global reactor, looked up (and so installed) only when called.

    The one place library code falls back on it when no reactor was passed
    in: by then ``use_epoll()``, ``twistd --reactor`` or the application has
    chosen which one is installed.
    """
    return importlib.import_module("twisted.internet.reactor")


def is_epoll(reactor: Any) -> bool:
    if not epoll_available():
        return False
    from twisted.internet.epollreactor import EPollReactor

    return isinstance(reactor, EPollReactor)


def _describe(reactor: Any) -> str:
    return f"{type(reactor).__module__}.{type(reactor).__name__}"


def check_reactor_is_epoll(reactor: Any) -> None:
    if not is_epoll(reactor):
        raise ConfigurationError(
            f"epoll was asked for, but another reactor ({_describe(reactor)}) is"
            " already installed. Ask for epoll before anything imports"
            " twisted.internet.reactor, or run twistd with --reactor=epoll."
        )


def check_epoll_possible(reactor: Any = None) -> None:
    """Raise ConfigurationError unless epoll can be (or already is) used."""
    if not epoll_available():
        raise ConfigurationError(
            f"epoll is not available on this platform ({sys.platform}); it is"
            " Linux only. Leave use_epoll()/--epoll out to use the default reactor."
        )
    reactor = reactor if reactor is not None else installed_reactor()
    if reactor is not None:
        check_reactor_is_epoll(reactor)


def install_epoll() -> None:
    """Install the epoll reactor unless it is installed already."""
    check_epoll_possible()
    if installed_reactor() is None:
        from twisted.internet import epollreactor

        epollreactor.install()

"""``Server.start()``: run the reactor around one node until ``stop()``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IReactorCore
from twisted.python.failure import Failure

from pokan.errors import ConfigurationError
from pokan.net.stderrlog import log_to_stderr
from pokan.net.stopping import SecondSignal, exit_with_signal


class BlockingRun:
    """The reactor run of :meth:`pokan.Server.start`, and its end.

    ``active`` while the reactor runs; a startup failure is raised once the
    reactor stopped, and a second signal while stopping ends the process.
    """

    def __init__(self) -> None:
        self.active = False
        self._stop_asked = False  # by stop() after start()
        self._failure: Failure | None = None

    def check_not_started(self, running: bool, node_id: str) -> None:
        """ConfigurationError if the node runs (by :meth:`run`, or a service)."""
        if running or self.active:
            raise ConfigurationError(
                f"node {node_id} is already started (by start(), or by the"
                " application or MultiService it belongs to): stop it with"
                " stopService() (or stop(), after start()) before starting it"
                " again"
            )

    def run(
        self,
        reactor: Any,
        start_service: Callable[[], defer.Deferred[None]],
        stop_service: Callable[[], object],
    ) -> None:
        """Start the node once the reactor runs; run it until stopped; blocks."""
        if not IReactorCore.providedBy(reactor):
            raise ConfigurationError("start() needs a real reactor; use startService()")
        if reactor.running:
            raise ConfigurationError(
                "start() runs the reactor, and the reactor is running already:"
                " call startService() instead (or add the node to your"
                " application); it returns a Deferred that fires once the node"
                " listens (see docs/api.md, Running)"
            )
        log_to_stderr()  # unless the program logs itself
        self.active = True
        self._stop_asked = False
        self._failure = None

        def launch() -> None:
            d = start_service()
            d.addErrback(startup_failed)

        def startup_failed(failure: Failure) -> None:
            self._failure = failure  # raised below: not logged
            self.stop_reactor(reactor)  # the one start() runs: never another

        # a second Ctrl-C (or SIGTERM) while the node stops ends the process
        second = SecondSignal(reactor)
        reactor.callWhenRunning(launch)
        reactor.addSystemEventTrigger("before", "shutdown", second.arm)
        reactor.addSystemEventTrigger("before", "shutdown", stop_service)
        try:
            reactor.run()
        except error.ReactorNotRestartable:
            raise ConfigurationError(
                "start() runs Twisted's reactor, which runs once per process, and"
                " it has run already: start the node again with startService()"
                " inside a running reactor (see docs/embedding.md)"
            ) from None
        finally:
            self.active = False
            second.disarm()
        if second.received is not None:
            exit_with_signal(second.received)
        if self._failure is not None:
            self._failure.raiseException()

    def stop_reactor(self, reactor: Any) -> None:
        """Stop the reactor :meth:`run` runs, once."""
        if self._stop_asked:
            return
        self._stop_asked = True
        # stopping already: a second SIGTERM, a handler's stop()
        with contextlib.suppress(error.ReactorNotRunning):
            reactor.stop()

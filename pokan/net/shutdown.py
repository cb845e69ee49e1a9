"""A node's stop: its goodbyes, then steps that run whatever one raised."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from pokan import wire
from pokan.core.address import format_host_port
from pokan.core.node import Address, Outgoing

log = Logger()

#: what a step is called in the log line of its failure, and the step
Step = tuple[str, Callable[[], Any]]


def say_goodbye(
    goodbyes: Callable[[], Iterable[Outgoing]],
    send: Callable[[Address, wire.Message], None],
) -> int:
    """Send every goodbye that can be sent (each failure logged); how many were."""
    try:
        outgoing = goodbyes()
    except Exception:
        log.failure("could not say goodbye to any peer")
        return 0
    said = 0
    for out in outgoing:
        try:
            send(out.address, out.message)
        except Exception as e:
            log.warn(
                "could not say goodbye to {peer}: {error}",
                peer=format_host_port(*out.address),
                error=f"{type(e).__name__}: {e}",
            )
            continue
        said += 1
    return said


def each_now(steps: Iterable[Step]) -> None:
    """Run each step now; log (never raise) what one raises."""
    for what, step in steps:
        try:
            step()
        except Exception:
            log.failure("while stopping {step}", None, LogLevel.critical, step=what)


def each_after(d: defer.Deferred[Any], steps: Iterable[Step]) -> defer.Deferred[None]:
    """After ``d``, each step in turn, whatever an earlier one raised (logged).

    The Deferred fires once the last is done; it never fails.
    """
    for what, step in steps:
        d.addCallback(_then, step)
        d.addErrback(_log_failure, what)
    return d.addCallback(lambda _: None)


def _then(_: object, step: Callable[[], Any]) -> Any:
    return step()


def _log_failure(failure: Failure, what: str) -> None:
    log.failure("while stopping: {what} failed", failure, what=what)

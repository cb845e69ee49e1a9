"""A handler that logs events: the ``log`` handler plugin shipped with pokan."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from pokan.daemon.interfaces import HANDLER_METHODS

log = Logger()


class LoggingHandler:
    """Logs each event it handles at info level; ``events`` limits which."""

    def __init__(self, events: tuple[str, ...] = HANDLER_METHODS) -> None:
        unknown = [e for e in events if e not in HANDLER_METHODS]
        if unknown:
            raise ValueError(
                f"unknown events {', '.join(unknown)}; choose from"
                f" {', '.join(HANDLER_METHODS)}"
            )
        for event in events:
            setattr(self, event, self._logger(event))

    @classmethod
    def from_argument(cls, server: Any, argument: str | None) -> LoggingHandler:
        if not argument:
            return cls()
        return cls(tuple(e.strip() for e in argument.split(",") if e.strip()))

    @staticmethod
    def _logger(event: str) -> Any:
        def handle(*args: Any, peer: Any = None) -> None:
            about = ": " + ", ".join(_describe(a) for a in args) if args else ""
            shown = peer is None or any(a == peer for a in args)
            owner = "" if shown else f" (node {_describe(peer)})"
            log.info(
                "event {event}{about}{owner}", event=event, about=about, owner=owner
            )

        return handle


def _describe(value: Any) -> str:
    node_id = getattr(value, "id", None)
    if isinstance(node_id, str):
        return node_id
    return repr(value)

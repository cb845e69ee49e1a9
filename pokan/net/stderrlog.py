"""Logging for programs that run pokan with the blocking ``Server.start()``."""

from __future__ import annotations

import sys
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    LogBeginner,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    globalLogBeginner,
    globalLogPublisher,
    textFileLogObserver,
)


def log_to_stderr(
    beginner: LogBeginner = globalLogBeginner,
    publisher: LogPublisher = globalLogPublisher,
    stream: IO[Any] | None = None,
    level: LogLevel = LogLevel.info,
) -> bool:
    """Begin Twisted logging to stderr, ``level`` and up, as readable lines.

    Does nothing if the program logs already: it began logging (twistd,
    ``globalLogBeginner.beginLoggingTo``, ``twisted.python.log.startLogging``)
    or added an observer of its own. Returns whether it began logging.
    """
    if program_logs(beginner, publisher):
        return False
    observer = FilteringLogObserver(
        textFileLogObserver(stream if stream is not None else sys.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=level)],
    )
    beginner.beginLoggingTo([observer], redirectStandardIO=False)
    return True


def program_logs(beginner: LogBeginner, publisher: LogPublisher) -> bool:
    """True if logging has begun, or an observer other than Twisted's buffer
    of the events before it begins watches the publisher."""
    # Twisted has no public "has begun": its buffer of the events before
    # beginLoggingTo is dropped (set to None) when logging begins.
    temporary = getattr(beginner, "_temporaryObserver", None)
    if temporary is None:
        return True
    return any(o is not temporary for o in getattr(publisher, "_observers", ()))

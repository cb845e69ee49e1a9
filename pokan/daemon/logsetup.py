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


#: what ``--log-level`` takes
LOG_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}


def check_log_level(name: object, option: str = "--log-level") -> LogLevel:
    """A level name (debug, info, warn, error) as a LogLevel."""
    level = LOG_LEVELS.get(str(name).lower()) if isinstance(name, str) else None
    if level is None:
        from pokan.errors import ConfigurationError

        raise ConfigurationError(
            f"{option} must be one of {', '.join(LOG_LEVELS)}, got {name!r}"
        )
    return level


def level_filter(observer: Any, level: LogLevel) -> FilteringLogObserver:
    """``observer``, seeing only events of ``level`` and up."""
    return FilteringLogObserver(
        observer, [LogLevelFilterPredicate(defaultLogLevel=level)]
    )


def filter_twistd_log(application: Any, twistd_config: Any, level: LogLevel) -> bool:
    """Make twistd log ``level`` and up only, to where it would log anyway.

    twistd takes an application's ILogObserver component as its observer
    (unless given ``--logger``): this sets one, the observer twistd would
    make (its --logfile, --syslog, stdout with -n) behind a level filter.
    Returns whether it could (an application, twistd's options, no --logger).
    """
    from twisted.logger import ILogObserver

    set_component = getattr(application, "setComponent", None)
    if set_component is None or twistd_config is None:
        return False
    if twistd_config.get("logger"):
        return False
    from twisted.scripts._twistd_unix import UnixAppLogger

    inner = UnixAppLogger(twistd_config)._getLogObserver()
    if not ILogObserver.providedBy(inner):
        from twisted.logger import LegacyLogObserverWrapper

        inner = LegacyLogObserverWrapper(inner)
    set_component(ILogObserver, level_filter(inner, level))
    return True

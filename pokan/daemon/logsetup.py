"""twistd's logging: ``--log-level``.

``log_to_stderr`` (the blocking ``Server.start()``'s) lives in
:mod:`pokan.net.stderrlog`; it is still importable from here.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate

from pokan.net.stderrlog import log_to_stderr, program_logs

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


def filter_twistd_log(
    application: Any, twistd_config: Any, level: LogLevel
) -> str | None:
    """Make twistd log ``level`` and up only, to where it would log anyway.

    twistd takes an application's ILogObserver component as its observer
    (unless given ``--logger``): this sets one, the observer twistd would
    make (its --logfile, --syslog, stdout with -n) behind a level filter.
    Returns None once set, or why it could not be.
    """
    from twisted.logger import ILogObserver

    set_component = getattr(application, "setComponent", None)
    if set_component is None or twistd_config is None:
        return "there is no twistd application to log for"
    if twistd_config.get("logger"):
        return "twistd was given --logger: filter the levels in that observer"
    from twisted.scripts._twistd_unix import UnixAppLogger

    # twistd has no public way to make its observer; where this Twisted's
    # private one is gone, twistd logs as it would without --log-level.
    make_observer = getattr(UnixAppLogger(twistd_config), "_getLogObserver", None)
    if make_observer is None:
        return "this Twisted's twistd cannot be asked for its log observer"
    inner = make_observer()
    if not ILogObserver.providedBy(inner):
        from twisted.logger import LegacyLogObserverWrapper

        inner = LegacyLogObserverWrapper(inner)
    set_component(ILogObserver, level_filter(inner, level))
    return None


__all__ = [
    "LOG_LEVELS",
    "check_log_level",
    "filter_twistd_log",
    "level_filter",
    "log_to_stderr",
    "program_logs",
]

"""The handler options of ``twistd pokan``: --handler, --on-event and their limits.

A mixin for :class:`pokan.daemon.tap.Options`, and :func:`install_handlers`, which
puts the handlers on the server :func:`pokan.daemon.tap.makeService` makes.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.python import usage

from pokan.core.durations import check_seconds
from pokan.daemon import commands
from pokan.daemon.commands import CommandHandler, CommandSpec
from pokan.daemon.discovery import Discovery, discover, resolve
from pokan.errors import ConfigurationError
from pokan.net.reactors import global_reactor


class HandlerOptions(usage.Options):
    optParameters = [
        [
            "handler-timeout",
            None,
            str(commands.DEFAULT_TIMEOUT),
            "Seconds a handler may take: an --on-event command is killed after"
            " it, a --handler plugin's Deferred cancelled (and logged).",
        ],
        [
            "handler-queue",
            None,
            str(commands.DEFAULT_QUEUE),
            "Events an --on-event command may have waiting; beyond, the oldest"
            " waiting one is dropped (logged).",
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["handler"] = []
        self["on-event"] = []
        self._discovered: Discovery | None = None

    def _discovery(self) -> Discovery:
        """Scan for plugins once, however many --handler options name one."""
        if self._discovered is None:
            self._discovered = discover()
        return self._discovered

    def opt_handler(self, value: str) -> None:
        """NAME[=ARG] of a handler plugin, or module:attribute[=ARG]; repeatable."""
        try:
            self["handler"].append(resolve(value, self._discovery))
        except ConfigurationError as e:
            raise usage.UsageError(str(e)) from None

    def opt_list_handlers(self) -> None:
        """Print the installed handler plugins, one a line, and exit."""
        found = self._discovery()
        for line in found.listing():
            print(line)
        for broken in found.broken:
            print(f"failed to load: {broken.where}: {broken.error}", file=sys.stderr)
        sys.exit(0)

    def opt_on_event(self, value: str) -> None:
        """EVENTS[:KEY_PATTERN]=COMMAND, run through /bin/sh; repeatable."""
        try:
            spec = CommandSpec.parse(value)
        except ConfigurationError as e:
            raise usage.UsageError(str(e)) from None
        why = commands.cannot_run(spec.command)
        if why is not None:
            raise usage.UsageError(
                f"--on-event {value!r}: {why} (commands run through /bin/sh, from"
                " the node's working directory)"
            )
        self["on-event"].append(spec)

    def check_handler_options(self) -> None:
        try:
            self["handler-timeout"] = check_seconds(
                self["handler-timeout"], "--handler-timeout"
            )
        except ConfigurationError as e:
            raise usage.UsageError(str(e)) from None
        try:
            size = int(self["handler-queue"])
        except ValueError:
            size = 0
        if size < 1:
            raise usage.UsageError(
                "--handler-queue must be a whole number of at least 1,"
                f" got {self['handler-queue']!r}"
            )
        self["handler-queue"] = size


def install_handlers(server: Any, options: Any, reactor: Any = None) -> None:
    """Register the --handler objects and --on-event commands on ``server``.

    A handler whose factory rejects its argument raises ConfigurationError
    (``--handler NAME: ...``), which makeService tells as an option error.
    """
    for spec in options["handler"]:
        try:
            label = spec.label
            if spec.argument is not None:
                label += f"={spec.argument}"
            server.add_handler(spec.make(server), name=label)
        except TypeError as e:
            raise ConfigurationError(f"--handler {spec.label}: {e}") from None
    if options["on-event"] and reactor is None:
        reactor = global_reactor()
    for command in options["on-event"]:
        CommandHandler(
            command,
            reactor,
            timeout=options["handler-timeout"],
            max_queue=options["handler-queue"],
        ).attach(server)
        server._list_handler(f"--on-event {command}")


__all__ = ["HandlerOptions", "install_handlers"]

"""Command handlers: run a program on events, as Serf's event handlers do.

``--on-event key_changed,key_removed=./reload.sh`` runs ``./reload.sh``
through ``/bin/sh -c`` on each such event, with the event in ``POKAN_*``
environment variables and the value on stdin. Runs of one handler are
serialized in event order; each is bounded by a timeout. Handlers never
delay gossip: events wait in a bounded queue, and when it is full the oldest
waiting event is dropped (logged, and counted in ``POKAN_DROPPED``).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import signal
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer, error, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pokan.errors import ConfigurationError
from pokan.net.events import ALL_EVENTS, DEFAULT_HANDLER_TIMEOUT
from pokan.net.stopping import at_forced_end

log = Logger()

KEY_EVENTS = ("new_key", "key_changed", "key_removed")
DEFAULT_TIMEOUT = DEFAULT_HANDLER_TIMEOUT
DEFAULT_QUEUE = 100
#: seconds between SIGTERM and SIGKILL for a command that timed out
KILL_GRACE = 2.0
#: seconds to wait for the output pipes to close once the command exited
PIPE_GRACE = 1.0
#: lines of stdout and of stderr logged per run; the rest are counted
MAX_LOGGED_LINES = 100
SHELL = "/bin/sh"


#: first words the shell runs itself (builtins, keywords): never looked up
SHELL_WORDS = frozenset(
    [
        "!",
        ".",
        ":",
        "[",
        "alias",
        "break",
        "case",
        "cd",
        "command",
        "continue",
        "echo",
        "eval",
        "exec",
        "exit",
        "export",
        "false",
        "for",
        "if",
        "kill",
        "printf",
        "pwd",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "test",
        "times",
        "trap",
        "true",
        "type",
        "ulimit",
        "umask",
        "unset",
        "wait",
        "while",
        "until",
    ]
)
#: characters that make the first word the shell's business (expansions...)
SHELL_SYNTAX = set("$`(){}<>|;&*?[]~'\"\\")


def cannot_run(command: str) -> str | None:
    """Why the program a command starts with cannot run, or None.

    Only a plain first word is checked: a path must be an executable file, a
    bare name must be in PATH. Builtins, assignments and anything with shell
    syntax are left to the shell.
    """
    first = command.split(None, 1)[0] if command.split() else ""
    if not first or first in SHELL_WORDS or "=" in first:
        return None
    if any(c in SHELL_SYNTAX for c in first):
        return None
    if "/" in first:
        if not os.path.exists(first):
            return f"{first} not found"
        if os.path.isdir(first) or not os.access(first, os.X_OK):
            return f"{first} is not executable"
        return None
    if shutil.which(first) is None:
        return f"{first!r} not found in PATH (nor a shell builtin)"
    return None


@attrs.frozen
class CommandSpec:
    """A parsed ``EVENTS[:KEY_PATTERN]=COMMAND``."""

    events: tuple[str, ...]
    command: str
    key_pattern: str | None = None

    @classmethod
    def parse(cls, text: str, known: tuple[str, ...] = ALL_EVENTS) -> CommandSpec:
        """Parse an ``--on-event`` value; ConfigurationError says what is wrong."""
        left, sep, command = text.partition("=")
        command = command.strip()
        if not sep or not command or not left.strip():
            raise ConfigurationError(
                f"--on-event expects EVENTS[:KEY_PATTERN]=COMMAND, got {text!r}"
                " (e.g. key_changed,key_removed=./reload.sh)"
            )
        names, colon, pattern = left.partition(":")
        events = tuple(e.strip() for e in names.split(","))
        unknown = [e for e in events if e not in known]
        if unknown or not all(events):
            raise ConfigurationError(
                f"--on-event {text!r}: unknown event"
                f" {', '.join(repr(e) for e in unknown) or repr('')};"
                f" events are: {', '.join(known)}"
            )
        if colon:
            pattern = pattern.strip()
            if not pattern:
                raise ConfigurationError(f"--on-event {text!r}: empty key pattern")
            others = [e for e in events if e not in KEY_EVENTS]
            if others:
                raise ConfigurationError(
                    f"--on-event {text!r}: a key pattern applies only to key events"
                    f" ({', '.join(KEY_EVENTS)}), not to {', '.join(others)}"
                )
        return cls(tuple(dict.fromkeys(events)), command, pattern if colon else None)

    def wants(self, event: str, key: Any) -> bool:
        if self.key_pattern is None or event not in KEY_EVENTS:
            return True
        return isinstance(key, str) and fnmatch.fnmatchcase(key, self.key_pattern)

    def __str__(self) -> str:
        pattern = f":{self.key_pattern}" if self.key_pattern is not None else ""
        return f"{','.join(self.events)}{pattern}={self.command}"


@attrs.frozen
class Invocation:
    """One event waiting for (or given to) a command: environment and stdin."""

    event: str
    seq: int
    env: dict[str, str]
    stdin: bytes


def event_environment(
    event: str, args: tuple[Any, ...], peer: Any, node_id: str
) -> tuple[dict[str, str], bytes]:
    """The ``POKAN_*`` variables and the stdin bytes for one event."""
    env = {"POKAN_EVENT": event, "POKAN_NODE": node_id}
    stdin = b""
    if event in KEY_EVENTS:
        key = args[0] if args else ""
        value = args[1] if len(args) > 1 else None
        env["POKAN_KEY"] = str(key)
        if isinstance(value, bytes):
            env["POKAN_VALUE_TYPE"] = "bytes"
            stdin = value
        elif isinstance(value, str):
            env["POKAN_VALUE_TYPE"] = "str"
            stdin = value.encode("utf-8")
        else:
            env["POKAN_VALUE_TYPE"] = "none"
    elif peer is None and args:
        peer = args[0]
    if isinstance(peer, str):  # before_sync: the seed as host:port
        env["POKAN_PEER"] = peer
    elif peer is not None:
        env["POKAN_PEER"] = str(peer.id)
        env["POKAN_PEER_ADDRESS"] = str(peer.address)
        env["POKAN_PEER_TCP_PORT"] = str(peer.tcp_port)
        env["POKAN_PEER_UDP_PORT"] = str(peer.udp_port)
        env["POKAN_PEER_STATUS"] = str(peer.status)
        env["POKAN_PEER_ROLE"] = str(peer.role)
    return env, stdin


class CommandHandler:
    """Runs one command on the events of one ``--on-event``, one run at a time.

    ``reactor`` provides ``spawnProcess``, ``callLater`` and ``seconds``.
    Call :meth:`attach` to register it on a Server.
    """

    def __init__(
        self,
        spec: CommandSpec,
        reactor: Any,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_queue: int = DEFAULT_QUEUE,
        kill_grace: float = KILL_GRACE,
        pipe_grace: float = PIPE_GRACE,
        setsid: str | bool | None = True,
        environ: Mapping[str, str] | None = None,
        node_id: Callable[[], str] = lambda: "",
    ) -> None:
        if not timeout > 0:
            raise ConfigurationError(f"handler timeout must be positive, got {timeout}")
        if max_queue < 1:
            raise ConfigurationError(
                f"handler queue must be at least 1, got {max_queue}"
            )
        self.spec = spec
        self._reactor = reactor
        self.timeout = float(timeout)
        self.max_queue = max_queue
        self.kill_grace = kill_grace
        self.pipe_grace = pipe_grace
        self._setsid = shutil.which("setsid") if setsid is True else setsid or None
        self._environ = dict(os.environ if environ is None else environ)
        self._node_id = node_id
        self._queue: deque[Invocation] = deque()
        self._running: _Run | None = None
        self._idle: list[defer.Deferred[None]] = []
        self._seq = 0
        self._dropped_since_run = 0
        self._overflowing = False
        self._stopping = False
        #: counters: runs started, non-zero exits, timeouts, events dropped
        self.runs = 0
        self.failed = 0
        self.timed_out = 0
        self.dropped = 0

    def __repr__(self) -> str:
        return f"<CommandHandler {self.spec}>"

    # -- wiring ----------------------------------------------------------------

    def attach(self, server: Any) -> None:
        """Register on ``server``'s dispatcher; takes the node id from it."""
        self._node_id = lambda: str(server.id)
        server.events.register("start", self._resume)  # before a start command
        for event in self.spec.events:
            if event != "shutdown":
                server.events.register(event, self._handler_for(event))
        # bounded by this handler's own timeout and kill grace: not cancelled
        server.events.register("shutdown", self.shutdown, bounded=False)
        _ATTACHED.setdefault(server, []).append(self)

    def _resume(self) -> None:
        """A server started again after a stop: take events again."""
        self._stopping = False

    def _handler_for(self, event: str) -> Callable[..., None]:
        def handle(*args: Any, peer: Any = None) -> None:
            self.submit(event, args, peer)

        handle.__qualname__ = f"{self!r}.{event}"
        return handle

    # -- the queue ---------------------------------------------------------------

    def submit(self, event: str, args: tuple[Any, ...] = (), peer: Any = None) -> None:
        """Queue one event (never blocks; may drop the oldest waiting one)."""
        if self._stopping:
            return
        if not self.spec.wants(event, args[0] if args else None):
            return
        env, stdin = event_environment(event, args, peer, self._node_id())
        env["POKAN_TIME"] = repr(float(self._reactor.seconds()))
        self._seq += 1
        env["POKAN_SEQ"] = str(self._seq)
        if len(self._queue) >= self.max_queue:
            dropped = self._queue.popleft()
            self.dropped += 1
            self._dropped_since_run += 1
            if not self._overflowing:
                self._overflowing = True
                log.warn(
                    "command handler {spec}: {size} events wait already; dropping"
                    " the oldest ({event} #{seq}) and any more until it catches up",
                    spec=str(self.spec),
                    size=self.max_queue,
                    event=dropped.event,
                    seq=dropped.seq,
                )
        self._queue.append(Invocation(event, self._seq, env, stdin))
        if self._running is None:
            self._next()

    def shutdown(self) -> defer.Deferred[None]:
        """Stop taking events; run ``shutdown`` if asked; fire when idle.

        Events still waiting are dropped (logged); a command still running is
        terminated (SIGTERM, then SIGKILL after the grace); the ``shutdown``
        command, if this handler has one, runs within the usual timeout.
        """
        waiting = len(self._queue)
        if waiting:
            self._queue.clear()
            self.dropped += waiting
            log.warn(
                "command handler {spec}: stopping; {count} waiting events dropped",
                spec=str(self.spec),
                count=waiting,
            )
        if self._running is not None:
            self._running.terminate("pokan is stopping")
        if "shutdown" in self.spec.events:
            self.submit("shutdown")
        self._stopping = True
        return self.idle()

    def idle(self) -> defer.Deferred[None]:
        """Fire once nothing runs and nothing waits."""
        if self._running is None and not self._queue:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle.append(d)
        return d

    @property
    def waiting(self) -> int:
        """Events queued, not counting the one running."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """True while a command runs or events wait."""
        return self._running is not None or bool(self._queue)

    def _next(self) -> None:
        while self._queue and self._running is None:
            invocation = self._queue.popleft()
            if self._dropped_since_run:
                invocation.env["POKAN_DROPPED"] = str(self._dropped_since_run)
                log.warn(
                    "command handler {spec}: {count} events were dropped before"
                    " {event} #{seq} (queue full)",
                    spec=str(self.spec),
                    count=self._dropped_since_run,
                    event=invocation.event,
                    seq=invocation.seq,
                )
                self._dropped_since_run = 0
            else:
                invocation.env["POKAN_DROPPED"] = "0"
            if len(self._queue) < self.max_queue:
                self._overflowing = False
            self._start(invocation)
        if self._running is None and not self._queue:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def _start(self, invocation: Invocation) -> None:
        run = _Run(self, invocation, self._reactor, group=bool(self._setsid))
        argv = [SHELL, "-c", self.spec.command]
        if self._setsid:
            argv = [self._setsid, *argv]
        env = {**self._environ, **invocation.env}
        self.runs += 1
        # a quick command may end inside spawnProcess: be ready for it
        self._running = run
        run.arm()
        try:
            self._reactor.spawnProcess(run, argv[0], argv, env=env)
        except Exception:
            self.failed += 1
            run.disarm()
            self._running = None
            log.failure(
                "command handler {spec}: could not start the command for {event}",
                spec=str(self.spec),
                event=invocation.event,
            )

    def _finished(self, run: _Run) -> None:
        if self._running is run:
            self._running = None
            self._next()


class _Lines:
    """Logs a stream of output line by line, at most MAX_LOGGED_LINES."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._buffer = b""
        self.logged = 0
        self.skipped = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line)
        if len(self._buffer) > 8192:  # a very long line: log what we have
            self._line(self._buffer)
            self._buffer = b""

    def close(self) -> None:
        if self._buffer:
            self._line(self._buffer)
            self._buffer = b""

    def _line(self, line: bytes) -> None:
        if self.logged >= MAX_LOGGED_LINES:
            self.skipped += 1
            return
        self.logged += 1
        self._emit(line.rstrip(b"\r").decode("utf-8", "replace"))


class _Run(protocol.ProcessProtocol):
    """One run of a command: feeds stdin, logs output, enforces the timeout."""

    def __init__(
        self,
        handler: CommandHandler,
        invocation: Invocation,
        reactor: Any,
        group: bool,
    ) -> None:
        self.handler = handler
        self._reactor = reactor
        self.invocation = invocation
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.timed_out = False
        self._terminating = False
        self._group = group
        self._timers: list[Any] = []
        self._done = False
        command = handler.spec.command
        if len(command) > 60:
            command = command[:57] + "..."
        what = f"{command} ({invocation.event} #{invocation.seq})"
        self._stdout = _Lines(
            lambda line: log.info("{command}: {line}", command=what, line=line)
        )
        self._stderr = _Lines(
            lambda line: log.warn("{command} stderr: {line}", command=what, line=line)
        )
        self._what = what
        self._forget_forced_end: Callable[[], None] = lambda: None

    def arm(self) -> None:
        self._timers.append(self._reactor.callLater(self.handler.timeout, self._expire))

    def disarm(self) -> None:
        self._done = True
        self._cancel_timers()

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            if timer.active():
                timer.cancel()

    def connectionMade(self) -> None:
        assert self.transport is not None
        # a node ended at once (a second SIGTERM) takes its commands with it
        self._forget_forced_end = at_forced_end(self._kill_at_forced_end)
        if self.invocation.stdin:
            self.transport.write(self.invocation.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self._stdout.feed(data)

    def errReceived(self, data: bytes) -> None:
        self._stderr.feed(data)

    def processExited(self, reason: Failure) -> None:
        self._record(reason)
        # background children may hold the pipes open; do not wait for them
        self._timers.append(
            self._reactor.callLater(self.handler.pipe_grace, self._close_pipes)
        )

    def processEnded(self, reason: Failure) -> None:
        self._record(reason)
        self._end()

    def _record(self, reason: Failure) -> None:
        if self.exit_code is None and self.signal is None:
            value = reason.value
            self.exit_code = getattr(value, "exitCode", None)
            self.signal = getattr(value, "signal", None)

    def _close_pipes(self) -> None:
        if not self._done and self.transport is not None:
            self.transport.loseConnection()
            self._end()

    def _expire(self) -> None:
        self.timed_out = True
        self.terminate(f"it still runs after {self.handler.timeout:g} s")

    def terminate(self, why: str) -> None:
        """SIGTERM now, SIGKILL after the grace unless it ended."""
        if self._done or self._terminating:
            return
        self._terminating = True
        log.warn("{command}: {why}; terminating it", command=self._what, why=why)
        self._signal("TERM")
        self._timers.append(
            self._reactor.callLater(self.handler.kill_grace, self._signal, "KILL")
        )

    def _signal(self, name: str) -> None:
        if self._done or self.transport is None:
            return
        pid = getattr(self.transport, "pid", None)
        try:
            if self._group and pid:
                os.killpg(pid, getattr(signal, f"SIG{name}"))
            else:
                self.transport.signalProcess(name)
        except (ProcessLookupError, error.ProcessExitedAlready):
            pass
        except OSError as e:
            log.warn("cannot signal {command}: {error}", command=self._what, error=e)

    def _kill_at_forced_end(self) -> None:
        log.warn("{command}: the node ends at once; killing it", command=self._what)
        self._signal("KILL")

    def _end(self) -> None:
        self._forget_forced_end()
        if self._done:
            return
        self._done = True
        self._cancel_timers()
        self._stdout.close()
        self._stderr.close()
        for lines, name in ((self._stdout, "stdout"), (self._stderr, "stderr")):
            if lines.skipped:
                log.warn(
                    "{command}: {count} more lines of {stream} not logged",
                    command=self._what,
                    count=lines.skipped,
                    stream=name,
                )
        handler = self.handler
        if self.timed_out:
            handler.timed_out += 1
            handler.failed += 1
            log.warn(
                "{command} did not finish within {timeout:g} s; stopped"
                " (--handler-timeout, handler_timeout=)",
                command=self._what,
                timeout=handler.timeout,
            )
        elif self.exit_code != 0:
            handler.failed += 1
            how = (
                f"was killed by signal {self.signal}"
                if self.signal is not None
                else f"exited with status {self.exit_code}"
            )
            log.warn("{command} {how}", command=self._what, how=how)
        # a success logs nothing: twistd shows every level, and a busy
        # cluster would fill its log with one line per event
        handler._finished(self)


#: the command handlers attached to each server (for its settings view)
_ATTACHED: weakref.WeakKeyDictionary[Any, list[CommandHandler]] = (
    weakref.WeakKeyDictionary()
)


def attached_commands(server: Any) -> list[CommandHandler]:
    """The ``--on-event`` command handlers attached to ``server``, in order."""
    return list(_ATTACHED.get(server, ()))


__all__ = ["CommandHandler", "CommandSpec", "attached_commands", "event_environment"]

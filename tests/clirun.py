"""Running the ``pokan`` command as a child process, from a Deferred test.

The nodes of a test run in the test's own reactor; the command runs in a
child process (as a user runs it), so the reactor stays free to serve its
requests: no thread, no blocking call in the test.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import attrs
from twisted.internet import defer, protocol
from twisted.python.failure import Failure

from tests.support import ROOT, global_reactor, subprocess_env

#: the venv's installed console script (tests that must run *it* use this)
POKAN_SCRIPT = os.path.join(os.path.dirname(sys.executable), "pokan")
#: the command from this tree: ``python -m pokan.control.cli``
FROM_TREE = (sys.executable, "-m", "pokan.control.cli")
#: seconds any one command may take
COMMAND_TIMEOUT = 60.0


@attrs.frozen
class Done:
    """A finished command: its exit code and what it printed."""

    code: int
    out: bytes
    err: bytes

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")

    @property
    def error(self) -> str:
        return self.err.decode("utf-8", "replace")

    def describe(self) -> str:
        return (
            f"exit {self.code}\n--- stdout ---\n{self.text}"
            f"\n--- stderr ---\n{self.error}"
        )


class _Collect(protocol.ProcessProtocol):
    def __init__(self, stdin: bytes, done: defer.Deferred[Done]) -> None:
        self.stdin = stdin
        self.done = done
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.timer: Any = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        if self.stdin:
            self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        code = getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        self.done.callback(
            Done(
                code if code is not None else -(signal or 1),
                b"".join(self.out),
                b"".join(self.err),
            )
        )


class Running:
    """A ``pokan`` command running: what it printed so far; interrupt it."""

    def __init__(self, proto: _Collect, process: Any) -> None:
        self.proto = proto
        self.process = process
        self.done = proto.done

    def output(self) -> bytes:
        return b"".join(self.proto.out)

    def signal(self, sig: str) -> None:
        try:
            self.process.signalProcess(sig)
        except Exception:
            return  # it ended already
        if sig == "INT":  # then KILL if it does not end
            self.proto.timer = global_reactor().callLater(10.0, self.signal, "KILL")

    def kill(self) -> defer.Deferred[Done]:
        """End it (at a test's cleanup: it ended already, as a rule)."""
        if self.proto.timer is not None and self.proto.timer.active():
            self.proto.timer.cancel()
        if not self.done.called:
            self.signal("KILL")
        return self.done

    def interrupt(self) -> defer.Deferred[Done]:
        """Ctrl-C; fires with :class:`Done` once it ended."""
        if self.proto.timer is not None and self.proto.timer.active():
            self.proto.timer.cancel()
        self.signal("INT")
        return self.done


def pokan_process(
    *args: str,
    stdin: bytes = b"",
    script: tuple[str, ...] = FROM_TREE,
    **env: str,
) -> Running:
    """Start ``pokan ARGS``; killed after COMMAND_TIMEOUT seconds at most."""
    reactor = global_reactor()
    done: defer.Deferred[Done] = defer.Deferred()
    proto = _Collect(stdin, done)
    environment = subprocess_env(**env)
    for name in ("POKAN_CONTROL", "POKAN_TOKEN_FILE"):
        if name not in env:
            environment.pop(name, None)  # only what the test gives
    if script == FROM_TREE:
        environment["PYTHONPATH"] = ROOT
    process = reactor.spawnProcess(
        proto, script[0], [*script, *args], env=environment, path=ROOT
    )
    running = Running(proto, process)
    proto.timer = reactor.callLater(COMMAND_TIMEOUT, running.signal, "KILL")
    return running


def pokan(
    *args: str,
    stdin: bytes = b"",
    script: tuple[str, ...] = FROM_TREE,
    **env: str,
) -> defer.Deferred[Done]:
    """Run ``pokan ARGS`` to its end (bounded); fires with :class:`Done`."""
    return pokan_process(*args, stdin=stdin, script=script, **env).done


def shell(
    command: str, path_first: str, timeout: float = COMMAND_TIMEOUT, **env: str
) -> defer.Deferred[Done]:
    """Run one shell command line with ``bash -c`` (stderr merged into stdout).

    ``path_first`` goes first on PATH (where a ``pokan`` of this tree is).
    """
    reactor = global_reactor()
    done: defer.Deferred[Done] = defer.Deferred()
    proto = _Collect(b"", done)
    environment = subprocess_env(**env)
    environment["PATH"] = (
        f"{path_first}:{os.path.dirname(sys.executable)}:/usr/bin:/bin"
    )
    environment["PYTHONPATH"] = ROOT
    process = reactor.spawnProcess(
        proto,
        "/bin/bash",
        ["bash", "-c", f"{command} 2>&1"],
        env=environment,
        path=ROOT,
    )
    running = Running(proto, process)
    proto.timer = reactor.callLater(timeout, running.signal, "KILL")
    return done


def tree_pokan_dir(folder: str) -> str:
    """A folder holding a ``pokan`` that runs this tree's command."""
    path = os.path.join(folder, "pokan")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f'#!/bin/sh\nexec "{sys.executable}" -m pokan.control.cli "$@"\n')
    os.chmod(path, 0o755)
    return folder

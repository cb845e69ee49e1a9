"""Helpers for the integration tests: bounded waits, clusters, subprocesses.

Integration tests use real sockets on 127.0.0.1 and the global reactor
through trial's Deferred-returning tests. Every wait here is bounded: it polls
a condition every few milliseconds and fails with a clear message at the
deadline, so a broken cluster fails a test instead of hanging it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial import unittest

from pokan import Server
from pokan.core.address import format_host_port

#: the repository root (tests/ lives directly under it)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the venv's own twistd: it sees the installed pokan, as a user's would
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def wait_until(
    condition: Callable[[], object],
    timeout: float = 10.0,
    reactor: IReactorTime | None = None,
    interval: float = 0.005,
    message: str | Callable[[], str] = "",
) -> defer.Deferred[Any]:
    """Fire with the condition's (truthy) result once it holds.

    Polls every ``interval`` seconds (the condition may return a Deferred);
    after ``timeout`` seconds it fails with an AssertionError saying what was
    awaited (``message``, or a callable describing the current state).
    """
    clock = reactor if reactor is not None else global_reactor()
    deadline = clock.seconds() + timeout
    done: defer.Deferred[Any] = defer.Deferred()

    def poll() -> None:
        d = defer.maybeDeferred(condition)
        d.addCallbacks(check, done.errback)

    def check(result: object) -> None:
        if result:
            done.callback(result)
        elif clock.seconds() >= deadline:
            what = message() if callable(message) else message
            done.errback(
                AssertionError(
                    f"timed out after {timeout}s waiting for"
                    f" {what or getattr(condition, '__name__', repr(condition))}"
                )
            )
        else:
            clock.callLater(interval, poll)

    poll()
    return done


def temp_dir(test: unittest.TestCase) -> str:
    """A new, empty directory under the test's _trial_temp."""
    path = os.path.abspath(test.mktemp())
    os.makedirs(path)
    return path


def make_server(address: str = "127.0.0.1", **kwargs: Any) -> Server:
    """A Server on 127.0.0.1 with free ports and a short gossip interval."""
    kwargs.setdefault("tcp_port", 0)
    kwargs.setdefault("udp_port", 0)
    kwargs.setdefault("gossip_interval", 0.05)
    return Server(address, **kwargs)


def stop_all(servers: Iterable[Server]) -> defer.Deferred[Any]:
    """Stop every running server; never fails (a failure is logged)."""
    stopping = [defer.maybeDeferred(s.stopService) for s in servers if s.running]
    return defer.DeferredList(stopping, consumeErrors=True)


@defer.inlineCallbacks
def start_server(test: unittest.TestCase, **kwargs: Any) -> Any:
    """Start one server (see :func:`make_server`); stopped at cleanup."""
    server = make_server(**kwargs)
    test.addCleanup(stop_all, [server])
    yield server.startService()
    return server


@defer.inlineCallbacks
def start_cluster(test: unittest.TestCase, n: int, **kwargs: Any) -> Any:
    """Start ``n`` servers (on 127.0.0.1 unless ``address`` says otherwise).

    The first is the seed of the others.

    Fires with the list of servers once all listen; they are stopped at cleanup.
    """
    seed = yield start_server(test, **kwargs)
    servers = [seed]
    for _ in range(n - 1):
        server = yield start_server(
            test, gossip_with=format_host_port(seed.address, seed.tcp_port), **kwargs
        )
        servers.append(server)
    return servers


def everyone_knows(servers: list[Server], key: str) -> bool:
    """True when every server holds every server's ``key`` at its value."""
    for server in servers:
        for other in servers:
            if other is server:
                continue
            peer = server.peer(other.id)
            if peer is None or peer.value(key) != other.value(key):
                return False
    return True


def missing(servers: list[Server], key: str) -> str:
    """How far the cluster is from :func:`everyone_knows`, for messages."""
    gaps = sum(
        1
        for server in servers
        for other in servers
        if other is not server
        and (
            (peer := server.peer(other.id)) is None
            or peer.value(key) != other.value(key)
        )
    )
    return f"every node to know {key!r} of every node ({gaps} pairs still missing)"


class LogCatcher:
    """Collects formatted log lines of the global publisher during a test."""

    def __init__(self, test: unittest.TestCase) -> None:
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def matching(self, *parts: str) -> list[str]:
        return [line for line in self.lines() if all(p in line for p in parts)]


# -- ports and processes --------------------------------------------------------


def free_port() -> int:
    """A port number free on 127.0.0.1 for both TCP and UDP (at this moment)."""
    for _ in range(50):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(port)
        finally:
            tcp.close()
            udp.close()
    raise RuntimeError("no port free for both TCP and UDP on 127.0.0.1")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: the installed pokan, not the tree."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run(
    args: list[str], cwd: str, timeout: float = 60.0, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived command to completion (bounded); capture its output."""
    return subprocess.run(
        args,
        cwd=cwd,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Daemon:
    """A long-running child process whose output goes to a file we can read."""

    def __init__(self, test: unittest.TestCase, args: list[str], cwd: str, **env: str):
        self.args = args
        self.output_path = os.path.join(cwd, f"output-{time.monotonic_ns()}.log")
        self._output = open(self.output_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env=subprocess_env(**env),
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        test.addCleanup(self.kill)

    def output(self) -> str:
        with open(self.output_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def exited(self) -> bool:
        return self.process.poll() is not None

    def kill(self, grace: float = 5.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(grace)
        self._output.close()
        return self.process.returncode

    def describe(self) -> str:
        return f"{' '.join(self.args)}\n--- output ---\n{self.output()}"

"""Helpers for the handler integration tests: clusters, bounded waits, twistd."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pokan import Server
from tests import support
from tests.support import TWISTD as TWISTD
from tests.support import LogCatcher, global_reactor
from tests.support import free_port as free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "docs", "examples")


def reactor() -> Any:
    return global_reactor()


def wait_until(
    condition: Callable[[], object],
    timeout: float = 30.0,
    what: str | Callable[[], str] = "",
) -> defer.Deferred[Any]:
    """Fire once ``condition()`` is true; fail after ``timeout`` seconds."""
    return support.wait_until(condition, timeout, message=what)


def stop(servers: list[Server]) -> defer.Deferred[Any]:
    return defer.DeferredList(
        [defer.maybeDeferred(s.stopService) for s in servers if s.running],
        consumeErrors=True,
    )


@defer.inlineCallbacks
def cluster(
    test: unittest.TestCase, n: int, seed: str | None = None, interval: float = 0.05
) -> Any:
    """``n`` started servers on 127.0.0.1 (free ports, 50 ms gossip by default)."""
    servers: list[Server] = []
    test.addCleanup(stop, servers)
    for _ in range(n):
        if seed is None and servers:
            seed = f"127.0.0.1:{servers[0].tcp_port}"
        server = Server(
            "127.0.0.1",
            tcp_port=0,
            udp_port=0,
            gossip_interval=interval,
            gossip_with=seed,
        )
        servers.append(server)
        yield server.startService()
    # let the joins (TCP syncs) finish: a node stopped mid-sync leaves a
    # connection attempt behind
    yield wait_until(
        lambda: all(len(s.peers()) >= n - 1 for s in servers),
        what="every node to know the others",
    )
    return servers


def converged(servers: list[Server]) -> bool:
    """Every server knows every other one's keys, at their values."""
    for a in servers:
        for b in servers:
            if a is not b:
                peer = a.peer(b.id)
                if peer is None or peer.items() != b.items():
                    return False
    return True


Logs = LogCatcher


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def copy_example(test: unittest.TestCase, name: str) -> str:
    """A copy of docs/examples/NAME (imports write __pycache__ there)."""
    target = os.path.join(os.path.abspath(test.mktemp()), name)
    if os.path.isdir(os.path.join(EXAMPLES, name)):
        shutil.copytree(os.path.join(EXAMPLES, name), target)
    else:
        os.makedirs(os.path.dirname(target))
        shutil.copy2(os.path.join(EXAMPLES, name), target)
    return target


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child twistd: the installed pokan, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Child:
    """A long-running child process (bounded stop), its output in a file."""

    def __init__(self, test: unittest.TestCase, argv: list[str], **env: str):
        self.cwd = os.path.abspath(test.mktemp())
        os.makedirs(self.cwd)
        self.output_path = os.path.join(self.cwd, "child.out")
        self._out = open(self.output_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=child_env(**env),
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        test.addCleanup(self.stop)

    def output(self) -> str:
        return read(self.output_path)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._out.close()
        return self.process.returncode


class Twistd(Child):
    """``twistd -n pokan ARGS`` in a child process."""

    def __init__(self, test: unittest.TestCase, args: list[str], **env: str):
        super().__init__(test, [TWISTD, "-n", "--pidfile=", "pokan", *args], **env)


def run_twistd(
    args: list[str], cwd: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``twistd -n pokan ARGS`` expecting it to exit by itself (bounded)."""
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "pokan", *args],
        cwd=cwd,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

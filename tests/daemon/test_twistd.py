"""Integration: the real ``twistd pokan`` of the venv, and the built wheel.

The daemons run with their working directory in a temporary directory and
without PYTHONPATH, so ``twistd`` finds the plugin in the installed package,
as a user's would (run ``make .venv/.installed`` after changing pokan/).
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from typing import Any

from twisted.internet import defer, error
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial import unittest

from pokan import Server, wire
from pokan.daemon import tap
from pokan.net.badinput import BadInputReporter
from pokan.net.protocols import SyncClientProtocol
from tests.support import (
    ROOT,
    TWISTD,
    Daemon,
    free_port,
    global_reactor,
    run,
    start_server,
    temp_dir,
    wait_until,
)


def pokan_args(port: int, *extra: str) -> list[str]:
    return [
        TWISTD,
        "-n",
        "--pidfile=",
        "pokan",
        "--address",
        "127.0.0.1",
        "--udp-port",
        str(port),
        "--tcp-port",
        str(port),
        "--gossip-interval",
        "0.1",
        *extra,
    ]


def start_daemon(test: unittest.TestCase, *extra: str) -> tuple[Daemon, int]:
    """Start ``twistd -n pokan`` on a free port; fires once it listens."""
    port = free_port()
    daemon = Daemon(test, pokan_args(port, *extra), cwd=temp_dir(test))
    return daemon, port


def listening(daemon: Daemon) -> bool:
    if daemon.exited():
        raise AssertionError(f"twistd exited early:\n{daemon.describe()}")
    return "listening on 127.0.0.1" in daemon.output()


@defer.inlineCallbacks
def fetch_state(port: int) -> Any:
    """What the node on 127.0.0.1:port knows: {node id: {key: value}}.

    A full sync over TCP with an empty Hello: the answer is its whole state.
    """
    reactor = global_reactor()
    client = SyncClientProtocol(
        wire.Hello("127.0.0.1:1", ()),
        BadInputReporter(reactor),
        wire.DEFAULT_MAX_FRAME,
        5.0,
    )
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    welcome = yield client.welcome
    return {
        delta.info.id: {k: e.value for k, e in delta.entries if not e.deleted}
        for delta in welcome.deltas
    }


@defer.inlineCallbacks
def knows_roles(port: int, roles: dict[str, str], seen: dict[str, Any]) -> Any:
    """True if the node on ``port`` knows every node's ``role`` key."""
    seen.clear()
    seen.update((yield fetch_state(port)))
    return all(seen.get(i, {}).get("role") == role for i, role in roles.items())


class DaemonTests(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_two_daemons_and_an_embedded_node_see_each_others_keys(self) -> Any:
        first, p1 = start_daemon(self, "--store", "role=web")
        yield wait_until(lambda: listening(first), timeout=30, message=first.describe)
        # --gossip-with repeats and takes a list: the first two seeds are down
        nobody, nobody_either = free_port(), free_port()
        second, p2 = start_daemon(
            self,
            "--gossip-with",
            f"127.0.0.1:{nobody}",
            "--gossip-with",
            f"127.0.0.1:{nobody_either},127.0.0.1:{p1}",
            "--store",
            "role=db",
        )
        embedded = yield start_server(self, gossip_with=f"127.0.0.1:{p1}")
        yield embedded.store("role", "embedded")
        ids = {
            f"127.0.0.1:{p1}": "web",
            f"127.0.0.1:{p2}": "db",
            embedded.id: "embedded",
        }

        def roles_seen_by_embedded() -> bool:
            return all(
                (peer := embedded.peer(node_id)) is not None
                and peer.value("role") == role
                for node_id, role in ids.items()
                if node_id != embedded.id
            )

        yield wait_until(
            roles_seen_by_embedded,
            timeout=30,
            message=lambda: (
                "the embedded node to learn both daemons' keys;"
                f" peers {embedded.peers()}\n{second.describe()}"
            ),
        )
        for port in (p1, p2):
            seen: dict[str, dict[str, Any]] = {}
            yield wait_until(
                functools.partial(knows_roles, port, ids, seen),
                timeout=30,
                message=functools.partial(str, seen),
            )
        roles = {p.id: p.role for p in embedded.peers()}
        self.assertEqual(roles, {f"127.0.0.1:{p1}": "seed", f"127.0.0.1:{p2}": "peer"})
        yield wait_until(
            lambda: (
                f"joined the cluster through seed 127.0.0.1:{p1}" in second.output()
            ),
            timeout=20,
            message=second.describe,
        )
        for daemon in (first, second):
            out = daemon.output()
            self.assertNotIn("Traceback", out)
            self.assertNotIn("Starting factory", out)
        # SIGTERM: the daemon says goodbye and shuts down cleanly (twistd then
        # exits with the status of the signal)
        self.assertIn(second.kill(), (0, -signal.SIGTERM), second.describe())
        self.assertIn("said goodbye to 2 peers", second.output())
        self.assertIn("Server Shut Down", second.output())
        yield wait_until(
            lambda: (p := embedded.peer(f"127.0.0.1:{p2}")) is not None and p.is_left,
            timeout=5,
            message="the stopped daemon to be marked left",
        )

    @defer.inlineCallbacks
    def test_epoll(self) -> Any:
        daemon, port = start_daemon(self, "--epoll", "--store", "k=v")
        yield wait_until(lambda: listening(daemon), timeout=30, message=daemon.describe)
        self.assertIn("twisted.internet.epollreactor.EPollReactor", daemon.output())
        state = yield fetch_state(port)
        self.assertEqual(state[f"127.0.0.1:{port}"], {"k": "v"})

    def test_epoll_with_another_reactor_is_a_usage_error(self) -> None:
        port = free_port()
        args = pokan_args(port, "--epoll")
        args.insert(1, "--reactor=select")
        result = run(args, cwd=temp_dir(self), timeout=30)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("epoll was asked for", result.stdout + result.stderr)
        self.assertIn("SelectReactor", result.stdout + result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_port_in_use(self) -> None:
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run(pokan_args(port), cwd=temp_dir(self), timeout=30)
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        self.assertNotIn("Traceback", output)
        lines = [line for line in output.splitlines() if "already in use" in line]
        self.assertEqual(len(lines), 1, output)
        self.assertIn(f"127.0.0.1:{port}/udp", lines[0])
        self.assertIn("Choose another port (--udp-port) or address (--address)", output)


class DaemonizedTests(unittest.TestCase):
    """Without -n, twistd forks a daemon and its parent reports the start."""

    timeout = 60

    def kill_daemon(self, pidfile: str) -> None:
        """SIGTERM the daemon named in ``pidfile``; SIGKILL it after a bound."""
        try:
            with open(pidfile) as f:
                pid = int(f.read())
        except (OSError, ValueError):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 5
            while os.path.exists(pidfile) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not os.path.exists(pidfile):
                return

    @defer.inlineCallbacks
    def test_daemon_runs_and_stops(self) -> Any:
        cwd, port = temp_dir(self), free_port()
        pidfile, logfile = os.path.join(cwd, "p.pid"), os.path.join(cwd, "p.log")
        args = pokan_args(port, "--store", "k=v")
        args[1:3] = ["--pidfile", pidfile, "--logfile", logfile]
        self.addCleanup(self.kill_daemon, pidfile)
        result = run(args, cwd=cwd, timeout=30)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertTrue(os.path.exists(pidfile))
        state = yield fetch_state(port)
        self.assertEqual(state[f"127.0.0.1:{port}"], {"k": "v"})
        with open(pidfile) as f:
            os.kill(int(f.read()), signal.SIGTERM)
        yield wait_until(
            lambda: not os.path.exists(pidfile),
            timeout=10,
            message="the daemon to stop and remove its pid file",
        )

        def shut_down() -> bool:  # the pid file goes a moment before this line
            with open(logfile) as f:
                return "Server Shut Down" in f.read()

        yield wait_until(shut_down, timeout=10, message="twistd's last log line")

    @defer.inlineCallbacks
    def test_daemon_with_its_port_in_use_fails_at_once(self) -> Any:
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        cwd = temp_dir(self)
        pidfile, logfile = os.path.join(cwd, "p.pid"), os.path.join(cwd, "p.log")
        args = pokan_args(port)
        args[1:3] = ["--pidfile", pidfile, "--logfile", logfile]
        self.addCleanup(self.kill_daemon, pidfile)
        # before the fix the parent waited for ever: run() would time out
        result = run(args, cwd=cwd, timeout=30)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("An error has occurred", result.stderr)
        # the gist, whole within the 100 bytes twistd's parent prints
        self.assertIn(
            f"cannot listen on 127.0.0.1:{port}/udp: address already in use'",
            result.stderr,
        )
        # the parent reports the child's failure; the child removes its pidfile
        # as it ends, which may be just after
        yield wait_until(
            lambda: not os.path.exists(pidfile), message="the pidfile removed"
        )
        with open(logfile) as f:
            log = f.read()
        # the log: the whole message, with what to do, in one line, no traceback
        self.assertIn("address already in use. Is another node running there?", log)
        self.assertIn("(--udp-port)", log)
        self.assertNotIn("Traceback", log)


class UsageTests(unittest.TestCase):
    """Bad options: a non-zero exit and a message saying what was wrong."""

    def assertUsageError(self, args: list[str], *expected: str) -> None:
        result = run(
            [TWISTD, "-n", "--pidfile=", "pokan", *args],
            cwd=temp_dir(self),
            timeout=30,
        )
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("listening on", output)
        for text in expected:
            self.assertIn(text, output)

    def test_missing_address(self) -> None:
        self.assertUsageError([], "--address is required")

    def test_the_error_comes_alone_with_a_hint_not_after_the_usage(self) -> None:
        for args, expected in (
            (["--address", "127.0.0.1", "--udp-port", "70000"], "--udp-port must be"),
            (["--address", "127.0.0.1", "--no-such-option"], "no-such-option"),
            (["--address", "127.0.0.1", "--max-datagram", "10"], "--max-datagram must"),
        ):
            result = run(
                [TWISTD, "-n", "--pidfile=", "pokan", *args],
                cwd=temp_dir(self),
                timeout=30,
            )
            output = (result.stdout + result.stderr).strip()
            self.assertNotEqual(result.returncode, 0, output)
            self.assertNotIn("Usage:", output)
            self.assertNotIn("--tombstone-ttl", output)  # no list of options
            (line,) = output.splitlines()
            self.assertIn(expected, line)
            self.assertIn("(see `twistd pokan --help`)", line)
            # that line alone, no blank lines before it, the program by name
            self.assertEqual(result.stdout, line + "\n")
            self.assertTrue(line.startswith("twistd -n: "), line)

    def test_help_still_lists_the_options(self) -> None:
        result = run([TWISTD, "pokan", "--help"], cwd=temp_dir(self), timeout=30)
        self.assertIn("--tombstone-ttl", result.stdout)

    def test_address_not_an_ip(self) -> None:
        self.assertUsageError(["--address", "example"], "--address", "'example'")

    def test_port_out_of_range(self) -> None:
        self.assertUsageError(
            ["--address", "127.0.0.1", "--udp-port", "70000"], "--udp-port", "70000"
        )

    def test_port_not_a_number(self) -> None:
        self.assertUsageError(
            ["--address", "127.0.0.1", "--tcp-port", "http"], "--tcp-port", "'http'"
        )

    def test_malformed_gossip_with(self) -> None:
        for bad in ("127.0.0.1:port", ":5555", "127.0.0.1:0", "[::1"):
            self.assertUsageError(
                ["--address", "127.0.0.1", "--gossip-with", bad], "--gossip-with"
            )

    def test_non_positive_gossip_interval(self) -> None:
        for bad in ("0", "-1", "soon", "inf", "1e-9"):
            self.assertUsageError(
                ["--address", "127.0.0.1", "--gossip-interval", bad],
                "--gossip-interval must be",
            )

    def test_bad_max_datagram(self) -> None:
        for bad in ("100", "70000", "big"):
            self.assertUsageError(
                ["--address", "127.0.0.1", "--max-datagram", bad], "--max-datagram must"
            )

    def test_bad_store(self) -> None:
        for bad in ("novalue", "=value"):
            self.assertUsageError(
                ["--address", "127.0.0.1", "--store", bad], "--store", "KEY=VALUE"
            )

    def test_store_too_large_for_a_datagram(self) -> None:
        self.assertUsageError(
            ["--address", "127.0.0.1", "--store", "k=" + "x" * 3000],
            "--store k=...",
            "with --max-datagram 1400",
            "raise --max-datagram on every node",
        )

    def test_help_lists_the_options(self) -> None:
        result = run([TWISTD, "pokan", "--help"], cwd=temp_dir(self), timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        for option in (
            "--address",
            "--gossip-with",
            "--tcp-port",
            "--udp-port",
            "--gossip-interval",
            "--max-datagram",
            "--epoll",
            "--store",
        ):
            self.assertIn(option, result.stdout)


class GossipWithOptionTests(unittest.TestCase):
    """--gossip-with, parsed in process: repeatable and comma-separated."""

    def parse(self, *args: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(["--address", "127.0.0.1", *args])
        return options

    def test_comma_separated_and_repeated(self) -> None:
        options = self.parse(
            "--gossip-with",
            "127.0.0.1:5611, 127.0.0.1:5612",
            "--gossip-with",
            "10.0.0.9",
        )
        server = tap.makeService(options).server  # type: ignore[attr-defined]
        self.assertEqual(
            server.seeds, ["127.0.0.1:5611", "127.0.0.1:5612", "10.0.0.9:5555"]
        )

    def test_help_gives_the_default_port_and_the_list_form(self) -> None:
        help_text = " ".join(tap.Options().getUsage().split())
        self.assertIn("HOST[:PORT], its TCP port (default 5555)", help_text)
        self.assertIn("separated by commas", help_text)

    def test_what_cannot_be_a_seed_is_a_usage_error(self) -> None:
        for bad, says in (
            ("", "empty seed"),
            ("127.0.0.1:5611,,127.0.0.1:5612", "empty seed"),
            ("127.0.0.1:5611,", "empty seed"),
            ("seed one:5611", "is not an IP address or host name"),
            ("[seed]:5611", "malformed [IPv6]:PORT"),
            ("seed]", "is not an IP address or host name"),
        ):
            with self.assertRaises(usage.UsageError, msg=bad) as caught:
                self.parse("--gossip-with", bad)
            self.assertIn("--gossip-with", str(caught.exception))
            self.assertIn(says, str(caught.exception), bad)


class SecurityOptionTests(unittest.TestCase):
    def parse(self, *args: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(["--address", "127.0.0.1", *args])
        return options

    def test_defaults(self) -> None:
        options = self.parse()
        self.assertEqual(options["cluster"], "pokan")
        self.assertIsNone(options["key-file"])
        self.assertEqual(options["max-nodes"], 20000)

    def test_max_nodes(self) -> None:
        self.assertEqual(self.parse("--max-nodes", "50")["max-nodes"], 50)
        for bad in ("1", "x", "-5", "2.5"):
            with self.assertRaises(usage.UsageError) as caught:
                self.parse("--max-nodes", bad)
            self.assertIn("--max-nodes must be", str(caught.exception))


class RefusingReactor(MemoryReactorClock):
    def listenUDP(self, port: int, protocol: Any, **kw: Any) -> Any:
        reason = OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))
        raise error.CannotListenError(kw.get("interface", ""), port, reason)


class StartupMessageTests(unittest.TestCase):
    """Under twistd, a port that cannot be bound names twistd's options."""

    def test_the_message_names_the_options(self) -> None:
        server = Server("10.255.255.1", udp_port=5641, reactor=RefusingReactor())
        daemon = tap.DaemonService(server)
        with self.assertRaises(SystemExit) as caught:
            daemon.privilegedStartService()
        self.assertEqual(
            str(caught.exception.code),
            "pokan: cannot listen on 10.255.255.1:5641/udp: cannot assign"
            " requested address. 10.255.255.1 is not an IP address of this host."
            " Use one of its own as the address (--address); `ip address` lists"
            " them.",
        )


class PackagingTests(unittest.TestCase):
    timeout = 300

    def test_plugin_is_installed_and_cheap_to_import(self) -> None:
        """twistd finds the installed plugin without importing pokan itself."""
        script = (
            "import sys\n"
            "from twisted.application.service import IServiceMaker\n"
            "from twisted.plugin import getPlugins\n"
            "makers = {p.tapname: p for p in getPlugins(IServiceMaker)}\n"
            "import twisted.plugins.pokan_plugin as plugin\n"
            "print(makers['pokan'].module)\n"
            "print(plugin.__file__)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pokan'))\n"
            "print('twisted.internet.reactor' in sys.modules)\n"
        )
        result = run([sys.executable, "-c", script], cwd=temp_dir(self), timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        module, path, imported, reactor = result.stdout.splitlines()
        self.assertEqual(module, "pokan.daemon.tap")
        self.assertIn("site-packages", path)
        self.assertEqual(imported, "[]")
        self.assertEqual(reactor, "False")

    def test_wheel_contents(self) -> None:
        """The wheel ships the plugin and py.typed, and no twisted/__init__.py."""
        source = os.path.join(temp_dir(self), "src")
        shutil.copytree(
            ROOT,
            source,
            ignore=shutil.ignore_patterns(
                ".venv",
                ".git",
                "build",
                "dist",
                "*.egg-info",
                "_trial_temp*",
                "__pycache__",
                ".mypy_cache",
                ".ruff_cache",
                ".hypothesis",
                "dropin.cache",
            ),
        )
        out = temp_dir(self)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "-w",
                out,
                source,
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        wheels = [f for f in os.listdir(out) if f.endswith(".whl")]
        self.assertEqual(len(wheels), 1, wheels)
        with zipfile.ZipFile(os.path.join(out, wheels[0])) as wheel:
            names = set(wheel.namelist())
        self.assertIn("twisted/plugins/pokan_plugin.py", names)
        self.assertIn("pokan/py.typed", names)
        self.assertIn("pokan/__init__.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertFalse([n for n in names if n.startswith("tests/")])

"""``twistd pokan --redis ...``: options, and the daemon against Redis."""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from twisted.internet import defer, utils
from twisted.python import usage
from twisted.trial import unittest

from pokan.daemon.tap import Options, makeService
from pokan.store import redis_io
from pokan.store.redis import RedisStore
from tests.redisreader import raw_value
from tests.redisserver import RedisServer, free_port
from tests.waiting import wait_for

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def parse(*args: str) -> Options:
    options = Options()
    options.parseOptions(["--address", "127.0.0.1", *args])
    return options


class OptionsTests(unittest.TestCase):
    def test_defaults_to_memory(self) -> None:
        options = parse()
        self.assertIsNone(options["redis"])
        service: Any = makeService(options)
        self.assertNotIsInstance(service.server._store, RedisStore)

    def test_prefix_and_events_need_redis(self) -> None:
        self.assertRaises(usage.UsageError, parse, "--redis-prefix", "x")
        self.assertRaises(usage.UsageError, parse, "--redis-events")

    def test_bad_url(self) -> None:
        options = parse("--redis", "http://nowhere")
        with self.assertRaises(SystemExit) as caught:
            makeService(options)
        self.assertEqual(
            str(caught.exception),
            "pokan: --redis http://nowhere: cannot parse it: Redis URL must specify"
            " one of the following schemes (redis://, rediss://, unix://)",
        )

    def test_a_database_that_is_no_number(self) -> None:
        """redis-py takes database 0 for /abc: pokan refuses it, naming why."""
        for url in ("redis://127.0.0.1:6391/abc", "rediss://127.0.0.1/0x1"):
            with self.assertRaises(SystemExit) as caught:
                makeService(parse("--redis", url))
            self.assertIn(
                f"pokan: --redis {url}: cannot parse it: ", str(caught.exception)
            )
            self.assertIn("the database must be a number", str(caught.exception))
        for url in (
            "redis://127.0.0.1:6391",
            "redis://127.0.0.1:6391/",
            "redis://h/12",
        ):
            redis_io.make_client(url, 1.0).close()  # accepted, not connected

    def test_unreachable(self) -> None:
        """The option, the URL (password hidden), why, and what to check."""
        port = free_port()
        url = f"redis://:secret@127.0.0.1:{port}/0"
        with self.assertRaises(SystemExit) as caught:
            makeService(parse("--redis", url))
        message = str(caught.exception)
        self.assertTrue(
            message.startswith(
                f"pokan: --redis redis://:***@127.0.0.1:{port}/0: cannot connect: "
            ),
            message,
        )
        self.assertTrue(
            message.endswith(" (is redis-server running? check the URL)"), message
        )
        self.assertNotIn("secret", message)

    def test_another_nodes_prefix_is_refused_before_start(self) -> None:
        server = RedisServer()
        self.addCleanup(server.stop)
        plain = server.client()
        self.addCleanup(plain.close)
        plain.hset("shared:meta", mapping={"schema": "2", "node": "127.0.0.1:7102"})
        options = parse(
            "--udp-port", "7103", "--redis", server.url, "--redis-prefix", "shared"
        )  # fmt: skip
        with self.assertRaises(SystemExit) as caught:
            makeService(options)
        self.assertIn(
            "holds the state of node '127.0.0.1:7102', not of this node"
            " '127.0.0.1:7103'",
            str(caught.exception),
        )
        # the node that owns it starts
        owner = ("--udp-port", "7102", "--redis-prefix", "shared")
        makeService(parse("--redis", server.url, *owner))

    def test_wrong_type_under_the_prefix_is_refused_before_start(self) -> None:
        server = RedisServer()
        self.addCleanup(server.stop)
        plain = server.client()
        self.addCleanup(plain.close)
        plain.set("x:meta", "not a hash")
        options = parse("--redis", server.url, "--redis-prefix", "x")
        with self.assertRaises(SystemExit) as caught:
            makeService(options)
        self.assertIn("x:meta is a Redis string", str(caught.exception))

    def test_store_configured(self) -> None:
        server = RedisServer()
        self.addCleanup(server.stop)
        options = parse("--redis", server.url, "--redis-prefix", "p", "--redis-events")
        service: Any = makeService(options)
        store = service.server._store
        self.assertIsInstance(store, RedisStore)
        self.assertEqual(store.prefix, "p")
        self.assertTrue(store.publish_events)


class DaemonTests(unittest.TestCase):
    def run_twistd(self, *args: str) -> defer.Deferred[tuple[bytes, bytes, int]]:
        workdir = tempfile.mkdtemp(prefix="pokan-twistd-")
        argv = ["-n", "--pidfile", os.path.join(workdir, "pid"), "pokan"]
        return utils.getProcessOutputAndValue(
            TWISTD, [*argv, *args], env=dict(os.environ), path=workdir
        )

    @defer.inlineCallbacks
    def test_unreachable_redis_exits_non_zero_with_one_line(self) -> Any:
        url = f"redis://127.0.0.1:{free_port()}/0"
        port = str(free_port())
        out, err, code = yield self.run_twistd(
            "--address",
            "127.0.0.1",
            "--tcp-port",
            port,
            "--udp-port",
            port,
            "--redis",
            url,
        )
        self.assertNotEqual(code, 0)
        lines = err.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertIn(f"pokan: --redis {url}: cannot connect: ", lines[0])
        self.assertIn("refused", lines[0])
        self.assertNotIn(b"Traceback", out + err)

    @defer.inlineCallbacks
    def test_another_layout_exits_non_zero_before_starting(self) -> Any:
        """Checked before twistd starts the node (a daemon's parent sees it)."""
        server = RedisServer()
        self.addCleanup(server.stop)
        port = str(free_port())
        node = f"127.0.0.1:{port}"
        plain = server.client()
        plain.hset(f"pokan:{node}:meta", mapping={"schema": "1", "node": node})
        plain.close()
        out, err, code = yield self.run_twistd(
            "--address", "127.0.0.1", "--tcp-port", port, "--udp-port", port,
            "--redis", server.url,
        )  # fmt: skip
        self.assertEqual(code, 1, out + err)
        self.assertIn(
            f"pokan: --redis {server.url}: pokan:{node}:meta says"
            " schema '1'; this pokan reads '2'",
            (out + err).decode(),
        )
        self.assertNotIn(b"listening on", out + err)
        self.assertNotIn(b"Traceback", out + err)

    @defer.inlineCallbacks
    def test_daemon_persists_in_redis(self) -> Any:
        from twisted.internet import reactor

        server = RedisServer()
        self.addCleanup(server.stop)
        plain = server.client()
        self.addCleanup(plain.close)
        port = free_port()
        workdir = tempfile.mkdtemp(prefix="pokan-twistd-")
        from twisted.internet import protocol

        ended: defer.Deferred[Any] = defer.Deferred()

        class Watch(protocol.ProcessProtocol):
            def processEnded(self, reason: Any) -> None:
                ended.callback((reason.value.exitCode, reason.value.signal))

        process = reactor.spawnProcess(
            Watch(),
            TWISTD,
            [
                TWISTD,
                "-n",
                "--pidfile",
                os.path.join(workdir, "pid"),
                "--logfile",
                os.path.join(workdir, "log"),
                "pokan",
                "--address",
                "127.0.0.1",
                "--tcp-port",
                str(port),
                "--udp-port",
                str(port),
                "--redis",
                server.url,
                "--store",
                "role=web",
            ],
            env=dict(os.environ),
            path=workdir,
        )
        node = f"127.0.0.1:{port}"
        try:
            yield wait_for(
                lambda: raw_value(plain, f"pokan:{node}", node, "role") == b"web",
                timeout=30,
            )
        finally:
            process.signalProcess("TERM")
        code, signal = yield ended
        # twistd ends cleanly, or re-raises SIGTERM to say how it ended
        self.assertIn((code, signal), [(0, None), (None, 15)])
        # stopped cleanly: its own record says so
        self.assertEqual(plain.hget(f"pokan:{node}:node:{node}", "status"), b"left")

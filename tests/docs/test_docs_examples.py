"""docs/embedding.md and docs/examples/ run as documented."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

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

DOCS = os.path.join(ROOT, "docs")
TAC = os.path.join(DOCS, "examples", "pokan.tac")
EMBEDDED = os.path.join(DOCS, "examples", "embedded.py")


def python_blocks(name: str) -> list[str]:
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def tac_daemon(test: unittest.TestCase, **env: str) -> Daemon:
    return Daemon(test, [TWISTD, "-ny", TAC, "--pidfile="], cwd=temp_dir(test), **env)


def started(daemon: Daemon, text: str) -> bool:
    if daemon.exited():
        raise AssertionError(f"exited early:\n{daemon.describe()}")
    return text in daemon.output()


class TacTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_tac_gossips_with_an_embedded_node(self) -> Any:
        port, web_port = free_port(), free_port()
        daemon = tac_daemon(
            self,
            POKAN_PORT=str(port),
            WEB_PORT=str(web_port),
            POKAN_INTERVAL="0.1",
        )
        yield wait_until(
            lambda: started(daemon, "listening on 127.0.0.1"),
            timeout=30,
            message=daemon.describe,
        )
        tac_id = f"127.0.0.1:{port}"
        node = yield start_server(self, gossip_with=f"127.0.0.1:{port}")
        yield node.store("role", "embedded")
        yield wait_until(
            lambda: (
                (p := node.peer(tac_id)) is not None
                and p.items() == {"role": "web", "url": f"http://127.0.0.1:{web_port}/"}
            ),
            timeout=20,
            message=lambda: f"the tac node's keys; peers {node.peers()}",
        )
        # the .tac's handler saw the embedded node's key...
        yield wait_until(
            lambda: started(daemon, f"{node.id} joined with role embedded"),
            timeout=20,
            message=daemon.describe,
        )
        # ...and its web site, the other service, shows it too
        agent = Agent(global_reactor())
        response = yield agent.request(b"GET", f"http://127.0.0.1:{web_port}/".encode())
        page = (yield readBody(response)).decode()
        self.assertEqual(response.code, 200)
        lines = page.splitlines()
        self.assertTrue(lines[0].startswith(f"{tac_id} alive "), page)
        self.assertIn(f"{node.id} alive {{'role': 'embedded'}}", lines)
        self.assertNotIn("Traceback", daemon.output())
        # SIGTERM stops both services; the node says goodbye on its way out
        self.assertIn(daemon.kill(), (0, -signal.SIGTERM), daemon.describe())
        yield wait_until(
            lambda: (p := node.peer(tac_id)) is not None and p.is_left,
            timeout=5,
            message="the tac node to be marked left after its goodbye",
        )

    def test_tac_with_its_port_in_use_exits(self) -> None:
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run(
            [TWISTD, "-ny", TAC, "--pidfile="],
            cwd=temp_dir(self),
            timeout=30,
            POKAN_PORT=str(port),
            WEB_PORT=str(free_port()),
        )
        output = result.stdout + result.stderr
        self.assertNotEqual(result.returncode, 0, output)
        # a StartupError: ListenError, whose hint names the Server's arguments
        self.assertIn(f"ListenError: cannot listen on 127.0.0.1:{port}/udp", output)
        self.assertIn("Choose another port (udp_port=) or address.", output)
        self.assertIn("already in use", output)

    def test_the_excerpt_in_the_doc_is_the_tac(self) -> None:
        excerpt = python_blocks("embedding.md")[0]
        with open(TAC, encoding="utf-8") as f:
            tac = f.read()
        for line in excerpt.splitlines():
            if line.strip():
                self.assertIn(line, tac)


class RecipeTests(unittest.TestCase):
    def test_multiservice_and_startup_failure_recipes(self) -> None:
        blocks = python_blocks("embedding.md")[1:3]
        self.assertEqual(len(blocks), 2)
        outputs = []
        for block in blocks:
            result = run([sys.executable, "-c", block], cwd=temp_dir(self), timeout=30)
            self.assertEqual(result.returncode, 0, block + result.stderr)
            outputs.append(result.stdout)
        self.assertRegex(outputs[0], r"pokan node 127\.0\.0\.1:\d+ listens on TCP")
        self.assertRegex(
            outputs[1], r"cannot listen on 127\.0\.0\.1:\d+/udp: address already in"
        )


class LoggingRecipeTests(unittest.TestCase):
    def test_start_logs_into_the_program_s_own_logging(self) -> None:
        (block,) = python_blocks("embedding.md")[3:]
        result = run([sys.executable, "-c", block], cwd=temp_dir(self), timeout=30)
        self.assertEqual(result.returncode, 0, block + result.stderr)
        self.assertRegex(
            result.stderr, r"INFO twisted: pokan node 127\.0\.0\.1:\d+ listening"
        )
        self.assertNotIn("[pokan.net.server#info]", result.stderr)  # not start()'s own


class EmbeddedProgramTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_embedded_program(self) -> Any:
        seed = yield start_server(self)
        yield seed.store("service", "db")
        port = free_port()
        program = Daemon(
            self,
            [
                sys.executable,
                EMBEDDED,
                "--port",
                str(port),
                "--gossip-with",
                f"127.0.0.1:{seed.tcp_port}",
                "--service",
                "cache",
                "--interval",
                "0.1",
            ],
            cwd=temp_dir(self),
        )
        me = f"127.0.0.1:{port}"
        yield wait_until(
            lambda: (
                started(program, f"synced with {seed.id}")
                and started(program, f"{seed.id} service='db'")
            ),
            timeout=20,
            message=program.describe,
        )
        yield wait_until(
            lambda: (p := seed.peer(me)) is not None and p.value("service") == "cache",
            timeout=10,
            message="the seed to learn the program's key",
        )
        yield seed.store("service", "db-replica")
        yield wait_until(
            lambda: started(program, f"{seed.id} service='db-replica'"),
            timeout=10,
            message=program.describe,
        )
        yield seed.delete("service")
        yield wait_until(
            lambda: started(program, f"{seed.id} removed service"),
            timeout=10,
            message=program.describe,
        )
        self.assertEqual(program.kill(), 0, program.describe())
        self.assertIn(f"node {me} stopping", program.output())
        yield wait_until(
            lambda: (p := seed.peer(me)) is not None and p.is_left,
            timeout=5,
            message="the program to be marked left after its goodbye",
        )

    def test_embedded_program_runs_for_a_while(self) -> None:
        port = free_port()
        result = run(
            [sys.executable, EMBEDDED, "--port", str(port), "--run-for", "0.2"],
            cwd=temp_dir(self),
            timeout=30,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.splitlines(),
            [f"node 127.0.0.1:{port} started", f"node 127.0.0.1:{port} stopping"],
        )

    def test_embedded_program_with_its_port_in_use(self) -> None:
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run(
            [sys.executable, EMBEDDED, "--port", str(port)],
            cwd=temp_dir(self),
            timeout=30,
        )
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn(
            f"cannot start: cannot listen on 127.0.0.1:{port}/udp", result.stderr
        )
        self.assertEqual(result.stderr.count("cannot listen"), 1, result.stderr)

    def test_embedded_program_with_a_bad_address(self) -> None:
        result = run(
            [sys.executable, EMBEDDED, "--address", "localhost"],
            cwd=temp_dir(self),
            timeout=30,
        )
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        self.assertIn("error: address must be an IP address", result.stderr)

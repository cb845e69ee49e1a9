"""docs/handlers.md: its examples run, its tables match the code."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
import threading
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from pokan import Server
from pokan.daemon.commands import CommandHandler, CommandSpec, event_environment
from pokan.daemon.interfaces import HANDLER_METHODS
from pokan.net.events import ALL_EVENTS
from tests.daemon.test_commands import FakeProcessReactor, StubPeer
from tests.handler_support import (
    EXAMPLES,
    ROOT,
    TWISTD,
    Child,
    cluster,
    free_port,
    wait_until,
)
from tests.handler_support import reactor as global_reactor

DOC = os.path.join(ROOT, "docs", "handlers.md")


def blocks(language: str) -> list[str]:
    with open(DOC, encoding="utf-8") as f:
        return re.findall(rf"```{language}\n(.*?)```", f.read(), flags=re.S)


def python_block(containing: str) -> str:
    """The one python block of handlers.md that holds ``containing``."""
    (block,) = [b for b in blocks("python") if containing in b]
    return block


def doc_text() -> str:
    with open(DOC, encoding="utf-8") as f:
        return f.read()


class MembersPoller:
    """GETs /members one request at a time; remembers the answers."""

    def __init__(self, port: int) -> None:
        self.agent = Agent(global_reactor())
        self.url = f"http://127.0.0.1:{port}/members".encode()
        self.answers: list[Any] = []
        self.asking = False

    def _ask(self) -> None:
        self.asking = True
        d = self.agent.request(b"GET", self.url)
        d.addCallback(readBody)
        d.addCallback(lambda body: self.answers.append(json.loads(body)))
        d.addErrback(lambda _: None)  # not listening yet

        def done(_: object) -> None:
            self.asking = False

        d.addBoth(done)

    def shows(self, members: list[str]) -> bool:
        if self.answers and self.answers[-1] == members:
            return not self.asking
        if not self.asking:
            self._ask()
        return False

    def last(self) -> str:
        return f"last answer {self.answers[-1:]}"


class HandlersDocTests(unittest.TestCase):
    def test_handler_object_example_runs(self) -> None:
        inventory = python_block("class Inventory")
        exec(compile(inventory, DOC, "exec"), {})

    def test_event_table_lists_every_handler_method(self) -> None:
        text = doc_text()
        for name in HANDLER_METHODS:
            self.assertIn(f"`{name}`", text)

    def test_environment_table_matches_the_code(self) -> None:
        documented = set(re.findall(r"`(POKAN_[A-Z_]+)`", doc_text()))
        documented.discard("POKAN_MIRROR")  # the example script's own
        produced: set[str] = set()
        for event in ALL_EVENTS:
            env, _ = event_environment(event, ("k", "v"), StubPeer(), "me")
            produced |= set(env)
        reactor = FakeProcessReactor()
        handler = CommandHandler(
            CommandSpec.parse("start=true"), reactor, setsid=None, environ={}
        )
        handler.submit("start")
        produced |= set(reactor.spawned[0].env)
        self.assertEqual(documented, produced)

    def test_plugin_excerpt_is_the_example(self) -> None:
        excerpt = next(b for b in blocks("text") if "HandlerPlugin(" in b)
        path = os.path.join(EXAMPLES, "handler_plugin", "pokan", "plugins")
        with open(os.path.join(path, "members.py"), encoding="utf-8") as f:
            self.assertIn(excerpt, f.read())

    def test_command_handler_snippet_runs(self) -> None:
        snippet = next(b for b in blocks("text") if "CommandHandler(" in b)
        server = Server("127.0.0.1")
        namespace: dict[str, Any] = {"server": server}
        exec(compile(snippet, DOC, "exec"), namespace)
        self.assertTrue(server.events.has_handlers("key_changed"))
        self.assertEqual(namespace["handler"].timeout, 30)

    @defer.inlineCallbacks
    def test_the_defer_to_thread_recipe(self) -> None:
        """Handlers must not block: the recipe's blocking work runs in a
        thread, and its result comes back in the reactor thread."""
        namespace: dict[str, Any] = {}
        exec(compile(python_block("deferToThread"), DOC, "exec"), namespace)
        threads: list[str] = []
        blocking = namespace["checksum"]

        def checksum(path: str) -> str:
            threads.append(threading.current_thread().name)
            return str(blocking(path))

        namespace["checksum"] = checksum  # what changed() calls
        a, b = yield cluster(self, 2)
        sums = namespace["watch_files"](a)
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"pokan")
        yield b.store("file/x", path)
        yield b.store("other", path)  # not a file/* key: no thread
        yield wait_until(lambda: (b.id, "file/x") in sums, what=lambda: str(sums))
        self.assertEqual(sums[b.id, "file/x"], hashlib.sha256(b"pokan").hexdigest())
        self.assertEqual(len(threads), 1)
        self.assertNotEqual(threads[0], threading.main_thread().name)
        self.assertNotIn((b.id, "other"), sums)

    def test_the_must_not_block_section_says_so(self) -> None:
        text = " ".join(doc_text().split())
        self.assertIn("runs in the reactor thread", text)
        self.assertIn("A handler must return at once", text)
        self.assertIn("60 s by default", text)

    @defer.inlineCallbacks
    def test_web_and_pokan_side_by_side(self) -> None:
        recipe = python_block("def make_service")
        namespace: dict[str, Any] = {}
        exec(compile(recipe, DOC, "exec"), namespace)
        a, b = yield cluster(self, 2)
        port = free_port()
        top, pokan = namespace["make_service"](
            "127.0.0.1",
            seed=f"127.0.0.1:{a.tcp_port}",
            web_port=port,
            tcp_port=0,
            udp_port=0,
            gossip_interval=0.05,
        )
        top.startService()
        self.addCleanup(top.stopService)
        everyone = sorted([a.id, b.id, pokan.id])
        poller = MembersPoller(port)
        yield wait_until(lambda: poller.shows(everyone), what=poller.last)


RECIPE = """
import re

from twisted.application import service

with open({doc!r}, encoding="utf-8") as f:
    found = re.findall(r"```python\\n(.*?)```", f.read(), flags=re.S)
exec(next(b for b in found if "def make_service" in b))
"""

DOC_CALL = 'make_service("10.0.0.1", seed="10.0.0.2:5555")'
TEST_CALL = (
    'make_service("127.0.0.1", seed={seed!r}, web_port={web_port},'
    " tcp_port={port}, udp_port={port}, gossip_interval=0.05)"
)


def runnable(marker: str) -> str:
    """The docs' text block containing ``marker``, on test addresses."""
    block = next(b for b in blocks("text") if marker in b)
    assert DOC_CALL in block, block
    return RECIPE + block.replace(DOC_CALL, TEST_CALL)


class WebRecipeOutOfProcessTests(unittest.TestCase):
    """The web + pokan recipe in a .tac under twistd, and in its own reactor."""

    @defer.inlineCallbacks
    def check(self, template: str, argv: list[str]) -> Any:
        a, b = yield cluster(self, 2)
        web_port, port = free_port(), free_port()
        source = template.format(
            doc=DOC, seed=f"127.0.0.1:{a.tcp_port}", web_port=web_port, port=port
        )
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "recipe.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        child = Child(self, [*argv, path])
        node_id = f"127.0.0.1:{port}"
        everyone = sorted([a.id, b.id, node_id])
        poller = MembersPoller(web_port)
        yield wait_until(
            lambda: poller.shows(everyone),
            timeout=60,
            what=lambda: f"/members; {poller.last()}; output:\n{child.output()}",
        )
        self.assertIn(child.stop(), (0, -signal.SIGTERM))
        # it said goodbye as it stopped
        yield wait_until(lambda: a.peer(node_id).status != "alive", what="goodbye")

    def test_tac_under_twistd(self) -> Any:
        tac = runnable("service.Application")
        return self.check(tac, [TWISTD, "-n", "--pidfile=", "-y"])

    def test_own_reactor(self) -> Any:
        return self.check(runnable("reactor.run()"), [sys.executable])

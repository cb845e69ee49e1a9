"""docs/handlers.md: its examples run, its tables match the code."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from pokan import Server
from pokan.commands import CommandHandler, CommandSpec, event_environment
from pokan.events import ALL_EVENTS
from pokan.interfaces import HANDLER_METHODS
from tests.handler_support import EXAMPLES, ROOT, cluster, free_port, wait_until
from tests.handler_support import reactor as global_reactor
from tests.test_commands import FakeProcessReactor, StubPeer

DOC = os.path.join(ROOT, "docs", "handlers.md")


def blocks(language: str) -> list[str]:
    with open(DOC, encoding="utf-8") as f:
        return re.findall(rf"```{language}\n(.*?)```", f.read(), flags=re.S)


def doc_text() -> str:
    with open(DOC, encoding="utf-8") as f:
        return f.read()


class HandlersDocTests(unittest.TestCase):
    def test_handler_object_example_runs(self) -> None:
        inventory, _web = blocks("python")
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
    def test_web_and_pokan_side_by_side(self) -> None:
        _inventory, recipe = blocks("python")
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
        agent = Agent(global_reactor())
        url = f"http://127.0.0.1:{port}/members".encode()
        answers: list[Any] = []

        @defer.inlineCallbacks
        def ask() -> Any:
            response = yield agent.request(b"GET", url)
            answers.append(json.loads((yield readBody(response))))

        def all_three() -> Any:
            if answers and answers[-1] == everyone:
                return True
            if len(answers) < 500:
                ask()
            return False

        yield wait_until(all_three, what=lambda: f"members; last: {answers[-1:]}")

"""Every curl example of docs/control-api.md, run against a real node."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from twisted.internet import defer, utils
from twisted.trial import unittest

from tests.support import ROOT, free_port, global_reactor, start_server, wait_until

DOC = os.path.join(ROOT, "docs", "control-api.md")


def examples() -> list[tuple[str, str, str]]:
    """(command, output kind, documented output) of each ```sh block."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    pattern = r"```sh\n(.*?)```\n```(json|text)\n(.*?)```"
    return [(c.strip(), k, o) for c, k, o in re.findall(pattern, text, flags=re.S)]


class ControlApiDocTests(unittest.TestCase):
    timeout = 60

    def test_every_sh_block_has_its_output(self) -> None:
        with open(DOC, encoding="utf-8") as f:
            blocks = f.read().count("```sh\n")
        self.assertEqual(len(examples()), blocks)
        self.assertGreaterEqual(blocks, 12)

    def test_every_setting_of_info_is_documented(self) -> None:
        """The names docs/control-api.md lists are those GET /v1/info shows."""
        from pokan import Server
        from pokan.control import views

        with open(DOC, encoding="utf-8") as f:
            text = f.read()
        listed = text.split("`settings` holds every setting of the node:", 1)[1]
        listed = listed.split(", named as", 1)[0]
        names = set(re.findall(r"`(\w+)`", listed))
        shown = views.settings(Server("127.0.0.1", tcp_port=0, udp_port=0))
        self.assertEqual(names, set(shown))

    @defer.inlineCallbacks
    def test_examples_run_as_documented(self) -> Any:
        ports = [free_port() for _ in range(3)]
        a = yield start_server(
            self, tcp_port=ports[0], udp_port=ports[0], control="127.0.0.1:0"
        )
        b = yield start_server(self, tcp_port=ports[1], udp_port=ports[1])
        c = yield start_server(
            self,
            tcp_port=ports[2],
            udp_port=ports[2],
            gossip_with=f"127.0.0.1:{ports[0]}",
        )
        yield wait_until(lambda: a.peer(c.id) is not None)
        yield c.stopService()
        yield wait_until(lambda: (p := a.peer(c.id)) is not None and p.is_left)
        control = a.control_address
        assert control is not None
        names = {
            "http://127.0.0.1:7373": control,
            "127.0.0.1:5555": a.id,
            "127.0.0.1:5556": b.id,
            "127.0.0.1:5557": c.id,
        }
        for command, kind, documented in examples():
            for old, new in names.items():
                command = command.replace(old, new)
            if kind == "text":  # the event stream: an event while it runs
                global_reactor().callLater(0.7, a.store, "role", "web")
            out, err, code = yield utils.getProcessOutputAndValue(
                "/bin/sh", ["-c", command], env=os.environ
            )
            text = out.decode()
            if kind == "text":
                self.assertIn(": pokan event stream", text, command)
                self.assertIn("event: new_key", text, command)
                data = json.loads(text.split("data: ", 1)[1].splitlines()[0])
                self.assertEqual(set(data), set(_first_data(documented)), command)
                continue
            self.assertEqual(code, 0, (command, err))
            got = json.loads(text)
            shape = json.loads(documented)
            self.assertEqual(set(got), set(shape), (command, text))
            if "error" not in shape:
                self.assertNotIn("error", got, command)
        self.assertEqual(a.value("colour"), "blue")
        self.assertIsNone(a.value("blob"))
        self.assertIsNone(a.peer(c.id))
        self.assertIsNotNone(a.peer(b.id))


def _first_data(documented: str) -> dict[str, Any]:
    return dict(json.loads(documented.split("data: ", 1)[1].splitlines()[0]))

"""The ``pokan`` control commands where no node answers, or the input is bad.

These run the command in-process with click's CliRunner: nothing here needs
a reactor (the commands block on their sockets, and no node runs).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from click.testing import CliRunner, Result
from twisted.trial import unittest

from pokan.control import render
from pokan.control.cli import main
from pokan.control.client import (
    ApiError,
    ControlClient,
    NoNode,
    NotPokan,
    Target,
    decode_value,
    encode_value,
    parse_target,
)
from pokan.control.feed import FEED_EVENTS
from pokan.errors import ConfigurationError
from tests.support import free_port, temp_dir

#: every control command, with arguments it would accept
COMMANDS = [
    ["members"],
    ["get", "color"],
    ["set", "color", "blue"],
    ["delete", "color"],
    ["keys"],
    ["watch"],
    ["join", "127.0.0.1:5555"],
    ["forget", "127.0.0.1:5556"],
    ["info"],
]


def invoke(*args: str, **env: str) -> Result:
    clean = {"POKAN_CONTROL": None, "POKAN_TOKEN_FILE": None, **env}
    return CliRunner().invoke(main, list(args), env=clean, prog_name="pokan")


class NoNodeTests(unittest.TestCase):
    def test_every_command_says_no_node_answers_and_exits_3(self) -> None:
        target = f"127.0.0.1:{free_port()}"
        for args in COMMANDS:
            result = invoke(*args, "--control", target)
            self.assertEqual(result.exit_code, 3, (args, result.output))
            first = result.stderr.splitlines()[0]
            self.assertEqual(
                first,
                f"no pokan node at {target}: is one running? start one with"
                f" twistd -n pokan --address ... --control {target}",
            )
            self.assertEqual(result.stdout, "")

    def test_the_default_address_message_is_exactly_the_documented_one(self) -> None:
        self.assertEqual(
            str(NoNode(parse_target("127.0.0.1:7373"), "refused")),
            "no pokan node at 127.0.0.1:7373: is one running? start one with"
            " twistd -n pokan --address ...",
        )

    def test_control_from_the_environment(self) -> None:
        target = f"127.0.0.1:{free_port()}"
        result = invoke("members", POKAN_CONTROL=target)
        self.assertEqual(result.exit_code, 3)
        self.assertIn(f"no pokan node at {target}:", result.stderr)

    def test_a_unix_socket_that_is_not_there(self) -> None:
        path = os.path.join(temp_dir(self), "control.sock")
        result = invoke("info", "--control", f"unix:{path}")
        self.assertEqual(result.exit_code, 3, result.output)
        self.assertIn(f"no pokan node at unix:{path}: is one running?", result.stderr)

    def test_wait_times_out_with_exit_1(self) -> None:
        target = f"127.0.0.1:{free_port()}"
        result = invoke(
            "wait", "--members", "2", "--timeout", "0.3", "--control", target
        )
        self.assertEqual(result.exit_code, 1, result.output)
        self.assertIn("timed out after 0.3s: no pokan node at", result.stderr)


class UsageTests(unittest.TestCase):
    def assert_usage(self, result: Result, *text: str) -> None:
        self.assertEqual(result.exit_code, 2, result.output)
        flat = " ".join(result.stderr.split())
        for part in text:
            self.assertIn(part, flat)

    def test_set_needs_a_value_or_a_file_not_both(self) -> None:
        self.assert_usage(invoke("set", "color"), "give either VALUE or --file PATH")
        path = os.path.join(temp_dir(self), "v")
        with open(path, "w") as f:
            f.write("x")
        self.assert_usage(
            invoke("set", "color", "blue", "--file", path), "give either VALUE"
        )
        self.assert_usage(
            invoke("set", "color", "--file", path + ".missing"),
            "--file",
            "No such file",
        )

    def test_a_file_over_the_read_limit_says_the_real_limit(self) -> None:
        path = os.path.join(temp_dir(self), "big")
        with open(path, "wb") as f:
            f.write(b"x" * (1024 * 1024 + 1))
        self.assert_usage(
            invoke("set", "big", "--file", path),
            "--file",
            "over 1048576 bytes, the most read",
            "default --max-datagram 1400",
        )

    def test_an_empty_key_is_a_bad_argument(self) -> None:
        """Refused before any request (the API would answer for /v1/keys/)."""
        for args in (("set", "", "v"), ("get", ""), ("delete", "")):
            self.assert_usage(invoke(*args), "KEY", "the key is empty")

    def test_bad_control_addresses(self) -> None:
        for bad in ("no such host", "127.0.0.1:99999", "unix:", "[::1"):
            self.assert_usage(invoke("members", "--control", bad), "--control")

    def test_bad_token_files(self) -> None:
        folder = temp_dir(self)
        missing = os.path.join(folder, "missing")
        self.assert_usage(invoke("members", "--token-file", missing), "cannot read")
        empty = os.path.join(folder, "empty")
        open(empty, "w").close()
        self.assert_usage(invoke("members", "--token-file", empty), "holds no token")

    def test_wait_needs_a_positive_count(self) -> None:
        self.assert_usage(invoke("wait"), "--members")
        self.assert_usage(invoke("wait", "--members", "0"), "--members")
        self.assert_usage(
            invoke("wait", "--members", "2", "--timeout", "-1"), "--timeout"
        )

    def test_join_needs_host_port(self) -> None:
        self.assert_usage(invoke("join", "not a host"), "HOST:PORT")
        self.assert_usage(invoke("join", "127.0.0.1:70000"), "HOST:PORT")

    def test_members_filters_are_checked(self) -> None:
        self.assert_usage(invoke("members", "--status", "sleepy"), "--status")
        self.assert_usage(invoke("members", "--role", "king"), "--role")

    def test_unknown_command(self) -> None:
        self.assertEqual(invoke("memberz").exit_code, 2)

    def test_watch_an_unknown_event_is_a_usage_error(self) -> None:
        """Checked before any request: exit 2 though no node answers there."""
        target = f"127.0.0.1:{free_port()}"
        for args in (("bogus",), ("new_key", "bogus")):
            self.assert_usage(
                invoke("watch", *args, "--control", target),
                "unknown event 'bogus'",
                "events are: new_key, key_changed",
                "before_gossip",
            )


class WatchTests(unittest.TestCase):
    """What ``pokan watch`` asks the node for (the client's stream is faked)."""

    def asked_for(self, *args: str) -> tuple[str, ...]:
        asked: list[tuple[str, ...]] = []

        def events(
            client: ControlClient, names: tuple[str, ...] = ()
        ) -> Iterator[tuple[str, dict[str, Any]]]:
            asked.append(tuple(names))
            yield "new_key", {"event": "new_key", "time": 1.0, "node": "n", "key": "k"}

        self.patch(ControlClient, "events", events)
        result = invoke("watch", *args)
        self.assertEqual(result.exit_code, 0, result.output)
        self.assertIn("new_key", result.stdout)
        (names,) = asked
        return names

    def test_no_names_follow_the_dashboards_feed(self) -> None:
        self.assertEqual(self.asked_for(), FEED_EVENTS)
        self.assertNotIn("before_gossip", FEED_EVENTS)
        self.assertNotIn("after_gossip", FEED_EVENTS)
        self.assertIn("peer_dead", FEED_EVENTS)

    def test_names_given_are_asked_for_gossip_rounds_included(self) -> None:
        self.assertEqual(
            self.asked_for("before_gossip", "after_gossip"),
            ("before_gossip", "after_gossip"),
        )
        self.assertEqual(self.asked_for("--json", "key_changed"), ("key_changed",))


class TokenTests(unittest.TestCase):
    """A token refused (HTTP 401): the message says where the token comes from."""

    def refused(self, *args: str, **env: str) -> Result:
        def request(client: ControlClient, *_: Any, **__: Any) -> dict[str, Any]:
            raise ApiError(401, "wrong token in the Authorization header")

        self.patch(ControlClient, "request", request)
        result = invoke("info", *args, **env)
        self.assertEqual(result.exit_code, 4, result.output)
        return result

    def test_no_token_names_the_option_and_the_environment_variable(self) -> None:
        message = " ".join(self.refused().stderr.split())
        self.assertIn("needs a token, and none was given", message)
        self.assertIn("--token-file FILE", message)
        self.assertIn("POKAN_TOKEN_FILE=FILE", message)
        self.assertIn("--control-token-file", message)
        self.assertTrue(message.endswith("(HTTP 401)"), message)

    def test_a_wrong_token_names_the_file_it_came_from(self) -> None:
        path = os.path.join(temp_dir(self), "token")
        with open(path, "w") as f:
            f.write("not-the-token-0123456789\n")
        for result in (
            self.refused("--token-file", path),
            self.refused(POKAN_TOKEN_FILE=path),
        ):
            message = " ".join(result.stderr.split())
            self.assertIn("wrong token", message)
            self.assertIn(f"{path} (--token-file or POKAN_TOKEN_FILE)", message)


class CompletionTests(unittest.TestCase):
    def test_bash_source_gives_a_completion_script(self) -> None:
        result = invoke(_POKAN_COMPLETE="bash_source")
        self.assertEqual(result.exit_code, 0)
        self.assertIn("_pokan_completion", result.output)

    def test_commands_and_event_names_complete(self) -> None:
        result = invoke(
            _POKAN_COMPLETE="bash_complete", COMP_WORDS="pokan mem", COMP_CWORD="1"
        )
        self.assertIn("members", result.output)
        result = invoke(
            _POKAN_COMPLETE="bash_complete",
            COMP_WORDS="pokan watch peer_",
            COMP_CWORD="2",
        )
        self.assertIn("peer_joined", result.output)
        self.assertIn("peer_dead", result.output)
        self.assertNotIn("new_key", result.output)


class ClientPartsTests(unittest.TestCase):
    def test_targets(self) -> None:
        self.assertEqual(parse_target("127.0.0.1:7374"), Target("127.0.0.1", 7374))
        self.assertEqual(parse_target("localhost"), Target("localhost", 7373))
        self.assertEqual(parse_target("[::1]:7373"), Target("::1", 7373))
        self.assertEqual(str(Target("::1", 7373)), "[::1]:7373")
        self.assertEqual(parse_target("unix:/run/p.sock"), Target(path="/run/p.sock"))
        self.assertEqual(str(parse_target("unix:/run/p.sock")), "unix:/run/p.sock")
        with self.assertRaises(ConfigurationError):
            parse_target("unix:")

    def test_values_round_trip(self) -> None:
        for value in ("blue", "", "é\n", b"\x00\xff", b""):
            self.assertEqual(decode_value(encode_value(value)), value)
        self.assertEqual(encode_value(b"\xff"), {"value": "/w==", "type": "bytes"})
        for bad in (
            {"value": 3, "type": "str"},
            {"value": "x", "type": "int"},
            {"value": "!!", "type": "bytes"},
            {},
        ):
            with self.assertRaises(NotPokan):
                decode_value(bad)

    def test_rendering(self) -> None:
        self.assertEqual(render.seconds(0.42), "0.4s")
        self.assertEqual(render.seconds(75), "1m15s")
        self.assertEqual(render.seconds(7300), "2h1m")
        self.assertEqual(render.seconds(None), "-")
        self.assertEqual(render.short_value(b"\x00" * 12), "<12 bytes>")
        self.assertEqual(render.short_value("a\nb"), "'a\\nb'")
        self.assertEqual(render.short_value("x" * 100), "x" * 45 + "...")
        self.assertEqual(render.detector({"kind": "phi", "phi": 0.25}), "phi 0.25")
        self.assertEqual(
            render.detector({"kind": "phi", "phi": 1.0, "threshold": 8.0}),
            "phi 1 (dead at 8)",
        )
        self.assertEqual(
            render.detector({"kind": "phi", "phi": None, "threshold": 8.0}),
            "phi never heard (dead at 8)",
        )
        self.assertEqual(
            render.detector({"kind": "swim", "suspect": False, "incarnation": 3}),
            "swim incarnation=3 suspect=False",
        )
        self.assertEqual(
            render.columns([("a", "bb"), ("ccc", "d")], ("H1", "H2")),
            "H1   H2\na    bb\nccc  d",
        )
        self.assertEqual(render.text_or_bytes(b"\xffx"), b"\xffx")
        self.assertEqual(render.text_or_bytes("é".encode()), "é")

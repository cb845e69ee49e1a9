"""Every ``pokan`` control command against real nodes on loopback.

The nodes run in the test's reactor with their control API on a free port;
the command runs as a child process (tests/clirun.py), as a user runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from pokan import wire
from pokan.control.feed import FEED_EVENTS
from tests.clirun import POKAN_SCRIPT, Done, pokan, pokan_process
from tests.support import (
    free_port,
    global_reactor,
    start_cluster,
    start_server,
    temp_dir,
    wait_until,
)


def control_of(server: Any) -> str:
    """The --control value of a node: ``127.0.0.1:PORT`` or ``unix:/path``."""
    address: str = server.control_address
    return address.removeprefix("http://")


def alive_everywhere(servers: list[Any]) -> bool:
    return all(len(s.peers("alive")) == len(servers) - 1 for s in servers)


@defer.inlineCallbacks
def cluster(test: unittest.TestCase, n: int, **kwargs: Any) -> Any:
    """``n`` nodes with control APIs, every one alive to every other."""
    kwargs.setdefault("control", "127.0.0.1:0")
    servers = yield start_cluster(test, n, **kwargs)
    if n > 1:
        yield wait_until(lambda: alive_everywhere(servers), timeout=20)
    return servers


class CliTestCase(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def run_ok(self, *args: str, **kw: Any) -> Any:
        done: Done = yield pokan(*args, **kw)
        self.assertEqual(done.code, 0, done.describe())
        return done

    @defer.inlineCallbacks
    def run_fails(self, code: int, *args: str, **kw: Any) -> Any:
        done: Done = yield pokan(*args, **kw)
        self.assertEqual(done.code, code, done.describe())
        self.assertEqual(done.out, b"", done.describe())
        return done


class MembersAndWaitTests(CliTestCase):
    @defer.inlineCallbacks
    def test_members_as_a_table_and_as_json(self) -> Any:
        servers = yield cluster(self, 3)
        me = servers[0]
        done = yield self.run_ok("members", "--control", control_of(me))
        lines = done.text.splitlines()
        self.assertEqual(lines[0].split()[:3], ["NODE", "STATUS", "ROLE"])
        self.assertEqual(len(lines), 4, done.text)
        rows = {line.split()[0]: line for line in lines[1:]}
        self.assertEqual(set(rows), {s.id for s in servers})
        self.assertIn(f"{me.id} (this node) ", rows[me.id])
        for line in rows.values():
            self.assertIn(" alive ", line)
        done = yield self.run_ok("members", "--json", "--control", control_of(me))
        members = json.loads(done.text)["members"]
        self.assertEqual({m["id"] for m in members}, {s.id for s in servers})
        self.assertEqual([m["me"] for m in members if m["id"] == me.id], [True])
        done = yield self.run_ok(
            "members", "--status", "dead", "--json", "--control", control_of(me)
        )
        self.assertEqual(json.loads(done.text), {"members": []})

    @defer.inlineCallbacks
    def test_members_after_a_node_stops(self) -> Any:
        servers = yield cluster(self, 3)
        yield servers[2].stopService()
        yield wait_until(lambda: servers[0].peers("left"), timeout=20)
        done = yield self.run_ok(
            "members", "--status", "left", "--control", control_of(servers[0])
        )
        (row,) = done.text.splitlines()[1:]
        self.assertTrue(row.startswith(servers[2].id), row)
        # a node that left: no detector claims it alive
        self.assertNotIn("status=alive", row)
        self.assertEqual(row.split()[-1], "-", row)

    @defer.inlineCallbacks
    def test_wait_for_members_and_its_timeout(self) -> Any:
        servers = yield cluster(self, 3)
        target = control_of(servers[1])
        done = yield self.run_ok(
            "wait", "--members", "3", "--timeout", "20", "--control", target
        )
        self.assertEqual(done.text, "3 members alive\n")
        done = yield self.run_fails(
            1, "wait", "--members", "4", "--timeout", "0.5", "--control", target
        )
        self.assertEqual(done.error, "timed out after 0.5s: 3 of 4 members alive\n")

    @defer.inlineCallbacks
    def test_wait_for_a_node_that_is_not_up_yet(self) -> Any:
        port = free_port()
        waiting = pokan(
            "wait",
            "--members",
            "1",
            "--timeout",
            "30",
            "--control",
            f"127.0.0.1:{port}",
        )
        yield start_server(self, control=f"127.0.0.1:{port}")
        done = yield waiting
        self.assertEqual(done.code, 0, done.describe())


class KeyTests(CliTestCase):
    @defer.inlineCallbacks
    def test_set_get_delete_text(self) -> Any:
        (node,) = yield cluster(self, 1)
        target = control_of(node)
        done = yield self.run_ok("set", "color", "blue", "--control", target)
        self.assertEqual(done.text, f"set color = blue on {node.id} (version 1)\n")
        self.assertEqual(node.value("color"), "blue")
        done = yield self.run_ok("get", "color", "--control", target)
        self.assertEqual(done.out, b"blue\n")
        done = yield self.run_ok("get", "color", "--json", "--control", target)
        item = json.loads(done.text)
        self.assertEqual(
            (item["node"], item["key"], item["value"], item["type"]),
            (node.id, "color", "blue", "str"),
        )
        self.assertEqual(item["timestamp"], node.timestamp("color"))
        done = yield self.run_ok("delete", "color", "--control", target)
        self.assertEqual(done.text, f"deleted color on {node.id}\n")
        self.assertIsNone(node.value("color"))
        done = yield self.run_fails(1, "get", "color", "--control", target)
        self.assertIn("color", done.error)
        yield self.run_fails(1, "delete", "color", "--control", target)

    @defer.inlineCallbacks
    def test_bytes_stay_bytes(self) -> Any:
        (node,) = yield cluster(self, 1)
        target = control_of(node)
        raw = b"\x89PNG\r\n\x00\xff"
        done = yield self.run_ok(
            "set", "logo", "--file", "-", "--control", target, stdin=raw
        )
        self.assertIn("<8 bytes>", done.text)
        self.assertEqual(node.value("logo"), raw)
        done = yield self.run_ok("get", "logo", "--control", target)
        self.assertEqual(done.out, raw)
        # text from a file is text; --bytes keeps it bytes
        path = os.path.join(temp_dir(self), "motd")
        with open(path, "wb") as f:
            f.write("héllo\n".encode())
        yield self.run_ok("set", "motd", "--file", path, "--control", target)
        self.assertEqual(node.value("motd"), "héllo\n")
        yield self.run_ok("set", "motd", "--file", path, "--bytes", "--control", target)
        self.assertEqual(node.value("motd"), "héllo\n".encode())
        yield self.run_ok("set", "word", "ok", "--bytes", "--control", target)
        self.assertEqual(node.value("word"), b"ok")

    @defer.inlineCallbacks
    def test_keys_of_the_cluster_and_of_one_node(self) -> Any:
        a, b = yield cluster(self, 2)
        yield a.store("color", "blue")
        yield b.store("color", "green")
        yield b.store("size", b"\x00\x01")
        yield wait_until(
            lambda: (p := a.peer(b.id)) is not None and p.value("size"), timeout=20
        )
        done = yield self.run_ok("keys", "--control", control_of(a))
        rows = [line.split()[:3] for line in done.text.splitlines()[1:]]
        self.assertEqual(
            sorted(rows),
            sorted(
                [
                    [a.id, "color", "blue"],
                    [b.id, "color", "green"],
                    [b.id, "size", "<2"],
                ]
            ),
        )
        done = yield self.run_ok(
            "keys", "--node", b.id, "--json", "--control", control_of(a)
        )
        keys = json.loads(done.text)["keys"]
        self.assertEqual(
            {(k["key"], k["type"]) for k in keys}, {("color", "str"), ("size", "bytes")}
        )
        done = yield self.run_ok(
            "get", "color", "--node", b.id, "--control", control_of(a)
        )
        self.assertEqual(done.text, "green\n")
        yield self.run_fails(
            1, "keys", "--node", "127.0.0.1:1", "--control", control_of(a)
        )
        yield self.run_fails(
            1, "get", "color", "--node", "127.0.0.1:1", "--control", control_of(a)
        )

    @defer.inlineCallbacks
    def test_keys_follows_pages(self) -> Any:
        (node,) = yield cluster(self, 1)
        yield defer.gatherResults([node.store(f"k{i:04}", str(i)) for i in range(1200)])
        done = yield self.run_ok("keys", "--json", "--control", control_of(node))
        keys = json.loads(done.text)["keys"]
        self.assertEqual(len(keys), 1200)
        self.assertEqual(len({k["key"] for k in keys}), 1200)

    @defer.inlineCallbacks
    def test_keys_and_values_over_the_limits_are_refused(self) -> Any:
        (node,) = yield cluster(self, 1)
        target = control_of(node)
        done = yield self.run_fails(
            4, "set", "k" * (wire.MAX_KEY_LEN + 1), "v", "--control", target
        )
        self.assertIn("(HTTP 422)", done.error)
        done = yield self.run_fails(
            4, "set", "big", "--file", "-", "--control", target, stdin=b"x" * 100_000
        )
        self.assertIn("(HTTP 4", done.error)
        self.assertEqual(node.keys(), [])


class WatchTests(CliTestCase):
    @defer.inlineCallbacks
    def test_watch_prints_events_until_interrupted(self) -> Any:
        (node,) = yield cluster(self, 1)
        for args in ((), ("--json",)):
            process = pokan_process(
                "watch", "new_key", "key_changed", *args, "--control", control_of(node)
            )
            self.addCleanup(process.kill)
            n = [0]

            def seen(process: Any = process, n: list[int] = n) -> bool:
                n[0] += 1
                node.store("tick", str(n[0]))  # until watch shows one
                return (
                    b"key_changed" in process.output() or b"new_key" in process.output()
                )

            yield wait_until(seen, timeout=20, interval=0.1)
            done = yield process.interrupt()
            self.assertEqual(done.code, 0, done.describe())
            first = done.text.splitlines()[0]
            if args:
                data = json.loads(first)
                self.assertIn(data["event"], ("new_key", "key_changed"))
                self.assertEqual((data["key"], data["node"]), ("tick", node.id))
            else:
                self.assertRegex(first, rf" (new_key|key_changed) {node.id} tick=\d+$")

    @defer.inlineCallbacks
    def test_watch_without_names_leaves_the_gossip_rounds_out(self) -> Any:
        a, _ = yield cluster(self, 2, idle_interval=0.05)  # a round every 50 ms
        rounds = [0]
        a.after("gossip", lambda: rounds.__setitem__(0, rounds[0] + 1))
        process = pokan_process("watch", "--json", "--control", control_of(a))
        self.addCleanup(process.kill)
        n = [0]

        def connected() -> bool:
            n[0] += 1
            a.store("tick", str(n[0]))
            return b'"tick"' in process.output()

        yield wait_until(connected, timeout=20, interval=0.1)
        seen = rounds[0]
        yield wait_until(lambda: rounds[0] >= seen + 5, timeout=20)
        yield a.store("last", "one")
        yield wait_until(lambda: b'"last"' in process.output(), timeout=20)
        done = yield process.interrupt()
        events = {json.loads(line)["event"] for line in done.text.splitlines()}
        self.assertIn("new_key", events)
        self.assertEqual(events - set(FEED_EVENTS), set(), done.text)
        # named, the gossip rounds are shown
        process = pokan_process(
            "watch", "before_gossip", "--json", "--control", control_of(a)
        )
        self.addCleanup(process.kill)
        yield wait_until(lambda: b"before_gossip" in process.output(), timeout=20)
        done = yield process.interrupt()
        events = {json.loads(line)["event"] for line in done.text.splitlines()}
        self.assertEqual(events, {"before_gossip"})

    @defer.inlineCallbacks
    def test_watch_ends_with_3_when_the_node_stops(self) -> Any:
        (node,) = yield cluster(self, 1)
        process = pokan_process("watch", "--control", control_of(node))
        self.addCleanup(process.kill)
        n = [0]

        def connected() -> bool:
            n[0] += 1
            node.store("tick", str(n[0]))
            return b"tick" in process.output()

        yield wait_until(connected, timeout=20, interval=0.1)
        yield node.stopService()
        done = yield process.done
        self.assertEqual(done.code, 3, done.describe())
        # it saw the shutdown event: the node stopped, no "start one" advice
        # (and the node still says where its control API was)
        self.assertIn(f"the node at {control_of(node)} stopped", done.describe())
        self.assertNotIn("start one with", done.describe())


class JoinForgetInfoTests(CliTestCase):
    @defer.inlineCallbacks
    def test_join_makes_two_nodes_one_cluster(self) -> Any:
        a = yield start_server(self, control="127.0.0.1:0")
        b = yield start_server(self, control="127.0.0.1:0")
        done = yield self.run_ok(
            "join", f"127.0.0.1:{b.tcp_port}", "--control", control_of(a)
        )
        self.assertEqual(done.text, f"joined {b.id} at 127.0.0.1:{b.tcp_port}\n")
        self.assertIsNotNone(a.peer(b.id))
        # a port held but not listening: refused, and no other test's node
        # can take it meanwhile (as it could a port found free)
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(held.close)
        held.bind(("127.0.0.1", 0))
        done = yield self.run_fails(
            1, "join", f"127.0.0.1:{held.getsockname()[1]}", "--control", control_of(a)
        )
        self.assertIn("(HTTP 502)", done.error)

    @defer.inlineCallbacks
    def test_forget_a_left_node_and_refuse_a_live_one(self) -> Any:
        a, b, c = yield cluster(self, 3)
        target = control_of(a)
        done = yield self.run_fails(4, "forget", b.id, "--control", target)
        self.assertIn("--force", done.error)
        self.assertIn("(HTTP 409)", done.error)
        self.assertIsNotNone(a.peer(b.id))
        yield self.run_fails(1, "forget", "127.0.0.1:1", "--control", target)
        yield self.run_fails(4, "forget", a.id, "--control", target)
        yield c.stopService()
        yield wait_until(
            lambda: (p := a.peer(c.id)) is not None and p.status == "left", timeout=20
        )
        done = yield self.run_ok("forget", c.id, "--control", target)
        self.assertEqual(done.text, f"forgot {c.id}\n")
        self.assertIsNone(a.peer(c.id))
        done = yield self.run_ok(
            "forget", b.id, "--force", "--json", "--control", target
        )
        self.assertEqual(json.loads(done.text), {"forgotten": b.id})

    @defer.inlineCallbacks
    def test_info(self) -> Any:
        (node,) = yield cluster(self, 1)
        done = yield self.run_ok("info", "--control", control_of(node))
        lines = done.text.splitlines()
        self.assertEqual(lines[0].split(), ["node", node.id])
        self.assertIn("settings:", lines)
        self.assertIn("counters:", lines)
        self.assertTrue(any(line.split()[:1] == ["gossip_interval"] for line in lines))
        done = yield self.run_ok("info", "--json", "--control", control_of(node))
        info = json.loads(done.text)
        self.assertEqual(info["id"], node.id)
        self.assertEqual(info["counters"]["datagrams_sent"] >= 0, True)


class ConnectionTests(CliTestCase):
    @defer.inlineCallbacks
    def test_over_a_unix_socket(self) -> Any:
        # a socket path is short (107 bytes at most): not under _trial_temp
        folder = tempfile.mkdtemp(prefix="pokan-cli-")
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "control.sock")
        (node,) = yield cluster(self, 1, control=f"unix:{path}")
        yield self.run_ok("set", "color", "blue", "--control", f"unix:{path}")
        self.assertEqual(node.value("color"), "blue")
        done = yield self.run_ok("get", "color", POKAN_CONTROL=f"unix:{path}")
        self.assertEqual(done.text, "blue\n")

    @defer.inlineCallbacks
    def test_a_node_with_a_token(self) -> Any:
        folder = temp_dir(self)
        token_file = os.path.join(folder, "token")
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"s3cret-token-0123456789\n")
        os.close(fd)
        (node,) = yield cluster(self, 1, control_token_file=token_file)
        target = control_of(node)
        done = yield self.run_fails(4, "info", "--control", target)
        self.assertIn("(HTTP 401)", done.error)
        self.assertIn("--token-file FILE", done.error)
        self.assertIn("POKAN_TOKEN_FILE", done.error)
        wrong = os.path.join(folder, "wrong")
        with open(wrong, "w") as f:
            f.write("not-the-token-0123456789\n")
        done = yield self.run_fails(
            4, "info", "--control", target, "--token-file", wrong
        )
        self.assertIn("wrong token", done.error)
        yield self.run_ok("info", "--control", target, "--token-file", token_file)
        yield self.run_ok("members", "--control", target, POKAN_TOKEN_FILE=token_file)

    @defer.inlineCallbacks
    def test_something_else_on_the_port(self) -> Any:
        port = global_reactor().listenTCP(0, Site(Resource()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        done = yield self.run_fails(
            3, "members", "--control", f"127.0.0.1:{port.getHost().port}"
        )
        self.assertIn("is it a pokan control port?", done.error)

    @defer.inlineCallbacks
    def test_the_installed_console_script(self) -> Any:
        (node,) = yield cluster(self, 1)
        done = yield self.run_ok(
            "members", "--control", control_of(node), script=(POKAN_SCRIPT,)
        )
        self.assertIn(f"{node.id} (this node)", done.text)
        target = f"127.0.0.1:{free_port()}"
        done = yield self.run_fails(
            3, "info", "--control", target, script=(POKAN_SCRIPT,)
        )
        self.assertTrue(
            done.error.startswith(f"no pokan node at {target}: is one running?")
        )

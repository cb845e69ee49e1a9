"""The handler examples against real 3-node clusters on 127.0.0.1.

In process: docs/examples/on_event.sh as a command handler (environment,
stdin, order, timeouts, failures) and the members plugin as a handler
object. In a child ``twistd pokan``: the plugins loaded by --handler (the
example from a PYTHONPATH directory, ``log`` from the installed package) and
--on-event, and the startup errors for bad names and broken plugins.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pokan.daemon.commands import CommandHandler, CommandSpec
from tests.handler_support import (
    EXAMPLES,
    Logs,
    Twistd,
    cluster,
    converged,
    copy_example,
    free_port,
    read,
    run_twistd,
    wait_until,
)
from tests.handler_support import reactor as global_reactor

SCRIPT = os.path.join(EXAMPLES, "on_event.sh")
KEY_EVENTS = "new_key,key_changed,key_removed"


def load_members_example() -> Any:
    path = os.path.join(EXAMPLES, "handler_plugin", "pokan", "plugins", "members.py")
    spec = importlib.util.spec_from_file_location("members_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command(
    test: unittest.TestCase, spec: str, server: Any, **kw: Any
) -> CommandHandler:
    handler = CommandHandler(
        CommandSpec.parse(spec),
        global_reactor(),
        environ={**os.environ, **kw.pop("env", {})},
        **kw,
    )
    handler.attach(server)
    return handler


class OnEventScriptTests(unittest.TestCase):
    """docs/examples/on_event.sh on node A mirrors the keys of B and C."""

    @defer.inlineCallbacks
    def test_mirrors_values_env_and_stdin(self) -> None:
        mirror = os.path.abspath(self.mktemp())
        a, b, c = yield cluster(self, 3)
        command(self, f"{KEY_EVENTS}=sh {SCRIPT}", a, env={"POKAN_MIRROR": mirror})
        binary = bytes(range(256))
        yield b.store("service/web", binary)  # bytes reach stdin as they are
        yield c.store("role", "bäckend")  # str as UTF-8
        yield c.store("../escape", "no")  # cannot leave the mirror
        b_file = os.path.join(mirror, b.id, "service%2Fweb")
        c_file = os.path.join(mirror, c.id, "role")

        def mirrored() -> bool:
            try:
                with open(b_file, "rb") as f1, open(c_file, "rb") as f2:
                    return f1.read() == binary and f2.read() == "bäckend".encode()
            except FileNotFoundError:
                return False

        yield wait_until(mirrored, what="the values in the mirror")
        escape = os.path.join(mirror, c.id, "%2E.%2Fescape")
        yield wait_until(lambda: read(escape) == "no", what="the odd key")
        self.assertEqual(sorted(os.listdir(mirror)), sorted([b.id, c.id, "events.log"]))
        yield b.delete("service/web")
        yield wait_until(lambda: not os.path.exists(b_file), what="removal")
        log = os.path.join(mirror, "events.log")
        yield wait_until(lambda: "key_removed" in read(log), what="the event log")
        lines = [line.split() for line in read(log).splitlines()]
        self.assertEqual(
            [int(seq) for seq, *_ in lines], sorted(int(s[0]) for s in lines)
        )
        self.assertIn(["new_key", b.id, "service/web"], [line[1:] for line in lines])
        self.assertIn(["new_key", c.id, "role"], [line[1:] for line in lines])
        self.assertEqual(lines[-1][1:], ["key_removed", b.id, "service/web"])

    @defer.inlineCallbacks
    def test_key_filter_and_node_variables(self) -> None:
        out = os.path.abspath(self.mktemp())
        a, b, c = yield cluster(self, 3)
        command(
            self,
            f'new_key:service/*=echo "$POKAN_NODE $POKAN_PEER $POKAN_KEY'
            f' $POKAN_PEER_ADDRESS $POKAN_PEER_UDP_PORT $(cat)" >> {out}',
            a,
        )
        yield c.store("role", "ignored")
        yield c.store("service/db", "up")
        expected = f"{a.id} {c.id} service/db 127.0.0.1 {c.udp_port} up\n"
        yield wait_until(lambda: read(out) == expected, what=lambda: read(out))
        yield wait_until(lambda: converged([a, b, c]), what="convergence")
        self.assertEqual(read(out), expected, "the role key was filtered out")

    @defer.inlineCallbacks
    def test_runs_are_serialized_in_event_order(self) -> None:
        out = os.path.abspath(self.mktemp())
        [a, _b, _c] = yield cluster(self, 3)
        command(
            self,
            f"key_changed=echo start $POKAN_SEQ $(cat) >> {out}; sleep 0.05;"
            f" echo end $POKAN_SEQ >> {out}",
            a,
        )
        yield a.store("k", "v0")
        for i in range(1, 6):
            yield a.store("k", f"v{i}")
        yield wait_until(lambda: "end 5" in read(out), what=lambda: read(out))
        expected = []
        for i in range(1, 6):
            expected += [f"start {i} v{i}", f"end {i}"]
        self.assertEqual(read(out).splitlines(), expected)

    @defer.inlineCallbacks
    def test_timeout_kills_the_command_and_its_children(self) -> None:
        logs = Logs(self)
        out = os.path.abspath(self.mktemp())
        pid_file = os.path.abspath(self.mktemp())
        [a, *_] = yield cluster(self, 3)
        handler = command(
            self,
            f"new_key=if [ $POKAN_KEY = slow ]; then sleep 30 & echo $! > {pid_file};"
            f" wait; fi; echo ran $POKAN_KEY >> {out}",
            a,
            timeout=0.5,
            kill_grace=0.5,
        )
        yield a.store("slow", "x")
        yield a.store("fast", "y")
        yield wait_until(lambda: read(out) == "ran fast\n", what=lambda: read(out))
        self.assertEqual(handler.timed_out, 1)
        self.assertTrue(
            logs.matching("did not finish within 0.5 s; stopped (--handler-timeout")
        )
        sleeper = int(read(pid_file))
        yield wait_until(lambda: not _alive(sleeper), what="the sleep to be killed")

    @defer.inlineCallbacks
    def test_failures_are_logged_and_the_next_event_runs(self) -> None:
        logs = Logs(self)
        out = os.path.abspath(self.mktemp())
        [a, *_] = yield cluster(self, 3)
        handler = command(
            self,
            f'new_key=echo "cannot reload $POKAN_KEY" >&2;'
            f" echo $POKAN_KEY >> {out}; [ $POKAN_KEY != bad ] || exit 3",
            a,
        )
        yield a.store("bad", "x")
        yield a.store("good", "y")
        yield wait_until(lambda: read(out) == "bad\ngood\n", what=lambda: read(out))
        yield wait_until(lambda: handler.runs == 2 and not handler.busy)
        self.assertEqual(handler.failed, 1)
        self.assertEqual(len(logs.matching("exited with status 3")), 1)
        self.assertTrue(logs.matching("stderr: cannot reload bad"))

    @defer.inlineCallbacks
    def test_a_stuck_handler_never_delays_gossip(self) -> None:
        a, b, c = yield cluster(self, 3)
        handler = command(self, "new_key,key_changed=sleep 30", a, max_queue=2)
        for i in range(5):
            yield c.store(f"key{i}", "v")
            yield wait_until(lambda: converged([a, b, c]), what="convergence")
        self.assertEqual(handler.runs, 1, "the first command is still running")
        self.assertGreater(handler.dropped, 0)
        yield a.stopService()  # terminates the stuck command; does not wait 30 s
        self.assertTrue(handler.idle().called)


class MembershipCommandTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_membership_events_reach_commands(self) -> None:
        out = os.path.abspath(self.mktemp())
        a, _b, c = yield cluster(self, 3)
        command(
            self,
            "peer_joined,peer_left,peer_dead,peer_alive="
            f"echo $POKAN_EVENT $POKAN_PEER $POKAN_PEER_STATUS >> {out}",
            a,
        )
        yield c.stopService()  # a goodbye: the node left
        expected = f"peer_left {c.id} left\n"
        yield wait_until(lambda: read(out) == expected, what=lambda: read(out))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


class MembersPluginTests(unittest.TestCase):
    """The example plugin as an object on an embedded server."""

    @defer.inlineCallbacks
    def test_keeps_the_members_file(self) -> None:
        logs = Logs(self)
        members = load_members_example()
        path = os.path.abspath(self.mktemp())
        a, b, c = yield cluster(self, 3)
        a.add_handler(members.members.build(a, path))
        everyone = "".join(f"{n}\n" for n in sorted(s.id for s in (a, b, c)))
        yield wait_until(lambda: read(path) == everyone, what=lambda: read(path))
        self.assertTrue(logs.matching("member joined:", c.id))
        yield c.stopService()  # says goodbye: marked dead
        rest = "".join(f"{n}\n" for n in sorted(s.id for s in (a, b)))
        yield wait_until(lambda: read(path) == rest, what=lambda: read(path))
        self.assertTrue(logs.matching("member left:", c.id))

    def test_a_bad_file_is_refused_when_built(self) -> None:
        members = load_members_example()
        missing = os.path.join(os.path.abspath(self.mktemp()), "no", "members.txt")
        e = self.assertRaises(ValueError, members.members.build, None, missing)
        self.assertEqual(
            str(e),
            f"the members file's directory {os.path.dirname(missing)} does not"
            " exist; create it or name a file in an existing directory",
        )
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        e = self.assertRaises(ValueError, members.members.build, None, directory)
        self.assertIn("is a directory; name a file to write", str(e))

    def test_a_failed_write_changes_nothing_and_is_retried(self) -> None:
        logs = Logs(self)
        members = load_members_example()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "members.txt")
        server = FakeServer("10.0.0.1:5555", ["10.0.0.2:5555"])
        handler = members.members.build(server, path)
        os.rmdir(directory)  # gone after the check: the write fails
        self.assertRaises(FileNotFoundError, handler.start)
        self.assertEqual(handler.members, [])
        self.assertEqual(logs.matching("member joined"), [], "not before the file")
        os.makedirs(directory)
        handler.after_gossip()
        self.assertEqual(read(path), "10.0.0.1:5555\n10.0.0.2:5555\n")
        self.assertEqual(len(logs.matching("member joined")), 2)


class FakeServer:
    """What the members example uses of a Server: me.id and peers()."""

    def __init__(self, me: str, alive: list[str]) -> None:
        self.me = FakePeer(me)
        self.alive = [FakePeer(node) for node in alive]

    def peers(self, status: str) -> list[Any]:
        return self.alive


class FakePeer:
    def __init__(self, node_id: str) -> None:
        self.id = node_id


class TwistdTests(unittest.TestCase):
    """``twistd pokan --handler ... --on-event ...`` as users run it."""

    @defer.inlineCallbacks
    def test_plugins_and_command_handler_under_twistd(self) -> None:
        plugins = copy_example(self, "handler_plugin")
        script = copy_example(self, "on_event.sh")
        mirror = os.path.abspath(self.mktemp())
        members = os.path.abspath(self.mktemp())
        bye = os.path.abspath(self.mktemp())
        a, b = yield cluster(self, 2)
        port = free_port()
        node = Twistd(
            self,
            [
                "--address=127.0.0.1",
                f"--tcp-port={port}",
                f"--udp-port={port}",
                "--gossip-interval=0.05",
                f"--gossip-with=127.0.0.1:{a.tcp_port}",
                f"--handler=members={members}",
                "--handler=log=new_key",
                f"--on-event={KEY_EVENTS}=sh {script}",
                "--handler-timeout=5",
                f"--on-event=shutdown=echo bye $POKAN_NODE > {bye}",
                "--store=color=blue",
            ],
            PYTHONPATH=plugins,
            POKAN_MIRROR=mirror,
        )
        node_id = f"127.0.0.1:{port}"
        everyone = "".join(f"{n}\n" for n in sorted([a.id, b.id, node_id]))
        yield wait_until(
            lambda: read(members) == everyone,
            timeout=60,
            what=lambda: f"the members file; twistd said:\n{node.output()}",
        )
        yield b.store("service/web", "10.0.0.2:80")
        web = os.path.join(mirror, b.id, "service%2Fweb")
        yield wait_until(
            lambda: read(web) == "10.0.0.2:80",
            what=lambda: f"the mirror; twistd said:\n{node.output()}",
        )
        peer = yield wait_until(lambda: a.peer(node_id))
        yield wait_until(lambda: peer.value("color") == "blue", what="--store")
        output = node.output()
        self.assertIn(f"member joined: {b.id}", output)
        self.assertIn(
            f"event new_key: 'service/web', '10.0.0.2:80' (node {b.id})", output
        )
        yield b.stopService()
        rest = "".join(f"{n}\n" for n in sorted([a.id, node_id]))
        yield wait_until(lambda: read(members) == rest, what=lambda: read(members))
        # logged once the file says so: maybe not in the output yet
        yield wait_until(
            lambda: f"member left: {b.id}" in node.output(), what=node.output
        )
        # SIGTERM: a clean stop (twistd then exits by the same signal)
        self.assertIn(node.stop(), (0, -signal.SIGTERM))
        self.assertEqual(read(bye), f"bye {node_id}\n", "the shutdown command ran")

    def test_unknown_handler_lists_plugins_and_broken_modules(self) -> None:
        plugins = copy_example(self, "handler_plugin")
        broken_dir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(broken_dir, "pokan", "plugins"))
        with open(os.path.join(broken_dir, "pokan", "plugins", "oops.py"), "w") as f:
            f.write("import missing_dependency_of_oops\n")
        result = run_twistd(
            ["--address=127.0.0.1", "--handler=membres"],
            cwd=broken_dir,
            PYTHONPATH=f"{plugins}{os.pathsep}{broken_dir}",
        )
        self.assertNotEqual(result.returncode, 0)
        err = result.stdout + result.stderr
        self.assertIn("--handler membres: no handler plugin of that name", err)
        self.assertIn("members: Logs membership changes", err)
        self.assertIn("log: Logs every event", err)
        self.assertIn("oops.py", err)
        self.assertIn("No module named 'missing_dependency_of_oops'", err)

    @defer.inlineCallbacks
    def test_broken_plugin_modules_beside_are_one_line_each(self) -> None:
        root = os.path.abspath(self.mktemp())
        directory = os.path.join(root, "pokan", "plugins")
        os.makedirs(directory)
        example = copy_example(self, "handler_plugin")
        shutil.copy(os.path.join(example, "pokan", "plugins", "members.py"), directory)
        with open(os.path.join(directory, "oops.py"), "w") as f:
            f.write("import requests_not_here\n")
        with open(os.path.join(directory, "syntax.py"), "w") as f:
            f.write("def oops(:\n")
        members = os.path.join(root, "members.txt")
        port = free_port()
        node = Twistd(
            self,
            [
                "--address=127.0.0.1",
                f"--tcp-port={port}",
                f"--udp-port={port}",
                f"--handler=members={members}",
                "--handler=log=peer_dead",  # found too: still one line each
            ],
            PYTHONPATH=root,
        )
        yield wait_until(
            lambda: read(members) == f"127.0.0.1:{port}\n",
            what=lambda: f"the members file; twistd said:\n{node.output()}",
        )
        output = node.output()
        self.assertNotIn("Unhandled Error", output)
        self.assertNotIn("Traceback", output)
        broken = [line for line in output.splitlines() if "failed to load" in line]
        self.assertEqual(len(broken), 2, output)
        self.assertIn(
            f"handler plugin module {directory}/oops.py:1 failed to load:"
            " ModuleNotFoundError: No module named 'requests_not_here'",
            broken[0] + broken[1],
        )
        self.assertIn(f"{directory}/syntax.py:1 failed to load: SyntaxError:", output)
        self.assertIn(
            f"store: memory; handlers: members={members}, log=peer_dead", output
        )

    def test_members_with_a_missing_directory_stops_twistd(self) -> None:
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        result = run_twistd(
            [
                "--address=127.0.0.1",
                "--handler=members=/nonexistent/dir/members.txt",
            ],
            cwd=cwd,
            PYTHONPATH=copy_example(self, "handler_plugin"),
        )
        self.assertNotEqual(result.returncode, 0)
        err = result.stdout + result.stderr
        self.assertIn(
            " -n: --handler members: the members file's directory"
            " /nonexistent/dir does not exist; create it or name a file in an"
            " existing directory",
            err,
        )
        self.assertNotIn("Traceback", err)

    def test_bad_options_are_usage_errors(self) -> None:
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        cases = {
            "--on-event=key_chaged=./x": "unknown event 'key_chaged'",
            "--handler=os:path": "neither a handler plugin",
            "--handler-timeout=0": "--handler-timeout must be a positive number",
            "--handler=log=nope": "unknown events nope",
        }
        for option, message in cases.items():
            result = run_twistd(["--address=127.0.0.1", option], cwd=cwd)
            self.assertNotEqual(result.returncode, 0, option)
            self.assertIn(message, result.stdout + result.stderr, option)

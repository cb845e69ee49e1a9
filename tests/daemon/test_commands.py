"""Command handlers, driven with a fake process reactor and a Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet import error, task
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial import unittest

from pokan import Server
from pokan.daemon.commands import CommandHandler, CommandSpec, event_environment
from pokan.errors import ConfigurationError
from tests.support import LogCatcher


class FakeProcess:
    """What spawnProcess returns: records stdin, signals and closes."""

    def __init__(self, proto: Any, argv: list[str], env: dict[str, str]) -> None:
        self.proto = proto
        self.argv = argv
        self.env = env
        self.pid = 4242
        self.stdin = b""
        self.stdin_closed = False
        self.signals: list[str] = []
        self.lost = False
        proto.makeConnection(self)

    def write(self, data: bytes) -> None:
        self.stdin += data

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)

    def loseConnection(self) -> None:
        self.lost = True

    def exit(self, code: int = 0, signal: int | None = None) -> None:
        if code == 0 and signal is None:
            reason = Failure(error.ProcessDone(0))
        else:
            reason = Failure(error.ProcessTerminated(code or None, signal))
        self.proto.processExited(reason)
        self.proto.processEnded(reason)


class FakeProcessReactor(task.Clock):
    """A Clock whose spawnProcess records the protocol instead of forking."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[FakeProcess] = []
        self.fail_spawn = False

    def spawnProcess(
        self, proto: Any, executable: str, args: Any, env: Any = None, **kw: Any
    ) -> FakeProcess:
        if self.fail_spawn:
            raise OSError("no such program")
        process = FakeProcess(proto, list(args), dict(env))
        self.spawned.append(process)
        return process


LogLines = LogCatcher


class StubPeer:
    id = "10.0.0.9:5555"
    address = "10.0.0.9"
    tcp_port = 5555
    udp_port = 5556
    status = "alive"
    role = "peer"


def handler(
    spec: str = "key_changed=./reload.sh", **kw: Any
) -> tuple[CommandHandler, FakeProcessReactor]:
    reactor = FakeProcessReactor()
    kw.setdefault("setsid", None)
    kw.setdefault("environ", {"PATH": "/bin"})
    return CommandHandler(CommandSpec.parse(spec), reactor, **kw), reactor


class SpecTests(unittest.TestCase):
    def test_events_and_command(self) -> None:
        spec = CommandSpec.parse("key_changed,key_removed=./reload.sh --all")
        self.assertEqual(spec.events, ("key_changed", "key_removed"))
        self.assertEqual(spec.command, "./reload.sh --all")
        self.assertIsNone(spec.key_pattern)

    def test_command_may_contain_equals(self) -> None:
        spec = CommandSpec.parse("start=env A=1 ./run.sh")
        self.assertEqual(spec.command, "env A=1 ./run.sh")

    def test_key_pattern(self) -> None:
        spec = CommandSpec.parse("key_changed:service/*=./reload.sh")
        self.assertEqual(spec.key_pattern, "service/*")
        self.assertTrue(spec.wants("key_changed", "service/web"))
        self.assertFalse(spec.wants("key_changed", "role"))
        self.assertEqual(str(spec), "key_changed:service/*=./reload.sh")

    def test_errors_say_what_is_wrong(self) -> None:
        cases = {
            "key_changed": "EVENTS[:KEY_PATTERN]=COMMAND",
            "key_changed=": "EVENTS[:KEY_PATTERN]=COMMAND",
            "=./x": "EVENTS[:KEY_PATTERN]=COMMAND",
            "key_chnged=./x": "unknown event 'key_chnged'",
            "key_changed,=./x": "unknown event",
            "start:service/*=./x": "only to key events",
            "key_changed:=./x": "empty key pattern",
        }
        for text, message in cases.items():
            with self.assertRaises(ConfigurationError) as caught:
                CommandSpec.parse(text)
            self.assertIn(message, str(caught.exception), text)


class EnvironmentTests(unittest.TestCase):
    def test_key_event_str_value(self) -> None:
        env, stdin = event_environment(
            "key_changed", ("service/web", "héllo"), StubPeer(), "me:1"
        )
        self.assertEqual(stdin, "héllo".encode())
        self.assertEqual(env["POKAN_KEY"], "service/web")
        self.assertEqual(env["POKAN_VALUE_TYPE"], "str")
        self.assertEqual(env["POKAN_PEER"], "10.0.0.9:5555")
        self.assertEqual(env["POKAN_PEER_ADDRESS"], "10.0.0.9")
        self.assertEqual(env["POKAN_PEER_TCP_PORT"], "5555")
        self.assertEqual(env["POKAN_PEER_UDP_PORT"], "5556")
        self.assertEqual(env["POKAN_PEER_STATUS"], "alive")
        self.assertEqual(env["POKAN_PEER_ROLE"], "peer")
        self.assertEqual(env["POKAN_NODE"], "me:1")

    def test_bytes_value_as_is(self) -> None:
        env, stdin = event_environment("new_key", ("k", b"\x00\xff"), None, "me")
        self.assertEqual(stdin, b"\x00\xff")
        self.assertEqual(env["POKAN_VALUE_TYPE"], "bytes")
        self.assertNotIn("POKAN_PEER", env)

    def test_removed_key_has_empty_stdin(self) -> None:
        env, stdin = event_environment("key_removed", ("k", None), StubPeer(), "me")
        self.assertEqual(stdin, b"")
        self.assertEqual(env["POKAN_VALUE_TYPE"], "none")

    def test_peer_events_and_sync(self) -> None:
        env, _ = event_environment("after_gossip", (StubPeer(),), None, "me")
        self.assertEqual(env["POKAN_PEER"], "10.0.0.9:5555")
        env, _ = event_environment("before_sync", ("10.0.0.1:5555",), None, "me")
        self.assertEqual(env["POKAN_PEER"], "10.0.0.1:5555")
        env, _ = event_environment("start", (), None, "me")
        self.assertEqual(set(env), {"POKAN_EVENT", "POKAN_NODE"})


class RunnerTests(unittest.TestCase):
    def test_runs_through_the_shell_with_env_and_stdin(self) -> None:
        h, reactor = handler()
        reactor.advance(100)
        h.submit("key_changed", ("k", "v"), StubPeer())
        [process] = reactor.spawned
        self.assertEqual(process.argv, ["/bin/sh", "-c", "./reload.sh"])
        self.assertEqual(process.stdin, b"v")
        self.assertTrue(process.stdin_closed)
        self.assertEqual(process.env["PATH"], "/bin")
        self.assertEqual(process.env["POKAN_EVENT"], "key_changed")
        self.assertEqual(process.env["POKAN_SEQ"], "1")
        self.assertEqual(process.env["POKAN_DROPPED"], "0")
        self.assertEqual(float(process.env["POKAN_TIME"]), 100.0)

    def test_setsid_wraps_the_shell(self) -> None:
        h, reactor = handler(setsid="/usr/bin/setsid")
        h.submit("key_changed", ("k", "v"))
        self.assertEqual(
            reactor.spawned[0].argv, ["/usr/bin/setsid", "/bin/sh", "-c", "./reload.sh"]
        )

    def test_serialized_in_event_order(self) -> None:
        h, reactor = handler()
        for i in range(3):
            h.submit("key_changed", ("k", f"v{i}"))
        self.assertEqual(len(reactor.spawned), 1)
        self.assertEqual(h.waiting, 2)
        self.assertTrue(h.busy)
        reactor.spawned[0].exit(0)
        self.assertEqual(len(reactor.spawned), 2)
        reactor.spawned[1].exit(0)
        reactor.spawned[2].exit(0)
        self.assertEqual([p.stdin for p in reactor.spawned], [b"v0", b"v1", b"v2"])
        self.assertEqual([p.env["POKAN_SEQ"] for p in reactor.spawned], ["1", "2", "3"])
        self.assertEqual((h.runs, h.failed), (3, 0))
        self.assertFalse(h.busy)

    def test_key_filter(self) -> None:
        h, reactor = handler("key_changed:service/*=./x")
        h.submit("key_changed", ("role", "web"))
        self.assertEqual(reactor.spawned, [])
        h.submit("key_changed", ("service/web", "up"))
        self.assertEqual(len(reactor.spawned), 1)

    def test_nonzero_exit_and_stderr_logged(self) -> None:
        logs = LogLines(self)
        h, reactor = handler()
        h.submit("key_changed", ("k", "v"))
        process = reactor.spawned[0]
        process.proto.childDataReceived(2, b"oops: no con")
        process.proto.childDataReceived(2, b"fig\nsecond line")
        process.proto.childDataReceived(1, b"said this\n")
        process.exit(7)
        self.assertEqual(h.failed, 1)
        self.assertTrue(logs.matching("./reload.sh", "exited with status 7"))
        self.assertTrue(logs.matching("stderr: oops: no config"))
        self.assertTrue(logs.matching("stderr: second line"))
        self.assertTrue(logs.matching("./reload.sh", "said this"))

    def test_a_quiet_success_logs_nothing(self) -> None:
        """twistd shows every level: one line per successful run would flood it."""
        logs = LogLines(self)
        h, reactor = handler()
        for n in range(3):
            h.submit("key_changed", ("k", str(n)))
            reactor.spawned[-1].exit(0)
        self.assertEqual(len(reactor.spawned), 3)
        self.assertEqual(h.failed, 0)
        self.assertEqual(logs.matching("reload.sh"), [])

    def test_output_logging_is_bounded(self) -> None:
        logs = LogLines(self)
        h, reactor = handler()
        h.submit("key_changed", ("k", "v"))
        process = reactor.spawned[0]
        process.proto.childDataReceived(2, b"line\n" * 150)
        process.exit(0)
        self.assertEqual(len(logs.matching("stderr: line")), 100)
        self.assertTrue(logs.matching("50 more lines of stderr not logged"))

    def test_timeout_terminates_then_kills(self) -> None:
        logs = LogLines(self)
        h, reactor = handler(timeout=5, kill_grace=2)
        h.submit("key_changed", ("k", "v1"))
        h.submit("key_changed", ("k", "v2"))
        process = reactor.spawned[0]
        reactor.advance(4.9)
        self.assertEqual(process.signals, [])
        reactor.advance(0.1)
        self.assertEqual(process.signals, ["TERM"])
        reactor.advance(2)
        self.assertEqual(process.signals, ["TERM", "KILL"])
        process.exit(signal=9)
        self.assertEqual((h.timed_out, h.failed), (1, 1))
        self.assertTrue(
            logs.matching("did not finish within 5 s; stopped (--handler-timeout")
        )
        self.assertEqual(len(reactor.spawned), 2, "the next event runs after")
        reactor.spawned[1].exit(0)
        reactor.advance(100)
        self.assertEqual(reactor.spawned[1].signals, [], "timers cancelled")

    def test_a_node_ended_at_once_kills_its_running_command(self) -> None:
        """A second SIGTERM ends the node now: the command (a shutdown
        handler's, say) is killed, not left running without its node."""
        import signal

        from pokan.net.stopping import SecondSignal

        class LoopReactor:
            def crash(self) -> None:
                pass

            def callFromThread(self, f: Any, *args: Any) -> None:
                self.called = f

        logs = LogLines(self)
        h, reactor = handler("shutdown=sleep 30")
        h.submit("shutdown")
        process = reactor.spawned[0]
        SecondSignal(LoopReactor())._received(signal.SIGTERM, None)
        self.assertEqual(process.signals, ["KILL"])
        self.assertTrue(logs.matching("the node ends at once; killing it"))
        process.exit(signal=9)
        SecondSignal(LoopReactor())._received(signal.SIGTERM, None)
        self.assertEqual(process.signals, ["KILL"], "an ended run is forgotten")

    def test_long_commands_are_shortened_in_logs(self) -> None:
        logs = LogLines(self)
        h, reactor = handler("key_changed=" + "x" * 100)
        h.submit("key_changed", ("k", "v"))
        reactor.spawned[0].exit(1)
        [line] = logs.matching("exited with status 1")
        self.assertEqual(line, "x" * 57 + "... (key_changed #1) exited with status 1")

    def test_killed_by_signal_logged(self) -> None:
        logs = LogLines(self)
        h, reactor = handler()
        h.submit("key_changed", ("k", "v"))
        reactor.spawned[0].exit(signal=15)
        self.assertTrue(logs.matching("was killed by signal 15"))

    def test_children_holding_the_pipes_do_not_stall_the_queue(self) -> None:
        h, reactor = handler(pipe_grace=1)
        h.submit("key_changed", ("k", "v1"))
        h.submit("key_changed", ("k", "v2"))
        process = reactor.spawned[0]
        process.proto.processExited(Failure(error.ProcessDone(0)))
        self.assertEqual(len(reactor.spawned), 1)
        reactor.advance(1)
        self.assertTrue(process.lost)
        self.assertEqual(len(reactor.spawned), 2)
        # the late processEnded changes nothing
        process.proto.processEnded(Failure(error.ProcessDone(0)))
        self.assertEqual((h.runs, h.failed), (2, 0))

    def test_overflow_drops_oldest_waiting_and_says_so(self) -> None:
        logs = LogLines(self)
        h, reactor = handler(max_queue=2)
        for i in range(6):  # 1 runs, 2 wait, 3 are dropped
            h.submit("key_changed", ("k", f"v{i}"))
        self.assertEqual(h.dropped, 3)
        self.assertEqual(len(logs.matching("dropping the oldest")), 1, "once a burst")
        reactor.spawned[0].exit(0)
        reactor.spawned[1].exit(0)
        reactor.spawned[2].exit(0)
        self.assertEqual([p.stdin for p in reactor.spawned], [b"v0", b"v4", b"v5"])
        self.assertEqual(
            [p.env["POKAN_DROPPED"] for p in reactor.spawned], ["0", "3", "0"]
        )
        self.assertEqual(reactor.spawned[2].env["POKAN_SEQ"], "6")
        self.assertTrue(logs.matching("3 events were dropped before key_changed #5"))

    def test_spawn_failure_logged_and_queue_goes_on(self) -> None:
        h, reactor = handler()
        reactor.fail_spawn = True
        h.submit("key_changed", ("k", "v1"))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        reactor.fail_spawn = False
        h.submit("key_changed", ("k", "v2"))
        self.assertEqual(len(reactor.spawned), 1)
        self.assertEqual(h.failed, 1)

    def test_shutdown_drops_waiting_runs_shutdown_and_waits(self) -> None:
        h, reactor = handler("key_changed,shutdown=./x")
        for i in range(3):
            h.submit("key_changed", ("k", f"v{i}"))
        done = h.shutdown()
        self.assertNoResult(done)
        self.assertEqual(h.dropped, 2)
        self.assertEqual(reactor.spawned[0].signals, ["TERM"], "running: ended")
        reactor.spawned[0].exit(signal=15)
        self.assertEqual(reactor.spawned[1].env["POKAN_EVENT"], "shutdown")
        self.assertNoResult(done)
        reactor.spawned[1].exit(0)
        self.successResultOf(done)
        h.submit("key_changed", ("k", "late"))
        self.assertEqual(len(reactor.spawned), 2, "no runs after shutdown")

    def test_bad_limits(self) -> None:
        with self.assertRaises(ConfigurationError):
            handler(timeout=0)
        with self.assertRaises(ConfigurationError):
            handler(max_queue=0)


class AttachTests(unittest.TestCase):
    def test_server_events_run_commands_without_waiting_for_them(self) -> None:
        reactor = FakeProcessReactor()
        server = Server("127.0.0.1", reactor=MemoryReactorClock())
        h = CommandHandler(
            CommandSpec.parse("new_key,key_changed=./x"), reactor, setsid=None
        )
        h.attach(server)
        stored = server.store("color", "red")
        self.successResultOf(stored)  # fired while the command still runs
        [process] = reactor.spawned
        self.assertEqual(process.env["POKAN_EVENT"], "new_key")
        self.assertEqual(process.env["POKAN_NODE"], server.id)
        self.assertEqual(process.env["POKAN_PEER"], server.id)
        self.assertEqual(process.stdin, b"red")

    def test_restarted_server_runs_commands_again(self) -> None:
        reactor = FakeProcessReactor()
        server = Server("127.0.0.1", reactor=MemoryReactorClock())
        h = CommandHandler(CommandSpec.parse("start,new_key=./x"), reactor, setsid=None)
        h.attach(server)
        server.events.fire("start")
        self.assertEqual(len(reactor.spawned), 1)
        reactor.spawned[0].exit(0)
        self.successResultOf(server.events.fire("shutdown"))  # nothing running
        server.store("a", "1")
        self.assertEqual(len(reactor.spawned), 1, "stopped")
        server.events.fire("start")
        self.assertEqual(reactor.spawned[-1].env["POKAN_EVENT"], "start")
        reactor.spawned[-1].exit(0)
        server.store("b", "2")
        self.assertEqual(reactor.spawned[-1].env["POKAN_KEY"], "b")

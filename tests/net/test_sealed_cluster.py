"""Sealed gossip on real sockets: keys, wrong keys, other clusters, replays,
rotation without downtime (embedded and under twistd with SIGHUP)."""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial import unittest

from pokan import Server, wire
from pokan.net.badinput import BadInputReporter
from pokan.net.protocols import GossipProtocol, SyncClientProtocol, _FrameProtocol
from pokan.wire.envelope import Envelope
from pokan.wire.keyring import Keyring, Sealer, generate_key, read_key_file
from tests.support import (
    ROOT,
    TWISTD,
    Daemon,
    LogCatcher,
    everyone_knows,
    free_port,
    global_reactor,
    missing,
    run,
    start_cluster,
    start_server,
    temp_dir,
    wait_until,
)

SECRET = "s3cr3t-value-that-must-never-travel-in-clear"


def write_keys(path: str, *keys: str) -> str:
    with open(path, "w") as f:
        f.write("# gossip keys: the first seals\n" + "".join(k + "\n" for k in keys))
    os.chmod(path, 0o600)
    return path


def key_bytes(key: str) -> bytes:
    import base64

    return base64.b64decode(key)


class Wiretap:
    """Every UDP datagram and TCP frame the nodes send, as bytes."""

    def __init__(self, test: unittest.TestCase) -> None:
        self.datagrams: list[bytes] = []
        self.frames: list[bytes] = []
        gossip_send = GossipProtocol.send
        send_string = _FrameProtocol.sendFrame
        tap = self

        def send(proto: GossipProtocol, address: Any, message: Any) -> bool:
            write = proto.transport.write

            def recording(data: bytes, addr: Any) -> None:
                tap.datagrams.append(data)
                write(data, addr)

            proto.transport.write = recording  # type: ignore[method-assign]
            try:
                return gossip_send(proto, address, message)
            finally:
                proto.transport.write = write  # type: ignore[method-assign]

        def frame(proto: Any, data: bytes) -> None:
            tap.frames.append(data)
            send_string(proto, data)

        test.patch(GossipProtocol, "send", send)
        test.patch(_FrameProtocol, "sendFrame", frame)


class SealedClusterTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.dir = temp_dir(self)
        self.key = generate_key()
        self.key_file = write_keys(os.path.join(self.dir, "keys"), self.key)

    @defer.inlineCallbacks
    def test_sealed_cluster_converges_with_nothing_in_clear(self) -> Any:
        tap = Wiretap(self)
        servers = yield start_cluster(self, 3, key_file=self.key_file)
        for i, server in enumerate(servers):
            yield server.store("secret", f"{SECRET}-{i}")
        yield wait_until(
            lambda: everyone_knows(servers, "secret"),
            timeout=20,
            message=lambda: missing(servers, "secret"),
        )
        self.assertGreater(len(tap.datagrams), 10)
        self.assertGreater(len(tap.frames), 1)
        for data in tap.datagrams + tap.frames:
            self.assertEqual(data[4], wire.FLAG_SEALED, data[:9])
            self.assertNotIn(SECRET.encode(), data)
            self.assertNotIn(b"secret", data)
            self.assertNotIn(servers[0].id.encode(), data)
            self.assertLessEqual(len(data) if data in tap.datagrams else 0, 1400)
        for server in servers:
            self.assertTrue(server.stats["sealed"])
            self.assertEqual(server.stats["dropped"], 0, server.stats)

    @defer.inlineCallbacks
    def check_intruder_kept_out(self, reason: str, **intruder: Any) -> Any:
        servers = yield start_cluster(self, 2, key_file=self.key_file)
        yield servers[0].store("secret", SECRET)
        # the members know each other first (the joiner's sync is under way
        # when start_cluster fires): what follows is about the outsider
        yield wait_until(
            lambda: all(s.peer(o.id) for s in servers for o in servers if o is not s),
            timeout=10,
            message=lambda: f"members: {[s.peers() for s in servers]}",
        )
        logs = LogCatcher(self)
        seed = servers[0]
        outsider = yield start_server(
            self, gossip_with=f"127.0.0.1:{seed.tcp_port}", **intruder
        )
        yield outsider.store("injected", "evil")
        yield wait_until(
            lambda: (
                any(s.stats["dropped_by_reason"].get(reason) for s in servers)
                and logs.matching("could not sync with any seed")
            ),
            timeout=10,
            message=lambda: f"{reason} drops: {[s.stats for s in servers]}",
        )
        # the outsider learnt nothing, the members nothing of it
        self.assertEqual(outsider.peers(), [])
        for server in servers:
            self.assertIsNone(server.peer(outsider.id))
            self.assertEqual(len(server.peers()), 1)
        return logs

    def test_a_node_without_the_key_cannot_join(self) -> Any:
        return self.check_intruder_kept_out("unsealed")

    @defer.inlineCallbacks
    def test_a_node_with_another_key_cannot_join(self) -> Any:
        other = write_keys(os.path.join(self.dir, "other"), generate_key())
        logs = yield self.check_intruder_kept_out("unknown-key", key_file=other)
        (line,) = logs.matching("could not sync with any seed")[:1]
        self.assertIn("--key-file", line)

    @defer.inlineCallbacks
    def test_a_node_of_another_cluster_is_told(self) -> Any:
        logs = yield self.check_intruder_kept_out(
            "wrong-cluster", key_file=self.key_file, cluster="staging"
        )
        # the seed tells once an hour; the joiner's retries still say why
        yield wait_until(
            lambda: len(logs.matching("could not sync with any seed")) >= 2,
            timeout=10,
        )
        for line in logs.matching("could not sync with any seed"):
            self.assertIn("of cluster 'pokan' and this node of 'staging'", line)

    @defer.inlineCallbacks
    def test_two_plaintext_clusters_on_one_network_never_merge(self) -> Any:
        prod = yield start_cluster(self, 2, cluster="prod")
        test = yield start_server(
            self, cluster="test", gossip_with=f"127.0.0.1:{prod[0].tcp_port}"
        )
        yield wait_until(
            lambda: prod[0].stats["dropped_by_reason"].get("wrong-cluster"),
            timeout=10,
        )
        self.assertEqual(test.peers(), [])
        self.assertIsNone(prod[0].peer(test.id))

    @defer.inlineCallbacks
    def test_replays_change_nothing_and_draw_no_answer(self) -> Any:
        tap = Wiretap(self)
        servers = yield start_cluster(self, 3, key_file=self.key_file)
        a, b, c = servers
        yield wait_until(lambda: all(len(s.peers("alive")) == 2 for s in servers))
        captured = list(tap.datagrams)
        # c stops: its sealed goodbyes are captured on the way
        before = len(tap.datagrams)
        yield c.stopService()
        goodbyes = tap.datagrams[before:]
        yield wait_until(lambda: a.peer(c.id).status == "left")  # type: ignore
        # c comes back on the same ports: a new generation
        again = Server(
            "127.0.0.1",
            tcp_port=c.tcp_port,
            udp_port=c.udp_port,
            gossip_interval=0.05,
            key_file=self.key_file,
            gossip_with=f"127.0.0.1:{a.tcp_port}",
        )
        self.addCleanup(again.stopService)
        yield again.startService()
        yield wait_until(
            lambda: all(n.peer(c.id).status == "alive" for n in (a, b))  # type: ignore
        )
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(raw.close)
        raw.bind(("127.0.0.1", 0))
        raw.setblocking(False)
        for data in captured[-50:] + goodbyes:
            for node in (a, b):
                raw.sendto(data, ("127.0.0.1", node.udp_port))
        sent = len(captured[-50:] + goodbyes)

        def dropped(node: Server) -> int:
            reasons = node.stats["dropped_by_reason"]
            return reasons.get("replayed", 0) + reasons.get("wrong-source", 0)

        # one meant for that node is a replay; one meant for another comes
        # from a socket that is not its sender's: both dropped
        yield wait_until(
            lambda: dropped(a) == sent and dropped(b) == sent,
            timeout=10,
            message=lambda: f"{sent} replays dropped: {a.stats['dropped_by_reason']}",
        )
        self.assertGreater(a.stats["dropped_by_reason"].get("replayed", 0), 0)
        self.assertEqual(a.peer(c.id).status, "alive")  # type: ignore[union-attr]
        self.assertEqual(b.peer(c.id).status, "alive")  # type: ignore[union-attr]
        with self.assertRaises(BlockingIOError):
            raw.recv(65536)  # nothing came back to the replayer

    @defer.inlineCallbacks
    def test_rotation_without_downtime(self) -> Any:
        servers = yield start_cluster(self, 3, key_file=self.key_file)
        new = generate_key()
        logs = LogCatcher(self)
        steps = [(self.key, new), (new, self.key), (new,)]
        for step, keys in enumerate(steps):
            write_keys(self.key_file, *keys)
            for i, server in enumerate(servers):
                self.assertTrue(server.reload_keys())
                yield server.store("step", f"{step}-{i}")  # writes go on
            yield wait_until(
                lambda: everyone_knows(servers, "step"),
                timeout=20,
                message=lambda: missing(servers, "step"),
            )
        for server in servers:
            reasons = server.stats["dropped_by_reason"]
            self.assertEqual(reasons.get("unknown-key", 0), 0, reasons)
            self.assertEqual(reasons.get("unauthenticated", 0), 0, reasons)
        fingerprint = Keyring((key_bytes(new),)).fingerprints[0]
        line = logs.matching("gossip keys reloaded")[-1]
        self.assertIn(fingerprint, line)
        self.assertNotIn(new, " ".join(logs.lines()))
        # a node holding only the old key is now kept out
        old_only = write_keys(os.path.join(self.dir, "old"), self.key)
        outsider = yield start_server(
            self, key_file=old_only, gossip_with=f"127.0.0.1:{servers[0].tcp_port}"
        )
        yield wait_until(
            lambda: servers[0].stats["dropped_by_reason"].get("unknown-key"),
            timeout=10,
        )
        self.assertEqual(outsider.peers(), [])

    @defer.inlineCallbacks
    def test_a_bad_key_file_on_reload_keeps_the_old_keys(self) -> Any:
        (server,) = yield start_cluster(self, 1, key_file=self.key_file)
        logs = LogCatcher(self)
        os.chmod(self.key_file, 0o644)
        self.assertFalse(server.reload_keys())
        (line,) = logs.matching("could not reload the gossip keys")
        self.assertIn("chmod 600", line)
        self.assertIn("still using 1 key", line)
        os.chmod(self.key_file, 0o600)
        os.remove(self.key_file)
        self.assertFalse(server.reload_keys())
        self.assertEqual(len(logs.matching("could not reload")), 2)
        self.assertTrue(server.stats["sealed"])

    def test_a_bad_key_file_is_refused_at_start(self) -> None:
        os.chmod(self.key_file, 0o644)
        with self.assertRaises(ValueError) as caught:
            Server("127.0.0.1", key_file=self.key_file)
        self.assertIn("chmod 600", str(caught.exception))


@defer.inlineCallbacks
def sealed_state(port: int, key: str) -> Any:
    """A sealed daemon's state, by a full sync sealed with ``key``."""
    reactor = global_reactor()
    envelope = Envelope(sealer=Sealer(Keyring((key_bytes(key),))))
    client = SyncClientProtocol(
        wire.Hello("127.0.0.1:1", ()),
        BadInputReporter(reactor),
        wire.DEFAULT_MAX_FRAME,
        5.0,
        envelope=envelope,
    )
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    welcome = yield client.welcome
    return {
        d.info.id: {k: e.value for k, e in d.entries if not e.deleted}
        for d in welcome.deltas
    }


def knows(port: int, key: str, expected: dict[str, str]) -> Any:
    d = sealed_state(port, key)
    d.addCallback(
        lambda state: all(
            state.get(i, {}).get("role") == r for i, r in expected.items()
        )
    )
    d.addErrback(lambda _: False)  # the old key: not answered yet
    return d


class DaemonRotationTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_sighup_rotates_the_keys_of_running_daemons(self) -> Any:
        cwd = temp_dir(self)
        old, new = generate_key(), generate_key()
        ports = [free_port() for _ in range(3)]
        daemons = []
        for i, port in enumerate(ports):
            key_file = write_keys(os.path.join(cwd, f"keys{i}"), old)
            args = [TWISTD, "-n", "--pidfile=", "pokan", "--address", "127.0.0.1"]
            args += ["-t", str(port), "-u", str(port), "--gossip-interval", "0.1"]
            args += ["--key-file", key_file, "--store", f"role=r{i}"]
            if i:
                args += ["--gossip-with", f"127.0.0.1:{ports[0]}"]
            daemons.append(Daemon(self, args, cwd))
        roles = {f"127.0.0.1:{p}": f"r{i}" for i, p in enumerate(ports)}
        yield wait_until(
            lambda: knows(ports[2], old, roles),
            timeout=30,
            message=lambda: daemons[2].describe(),
        )
        for done, step in enumerate(((old, new), (new, old), (new,)), start=1):
            for i, daemon in enumerate(daemons):
                write_keys(os.path.join(cwd, f"keys{i}"), *step)
                daemon.process.send_signal(signal.SIGHUP)
            yield wait_until(
                lambda done=done: all(
                    d.output().count("gossip keys reloaded") == done for d in daemons
                ),
                timeout=10,
                message=lambda: daemons[0].output(),
            )
            sealing = new if done > 1 else old
            yield wait_until(lambda k=sealing: knows(ports[2], k, roles))
        for port in ports:  # every daemon seals with, and opens, the new key
            yield wait_until(lambda p=port: knows(p, new, roles), timeout=10)
        for daemon in daemons:
            output = daemon.output()
            self.assertFalse(daemon.exited(), output)
            self.assertNotIn(new, output)
            self.assertNotIn(old, output)
            self.assertNotIn("Traceback", output)
        # a refused reload: the daemon warns and keeps gossiping
        os.chmod(os.path.join(cwd, "keys1"), 0o644)
        daemons[1].process.send_signal(signal.SIGHUP)
        yield wait_until(
            lambda: "could not reload the gossip keys" in daemons[1].output(),
            timeout=10,
        )
        yield wait_until(lambda: knows(ports[1], new, roles), timeout=10)


class InstalledCommandsTests(unittest.TestCase):
    """What a user runs after `pip install .`: the console script and twistd."""

    def test_pokan_keygen_makes_a_key_twistd_takes(self) -> None:
        pokan = os.path.join(os.path.dirname(TWISTD), "pokan")
        result = run([pokan, "keygen"], cwd=ROOT)
        self.assertEqual(result.returncode, 0, result.stderr)
        (line,) = result.stdout.splitlines()
        self.assertEqual(len(key_bytes(line)), 32)
        path = write_keys(os.path.join(temp_dir(self), "keys"), line)
        self.assertEqual(len(read_key_file(path).keys), 1)

    def test_twistd_refuses_a_key_file_others_can_read(self) -> None:
        path = write_keys(os.path.join(temp_dir(self), "keys"), generate_key())
        os.chmod(path, 0o644)
        args = [TWISTD, "-n", "--pidfile=", "pokan", "--address", "127.0.0.1"]
        port = str(free_port())
        result = run([*args, "-t", port, "-u", port, "--key-file", path], cwd=ROOT)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        output = (result.stdout + result.stderr).strip().splitlines()
        self.assertEqual(len(output), 1, output)
        self.assertIn("pokan:", output[0])
        self.assertIn("chmod 600", output[0])

    def test_twistd_refuses_a_bad_cluster_name(self) -> None:
        args = [TWISTD, "-n", "--pidfile=", "pokan", "--address", "127.0.0.1"]
        result = run([*args, "--cluster", "no spaces"], cwd=ROOT)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn(
            "--cluster must be 1 to 64 letters", result.stdout + result.stderr
        )

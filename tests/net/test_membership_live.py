"""Membership on real sockets (127.0.0.1): conviction, leave, restart, GC, partitions.

Bounded, event-driven waits only: each test polls a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pokan import Peer, Server
from tests.support import free_port, global_reactor, wait_until

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")


def spawn_node(
    test: unittest.TestCase, seed_tcp: int, *flags: str
) -> tuple[subprocess.Popen[bytes], str]:
    """A ``twistd pokan`` child joining the seed, killed at cleanup; its id."""
    udp, tcp = free_port(), free_port()
    proc = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "pokan", "--address", "127.0.0.1",
         "--udp-port", str(udp), "--tcp-port", str(tcp), *flags,
         "--gossip-with", f"127.0.0.1:{seed_tcp}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    test.addCleanup(lambda: proc.poll() is None and proc.kill())
    return proc, f"127.0.0.1:{udp}"


INTERVAL = 0.1


def reactor() -> Any:
    return global_reactor()


def wait_for(
    condition: Callable[[], object], timeout: float, what: str
) -> defer.Deferred[Any]:
    return wait_until(condition, timeout, interval=0.01, message=what)


class Recorder:
    """Collects membership events of one server as (event, peer id)."""

    def __init__(self, server: Server) -> None:
        self.events: list[tuple[str, str]] = []
        for event in ("peer_joined", "peer_left", "peer_dead", "peer_alive"):
            server.on(event, self._handler(event))

    def _handler(self, event: str) -> Callable[[Peer], None]:
        def handle(peer: Peer) -> None:
            self.events.append((event, peer.id))

        return handle

    def about(self, node_id: str) -> list[str]:
        return [e for e, who in self.events if who == node_id]


class LiveMembershipTests(unittest.TestCase):
    timeout = 60

    def server(self, **kwargs: Any) -> Server:
        kwargs.setdefault("tcp_port", 0)
        kwargs.setdefault("udp_port", 0)
        kwargs.setdefault("gossip_interval", INTERVAL)
        # probes every 0.5 s, not the default 2 s: convictions in seconds
        kwargs.setdefault("probe_interval", 0.5)
        server = Server("127.0.0.1", **kwargs)
        server.recorder = Recorder(server)  # type: ignore[attr-defined]
        self.addCleanup(lambda: server.stopService() if server.running else None)
        return server

    @defer.inlineCallbacks
    def cluster(self, n: int, **kwargs: Any) -> Any:
        seed = self.server(**kwargs)
        yield seed.startService()
        servers = [seed]
        for _ in range(n - 1):
            s = self.server(gossip_with=f"127.0.0.1:{seed.tcp_port}", **kwargs)
            yield s.startService()
            servers.append(s)
        yield self.all_alive(servers)
        return servers

    def all_alive(self, servers: list[Server], timeout: float = 10) -> Any:
        def ok() -> bool:
            return all(
                len(s.peers(status="alive")) >= len(servers) - 1 for s in servers
            )

        return wait_for(ok, timeout, "every node to see every node alive")

    @staticmethod
    def crash(server: Server) -> defer.Deferred[None]:
        """Stop a server as a crash would: no goodbye, ports closed."""
        service_stop = super(Server, server).stopService
        server._pacing.stop()
        server._watches.stop()  # its kernel would close them
        service_stop()
        return server._ports.close()

    @defer.inlineCallbacks
    def test_killed_process_is_convicted_and_peer_dead_fires(self) -> Any:
        seed = self.server()
        yield seed.startService()
        proc, child = spawn_node(
            self, seed.tcp_port, "--gossip-interval", str(INTERVAL)
        )
        yield wait_for(
            lambda: (p := seed.peer(child)) is not None and p.is_alive,
            20,
            "the child to join",
        )
        # the child answers the seed's probes for a while (SWIM: no heartbeats)
        probes = seed._engine.detector.swim.probes
        yield wait_for(
            lambda: seed._engine.detector.swim.probes >= probes + 4, 5, "probes"
        )
        self.assertEqual(seed.peer(child).status, "alive")  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        yield wait_for(lambda: seed.peer(child).is_dead, 10, "the conviction")  # type: ignore[union-attr]
        rec = seed.recorder  # type: ignore[attr-defined]
        self.assertEqual(rec.about(child), ["peer_joined", "peer_dead"])
        self.assertEqual(seed.stats["convictions"], 1)

    @defer.inlineCallbacks
    def test_graceful_stop_gives_peer_left(self) -> Any:
        servers = yield self.cluster(4)
        leaving = servers[2]
        yield leaving.stopService()
        stayed = [s for s in servers if s is not leaving]
        yield wait_for(
            lambda: all(s.peer(leaving.id).is_left for s in stayed),  # type: ignore[union-attr]
            5,
            "peer_left everywhere",
        )
        # it stays left: no conviction, no revival
        yield wait_for(lambda: all(s.stats["convictions"] == 0 for s in stayed), 1, "")
        for s in stayed:
            self.assertEqual(s.recorder.about(leaving.id), ["peer_joined", "peer_left"])  # type: ignore[attr-defined]
            self.assertEqual([p.id for p in s.peers(status="left")], [leaving.id])

    @defer.inlineCallbacks
    def test_restart_replaces_the_old_incarnation(self) -> Any:
        servers = yield self.cluster(3)
        seed, _, old = servers
        yield old.store("old-key", "x")
        yield wait_for(
            lambda: seed.peer(old.id).value("old-key") == "x",
            5,
            "the old key",  # type: ignore[union-attr]
        )
        old_generation = seed.peer(old.id).generation  # type: ignore[union-attr]
        yield self.crash(old)
        new = self.server(
            udp_port=old.udp_port, gossip_with=f"127.0.0.1:{seed.tcp_port}"
        )
        yield new.startService()
        yield new.store("new-key", "y")
        others = servers[:2]
        yield wait_for(
            lambda: all(s.peer(new.id).value("new-key") == "y" for s in others),  # type: ignore[union-attr]
            5,
            "the new incarnation everywhere",
        )
        for s in others:
            peer = s.peer(new.id)
            assert peer is not None
            self.assertGreater(peer.generation, old_generation)
            self.assertEqual(peer.keys(), ["new-key"])
            self.assertTrue(peer.is_alive)
            self.assertEqual([p.id for p in s.peers()].count(new.id), 1)
            self.assertEqual(
                s.recorder.about(new.id),
                ["peer_joined", "peer_joined"],  # type: ignore[attr-defined]
            )

    @defer.inlineCallbacks
    def test_partition_heals(self) -> Any:
        servers = yield self.cluster(4)
        left, right = servers[:2], servers[2:]
        for a in left:
            for b in right:
                a.faults.blocked.add(("127.0.0.1", b.udp_port))
                b.faults.blocked.add(("127.0.0.1", a.udp_port))

        def split() -> bool:
            return all(
                a.peer(b.id).is_dead and b.peer(a.id).is_dead  # type: ignore[union-attr]
                for a in left
                for b in right
            )

        yield wait_for(split, 15, "both halves to convict each other")
        for s in servers:
            s.faults.blocked.clear()
        yield self.all_alive(servers, timeout=15)
        for s in servers:
            dead = [e for e in s.recorder.events if e[0] == "peer_dead"]  # type: ignore[attr-defined]
            alive = [e for e in s.recorder.events if e[0] == "peer_alive"]  # type: ignore[attr-defined]
            self.assertEqual(len(dead), 2)
            self.assertEqual(sorted(dead), sorted(("peer_dead", i) for _, i in alive))

    @defer.inlineCallbacks
    def test_tombstones_are_collected(self) -> Any:
        servers = yield self.cluster(3, tombstone_ttl=0.5)
        owner = servers[1]
        yield owner.store("k", "v")
        removed: list[str] = []
        servers[0].on("key_removed", lambda key: removed.append(key))
        yield wait_for(
            lambda: all(
                s.peer(owner.id).value("k") == "v" for s in servers if s is not owner
            ),  # type: ignore[union-attr]
            5,
            "the key",
        )
        yield owner.delete("k")

        def collected() -> bool:
            return all("k" not in s._state.nodes[owner.id].entries for s in servers)

        yield wait_for(collected, 10, "the tombstone to be collected everywhere")
        self.assertEqual(removed, ["k"])
        self.assertGreater(servers[0]._state.nodes[owner.id].gc_point, 0)

    @defer.inlineCallbacks
    def test_dead_nodes_are_forgotten(self) -> Any:
        # a TTL longer than the spread of the two convictions under load (a
        # node that forgot, then dropped the forgotten record while the
        # other still gossips the dead node, would see it join again)
        # (and an idle pace of 1 s: an idle node collects once per idle
        # exchange, by default every 20 s)
        servers = yield self.cluster(3, dead_node_ttl=2.0, idle_interval=1.0)
        gone = servers[2]
        yield gone.store("k", "v")
        yield wait_for(lambda: servers[0].peer(gone.id).value("k") == "v", 5, "k")  # type: ignore[union-attr]
        yield self.crash(gone)
        stayed = servers[:2]
        # a node remembers the forgotten incarnation for one more TTL only:
        # look at it as each node forgets, not once both have
        remembered: dict[int, bool] = {}

        def forgotten() -> bool:
            for i, s in enumerate(stayed):
                if i not in remembered and s.peer(gone.id) is None:
                    remembered[i] = gone.id in s._state.forgotten
            return len(remembered) == len(stayed)

        yield wait_for(forgotten, 15, "forgetting")
        self.assertEqual(remembered, {0: True, 1: True})
        for s in stayed:
            self.assertEqual(s.recorder.about(gone.id), ["peer_joined", "peer_dead"])  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_no_resurrection_after_gc(self) -> Any:
        servers = yield self.cluster(3, tombstone_ttl=0.5)
        a, b, c = servers
        yield a.store("k", "v")
        yield wait_for(lambda: c.peer(a.id).value("k") == "v", 5, "k at c")  # type: ignore[union-attr]
        # cut c off (its seed retries too: they would go over TCP); a deletes
        # k; the tombstone is collected on a and b
        seed_sync, c._syncs.seed_sync = c._syncs.seed_sync, None
        for s in (a, b):
            s.faults.blocked.add(("127.0.0.1", c.udp_port))
            c.faults.blocked.add(("127.0.0.1", s.udp_port))
        yield a.delete("k")
        yield wait_for(
            lambda: all(
                a.id in s._state.nodes and s._state.nodes[a.id].gc_point for s in (a, b)
            ),
            10,
            "GC on a and b",
        )
        self.assertEqual(c.peer(a.id).value("k"), "v")  # type: ignore[union-attr]
        for s in servers:
            s.faults.blocked.clear()
        # c gossips with its dead peers, which find it behind their GC point
        # and repair it with a full sync
        yield wait_for(lambda: c.peer(a.id).value("k") is None, 15, "c to drop k")
        c._syncs.seed_sync = seed_sync
        yield self.all_alive(servers, timeout=15)
        self.assertIsNone(a.value("k"))
        self.assertIsNone(b.peer(a.id).value("k"))  # type: ignore[union-attr]

    @defer.inlineCallbacks
    def test_stop_cancels_a_sync_under_way(self) -> Any:
        # a seed that accepts TCP but never answers: the sync hangs until stop
        from twisted.internet.protocol import Factory, Protocol

        port = reactor().listenTCP(
            0, Factory.forProtocol(Protocol), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        server = self.server(gossip_with=f"127.0.0.1:{port.getHost().port}")
        yield server.startService()
        yield wait_for(lambda: server._syncs.syncing, 5, "the sync to start")
        yield server.stopService()
        self.assertEqual(server._syncs.syncing, {})

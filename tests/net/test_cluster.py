"""Integration: real pokan clusters on 127.0.0.1 converge, fire events, heal."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pokan import Peer, Server, wire
from pokan.wire.envelope import Envelope
from tests.support import (
    LogCatcher,
    everyone_knows,
    free_port,
    make_server,
    missing,
    start_cluster,
    start_server,
    stop_all,
    wait_until,
)


class ConvergenceTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_five_nodes_converge(self) -> Any:
        """Every node learns every node's keys; str and bytes keep their type."""
        servers = yield start_cluster(self, 5)
        for i, server in enumerate(servers):
            yield server.store("name", f"node-{i}")
            yield server.store("blob", bytes([i, 0, 255]))
        yield wait_until(
            lambda: everyone_knows(servers, "name") and everyone_knows(servers, "blob"),
            timeout=20,
            message=lambda: missing(servers, "name") + "; " + missing(servers, "blob"),
        )
        for server in servers:
            others = {p.id for p in server.peers()}
            self.assertEqual(others, {s.id for s in servers if s is not server})
            for i, other in enumerate(servers):
                if other is server:
                    continue
                peer = server.peer(other.id)
                assert peer is not None
                name, blob = peer.value("name"), peer.value("blob")
                self.assertIs(type(name), str)
                self.assertIs(type(blob), bytes)
                self.assertEqual((name, blob), (f"node-{i}", bytes([i, 0, 255])))
                self.assertEqual(peer.keys(), ["blob", "name"])
                self.assertEqual(peer.timestamp("name"), other.timestamp("name"))
                self.assertTrue(peer.is_alive)

    @defer.inlineCallbacks
    def test_ipv6_loopback(self) -> Any:
        servers = yield start_cluster(self, 3, address="::1")
        for i, server in enumerate(servers):
            self.assertEqual(server.id, f"[::1]:{server.udp_port}")
            yield server.store("n", str(i))
        yield wait_until(
            lambda: everyone_knows(servers, "n"),
            timeout=10,
            message=lambda: missing(servers, "n"),
        )
        peer = servers[1].peer(servers[0].id)
        assert peer is not None
        self.assertEqual((peer.address, peer.role), ("::1", "seed"))

    @defer.inlineCallbacks
    def test_roles(self) -> Any:
        """The node without seeds acts as seed; the others are peers."""
        seed, a, b = yield start_cluster(self, 3)
        yield wait_until(
            lambda: all(len(s.peers()) == 2 for s in (seed, a, b)),
            timeout=10,
            message="every node to know the two others",
        )
        self.assertEqual([p.id for p in a.peers(role="seed")], [seed.id])
        self.assertEqual(
            sorted(p.id for p in seed.peers(role="peer")), sorted([a.id, b.id])
        )
        self.assertEqual(len(seed.peers(status="alive")), 2)
        self.assertEqual(seed.peers(status="dead"), [])

    @defer.inlineCallbacks
    def test_delete_spreads_a_tombstone(self) -> Any:
        servers = yield start_cluster(self, 3)
        owner = servers[1]
        yield owner.store("doomed", "soon gone")
        yield owner.store("kept", "stays")
        yield wait_until(
            lambda: everyone_knows(servers, "doomed"),
            timeout=10,
            message=lambda: missing(servers, "doomed"),
        )
        yield owner.delete("doomed")
        self.assertIsNone(owner.value("doomed"))
        self.assertEqual(owner.keys(), ["kept"])

        def gone_everywhere() -> bool:
            for server in servers:
                peer = server.peer(owner.id)
                if server is owner or peer is None:
                    continue
                if peer.value("doomed") is not None or peer.keys() != ["kept"]:
                    return False
            return True

        yield wait_until(
            gone_everywhere, timeout=10, message="the deletion to reach every node"
        )
        for server in servers:
            peer = server.peer(owner.id)
            if server is not owner:
                assert peer is not None
                self.assertIsNone(peer.timestamp("doomed"))
                self.assertEqual(peer.value("kept"), "stays")


class EventTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_key_events_fire_on_remote_nodes_with_the_peer(self) -> Any:
        _seed, writer, watcher = yield start_cluster(self, 3)
        seen: list[tuple[str, str, Any, str, str, int]] = []

        def recorder(event: str) -> Any:
            def handler(key: str, value: Any, peer: Peer) -> None:
                seen.append((event, key, value, peer.id, peer.address, peer.tcp_port))

            return handler

        for event in ("new_key", "key_changed", "key_removed"):
            watcher.on(event, recorder(event))

        def saw(event: str, value: Any) -> bool:
            return any(s[0] == event and s[2] == value for s in seen)

        yield writer.store("colour", "red")
        yield wait_until(
            lambda: saw("new_key", "red"),
            timeout=10,
            message=lambda: f"new_key on the watcher; seen {seen}",
        )
        yield writer.store("colour", b"blue")
        yield wait_until(
            lambda: saw("key_changed", b"blue"),
            timeout=10,
            message=lambda: f"key_changed on the watcher; seen {seen}",
        )
        yield writer.delete("colour")
        yield wait_until(
            lambda: saw("key_removed", b"blue"),
            timeout=10,
            message=lambda: f"key_removed on the watcher; seen {seen}",
        )
        expected = ("127.0.0.1", writer.tcp_port)
        colour = [s for s in seen if s[1] == "colour"]
        self.assertEqual(
            [(s[0], s[2]) for s in colour],
            [("new_key", "red"), ("key_changed", b"blue"), ("key_removed", b"blue")],
        )
        for s in colour:
            self.assertEqual(s[3], writer.id)
            self.assertEqual((s[4], s[5]), expected)

    @defer.inlineCallbacks
    def test_handlers_without_peer_and_failing_handlers(self) -> Any:
        """(key, value) handlers work; a raising handler does not stop gossip."""
        seed, writer = yield start_cluster(self, 2)
        got: list[tuple[str, Any]] = []

        @seed.on("new_key")
        def broken(key: str, value: Any) -> None:
            raise RuntimeError("handler bug")

        seed.on("new_key", lambda key, value: got.append((key, value)))
        for i in range(3):
            yield writer.store(f"k{i}", str(i))
        yield wait_until(
            lambda: len(got) == 3,
            timeout=10,
            message=lambda: f"three new_key events, got {got}",
        )
        self.assertEqual(sorted(got), [("k0", "0"), ("k1", "1"), ("k2", "2")])
        self.assertEqual(seed.stats["handler_failures"], 3)
        self.flushLoggedErrors(RuntimeError)

    @defer.inlineCallbacks
    def test_sync_and_gossip_hooks(self) -> Any:
        seed = yield start_server(self)
        yield seed.store("before-join", "x")
        joiner = make_server(gossip_with=f"127.0.0.1:{seed.tcp_port}")
        synced: list[Any] = []
        before_sync: list[Any] = []
        before_gossip: list[Peer] = []
        after_gossip: list[Peer] = []
        joiner.before("sync", lambda *args: before_sync.append(args))
        joiner.after(
            "sync", lambda peer: synced.append((peer.id, peer.value("before-join")))
        )
        joiner.before("gossip", before_gossip.append)
        joiner.after("gossip", after_gossip.append)
        self.addCleanup(stop_all, [joiner])
        yield joiner.startService()
        yield wait_until(lambda: synced, timeout=10, message="after('sync')")
        self.assertEqual(synced, [(seed.id, "x")])
        self.assertEqual(len(before_sync), 1)
        yield wait_until(
            lambda: any(p.id == seed.id for p in after_gossip),
            timeout=10,
            message="after('gossip') with the seed",
        )
        self.assertIn(seed.id, [p.id for p in before_gossip])
        self.assertIsInstance(after_gossip[0], Peer)


class MembershipTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_goodbye_marks_the_node_left_quickly(self) -> Any:
        servers = yield start_cluster(self, 3)
        leaving = servers[2]
        yield wait_until(
            lambda: all(len(s.peers(status="alive")) == 2 for s in servers),
            timeout=10,
            message="every node to see the two others alive",
        )
        yield leaving.stopService()
        stayed = servers[:2]
        yield wait_until(
            lambda: all(
                [p.id for p in s.peers(status="left")] == [leaving.id] for s in stayed
            ),
            timeout=1.0,  # at once: no failure detector involved
            message="the others to mark the leaving node left",
        )

    @defer.inlineCallbacks
    def test_restart_without_persistence_is_a_new_generation(self) -> Any:
        seed, other, restarting = yield start_cluster(self, 3)
        yield restarting.store("old", "first life")
        yield restarting.store("shared", "1")
        yield wait_until(
            lambda: everyone_knows([seed, other, restarting], "old"),
            timeout=10,
            message=lambda: missing([seed, other, restarting], "old"),
        )
        old_generation = restarting.me.generation
        removed: list[tuple[str, Any]] = []
        other.on("key_removed", lambda key, value: removed.append((key, value)))
        yield restarting.stopService()

        again = Server(
            "127.0.0.1",
            tcp_port=restarting.tcp_port,
            udp_port=restarting.udp_port,
            gossip_interval=0.05,
            gossip_with=f"127.0.0.1:{seed.tcp_port}",
        )
        self.addCleanup(stop_all, [again])
        yield again.store("new", "second life")
        yield again.store("shared", "2")
        yield again.startService()
        self.assertEqual(again.id, restarting.id)
        self.assertGreater(again.me.generation, old_generation)

        def accepted(server: Server) -> bool:
            peer = server.peer(again.id)
            return (
                peer is not None
                and peer.generation == again.me.generation
                and peer.is_alive
                and peer.keys() == ["new", "shared"]
                and peer.value("shared") == "2"
            )

        yield wait_until(
            lambda: accepted(seed) and accepted(other),
            timeout=10,
            message="the others to take the new generation and drop the old keys",
        )
        for server in (seed, other):
            peer = server.peer(again.id)
            assert peer is not None
            self.assertIsNone(peer.value("old"))
        self.assertIn(("old", "first life"), removed)

    @defer.inlineCallbacks
    def test_a_restarted_seed_is_found_again(self) -> Any:
        """The seed restarts knowing nobody; gossip to dead peers and seeds heals."""
        seed, a, b = yield start_cluster(self, 3)
        yield a.store("name", "a")
        yield b.store("name", "b")
        yield wait_until(
            lambda: everyone_knows([seed, a, b], "name"),
            timeout=10,
            message=lambda: missing([seed, a, b], "name"),
        )
        yield seed.stopService()
        yield wait_until(
            lambda: all(s.peer(seed.id).is_left for s in (a, b)),
            timeout=2,
            message="the seed to be marked left",
        )
        again = yield start_server(self, tcp_port=seed.tcp_port, udp_port=seed.udp_port)
        yield again.store("name", "seed, second life")
        nodes = [again, a, b]
        yield wait_until(
            lambda: (
                everyone_knows(nodes, "name")
                and all(s.peer(again.id).is_alive for s in (a, b))
            ),
            timeout=15,
            message=lambda: missing(nodes, "name"),
        )


class SeedTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_first_seed_unreachable_second_answers(self) -> Any:
        seed = yield start_server(self)
        yield seed.store("hello", "from the second seed")
        nobody = free_port()
        synced: list[str] = []
        joiner = yield start_server(
            self,
            gossip_with=[f"127.0.0.1:{nobody}", f"127.0.0.1:{seed.tcp_port}"],
        )
        joiner.after("sync", lambda peer: synced.append(peer.id))
        yield wait_until(
            lambda: (
                (p := joiner.peer(seed.id)) is not None
                and p.value("hello") == "from the second seed"
            ),
            timeout=10,
            message="the joiner to sync with the second seed",
        )
        self.assertEqual(
            joiner.seeds, [f"127.0.0.1:{nobody}", f"127.0.0.1:{seed.tcp_port}"]
        )

    @defer.inlineCallbacks
    def test_unreachable_seed_is_retried_in_the_background(self) -> Any:
        logs = LogCatcher(self)
        port = free_port()
        seed_name = f"127.0.0.1:{port}"
        joiner = yield start_server(self, gossip_with=seed_name)
        yield joiner.store("mine", "joiner")
        yield wait_until(
            lambda: logs.matching("could not sync", seed_name),
            timeout=10,
            message=f"a warning naming the unreachable seed {seed_name}",
        )
        self.assertTrue(joiner.running)
        synced: list[str] = []
        joiner.after("sync", lambda peer: synced.append(peer.id))
        # the seed's UDP port differs, so only the retried TCP sync can join
        seed = yield start_server(self, tcp_port=port)
        yield seed.store("theirs", "seed")
        yield wait_until(
            lambda: (
                (p := joiner.peer(seed.id)) is not None
                and p.value("theirs") == "seed"
                and (q := seed.peer(joiner.id)) is not None
                and q.value("mine") == "joiner"
            ),
            timeout=15,
            message="the joiner and the late seed to sync",
        )
        self.assertEqual(synced, [seed.id])
        self.assertTrue(logs.matching("joined the cluster through seed", seed_name))

    @defer.inlineCallbacks
    def test_a_seed_name_that_is_this_node_is_dropped(self) -> Any:
        """A name resolving to the node itself: one warning, no sync loop."""
        logs = LogCatcher(self)
        port = free_port()
        server = yield start_server(
            self, tcp_port=port, udp_port=port, gossip_with=f"localhost:{port}"
        )
        yield wait_until(
            lambda: logs.matching("is this node itself"),
            timeout=10,
            message="the warning that the seed is this node",
        )
        (warning,) = logs.matching(f"seed localhost:{port} is this node itself")
        self.assertIn("waits for others to join through it", warning)
        assert server._syncs.seed_sync is not None
        self.assertEqual(server._syncs.seed_sync.seeds, [])
        self.assertEqual(logs.matching("joined the cluster"), [])
        self.assertEqual(server.peers(), [])


class LargeClusterTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_sixty_nodes_with_1400_byte_datagrams_converge(self) -> Any:
        """A full digest does not fit one datagram: digest slices still converge."""
        sliced: list[wire.Syn] = []
        sizes: list[int] = []
        encode = wire.encode
        seal = Envelope.encode

        def recording_encode(
            envelope: Envelope,
            message: wire.Message,
            now: float,
            limit: int | None = None,
        ) -> bytes:
            if isinstance(message, wire.Syn) and message.low is not None:
                sliced.append(message)
            data = seal(envelope, message, now, limit)
            if not isinstance(message, wire.Hello | wire.Welcome):  # TCP only
                sizes.append(len(data))
            return data

        self.patch(Envelope, "encode", recording_encode)
        # 59 joiners from one address at once: over the default per-host cap
        servers = yield start_cluster(
            self, 60, max_datagram=1400, gossip_interval=0.1, max_sync_per_host=64
        )
        digest = tuple(
            wire.DigestEntry(s.id, s.me.generation, 1000, 100000) for s in servers
        )
        full = encode(wire.Syn(servers[0].id, digest))
        self.assertGreater(len(full), 1400, "the test must exercise partial digests")
        for i, server in enumerate(servers):
            yield server.store("n", str(i))
        yield wait_until(
            lambda: everyone_knows(servers, "n"),
            timeout=60,
            interval=0.1,
            message=lambda: missing(servers, "n"),
        )
        for server in servers:
            self.assertEqual(len(server.peers()), 59)
            # datagrams over max_datagram would be dropped as "oversized"
            self.assertEqual(server.stats["dropped_by_reason"], {})
            self.assertEqual(server.stats["send_errors"], 0)
        self.assertTrue(sliced, "no Syn carried a slice of the digest")
        # every datagram fits, with room kept for a future seal
        self.assertLessEqual(max(sizes), 1400 - wire.SEAL_HEADROOM)

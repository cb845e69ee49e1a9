"""Servers on real sockets with the Redis store and a private redis-server."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer, task
from twisted.trial import unittest

from pokan import Server, StartupError
from pokan.core.state import Batch
from pokan.store.redis import RedisStore
from tests.docs.test_docs import code_blocks
from tests.redisreader import (
    api_cluster,
    memory_cluster,
    raw_value,
    read_cluster,
    redis_as_api,
)
from tests.redisserver import RedisServer
from tests.store.test_store_redis import LogCapture
from tests.waiting import wait_for

INTERVAL = 0.05


class CountingStore(RedisStore):
    """Counts the batches the Server hands over (one per exchange or write)."""

    persisted = 0

    def persist(self, batch: Batch) -> defer.Deferred[None]:
        self.persisted += 1
        return super().persist(batch)


class ServerCase(unittest.TestCase):
    def setUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.stop)
        self.plain = self.redis.client()
        self.addCleanup(lambda: self.plain.close())

    @defer.inlineCallbacks
    def node(self, store: Any = None, seed: Server | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("tcp_port", 0)
        kwargs.setdefault("udp_port", 0)
        server = Server(
            "127.0.0.1",
            gossip_interval=INTERVAL,
            gossip_with=f"127.0.0.1:{seed.tcp_port}" if seed is not None else None,
            store=store,
            **kwargs,
        )
        yield server.startService()
        self.addCleanup(server.stopService)
        return server

    def redis_store(self, cls: type[RedisStore] = RedisStore, **kwargs: Any) -> Any:
        kwargs.setdefault("retry_interval", 0.05)
        return cls(self.redis.url, **kwargs)

    def converged(self, *servers: Server) -> bool:
        views = [
            {p.id: (p.generation, p.items()) for p in [s.me, *s.peers()]}
            for s in servers
        ]
        return len(views[0]) == len(servers) and all(v == views[0] for v in views)


class SchemaTests(ServerCase):
    @defer.inlineCallbacks
    def test_plain_client_reads_what_the_api_reports(self) -> Any:
        a = yield self.node(self.redis_store())
        b = yield self.node(seed=a)
        yield a.store("text", "héllo")
        yield a.store("blob", b"\x00\x01")
        yield a.store("gone", "soon")
        yield a.delete("gone")
        yield b.store("b-key", "from b")
        yield b.store("b-bin", b"\xff")
        yield wait_for(lambda: self.converged(a, b))
        prefix = f"pokan:{a.id}"
        self.assertEqual(self.plain.hget(f"{prefix}:meta", "node"), a.id.encode())
        yield wait_for(lambda: redis_as_api(self.plain, prefix) == api_cluster(a))
        view = redis_as_api(self.plain, prefix)
        self.assertEqual(view[b.id]["items"]["b-bin"][0], b"\xff")
        self.assertEqual(view[a.id]["items"]["text"][0], "héllo")
        self.assertNotIn("gone", view[a.id]["items"])
        self.assertEqual(
            read_cluster(self.plain, prefix)["keys"][a.id]["gone"][0], None
        )

    @defer.inlineCallbacks
    def test_explicit_prefix(self) -> Any:
        a = yield self.node(self.redis_store(prefix="app:node1"))
        yield a.store("k", "v")
        self.assertEqual(raw_value(self.plain, "app:node1", a.id, "k"), b"v")

    @defer.inlineCallbacks
    def test_two_nodes_on_one_prefix_are_refused(self) -> Any:
        a = yield self.node(self.redis_store(prefix="shared"))
        yield a.store("k", "a's")
        store = self.redis_store(prefix="shared")
        b = Server("127.0.0.1", tcp_port=0, udp_port=0, store=store)
        with self.assertRaises(StartupError) as caught:
            yield b.startService()
        self.assertRegex(
            str(caught.exception),
            f"Redis prefix 'shared' holds the state of node '{a.id}', not of this"
            " node '127.0.0.1:[1-9][0-9]*'",  # the port b had bound
        )
        self.assertFalse(b.running)
        # the same node (same address and port) restarts on it, as before
        ports = {"tcp_port": a.tcp_port, "udp_port": a.udp_port}
        yield a.stopService()
        a2 = yield self.node(self.redis_store(prefix="shared"), **ports)
        self.assertEqual(a2.items(), {"k": "a's"})

    @defer.inlineCallbacks
    def test_a_stopped_node_reads_left_and_alive_again_after_restart(self) -> Any:
        a = yield self.node(self.redis_store())
        record = f"pokan:{a.id}:node:{a.id}"
        yield wait_for(lambda: self.plain.hget(record, "status") == b"alive")
        ports = {"tcp_port": a.tcp_port, "udp_port": a.udp_port}
        yield a.stopService()
        self.assertEqual(self.plain.hget(record, "status"), b"left")
        a2 = yield self.node(self.redis_store(), **ports)
        self.assertEqual(a2.id, a.id)
        yield wait_for(lambda: self.plain.hget(record, "status") == b"alive")


class AtomicBatchTests(ServerCase):
    @defer.inlineCallbacks
    def test_one_transaction_per_exchange(self) -> Any:
        store = self.redis_store(CountingStore)
        a = yield self.node(store)
        b = yield self.node(seed=a)
        c = yield self.node(seed=a)
        # nothing in flight: every batch counted so far is in Redis
        yield wait_for(lambda: store.batches_written == store.persisted)
        before_execs = self.redis.exec_count()
        before_batches = store.persisted
        for i in range(300):
            b.store(f"b{i}", str(i))
            c.store(f"c{i}", str(i))
        yield a.store("mine", "1")
        yield wait_for(lambda: self.converged(a, b, c))
        yield wait_for(lambda: store.batches_written == store.persisted)
        batches = store.persisted - before_batches
        execs = self.redis.exec_count() - before_execs
        self.assertEqual(execs, batches)
        self.assertEqual(self.plain.hlen(f"pokan:{a.id}:keys:{b.id}"), 300)

    @defer.inlineCallbacks
    def test_events_and_store_fire_after_commit(self) -> Any:
        a = yield self.node(self.redis_store())
        b = yield self.node(seed=a)
        prefix = f"pokan:{a.id}"
        seen: list[tuple[str, bytes | None]] = []

        def on_new_key(key: str, value: Any, peer: Any) -> None:
            seen.append((key, raw_value(self.plain, prefix, peer.id, key)))

        a.on("new_key", on_new_key)
        yield a.store("local", "1")
        # the Deferred fired: it is in Redis already
        self.assertEqual(raw_value(self.plain, prefix, a.id, "local"), b"1")
        yield b.store("remote", "2")
        yield wait_for(lambda: len(seen) == 2)
        self.assertEqual(seen, [("local", b"1"), ("remote", b"2")])


class RestartTests(ServerCase):
    @defer.inlineCallbacks
    def test_restart_rejoins_and_next_write_reaches_everyone(self) -> Any:
        b = yield self.node()
        c = yield self.node(seed=b)
        a = yield self.node(self.redis_store(), seed=b)
        yield a.store("before", "1")
        yield a.store("counter", "1")
        yield wait_for(lambda: self.converged(a, b, c))
        old_generation = a.me.generation
        old_version = a._state.me.version
        ports = {"tcp_port": a.tcp_port, "udp_port": a.udp_port}
        yield a.stopService()
        yield wait_for(lambda: b.peer(a.id).is_left and c.peer(a.id).is_left)

        # the same node, the same Redis, no --gossip-with
        a2 = yield self.node(self.redis_store(), **ports)
        self.assertEqual(a2.id, a.id)
        self.assertEqual({p.id for p in a2.peers()}, {b.id, c.id})
        self.assertEqual(a2.items(), {"before": "1", "counter": "1"})
        self.assertGreater(a2.me.generation, old_generation)
        yield a2.store("counter", "2")
        self.assertGreater(a2._state.me.entries["counter"].version, old_version)

        def everyone_has_it() -> bool:
            return all(
                s.peer(a.id) is not None
                and s.peer(a.id).is_alive
                and s.peer(a.id).generation == a2.me.generation
                and s.peer(a.id).items() == {"before": "1", "counter": "2"}
                for s in (b, c)
            )

        yield wait_for(everyone_has_it)
        yield wait_for(lambda: self.converged(a2, b, c))


class FlushedRestartTests(ServerCase):
    @defer.inlineCallbacks
    def test_restart_on_a_flushed_redis_takes_its_keys_back_from_the_cluster(
        self,
    ) -> Any:
        b = yield self.node()
        c = yield self.node(seed=b)
        a = yield self.node(self.redis_store(), seed=b)
        yield a.store("role", "worker")
        yield a.store("gone", "x")
        yield a.delete("gone")
        yield wait_for(lambda: self.converged(a, b, c))
        ports = {"tcp_port": a.tcp_port, "udp_port": a.udp_port}
        yield a.stopService()
        yield wait_for(lambda: b.peer(a.id).is_left and c.peer(a.id).is_left)
        self.plain.flushall()

        logs = LogCapture(self)
        a2 = yield self.node(self.redis_store(), seed=b, **ports)
        self.assertEqual(a2.id, a.id)
        yield wait_for(lambda: a2.items() == {"role": "worker"})

        def everyone_has_it() -> bool:
            return all(
                s.peer(a.id) is not None
                and s.peer(a.id).is_alive
                and s.peer(a.id).generation == a2.me.generation
                and s.peer(a.id).items() == {"role": "worker"}
                for s in (b, c)
            )

        yield wait_for(everyone_has_it)
        yield wait_for(
            lambda: read_cluster(self.plain, f"pokan:{a.id}")["keys"].get(a.id, {})
        )
        stored = read_cluster(self.plain, f"pokan:{a.id}")["keys"][a.id]
        self.assertEqual({k: v[0] for k, v in stored.items()}, {"role": "worker"})
        self.assertEqual(len(logs.matching("took back 1 of its")), 1)

    @defer.inlineCallbacks
    def test_a_node_whose_store_has_its_record_keeps_its_own_view(self) -> Any:
        b = yield self.node()
        a = yield self.node(self.redis_store(), seed=b)
        yield a.store("role", "worker")
        yield wait_for(lambda: self.converged(a, b))
        ports = {"tcp_port": a.tcp_port, "udp_port": a.udp_port}
        yield a.stopService()
        yield wait_for(lambda: b.peer(a.id).is_left)
        # the node deleted its key while its peers did not hear of it
        raw = self.plain.hgetall(f"pokan:{a.id}:keys:{a.id}")
        self.assertIn(b"role", raw)
        self.plain.hdel(f"pokan:{a.id}:keys:{a.id}", "role")
        a2 = yield self.node(self.redis_store(), seed=b, **ports)
        yield wait_for(lambda: b.peer(a.id).generation == a2.me.generation)
        self.assertEqual(a2.items(), {})
        self.assertEqual(b.peer(a.id).items(), {})


class RedisLostTests(ServerCase):
    @defer.inlineCallbacks
    def test_sigkill_while_updates_flow(self) -> Any:
        logs = LogCapture(self)
        store = self.redis_store()
        a = yield self.node(store)
        b = yield self.node(seed=a)
        prefix = f"pokan:{a.id}"
        counter = iter(range(10**6))

        def update() -> None:
            i = next(counter)
            a.store(f"a{i % 20}", str(i))
            b.store(f"b{i % 20}", str(i))
            if i % 7 == 0:
                a.delete(f"a{(i + 3) % 20}")

        writer = task.LoopingCall(update)
        writer.start(0.005)
        self.addCleanup(lambda: writer.running and writer.stop())
        yield wait_for(lambda: self.plain.hlen(f"{prefix}:keys:{b.id}") > 5)
        self.redis.kill()
        yield wait_for(lambda: not store.available)
        written = next(counter)
        yield wait_for(lambda: next(counter) > written + 30)  # updates go on
        self.assertTrue(store.pending > 0)
        self.plain.close()
        self.redis.start()  # empty, same port
        yield wait_for(lambda: store.available)
        yield wait_for(lambda: next(counter) > written + 60)
        writer.stop()
        yield wait_for(lambda: self.converged(a, b))
        yield wait_for(lambda: store.available and store.pending == 0)
        # nothing lost: Redis holds exactly the node's state
        yield wait_for(lambda: read_cluster(self.plain, prefix) == memory_cluster(a))
        self.assertEqual(len(logs.matching("unavailable, ")), 1)
        self.assertEqual(len(logs.matching("is back")), 1)
        self.assertTrue(a.peer(b.id).is_alive)

    @defer.inlineCallbacks
    def test_a_hung_redis_is_unavailable_after_one_timeout(self) -> Any:
        logs = LogCapture(self)
        timeout = 1.0
        store = self.redis_store(timeout=timeout)
        a = yield self.node(store)
        yield a.store("before", "1")
        # Redis keeps its connections but answers nothing, as a hung one does
        # (this client too, until the pause ends: unused until then)
        self.plain.execute_command("CLIENT", "PAUSE", int(4000 * timeout), "ALL")
        started = time.monotonic()
        yield a.store("during", "2")
        self.assertLess(time.monotonic() - started, 2.5 * timeout)
        (warning,) = logs.matching("unavailable, ")
        self.assertIn("Timeout", warning)
        started = time.monotonic()
        yield a.store("later", "3")  # no wait while Redis is away
        self.assertLess(time.monotonic() - started, timeout)
        self.assertFalse(store.available)
        # the pause ends: nothing was lost
        yield wait_for(lambda: store.available and store.pending == 0)
        prefix = f"pokan:{a.id}"
        yield wait_for(lambda: read_cluster(self.plain, prefix) == memory_cluster(a))
        self.assertEqual(
            set(read_cluster(self.plain, prefix)["keys"][a.id]),
            {"before", "during", "later"},
        )
        self.assertEqual(len(logs.matching("is back")), 1)


class EarlyWriteTests(ServerCase):
    @defer.inlineCallbacks
    def test_writes_before_start_win_over_persisted_ones(self) -> Any:
        a = yield self.node(self.redis_store())
        yield a.store("k", "old")
        yield a.store("keep", "1")
        ports = {"tcp_port": a.tcp_port, "udp_port": a.udp_port}
        yield a.stopService()
        a2 = Server("127.0.0.1", store=self.redis_store(), **ports)
        a2.store("k", "new")  # as `twistd pokan --store k=new` does
        yield a2.startService()
        self.addCleanup(a2.stopService)
        self.assertEqual(a2.items(), {"k": "new", "keep": "1"})
        me = a2._state.me
        self.assertGreater(me.entries["k"].version, me.entries["keep"].version)
        prefix = f"pokan:{a2.id}"
        yield wait_for(lambda: read_cluster(self.plain, prefix) == memory_cluster(a2))

    @defer.inlineCallbacks
    def test_writes_before_start_on_any_port(self) -> Any:
        a = Server("127.0.0.1", tcp_port=0, udp_port=0, store=self.redis_store())
        a.store("k", "v")  # made while its id still says port 0
        yield a.startService()
        self.addCleanup(a.stopService)
        prefix = f"pokan:{a.id}"
        yield wait_for(lambda: read_cluster(self.plain, prefix) == memory_cluster(a))


class DocsTests(ServerCase):
    @defer.inlineCallbacks
    def test_the_reader_in_docs_reads_what_the_api_reports(self) -> Any:
        (block,) = code_blocks("redis.md", "python")
        namespace: dict[str, Any] = {}
        exec(compile(block, "docs/redis.md", "exec"), namespace)
        read_cluster_as_documented = namespace["read_cluster"]
        a = yield self.node(self.redis_store())
        b = yield self.node(seed=a)
        yield b.store("bin", b"\x00")
        yield b.store("text", "t")
        yield a.store("gone", "x")
        yield a.delete("gone")
        yield wait_for(lambda: self.converged(a, b))

        def as_documented() -> dict[str, Any]:
            return {
                peer.id: {
                    "id": peer.id,
                    "address": peer.address,
                    "tcp_port": str(peer.tcp_port),
                    "udp_port": str(peer.udp_port),
                    "role": peer.role,
                    "status": peer.status,
                    "generation": str(peer.generation),
                    "keys": {
                        k: (v, peer.timestamp(k)) for k, v in peer.items().items()
                    },
                }
                for peer in [a.me, *a.peers()]
            }

        def same() -> bool:
            got = read_cluster_as_documented(self.redis.url, f"pokan:{a.id}")
            for node in got.values():
                node.pop("version")
            return bool(got == as_documented())

        yield wait_for(same)


class StartupTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_unreachable_redis_fails_start_clearly(self) -> Any:
        from pokan import StartupError
        from tests.redisserver import free_port

        url = f"redis://127.0.0.1:{free_port()}/0"
        server = Server("127.0.0.1", tcp_port=0, udp_port=0, store=RedisStore(url))
        with self.assertRaises(StartupError) as caught:
            yield server.startService()
        self.assertIn(f"Redis URL {url}: cannot connect: ", str(caught.exception))
        self.assertFalse(server.running)
        # the ports were released: the same node can start on them later
        self.assertEqual(server._ports.open, [])

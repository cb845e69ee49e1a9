"""RedisStore against a real, private redis-server (global reactor)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from pokan.core.state import Batch, ClusterState, Entry, KeyChange, NodeDelta, NodeInfo
from pokan.errors import ConfigurationError, StartupError
from pokan.store.interface import snapshot_of
from pokan.store.redis import BadRedisURL, RedisStore, RedisUnusable, redact
from tests.redisreader import raw_value, read_cluster
from tests.redisserver import RedisServer, free_port
from tests.waiting import wait_for

ME = NodeInfo("127.0.0.1:7001", 5, "127.0.0.1", 7001, 7001, "seed")
OTHER = NodeInfo("127.0.0.1:7002", 9, "127.0.0.1", 7002, 7002, "peer")


def other_delta(*entries: tuple[str, Entry], version: int = 10) -> NodeDelta:
    return NodeDelta(OTHER, 1, 0, version, entries)


class LogCapture:
    def __init__(self, case: unittest.TestCase) -> None:
        self.lines: list[str] = []
        globalLogPublisher.addObserver(self)
        case.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: dict[str, Any]) -> None:
        from twisted.logger import formatEvent

        self.lines.append(formatEvent(event))

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]


@defer.inlineCallbacks
def open_failure(test: unittest.TestCase, store: RedisStore) -> Any:
    """The message of the StartupError that ``store.open()`` fails with: one line."""
    with test.assertRaises(StartupError) as caught:
        yield store.open()
    message = str(caught.exception)
    test.assertNotIn("\n", message)
    return message


class StoreCase(unittest.TestCase):
    def setUp(self) -> None:
        self.redis = RedisServer()
        self.addCleanup(self.redis.stop)
        self.plain = self.redis.client()
        self.addCleanup(self.plain.close)
        self.state = ClusterState(ME)

    def make_store(self, **kwargs: Any) -> RedisStore:
        from twisted.internet import reactor

        kwargs.setdefault("prefix", "t")
        kwargs.setdefault("retry_interval", 0.05)
        store = RedisStore(self.redis.url, **kwargs)
        store.attach(ME.id, reactor, lambda: snapshot_of(self.state))
        return store

    @defer.inlineCallbacks
    def opened(self, **kwargs: Any) -> Any:
        store = self.make_store(**kwargs)
        snapshot = yield store.open()
        self.addCleanup(store.close)
        return store, snapshot


class RedisStoreTests(StoreCase):
    @defer.inlineCallbacks
    def test_open_empty(self) -> Any:
        store, snapshot = yield self.opened()
        self.assertIsNone(snapshot)
        self.assertEqual(
            self.plain.hgetall("t:meta"), {b"schema": b"2", b"node": ME.id.encode()}
        )
        self.assertTrue(store.available)

    @defer.inlineCallbacks
    def test_another_layout_is_refused_and_left_alone(self) -> Any:
        self.plain.hset("t:meta", mapping={"schema": "1", "node": ME.id})
        self.plain.hset(f"t:values:{ME.id}", "k", "v")
        message = yield open_failure(self, self.make_store())
        self.assertIn("t:meta says schema '1'; this pokan reads '2'", message)
        self.assertIn("Delete the keys under 't'", message)
        self.assertEqual(self.plain.hget(f"t:values:{ME.id}", "k"), b"v")

    @defer.inlineCallbacks
    def test_another_nodes_prefix_is_refused_and_left_alone(self) -> Any:
        self.plain.hset("t:meta", mapping={"schema": "2", "node": OTHER.id})
        self.plain.hset(f"t:keys:{OTHER.id}", "k", "v")
        message = yield open_failure(self, self.make_store())
        self.assertIn(
            f"Redis prefix 't' holds the state of node '{OTHER.id}', not of this"
            f" node '{ME.id}' (t:meta says so): give each node its own"
            " --redis-prefix; if this is that node moved to another address or"
            " port, delete the keys under 't' first",
            message,
        )
        self.assertEqual(self.plain.hget(f"t:keys:{OTHER.id}", "k"), b"v")
        self.assertEqual(self.plain.hget("t:meta", "node"), OTHER.id.encode())

    @defer.inlineCallbacks
    def test_wrong_type_where_pokan_keeps_its_keys_is_refused_by_name(self) -> Any:
        self.plain.set("t:meta", "someone else's")
        message = yield open_failure(self, self.make_store())
        self.assertIn(
            "t:meta is a Redis string, not the hash pokan keeps there: the prefix"
            " 't' holds something else. Choose another --redis-prefix, or delete"
            " t:meta if nothing needs it",
            message,
        )
        self.assertNotIn("WRONGTYPE", message)
        self.plain.delete("t:meta")
        self.plain.rpush("t:nodes", "x")
        message = yield open_failure(self, self.make_store())
        self.assertIn("t:nodes is a Redis list, not the set pokan keeps", message)
        self.assertEqual(self.plain.lrange("t:nodes", 0, -1), [b"x"])

    @defer.inlineCallbacks
    def test_what_is_not_pokans_layout_is_named_and_removed(self) -> Any:
        logs = LogCapture(self)
        store, _ = yield self.opened()
        yield store.persist(self.state.write("mine", "1", 1.0))
        yield store.persist(self.state.merge([other_delta(("a", Entry("1", 3, 7.0)))]))
        yield store.close()
        self.plain.hset(f"t:keys:{ME.id}", "bad", "no header")
        self.plain.hset(f"t:keys:{OTHER.id}", "junk", "no header")
        self.plain.sadd("t:nodes", "ghost", "z")  # no hash, a string
        self.plain.set("t:node:z", "x")
        again = self.make_store()
        snapshot = yield again.open()
        self.addCleanup(again.close)
        # this node's good keys stay; the other node is taken afresh from peers
        self.assertEqual([r.info.id for r in snapshot.nodes], [ME.id])
        self.assertEqual(set(snapshot.entries[ME.id]), {"mine"})
        (warning,) = logs.matching("not pokan's layout")
        self.assertIn(
            "removed from t 4 keys or fields that were not pokan's layout:"
            f" t:keys:{ME.id} field 'bad', t:keys:{OTHER.id} field 'junk',"
            " t:node:ghost (missing) and 1 more; nodes dropped for it, learned"
            f" again from the cluster: {OTHER.id}, ghost, z",
            warning,
        )
        # Redis holds exactly what the node loaded
        self.assertEqual(self.plain.smembers("t:nodes"), {ME.id.encode()})
        self.assertEqual(
            read_cluster(self.plain, "t")["keys"], {ME.id: {"mine": ("1", 1, 1.0)}}
        )
        for gone in (f"t:node:{OTHER.id}", f"t:keys:{OTHER.id}", "t:node:z"):
            self.assertEqual(self.plain.exists(gone), 0, gone)

    @defer.inlineCallbacks
    def test_persist_and_reopen(self) -> Any:
        store, _ = yield self.opened()
        s = self.state
        batches = [
            s.write("text", "héllo", 1.5),
            s.write("blob", b"\x00\xff", 2.25),
            s.write("gone", "x", 3.0),
            s.write("gone", None, 4.0),
            s.merge(
                [other_delta(("a", Entry("1", 3, 7.0)), ("b", Entry(b"2", 4, 8.0)))]
            ),
        ]
        for batch in batches:
            yield store.persist(batch)
        self.assertEqual(store.batches_written, 5)
        state = read_cluster(self.plain, "t")
        self.assertEqual(
            state["keys"][ME.id],
            {
                "text": ("héllo", 1, 1.5),
                "blob": (b"\x00\xff", 2, 2.25),
                "gone": (None, 4, 4.0),
            },
        )
        self.assertEqual(
            state["keys"][OTHER.id], {"a": ("1", 3, 7.0), "b": (b"2", 4, 8.0)}
        )
        self.assertEqual(state["nodes"][OTHER.id]["generation"], 9)
        self.assertEqual(state["nodes"][ME.id]["version"], 4)
        yield store.close()

        again = self.make_store()
        snapshot = yield again.open()
        self.addCleanup(again.close)
        self.assertEqual(snapshot, snapshot_of(self.state))

    @defer.inlineCallbacks
    def test_dropped_keys_leave_redis(self) -> Any:
        store, _ = yield self.opened()
        yield store.persist(self.state.merge([other_delta(("a", Entry("1", 3, 7.0)))]))
        old = Entry("1", 3, 7.0)
        yield store.persist(Batch((KeyChange(OTHER.id, "a", old, None),)))
        self.assertEqual(self.plain.hgetall(f"t:keys:{OTHER.id}"), {})

    @defer.inlineCallbacks
    def test_one_exec_per_batch_whatever_its_size(self) -> Any:
        store, _ = yield self.opened()
        before = self.redis.exec_count()
        big = self.state.merge(
            [
                other_delta(
                    *((f"k{i}", Entry(str(i), i + 1, 1.0)) for i in range(1000)),
                    version=1000,
                )
            ]
        )
        yield store.persist(big)
        self.assertEqual(self.redis.exec_count() - before, 1)
        for i in range(5):
            yield store.persist(self.state.write(f"mine{i}", "v", 1.0))
        self.assertEqual(self.redis.exec_count() - before, 6)
        self.assertEqual(self.plain.hlen(f"t:keys:{OTHER.id}"), 1000)

    @defer.inlineCallbacks
    def test_writes_stay_in_order(self) -> Any:
        store, _ = yield self.opened()
        ds = [
            store.persist(self.state.write("k", str(i), float(i))) for i in range(200)
        ]
        yield defer.gatherResults(ds)
        self.assertEqual(raw_value(self.plain, "t", ME.id, "k"), b"199")

    @defer.inlineCallbacks
    def test_unreachable_at_start(self) -> Any:
        port = free_port()
        store = RedisStore(f"redis://:secret@127.0.0.1:{port}/0", prefix="t")
        message = yield open_failure(self, store)
        self.assertTrue(
            message.startswith(
                f"Redis URL redis://:***@127.0.0.1:{port}/0: cannot connect: Error"
            ),
            message,
        )
        self.assertTrue(
            message.endswith(" (is redis-server running? check the URL)"), message
        )
        self.assertNotIn("secret", message)
        with self.assertRaises(RedisUnusable) as caught:
            store.check()
        self.assertIsInstance(caught.exception, StartupError)
        self.assertEqual(str(caught.exception), message)
        # named as a caller names the URL's setting (twistd: --redis)
        self.assertEqual(
            caught.exception.describe({"redis": "--redis"}),
            message.replace("Redis URL ", "--redis ", 1),
        )

    def test_bad_url(self) -> None:
        with self.assertRaises(BadRedisURL) as caught:
            RedisStore("http://:secret@x")
        self.assertIsInstance(caught.exception, ConfigurationError)
        self.assertEqual(
            caught.exception.describe({"redis": "--redis"}),
            "--redis http://:***@x: cannot parse it: Redis URL must specify one of"
            " the following schemes (redis://, rediss://, unix://)",
        )
        self.assertRaises(ConfigurationError, RedisStore, self.redis.url, prefix="")

    def test_redact(self) -> None:
        self.assertEqual(redact("redis://u:pw@h:1/0"), "redis://u:***@h:1/0")
        self.assertEqual(redact("redis://h:1/0"), "redis://h:1/0")
        self.assertEqual(
            redact("unix:///s?db=1&password=pw"), "unix:///s?db=1&password=***"
        )

    @defer.inlineCallbacks
    def test_password_and_db_in_the_url(self) -> Any:
        self.plain.config_set("requirepass", "s3cret")
        self.plain.execute_command("AUTH", "s3cret")
        url = f"redis://:s3cret@127.0.0.1:{self.redis.port}/2"
        store = RedisStore(url, prefix="t")
        self.assertEqual(store.url, f"redis://:***@127.0.0.1:{self.redis.port}/2")
        yield store.open()
        yield store.persist(self.state.write("k", "v", 1.0))
        yield store.close()
        self.plain.select(2)
        self.assertEqual(raw_value(self.plain, "t", ME.id, "k"), b"v")
        wrong = RedisStore(url.replace("s3cret", "nope"), prefix="t")
        message = yield open_failure(self, wrong)
        self.assertNotIn("nope", message)
        self.assertIn(": refused: ", message)
        self.assertTrue(
            message.endswith(" (check the user and password in the URL)"), message
        )

    def test_check(self) -> None:
        self.make_store().check()  # no exception

    @defer.inlineCallbacks
    def test_events_published_after_commit(self) -> Any:
        store, _ = yield self.opened(publish_events=True)
        sub = self.plain.pubsub()
        self.addCleanup(sub.close)
        sub.subscribe("t:events")
        yield wait_for(lambda: sub.get_message(timeout=0))  # the subscribe reply
        yield store.persist(self.state.write("k", "v", 1.0))
        yield store.persist(self.state.write("k", b"w", 2.0))
        yield store.persist(self.state.write("k", None, 3.0))
        got: list[Any] = []

        def received() -> bool:
            message = sub.get_message(timeout=0)
            if message is not None:
                got.append(json.loads(message["data"]))
            return len(got) == 3

        yield wait_for(received)
        self.assertEqual(
            [(m["event"], m["node"], m["key"], m["type"], m["value"]) for m in got],
            [
                ("new_key", ME.id, "k", "str", "v"),
                ("key_changed", ME.id, "k", "bytes", "dw=="),
                ("key_removed", ME.id, "k", "bytes", "dw=="),
            ],
        )
        self.assertEqual(got[0]["version"], 1)
        self.assertEqual(got[1]["timestamp"], 2.0)


class UrlSchemeTests(unittest.TestCase):
    """unix:// and rediss:// URLs, against servers of their own."""

    @defer.inlineCallbacks
    def write_through(self, server: RedisServer, url: str) -> Any:
        """Open a store at ``url``, write one key; check it with a plain client."""
        self.addCleanup(server.stop)
        store = RedisStore(url, prefix="u")
        self.assertIsNone((yield store.open()))
        state = ClusterState(ME)
        yield store.persist(state.write("k", "v", 1.0))
        yield store.close()
        plain = server.client()
        self.addCleanup(plain.close)
        self.assertEqual(raw_value(plain, "u", ME.id, "k"), b"v")

    def test_unix_url(self) -> Any:
        server = RedisServer(unix_socket=True)
        return self.write_through(server, server.unix_url)

    def test_tls_url(self) -> Any:
        server = RedisServer(tls=True)
        return self.write_through(server, server.tls_url)

    @defer.inlineCallbacks
    def test_tls_server_not_trusted_fails_clearly(self) -> Any:
        server = RedisServer(tls=True)
        self.addCleanup(server.stop)
        url = f"rediss://127.0.0.1:{server.port}/0"  # the system's CAs only
        store = RedisStore(url, prefix="s")
        message = yield open_failure(self, store)
        self.assertIn(f"Redis URL {url}: cannot connect: ", message)
        self.assertIn("certificate verify failed", message)


class OutageTests(StoreCase):
    """Redis going away while the node runs."""

    @defer.inlineCallbacks
    def test_pending_written_when_back(self) -> Any:
        logs = LogCapture(self)
        store, _ = yield self.opened()
        yield store.persist(self.state.write("k", "0", 0.0))
        # make Redis refuse us (same server, so same run_id): writes fail
        self.plain.config_set("requirepass", "pw")
        self.plain.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        for i in range(1, 50):
            yield store.persist(self.state.write("k", str(i), float(i)))
            yield store.persist(self.state.write(f"other{i % 3}", str(i), float(i)))
        self.assertFalse(store.available)
        self.assertLessEqual(store.pending, 5)  # latest per key, plus our record
        self.assertEqual(len(logs.matching("unavailable")), 1)
        self.assertIn(
            f"Redis at {self.redis.url} unavailable, ", logs.matching("unavailable")[0]
        )
        self.plain.execute_command("AUTH", "pw")
        self.plain.config_set("requirepass", "")
        yield wait_for(lambda: store.available)
        self.assertEqual(store.pending, 0)
        self.assertEqual(len(logs.matching("is back")), 1)
        self.assertIn("pending changes written", logs.matching("is back")[0])
        self.assertEqual(
            read_cluster(self.plain, "t")["keys"][ME.id],
            {
                k: (e.value, e.version, e.timestamp)
                for k, e in self.state.me.entries.items()
            },
        )

    @defer.inlineCallbacks
    def test_restart_empty_rewrites_everything(self) -> Any:
        logs = LogCapture(self)
        store, _ = yield self.opened()
        yield store.persist(self.state.merge([other_delta(("a", Entry("1", 3, 7.0)))]))
        yield store.persist(self.state.write("k", "0", 0.0))
        self.redis.kill()
        yield store.persist(self.state.write("k", "1", 1.0))
        self.assertFalse(store.available)
        self.plain.close()
        self.redis.start()
        yield wait_for(lambda: store.available)
        self.assertIn("whole state was rewritten", logs.matching("is back")[0])
        got = read_cluster(self.plain, "t")
        self.assertEqual(got["keys"][OTHER.id], {"a": ("1", 3, 7.0)})
        self.assertEqual(got["keys"][ME.id], {"k": ("1", 2, 1.0)})
        self.assertEqual(self.plain.hgetall("t:meta")[b"schema"], b"2")

    @defer.inlineCallbacks
    def test_lost_while_idle_is_noticed_without_a_write(self) -> Any:
        logs = LogCapture(self)
        store, _ = yield self.opened(health_interval=0.05)
        yield store.persist(self.state.write("k", "0", 0.0))
        self.redis.kill()
        yield wait_for(lambda: not store.available)
        self.assertEqual(len(logs.matching("unavailable, 0 changes pending")), 1)

    @defer.inlineCallbacks
    def test_restarted_while_idle_gets_the_state_again_without_a_write(self) -> Any:
        logs = LogCapture(self)
        store, _ = yield self.opened(health_interval=0.05)
        yield store.persist(self.state.write("k", "0", 0.0))
        self.redis.kill()
        self.plain.close()
        self.redis.start()  # empty: it keeps nothing on disk
        yield wait_for(lambda: logs.matching("whole state was rewritten"))
        self.assertEqual(
            read_cluster(self.plain, "t")["keys"][ME.id], {"k": ("0", 1, 0.0)}
        )
        self.assertTrue(store.available)

    @defer.inlineCallbacks
    def test_flushall_while_idle_gets_the_state_again_without_a_write(self) -> Any:
        logs = LogCapture(self)
        store, _ = yield self.opened(health_interval=0.05)
        yield store.persist(self.state.merge([other_delta(("a", Entry("1", 3, 7.0)))]))
        yield store.persist(self.state.write("role", "worker", 0.0))
        self.plain.flushall()  # the same server: its run_id does not change
        yield wait_for(lambda: logs.matching("whole state was rewritten"))
        got = read_cluster(self.plain, "t")
        self.assertEqual(got["keys"][ME.id], {"role": ("worker", 1, 0.0)})
        self.assertEqual(got["keys"][OTHER.id], {"a": ("1", 3, 7.0)})
        self.assertEqual(self.plain.hgetall("t:meta")[b"node"], ME.id.encode())
        self.assertEqual(len(logs.matching("lost the keys under prefix t")), 1)
        self.assertTrue(store.available)

    @defer.inlineCallbacks
    def test_deleted_prefix_after_a_write_is_rewritten_whole(self) -> Any:
        logs = LogCapture(self)
        store, _ = yield self.opened(health_interval=0.05)
        yield store.persist(self.state.write("role", "worker", 0.0))
        self.plain.delete("t:meta", "t:nodes", *self.plain.keys("t:node*"))
        # a write after the loss recreates some keys, but not the meta
        yield store.persist(self.state.write("other", "x", 1.0))
        yield wait_for(lambda: logs.matching("whole state was rewritten"))
        got = read_cluster(self.plain, "t")
        self.assertEqual(
            got["keys"][ME.id], {"role": ("worker", 1, 0.0), "other": ("x", 2, 1.0)}
        )
        self.assertIn(b"schema", self.plain.hgetall("t:meta"))

    @defer.inlineCallbacks
    def test_close_while_down(self) -> Any:
        logs = LogCapture(self)
        store, _ = yield self.opened()
        self.redis.kill()
        yield store.persist(self.state.write("k", "1", 1.0))
        yield store.close()
        self.assertEqual(len(logs.matching("changes not written")), 1)


class DroppedNodesWordingTests(unittest.TestCase):
    def test_others_are_learned_again_this_node_is_lost(self) -> None:
        from pokan.store.redis import _dropped_nodes

        self.assertEqual(_dropped_nodes((), "me"), "")
        self.assertEqual(
            _dropped_nodes(("a",), "me"),
            "; nodes dropped for it, learned again from the cluster: a",
        )
        said = _dropped_nodes(("a", "me"), "me")
        self.assertIn("learned again from the cluster: a;", said)
        self.assertNotIn("cluster: a, me", said)
        self.assertIn("this node's own record dropped too", said)


class ShutdownReactor:
    """The global reactor, with a shutdown event of its own that a test fires.

    Its triggers are Twisted's own three-phase event, so removing one that
    already ran fails as it does in a real reactor.
    """

    def __init__(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.base import _ThreePhaseEvent

        self._reactor = reactor
        self._shutdown = _ThreePhaseEvent()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def addSystemEventTrigger(
        self, phase: str, event: str, f: Any, *args: Any, **kwargs: Any
    ) -> Any:
        assert event == "shutdown"
        return event, self._shutdown.addTrigger(phase, f, *args, **kwargs)

    def removeSystemEventTrigger(self, trigger: Any) -> None:
        self._shutdown.removeTrigger(trigger[1])

    def shut_down(self) -> None:
        self._shutdown.fireEvent()


class ReactorShutdownTests(StoreCase):
    @defer.inlineCallbacks
    def test_reactor_shutdown_stops_the_worker_without_an_error(self) -> Any:
        """A store the node could not close: the reactor's shutdown stops its
        worker thread (it used to fail: list.remove(x): x not in list)."""
        reactor = ShutdownReactor()
        store = self.make_store(reactor=reactor)
        yield store.open()
        pool = store._pool
        assert pool is not None
        reactor.shut_down()
        self.assertIsNone(store._pool)
        self.assertFalse(pool.started)
        self.assertEqual(reactor._shutdown.after, [])
        yield store.close()  # a close after it changes nothing

    @defer.inlineCallbacks
    def test_close_removes_the_shutdown_trigger(self) -> Any:
        reactor = ShutdownReactor()
        store = self.make_store(reactor=reactor)
        yield store.open()
        yield store.close()
        self.assertEqual(reactor._shutdown.after, [])
        reactor.shut_down()

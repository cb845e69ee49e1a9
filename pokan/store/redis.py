"""The Redis store: the cluster state, durable and readable by any program.

redis-py (with the hiredis parser) runs in one dedicated worker thread, so
the reactor never blocks on Redis and batches are written in the order they
came, each in one MULTI/EXEC. The layout is in :mod:`pokan.store.redis_schema`
and docs/redis.md.

When Redis goes away the node carries on from memory: each batch is folded
into :class:`~pokan.store.pending.Pending` (the latest change per key) and
``persist()`` fires at once. A probe runs every ``retry_interval`` seconds;
once Redis answers, the pending changes are written, or, if Redis restarted
(its ``run_id`` changed) or lost the prefix (its ``meta`` key is gone: a
FLUSHALL, a FLUSHDB, a deleted prefix), the node's whole state is written
afresh.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import redis
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from pokan.core.state import Batch
from pokan.errors import ConfigurationError, NamesSettings, StartupError
from pokan.net.meters import Timings
from pokan.net.reactors import global_reactor
from pokan.store import redis_io
from pokan.store.interface import IAttachedStore, Snapshot
from pokan.store.pending import Pending, Plan, overlay
from pokan.store.redis_schema import Keys, default_prefix

log = Logger()

T = TypeVar("T")

UP, DOWN, RECOVERING, CLOSED = "up", "down", "recovering", "closed"

#: at most this many batches, or about this many keys, per worker job
GROUP_BATCHES = 1000
GROUP_KEYS = 50_000
#: seconds: a local Redis writes a batch in a fraction of a millisecond
WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)

#: a batch queued for the worker: its number, what it writes (a Plan, or the
#: Batch itself on the hot path: no Plan built), who waits
Queued = tuple[int, Plan | Batch, "defer.Deferred[None]"]


def size_of(written: Plan | Batch) -> int:
    if isinstance(written, Plan):
        return len(written)
    return len(written.changes) + len(written.nodes) + len(written.forgotten)


def as_plan(written: Plan | Batch) -> Plan:
    """What a queued batch writes, as a Plan (to keep it while Redis is away)."""
    return written if isinstance(written, Plan) else Plan.of(written)


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``, fit for logs."""
    url = re.sub(r"(://[^/@]*?:)[^/@]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&]*", r"\1***", url)


#: how many things a message names before it says how many more
NAMED = 3


def named(things: tuple[str, ...]) -> str:
    """The first few of ``things``, and how many more."""
    shown = ", ".join(things[:NAMED])
    more = len(things) - NAMED
    return f"{shown} and {more} more" if more > 0 else shown


#: how the store's messages name its URL (twistd's is ``--redis``)
STORE_NAMES = {"redis": "Redis URL"}


class _AboutTheURL(NamesSettings):
    """What is wrong with the Redis of ``url`` (its password hidden): ``problem``."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(self.describe(STORE_NAMES))

    def describe(self, names: Mapping[str, str]) -> str:
        """The message, naming the URL's setting as ``names["redis"]``."""
        return f"{names['redis']} {self.url}: {self.problem}"


class BadRedisURL(_AboutTheURL, ConfigurationError):
    """The URL is not one redis-py (and pokan) can use."""


class RedisUnusable(_AboutTheURL, StartupError):
    """Redis does not answer, refuses this node, or its prefix is not this node's."""


#: Redis answered, but refused the URL's credentials
REFUSED = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)


def problem_of(error: BaseException) -> str:
    """Why Redis cannot be used, with what to check."""
    if isinstance(error, REFUSED):
        return f"refused: {error} (check the user and password in the URL)"
    if isinstance(error, redis.ConnectionError | redis.TimeoutError | OSError):
        return f"cannot connect: {error} (is redis-server running? check the URL)"
    if isinstance(error, redis.RedisError):
        return f"Redis refused a command: {error}"
    return str(error)  # SchemaError: the prefix holds something else


class _Unavailable(Exception):
    """Redis failed earlier and has not answered a probe since."""


@implementer(IAttachedStore)
class RedisStore:
    """Persist the cluster state in Redis at ``url``.

    ``url`` is what redis-py accepts: ``redis://[[user]:password@]host[:port][/db]``,
    ``rediss://`` (TLS) or ``unix:///path/to/socket?db=0``. Keys go under
    ``prefix``, by default ``pokan:<node id>``. With ``publish_events`` each
    key event is also published on ``<prefix>:events``.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        publish_events: bool = False,
        retry_interval: float = 1.0,
        timeout: float = 5.0,
        health_interval: float = 10.0,
        reactor: Any = None,
    ) -> None:
        self.url = redact(url)
        try:
            self._client = redis_io.make_client(url, timeout)
        except ValueError as e:
            raise BadRedisURL(self.url, f"cannot parse it: {e}") from None
        if prefix is not None and not prefix:
            raise ConfigurationError("the Redis key prefix must not be empty")
        self._prefix = prefix
        self._keys: Keys | None = Keys(prefix) if prefix else None
        self._node_id = ""
        self.publish_events = publish_events
        self.retry_interval = retry_interval
        #: seconds between checks that Redis is there and the same server
        self.health_interval = health_interval
        self._health_call: Any = None
        self._reactor = reactor
        self._state_of_node: Callable[[], Snapshot] | None = None
        self._pool: ThreadPool | None = None
        self._shutdown_trigger: Any = None
        self._status = CLOSED
        self._run_id = ""
        self._seq = 0
        self._pending = Pending()
        self._probe_call: Any = None
        self._recovered = 0
        self._rewrote = False
        self._broken = False  # touched only in the worker thread
        self._queue: deque[Queued] = deque()
        #: seconds from a group of batches handed to the worker to written
        self.write_seconds = Timings(
            "pokan_redis_write_duration_seconds",
            "Seconds a write of pending batches to Redis took (one MULTI/EXEC"
            " per batch, batches grouped).",
            WRITE_BUCKETS,
        )
        self._writing = False
        self._early: Plan | None = None
        #: batches written, each in its own MULTI/EXEC (not counting recovery)
        self.batches_written = 0

    # -- configuration --------------------------------------------------------

    @property
    def prefix(self) -> str | None:
        """The key prefix; None until attached to a node when left to default."""
        return self._keys.prefix if self._keys is not None else None

    @property
    def available(self) -> bool:
        """True while Redis takes writes as they come."""
        return self._status == UP

    @property
    def pending(self) -> int:
        """Changes kept in memory until Redis is back."""
        return len(self._pending)

    def attach(self, node_id: str, reactor: Any, state: Callable[[], Snapshot]) -> None:
        self._node_id = node_id
        if self._reactor is None:
            self._reactor = reactor
        self._state_of_node = state
        if self._prefix is None:
            self._keys = Keys(default_prefix(node_id))

    def check(self, node_id: str | None = None) -> None:
        """Ping Redis now, blocking; raise :class:`RedisUnusable` (a
        StartupError) if it cannot be used.

        With ``node_id``, also refuse a prefix that holds another layout or
        another node's state, as :meth:`open` would. For command-line tools,
        before any reactor runs (a daemon's failure must come before twistd
        reports a good start).
        """
        try:
            self._client.ping()
            if node_id is not None:
                keys = self._keys or Keys(default_prefix(node_id))
                redis_io.check_prefix(self._client, keys, node_id)
        except (redis.RedisError, ValueError) as e:
            raise RedisUnusable(self.url, problem_of(e)) from None
        finally:
            self._client.connection_pool.disconnect()

    # -- the worker thread ----------------------------------------------------

    def _get_reactor(self) -> Any:
        if self._reactor is None:
            self._reactor = global_reactor()
        return self._reactor

    def _run(self, f: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        assert self._pool is not None
        return deferToThreadPool(self._get_reactor(), self._pool, f, *args)

    def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
        trigger, self._shutdown_trigger = self._shutdown_trigger, None
        if trigger is not None:
            self._get_reactor().removeSystemEventTrigger(trigger)

    def _reactor_shut_down(self) -> None:
        """The reactor stopped before the store was closed: stop the worker.

        The trigger that calls this has run: it is no longer the reactor's
        to remove (removing it would raise ValueError).
        """
        self._shutdown_trigger = None
        self._cancel_timers()
        self._status = CLOSED
        self._stop_pool()

    # -- IStore ---------------------------------------------------------------

    def open(self) -> defer.Deferred[Snapshot | None]:
        """Connect and load; fails with StartupError if Redis cannot be used."""
        if self._keys is None:
            self._keys = Keys(default_prefix(self._node_id or "unattached"))
        reactor = self._get_reactor()
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="pokan-redis")
        self._pool.start()
        # never leave the worker thread behind, even if close() is not called
        self._shutdown_trigger = reactor.addSystemEventTrigger(
            "after", "shutdown", self._reactor_shut_down
        )
        self._broken = False
        d: defer.Deferred[Any] = self._run(
            redis_io.load, self._client, self._keys, self._node_id
        )
        d.addCallbacks(self._opened, self._open_failed)
        return d

    def _opened(self, loaded: redis_io.Loaded) -> Snapshot | None:
        self._status = UP
        self._run_id = loaded.run_id
        snapshot = loaded.snapshot
        if self._pending:
            # the node wrote before it started: those writes win
            early = self._pending.take().plan()
            # made under the id the node had before it bound its ports; the
            # node commits its own record once started
            mine = {k: e for entries in early.keys.values() for k, e in entries.items()}
            early = Plan({self._node_id: mine})
            if snapshot is not None:
                snapshot, early = overlay(snapshot, early, self._node_id)
            # written with the first batch, which carries our new record
            self._early = early
        nodes = len(snapshot.nodes) if snapshot else 0
        keys = sum(map(len, snapshot.entries.values())) if snapshot else 0
        log.info(
            "Redis store at {url}, prefix {prefix}: restored {nodes} nodes,"
            " {keys} keys",
            url=self.url,
            prefix=self.prefix,
            nodes=nodes,
            keys=keys,
        )
        if loaded.removed:
            log.warn(
                "Redis store: removed from {prefix} {count} keys or fields that"
                " were not pokan's layout: {named}{dropped}",
                prefix=self.prefix,
                count=len(loaded.removed),
                named=named(loaded.removed),
                dropped=_dropped_nodes(loaded.dropped, self._node_id),
            )
        self._schedule_health_check()
        return snapshot

    def _open_failed(self, failure: Failure) -> Failure:
        self._stop_pool()
        error = failure.value
        if isinstance(error, redis.RedisError | OSError | ValueError):
            return Failure(RedisUnusable(self.url, problem_of(error)))
        return failure

    def persist(self, batch: Batch) -> defer.Deferred[None]:
        """Write one batch in one MULTI/EXEC; fire once Redis has it.

        While Redis is unavailable the batch is kept (latest value per key)
        and the Deferred fires at once: the node carries on from memory.
        """
        self._seq += 1
        if self._status != UP:
            self._pending.add(self._seq, Plan.of(batch))
            return defer.succeed(None)
        if self._early is None and not self.publish_events:
            return self._submit(self._seq, batch)  # the hot path: no Plan
        plan = Plan.of(batch, self.publish_events)
        if self._early is not None:
            plan, self._early = self._early.updated(plan), None
        return self._submit(self._seq, plan)

    def _submit(self, seq: int, written: Plan | Batch) -> defer.Deferred[None]:
        """Queue batch number ``seq`` for the worker.

        While the worker writes, batches queue up; it then takes them all in
        one job, each still in its own MULTI/EXEC, in order (a group commit:
        it saves a thread hand-off and a round trip per batch). The worker
        encodes them too, chunk by chunk while Redis runs the previous chunk.
        """
        d: defer.Deferred[None] = defer.Deferred()
        self._queue.append((seq, written, d))
        if not self._writing:
            self._write_queued()
        return d

    def _write_queued(self) -> None:
        group: list[Queued] = []
        size = 0
        while self._queue and size < GROUP_KEYS and len(group) < GROUP_BATCHES:
            item = self._queue.popleft()
            group.append(item)
            size += size_of(item[1])
        self._writing = True
        started = self._get_reactor().seconds()
        job = self._run(self._write, [written for _, written, _ in group])
        job.addCallbacks(
            self._group_written,
            self._group_failed,
            callbackArgs=(group, started),
            errbackArgs=(group,),
        )

    def _write(self, written: list[Plan | Batch]) -> None:
        """Worker thread: write, unless Redis failed and no probe passed since."""
        if self._broken:
            raise _Unavailable("Redis failed earlier")
        assert self._keys is not None
        self._marking_failure(redis_io.write, self._client, self._keys, written)

    def _marking_failure(self, f: Callable[..., T], *args: Any) -> T:
        """Worker thread: ``f(*args)``; if it fails, Redis counts as failed
        (no write is tried) until a probe passes."""
        try:
            return f(*args)
        except BaseException:
            self._broken = True
            raise

    def _group_written(self, _: None, group: list[Queued], started: float) -> None:
        self.write_seconds.observe(max(0.0, self._get_reactor().seconds() - started))
        self.batches_written += len(group)
        for item in group:
            item[2].callback(None)
        self._writing = False
        if self._queue and self._status == UP:
            self._write_queued()

    def _group_failed(self, failure: Failure, group: list[Queued]) -> None:
        # keep every batch not known written, the queued ones too
        group.extend(self._queue)
        self._queue.clear()
        for seq, written, _ in group:
            plan = as_plan(written)
            plan.events.clear()  # events are not replayed after an outage
            self._pending.add(seq, plan)
        self._writing = False
        self._went_down(failure)
        for item in group:
            item[2].callback(None)

    def close(self) -> defer.Deferred[None]:
        """Write what is queued (one last try if Redis was away), then stop."""
        if self._pool is None:
            self._status = CLOSED
            return defer.succeed(None)
        self._cancel_timers()
        self._status = CLOSED
        # let the worker finish what it has (what fails is kept as pending)
        d = self._run(lambda: None)
        d.addCallback(lambda _: self._write_last())
        d.addBoth(lambda _: self._stop_pool())
        return d

    def _cancel_timers(self) -> None:
        for call in (self._probe_call, self._health_call):
            if call is not None and call.active():
                call.cancel()
        self._probe_call = self._health_call = None

    def _write_last(self) -> defer.Deferred[None]:
        queued = list(self._queue)
        self._queue.clear()
        if self._early is not None:
            self._pending.add(1, self._early)  # older than any batch since
            self._early = None
        for seq, written, _ in queued:
            self._pending.add(seq, as_plan(written))
        taken = self._pending.take()
        d = self._run(self._last_write, taken.plan())
        d.addErrback(self._last_write_failed, len(taken))
        d.addCallback(self._release, [waiting for _, _, waiting in queued])
        return d

    @staticmethod
    def _release(_: object, waiting: list[defer.Deferred[None]]) -> None:
        for d in waiting:
            d.callback(None)

    def _last_write(self, plan: Plan) -> None:
        """Worker thread: the last pending changes, if any; then disconnect."""
        try:
            if plan:
                self._broken = False
                self._write([plan])
        finally:
            self._client.connection_pool.disconnect()

    def _last_write_failed(self, failure: Failure, count: int) -> None:
        log.warn(
            "Redis at {url} unavailable at close: {count} changes not written",
            url=self.url,
            count=count,
        )

    # -- losing Redis and getting it back --------------------------------------

    def _went_down(self, failure: Failure) -> None:
        if self._status == UP:
            log.warn(
                "Redis at {url} unavailable, {count} changes pending ({error})",
                url=self.url,
                count=len(self._pending),
                error=failure.getErrorMessage(),
            )
            self._recovered = 0
            self._rewrote = False
        if self._status in (UP, RECOVERING):
            self._status = DOWN
            self._schedule_probe()

    def _schedule_health_check(self) -> None:
        """Ask Redis every ``health_interval`` whether it is there, and the
        same server: a node that writes nothing would otherwise learn of an
        outage, or of a restart that lost its keys, only at its next write."""
        if self._status == CLOSED or self.health_interval <= 0:
            return
        self._health_call = self._get_reactor().callLater(
            self.health_interval, self._check_health
        )

    def _check_health(self) -> None:
        self._health_call = None
        if self._status != UP:  # down or recovering: the probes look after it
            self._schedule_health_check()
            return
        assert self._keys is not None
        d = self._run(self._marking_failure, redis_io.health, self._client, self._keys)
        d.addCallbacks(self._healthy, self._went_down)
        d.addBoth(lambda _: self._schedule_health_check())

    def _healthy(self, found: redis_io.Health) -> None:
        if self._status != UP or (found.kept and found.run_id == self._run_id):
            return
        if found.run_id != self._run_id:
            log.warn(
                "Redis at {url} restarted while this node wrote nothing;"
                " writing its state again",
                url=self.url,
            )
        self._recovered = 0
        self._rewrote = False
        self._reachable(found)

    def _schedule_probe(self) -> None:
        if self._status == CLOSED:
            return
        self._probe_call = self._get_reactor().callLater(
            self.retry_interval, self._probe
        )

    def _probe(self) -> None:
        self._probe_call = None
        if self._status == CLOSED:
            return
        d = self._run(self._probe_in_worker)
        d.addCallbacks(self._reachable, lambda _: self._schedule_probe())

    def _probe_in_worker(self) -> redis_io.Health:
        self._client.connection_pool.disconnect()
        assert self._keys is not None
        found = redis_io.health(self._client, self._keys)
        self._broken = False
        return found

    def _reachable(self, found: redis_io.Health) -> None:
        if self._status == CLOSED:
            return
        self._status = RECOVERING
        run_id = found.run_id
        if not found.kept and run_id == self._run_id:  # the same server
            log.warn(
                "Redis at {url} lost the keys under prefix {prefix} (a FLUSHALL,"
                " a FLUSHDB or a deleted prefix); writing this node's whole"
                " state again",
                url=self.url,
                prefix=self.prefix,
            )
            self._run_id = ""  # as for a restarted Redis: rewrite everything
        if run_id != self._run_id and self._state_of_node is not None:
            # Redis restarted: what it holds (if anything) may be older than
            # what we wrote; write everything again
            snapshot = self._state_of_node()
            self._pending.drop_up_to(self._seq)
            d = self._run(self._rewrite, snapshot)
            d.addCallbacks(
                self._rewritten,
                self._went_down,
                callbackArgs=(run_id, snapshot),
            )
            return
        if run_id != self._run_id:
            log.warn(
                "Redis at {url} restarted; this store has no node state to"
                " rewrite, so only pending changes are written",
                url=self.url,
            )
            self._run_id = run_id
        self._flush()

    def _rewrite(self, snapshot: Snapshot) -> None:
        assert self._keys is not None
        self._marking_failure(
            redis_io.rewrite, self._client, self._keys, self._node_id, snapshot
        )

    def _rewritten(self, _: None, run_id: str, snapshot: Snapshot) -> None:
        self._run_id = run_id
        self._rewrote = True
        self._recovered += len(snapshot.nodes) + sum(
            map(len, snapshot.entries.values())
        )
        self._flush()

    def _flush(self) -> None:
        if self._status == CLOSED:
            return
        if not self._pending:
            self._status = UP
            log.info(
                "Redis at {url} is back; {what} ({count} keys and node records)",
                url=self.url,
                what=(
                    "it had restarted, so the whole state was rewritten"
                    if self._rewrote
                    else "pending changes written"
                ),
                count=self._recovered,
            )
            return
        taken = self._pending.take()
        d = self._run(self._write, [taken.plan()])
        d.addCallbacks(
            self._flushed,
            self._flush_failed,
            callbackArgs=(len(taken),),
            errbackArgs=(taken,),
        )

    def _flushed(self, _: None, count: int) -> None:
        self._recovered += count
        self._flush()

    def _flush_failed(self, failure: Failure, taken: Pending) -> None:
        self._pending.add_all(taken)
        self._went_down(failure)


def _dropped_nodes(dropped: tuple[str, ...], me: str) -> str:
    """What the removal warning says of the nodes dropped whole."""
    others = tuple(n for n in dropped if n != me)
    said = []
    if others:
        said.append(
            f"nodes dropped for it, learned again from the cluster: {named(others)}"
        )
    if me in dropped:
        said.append(
            "this node's own record dropped too, its keys with it (lost; the node"
            " writes its record again as it starts)"
        )
    return "".join(f"; {s}" for s in said)


__all__ = ["BadRedisURL", "RedisStore", "RedisUnusable", "problem_of", "redact"]

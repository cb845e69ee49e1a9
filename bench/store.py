"""Keys merged per second through the Redis store, against Redis's own ceiling.

Starts a private redis-server on a free port (no persistence), then for
batches of 1, 10, 100 and 1000 keys merges deltas from a remote node into a
ClusterState and persists every batch through RedisStore (one MULTI/EXEC
each, from its worker thread), as a node does for gossip exchanges. Two
figures per size: persisting batches merged beforehand (the store's own
cost), and merging plus persisting (what a node pays). Two workloads:
"new keys" (every key written is a new one, as when a node joins) and
"updates" (a fixed set of ``--update-keys`` keys of one remote node
rewritten again and again with new versions, the steady state of a cluster
whose nodes own a few keys that change; the keys are written once, untimed,
before). In the same run, ``redis-benchmark -P 100 -t hset`` against the same
server gives the ceiling: HSETs per second with 100 commands pipelined, the
same field overwritten. The server's CPU per key (``INFO cpu``) bounds what
any client can reach: the "Redis CPU µs/key" columns. Prints a table.

    .venv/bin/python bench/store.py [--keys 200000] [--redis-benchmark-n 2000000]
        [--repeat 3] [--update-keys 1000] [--batches 1,10,100,1000]

Each figure is the best of ``--repeat`` runs (the ceiling too).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis
from twisted.internet import defer, task

from pokan.core.state import ClusterState, Entry, NodeDelta, NodeInfo
from pokan.store.redis import RedisStore

BATCHES = (1, 10, 100, 1000)
ME = NodeInfo("127.0.0.1:9000", 1, "127.0.0.1", 9000, 9000, "seed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    args += ["--save", "", "--appendonly", "no", "--dir", workdir]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return process, port
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def ceiling(port: int, n: int, *extra: str) -> tuple[float, float]:
    """redis-benchmark's HSETs per second, 100 pipelined, and the server's
    CPU µs per HSET."""
    client = redis.Redis(port=port)
    cpu = redis_cpu(client)
    command = ["redis-benchmark", "-p", str(port), "-P", "100", "-t", "hset"]
    out = subprocess.run(
        [*command, "-n", str(n), *extra, "--csv"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cpu_us = (redis_cpu(client) - cpu) * 1e6 / n
    client.flushdb()
    client.close()
    for line in out.splitlines():
        fields = [f.strip('"') for f in line.split(",")]
        if fields[0].upper() == "HSET":
            return float(fields[1]), cpu_us
    raise RuntimeError(f"no HSET line in redis-benchmark output: {out!r}")


def deltas(
    node: int, batch: int, keys: int, distinct: int | None = None
) -> list[NodeDelta]:
    """Deltas of a remote node, ``batch`` keys each, ``keys`` in all.

    Every key is new, or with ``distinct`` the keys cycle over that many
    names, each time with a new version (updates).
    """
    distinct = distinct or keys
    address = f"10.{node // 250}.0.{node % 250 + 1}"
    info = NodeInfo(f"{address}:5555", 1, address, 5555, 5555, "peer")
    found = []
    version = 0
    for start in range(0, keys, batch):
        entries = []
        for i in range(start, min(start + batch, keys)):
            version += 1
            name = f"key-{i % distinct}"
            entries.append((name, Entry(f"value-{i}", version, 1.7e9 + i)))
        found.append(
            NodeDelta(info, 1, version - len(entries), version, tuple(entries))
        )
    return found


@defer.inlineCallbacks
def measure(
    reactor: Any,
    url: str,
    batch: int,
    keys: int,
    node: int,
    merge: bool,
    updates: int | None = None,
) -> Any:
    """Keys per second: persist only (batches merged beforehand), or merge too.

    With ``updates``, that many keys are written first (untimed), then
    ``keys`` rewrites of them are timed.
    """
    store = RedisStore(url, prefix=f"bench{batch}-{merge}")
    state = ClusterState(ME)
    yield store.open()
    work = deltas(node, batch, (updates or 0) + keys, updates)
    if updates:
        warm = len(range(0, updates, batch))
        yield defer.gatherResults(
            [store.persist(state.merge([d])) for d in work[:warm]]
        )
        work = work[warm:]
        store.batches_written = 0
    admin = redis.Redis.from_url(url)
    admin.config_resetstat()
    cpu = redis_cpu(admin)
    if merge:
        started = time.perf_counter()
        persisted = [store.persist(state.merge([d])) for d in work]
    else:
        batches = [state.merge([d]) for d in work]
        started = time.perf_counter()
        persisted = [store.persist(b) for b in batches]
    yield defer.gatherResults(persisted)
    elapsed = time.perf_counter() - started
    assert store.batches_written == len(work), "every batch in one transaction"
    yield store.close()
    stats: Any = admin.info("commandstats")
    redis_us = stats["cmdstat_exec"]["usec"] / keys  # the commands run in EXEC
    cpu_us = (redis_cpu(admin) - cpu) * 1e6 / keys  # parsing, replies, all
    admin.flushdb()  # the next run starts from empty
    admin.close()
    return keys / elapsed, redis_us, cpu_us


def redis_cpu(client: redis.Redis) -> float:
    """Seconds of CPU the server has used so far (user + system)."""
    info: Any = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@defer.inlineCallbacks
def main(reactor: Any, options: argparse.Namespace) -> Any:
    workdir = tempfile.mkdtemp(prefix="pokan-bench-")
    process, port = start_redis(workdir)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        top, top_cpu = max(
            ceiling(port, options.redis_benchmark_n) for _ in range(options.repeat)
        )
        fresh, fresh_cpu = max(
            ceiling(port, options.redis_benchmark_n, "-r", "100000000")
            for _ in range(options.repeat)
        )
        rows = []
        for node, batch in enumerate(options.batches, start=1):
            keys = options.keys if batch > 1 else options.keys // 10
            row: list[Any] = [batch, keys]
            for updates in (None, options.update_keys):
                store_only = merged = (0.0, 0.0, 0.0)
                for run in range(options.repeat):  # the best of a few: shared
                    tag = 100 * node + 2 * run
                    got = yield measure(reactor, url, batch, keys, tag, False, updates)
                    store_only = max(store_only, got)
                    got = yield measure(
                        reactor, url, batch, keys, tag + 1, True, updates
                    )
                    merged = max(merged, got)
                row += [store_only, merged]
            rows.append(row)
        print(
            f"redis-server {redis_version(port)}, redis-py {redis.__version__},"
            f" hiredis {hiredis_state()}, Python {sys.version.split()[0]}"
        )
        print(
            f"ceiling: redis-benchmark -P 100 -t hset: {top:,.0f} HSET/s,"
            f" Redis CPU {top_cpu:.2f} µs/HSET"
        )
        print(
            f"new fields: redis-benchmark -P 100 -t hset -r 100000000: {fresh:,.0f}"
            f" HSET/s, Redis CPU {fresh_cpu:.2f} µs/HSET"
        )
        print(f"updates: {options.update_keys:,} keys of one node, rewritten")
        print()
        print(
            "| batch (keys) | keys | new keys: persist keys/s | % of ceiling"
            " | % of new fields | Redis EXEC µs/key | Redis CPU µs/key"
            " | merge + persist: keys/s | % of ceiling | updates: persist keys/s"
            " | % of ceiling | Redis EXEC µs/key | Redis CPU µs/key"
            " | merge + persist: keys/s | % of ceiling |"
        )
        print("|---:" * 15 + "|")
        for batch, keys, new, new_merged, upd, upd_merged in rows:
            print(
                f"| {batch} | {keys:,} | {new[0]:,.0f} | {new[0] / top:.0%}"
                f" | {new[0] / fresh:.0%} | {new[1]:.2f} | {new[2]:.2f}"
                f" | {new_merged[0]:,.0f} | {new_merged[0] / top:.0%}"
                f" | {upd[0]:,.0f} | {upd[0] / top:.0%} | {upd[1]:.2f} | {upd[2]:.2f}"
                f" | {upd_merged[0]:,.0f}"
                f" | {upd_merged[0] / top:.0%} |"
            )
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def redis_version(port: int) -> str:
    info: Any = redis.Redis(port=port).info("server")
    return str(info["redis_version"])


def hiredis_state() -> str:
    from redis.utils import HIREDIS_AVAILABLE

    return "on" if HIREDIS_AVAILABLE else "off"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=200_000)
    parser.add_argument(
        "--batches",
        type=lambda text: [int(size) for size in text.split(",")],
        default=list(BATCHES),
        help="batch sizes, comma-separated (default 1,10,100,1000)",
    )
    parser.add_argument("--redis-benchmark-n", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="keep the best of N")
    parser.add_argument(
        "--update-keys", type=int, default=1000, help="keys rewritten by 'updates'"
    )
    task.react(main, [parser.parse_args()])

"""Hostile traffic at a live 3-node cluster of ``twistd pokan``, then checks.

    PYTHONPATH=. .venv/bin/python bench/fuzz.py [--quick]

Starts three ``twistd -n --pidfile= pokan`` processes of this tree on
127.0.0.1 (free ports, ``--gossip-interval 0.2``) and sends them, on loopback
only: random datagrams, mutated valid datagrams (built with pokan.wire from
the cluster's real state: flipped, truncated, spliced, integers set to
extremes, forged generations, garbage ids, addresses that are not IPs, ids
with newlines), TCP streams (random bytes, partial frames, huge claimed
lengths, Hellos of thousands of fake nodes, 8M-empty-array bodies), while
``--held`` connections stay open until the checks are done. Then, per node:
alive and answering a full sync, still gossiping (its heartbeat rises at the
others), RSS growth, no id tracked but the real nodes', no flood of
OverflowError or "could not send" lines, log lines per minute, and a fresh
write (a 4th node started with ``--store fresh=1``) reaching every node.
Exit code 0 if every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import msgpack

from bench.cluster import free_port
from pokan import wire
from pokan.core.plausible import check_info
from pokan.core.state import Entry, NodeDelta, NodeInfo
from pokan.errors import DecodeError
from pokan.net.fullsync import join_pieces

ROOT = Path(__file__).resolve().parent.parent
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
MAX_RSS_GROWTH_MB = 10.0
#: a node above this RSS is killed, so a runaway node cannot take the machine
RSS_CEILING_MB = 2048.0
EXTREMES = (0, 2**62, 2**63, 2**64 - 1)
#: log lines that say a node cannot speak
MUTE_MARKS = ("OverflowError", "could not send")


class Node:
    """One ``twistd pokan`` process, its output in a log file."""

    def __init__(self, workdir: Path, name: str, *extra: str) -> None:
        self.port = free_port()
        self.id = f"127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        args = [TWISTD, "-n", "--pidfile=", "pokan", "--address", "127.0.0.1"]
        args += ["--udp-port", str(self.port), "--tcp-port", str(self.port)]
        args += ["--gossip-interval", "0.2", *extra]
        self.proc = subprocess.Popen(
            args, cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def listening(self) -> bool:
        return "listening on 127.0.0.1" in self.log()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_mb(self) -> float:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return float("nan")
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` every 0.1 s for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


#: where the checks connect from: another host than the attack's 127.0.0.1,
#: whose held-open connections fill that host's share of the sync caps
CHECK_SOURCE = ("127.0.0.3", 0)


def full_state(port: int, timeout: float = 5.0) -> tuple[NodeDelta, ...]:
    """A node's whole state by a full sync (an empty Hello); raises on failure."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=CHECK_SOURCE
    ) as sock:
        sock.sendall(frame(wire.encode(wire.Hello("127.0.0.1:1", ()))))
        data = b""
        deadline = time.monotonic() + timeout
        while chunk := sock.recv(65536):
            data += chunk
            if time.monotonic() > deadline:
                raise TimeoutError("the Welcome took too long")
    deltas: list[NodeDelta] = []
    while data:
        (length,) = struct.unpack(">I", data[:4])
        message = wire.decode(
            data[4 : 4 + length], frozenset({wire.MessageType.WELCOME})
        )
        assert isinstance(message, wire.Welcome)
        deltas += message.deltas
        data = data[4 + length :]
    if not deltas:
        raise DecodeError("empty", "no Welcome came")
    return join_pieces(deltas)


def values(deltas: tuple[NodeDelta, ...]) -> dict[str, dict[str, Any]]:
    return {
        d.info.id: {k: e.value for k, e in d.entries if not e.deleted} for d in deltas
    }


# -- building hostile datagrams ------------------------------------------------


def _int_paths(obj: Any, path: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _int_paths(item, (*path, i))
    elif isinstance(obj, int) and not isinstance(obj, bool):
        yield path


def set_integer(data: bytes, rng: random.Random, value: int) -> bytes:
    """``data`` with one integer of its body, picked at random, set to ``value``."""
    try:
        body = msgpack.unpackb(data[wire.HEADER_SIZE :], raw=False)
    except ValueError:  # not a plain body (sealed?): nothing to set
        return data
    paths = list(_int_paths(body))
    if not paths:
        return data
    *parents, last = rng.choice(paths)
    target = body
    for i in parents:
        target = target[i]
    target[last] = value
    return data[: wire.HEADER_SIZE] + msgpack.packb(body, use_bin_type=True)


GARBAGE_IDS = ("127.0>0.1:17102", "a\nforged line", "x" * 300, "", "::1:0", "\x1b[31m")
GARBAGE_ADDRESSES = ("not-an-ip", "127.0.0.1\n", "999.1.1.1", "", "::1")


def forged_info(info: NodeInfo, rng: random.Random) -> NodeInfo:
    """``info`` with one field forged."""
    kind = rng.randrange(4)
    if kind == 0:
        return attrs.evolve(
            info, generation=rng.choice([*EXTREMES, info.generation + 10**15])
        )
    if kind == 1:
        return attrs.evolve(info, id=rng.choice(GARBAGE_IDS) or "x")
    if kind == 2:
        return attrs.evolve(info, address=rng.choice(GARBAGE_ADDRESSES) or "x")
    return attrs.evolve(info, id=f"127.0.0.1:{rng.randrange(1, 65536)}")


def forged_delta(real: NodeDelta, rng: random.Random) -> NodeDelta:
    info = forged_info(real.info, rng) if rng.random() < 0.7 else real.info
    version = rng.choice([real.version + 1, *EXTREMES[1:]])
    key = rng.choice(["fresh", "k", "a\nb", "x" * 1024])
    entries = ((key, Entry(rng.choice([None, "forged", b"\xff"]), version, 0.0)),)
    return NodeDelta(
        info,
        rng.choice([real.heartbeat + 1, *EXTREMES]),
        rng.choice([0, real.version]) if version > real.version else 0,
        version,
        entries if rng.random() < 0.7 else (),
        left=rng.random() < 0.2,
    )


def realistic_messages(
    state: tuple[NodeDelta, ...], rng: random.Random, count: int
) -> list[bytes]:
    """Encodings of Syn/SynAck/Ack/Goodbye about the real nodes, some forged."""
    out: list[bytes] = []
    while len(out) < count:
        sender = rng.choice(state).info
        digest = tuple(
            wire.DigestEntry(d.info.id, d.info.generation, d.version, d.heartbeat)
            for d in state
        )
        deltas = tuple(
            forged_delta(d, rng) if rng.random() < 0.5 else d
            for d in rng.sample(state, rng.randint(1, len(state)))
        )
        kind = rng.randrange(4)
        message: wire.Message
        if kind == 0:
            message = wire.Syn(sender.id, digest, None, None, deltas[:1])
        elif kind == 1:
            message = wire.SynAck(sender.id, deltas, digest)
        elif kind == 2:
            message = wire.Ack(sender.id, deltas)
        else:
            gen = rng.choice([sender.generation, *EXTREMES])
            message = wire.Goodbye(rng.choice([sender.id, *GARBAGE_IDS]) or "x", gen)
        try:
            out.append(wire.encode(message, wire.DEFAULT_MAX_DATAGRAM))
        except Exception:  # too big for a datagram: skip it
            continue
    return out


def mutate(data: bytes, pool: list[bytes], rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:  # flip bytes
        b = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] ^= rng.randrange(1, 256)
        return bytes(b)
    if kind == 1:
        return data[: rng.randrange(len(data))]
    if kind == 2:
        other = rng.choice(pool)
        return data[: rng.randrange(len(data))] + other[rng.randrange(len(other)) :]
    if kind == 3:
        return set_integer(data, rng, rng.choice(EXTREMES))
    return data  # the realistic message itself, forged fields and all


def envelope(kind: wire.MessageType) -> bytes:
    """The plaintext envelope before a body of type ``kind``."""
    return wire.header(kind, wire.DEFAULT_CLUSTER)


def random_datagram(rng: random.Random) -> bytes:
    body = rng.randbytes(rng.randrange(0, 1400))
    if rng.random() < 0.5:  # past the envelope check, into the body decoder
        return envelope(rng.choice(list(wire.MessageType))) + body
    return body


# -- TCP streams ----------------------------------------------------------------


def fake_hello(count: int, rng: random.Random) -> bytes:
    """A Hello announcing ``count`` fake nodes (always the same ids)."""
    deltas = tuple(
        NodeDelta(
            NodeInfo(
                f"127.0.0.{2 + i // 60000}:{1 + i % 60000}",
                1,
                f"127.0.0.{2 + i // 60000}",
                1 + i % 60000,
                1 + i % 60000,
            ),
            rng.randrange(1, 100),
            0,
            1,
            (("k", Entry("v", 1, 0.0)),),
        )
        for i in range(count)
    )
    return frame(wire.encode(wire.Hello("127.0.0.1:1", deltas)))


def empty_arrays_frame(count: int) -> bytes:
    """A Hello frame whose body claims ``count`` empty arrays (8 MiB for 8M)."""
    header = envelope(wire.MessageType.HELLO)
    body = b"\x92" + msgpack.packb("127.0.0.1:1") + b"\xdd" + struct.pack(">I", count)
    return frame(header + body + b"\x90" * count)


def stream_payload(
    i: int, rng: random.Random, hello: bytes, big: bytes, big_every: int
) -> bytes:
    """The bytes of TCP stream ``i``: one of the hostile kinds."""
    if big_every and i % big_every == big_every - 1:
        return big
    kind = i % 5
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 4096))
    if kind == 1:  # a partial frame: claims more than it sends
        data = rng.randbytes(rng.randrange(1, 65536))
        return struct.pack(">I", len(data) + rng.randrange(1, 16 * 2**20)) + data
    if kind == 2:  # a huge claimed length
        return struct.pack(">I", rng.choice([2**32 - 1, 2**31, 16 * 2**20 + 1])) + b"PK"
    if kind == 3:
        return hello
    return frame(wire.encode(wire.Hello("127.0.0.1:1", ())))[: rng.randrange(1, 40)]


def send_stream(port: int, payload: bytes) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            sock.sendall(payload)
    except OSError:
        pass  # refused, reset or timed out: the node's business


# -- the run ----------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.start = time.monotonic()
        self.deadline = self.start + args.time_limit
        self.rng = random.Random(args.seed)
        self.workdir = Path(tempfile.mkdtemp(prefix="pokan-fuzz-"))
        self.nodes: list[Node] = []
        #: nodes started for the checks, stopped with the others
        self.joiners: list[Node] = []
        self.held: list[socket.socket] = []
        self.failures: list[str] = []
        #: why a node's full sync could not be read, by node id
        self.sync_errors: dict[str, str] = {}
        self.sent: collections.Counter[str] = collections.Counter()

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:7.1f}s] {text}", flush=True)

    def guard(self) -> None:
        """Kill a node whose RSS ran away (it is then reported dead)."""
        for node in self.nodes:
            if node.alive() and node.rss_mb() > RSS_CEILING_MB:
                self.say(f"{node.id}: RSS {node.rss_mb():.0f} MB, killed")
                node.proc.kill()

    def start_cluster(self) -> None:
        seed = Node(self.workdir, "node0")
        self.nodes.append(seed)
        if not wait_for(seed.listening, 30):
            raise SystemExit(f"node0 did not start:\n{seed.log()}")
        for i in (1, 2):
            self.nodes.append(Node(self.workdir, f"node{i}", "--gossip-with", seed.id))
        if not wait_for(lambda: all(n.listening() for n in self.nodes), 30):
            raise SystemExit("the cluster did not start")
        ids = {n.id for n in self.nodes}
        if not wait_for(lambda: self.every_node_knows(ids), 30):
            raise SystemExit("the cluster did not converge")
        self.say(f"cluster up: {', '.join(sorted(ids))}; logs in {self.workdir}")

    def every_node_knows(self, ids: set[str]) -> bool:
        try:
            return all(ids <= set(values(full_state(n.port))) for n in self.nodes)
        except Exception:
            return False

    def datagrams(self, label: str, count: int, make: Callable[[], bytes]) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        pause = 1.0 / self.args.rate if self.args.rate else 0.0
        step = max(1, count // 10)
        for i in range(count):
            if self.out_of_time():
                self.failures.append(f"time limit reached in {label} at {i}/{count}")
                break
            node = self.nodes[i % len(self.nodes)]
            try:
                sock.sendto(make(), ("127.0.0.1", node.port))
                self.sent[label] += 1
            except OSError:
                self.sent[f"{label} (send failed)"] += 1
            if pause and i % 100 == 99:
                time.sleep(pause * 100)
            if i % step == step - 1:
                self.guard()
                self.say(f"{label}: {i + 1}/{count}")
        sock.close()

    def streams(self) -> None:
        count = self.args.streams
        hello = fake_hello(self.args.fake_nodes, self.rng)
        big = empty_arrays_frame(self.args.empty_arrays)
        big_every = count // self.args.big if self.args.big else 0
        step = max(1, count // 10)
        for i in range(count):
            if self.out_of_time():
                self.failures.append(f"time limit reached in streams at {i}/{count}")
                break
            node = self.nodes[i % len(self.nodes)]
            send_stream(node.port, stream_payload(i, self.rng, hello, big, big_every))
            self.sent["tcp streams"] += 1
            if i % step == step - 1:
                self.guard()
                self.say(f"tcp streams: {i + 1}/{count}")

    def hold(self) -> None:
        for i in range(self.args.held):
            node = self.nodes[i % len(self.nodes)]
            try:
                sock = socket.create_connection(("127.0.0.1", node.port), timeout=2.0)
                sock.sendall(struct.pack(">I", 1000) + b"PK")  # a frame never ended
                self.held.append(sock)
            except OSError:
                self.sent["held (refused)"] += 1
        self.say(f"held open: {len(self.held)} connections")

    def check(self, rss_before: dict[str, float]) -> None:
        real = {n.id for n in self.nodes}
        states: dict[str, tuple[NodeDelta, ...]] = {}
        for node in self.nodes:
            try:
                states[node.id] = full_state(node.port)
            except Exception as e:
                states[node.id] = ()
                self.sync_errors[node.id] = f"{type(e).__name__}: {e}"
        time.sleep(2.0)  # ten gossip rounds: every live node's heartbeat rises
        later = {}
        for node in self.nodes:
            try:
                later[node.id] = full_state(node.port)
            except Exception as e:
                later[node.id] = ()
                self.sync_errors.setdefault(node.id, f"{type(e).__name__}: {e}")
        t0 = time.monotonic()  # the spread counts from the start of the process
        fresh = Node(
            self.workdir,
            "fresh",
            "--gossip-with",
            self.nodes[0].id,
            "--store",
            "fresh=1",
        )
        self.joiners.append(fresh)
        started = wait_for(fresh.listening, 30)

        def fresh_everywhere() -> bool:
            try:
                return all(
                    values(full_state(n.port)).get(fresh.id, {}).get("fresh") == "1"
                    for n in self.nodes
                )
            except Exception:
                return False

        spread = started and wait_for(fresh_everywhere, self.args.spread_limit)
        took = time.monotonic() - t0
        for node in self.nodes:
            self.check_node(node, real | {fresh.id}, states, later, rss_before)
        line = f"fresh write from {fresh.id}: "
        line += (
            f"reached every node in {took:.1f}s"
            if spread
            else "did NOT reach every node"
        )
        self.verdict("fresh write", bool(spread), line)

    def check_node(
        self,
        node: Node,
        real: set[str],
        before: dict[str, tuple[NodeDelta, ...]],
        after: dict[str, tuple[NodeDelta, ...]],
        rss_before: dict[str, float],
    ) -> None:
        name = node.id
        answers = bool(after[name])
        sync = "answered" if answers else f"NOT read ({self.sync_errors.get(name)})"
        self.verdict(
            f"{name} alive",
            node.alive() and answers,
            f"{name}: process {'running' if node.alive() else 'EXITED'},"
            f" full sync {sync}",
        )
        beats = [
            _heartbeat(before[o.id], name) < _heartbeat(after[o.id], name)
            for o in self.nodes
            if o is not node and after[o.id]
        ]
        self.verdict(
            f"{name} gossiping",
            bool(beats) and all(beats),
            f"{name}: heartbeat rising at {sum(beats)}/{len(beats)} peers",
        )
        growth = node.rss_mb() - rss_before[name]
        self.verdict(
            f"{name} RSS",
            growth < MAX_RSS_GROWTH_MB,
            f"{name}: RSS {rss_before[name]:.1f} -> {node.rss_mb():.1f} MB"
            f" (+{growth:.1f}, limit {MAX_RSS_GROWTH_MB})",
        )
        infos = {d.info.id: d.info for d in (*after[name], *before[name])}
        garbage = sorted(i for i, info in infos.items() if check_info(info))
        if not infos:
            garbage = ["(no state could be read)"]
        # plausible records of nodes that do not exist (the Hellos of fake
        # nodes): no unkeyed node can tell them from real ones; they are
        # bounded by the new-node limits, and convicted, then forgotten
        fakes = sorted(set(infos) - real - set(garbage))
        self.verdict(
            f"{name} ids",
            not garbage,
            f"{name}: {len(infos)} ids tracked, {len(garbage)} malformed"
            + (f" (e.g. {garbage[:3]!r})" if garbage else "")
            + f"; {len(fakes)} well-formed fakes announced by the attack",
        )
        log = node.log()
        mute = {mark: log.count(mark) for mark in MUTE_MARKS}
        speaks = all(n <= self.args.max_mute_lines for n in mute.values())
        self.verdict(
            f"{name} not mute",
            speaks,
            f"{name}: " + ", ".join(f"{n} x {m!r}" for m, n in mute.items()),
        )
        lines = log.splitlines()
        per_minute = collections.Counter(
            line[:16] for line in lines if line[:2] == "20"
        )
        peak = max(per_minute.values(), default=0)
        self.verdict(
            f"{name} log throttled",
            peak <= self.args.max_lines_per_minute,
            f"{name}: {len(lines)} log lines, at most {peak} in a minute"
            f" (limit {self.args.max_lines_per_minute})",
        )

    def verdict(self, check: str, ok: bool, line: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'} {line}", flush=True)
        if not ok:
            self.failures.append(check)

    def main(self) -> int:
        try:
            self.start_cluster()
            time.sleep(1.0)
            rss_before = {n.id: n.rss_mb() for n in self.nodes}
            self.say(
                "RSS before: " + ", ".join(f"{v:.1f} MB" for v in rss_before.values())
            )
            pool = realistic_messages(full_state(self.nodes[0].port), self.rng, 2000)
            self.hold()
            self.datagrams(
                "random datagrams", self.args.random, lambda: random_datagram(self.rng)
            )
            self.datagrams(
                "mutated datagrams",
                self.args.mutated,
                lambda: mutate(self.rng.choice(pool), pool, self.rng),
            )
            self.streams()
            self.say(
                "traffic sent: " + ", ".join(f"{k} {v}" for k, v in self.sent.items())
            )
            time.sleep(2.0)  # let the last of it be handled
            self.say("checks:")
            self.check(rss_before)
        finally:
            for sock in self.held:
                sock.close()
            for node in (*self.nodes, *self.joiners):
                node.stop()
        took = time.monotonic() - self.start
        if self.failures:
            print(f"FAILED after {took:.0f}s: {', '.join(self.failures)}")
            return 1
        print(f"PASSED after {took:.0f}s")
        return 0


def _heartbeat(state: tuple[NodeDelta, ...], node_id: str) -> int:
    return max((d.heartbeat for d in state if d.info.id == node_id), default=-1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--random", type=int, default=100_000, help="random datagrams")
    p.add_argument("--mutated", type=int, default=100_000, help="mutated datagrams")
    p.add_argument("--streams", type=int, default=10_000, help="TCP streams")
    p.add_argument("--held", type=int, default=1_000, help="connections held open")
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds in all")
    p.add_argument("--quick", action="store_true", help="1/100 of every count")
    p.add_argument("--rate", type=float, default=20_000, help="datagrams per second")
    p.add_argument("--fake-nodes", type=int, default=5_000, help="per fake Hello")
    p.add_argument("--big", type=int, default=5, help="8M-empty-array frames")
    p.add_argument("--empty-arrays", type=int, default=8 * 2**20)
    p.add_argument("--spread-limit", type=float, default=30.0)
    p.add_argument("--max-lines-per-minute", type=int, default=200)
    p.add_argument("--max-mute-lines", type=int, default=10)
    p.add_argument("--seed", type=int, default=12)
    args = p.parse_args(argv)
    if args.quick:
        for name in ("random", "mutated", "streams", "held"):
            setattr(args, name, max(1, getattr(args, name) // 100))
        args.big = max(1, args.big // 5)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.held + 256)), hard)
    )
    return Run(args).main()


if __name__ == "__main__":
    sys.exit(main())

"""What sealing gossip costs: CPU per datagram, bytes per datagram, idle share.

    PYTHONPATH=. .venv/bin/python bench/seal_cost.py [--live 10] [--window 30] \
        [--runs 2]

Prints, in one run:

(a) CPU per seal + open (pokan.wire.keyring.Sealer, ChaCha20-Poly1305) of Syn
    datagrams of about 100, 600 and 1400 bytes, beside encode + decode of the
    same message (pokan.wire), and the ratio;
(b) the bytes a seal adds to a datagram (SEAL_OVERHEAD) as a share of 1400;
(c) what sealing would cost an idle node at the defaults (1 s interval,
    fanout 3): the datagrams one node sends and receives per second, counted
    in pokan.sim.simulate's real sans-IO core over idle rounds (every datagram is
    sealed once by its sender and opened once by its receiver), times the
    seal + open cost measured on datagrams of those sizes, in a loop and
    cold (after a sleep, as an idle node pays it: what sealing adds to the
    encode + decode of a datagram in one wakeup); in microseconds per
    second, and as a share of one core;
(d) unless ``--live 0``: the idle CPU of real nodes, measured from /proc over
    ``--window`` seconds of ``--live`` idle pokan processes at the defaults
    (as bench/cluster.py runs them), plain and then sealed with one key
    (``Server(key_file=...)``), ``--runs`` interleaved runs of each.
"""

from __future__ import annotations

import argparse
import functools
import os
import runpy
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.micro import rate
from pokan import wire
from pokan.core.node import Address
from pokan.sim.simulate import Config, Simulation, node_info
from pokan.wire import DigestEntry, Syn
from pokan.wire.keyring import SEAL_OVERHEAD, Keyring, Sealer, generate_key

#: the cluster name and envelope header the lead binds as associated data
AAD = wire.MAGIC + bytes((2, wire.MessageType.SYN, wire.FLAG_SEALED)) + b"pokan"
SIZES = (100, 600, 1400)
HERE = Path(__file__).parent
HEADER = wire.HEADER_SIZE


def syn_of_size(target: int) -> bytes:
    """A Syn datagram, a digest of realistic node ids, as big as fits ``target``."""
    me = node_info(0)
    digest: list[DigestEntry] = []
    data = wire.encode(Syn(me.id, ()))
    for i in range(10_000):
        info = node_info(i)
        entry = DigestEntry(info.id, info.generation, 40 + i, 90_000 + i)
        bigger = wire.encode(Syn(me.id, (*digest, entry)))
        if len(bigger) > target:
            return data
        digest.append(entry)
        data = bigger
    return data


def codec_and_seal(sealer: Sealer, data: bytes) -> tuple[float, float]:
    """Microseconds per encode + decode, and per seal + open, of one datagram."""
    message = wire.decode(data, wire.DATAGRAM_TYPES)
    body = data[HEADER:]

    def codec() -> None:
        wire.decode(wire.encode(message), wire.DATAGRAM_TYPES)

    def seal() -> None:
        sealer.open(AAD, sealer.seal(AAD, body))

    return 1e6 / rate(codec), 1e6 / rate(seal)


def seal_cost(sealer: Sealer, size: int) -> float:
    """Microseconds per seal + open of a body of ``size`` bytes."""
    body = os.urandom(size - HEADER)
    return 1e6 / rate(lambda: sealer.open(AAD, sealer.seal(AAD, body)), 0.2)


def cold_seal_cost(sealer: Sealer, data: bytes, calls: int = 300) -> float:
    """Microseconds a seal + open adds to a datagram's codec in a cold wakeup.

    An idle node sleeps between datagrams, and the first work after a wakeup
    runs several times slower than in a loop. Each trial sleeps 20 ms, then
    encodes, (seals, opens,) decodes ``data``'s message: the mean of the
    sealed trials less the mean of the plain ones, interleaved.
    """
    message = wire.decode(data, wire.DATAGRAM_TYPES)

    def plain() -> None:
        wire.decode(wire.encode(message), wire.DATAGRAM_TYPES)

    def sealed() -> None:
        encoded = wire.encode(message)
        body, _ = sealer.open(AAD, sealer.seal(AAD, encoded[HEADER:]))
        wire.decode(encoded[:HEADER] + body, wire.DATAGRAM_TYPES)

    spent = {plain: 0.0, sealed: 0.0}
    for _ in range(calls):
        for fn in spent:
            time.sleep(0.02)
            began = time.perf_counter()
            fn()
            spent[fn] += time.perf_counter() - began
    return (spent[sealed] - spent[plain]) / calls * 1e6


def idle_datagrams(n: int = 30, seconds: float = 60.0) -> tuple[float, list[bytes]]:
    """Datagrams per second per node of an idle cluster at the defaults.

    The real core (the Engine, fanout 3 as Server sets it, 1 s interval) in
    pokan.sim.simulate, converged, then ``seconds`` of idle rounds; also a
    sample of the datagrams themselves.
    """
    sim = Simulation(Config(n=n, interval=1.0, seed=3, fanout=3))
    sim.run_until(lambda: False, 10.0)  # past the first rounds
    sample: list[bytes] = []
    plain_send = sim.send
    started = sim.meter.datagrams

    def send(sender: int, address: Address, message: wire.Message) -> None:
        if len(sample) < 2000:
            sample.append(wire.encode(message))
        plain_send(sender, address, message)

    sim.send = send  # type: ignore[method-assign]
    sim.run_until(lambda: False, 10.0 + seconds)
    per_node = (sim.meter.datagrams - started) / n / seconds
    return per_node, sample


def live_idle_cpu(n: int, window: float, key_file: str | None = None) -> float:
    """Mean CPU seconds per second of ``n`` idle pokan processes, defaults.

    With ``key_file``, every node seals with the keys in it.
    """
    import bench.cluster as cluster

    plain = cluster.command

    def command(impl: str, port: int, interval: float) -> list[str]:
        argv = plain(impl, port, interval)  # both through this file, alike
        return [argv[0], __file__, "--node", key_file or "-", *argv[2:]]

    cluster.command = command
    nodes = cluster.Cluster("pokan", 1.0)
    try:
        for _ in range(n):
            nodes.add()
        if not nodes.wait(nodes.started, 120):
            raise RuntimeError("nodes did not start")
        nodes.pump(time.time() + 15)  # joined, settled, idle
        cpu = [node.cpu_seconds() for node in nodes.nodes]
        nodes.pump(time.time() + window)
        spent = [
            node.cpu_seconds() - c for node, c in zip(nodes.nodes, cpu, strict=True)
        ]
    finally:
        nodes.stop()
        cluster.command = plain
    return sum(spent) / n / window


def run_node(key_file: str, argv: list[str]) -> None:
    """In a node process: bench/cluster_node.py, its Server given ``key_file``.

    ``-``: no key file, plain gossip.
    """
    import pokan

    if key_file != "-":
        pokan.Server = functools.partial(pokan.Server, key_file=key_file)  # type: ignore[misc]
    sys.argv = [str(HERE / "cluster_node.py"), *argv]
    runpy.run_path(sys.argv[0], run_name="__main__")


def live_comparison(
    n: int, window: float, runs: int
) -> tuple[list[float], list[float]]:
    """Idle CPU per node, plain and sealed, in ``runs`` interleaved runs of each."""
    key_file = Path(tempfile.mkdtemp()) / "keys"
    key_file.write_text(generate_key() + "\n")
    key_file.chmod(0o600)
    plain, sealed = [], []
    for _ in range(runs):
        plain.append(live_idle_cpu(n, window))
        sealed.append(live_idle_cpu(n, window, str(key_file)))
    return plain, sealed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--live", type=int, default=10, help="processes; 0: skip")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=2, help="live runs of each")
    parser.add_argument("--node", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.node:
        run_node(args.node[0], args.node[1:])
        return 0
    sealer = Sealer(Keyring((os.urandom(32),)))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")

    print("\n(a) CPU per datagram, a Syn of realistic node ids")
    print(f"{'bytes':>6} {'encode+decode us':>17} {'seal+open us':>13} {'ratio':>6}")
    for target in SIZES:
        data = syn_of_size(target)
        codec_us, seal_us = codec_and_seal(sealer, data)
        print(
            f"{len(data):6d} {codec_us:17.1f} {seal_us:13.1f} {seal_us / codec_us:6.2f}"
        )

    print("\n(b) bytes per datagram")
    print(
        f"{SEAL_OVERHEAD} bytes (key id 4, nonce 24, tag 16):"
        f" {SEAL_OVERHEAD / 1400:.1%} of a 1400-byte datagram"
    )

    print("\n(c) an idle node at the defaults (1 s interval, fanout 3)")
    per_second, sample = idle_datagrams()
    kinds = Counter(wire.MessageType(d[3]).name for d in sample)
    mean_size = sum(map(len, sample)) / len(sample)
    # sizes in 10-byte bins: one timing per bin
    sizes = Counter(max(HEADER + 1, round(len(d), -1)) for d in sample)
    seal_us = sum(
        count * seal_cost(sealer, size) for size, count in sizes.items()
    ) / len(sample)
    cold_us = cold_seal_cost(sealer, syn_of_size(round(mean_size)))
    # each datagram sent: one seal here and one open at its receiver, and as
    # many received, so per node per second: per_second x (seal + open)
    per_node_us = per_second * seal_us
    cold_node_us = per_second * cold_us
    mix = ", ".join(f"{k} {v / len(sample):.0%}" for k, v in sorted(kinds.items()))
    print(
        f"datagrams sent per node per second: {per_second:.2f} (as many received);"
        f" mean {mean_size:.0f} bytes ({mix})"
    )
    print(
        f"seal + open per datagram of that mix: {seal_us:.1f} us in a loop,"
        f" {cold_us:.1f} us cold (after a sleep, beyond the codec's)"
    )
    print(
        f"sealing per node: {per_node_us:.0f} us/s ({per_node_us / 1e4:.4f}% of a"
        f" core), cold {cold_node_us:.0f} us/s ({cold_node_us / 1e4:.4f}%)"
    )
    if args.live:
        plains, sealeds = live_comparison(args.live, args.window, args.runs)
        plain, sealed = sum(plains) / args.runs, sum(sealeds) / args.runs
        runs = ", ".join(
            f"{p * 1e6:.0f}/{s * 1e6:.0f}" for p, s in zip(plains, sealeds, strict=True)
        )
        print(
            f"idle CPU per real node ({args.live} processes, {args.window:.0f} s,"
            f" {args.runs} runs each, plain/sealed us/s: {runs}):"
            f" plain {plain * 1e6:.0f} us/s ({plain:.3%} of a core),"
            f" sealed {sealed * 1e6:.0f} us/s ({sealed:.3%})"
        )
        print(
            f"sealing as a share of the plain idle CPU: estimated"
            f" {per_node_us / (plain * 1e6):.1%} (loop) to"
            f" {cold_node_us / (plain * 1e6):.1%} (cold);"
            f" measured {(sealed - plain) / plain:+.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

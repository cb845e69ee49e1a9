"""One kinship node for bench/cluster.py, speaking cluster_node.py's lines.

    python bench/cluster_kinship.py PORT INTERVAL [SEED_HOST:PORT]

A key/value write is a change of the node's kinship metadata
(``update_meta``), which kinship gossips; a ``key`` line is printed when a
member's metadata brings a key this node has not seen from it, a ``dead``
line on its ``MemberDead`` event (a suspicion that expired). kinship counts
no bytes, so ``stats`` reports -1 for them.
"""

from __future__ import annotations

import sys
import threading
import time

import kinship
from kinship import blocking


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main() -> None:
    port, interval = int(sys.argv[1]), float(sys.argv[2])
    seeds = sys.argv[3:]
    config = kinship.Config.lan(
        name=f"127.0.0.1:{port}",
        bind=f"127.0.0.1:{port}",
        seeds=seeds,
        gossip_interval=interval,
        insecure_plaintext=True,
    )
    cluster = blocking.Cluster(config).start(timeout=30)
    me = f"127.0.0.1:{port}"
    seen: set[tuple[str, str, str]] = set()

    def show(member: kinship.Member) -> None:
        if member.name == me:
            return
        for key, value in member.meta.items():
            if (member.name, key, value) not in seen:
                seen.add((member.name, key, value))
                say(f"key {key} {value} {time.time():.6f}")

    def events() -> None:
        for event in cluster.events(timeout=1.0):
            member = getattr(event, "member", None)
            if isinstance(event, kinship.MemberDead):
                say(f"dead {member.name} {time.time():.6f}")
            elif member is not None:
                show(member)

    threading.Thread(target=events, daemon=True).start()
    for member in cluster.members():
        show(member)
    say(f"ready {me}")
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["store"]:
            cluster.update_meta(**{words[1]: words[2]})
        elif words[:1] == ["stats"]:
            say(f"stats -1 {len(cluster.members())}")
    cluster.close()


if __name__ == "__main__":
    main()

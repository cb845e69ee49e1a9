"""One swim-protocol node for bench/cluster.py, speaking cluster_node.py's lines.

    python bench/cluster_swim.py PORT INTERVAL [SEED_HOST:PORT]

A key/value write is a change of the member's metadata (``Members.update``),
which swim-protocol disseminates on its sync interval; ``ping_interval`` and
``sync_interval`` are both set to INTERVAL; a ``dead`` line is printed when a
member's status turns OFFLINE. swim-protocol counts no bytes, so ``stats``
reports -1 for them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import AsyncExitStack

from swimprotocol.members import Member, Members
from swimprotocol.status import Status
from swimprotocol.udp import UdpConfig, UdpTransport
from swimprotocol.worker import Worker


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def run(port: int, interval: float, seeds: list[str]) -> None:
    me = f"127.0.0.1:{port}"
    config = UdpConfig(
        local_name=me,
        peers=seeds or [me],
        secret="bench",
        ping_interval=interval,
        sync_interval=interval,
    )
    members = Members(config)
    worker = Worker(config, members)
    transport = UdpTransport(config, worker)
    seen: set[tuple[str, str, bytes]] = set()

    async def changed(member: Member) -> None:
        if member.name == me:
            return
        if member.status == Status.OFFLINE:
            say(f"dead {member.name} {time.time():.6f}")
        for key, value in member.metadata.items():
            if (member.name, key, value) not in seen:
                seen.add((member.name, key, value))
                say(f"key {key} {value.decode()} {time.time():.6f}")

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(transport)
        await stack.enter_async_context(worker)
        await stack.enter_async_context(members.listener.on_notify(changed))
        say(f"ready {me}")
        while line := await reader.readline():
            words = line.decode().split()
            if words[:1] == ["store"]:
                metadata = dict(members.local.metadata) | {words[1]: words[2].encode()}
                members.update(members.local, new_metadata=metadata)
            elif words[:1] == ["stats"]:
                say(f"stats -1 {len(members)}")


def main() -> None:
    port, interval = int(sys.argv[1]), float(sys.argv[2])
    asyncio.run(run(port, interval, sys.argv[3:]))


if __name__ == "__main__":
    main()
